//! Signing checkpoints (docs/audit-format.md): a C2SP `tlog-checkpoint`
//! of a chain's Merkle root, signed with the key store's checkpoint key,
//! only when consistent with the chain's last checkpoint.
//!
//! The server signs one for each chain with activity every
//! `CUSTODIA_CHECKPOINT_EVENTS` events or `CUSTODIA_CHECKPOINT_SECONDS`
//! seconds, whichever comes first, in one instance at a time (lease
//! `job:checkpoints`); each is kept in the log's database and, when
//! `CUSTODIA_CHECKPOINT_FILE` names a file, appended to it as a JSON line
//! (`{"checkpoint": "<note>"}`) to ship off the machine. `custodia audit
//! checkpoint` signs on demand into a file of the operator's.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use custodia_application::{EventStore, ReadModels};
use custodia_domain::merkle::{consistency_proof, root, verify_consistency};
use custodia_domain::{ChainId, Timestamp};
use custodia_infrastructure::checkpoints::{CheckpointStore, Kept};
use custodia_infrastructure::signed_note::{open, Checkpoint, NoteSigner, NoteVerifier};
use custodia_infrastructure::KeyVault;
use custodia_projections::merkle::{chain_key, size, with_subtrees};
use uuid::Uuid;

/// The lease's name in the table projections use for theirs.
pub const LEASE: &str = "job:checkpoints";

/// When and where the server signs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The log's name: the key's name and the origins' prefix.
    pub log_name: String,
    pub every_events: u64,
    pub every: Duration,
    pub sink: Option<PathBuf>,
}

/// A chain's origin: `<checkpoint key name>/<platform or tenant id>`. The
/// key is named after the log when it is made (`CUSTODIA_LOG_NAME`); its
/// name, not the setting, makes the origin, so a verifier can tie every
/// origin to the key that signs it.
pub fn origin(key_name: &str, chain: ChainId) -> String {
    format!("{key_name}/{}", chain_key(chain))
}

/// Why a checkpoint was not signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error(
        "{chain}: the log ({size} events) is not consistent with its last checkpoint (size {last}): \
         not signed; the log was changed (custodia verify --against names where)"
    )]
    Inconsistent {
        chain: ChainId,
        size: u64,
        last: u64,
    },
    #[error(transparent)]
    Store(#[from] custodia_application::StoreError),
    #[error("{0}")]
    Note(String),
}

/// The checkpoint of `chain` as far as the Merkle rows cover it, signed,
/// if it grew since `previous` (size, root) and is consistent with it.
/// `Ok(None)`: nothing new since `previous`.
pub async fn sign_chain(
    models: &dyn ReadModels,
    signer: &NoteSigner,
    chain: ChainId,
    previous: Option<(u64, [u8; 32])>,
) -> Result<Option<(Checkpoint, String)>, SignError> {
    let tree_size = size(models, chain).await?;
    if tree_size == 0 {
        return Ok(None);
    }
    let (tree_root, proof) = with_subtrees(models, chain, |tree| {
        let proof = previous
            .filter(|(last, _)| *last > 0 && *last < tree_size)
            .map(|(last, _)| consistency_proof(tree, last, tree_size));
        (root(tree, tree_size), proof)
    })
    .await?;
    if let Some((last, last_root)) = previous {
        let consistent = match proof {
            Some(Ok(proof)) => {
                verify_consistency(last, tree_size, &last_root, &tree_root, &proof).is_ok()
            }
            Some(Err(_)) => false,
            None => last == tree_size && last_root == tree_root,
        };
        if !consistent {
            return Err(SignError::Inconsistent {
                chain,
                size: tree_size,
                last,
            });
        }
        if last == tree_size {
            return Ok(None);
        }
    }
    let checkpoint = Checkpoint {
        origin: origin(signer.verifier().name(), chain),
        size: tree_size,
        root: tree_root,
        extensions: Vec::new(),
    };
    let note = signer
        .sign(&checkpoint.text())
        .map_err(|e| SignError::Note(e.to_string()))?;
    Ok(Some((checkpoint, note)))
}

