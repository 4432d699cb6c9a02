//! The key vault: personal data sealed under per-subject keys
//! (docs/adr/0004-personal-data-keys.md).
//!
//! - The **master key** comes from configuration and never touches storage.
//! - Each tenant has a random 256-bit **tenant key**, stored wrapped
//!   (AES-256-GCM) under the master key.
//! - Each data subject has a random 256-bit **subject key**, stored wrapped
//!   under its tenant key.
//! - A field is AES-256-GCM under its subject key with a fresh 96-bit nonce
//!   and the field's associated data (`custodia_domain::personal::field_aad`).
//! - A blind index is HMAC-SHA-256 under a key derived (HKDF-SHA-256) from the
//!   tenant key for one purpose.
//! - Erasure replaces a wrapped key with a tombstone: its data can never be
//!   opened again, and nothing new is sealed for that subject or tenant.

use std::fmt;
use std::str::FromStr;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use custodia_application::{PersonalData, StoreError, VaultError};
use custodia_domain::personal::{field_aad, BlindIndex, FieldContext, SealedField};
use custodia_domain::{TenantId, Timestamp};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::sqlite::SqliteSynchronous;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::pools::{on_pool, Pools};
use crate::tokens::SigningKeyMaterial;

pub(crate) const NONCE_LEN: usize = 12;

/// 256 bits of key material, wiped from memory when dropped.
type KeyBytes = Zeroizing<[u8; 32]>;

/// The key that wraps every tenant key. Its `Debug` form never shows it.
pub struct MasterKey(KeyBytes);

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A fresh random key (for development and tests).
    pub fn generate() -> Self {
        Self(Zeroizing::new(Aes256Gcm::generate_key(&mut OsRng).into()))
    }

    /// A key for another purpose, derived from this one (HKDF-SHA256 with
    /// `info` naming the purpose), so one configured secret serves them all.
    pub(crate) fn derive(&self, info: &[u8]) -> KeyBytes {
        let mut key = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(None, self.0.as_slice())
            .expand(info, key.as_mut_slice())
            .expect("32 bytes is a valid HKDF-SHA256 length");
        key
    }

    /// The key as standard base64, for writing a development key file.
    pub fn to_base64(&self) -> String {
        B64.encode(*self.0)
    }
}

impl FromStr for MasterKey {
    type Err = &'static str;
    /// Standard base64 of exactly 32 bytes (surrounding whitespace allowed).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const RULE: &str = "the master key must be 32 bytes in standard base64";
        let bytes = Zeroizing::new(B64.decode(text.trim()).map_err(|_| RULE)?);
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| RULE)?;
        Ok(Self::from_bytes(key))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

fn cipher(key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key))
}

/// nonce ‖ AES-256-GCM(kek, nonce, plaintext, aad)
pub(crate) fn seal_bytes(key: &[u8; 32], plaintext: &[u8], aad: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let ciphertext = cipher(key)
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("AES-GCM encryption of in-memory data does not fail");
    (nonce.to_vec(), ciphertext)
}

pub(crate) fn open_bytes(
    key: &[u8; 32],
    nonce: &[u8],
    ciphertext: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    if nonce.len() != NONCE_LEN {
        return Err(VaultError::Tampered);
    }
    cipher(key)
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| VaultError::Tampered)
}

fn wrap(kek: &[u8; 32], key: &[u8; 32], aad: &[u8]) -> Vec<u8> {
    let (mut nonce, ciphertext) = seal_bytes(kek, key, aad);
    nonce.extend_from_slice(&ciphertext);
    nonce
}

fn unwrap_key(kek: &[u8; 32], wrapped: &[u8], aad: &[u8]) -> Result<KeyBytes, VaultError> {
    if wrapped.len() < NONCE_LEN {
        return Err(VaultError::Tampered);
    }
    let plain = open_bytes(kek, &wrapped[..NONCE_LEN], &wrapped[NONCE_LEN..], aad)?;
    let key: [u8; 32] = plain
        .as_slice()
        .try_into()
        .map_err(|_| VaultError::Tampered)?;
    Ok(Zeroizing::new(key))
}

