//! `custodia bench history`: does a command's cost grow with the history of
//! the stream it touches? One session is refreshed, and one account logs
//! in, again and again; the latency is sampled at each history length.
//! Then the session's whole stream is folded from its first event, the
//! work a command would do on that stream without a snapshot.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use custodia_application::commands::sessions::{refresh_session, start_session, SessionTokens};
use custodia_application::commands::Ports;
use custodia_domain::aggregate::{Aggregate, EventSchema, StoredForm};
use custodia_domain::identity::session::{Session, SessionEvent};
use custodia_domain::{StreamCategory, StreamId, StreamVersion, TenantId, Timestamp};
use custodia_infrastructure::passwords::Argon2Cost;

use super::percentiles;

const PASSWORD: &str = "a benchmark passphrase of some length";

#[derive(clap::Args)]
pub struct HistoryArgs {
    /// History lengths (prior refreshes, prior logins) to sample at.
    #[arg(long, value_delimiter = ',', default_value = "10,1000,10000")]
    sizes: Vec<usize>,
    /// Timed operations at each length.
    #[arg(long, default_value_t = 50)]
    samples: usize,
    /// Hash passwords at production cost. By default a cheap Argon2id
    /// (m = 64 KiB, t = 1) keeps 10,000 logins affordable and leaves the
    /// pipeline's own cost, the part that could grow, visible.
    #[arg(long)]
    production_hash: bool,
}

pub async fn run(url: &str, mut args: HistoryArgs) -> Result<ExitCode, String> {
    args.sizes.sort_unstable();
    let samples = args.samples.max(1);
    let cost = if args.production_hash {
        Argon2Cost::PRODUCTION
    } else {
        Argon2Cost { m_kib: 64, t: 1 }
    };
    let ports = super::ports(url, 4, cost).await?;
    println!(
        "history benchmark: Argon2id m={} KiB t={}, {samples} samples per length",
        cost.m_kib, cost.t
    );

    let (tenant, email) = account(&ports, "refresh").await?;
    let mut tokens = login(&ports, tenant, &email).await?;
    let mut done = 0;
    for &size in &args.sizes {
        while done < size {
            tokens = refresh(&ports, tenant, &tokens).await?;
            done += 1;
        }
        let mut latencies = Vec::with_capacity(samples);
        for _ in 0..samples {
            let started = Instant::now();
            tokens = refresh(&ports, tenant, &tokens).await?;
            latencies.push(started.elapsed());
            done += 1;
        }
        percentiles(&format!("refresh after {size:>6} refreshes"), latencies);
    }
    fold_figure(&ports, tokens.session).await?;

    let (tenant, email) = account(&ports, "login").await?;
    let mut done = 0;
    for &size in &args.sizes {
        while done < size {
            login(&ports, tenant, &email).await?;
            done += 1;
        }
        let mut latencies = Vec::with_capacity(samples);
        for _ in 0..samples {
            let started = Instant::now();
            login(&ports, tenant, &email).await?;
            latencies.push(started.elapsed());
            done += 1;
        }
        percentiles(&format!("login after   {size:>6} logins   "), latencies);
    }
    Ok(ExitCode::SUCCESS)
}

async fn account(ports: &Ports, name: &str) -> Result<(TenantId, String), String> {
    let email = format!("{name}@bench.example");
    Ok((super::tenant(ports, &email, Some(PASSWORD)).await?, email))
}

async fn login(ports: &Ports, tenant: TenantId, email: &str) -> Result<SessionTokens, String> {
    start_session(ports, tenant, email, PASSWORD, None, None, Timestamp::now())
        .await
        .map_err(|e| e.to_string())
}

async fn refresh(
    ports: &Ports,
    tenant: TenantId,
    tokens: &SessionTokens,
) -> Result<SessionTokens, String> {
    refresh_session(ports, Some(tenant), &tokens.refresh_token, Timestamp::now())
        .await
        .map_err(|e| e.to_string())
}

/// Times reading and folding the session's whole stream, as a load without
/// a snapshot does (the figure postgres-es's aggregate load compares with).
async fn fold_figure(ports: &Ports, session: uuid::Uuid) -> Result<(), String> {
    let stream = StreamId::new(
        StreamCategory::parse("session").expect("valid category"),
        session,
    );
    let mut timings: Vec<Duration> = Vec::new();
    let mut events = 0;
    for _ in 0..10 {
        let started = Instant::now();
        let mut state = Session::default();
        let mut version = StreamVersion::EMPTY;
        events = 0;
        loop {
            let batch = ports
                .store
                .read_stream(&stream, version, 1000)
                .await
                .map_err(|e| e.to_string())?;
            let Some(last) = batch.last() else { break };
            version = last.stream_version;
            for recorded in &batch {
                let event = SessionEvent::from_stored(&StoredForm {
                    event_type: recorded.event_type.clone(),
                    schema_version: recorded.schema_version,
                    payload: recorded.payload.clone(),
                })
                .map_err(|e| e.to_string())?;
                state = state.apply(&event);
                events += 1;
            }
        }
        timings.push(started.elapsed());
    }
    percentiles(
        &format!("fold a {events}-event session stream from the start"),
        timings,
    );
    Ok(())
}
