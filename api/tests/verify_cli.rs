//! `custodia verify` against logs tampered with directly in SQL, on both
//! backends: each tampering is found and located exactly. Also: unreadable
//! input gives a clear error and exit status 2, never a panic. And
//! `custodia snapshots drop`, the other command that repairs by the log.

use std::process::{Command, Output};

use custodia_domain::chain::compute_hash;
use custodia_domain::{ChainId, ChainIndex, EventHash, EventId, Position, RecordedEvent};
use custodia_infrastructure::{open_event_store, OpenMode};
use custodia_tests::{backends, TestDatabase};
use sqlx::{PgPool, SqlitePool};

backends!(
    intact_log_verifies_with_counts,
    changed_payload_byte_is_located,
    changed_metadata_field_is_located,
    deleted_event_is_located,
    swapped_events_are_located,
    forged_event_with_recomputed_hash_is_located,
    verify_can_be_limited_to_one_tenant,
    schema_newer_than_the_binary_is_refused,
    snapshots_drop_deletes_every_snapshot,
    an_unreadable_value_is_a_broken_link_and_the_run_goes_on,
    a_duplicate_chain_index_is_a_broken_link,
    a_demo_log_is_what_a_server_writes_and_projects,
    an_unreadable_chain_id_is_a_broken_link_not_a_failed_run,
    merkle_proofs_lead_to_the_root_verify_prints,
    checkpoints_kept_elsewhere_name_a_cut_chain,
    checkpoints_kept_elsewhere_name_a_rehashed_suffix,
    an_export_verifies_offline_and_every_change_is_named,
    a_proof_file_is_checked_alone,
);

