//! Running projections: leases, batches, checkpoints, rebuilds, and waiting
//! for a projection to reach a point of the log (read-your-writes).

use std::sync::Arc;
use std::time::Duration;

use custodia_application::{CommitError, EventStore, ReadModels, StoreError};
use custodia_domain::{LogCursor, RecordedEvent, Timestamp};
use tokio::sync::watch;
use uuid::Uuid;

use crate::{Follower, Projection, ProjectionError};

/// How projections run.
#[derive(Debug, Clone, Copy)]
pub struct RunnerConfig {
    /// How long a lease lasts without renewal: the longest a projection
    /// stays unrun after its process dies without releasing it.
    pub lease: Duration,
    /// Events applied (and committed) together.
    pub batch_size: usize,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(5),
            batch_size: 256,
        }
    }
}

/// Keeps one projection current for as long as its task runs.
pub struct Runner {
    pub projection: Arc<dyn Projection>,
    pub store: Arc<dyn EventStore>,
    pub models: Arc<dyn ReadModels>,
    /// This process's identity in leases.
    pub holder: Uuid,
    pub config: RunnerConfig,
    /// Bumped after every commit, so local waiters look again at once.
    pub commits: watch::Sender<u64>,
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

impl Runner {
    /// Runs until `shutdown` turns true: waits for the lease, then applies
    /// the log from the checkpoint, live. Errors are logged and retried
    /// after a pause (a projection never skips an event to get past one).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let name = self.projection.name();
        let retry = self.config.lease / 5;
        while !*shutdown.borrow() {
            let outcome = tokio::select! {
                outcome = self.hold_once() => outcome,
                _ = shutdown.changed() => break,
            };
            match outcome {
                Ok(true) => {
                    tracing::info!(projection = name, "lease lost; waiting to take it back")
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::error!(projection = name, %error, "projection stopped; retrying")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = shutdown.changed() => break,
            }
        }
        if let Err(error) = self.models.release(name, self.holder).await {
            tracing::warn!(projection = name, %error, "could not release the lease");
        }
    }

    /// Takes the lease if it is free and runs while it is held. `Ok(true)`:
    /// the lease was held and then lost; `Ok(false)`: someone else holds it.
    async fn hold_once(&self) -> Result<bool, ProjectionError> {
        let name = self.projection.name();
        let lease = micros(self.config.lease);
        let now = Timestamp::now().0;
        let Some(mut cursor) = self
            .models
            .acquire(name, self.holder, now, now + lease)
            .await?
        else {
            return Ok(false);
        };
        tracing::info!(projection = name, %cursor, "running projection");
        let renew_every = self.config.lease / 5;
        // Appends by other processes on one SQLite file send no signal: a
        // caught-up follower looks again this often.
        let mut follower = Follower::new(self.store.clone(), cursor, self.config.batch_size)
            .with_idle_wait(renew_every.min(Duration::from_millis(200)));
        loop {
            let Ok(batch) = tokio::time::timeout(renew_every, follower.next_batch()).await else {
                let now = Timestamp::now().0;
                match self
                    .models
                    .acquire(name, self.holder, now, now + lease)
                    .await?
                {
                    Some(held) if held == cursor => continue,
                    _ => return Ok(true),
                }
            };
            let events = batch?;
            let to = follower.cursor();
            let batch = Batch {
                projection: &*self.projection,
                models: &*self.models,
                holder: self.holder,
                lease,
            };
            match batch.apply(&events, cursor, to).await {
                Ok(()) => {
                    cursor = to;
                    self.commits.send_modify(|n| *n += 1);
                }
                Err(ProjectionError::Commit(CommitError::LeaseLost)) => return Ok(true),
                Err(other) => return Err(other),
            }
        }
    }
}

/// Applies batches of one projection as the lease holder.
struct Batch<'a> {
    projection: &'a dyn Projection,
    models: &'a dyn ReadModels,
    holder: Uuid,
    /// µs the lease is renewed for by each commit.
    lease: i64,
}

impl Batch<'_> {
    /// Applies `events` and moves the checkpoint from `from` to `to`, in one
    /// transaction (none of it if the lease was lost or the checkpoint moved).
    async fn apply(
        &self,
        events: &[RecordedEvent],
        from: LogCursor,
        to: LogCursor,
    ) -> Result<(), ProjectionError> {
        let mut tx = self.models.begin().await?;
        for event in events {
            self.projection.apply(event, &mut *tx).await?;
        }
        let until = Timestamp::now().0 + self.lease;
        tx.commit(self.projection.name(), self.holder, from, to, until)
            .await?;
        Ok(())
    }
}

/// How long a rebuild waits for transactions that hold back the end of
/// the log it must reach.
const REBUILD_PATIENCE: Duration = Duration::from_secs(30);

/// Rebuilds `projection` from the start of the log and returns the number
/// of events applied. Takes the lease (refused while another process runs
/// the projection), clears its models, replays, and gives the lease back.
/// `progress` is told each batch's size.
pub async fn rebuild(
    projection: &dyn Projection,
    store: &Arc<dyn EventStore>,
    models: &dyn ReadModels,
    config: RunnerConfig,
    mut progress: impl FnMut(u64),
) -> Result<u64, ProjectionError> {
    let name = projection.name();
    let holder = Uuid::now_v7();
    let lease = micros(config.lease);
    let now = Timestamp::now().0;
    if models
        .acquire(name, holder, now, now + lease)
        .await?
        .is_none()
    {
        return Err(CommitError::LeaseLost.into());
    }
    let result = async {
        models.reset(name, projection.models(), holder).await?;
        // Everything committed before the rebuild began is replayed. (On
        // PostgreSQL the log is read only below the oldest transaction still
        // running anywhere on the server: the rebuild waits for it.)
        let head = store.head().await?;
        let patience = tokio::time::Instant::now() + REBUILD_PATIENCE;
        let mut cursor = LogCursor::START;
        let mut applied = 0u64;
        loop {
            let events = store.read_all(cursor, config.batch_size).await?;
            let Some(last) = events.last() else {
                if cursor >= head || tokio::time::Instant::now() >= patience {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let to = last.cursor();
            let batch = Batch {
                projection,
                models,
                holder,
                lease,
            };
            batch.apply(&events, cursor, to).await?;
            cursor = to;
            applied += events.len() as u64;
            progress(events.len() as u64);
        }
        Ok::<u64, ProjectionError>(applied)
    }
    .await;
    models.release(name, holder).await?;
    result
}

/// Waits until every projection's checkpoint has reached `cursor`, for at
/// most `timeout`. Returns whether it did. `commits` wakes the wait when a
/// local runner commits; checkpoints moved by other processes are seen by
/// looking again every few milliseconds.
pub async fn wait_for(
    models: &dyn ReadModels,
    names: &[&str],
    cursor: LogCursor,
    timeout: Duration,
    commits: &mut watch::Receiver<u64>,
) -> Result<bool, StoreError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        commits.mark_unchanged();
        let checkpoints = models.checkpoints().await?;
        let reached = names.iter().all(|name| {
            checkpoints
                .iter()
                .any(|c| c.name == *name && c.cursor >= cursor)
        });
        if reached {
            return Ok(true);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        let pause = (deadline - now).min(Duration::from_millis(10));
        let _ = tokio::time::timeout(pause, commits.changed()).await;
    }
}
