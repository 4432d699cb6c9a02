//! The PostgreSQL trap the log must not fall into: a sequence value is taken
//! at insert time, so a transaction holding a *lower* position can commit
//! *after* one holding a higher position. A follower that read "position > P"
//! would skip it forever. See docs/adr/0002-gap-safe-reads.md.

use custodia_domain::{ChainId, LogCursor, TenantId};
use custodia_infrastructure::{open_event_store, OpenMode};
use custodia_tests::{one_event, TestDatabase};
use sqlx::{Connection, PgConnection};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_commits_late_with_a_lower_position_is_not_skipped() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let store = open_event_store(db.url(), OpenMode::Migrate, 4)
        .await
        .unwrap();
    let first = store
        .append(one_event(ChainId::Tenant(TenantId::generate())))
        .await
        .unwrap();

    // A slow writer: inserts an event (taking the next position) and keeps
    // its transaction open.
    let mut slow = PgConnection::connect(db.url()).await.unwrap();
    sqlx::query("BEGIN").execute(&mut slow).await.unwrap();
    let slow_position: i64 = sqlx::query_scalar(
        "INSERT INTO events (event_id, chain_id, chain_index, stream_category, stream_id,
            stream_version, event_type, schema_version, payload, actor, command_id,
            correlation_id, causation_id, origin, recorded_at, prev_hash, hash)
         SELECT gen_random_uuid(), gen_random_uuid(), 0, stream_category, gen_random_uuid(), 1,
            event_type, schema_version, payload, actor, gen_random_uuid(), correlation_id,
            causation_id, origin, recorded_at, prev_hash, hash
         FROM events WHERE position = $1 RETURNING position",
    )
    .bind(first.position.0 as i64)
    .fetch_one(&mut slow)
    .await
    .unwrap();

    // A fast writer on another tenant commits with a higher position.
    let fast = store
        .append(one_event(ChainId::Tenant(TenantId::generate())))
        .await
        .unwrap();
    assert!(fast.position.0 as i64 > slow_position);

    // While the slow transaction is open, the fast event is held back.
    let read = store.read_all(first.cursor, 10).await.unwrap();
    assert!(
        read.is_empty(),
        "nothing after the open transaction is readable yet"
    );

    sqlx::query("COMMIT").execute(&mut slow).await.unwrap();
    // Any other open transaction in the cluster may still hold the tail back
    // for a moment; wait (bounded) until both events are readable.
    let mut read = Vec::new();
    for _ in 0..300 {
        read = store.read_all(first.cursor, 10).await.unwrap();
        if read.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let positions: Vec<i64> = read.iter().map(|e| e.position.0 as i64).collect();
    assert_eq!(positions, vec![slow_position, fast.position.0 as i64]);
    let all: Vec<LogCursor> = store
        .read_all(LogCursor::START, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.cursor())
        .collect();
    assert_eq!(all.len(), 3);
}