/// The master key the demo seals its sample people under (a fixed test
/// key, so no development key file is written into the working directory).
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn custodia(db: &TestDatabase, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custodia"))
        .args(args)
        .env("DATABASE_URL", db.url())
        .env("CUSTODIA_MASTER_KEY", MASTER_KEY)
        .output()
        .expect("run custodia")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Direct SQL access, as an attacker with database rights would have.
enum Raw {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Raw {
    async fn connect(db: &TestDatabase) -> Raw {
        if db.is_postgres() {
            Raw::Postgres(PgPool::connect(db.url()).await.unwrap())
        } else {
            Raw::Sqlite(SqlitePool::connect(db.url()).await.unwrap())
        }
    }

    async fn exec(&self, sql: &str) {
        match self {
            Raw::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await.map(|_| ()),
            Raw::Postgres(pool) => sqlx::raw_sql(sql).execute(pool).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Removes the guard triggers, as an attacker would.
    async fn drop_guards(&self) {
        match self {
            Raw::Sqlite(_) => {
                self.exec("DROP TRIGGER events_are_immutable_update; DROP TRIGGER events_are_immutable_delete")
                    .await
            }
            Raw::Postgres(_) => self.exec("ALTER TABLE events DISABLE TRIGGER USER").await,
        }
    }

    fn blob(&self, bytes: &[u8]) -> String {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        match self {
            Raw::Sqlite(_) => format!("X'{hex}'"),
            Raw::Postgres(_) => format!("'\\x{hex}'::bytea"),
        }
    }

    fn uuid(&self, id: uuid::Uuid) -> String {
        match self {
            Raw::Sqlite(_) => self.blob(id.as_bytes()),
            Raw::Postgres(_) => format!("'{id}'::uuid"),
        }
    }
}

/// A sample log (3 tenants × 4 users × 3 events, plus tenant and platform
/// events) and the events of the first tenant's chain.
async fn sample_log(db: &TestDatabase) -> Vec<RecordedEvent> {
    let output = custodia(db, &["demo", "--tenants", "3", "--users", "4"]);
    assert!(output.status.success(), "{:?}", text(&output));
    let store = open_event_store(db.url(), OpenMode::Existing, 2)
        .await
        .unwrap();
    let chains = store.chains().await.unwrap();
    let chain = chains
        .iter()
        .find(|c| c.chain != ChainId::Platform)
        .unwrap()
        .chain;
    store.read_chain(chain, ChainIndex(0), 1000).await.unwrap()
}

/// Runs `custodia verify` and checks it reports exactly one break, at
/// `event` (as now stored at `position`), of the expected kind.
fn assert_broken_at(db: &TestDatabase, event: &RecordedEvent, position: Position, kind: &str) {
    let output = custodia(db, &["verify"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let broken: Vec<&str> = stdout.lines().filter(|l| l.starts_with("BROKEN")).collect();
    assert_eq!(broken.len(), 1, "{stdout}");
    let ChainId::Tenant(tenant) = event.chain else {
        panic!("a tenant chain")
    };
    let expected = format!(
        "BROKEN tenant {tenant}: broken at position {position} (chain index {}, stream {}, version {}, event {}): {kind}",
        event.chain_index, event.stream, event.stream_version, event.event_id
    );
    assert!(
        broken[0].starts_with(&expected),
        "expected: {expected}\nfound:    {}",
        broken[0]
    );
    assert!(
        stdout.contains("NOT INTACT: 1 of 3 chains broken"),
        "{stdout}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

async fn intact_log_verifies_with_counts(db: TestDatabase) {
    sample_log(&db).await;
    let output = custodia(&db, &["verify"]);
    let (stdout, _) = text(&output);
    assert!(output.status.success(), "{stdout}");
    // 3 tenants × (4 + 4 × 3) events: each with its owner, and four users
    // registered and renamed.
    assert!(
        stdout.contains("\nintact: verified 48 events in 3 chains"),
        "{stdout}"
    );
    // Each chain's length and head, for an auditor to note and compare.
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("chain ")).collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    let hex64 = |text: &str| text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit());
    for line in &lines {
        let (_, head_and_root) = line.rsplit_once(", head ").unwrap_or_default();
        let (head, root) = head_and_root
            .split_once(", merkle root ")
            .unwrap_or_default();
        assert!(hex64(head) && hex64(root), "{line}");
    }
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains(": 16 events, head "))
            .count(),
        3,
        "three tenants of 16 events: {stdout}"
    );
}

async fn an_unreadable_value_is_a_broken_link_and_the_run_goes_on(db: TestDatabase) {
    let chain = sample_log(&db).await;
    let target = &chain[6];
    let raw = Raw::connect(&db).await;
    raw.drop_guards().await;
    // A version no append can write (negative), on both backends.
    raw.exec(&format!(
        "UPDATE events SET stream_version = -5 WHERE position = {}",
        target.position
    ))
    .await;
    let output = custodia(&db, &["verify"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "broken, not failed: {stdout}{stderr}"
    );
    let broken: Vec<&str> = stdout.lines().filter(|l| l.starts_with("BROKEN")).collect();
    assert_eq!(broken.len(), 1, "{stdout}");
    assert!(
        broken[0].contains(&format!(
            "broken at position {} (chain index {}",
            target.position, target.chain_index
        )) && broken[0].contains("unreadable: its stream version"),
        "{}",
        broken[0]
    );
    // The other chains were verified and reported all the same.
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains(" events, head "))
            .count(),
        2,
        "{stdout}"
    );
}

async fn a_duplicate_chain_index_is_a_broken_link(db: TestDatabase) {
    let chain = sample_log(&db).await;
    let raw = Raw::connect(&db).await;
    raw.drop_guards().await;
    // SQLite's UNIQUE (chain_id, chain_index) cannot be dropped without
    // rebuilding the table; on PostgreSQL it is one statement.
    let unique = match &raw {
        Raw::Postgres(_) => "ALTER TABLE events DROP CONSTRAINT events_chain_index_key;",
        Raw::Sqlite(_) => "",
    };
    if unique.is_empty() {
        raw.exec(
            "CREATE TABLE events_copy AS SELECT * FROM events; DROP TABLE events; \
             ALTER TABLE events_copy RENAME TO events;",
        )
        .await;
    } else {
        raw.exec(unique).await;
    }
    raw.exec(&format!(
        "UPDATE events SET chain_index = {} WHERE position = {}",
        chain[4].chain_index, chain[5].position
    ))
    .await;
    // Reported where it stands now: at the index it claims, after the
    // event that holds it rightly.
    let mut duplicate = chain[5].clone();
    duplicate.chain_index = chain[4].chain_index;
    assert_broken_at(&db, &duplicate, chain[5].position, "forged");
}

async fn changed_payload_byte_is_located(db: TestDatabase) {
    let chain = sample_log(&db).await;
    let target = &chain[5];
    let raw = Raw::connect(&db).await;
    raw.drop_guards().await;
    let mut payload = target.payload.as_bytes().to_vec();
    payload[2] ^= 0x20; // "seq" → "sEq": one byte
    raw.exec(&format!(
        "UPDATE events SET payload = {} WHERE position = {}",
        raw.blob(&payload),
        target.position
    ))
    .await;
    assert_broken_at(&db, target, target.position, "altered content");
}

async fn changed_metadata_field_is_located(db: TestDatabase) {
    let chain = sample_log(&db).await;
    let target = &chain[7];
    let raw = Raw::connect(&db).await;
    raw.drop_guards().await;
    raw.exec(&format!(
        "UPDATE events SET origin = 'dEmo' WHERE position = {}",
        target.position
    ))
    .await;
    assert_broken_at(&db, target, target.position, "altered content");
}

async fn deleted_event_is_located(db: TestDatabase) {
    let chain = sample_log(&db).await;
    let raw = Raw::connect(&db).await;
    raw.drop_guards().await;
    raw.exec(&format!(
        "DELETE FROM events WHERE position = {}",
        chain[4].position
    ))
    .await;
    // Found at the event after the gap.
    assert_broken_at(
        &db,
        &chain[5],
        chain[5].position,
        "missing predecessor: 1 event(s)",
    );
}

async fn swapped_events_are_located(db: TestDatabase) {
    let chain = sample_log(&db).await;
    let (a, b) = (&chain[3], &chain[4]);
    let raw = Raw::connect(&db).await;
    raw.drop_guards().await;
    raw.exec(&format!(
        "UPDATE events SET position = -1 WHERE position = {a};
         UPDATE events SET position = {a} WHERE position = {b};
         UPDATE events SET position = {b} WHERE position = -1",
        a = a.position,
        b = b.position
    ))
    .await;
    // The first of the two in chain order now sits at the other's position.
    assert_broken_at(&db, a, b.position, "reordered");
}

async fn forged_event_with_recomputed_hash_is_located(db: TestDatabase) {
    let chain = sample_log(&db).await;
    let last = chain.last().unwrap();
    let mut forged = last.clone();
    forged.event_id = EventId::generate();
    forged.chain_index = ChainIndex(last.chain_index.0 + 1);
    forged.stream_version = custodia_domain::StreamVersion(last.stream_version.0 + 1);
    forged.prev_hash = EventHash([0xab; 32]); // no valid predecessor
    forged.hash = compute_hash(&forged);
    let raw = Raw::connect(&db).await;
    raw.exec(&format!(
        "INSERT INTO events (position, transaction_id, event_id, chain_id, chain_index,
            stream_category, stream_id, stream_version, event_type, schema_version, payload,
            actor, command_id, correlation_id, causation_id, origin, recorded_at, prev_hash, hash)
         SELECT 100000, 100000, {event_id}, chain_id, {index}, stream_category, stream_id,
            {version}, event_type, schema_version, payload, actor, command_id, correlation_id,
            causation_id, origin, recorded_at, {prev}, {hash}
         FROM events WHERE position = {position}",
        event_id = raw.uuid(forged.event_id.as_uuid()),
        index = forged.chain_index,
        version = forged.stream_version,
        prev = raw.blob(&forged.prev_hash.0),
        hash = raw.blob(&forged.hash.0),
        position = last.position,
    ))
    .await;
    forged.position = Position(100_000);
    assert_broken_at(&db, &forged, forged.position, "forged");
}

async fn verify_can_be_limited_to_one_tenant(db: TestDatabase) {
    let chain = sample_log(&db).await;
    let ChainId::Tenant(tenant) = chain[0].chain else {
        panic!("a tenant chain")
    };
    let output = custodia(&db, &["verify", "--tenant", &tenant.to_string()]);
    let (stdout, _) = text(&output);
    assert!(output.status.success());
    assert!(
        stdout.starts_with(&format!("chain tenant {tenant}: 16 events, head "))
            && stdout.contains("\nintact: verified 16 events in 1 chains"),
        "{stdout}"
    );
    let unknown = uuid::Uuid::now_v7().to_string();
    let output = custodia(&db, &["verify", "--tenant", &unknown]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "no such chain is no intact chain"
    );
    let output = custodia(&db, &["verify", "--tenant", "not-a-uuid"]);
    assert_eq!(output.status.code(), Some(2), "clap refuses it");
}

async fn schema_newer_than_the_binary_is_refused(db: TestDatabase) {
    sample_log(&db).await;
    let raw = Raw::connect(&db).await;
    raw.exec(&format!(
        "INSERT INTO custodia_migrations (version, name, checksum) VALUES (999, 'future', {})",
        raw.blob(&[0; 32])
    ))
    .await;
    for command in ["migrate", "verify"] {
        let output = custodia(&db, &[command]);
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(2), "{command}: {stderr}");
        assert!(
            stderr.contains("migration 999, newer than this binary"),
            "{command}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

fn run_with_url(url: &str, args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_custodia"))
        .args(args)
        .env("DATABASE_URL", url)
        .output()
        .expect("run custodia");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (output.status.code(), stderr)
}

#[test]
fn corrupt_sqlite_file_is_a_clear_error() {
    let dir = tempfile_dir();
    let path = dir.join("custodia.db");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let url = format!("sqlite://{}", path.display());
    for command in ["verify", "migrate"] {
        let (code, stderr) = run_with_url(&url, &[command]);
        assert_eq!(code, Some(2));
        assert!(
            stderr.contains("error: the database is not usable"),
            "{stderr}"
        );
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        vec![0x5a; 8192],
        "nothing was written"
    );
}

#[test]
fn wrong_database_urls_are_clear_errors() {
    let dir = tempfile_dir();
    let missing = format!("sqlite://{}", dir.join("absent.db").display());
    let cases = [
        (
            "mysql://localhost/x",
            "must start with sqlite:, postgres:// or postgresql://",
        ),
        (
            "postgres://postgres@127.0.0.1:1/custodia",
            "cannot open the database",
        ),
        (missing.as_str(), "cannot open the database"),
    ];
    for (url, expected) in cases {
        let (code, stderr) = run_with_url(url, &["verify"]);
        assert_eq!(code, Some(2), "{url}");
        assert!(stderr.contains(expected), "{url}: {stderr}");
    }
    assert!(
        !dir.join("absent.db").exists(),
        "verify does not create a database"
    );
}

#[test]
fn empty_sqlite_database_asks_for_migrate() {
    let dir = tempfile_dir();
    let url = format!("sqlite://{}", dir.join("custodia.db").display());
    let (code, _) = run_with_url(&url, &["migrate"]);
    assert_eq!(code, Some(0));
    let output = Command::new(env!("CARGO_BIN_EXE_custodia"))
        .args(["verify"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout)
        .starts_with("intact: verified 0 events in 0 chains"));
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("custodia-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `docs/verify_chain.py`, written from docs/event-format.md alone, agrees
/// with `custodia verify` on an intact log and on a tampered one.
#[tokio::test]
async fn independent_python_verifier_agrees() {
    let db = TestDatabase::sqlite();
    let chain = sample_log(&db).await;
    let path = db.url().trim_start_matches("sqlite://").to_owned();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/verify_chain.py");
    let python = |expect_ok: bool| {
        let output = Command::new("python3")
            .args([script, &path])
            .output()
            .expect("python3 runs (it is on every machine of this project)");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert_eq!(output.status.success(), expect_ok, "{stdout}");
        stdout
    };
    let intact = python(true);
    assert_eq!(intact.matches(": intact").count(), 3, "{intact}");
    assert!(intact.contains("intact, 16 events"), "{intact}");
    // The same Merkle root for every chain, computed from RFC 9162's
    // definition there and from a frontier here.
    let output = custodia(&db, &["verify"]);
    let (ours, _) = text(&output);
    let roots: Vec<&str> = ours
        .lines()
        .filter_map(|line| line.split_once("merkle root ").map(|(_, root)| root.trim()))
        .collect();
    assert_eq!(roots.len(), 3, "{ours}");
    for root in roots {
        assert!(
            intact.contains(&format!("merkle root {root}")),
            "{root} not in {intact}"
        );
    }

    let raw = Raw::connect(&db).await;
    raw.drop_guards().await;
    raw.exec(&format!(
        "UPDATE events SET origin = 'dEmo' WHERE position = {}",
        chain[6].position
    ))
    .await;
    let broken = python(false);
    let ChainId::Tenant(tenant) = chain[6].chain else {
        panic!("a tenant chain")
    };
    let expected = format!(
        "tenant {tenant}: BROKEN at position {} (chain index 6): altered content",
        chain[6].position
    );
    assert!(broken.contains(&expected), "{broken}");
}

async fn snapshots_drop_deletes_every_snapshot(db: TestDatabase) {
    use custodia_application::StoredSnapshot;
    use custodia_domain::{StreamCategory, StreamId, StreamVersion, TenantId};
    let store = open_event_store(db.url(), OpenMode::Migrate, 2)
        .await
        .unwrap();
    let stream = StreamId::new(
        StreamCategory::parse("session").unwrap(),
        uuid::Uuid::now_v7(),
    );
    let snapshot = StoredSnapshot {
        stream: stream.clone(),
        chain: ChainId::Tenant(TenantId::generate()),
        stream_version: StreamVersion(64),
        form_version: 1,
        state: b"{}".to_vec(),
    };
    store.save_snapshot(snapshot, None).await.unwrap();
    let output = custodia(&db, &["snapshots", "drop"]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("dropped 1 snapshots"), "{stdout}");
    assert_eq!(store.snapshot(&stream).await.unwrap(), None);
}

async fn a_demo_log_is_what_a_server_writes_and_projects(db: TestDatabase) {
    sample_log(&db).await;
    let output = custodia(&db, &["projections", "rebuild"]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    let models = custodia_infrastructure::SqlReadModels::connect(db.url())
        .await
        .unwrap();
    use custodia_application::ReadModels;
    let users = models.dump("user").await.unwrap();
    assert_eq!(users.len(), 3 * 5, "three owners and twelve users");
    assert_eq!(models.dump("tenant").await.unwrap().len(), 3);
}

async fn an_unreadable_chain_id_is_a_broken_link_not_a_failed_run(db: TestDatabase) {
    let chain = sample_log(&db).await;
    let raw = Raw::connect(&db).await;
    raw.drop_guards().await;
    // SQLite keeps whatever bytes it is given; PostgreSQL's uuid column only
    // a uuid (then the event moves to a chain of its own).
    let moved = match &raw {
        Raw::Sqlite(_) => "X'010203'".to_owned(),
        Raw::Postgres(_) => format!("'{}'::uuid", uuid::Uuid::now_v7()),
    };
    raw.exec(&format!(
        "UPDATE events SET chain_id = {moved} WHERE position = {}",
        chain[5].position
    ))
    .await;
    let output = custodia(&db, &["verify"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    let at = format!("broken at position {}", chain[6].position);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("BROKEN") && l.contains(&at)),
        "the chain misses the event: {stdout}"
    );
}

/// `custodia audit prove` and `consistency`, from the `merkle` projection's
/// rows, lead to the Merkle root `custodia verify` computes from the log;
/// a size the rows do not cover is refused.
async fn merkle_proofs_lead_to_the_root_verify_prints(db: TestDatabase) {
    let chain = sample_log(&db).await;
    let ChainId::Tenant(tenant) = chain[6].chain else {
        panic!("a tenant chain")
    };
    let output = custodia(&db, &["projections", "rebuild", "merkle"]);
    assert!(output.status.success(), "{:?}", text(&output));
    let (verified, _) = text(&custodia(&db, &["verify", "--tenant", &tenant.to_string()]));
    let root = verified
        .lines()
        .find_map(|line| {
            line.split_once("merkle root ")
                .map(|(_, root)| root.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("{verified}"));
    let tenant = tenant.to_string();
    let json = |args: &[&str]| -> serde_json::Value {
        let output = custodia(&db, args);
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "{stdout}{stderr}");
        serde_json::from_str(&stdout).unwrap()
    };
    let proof = json(&["audit", "prove", "--tenant", &tenant, "--index", "6"]);
    assert_eq!(proof["root"], root.as_str(), "{proof}");
    assert_eq!(proof["tree_size"], 16);
    assert_eq!(proof["proof"].as_array().unwrap().len(), 4);
    let consistency = json(&["audit", "consistency", "--tenant", &tenant, "--from", "5"]);
    assert_eq!(consistency["second_root"], root.as_str(), "{consistency}");
    assert_eq!(consistency["second_size"], 16);
    let earlier = json(&[
        "audit", "prove", "--tenant", &tenant, "--index", "2", "--size", "5",
    ]);
    assert_eq!(earlier["root"], consistency["first_root"]);
    let output = custodia(
        &db,
        &[
            "audit", "prove", "--tenant", &tenant, "--index", "2", "--size", "17",
        ],
    );
    assert!(!output.status.success());
    assert!(
        text(&output).1.contains("cover 16 events"),
        "{:?}",
        text(&output)
    );
}

/// Signs checkpoints of every chain into a file kept elsewhere; returns
/// the file and the verifier key.
fn checkpoints(db: &TestDatabase) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let output = custodia(db, &["projections", "rebuild", "merkle"]);
    assert!(output.status.success(), "{:?}", text(&output));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("checkpoints.jsonl");
    let path = file.to_str().unwrap();
    let output = custodia(db, &["audit", "checkpoint", "--out", path]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        stdout.matches("signed a checkpoint of 16 events").count(),
        3,
        "{stdout}"
    );
    let output = custodia(db, &["audit", "key"]);
    let key = text(&output)
        .0
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(key.starts_with("custodia+"), "{key}");
    (dir, file, key)
}

fn against(db: &TestDatabase, file: &std::path::Path, key: &str) -> (Option<i32>, String) {
    let output = custodia(
        db,
        &[
            "verify",
            "--against",
            file.to_str().unwrap(),
            "--checkpoint-key",
            key,
        ],
    );
    let (stdout, stderr) = text(&output);
    (output.status.code(), format!("{stdout}{stderr}"))
}

/// A deleted tail: the bare chain still verifies; the checkpoint kept
/// elsewhere names the cut; and no new checkpoint is signed over it.
async fn checkpoints_kept_elsewhere_name_a_cut_chain(db: TestDatabase) {
    let chain = sample_log(&db).await;
    let (_dir, file, key) = checkpoints(&db);
    let (code, out) = against(&db, &file, &key);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        out.matches("consistent with 1 checkpoints (up to size 16)")
            .count(),
        3,
        "{out}"
    );
    // Nothing new: nothing signed again.
    let output = custodia(
        &db,
        &["audit", "checkpoint", "--out", file.to_str().unwrap()],
    );
    assert!(text(&output)
        .0
        .contains("unchanged since the last checkpoint"));
    // A new checkpoint key: the old checkpoints still verify with the old
    // key, which stays listed after the new one.
    let output = custodia(&db, &["audit", "rotate-key"]);
    let rotated = text(&output).0.trim().to_owned();
    assert!(output.status.success() && rotated != key, "{rotated}");
    let listed = text(&custodia(&db, &["audit", "key"])).0;
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        vec![rotated.as_str(), key.as_str()]
    );
    let (code, out) = against(&db, &file, &key);
    assert_eq!(code, Some(0), "{out}");
    // A key the auditor does not trust opens nothing.
    let other = custodia_infrastructure::signed_note::NoteSigner::generate("custodia").unwrap();
    let (code, out) = against(&db, &file, &other.verifier().to_string());
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("no signature by a known key"), "{out}");

    let raw = Raw::connect(&db).await;
    raw.drop_guards().await;
    raw.exec(&format!(
        "DELETE FROM events WHERE position IN ({}, {})",
        chain[14].position, chain[15].position
    ))
    .await;
    let output = custodia(&db, &["verify"]);
    assert!(
        output.status.success(),
        "a bare chain cannot see a cut tail"
    );
    let ChainId::Tenant(tenant) = chain[0].chain else {
        panic!("a tenant chain")
    };
    let (code, out) = against(&db, &file, &key);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "CHECKPOINT MISMATCH tenant {tenant}: the log holds 14 events, a checkpoint was signed at size 16: the chain was cut after chain index 13"
        )),
        "{out}"
    );
    let output = custodia(&db, &["projections", "rebuild", "merkle"]);
    assert!(output.status.success());
    let output = custodia(
        &db,
        &["audit", "checkpoint", "--out", file.to_str().unwrap()],
    );
    assert!(!output.status.success());
    assert!(
        text(&output)
            .1
            .contains("not consistent with its last checkpoint"),
        "{:?}",
        text(&output)
    );
}

/// An event changed and every event after it re-hashed: the bare chain
/// verifies; the checkpoint kept elsewhere does not.
async fn checkpoints_kept_elsewhere_name_a_rehashed_suffix(db: TestDatabase) {
    let chain = sample_log(&db).await;
    let (_dir, file, key) = checkpoints(&db);
    let raw = Raw::connect(&db).await;
    raw.drop_guards().await;
    let mut prev = chain[9].hash;
    for (i, original) in chain.iter().enumerate().skip(10) {
        let mut event = original.clone();
        if i == 10 {
            event.metadata.origin = custodia_domain::Origin::parse("dEmo").unwrap();
        }
        event.prev_hash = prev;
        event.hash = compute_hash(&event);
        prev = event.hash;
        raw.exec(&format!(
            "UPDATE events SET origin = '{}', prev_hash = {}, hash = {} WHERE position = {}",
            event.metadata.origin.as_str(),
            raw.blob(&event.prev_hash.0),
            raw.blob(&event.hash.0),
            event.position
        ))
        .await;
    }
    let output = custodia(&db, &["verify"]);
    assert!(
        output.status.success(),
        "a re-hashed suffix passes a bare chain: {:?}",
        text(&output)
    );
    let ChainId::Tenant(tenant) = chain[0].chain else {
        panic!("a tenant chain")
    };
    let (code, out) = against(&db, &file, &key);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "CHECKPOINT MISMATCH tenant {tenant}: its first 16 events do not have the root signed at size 16"
        )),
        "{out}"
    );
    assert_eq!(
        out.matches("consistent with 1 checkpoints").count(),
        2,
        "{out}"
    );
    // The database keeps no checkpoint of this chain (they were shipped to
    // the file only): held to the file it ships to, nothing is signed over
    // the rewritten log, so no export or proof file is made under one.
    ok(&db, &["projections", "rebuild", "merkle"]);
    let export = file.with_file_name("export");
    let output = Command::new(env!("CARGO_BIN_EXE_custodia"))
        .args(["audit", "export", "--tenant", &tenant.to_string()])
        .args(["--out", export.to_str().unwrap()])
        .env("DATABASE_URL", db.url())
        .env("CUSTODIA_MASTER_KEY", MASTER_KEY)
        .env("CUSTODIA_CHECKPOINT_FILE", &file)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("is not consistent with its last checkpoint (size 16)"),
        "{stderr}"
    );
    assert!(!export.join("manifest.json").exists());
}

