//! `custodia serve` and `custodia bootstrap`: configuration, start-up, and
//! the first-run path (the first tenant and its owner).

use std::path::Path;
use std::process::ExitCode;

use custodia::server::{app, AppState};
use custodia_application::commands::tenants::{create_tenant, CreateTenant};
use custodia_application::commands::users::{NewUser, Profile};
use custodia_application::commands::Caller;
use custodia_domain::identity::tenant::TenantSettings;
use custodia_domain::rbac::Principal;
use custodia_domain::{Actor, ChainId, CommandId, Origin, TenantId};
use custodia_infrastructure::config::{master_key, MasterKeyOrigin};
use uuid::Uuid;

/// Where a development master key is kept when none is configured.
const DEV_MASTER_KEY_FILE: &str = "custodia-dev-master.key";

/// What `serve --help` says about configuration.
pub const CONFIGURATION: &str = "\
Configuration: environment variables, or the same keys in custodia.toml in the
working directory (or the file CUSTODIA_CONFIG names); the environment wins.
A secret may be given in NAME_FILE instead of NAME (a file holding it).

  DATABASE_URL                         database_url       sqlite://custodia.db (default) or postgres://…
  CUSTODIA_LISTEN                      listen             address to listen on (127.0.0.1:8080)
  CUSTODIA_ENV                         env                production: refuse a missing master key,
                                                          close introspection, metrics and GraphiQL
  CUSTODIA_MASTER_KEY[_FILE]           master_key_file    32 bytes, base64: wraps every tenant key
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
  RUST_LOG                             log                log filter (info)";

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CUSTODIA_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
}

#[derive(clap::Args)]
pub struct BootstrapArgs {
    /// The first tenant's name.
    #[arg(long)]
    tenant_name: String,
    /// The email of its first owner.
    #[arg(long)]
    owner_email: String,
    /// Read the owner's password from the first line of standard input
    /// (otherwise from CUSTODIA_BOOTSTRAP_PASSWORD or its _FILE).
    #[arg(long)]
    password_stdin: bool,
    /// Create this tenant even though the database already holds one
    /// (bootstrap is for the first tenant; a second run is refused without it).
    #[arg(long)]
    another_tenant: bool,
}

fn production() -> bool {
    std::env::var("CUSTODIA_ENV").is_ok_and(|v| v == "production")
}