fn tenant_key_aad(tenant: TenantId) -> Vec<u8> {
    [&b"custodia.tenant-key.v1"[..], tenant.as_uuid().as_bytes()].concat()
}

fn subject_key_aad(tenant: TenantId, subject: Uuid) -> Vec<u8> {
    [
        &b"custodia.subject-key.v1"[..],
        tenant.as_uuid().as_bytes(),
        subject.as_bytes(),
    ]
    .concat()
}

/// A key as stored.
#[derive(Debug)]
enum Slot {
    Missing,
    Wrapped(Vec<u8>),
    Erased,
}

fn slot(row: Option<(Option<Vec<u8>>, Option<i64>)>) -> Slot {
    match row {
        None => Slot::Missing,
        Some((Some(wrapped), None)) => Slot::Wrapped(wrapped),
        Some(_) => Slot::Erased,
    }
}

/// Where wrapped keys live: tables `tenant_keys` and `subject_keys` in the
/// configured database, apart from the event log. The SQL is the same on
/// both backends.
#[derive(Debug, Clone)]
struct KeyTables(Pools);

impl KeyTables {
    async fn tenant(&self, tenant: TenantId) -> Result<Slot, StoreError> {
        let sql = "SELECT wrapped, erased_at FROM tenant_keys WHERE tenant_id = $1";
        let row = on_pool!(&self.0, pool => sqlx::query_as(sql).bind(tenant.as_uuid()).fetch_optional(pool))?;
        Ok(slot(row))
    }

    async fn subject(&self, tenant: TenantId, subject: Uuid) -> Result<Slot, StoreError> {
        let sql =
            "SELECT wrapped, erased_at FROM subject_keys WHERE tenant_id = $1 AND subject_id = $2";
        let row = on_pool!(&self.0, pool => sqlx::query_as(sql).bind(tenant.as_uuid()).bind(subject).fetch_optional(pool))?;
        Ok(slot(row))
    }

    /// Stores a wrapped tenant key unless one (or a tombstone) exists.
    async fn insert_tenant(&self, tenant: TenantId, wrapped: &[u8]) -> Result<(), StoreError> {
        let sql = "INSERT INTO tenant_keys (tenant_id, wrapped, created_at) VALUES ($1, $2, $3) \
                   ON CONFLICT (tenant_id) DO NOTHING";
        let now = Timestamp::now().0;
        on_pool!(exec &self.0, pool => sqlx::query(sql).bind(tenant.as_uuid()).bind(wrapped).bind(now).execute(pool))?;
        Ok(())
    }

    async fn insert_subject(
        &self,
        tenant: TenantId,
        subject: Uuid,
        wrapped: &[u8],
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO subject_keys (tenant_id, subject_id, wrapped, created_at) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (tenant_id, subject_id) DO NOTHING";
        let now = Timestamp::now().0;
        on_pool!(exec &self.0, pool => sqlx::query(sql).bind(tenant.as_uuid()).bind(subject).bind(wrapped).bind(now).execute(pool))?;
        Ok(())
    }

    /// Replaces the tenant key, and every subject key of the tenant, with
    /// tombstones. Returns whether a tenant key was destroyed.
    async fn erase_tenant(&self, tenant: TenantId) -> Result<bool, StoreError> {
        let had_key = match self.tenant(tenant).await? {
            Slot::Erased if !self.holds_subject_keys(tenant).await? => return Ok(false),
            Slot::Wrapped(_) => true,
            Slot::Erased | Slot::Missing => false,
        };
        let now = Timestamp::now().0;
        let tombstone = "INSERT INTO tenant_keys (tenant_id, wrapped, created_at, erased_at) VALUES ($1, NULL, $2, $2) \
                         ON CONFLICT (tenant_id) DO UPDATE SET wrapped = NULL, \
                         erased_at = coalesce(tenant_keys.erased_at, excluded.erased_at)";
        on_pool!(exec &self.0, pool => sqlx::query(tombstone).bind(tenant.as_uuid()).bind(now).execute(pool))?;
        let subjects = "UPDATE subject_keys SET wrapped = NULL, erased_at = $2 \
                        WHERE tenant_id = $1 AND wrapped IS NOT NULL";
        on_pool!(exec &self.0, pool => sqlx::query(subjects).bind(tenant.as_uuid()).bind(now).execute(pool))?;
        Ok(had_key)
    }

