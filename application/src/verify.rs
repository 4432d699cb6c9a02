//! Recompute every hash chain in the log and report each broken chain's first
//! broken link. What `custodia verify` runs.

use std::sync::Mutex;

use custodia_domain::{ChainBreak, ChainHead, ChainId, ChainIndex, ChainVerifier};
use futures_util::future::join_all;

use crate::event_store::{EventStore, StoreError};

/// Events read per round trip by the batch reader.
const BATCH: usize = 8192;

/// The outcome of a verification run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub chains: u64,
    pub events: u64,
    /// The first broken link of each broken chain, in chain order.
    pub breaks: Vec<ChainBreak>,
    /// Each chain verified, in chain order: its length and, when intact,
    /// its head (the hash an auditor can note and compare later).
    pub lines: Vec<ChainLine>,
    /// Chains that could not be read to the end (the store failed), with why.
    pub failures: Vec<(ChainId, String)>,
}

/// One chain's line in a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLine {
    pub chain: ChainId,
    /// Events read (up to and including a broken one).
    pub events: u64,
    /// The head of an intact chain.
    pub head: Option<ChainHead>,
    /// The Merkle root of an intact chain (its leaves the event hashes).
    pub root: Option<[u8; 32]>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.breaks.is_empty() && self.failures.is_empty()
    }
}

/// The outcome of verifying one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainVerdict {
    /// Events read (up to and including a broken one).
    pub events: u64,
    pub broken: Option<ChainBreak>,
    /// The chain's head, when it is intact.
    pub head: Option<ChainHead>,
    /// The chain's Merkle root, when it is intact.
    pub root: Option<[u8; 32]>,
}

impl ChainVerdict {
    /// The verdict once every event was fed to `verifier`.
    pub fn finished(events: u64, verifier: ChainVerifier) -> Self {
        match verifier.finish() {
            Ok(verified) => ChainVerdict {
                events,
                broken: None,
                head: Some(verified.head),
                root: Some(verified.root),
            },
            Err(broken) => ChainVerdict::broken(events, broken),
        }
    }

    pub fn broken(events: u64, broken: ChainBreak) -> Self {
        ChainVerdict {
            events,
            broken: Some(broken),
            head: None,
            root: None,
        }
    }
}

/// Verifies every chain, or only `only`, one chain per available core at a
/// time (chains are independent). `progress` is told how many events were
/// read, as they are read.
pub async fn verify_log(
    store: &dyn EventStore,
    only: Option<ChainId>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<VerifyReport, StoreError> {
    let chains = match only {
        Some(chain) => vec![chain],
        None => store.chains().await?.into_iter().map(|c| c.chain).collect(),
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let queue = Mutex::new(chains.iter().copied().enumerate());
    // A chain the store fails to read is reported, and the others go on.
    let worker = || async {
        let mut verdicts = Vec::new();
        loop {
            let next = queue
                .lock()
                .expect("the queue lock is never poisoned")
                .next();
            let Some((order, chain)) = next else { break };
            verdicts.push((order, chain, store.verify_chain(chain, progress).await));
        }
        verdicts
    };
    let mut verdicts: Vec<_> = join_all((0..workers.min(chains.len())).map(|_| worker()))
        .await
        .into_iter()
        .flatten()
        .collect();
    verdicts.sort_by_key(|(order, _, _)| *order);
    let mut report = VerifyReport {
        chains: chains.len() as u64,
        ..VerifyReport::default()
    };
    for (_, chain, verdict) in verdicts {
        match verdict {
            Ok(verdict) => {
                report.events += verdict.events;
                report.lines.push(ChainLine {
                    chain,
                    events: verdict.events,
                    head: verdict.head,
                    root: verdict.root,
                });
                report.breaks.extend(verdict.broken);
            }
            Err(error) => report.failures.push((chain, error.to_string())),
        }
    }
    Ok(report)
}

/// Verifies one chain through [`EventStore::read_chain`], reading the next
/// batch while it hashes the current one. The port's default.
pub async fn verify_chain_in_batches<S: EventStore + ?Sized>(
    store: &S,
    chain: ChainId,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ChainVerdict, StoreError> {
    let mut verifier = ChainVerifier::new(chain);
    let mut events = 0;
    let mut batch = store.read_chain(chain, ChainIndex(0), BATCH).await?;
    while !batch.is_empty() {
        let next_from = batch.last().map(|e| ChainIndex(e.chain_index.0 + 1));
        let full = batch.len() == BATCH;
        let read = batch.len() as u64;
        let check = async { batch.iter().try_for_each(|event| verifier.push(event)) };
        let fetch = async {
            match next_from {
                Some(from) if full => store.read_chain(chain, from, BATCH).await,
                _ => Ok(Vec::new()),
            }
        };
        let (checked, next) = tokio::join!(check, fetch);
        events += read;
        progress(read);
        if let Err(broken) = checked {
            return Ok(ChainVerdict::broken(events, broken));
        }
        batch = next?;
    }
    Ok(ChainVerdict::finished(events, verifier))
}
