//! Running projections: leases, batches, checkpoints, rebuilds, and waiting
//! for a projection to reach a point of the log (read-your-writes).

use std::sync::Arc;
use std::time::Duration;

use custodia_application::{CheckpointMove, CommitError, EventStore, ReadModels, StoreError};
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

/// Keeps projections current, together, for as long as its task runs: one
/// read of the log and one read-model transaction per batch for all of
/// them, whatever their number.
pub struct Runner {
    /// Run together; their leases are taken in this order, all or none.
    pub projections: Vec<Arc<dyn Projection>>,
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

/// How one hold of the leases ended.
enum Held {
    /// Another process holds one of them.
    Busy,
    /// They were held, and then one was lost.
    Lost,
}

impl Runner {
    /// Runs until `shutdown` turns true: waits for the leases, then applies
    /// the log from the checkpoints, live. Errors are logged and retried
    /// after a pause (a projection never skips an event to get past one).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let retry = self.config.lease / 5;
        while !*shutdown.borrow() {
            let outcome = tokio::select! {
                outcome = self.hold_once() => outcome,
                _ = shutdown.changed() => break,
            };
            match outcome {
                Ok(held) => {
                    if matches!(held, Held::Lost) {
                        tracing::info!("projection lease lost; waiting to take it back");
                    }
                    // Any lease still held goes, so whoever holds the
                    // others can take them all.
                    self.release_all().await;
                }
                Err(error) => tracing::error!(%error, "projections stopped; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = shutdown.changed() => break,
            }
        }
        self.release_all().await;
    }

    async fn release_all(&self) {
        for projection in &self.projections {
            if let Err(error) = self.models.release(projection.name(), self.holder).await {
                let name = projection.name();
                tracing::warn!(projection = name, %error, "could not release the lease");
            }
        }
    }

    /// Takes the leases if they are free and runs while they are held.
    async fn hold_once(&self) -> Result<Held, ProjectionError> {
        let lease = micros(self.config.lease);
        let Some(cursors) =
            acquire_all(&*self.models, &self.projections, self.holder, lease).await?
        else {
            return Ok(Held::Busy);
        };
        let mut members: Vec<Member> = self
            .projections
            .iter()
            .zip(cursors)
            .map(|(projection, cursor)| Member {
                projection: &**projection,
                cursor,
                halted: false,
            })
            .collect();
        let from = members.iter().map(|m| m.cursor).min().unwrap_or_default();
        tracing::info!(%from, projections = members.len(), "running projections");
        let renew_every = self.config.lease / 5;
        // Appends by other processes on one SQLite file send no signal: a
        // caught-up follower looks again this often.
        let mut follower = Follower::new(self.store.clone(), from, self.config.batch_size)
            .with_idle_wait(renew_every.min(Duration::from_millis(200)));
        let mut renewed = tokio::time::Instant::now();
        loop {
            let batch = tokio::time::timeout(renew_every, follower.next_batch()).await;
            // Idle, or reading past what every projection has applied (one
            // halted far behind the others): the leases are renewed here.
            if batch.is_err() || renewed.elapsed() >= renew_every {
                let held =
                    acquire_all(&*self.models, &self.projections, self.holder, lease).await?;
                let cursors: Vec<LogCursor> = members.iter().map(|m| m.cursor).collect();
                match held {
                    Some(held) if held == cursors => renewed = tokio::time::Instant::now(),
                    _ => return Ok(Held::Lost),
                }
            }
            let Ok(batch) = batch else { continue };
            let events = batch?;
            let to = follower.cursor();
            loop {
                let batch = Batch {
                    members: &members,
                    models: &*self.models,
                    holder: self.holder,
                    lease,
                };
                match batch.apply(&events, to).await {
                    Ok(committed) => {
                        if committed {
                            renewed = tokio::time::Instant::now();
                        }
                        break;
                    }
                    // One projection cannot read an event it handles: it
                    // stays where it is (and says so), the others go on.
                    Err(Failure::Halted { member, error }) => {
                        let name = members[member].projection.name();
                        tracing::error!(projection = name, %error, "projection halted");
                        members[member].halted = true;
                    }
                    Err(Failure::Other(ProjectionError::Commit(CommitError::LeaseLost))) => {
                        return Ok(Held::Lost)
                    }
                    Err(Failure::Other(error)) => return Err(error),
                }
            }
            for member in members.iter_mut().filter(|m| !m.halted) {
                member.cursor = member.cursor.max(to);
            }
            self.commits.send_modify(|n| *n += 1);
        }
    }
}

/// Takes (or renews) every projection's lease, in order; `None`, once one
/// is held by another process. Returns their checkpoints.
async fn acquire_all(
    models: &dyn ReadModels,
    projections: &[Arc<dyn Projection>],
    holder: Uuid,
    lease: i64,
) -> Result<Option<Vec<LogCursor>>, StoreError> {
    let now = Timestamp::now().0;
    let mut cursors = Vec::with_capacity(projections.len());
    for projection in projections {
        match models
            .acquire(projection.name(), holder, now, now + lease)
            .await?
        {
            Some(cursor) => cursors.push(cursor),
            None => return Ok(None),
        }
    }
    Ok(Some(cursors))
}

/// A projection in a batch, and how far it has applied the log.
struct Member<'a> {
    projection: &'a dyn Projection,
    cursor: LogCursor,
    /// It could not read an event it handles: it applies nothing more
    /// until it runs again (its lease is still renewed).
    halted: bool,
}

