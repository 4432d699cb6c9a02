//! The `custodia` binary: the server, its first-run path, migrations, chain
//! verification, projection rebuilds, the GraphQL schema, and benchmarks.

mod bench;
mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use custodia_infrastructure::DEFAULT_DATABASE_URL;

#[derive(Parser)]
#[command(
    name = "custodia",
    version,
    about = "Event-sourced identity and compliance backend"
)]
struct Cli {
    /// sqlite://FILE or postgres://USER@HOST/DB [default: sqlite://custodia.db,
    /// except for benchmarks, which must name their database].
    #[arg(long, global = true, env = "DATABASE_URL")]
    database_url: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (embedded SQLite by default; PostgreSQL through DATABASE_URL).
    #[command(after_help = cli::serve::CONFIGURATION)]
    Serve(cli::serve::ServeArgs),
    /// Create the first tenant and its owner.
    Bootstrap(cli::bootstrap::BootstrapArgs),
    /// Suspend or reactivate a tenant, or give it an owner (platform operator).
    #[command(subcommand)]
    Tenant(cli::tenant::TenantCommand),
    /// Erase a data subject (platform operator).
    #[command(subcommand)]
    Privacy(cli::privacy::PrivacyCommand),
    /// Merkle proofs over a chain: an event's inclusion, two sizes'
    /// consistency.
    #[command(subcommand)]
    Audit(cli::audit::AuditCommand),
    /// SCIM provisioning: create or revoke a tenant's SCIM tokens.
    #[command(subcommand)]
    Scim(cli::scim::ScimCommand),
    /// Back up or restore the key store, or rotate the master key.
    #[command(subcommand)]
    Keys(cli::keys::KeysCommand),
    /// Apply pending schema migrations for the configured backend.
    Migrate,
    /// Recompute every hash chain and name the first broken link of each.
    Verify(cli::verify::Args),
    /// Fill the database with a small sample log, then verify it.
    Demo(cli::demo::Args),
    /// Rebuild read models, or show where each projection is.
    #[command(subcommand)]
    Projections(cli::projections::Projections),
    /// Manage aggregate snapshots (derived data, ADR 0008).
    #[command(subcommand)]
    Snapshots(Snapshots),
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Measure the event store.
    #[command(subcommand)]
    Bench(bench::Bench),
}

#[derive(Subcommand)]
enum Snapshots {
    /// Delete every snapshot; commands fold from the events again and save
    /// new ones. Safe at any time, also while servers run.
    Drop,
}

/// Exit status for "the log is not intact".
pub const EXIT_BROKEN: u8 = 1;
/// Exit status for "could not do what was asked" (bad input, no database).
pub const EXIT_FAILED: u8 = 2;

/// Large allocations (an Argon2id hash takes 19 MiB while it runs) go back
/// to the system when freed. glibc raises its mmap threshold after the first
/// such free and would keep every later one in its heaps, so that memory
/// after a burst of logins never came back; a fixed threshold keeps it
/// dynamic-free.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_allocations() {
    // SAFETY: mallopt only sets a parameter of the allocator; it is called
    // before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_allocations() {}

/// A command whose output goes to a pipe that closes (`custodia verify |
/// head -1`) ends as other command-line tools do, not with a panic. (The
/// server keeps ignoring SIGPIPE: a client that hangs up is not an exit.)
#[cfg(unix)]
fn stop_quietly_on_a_closed_pipe() {
    // SAFETY: resets one signal's disposition to the default before any
    // other thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn stop_quietly_on_a_closed_pipe() {}

fn main() -> ExitCode {
    return_large_allocations();
    // Before the command line is parsed (it reads the environment) and
    // before any thread starts (this sets environment variables).
    if let Err(message) = cli::config_file::load() {
        eprintln!("error: {message}");
        return ExitCode::from(EXIT_FAILED);
    }
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        stop_quietly_on_a_closed_pipe();
    }
    let database_url = cli.database_url.as_deref().unwrap_or(DEFAULT_DATABASE_URL);
    let outcome = match cli.command {
        // The server runs on actix's own runtime.
        Command::Serve(args) => cli::serve::serve(database_url, args),
        Command::Schema => {
            print!("{}", custodia::graphql::sdl());
            Ok(ExitCode::SUCCESS)
        }
        command => tokio::runtime::Runtime::new()
            .map_err(|error| format!("cannot start the async runtime: {error}"))
            .and_then(|runtime| {
                let outcome = runtime.block_on(async {
                    match command {
                        Command::Serve(_) | Command::Schema => unreachable!("handled above"),
                        Command::Projections(command) => {
                            cli::projections::run(database_url, command).await
                        }
                        Command::Bootstrap(args) => {
                            cli::bootstrap::bootstrap(database_url, args).await
                        }
                        Command::Tenant(command) => {
                            cli::tenant::tenant(database_url, command).await
                        }
                        Command::Privacy(command) => cli::privacy::run(database_url, command).await,
                        Command::Keys(command) => cli::keys::run(database_url, command).await,
                        Command::Scim(command) => cli::scim::run(database_url, command).await,
                        Command::Audit(command) => cli::audit::run(database_url, command).await,
                        Command::Migrate => cli::database::migrate(database_url).await,
                        Command::Snapshots(Snapshots::Drop) => {
                            cli::database::drop_snapshots(database_url).await
                        }
                        Command::Verify(args) => cli::verify::run(database_url, args).await,
                        Command::Demo(args) => cli::demo::run(database_url, args).await,
                        Command::Bench(bench) => {
                            bench::run(cli.database_url.as_deref(), bench).await
                        }
                    }
                });
                // A task that never yields cannot keep the process from
                // exiting once the command is done.
                runtime.shutdown_timeout(std::time::Duration::from_secs(5));
                outcome
            }),
    };
    outcome.unwrap_or_else(|message| {
        eprintln!("error: {message}");
        ExitCode::from(EXIT_FAILED)
    })
}
