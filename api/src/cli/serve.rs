//! `custodia serve`: configuration, logs, start-up.

use std::process::ExitCode;

use custodia::http::app;
use custodia_domain::ChainId;

use super::state;

/// What `serve --help` says about configuration.
pub const CONFIGURATION: &str = "\
Configuration: environment variables, or the same keys in custodia.toml in the
working directory (or the file CUSTODIA_CONFIG names); the environment wins.
A secret may be given in NAME_FILE instead of NAME (a file holding it).

  DATABASE_URL                         database_url       sqlite://custodia.db (default) or postgres://…
  CUSTODIA_KEYS_DATABASE_URL           keys_database_url  the key store: by default a second SQLite file
                                                          beside the log (custodia.keys.db), or the
                                                          PostgreSQL log's database (name one of its own)
  CUSTODIA_LISTEN                      listen             address to listen on (127.0.0.1:8080)
  CUSTODIA_ENV                         env                production: refuse a missing master key,
                                                          close introspection, metrics and GraphiQL
  CUSTODIA_MASTER_KEY[_FILE]           master_key_file    32 bytes, base64: wraps every tenant key
  CUSTODIA_PREVIOUS_MASTER_KEY[_FILE]  previous_master_key_file  during a rotation: still opens what
                                                          it wrapped (custodia keys rotate-master)
  CUSTODIA_ISSUER, CUSTODIA_AUDIENCE   issuer, audience   JWT iss and aud (custodia, custodia-api)
  CUSTODIA_CORS_ORIGINS                cors_origins       browser origins allowed (comma-separated)
  CUSTODIA_TRUSTED_PROXIES             trusted_proxies    proxies whose X-Forwarded-Proto is believed
                                                          (loopback by default)
  CUSTODIA_AUTH_LIMIT_PER_IP           auth_limit_per_ip        /auth requests per minute per IP
  CUSTODIA_AUTH_LIMIT_PER_ACCOUNT      auth_limit_per_account   logins per minute per account
  CUSTODIA_GRAPHQL_LIMIT_PER_IP        graphql_limit_per_ip     /graphql requests per minute per IP
  CUSTODIA_GRAPHQL_INTROSPECTION       graphql_introspection    true or false
  CUSTODIA_METRICS_TOKEN[_FILE]        metrics_token_file       bearer token for /metrics
  CUSTODIA_METRICS_PUBLIC              metrics_public           /metrics without a token
  CUSTODIA_MAX_PROJECTION_LAG_SECONDS  max_projection_lag_seconds  /health/ready's limit
  CUSTODIA_LOG_NAME                    (environment only) the checkpoints' key name and origin prefix (custodia)
  CUSTODIA_CHECKPOINT_EVENTS           (environment only) sign a chain's checkpoint every N events (1000)
  CUSTODIA_CHECKPOINT_SECONDS          (environment only) or after N seconds of activity (60)
  CUSTODIA_CHECKPOINT_FILE             (environment only) append signed checkpoints to this file
  CUSTODIA_APP_URL                     (environment only) the application links in messages point to
                                                          (http://localhost:8080)
  CUSTODIA_SMTP_URL                    (environment only) smtp://host:587?tls=required (STARTTLS),
                                                          smtps://host:465 (TLS); unset: messages stay queued
  CUSTODIA_SMTP_USERNAME, CUSTODIA_SMTP_PASSWORD[_FILE]  (environment only) SMTP credentials
  CUSTODIA_MAIL_WEBHOOK_URL            (environment only) or: POST each message, signed, to your own mailer
  CUSTODIA_MAIL_WEBHOOK_SECRET[_FILE]  (environment only) the signature's key (32 bytes or more)
  CUSTODIA_MAIL_FROM                   (environment only) the sender (Custodia <no-reply@localhost>)
  CUSTODIA_MAIL_RETRY_SECONDS          (environment only) first wait after a failed send, doubling to 1 h (60)
  CUSTODIA_RESET_LIMIT_PER_ADDRESS     (environment only) password reset requests per hour per address (5)
  RUST_LOG                             log                log filter (info)";

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CUSTODIA_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
}

