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
