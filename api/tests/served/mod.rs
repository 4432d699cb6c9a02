//! A real server on a free local port, and Python scripts run against it
//! (shared by the test files that need a socket, not just a service).

use custodia::http::{app, AppState};

/// Sends a request to a test service; returns the status and the JSON
/// body (Null if none).
#[macro_export]
macro_rules! call {
    ($service:expr, $request:expr) => {{
        let response = actix_web::test::call_service($service, $request.to_request()).await;
        let status = response.status();
        let bytes = actix_web::test::read_body(response).await;
        (
            status,
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }};
}

/// A server on a free local port.
pub struct Served {
    pub address: std::net::SocketAddr,
    handle: actix_web::dev::ServerHandle,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Served {
    /// Stops taking connections. The server's worker runs on a runtime of
    /// its own, and the database connections it opened stay in the pool
    /// the test shares: were that runtime shut down now, the test's next
    /// query could get one of them and fail ("a Tokio context … is being
    /// shut down"). So the worker lives until the test ends (see `Drop`).
    pub async fn stop(&self) {
        self.handle.pause().await;
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // The stop is sent at once; the test is over, nothing waits for it.
        drop(self.handle.stop(false));
        self.serving.abort();
    }
}

pub async fn serve_on_a_port(state: &AppState) -> Served {
    let server_state = state.clone();
    let server = actix_web::HttpServer::new(move || app(server_state.clone()))
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
    let address = server.addrs()[0];
    let server = server.run();
    Served {
        address,
        handle: server.handle(),
        serving: tokio::spawn(server),
    }
}

/// Runs a Python script with arguments, off the async runtime, and returns
/// the JSON it printed; fails with the script's error output if it failed.
pub async fn python<const N: usize>(script: &'static str, args: [String; N]) -> serde_json::Value {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "the script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the script prints JSON")
}