    /// Whether any subject key of `tenant` is still wrapped (a restore may
    /// bring some back beside a tenant tombstone).
    async fn holds_subject_keys(&self, tenant: TenantId) -> Result<bool, StoreError> {
        let sql = "SELECT count(*) FROM subject_keys WHERE tenant_id = $1 AND wrapped IS NOT NULL";
        let count: i64 = on_pool!(&self.0, pool => sqlx::query_scalar(sql).bind(tenant.as_uuid()).fetch_one(pool))?;
        Ok(count > 0)
    }

    async fn erase_subject(&self, tenant: TenantId, subject: Uuid) -> Result<bool, StoreError> {
        let had_key = match self.subject(tenant, subject).await? {
            // A tombstone already: nothing to write (re-erasing every key
            // the log names at start-up reads, and writes only what a
            // restore brought back).
            Slot::Erased => return Ok(false),
            Slot::Wrapped(_) => true,
            Slot::Missing => false,
        };
        let sql = "INSERT INTO subject_keys (tenant_id, subject_id, wrapped, created_at, erased_at) \
                   VALUES ($1, $2, NULL, $3, $3) ON CONFLICT (tenant_id, subject_id) DO UPDATE \
                   SET wrapped = NULL, erased_at = coalesce(subject_keys.erased_at, excluded.erased_at)";
        let now = Timestamp::now().0;
        on_pool!(exec &self.0, pool => sqlx::query(sql).bind(tenant.as_uuid()).bind(subject).bind(now).execute(pool))?;
        Ok(had_key)
    }
}

/// A stored signing key: (kid, sealed private key, public x, created at).
type SigningRow = (String, Vec<u8>, String, i64);

/// How long a retired signing key stays published (longer than any access
/// token lives).
const RETIRED_KEY_PUBLISHED_MICROS: i64 = 86_400_000_000;

impl KeyTables {
    async fn signing_keys(&self, published_since: i64) -> Result<Vec<SigningRow>, StoreError> {
        let sql = "SELECT kid, private_key, public_x, created_at FROM signing_keys \
                   WHERE retired_at IS NULL OR retired_at > $1 ORDER BY created_at DESC, kid DESC";
        on_pool!(&self.0, pool => sqlx::query_as(sql).bind(published_since).fetch_all(pool))
    }

    async fn active_signing_keys(&self) -> Result<i64, StoreError> {
        let sql = "SELECT count(*) FROM signing_keys WHERE retired_at IS NULL";
        on_pool!(&self.0, pool => sqlx::query_scalar(sql).fetch_one(pool))
    }

    /// Adds a key; with `retire_others`, the others stop signing (they stay
    /// published for a while).
    async fn add_signing_key(
        &self,
        kid: &str,
        sealed: &[u8],
        public_x: &str,
        retire_others: bool,
    ) -> Result<(), StoreError> {
        let now = Timestamp::now().0;
        if retire_others {
            let retire = "UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL";
            on_pool!(exec &self.0, pool => sqlx::query(retire).bind(now).execute(pool))?;
        }
        let insert =
            "INSERT INTO signing_keys (kid, algorithm, private_key, public_x, created_at) \
                      VALUES ($1, 'EdDSA', $2, $3, $4) ON CONFLICT (kid) DO NOTHING";
        on_pool!(exec &self.0, pool => sqlx::query(insert).bind(kid).bind(sealed).bind(public_x).bind(now).execute(pool))?;
        Ok(())
    }
}

