//! Configuration from the environment. Every secret may also come from a
//! file named by `NAME_FILE` (as container secrets are mounted); setting both
//! is an error.

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::vault::MasterKey;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} and {0}_FILE are both set; set one")]
    Ambiguous(String),
    #[error("cannot read {name}_FILE: {error}")]
    File { name: String, error: String },
    #[error("{0}")]
    Invalid(String),
}

/// A secret from `name` or from the file `name_FILE` names (trailing
/// newline removed).
pub fn secret(name: &str) -> Result<Option<Zeroizing<String>>, ConfigError> {
    let direct = std::env::var(name).ok();
    let file = std::env::var(format!("{name}_FILE")).ok();
    match (direct, file) {
        (Some(_), Some(_)) => Err(ConfigError::Ambiguous(name.to_owned())),
        (Some(value), None) => Ok(Some(Zeroizing::new(value))),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::File {
                name: name.to_owned(),
                error: e.to_string(),
            })?;
            Ok(Some(Zeroizing::new(
                text.trim_end_matches(['\n', '\r']).to_owned(),
            )))
        }
        (None, None) => Ok(None),
    }
}

/// Where the master key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeyOrigin {
    Configured,
    /// Development only: a key kept in a local file, made on first start.
    DevelopmentFile {
        path: PathBuf,
        created: bool,
    },
}

/// The master key: `CUSTODIA_MASTER_KEY` (or `_FILE`), standard base64 of 32
/// bytes. Without one, production refuses to start; development keeps a
/// generated key in `dev_key_path` (readable by the owner only).
pub fn master_key(
    production: bool,
    dev_key_path: &Path,
) -> Result<(MasterKey, MasterKeyOrigin), ConfigError> {
    if production {
        if let Ok(path) = std::env::var("CUSTODIA_MASTER_KEY_FILE") {
            require_private(Path::new(&path))?;
        }
    }
    if let Some(text) = secret("CUSTODIA_MASTER_KEY")? {
        let key = text
            .parse()
            .map_err(|e: &str| ConfigError::Invalid(format!("CUSTODIA_MASTER_KEY: {e}")))?;
        return Ok((key, MasterKeyOrigin::Configured));
    }
    if production {
        return Err(ConfigError::Invalid(
            "CUSTODIA_ENV=production needs CUSTODIA_MASTER_KEY or CUSTODIA_MASTER_KEY_FILE"
                .to_owned(),
        ));
    }
    let origin = |created| MasterKeyOrigin::DevelopmentFile {
        path: dev_key_path.to_owned(),
        created,
    };
    match std::fs::read_to_string(dev_key_path) {
        Ok(text) => {
            let key = text.parse().map_err(|e: &str| {
                ConfigError::Invalid(format!("{}: {e}", dev_key_path.display()))
            })?;
            Ok((key, origin(false)))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = MasterKey::generate();
            write_private(dev_key_path, &key.to_base64()).map_err(|e| {
                ConfigError::Invalid(format!("cannot write {}: {e}", dev_key_path.display()))
            })?;
            Ok((key, origin(true)))
        }
        Err(error) => Err(ConfigError::Invalid(format!(
            "cannot read {}: {error}",
            dev_key_path.display()
        ))),
    }
}

/// The master key being rotated away from, during a rotation:
/// `CUSTODIA_PREVIOUS_MASTER_KEY` (or `_FILE`). Keys it wrapped still open
/// until `custodia keys rotate-master` has rewrapped them.
pub fn previous_master_key(production: bool) -> Result<Option<MasterKey>, ConfigError> {
    if production {
        if let Ok(path) = std::env::var("CUSTODIA_PREVIOUS_MASTER_KEY_FILE") {
            require_private(Path::new(&path))?;
        }
    }
    secret("CUSTODIA_PREVIOUS_MASTER_KEY")?
        .map(|text| {
            text.parse().map_err(|e: &str| {
                ConfigError::Invalid(format!("CUSTODIA_PREVIOUS_MASTER_KEY: {e}"))
            })
        })
        .transpose()
}

/// Refuses a secret file that anyone but its owner may read or write.
pub fn require_private(path: &Path) -> Result<(), ConfigError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| ConfigError::Invalid(format!("cannot read {}: {e}", path.display())))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(ConfigError::Invalid(format!(
                "{} may be read by others (mode {:o}): make it readable by its owner only (chmod 600)",
                path.display(),
                mode & 0o777
            )));
        }
    }
    Ok(())
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)?
        .write_all(format!("{text}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_key_is_made_once_and_kept_private() {
        let dir =
            std::env::temp_dir().join(format!("custodia-config-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dev.key");
        let (first, origin) = master_key(false, &path).unwrap();
        assert_eq!(
            origin,
            MasterKeyOrigin::DevelopmentFile {
                path: path.clone(),
                created: true
            }
        );
        let (again, origin) = master_key(false, &path).unwrap();
        assert_eq!(
            origin,
            MasterKeyOrigin::DevelopmentFile {
                path: path.clone(),
                created: false
            }
        );
        assert_eq!(first.to_base64(), again.to_base64());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        // Production never falls back to a development key.
        assert!(master_key(true, &path).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_file_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir =
            std::env::temp_dir().join(format!("custodia-config-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("master.key");
        std::fs::write(&path, "key\n").unwrap();
        for (mode, private) in [(0o600, true), (0o400, true), (0o640, false), (0o644, false)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(require_private(&path).is_ok(), private, "mode {mode:o}");
        }
    }
}
