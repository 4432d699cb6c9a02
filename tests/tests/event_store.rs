//! The event store conformance suite: every test runs on SQLite and on
//! PostgreSQL, and both must behave identically.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use custodia_application::{
    verify_log, AppendError, AppendRequest, EventStore, ExpectedVersion, StoredSnapshot,
};
use custodia_domain::{
    Actor, ChainId, ChainIndex, CommandId, EventId, EventType, LogCursor, Metadata, NewEvent,
    Origin, Payload, SchemaVersion, StreamCategory, StreamId, StreamVersion, TenantId,
    GENESIS_HASH,
};
use custodia_infrastructure::{open_event_store, OpenMode};
use custodia_projections::Follower;
use custodia_tests::{backends, TestDatabase};
use uuid::Uuid;

backends!(
    appends_and_reads_back_every_field,
    stale_expected_version_is_a_typed_conflict_that_consumes_nothing,
    retried_command_returns_the_original_result_and_appends_nothing,
    reused_command_id_for_another_append_is_refused,
    a_stream_stays_in_its_chain,
    duplicate_event_id_appends_nothing,
    platform_chain_is_a_chain_of_its_own,
    read_all_pages_through_every_chain_in_commit_order,
    concurrent_appenders_on_one_stream_never_share_a_version,
    follower_sees_every_committed_event_once_in_chain_order,
    one_bad_append_among_concurrent_ones_fails_alone,
    racing_appends_across_chains_each_get_their_own_answer,
    an_atomic_append_writes_every_batch_or_none,
    a_retried_atomic_append_replays_every_batch,
    an_atomic_append_stays_in_one_chain_and_touches_each_stream_once,
    a_refused_atomic_append_among_concurrent_ones_fails_alone,
    a_snapshot_is_kept_only_if_it_is_newer_and_can_be_dropped,
    commits_are_durable_as_the_store_reports,
);

async fn open(db: &TestDatabase) -> Arc<dyn EventStore> {
    open_event_store(db.url(), OpenMode::Migrate, 40)
        .await
        .expect("open the event store")
}

fn tenant_chain() -> ChainId {
    ChainId::Tenant(TenantId::generate())
}

fn user_stream() -> StreamId {
    StreamId::new(StreamCategory::parse("user").unwrap(), Uuid::now_v7())
}

fn metadata() -> Metadata {
    Metadata {
        actor: Actor::User(Uuid::now_v7()),
        command_id: CommandId::generate(),
        correlation_id: Uuid::now_v7(),
        causation_id: Some(Uuid::now_v7()),
        origin: Origin::parse("conformance").unwrap(),
    }
}

