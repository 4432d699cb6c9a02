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
);

const PASSWORD: &str = "correct horse battery staple";

/// One plain HTTP/1.1 exchange; returns the status and the JSON body.
fn http(
    address: SocketAddr,
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
        "{method} {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\ncontent-type: application/json\r\n{auth}content-length: {}\r\n\r\n{body}",
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
    let address = free_address();
    let child = custodia(db, key)
        .arg("serve")
        .env("CUSTODIA_LISTEN", address.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
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
    let output = custodia(db, key)
        .args([
            "bootstrap",
            "--tenant-name",
            "Acme",
            "--owner-email",
            "ada@example.org",
        ])
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
    let (status, tokens) = http(
        server.address,
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
