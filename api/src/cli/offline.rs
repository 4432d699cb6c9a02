//! What an auditor checks without a database (docs/audit-format.md): an
//! export directory (`custodia audit export`) and a single-event proof
//! file (`custodia audit prove --out`, C2SP `tlog-proof`). This module is
//! both formats' definition: the exporter writes the types below, and
//! `custodia audit verify` reads them back.
//!
//! An export is checked in one pass over its events: every event hash is
//! recomputed, every link followed, and the Merkle root rebuilt from the
//! frontier before the first exported event; then the root is tied to the
//! export's signed checkpoint, every earlier checkpoint to that one, and
//! the auditor's own checkpoint (`--trusted-checkpoint`) to both. The first
//! failure is named and nothing after it is claimed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use custodia_domain::chain::{BreakKind, ChainHead, ChainVerifier, EventFields, EventLocation};
use custodia_domain::merkle::{leaf_hash, verify_consistency, verify_inclusion, Frontier, Hash};
use custodia_domain::{ChainId, ChainIndex, EventHash, Position};
use custodia_infrastructure::signed_note::{open, Checkpoint, NoteVerifier};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The manifest's format tag.
pub const EXPORT_FORMAT: &str = "custodia.audit-export.v1";
/// The first line of a proof file (C2SP tlog-proof).
pub const PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";
pub const MANIFEST: &str = "manifest.json";
pub const EVENTS: &str = "events.jsonl";
pub const CHECKPOINTS: &str = "checkpoints.jsonl";
pub const PROOFS: &str = "proofs.json";

/// One event as stored, one JSON object per line of `events.jsonl` (and
/// the `extra` of a proof file). Every covered field of
/// docs/event-format.md but the chain id (the manifest's, or the
/// checkpoint origin's), and the position.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventLine<'a> {
    pub chain_index: u64,
    pub position: u64,
    /// Hex, 32 bytes.
    pub prev_hash: &'a str,
    /// Hex, 32 bytes: the hash the log stored.
    pub hash: &'a str,
    pub event_id: &'a str,
    pub stream_category: &'a str,
    pub stream_id: &'a str,
    pub stream_version: u64,
    pub event_type: &'a str,
    pub schema_version: u32,
    /// µs since the epoch.
    pub recorded_at: i64,
    pub actor: &'a str,
    pub command_id: &'a str,
    pub correlation_id: &'a str,
    pub causation_id: Option<&'a str>,
    pub origin: &'a str,
    /// Base64 (RFC 4648 §4) of the payload bytes as stored: personal data
    /// in it is ciphertext.
    pub payload: &'a str,
}

/// `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    /// The checkpoints' origin: `<log name>/<tenant id>`.
    pub origin: String,
    pub tenant: Uuid,
    /// The first exported chain index, and how many events follow it.
    pub first_index: u64,
    pub events: u64,
    /// The time bounds asked for (RFC 3339), if any.
    pub from: Option<String>,
    pub to: Option<String>,
    /// The size of the signed checkpoint the export is proved under.
    pub tree_size: u64,
    pub exported_at: String,
    /// Every file's SHA-256 (hex) and length.
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

/// `proofs.json`: what ties the exported events to the checkpoint.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proofs {
    /// The hash of the event before the first exported one (32 zero bytes
    /// before chain index 0), hex.
    pub previous_hash: String,
    /// The frontier of the tree of every event before the first exported
    /// one: the hashes of its perfect subtrees, largest first, hex.
    pub frontier: Vec<String>,
    /// The consistency proof from the tree the exported events end
    /// (first_index + events) to the checkpoint's (empty when equal).
    pub end: SizedProof,
    /// The consistency proof from each earlier checkpoint in
    /// `checkpoints.jsonl` to the export's.
    pub checkpoints: Vec<SizedProof>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizedProof {
    pub size: u64,
    pub proof: Vec<String>,
}

/// One line of `checkpoints.jsonl` (and of a checkpoint file).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointLine {
    pub checkpoint: String,
}

/// A check that failed, named.
struct Refused(String);

macro_rules! refuse {
    ($($arg:tt)*) => { return Err(Refused(format!($($arg)*))) };
}

