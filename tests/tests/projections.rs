//! Projections on both backends: a rebuild ends exactly where the live
//! projection did; one runner at a time holds a projection and another takes
//! over when it stops or dies; a commit from a stale checkpoint or without
//! the lease writes nothing; an event of a type no projection handles is
//! skipped, one of a handled type that cannot be read halts.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use custodia_application::commands::users::{
    change_user_status, register_user, update_profile, NewUser, Profile, StatusChange,
};
use custodia_application::commands::Ports;
use custodia_application::{CheckpointMove, CommitError, ModelRow, ReadModelTx, ReadModels};
use custodia_domain::{LogCursor, RecordedEvent, Timestamp};
use custodia_infrastructure::SqlReadModels;
use custodia_projections::{
    identity, rebuild, wait_for, Projection, ProjectionError, Runner, RunnerConfig,
};
use custodia_tests::identity::{operator, ports, tenant_with_owner};
use custodia_tests::{backends, one_event, TestDatabase};
use serde_json::json;
use tokio::sync::watch;
use uuid::Uuid;

backends!(
    rebuild_ends_where_the_live_projection_did,
    one_runner_at_a_time_and_another_takes_over,
    a_commit_without_the_lease_or_from_a_stale_checkpoint_writes_nothing,
    events_of_unknown_types_are_skipped_and_unreadable_ones_halt,
    projections_run_together_from_their_own_checkpoints_with_all_leases_or_none,
    a_projection_that_cannot_read_an_event_halts_alone,
    a_batch_reads_its_own_changes_as_they_will_be_committed,
);

async fn models(db: &TestDatabase) -> Arc<dyn ReadModels> {
    Arc::new(SqlReadModels::connect(db.url()).await.unwrap())
}

/// Some history: a tenant, its owner, users registered, updated, suspended.
async fn history(ports: &Ports) -> LogCursor {
    let (tenant, _) = tenant_with_owner(ports, "owner@example.org", None).await;
    let mut last = LogCursor::START;
    for i in 0..5 {
        let user = Uuid::now_v7();
        let new = NewUser {
            address_vouched: false,
            user,
            email: format!("user{i}@example.org"),
            profile: Profile::default(),
            invited: i % 2 == 0,
            password: None,
        };
        register_user(ports, &operator(), tenant, new)
            .await
            .unwrap();
        let profile = Profile {
            display_name: Some(format!("User {i}")),
            ..Profile::default()
        };
        let outcome = update_profile(ports, &operator(), tenant, user, profile)
            .await
            .unwrap();
        last = last.max(outcome.appended.unwrap().cursor);
        if i == 3 {
            let outcome =
                change_user_status(ports, &operator(), tenant, user, StatusChange::Suspend)
                    .await
                    .unwrap();
            last = last.max(outcome.appended.unwrap().cursor);
        }
    }
    last
}

struct Started {
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    commits: watch::Sender<u64>,
}

fn start(
    projections: &[Arc<dyn Projection>],
    ports: &Ports,
    models: &Arc<dyn ReadModels>,
    holder: Uuid,
    config: RunnerConfig,
) -> Started {
    let (shutdown, stop) = watch::channel(false);
    let commits = watch::Sender::new(0);
    let runner = Runner {
        projections: projections.to_vec(),
        store: ports.store.clone(),
        models: models.clone(),
        holder,
        config,
        commits: commits.clone(),
    };
    let tasks = vec![tokio::spawn(runner.run(stop))];
    Started {
        shutdown,
        tasks,
        commits,
    }
}

impl Started {
    async fn stop(self) {
        self.shutdown.send(true).unwrap();
        for task in self.tasks {
            task.await.unwrap();
        }
    }
}

async fn caught_up(models: &Arc<dyn ReadModels>, names: &[&str], cursor: LogCursor) {
    let mut commits = watch::Sender::new(0u64).subscribe();
    assert!(
        wait_for(
            &**models,
            names,
            cursor,
            Duration::from_secs(20),
            &mut commits
        )
        .await
        .unwrap(),
        "projections {names:?} did not reach {cursor}"
    );
}

