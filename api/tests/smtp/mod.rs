//! A real SMTP server for the tests (aiosmtpd, `smtp_sink.py`): what it
//! receives, read back as JSON (shared by the files that send mail).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The SMTP server the messages go to; each message it receives is a JSON
/// file in `dir`.
pub struct Sink {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_sink.py")
}

pub fn start_sink(port: u16, dir: tempfile::TempDir) -> Sink {
    let child = Command::new("python3")
        .arg(script())
        .args(["--port", &port.to_string(), "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs the SMTP sink (pip install aiosmtpd)");
    wait_for(child, port, dir)
}

/// A tenant's own mailer (`webhook_sink.py`) on `port`, checking
/// signatures under the secret in `secret_file`, answering 503 to the
/// first `fail_first` valid requests; read like the SMTP sink.
#[allow(dead_code)] // not every file that shares this module uses it
pub fn start_webhook_sink(
    port: u16,
    dir: tempfile::TempDir,
    secret_file: &Path,
    fail_first: u32,
) -> Sink {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webhook_sink.py");
    let child = Command::new("python3")
        .arg(script)
        .args(["--port", &port.to_string(), "--dir"])
        .arg(dir.path())
        .arg("--secret-file")
        .arg(secret_file)
        .args(["--fail-first", &fail_first.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs the webhook sink");
    wait_for(child, port, dir)
}

fn wait_for(child: Child, port: u16, dir: tempfile::TempDir) -> Sink {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the SMTP sink did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Sink { child, port, dir }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Sink {
    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<Value> {
        let mut names: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }

    /// The messages to `to`.
    pub fn to(&self, to: &str) -> Vec<Value> {
        self.messages()
            .into_iter()
            .filter(|m| m["rcpt_to"] == json!([to]))
            .collect()
    }

    /// Waits for the `n`th message to `to` (1-based) whose subject starts
    /// with `subject`; fails after 20 s.
    pub async fn nth(&self, to: &str, subject: &str, n: usize) -> Value {
        tokio::task::block_in_place(|| self.wait_for(to, subject, n))
    }

    /// [`Sink::nth`], for tests off the async runtime.
    pub fn wait_for(&self, to: &str, subject: &str, n: usize) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let about = self.to(to).into_iter().filter(|m| {
                m["subject"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with(subject)
            });
            if let Some(message) = about.into_iter().nth(n - 1) {
                return message;
            }
            assert!(Instant::now() < deadline, "no message {n} to {to} arrived");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The token in a message's link, after checking the link is in both
/// parts and points to the application.
pub fn token_in(message: &Value, page: &str) -> String {
    let text = message["text"].as_str().unwrap();
    let start = text
        .find(&format!("https://app.example/{page}?"))
        .unwrap_or_else(|| panic!("no {page} link in {text}"));
    let link = text[start..].split_whitespace().next().unwrap();
    let token = link.split("token=").nth(1).unwrap().to_owned();
    assert!(message["html"].as_str().unwrap().contains(&token));
    token
}