fn events(count: usize) -> Vec<NewEvent> {
    (0..count)
        .map(|i| NewEvent {
            event_id: EventId::generate(),
            event_type: EventType::parse("ProfileChanged").unwrap(),
            schema_version: SchemaVersion::new(2).unwrap(),
            payload: Payload::json(format!(r#"{{"n":{i},"email":{{"ct":"AAEC"}}}}"#).into_bytes())
                .unwrap(),
        })
        .collect()
}

fn append(
    chain: ChainId,
    stream: &StreamId,
    expected: ExpectedVersion,
    count: usize,
) -> AppendRequest {
    AppendRequest::new(chain, stream.clone(), expected, events(count), metadata()).unwrap()
}

/// Committed events, counted per chain. (Not with `read_all`: on
/// PostgreSQL it holds back events while any transaction in the cluster is
/// open, such as another test's; see docs/adr/0002-gap-safe-reads.md.)
async fn log_length(store: &dyn EventStore) -> usize {
    store
        .chains()
        .await
        .unwrap()
        .iter()
        .map(|c| c.events as usize)
        .sum()
}

/// Waits (bounded) until `read_all` shows `expected` events.
async fn wait_until_readable(store: &dyn EventStore, expected: usize) {
    let mut signal = store.append_signal();
    for _ in 0..300 {
        signal.mark_seen();
        if store
            .read_all(LogCursor::START, 100_000)
            .await
            .unwrap()
            .len()
            >= expected
        {
            return;
        }
        signal.wait(std::time::Duration::from_millis(100)).await;
    }
    panic!("{expected} events did not become readable");
}

async fn appends_and_reads_back_every_field(db: TestDatabase) {
    let store = open(&db).await;
    let (chain, stream) = (tenant_chain(), user_stream());
    let request = append(
        chain,
        &stream,
        ExpectedVersion::Exactly(StreamVersion::EMPTY),
        3,
    );
    let sent = request.events().to_vec();
    let meta = request.metadata().clone();
    let appended = store.append(request).await.unwrap();
    assert_eq!(appended.stream_version, StreamVersion(3));
    assert_eq!(appended.chain_index, ChainIndex(2));

    let read = store
        .read_stream(&stream, StreamVersion::EMPTY, 10)
        .await
        .unwrap();
    assert_eq!(read.len(), 3);
    for (i, (event, new)) in read.iter().zip(&sent).enumerate() {
        assert_eq!(event.event_id, new.event_id);
        assert_eq!(event.event_type, new.event_type);
        assert_eq!(event.schema_version, new.schema_version);
        assert_eq!(event.payload, new.payload, "payload bytes are kept exactly");
        assert_eq!(event.metadata, meta);
        assert_eq!(event.chain, chain);
        assert_eq!(event.stream, stream);
        assert_eq!(event.stream_version, StreamVersion(i as u64 + 1));
        assert_eq!(event.chain_index, ChainIndex(i as u64));
        assert_eq!(event.hash, custodia_domain::chain::compute_hash(event));
    }
    assert_eq!(read[0].prev_hash, GENESIS_HASH);
    assert_eq!(read[1].prev_hash, read[0].hash);
    assert!(read[0].position < read[1].position && read[1].position < read[2].position);
    assert_eq!(read[2].position, appended.position);
    assert_eq!(read[2].cursor(), appended.cursor);

    let tail = store
        .read_stream(&stream, StreamVersion(2), 10)
        .await
        .unwrap();
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].stream_version, StreamVersion(3));
}