async fn dump_all(models: &Arc<dyn ReadModels>) -> Vec<ModelRow> {
    let mut rows = Vec::new();
    for projection in identity::all() {
        for model in projection.models() {
            rows.extend(models.dump(model).await.unwrap());
        }
    }
    rows
}

async fn rebuild_ends_where_the_live_projection_did(db: TestDatabase) {
    let ports = ports(&db).await;
    let models = models(&db).await;
    let last = history(&ports).await;
    let all = identity::all();
    let names: Vec<&str> = all.iter().map(|p| p.name()).collect();
    let live = start(
        &all,
        &ports,
        &models,
        Uuid::now_v7(),
        RunnerConfig::default(),
    );
    caught_up(&models, &names, last).await;
    live.stop().await;
    let before = dump_all(&models).await;

    // The live state holds what the history says.
    let users: Vec<_> = before.iter().filter(|r| r.model == "user").collect();
    assert_eq!(users.len(), 6, "the owner and five users");
    assert_eq!(
        users
            .iter()
            .filter(|u| u.kind.as_deref() == Some("suspended"))
            .count(),
        1
    );
    assert_eq!(
        users
            .iter()
            .filter(|u| u.kind.as_deref() == Some("invited"))
            .count(),
        3,
        "users 0, 2 and 4 were invited"
    );
    let events = events_in_log(&ports).await;
    assert_eq!(
        before.iter().filter(|r| r.model == "audit_event").count() as u64,
        events,
        "one audit row per event"
    );
    // Personal data stays sealed in read models: no address or name in clear.
    for row in &before {
        let text = format!("{:?} {}", row.lookup, row.doc);
        assert!(
            !text.contains("@example.org") && !text.contains("User 1"),
            "plaintext personal data in {} {}",
            row.model,
            row.id
        );
    }
    let membership = before.iter().find(|r| r.model == "membership").unwrap();
    assert_eq!(membership.doc["roles"], json!(["owner"]));

    rebuild(
        &all,
        &ports.store,
        &*models,
        RunnerConfig::default(),
        |_| {},
    )
    .await
    .unwrap();
    let after = dump_all(&models).await;
    assert_eq!(
        before, after,
        "a rebuild ends in the live projection's state"
    );
}

/// Counts the events it applies in its one model: applying one twice
/// shows as a count above the number of events.
struct Counter {
    name: &'static str,
    model: &'static [&'static str],
}

const COUNTER: Counter = Counter {
    name: "test_counter",
    model: &["test_count"],
};

const SECOND_COUNTER: Counter = Counter {
    name: "test_counter_2",
    model: &["test_count_2"],
};

#[async_trait]
impl Projection for Counter {
    fn name(&self) -> &'static str {
        self.name
    }
    fn models(&self) -> &'static [&'static str] {
        self.model
    }
    async fn apply(
        &self,
        event: &RecordedEvent,
        tx: &mut dyn ReadModelTx,
    ) -> Result<(), ProjectionError> {
        let model = self.model[0];
        let mut row = tx.get(model, "all").await?.unwrap_or(ModelRow {
            model,
            id: "all".into(),
            tenant: None,
            parent: None,
            kind: None,
            actor: None,
            lookup: None,
            at: 0,
            seq: 0,
            doc: json!({ "n": 0 }),
        });
        row.doc["n"] = json!(row.doc["n"].as_u64().unwrap() + 1);
        row.at = event.recorded_at.0;
        tx.put(&row).await?;
        Ok(())
    }
}

/// How many events the whole log holds.
async fn events_in_log(ports: &Ports) -> u64 {
    let chains = ports.store.chains().await.unwrap();
    chains.iter().map(|c| c.events).sum()
}

