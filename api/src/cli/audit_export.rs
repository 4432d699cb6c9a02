//! `custodia audit export` and `custodia audit prove --out`: what an
//! auditor takes away and checks without a database (`custodia audit
//! verify`, the formats in [`super::offline`] and docs/audit-format.md).

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use custodia::checkpoints::latest_checkpoint;
use custodia::http::AppState;
use custodia_domain::merkle::{consistency_proof, frontier, inclusion_proof};
use custodia_domain::{ChainId, ChainIndex, RecordedEvent, Timestamp};
use custodia_infrastructure::checkpoints::Kept;
use custodia_projections::merkle::{chain_key, with_subtrees};
use sha2::{Digest, Sha256};

use super::offline::{
    CheckpointLine, EventLine, FileEntry, Manifest, Proofs, SizedProof, CHECKPOINTS, EVENTS,
    EXPORT_FORMAT, MANIFEST, PROOFS,
};

/// Events read from the log at a time.
const BATCH: usize = 5_000;

/// An event as one line of `events.jsonl` (without the newline).
pub fn event_line(event: &RecordedEvent) -> String {
    use base64::Engine;
    let (prev_hash, hash) = (event.prev_hash.to_hex(), event.hash.to_hex());
    let (event_id, stream_id) = (
        event.event_id.as_uuid().to_string(),
        event.stream.id.to_string(),
    );
    let meta = &event.metadata;
    let (actor, command_id, correlation_id) = (
        meta.actor.to_string(),
        meta.command_id.as_uuid().to_string(),
        meta.correlation_id.to_string(),
    );
    let causation_id = meta.causation_id.map(|id| id.to_string());
    let payload = base64::engine::general_purpose::STANDARD.encode(event.payload.as_bytes());
    let line = EventLine {
        chain_index: event.chain_index.0,
        position: event.position.0,
        prev_hash: &prev_hash,
        hash: &hash,
        event_id: &event_id,
        stream_category: event.stream.category.as_str(),
        stream_id: &stream_id,
        stream_version: event.stream_version.0,
        event_type: event.event_type.as_str(),
        schema_version: event.schema_version.get(),
        recorded_at: event.recorded_at.0,
        actor: &actor,
        command_id: &command_id,
        correlation_id: &correlation_id,
        causation_id: causation_id.as_deref(),
        origin: meta.origin.as_str(),
        payload: &payload,
    };
    serde_json::to_string(&line).expect("an event line serialises")
}

/// The chain's latest checkpoint, signed now if the Merkle rows cover more.
async fn checkpoint(state: &AppState, chain: ChainId) -> Result<Kept, String> {
    latest_checkpoint(
        &*state.models,
        &state.keys,
        &state.checkpoints,
        &state.checkpoint_settings,
        chain,
    )
    .await
    .map_err(|e| e.to_string())?
    .ok_or_else(|| {
        format!(
            "no event of {chain} is in the Merkle rows yet: let a server run (or custodia \
             projections rebuild merkle) first"
        )
    })
}

/// A file written and hashed.
fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<FileEntry, String> {
    std::fs::write(dir.join(name), bytes).map_err(|e| format!("cannot write {name}: {e}"))?;
    Ok(FileEntry {
        name: name.to_owned(),
        sha256: hex::encode(Sha256::digest(bytes)),
        bytes: bytes.len() as u64,
    })
}

