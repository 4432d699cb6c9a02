//! The [`Follower`]: reads the whole log in commit-safe order from a cursor,
//! then follows it live without polling in a busy loop.

use std::sync::Arc;
use std::time::Duration;

use custodia_application::{AppendSignal, EventStore, StoreError};
use custodia_domain::{LogCursor, RecordedEvent};

/// Reads the log from a cursor, batch by batch, waiting when caught up.
pub struct Follower {
    store: Arc<dyn EventStore>,
    cursor: LogCursor,
    batch_size: usize,
    signal: AppendSignal,
    idle_wait: Duration,
}

impl Follower {
    /// How long a caught-up follower waits for a signal before it looks
    /// again anyway (appends by other processes on SQLite do not signal).
    pub const IDLE_WAIT: Duration = Duration::from_millis(500);

    pub fn new(store: Arc<dyn EventStore>, from: LogCursor, batch_size: usize) -> Self {
        let signal = store.append_signal();
        Self {
            store,
            cursor: from,
            batch_size: batch_size.max(1),
            signal,
            idle_wait: Self::IDLE_WAIT,
        }
    }

    /// Changes how long a caught-up follower waits for a signal before it
    /// looks again anyway.
    pub fn with_idle_wait(mut self, idle_wait: Duration) -> Self {
        self.idle_wait = idle_wait;
        self
    }

    /// The cursor after the last event returned.
    pub fn cursor(&self) -> LogCursor {
        self.cursor
    }

    /// The next events after the cursor, waiting until there are some.
    pub async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        loop {
            self.signal.mark_seen();
            let events = self.store.read_all(self.cursor, self.batch_size).await?;
            if let Some(last) = events.last() {
                self.cursor = last.cursor();
                return Ok(events);
            }
            self.signal.wait(self.idle_wait).await;
        }
    }
}