/// `custodia audit verify PATH`: an export directory or a proof file.
pub fn run(path: &Path, keys: &[String], trusted: Option<&Path>) -> Result<ExitCode, String> {
    if keys.is_empty() {
        return Err(
            "give the checkpoint key you trust (--checkpoint-key; custodia audit key or \
             GET /checkpoints/keys prints it)"
                .into(),
        );
    }
    let keys = keys
        .iter()
        .map(|key| NoteVerifier::parse(key.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--checkpoint-key: {e}"))?;
    let outcome = if path.is_dir() {
        verify_export(path, &keys, trusted)?
    } else {
        if trusted.is_some() {
            return Err("--trusted-checkpoint applies to an export directory".into());
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        verify_proof(&text, &keys)
    };
    match outcome {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(Refused(why)) => {
            println!("NOT VERIFIED: {why}");
            Ok(ExitCode::from(crate::EXIT_BROKEN))
        }
    }
}

/// Checks an export directory: the lines `custodia audit verify` prints,
/// or the failure it names.
pub fn check(dir: &Path, keys: &[NoteVerifier]) -> Result<Vec<String>, String> {
    check_export(dir, keys, None).map_err(|Refused(why)| why)
}

fn hash_of(hex_text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut out).ok().map(|_| out)
}

fn hashes(texts: &[String], what: &str) -> Result<Vec<Hash>, Refused> {
    texts
        .iter()
        .map(|h| hash_of(h).ok_or_else(|| Refused(format!("{what}: a hash is not 64 hex digits"))))
        .collect()
}

/// Opens a note with the trusted keys and reads it as a checkpoint, whose
/// origin must be `<name of a key that signed it>/<chain>` (Custodia's
/// checkpoint key is named after the log).
fn checkpoint_of(note: &str, keys: &[NoteVerifier], at: &str) -> Result<Checkpoint, Refused> {
    let opened = open(note, keys).map_err(|e| {
        Refused(format!(
            "{at}: {e} (signed with another key, or changed after signing)"
        ))
    })?;
    let checkpoint = Checkpoint::parse(&opened.text).map_err(|e| Refused(format!("{at}: {e}")))?;
    let named = checkpoint
        .origin
        .rsplit_once('/')
        .is_some_and(|(log, _)| opened.signed_by.iter().any(|key| key == log));
    if !named || chain_of_origin(&checkpoint.origin).is_none() {
        refuse!(
            "{at}: its origin {} is not <the signing key's name>/<a chain>",
            checkpoint.origin
        );
    }
    if checkpoint.size == 0 {
        refuse!("{at}: a checkpoint of an empty tree proves nothing");
    }
    Ok(checkpoint)
}

/// The chain an origin names (`<log name>/<tenant id or platform>`).
fn chain_of_origin(origin: &str) -> Option<ChainId> {
    match origin.rsplit_once('/')?.1 {
        "platform" => Some(ChainId::Platform),
        id => Uuid::parse_str(id)
            .ok()
            .and_then(|id| custodia_domain::TenantId::from_uuid(id).ok())
            .map(ChainId::Tenant),
    }
}

/// An event line's covered fields, or the first field that cannot be read.
struct Decoded<'a> {
    fields: EventFields<'a>,
    location: EventLocation<'a>,
    stored_hash: [u8; 32],
}

fn decode<'a>(
    line: &EventLine<'a>,
    chain: ChainId,
    prev_hash: &'a [u8; 32],
    payload: &'a [u8],
) -> Result<Decoded<'a>, &'static str> {
    let uuid = |text: &str, what: &'static str| Uuid::parse_str(text).map_err(|_| what);
    let event_id = uuid(line.event_id, "event id")?;
    let stream_id = uuid(line.stream_id, "stream id")?;
    let causation_id = line
        .causation_id
        .map(|id| uuid(id, "causation id"))
        .transpose()?;
    let stored_hash = hash_of(line.hash).ok_or("hash")?;
    Ok(Decoded {
        fields: EventFields {
            chain: chain.as_uuid(),
            chain_index: line.chain_index,
            prev_hash,
            event_id,
            stream_category: line.stream_category,
            stream_id,
            stream_version: line.stream_version,
            event_type: line.event_type,
            schema_version: line.schema_version,
            recorded_at: line.recorded_at,
            actor: line.actor,
            command_id: uuid(line.command_id, "command id")?,
            correlation_id: uuid(line.correlation_id, "correlation id")?,
            causation_id,
            origin: line.origin,
            payload,
        },
        location: EventLocation {
            position: Position(line.position),
            chain_index: line.chain_index,
            event_id,
            stream_category: line.stream_category,
            stream_id,
            stream_version: line.stream_version,
        },
        stored_hash,
    })
}

fn read_file(dir: &Path, name: &str) -> Result<Vec<u8>, Refused> {
    std::fs::read(dir.join(name)).map_err(|e| Refused(format!("{name}: cannot be read: {e}")))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The manifest's entry for `name`, checked against what was read.
fn check_file(manifest: &Manifest, name: &str, sha256: &str, bytes: u64) -> Result<(), Refused> {
    let Some(entry) = manifest.files.iter().find(|f| f.name == name) else {
        refuse!("{MANIFEST} lists no {name}: the manifest was changed");
    };
    if entry.sha256 != sha256 || entry.bytes != bytes {
        refuse!(
            "{name}: its SHA-256 is {sha256} ({bytes} bytes), the manifest says {} ({} bytes): \
             the file was changed after the export",
            entry.sha256,
            entry.bytes
        );
    }
    Ok(())
}

fn verify_export(
    dir: &Path,
    keys: &[NoteVerifier],
    trusted: Option<&Path>,
) -> Result<Result<Vec<String>, Refused>, String> {
    // The trusted checkpoint is the auditor's own file: an error reading it
    // is theirs to fix, not a finding about the export.
    let trusted = trusted.map(|path| read_trusted(path, keys)).transpose()?;
    Ok(check_export(dir, keys, trusted))
}

/// The checkpoints of a file the auditor kept (JSON lines as `custodia
/// audit checkpoint` and the server's sink write them, or one bare note),
/// opened with the trusted keys.
fn read_trusted(path: &Path, keys: &[NoteVerifier]) -> Result<Vec<Checkpoint>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let notes: Vec<String> = if text.trim_start().starts_with('{') {
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str::<CheckpointLine>(line).map(|l| l.checkpoint))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: not a checkpoint file: {e}", path.display()))?
    } else {
        vec![text]
    };
    notes
        .iter()
        .map(|note| {
            checkpoint_of(note, keys, &path.display().to_string()).map_err(|Refused(why)| why)
        })
        .collect()
}

