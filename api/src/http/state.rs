//! What every request handler can reach: the adapters, wired once at
//! start-up, and the edge's own services.

use std::sync::Arc;

use custodia_application::commands::Ports;
use custodia_application::{EventStore, ReadModels};
use custodia_infrastructure::{
    default_keys_url, open_event_store, Argon2Passwords, Backend, Ed25519Signer, IdempotencyKeys,
    KeyVault, MasterKey, MasterKeys, OpenMode, SqlReadModels, Totp,
};

use super::{AuthLimits, Config};
use crate::graphql::CustodiaSchema;
use crate::http::auth_cache::AuthCache;
use crate::http::metrics::{MeteredStore, Metrics};
use crate::projections::Projections;

/// What every request handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub ports: Ports,
    /// The key store behind `ports.vault`, for what only operators do with
    /// it (backups, restores, master-key rotation).
    pub keys: Arc<KeyVault>,
    pub signer: Arc<Ed25519Signer>,
    pub limits: Arc<AuthLimits>,
    /// Origins allowed to call the API from a browser (CORS); none by default.
    pub cors_origins: Arc<Vec<String>>,
    pub models: Arc<dyn ReadModels>,
    pub projections: Projections,
    pub schema: CustodiaSchema,
    pub metrics: Arc<Metrics>,
    /// Who may read `/metrics`.
    pub metrics_access: MetricsAccess,
    pub auth_cache: Arc<AuthCache>,
    /// The one follower of the log behind every audit subscription.
    pub audit_feed: Arc<crate::audit_feed::AuditFeed>,
    /// Development conveniences (GraphiQL) are on unless `CUSTODIA_ENV=production`.
    pub development: bool,
    /// Answers kept for retried requests (`Idempotency-Key`).
    pub idempotency: Arc<IdempotencyKeys>,
    /// Proxies whose `X-Forwarded-Proto` is believed (for HSTS).
    pub trusted_proxies: Arc<Vec<std::net::IpAddr>>,
    /// The projection lag above which the server is not ready.
    pub max_projection_lag: std::time::Duration,
    /// Signed checkpoints kept, and when and where the server signs them.
    pub checkpoints: Arc<custodia_infrastructure::checkpoints::CheckpointStore>,
    pub checkpoint_settings: crate::checkpoints::Settings,
    /// Password-reset requests, worked on after they were answered.
    pub resets: super::ResetQueue,
}

/// Who may read `/metrics`: anyone (development, or
/// `CUSTODIA_METRICS_PUBLIC=true`), the holders of `CUSTODIA_METRICS_TOKEN`
/// (as a bearer token), or nobody (production's default).
#[derive(Clone)]
pub enum MetricsAccess {
    Open,
    Token(Arc<zeroize::Zeroizing<String>>),
    Closed,
}

impl AppState {
    /// Opens (and migrates) the database, the key vault and the signing keys,
    /// and wires the adapters.
    pub async fn connect(
        database_url: &str,
        master: MasterKey,
        issuer: &str,
        audience: &str,
    ) -> Result<AppState, String> {
        let config = Config {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ..Config::from_env()?
        };
        AppState::connect_with(database_url, MasterKeys::new(master), config).await
    }

    /// Opens (and migrates) the database, the key vault and the signing keys,
    /// and wires the adapters, as `config` says.
    pub async fn connect_with(
        database_url: &str,
        masters: MasterKeys,
        config: Config,
    ) -> Result<AppState, String> {
        let (issuer, audience) = (config.issuer.as_str(), config.audience.as_str());
        let metrics = Arc::new(Metrics::default());
        let appended = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let store: Arc<dyn EventStore> = Arc::new(MeteredStore {
            inner: open_event_store(database_url, OpenMode::Migrate, 16)
                .await
                .map_err(|e| e.to_string())?,
            metrics: metrics.clone(),
            appended: appended.clone(),
        });
        let auth_cache = Arc::new(AuthCache::new(appended, store.append_signal()));
        let models: Arc<dyn ReadModels> = Arc::new(
            SqlReadModels::connect(database_url)
                .await
                .map_err(|e| e.to_string())?,
        );
        let idempotency = Arc::new(
            IdempotencyKeys::connect(database_url, &masters)
                .await
                .map_err(|e| e.to_string())?,
        );
        let keys_url = config
            .keys_database_url
            .clone()
            .unwrap_or_else(|| default_keys_url(database_url));
        let (vault, moved) = KeyVault::open(&keys_url, database_url, masters)
            .await
            .map_err(|e| format!("the key store: {e}"))?;
        if config.production
            && keys_url == database_url
            && matches!(Backend::of(database_url), Ok(Backend::Postgres))
        {
            tracing::warn!(
                "the key store shares the event log's database, so a backup of the log holds the (wrapped) keys; \
                 set CUSTODIA_KEYS_DATABASE_URL to a database of its own (docs/privacy.md)"
            );
        }
        if moved > 0 {
            tracing::warn!(
                keys = moved,
                "keys kept in the log's database were moved into the key store and deleted there"
            );
        }
        let keys = vault.signing_keys().await.map_err(|e| match e {
            custodia_application::VaultError::Tampered => {
                "the master key does not open this database's keys: is it the key this database was created with?".to_owned()
            }
            other => format!("signing keys: {other}"),
        })?;
        let signer =
            Arc::new(Ed25519Signer::from_keys(&keys, issuer, audience).map_err(|e| e.to_string())?);
        let keys = Arc::new(vault);
        let ports = Ports {
            store,
            vault: keys.clone(),
            passwords: Arc::new(Argon2Passwords::new()),
            codes: Arc::new(Totp),
            tokens: signer.clone(),
            unknown_logins: Arc::default(),
            links: Arc::new(custodia_application::commands::account::LinkBase(
                config.app_url.clone(),
            )),
        };
        let checkpoints = Arc::new(
            custodia_infrastructure::checkpoints::CheckpointStore::connect(database_url)
                .await
                .map_err(|e| e.to_string())?,
        );
        Ok(AppState {
            resets: super::ResetQueue::start(ports.clone()),
            ports,
            keys,
            checkpoints,
            checkpoint_settings: config.checkpoints.clone(),
            signer,
            limits: Arc::new(
                AuthLimits::with_graphql(
                    config.auth_limit_per_ip,
                    config.auth_limit_per_account,
                    config.graphql_limit_per_ip,
                )
                .with_reset_limit(config.reset_limit_per_address),
            ),
            cors_origins: Arc::new(config.cors_origins),
            projections: Projections::new(models.clone()),
            models,
            schema: crate::graphql::schema(config.graphql_introspection),
            metrics,
            metrics_access: config.metrics,
            auth_cache,
            audit_feed: Arc::default(),
            development: !config.production,
            idempotency,
            trusted_proxies: Arc::new(config.trusted_proxies),
            max_projection_lag: config.max_projection_lag,
        })
    }
}
