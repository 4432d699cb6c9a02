//! On PostgreSQL a follower in one process is woken by appends made in
//! another (LISTEN/NOTIFY), instead of polling.

use std::time::Duration;

use custodia_domain::{ChainId, LogCursor, TenantId};
use custodia_infrastructure::{open_event_store, OpenMode};
use custodia_projections::Follower;
use custodia_tests::{one_event, TestDatabase};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_on_another_instance_is_woken_by_notify() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    // Two stores: two instances sharing one database.
    let writer = open_event_store(db.url(), OpenMode::Migrate, 2)
        .await
        .unwrap();
    let reader = open_event_store(db.url(), OpenMode::Existing, 2)
        .await
        .unwrap();
    // An idle wait far beyond the bound below: only a NOTIFY can wake it in time.
    let mut follower =
        Follower::new(reader, LogCursor::START, 100).with_idle_wait(Duration::from_secs(3600));
    let waiting = tokio::spawn(async move { follower.next_batch().await });
    tokio::time::sleep(Duration::from_millis(300)).await; // let it go idle

    let request = one_event(ChainId::Tenant(TenantId::generate()));
    let event_id = request.events()[0].event_id;
    writer.append(request).await.unwrap();

    let batch = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("woken by NOTIFY, not by its hour-long idle wait")
        .unwrap()
        .unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].event_id, event_id);
}
