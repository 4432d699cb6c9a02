//! The configuration file: `custodia.toml` in the working directory, or
//! the file `CUSTODIA_CONFIG` names. Every key has an environment variable
//! of the same meaning, and the environment wins, so a deployment can keep
//! a file and override one value. Secrets never go in the file: it names
//! the file that holds the master key (`master_key_file`).
//!
//! ```toml
//! database_url = "postgres://custodia@db/custodia"
//! listen = "0.0.0.0:8080"
//! env = "production"
//! master_key_file = "/run/secrets/custodia-master-key"
//! cors_origins = ["https://app.example.org"]
//! issuer = "https://id.example.org"
//! audience = "custodia-api"
//! max_projection_lag_seconds = 30
//! auth_limit_per_ip = 60
//! auth_limit_per_account = 10
//! graphql_limit_per_ip = 6000
//! graphql_introspection = false
//! metrics_token_file = "/run/secrets/custodia-metrics-token"
//! metrics_public = false
//! trusted_proxies = ["10.0.0.2"]
//! log = "info"
//! ```

use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    database_url: Option<String>,
    keys_database_url: Option<String>,
    listen: Option<String>,
    env: Option<String>,
    master_key_file: Option<String>,
    previous_master_key_file: Option<String>,
    cors_origins: Option<Vec<String>>,
    issuer: Option<String>,
    audience: Option<String>,
    max_projection_lag_seconds: Option<u64>,
    auth_limit_per_ip: Option<u32>,
    auth_limit_per_account: Option<u32>,
    graphql_limit_per_ip: Option<u32>,
    graphql_introspection: Option<bool>,
    metrics_token_file: Option<String>,
    metrics_public: Option<bool>,
    trusted_proxies: Option<Vec<String>>,
    log: Option<String>,
}

/// Reads the configuration file, if there is one, into the environment
/// variables it does not override. Call before anything reads them (and
/// before any thread starts). Returns the file read.
pub fn load() -> Result<Option<String>, String> {
    let (path, required) = match std::env::var("CUSTODIA_CONFIG") {
        Ok(path) => (path, true),
        Err(_) => ("custodia.toml".to_owned(), false),
    };
    if !required && !Path::new(&path).exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read the configuration {path}: {e}"))?;
    let file: ConfigFile =
        toml::from_str(&text).map_err(|e| format!("configuration {path}: {}", e.message()))?;
    let number = |n: Option<u64>| n.map(|n| n.to_string());
    let settings = [
        ("DATABASE_URL", file.database_url),
        ("CUSTODIA_KEYS_DATABASE_URL", file.keys_database_url),
        ("CUSTODIA_LISTEN", file.listen),
        ("CUSTODIA_ENV", file.env),
        ("CUSTODIA_MASTER_KEY_FILE", file.master_key_file),
        (
            "CUSTODIA_PREVIOUS_MASTER_KEY_FILE",
            file.previous_master_key_file,
        ),
        (
            "CUSTODIA_CORS_ORIGINS",
            file.cors_origins.map(|o| o.join(",")),
        ),
        ("CUSTODIA_ISSUER", file.issuer),
        ("CUSTODIA_AUDIENCE", file.audience),
        (
            "CUSTODIA_MAX_PROJECTION_LAG_SECONDS",
            number(file.max_projection_lag_seconds),
        ),
        (
            "CUSTODIA_AUTH_LIMIT_PER_IP",
            number(file.auth_limit_per_ip.map(u64::from)),
        ),
        (
            "CUSTODIA_AUTH_LIMIT_PER_ACCOUNT",
            number(file.auth_limit_per_account.map(u64::from)),
        ),
        (
            "CUSTODIA_GRAPHQL_LIMIT_PER_IP",
            number(file.graphql_limit_per_ip.map(u64::from)),
        ),
        (
            "CUSTODIA_GRAPHQL_INTROSPECTION",
            file.graphql_introspection.map(|b| b.to_string()),
        ),
        ("CUSTODIA_METRICS_TOKEN_FILE", file.metrics_token_file),
        (
            "CUSTODIA_METRICS_PUBLIC",
            file.metrics_public.map(|b| b.to_string()),
        ),
        (
            "CUSTODIA_TRUSTED_PROXIES",
            file.trusted_proxies.map(|p| p.join(",")),
        ),
        ("RUST_LOG", file.log),
    ];
    for (name, value) in settings {
        if let Some(value) = value {
            if std::env::var_os(name).is_none() {
                std::env::set_var(name, value);
            }
        }
    }
    Ok(Some(path))
}