async fn append_some(ports: &Ports, n: usize) -> LogCursor {
    let mut last = LogCursor::START;
    for _ in 0..n {
        let chain = custodia_domain::ChainId::Tenant(custodia_domain::TenantId::generate());
        last = last.max(ports.store.append(one_event(chain)).await.unwrap().cursor);
    }
    last
}

async fn count(models: &Arc<dyn ReadModels>) -> u64 {
    count_of(models, &COUNTER).await
}

async fn count_of(models: &Arc<dyn ReadModels>, counter: &Counter) -> u64 {
    models
        .get(counter.model[0], "all")
        .await
        .unwrap()
        .map_or(0, |r| r.doc["n"].as_u64().unwrap())
}

async fn holder(models: &Arc<dyn ReadModels>) -> Uuid {
    models
        .checkpoints()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name == "test_counter")
        .unwrap()
        .holder
}

async fn one_runner_at_a_time_and_another_takes_over(db: TestDatabase) {
    let ports = ports(&db).await;
    let models = models(&db).await;
    let config = RunnerConfig {
        lease: Duration::from_millis(600),
        batch_size: 7,
    };
    let counter: Vec<Arc<dyn Projection>> = vec![Arc::new(COUNTER)];
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let first = start(&counter, &ports, &models, a, config);
    let second = start(&counter, &ports, &models, b, config);
    let mut last = append_some(&ports, 40).await;
    caught_up(&models, &["test_counter"], last).await;
    assert_eq!(count(&models).await, 40, "every event applied exactly once");
    let running = holder(&models).await;
    assert!(running == a || running == b);

    // A graceful stop releases the lease: the other runner takes over.
    let (stopped, other, survivor) = if running == a {
        (first, b, second)
    } else {
        (second, a, first)
    };
    stopped.stop().await;
    last = last.max(append_some(&ports, 30).await);
    caught_up(&models, &["test_counter"], last).await;
    assert_eq!(count(&models).await, 70);
    assert_eq!(holder(&models).await, other);

    // A crash (no release): a third runner takes over once the lease lapses.
    let third = start(&counter, &ports, &models, c, config);
    for task in &survivor.tasks {
        task.abort();
    }
    last = last.max(append_some(&ports, 25).await);
    caught_up(&models, &["test_counter"], last).await;
    assert_eq!(
        count(&models).await,
        95,
        "nothing skipped, nothing applied twice"
    );
    assert_eq!(holder(&models).await, c);
    drop(survivor.commits);
    third.stop().await;
}

fn mv(name: &str, from: LogCursor, to: LogCursor) -> CheckpointMove<'_> {
    CheckpointMove { name, from, to }
}

const START: LogCursor = LogCursor::START;

