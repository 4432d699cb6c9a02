//! The personal-data port: sealing fields under per-subject keys, opening
//! them, blind indexes, and erasure by key destruction (crypto-shredding).

use async_trait::async_trait;
use custodia_domain::personal::{AccessDay, BlindIndex, FieldContext, SealedField};
use custodia_domain::TenantId;
use uuid::Uuid;

use crate::event_store::StoreError;

/// Why personal data could not be sealed or opened. No variant carries the
/// data itself.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The subject (or its tenant) was erased: nothing new may be sealed
    /// for it.
    #[error("the data subject has been erased")]
    Erased,
    /// Authentication failed: the ciphertext, its context or a wrapped key
    /// was altered, or the master key is not the one the keys were made with.
    #[error("sealed data or a wrapped key failed authentication")]
    Tampered,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[async_trait]
pub trait PersonalData: Send + Sync {
    /// Seals `plaintext` under `subject`'s key (made on first use), bound to
    /// `context`.
    async fn seal(
        &self,
        subject: Uuid,
        context: &FieldContext<'_>,
        plaintext: &[u8],
    ) -> Result<SealedField, VaultError>;

    /// Seals access data (an IP address, a user agent) recorded on `day`
    /// under a key derived from `subject`'s key and the day's key of the
    /// tenant: erasing the subject or expiring the day makes it unreadable.
    async fn seal_access_data(
        &self,
        subject: Uuid,
        day: AccessDay,
        context: &FieldContext<'_>,
        plaintext: &[u8],
    ) -> Result<SealedField, VaultError>;

    /// Opens a sealed field. `Ok(None)` means its key was erased: a normal
    /// state, not an error.
    async fn open(
        &self,
        context: &FieldContext<'_>,
        sealed: &SealedField,
    ) -> Result<Option<Vec<u8>>, VaultError>;

    /// A keyed index of a normalised value for one purpose (`"email"`),
    /// under a key derived from the tenant key.
    async fn blind_index(
        &self,
        tenant: TenantId,
        purpose: &str,
        normalised: &[u8],
    ) -> Result<BlindIndex, VaultError>;

    /// Destroys the subject's key. Returns whether a key was destroyed.
    async fn erase_subject(&self, tenant: TenantId, subject: Uuid) -> Result<bool, VaultError>;

    /// Destroys the tenant key (and with it every subject key of the tenant).
    async fn erase_tenant(&self, tenant: TenantId) -> Result<bool, VaultError>;

    /// The days before `before` whose access-data keys still exist.
    async fn access_days(
        &self,
        tenant: TenantId,
        before: AccessDay,
    ) -> Result<Vec<AccessDay>, VaultError>;

    /// Destroys the access-data keys of every day up to `through`; no key
    /// is made for those days again. Returns how many keys it destroyed.
    async fn erase_access_days_through(
        &self,
        tenant: TenantId,
        through: AccessDay,
    ) -> Result<u64, VaultError>;
}
