//! `custodia keys`: the key store's backups, restores and master-key
//! rotation (docs/privacy.md, ADR 0011).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use custodia_domain::TenantId;
use custodia_infrastructure::key_store::KeyRows;
use serde::{Deserialize, Serialize};

use super::state;

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Write every key of the key store (wrapped: nothing opens without the
    /// master key) to a JSON file, readable by its owner only.
    Backup {
        /// The file to write; it must not exist.
        #[arg(long)]
        to: PathBuf,
    },
    /// Write a backup's keys into the key store, except those an erasure or
    /// expiry event in the log names, then destroy those again in the
    /// store: a restore never brings erased data back. A key destroyed in
    /// the store stays destroyed. Stop every instance first.
    Restore {
        #[arg(long)]
        from: PathBuf,
    },
    /// Rewrap every key still under the previous master key
    /// (CUSTODIA_PREVIOUS_MASTER_KEY) under the current one
    /// (CUSTODIA_MASTER_KEY), while servers keep serving with both. Stopping
    /// it loses nothing: run it again to go on. When it reports 0 left, the
    /// previous key may be retired.
    RotateMaster {
        /// Rewrap at most this many keys in this run.
        #[arg(long)]
        max: Option<u64>,
    },
}

/// A backup file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Backup {
    /// `custodia.key-backup.v1`
    format: String,
    /// RFC 3339.
    taken_at: String,
    keys: KeyRows,
}

const FORMAT: &str = "custodia.key-backup.v1";

pub async fn run(database_url: &str, command: KeysCommand) -> Result<ExitCode, String> {
    let state = state(database_url).await?;
    match command {
        KeysCommand::Backup { to } => {
            let keys = state.keys.backup().await.map_err(|e| e.to_string())?;
            let count = keys.len();
            let backup = Backup {
                format: FORMAT.to_owned(),
                taken_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                keys,
            };
            let json = serde_json::to_vec(&backup).map_err(|e| e.to_string())?;
            write_private(&to, &json).map_err(|e| format!("cannot write {}: {e}", to.display()))?;
            println!("{count} keys written to {}", to.display());
        }
        KeysCommand::Restore { from } => {
            let text =
                std::fs::read(&from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
            let backup: Backup = serde_json::from_slice(&text)
                .map_err(|e| format!("{} is not a key backup: {e}", from.display()))?;
            if backup.format != FORMAT {
                return Err(format!(
                    "{} is a {} backup; this version reads {FORMAT}",
                    from.display(),
                    backup.format
                ));
            }
            let mut keys = backup.keys;
            // What the log says is destroyed never goes back in, not even
            // until the re-destruction below.
            let destroyed = custodia::erasures::destroyed(&*state.models)
                .await
                .map_err(|e| e.to_string())?;
            let held_back = keys.tombstone(
                |tenant, subject| {
                    TenantId::from_uuid(tenant)
                        .is_ok_and(|t| destroyed.subjects.contains(&(t, subject)))
                },
                |tenant| TenantId::from_uuid(tenant).is_ok_and(|t| destroyed.tenants.contains(&t)),
                |tenant, day| {
                    let through = TenantId::from_uuid(tenant)
                        .ok()
                        .and_then(|t| destroyed.access_through.get(&t));
                    through.is_some_and(|through| day <= through.to_string().as_str())
                },
                chrono::Utc::now().timestamp_micros(),
            );
            state.keys.restore(&keys).await.map_err(|e| e.to_string())?;
            let reapplied = custodia::erasures::destroy_again(&state.ports, &*state.models)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "{} keys restored from a backup taken {}; {} erasures and expiries in the log, {} keys destroyed again",
                keys.len() - held_back,
                backup.taken_at,
                reapplied.erasures,
                held_back + reapplied.destroyed
            );
            let store = state.keys.backup().await.map_err(|e| e.to_string())?;
            let differing = keys.differing(&store);
            if differing > 0 {
                eprintln!(
                    "error: {differing} keys of the backup were not restored: the store holds other keys for them, \
                     made since it was lost (was a server running?). What the backup's keys sealed does not open \
                     with those. Stop every instance, empty the key store and restore again."
                );
                return Ok(ExitCode::from(crate::EXIT_FAILED));
            }
        }
        KeysCommand::RotateMaster { max } => {
            let rotation = state
                .keys
                .rotate_master(max.unwrap_or(u64::MAX))
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "{} keys rewrapped under the current master key; {} left",
                rotation.rewrapped, rotation.remaining
            );
            if rotation.unreadable > 0 {
                eprintln!(
                    "error: {} keys open under neither the current nor the previous master key \
                     (restored from a store of another master key, or altered); they were left as they are",
                    rotation.unreadable
                );
                return Ok(ExitCode::from(crate::EXIT_FAILED));
            }
            if rotation.remaining == 0 {
                println!("the previous master key opens nothing any more and may be retired");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Creates `path` (it must not exist) readable and writable by its owner only.
fn write_private(path: &PathBuf, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
