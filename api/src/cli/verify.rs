//! `custodia verify`: recompute every chain, report each broken chain's
//! first broken link, exit 0 only when the whole log is intact.

use std::process::ExitCode;
use std::time::Instant;

use custodia_application::verify_log;
use custodia_domain::{ChainId, TenantId};
use custodia_infrastructure::{open_event_store, OpenMode};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Args)]
pub struct Args {
    /// Verify only this tenant's chain.
    #[arg(long, conflicts_with = "platform")]
    tenant: Option<TenantId>,
    /// Verify only the platform chain.
    #[arg(long)]
    platform: bool,
}

pub async fn run(database_url: &str, args: Args) -> Result<ExitCode, String> {
    let store = open_event_store(database_url, OpenMode::Existing, 2)
        .await
        .map_err(|e| e.to_string())?;
    let only = match (args.tenant, args.platform) {
        (Some(tenant), _) => Some(ChainId::Tenant(tenant)),
        (None, true) => Some(ChainId::Platform),
        (None, false) => None,
    };
    let chains = store.chains().await.map_err(|e| e.to_string())?;
    if let Some(chain) = only.filter(|chain| !chains.iter().any(|c| c.chain == *chain)) {
        return Err(format!("the log holds no chain of {chain}"));
    }
    let total: u64 = chains
        .iter()
        .filter(|c| only.is_none_or(|chain| chain == c.chain))
        .map(|c| c.events)
        .sum();
    // Drawn on stderr, and only when it is a terminal.
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "{spinner} verifying [{bar:30}] {human_pos}/{human_len} events, {eta} left",
        )
        .expect("the template is valid")
        .progress_chars("=> "),
    );
    let started = Instant::now();
    let report = verify_log(&*store, only, &|n| bar.inc(n))
        .await
        .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let rate = report.events as f64 / seconds.max(1e-9);
    // Each chain: its length and, when intact, its head, which an auditor
    // can note and compare with a later run.
    for line in &report.lines {
        match &line.head {
            Some(head) => println!(
                "chain {}: {} events, head {}",
                line.chain,
                line.events,
                hex::encode(head.last_hash.0)
            ),
            None => println!(
                "chain {}: broken after {} events read",
                line.chain, line.events
            ),
        }
    }
    for (chain, error) in &report.failures {
        println!("UNREADABLE chain {chain}: {error}");
    }
    if report.is_intact() {
        println!(
            "intact: verified {} events in {} chains in {seconds:.2}s ({rate:.0} events/s)",
            report.events, report.chains
        );
        return Ok(ExitCode::SUCCESS);
    }
    for broken in &report.breaks {
        println!("BROKEN {broken}");
    }
    println!(
        "NOT INTACT: {} of {} chains broken or unreadable ({} events read in {seconds:.2}s)",
        report.breaks.len() + report.failures.len(),
        report.chains,
        report.events
    );
    Ok(ExitCode::from(crate::EXIT_BROKEN))
}
