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
use custodia_domain::personal::{field_aad, AccessDay, BlindIndex, FieldContext, SealedField};
use custodia_domain::{TenantId, Timestamp};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::key_cache::{CachedKey, Generation, KeyBytes, KeyCache, KeyCacheStats};
use crate::key_store::{KeyRows, KeyTables, SealedTable, Slot};
use crate::signed_note::NoteSigner;
use crate::tokens::SigningKeyMaterial;

pub(crate) const NONCE_LEN: usize = 12;

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

    /// The key's public name: 8 bytes derived from it, in hex. Stored beside
    /// what it wraps, so that a rotation knows what is left to rewrap.
    pub fn id(&self) -> String {
        hex_prefix(&self.derive(b"custodia.master-key-id.v1"))
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

fn hex_prefix(bytes: &[u8; 32]) -> String {
    bytes[..8].iter().map(|b| format!("{b:02x}")).collect()
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

/// How long a retired signing key stays published (longer than any access
/// token lives).
const RETIRED_KEY_PUBLISHED_MICROS: i64 = 86_400_000_000;

fn checkpoint_key_aad(verifier: &str) -> Vec<u8> {
    [&b"custodia.checkpoint-key.v1"[..], verifier.as_bytes()].concat()
}

fn signing_key_aad(kid: &str) -> Vec<u8> {
    [&b"custodia.signing-key.v1"[..], kid.as_bytes()].concat()
}

fn access_key_aad(tenant: TenantId, day: AccessDay) -> Vec<u8> {
    [
        &b"custodia.access-key.v1"[..],
        tenant.as_uuid().as_bytes(),
        day.to_string().as_bytes(),
    ]
    .concat()
}

/// The key of one access-data field: HKDF-SHA-256 over the subject's key,
/// salted with the day's key. Destroying either (erasure, retention)
/// leaves it unrecoverable.
fn access_data_key(subject_key: &[u8; 32], day_key: &[u8; 32]) -> KeyBytes {
    let mut key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(day_key.as_slice()), subject_key.as_slice())
        .expand(b"custodia.access-data.v1", key.as_mut_slice())
        .expect("32 bytes is a valid HKDF-SHA-256 output length");
    key
}

/// The master keys a vault opens with: the current one, which wraps every
/// new key, and during a rotation the previous one, which still opens what
/// it wrapped (`custodia keys rotate-master`).
pub struct MasterKeys {
    /// (public id, key); the current key first.
    keys: Vec<(String, MasterKey)>,
}

impl MasterKeys {
    pub fn new(current: MasterKey) -> Self {
        Self {
            keys: vec![(current.id(), current)],
        }
    }

    /// `current`, and `previous` for what it still wraps.
    pub fn rotating(current: MasterKey, previous: MasterKey) -> Self {
        let mut keys = Self::new(current);
        if previous.id() != keys.current_id() {
            keys.keys.push((previous.id(), previous));
        }
        keys
    }

    pub fn current(&self) -> &MasterKey {
        &self.keys[0].1
    }

    pub fn current_id(&self) -> &str {
        &self.keys[0].0
    }

    pub fn previous(&self) -> Option<&MasterKey> {
        self.keys.get(1).map(|(_, key)| key)
    }

    /// Opens `wrapped` with the master key named by `id` (or, for a row
    /// made before keys had ids, with whichever opens it).
    fn unwrap(&self, id: Option<&str>, wrapped: &[u8], aad: &[u8]) -> Result<KeyBytes, VaultError> {
        self.keys
            .iter()
            .filter(|(key_id, _)| id.is_none_or(|id| id == key_id))
            .find_map(|(_, key)| unwrap_key(&key.0, wrapped, aad).ok())
            .ok_or(VaultError::Tampered)
    }

    fn open(
        &self,
        id: Option<&str>,
        sealed: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        if sealed.len() < NONCE_LEN {
            return Err(VaultError::Tampered);
        }
        self.keys
            .iter()
            .filter(|(key_id, _)| id.is_none_or(|id| id == key_id))
            .find_map(|(_, key)| {
                open_bytes(&key.0, &sealed[..NONCE_LEN], &sealed[NONCE_LEN..], aad).ok()
            })
            .ok_or(VaultError::Tampered)
    }
}

impl fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        write!(f, "MasterKeys({ids:?})")
    }
}

