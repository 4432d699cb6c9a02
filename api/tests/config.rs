//! The configuration file: read from the working directory (or
//! `CUSTODIA_CONFIG`), overridden by the environment, strict about keys.

use std::process::Command;

fn custodia(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_custodia"));
    command
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("CUSTODIA_CONFIG");
    command
}

#[test]
fn the_file_configures_and_the_environment_overrides() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("custodia.toml"),
        "database_url = \"sqlite://from-file.db\"\nlog = \"warn\"\n",
    )
    .unwrap();
    let output = custodia(dir.path()).arg("migrate").output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(dir.path().join("from-file.db").exists());

    let output = custodia(dir.path())
        .arg("migrate")
        .env("DATABASE_URL", "sqlite://from-env.db")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(
        dir.path().join("from-env.db").exists(),
        "the environment wins"
    );

    // CUSTODIA_CONFIG names another file, which must exist.
    std::fs::write(
        dir.path().join("other.toml"),
        "database_url = \"sqlite://other.db\"\n",
    )
    .unwrap();
    let output = custodia(dir.path())
        .arg("migrate")
        .env("CUSTODIA_CONFIG", "other.toml")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(dir.path().join("other.db").exists());
    let output = custodia(dir.path())
        .arg("migrate")
        .env("CUSTODIA_CONFIG", "missing.toml")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn unknown_keys_and_bad_values_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("custodia.toml"),
        "master_key = \"inline secrets are not allowed\"\n",
    )
    .unwrap();
    let output = custodia(dir.path()).arg("migrate").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("master_key"), "{stderr}");
    assert!(
        !stderr.contains("inline secrets"),
        "values are not echoed: {stderr}"
    );

    std::fs::write(
        dir.path().join("custodia.toml"),
        "auth_limit_per_ip = \"many\"\n",
    )
    .unwrap();
    let output = custodia(dir.path()).arg("migrate").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("configuration custodia.toml"));
}

#[cfg(unix)]
#[test]
fn production_refuses_a_master_key_file_others_may_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("master.key");
    std::fs::write(&key, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = custodia(dir.path())
        .arg("serve")
        .env("CUSTODIA_ENV", "production")
        .env("CUSTODIA_MASTER_KEY_FILE", &key)
        .env("CUSTODIA_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("chmod 600"), "{stderr}");
}

#[test]
fn bootstrap_twice_is_refused_unless_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = |extra: &[&str]| {
        custodia(dir.path())
            .args([
                "bootstrap",
                "--tenant-name",
                "Acme",
                "--owner-email",
                "ada@example.org",
            ])
            .args(extra)
            .env(
                "CUSTODIA_BOOTSTRAP_PASSWORD",
                "correct horse battery staple",
            )
            .output()
            .unwrap()
    };
    assert!(bootstrap(&[]).status.success());
    let again = bootstrap(&[]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--another-tenant"));
    assert!(bootstrap(&["--another-tenant"]).status.success());
}

#[test]
fn the_operator_suspends_and_reactivates_a_tenant_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let output = custodia(dir.path())
        .args([
            "bootstrap",
            "--tenant-name",
            "Acme",
            "--owner-email",
            "ada@example.org",
        ])
        .env(
            "CUSTODIA_BOOTSTRAP_PASSWORD",
            "correct horse battery staple",
        )
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name).map(str::trim).map(str::to_owned))
            .unwrap()
    };
    let (tenant, owner) = (field("tenant "), field("owner "));
    let run = |args: &[&str]| {
        custodia(dir.path())
            .arg("tenant")
            .args(args)
            .output()
            .unwrap()
    };
    assert!(run(&["suspend", "--tenant", &tenant]).status.success());
    // Suspended twice is a refusal, not a silent success.
    assert_eq!(
        run(&["suspend", "--tenant", &tenant]).status.code(),
        Some(2)
    );
    assert!(run(&["reactivate", "--tenant", &tenant]).status.success());
    assert!(run(&["grant-owner", "--tenant", &tenant, "--user", &owner])
        .status
        .success());
    assert_eq!(
        run(&["reactivate", "--tenant", "not-a-uuid"]).status.code(),
        Some(2)
    );
}

#[test]
fn serve_says_where_it_listens_and_how_it_is_configured() {
    use std::io::{BufRead, BufReader};
    let help = custodia(std::path::Path::new("."))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for name in [
        "custodia.toml",
        "CUSTODIA_CONFIG",
        "DATABASE_URL",
        "CUSTODIA_MASTER_KEY",
        "CUSTODIA_TRUSTED_PROXIES",
        "_FILE",
    ] {
        assert!(help.contains(name), "serve --help names {name}:\n{help}");
    }

    let dir = tempfile::tempdir().unwrap();
    let mut server = custodia(dir.path())
        .arg("serve")
        .env("CUSTODIA_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let (mut url, mut logged) = (None, None);
    while url.is_none() || logged.is_none() {
        let line = lines
            .next()
            .expect("the server says where it listens")
            .unwrap();
        if let Some(rest) = line.strip_prefix("Custodia is serving on ") {
            url = rest.split_whitespace().next().map(str::to_owned);
        }
        if line.contains("\"serving\"") {
            logged = Some(line);
        }
    }
    let url = url.unwrap();
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"),
        "{url}"
    );
    let logged = logged.unwrap();
    assert!(
        logged.contains("\"backend\":\"sqlite\"") && logged.contains(&format!("\"url\":\"{url}\"")),
        "{logged}"
    );
    let address = url.trim_start_matches("http://").to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // Answering a request, it is running (and handles signals).
    let healthy = || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&address).ok()?;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        answer.starts_with("HTTP/1.1 200").then_some(())
    };
    while healthy().is_none() {
        assert!(std::time::Instant::now() < deadline, "it does not answer");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Stopped gently, it gives its projections up: they show as free.
    // SAFETY: kill only sends a signal to the child this test started.
    unsafe { libc::kill(server.id() as i32, libc::SIGINT) };
    let exit = server.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let status = custodia(dir.path())
        .args(["projections", "status"])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("free"), "{status}");
    assert!(!status.contains("1970"), "{status}");
}