/// Runs a command and asserts it succeeded; returns its stdout.
fn ok(db: &TestDatabase, args: &[&str]) -> String {
    let output = custodia(db, args);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{args:?}: {stdout}{stderr}");
    stdout
}

/// `custodia audit verify` (it needs no database: none is named).
fn offline(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_custodia"))
        .args(["audit", "verify"])
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run custodia");
    let (stdout, stderr) = text(&output);
    (output.status.code(), format!("{stdout}{stderr}"))
}

/// `docs/verify_export.py`, written from the documents alone: its
/// verdict and what it printed.
fn independent(path: &std::path::Path, keys: &str) -> (bool, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/verify_export.py");
    let output = Command::new("python3")
        .args([script, path.to_str().unwrap()])
        .args(keys.split(' '))
        .output()
        .expect("python3 runs (it is on every machine of this project)");
    let (stdout, stderr) = text(&output);
    (output.status.success(), format!("{stdout}{stderr}"))
}

/// A copy of an export to change.
fn copy_of(export: &std::path::Path, into: &std::path::Path, name: &str) -> std::path::PathBuf {
    let copy = into.join(name);
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(export).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    copy
}

fn lines_of(dir: &std::path::Path, file: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(file))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(dir: &std::path::Path, file: &str, lines: &[String]) {
    std::fs::write(dir.join(file), lines.join("\n") + "\n").unwrap();
}

