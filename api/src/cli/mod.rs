//! The command line: one module per subcommand, and what several share
//! (the server's state as `serve` builds it, the operator's caller).

pub mod audit;
pub mod audit_export;
pub mod bootstrap;
pub mod checkpoints;
pub mod config_file;
pub mod database;
pub mod demo;
pub mod keys;
pub mod offline;
pub mod privacy;
pub mod projections;
pub mod scim;
pub mod serve;
pub mod tenant;
pub mod verify;

use std::path::Path;

use custodia::http::{AppState, Config};
use custodia_application::commands::Caller;
use custodia_domain::rbac::Principal;
use custodia_domain::{Actor, CommandId, Origin};
use custodia_infrastructure::config::{master_key, previous_master_key, MasterKeyOrigin};
use custodia_infrastructure::MasterKeys;
use uuid::Uuid;

/// Where a development master key is kept when none is configured.
const DEV_MASTER_KEY_FILE: &str = "custodia-dev-master.key";

/// The server's state as `serve` builds it: the configuration, read once,
/// and the master key it names (or the development key file).
pub(crate) async fn state(database_url: &str) -> Result<AppState, String> {
    let config = Config::from_env()?;
    let (key, origin) =
        master_key(config.production, Path::new(DEV_MASTER_KEY_FILE)).map_err(|e| e.to_string())?;
    if let MasterKeyOrigin::DevelopmentFile { path, created } = origin {
        eprintln!(
            "\n!!! WARNING: no CUSTODIA_MASTER_KEY configured. Using a DEVELOPMENT master key {} {}.\n\
             !!! Everything personal in this database is only as safe as that file. Never use it in production\n\
             !!! (CUSTODIA_ENV=production refuses to start without a configured key).\n",
            if created { "just written to" } else { "from" },
            path.display()
        );
    }
    let masters = match previous_master_key(config.production).map_err(|e| e.to_string())? {
        Some(previous) => MasterKeys::rotating(key, previous),
        None => MasterKeys::new(key),
    };
    AppState::connect_with(database_url, masters, config).await
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
