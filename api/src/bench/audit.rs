//! `custodia bench audit`: how fast an auditor checks an export offline,
//! at several chain lengths. Each export is made without a database (the
//! events sealed as a command handler would, with a payload the size of a
//! profile update holding sealed fields), then `custodia audit verify`'s
//! check is timed on it: one core, the file read from the page cache.

use std::process::ExitCode;
use std::time::Instant;

use custodia_domain::chain::{seal, ChainHead};
use custodia_domain::merkle::{leaf_hash, Frontier};
use custodia_domain::{
    Actor, ChainId, CommandId, EventId, EventType, Metadata, NewEvent, Origin, Payload, Position,
    SchemaVersion, StreamCategory, StreamId, StreamVersion, TenantId, Timestamp,
};
use custodia_infrastructure::signed_note::{Checkpoint, NoteSigner};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::cli::audit_export::event_line;
use crate::cli::offline::{
    check, CheckpointLine, FileEntry, Manifest, Proofs, SizedProof, CHECKPOINTS, EVENTS,
    EXPORT_FORMAT, MANIFEST, PROOFS,
};

#[derive(clap::Args)]
pub struct AuditArgs {
    /// The chain lengths (events) to export and verify.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    sizes: Vec<u64>,
    /// Bytes of each event's payload (JSON with two sealed fields; a
    /// profile update is about 300, a role grant about 100).
    #[arg(long, default_value_t = 300)]
    payload_bytes: usize,
    /// Where the exports are written (a directory per size).
    #[arg(long, default_value = "custodia-bench-exports")]
    dir: std::path::PathBuf,
}

/// A payload of about `bytes` bytes: two sealed fields, as stored.
fn payload(n: u64, bytes: usize) -> Vec<u8> {
    let fixed = r#"{"a":{"key":"subject:00000000000000000000000000000000:v1","nonce":"AAAAAAAAAAAAAAAA","ciphertext":""},"b":{"key":"subject:00000000000000000000000000000000:v1","nonce":"AQEBAQEBAQEBAQEB","ciphertext":""}}"#.len();
    let sealed = "c".repeat(bytes.saturating_sub(fixed) / 2);
    format!(
        r#"{{"a":{{"key":"subject:{n:032x}:v1","nonce":"AAAAAAAAAAAAAAAA","ciphertext":"{sealed}"}},"b":{{"key":"subject:{n:032x}:v1","nonce":"AQEBAQEBAQEBAQEB","ciphertext":"{sealed}"}}}}"#
    )
    .into_bytes()
}

fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> Result<FileEntry, String> {
    std::fs::write(dir.join(name), bytes).map_err(|e| format!("cannot write {name}: {e}"))?;
    Ok(FileEntry {
        name: name.to_owned(),
        sha256: hex::encode(Sha256::digest(bytes)),
        bytes: bytes.len() as u64,
    })
}