async fn stale_expected_version_is_a_typed_conflict_that_consumes_nothing(db: TestDatabase) {
    let store = open(&db).await;
    let (chain, stream) = (tenant_chain(), user_stream());
    let first = store
        .append(append(
            chain,
            &stream,
            ExpectedVersion::Exactly(StreamVersion::EMPTY),
            1,
        ))
        .await
        .unwrap();
    let stale = store
        .append(append(
            chain,
            &stream,
            ExpectedVersion::Exactly(StreamVersion::EMPTY),
            2,
        ))
        .await;
    match stale {
        Err(AppendError::Conflict {
            expected, actual, ..
        }) => {
            assert_eq!((expected, actual), (StreamVersion(0), StreamVersion(1)));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        log_length(&*store).await,
        1,
        "the conflict appended nothing"
    );
    let next = store
        .append(append(
            chain,
            &stream,
            ExpectedVersion::Exactly(StreamVersion(1)),
            1,
        ))
        .await
        .unwrap();
    assert_eq!(
        next.position.0,
        first.position.0 + 1,
        "the conflict did not consume a global position"
    );
}

async fn retried_command_returns_the_original_result_and_appends_nothing(db: TestDatabase) {
    let store = open(&db).await;
    let (chain, stream) = (tenant_chain(), user_stream());
    let request = append(
        chain,
        &stream,
        ExpectedVersion::Exactly(StreamVersion::EMPTY),
        2,
    );
    let first = store.append(request.clone()).await.unwrap();
    // Other appends in between; the retry still answers as the original did,
    // although its expected version is now stale.
    store
        .append(append(chain, &stream, ExpectedVersion::Any, 1))
        .await
        .unwrap();
    let retry = store.append(request).await.unwrap();
    assert_eq!(retry, first);
    assert_eq!(log_length(&*store).await, 3);
}

async fn reused_command_id_for_another_append_is_refused(db: TestDatabase) {
    let store = open(&db).await;
    let chain = tenant_chain();
    let first = append(chain, &user_stream(), ExpectedVersion::Any, 1);
    let command_id = first.command_id();
    store.append(first).await.unwrap();
    let mut meta = metadata();
    meta.command_id = command_id;
    let other =
        AppendRequest::new(chain, user_stream(), ExpectedVersion::Any, events(1), meta).unwrap();
    assert!(matches!(
        store.append(other).await,
        Err(AppendError::CommandIdReused { .. })
    ));
    assert_eq!(log_length(&*store).await, 1);
}

async fn a_stream_stays_in_its_chain(db: TestDatabase) {
    let store = open(&db).await;
    let stream = user_stream();
    store
        .append(append(tenant_chain(), &stream, ExpectedVersion::Any, 1))
        .await
        .unwrap();
    let elsewhere = store
        .append(append(tenant_chain(), &stream, ExpectedVersion::Any, 1))
        .await;
    assert!(
        matches!(elsewhere, Err(AppendError::WrongChain { .. })),
        "{elsewhere:?}"
    );
    assert_eq!(log_length(&*store).await, 1);
}

async fn duplicate_event_id_appends_nothing(db: TestDatabase) {
    let store = open(&db).await;
    let chain = tenant_chain();
    let request = append(chain, &user_stream(), ExpectedVersion::Any, 1);
    let reused = request.events().to_vec();
    store.append(request).await.unwrap();
    let mut batch = events(2);
    batch[1] = reused[0].clone();
    let again = AppendRequest::new(
        chain,
        user_stream(),
        ExpectedVersion::Any,
        batch,
        metadata(),
    )
    .unwrap();
    assert!(matches!(
        store.append(again).await,
        Err(AppendError::DuplicateEventId)
    ));
    assert_eq!(log_length(&*store).await, 1, "the whole batch was refused");
    // And the chain continues where it was.
    let next = store
        .append(append(chain, &user_stream(), ExpectedVersion::Any, 1))
        .await
        .unwrap();
    assert_eq!(next.chain_index, ChainIndex(1));
}

async fn platform_chain_is_a_chain_of_its_own(db: TestDatabase) {
    let store = open(&db).await;
    let platform_stream = StreamId::new(StreamCategory::parse("platform").unwrap(), Uuid::now_v7());
    store
        .append(append(
            ChainId::Platform,
            &platform_stream,
            ExpectedVersion::Any,
            2,
        ))
        .await
        .unwrap();
    let tenant = tenant_chain();
    let appended = store
        .append(append(tenant, &user_stream(), ExpectedVersion::Any, 1))
        .await
        .unwrap();
    assert_eq!(
        appended.chain_index,
        ChainIndex(0),
        "each chain starts at index 0"
    );
    let platform = store
        .read_chain(ChainId::Platform, ChainIndex(0), 10)
        .await
        .unwrap();
    assert_eq!(platform.len(), 2);
    assert!(platform.iter().all(|e| e.chain == ChainId::Platform));
    let report = verify_log(&*store, None, &|_| {}).await.unwrap();
    assert_eq!((report.chains, report.events), (2, 3));
    assert!(report.is_intact());
}

async fn read_all_pages_through_every_chain_in_commit_order(db: TestDatabase) {
    let store = open(&db).await;
    let chains: Vec<ChainId> = (0..3).map(|_| tenant_chain()).collect();
    let mut appended = Vec::new();
    for round in 0..4 {
        for chain in &chains {
            let count = 1 + round % 2;
            appended.push(
                store
                    .append(append(*chain, &user_stream(), ExpectedVersion::Any, count))
                    .await
                    .unwrap(),
            );
        }
    }
    wait_until_readable(&*store, 18).await;
    let mut cursor = LogCursor::START;
    let mut seen = Vec::new();
    loop {
        let page = store.read_all(cursor, 4).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.cursor();
        seen.extend(page);
    }
    assert_eq!(seen.len(), 18);
    let cursors: Vec<LogCursor> = seen.iter().map(|e| e.cursor()).collect();
    assert!(
        cursors.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing cursors"
    );
    assert_eq!(cursor, appended.last().unwrap().cursor);
    for chain in &chains {
        let indexes: Vec<u64> = seen
            .iter()
            .filter(|e| e.chain == *chain)
            .map(|e| e.chain_index.0)
            .collect();
        assert_eq!(indexes, (0..6).collect::<Vec<_>>());
    }
    let from_middle = store
        .read_chain(chains[0], ChainIndex(4), 10)
        .await
        .unwrap();
    assert_eq!(
        from_middle
            .iter()
            .map(|e| e.chain_index.0)
            .collect::<Vec<_>>(),
        vec![4, 5]
    );
}

async fn concurrent_appenders_on_one_stream_never_share_a_version(db: TestDatabase) {
    let store = open(&db).await;
    let (chain, stream) = (tenant_chain(), user_stream());
    let mut writers = Vec::new();
    for _ in 0..64 {
        let (store, stream) = (store.clone(), stream.clone());
        writers.push(tokio::spawn(async move {
            let mut won = Vec::new();
            for _ in 0..5 {
                let current = store
                    .read_stream(&stream, StreamVersion::EMPTY, 100_000)
                    .await
                    .unwrap()
                    .last()
                    .map_or(StreamVersion::EMPTY, |e| e.stream_version);
                match store
                    .append(append(chain, &stream, ExpectedVersion::Exactly(current), 1))
                    .await
                {
                    Ok(appended) => won.push(appended.stream_version),
                    Err(AppendError::Conflict { .. }) => {}
                    Err(other) => panic!("unexpected error: {other}"),
                }
            }
            won
        }));
    }
    let mut versions = Vec::new();
    for writer in writers {
        versions.extend(writer.await.unwrap());
    }
    let distinct: HashSet<_> = versions.iter().collect();
    assert_eq!(
        distinct.len(),
        versions.len(),
        "every success has its own version"
    );
    let stored = store
        .read_stream(&stream, StreamVersion::EMPTY, 100_000)
        .await
        .unwrap();
    assert_eq!(
        stored.len(),
        versions.len(),
        "every success is stored, nothing else"
    );
    assert!(stored
        .iter()
        .enumerate()
        .all(|(i, e)| e.stream_version.0 == i as u64 + 1));
    let report = verify_log(&*store, Some(chain), &|_| {}).await.unwrap();
    assert!(report.is_intact(), "{:?}", report.breaks);
    assert_eq!(report.events, versions.len() as u64);
}

async fn follower_sees_every_committed_event_once_in_chain_order(db: TestDatabase) {
    const WRITERS: usize = 8;
    const APPENDS: usize = 500;
    let store = open(&db).await;
    let mut follower = Follower::new(store.clone(), LogCursor::START, 256);
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        while seen.len() < WRITERS * APPENDS {
            seen.extend(follower.next_batch().await.unwrap());
        }
        seen
    });
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let chain = tenant_chain();
            let mut ids = Vec::new();
            for _ in 0..APPENDS {
                let request = append(chain, &user_stream(), ExpectedVersion::Any, 1);
                ids.push(request.events()[0].event_id);
                store.append(request).await.unwrap();
            }
            (chain, ids)
        }));
    }
    let mut written: HashMap<ChainId, Vec<EventId>> = HashMap::new();
    for writer in writers {
        let (chain, ids) = writer.await.unwrap();
        written.insert(chain, ids);
    }
    let seen = tokio::time::timeout(std::time::Duration::from_secs(60), reader)
        .await
        .expect("the follower caught up")
        .unwrap();
    assert_eq!(seen.len(), WRITERS * APPENDS);
    let unique: HashSet<EventId> = seen.iter().map(|e| e.event_id).collect();
    assert_eq!(unique.len(), seen.len(), "no event seen twice");
    for (chain, ids) in written {
        let in_order: Vec<EventId> = seen
            .iter()
            .filter(|e| e.chain == chain)
            .map(|e| e.event_id)
            .collect();
        assert_eq!(in_order, ids, "each chain's events arrive in chain order");
    }
    let nothing_more = store
        .read_all(seen.last().unwrap().cursor(), 10)
        .await
        .unwrap();
    assert!(nothing_more.is_empty());
}

