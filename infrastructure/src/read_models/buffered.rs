//! Read-model transactions that write once, at commit (issue 14). A
//! projection batch reads the committed rows, with the batch's own changes
//! over them; its changes are kept in memory and written at commit with the
//! checkpoint moves checked first: on SQLite in one job on the read-model
//! writer thread (reads on the caller's thread, no hop per statement), on
//! PostgreSQL in one transaction of at most three statements (not one
//! round trip per row).
//!
//! Reading committed rows outside a write transaction is safe because only
//! the holder of a projection's lease writes its rows, and the commit
//! checks that the lease and every checkpoint are still where the batch
//! began: if anyone else wrote meanwhile, the whole batch is refused.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{mpsc, Arc, LazyLock};

use async_trait::async_trait;
use custodia_application::{
    CheckpointMove, CommitError, ModelRow, ReadModelTx, RowQuery, StoreError,
};
use rusqlite::{params, Connection, OpenFlags, TransactionBehavior};
use tokio::sync::oneshot;

use sqlx::PgPool;

use super::{decode, list_sql, read_rows, Param, RawRow, GET, PUT};
use crate::inline_reader::{sqlite_error, wait_briefly_when_busy, InlineReader};
use crate::stored::{store_error, to_i64};

/// A row's change in a batch: `None` deletes it.
type Changes = BTreeMap<(&'static str, String), Option<ModelRow>>;

/// What the writer thread commits: a batch's changes and checkpoint moves.
struct Batch {
    changes: Changes,
    /// (name, from, to), as `CheckpointMove` but owned.
    moves: Vec<(String, [i64; 2], [i64; 2])>,
    holder: String,
    lease_until: i64,
}

enum Job {
    Commit(Batch, oneshot::Sender<Result<(), CommitError>>),
    /// A lease given up: after every batch queued before it, so a batch
    /// still queued when its runner stops cannot renew the lease after.
    Release {
        name: String,
        holder: String,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// The thread that writes read-model batches; it stops when the last
/// handle is dropped.
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Opens the writer's connection to `path` (`synchronous=NORMAL`, as
    /// the read models' pool) and starts its thread.
    pub(super) fn start(path: &Path) -> Result<Self, StoreError> {
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite_error)?;
        wait_briefly_when_busy(&conn).map_err(sqlite_error)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(sqlite_error)?;
        let (jobs, queued) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("custodia-read-models".into())
            .spawn(move || {
                while let Ok(job) = queued.recv() {
                    match job {
                        Job::Commit(batch, reply) => {
                            let _ = reply.send(write(&mut conn, &batch));
                        }
                        Job::Release {
                            name,
                            holder,
                            reply,
                        } => {
                            let _ = reply.send(release(&conn, &name, &holder));
                        }
                    }
                }
            })
            .map_err(|e| StoreError::unavailable(format!("cannot start a thread: {e}")))?;
        Ok(Self { jobs })
    }
}

impl Writer {
    /// Gives up `holder`'s lease of projection `name`, after every batch
    /// already queued.
    pub(super) async fn release(&self, name: &str, holder: uuid::Uuid) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Job::Release {
            name: name.to_owned(),
            holder: holder.to_string(),
            reply,
        };
        let stopped = || StoreError::unavailable("the read-model writer has stopped".to_owned());
        self.jobs.send(job).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn release(conn: &Connection, name: &str, holder: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE projection_checkpoints SET lease_until = 0 WHERE name = ?1 AND holder = ?2",
    )
    .and_then(|mut statement| statement.execute(params![name, holder]))
    .map_err(sqlite_error)?;
    Ok(())
}

static PUT_SQL: LazyLock<String> = LazyLock::new(|| PUT.replace('$', "?"));

const MOVE_SQL: &str = "UPDATE projection_checkpoints \
    SET transaction_id = ?1, position = ?2, lease_until = ?3 \
    WHERE name = ?4 AND holder = ?5 AND transaction_id = ?6 AND position = ?7";

/// Commits one batch: every checkpoint move first (any refused: nothing is
/// written), then the rows.
fn write(conn: &mut Connection, job: &Batch) -> Result<(), CommitError> {
    let store = |e: rusqlite::Error| CommitError::Store(sqlite_error(e));
    // IMMEDIATE: the write lock at once, so the checks and the writes see
    // one state.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(store)?;
    for (name, from, to) in &job.moves {
        let moved = tx
            .prepare_cached(MOVE_SQL)
            .and_then(|mut s| {
                s.execute(params![
                    to[0],
                    to[1],
                    job.lease_until,
                    name,
                    job.holder,
                    from[0],
                    from[1]
                ])
            })
            .map_err(store)?;
        if moved != 1 {
            return Err(CommitError::LeaseLost);
        }
    }
    for ((model, id), change) in &job.changes {
        match change {
            Some(row) => tx
                .prepare_cached(&PUT_SQL)
                .and_then(|mut s| {
                    s.execute(params![
                        row.model,
                        row.id,
                        row.tenant.map(|u| u.to_string()),
                        row.parent.map(|u| u.to_string()),
                        row.kind,
                        row.actor.map(|u| u.to_string()),
                        row.lookup,
                        row.at,
                        row.seq,
                        row.doc.to_string(),
                    ])
                })
                .map_err(store)?,
            None => tx
                .prepare_cached("DELETE FROM read_models WHERE model = ?1 AND id = ?2")
                .and_then(|mut s| s.execute(params![model, id]))
                .map_err(store)?,
        };
    }
    tx.commit().map_err(store)
}

/// Where a batch reads committed rows and writes its changes.
pub(super) enum Committed {
    Sqlite {
        inline: Arc<InlineReader>,
        writer: Arc<Writer>,
    },
    Postgres(PgPool),
}

/// A projection batch's transaction.
pub(super) struct BufferedTx {
    committed: Committed,
    changes: Changes,
}

impl BufferedTx {
    pub(super) fn new(committed: Committed) -> Self {
        Self {
            committed,
            changes: Changes::new(),
        }
    }

    async fn committed(&self, query: &RowQuery) -> Result<Vec<ModelRow>, StoreError> {
        let (sql, params) = list_sql(query);
        let rows: Vec<RawRow> = match &self.committed {
            Committed::Sqlite { inline, .. } => {
                inline.read(|conn| read_rows(conn, &sql, &params))?
            }
            Committed::Postgres(pool) => bind_params!(&sql, params)
                .fetch_all(pool)
                .await
                .map_err(store_error)?,
        };
        rows.into_iter()
            .map(|raw| decode(query.model, raw))
            .collect()
    }
}

/// Whether `row` is one `query` selects (as `where_sql` says in SQL).
fn selects(query: &RowQuery, row: &ModelRow) -> bool {
    let same = |wanted: &Option<uuid::Uuid>, value: &Option<uuid::Uuid>| {
        wanted.is_none() || wanted == value
    };
    let same_text =
        |wanted: &Option<String>, value: &Option<String>| wanted.is_none() || wanted == value;
    row.model == query.model
        && same(&query.tenant, &row.tenant)
        && same(&query.parent, &row.parent)
        && same(&query.actor, &row.actor)
        && same_text(&query.kind, &row.kind)
        && same_text(&query.lookup, &row.lookup)
        && query.at_from.is_none_or(|from| row.at >= from)
        && query.at_to.is_none_or(|to| row.at < to)
        && query.after_seq.is_none_or(|after| row.seq > after)
        && row
            .kind
            .as_deref()
            .is_none_or(|kind| !query.exclude_kinds.contains(&kind))
}

#[async_trait]
impl ReadModelTx for BufferedTx {
    async fn get(&mut self, model: &'static str, id: &str) -> Result<Option<ModelRow>, StoreError> {
        if let Some(change) = self.changes.get(&(model, id.to_owned())) {
            return Ok(change.clone());
        }
        let row: Option<RawRow> = match &self.committed {
            Committed::Sqlite { inline, .. } => {
                let params = [Param::Text(model.to_owned()), Param::Text(id.to_owned())];
                inline.read(|conn| read_rows(conn, GET, &params))?.pop()
            }
            Committed::Postgres(pool) => sqlx::query_as(GET)
                .bind(model)
                .bind(id)
                .fetch_optional(pool)
                .await
                .map_err(store_error)?,
        };
        row.map(|raw| decode(model, raw)).transpose()
    }

    async fn put(&mut self, row: &ModelRow) -> Result<(), StoreError> {
        self.changes
            .insert((row.model, row.id.clone()), Some(row.clone()));
        Ok(())
    }

    async fn delete(&mut self, model: &'static str, id: &str) -> Result<(), StoreError> {
        self.changes.insert((model, id.to_owned()), None);
        Ok(())
    }

    async fn list(&mut self, query: &RowQuery) -> Result<Vec<ModelRow>, StoreError> {
        let model = query.model;
        let pending: Vec<(&String, &Option<ModelRow>)> = self
            .changes
            .range((model, String::new())..)
            .take_while(|((m, _), _)| *m == model)
            .map(|((_, id), change)| (id, change))
            .collect();
        if pending.is_empty() {
            return self.committed(query).await;
        }
        // The committed rows the answer can hold: at most `pending.len()`
        // of the first `offset + limit + pending.len()` are changed here.
        let mut wider = query.clone();
        wider.offset = 0;
        wider.limit = query
            .offset
            .saturating_add(query.limit)
            .saturating_add(pending.len());
        let mut rows: Vec<ModelRow> = self
            .committed(&wider)
            .await?
            .into_iter()
            .filter(|row| !self.changes.contains_key(&(model, row.id.clone())))
            .collect();
        rows.extend(
            pending
                .into_iter()
                .filter_map(|(_, change)| change.as_ref())
                .filter(|row| selects(query, row))
                .cloned(),
        );
        rows.sort_by(|a, b| (a.seq, &a.id).cmp(&(b.seq, &b.id)));
        Ok(rows
            .into_iter()
            .skip(query.offset)
            .take(query.limit)
            .collect())
    }

    async fn commit(
        self: Box<Self>,
        moves: &[CheckpointMove<'_>],
        holder: uuid::Uuid,
        lease_until: i64,
    ) -> Result<(), CommitError> {
        let cursor = |c: custodia_domain::LogCursor| [to_i64(c.transaction), to_i64(c.position)];
        let (reply, answer) = oneshot::channel();
        let batch = Batch {
            changes: self.changes,
            moves: moves
                .iter()
                .map(|m| (m.name.to_owned(), cursor(m.from), cursor(m.to)))
                .collect(),
            holder: holder.to_string(),
            lease_until,
        };
        let writer = match &self.committed {
            Committed::Sqlite { writer, .. } => writer,
            Committed::Postgres(pool) => return write_postgres(pool, &batch).await,
        };
        let stopped = || {
            CommitError::Store(StoreError::unavailable(
                "the read-model writer has stopped".to_owned(),
            ))
        };
        writer
            .jobs
            .send(Job::Commit(batch, reply))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Commits one batch on PostgreSQL: every checkpoint move in one statement
/// (any refused: nothing is written), then every row written and every row
/// deleted, one statement each.
async fn write_postgres(pool: &PgPool, batch: &Batch) -> Result<(), CommitError> {
    let store = |e: sqlx::Error| CommitError::Store(store_error(e));
    let mut tx = pool.begin().await.map_err(store)?;
    let moves = &batch.moves;
    let names: Vec<&str> = moves.iter().map(|(name, _, _)| name.as_str()).collect();
    let moved = sqlx::query(
        "UPDATE projection_checkpoints AS p \
         SET transaction_id = m.to_t, position = m.to_p, lease_until = $6 \
         FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[]) \
           AS m(name, from_t, from_p, to_t, to_p) \
         WHERE p.name = m.name AND p.holder = $7 \
           AND p.transaction_id = m.from_t AND p.position = m.from_p",
    )
    .bind(&names)
    .bind(moves.iter().map(|m| m.1[0]).collect::<Vec<_>>())
    .bind(moves.iter().map(|m| m.1[1]).collect::<Vec<_>>())
    .bind(moves.iter().map(|m| m.2[0]).collect::<Vec<_>>())
    .bind(moves.iter().map(|m| m.2[1]).collect::<Vec<_>>())
    .bind(batch.lease_until)
    .bind(&batch.holder)
    .execute(&mut *tx)
    .await
    .map_err(store)?
    .rows_affected();
    if moved != moves.len() as u64 {
        // Dropped uncommitted: nothing of the batch stays.
        return Err(CommitError::LeaseLost);
    }
    let rows: Vec<&ModelRow> = batch.changes.values().flatten().collect();
    if !rows.is_empty() {
        let uuid = |value: Option<uuid::Uuid>| value.map(|u| u.to_string());
        sqlx::query(
            "INSERT INTO read_models \
             (model, id, tenant_id, parent_id, kind, actor_id, lookup, at, seq, doc) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
               $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::text[]) \
             ON CONFLICT (model, id) DO UPDATE SET tenant_id = excluded.tenant_id, \
             parent_id = excluded.parent_id, kind = excluded.kind, actor_id = excluded.actor_id, \
             lookup = excluded.lookup, at = excluded.at, seq = excluded.seq, doc = excluded.doc",
        )
        .bind(rows.iter().map(|row| row.model).collect::<Vec<_>>())
        .bind(rows.iter().map(|row| row.id.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|row| uuid(row.tenant)).collect::<Vec<_>>())
        .bind(rows.iter().map(|row| uuid(row.parent)).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|row| row.kind.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|row| uuid(row.actor)).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|row| row.lookup.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|row| row.at).collect::<Vec<_>>())
        .bind(rows.iter().map(|row| row.seq).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|row| row.doc.to_string())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await
        .map_err(store)?;
    }
    let (models, ids): (Vec<&str>, Vec<&str>) = batch
        .changes
        .iter()
        .filter(|(_, change)| change.is_none())
        .map(|((model, id), _)| (*model, id.as_str()))
        .unzip();
    if !models.is_empty() {
        sqlx::query(
            "DELETE FROM read_models WHERE (model, id) IN \
             (SELECT * FROM unnest($1::text[], $2::text[]))",
        )
        .bind(&models)
        .bind(&ids)
        .execute(&mut *tx)
        .await
        .map_err(store)?;
    }
    tx.commit().await.map_err(store)
}