/// Makes the manifest agree with the files again (and with `events`
/// events), as someone who changed them would.
fn refit_manifest(dir: &std::path::Path, events: Option<u64>) {
    use sha2::{Digest, Sha256};
    let path = dir.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for file in manifest["files"].as_array_mut().unwrap() {
        let bytes = std::fs::read(dir.join(file["name"].as_str().unwrap())).unwrap();
        file["sha256"] = hex::encode(Sha256::digest(&bytes)).into();
        file["bytes"] = bytes.len().into();
    }
    if let Some(events) = events {
        manifest["events"] = events.into();
    }
    std::fs::write(&path, manifest.to_string()).unwrap();
}

/// An event line with its payload replaced and, when `rehash`, its hash
/// recomputed over `prev_hash` (what someone rewriting history does).
fn rewrite_line(
    chain: uuid::Uuid,
    line: &str,
    payload: Option<&[u8]>,
    prev_hash: Option<&str>,
) -> (String, String) {
    use base64::Engine;
    use custodia_domain::chain::EventFields;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut event: serde_json::Value = serde_json::from_str(line).unwrap();
    if let Some(payload) = payload {
        event["payload"] = b64.encode(payload).into();
    }
    if let Some(prev) = prev_hash {
        event["prev_hash"] = prev.into();
    }
    let text = |name: &str| event[name].as_str().unwrap().to_owned();
    let uuid = |name: &str| uuid::Uuid::parse_str(event[name].as_str().unwrap()).unwrap();
    let number = |name: &str| event[name].as_u64().unwrap();
    let prev = hex::decode(text("prev_hash")).unwrap();
    let payload = b64.decode(text("payload")).unwrap();
    let (category, event_type, actor, origin) = (
        text("stream_category"),
        text("event_type"),
        text("actor"),
        text("origin"),
    );
    let hash = EventFields {
        chain,
        chain_index: number("chain_index"),
        prev_hash: &prev,
        event_id: uuid("event_id"),
        stream_category: &category,
        stream_id: uuid("stream_id"),
        stream_version: number("stream_version"),
        event_type: &event_type,
        schema_version: number("schema_version") as u32,
        recorded_at: event["recorded_at"].as_i64().unwrap(),
        actor: &actor,
        command_id: uuid("command_id"),
        correlation_id: uuid("correlation_id"),
        causation_id: event["causation_id"]
            .as_str()
            .map(|id| uuid::Uuid::parse_str(id).unwrap()),
        origin: &origin,
        payload: &payload,
    }
    .hash()
    .to_hex();
    event["hash"] = hash.clone().into();
    (event.to_string(), hash)
}