fn signing_key_aad(kid: &str) -> Vec<u8> {
    [&b"custodia.signing-key.v1"[..], kid.as_bytes()].concat()
}

/// The [`PersonalData`] adapter.
#[derive(Debug)]
pub struct KeyVault {
    master: MasterKey,
    tables: KeyTables,
}

impl KeyVault {
    /// Opens the key tables of the database named by `url` (migrated with
    /// the event log). Keys are not cached: an erasure is seen by every
    /// instance at its next use.
    pub async fn connect(url: &str, master: MasterKey) -> Result<Self, StoreError> {
        let tables = KeyTables(Pools::connect(url, SqliteSynchronous::Full, 2, 4).await?);
        Ok(Self { master, tables })
    }

    /// The published signing keys, newest (the one that signs) first. Makes
    /// one when none is active, so a fresh database works at once.
    pub async fn signing_keys(&self) -> Result<Vec<SigningKeyMaterial>, VaultError> {
        if self.tables.active_signing_keys().await? == 0 {
            self.add_signing_key(false).await?;
        }
        let since = Timestamp::now().0 - RETIRED_KEY_PUBLISHED_MICROS;
        self.tables
            .signing_keys(since)
            .await?
            .into_iter()
            .map(|(kid, sealed, public_x, _)| {
                if sealed.len() < NONCE_LEN {
                    return Err(VaultError::Tampered);
                }
                let der = open_bytes(
                    &self.master.0,
                    &sealed[..NONCE_LEN],
                    &sealed[NONCE_LEN..],
                    &signing_key_aad(&kid),
                )?;
                Ok(SigningKeyMaterial {
                    kid,
                    private_der: Zeroizing::new(der.to_vec()),
                    public_x,
                })
            })
            .collect()
    }

    /// Starts signing with a new key; the others stay published for a day.
    pub async fn rotate_signing_key(&self) -> Result<(), VaultError> {
        self.add_signing_key(true).await
    }

    async fn add_signing_key(&self, retire_others: bool) -> Result<(), VaultError> {
        let key = SigningKeyMaterial::generate();
        let (mut sealed, ciphertext) =
            seal_bytes(&self.master.0, &key.private_der, &signing_key_aad(&key.kid));
        sealed.extend_from_slice(&ciphertext);
        Ok(self
            .tables
            .add_signing_key(&key.kid, &sealed, &key.public_x, retire_others)
            .await?)
    }

    /// The tenant key, made on first use unless `create` is false.
    /// `Ok(None)`: erased (or, without `create`, never made).
    async fn tenant_key(
        &self,
        tenant: TenantId,
        create: bool,
    ) -> Result<Option<KeyBytes>, VaultError> {
        let aad = tenant_key_aad(tenant);
        loop {
            match self.tables.tenant(tenant).await? {
                Slot::Wrapped(wrapped) => {
                    return unwrap_key(&self.master.0, &wrapped, &aad).map(Some)
                }
                Slot::Erased => return Ok(None),
                Slot::Missing if !create => return Ok(None),
                Slot::Missing => {
                    let key = Zeroizing::new(Aes256Gcm::generate_key(&mut OsRng).into());
                    // Another instance may win the race; the loop reads the winner.
                    self.tables
                        .insert_tenant(tenant, &wrap(&self.master.0, &key, &aad))
                        .await?;
                }
            }
        }
    }

    async fn subject_key(
        &self,
        tenant_key: &[u8; 32],
        tenant: TenantId,
        subject: Uuid,
        create: bool,
    ) -> Result<Option<KeyBytes>, VaultError> {
        let aad = subject_key_aad(tenant, subject);
        loop {
            match self.tables.subject(tenant, subject).await? {
                Slot::Wrapped(wrapped) => return unwrap_key(tenant_key, &wrapped, &aad).map(Some),
                Slot::Erased => return Ok(None),
                Slot::Missing if !create => return Ok(None),
                Slot::Missing => {
                    let key = Zeroizing::new(Aes256Gcm::generate_key(&mut OsRng).into());
                    self.tables
                        .insert_subject(tenant, subject, &wrap(tenant_key, &key, &aad))
                        .await?;
                }
            }
        }
    }
}

