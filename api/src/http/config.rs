//! The server's configuration, read once at start-up from the environment
//! (which `custodia.toml` fills in first; `cli::config_file`) and checked:
//! a value that does not parse stops the start, naming the variable.
//! `custodia serve --help` lists every setting.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{MetricsAccess, GRAPHQL_PER_IP};

#[derive(Clone)]
pub struct Config {
    /// `CUSTODIA_ENV=production`: no development conveniences.
    pub production: bool,
    /// JWT `iss` and `aud`.
    pub issuer: String,
    pub audience: String,
    /// Browser origins allowed (CORS); none by default.
    pub cors_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-Proto` is believed (for HSTS).
    pub trusted_proxies: Vec<IpAddr>,
    pub graphql_introspection: bool,
    /// Who may read `/metrics`.
    pub metrics: MetricsAccess,
    /// Requests a minute.
    pub auth_limit_per_ip: u32,
    pub auth_limit_per_account: u32,
    pub graphql_limit_per_ip: u32,
    /// The projection lag above which `/health/ready` says not ready.
    pub max_projection_lag: Duration,
    /// `CUSTODIA_KEYS_DATABASE_URL`: where the key store lives (default:
    /// beside a SQLite log, in a PostgreSQL log's database).
    pub keys_database_url: Option<String>,
    /// Signed checkpoints: the log's name, how often, and the file they are
    /// appended to (`CUSTODIA_LOG_NAME`, `CUSTODIA_CHECKPOINT_EVENTS`,
    /// `CUSTODIA_CHECKPOINT_SECONDS`, `CUSTODIA_CHECKPOINT_FILE`).
    pub checkpoints: crate::checkpoints::Settings,
    /// The application's address: links in messages point to its pages
    /// (`/accept-invitation`, `/verify-email`, `/reset-password`).
    pub app_url: String,
    /// Where messages leave; `None`: they stay queued, visible, until a
    /// mailer is configured.
    pub smtp: Option<custodia_infrastructure::smtp::SmtpSettings>,
    /// Or: the operator's own mailer, which takes each message as a signed
    /// POST (`CUSTODIA_MAIL_WEBHOOK_URL`; not with SMTP).
    pub mail_webhook: Option<String>,
    /// How the delivery worker paces itself.
    pub mail_pace: crate::mail::Pace,
    /// Password-reset requests an hour per address (tenant and address).
    pub reset_limit_per_address: u32,
}

impl Config {
    /// The configuration the environment gives (defaults for what it
    /// leaves out: development, loopback proxies, introspection and metrics
    /// open in development and closed in production).
    pub fn from_env() -> Result<Config, String> {
        Config::from(|name| std::env::var(name).ok())
    }

    /// The configuration `get` gives, by variable name.
    pub fn from(get: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let production = match get("CUSTODIA_ENV").map(|v| v.trim().to_ascii_lowercase()) {
            None => false,
            Some(env) if env == "production" => true,
            Some(env) if env == "development" => false,
            // A typo must not start production in development mode.
            Some(_) => return Err("CUSTODIA_ENV must be production or development".to_owned()),
        };
        let flag = |name: &str, default: bool| match get(name).as_deref() {
            None => Ok(default),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(_) => Err(format!("{name} must be true or false")),
        };
        // Every number is a rate or a duration: zero would disable what it
        // configures, so it is refused rather than read as something else.
        let number = |name: &str, default: u32| match get(name) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{name} must be a whole number of at least 1")),
        };
        let list = |name: &str| -> Vec<String> {
            get(name)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let trusted_proxies = match get("CUSTODIA_TRUSTED_PROXIES") {
            None => vec![
                std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::Ipv6Addr::LOCALHOST.into(),
            ],
            Some(_) => list("CUSTODIA_TRUSTED_PROXIES")
                .iter()
                .map(|item| {
                    item.parse().map_err(|_| {
                        format!("CUSTODIA_TRUSTED_PROXIES: {item} is not an IP address")
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let metrics_token = custodia_infrastructure::config::secret("CUSTODIA_METRICS_TOKEN")
            .map_err(|e| e.to_string())?;
        let metrics = match metrics_token {
            Some(token) => MetricsAccess::Token(Arc::new(token)),
            None if flag("CUSTODIA_METRICS_PUBLIC", !production)? => MetricsAccess::Open,
            None => MetricsAccess::Closed,
        };
        Ok(Config {
            production,
            issuer: get("CUSTODIA_ISSUER").unwrap_or_else(|| "custodia".to_owned()),
            audience: get("CUSTODIA_AUDIENCE").unwrap_or_else(|| "custodia-api".to_owned()),
            cors_origins: list("CUSTODIA_CORS_ORIGINS"),
            trusted_proxies,
            graphql_introspection: flag("CUSTODIA_GRAPHQL_INTROSPECTION", !production)?,
            metrics,
            auth_limit_per_ip: number("CUSTODIA_AUTH_LIMIT_PER_IP", 60)?,
            auth_limit_per_account: number("CUSTODIA_AUTH_LIMIT_PER_ACCOUNT", 10)?,
            graphql_limit_per_ip: number("CUSTODIA_GRAPHQL_LIMIT_PER_IP", GRAPHQL_PER_IP)?,
            max_projection_lag: Duration::from_secs(u64::from(number(
                "CUSTODIA_MAX_PROJECTION_LAG_SECONDS",
                30,
            )?)),
            keys_database_url: get("CUSTODIA_KEYS_DATABASE_URL")
                .filter(|url| !url.trim().is_empty()),
            app_url: match get("CUSTODIA_APP_URL") {
                Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                    url.trim_end_matches('/').to_owned()
                }
                Some(_) => return Err("CUSTODIA_APP_URL must be an http(s) URL".to_owned()),
                None => "http://localhost:8080".to_owned(),
            },
            smtp: get("CUSTODIA_SMTP_URL")
                .filter(|url| !url.trim().is_empty())
                .map(|url| custodia_infrastructure::smtp::SmtpSettings {
                    url,
                    from: get("CUSTODIA_MAIL_FROM")
                        .unwrap_or_else(|| "Custodia <no-reply@localhost>".to_owned()),
                }),
            mail_webhook: match (
                get("CUSTODIA_MAIL_WEBHOOK_URL").filter(|url| !url.trim().is_empty()),
                get("CUSTODIA_SMTP_URL").filter(|url| !url.trim().is_empty()),
            ) {
                (Some(_), Some(_)) => {
                    return Err(
                        "CUSTODIA_MAIL_WEBHOOK_URL and CUSTODIA_SMTP_URL: choose one \
                                way for messages to leave"
                            .to_owned(),
                    )
                }
                (webhook, _) => webhook,
            },
            mail_pace: crate::mail::Pace {
                first_retry: Duration::from_secs(u64::from(number(
                    "CUSTODIA_MAIL_RETRY_SECONDS",
                    60,
                )?)),
                ..crate::mail::Pace::default()
            },
            reset_limit_per_address: number("CUSTODIA_RESET_LIMIT_PER_ADDRESS", 5)?,
            checkpoints: crate::checkpoints::Settings {
                log_name: match get("CUSTODIA_LOG_NAME") {
                    Some(name)
                        if name.is_empty()
                            || name.contains('+')
                            || name.chars().any(char::is_whitespace) =>
                    {
                        return Err(
                            "CUSTODIA_LOG_NAME must not be empty nor hold spaces or '+'".to_owned()
                        )
                    }
                    Some(name) => name,
                    None => "custodia".to_owned(),
                },
                every_events: u64::from(number("CUSTODIA_CHECKPOINT_EVENTS", 1000)?),
                every: Duration::from_secs(u64::from(number("CUSTODIA_CHECKPOINT_SECONDS", 60)?)),
                sink: get("CUSTODIA_CHECKPOINT_FILE")
                    .filter(|path| !path.trim().is_empty())
                    .map(Into::into),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from(move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_are_development_and_production_closes_what_it_should() {
        let development = config(&[]).unwrap();
        assert!(!development.production && development.graphql_introspection);
        assert!(matches!(development.metrics, MetricsAccess::Open));
        assert_eq!(development.max_projection_lag, Duration::from_secs(30));
        let production = config(&[("CUSTODIA_ENV", " Production ")]).unwrap();
        assert!(production.production && !production.graphql_introspection);
        assert!(matches!(production.metrics, MetricsAccess::Closed));
    }

    #[test]
    fn a_bad_value_is_refused_by_name() {
        for (name, value) in [
            ("CUSTODIA_AUTH_LIMIT_PER_IP", "sixty"),
            ("CUSTODIA_AUTH_LIMIT_PER_IP", "0"),
            ("CUSTODIA_GRAPHQL_INTROSPECTION", "maybe"),
            ("CUSTODIA_TRUSTED_PROXIES", "10.0.0.1, proxy.example"),
            ("CUSTODIA_MAX_PROJECTION_LAG_SECONDS", "-1"),
            ("CUSTODIA_ENV", "prod"),
        ] {
            let error = config(&[(name, value)]).err().unwrap_or_default();
            assert!(error.contains(name), "{name}: {error}");
        }
        let parsed = config(&[(
            "CUSTODIA_CORS_ORIGINS",
            " https://a.example ,, https://b.example",
        )])
        .unwrap();
        assert_eq!(
            parsed.cors_origins,
            ["https://a.example", "https://b.example"]
        );
    }
}
