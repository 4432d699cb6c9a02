//! `custodia bench …`: measurements that print figures.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use custodia_application::{verify_log, EventStore, ExpectedVersion};
use custodia_domain::{ChainId, StreamCategory, StreamId, StreamVersion, TenantId};

use custodia_infrastructure::{open_event_store, OpenMode};
use uuid::Uuid;

mod audit;
mod erasure;
mod history;
mod keys;
mod sample;

#[derive(clap::Subcommand)]
pub enum Bench {
    /// Append synthetic events and report throughput and latency.
    Append(AppendArgs),
    /// Time `verify` over the whole database.
    Verify,
    /// Time Argon2id hashing and verification at the production parameters.
    Passwords(PasswordArgs),
    /// Commands per second through the full handler pipeline (authorize,
    /// load, decide, seal personal data, append).
    Commands(CommandArgs),
    /// Refresh and login latency against the length of the session's or
    /// account's history, and the time to fold a long stream.
    History(history::HistoryArgs),
    /// Time to erase a data subject against the length of their history.
    Erasure(erasure::ErasureArgs),
    /// The key store: sealing, opening, backup, restore and master-key
    /// rotation against the number of keys (SQLite files made beside
    /// --database-url).
    Keys(keys::KeysArgs),
    /// Offline verification of audit exports (`custodia audit verify`)
    /// against the chain's length; needs no database.
    Audit(audit::AuditArgs),
}

#[derive(clap::Args)]
pub struct PasswordArgs {
    /// Hashes to time.
    #[arg(long, default_value_t = 20)]
    count: usize,
}

