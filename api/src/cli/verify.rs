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
    /// Check an erasure receipt (JSON, as `eraseSubject` or `custodia
    /// privacy erase-subject` gave it) against the log, then verify the
    /// chain that holds its event.
    #[arg(long, conflicts_with_all = ["tenant", "platform"])]
    receipt: Option<std::path::PathBuf>,
    /// Check the log against signed checkpoints kept elsewhere (a file
    /// `custodia audit checkpoint` wrote): names a deleted tail, a
    /// truncated chain, or a changed and re-hashed prefix.
    #[arg(long, conflicts_with_all = ["receipt"])]
    against: Option<std::path::PathBuf>,
    /// A checkpoint verifier key (`custodia audit key`) to trust; more than
    /// one may be given.
    #[arg(long)]
    checkpoint_key: Vec<String>,
}

pub async fn run(database_url: &str, args: Args) -> Result<ExitCode, String> {
    let store = open_event_store(database_url, OpenMode::Existing, 2)
        .await
        .map_err(|e| e.to_string())?;
    let mut only = match (args.tenant, args.platform) {
        (Some(tenant), _) => Some(ChainId::Tenant(tenant)),
        (None, true) => Some(ChainId::Platform),
        (None, false) => None,
    };
    if let Some(path) = &args.receipt {
        let (chain, matches) = check_receipt(&*store, path, &args.checkpoint_key).await?;
        if !matches {
            return Ok(ExitCode::from(crate::EXIT_BROKEN));
        }
        only = Some(chain);
    }
    if let Some(path) = &args.against {
        if args.checkpoint_key.is_empty() {
            return Err("--against needs the checkpoint key to trust (--checkpoint-key; custodia audit key prints it)".into());
        }
        let keys = args
            .checkpoint_key
            .iter()
            .map(|key| custodia_infrastructure::signed_note::NoteVerifier::parse(key.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("--checkpoint-key: {e}"))?;
        let (lines, intact) = super::checkpoints::check(&*store, path, &keys).await?;
        for line in lines {
            println!("{line}");
        }
        if !intact {
            return Ok(ExitCode::from(crate::EXIT_BROKEN));
        }
    }
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
    // Each chain: its length and, when intact, its head and Merkle root,
    // which an auditor can note and compare with a later run.
    for line in &report.lines {
        match (&line.head, &line.root) {
            (Some(head), Some(root)) => println!(
                "chain {}: {} events, head {}, merkle root {}",
                line.chain,
                line.events,
                hex::encode(head.last_hash.0),
                hex::encode(root)
            ),
            _ => println!(
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

/// Compares a receipt with the event the log holds at its place; prints
/// each difference. Returns the event's chain and whether all matched.
async fn check_receipt(
    store: &dyn custodia_application::EventStore,
    path: &std::path::Path,
    checkpoint_keys: &[String],
) -> Result<(ChainId, bool), String> {
    use custodia_application::commands::privacy::{ErasureReceipt, ReceiptEvent};
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let receipt: ErasureReceipt = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not an erasure receipt: {e}", path.display()))?;
    let chain = match TenantId::from_uuid(receipt.tenant) {
        Ok(tenant) if receipt.event.chain != "platform" => ChainId::Tenant(tenant),
        _ => ChainId::Platform,
    };
    let found = store
        .read_chain(
            chain,
            custodia_domain::ChainIndex(receipt.event.chain_index),
            1,
        )
        .await
        .map_err(|e| e.to_string())?;
    let Some(event) = found.first() else {
        println!(
            "RECEIPT MISMATCH: {chain} holds no event at chain index {}",
            receipt.event.chain_index
        );
        return Ok((chain, false));
    };
    let logged = ReceiptEvent::of(event);
    // What was erased: the user's stream, or the tenant's erasure record.
    let subject_stream = receipt.subject.map(|s| format!("user:{s}"));
    let mut differences = Vec::new();
    let mut differ = |field: &str, receipt: String, log: String| {
        if receipt != log {
            differences.push(format!("{field}: receipt {receipt}, log {log}"));
        }
    };
    differ(
        "event id",
        receipt.event.id.to_string(),
        logged.id.to_string(),
    );
    differ(
        "event type",
        receipt.event.event_type.clone(),
        logged.event_type,
    );
    differ("chain", receipt.event.chain.clone(), logged.chain);
    differ(
        "position",
        receipt.event.position.to_string(),
        logged.position.to_string(),
    );
    differ(
        "stream",
        receipt.event.stream.clone(),
        logged.stream.clone(),
    );
    differ(
        "stream version",
        receipt.event.stream_version.to_string(),
        logged.stream_version.to_string(),
    );
    differ("hash", receipt.event.hash.clone(), logged.hash.clone());
    let erased_stream =
        subject_stream.unwrap_or_else(|| format!("tenant_erasure:{}", receipt.tenant));
    differ("subject", erased_stream, logged.stream);
    let kind = match event.event_type.as_str() {
        "SubjectErased" => "subject",
        "TenantErased" => "tenant",
        _ => "neither",
    };
    differ("erased", receipt.erased.clone(), kind.to_owned());
    differ(
        "erased at",
        receipt.erased_at.clone(),
        event.recorded_at.to_string(),
    );
    // An inclusion proof under a signed checkpoint: checked with the keys
    // the auditor trusts.
    if let Some(proof) = &receipt.inclusion_proof {
        match check_inclusion(proof, &receipt.event, chain, checkpoint_keys) {
            Ok(size) => println!("receipt: included in the signed checkpoint of size {size}"),
            Err(why) => differ("inclusion proof", why, "a proof that verifies".to_owned()),
        }
    }
    // The keys and the reference the receipt names are the event's.
    let payload: serde_json::Value =
        serde_json::from_slice(event.payload.as_bytes()).unwrap_or_default();
    differ(
        "keys destroyed",
        serde_json::json!(receipt.keys_destroyed).to_string(),
        payload["keys"].to_string(),
    );
    differ(
        "reference",
        serde_json::json!(receipt.reference).to_string(),
        payload["reference"].to_string(),
    );
    if differences.is_empty() {
        println!(
            "receipt: matches the log (event {} at position {}, hash {})",
            receipt.event.event_type, receipt.event.position, receipt.event.hash
        );
        return Ok((chain, true));
    }
    for difference in differences {
        println!("RECEIPT MISMATCH: {difference}");
    }
    Ok((chain, false))
}

/// Checks a receipt's inclusion proof: the checkpoint note opens with one
/// of `keys`, names the receipt's chain, and the proof leads from the
/// event's hash at its chain index to the checkpoint's root. Returns the
/// checkpoint's size.
fn check_inclusion(
    proof: &serde_json::Value,
    event: &custodia_application::commands::privacy::ReceiptEvent,
    chain: ChainId,
    keys: &[String],
) -> Result<u64, String> {
    use custodia_infrastructure::signed_note::{open, Checkpoint, NoteVerifier};
    if keys.is_empty() {
        return Err("give --checkpoint-key (custodia audit key) to check it".into());
    }
    let keys = keys
        .iter()
        .map(|key| NoteVerifier::parse(key.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--checkpoint-key: {e}"))?;
    let note = proof["checkpoint"].as_str().ok_or("no checkpoint")?;
    let opened = open(note, &keys).map_err(|e| format!("the checkpoint: {e}"))?;
    let checkpoint = Checkpoint::parse(&opened.text).map_err(|e| e.to_string())?;
    let key = custodia_projections::merkle::chain_key(chain);
    if checkpoint.origin.rsplit_once('/').map(|(_, k)| k) != Some(key.as_str()) {
        return Err(format!(
            "the checkpoint is of {}, not of {chain}",
            checkpoint.origin
        ));
    }
    let index = proof["index"].as_u64().ok_or("no index")?;
    if index != event.chain_index || proof["tree_size"].as_u64() != Some(checkpoint.size) {
        return Err("its index or size is not the event's and the checkpoint's".into());
    }
    let event_hash = hex::decode(&event.hash).map_err(|_| "the event hash is not hex")?;
    let leaf = custodia_domain::merkle::leaf_hash(&event_hash);
    if proof["leaf_hash"].as_str() != Some(hex::encode(leaf).as_str()) {
        return Err("its leaf is not the event's hash".into());
    }
    let path: Vec<Vec<u8>> = proof["proof"]
        .as_array()
        .ok_or("no proof")?
        .iter()
        .map(|h| {
            h.as_str()
                .and_then(|h| hex::decode(h).ok())
                .ok_or("a proof hash is not hex")
        })
        .collect::<Result<_, _>>()?;
    custodia_domain::merkle::verify_inclusion(
        index,
        checkpoint.size,
        &leaf,
        &path,
        &checkpoint.root,
    )
    .map_err(|e| e.to_string())?;
    Ok(checkpoint.size)
}