async fn a_commit_without_the_lease_or_from_a_stale_checkpoint_writes_nothing(db: TestDatabase) {
    let _ports = ports(&db).await;
    let models = models(&db).await;
    let (holder, intruder) = (Uuid::now_v7(), Uuid::now_v7());
    let now = Timestamp::now().0;
    let lease = 60_000_000;
    assert_eq!(
        models.acquire("p", holder, now, now + lease).await.unwrap(),
        Some(LogCursor::START)
    );
    assert_eq!(
        models
            .acquire("p", intruder, now, now + lease)
            .await
            .unwrap(),
        None,
        "a live lease is not taken"
    );
    let row = |id: &str| ModelRow {
        model: "test_row",
        id: id.into(),
        tenant: None,
        parent: None,
        kind: None,
        actor: None,
        lookup: None,
        at: 0,
        seq: 1,
        doc: json!({}),
    };
    let to = LogCursor {
        transaction: 1,
        position: 1,
    };
    // The intruder's commit is refused and rolled back.
    let mut tx = models.begin().await.unwrap();
    tx.put(&row("intruder")).await.unwrap();
    let refused = tx
        .commit(&[mv("p", START, to)], intruder, now + lease)
        .await;
    assert!(matches!(refused, Err(CommitError::LeaseLost)));
    assert_eq!(models.get("test_row", "intruder").await.unwrap(), None);
    // The holder's commit from a checkpoint that is not the current one too.
    let mut tx = models.begin().await.unwrap();
    tx.put(&row("stale")).await.unwrap();
    let refused = tx.commit(&[mv("p", to, to)], holder, now + lease).await;
    assert!(matches!(refused, Err(CommitError::LeaseLost)));
    assert_eq!(models.get("test_row", "stale").await.unwrap(), None);
    // The holder's commit from the current checkpoint lands.
    let mut tx = models.begin().await.unwrap();
    tx.put(&row("good")).await.unwrap();
    tx.commit(&[mv("p", START, to)], holder, now + lease)
        .await
        .unwrap();
    assert!(models.get("test_row", "good").await.unwrap().is_some());
    // Several checkpoints move together or not at all: one stale move
    // refuses the whole commit, and the others stay where they were.
    assert!(models
        .acquire("q", holder, now, now + lease)
        .await
        .unwrap()
        .is_some());
    let later_to = LogCursor {
        transaction: 2,
        position: 2,
    };
    let mut tx = models.begin().await.unwrap();
    tx.put(&row("half")).await.unwrap();
    let refused = tx
        .commit(
            &[mv("p", to, later_to), mv("q", to, later_to)],
            holder,
            now + lease,
        )
        .await;
    assert!(matches!(refused, Err(CommitError::LeaseLost)));
    assert_eq!(models.get("test_row", "half").await.unwrap(), None);
    let at = |name: &str, checkpoints: &[custodia_application::Checkpoint]| {
        checkpoints.iter().find(|c| c.name == name).unwrap().cursor
    };
    let checkpoints = models.checkpoints().await.unwrap();
    assert_eq!(at("p", &checkpoints), to, "p did not move alone");
    assert_eq!(at("q", &checkpoints), START);
    let mut tx = models.begin().await.unwrap();
    tx.put(&row("both")).await.unwrap();
    tx.commit(
        &[mv("p", to, later_to), mv("q", START, later_to)],
        holder,
        now + lease,
    )
    .await
    .unwrap();
    let checkpoints = models.checkpoints().await.unwrap();
    assert_eq!(
        (at("p", &checkpoints), at("q", &checkpoints)),
        (later_to, later_to)
    );
    assert!(models.get("test_row", "both").await.unwrap().is_some());
    // A lapsed lease is taken over, at the checkpoint the holder left.
    let later = now + lease + 1;
    assert_eq!(
        models
            .acquire("p", intruder, later, later + lease)
            .await
            .unwrap(),
        Some(later_to)
    );
}