/// Appends notes to a checkpoint file, one JSON line each, and syncs it.
pub fn append(path: &Path, notes: &[String]) -> std::io::Result<()> {
    let mut text = String::new();
    for note in notes {
        text.push_str(&serde_json::json!({ "checkpoint": note }).to_string());
        text.push('\n');
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// What the sink file says was signed last for each chain (by
/// [`chain_key`], whatever key signed it): (size, root), from the chain's
/// last line, whose signature one of `keys` must check. The file is kept off the database, so a log whose database
/// forgot its checkpoints (rows deleted with the log rewritten) is still
/// held to what was shipped.
pub type SinkLasts = std::collections::HashMap<String, (u64, [u8; 32])>;

/// Reads [`SinkLasts`] from a sink file (empty when it does not exist).
pub fn sink_lasts(path: &Path, keys: &[NoteVerifier]) -> Result<SinkLasts, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(SinkLasts::new()),
        Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
    };
    // The last note of each origin, read without its signature first (a
    // file of years holds many), then checked.
    let mut lasts: std::collections::HashMap<String, String> = Default::default();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let Ok(line) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(note) = line["checkpoint"].as_str() else {
            continue;
        };
        if let Some((_, chain)) = note.split_once('\n').and_then(|(o, _)| o.rsplit_once('/')) {
            lasts.insert(chain.to_owned(), note.to_owned());
        }
    }
    let mut out = SinkLasts::new();
    for (chain, note) in lasts {
        let opened = open(&note, keys)
            .map_err(|e| format!("{}: the last checkpoint of {chain}: {e}", path.display()))?;
        let checkpoint = Checkpoint::parse(&opened.text).map_err(|e| e.to_string())?;
        out.insert(chain, (checkpoint.size, checkpoint.root));
    }
    Ok(out)
}

/// The later of what the database kept and what the sink holds: what the
/// next checkpoint must be consistent with.
fn previous_of(kept: Option<&Kept>, sink: Option<&(u64, [u8; 32])>) -> Option<(u64, [u8; 32])> {
    let kept = kept.map(|k| (k.size, k.root));
    match (kept, sink.copied()) {
        (Some(k), Some(s)) if s.0 > k.0 => Some(s),
        (Some(k), _) => Some(k),
        (None, s) => s,
    }
}

/// One pass of the server's job: a checkpoint for every chain that grew
/// by `every_events` since its last one, or grew at all and whose last one
/// is older than `every`. Returns the checkpoints signed.
pub async fn run_once(
    store: &dyn EventStore,
    models: &dyn ReadModels,
    keys: &KeyVault,
    kept: &CheckpointStore,
    settings: &Settings,
    sink: &mut SinkLasts,
    now: Timestamp,
) -> Result<Vec<Checkpoint>, SignError> {
    let signer = keys
        .checkpoint_signer(&settings.log_name)
        .await
        .map_err(|e| SignError::Note(e.to_string()))?;
    let every = i64::try_from(settings.every.as_micros()).unwrap_or(i64::MAX);
    let mut signed = Vec::new();
    let mut notes = Vec::new();
    for summary in store.chains().await? {
        let chain = summary.chain;
        let key = chain_key(chain);
        let last = kept.last(&key).await?;
        let covered = size(models, chain).await?;
        let previous = previous_of(last.as_ref(), sink.get(&chain_key(chain)));
        let signed_at = last.as_ref().map_or(i64::MIN, |last| last.signed_at);
        let due = match previous {
            None => covered > 0,
            Some((size, _)) => {
                covered >= size + settings.every_events
                    || (covered > size && now.0.saturating_sub(signed_at) >= every)
            }
        };
        if !due {
            continue;
        }
        let Some((checkpoint, note)) = sign_chain(models, &signer, chain, previous).await? else {
            continue;
        };
        let keep = Kept {
            size: checkpoint.size,
            root: checkpoint.root,
            note: note.clone(),
            signed_at: now.0,
        };
        if kept.keep(&key, &keep).await? {
            sink.insert(
                checkpoint.origin.clone(),
                (checkpoint.size, checkpoint.root),
            );
            notes.push(note);
            signed.push(checkpoint);
        }
    }
    if let (Some(sink), false) = (&settings.sink, notes.is_empty()) {
        append(sink, &notes)
            .map_err(|e| SignError::Note(format!("cannot append to {}: {e}", sink.display())))?;
    }
    Ok(signed)
}

/// The sink's last checkpoints, checked with every checkpoint key the
/// store knows (empty without a sink).
async fn load_sink(keys: &KeyVault, settings: &Settings) -> Result<SinkLasts, String> {
    let Some(path) = &settings.sink else {
        return Ok(SinkLasts::new());
    };
    let verifiers = keys
        .checkpoint_verifiers()
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(|key| NoteVerifier::parse(key))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    sink_lasts(path, &verifiers)
}

