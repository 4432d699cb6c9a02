//! Password hashing: Argon2id with OWASP's parameters (m = 19 MiB, t = 2,
//! p = 1; docs/adr/0005-argon2id-parameters.md), and verification of bcrypt
//! hashes imported from other systems. Work runs on blocking threads, at
//! most one per core at a time (each takes 19 MiB while it runs); a bounded
//! queue waits for a slot, and a check beyond it is refused as
//! [`PasswordError::Busy`] at once, so a burst of logins costs neither
//! unbounded memory nor unbounded waiting.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use async_trait::async_trait;
use custodia_application::{PasswordCheck, PasswordError, PasswordHasher};

/// Memory in KiB, iterations, lanes.
pub const ARGON2_M_KIB: u32 = 19 * 1024;
pub const ARGON2_T: u32 = 2;
pub const ARGON2_P: u32 = 1;

/// Argon2id's memory (KiB) and iterations; one lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Cost {
    pub m_kib: u32,
    pub t: u32,
}

impl Argon2Cost {
    /// OWASP's parameters (ADR 0005): what production uses.
    pub const PRODUCTION: Argon2Cost = Argon2Cost {
        m_kib: ARGON2_M_KIB,
        t: ARGON2_T,
    };

    fn argon2(self) -> Result<Argon2<'static>, PasswordError> {
        let params = Params::new(self.m_kib, self.t, ARGON2_P, None)
            .map_err(|e| PasswordError::Failed(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// Argon2's working memory, kept between hashes by the threads that run
/// them (at most one buffer per slot): allocating and returning 19 MiB per
/// hash cost about 15% of the CPU under login load, in page faults.
#[derive(Debug, Default)]
struct Memory(Mutex<Vec<Vec<Block>>>);

impl Memory {
    /// Argon2id of `password` and `salt` with `params` into `out`, on a
    /// kept buffer.
    fn hash_into(
        &self,
        params: &Params,
        password: &[u8],
        salt: &[u8],
        out: &mut [u8],
    ) -> Result<(), argon2::Error> {
        let lock = || {
            self.0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        };
        let mut blocks = lock().pop().unwrap_or_default();
        if blocks.len() < params.block_count() {
            blocks.resize(params.block_count(), Block::default());
        }
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let hashed = argon.hash_password_into_with_memory(
            password,
            salt,
            out,
            &mut blocks[..params.block_count()],
        );
        lock().push(blocks);
        hashed
    }
}

fn hash_now(cost: Argon2Cost, memory: &Memory, password: &str) -> Result<String, PasswordError> {
    let failed = |e: &dyn std::fmt::Display| PasswordError::Failed(e.to_string());
    let salt = SaltString::generate(&mut OsRng);
    let params = cost.argon2()?.params().clone();
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(|e| failed(&e))?;
    let mut out = zeroize::Zeroizing::new(vec![0u8; Params::DEFAULT_OUTPUT_LEN]);
    memory
        .hash_into(&params, password.as_bytes(), salt_bytes, &mut out)
        .map_err(|e| failed(&e))?;
    let output = Output::new(&out).map_err(|e| failed(&e))?;
    let hash = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: (&params).try_into().map_err(|e| failed(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(hash.to_string())
}

fn verify_now(
    cost: Argon2Cost,
    memory: &Memory,
    password: &str,
    stored: &str,
) -> Result<PasswordCheck, PasswordError> {
    if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$") {
        let matches = bcrypt::verify(password, stored).map_err(|_| PasswordError::UnknownFormat)?;
        return Ok(PasswordCheck {
            matches,
            needs_rehash: true,
        });
    }
    let unknown = |_| PasswordError::UnknownFormat;
    let parsed = PasswordHash::new(stored).map_err(unknown)?;
    let version = parsed.version.map_or(Ok(Version::V0x13), Version::try_from);
    if parsed.algorithm != argon2::ARGON2ID_IDENT || version != Ok(Version::V0x13) {
        return Err(PasswordError::UnknownFormat);
    }
    let params = Params::try_from(&parsed).map_err(unknown)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(PasswordError::UnknownFormat);
    };
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(unknown)?;
    let mut out = zeroize::Zeroizing::new(vec![0u8; expected.len()]);
    // A hash whose parameters Argon2 refuses matches nothing.
    let matches = memory
        .hash_into(&params, password.as_bytes(), salt_bytes, &mut out)
        .is_ok()
        // `Output`'s equality is constant-time.
        && Output::new(&out).is_ok_and(|computed| computed == expected);
    let current =
        params.m_cost() == cost.m_kib && params.t_cost() == cost.t && params.p_cost() == ARGON2_P;
    Ok(PasswordCheck {
        matches,
        needs_rehash: !current,
    })
}

/// The [`PasswordHasher`] adapter.
#[derive(Debug)]
pub struct Argon2Passwords {
    /// A hash of a random secret, verified against when the user is unknown.
    decoy: OnceLock<String>,
    /// One permit per hash that may run at once.
    slots: Arc<tokio::sync::Semaphore>,
    /// Checks running or waiting for a slot, and the most admitted.
    admitted: AtomicUsize,
    capacity: usize,
    cost: Argon2Cost,
    memory: Arc<Memory>,
}

impl Default for Argon2Passwords {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self::with_limits(cores, cores * QUEUED_PER_SLOT)
    }
}

/// The highest bcrypt cost an imported hash may have: 2^12 rounds take
/// about 0.25 s here; every step above doubles what each login costs.
pub const MAX_BCRYPT_COST: u32 = 12;
/// The lowest cost bcrypt defines (below it a hash never verifies).
pub const MIN_BCRYPT_COST: u32 = 4;

/// How many checks may wait per running one before more are refused.
pub const QUEUED_PER_SLOT: usize = 8;

impl Argon2Passwords {
    /// One slot per core, [`QUEUED_PER_SLOT`] waiting per slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `slots` hashes at once and `queued` more waiting.
    pub fn with_limits(slots: usize, queued: usize) -> Self {
        let slots = slots.max(1);
        Self {
            decoy: OnceLock::new(),
            slots: Arc::new(tokio::sync::Semaphore::new(slots)),
            admitted: AtomicUsize::new(0),
            capacity: slots + queued,
            cost: Argon2Cost::PRODUCTION,
            memory: Arc::default(),
        }
    }

    /// Hashes at `cost` instead of production's (benchmarks that measure
    /// the pipeline around the hash). Hashes of another cost are rehashed
    /// at the next login, as always.
    pub fn with_cost(mut self, cost: Argon2Cost) -> Self {
        self.cost = cost;
        self
    }

    /// Runs `work` on a blocking thread once a slot is free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let admission = Admission::take(&self.admitted, self.capacity)?;
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| PasswordError::Failed(e.to_string()))?;
        // The slot goes with the work: a caller that gives up does not free
        // it before the hash is done.
        let outcome = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            work()
        })
        .await
        .map_err(|e| PasswordError::Failed(e.to_string()));
        drop(admission);
        outcome
    }
}