/// What one run of [`KeyVault::rotate_master`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Keys rewrapped under the current master key by this run.
    pub rewrapped: u64,
    /// Keys still wrapped under another master key (0: the previous key
    /// may be retired).
    pub remaining: u64,
    /// Keys this run found that neither configured master key opens (part
    /// of `remaining`): restored from a store of another master key, or
    /// altered.
    pub unreadable: u64,
}

/// The [`PersonalData`] adapter.
#[derive(Debug)]
pub struct KeyVault {
    masters: MasterKeys,
    tables: KeyTables,
    cache: KeyCache,
}

impl KeyVault {
    /// Opens the key store at `url` (the log's own database; tests and
    /// benchmarks). Unwrapped keys are cached; an erasure anywhere stops
    /// them on every instance within [`KeyVault::ERASURE_SEEN_WITHIN`].
    pub async fn connect(url: &str, master: MasterKey) -> Result<Self, StoreError> {
        Self::open(url, url, MasterKeys::new(master))
            .await
            .map(|(vault, _)| vault)
    }

    /// Opens (and migrates) the key store at `keys_url`. When it is not the
    /// log's database (`log_url`), keys that an earlier version kept in the
    /// log's database are moved into it first and deleted from the log's;
    /// the answer says how many rows moved.
    pub async fn open(
        keys_url: &str,
        log_url: &str,
        masters: MasterKeys,
    ) -> Result<(Self, usize), StoreError> {
        let tables = KeyTables::open(keys_url).await?;
        let mut moved = 0;
        if keys_url != log_url {
            let old = KeyTables::in_log_database(log_url).await?;
            // Two spellings of one database's URL: nothing to move (and
            // deleting the "old" keys would delete the store).
            let same = match (old.identity().await?, tables.identity().await?) {
                (Some(old), Some(new)) => old == new,
                _ => false,
            };
            if !same {
                let rows = old.dump().await?;
                if !rows.is_empty() {
                    tables.load(&rows).await?;
                    old.delete_all().await?;
                    moved = rows.len();
                }
            }
        }
        let vault = Self {
            masters,
            tables,
            cache: KeyCache::new(),
        };
        Ok((vault, moved))
    }

    /// How long after an erasure commits, on this instance or any other
    /// sharing the key store, a key it destroyed may still be used from
    /// memory (one read of the store's erasure counter is added to it).
    pub const ERASURE_SEEN_WITHIN: std::time::Duration = KeyCache::STALE_AFTER;

    /// What the key cache has done since the vault opened.
    pub fn cache_stats(&self) -> KeyCacheStats {
        self.cache.stats()
    }

    /// Whether the store holds any tenant key (erased ones included).
    pub async fn holds_tenant_keys(&self) -> Result<bool, StoreError> {
        self.tables.holds_tenant_keys().await
    }

    /// Every key row (wrapped), for `custodia keys backup`.
    pub async fn backup(&self) -> Result<KeyRows, StoreError> {
        self.tables.dump().await
    }

    /// Writes a backup's rows into the store (`custodia keys restore`). A
    /// key destroyed here stays destroyed; then the caller destroys again
    /// every key the log's erasure events name.
    pub async fn restore(&self, rows: &KeyRows) -> Result<(), StoreError> {
        let loaded = self.tables.load(rows).await;
        self.cache.drop_all();
        loaded?;
        self.tables.move_epoch().await
    }

