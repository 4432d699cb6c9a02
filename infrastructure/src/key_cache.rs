//! Unwrapped keys kept in memory between uses, dropped everywhere within
//! [`KeyCache::STALE_AFTER`] of an erasure (ADR 0004, "The key cache").
//!
//! The key store keeps one counter, `key_store_epoch`, that triggers move
//! in the same statement that destroys, rewraps or removes a key. A cached
//! key is used only while this instance has read that counter within
//! `STALE_AFTER`: when it has moved, every cached key is dropped. A key
//! read from the store is kept only if no drop happened since the read
//! began (the `generation`), so a key read just before an erasure cannot
//! outlive the drop that follows it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use custodia_application::StoreError;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::key_store::KeyTables;

/// 256 bits of key material, wiped from memory when dropped.
pub(crate) type KeyBytes = Zeroizing<[u8; 32]>;

/// Which key an entry holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum CachedKey {
    Tenant(Uuid),
    Subject(Uuid, Uuid),
    Day(Uuid, String),
}

/// What the cache has done since the vault opened (for benchmarks, tests
/// and metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyCacheStats {
    /// Keys answered from memory.
    pub hits: u64,
    /// Keys read from the store.
    pub misses: u64,
    /// Reads of the store's erasure counter.
    pub epoch_reads: u64,
    /// Times every cached key was dropped (an erasure here or elsewhere,
    /// a rotation, a restore, or the cache full).
    pub drops: u64,
}

pub(crate) struct KeyCache {
    entries: Mutex<Entries>,
    origin: Instant,
    /// Microseconds from `origin` when the epoch was last read (the start
    /// of that read); `u64::MAX` before the first.
    checked_at: AtomicU64,
    /// The epoch last read (`i64::MIN` before the first).
    epoch: AtomicI64,
    /// One epoch read at a time; the others wait for its answer.
    checking: tokio::sync::Mutex<()>,
    hits: AtomicU64,
    misses: AtomicU64,
    epoch_reads: AtomicU64,
    drops: AtomicU64,
}

#[derive(Default)]
struct Entries {
    keys: HashMap<CachedKey, KeyBytes>,
    /// Moves on every drop.
    generation: u64,
}

/// Never shows a key: only how many are held and the counters.
impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("held", &self.lock().keys.len())
            .field("stats", &self.stats())
            .finish()
    }
}

/// A snapshot of the cache's generation, taken when the epoch was known
/// fresh: what a key read after it may be kept under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Generation(u64);

impl KeyCache {
    /// How long a cached key is used without reading the erasure counter:
    /// an erasure on any instance stops a cached key on every other one
    /// within this (plus one counter read).
    pub(crate) const STALE_AFTER: Duration = Duration::from_millis(250);
    /// At most this many keys (32 bytes and a key of at most 40 each); a
    /// full cache starts again empty.
    const MAX_ENTRIES: usize = 65_536;

    pub(crate) fn new() -> Self {
        Self {
            entries: Mutex::new(Entries::default()),
            origin: Instant::now(),
            checked_at: AtomicU64::new(u64::MAX),
            epoch: AtomicI64::new(i64::MIN),
            checking: tokio::sync::Mutex::new(()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            epoch_reads: AtomicU64::new(0),
            drops: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX - 1)
    }

    fn is_fresh(&self) -> bool {
        let checked = self.checked_at.load(Ordering::Acquire);
        checked != u64::MAX
            && self.now().saturating_sub(checked)
                < u64::try_from(Self::STALE_AFTER.as_micros()).unwrap_or(u64::MAX)
    }

    /// Makes sure the erasure counter was read within `STALE_AFTER`
    /// (dropping every key if it moved), and answers the generation a key
    /// read from now on may be kept under.
    pub(crate) async fn fresh(&self, tables: &KeyTables) -> Result<Generation, StoreError> {
        if !self.is_fresh() {
            let waiting_since = self.now();
            let _one = self.checking.lock().await;
            // A read that began after this one started waiting is as good
            // as its own (a slow read does not make every waiter read again).
            let read_since = self.checked_at.load(Ordering::Acquire);
            if !self.is_fresh() && (read_since == u64::MAX || read_since < waiting_since) {
                let started = self.now();
                let epoch = tables.epoch().await?;
                self.epoch_reads.fetch_add(1, Ordering::Relaxed);
                let known = self.epoch.swap(epoch, Ordering::AcqRel);
                if known != epoch && known != i64::MIN {
                    self.drop_all();
                }
                self.checked_at.store(started, Ordering::Release);
            }
        }
        Ok(Generation(self.lock().generation))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while the lock was held cannot leave a half-written map.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A cached key, if the erasure counter was read within
    /// `STALE_AFTER` (a request that waited on the store since its own
    /// check reads the store again rather than use a stale key).
    pub(crate) fn get(&self, key: &CachedKey) -> Option<KeyBytes> {
        let found = if self.is_fresh() {
            self.lock().keys.get(key).cloned()
        } else {
            None
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Keeps a key read from the store, unless every key was dropped since
    /// `generation` was taken (the read may predate an erasure).
    pub(crate) fn put(&self, generation: Generation, key: CachedKey, value: &KeyBytes) {
        let mut entries = self.lock();
        if entries.generation != generation.0 {
            return;
        }
        if entries.keys.len() >= Self::MAX_ENTRIES {
            entries.keys.clear();
            self.drops.fetch_add(1, Ordering::Relaxed);
        }
        entries.keys.insert(key, value.clone());
    }

    /// Drops every cached key (an erasure, rotation or restore here).
    pub(crate) fn drop_all(&self) {
        let mut entries = self.lock();
        entries.keys.clear();
        entries.generation += 1;
        self.drops.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> KeyCacheStats {
        KeyCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            epoch_reads: self.epoch_reads.load(Ordering::Relaxed),
            drops: self.drops.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_read_before_a_drop_is_not_kept() {
        let cache = KeyCache::new();
        let key = CachedKey::Tenant(Uuid::nil());
        cache.checked_at.store(cache.now(), Ordering::Release);
        let before = Generation(cache.lock().generation);
        cache.drop_all();
        cache.put(before, key.clone(), &Zeroizing::new([1; 32]));
        assert!(cache.get(&key).is_none());
        let after = Generation(cache.lock().generation);
        cache.put(after, key.clone(), &Zeroizing::new([1; 32]));
        assert_eq!(*cache.get(&key).unwrap(), [1; 32]);
        assert_eq!(
            cache.stats(),
            KeyCacheStats {
                hits: 1,
                misses: 1,
                epoch_reads: 0,
                drops: 1
            }
        );
    }

    #[test]
    fn a_key_is_not_used_once_the_counter_read_is_stale() {
        let cache = KeyCache::new();
        let key = CachedKey::Tenant(Uuid::nil());
        cache.checked_at.store(cache.now(), Ordering::Release);
        cache.put(Generation(0), key.clone(), &Zeroizing::new([1; 32]));
        assert!(cache.get(&key).is_some());
        std::thread::sleep(KeyCache::STALE_AFTER + Duration::from_millis(10));
        assert!(cache.get(&key).is_none(), "held, but not used");
    }

    #[test]
    fn a_full_cache_starts_again() {
        let cache = KeyCache::new();
        let generation = Generation(0);
        for i in 0..=KeyCache::MAX_ENTRIES {
            cache.put(
                generation,
                CachedKey::Subject(Uuid::nil(), Uuid::from_u128(i as u128)),
                &Zeroizing::new([0; 32]),
            );
        }
        assert_eq!(cache.lock().keys.len(), 1);
        assert!(!format!("{cache:?}").contains("[0, 0"));
    }
}