/// An export of a tenant's chain, checked with no database: it verifies
/// untouched (also against a checkpoint kept from before it grew), and
/// each change an auditor must catch is refused with its own message.
async fn an_export_verifies_offline_and_every_change_is_named(db: TestDatabase) {
    let chain = sample_log(&db).await;
    let ChainId::Tenant(tenant) = chain[0].chain else {
        panic!("a tenant chain")
    };
    let tenant = tenant.to_string();
    let work = tempfile::tempdir().unwrap();
    let dir = |name: &str| work.path().join(name);
    ok(&db, &["projections", "rebuild", "merkle"]);
    let export_to = |out: &std::path::Path| {
        ok(
            &db,
            &[
                "audit",
                "export",
                "--tenant",
                &tenant,
                "--out",
                out.to_str().unwrap(),
            ],
        )
    };
    // A first export signs the checkpoint of the 16 events; it is what the
    // auditor keeps.
    let first = dir("first");
    let out = export_to(&first);
    assert!(out.contains("exported 16 events"), "{out}");
    // The checkpoint key is rotated under a new name (a new origin) and the
    // chain grows by one event; the next export holds both checkpoints.
    let old_key = ok(&db, &["audit", "key"])
        .lines()
        .next()
        .unwrap()
        .to_owned();
    ok(&db, &["audit", "rotate-key", "--log-name", "renamed"]);
    ok(&db, &["tenant", "suspend", "--tenant", &tenant]);
    ok(&db, &["projections", "rebuild", "merkle"]);
    let export = dir("export");
    let out = export_to(&export);
    assert!(
        out.contains("exported 17 events") && out.contains("with 1 earlier checkpoints"),
        "{out}"
    );
    let key = ok(&db, &["audit", "key"])
        .lines()
        .next()
        .unwrap()
        .to_owned();
    assert!(key.starts_with("renamed+"), "{key}");
    let verify = |path: &std::path::Path, more: &[&str]| {
        let mut args = vec![path.to_str().unwrap(), "--checkpoint-key", key.as_str()];
        args.extend_from_slice(&["--checkpoint-key", old_key.as_str()]);
        args.extend_from_slice(more);
        offline(&args)
    };
    let (code, out) = verify(&export, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("VERIFIED: 17 events"), "{out}");
    assert!(
        out.contains("consistent with the 1 earlier checkpoints"),
        "{out}"
    );
    // The new key alone does not vouch for what the old one signed.
    let (code, out) = offline(&[export.to_str().unwrap(), "--checkpoint-key", &key]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("checkpoints.jsonl line 1: no signature by a known key"),
        "{out}"
    );
    // An independent verifier, written from the documents alone, agrees.
    let keys = format!("{key} {old_key}");
    let (verified, out) = independent(&export, &keys);
    assert!(verified && out.contains("VERIFIED: 17 events"), "{out}");
    let kept = first.join("checkpoints.jsonl");
    let (code, out) = verify(&export, &["--trusted-checkpoint", kept.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("at size 16 is a prefix of the export's log"),
        "{out}"
    );
    // Part of the chain, from the sixth event on: the frontier stands in
    // for the events before it.
    let sixth: serde_json::Value =
        serde_json::from_str(&lines_of(&export, "events.jsonl")[5]).unwrap();
    let from = rfc3339(sixth["recorded_at"].as_i64().unwrap());
    let part = dir("part");
    let out = ok(
        &db,
        &[
            "audit",
            "export",
            "--tenant",
            &tenant,
            "--from",
            &from,
            "--out",
            part.to_str().unwrap(),
        ],
    );
    assert!(out.contains("(chain indexes 5..16)"), "{out}");
    let (code, out) = verify(&part, &["--trusted-checkpoint", kept.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("VERIFIED: 12 events"), "{out}");
    let (verified, out) = independent(&part, &keys);
    assert!(
        verified && out.contains("VERIFIED: 12 events (chain indexes 5..16)"),
        "{out}"
    );
    // A non-empty directory is never written into.
    let output = custodia(
        &db,
        &[
            "audit",
            "export",
            "--tenant",
            &tenant,
            "--out",
            export.to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(2), "{:?}", text(&output));

    let chain_id = uuid::Uuid::parse_str(&tenant).unwrap();
    let refused = |copy: &std::path::Path, expected: &str| {
        let (code, out) = verify(copy, &[]);
        assert_eq!(code, Some(1), "{out}");
        assert!(
            out.contains("NOT VERIFIED") && out.contains(expected),
            "expected {expected:?} in:\n{out}"
        );
    };
    let events = lines_of(&export, "events.jsonl");

    // One event edited, its hash left: its chain index is named.
    let copy = copy_of(&export, work.path(), "edited");
    let mut lines = events.clone();
    let mut event: serde_json::Value = serde_json::from_str(&lines[3]).unwrap();
    event["payload"] = "e30=".into(); // {}
    lines[3] = event.to_string();
    write_lines(&copy, "events.jsonl", &lines);
    refused(&copy, "chain index 3");
    refused(&copy, "altered content");

    // One event edited and every hash after it recomputed: the chain holds,
    // the signed checkpoint does not.
    let copy = copy_of(&export, work.path(), "rehashed");
    let mut lines = events.clone();
    let (line, mut hash) = rewrite_line(chain_id, &lines[3], Some(b"{}"), None);
    lines[3] = line;
    for line in lines.iter_mut().skip(4) {
        let (rewritten, next) = rewrite_line(chain_id, line, None, Some(&hash));
        *line = rewritten;
        hash = next;
    }
    write_lines(&copy, "events.jsonl", &lines);
    refit_manifest(&copy, None);
    refused(&copy, "is not part of the signed checkpoint of size 17");
    let (verified, out) = independent(&copy, &keys);
    assert!(
        !verified && out.contains("not in the signed checkpoint"),
        "{out}"
    );

    // One event dropped.
    let copy = copy_of(&export, work.path(), "dropped");
    let mut lines = events.clone();
    lines.remove(5);
    write_lines(&copy, "events.jsonl", &lines);
    refused(&copy, "missing: chain index 5 not in the export");

    // Two events swapped.
    let copy = copy_of(&export, work.path(), "reordered");
    let mut lines = events.clone();
    lines.swap(5, 6);
    write_lines(&copy, "events.jsonl", &lines);
    refused(&copy, "reordered: chain index 5 comes after chain index 6");

    // The end cut off: by the manifest's count, and, with the manifest made
    // to agree, by the proof's size.
    let copy = copy_of(&export, work.path(), "truncated");
    write_lines(&copy, "events.jsonl", &events[..14]);
    refused(&copy, "the export holds 14 events, its manifest names 17");
    refit_manifest(&copy, Some(14));
    refused(
        &copy,
        "the events end at size 14, proofs.json proves size 17",
    );

    // The checkpoint changed (its size), with the manifest made to agree.
    let copy = copy_of(&export, work.path(), "checkpoint");
    let mut lines = lines_of(&export, "checkpoints.jsonl");
    lines[1] = lines[1].replacen("\\n17\\n", "\\n18\\n", 1);
    assert_ne!(lines, lines_of(&export, "checkpoints.jsonl"));
    write_lines(&copy, "checkpoints.jsonl", &lines);
    refit_manifest(&copy, None);
    refused(&copy, "checkpoints.jsonl line 2");
    refused(&copy, "signed with another key, or changed after signing");

    // The log rewritten and its checkpoints signed again with another key.
    let copy = copy_of(&export, work.path(), "other-key");
    let other = custodia_infrastructure::signed_note::NoteSigner::generate("custodia").unwrap();
    let mut lines = Vec::new();
    for line in lines_of(&export, "checkpoints.jsonl") {
        let note: serde_json::Value = serde_json::from_str(&line).unwrap();
        let text = note["checkpoint"]
            .as_str()
            .unwrap()
            .split("\n\n")
            .next()
            .unwrap();
        let signed = other.sign(&format!("{text}\n")).unwrap();
        lines.push(serde_json::json!({ "checkpoint": signed }).to_string());
    }
    write_lines(&copy, "checkpoints.jsonl", &lines);
    refit_manifest(&copy, None);
    refused(
        &copy,
        "checkpoints.jsonl line 1: no signature by a known key",
    );
    let (verified, out) = independent(&copy, &keys);
    assert!(
        !verified && out.contains("no signature by a trusted key"),
        "{out}"
    );

    // The manifest changed: a file's hash, or the events' count.
    let copy = copy_of(&export, work.path(), "manifest");
    let path = copy.join("manifest.json");
    let manifest = std::fs::read_to_string(&path).unwrap();
    let proofs_hash = serde_json::from_str::<serde_json::Value>(&manifest).unwrap()["files"][2]
        ["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::write(&path, manifest.replace(&proofs_hash, &"0".repeat(64))).unwrap();
    refused(&copy, "proofs.json: its SHA-256 is");
    let copy = copy_of(&export, work.path(), "manifest-count");
    refit_manifest(&copy, Some(18));
    refused(&copy, "the export holds 17 events, its manifest names 18");

    // A file changed without changing an event (spaces added): the
    // manifest's hash names it.
    let copy = copy_of(&export, work.path(), "spaces");
    let mut lines = events.clone();
    lines[0] = lines[0].replacen(',', ", ", 1);
    write_lines(&copy, "events.jsonl", &lines);
    refused(&copy, "events.jsonl: its SHA-256 is");

    // A checkpoint the auditor kept that the export's log does not extend.
    let note = serde_json::from_str::<serde_json::Value>(&lines_of(&first, "checkpoints.jsonl")[0])
        .unwrap()["checkpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut text = note
        .split("\n\n")
        .next()
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    // Kept checkpoints the other key signs (its verifier key passed too).
    let trusting = |text: &[String], name: &str| {
        let kept = work.path().join(name);
        let note = other.sign(&(text.join("\n") + "\n")).unwrap();
        std::fs::write(&kept, serde_json::json!({ "checkpoint": note }).to_string()).unwrap();
        let other_key = other.verifier().to_string();
        let (code, out) = verify(
            &export,
            &[
                "--trusted-checkpoint",
                kept.to_str().unwrap(),
                "--checkpoint-key",
                &other_key,
            ],
        );
        assert_eq!(code, Some(1), "{out}");
        out
    };
    text[2] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into();
    let out = trusting(&text, "forked.jsonl");
    assert!(
        out.contains("your trusted checkpoint of size 16 has another root"),
        "{out}"
    );
    // A kept checkpoint of another chain is never skipped in silence.
    text[0] = format!("custodia/{}", uuid::Uuid::now_v7());
    let out = trusting(&text, "elsewhere.jsonl");
    assert!(
        out.contains("your trusted checkpoint file holds no checkpoint of renamed/"),
        "{out}"
    );
    // A proof where none is due (the events end at the checkpoint) is refused.
    let copy = copy_of(&export, work.path(), "extra-proof");
    let path = copy.join("proofs.json");
    let mut proofs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    proofs["end"]["proof"] = serde_json::json!(["00".repeat(32)]);
    std::fs::write(&path, proofs.to_string()).unwrap();
    refit_manifest(&copy, None);
    refused(&copy, "is not part of the signed checkpoint of size 17");
}

/// A proof file: one event, its inclusion proof and the signed checkpoint,
/// checked alone; a changed event, index or signature is refused.
async fn a_proof_file_is_checked_alone(db: TestDatabase) {
    let chain = sample_log(&db).await;
    let ChainId::Tenant(tenant) = chain[0].chain else {
        panic!("a tenant chain")
    };
    let tenant = tenant.to_string();
    ok(&db, &["projections", "rebuild", "merkle"]);
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("grant.tlog-proof");
    let out = ok(
        &db,
        &[
            "audit",
            "prove",
            "--tenant",
            &tenant,
            "--index",
            "6",
            "--out",
            file.to_str().unwrap(),
        ],
    );
    assert!(out.contains("under the checkpoint of size 16"), "{out}");
    let key = ok(&db, &["audit", "key"])
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let (code, out) = offline(&[file.to_str().unwrap(), "--checkpoint-key", &key]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("event {}", chain[6].event_id))
            && out.contains("VERIFIED: it is in the checkpoint of size 16"),
        "{out}"
    );
    let (verified, independent_out) = independent(&file, &key);
    assert!(
        verified && independent_out.contains("at chain index 6"),
        "{independent_out}"
    );
    let proof = std::fs::read_to_string(&file).unwrap();
    let refused = |text: String, expected: &str| {
        let changed = work.path().join("changed.tlog-proof");
        std::fs::write(&changed, text).unwrap();
        let (code, out) = offline(&[changed.to_str().unwrap(), "--checkpoint-key", &key]);
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains(expected), "expected {expected:?} in:\n{out}");
    };
    // Another event's line in place of this one's.
    let extra = proof.lines().nth(1).unwrap().to_owned();
    let other_proof = work.path().join("other.tlog-proof");
    ok(
        &db,
        &[
            "audit",
            "prove",
            "--tenant",
            &tenant,
            "--index",
            "7",
            "--out",
            other_proof.to_str().unwrap(),
        ],
    );
    let other_extra = std::fs::read_to_string(&other_proof)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    refused(
        proof.replacen(&extra, &other_extra, 1),
        "the proof is for index 6, the event is at chain index 7",
    );
    refused(
        proof.replacen("index 6", "index 5", 1),
        "the proof is for index 5, the event is at chain index 6",
    );
    // A hash of the inclusion proof changed.
    let step = proof.lines().nth(3).unwrap().to_owned();
    refused(
        proof.replacen(&step, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", 1),
        "the event is not in the signed checkpoint of size 16",
    );
    // The event's content changed (its hash kept).
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let line =
        String::from_utf8(b64.decode(extra.strip_prefix("extra ").unwrap()).unwrap()).unwrap();
    let mut event: serde_json::Value = serde_json::from_str(&line).unwrap();
    event["recorded_at"] = (event["recorded_at"].as_i64().unwrap() + 1).into();
    refused(
        proof.replacen(
            &extra,
            &format!("extra {}", b64.encode(event.to_string())),
            1,
        ),
        "the event does not hash to its hash",
    );
    let (code, out) = offline(&[
        file.to_str().unwrap(),
        "--checkpoint-key",
        &custodia_infrastructure::signed_note::NoteSigner::generate("custodia")
            .unwrap()
            .verifier()
            .to_string(),
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no signature by a known key"), "{out}");
}

fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