fn check_export(
    dir: &Path,
    keys: &[NoteVerifier],
    trusted: Option<Vec<Checkpoint>>,
) -> Result<Vec<String>, Refused> {
    let started = Instant::now();
    let manifest_bytes = read_file(dir, MANIFEST)?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| Refused(format!("{MANIFEST}: not an export manifest: {e}")))?;
    if manifest.format != EXPORT_FORMAT {
        refuse!(
            "{MANIFEST}: format {:?}, not {EXPORT_FORMAT}",
            manifest.format
        );
    }
    let Some(chain) =
        chain_of_origin(&manifest.origin).filter(|chain| chain.as_uuid() == manifest.tenant)
    else {
        refuse!(
            "{MANIFEST}: origin {} does not name tenant {}",
            manifest.origin,
            manifest.tenant
        );
    };
    let mut report = vec![format!(
        "export of tenant {} ({}): {} events from chain index {}",
        manifest.tenant, manifest.origin, manifest.events, manifest.first_index
    )];

    // The checkpoints, each signed by a trusted key, of this chain, growing.
    let checkpoint_bytes = read_file(dir, CHECKPOINTS)?;
    check_file(
        &manifest,
        CHECKPOINTS,
        &sha256_hex(&checkpoint_bytes),
        checkpoint_bytes.len() as u64,
    )?;
    let mut checkpoints = Vec::new();
    for (n, line) in String::from_utf8_lossy(&checkpoint_bytes)
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
    {
        let at = format!("{CHECKPOINTS} line {}", n + 1);
        let line: CheckpointLine = serde_json::from_str(line)
            .map_err(|e| Refused(format!("{at}: not a checkpoint line: {e}")))?;
        let checkpoint = checkpoint_of(&line.checkpoint, keys, &at)?;
        // Of this chain; a key rotated under a new name signs it under a
        // new origin, still `<that key's name>/<chain>`.
        if chain_of_origin(&checkpoint.origin) != Some(chain) {
            refuse!(
                "{at}: a checkpoint of {}, not of this export's chain ({})",
                checkpoint.origin,
                manifest.origin
            );
        }
        if checkpoints
            .last()
            .is_some_and(|last: &Checkpoint| last.size >= checkpoint.size)
        {
            refuse!("{at}: the checkpoints are not in growing order");
        }
        checkpoints.push(checkpoint);
    }
    let Some(signed) = checkpoints.last() else {
        refuse!("{CHECKPOINTS} holds no checkpoint");
    };
    if signed.size != manifest.tree_size {
        refuse!(
            "the last checkpoint is of size {}, the manifest says {}",
            signed.size,
            manifest.tree_size
        );
    }

    let proof_bytes = read_file(dir, PROOFS)?;
    check_file(
        &manifest,
        PROOFS,
        &sha256_hex(&proof_bytes),
        proof_bytes.len() as u64,
    )?;
    let proofs: Proofs = serde_json::from_slice(&proof_bytes)
        .map_err(|e| Refused(format!("{PROOFS}: not the export's proofs: {e}")))?;
    let first = manifest.first_index;
    let Some(previous_hash) = hash_of(&proofs.previous_hash) else {
        refuse!("{PROOFS}: previous_hash is not 64 hex digits");
    };
    let Some(frontier) = Frontier::resume(first, hashes(&proofs.frontier, PROOFS)?) else {
        refuse!("{PROOFS}: the frontier does not hold one hash per set bit of {first}");
    };
    let head = ChainHead {
        next_index: ChainIndex(first),
        last_hash: EventHash(previous_hash),
    };
    let mut verifier = ChainVerifier::resume(chain, head, frontier);
    // The auditor's checkpoint of this chain, the latest they kept.
    let trusted = match trusted {
        None => None,
        Some(trusted) => {
            let origins: Vec<String> = trusted.iter().map(|c| c.origin.clone()).collect();
            let Some(mine) = trusted
                .into_iter()
                .filter(|c| chain_of_origin(&c.origin) == Some(chain))
                .max_by_key(|c| c.size)
            else {
                refuse!(
                    "your trusted checkpoint file holds no checkpoint of {}'s chain (it holds \
                     {}): the export is of another chain",
                    manifest.origin,
                    if origins.is_empty() {
                        "none".to_owned()
                    } else {
                        origins.join(", ")
                    }
                );
            };
            Some(mine)
        }
    };
    if let Some(trusted) = &trusted {
        verifier.watch_root_at(trusted.size);
    }

    // The events, in one pass: the file's hash, each event's hash and link.
    let (walked, events_sha256, events_bytes) = walk_events(dir, chain, verifier)?;
    if walked.events != manifest.events {
        refuse!(
            "the export holds {} events, its manifest names {}: events were cut from its end \
             (or added)",
            walked.events,
            manifest.events
        );
    }
    check_file(&manifest, EVENTS, &events_sha256, events_bytes)?;
    let Some(end) = first
        .checked_add(walked.events)
        .filter(|end| *end <= signed.size)
    else {
        refuse!(
            "the events end after the signed checkpoint (size {}): events were added",
            signed.size
        );
    };
    report.push(format!(
        "events: every hash recomputed and every link followed (chain indexes {first}..{}), \
         merkle root at size {end} {}",
        end.saturating_sub(1),
        hex::encode(walked.root)
    ));

    // The events are the first `end` leaves of the signed tree.
    if proofs.end.size != end {
        refuse!(
            "the events end at size {end}, {PROOFS} proves size {}: events were cut from the \
             end of the export (or its proofs replaced)",
            proofs.end.size
        );
    }
    let tied = if end == signed.size {
        walked.root == signed.root && proofs.end.proof.is_empty()
    } else {
        verify_consistency(
            end,
            signed.size,
            &walked.root,
            &signed.root,
            &hashes(&proofs.end.proof, PROOFS)?,
        )
        .is_ok()
    };
    if !tied {
        refuse!(
            "the events' Merkle root at size {end} is not part of the signed checkpoint of size \
             {} (root {}): an event was changed and every hash after it recomputed, or events \
             were added or dropped",
            signed.size,
            hex::encode(signed.root)
        );
    }
    report.push(format!(
        "checkpoint: size {}, root {}, signed by a trusted key; the events are in it",
        signed.size,
        hex::encode(signed.root)
    ));

    // Every earlier checkpoint is a prefix of the export's.
    for earlier in &checkpoints[..checkpoints.len() - 1] {
        let proof = proofs
            .checkpoints
            .iter()
            .find(|p| p.size == earlier.size)
            .ok_or_else(|| {
                Refused(format!(
                    "{PROOFS} holds no consistency proof from the checkpoint of size {}",
                    earlier.size
                ))
            })?;
        verify_consistency(
            earlier.size,
            signed.size,
            &earlier.root,
            &signed.root,
            &hashes(&proof.proof, PROOFS)?,
        )
        .map_err(|_| {
            Refused(format!(
                "the checkpoint of size {} is not consistent with the one of size {}: the log \
                 was rewritten between them",
                earlier.size, signed.size
            ))
        })?;
    }
    report.push(format!(
        "consistent with the {} earlier checkpoints the export holds",
        checkpoints.len() - 1
    ));

    if let Some(trusted) = trusted {
        report.push(check_trusted(
            &trusted,
            signed,
            &checkpoints,
            walked.watched,
        )?);
    }
    let seconds = started.elapsed().as_secs_f64();
    report.push(format!(
        "VERIFIED: {} events in {seconds:.2}s ({:.0} events/s)",
        walked.events,
        walked.events as f64 / seconds.max(1e-9)
    ));
    Ok(report)
}