pub(crate) async fn state(database_url: &str) -> Result<AppState, String> {
    let (key, origin) =
        master_key(production(), Path::new(DEV_MASTER_KEY_FILE)).map_err(|e| e.to_string())?;
    if let MasterKeyOrigin::DevelopmentFile { path, created } = origin {
        eprintln!(
            "\n!!! WARNING: no CUSTODIA_MASTER_KEY configured. Using a DEVELOPMENT master key {} {}.\n\
             !!! Everything personal in this database is only as safe as that file. Never use it in production\n\
             !!! (CUSTODIA_ENV=production refuses to start without a configured key).\n",
            if created { "just written to" } else { "from" },
            path.display()
        );
    }
    let issuer = std::env::var("CUSTODIA_ISSUER").unwrap_or_else(|_| "custodia".to_owned());
    let audience = std::env::var("CUSTODIA_AUDIENCE").unwrap_or_else(|_| "custodia-api".to_owned());
    AppState::connect(database_url, key, &issuer, &audience).await
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
        let projections = state.projections.start(state.ports.store.clone());
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
        server.map_err(|e| e.to_string())?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The platform operator, acting from the command line.
pub(crate) fn operator() -> Caller {
    Caller {
        principal: Principal::PlatformOperator,
        actor: Actor::System,
        command_id: CommandId::generate(),
        correlation_id: Uuid::now_v7(),
        origin: Origin::parse("cli").expect("a valid origin"),
        expected_version: None,
        session: None,
    }
}

pub async fn bootstrap(database_url: &str, args: BootstrapArgs) -> Result<ExitCode, String> {
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password: {e}"))?;
        zeroize::Zeroizing::new(line.trim_end_matches(['\n', '\r']).to_owned())
    } else {
        custodia_infrastructure::config::secret("CUSTODIA_BOOTSTRAP_PASSWORD")
            .map_err(|e| e.to_string())?
            .ok_or(
                "give the owner's password with --password-stdin or CUSTODIA_BOOTSTRAP_PASSWORD",
            )?
    };
    let state = state(database_url).await?;
    let holds_events = !state
        .ports
        .store
        .read_all(custodia_domain::LogCursor::START, 1)
        .await
        .map_err(|e| e.to_string())?
        .is_empty();
    if holds_events && !args.another_tenant {
        return Err(
            "this database already holds a tenant: bootstrap creates the first one \
                    (pass --another-tenant to create one more)"
                .into(),
        );
    }
    let operator = operator();
    let (tenant, owner) = (TenantId::generate(), Uuid::now_v7());
    let new_owner = NewUser {
        user: owner,
        email: args.owner_email.clone(),
        profile: Profile::default(),
        invited: false,
        password: Some(password.to_string()),
    };
    create_tenant(
        &state.ports,
        &operator,
        CreateTenant {
            tenant,
            name: args.tenant_name,
            settings: TenantSettings::default(),
            owner: new_owner,
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    println!("tenant {tenant}\nowner  {owner}");
    println!(
        "\nlog in:\n  curl -s http://127.0.0.1:8080/auth/login -H 'content-type: application/json' \\\n    \
         -d '{{\"tenant_id\":\"{tenant}\",\"email\":\"{}\",\"password\":\"…\"}}'",
        args.owner_email
    );
    Ok(ExitCode::SUCCESS)
}

/// What the platform operator does to a tenant from the command line (the
/// way back when nobody in the tenant can act any more).
#[derive(clap::Subcommand)]
pub enum TenantCommand {
    /// Suspend a tenant: its sessions, refresh tokens and API keys stop at once.
    Suspend {
        #[arg(long)]
        tenant: String,
    },
    /// Reactivate a suspended tenant.
    Reactivate {
        #[arg(long)]
        tenant: String,
    },
    /// Make a user of the tenant an owner (repairs a tenant left without an
    /// active owner).
    GrantOwner {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user: String,
    },
}

pub async fn tenant(database_url: &str, command: TenantCommand) -> Result<ExitCode, String> {
    use custodia_application::commands::tenants::{change_memberships, set_tenant_suspended};
    use custodia_domain::identity::membership::{MembershipCommand, RoleRef};
    let parse_tenant = |id: &str| {
        Uuid::parse_str(id)
            .ok()
            .and_then(|id| TenantId::from_uuid(id).ok())
            .ok_or_else(|| "--tenant must be a tenant id (a UUID)".to_owned())
    };
    let state = state(database_url).await?;
    let operator = operator();
    let outcome = match command {
        TenantCommand::Suspend { tenant } => {
            set_tenant_suspended(&state.ports, &operator, parse_tenant(&tenant)?, true).await
        }
        TenantCommand::Reactivate { tenant } => {
            set_tenant_suspended(&state.ports, &operator, parse_tenant(&tenant)?, false).await
        }
        TenantCommand::GrantOwner { tenant, user } => {
            let user = Uuid::parse_str(&user).map_err(|_| "--user must be a user id (a UUID)")?;
            let grant = MembershipCommand::Grant {
                user,
                role: RoleRef::BuiltIn(custodia_domain::rbac::BuiltInRole::Owner),
            };
            change_memberships(&state.ports, &operator, parse_tenant(&tenant)?, grant).await
        }
    };
    let outcome = outcome.map_err(|e| e.to_string())?;
    println!("done (stream version {})", outcome.stream_version.0);
    Ok(ExitCode::SUCCESS)
}