/// On SQLite concurrent appends share a group commit; a failing write inside
/// a group must not take the others down with it.
async fn one_bad_append_among_concurrent_ones_fails_alone(db: TestDatabase) {
    let store = open(&db).await;
    let chain = tenant_chain();
    let taken = append(chain, &user_stream(), ExpectedVersion::Any, 1);
    let taken_id = taken.events()[0].event_id;
    store.append(taken).await.unwrap();
    let mut appends = Vec::new();
    for i in 0..32 {
        let store = store.clone();
        let mut batch = events(2);
        if i == 17 {
            batch[1].event_id = taken_id;
        }
        let request = AppendRequest::new(
            chain,
            user_stream(),
            ExpectedVersion::Any,
            batch,
            metadata(),
        )
        .unwrap();
        appends.push(tokio::spawn(async move { store.append(request).await }));
    }
    let mut outcomes = Vec::new();
    for append in appends {
        outcomes.push(append.await.unwrap());
    }
    for (i, outcome) in outcomes.iter().enumerate() {
        match (i, outcome) {
            (17, Err(AppendError::DuplicateEventId)) => {}
            (17, other) => panic!("the bad append: {other:?}"),
            (_, Ok(_)) => {}
            (_, Err(e)) => panic!("append {i} failed with the bad one: {e}"),
        }
    }
    assert_eq!(log_length(&*store).await, 1 + 31 * 2);
    let report = verify_log(&*store, Some(chain), &|_| {}).await.unwrap();
    assert!(report.is_intact());
    assert_eq!(report.events, 63);
}