/// The auditor's checkpoint against the export: the same tree, or one the
/// export's grew from.
fn check_trusted(
    trusted: &Checkpoint,
    signed: &Checkpoint,
    checkpoints: &[Checkpoint],
    watched: Option<Hash>,
) -> Result<String, Refused> {
    let fork = || {
        Refused(format!(
            "your trusted checkpoint of size {} has another root than this export's log at that \
             size: the log was rewritten since you kept it",
            trusted.size
        ))
    };
    if trusted.size > signed.size {
        refuse!(
            "your trusted checkpoint (size {}) is newer than the export's (size {}): ask for an \
             export that reaches it",
            trusted.size,
            signed.size
        );
    }
    let root = checkpoints
        .iter()
        .find(|c| c.size == trusted.size)
        .map(|c| c.root)
        .or(watched);
    match root {
        Some(root) if root == trusted.root => Ok(format!(
            "your trusted checkpoint of {} at size {} is a prefix of the export's log",
            trusted.origin, trusted.size
        )),
        Some(_) => Err(fork()),
        None => refuse!(
            "the export can tie no root to your trusted checkpoint's size {}: its events do not \
             reach that size and it holds no checkpoint of it (export a range that covers it)",
            trusted.size
        ),
    }
}

/// Reads `events.jsonl` once, in large chunks: hashes the file, checks
/// every event. Returns what the verifier says of the whole, and the
/// file's SHA-256 and length.
fn walk_events(
    dir: &Path,
    chain: ChainId,
    mut verifier: ChainVerifier,
) -> Result<(custodia_domain::chain::VerifiedChain, String, u64), Refused> {
    use std::io::Read;
    let path = dir.join(EVENTS);
    let mut file = std::fs::File::open(&path)
        .map_err(|e| Refused(format!("{EVENTS}: cannot be read: {e}")))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "{spinner} verifying [{bar:30}] {binary_bytes}/{binary_total_bytes}, {eta} left",
        )
        .expect("the template is valid")
        .progress_chars("=> "),
    );
    let mut file_hash = Sha256::new();
    // A chunk, and the start of a line it ends in the middle of.
    let mut buffer = vec![0u8; CHUNK];
    let mut kept = 0usize;
    let mut payload = Vec::with_capacity(4096);
    let (mut number, mut bytes) = (0u64, 0u64);
    loop {
        if kept == buffer.len() {
            // One line longer than a chunk: make room, up to a bound (an
            // event's payload is far smaller).
            if buffer.len() >= MAX_LINE {
                refuse!(
                    "{EVENTS} line {}: longer than {} MiB: not an exported event",
                    number + 1,
                    MAX_LINE >> 20
                );
            }
            buffer.resize(buffer.len() * 2, 0);
        }
        let read = file
            .read(&mut buffer[kept..])
            .map_err(|e| Refused(format!("{EVENTS}: cannot be read: {e}")))?;
        let filled = kept + read;
        file_hash.update(&buffer[kept..filled]);
        bytes += read as u64;
        bar.inc(read as u64);
        // Whole lines; at the end of the file, the last one too.
        let whole = if read == 0 {
            filled
        } else {
            match buffer[..filled].iter().rposition(|b| *b == b'\n') {
                Some(last) => last + 1,
                None => {
                    kept = filled;
                    continue;
                }
            }
        };
        for text in lines(&buffer[..whole]) {
            number += 1;
            let at = |why: String| Refused(format!("{EVENTS} line {number}: {why}"));
            let event = match EventLine::parse_exact(text) {
                Some(event) => event,
                None => serde_json::from_slice(text)
                    .map_err(|e| at(format!("not an exported event: {e}")))?,
            };
            let prev_hash = hash_of(event.prev_hash)
                .ok_or_else(|| at("its previous hash is not hex".into()))?;
            payload.clear();
            B64.decode_vec(event.payload, &mut payload)
                .map_err(|_| at("its payload is not base64".into()))?;
            let decoded = decode(&event, chain, &prev_hash, &payload)
                .map_err(|field| at(format!("its {field} cannot be read")))?;
            if let Err(broken) = verifier.push_fields(
                decoded.location,
                &decoded.fields,
                &decoded.stored_hash,
                true,
            ) {
                bar.finish_and_clear();
                let consumed =
                    whole.min(text.as_ptr() as usize - buffer.as_ptr() as usize + text.len() + 1);
                let mut rest = std::io::Cursor::new(buffer[consumed..filled].to_vec())
                    .chain(BufReader::new(file));
                let mut rest = BufReader::new(&mut rest);
                return Err(named_break(&mut rest, broken, number, event.chain_index));
            }
        }
        if read == 0 {
            break;
        }
        buffer.copy_within(whole..filled, 0);
        kept = filled - whole;
    }
    bar.finish_and_clear();
    let walked = verifier.finish().map_err(|broken| {
        Refused(format!(
            "{EVENTS}, its last event: {}",
            broken_text(&broken)
        ))
    })?;
    Ok((walked, hex::encode(file_hash.finalize()), bytes))
}