/// Within a batch, reads see the batch's own changes over the committed
/// rows (on SQLite the changes stay in memory until commit): every list
/// and get answers what it answers once the batch is committed.
async fn a_batch_reads_its_own_changes_as_they_will_be_committed(db: TestDatabase) {
    let _ports = ports(&db).await;
    let models = models(&db).await;
    let holder = Uuid::now_v7();
    let now = Timestamp::now().0;
    let lease = 60_000_000;
    models.acquire("p", holder, now, now + lease).await.unwrap();
    let tenants = [Uuid::now_v7(), Uuid::now_v7()];
    let kinds = ["active", "suspended", "invited"];
    let mut seed = 7u64;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let row = |i: u64, next: &mut dyn FnMut(u64) -> u64| ModelRow {
        model: "test_row",
        id: format!("row-{i:03}"),
        tenant: Some(tenants[next(2) as usize]),
        parent: None,
        kind: (next(4) > 0).then(|| kinds[next(3) as usize].to_owned()),
        actor: None,
        lookup: None,
        at: next(100) as i64,
        seq: next(20) as i64,
        doc: json!({ "i": i }),
    };
    let mut tx = models.begin().await.unwrap();
    for i in 0..40 {
        tx.put(&row(i, &mut next)).await.unwrap();
    }
    let at = |n| LogCursor {
        transaction: n,
        position: n,
    };
    tx.commit(&[mv("p", START, at(1))], holder, now + lease)
        .await
        .unwrap();

    // A batch that changes, deletes and adds rows, some twice.
    let mut tx = models.begin().await.unwrap();
    for _ in 0..30 {
        let i = next(50);
        if next(4) == 0 {
            tx.delete("test_row", &format!("row-{i:03}")).await.unwrap();
        } else {
            tx.put(&row(i, &mut next)).await.unwrap();
        }
    }
    let mut queries = Vec::new();
    for _ in 0..60 {
        queries.push(custodia_application::RowQuery {
            model: "test_row",
            tenant: (next(2) == 0).then(|| tenants[next(2) as usize]),
            kind: (next(4) == 0).then(|| kinds[next(3) as usize].to_owned()),
            at_from: (next(3) == 0).then(|| next(50) as i64),
            at_to: (next(3) == 0).then(|| 50 + next(50) as i64),
            exclude_kinds: if next(4) == 0 {
                vec!["suspended"]
            } else {
                vec![]
            },
            after_seq: (next(3) == 0).then(|| next(20) as i64),
            offset: next(3) as usize * 3,
            limit: 1 + next(12) as usize,
            ..Default::default()
        });
    }
    let mut seen = Vec::new();
    for query in &queries {
        seen.push(tx.list(query).await.unwrap());
    }
    let mut got = Vec::new();
    for i in 0..50 {
        got.push(tx.get("test_row", &format!("row-{i:03}")).await.unwrap());
    }
    tx.commit(&[mv("p", at(1), at(2))], holder, now + lease)
        .await
        .unwrap();
    for (query, seen) in queries.iter().zip(&seen) {
        assert_eq!(&models.list(query).await.unwrap(), seen, "{query:?}");
    }
    assert!(
        seen.iter().any(|page| page.len() > 1),
        "the queries select rows"
    );
    for (i, got) in got.iter().enumerate() {
        let id = format!("row-{i:03}");
        assert_eq!(&models.get("test_row", &id).await.unwrap(), got);
    }
}

/// An event of a type the users projection handles, in a shape it cannot
/// read.
fn unreadable(tenant: custodia_domain::TenantId) -> custodia_application::AppendRequest {
    let broken = one_event(custodia_domain::ChainId::Tenant(tenant));
    let mut events = broken.events().to_vec();
    events[0].event_type = custodia_domain::EventType::parse("UserRegistered").unwrap();
    custodia_application::AppendRequest::new(
        broken.chain(),
        broken.stream().clone(),
        custodia_application::ExpectedVersion::Any,
        events,
        broken.metadata().clone(),
    )
    .unwrap()
}

async fn checkpoint(models: &Arc<dyn ReadModels>, name: &str) -> LogCursor {
    models
        .checkpoints()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name == name)
        .map_or(START, |c| c.cursor)
}

async fn projections_run_together_from_their_own_checkpoints_with_all_leases_or_none(
    db: TestDatabase,
) {
    let ports = ports(&db).await;
    let models = models(&db).await;
    let config = RunnerConfig {
        lease: Duration::from_millis(600),
        batch_size: 7,
    };
    let first: Vec<Arc<dyn Projection>> = vec![Arc::new(COUNTER)];
    let alone = start(&first, &ports, &models, Uuid::now_v7(), config);
    let mut last = append_some(&ports, 20).await;
    caught_up(&models, &["test_counter"], last).await;
    alone.stop().await;
    let first_done = checkpoint(&models, "test_counter").await;

    // Another process holds the second counter: the pair runs neither.
    let other = Uuid::now_v7();
    let now = Timestamp::now().0;
    let held = models
        .acquire("test_counter_2", other, now, now + 60_000_000)
        .await
        .unwrap();
    assert!(held.is_some());
    let both: Vec<Arc<dyn Projection>> = vec![Arc::new(COUNTER), Arc::new(SECOND_COUNTER)];
    let together = start(&both, &ports, &models, Uuid::now_v7(), config);
    last = last.max(append_some(&ports, 10).await);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        count(&models).await,
        20,
        "nothing applied without every lease"
    );
    assert_eq!(checkpoint(&models, "test_counter").await, first_done);

    // Once it is free, both run in one pass, each from its own checkpoint:
    // the first applies only what came after, the second everything.
    models.release("test_counter_2", other).await.unwrap();
    caught_up(&models, &["test_counter", "test_counter_2"], last).await;
    assert_eq!(count(&models).await, 30, "nothing applied twice");
    assert_eq!(count_of(&models, &SECOND_COUNTER).await, 30);
    together.stop().await;
}

