//! The projections as the server runs them: one runner task for all of
//! them (holding every projection's lease while it runs), waiting for them
//! (read-your-writes), and their lag (readiness, metrics).

use std::sync::Arc;

use custodia_application::{EventStore, ReadModels, StoreError};
use custodia_domain::{LogCursor, Timestamp};
use custodia_projections::{wait_for, Projection, Runner, RunnerConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::graphql::CONSISTENCY_WAIT;

#[derive(Clone)]
pub struct Projections {
    pub models: Arc<dyn ReadModels>,
    pub all: Arc<Vec<Arc<dyn Projection>>>,
    pub config: RunnerConfig,
    commits: Arc<watch::Sender<u64>>,
    /// This process, in leases.
    pub holder: Uuid,
}

/// The runner tasks of this process; [`Running::stop`] releases the leases.
pub struct Running {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// How far behind the log one projection is.
#[derive(Debug, Clone)]
pub struct Lag {
    pub name: &'static str,
    pub cursor: LogCursor,
    /// Age of the oldest event it has not applied (0 when caught up).
    pub seconds: f64,
}

impl Projections {
    pub fn new(models: Arc<dyn ReadModels>) -> Self {
        Self {
            models,
            all: Arc::new(custodia_projections::all()),
            config: RunnerConfig::default(),
            commits: Arc::new(watch::Sender::new(0)),
            holder: Uuid::now_v7(),
        }
    }

    /// Starts the runner of every projection (one task, one transaction
    /// per batch for all of them) on the current tokio runtime.
    pub fn start(&self, store: Arc<dyn EventStore>) -> Running {
        let (shutdown, stop) = watch::channel(false);
        let runner = Runner {
            projections: self.all.to_vec(),
            store,
            models: self.models.clone(),
            holder: self.holder,
            config: self.config,
            commits: (*self.commits).clone(),
        };
        let tasks = vec![tokio::spawn(runner.run(stop))];
        Running { shutdown, tasks }
    }

    /// Waits (at most [`CONSISTENCY_WAIT`]) until every projection has
    /// applied the log up to `cursor`. Returns whether they did.
    pub async fn wait_for(&self, cursor: LogCursor) -> Result<bool, StoreError> {
        let names: Vec<&str> = self.all.iter().map(|p| p.name()).collect();
        let mut commits = self.commits.subscribe();
        wait_for(
            &*self.models,
            &names,
            cursor,
            CONSISTENCY_WAIT,
            &mut commits,
        )
        .await
    }

    /// Every projection's lag.
    pub async fn lag(&self, store: &dyn EventStore) -> Result<Vec<Lag>, StoreError> {
        let checkpoints = self.models.checkpoints().await?;
        let now = Timestamp::now().0;
        let mut lags = Vec::new();
        for projection in self.all.iter() {
            let cursor = checkpoints
                .iter()
                .find(|c| c.name == projection.name())
                .map_or(LogCursor::START, |c| c.cursor);
            let next = store.read_all(cursor, 1).await?;
            let seconds = next
                .first()
                .map_or(0.0, |e| (now - e.recorded_at.0).max(0) as f64 / 1e6);
            lags.push(Lag {
                name: projection.name(),
                cursor,
                seconds,
            });
        }
        Ok(lags)
    }
}