/// The non-empty lines of `bytes` (split with memchr: a byte-at-a-time
/// split costs as much as the rest of the check).
pub fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', bytes)
        .chain(std::iter::once(bytes.len()))
        .filter_map(move |end| {
            let line = bytes.get(start..end)?;
            start = end + 1;
            (!line.is_empty()).then_some(line)
        })
}

/// Bytes read from `events.jsonl` at a time.
const CHUNK: usize = 4 << 20;
/// The longest line read.
const MAX_LINE: usize = 64 << 20;

impl<'a> EventLine<'a> {
    /// The line exactly as the exporter writes it (these fields in this
    /// order, no white space, strings without escapes), read without a
    /// general JSON parser; `None` for anything else, which is then read
    /// as JSON. Both readings agree on every line this one accepts.
    pub fn parse_exact(line: &'a [u8]) -> Option<EventLine<'a>> {
        let mut at = Exact { line, i: 0 };
        at.literal(b"{\"chain_index\":")?;
        let chain_index = at.unsigned()?;
        at.literal(b",\"position\":")?;
        let position = at.unsigned()?;
        at.literal(b",\"prev_hash\":")?;
        let prev_hash = at.coded()?;
        at.literal(b",\"hash\":")?;
        let hash = at.coded()?;
        at.literal(b",\"event_id\":")?;
        let event_id = at.coded()?;
        at.literal(b",\"stream_category\":")?;
        let stream_category = at.string()?;
        at.literal(b",\"stream_id\":")?;
        let stream_id = at.coded()?;
        at.literal(b",\"stream_version\":")?;
        let stream_version = at.unsigned()?;
        at.literal(b",\"event_type\":")?;
        let event_type = at.string()?;
        at.literal(b",\"schema_version\":")?;
        let schema_version = u32::try_from(at.unsigned()?).ok()?;
        at.literal(b",\"recorded_at\":")?;
        let recorded_at = at.signed()?;
        at.literal(b",\"actor\":")?;
        let actor = at.string()?;
        at.literal(b",\"command_id\":")?;
        let command_id = at.coded()?;
        at.literal(b",\"correlation_id\":")?;
        let correlation_id = at.coded()?;
        at.literal(b",\"causation_id\":")?;
        let causation_id = if at.literal(b"null").is_some() {
            None
        } else {
            Some(at.coded()?)
        };
        at.literal(b",\"origin\":")?;
        let origin = at.string()?;
        at.literal(b",\"payload\":")?;
        let payload = at.coded()?;
        at.literal(b"}")?;
        (at.i == line.len()).then_some(EventLine {
            chain_index,
            position,
            prev_hash,
            hash,
            event_id,
            stream_category,
            stream_id,
            stream_version,
            event_type,
            schema_version,
            recorded_at,
            actor,
            command_id,
            correlation_id,
            causation_id,
            origin,
            payload,
        })
    }
}

/// A reading position in a line, for [`EventLine::parse_exact`].
struct Exact<'a> {
    line: &'a [u8],
    i: usize,
}

