//! The access-token port: signed JWTs and opaque refresh secrets.

use custodia_domain::Timestamp;
use serde::{Deserialize, Serialize};

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: String,
    /// The tenant id.
    pub tid: String,
    /// The session id.
    pub sid: String,
    /// A unique token id.
    pub jti: String,
    /// Role names at issue time (`owner`, `custom:support`, …).
    pub roles: Vec<String>,
    /// Seconds since the Unix epoch.
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed or its signature is not valid")]
    Invalid,
    #[error("the token has expired or is not valid yet")]
    OutOfTime,
}

pub trait TokenSigner: Send + Sync {
    /// The `iss` and `aud` this signer issues and accepts.
    fn issuer(&self) -> &str;
    fn audience(&self) -> &str;

    fn sign(&self, claims: &AccessClaims) -> Result<String, TokenError>;

    /// Checks signature, issuer and audience, and `nbf <= now < exp`.
    fn verify(&self, token: &str, now: Timestamp) -> Result<AccessClaims, TokenError>;

    /// 256 random bits for an opaque refresh token.
    fn refresh_secret(&self) -> [u8; 32];
}
