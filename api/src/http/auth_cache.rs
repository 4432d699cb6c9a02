//! A short-lived cache of authenticated sessions, so that a busy client does
//! not read its session and its tenant's memberships from the log on every
//! request.
//!
//! An entry is used only while nothing may have changed: it remembers the
//! generation of this process's appends (bumped by [`MeteredStore`] as each
//! append returns) and of the store's append signal (on PostgreSQL, every
//! process's appends, through LISTEN/NOTIFY), and any append invalidates
//! every entry. Entries also expire after [`FRESH_FOR`], the bound for
//! appends no signal reports (another process on the same SQLite file). So
//! a logout or a role change is seen at once by this process, within
//! milliseconds by other processes on PostgreSQL, and within [`FRESH_FOR`]
//! on shared SQLite. The token itself is verified on every request.
//!
//! [`MeteredStore`]: crate::http::metrics::MeteredStore

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use custodia_application::AppendSignal;
use custodia_domain::rbac::Principal;
use uuid::Uuid;

/// The longest an entry is trusted without a signal.
pub const FRESH_FOR: Duration = Duration::from_millis(500);
/// Entries kept at most (then the cache starts over).
const CAPACITY: usize = 100_000;

pub struct AuthCache {
    local: Arc<AtomicU64>,
    signal: AppendSignal,
    entries: Mutex<HashMap<Uuid, Entry>>,
}

#[derive(Clone)]
struct Entry {
    user: Uuid,
    principal: Principal,
    generations: (u64, u64),
    at: Instant,
}

/// The generations an entry was loaded under; take it before loading.
#[derive(Clone, Copy)]
pub struct Generations((u64, u64));

impl AuthCache {
    /// `local` is the counter the store wrapper bumps after each append.
    pub fn new(local: Arc<AtomicU64>, signal: AppendSignal) -> Self {
        Self {
            local,
            signal,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn generations(&self) -> Generations {
        Generations((self.local.load(Ordering::Acquire), self.signal.generation()))
    }

    /// The principal of `session` (of `user`) if a still-valid entry has it.
    pub fn get(&self, session: Uuid, user: Uuid) -> Option<Principal> {
        let now = self.generations().0;
        let entries = self.entries.lock().expect("not poisoned");
        entries
            .get(&session)
            .filter(|e| e.user == user && e.generations == now && e.at.elapsed() < FRESH_FOR)
            .map(|e| e.principal.clone())
    }

    /// Remembers what was loaded under `loaded` (taken before loading).
    pub fn put(&self, session: Uuid, user: Uuid, principal: Principal, loaded: Generations) {
        let mut entries = self.entries.lock().expect("not poisoned");
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(
            session,
            Entry {
                user,
                principal,
                generations: loaded.0,
                at: Instant::now(),
            },
        );
    }
}