impl<'a> Exact<'a> {
    fn literal(&mut self, text: &[u8]) -> Option<()> {
        self.line[self.i..]
            .starts_with(text)
            .then(|| self.i += text.len())
    }

    /// Digits, without a leading zero (as JSON writes a number).
    fn unsigned(&mut self) -> Option<u64> {
        let digits = self.line[self.i..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let text = &self.line[self.i..self.i + digits];
        if digits == 0 || (digits > 1 && text[0] == b'0') {
            return None;
        }
        self.i += digits;
        text.iter().try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
    }

    fn signed(&mut self) -> Option<i64> {
        if self.literal(b"-").is_some() {
            let n = self.unsigned()?;
            return (n != 0).then_some(0i64.checked_sub_unsigned(n)?);
        }
        i64::try_from(self.unsigned()?).ok()
    }

    /// A string of hex, a UUID or base64: up to the next quote. Whatever
    /// else it holds (an escape, a control character) its decoder refuses,
    /// as it would refuse the value JSON makes of it.
    fn coded(&mut self) -> Option<&'a str> {
        self.literal(b"\"")?;
        let rest = &self.line[self.i..];
        let end = memchr::memchr(b'"', rest)?;
        self.i += end + 1;
        std::str::from_utf8(&rest[..end]).ok()
    }

    /// A string without escapes or control characters.
    fn string(&mut self) -> Option<&'a str> {
        self.literal(b"\"")?;
        let rest = &self.line[self.i..];
        let end = rest.iter().position(|b| *b == b'"')?;
        let text = &rest[..end];
        if text.iter().any(|b| *b == b'\\' || *b < 0x20) {
            return None;
        }
        self.i += end + 1;
        std::str::from_utf8(text).ok()
    }
}

fn broken_text(broken: &custodia_domain::chain::ChainBreak) -> String {
    format!(
        "chain index {} (event {}, {} version {}): {}",
        broken.chain_index, broken.event_id, broken.stream, broken.stream_version, broken.kind
    )
}

/// A break as the export shows it. A gap in chain indexes is told apart:
/// the missing event further down the file means the lines were reordered.
fn named_break(
    rest: &mut impl BufRead,
    broken: custodia_domain::chain::ChainBreak,
    reached: u64,
    reached_index: u64,
) -> Refused {
    if let BreakKind::MissingPredecessor { missing } = broken.kind {
        let wanted = broken.chain_index.0 - missing;
        // The verifier checks an event when it reads the next one: the line
        // just read may be the one missing.
        if reached_index == wanted {
            return Refused(format!(
                "{EVENTS}: reordered: chain index {wanted} comes after chain index {} (at line \
                 {reached})",
                broken.chain_index
            ));
        }
        let mut later = reached;
        let mut line = String::new();
        while rest.read_line(&mut line).is_ok_and(|n| n > 0) {
            later += 1;
            if serde_json::from_str::<EventLine<'_>>(line.trim_end())
                .is_ok_and(|e| e.chain_index == wanted)
            {
                return Refused(format!(
                    "{EVENTS}: reordered: chain index {wanted} comes after chain index {} (at \
                     line {later})",
                    broken.chain_index
                ));
            }
            line.clear();
        }
        return Refused(format!(
            "{EVENTS}: missing: chain index {wanted}{} not in the export (the next one there \
             is {})",
            if missing > 1 {
                format!("..{}", broken.chain_index.0 - 1)
            } else {
                String::new()
            },
            broken.chain_index
        ));
    }
    Refused(format!("{EVENTS}: {}", broken_text(&broken)))
}

/// A single-event proof (C2SP tlog-proof): the header, `extra` = base64
/// of the event's line, `index`, the inclusion proof (base64 hashes), a
/// blank line, the signed checkpoint.
pub fn proof_text(event_line: &str, index: u64, proof: &[Hash], note: &str) -> String {
    let mut text = format!(
        "{PROOF_HEADER}\nextra {}\nindex {index}\n",
        B64.encode(event_line)
    );
    for hash in proof {
        text.push_str(&B64.encode(hash));
        text.push('\n');
    }
    text.push('\n');
    text.push_str(note);
    text
}