/// Many appends at once over eight chains (PostgreSQL commits them in
/// groups, each group one transaction): on each chain eight race to create
/// one stream, and exactly one of them wins while the others get a typed
/// conflict; the appends to streams of their own all land; every chain
/// verifies.
async fn racing_appends_across_chains_each_get_their_own_answer(db: TestDatabase) {
    let store = open(&db).await;
    let chains: Vec<(ChainId, StreamId)> =
        (0..8).map(|_| (tenant_chain(), user_stream())).collect();
    let mut appends = Vec::new();
    for round in 0..8 {
        for (chain, contested) in &chains {
            let (store, chain, contested) = (store.clone(), *chain, contested.clone());
            appends.push(tokio::spawn(async move {
                let racing = append(
                    chain,
                    &contested,
                    ExpectedVersion::Exactly(StreamVersion::EMPTY),
                    2,
                );
                let own = append(chain, &user_stream(), ExpectedVersion::Any, 1);
                let (racing, own) = tokio::join!(store.append(racing), store.append(own));
                (round, chain, racing, own)
            }));
        }
    }
    let mut winners: HashMap<ChainId, usize> = HashMap::new();
    for append in appends {
        let (round, chain, racing, own) = append.await.unwrap();
        own.unwrap_or_else(|e| panic!("an append to its own stream failed in round {round}: {e}"));
        match racing {
            Ok(appended) => {
                assert_eq!(appended.stream_version, StreamVersion(2));
                *winners.entry(chain).or_default() += 1;
            }
            Err(AppendError::Conflict { .. }) => {}
            Err(other) => panic!("a losing append: {other}"),
        }
    }
    for (chain, _) in &chains {
        assert_eq!(
            winners.get(chain),
            Some(&1),
            "exactly one creates the stream"
        );
        let report = verify_log(&*store, Some(*chain), &|_| {}).await.unwrap();
        assert!(report.is_intact());
        assert_eq!(report.events, 2 + 8);
    }
    assert_eq!(log_length(&*store).await, 8 * (2 + 8));
}

async fn an_atomic_append_writes_every_batch_or_none(db: TestDatabase) {
    let store = open(&db).await;
    let chain = tenant_chain();
    let (a, b) = (user_stream(), user_stream());
    let appended = store
        .append_atomic(vec![
            append(chain, &a, ExpectedVersion::Exactly(StreamVersion::EMPTY), 2),
            append(chain, &b, ExpectedVersion::Exactly(StreamVersion::EMPTY), 1),
        ])
        .await
        .unwrap();
    assert_eq!(
        appended
            .iter()
            .map(|a| (a.stream_version, a.chain_index))
            .collect::<Vec<_>>(),
        [
            (StreamVersion(2), ChainIndex(1)),
            (StreamVersion(1), ChainIndex(2))
        ],
        "one after the other in the chain"
    );
    // A stale version in the last batch: the first batch is not written.
    let before = log_length(&*store).await;
    let refused = store
        .append_atomic(vec![
            append(chain, &a, ExpectedVersion::Exactly(StreamVersion(2)), 1),
            append(chain, &b, ExpectedVersion::Exactly(StreamVersion::EMPTY), 1),
        ])
        .await;
    assert!(
        matches!(refused, Err(AppendError::Conflict { .. })),
        "{refused:?}"
    );
    assert_eq!(log_length(&*store).await, before, "nothing was written");
    let stream_a = store
        .read_stream(&a, StreamVersion::EMPTY, 10)
        .await
        .unwrap();
    assert_eq!(stream_a.len(), 2);
    // The chain goes on where it was, and still verifies.
    store
        .append(append(
            chain,
            &a,
            ExpectedVersion::Exactly(StreamVersion(2)),
            1,
        ))
        .await
        .unwrap();
    let report = verify_log(&*store, None, &|_| {}).await.unwrap();
    assert!(report.is_intact(), "{report:?}");
}

