//! One follower of the log for every audit subscription of this process.
//!
//! A subscription used to follow the whole log on its own, so a few
//! hundred subscriptions read the log a few hundred times per append and
//! starved the connection pool. Now one task follows the log (from where
//! the audit projection is, when the first subscriber arrives) and
//! broadcasts each event's audit row; every subscription filters its own
//! tenant. A subscriber too slow to keep up with [`CAPACITY`] rows is
//! ended (its client resubscribes). The task stops when nobody listens.

use std::sync::{Arc, Mutex};

use custodia_application::{EventStore, ModelRow, ReadModels};
use custodia_domain::{ChainId, LogCursor};
use custodia_projections::Follower;
use tokio::sync::broadcast;

/// Rows a subscriber may fall behind before it is ended.
pub const CAPACITY: usize = 1024;

/// One event as subscriptions see it: its chain and its audit row.
pub type FeedItem = Arc<(ChainId, ModelRow)>;

type Slot = Arc<Mutex<Option<broadcast::Sender<FeedItem>>>>;

#[derive(Default)]
pub struct AuditFeed {
    sender: Slot,
}

impl AuditFeed {
    /// A receiver of every event from about now on, starting the follower
    /// if none runs.
    pub async fn subscribe(
        &self,
        store: Arc<dyn EventStore>,
        models: &dyn ReadModels,
    ) -> Result<broadcast::Receiver<FeedItem>, custodia_application::StoreError> {
        if let Some(receiver) = self.join() {
            return Ok(receiver);
        }
        // From where the audit projection is: "now", give or take its lag.
        let start = models
            .checkpoints()
            .await?
            .into_iter()
            .find(|c| c.name == "audit")
            .map_or(LogCursor::START, |c| c.cursor);
        let mut slot = self.sender.lock().expect("not poisoned");
        if let Some(sender) = slot.as_ref().filter(|s| s.receiver_count() > 0) {
            return Ok(sender.subscribe());
        }
        let (sender, receiver) = broadcast::channel(CAPACITY);
        *slot = Some(sender.clone());
        tokio::spawn(follow(store, start, self.sender.clone(), sender));
        Ok(receiver)
    }

    /// A receiver of the running feed, if it still has listeners (a feed
    /// without any stops at its next event, so it is not joined).
    fn join(&self) -> Option<broadcast::Receiver<FeedItem>> {
        let slot = self.sender.lock().expect("not poisoned");
        slot.as_ref()
            .filter(|s| s.receiver_count() > 0)
            .map(broadcast::Sender::subscribe)
    }
}

/// Follows the log and broadcasts each event's row until nobody listens
/// or the log cannot be read; then the channel closes (its subscriptions
/// end) and the next subscriber starts a new feed.
async fn follow(
    store: Arc<dyn EventStore>,
    start: LogCursor,
    slot: Slot,
    sender: broadcast::Sender<FeedItem>,
) {
    let mut follower = Follower::new(store, start, 256);
    'following: loop {
        match follower.next_batch().await {
            Ok(events) => {
                for event in &events {
                    let row = custodia_projections::identity::audit_row(event);
                    if sender.send(Arc::new((event.chain, row))).is_err() {
                        break 'following; // no receiver left
                    }
                }
                if sender.receiver_count() == 0 {
                    break;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "the audit feed stopped");
                break;
            }
        }
    }
    let mut slot = slot.lock().expect("not poisoned");
    if slot.as_ref().is_some_and(|s| s.same_channel(&sender)) {
        *slot = None;
    }
}