/// A place among the admitted checks, given back when dropped (also when
/// the caller gives up while waiting).
struct Admission<'a>(&'a AtomicUsize);

impl<'a> Admission<'a> {
    fn take(admitted: &'a AtomicUsize, capacity: usize) -> Result<Self, PasswordError> {
        admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < capacity).then_some(n + 1)
            })
            .map(|_| Admission(admitted))
            .map_err(|_| PasswordError::Busy)
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[async_trait]
impl PasswordHasher for Argon2Passwords {
    async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let password = zeroize::Zeroizing::new(password.to_owned());
        let (cost, memory) = (self.cost, self.memory.clone());
        self.run(move || hash_now(cost, &memory, &password)).await?
    }

    async fn verify(&self, password: &str, stored: &str) -> Result<PasswordCheck, PasswordError> {
        let (password, stored) = (
            zeroize::Zeroizing::new(password.to_owned()),
            stored.to_owned(),
        );
        let (cost, memory) = (self.cost, self.memory.clone());
        self.run(move || verify_now(cost, &memory, &password, &stored))
            .await?
    }

    fn accepts_import(&self, hash: &str) -> Result<(), PasswordError> {
        let parts: bcrypt::HashParts = hash.parse().map_err(|_| PasswordError::UnknownFormat)?;
        if parts.get_cost() < MIN_BCRYPT_COST {
            return Err(PasswordError::UnknownFormat);
        }
        if parts.get_cost() > MAX_BCRYPT_COST {
            return Err(PasswordError::TooCostly {
                max: MAX_BCRYPT_COST,
            });
        }
        Ok(())
    }

    async fn verify_nothing(&self, password: &str) -> Result<(), PasswordError> {
        if self.decoy.get().is_none() {
            let secret = uuid::Uuid::new_v4().to_string();
            let (cost, memory) = (self.cost, self.memory.clone());
            let hash = self.run(move || hash_now(cost, &memory, &secret)).await??;
            let _ = self.decoy.set(hash);
        }
        let decoy = self.decoy.get().expect("set above");
        self.verify(password, decoy).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

    #[test]
    fn hashes_on_kept_memory_agree_with_the_crates_own_hasher_and_verifier() {
        let cost = Argon2Cost { m_kib: 1024, t: 1 };
        let memory = Memory::default();
        // Ours, verified by the crate's verifier (and twice on one buffer).
        for password in ["correct horse", "battery staple"] {
            let ours = hash_now(cost, &memory, password).unwrap();
            let parsed = PasswordHash::new(&ours).unwrap();
            assert!(cost
                .argon2()
                .unwrap()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok());
            assert!(cost
                .argon2()
                .unwrap()
                .verify_password(b"other", &parsed)
                .is_err());
        }
        assert_eq!(memory.0.lock().unwrap().len(), 1, "one buffer, kept");
        // The crate's hash, verified by ours; a wrong password does not match.
        let theirs = cost
            .argon2()
            .unwrap()
            .hash_password(b"tr0ub4dor", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        let check = verify_now(cost, &memory, "tr0ub4dor", &theirs).unwrap();
        assert!(check.matches && !check.needs_rehash);
        assert!(
            !verify_now(cost, &memory, "tr0ub4dor!", &theirs)
                .unwrap()
                .matches
        );
        // Another algorithm or a malformed hash is not verified.
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            cost.argon2().unwrap().params().clone(),
        )
        .hash_password(b"x", &SaltString::generate(&mut OsRng))
        .unwrap()
        .to_string();
        assert!(matches!(
            verify_now(cost, &memory, "x", &argon2i),
            Err(PasswordError::UnknownFormat)
        ));
        assert!(verify_now(cost, &memory, "x", "$argon2id$v=19$m=1024,t=1,p=1$bad").is_err());
    }

    #[test]
    fn imported_hashes_must_parse_and_stay_affordable() {
        let passwords = Argon2Passwords::new();
        let cost_10 = bcrypt::hash("an imported password", 10).unwrap();
        assert!(passwords.accepts_import(&cost_10).is_ok());
        let cost_31 = "$2b$31$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
        assert!(matches!(
            passwords.accepts_import(cost_31),
            Err(PasswordError::TooCostly { max: 12 })
        ));
        let cost_3 = "$2b$03$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
        assert!(passwords.accepts_import(cost_3).is_err());
        let bad_salt = format!("$2b$10${}", "!".repeat(53));
        assert!(matches!(
            passwords.accepts_import(&bad_salt),
            Err(PasswordError::UnknownFormat)
        ));
    }

    #[tokio::test]
    async fn hashing_beyond_the_slots_and_the_queue_is_refused_at_once() {
        // One slot, one place in the queue: the third concurrent check is
        // refused without waiting; once they are done, slots are free again.
        let passwords = Argon2Passwords::with_limits(1, 1);
        let (a, b, c) = tokio::join!(
            passwords.hash("first password here"),
            passwords.hash("second password here"),
            passwords.hash("third password here"),
        );
        assert!(a.is_ok() && b.is_ok());
        assert!(matches!(c, Err(PasswordError::Busy)), "{c:?}");
        assert!(passwords.hash("afterwards").await.is_ok());
        assert_eq!(passwords.admitted.load(Ordering::Acquire), 0);
    }

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
