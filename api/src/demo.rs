//! `custodia demo`: a sample log in the configured database, then verified,
//! so that a newcomer sees the event log work end to end.

use std::process::ExitCode;

use custodia_application::{verify_log, ExpectedVersion};
use custodia_domain::{ChainId, StreamCategory, StreamId, StreamVersion, TenantId};
use custodia_infrastructure::{open_event_store, OpenMode};
use uuid::Uuid;

use crate::sample;

#[derive(clap::Args)]
pub struct Args {
    /// Number of sample tenants.
    #[arg(long, default_value_t = 3)]
    tenants: usize,
    /// Users per tenant.
    #[arg(long, default_value_t = 5)]
    users: usize,
}

pub async fn run(database_url: &str, args: Args) -> Result<ExitCode, String> {
    let store = open_event_store(database_url, OpenMode::Migrate, 4)
        .await
        .map_err(|e| e.to_string())?;
    let category = |name: &str| StreamCategory::parse(name).expect("sample categories are valid");
    let platform = StreamId::new(category("platform"), Uuid::now_v7());
    for _ in 0..args.tenants {
        let tenant = TenantId::generate();
        let chain = ChainId::Tenant(tenant);
        let tenant_stream = StreamId::new(category("tenant"), tenant.as_uuid());
        let created = sample::events("TenantCreated", 1);
        store
            .append(sample::request(
                ChainId::Platform,
                &platform,
                ExpectedVersion::Any,
                sample::events("TenantProvisioned", 1),
                "demo",
            ))
            .await
            .map_err(|e| e.to_string())?;
        store
            .append(sample::request(
                chain,
                &tenant_stream,
                ExpectedVersion::Exactly(StreamVersion::EMPTY),
                created,
                "demo",
            ))
            .await
            .map_err(|e| e.to_string())?;
        for _ in 0..args.users {
            let user = StreamId::new(category("user"), Uuid::now_v7());
            let mut events = sample::events("UserRegistered", 1);
            events.extend(sample::events("ProfileUpdated", 2));
            let appended = store
                .append(sample::request(
                    chain,
                    &user,
                    ExpectedVersion::Exactly(StreamVersion::EMPTY),
                    events,
                    "demo",
                ))
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "tenant {tenant}  {user}  version {}  position {}",
                appended.stream_version, appended.position
            );
        }
    }
    let report = verify_log(&*store, None, &|_| {})
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "\nthe log in {database_url} now holds {} events in {} chains; verification: {}",
        report.events,
        report.chains,
        if report.is_intact() {
            "intact"
        } else {
            "BROKEN"
        }
    );
    println!("verify it yourself:  cargo run -p custodia -- verify");
    Ok(if report.is_intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::EXIT_BROKEN)
    })
}