/// A file written through, hashed as it goes.
struct Hashed<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashed<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.hash.update(&bytes[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl Hashed<std::io::BufWriter<std::fs::File>> {
    /// Flushes and syncs the file; its manifest entry.
    fn finish(self, name: &str) -> Result<FileEntry, String> {
        let file = self
            .inner
            .into_inner()
            .map_err(|e| format!("cannot write {name}: {e}"))?;
        file.sync_all()
            .map_err(|e| format!("cannot write {name}: {e}"))?;
        Ok(FileEntry {
            name: name.to_owned(),
            sha256: hex::encode(self.hash.finalize()),
            bytes: self.bytes,
        })
    }
}

/// What an export was asked for.
pub struct Request<'a> {
    pub chain: ChainId,
    pub from: Option<(&'a str, Timestamp)>,
    pub to: Option<(&'a str, Timestamp)>,
    pub out: &'a Path,
}

/// Writes the export; returns the lines to print.
pub async fn export(state: &AppState, request: Request<'_>) -> Result<Vec<String>, String> {
    let started = Instant::now();
    let Request {
        chain,
        from,
        to,
        out,
    } = request;
    let ChainId::Tenant(tenant) = chain else {
        return Err("an export is of one tenant's chain".into());
    };
    let store = &*state.ports.store;
    let chains = store.chains().await.map_err(|e| e.to_string())?;
    let Some(summary) = chains.iter().find(|c| c.chain == chain) else {
        return Err(format!("the log holds no chain of {chain}"));
    };
    if out.exists()
        && std::fs::read_dir(out)
            .map_err(|e| format!("cannot read {}: {e}", out.display()))?
            .next()
            .is_some()
    {
        return Err(format!(
            "{} is not empty: an export goes to a new directory",
            out.display()
        ));
    }
    let signed = checkpoint(state, chain).await?;
    let tree_size = signed.size;
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;

    // The events in [first, end): from the first at or after `from`, up to
    // the first at or after `to`, within the checkpoint.
    // Streamed to the file, hashed on the way: memory stays flat however
    // long the chain.
    let file = std::fs::File::create(out.join(EVENTS))
        .map_err(|e| format!("cannot write {EVENTS}: {e}"))?;
    let mut events = Hashed {
        inner: std::io::BufWriter::with_capacity(1 << 20, file),
        hash: Sha256::new(),
        bytes: 0,
    };
    let (mut first, mut end, mut previous_hash) = (None, 0u64, [0u8; 32]);
    let mut next = 0u64;
    'read: while next < tree_size {
        let batch = store
            .read_chain(chain, ChainIndex(next), BATCH)
            .await
            .map_err(|e| e.to_string())?;
        if batch.is_empty() {
            break;
        }
        for event in &batch {
            let index = event.chain_index.0;
            if index >= tree_size || to.is_some_and(|(_, to)| event.recorded_at >= to) {
                break 'read;
            }
            if first.is_none() {
                if from.is_some_and(|(_, from)| event.recorded_at < from) {
                    previous_hash = event.hash.0;
                    continue;
                }
                first = Some(index);
            }
            events
                .write_all(event_line(event).as_bytes())
                .and_then(|()| events.write_all(b"\n"))
                .map_err(|e| e.to_string())?;
            end = index + 1;
        }
        next = batch.last().map_or(tree_size, |e| e.chain_index.0 + 1);
    }
    let Some(first) = first else {
        // Only what this export made (the directory was new or empty).
        drop(events);
        let _ = std::fs::remove_file(out.join(EVENTS));
        let _ = std::fs::remove_dir(out);
        return Err(format!(
            "{chain} has no event in that time range within its checkpoint of size {tree_size}"
        ));
    };
    let events_entry = events.finish(EVENTS)?;

    // The checkpoints up to the export's, and the proofs that tie them.
    // The origin the checkpoint was signed under (earlier ones may carry
    // the name of a key rotated since).
    let origin = signed.note.lines().next().unwrap_or_default().to_owned();
    let kept: Vec<Kept> = state
        .checkpoints
        .all(&chain_key(chain))
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|k| k.size <= tree_size)
        .collect();
    let earlier: Vec<u64> = kept
        .iter()
        .map(|k| k.size)
        .filter(|s| *s < tree_size)
        .collect();
    let (frontier_hashes, end_proof, earlier_proofs) =
        with_subtrees(&*state.models, chain, |tree| {
            let prove = |size: u64| {
                if size == tree_size {
                    Ok(Vec::new())
                } else {
                    consistency_proof(tree, size, tree_size)
                }
            };
            (
                frontier(tree, first),
                prove(end),
                earlier.iter().map(|size| prove(*size)).collect::<Vec<_>>(),
            )
        })
        .await
        .map_err(|e| e.to_string())?;
    let hexes = |proof: Vec<[u8; 32]>| proof.iter().map(hex::encode).collect::<Vec<_>>();
    let proofs = Proofs {
        previous_hash: hex::encode(previous_hash),
        frontier: hexes(frontier_hashes),
        end: SizedProof {
            size: end,
            proof: hexes(end_proof.map_err(|e| e.to_string())?),
        },
        checkpoints: earlier
            .iter()
            .zip(earlier_proofs)
            .map(|(size, proof)| {
                Ok(SizedProof {
                    size: *size,
                    proof: hexes(proof.map_err(|e| e.to_string())?),
                })
            })
            .collect::<Result<_, String>>()?,
    };
    let mut checkpoint_lines = String::new();
    for k in &kept {
        checkpoint_lines.push_str(
            &serde_json::to_string(&CheckpointLine {
                checkpoint: k.note.clone(),
            })
            .expect("a line serialises"),
        );
        checkpoint_lines.push('\n');
    }
    let files = vec![
        events_entry,
        write_file(out, CHECKPOINTS, checkpoint_lines.as_bytes())?,
        write_file(
            out,
            PROOFS,
            &serde_json::to_vec_pretty(&proofs).expect("proofs serialise"),
        )?,
    ];
    let exported = end - first;
    let manifest = Manifest {
        format: EXPORT_FORMAT.to_owned(),
        origin,
        tenant: tenant.as_uuid(),
        first_index: first,
        events: exported,
        from: from.map(|(text, _)| text.to_owned()),
        to: to.map(|(text, _)| text.to_owned()),
        tree_size,
        exported_at: Timestamp::now().to_string(),
        files,
    };
    write_file(
        out,
        MANIFEST,
        &serde_json::to_vec_pretty(&manifest).expect("a manifest serialises"),
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let mut lines = vec![format!(
        "exported {exported} events of tenant {tenant} (chain indexes {first}..{}) under the \
         signed checkpoint of size {tree_size}, with {} earlier checkpoints, to {} in {seconds:.2}s \
         ({:.0} events/s)",
        end - 1,
        earlier.len(),
        out.display(),
        exported as f64 / seconds.max(1e-9)
    )];
    if summary.events > tree_size && to.is_none() {
        lines.push(format!(
            "note: the chain holds {} events; the {} after its latest checkpoint are in the next \
             export",
            summary.events,
            summary.events - tree_size
        ));
    }
    Ok(lines)
}

/// Writes the proof file of the event at `index`: the event, its
/// inclusion proof and the chain's latest signed checkpoint.
pub async fn prove_to_file(
    state: &AppState,
    chain: ChainId,
    index: u64,
    out: &Path,
) -> Result<String, String> {
    let signed = checkpoint(state, chain).await?;
    if index >= signed.size {
        return Err(format!(
            "chain index {index} is not in the latest checkpoint (size {}): wait for the next one",
            signed.size
        ));
    }
    let event = state
        .ports
        .store
        .read_chain(chain, ChainIndex(index), 1)
        .await
        .map_err(|e| e.to_string())?
        .pop()
        .ok_or_else(|| format!("{chain} holds no event at chain index {index}"))?;
    let proof = with_subtrees(&*state.models, chain, |tree| {
        inclusion_proof(tree, index, signed.size)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    let text = super::offline::proof_text(&event_line(&event), index, &proof, &signed.note);
    std::fs::write(out, text).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(format!(
        "wrote the proof of {} at chain index {index} under the checkpoint of size {} to {}",
        event.event_type.as_str(),
        signed.size,
        out.display()
    ))
}
