//! Recompute every hash chain in the log and report each broken chain's first
//! broken link. What `custodia verify` runs.

use custodia_domain::{ChainBreak, ChainId, ChainIndex, ChainVerifier};

use crate::event_store::{EventStore, StoreError};

/// Events read per round trip while verifying.
const BATCH: usize = 8192;

/// The outcome of a verification run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub chains: u64,
    pub events: u64,
    /// The first broken link of each broken chain, in chain order.
    pub breaks: Vec<ChainBreak>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.breaks.is_empty()
    }
}

/// Verifies every chain, or only `only`. `progress` is told how many events
/// were read after each batch. A chain's verification reads its next batch
/// while it hashes the current one.
pub async fn verify_log(
    store: &dyn EventStore,
    only: Option<ChainId>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<VerifyReport, StoreError> {
    let chains = match only {
        Some(chain) => vec![chain],
        None => store.chains().await?.into_iter().map(|c| c.chain).collect(),
    };
    let mut report = VerifyReport::default();
    for chain in chains {
        report.chains += 1;
        let mut verifier = ChainVerifier::new(chain);
        let mut batch = store.read_chain(chain, ChainIndex(0), BATCH).await?;
        let mut broken: Option<ChainBreak> = None;
        while !batch.is_empty() {
            let next_from = batch.last().map(|e| ChainIndex(e.chain_index.0 + 1));
            let full = batch.len() == BATCH;
            let read = batch.len() as u64;
            let check = async { batch.into_iter().try_for_each(|event| verifier.push(event)) };
            let fetch = async {
                match next_from {
                    Some(from) if full => store.read_chain(chain, from, BATCH).await,
                    _ => Ok(Vec::new()),
                }
            };
            let (checked, next) = tokio::join!(check, fetch);
            report.events += read;
            progress(read);
            if let Err(b) = checked {
                broken = Some(b);
                break;
            }
            batch = next?;
        }
        let outcome = match broken {
            Some(b) => Err(b),
            None => verifier.finish().map(|_| ()),
        };
        if let Err(b) = outcome {
            report.breaks.push(b);
        }
    }
    Ok(report)
}
