//! `custodia bench keys`: what the key store's operations cost as it grows:
//! sealing and opening a field under a subject key and under a subject and
//! day key, a backup, a restore into an empty store, and a master-key
//! rotation, for stores of the given numbers of tenants (one subject each).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use custodia_application::PersonalData;
use custodia_domain::personal::{AccessDay, FieldContext};
use custodia_domain::{EventId, StreamId, TenantId, Timestamp};
use custodia_infrastructure::{KeyVault, MasterKey, MasterKeys};
use uuid::Uuid;

use super::percentiles;

#[derive(clap::Args)]
pub struct KeysArgs {
    /// Numbers of tenants (each with one subject key and one day key) to
    /// measure at.
    #[arg(long, value_delimiter = ',', default_value = "100,10000")]
    tenants: Vec<usize>,
}

pub async fn run(url: &str, args: KeysArgs) -> Result<ExitCode, String> {
    let failed = |e: &dyn std::fmt::Display| e.to_string();
    if !url.starts_with("sqlite:") {
        return Err(
            "bench keys makes SQLite key stores beside --database-url: give a sqlite:// URL".into(),
        );
    }
    for (round, &tenants) in args.tenants.iter().enumerate() {
        // Each size in a store of its own, beside the given database.
        let url = |name: &str| format!("{url}.bench-keys-{round}-{name}");
        let (old, new) = (MasterKey::generate(), MasterKey::generate());
        let old_base64 = old.to_base64();
        let store = url("store");
        let (vault, _) = KeyVault::open(&store, &store, MasterKeys::new(old))
            .await
            .map_err(|e| failed(&e))?;
        let stream: StreamId = "session:0192a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
            .parse()
            .map_err(|e| failed(&e))?;
        let day = AccessDay::of(Timestamp::now());
        let (mut seal, mut seal_access, mut open_access) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..tenants {
            let tenant = TenantId::generate();
            let context = FieldContext {
                tenant,
                stream: &stream,
                event_id: EventId::generate(),
                field: "client",
            };
            let subject = Uuid::now_v7();
            let started = Instant::now();
            vault
                .seal(subject, &context, b"a personal field")
                .await
                .map_err(|e| failed(&e))?;
            seal.push(started.elapsed());
            let started = Instant::now();
            let sealed = vault
                .seal_access_data(subject, day, &context, b"203.0.113.7 agent/1.0")
                .await
                .map_err(|e| failed(&e))?;
            seal_access.push(started.elapsed());
            let started = Instant::now();
            vault
                .open(&context, &sealed)
                .await
                .map_err(|e| failed(&e))?;
            open_access.push(started.elapsed());
        }
        println!("{tenants} tenants, one subject and one day key each:");
        percentiles("  seal under a subject key (first: makes the keys)", seal);
        percentiles("  seal access data (subject and day key)", seal_access);
        percentiles("  open access data", open_access);

        let started = Instant::now();
        let rows = vault.backup().await.map_err(|e| failed(&e))?;
        let backup = started.elapsed();
        let bytes = serde_json::to_vec(&rows).map_err(|e| failed(&e))?.len();
        let empty = url("restored");
        let (restored, _) = KeyVault::open(&empty, &empty, MasterKeys::new(MasterKey::generate()))
            .await
            .map_err(|e| failed(&e))?;
        let started = Instant::now();
        restored.restore(&rows).await.map_err(|e| failed(&e))?;
        let restore = started.elapsed();
        println!(
            "  backup {} rows ({bytes} bytes of JSON): {backup:?}; restore into an empty store: {restore:?}",
            rows.len()
        );

        let previous: MasterKey = old_base64.parse().map_err(|e: &str| e.to_owned())?;
        let (rotating, _) = KeyVault::open(&store, &store, MasterKeys::rotating(new, previous))
            .await
            .map_err(|e| failed(&e))?;
        let started = Instant::now();
        let rotation = rotating
            .rotate_master(u64::MAX)
            .await
            .map_err(|e| failed(&e))?;
        let took = started.elapsed();
        println!(
            "  rotate the master key: {} keys rewrapped in {took:?} ({:.0} keys/s), {} left",
            rotation.rewrapped,
            rotation.rewrapped as f64 / took.max(Duration::from_micros(1)).as_secs_f64(),
            rotation.remaining
        );
    }
    Ok(ExitCode::SUCCESS)
}