async fn a_retried_atomic_append_replays_every_batch(db: TestDatabase) {
    let store = open(&db).await;
    let chain = tenant_chain();
    let batches = vec![
        append(
            chain,
            &user_stream(),
            ExpectedVersion::Exactly(StreamVersion::EMPTY),
            1,
        ),
        append(
            chain,
            &user_stream(),
            ExpectedVersion::Exactly(StreamVersion::EMPTY),
            3,
        ),
    ];
    let first = store.append_atomic(batches.clone()).await.unwrap();
    let length = log_length(&*store).await;
    let again = store.append_atomic(batches).await.unwrap();
    assert_eq!(first, again, "answered as the first time");
    assert_eq!(log_length(&*store).await, length, "and nothing appended");
}

async fn an_atomic_append_stays_in_one_chain_and_touches_each_stream_once(db: TestDatabase) {
    let store = open(&db).await;
    let stream = user_stream();
    let any = ExpectedVersion::Any;
    let two_chains = store
        .append_atomic(vec![
            append(tenant_chain(), &stream, any, 1),
            append(tenant_chain(), &user_stream(), any, 1),
        ])
        .await;
    assert!(
        matches!(two_chains, Err(AppendError::Invalid(_))),
        "{two_chains:?}"
    );
    let chain = tenant_chain();
    let twice = store
        .append_atomic(vec![
            append(chain, &stream, any, 1),
            append(chain, &stream, any, 1),
        ])
        .await;
    assert!(matches!(twice, Err(AppendError::Invalid(_))), "{twice:?}");
    let none = store.append_atomic(vec![]).await;
    assert!(matches!(none, Err(AppendError::Invalid(_))), "{none:?}");
    assert_eq!(log_length(&*store).await, 0);
}

async fn a_refused_atomic_append_among_concurrent_ones_fails_alone(db: TestDatabase) {
    let store = open(&db).await;
    let chain = tenant_chain();
    let taken = user_stream();
    store
        .append(append(chain, &taken, ExpectedVersion::Any, 1))
        .await
        .unwrap();
    let before = log_length(&*store).await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let store = store.clone();
        let taken = taken.clone();
        tasks.push(tokio::spawn(async move {
            if i % 4 == 0 {
                // Refused: its second batch expects a stream to be new.
                store
                    .append_atomic(vec![
                        append(
                            chain,
                            &user_stream(),
                            ExpectedVersion::Exactly(StreamVersion::EMPTY),
                            1,
                        ),
                        append(
                            chain,
                            &taken,
                            ExpectedVersion::Exactly(StreamVersion::EMPTY),
                            1,
                        ),
                    ])
                    .await
                    .map(|a| a.len())
            } else {
                store
                    .append_atomic(vec![
                        append(chain, &user_stream(), ExpectedVersion::Any, 1),
                        append(chain, &user_stream(), ExpectedVersion::Any, 1),
                    ])
                    .await
                    .map(|a| a.len())
            }
        }));
    }
    let mut written = 0;
    for (i, task) in tasks.into_iter().enumerate() {
        match (i % 4 == 0, task.await.unwrap()) {
            (true, Err(AppendError::Conflict { .. })) => {}
            (false, Ok(2)) => written += 2,
            (refused, outcome) => panic!("task {i} (refused: {refused}): {outcome:?}"),
        }
    }
    assert_eq!(log_length(&*store).await, before + written);
    let report = verify_log(&*store, None, &|_| {}).await.unwrap();
    assert!(report.is_intact(), "{report:?}");
}