    /// Rewraps up to `limit` keys still wrapped under another master key
    /// (the previous one) under the current one. Each key is replaced only
    /// if no one changed it meanwhile, so it runs beside serving instances
    /// and erasures, and stopping it at any point loses nothing: the next
    /// run goes on where it stopped.
    pub async fn rotate_master(&self, limit: u64) -> Result<Rotation, VaultError> {
        let current = self.masters.current_id().to_owned();
        let mut rotation = Rotation::default();
        let batch = |done: u64| i64::try_from((limit - done).min(100)).unwrap_or(100);
        let mut after = None;
        while rotation.rewrapped < limit {
            let tenants = self
                .tables
                .tenant_keys_not_under(&current, after, batch(rotation.rewrapped))
                .await?;
            let Some(last) = tenants.last() else { break };
            after = Some(last.0);
            for (tenant, wrapped, id) in tenants {
                let tenant_id = TenantId::from_uuid(tenant).map_err(|_| VaultError::Tampered)?;
                let aad = tenant_key_aad(tenant_id);
                // A key neither master key opens is counted and left as it
                // is: the rotation goes on with the others.
                let Ok(key) = self.masters.unwrap(id.as_deref(), &wrapped, &aad) else {
                    rotation.unreadable += 1;
                    continue;
                };
                let rewrapped = wrap(&self.masters.current().0, &key, &aad);
                if self
                    .tables
                    .rewrap_tenant(tenant, &wrapped, &rewrapped, &current)
                    .await?
                {
                    rotation.rewrapped += 1;
                }
            }
        }
        for table in [SealedTable::Signing, SealedTable::Checkpoint] {
            let aad = |key: &str| match table {
                SealedTable::Signing => signing_key_aad(key),
                SealedTable::Checkpoint => checkpoint_key_aad(key),
            };
            let mut after = String::new();
            while rotation.rewrapped < limit {
                let rows = self
                    .tables
                    .sealed_not_under(table, &current, &after, batch(rotation.rewrapped))
                    .await?;
                let Some(last) = rows.last() else { break };
                after = last.0.clone();
                for (key, sealed, id) in rows {
                    let aad = aad(&key);
                    let Ok(secret) = self.masters.open(id.as_deref(), &sealed, &aad) else {
                        rotation.unreadable += 1;
                        continue;
                    };
                    let (mut resealed, ciphertext) =
                        seal_bytes(&self.masters.current().0, &secret, &aad);
                    resealed.extend_from_slice(&ciphertext);
                    if self
                        .tables
                        .reseal(table, &key, &sealed, &resealed, &current)
                        .await?
                    {
                        rotation.rewrapped += 1;
                    }
                }
            }
        }
        rotation.remaining = u64::try_from(self.tables.not_under(&current).await?).unwrap_or(0);
        self.cache.drop_all();
        Ok(rotation)
    }

    /// The key that signs checkpoints, named `name` (the log's name); made
    /// on first use. Sealed under the master key in the key store, apart
    /// from the JWT keys.
    pub async fn checkpoint_signer(&self, name: &str) -> Result<NoteSigner, VaultError> {
        loop {
            if let Some((verifier, sealed, master)) = self.tables.checkpoint_key().await? {
                let seed = self.masters.open(
                    master.as_deref(),
                    &sealed,
                    &checkpoint_key_aad(&verifier),
                )?;
                let seed: &[u8; 32] = seed
                    .as_slice()
                    .try_into()
                    .map_err(|_| VaultError::Tampered)?;
                let verifier_name = verifier.split('+').next().unwrap_or_default();
                return NoteSigner::from_seed(verifier_name, seed)
                    .map_err(|_| VaultError::Tampered);
            }
            self.add_checkpoint_key(name, false).await?;
        }
    }

    /// Starts signing checkpoints with a new key named `name`; the old ones
    /// stay listed, so their checkpoints still verify.
    pub async fn rotate_checkpoint_key(&self, name: &str) -> Result<NoteSigner, VaultError> {
        self.add_checkpoint_key(name, true).await?;
        self.checkpoint_signer(name).await
    }

    /// Every checkpoint verifier key, the active one first.
    pub async fn checkpoint_verifiers(&self) -> Result<Vec<String>, VaultError> {
        Ok(self.tables.checkpoint_verifiers().await?)
    }