fn verify_proof(text: &str, keys: &[NoteVerifier]) -> Result<Vec<String>, Refused> {
    let Some((head, note)) = text.split_once("\n\n") else {
        refuse!("not a proof file: no blank line before the checkpoint");
    };
    let mut lines = head.lines();
    if lines.next() != Some(PROOF_HEADER) {
        refuse!("not a proof file: the first line is not {PROOF_HEADER}");
    }
    let Some(extra) = lines.next().and_then(|l| l.strip_prefix("extra ")) else {
        refuse!("the proof carries no event (its extra line)");
    };
    let Some(index) = lines
        .next()
        .and_then(|l| l.strip_prefix("index "))
        .and_then(|n| n.parse::<u64>().ok())
    else {
        refuse!("the proof has no index line");
    };
    let proof: Vec<Hash> = lines
        .map(|l| {
            B64.decode(l)
                .ok()
                .and_then(|h| <[u8; 32]>::try_from(h).ok())
                .ok_or_else(|| Refused("a proof hash is not 32 bytes of base64".into()))
        })
        .collect::<Result<_, _>>()?;
    let checkpoint = checkpoint_of(note, keys, "the checkpoint")?;
    let Some(chain) = chain_of_origin(&checkpoint.origin) else {
        refuse!(
            "the checkpoint's origin {} names no chain",
            checkpoint.origin
        );
    };
    let line = B64
        .decode(extra)
        .map_err(|_| Refused("the event (extra) is not base64".into()))?;
    let event: EventLine<'_> = serde_json::from_slice(&line)
        .map_err(|e| Refused(format!("the event (extra) is not an exported event: {e}")))?;
    let mut payload = Vec::new();
    B64.decode_vec(event.payload, &mut payload)
        .map_err(|_| Refused("the event's payload is not base64".into()))?;
    let prev_hash =
        hash_of(event.prev_hash).ok_or_else(|| Refused("the previous hash is not hex".into()))?;
    let decoded = decode(&event, chain, &prev_hash, &payload)
        .map_err(|field| Refused(format!("the event's {field} cannot be read")))?;
    if decoded.fields.hash().0 != decoded.stored_hash {
        refuse!("the event does not hash to its hash: it was changed");
    }
    if event.chain_index != index {
        refuse!(
            "the proof is for index {index}, the event is at chain index {}",
            event.chain_index
        );
    }
    verify_inclusion(
        index,
        checkpoint.size,
        &leaf_hash(&decoded.stored_hash),
        &proof,
        &checkpoint.root,
    )
    .map_err(|e| {
        Refused(format!(
            "the event is not in the signed checkpoint of size {}: {e}",
            checkpoint.size
        ))
    })?;
    Ok(vec![
        format!(
            "event {} ({}) of {}, recorded at {}, by {}, chain index {index}, hash {}",
            event.event_id,
            event.event_type,
            checkpoint.origin,
            custodia_domain::Timestamp(event.recorded_at),
            event.actor,
            event.hash
        ),
        format!(
            "VERIFIED: it is in the checkpoint of size {} (root {}) signed by a trusted key",
            checkpoint.size,
            hex::encode(checkpoint.root)
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"chain_index":7,"position":8,"prev_hash":"0ccb","hash":"f1f5","event_id":"01a22ae8-5b45-75d9-8ab1-274ef5735171","stream_category":"user","stream_id":"01a22ae8-5b45-75d9-8ab1-274ef5735172","stream_version":1,"event_type":"EmailClaimed","schema_version":1,"recorded_at":-1796016200518126,"actor":"system","command_id":"c","correlation_id":"d","causation_id":null,"origin":"cli","payload":"e30="}"#;

    fn same(a: &EventLine<'_>, b: &EventLine<'_>) -> bool {
        format!("{a:?}") == format!("{b:?}")
    }

    #[test]
    fn the_exact_reading_agrees_with_json_and_refuses_what_it_does_not_know() {
        let exact = EventLine::parse_exact(LINE.as_bytes()).expect("the exporter's layout");
        let json: EventLine<'_> = serde_json::from_str(LINE).unwrap();
        assert!(same(&exact, &json));
        let with_cause = LINE.replace(r#""causation_id":null"#, r#""causation_id":"e""#);
        let exact = EventLine::parse_exact(with_cause.as_bytes()).unwrap();
        assert_eq!(exact.causation_id, Some("e"));
        // Anything else is left to the JSON parser, which reads it or
        // refuses it as JSON would.
        for other in [
            LINE.replace(r#""origin":"cli""#, r#""origin":"c\u006ci""#),
            LINE.replace(r#"{"chain_index""#, r#"{ "chain_index""#),
            LINE.replace(r#""chain_index":7"#, r#""chain_index":07"#),
            LINE.replace(r#""position":8"#, r#""position":18446744073709551616"#),
            LINE.replace('}', r#","extra":1}"#),
            format!("{LINE} "),
            LINE[..LINE.len() - 1].to_owned(),
        ] {
            assert!(
                EventLine::parse_exact(other.as_bytes()).is_none(),
                "{other}"
            );
        }
    }
}

#[cfg(test)]
mod worked_example {
    //! docs/audit-format.md's worked example, rebuilt from the code: the
    //! document and the code cannot drift apart.
    use super::*;
    use custodia_domain::chain::seal;
    use custodia_domain::merkle::{inclusion_proof, root, MemoryTree, Subtrees};
    use custodia_domain::{
        Actor, CommandId, EventType, Metadata, NewEvent, Origin, Payload, SchemaVersion,
        StreamCategory, StreamId, StreamVersion, TenantId, Timestamp,
    };
    use custodia_infrastructure::signed_note::NoteSigner;

    fn uuid(text: &str) -> Uuid {
        Uuid::parse_str(text).unwrap()
    }

    /// Three events of one tenant: the first is docs/event-format.md's.
    fn events() -> Vec<custodia_domain::RecordedEvent> {
        let tenant = TenantId::from_uuid(uuid("0192a3b4-c5d6-7e8f-9a0b-000000000001")).unwrap();
        let metadata = Metadata {
            actor: Actor::User(uuid("0192a3b4-c5d6-7e8f-9a0b-1c2d3e4f5a6b")),
            command_id: CommandId::from_uuid(uuid("0192a3b4-c5d6-7e8f-9a0b-000000000003")).unwrap(),
            correlation_id: uuid("0192a3b4-c5d6-7e8f-9a0b-000000000004"),
            causation_id: None,
            origin: Origin::parse("cli").unwrap(),
        };
        let new = |id: &str, event_type: &str, payload: &str| NewEvent {
            event_id: custodia_domain::EventId::from_uuid(uuid(id)).unwrap(),
            event_type: EventType::parse(event_type).unwrap(),
            schema_version: SchemaVersion::new(1).unwrap(),
            payload: Payload::json(payload.as_bytes().to_vec()).unwrap(),
        };
        let batch = [
            new(
                "0192a3b4-c5d6-7e8f-9a0b-000000000002",
                "TenantCreated",
                r#"{"name":"Acme"}"#,
            ),
            new(
                "0192a3b4-c5d6-7e8f-9a0b-000000000005",
                "TenantRenamed",
                r#"{"name":"Acme Ltd"}"#,
            ),
            new(
                "0192a3b4-c5d6-7e8f-9a0b-000000000006",
                "TenantSuspended",
                "{}",
            ),
        ];
        let stream = StreamId::new(StreamCategory::parse("tenant").unwrap(), tenant.as_uuid());
        let mut events = seal(
            ChainId::Tenant(tenant),
            ChainHead::GENESIS,
            &stream,
            StreamVersion::EMPTY,
            &batch,
            &metadata,
            Timestamp(1_767_225_600_000_000),
        );
        for (n, event) in events.iter_mut().enumerate() {
            event.position = Position(n as u64 + 1);
        }
        events
    }

    /// The key of the example: the seed is 32 bytes of 0x2a.
    fn signer() -> NoteSigner {
        NoteSigner::from_seed("example.com/custodia", &[0x2a; 32]).unwrap()
    }

    /// The text between `<!-- name -->` and `<!-- /name -->`, inside its
    /// code fence.
    fn block(doc: &str, name: &str) -> String {
        let open = format!("<!-- {name} -->");
        let close = format!("<!-- /{name} -->");
        let start = doc.find(&open).expect("block opens") + open.len();
        let end = doc[start..].find(&close).expect("block closes") + start;
        let text = &doc[start..end];
        let body = text
            .trim()
            .strip_prefix("```")
            .and_then(|t| t.split_once('\n'))
            .map(|(_, rest)| rest)
            .unwrap_or(text);
        body.trim_end()
            .strip_suffix("```")
            .unwrap_or(body)
            .trim_end()
            .to_owned()
    }

    /// Everything the document shows, as the code makes it.
    fn made() -> Vec<(&'static str, String)> {
        let events = events();
        let mut tree = MemoryTree::default();
        for event in &events {
            tree.push(leaf_hash(&event.hash.0));
        }
        let checkpoint = Checkpoint {
            origin: "example.com/custodia/0192a3b4-c5d6-7e8f-9a0b-000000000001".into(),
            size: 3,
            root: root(&tree, 3),
            extensions: Vec::new(),
        };
        let note = signer().sign(&checkpoint.text()).unwrap();
        let proof = inclusion_proof(&tree, 1, 3).unwrap();
        let line = crate::cli::audit_export::event_line(&events[1]);
        let leaves = (0..3u64)
            .map(|i| hex::encode(tree.subtree(0, i)))
            .collect::<Vec<_>>()
            .join("\n");
        vec![
            ("example-line", line.clone()),
            (
                "example-hashes",
                events
                    .iter()
                    .map(|e| e.hash.to_hex())
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            ("example-leaves", leaves),
            ("example-root", hex::encode(checkpoint.root)),
            ("example-key", signer().verifier().to_string()),
            ("example-checkpoint", note.trim_end().to_owned()),
            (
                "example-proof",
                proof_text(&line, 1, &proof, &note).trim_end().to_owned(),
            ),
        ]
    }

    #[test]
    fn the_worked_example_matches_the_document() {
        let doc = include_str!("../../../docs/audit-format.md");
        for (name, text) in made() {
            // On a change, the message is the block to paste.
            assert!(
                doc.contains(&format!("<!-- {name} -->")) && block(doc, name) == text,
                "docs/audit-format.md, block {name} should read:\n<!-- {name} -->\n```\n{text}\n```\n<!-- /{name} -->"
            );
        }
        // The document's proof file verifies with the document's key.
        let key = NoteVerifier::parse(&block(doc, "example-key")).unwrap();
        let proof = block(doc, "example-proof") + "\n";
        let lines = verify_proof(&proof, &[key]).unwrap_or_else(|Refused(why)| panic!("{why}"));
        assert!(lines[1].starts_with("VERIFIED"), "{lines:?}");
    }
}