async fn a_snapshot_is_kept_only_if_it_is_newer_and_can_be_dropped(db: TestDatabase) {
    let store = open(&db).await;
    let stream = user_stream();
    assert_eq!(store.snapshot(&stream).await.unwrap(), None);
    let chain = tenant_chain();
    let at = |version: u64, state: &[u8]| StoredSnapshot {
        stream: stream.clone(),
        chain,
        stream_version: StreamVersion(version),
        form_version: 3,
        state: state.to_vec(),
    };
    store
        .save_snapshot(at(64, b"sixty-four"), None)
        .await
        .unwrap();
    assert_eq!(
        store.snapshot(&stream).await.unwrap(),
        Some(at(64, b"sixty-four"))
    );
    // Two loads race: the later state wins, whichever saves last.
    store.save_snapshot(at(128, b"later"), None).await.unwrap();
    store.save_snapshot(at(96, b"earlier"), None).await.unwrap();
    let kept = store.snapshot(&stream).await.unwrap().unwrap();
    assert_eq!(
        (kept.stream_version, kept.state),
        (StreamVersion(128), b"later".to_vec())
    );
    // An unreadable one is replaced by name, whatever its version.
    store
        .save_snapshot(at(100, b"readable"), Some(StreamVersion(127)))
        .await
        .unwrap();
    assert_eq!(
        store
            .snapshot(&stream)
            .await
            .unwrap()
            .unwrap()
            .stream_version,
        StreamVersion(128)
    );
    store
        .save_snapshot(at(100, b"readable"), Some(StreamVersion(128)))
        .await
        .unwrap();
    assert_eq!(
        store.snapshot(&stream).await.unwrap(),
        Some(at(100, b"readable"))
    );
    assert_eq!(
        store.snapshot(&user_stream()).await.unwrap(),
        None,
        "per stream"
    );
    assert_eq!(store.drop_snapshots().await.unwrap(), 1);
    assert_eq!(store.snapshot(&stream).await.unwrap(), None);
}

/// The durability settings every figure of the benchmarks is measured
/// with (issue 14: a faster number bought with lost commits does not
/// count), as the store's own connections report them.
async fn commits_are_durable_as_the_store_reports(db: TestDatabase) {
    let store = open(&db).await;
    let durability = store.durability().await.unwrap();
    match durability.backend {
        "sqlite" => {
            assert_eq!(
                durability.setting("synchronous"),
                Some("full"),
                "{durability:?}"
            );
            assert_eq!(
                durability.setting("journal_mode"),
                Some("wal"),
                "{durability:?}"
            );
        }
        "postgres" => {
            assert_eq!(
                durability.setting("synchronous_commit"),
                Some("on"),
                "{durability:?}"
            );
            assert_eq!(durability.setting("fsync"), Some("on"), "{durability:?}");
        }
        other => panic!("unknown backend {other}"),
    }
}

/// PostgreSQL commits single appends in groups. A chain whose lock another
/// transaction holds (a long atomic append, another instance) must hold up
/// only its own appends: the others commit meanwhile, and the held one
/// lands once the lock is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_busy_chain_holds_up_only_its_own_appends() {
    use sqlx::Connection;
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let store = open(&db).await;
    // More busy chains than the store has committers, each held by
    // another transaction under the store's lock key of the chain (its
    // id's two halves folded).
    let busy: Vec<ChainId> = (0..4).map(|_| tenant_chain()).collect();
    let mut holder = sqlx::PgConnection::connect(db.url()).await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    for chain in &busy {
        let (high, low) = chain.as_uuid().as_u64_pair();
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind((high ^ low) as i64)
            .execute(&mut holder)
            .await
            .unwrap();
    }
    let mut held = Vec::new();
    for chain in busy {
        let store = store.clone();
        held.push(tokio::spawn(async move {
            store
                .append(append(chain, &user_stream(), ExpectedVersion::Any, 1))
                .await
        }));
        // Queued first, one by one: each could take a committer.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut others = Vec::new();
    for _ in 0..32 {
        let store = store.clone();
        others.push(tokio::spawn(async move {
            store
                .append(append(
                    tenant_chain(),
                    &user_stream(),
                    ExpectedVersion::Any,
                    1,
                ))
                .await
        }));
    }
    let limit = std::time::Duration::from_secs(30);
    for other in others {
        tokio::time::timeout(limit, other)
            .await
            .expect("an append to another chain waited for a busy one")
            .unwrap()
            .unwrap();
    }
    assert!(
        held.iter().all(|h| !h.is_finished()),
        "the held chains' appends wait for their locks"
    );
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    for held in held {
        let appended = tokio::time::timeout(limit, held)
            .await
            .expect("a held append lands once its lock is free")
            .unwrap()
            .unwrap();
        assert_eq!(appended.chain_index, ChainIndex(0));
    }
    assert_eq!(log_length(&*store).await, 36);
}
