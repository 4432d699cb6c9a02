//! The password-hashing port.

use async_trait::async_trait;

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordCheck {
    pub matches: bool,
    /// The hash is not Argon2id with the current parameters (an imported
    /// bcrypt hash, or older parameters): rehash after a successful login.
    pub needs_rehash: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the stored password hash is not in a recognised format")]
    UnknownFormat,
    #[error("password hashing failed: {0}")]
    Failed(String),
    /// An imported hash whose cost would make every login too expensive.
    #[error("the hash's cost is above {max}")]
    TooCostly { max: u32 },
    /// Every hashing slot is taken and the queue is full: try again shortly.
    #[error("too many password checks at once; try again shortly")]
    Busy,
}

#[async_trait]
pub trait PasswordHasher: Send + Sync {
    /// A new hash (PHC string) of `password`.
    async fn hash(&self, password: &str) -> Result<String, PasswordError>;

    /// Checks `password` against a stored hash (Argon2id PHC, or bcrypt
    /// `$2a$`/`$2b$`/`$2y$`).
    async fn verify(&self, password: &str, stored: &str) -> Result<PasswordCheck, PasswordError>;

    /// Whether a hash imported from another system may be stored: a format
    /// this hasher verifies, with a cost it can afford at every login.
    fn accepts_import(&self, hash: &str) -> Result<(), PasswordError>;

    /// Spends the time of one verification and matches nothing: what a login
    /// for an unknown user does, so that it cannot be told apart by timing
    /// (it is refused as [`PasswordError::Busy`] when a real check would be).
    async fn verify_nothing(&self, password: &str) -> Result<(), PasswordError>;
}
