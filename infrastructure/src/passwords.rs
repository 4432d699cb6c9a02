//! Password hashing: Argon2id with OWASP's parameters (m = 19 MiB, t = 2,
//! p = 1; docs/adr/0005-argon2id-parameters.md), and verification of bcrypt
//! hashes imported from other systems. Work runs on blocking threads.

use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use async_trait::async_trait;
use custodia_application::{PasswordCheck, PasswordError, PasswordHasher};

/// Memory in KiB, iterations, lanes.
pub const ARGON2_M_KIB: u32 = 19 * 1024;
pub const ARGON2_T: u32 = 2;
pub const ARGON2_P: u32 = 1;

fn argon2() -> Argon2<'static> {
    let params =
        Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None).expect("the parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_now(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordError::Failed(e.to_string()))
}

fn verify_now(password: &str, stored: &str) -> Result<PasswordCheck, PasswordError> {
    if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$") {
        let matches = bcrypt::verify(password, stored).map_err(|_| PasswordError::UnknownFormat)?;
        return Ok(PasswordCheck {
            matches,
            needs_rehash: true,
        });
    }
    let parsed = PasswordHash::new(stored).map_err(|_| PasswordError::UnknownFormat)?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(PasswordError::UnknownFormat);
    }
    let matches = argon2()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    let current = Params::try_from(&parsed).is_ok_and(|p| {
        p.m_cost() == ARGON2_M_KIB && p.t_cost() == ARGON2_T && p.p_cost() == ARGON2_P
    });
    Ok(PasswordCheck {
        matches,
        needs_rehash: !current,
    })
}

/// The [`PasswordHasher`] adapter.
#[derive(Debug, Default)]
pub struct Argon2Passwords {
    /// A hash of a random secret, verified against when the user is unknown.
    decoy: OnceLock<String>,
}

impl Argon2Passwords {
    pub fn new() -> Self {
        Self::default()
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PasswordError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| PasswordError::Failed(e.to_string()))
}

#[async_trait]
impl PasswordHasher for Argon2Passwords {
    async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let password = zeroize::Zeroizing::new(password.to_owned());
        blocking(move || hash_now(&password)).await?
    }

    async fn verify(&self, password: &str, stored: &str) -> Result<PasswordCheck, PasswordError> {
        let (password, stored) = (
            zeroize::Zeroizing::new(password.to_owned()),
            stored.to_owned(),
        );
        blocking(move || verify_now(&password, &stored)).await?
    }

    async fn verify_nothing(&self, password: &str) {
        if self.decoy.get().is_none() {
            let secret = uuid::Uuid::new_v4().to_string();
            if let Ok(Ok(hash)) = blocking(move || hash_now(&secret)).await {
                let _ = self.decoy.set(hash);
            }
        }
        if let Some(decoy) = self.decoy.get() {
            let _ = self.verify(password, decoy).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn argon2id_hashes_verify_and_carry_the_parameters() {
        let passwords = Argon2Passwords::new();
        let hash = passwords
            .hash("correct horse battery staple")
            .await
            .unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        let right = passwords
            .verify("correct horse battery staple", &hash)
            .await
            .unwrap();
        assert_eq!(
            right,
            PasswordCheck {
                matches: true,
                needs_rehash: false
            }
        );
        assert!(
            !passwords
                .verify("wrong horse battery staple", &hash)
                .await
                .unwrap()
                .matches
        );
        assert_ne!(
            passwords
                .hash("correct horse battery staple")
                .await
                .unwrap(),
            hash,
            "salted"
        );
    }

    #[tokio::test]
    async fn weaker_argon2_parameters_ask_for_a_rehash() {
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw", &SaltString::generate(&mut OsRng))
        .unwrap()
        .to_string();
        let check = Argon2Passwords::new().verify("pw", &weak).await.unwrap();
        assert_eq!(
            check,
            PasswordCheck {
                matches: true,
                needs_rehash: true
            }
        );
    }

    #[tokio::test]
    async fn unknown_formats_are_refused() {
        let passwords = Argon2Passwords::new();
        for stored in [
            "",
            "plaintext",
            "$1$abc$def",
            "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
        ] {
            assert!(
                matches!(
                    passwords.verify("pw", stored).await,
                    Err(PasswordError::UnknownFormat)
                ),
                "{stored}"
            );
        }
    }
}

#[cfg(test)]
mod bcrypt_vectors {
    use super::*;

    /// Vectors from the crypt_blowfish test suite (an implementation
    /// independent of ours): hashes made by another system, as imports are.
    #[tokio::test]
    async fn imported_bcrypt_hashes_verify_and_ask_for_a_rehash() {
        let passwords = Argon2Passwords::new();
        for (hash, password) in [
            (
                "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
                "U*U",
            ),
            (
                "$2a$05$CCCCCCCCCCCCCCCCCCCCC.VGOzA784oUp/Z0DY336zx7pLYAy0lwK",
                "U*U*",
            ),
            (
                "$2a$05$XXXXXXXXXXXXXXXXXXXXXOAcXxm9kjPGEMsLznoKqmqw7tc8WCx4a",
                "U*U*U",
            ),
        ] {
            assert_eq!(
                passwords.verify(password, hash).await.unwrap(),
                PasswordCheck {
                    matches: true,
                    needs_rehash: true
                },
                "{password}"
            );
            assert!(!passwords.verify("U*U*U*", hash).await.unwrap().matches);
        }
    }
}