async fn a_projection_that_cannot_read_an_event_halts_alone(db: TestDatabase) {
    let ports = ports(&db).await;
    let models = models(&db).await;
    let (tenant, _) = tenant_with_owner(&ports, "owner@example.org", None).await;
    let users = identity::all()
        .into_iter()
        .find(|p| p.name() == "users")
        .unwrap();
    let group: Vec<Arc<dyn Projection>> = vec![users, Arc::new(COUNTER)];
    let config = RunnerConfig {
        lease: Duration::from_millis(600),
        batch_size: 3,
    };
    let running = start(&group, &ports, &models, Uuid::now_v7(), config);
    let broken = ports.store.append(unreadable(tenant)).await.unwrap().cursor;
    let last = append_some(&ports, 10).await;
    caught_up(&models, &["test_counter"], last).await;
    let events = events_in_log(&ports).await;
    assert_eq!(
        count(&models).await,
        events,
        "the other applied every event once"
    );
    let users_at = checkpoint(&models, "users").await;
    assert!(
        users_at < broken,
        "users stopped before the event it cannot read"
    );
    assert!(
        users_at > START,
        "users applied what came before it (the tenant's owner)"
    );
    assert_eq!(models.dump("user").await.unwrap().len(), 1);
    running.stop().await;
}

async fn events_of_unknown_types_are_skipped_and_unreadable_ones_halt(db: TestDatabase) {
    use custodia_domain::ChainId;
    let ports = ports(&db).await;
    let models = models(&db).await;
    let (tenant, _) = tenant_with_owner(&ports, "owner@example.org", None).await;
    // A type none of them handles (another tool's, or a newer version's),
    // in a category the users projection reads, between real events.
    ports
        .store
        .append(one_event(ChainId::Tenant(tenant)))
        .await
        .unwrap();
    let new = NewUser {
        address_vouched: false,
        user: Uuid::now_v7(),
        email: "later@example.org".into(),
        profile: Profile::default(),
        invited: false,
        password: None,
    };
    register_user(&ports, &operator(), tenant, new)
        .await
        .unwrap();
    let skipped = custodia_projections::skipped_events();
    // (On PostgreSQL a rebuild reads only below the oldest transaction still
    // running anywhere on the server, so it may need another round.)
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        rebuild(
            &identity::all(),
            &ports.store,
            &*models,
            RunnerConfig::default(),
            |_| {},
        )
        .await
        .unwrap_or_else(|e| panic!("a projection halted: {e}"));
        if models.dump("user").await.unwrap().len() == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the event after the unknown one was never applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(custodia_projections::skipped_events() > skipped, "counted");

    // A type the users projection handles, in a shape it cannot read: it
    // halts there, rather than skip a change it should have shown.
    ports.store.append(unreadable(tenant)).await.unwrap();
    let users = identity::all()
        .into_iter()
        .find(|p| p.name() == "users")
        .unwrap();
    let halted = rebuild(
        &[users],
        &ports.store,
        &*models,
        RunnerConfig::default(),
        |_| {},
    )
    .await;
    assert!(
        matches!(halted, Err(ProjectionError::Unreadable { .. })),
        "{halted:?}"
    );
}