/// JSON log lines on stderr, one per event, with the request span's fields
/// (request id, method, path). `RUST_LOG` filters (default `info`). Handlers
/// log causes of internal errors, never personal data.
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn serve(database_url: &str, args: ServeArgs) -> Result<ExitCode, String> {
    init_logs();
    actix_web::rt::System::new().block_on(async {
        let state = state(database_url).await?;
        let tenants = state
            .ports
            .store
            .chains()
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .filter(|c| c.chain != ChainId::Platform)
            .count();
        let backend = match custodia_infrastructure::Backend::of(database_url) {
            Ok(custodia_infrastructure::Backend::Sqlite) => "sqlite",
            Ok(custodia_infrastructure::Backend::Postgres) => "postgres",
            Err(_) => "unknown",
        };
        if tenants == 0 {
            eprintln!(
                "No tenant yet. Create the first one and its owner (README, Quick start):\n  \
                 echo 'a long passphrase here' | cargo run -q -p custodia -- bootstrap --tenant-name Acme --owner-email you@example.org --password-stdin"
            );
        }
        // A key store that lost its keys (or a wrong
        // CUSTODIA_KEYS_DATABASE_URL) would make new ones at the first
        // request, and everything sealed before would stay unreadable.
        let users = state
            .models
            .list(&custodia_application::RowQuery {
                model: "user",
                limit: 1,
                ..custodia_application::RowQuery::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        if !users.is_empty() && !state.keys.holds_tenant_keys().await.map_err(|e| e.to_string())? {
            return Err("the key store holds no tenant key, but the log has users: everything personal \
                        would be unreadable. Check CUSTODIA_KEYS_DATABASE_URL, or restore the key store \
                        (custodia keys restore --from BACKUP)"
                .to_owned());
        }
        // Keys a restored key store brought back, though the log says they
        // were erased, go again before anything is served.
        custodia::erasures::destroy_again(&state.ports, &*state.models)
            .await
            .map_err(|e| format!("cannot re-apply erasures: {e}"))?;
        let projections = state.projections.start(state.ports.store.clone());
        let retention = custodia::retention::schedule(state.ports.clone(), state.models.clone());
        let config = custodia::http::Config::from_env()?;
        let mailer: Option<std::sync::Arc<dyn custodia_application::mail::Mailer>> =
            match (&config.smtp, &config.mail_webhook) {
                (Some(settings), _) => Some(std::sync::Arc::new(
                    custodia_infrastructure::smtp::SmtpMailer::connect(settings, config.production)
                        .map_err(|e| e.to_string())?,
                )),
                (None, Some(url)) => Some(std::sync::Arc::new(
                    custodia_infrastructure::webhook::WebhookMailer::connect(url, config.production)
                        .map_err(|e| e.to_string())?,
                )),
                (None, None) => None,
            };
        let mail = match mailer {
            Some(mailer) => Some(custodia::mail::schedule(
                state.ports.clone(),
                state.models.clone(),
                mailer,
                config.mail_pace,
            )),
            None => {
                tracing::info!(
                    "no mailer configured (CUSTODIA_SMTP_URL or CUSTODIA_MAIL_WEBHOOK_URL): \
                     messages stay queued"
                );
                None
            }
        };
        let checkpoints = custodia::checkpoints::schedule(
            state.ports.store.clone(),
            state.models.clone(),
            state.keys.clone(),
            state.checkpoints.clone(),
            state.checkpoint_settings.clone(),
        );
        let server = actix_web::HttpServer::new(move || app(state.clone()))
            .bind(&args.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let addresses = server.addrs();
        let running = server.run();
        for address in addresses {
            let url = format!("http://{address}");
            tracing::info!(url = %url, backend, "serving");
            eprintln!("Custodia is serving on {url} ({backend}); GraphQL at {url}/graphql");
        }
        let server = running.await;
        // Give the projections' leases up, so another instance takes over at once.
        projections.stop().await;
        retention.abort();
        if let Some(mail) = mail {
            mail.abort();
        }
        checkpoints.abort();
        server.map_err(|e| e.to_string())?;
        Ok(ExitCode::SUCCESS)
    })
}