    async fn add_checkpoint_key(&self, name: &str, retire_others: bool) -> Result<(), VaultError> {
        let signer = NoteSigner::generate(name).map_err(|_| VaultError::Tampered)?;
        let verifier = signer.verifier().to_string();
        let (mut sealed, ciphertext) = seal_bytes(
            &self.masters.current().0,
            &*signer.seed(),
            &checkpoint_key_aad(&verifier),
        );
        sealed.extend_from_slice(&ciphertext);
        Ok(self
            .tables
            .add_checkpoint_key(&verifier, &sealed, self.masters.current_id(), retire_others)
            .await?)
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
            .map(|(kid, sealed, public_x, master)| {
                let der = self
                    .masters
                    .open(master.as_deref(), &sealed, &signing_key_aad(&kid))?;
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
        let (mut sealed, ciphertext) = seal_bytes(
            &self.masters.current().0,
            &key.private_der,
            &signing_key_aad(&key.kid),
        );
        sealed.extend_from_slice(&ciphertext);
        Ok(self
            .tables
            .add_signing_key(
                &key.kid,
                &sealed,
                &key.public_x,
                self.masters.current_id(),
                retire_others,
            )
            .await?)
    }

    /// The tenant key, made on first use unless `create` is false.
    /// `Ok(None)`: erased (or, without `create`, never made).
    async fn tenant_key(
        &self,
        generation: Generation,
        tenant: TenantId,
        create: bool,
    ) -> Result<Option<KeyBytes>, VaultError> {
        let cached = CachedKey::Tenant(tenant.as_uuid());
        if let Some(key) = self.cache.get(&cached) {
            return Ok(Some(key));
        }
        let aad = tenant_key_aad(tenant);
        loop {
            match self.tables.tenant(tenant).await? {
                Slot::Wrapped { wrapped, master } => {
                    let key = self.masters.unwrap(master.as_deref(), &wrapped, &aad)?;
                    self.cache.put(generation, cached, &key);
                    return Ok(Some(key));
                }
                Slot::Erased => return Ok(None),
                Slot::Missing if !create => return Ok(None),
                Slot::Missing => {
                    let key = Zeroizing::new(Aes256Gcm::generate_key(&mut OsRng).into());
                    // Another instance may win the race; the loop reads the winner.
                    self.tables
                        .insert_tenant(
                            tenant,
                            &wrap(&self.masters.current().0, &key, &aad),
                            self.masters.current_id(),
                        )
                        .await?;
                }
            }
        }
    }

    async fn subject_key(
        &self,
        generation: Generation,
        tenant_key: &[u8; 32],
        tenant: TenantId,
        subject: Uuid,
        create: bool,
    ) -> Result<Option<KeyBytes>, VaultError> {
        let cached = CachedKey::Subject(tenant.as_uuid(), subject);
        if let Some(key) = self.cache.get(&cached) {
            return Ok(Some(key));
        }
        let aad = subject_key_aad(tenant, subject);
        loop {
            match self.tables.subject(tenant, subject).await? {
                Slot::Wrapped { wrapped, .. } => {
                    let key = unwrap_key(tenant_key, &wrapped, &aad)?;
                    self.cache.put(generation, cached, &key);
                    return Ok(Some(key));
                }
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

    /// The key of a day's access data, made on first use unless `create` is
    /// false. `Ok(None)`: destroyed by retention (or never made).
    async fn day_key(
        &self,
        generation: Generation,
        tenant_key: &[u8; 32],
        tenant: TenantId,
        day: AccessDay,
        create: bool,
    ) -> Result<Option<KeyBytes>, VaultError> {
        let name = day.to_string();
        let cached = CachedKey::Day(tenant.as_uuid(), name.clone());
        if let Some(key) = self.cache.get(&cached) {
            return Ok(Some(key));
        }
        let aad = access_key_aad(tenant, day);
        let mut made = false;
        loop {
            match self.tables.access(tenant, &name).await? {
                Slot::Wrapped { wrapped, .. } => {
                    let key = unwrap_key(tenant_key, &wrapped, &aad)?;
                    self.cache.put(generation, cached, &key);
                    return Ok(Some(key));
                }
                Slot::Erased => return Ok(None),
                // Made once and still missing: a later day was destroyed
                // already, so this one may not be made.
                Slot::Missing if !create || made => return Ok(None),
                Slot::Missing => {
                    let key = Zeroizing::new(Aes256Gcm::generate_key(&mut OsRng).into());
                    self.tables
                        .insert_access(tenant, &name, &wrap(tenant_key, &key, &aad))
                        .await?;
                    made = true;
                }
            }
        }
    }

    /// The key a field is sealed under: the subject's, or for access data
    /// the one derived from the subject's and its day's.
    async fn field_key(
        &self,
        tenant: TenantId,
        subject: Uuid,
        day: Option<AccessDay>,
        create: bool,
    ) -> Result<Option<KeyBytes>, VaultError> {
        let generation = self.cache.fresh(&self.tables).await?;
        let Some(tenant_key) = self.tenant_key(generation, tenant, create).await? else {
            return Ok(None);
        };
        let Some(subject_key) = self
            .subject_key(generation, &tenant_key, tenant, subject, create)
            .await?
        else {
            return Ok(None);
        };
        let Some(day) = day else {
            return Ok(Some(subject_key));
        };
        Ok(self
            .day_key(generation, &tenant_key, tenant, day, create)
            .await?
            .map(|day_key| access_data_key(&subject_key, &day_key)))
    }

    async fn seal_under(
        &self,
        subject: Uuid,
        day: Option<AccessDay>,
        context: &FieldContext<'_>,
        plaintext: &[u8],
    ) -> Result<SealedField, VaultError> {
        let key = self
            .field_key(context.tenant, subject, day, true)
            .await?
            .ok_or(VaultError::Erased)?;
        let (nonce, ciphertext) = seal_bytes(&key, plaintext, &field_aad(context));
        Ok(SealedField {
            subject,
            nonce,
            ciphertext,
            access_day: day,
        })
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
        self.seal_under(subject, None, context, plaintext).await
    }

    async fn seal_access_data(
        &self,
        subject: Uuid,
        day: AccessDay,
        context: &FieldContext<'_>,
        plaintext: &[u8],
    ) -> Result<SealedField, VaultError> {
        self.seal_under(subject, Some(day), context, plaintext)
            .await
    }

    async fn open(
        &self,
        context: &FieldContext<'_>,
        sealed: &SealedField,
    ) -> Result<Option<Vec<u8>>, VaultError> {
        let Some(key) = self
            .field_key(context.tenant, sealed.subject, sealed.access_day, false)
            .await?
        else {
            return Ok(None);
        };
        let plain = open_bytes(&key, &sealed.nonce, &sealed.ciphertext, &field_aad(context))?;
        Ok(Some(plain.to_vec()))
    }

    async fn blind_index(
        &self,
        tenant: TenantId,
        purpose: &str,
        normalised: &[u8],
    ) -> Result<BlindIndex, VaultError> {
        let generation = self.cache.fresh(&self.tables).await?;
        let tenant_key = self
            .tenant_key(generation, tenant, true)
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
        let erased = self.tables.erase_subject(tenant, subject).await;
        self.cache.drop_all();
        Ok(erased?)
    }

    async fn erase_tenant(&self, tenant: TenantId) -> Result<bool, VaultError> {
        let erased = self.tables.erase_tenant(tenant).await;
        self.cache.drop_all();
        Ok(erased?)
    }

    async fn access_days(
        &self,
        tenant: TenantId,
        before: AccessDay,
    ) -> Result<Vec<AccessDay>, VaultError> {
        self.tables
            .live_access_days(tenant, &before.to_string())
            .await?
            .iter()
            .map(|day| AccessDay::parse(day).map_err(|_| VaultError::Tampered))
            .collect()
    }

    async fn erase_access_days_through(
        &self,
        tenant: TenantId,
        through: AccessDay,
    ) -> Result<u64, VaultError> {
        let erased = self
            .tables
            .erase_access_days_through(tenant, &through.to_string())
            .await;
        self.cache.drop_all();
        Ok(erased?)
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
