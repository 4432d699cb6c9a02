//! `custodia projections rebuild [NAME]`: replays the log into one
//! projection's read models (or all of them) from scratch.

use std::process::ExitCode;
use std::sync::Arc;

use custodia_application::{CommitError, EventStore, ReadModels};
use custodia_infrastructure::{open_event_store, OpenMode, SqlReadModels};
use custodia_projections::{rebuild, ProjectionError, RunnerConfig};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Subcommand)]
pub enum Projections {
    /// Rebuild a projection (all when no name is given) from the whole log.
    /// Refused while a running server holds the projection.
    Rebuild {
        /// tenants, users, memberships, sessions, consents, audit, api_keys or merkle.
        name: Option<String>,
    },
    /// Each projection's checkpoint and which process holds it.
    Status,
}

pub async fn run(database_url: &str, command: Projections) -> Result<ExitCode, String> {
    let store = open_event_store(database_url, OpenMode::Migrate, 4)
        .await
        .map_err(|e| e.to_string())?;
    let models = SqlReadModels::connect(database_url)
        .await
        .map_err(|e| e.to_string())?;
    match command {
        Projections::Status => {
            let now = custodia_domain::Timestamp::now().0;
            for checkpoint in models.checkpoints().await.map_err(|e| e.to_string())? {
                let holder = if checkpoint.lease_until > now {
                    format!(
                        "held by {} until {}",
                        checkpoint.holder,
                        custodia_domain::Timestamp(checkpoint.lease_until)
                    )
                } else {
                    "free (no process holds it)".to_owned()
                };
                println!(
                    "{:<12} at {:<20} {holder}",
                    checkpoint.name,
                    checkpoint.cursor.to_string(),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Projections::Rebuild { name } => rebuild_named(&store, &models, name.as_deref()).await,
    }
}

async fn rebuild_named(
    store: &Arc<dyn EventStore>,
    models: &SqlReadModels,
    name: Option<&str>,
) -> Result<ExitCode, String> {
    let all = custodia_projections::all();
    let chosen: Vec<_> = all
        .iter()
        .filter(|p| name.is_none_or(|n| n == p.name()))
        .cloned()
        .collect();
    if chosen.is_empty() {
        let names: Vec<_> = all.iter().map(|p| p.name()).collect();
        return Err(format!(
            "no projection {}; there are {}",
            name.unwrap_or_default(),
            names.join(", ")
        ));
    }
    let names: Vec<_> = chosen.iter().map(|p| p.name()).collect();
    let names = names.join(", ");
    let total: u64 = store
        .chains()
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(|c| c.events)
        .sum();
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("[{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let started = std::time::Instant::now();
    // All of them together: the log is read once, and each batch is one
    // transaction for all of them.
    let applied = rebuild(&chosen, store, models, RunnerConfig::default(), |n| {
        bar.inc(n)
    })
    .await
    .map_err(|e| match e {
        ProjectionError::Commit(CommitError::LeaseLost) => format!(
            "projections {names}: one of them is running in another process (a server?): stop it, or wait until its lease lapses"
        ),
        other => other.to_string(),
    })?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "rebuilt {names} from {applied} events in {seconds:.2} s ({:.0} events/s)",
        applied as f64 / seconds.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}
