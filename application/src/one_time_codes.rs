//! The one-time-code port (TOTP, RFC 6238).

use custodia_domain::Timestamp;

pub trait OneTimeCodes: Send + Sync {
    /// A new random shared secret (160 bits).
    fn new_secret(&self) -> Vec<u8>;

    /// The `otpauth://totp/…` URI an authenticator app scans.
    fn provisioning_uri(&self, secret: &[u8], issuer: &str, account: &str) -> String;

    /// The time step at which `code` is valid at `at`, allowing one step of
    /// clock drift either way; `None` if it is not valid.
    fn matching_step(&self, secret: &[u8], code: &str, at: Timestamp) -> Option<u64>;
}
