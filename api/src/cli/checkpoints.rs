//! Signed checkpoints (docs/audit-format.md): `custodia audit checkpoint`
//! signs one C2SP `tlog-checkpoint` per chain and appends it to a file
//! meant to be shipped off the machine; `custodia verify --against FILE`
//! checks today's log against checkpoints kept elsewhere and names a
//! deleted tail, a truncated chain or a changed (re-hashed) prefix.
//!
//! The file holds one JSON object per line: `{"checkpoint": "<signed
//! note>"}`. A checkpoint is never signed unless it is consistent with the
//! last one the file holds for its chain.

use std::collections::BTreeMap;
use std::path::Path;

use custodia::checkpoints::{append, sign_chain};
use custodia_application::EventStore;
use custodia_domain::merkle::Frontier;
use custodia_domain::{ChainId, ChainIndex, TenantId};
use custodia_infrastructure::signed_note::{open, Checkpoint, NoteSigner, NoteVerifier};
use serde::{Deserialize, Serialize};

/// One line of a checkpoint file (as `custodia::checkpoints::append`
/// writes it).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    checkpoint: String,
}

fn chain_of(origin: &str) -> Option<ChainId> {
    let (_, key) = origin.rsplit_once('/')?;
    if key == "platform" {
        return Some(ChainId::Platform);
    }
    let tenant = uuid::Uuid::parse_str(key).ok()?;
    TenantId::from_uuid(tenant).ok().map(ChainId::Tenant)
}

/// Every checkpoint of `path` that one of `keys` signed, in file order.
/// A line that does not open is an error naming it.
fn read(path: &Path, keys: &[NoteVerifier]) -> Result<Vec<Checkpoint>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
    };
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            let at = || format!("{} line {}", path.display(), n + 1);
            let line: Line = serde_json::from_str(line)
                .map_err(|e| format!("{}: not a checkpoint line: {e}", at()))?;
            let opened = open(&line.checkpoint, keys).map_err(|e| format!("{}: {e}", at()))?;
            Checkpoint::parse(&opened.text).map_err(|e| format!("{}: {e}", at()))
        })
        .collect()
}

/// Signs a checkpoint of every chain the Merkle rows cover with `signer`
/// and appends them to `path` (whose lines `known` keys signed). Returns the lines to print; refuses (naming the chain)
/// to sign one inconsistent with the file's last checkpoint of its chain.
pub async fn sign_all(
    store: &dyn EventStore,
    models: &dyn custodia_application::ReadModels,
    signer: &NoteSigner,
    known: &[NoteVerifier],
    path: &Path,
) -> Result<Vec<String>, String> {
    let failed = |e: &dyn std::fmt::Display| e.to_string();
    // The file's last checkpoint of each chain, whatever key (and so
    // origin) signed it: read with every key the store knows, a file may
    // hold checkpoints of keys retired since.
    let mut last: BTreeMap<ChainId, Checkpoint> = BTreeMap::new();
    for checkpoint in read(path, known)? {
        if let Some(chain) = chain_of(&checkpoint.origin) {
            last.insert(chain, checkpoint);
        }
    }
    let mut lines = Vec::new();
    let mut notes = Vec::new();
    for summary in store.chains().await.map_err(|e| failed(&e))? {
        let chain = summary.chain;
        let previous = last
            .get(&chain)
            .map(|checkpoint| (checkpoint.size, checkpoint.root));
        match sign_chain(models, signer, chain, previous).await {
            Ok(Some((checkpoint, note))) => {
                notes.push(note);
                lines.push(format!(
                    "{chain}: signed a checkpoint of {} events, root {}",
                    checkpoint.size,
                    hex::encode(checkpoint.root)
                ));
            }
            Ok(None) => lines.push(format!("{chain}: unchanged since the last checkpoint")),
            Err(error) => return Err(error.to_string()),
        }
    }
    append(path, &notes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(lines)
}

/// Checks the log against every checkpoint of `path` that one of `keys`
/// signed. Returns one line per chain and whether all of them hold.
pub async fn check(
    store: &dyn EventStore,
    path: &Path,
    keys: &[NoteVerifier],
) -> Result<(Vec<String>, bool), String> {
    let checkpoints = read(path, keys)?;
    if checkpoints.is_empty() {
        return Err(format!("{} holds no checkpoint", path.display()));
    }
    let mut by_chain: BTreeMap<ChainId, BTreeMap<u64, [u8; 32]>> = BTreeMap::new();
    for checkpoint in &checkpoints {
        let chain = chain_of(&checkpoint.origin)
            .ok_or_else(|| format!("a checkpoint of an unknown origin {}", checkpoint.origin))?;
        by_chain
            .entry(chain)
            .or_default()
            .insert(checkpoint.size, checkpoint.root);
    }
    let mut lines = Vec::new();
    let mut intact = true;
    for (chain, sizes) in by_chain {
        let largest = *sizes.keys().next_back().unwrap_or(&0);
        // The chain's roots at every checkpointed size, from its events.
        let mut frontier = Frontier::default();
        let mut roots = BTreeMap::new();
        let mut from = ChainIndex(0);
        'read: loop {
            let batch = store
                .read_chain(chain, from, 8192)
                .await
                .map_err(|e| e.to_string())?;
            let Some(last) = batch.last() else { break };
            from = ChainIndex(last.chain_index.0 + 1);
            for event in &batch {
                frontier.push(custodia_domain::merkle::leaf_hash(&event.hash.0));
                if sizes.contains_key(&frontier.size()) {
                    roots.insert(frontier.size(), frontier.root());
                }
                if frontier.size() >= largest {
                    break 'read;
                }
            }
        }
        let held = frontier.size();
        let mut matched = 0;
        let mut verdict = None;
        for (&size, signed) in &sizes {
            match roots.get(&size) {
                Some(root) if root == signed => matched = size,
                Some(_) => {
                    verdict = Some(format!(
                        "CHECKPOINT MISMATCH {chain}: its first {size} events do not have the root signed \
                         at size {size}: an event at chain index {matched}..{} was changed (every event \
                         after it re-hashed)",
                        size - 1
                    ));
                    break;
                }
                None => {
                    verdict = Some(format!(
                        "CHECKPOINT MISMATCH {chain}: the log holds {held} events, a checkpoint was signed \
                         at size {size}: the chain was cut after chain index {}",
                        held.saturating_sub(1)
                    ));
                    break;
                }
            }
        }
        match verdict {
            Some(line) => {
                intact = false;
                lines.push(line);
            }
            None => lines.push(format!(
                "{chain}: consistent with {} checkpoints (up to size {largest})",
                sizes.len()
            )),
        }
    }
    Ok((lines, intact))
}