/// Writes an export of `size` events; returns the checkpoint key's
/// verifier and the bytes of events.jsonl.
fn make_export(
    dir: &std::path::Path,
    size: u64,
    payload_bytes: usize,
) -> Result<(String, u64), String> {
    let tenant = TenantId::generate();
    let chain = ChainId::Tenant(tenant);
    let metadata = Metadata {
        actor: Actor::User(Uuid::now_v7()),
        command_id: CommandId::from_uuid(Uuid::now_v7()).map_err(|e| e.to_string())?,
        correlation_id: Uuid::now_v7(),
        causation_id: None,
        origin: Origin::parse("graphql").map_err(|e| e.to_string())?,
    };
    let event_type = EventType::parse("ProfileUpdated").map_err(|e| e.to_string())?;
    let mut head = ChainHead::GENESIS;
    let mut frontier = Frontier::default();
    let mut events = Vec::with_capacity(size as usize * 700);
    for n in 0..size {
        let stream = StreamId::new(
            StreamCategory::parse("user").map_err(|e| e.to_string())?,
            Uuid::from_u128(u128::from(n % 1000) + 1),
        );
        let new = NewEvent {
            event_id: EventId::generate(),
            event_type: event_type.clone(),
            schema_version: SchemaVersion::new(1).map_err(|e| e.to_string())?,
            payload: Payload::json(payload(n, payload_bytes)).map_err(|e| e.to_string())?,
        };
        let mut sealed = seal(
            chain,
            head,
            &stream,
            StreamVersion(n / 1000),
            &[new],
            &metadata,
            Timestamp(1_767_225_600_000_000 + n as i64),
        );
        let mut event = sealed.remove(0);
        event.position = Position(n + 1);
        head = ChainHead::after(&event);
        frontier.push(leaf_hash(&event.hash.0));
        events.extend_from_slice(event_line(&event).as_bytes());
        events.push(b'\n');
    }
    let signer = NoteSigner::generate("custodia-bench").map_err(|e| e.to_string())?;
    let origin = format!("custodia-bench/{}", tenant.as_uuid());
    let checkpoint = Checkpoint {
        origin: origin.clone(),
        size,
        root: frontier.root(),
        extensions: Vec::new(),
    };
    let note = signer.sign(&checkpoint.text()).map_err(|e| e.to_string())?;
    let proofs = Proofs {
        previous_hash: hex::encode([0u8; 32]),
        frontier: Vec::new(),
        end: SizedProof {
            size,
            proof: Vec::new(),
        },
        checkpoints: Vec::new(),
    };
    let line = serde_json::to_string(&CheckpointLine { checkpoint: note }).expect("serialises");
    let files = vec![
        write(dir, EVENTS, &events)?,
        write(dir, CHECKPOINTS, format!("{line}\n").as_bytes())?,
        write(
            dir,
            PROOFS,
            &serde_json::to_vec(&proofs).expect("serialises"),
        )?,
    ];
    let manifest = Manifest {
        format: EXPORT_FORMAT.to_owned(),
        origin,
        tenant: tenant.as_uuid(),
        first_index: 0,
        events: size,
        from: None,
        to: None,
        tree_size: size,
        exported_at: Timestamp::now().to_string(),
        files,
    };
    write(
        dir,
        MANIFEST,
        &serde_json::to_vec_pretty(&manifest).expect("serialises"),
    )?;
    Ok((signer.verifier().to_string(), events.len() as u64))
}

pub fn run(args: AuditArgs) -> Result<ExitCode, String> {
    println!("offline export verification (custodia audit verify), one core:");
    println!(
        "payload {} bytes; µs/event: the whole check, of which SHA-256 of the file (the \
         manifest's digest), and reading and parsing the lines",
        args.payload_bytes
    );
    println!(
        "{:>10} {:>12} {:>10} {:>14} {:>10} {:>10} {:>10} {:>10}",
        "events", "file MB", "verify s", "events/s", "MB/s", "µs/event", "file sha", "parse"
    );
    for &size in &args.sizes {
        let dir = args.dir.join(size.to_string());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let (key, bytes) = make_export(&dir, size, args.payload_bytes)?;
        let key = custodia_infrastructure::signed_note::NoteVerifier::parse(&key)
            .map_err(|e| e.to_string())?;
        // Once to warm the page cache, then timed.
        check(&dir, std::slice::from_ref(&key))?;
        let started = Instant::now();
        check(&dir, &[key])?;
        let seconds = started.elapsed().as_secs_f64();
        let (hashing, parsing) = phases(&dir.join(EVENTS))?;
        let micros = |seconds: f64| seconds * 1e6 / size as f64;
        println!(
            "{size:>10} {:>12.1} {seconds:>10.3} {:>14.0} {:>10.0} {:>10.2} {:>10.2} {:>10.2}",
            bytes as f64 / 1e6,
            size as f64 / seconds,
            bytes as f64 / 1e6 / seconds,
            micros(seconds),
            micros(hashing),
            micros(parsing),
        );
        std::fs::remove_dir_all(&dir).map_err(|e| e.to_string())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The parts of the check that do not depend on the log: the file's
/// SHA-256, and reading and parsing its lines (seconds each).
fn phases(path: &std::path::Path) -> Result<(f64, f64), String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let digest = Sha256::digest(&bytes);
    let hashing = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut parsed = 0;
    for line in crate::cli::offline::lines(&bytes) {
        parsed += crate::cli::offline::EventLine::parse_exact(line).map_or(0, |_| 1);
    }
    let parsing = started.elapsed().as_secs_f64();
    std::hint::black_box((digest, parsed));
    Ok((hashing, parsing))
}