/// Why a batch was not committed.
enum Failure {
    /// Member `member` cannot read an event (a fault of that event, not of
    /// the store: applying it again fails again).
    Halted {
        member: usize,
        error: ProjectionError,
    },
    Other(ProjectionError),
}

/// Applies batches of several projections as the holder of their leases.
struct Batch<'a> {
    members: &'a [Member<'a>],
    models: &'a dyn ReadModels,
    holder: Uuid,
    /// µs the leases are renewed for by each commit.
    lease: i64,
}

impl Batch<'_> {
    /// Applies `events` to each running member that has not applied them
    /// yet and moves every checkpoint to `to` (a halted member's stays), in
    /// one transaction: none of it if a lease was lost or a checkpoint moved.
    /// Returns whether it committed: a batch that moves no checkpoint (every
    /// member is past it, or halted) writes nothing.
    async fn apply(&self, events: &[RecordedEvent], to: LogCursor) -> Result<bool, Failure> {
        let other = |error: ProjectionError| Failure::Other(error);
        let moves: Vec<CheckpointMove> = self
            .members
            .iter()
            .map(|member| CheckpointMove {
                name: member.projection.name(),
                from: member.cursor,
                to: if member.halted {
                    member.cursor
                } else {
                    member.cursor.max(to)
                },
            })
            .collect();
        if moves.iter().all(|m| m.from == m.to) {
            return Ok(false);
        }
        let mut tx = self.models.begin().await.map_err(|e| other(e.into()))?;
        for event in events {
            let at = event.cursor();
            for (index, member) in self.members.iter().enumerate() {
                if member.halted || at <= member.cursor {
                    continue;
                }
                if let Err(error) = member.projection.apply(event, &mut *tx).await {
                    return Err(match error {
                        // A fault of the event or of the member's own rows:
                        // applying it again fails again.
                        ProjectionError::Unreadable { .. }
                        | ProjectionError::Document(_)
                        | ProjectionError::Store(StoreError::Corrupt { .. }) => Failure::Halted {
                            member: index,
                            error,
                        },
                        error => other(error),
                    });
                }
            }
            // Reads of SQLite batches answer without waiting: give the
            // runtime's other tasks their turn between events.
            tokio::task::yield_now().await;
        }
        let until = Timestamp::now().0 + self.lease;
        tx.commit(&moves, self.holder, until)
            .await
            .map_err(|e| other(e.into()))?;
        Ok(true)
    }
}

/// How long a rebuild waits for transactions that hold back the end of
/// the log it must reach.
const REBUILD_PATIENCE: Duration = Duration::from_secs(30);

/// Rebuilds `projections` from the start of the log, together, and returns
/// the number of events read. Takes their leases (refused while another
/// process runs one of them), clears their models, replays, and gives the
/// leases back. `progress` is told each batch's size. A projection that
/// cannot read an event stops the rebuild there.
pub async fn rebuild(
    projections: &[Arc<dyn Projection>],
    store: &Arc<dyn EventStore>,
    models: &dyn ReadModels,
    config: RunnerConfig,
    mut progress: impl FnMut(u64),
) -> Result<u64, ProjectionError> {
    let holder = Uuid::now_v7();
    let lease = micros(config.lease);
    let held = acquire_all(models, projections, holder, lease).await;
    let result = async {
        if held?.is_none() {
            return Err(CommitError::LeaseLost.into());
        }
        for projection in projections {
            models
                .reset(projection.name(), projection.models(), holder)
                .await?;
        }
        let mut members: Vec<Member> = projections
            .iter()
            .map(|projection| Member {
                projection: &**projection,
                cursor: LogCursor::START,
                halted: false,
            })
            .collect();
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
                members: &members,
                models,
                holder,
                lease,
            };
            batch
                .apply(&events, to)
                .await
                .map_err(|failure| match failure {
                    Failure::Halted { error, .. } | Failure::Other(error) => error,
                })?;
            for member in &mut members {
                member.cursor = to;
            }
            cursor = to;
            applied += events.len() as u64;
            progress(events.len() as u64);
        }
        Ok::<u64, ProjectionError>(applied)
    }
    .await;
    // Only leases this rebuild holds are released; each is tried, and the
    // rebuild's own error comes first.
    let mut released = Ok(());
    for projection in projections {
        if let Err(error) = models.release(projection.name(), holder).await {
            released = released.and(Err(error));
        }
    }
    let applied = result?;
    released?;
    Ok(applied)
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