#[derive(clap::Args)]
pub struct CommandArgs {
    /// Concurrent callers.
    #[arg(long, default_value_t = 8)]
    writers: usize,
    /// Users each caller registers (then updates once each).
    #[arg(long, default_value_t = 200)]
    users: usize,
    /// Run every projection meanwhile, as a server does, and report their
    /// lag: the age of the oldest event not yet applied, sampled every 5 ms.
    #[arg(long)]
    projections: bool,
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

/// Benchmarks that touch a database name it explicitly (`url`), so that
/// nobody benchmarks into the default file by accident.
pub async fn run(url: Option<&str>, bench: Bench) -> Result<ExitCode, String> {
    let url = || url.ok_or("this benchmark needs --database-url (or DATABASE_URL)".to_owned());
    match bench {
        Bench::Append(args) => append(url()?, args).await,
        Bench::Verify => verify(url()?).await,
        Bench::Passwords(args) => passwords(args).await,
        Bench::Commands(args) => commands(url()?, args).await,
        Bench::History(args) => history::run(url()?, args).await,
        Bench::Erasure(args) => erasure::run(url()?, args).await,
        Bench::Keys(args) => keys::run(url()?, args).await,
        Bench::Audit(args) => audit::run(args),
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

pub(crate) fn percentiles(label: &str, mut samples: Vec<Duration>) {
    if samples.is_empty() {
        println!("{label}: no samples");
        return;
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "{label}: p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        at(0.5),
        at(0.9),
        at(0.99),
        samples[samples.len() - 1]
    );
}

async fn passwords(args: PasswordArgs) -> Result<ExitCode, String> {
    use custodia_application::PasswordHasher;
    use custodia_infrastructure::passwords::{ARGON2_M_KIB, ARGON2_P, ARGON2_T};
    let hasher = custodia_infrastructure::Argon2Passwords::new();
    let count = args.count.max(1);
    let (mut hashing, mut verifying) = (Vec::with_capacity(count), Vec::with_capacity(count));
    for i in 0..count {
        let password = format!("benchmark password number {i}");
        let started = Instant::now();
        let hash = hasher.hash(&password).await.map_err(|e| e.to_string())?;
        hashing.push(started.elapsed());
        let started = Instant::now();
        hasher
            .verify(&password, &hash)
            .await
            .map_err(|e| e.to_string())?;
        verifying.push(started.elapsed());
    }
    println!(
        "Argon2id m={ARGON2_M_KIB} KiB t={ARGON2_T} p={ARGON2_P}, {count} hashes (one at a time)"
    );
    percentiles("hash", hashing);
    percentiles("verify", verifying);
    Ok(ExitCode::SUCCESS)
}

/// The handlers' ports on the database at `url`, with a fresh master key
/// and signing key, hashing passwords at `cost`.
pub(crate) async fn ports(
    url: &str,
    connections: u32,
    cost: custodia_infrastructure::passwords::Argon2Cost,
) -> Result<custodia_application::commands::Ports, String> {
    let store = open_event_store(url, OpenMode::Migrate, connections)
        .await
        .map_err(|e| e.to_string())?;
    // The key store where the server keeps it (on SQLite, a file of its own).
    let vault = custodia_infrastructure::KeyVault::connect(
        &custodia_infrastructure::default_keys_url(url),
        custodia_infrastructure::MasterKey::generate(),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(custodia_application::commands::Ports {
        store,
        vault: Arc::new(vault),
        passwords: Arc::new(custodia_infrastructure::Argon2Passwords::new().with_cost(cost)),
        codes: Arc::new(custodia_infrastructure::Totp),
        tokens: Arc::new(custodia_infrastructure::Ed25519Signer::generate(
            "custodia",
            "custodia-api",
        )),
        unknown_logins: Arc::default(),
        links: Arc::new(custodia_application::commands::account::LinkBase(
            "http://localhost:8080".to_owned(),
        )),
    })
}

/// The platform operator, as a benchmark acts.
pub(crate) fn operator() -> custodia_application::commands::Caller {
    custodia_application::commands::Caller {
        principal: custodia_domain::rbac::Principal::PlatformOperator,
        actor: custodia_domain::Actor::System,
        command_id: custodia_domain::CommandId::generate(),
        correlation_id: Uuid::now_v7(),
        origin: custodia_domain::Origin::parse("bench").expect("valid origin"),
        expected_version: None,
        session: None,
    }
}

/// A new tenant whose owner has `email` and, if given, `password`.
pub(crate) async fn tenant(
    ports: &custodia_application::commands::Ports,
    email: &str,
    password: Option<&str>,
) -> Result<TenantId, String> {
    use custodia_application::commands::tenants::{create_tenant, CreateTenant};
    use custodia_application::commands::users::{NewUser, Profile};
    let tenant = TenantId::generate();
    let owner = NewUser {
        address_vouched: false,
        user: Uuid::now_v7(),
        email: email.into(),
        profile: Profile::default(),
        invited: false,
        password: password.map(str::to_owned),
    };
    create_tenant(
        ports,
        &operator(),
        CreateTenant {
            tenant,
            name: "Bench".into(),
            settings: custodia_domain::identity::tenant::TenantSettings::default(),
            owner,
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(tenant)
}

async fn commands(url: &str, args: CommandArgs) -> Result<ExitCode, String> {
    use custodia_application::commands::users::{register_user, update_profile, NewUser, Profile};
    use custodia_infrastructure::passwords::Argon2Cost;

    let ports = ports(url, args.writers as u32 + 2, Argon2Cost::PRODUCTION).await?;
    let caller = operator;
    let tenant = tenant(&ports, "owner@bench.example", None).await?;
    let projections = match args.projections {
        true => Some(RunningProjections::start(url, &ports.store).await?),
        false => None,
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for writer in 0..args.writers {
        let ports = ports.clone();
        let users = args.users;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(users * 2);
            for i in 0..users {
                let user = Uuid::now_v7();
                let profile = Profile {
                    display_name: Some(format!("User {writer}-{i}")),
                    phone: Some("+1 555 0100".into()),
                    ..Profile::default()
                };
                let new = NewUser {
                    address_vouched: false,
                    user,
                    email: format!("u{writer}-{i}@bench.example"),
                    profile,
                    invited: false,
                    password: None,
                };
                let at = Instant::now();
                register_user(&ports, &caller(), tenant, new)
                    .await
                    .map_err(|e| e.to_string())?;
                latencies.push(at.elapsed());
                let at = Instant::now();
                let renamed = Profile {
                    display_name: Some(format!("Renamed {writer}-{i}")),
                    ..Profile::default()
                };
                update_profile(&ports, &caller(), tenant, user, renamed)
                    .await
                    .map_err(|e| e.to_string())?;
                latencies.push(at.elapsed());
            }
            Ok::<_, String>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.map_err(|e| e.to_string())??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{} commands ({} register_user + {} update_profile, {} callers, one tenant) in {elapsed:.2}s: {:.0} commands/s",
        latencies.len(),
        latencies.len() / 2,
        latencies.len() / 2,
        args.writers,
        latencies.len() as f64 / elapsed
    );
    percentiles("command latency", latencies);
    if let Some(projections) = projections {
        projections.finish().await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Every projection run by one runner, as a server runs them, and their lag
/// sampled meanwhile.
struct RunningProjections {
    store: Arc<dyn EventStore>,
    models: Arc<dyn custodia_application::ReadModels>,
    stop: tokio::sync::watch::Sender<bool>,
    runner: tokio::task::JoinHandle<()>,
    sampler: tokio::task::JoinHandle<Result<Vec<Duration>, String>>,
}

/// The age of the oldest event some projection has not applied (zero when
/// all are caught up).
async fn lag(
    store: &dyn EventStore,
    models: &dyn custodia_application::ReadModels,
    names: &[&str],
) -> Result<Duration, String> {
    let checkpoints = models.checkpoints().await.map_err(|e| e.to_string())?;
    let oldest = names
        .iter()
        .map(|name| {
            checkpoints
                .iter()
                .find(|c| c.name == *name)
                .map_or(custodia_domain::LogCursor::START, |c| c.cursor)
        })
        .min()
        .unwrap_or_default();
    let next = store.read_all(oldest, 1).await.map_err(|e| e.to_string())?;
    let now = custodia_domain::Timestamp::now().0;
    Ok(next.first().map_or(Duration::ZERO, |event| {
        Duration::from_micros(u64::try_from(now - event.recorded_at.0).unwrap_or(0))
    }))
}

impl RunningProjections {
    async fn start(url: &str, store: &Arc<dyn EventStore>) -> Result<Self, String> {
        let models: Arc<dyn custodia_application::ReadModels> = Arc::new(
            custodia_infrastructure::SqlReadModels::connect(url)
                .await
                .map_err(|e| e.to_string())?,
        );
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let runner = custodia_projections::Runner {
            projections: custodia_projections::all(),
            store: store.clone(),
            models: models.clone(),
            holder: Uuid::now_v7(),
            config: custodia_projections::RunnerConfig::default(),
            commits: tokio::sync::watch::Sender::new(0),
        };
        let runner = tokio::spawn(runner.run(stopped.clone()));
        let sampler = {
            let (store, models) = (store.clone(), models.clone());
            let mut stopped = stopped;
            tokio::spawn(async move {
                let all = custodia_projections::all();
                let names: Vec<&str> = all.iter().map(|p| p.name()).collect();
                let mut samples = Vec::new();
                while !*stopped.borrow_and_update() {
                    samples.push(lag(&*store, &*models, &names).await?);
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                        _ = stopped.changed() => {}
                    }
                }
                Ok(samples)
            })
        };
        Ok(Self {
            store: store.clone(),
            models,
            stop,
            runner,
            sampler,
        })
    }

    /// Prints the lag sampled while the commands ran and how long the
    /// projections took to catch up after the last one; stops them.
    async fn finish(self) -> Result<(), String> {
        let ended = Instant::now();
        let all = custodia_projections::all();
        let names: Vec<&str> = all.iter().map(|p| p.name()).collect();
        while lag(&*self.store, &*self.models, &names).await? > Duration::ZERO {
            if ended.elapsed() > Duration::from_secs(60) {
                return Err("the projections did not catch up within 60 s".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let caught_up = ended.elapsed();
        let _ = self.stop.send(true);
        let samples = self.sampler.await.map_err(|e| e.to_string())??;
        let _ = self.runner.await;
        percentiles(
            &format!(
                "projection lag while the commands ran ({} samples, every 5 ms)",
                samples.len()
            ),
            samples,
        );
        println!(
            "all {} projections caught up {caught_up:?} after the last command",
            names.len()
        );
        Ok(())
    }
}