/// Runs the job every few seconds until the server stops, in one instance
/// at a time.
pub fn schedule(
    store: Arc<dyn EventStore>,
    models: Arc<dyn ReadModels>,
    keys: Arc<KeyVault>,
    kept: Arc<CheckpointStore>,
    settings: Settings,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let holder = Uuid::now_v7();
        let mut sink = match load_sink(&keys, &settings).await {
            Ok(sink) => sink,
            Err(error) => {
                // Signing without knowing what was shipped could sign over a
                // rewritten log: not at all, loudly.
                tracing::error!(%error, "checkpoints: the sink cannot be read; none will be signed");
                return;
            }
        };
        let tick = settings.every.min(Duration::from_secs(5));
        let mut ticks = tokio::time::interval(tick);
        loop {
            ticks.tick().await;
            let now = Timestamp::now();
            let lease = i64::try_from((tick * 6).as_micros()).unwrap_or(i64::MAX);
            match models.acquire(LEASE, holder, now.0, now.0 + lease).await {
                Ok(Some(_)) => {}
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(%error, "checkpoints: the lease cannot be read");
                    continue;
                }
            }
            match run_once(&*store, &*models, &keys, &kept, &settings, &mut sink, now).await {
                Ok(signed) => {
                    for checkpoint in signed {
                        tracing::info!(origin = %checkpoint.origin, size = checkpoint.size, "checkpoint signed");
                    }
                }
                // An inconsistent log is reported loudly, every pass.
                Err(error) => tracing::error!(%error, "checkpoint not signed"),
            }
        }
    })
}

/// The inclusion proof of the event at `index` of `chain` under the
/// chain's latest kept checkpoint, as a receipt carries it (`None` until a
/// checkpoint covers the event):
/// `{"checkpoint": <signed note>, "index", "tree_size", "leaf_hash", "proof": [hex]}`.
pub async fn proof_under_checkpoint(
    models: &dyn ReadModels,
    kept: &CheckpointStore,
    chain: ChainId,
    index: u64,
) -> Result<Option<serde_json::Value>, custodia_application::StoreError> {
    let Some(last) = kept.last(&chain_key(chain)).await? else {
        return Ok(None);
    };
    if index >= last.size {
        return Ok(None);
    }
    let (proof, leaf) = with_subtrees(models, chain, |tree| {
        (
            custodia_domain::merkle::inclusion_proof(tree, index, last.size),
            tree.subtree(0, index),
        )
    })
    .await?;
    let Ok(proof) = proof else { return Ok(None) };
    Ok(Some(serde_json::json!({
        "checkpoint": last.note,
        "index": index,
        "tree_size": last.size,
        "leaf_hash": hex::encode(leaf),
        "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
    })))
}

/// The latest kept checkpoint of `chain`, first signing (and keeping, and
/// appending to the sink) one of all the Merkle rows cover when they cover
/// more than it: what an export or a proof file is made under. `None`
/// while the rows cover nothing.
pub async fn latest_checkpoint(
    models: &dyn ReadModels,
    keys: &KeyVault,
    kept: &CheckpointStore,
    settings: &Settings,
    chain: ChainId,
) -> Result<Option<Kept>, SignError> {
    let key = chain_key(chain);
    let last = kept.last(&key).await?;
    let signer = keys
        .checkpoint_signer(&settings.log_name)
        .await
        .map_err(|e| SignError::Note(e.to_string()))?;
    let sink = load_sink(keys, settings).await.map_err(SignError::Note)?;
    let previous = previous_of(last.as_ref(), sink.get(&chain_key(chain)));
    let signed = match sign_chain(models, &signer, chain, previous).await? {
        // The sink already holds this tree but the database keeps no
        // checkpoint of it (or an older one): sign it again (the same size
        // and root).
        None if previous.is_some() && previous != last.as_ref().map(|l| (l.size, l.root)) => {
            sign_chain(models, &signer, chain, None).await?
        }
        signed => signed,
    };
    let Some((checkpoint, note)) = signed else {
        return Ok(last);
    };
    let fresh = Kept {
        size: checkpoint.size,
        root: checkpoint.root,
        note,
        signed_at: Timestamp::now().0,
    };
    if kept.keep(&key, &fresh).await? {
        if let Some(sink) = &settings.sink {
            append(sink, std::slice::from_ref(&fresh.note)).map_err(|e| {
                SignError::Note(format!("cannot append to {}: {e}", sink.display()))
            })?;
        }
        return Ok(Some(fresh));
    }
    // Another instance kept one of that size first: that one is the
    // checkpoint.
    Ok(kept.last(&key).await?)
}
