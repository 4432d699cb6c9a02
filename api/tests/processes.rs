//! Two `custodia serve` processes on one database (both backends): a logout
//! on one stops the access token on the other at once, and when the process
//! running the projections dies, the other takes them over.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use custodia_infrastructure::MasterKey;
use custodia_tests::{backends, TestDatabase};
use serde_json::{json, Value};

backends!(
    logout_on_one_instance_stops_the_token_on_the_other,
    suspension_on_one_instance_stops_the_user_on_the_other,
    another_instance_takes_over_the_projections,
    nothing_of_an_erased_subject_or_tenant_is_left_readable,
    a_restored_key_store_never_brings_an_erased_subject_back,
    keys_kept_in_the_log_database_move_to_a_store_of_their_own,
    the_master_key_rotates_while_serving_and_resumes_where_it_stopped,
    the_server_signs_checkpoints_an_auditor_checks,
    a_queued_message_survives_a_crash_and_goes_out_once,
);

#[allow(dead_code)] // the async helpers; this file runs off the runtime
mod smtp;

const PASSWORD: &str = "correct horse battery staple";

/// One plain HTTP/1.1 exchange; returns the status and the JSON body.
fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    http_as(address, "custodia-tests", method, path, token, body)
}

/// [`http`] from a client naming itself `user_agent`.
fn http_as(
    address: SocketAddr,
    user_agent: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(address).expect("the server accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: {address}\r\nuser-agent: {user_agent}\r\nconnection: close\r\ncontent-type: application/json\r\n{auth}content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let json = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| serde_json::from_str(body).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    (status, json)
}

struct Server {
    child: Child,
    address: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn custodia(db: &TestDatabase, key: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_custodia"));
    command
        .env("DATABASE_URL", db.url())
        .env("CUSTODIA_MASTER_KEY", key)
        .env("RUST_LOG", "warn");
    command
}

fn serve(db: &TestDatabase, key: &str) -> Server {
    serve_logging(db, key, None)
}

/// [`serve`], its log output (at `debug`) written to `log` if given.
fn serve_logging(db: &TestDatabase, key: &str, log: Option<&std::path::Path>) -> Server {
    start(custodia(db, key), log)
}

/// Starts `command` as `custodia serve`, its log output (at `debug`)
/// written to `log` if given.
fn start(mut command: Command, log: Option<&std::path::Path>) -> Server {
    let address = free_address();
    let output = || match log {
        Some(path) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap(),
        ),
        None => Stdio::null(),
    };
    if log.is_some() {
        command.env("RUST_LOG", "debug");
    }
    let child = command
        .arg("serve")
        .env("CUSTODIA_LISTEN", address.to_string())
        .stdout(output())
        .stderr(output())
        .spawn()
        .expect("custodia serve starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(address).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server { child, address }
}

/// Bootstraps a tenant; returns its id.
fn bootstrap(db: &TestDatabase, key: &str) -> String {
    bootstrap_tenant(db, key, "ada@example.org", &[])
}

/// Bootstraps a tenant whose owner is `owner` (`extra`: more arguments).
fn bootstrap_tenant(db: &TestDatabase, key: &str, owner: &str, extra: &[&str]) -> String {
    bootstrap_with(custodia(db, key), owner, extra)
}

/// Bootstraps a tenant with `command` (`custodia` and its environment).
fn bootstrap_with(mut command: Command, owner: &str, extra: &[&str]) -> String {
    let output = command
        .args(["bootstrap", "--tenant-name", "Acme", "--owner-email", owner])
        .args(extra)
        .env("CUSTODIA_BOOTSTRAP_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("tenant ").map(str::trim).map(str::to_owned))
        .unwrap()
}

fn login(server: &Server, tenant: &str) -> String {
    login_as(server, tenant, "ada@example.org").0
}

/// Logs `email` in; returns the access and refresh tokens.
fn login_as(server: &Server, tenant: &str, email: &str) -> (String, String) {
    login_from(server, "custodia-tests", tenant, email)
}

/// [`login_as`] from a client naming itself `user_agent`.
fn login_from(server: &Server, user_agent: &str, tenant: &str, email: &str) -> (String, String) {
    let (status, tokens) = http_as(
        server.address,
        user_agent,
        "POST",
        "/auth/login",
        None,
        Some(&json!({ "tenant_id": tenant, "email": email, "password": PASSWORD })),
    );
    assert_eq!(status, 200, "{tokens}");
    let token = |name: &str| tokens[name].as_str().unwrap().to_owned();
    (token("access_token"), token("refresh_token"))
}

fn graphql(server: &Server, token: &str, query: &str) -> (u16, Value) {
    http(
        server.address,
        "POST",
        "/graphql",
        Some(token),
        Some(&json!({ "query": query })),
    )
}

/// Asks `server` with `token` until it answers 401; fails if that takes a
/// second or more (the bound for other processes to see a change).
fn refused_within_a_second(server: &Server, token: &str) {
    let since = Instant::now();
    loop {
        let (status, body) = graphql(server, token, "{ serverTime }");
        if status == 401 {
            assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
            return;
        }
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "the other instance still accepts the token"
        );
    }
}

async fn logout_on_one_instance_stops_the_token_on_the_other(db: TestDatabase) {
    let key = MasterKey::generate().to_base64();
    let tenant = bootstrap(&db, &key);
    tokio::task::spawn_blocking(move || {
        let (a, b) = (serve(&db, &key), serve(&db, &key));
        let token = login(&a, &tenant);
        let (status, body) = graphql(&b, &token, "{ serverTime }");
        assert_eq!(status, 200, "{body}");
        let (status, _) = http(a.address, "POST", "/auth/logout", Some(&token), None);
        assert_eq!(status, 204);
        refused_within_a_second(&b, &token);
    })
    .await
    .unwrap();
}

async fn suspension_on_one_instance_stops_the_user_on_the_other(db: TestDatabase) {
    let key = MasterKey::generate().to_base64();
    let tenant = bootstrap(&db, &key);
    tokio::task::spawn_blocking(move || {
        let (a, b) = (serve(&db, &key), serve(&db, &key));
        let owner = login(&a, &tenant);
        let register = format!(
            "mutation {{ registerUser(input: {{ email: \"grace@example.org\", password: \"{PASSWORD}\" }}) {{ user {{ id }} }} }}"
        );
        let (status, body) = graphql(&a, &owner, &register);
        assert_eq!(status, 200, "{body}");
        let admin = body["data"]["registerUser"]["user"]["id"].as_str().unwrap().to_owned();
        let grant = format!("mutation {{ grantRole(userId: \"{admin}\", role: \"admin\") {{ consistencyToken }} }}");
        assert!(graphql(&a, &owner, &grant).1["errors"].is_null());
        let (token, refresh) = login_as(&a, &tenant, "grace@example.org");
        let (status, body) = graphql(&b, &token, "{ serverTime }");
        assert_eq!(status, 200, "{body}");
        let suspend = format!("mutation {{ suspendUser(userId: \"{admin}\") {{ user {{ status }} }} }}");
        let (_, body) = graphql(&a, &owner, &suspend);
        assert!(body["errors"].is_null(), "{body}");
        refused_within_a_second(&b, &token);
        let (status, _) = http(
            b.address,
            "POST",
            "/auth/refresh",
            None,
            Some(&json!({ "tenant_id": tenant, "refresh_token": refresh })),
        );
        assert_eq!(status, 401, "nor refreshes it");
    })
    .await
    .unwrap();
}

async fn another_instance_takes_over_the_projections(db: TestDatabase) {
    let key = MasterKey::generate().to_base64();
    let tenant = bootstrap(&db, &key);
    tokio::task::spawn_blocking(move || {
        let a = serve(&db, &key);
        // Let the first instance take every projection before the second starts.
        let token = login(&a, &tenant);
        let deadline = Instant::now() + Duration::from_secs(10);
        while graphql(&a, &token, "{ me { id } }").1["data"]["me"].is_null() {
            assert!(Instant::now() < deadline, "the projections never ran");
            std::thread::sleep(Duration::from_millis(50));
        }
        let b = serve(&db, &key);
        // The first instance dies without giving its leases up.
        drop(a);
        let registered = Instant::now();
        let mutation =
            "mutation { registerUser(input: { email: \"grace@example.org\" }) { user { email } } }";
        let (status, body) = graphql(&b, &token, mutation);
        assert_eq!(status, 200, "{body}");
        // The mutation's answer waits at most 2 s for the projections: keep
        // reading until the second instance has taken them over.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, body) = graphql(
                &b,
                &token,
                "{ users(email: \"grace@example.org\") { edges { node { email } } } }",
            );
            if body["data"]["users"]["edges"][0]["node"]["email"] == "grace@example.org" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no instance took the projections over: {body}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("takeover after a crash: {:?}", registered.elapsed());
    })
    .await
    .unwrap();
}

/// Every way a marker could sit in a file: as it is, in hex, and in base64
/// at each of the three alignments (the characters that do not depend on
/// the bytes around it).
fn encodings(marker: &str) -> Vec<Vec<u8>> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut forms = vec![
        marker.as_bytes().to_vec(),
        hex::encode(marker).into_bytes(),
        hex::encode_upper(marker).into_bytes(),
    ];
    for shift in 0..3 {
        let mut shifted = vec![0u8; shift];
        shifted.extend_from_slice(marker.as_bytes());
        let encoded = b64.encode(&shifted);
        let skip = (shift * 4).div_ceil(3);
        forms.push(encoded.as_bytes()[skip..encoded.len() - 4].to_vec());
    }
    forms
}

fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The residue test: users with a unique marker in every personal field
/// (email, display name, phone, custom attributes) and in the user agent
/// of their logins; one subject erased over GraphQL and a whole tenant
/// erased with the CLI, through real processes; then the whole database
/// (the SQLite file with its WAL and shared memory, byte by byte, or a
/// `pg_dump`), which holds the key store too, and the server's log output
/// (at `debug`) hold no marker of the erased ones, as text, hex or base64.
/// A subject not erased is still readable.
async fn nothing_of_an_erased_subject_or_tenant_is_left_readable(db: TestDatabase) {
    let key = MasterKey::generate().to_base64();
    let tenant = bootstrap(&db, &key);
    let other = bootstrap_tenant(&db, &key, "mkr5owner@example.org", &["--another-tenant"]);
    tokio::task::spawn_blocking(move || {
        let logs = tempfile::NamedTempFile::new().unwrap();
        let server = serve_logging(&db, &key, Some(logs.path()));
        let person = |token: &str, marker: &str, phone: &str| {
            let register = format!(
                "mutation {{ registerUser(input: {{ email: \"{marker}@example.org\", password: \"{PASSWORD}\", \
                 profile: {{ displayName: \"{marker}Name\", phone: \"{phone}\", attributes: {{ note: \"{marker}Attr\" }} }} }}) \
                 {{ user {{ id }} consistencyToken }} }}"
            );
            let (status, body) = graphql(&server, token, &register);
            assert_eq!(status, 200, "{body}");
            body["data"]["registerUser"]["user"]["id"].as_str().unwrap().to_owned()
        };
        let owner = login(&server, &tenant);
        let grace = person(&owner, "mkr1grace", "+44 7700 900111");
        let henry = person(&owner, "mkr2henry", "+44 7700 900222");
        login_from(&server, "mkr1agent/1.0", &tenant, "mkr1grace@example.org");
        login_from(&server, "mkr2agent/1.0", &tenant, "mkr2henry@example.org");
        let other_owner = login_as(&server, &other, "mkr5owner@example.org").0;
        person(&other_owner, "mkr5tina", "+44 7700 900555");
        login_from(&server, "mkr5agent/1.0", &other, "mkr5tina@example.org");

        let erase = format!(
            "mutation {{ eraseSubject(userId: \"{grace}\", reference: \"DSR-77\") {{ receipt {{ hash }} }} }}"
        );
        let (status, body) = graphql(&server, &owner, &erase);
        assert!(status == 200 && body["errors"].is_null(), "{body}");
        let erased = custodia(&db, &key)
            .args(["privacy", "erase-tenant", "--tenant", &other, "--reference", "offboarding"])
            .output()
            .unwrap();
        assert!(erased.status.success(), "{}", String::from_utf8_lossy(&erased.stderr));

        // The receipt the CLI printed checks out against the log, and a
        // receipt with one field changed does not.
        let receipt: Value = serde_json::from_slice(&erased.stdout).unwrap();
        let check = |receipt: &Value| {
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), receipt.to_string()).unwrap();
            let output = custodia(&db, &key)
                .arg("verify")
                .arg("--receipt")
                .arg(file.path())
                .output()
                .unwrap();
            (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
        };
        let (code, out) = check(&receipt);
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains("receipt: matches the log"), "{out}");
        for (field, value, named) in [
            ("hash", json!("00".repeat(32)), "hash"),
            ("erased_at", json!("2020-01-01T00:00:00.000000Z"), "erased at"),
            ("erased", json!("subject"), "erased"),
        ] {
            let mut forged = receipt.clone();
            if field == "hash" {
                forged["event"][field] = value;
            } else {
                forged[field] = value;
            }
            let (code, out) = check(&forged);
            assert_eq!(code, Some(1), "{out}");
            assert!(out.contains(&format!("RECEIPT MISMATCH: {named}:")), "{out}");
        }

        // The one not erased is still readable.
        let read = format!("{{ user(id: \"{henry}\") {{ displayName phone }} }}");
        let (_, body) = graphql(&server, &owner, &read);
        assert_eq!(
            body["data"]["user"],
            json!({ "displayName": "mkr2henryName", "phone": "+44 7700 900222" }),
            "{body}"
        );
        drop(server);

        let mut contents = vec![("log output".to_owned(), std::fs::read(logs.path()).unwrap())];
        if let Some(path) = db.url().strip_prefix("sqlite://") {
            // The log and the key store beside it.
            let keys = path.replace(".db", ".keys.db");
            for file in [path, keys.as_str()] {
                for suffix in ["", "-wal", "-shm"] {
                    let file = format!("{file}{suffix}");
                    if let Ok(bytes) = std::fs::read(&file) {
                        contents.push((file, bytes));
                    }
                }
            }
        } else {
            let dump = Command::new("pg_dump").arg(db.url()).output().unwrap();
            assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
            contents.push(("pg_dump".to_owned(), dump.stdout));
        }
        // Erased: grace (one subject) and all of the other tenant.
        let erased_markers = [
            "mkr1grace", "mkr1agent", "447700900111", "7700 900111",
            "mkr5tina", "mkr5agent", "mkr5owner", "447700900555", "7700 900555",
        ];
        for (name, bytes) in &contents {
            for marker in erased_markers {
                for form in encodings(marker) {
                    assert!(
                        !holds(bytes, &form),
                        "{name} holds {marker} (as {})",
                        String::from_utf8_lossy(&form)
                    );
                }
            }
        }
        // The search finds what is there: the erasure's reference, which is
        // not personal, is in the database in one of these forms.
        assert!(
            contents[1..]
                .iter()
                .any(|(_, bytes)| encodings("DSR-77").iter().any(|f| holds(bytes, f))),
            "the scan does not see the log's contents"
        );
    })
    .await
    .unwrap();
}

