//! `custodia bench http`: a running server under load over HTTP, from
//! keep-alive connections of this process: `me` over GraphQL (with or
//! without personal fields), token refresh, and password logins spread over
//! the accounts given. Reports requests per second, latency percentiles,
//! failed requests, and the server's peak resident memory when its process
//! id is given. The server's rate limits must allow the load
//! (`CUSTODIA_AUTH_LIMIT_PER_IP`, `_PER_ACCOUNT`, `CUSTODIA_GRAPHQL_LIMIT_PER_IP`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct HttpArgs {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A JSON file of accounts: `[{"tenant_id", "email", "password"}]`.
    #[arg(long)]
    accounts: PathBuf,
    /// What each request does.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// How long to measure (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The server's process id: its peak resident memory is reported.
    #[arg(long)]
    server_pid: Option<u32>,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `{ me { id status roles } }`, one signed-in session per connection.
    Me,
    /// `{ me { id email displayName } }`: two personal fields opened.
    MePersonal,
    /// `POST /auth/refresh`, each connection rotating its own session.
    Refresh,
    /// `POST /auth/login`, each connection cycling through the accounts.
    Login,
}

#[derive(Deserialize, Clone)]
struct Account {
    tenant_id: String,
    email: String,
    password: String,
}

#[derive(Deserialize)]
struct Tokens {
    access_token: String,
    refresh_token: String,
}

pub async fn run(args: HttpArgs) -> Result<ExitCode, String> {
    let accounts: Vec<Account> = serde_json::from_slice(
        &std::fs::read(&args.accounts).map_err(|e| format!("cannot read --accounts: {e}"))?,
    )
    .map_err(|e| format!("--accounts is not a list of accounts: {e}"))?;
    if accounts.is_empty() || args.connections == 0 {
        return Err("give at least one account and one connection".to_owned());
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let base = Arc::new(args.url.trim_end_matches('/').to_owned());
    let accounts = Arc::new(accounts);
    let warm_until = Instant::now() + Duration::from_secs(1);
    let until = warm_until + Duration::from_secs(args.seconds);
    let mut workers = Vec::with_capacity(args.connections);
    for worker in 0..args.connections {
        let (client, base, accounts, mode) =
            (client.clone(), base.clone(), accounts.clone(), args.mode);
        workers.push(tokio::spawn(async move {
            load(&client, &base, &accounts, mode, worker, warm_until, until).await
        }));
    }
    let (mut latencies, mut failed) = (Vec::new(), 0u64);
    for worker in workers {
        let (samples, failures) = worker.await.map_err(|e| e.to_string())??;
        latencies.extend(samples);
        failed += failures;
    }
    let seconds = args.seconds as f64;
    println!(
        "http {}: {} requests in {seconds:.0}s over {} connections: {:.0} requests/s, {failed} failed",
        args.mode_name(),
        latencies.len(),
        args.connections,
        latencies.len() as f64 / seconds
    );
    if !latencies.is_empty() {
        super::percentiles("request latency", latencies);
    }
    if let Some(pid) = args.server_pid {
        match peak_memory_kib(pid) {
            Some(kib) => println!("server peak memory: {:.1} MiB", kib as f64 / 1024.0),
            None => println!("server peak memory: not readable for process {pid}"),
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

impl HttpArgs {
    fn mode_name(&self) -> &'static str {
        match self.mode {
            Mode::Me => "me",
            Mode::MePersonal => "me-personal",
            Mode::Refresh => "refresh",
            Mode::Login => "login",
        }
    }
}

/// One connection's loop: its samples after the warm-up, and its failures.
async fn load(
    client: &reqwest::Client,
    base: &str,
    accounts: &[Account],
    mode: Mode,
    worker: usize,
    warm_until: Instant,
    until: Instant,
) -> Result<(Vec<Duration>, u64), String> {
    let mine = &accounts[worker % accounts.len()];
    let mut tokens = match mode {
        Mode::Login => None,
        _ => Some(sign_in(client, base, mine).await?),
    };
    let (mut samples, mut failed) = (Vec::new(), 0u64);
    let mut turn = worker;
    loop {
        let started = Instant::now();
        if started >= until {
            return Ok((samples, failed));
        }
        let ok = match mode {
            Mode::Me | Mode::MePersonal => {
                let query = if mode == Mode::Me {
                    "{ me { id status roles } }"
                } else {
                    "{ me { id email displayName } }"
                };
                let access = &tokens.as_ref().expect("signed in").access_token;
                let answer = client
                    .post(format!("{base}/graphql"))
                    .bearer_auth(access)
                    .header("content-type", "application/json")
                    .body(json!({ "query": query }).to_string())
                    .send()
                    .await;
                match answer {
                    Ok(answer) if answer.status().is_success() => {
                        body::<Value>(answer).await.is_ok_and(|body| {
                            body.get("errors").is_none() && body["data"]["me"]["id"].is_string()
                        })
                    }
                    _ => false,
                }
            }
            Mode::Refresh => {
                let refresh = tokens.as_ref().expect("signed in").refresh_token.clone();
                let answer = client
                    .post(format!("{base}/auth/refresh"))
                    .header("content-type", "application/json")
                    .body(json!({ "refresh_token": refresh }).to_string())
                    .send()
                    .await;
                match answer {
                    Ok(answer) if answer.status().is_success() => {
                        match body::<Tokens>(answer).await {
                            Ok(next) => {
                                tokens = Some(next);
                                true
                            }
                            Err(_) => false,
                        }
                    }
                    _ => false,
                }
            }
            Mode::Login => {
                turn += 1;
                login(client, base, &accounts[turn % accounts.len()])
                    .await
                    .is_ok()
            }
        };
        if started >= warm_until {
            samples.push(started.elapsed());
            if !ok {
                failed += 1;
            }
        }
        if !ok && mode == Mode::Refresh {
            // A failed rotation leaves no usable token: sign in again.
            tokens = Some(sign_in(client, base, mine).await?);
        }
    }
}

/// A login for a connection's session, waiting while the server's
/// password checks are all taken (it answers 429 beyond its queue).
async fn sign_in(
    client: &reqwest::Client,
    base: &str,
    account: &Account,
) -> Result<Tokens, String> {
    for _ in 0..100 {
        match login(client, base, account).await {
            Err(busy) if busy.contains("429") => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            answer => return answer,
        }
    }
    Err("login: the server stayed busy".to_owned())
}

async fn login(client: &reqwest::Client, base: &str, account: &Account) -> Result<Tokens, String> {
    let answer = client
        .post(format!("{base}/auth/login"))
        .header("content-type", "application/json")
        .body(
            json!({
                "tenant_id": account.tenant_id,
                "email": account.email,
                "password": account.password,
            })
            .to_string(),
        )
        .send()
        .await
        .map_err(|e| format!("login: {e}"))?;
    let status = answer.status();
    if !status.is_success() {
        return Err(format!("login answered {status}"));
    }
    body(answer).await
}

async fn body<T: serde::de::DeserializeOwned>(answer: reqwest::Response) -> Result<T, String> {
    let bytes = answer.bytes().await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// The process's peak resident set (`VmHWM`), in KiB.
fn peak_memory_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}