#[async_trait]
impl PersonalData for KeyVault {
    async fn seal(
        &self,
        subject: Uuid,
        context: &FieldContext<'_>,
        plaintext: &[u8],
    ) -> Result<SealedField, VaultError> {
        let tenant_key = self
            .tenant_key(context.tenant, true)
            .await?
            .ok_or(VaultError::Erased)?;
        let subject_key = self
            .subject_key(&tenant_key, context.tenant, subject, true)
            .await?
            .ok_or(VaultError::Erased)?;
        let (nonce, ciphertext) = seal_bytes(&subject_key, plaintext, &field_aad(context));
        Ok(SealedField {
            subject,
            nonce,
            ciphertext,
        })
    }

    async fn open(
        &self,
        context: &FieldContext<'_>,
        sealed: &SealedField,
    ) -> Result<Option<Vec<u8>>, VaultError> {
        let Some(tenant_key) = self.tenant_key(context.tenant, false).await? else {
            return Ok(None);
        };
        let Some(subject_key) = self
            .subject_key(&tenant_key, context.tenant, sealed.subject, false)
            .await?
        else {
            return Ok(None);
        };
        let plain = open_bytes(
            &subject_key,
            &sealed.nonce,
            &sealed.ciphertext,
            &field_aad(context),
        )?;
        Ok(Some(plain.to_vec()))
    }

    async fn blind_index(
        &self,
        tenant: TenantId,
        purpose: &str,
        normalised: &[u8],
    ) -> Result<BlindIndex, VaultError> {
        let tenant_key = self
            .tenant_key(tenant, true)
            .await?
            .ok_or(VaultError::Erased)?;
        let mut index_key = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(None, tenant_key.as_slice())
            .expand(
                &[&b"custodia.blind-index.v1:"[..], purpose.as_bytes()].concat(),
                index_key.as_mut_slice(),
            )
            .expect("32 bytes is a valid HKDF-SHA-256 output length");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(index_key.as_slice())
            .expect("HMAC takes any key length");
        mac.update(normalised);
        Ok(BlindIndex(mac.finalize().into_bytes().into()))
    }

    async fn erase_subject(&self, tenant: TenantId, subject: Uuid) -> Result<bool, VaultError> {
        Ok(self.tables.erase_subject(tenant, subject).await?)
    }

    async fn erase_tenant(&self, tenant: TenantId) -> Result<bool, VaultError> {
        Ok(self.tables.erase_tenant(tenant).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_key_parses_base64_of_32_bytes_only() {
        let key = MasterKey::generate();
        assert!(key.to_base64().parse::<MasterKey>().is_ok());
        assert!("c2hvcnQ=".parse::<MasterKey>().is_err());
        assert!("not base64!".parse::<MasterKey>().is_err());
        assert!(!format!("{key:?}").contains(&key.to_base64()));
    }

    #[test]
    fn wrapped_keys_are_bound_to_their_owner() {
        let kek = [7u8; 32];
        let key = [9u8; 32];
        let (tenant, other) = (TenantId::generate(), TenantId::generate());
        let wrapped = wrap(&kek, &key, &tenant_key_aad(tenant));
        assert_eq!(
            *unwrap_key(&kek, &wrapped, &tenant_key_aad(tenant)).unwrap(),
            key
        );
        assert!(matches!(
            unwrap_key(&kek, &wrapped, &tenant_key_aad(other)),
            Err(VaultError::Tampered)
        ));
        assert!(matches!(
            unwrap_key(&[8u8; 32], &wrapped, &tenant_key_aad(tenant)),
            Err(VaultError::Tampered)
        ));
        let mut flipped = wrapped.clone();
        flipped[20] ^= 1;
        assert!(matches!(
            unwrap_key(&kek, &flipped, &tenant_key_aad(tenant)),
            Err(VaultError::Tampered)
        ));
    }
}
