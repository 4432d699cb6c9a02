//! `custodia bench …`: measurements that print figures.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use custodia_application::{verify_log, EventStore, ExpectedVersion};
use custodia_domain::{ChainId, StreamCategory, StreamId, StreamVersion, TenantId};
use custodia_infrastructure::{open_event_store, OpenMode};
use uuid::Uuid;

use crate::sample;

#[derive(clap::Subcommand)]
pub enum Bench {
    /// Append synthetic events and report throughput and latency.
    Append(AppendArgs),
    /// Time `verify` over the whole database.
    Verify,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Share {
    /// Every writer has its own tenant (chain) and stream.
    Nothing,
    /// All writers append to one tenant's chain, each to its own stream.
    Tenant,
    /// All writers append to one stream (expected version: any).
    Stream,
}

#[derive(clap::Args)]
pub struct AppendArgs {
    /// Concurrent writers.
    #[arg(long, default_value_t = 16)]
    writers: usize,
    /// Events per append.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Appends per writer.
    #[arg(long, default_value_t = 1000)]
    appends: usize,
    /// What the writers share.
    #[arg(long, value_enum, default_value_t = Share::Nothing)]
    share: Share,
    /// Verify the log afterwards.
    #[arg(long)]
    verify: bool,
}

/// Benchmarks name their database explicitly (`url`), so that nobody
/// benchmarks into the default file by accident.
pub async fn run(url: &str, bench: Bench) -> Result<ExitCode, String> {
    match bench {
        Bench::Append(args) => append(url, args).await,
        Bench::Verify => verify(url).await,
    }
}

async fn append(url: &str, args: AppendArgs) -> Result<ExitCode, String> {
    if args.writers == 0 || args.batch == 0 || args.appends == 0 {
        return Err("--writers, --batch and --appends must be at least 1".to_owned());
    }
    let store = open_event_store(url, OpenMode::Migrate, args.writers as u32 + 1)
        .await
        .map_err(|e| e.to_string())?;
    let shared_chain = ChainId::Tenant(TenantId::generate());
    let shared_stream = stream();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.writers {
        let store = store.clone();
        let (chain, stream) = match args.share {
            Share::Nothing => (ChainId::Tenant(TenantId::generate()), stream()),
            Share::Tenant => (shared_chain, stream()),
            Share::Stream => (shared_chain, shared_stream.clone()),
        };
        let (share, batch, appends) = (args.share, args.batch, args.appends);
        tasks.push(tokio::spawn(async move {
            write(store, chain, stream, share, batch, appends).await
        }));
    }
    let mut latencies = Vec::with_capacity(args.writers * args.appends);
    for task in tasks {
        latencies.extend(task.await.map_err(|e| e.to_string())??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let appends = latencies.len();
    let events = appends * args.batch;
    println!(
        "appended {events} events in {appends} appends ({} writers, {} events/append, sharing {}) in {elapsed:.2}s",
        args.writers,
        args.batch,
        match args.share {
            Share::Nothing => "nothing",
            Share::Tenant => "a tenant",
            Share::Stream => "a stream",
        }
    );
    println!(
        "throughput: {:.0} events/s, {:.0} appends/s",
        events as f64 / elapsed,
        appends as f64 / elapsed
    );
    let at = |q: f64| latencies[((appends as f64 * q) as usize).min(appends - 1)];
    println!(
        "append latency: p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        at(0.50),
        at(0.90),
        at(0.99),
        latencies[appends - 1]
    );
    if args.verify {
        return verify_store(&*store).await;
    }
    Ok(ExitCode::SUCCESS)
}

fn stream() -> StreamId {
    StreamId::new(
        StreamCategory::parse("user").expect("valid category"),
        Uuid::now_v7(),
    )
}

async fn write(
    store: Arc<dyn EventStore>,
    chain: ChainId,
    stream: StreamId,
    share: Share,
    batch: usize,
    appends: usize,
) -> Result<Vec<Duration>, String> {
    let mut latencies = Vec::with_capacity(appends);
    let mut version = StreamVersion::EMPTY;
    for _ in 0..appends {
        let expected = match share {
            Share::Stream => ExpectedVersion::Any,
            _ => ExpectedVersion::Exactly(version),
        };
        let request = sample::request(
            chain,
            &stream,
            expected,
            sample::events("BenchEvent", batch),
            "bench",
        );
        let started = Instant::now();
        let appended = store.append(request).await.map_err(|e| e.to_string())?;
        latencies.push(started.elapsed());
        version = appended.stream_version;
    }
    Ok(latencies)
}

async fn verify(url: &str) -> Result<ExitCode, String> {
    let store = open_event_store(url, OpenMode::Existing, 2)
        .await
        .map_err(|e| e.to_string())?;
    verify_store(&*store).await
}

async fn verify_store(store: &dyn EventStore) -> Result<ExitCode, String> {
    let started = Instant::now();
    let report = verify_log(store, None, &|_| {})
        .await
        .map_err(|e| e.to_string())?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "verify: {} events in {} chains in {elapsed:.2}s ({:.0} events/s): {}",
        report.events,
        report.chains,
        report.events as f64 / elapsed,
        if report.is_intact() {
            "intact"
        } else {
            "BROKEN"
        }
    );
    Ok(if report.is_intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::EXIT_BROKEN)
    })
}