/// Runs `future` to its end on a runtime of its own (from a test's
/// blocking thread).
fn block<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// How many rows `sql` (a `SELECT count(*)`) counts in the database at `url`.
fn count(url: &str, sql: &str) -> i64 {
    block(async {
        if url.starts_with("sqlite") {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
        } else {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
        }
    })
}

/// Where a test's key store lives: on SQLite the default file beside the
/// log; on PostgreSQL a database of its own, as production would have it.
async fn key_store_of(db: &TestDatabase) -> (Option<TestDatabase>, String) {
    if db.is_postgres() {
        let keys = TestDatabase::postgres().await.expect("a second database");
        let url = keys.url().to_owned();
        (Some(keys), url)
    } else {
        (None, custodia_infrastructure::default_keys_url(db.url()))
    }
}

const KEY_TABLES: [&str; 4] = ["tenant_keys", "subject_keys", "access_keys", "signing_keys"];

/// The key store is lost: its file is gone (SQLite) or its tables are
/// empty (PostgreSQL).
fn lose_key_store(keys_url: &str) {
    match keys_url.strip_prefix("sqlite://") {
        Some(path) => {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
        }
        None => {
            let sql: String = KEY_TABLES
                .iter()
                .map(|t| format!("DELETE FROM {t};"))
                .collect();
            let output = Command::new("psql")
                .args(["-q", "-v", "ON_ERROR_STOP=1", "-c", &sql, keys_url])
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// A backup of the key store with the database's own tools, into `dir`.
fn native_backup(keys_url: &str, dir: &std::path::Path) -> std::path::PathBuf {
    match keys_url.strip_prefix("sqlite://") {
        Some(_) => {
            let copy = dir.join("keys-copy.db");
            block(async {
                let pool = sqlx::SqlitePool::connect(keys_url).await.unwrap();
                sqlx::query(&format!("VACUUM INTO '{}'", copy.display()))
                    .execute(&pool)
                    .await
                    .unwrap();
            });
            copy
        }
        None => {
            let dump = dir.join("keys.sql");
            let mut command = Command::new("pg_dump");
            command.args(["--data-only", "-f"]).arg(&dump);
            for table in KEY_TABLES {
                command.args(["-t", table]);
            }
            let output = command.arg(keys_url).output().unwrap();
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            dump
        }
    }
}

fn native_restore(keys_url: &str, backup: &std::path::Path) {
    match keys_url.strip_prefix("sqlite://") {
        Some(path) => {
            std::fs::copy(backup, path).unwrap();
        }
        None => {
            let output = Command::new("psql")
                .args(["-q", "-v", "ON_ERROR_STOP=1", "-f"])
                .arg(backup)
                .arg(keys_url)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// Backups of the key store taken before an erasure, restored after it
/// (with `custodia keys restore`, and with the database's own tools before
/// a start): the subject stays erased, since the erasure events in the log
/// name their keys and both paths destroy them again.
async fn a_restored_key_store_never_brings_an_erased_subject_back(db: TestDatabase) {
    let key = MasterKey::generate().to_base64();
    let (_keys_db, keys_url) = key_store_of(&db).await;
    tokio::task::spawn_blocking(move || {
        let cli = || {
            let mut command = custodia(&db, &key);
            command.env("CUSTODIA_KEYS_DATABASE_URL", &keys_url);
            command
        };
        let tenant = bootstrap_with(cli(), "ada@example.org", &[]);
        let server = start(cli(), None);
        let owner = login(&server, &tenant);
        let register = format!(
            "mutation {{ registerUser(input: {{ email: \"grace@example.org\", password: \"{PASSWORD}\", \
             profile: {{ displayName: \"Grace Hopper\" }} }}) {{ user {{ id }} }} }}"
        );
        let (_, body) = graphql(&server, &owner, &register);
        let grace = body["data"]["registerUser"]["user"]["id"].as_str().unwrap().to_owned();
        let read = format!("{{ user(id: \"{grace}\") {{ erased displayName }} }}");
        let (_, body) = graphql(&server, &owner, &read);
        assert_eq!(body["data"]["user"]["displayName"], "Grace Hopper", "{body}");

        // Two backups, taken while the server runs.
        let dir = tempfile::tempdir().unwrap();
        let backup = dir.path().join("keys.json");
        let output = cli().args(["keys", "backup", "--to"]).arg(&backup).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&backup).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the backup is readable by others");
        }
        let written = std::fs::read_to_string(&backup).unwrap();
        assert!(!written.contains("Grace") && !written.contains("grace@"));
        let native = native_backup(&keys_url, dir.path());

        let erase = format!(
            "mutation {{ eraseSubject(userId: \"{grace}\", reference: \"DSR-3\") {{ receipt {{ hash }} }} }}"
        );
        let (_, body) = graphql(&server, &owner, &erase);
        assert!(body["errors"].is_null(), "{body}");
        let erased = json!({ "erased": true, "displayName": null });
        let (_, body) = graphql(&server, &owner, &read);
        assert_eq!(body["data"]["user"], erased, "{body}");
        drop(server);

        // 1. Lost, and restored with `custodia keys restore`.
        lose_key_store(&keys_url);
        let output = cli().args(["keys", "restore", "--from"]).arg(&backup).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout.contains("1 erasures and expiries in the log, 1 keys destroyed again"), "{stdout}");
        let server = start(cli(), None);
        let owner = login(&server, &tenant);
        let (_, body) = graphql(&server, &owner, &read);
        assert_eq!(body["data"]["user"], erased, "{body}");
        drop(server);

        // Restored again onto the store as it is: the erased key stays
        // destroyed.
        let output = cli()
            .args(["keys", "restore", "--from"])
            .arg(&backup)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

        // 2. Lost, and restored with the database's tools: the server's
        // start destroys the key again before it serves.
        lose_key_store(&keys_url);
        native_restore(&keys_url, &native);
        let server = start(cli(), None);
        let owner = login(&server, &tenant);
        let (_, body) = graphql(&server, &owner, &read);
        assert_eq!(body["data"]["user"], erased, "{body}");
        drop(server);

        // 3. Lost, or a wrong key store named: the server refuses to start
        // (it would make new keys, and nothing sealed so far would open).
        lose_key_store(&keys_url);
        let output = cli()
            .arg("serve")
            .env("CUSTODIA_LISTEN", free_address().to_string())
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("the key store holds no tenant key"), "{stderr}");
    })
    .await
    .unwrap();
}

/// A database from before the key store had one of its own: its keys are
/// moved out of the log's database at the next start, and everything
/// sealed under them still opens.
async fn keys_kept_in_the_log_database_move_to_a_store_of_their_own(db: TestDatabase) {
    let key = MasterKey::generate().to_base64();
    let (_keys_db, keys_url) = key_store_of(&db).await;
    tokio::task::spawn_blocking(move || {
        // The earlier layout: keys beside the events.
        let before = || {
            let mut command = custodia(&db, &key);
            command.env("CUSTODIA_KEYS_DATABASE_URL", db.url());
            command
        };
        let tenant = bootstrap_with(before(), "ada@example.org", &[]);
        let server = start(before(), None);
        let owner = login_from(&server, "MovedAgent/1.0", &tenant, "ada@example.org").0;
        let register = "mutation { registerUser(input: { email: \"grace@example.org\", \
                        profile: { displayName: \"Grace Moved\" } }) { user { id } } }";
        let (_, body) = graphql(&server, &owner, register);
        let grace = body["data"]["registerUser"]["user"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        drop(server);
        let keys_in = |url: &str| -> i64 {
            KEY_TABLES
                .iter()
                .map(|table| count(url, &format!("SELECT count(*) FROM {table}")))
                .sum()
        };
        let held = keys_in(db.url());
        assert!(
            held >= 4,
            "tenant, subject, access and signing keys: {held}"
        );
        let read = format!(
            "{{ user(id: \"{grace}\") {{ displayName }} \
             sessions(activeOnly: true) {{ edges {{ node {{ client {{ userAgent }} }} }} }} }}"
        );
        let reads_everything = |server: &Server| {
            let owner = login(server, &tenant);
            let (_, body) = graphql(server, &owner, &read);
            assert_eq!(body["data"]["user"]["displayName"], "Grace Moved", "{body}");
            let agents = body["data"]["sessions"]["edges"].to_string();
            assert!(agents.contains("MovedAgent/1.0"), "{body}");
        };

        // The log's database named another way is the same store: nothing
        // moves, nothing is deleted.
        let spelled_otherwise = if db.is_postgres() {
            db.url().replacen("postgres://", "postgresql://", 1)
        } else {
            format!("{}?mode=rwc", db.url())
        };
        let mut same = custodia(&db, &key);
        same.env("CUSTODIA_KEYS_DATABASE_URL", &spelled_otherwise);
        let server = start(same, None);
        reads_everything(&server);
        drop(server);
        assert!(keys_in(db.url()) >= held, "keys were deleted");

        let after = || {
            let mut command = custodia(&db, &key);
            command.env("CUSTODIA_KEYS_DATABASE_URL", &keys_url);
            command
        };
        let server = start(after(), None);
        reads_everything(&server);
        assert_eq!(keys_in(db.url()), 0, "keys left in the log's database");
        assert!(keys_in(&keys_url) >= held);
    })
    .await
    .unwrap();
}

/// `custodia keys rotate-master`: stopped after two keys and run again,
/// while a server with both keys serves personal data throughout; then
/// the new key alone opens everything and the old one alone nothing.
async fn the_master_key_rotates_while_serving_and_resumes_where_it_stopped(db: TestDatabase) {
    let (old, new) = (
        MasterKey::generate().to_base64(),
        MasterKey::generate().to_base64(),
    );
    tokio::task::spawn_blocking(move || {
        let with = |current: &str, previous: Option<&str>| {
            let mut command = custodia(&db, current);
            if let Some(previous) = previous {
                command.env("CUSTODIA_PREVIOUS_MASTER_KEY", previous);
            }
            command
        };
        let tenant = bootstrap_with(with(&old, None), "ada@example.org", &[]);
        let second = bootstrap_with(with(&old, None), "bo@example.org", &["--another-tenant"]);
        bootstrap_with(with(&old, None), "cy@example.org", &["--another-tenant"]);
        // The checkpoint key is sealed under the master key too.
        let checkpoint_key = |current: &str| {
            let output = with(current, None).args(["audit", "key"]).output().unwrap();
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        };
        let before = checkpoint_key(&old);
        let server = start(with(&new, Some(&old)), None);
        let owner = login(&server, &tenant);
        let reads_personal_data = || {
            let (_, body) = graphql(&server, &owner, "{ me { email } }");
            assert_eq!(body["data"]["me"]["email"], "ada@example.org", "{body}");
        };
        reads_personal_data();
        let rotate = |extra: &[&str]| {
            let output = with(&new, Some(&old))
                .args(["keys", "rotate-master"])
                .args(extra)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout).into_owned()
        };
        // Interrupted after two keys; the server serves on.
        let first = rotate(&["--max", "2"]);
        assert!(first.starts_with("2 keys rewrapped"), "{first}");
        assert!(!first.contains("; 0 left"), "{first}");
        reads_personal_data();
        // Resumed: the rest.
        let rest = rotate(&[]);
        assert!(rest.contains("; 0 left"), "{rest}");
        assert!(rest.contains("may be retired"), "{rest}");
        reads_personal_data();
        assert!(rotate(&[]).starts_with("0 keys rewrapped"));
        drop(server);

        // The old key is retired.
        let server = start(with(&new, None), None);
        let owner = login(&server, &tenant);
        let (_, body) = graphql(&server, &owner, "{ me { email } }");
        assert_eq!(body["data"]["me"]["email"], "ada@example.org", "{body}");
        let other = login_as(&server, &second, "bo@example.org").0;
        let (_, body) = graphql(&server, &other, "{ me { email } }");
        assert_eq!(body["data"]["me"]["email"], "bo@example.org", "{body}");
        drop(server);
        assert_eq!(
            checkpoint_key(&new),
            before,
            "the same checkpoint key, resealed"
        );
        let output = with(&old, None)
            .arg("serve")
            .env("CUSTODIA_LISTEN", free_address().to_string())
            .output()
            .unwrap();
        assert!(!output.status.success());
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("master key"),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    })
    .await
    .unwrap();
}

/// GET `path` as text.
fn get_text(address: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("the server accepts");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The server signs a checkpoint of each chain with activity into the
/// file it is given; the key it publishes over HTTP checks them against
/// the log with `custodia verify --against`.
async fn the_server_signs_checkpoints_an_auditor_checks(db: TestDatabase) {
    let key = MasterKey::generate().to_base64();
    let tenant = bootstrap(&db, &key);
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("checkpoints.jsonl");
        let mut command = custodia(&db, &key);
        command
            .env("CUSTODIA_CHECKPOINT_SECONDS", "1")
            .env("CUSTODIA_CHECKPOINT_FILE", &file)
            .env("CUSTODIA_LOG_NAME", "audit.example/custodia");
        let server = start(command, None);
        let owner = login(&server, &tenant);
        let (_, body) = graphql(
            &server,
            &owner,
            "mutation { registerUser(input: { email: \"grace@example.org\" }) { user { id } } }",
        );
        assert!(body["errors"].is_null(), "{body}");
        let grace = body["data"]["registerUser"]["user"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let erase = format!(
            "mutation {{ eraseSubject(userId: \"{grace}\", reference: \"DSR-11\") {{ receipt {{ hash }} }} }}"
        );
        let (_, body) = graphql(&server, &owner, &erase);
        assert!(body["errors"].is_null(), "{body}");
        let (status, keys) = get_text(server.address, "/checkpoints/keys");
        assert_eq!(status, 200);
        let trusted = keys.lines().next().unwrap_or_default().to_owned();
        assert!(trusted.starts_with("audit.example/custodia+"), "{keys}");
        let check = || {
            custodia(&db, &key)
                .args(["verify", "--against"])
                .arg(&file)
                .args(["--checkpoint-key", &trusted])
                .output()
                .unwrap()
        };
        // Signed within a few seconds of the activity, covering it.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let written = std::fs::read_to_string(&file).unwrap_or_default();
            if written.contains(&format!("audit.example/custodia/{tenant}")) {
                let output = check();
                let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
                if output.status.success()
                    && stdout.contains(&format!("tenant {tenant}: consistent with"))
                {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no checkpoint of the tenant: {written}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }

        // The erasure receipt, asked for now, carries its event's inclusion
        // proof under the latest checkpoint; an auditor checks it with the
        // published key, and a changed proof is refused.
        let receipt_of = format!("{{ erasureReceipt(userId: \"{grace}\") {{ document }} }}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let receipt = loop {
            let (_, body) = graphql(&server, &owner, &receipt_of);
            let document = body["data"]["erasureReceipt"]["document"].clone();
            if !document["inclusion_proof"].is_null() {
                break document;
            }
            assert!(Instant::now() < deadline, "no proof in the receipt: {body}");
            std::thread::sleep(Duration::from_millis(200));
        };
        let check_receipt = |receipt: &Value| {
            let path = dir.path().join("receipt.json");
            std::fs::write(&path, receipt.to_string()).unwrap();
            let output = custodia(&db, &key)
                .args(["verify", "--receipt"])
                .arg(&path)
                .args(["--checkpoint-key", &trusted])
                .output()
                .unwrap();
            (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
        };
        let (code, out) = check_receipt(&receipt);
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains("receipt: included in the signed checkpoint of size"), "{out}");
        // Any event's proof, by its place in the chain, is the same.
        let index = receipt["event"]["chain_index"].as_u64().unwrap();
        let (_, body) = graphql(
            &server,
            &owner,
            &format!("{{ eventProof(chainIndex: {index}) }}"),
        );
        // (A later checkpoint may cover it by now: the same leaf, a proof.)
        let proof = &body["data"]["eventProof"];
        assert_eq!(proof["leaf_hash"], receipt["inclusion_proof"]["leaf_hash"], "{body}");
        assert_eq!(proof["index"], index, "{body}");
        assert!(proof["proof"].is_array(), "{body}");
        // The audit timeline names the event's place and hash, and gives the
        // same proof.
        let (_, body) = graphql(
            &server,
            &owner,
            r#"{ auditEvents(type: "SubjectErased") { edges { node { chainIndex hash proof } } } }"#,
        );
        let node = &body["data"]["auditEvents"]["edges"][0]["node"];
        assert_eq!(node["chainIndex"], index, "{body}");
        assert_eq!(node["hash"], receipt["event"]["hash"], "{body}");
        assert_eq!(node["proof"]["leaf_hash"], proof["leaf_hash"], "{body}");
        let (_, body) = graphql(&server, &owner, "{ eventProof(chainIndex: 1000000) }");
        assert_eq!(body["data"]["eventProof"], Value::Null, "{body}");
        let mut forged = receipt.clone();
        forged["inclusion_proof"]["proof"][0] = json!("00".repeat(32));
        let (code, out) = check_receipt(&forged);
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains("RECEIPT MISMATCH: inclusion proof:"), "{out}");
    })
    .await
    .unwrap();
}

/// The outbox is the log (ADR 0013): a message committed while the mail
/// server is down is tried, the process is killed, and after a restart
/// with the mail server up it arrives exactly once.
async fn a_queued_message_survives_a_crash_and_goes_out_once(db: TestDatabase) {
    let key = MasterKey::generate().to_base64();
    let tenant = bootstrap(&db, &key);
    tokio::task::spawn_blocking(move || {
        let port = smtp::free_port();
        let with_mail = || {
            let mut command = custodia(&db, &key);
            command
                .env("CUSTODIA_SMTP_URL", format!("smtp://127.0.0.1:{port}"))
                .env("CUSTODIA_MAIL_RETRY_SECONDS", "1")
                .env("CUSTODIA_APP_URL", "https://app.example");
            command
        };
        let server = start(with_mail(), None);
        let token = login(&server, &tenant);
        // The operator invites a second owner from the command line.
        let invited = custodia(&db, &key)
            .env("CUSTODIA_APP_URL", "https://app.example")
            .args(["tenant", "invite", "--tenant", &tenant, "--email", "bob@example.org", "--owner"])
            .output()
            .unwrap();
        assert!(invited.status.success(), "{}", String::from_utf8_lossy(&invited.stderr));
        let bob = String::from_utf8_lossy(&invited.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("invited user ").map(|rest| rest.split(';').next().unwrap().to_owned()))
            .unwrap();
        let messages = format!(r#"{{ messages(userId: "{bob}") {{ edges {{ node {{ id status attempts lastError }} }} }} }}"#);
        let message = |server: &Server| {
            let (status, body) = graphql(server, &token, &messages);
            assert_eq!(status, 200, "{body}");
            body["data"]["messages"]["edges"][0]["node"].clone()
        };
        // Tried and failed (nobody listens), its state visible.
        let deadline = Instant::now() + Duration::from_secs(20);
        let failed = loop {
            let node = message(&server);
            if node["attempts"].as_u64().unwrap_or(0) >= 1 {
                break node;
            }
            assert!(Instant::now() < deadline, "the message was never tried: {node}");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(failed["status"], "retrying", "{failed}");
        assert_eq!(failed["lastError"], "connection", "{failed}");
        drop(server); // killed, not stopped
        let sink = smtp::start_sink(port, tempfile::tempdir().unwrap());
        let server = start(with_mail(), None);
        let arrived = sink.wait_for("bob@example.org", "You are invited", 1);
        assert_eq!(
            arrived["message_id"],
            format!("<{}@custodia>", failed["id"].as_str().unwrap())
        );
        // Recorded as sent, and never sent again.
        let deadline = Instant::now() + Duration::from_secs(20);
        while message(&server)["status"] != "sent" {
            assert!(Instant::now() < deadline, "the delivery was never recorded");
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(sink.to("bob@example.org").len(), 1);
        // The link in it makes Bob an owner who signs in.
        let link = smtp::token_in(&arrived, "accept-invitation");
        let (status, body) = http(
            server.address,
            "POST",
            "/auth/invitation/accept",
            None,
            Some(&json!({ "tenant": tenant, "token": link, "password": PASSWORD })),
        );
        assert_eq!(status, 204, "{body}");
        let (bob_token, _) = login_as(&server, &tenant, "bob@example.org");
        let (_, me) = graphql(&server, &bob_token, "{ me { id roles } }");
        assert_eq!(me["data"]["me"]["roles"], json!(["owner"]), "{me}");
    })
    .await
    .unwrap();
}
