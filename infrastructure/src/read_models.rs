//! `SqlReadModels`: the [`ReadModels`] adapter, one implementation for
//! SQLite and PostgreSQL (the SQL is the same; only the pool differs).

use async_trait::async_trait;
use custodia_application::{
    Checkpoint, CommitError, ModelRow, ReadModelTx, ReadModels, RowQuery, StoreError,
};
use custodia_domain::LogCursor;
use sqlx::sqlite::SqliteSynchronous;
use sqlx::{Postgres, Sqlite, Transaction};
use uuid::Uuid;

use std::str::FromStr;
use std::sync::Arc;

use crate::inline_reader::InlineReader;
use crate::pools::{on_pool, Pools};
use crate::stored::{store_error, to_i64};

const COLUMNS: &str = "id, tenant_id, parent_id, kind, actor_id, lookup, at, seq, doc";

type RawRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    i64,
    String,
);

/// The read-model tables of one database.
#[derive(Clone)]
pub struct SqlReadModels {
    pools: Pools,
    /// On SQLite: reads run here, on the caller's thread
    /// (`inline_reader.rs`), and projection batches are written by one
    /// thread (`read_models/buffered.rs`).
    sqlite: Option<(Arc<InlineReader>, Arc<buffered::Writer>)>,
}

/// [`on_pool!`], inside an open transaction.
macro_rules! on_tx {
    (exec $tx:expr, $conn:ident => $query:expr) => {
        match $tx {
            Tx::Sqlite($conn) => $query
                .await
                .map(|done| done.rows_affected())
                .map_err(store_error),
            Tx::Postgres($conn) => $query
                .await
                .map(|done| done.rows_affected())
                .map_err(store_error),
        }
    };
    ($tx:expr, $conn:ident => $query:expr) => {
        match $tx {
            Tx::Sqlite($conn) => $query.await.map_err(store_error),
            Tx::Postgres($conn) => $query.await.map_err(store_error),
        }
    };
}

impl SqlReadModels {
    /// Connects to the database at `url` (its schema must be migrated).
    /// Read models are rebuilt from the log at will, and each commit
    /// carries its checkpoint: on SQLite a commit lost to a power cut
    /// leaves an older, consistent state that the runner brings forward
    /// again, so commits are not fsynced (`synchronous=NORMAL`).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pools = Pools::connect(url, SqliteSynchronous::Normal, 4, 8).await?;
        let sqlite = match &pools {
            Pools::Sqlite(_) => {
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                    .map_err(|e| StoreError::unavailable(format!("bad SQLite URL: {e}")))?;
                let path = options.get_filename();
                Some((
                    Arc::new(InlineReader::new(path)),
                    Arc::new(buffered::Writer::start(path)?),
                ))
            }
            Pools::Postgres(_) => None,
        };
        Ok(Self { pools, sqlite })
    }
}

fn decode(model: &'static str, raw: RawRow) -> Result<ModelRow, StoreError> {
    let (id, tenant, parent, kind, actor, lookup, at, seq, doc) = raw;
    let corrupt = || StoreError::corrupt(format!("read model {model} row {id} is unreadable"));
    let uuid = |value: Option<String>| -> Result<Option<Uuid>, StoreError> {
        value
            .map(|text| Uuid::parse_str(&text).map_err(|_| corrupt()))
            .transpose()
    };
    Ok(ModelRow {
        model,
        tenant: uuid(tenant)?,
        parent: uuid(parent)?,
        kind,
        actor: uuid(actor)?,
        lookup,
        at,
        seq,
        doc: serde_json::from_str(&doc).map_err(|_| corrupt())?,
        id,
    })
}

fn decode_all(model: &'static str, rows: Vec<RawRow>) -> Result<Vec<ModelRow>, StoreError> {
    rows.into_iter().map(|raw| decode(model, raw)).collect()
}

fn cursor(transaction: i64, position: i64) -> LogCursor {
    LogCursor {
        transaction: u64::try_from(transaction).unwrap_or_default(),
        position: u64::try_from(position).unwrap_or_default(),
    }
}

const GET: &str = "SELECT id, tenant_id, parent_id, kind, actor_id, lookup, at, seq, doc \
                   FROM read_models WHERE model = $1 AND id = $2";

const PUT: &str = "INSERT INTO read_models \
    (model, id, tenant_id, parent_id, kind, actor_id, lookup, at, seq, doc) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
    ON CONFLICT (model, id) DO UPDATE SET tenant_id = excluded.tenant_id, \
    parent_id = excluded.parent_id, kind = excluded.kind, actor_id = excluded.actor_id, \
    lookup = excluded.lookup, at = excluded.at, seq = excluded.seq, doc = excluded.doc";

/// The list query for `query`, with its parameters in order.
fn list_sql(query: &RowQuery) -> (String, Vec<Param>) {
    let (mut sql, mut params) = where_sql(query, &format!("SELECT {COLUMNS}"));
    params.push(Param::Int(to_i64(query.limit as u64)));
    sql.push_str(&format!(" ORDER BY seq, id LIMIT ${}", params.len()));
    params.push(Param::Int(to_i64(query.offset as u64)));
    sql.push_str(&format!(" OFFSET ${}", params.len()));
    (sql, params)
}

/// `select` over the rows `query` selects, and its parameters.
fn where_sql(query: &RowQuery, select: &str) -> (String, Vec<Param>) {
    let mut sql = format!("{select} FROM read_models WHERE model = $1");
    let mut params = vec![Param::Text(query.model.to_owned())];
    let mut filter = |column: &str, op: &str, param: Param| {
        params.push(param);
        sql.push_str(&format!(" AND {column} {op} ${}", params.len()));
    };
    let text = |value: &Option<Uuid>| value.map(|u| Param::Text(u.to_string()));
    if let Some(p) = text(&query.tenant) {
        filter("tenant_id", "=", p);
    }
    if let Some(p) = text(&query.parent) {
        filter("parent_id", "=", p);
    }
    if let Some(p) = text(&query.actor) {
        filter("actor_id", "=", p);
    }
    if let Some(kind) = &query.kind {
        filter("kind", "=", Param::Text(kind.clone()));
    }
    if let Some(lookup) = &query.lookup {
        filter("lookup", "=", Param::Text(lookup.clone()));
    }
    if let Some(from) = query.at_from {
        filter("at", ">=", Param::Int(from));
    }
    if let Some(to) = query.at_to {
        filter("at", "<", Param::Int(to));
    }
    if let Some(after) = query.after_seq {
        filter("seq", ">", Param::Int(after));
    }
    for kind in &query.exclude_kinds {
        params.push(Param::Text((*kind).to_owned()));
        // A row without a kind is none of them.
        sql.push_str(&format!(" AND (kind IS NULL OR kind <> ${})", params.len()));
    }
    (sql, params)
}

enum Param {
    Text(String),
    Int(i64),
}

/// Binds `params` to `$1`, `$2`, … by name (SQLite numbers named
/// parameters in order of appearance, which need not be theirs).
fn bind_all(statement: &mut rusqlite::Statement<'_>, params: &[Param]) -> rusqlite::Result<()> {
    for (n, param) in params.iter().enumerate() {
        let Some(index) = statement.parameter_index(&format!("${}", n + 1))? else {
            continue;
        };
        match param {
            Param::Text(text) => statement.raw_bind_parameter(index, text)?,
            Param::Int(int) => statement.raw_bind_parameter(index, int)?,
        }
    }
    Ok(())
}

/// The rows of a `COLUMNS` select, read on the caller's thread.
fn read_rows(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[Param],
) -> rusqlite::Result<Vec<RawRow>> {
    let mut statement = conn.prepare_cached(sql)?;
    bind_all(&mut statement, params)?;
    let mut rows = statement.raw_query();
    let mut read = Vec::new();
    while let Some(row) = rows.next()? {
        read.push((
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
            row.get(6)?,
            row.get(7)?,
            row.get(8)?,
        ));
    }
    Ok(read)
}

macro_rules! bind_params {
    (scalar $sql:expr, $params:expr) => {{
        bind_params!(@bind sqlx::query_scalar::<_, i64>($sql), $params)
    }};
    ($sql:expr, $params:expr) => {{
        bind_params!(@bind sqlx::query_as::<_, RawRow>($sql), $params)
    }};
    (@bind $query:expr, $params:expr) => {{
        let mut query = $query;
        for param in $params {
            query = match param {
                Param::Text(text) => query.bind(text),
                Param::Int(int) => query.bind(int),
            };
        }
        query
    }};
}

#[async_trait]
impl ReadModels for SqlReadModels {
    async fn begin(&self) -> Result<Box<dyn ReadModelTx>, StoreError> {
        let committed = match (&self.sqlite, &self.pools) {
            (Some((inline, writer)), _) => buffered::Committed::Sqlite {
                inline: inline.clone(),
                writer: writer.clone(),
            },
            (None, Pools::Postgres(pool)) => buffered::Committed::Postgres(pool.clone()),
            (None, Pools::Sqlite(_)) => {
                return Err(StoreError::unavailable(
                    "the SQLite read-model writer is not running".to_owned(),
                ))
            }
        };
        Ok(Box::new(buffered::BufferedTx::new(committed)))
    }

    async fn acquire(
        &self,
        name: &str,
        holder: Uuid,
        now: i64,
        until: i64,
    ) -> Result<Option<LogCursor>, StoreError> {
        let sql = "INSERT INTO projection_checkpoints \
                   (name, transaction_id, position, holder, lease_until) VALUES ($1, 0, 0, $2, $3) \
                   ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, lease_until = excluded.lease_until \
                   WHERE projection_checkpoints.holder = excluded.holder \
                      OR projection_checkpoints.lease_until < $4 \
                   RETURNING transaction_id, position";
        let row: Option<(i64, i64)> = on_pool!(&self.pools, pool => sqlx::query_as(sql)
            .bind(name).bind(holder.to_string()).bind(until).bind(now).fetch_optional(pool))?;
        Ok(row.map(|(transaction, position)| cursor(transaction, position)))
    }

    async fn release(&self, name: &str, holder: Uuid) -> Result<(), StoreError> {
        if let Some((_, writer)) = &self.sqlite {
            return writer.release(name, holder).await;
        }
        let sql =
            "UPDATE projection_checkpoints SET lease_until = 0 WHERE name = $1 AND holder = $2";
        on_pool!(exec &self.pools, pool => sqlx::query(sql).bind(name).bind(holder.to_string()).execute(pool))?;
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let sql = "SELECT name, transaction_id, position, holder, lease_until \
                   FROM projection_checkpoints ORDER BY name";
        let rows: Vec<(String, i64, i64, String, i64)> =
            on_pool!(&self.pools, pool => sqlx::query_as(sql).fetch_all(pool))?;
        rows.into_iter()
            .map(|(name, transaction, position, holder, lease_until)| {
                Ok(Checkpoint {
                    cursor: cursor(transaction, position),
                    holder: Uuid::parse_str(&holder).map_err(|_| {
                        StoreError::corrupt(format!("projection {name} has an unreadable holder"))
                    })?,
                    name,
                    lease_until,
                })
            })
            .collect()
    }

    async fn reset(
        &self,
        name: &str,
        models: &[&'static str],
        holder: Uuid,
    ) -> Result<(), CommitError> {
        let mut tx = self.begin_tx().await?;
        let sql = "UPDATE projection_checkpoints SET transaction_id = 0, position = 0 \
                   WHERE name = $1 AND holder = $2";
        let done = on_tx!(exec &mut tx, conn => sqlx::query(sql).bind(name).bind(holder.to_string()).execute(&mut **conn))?;
        if done != 1 {
            return Err(CommitError::LeaseLost);
        }
        for model in models {
            let sql = "DELETE FROM read_models WHERE model = $1";
            on_tx!(exec &mut tx, conn => sqlx::query(sql).bind(*model).execute(&mut **conn))?;
        }
        tx.commit_now().await?;
        Ok(())
    }

    async fn get(&self, model: &'static str, id: &str) -> Result<Option<ModelRow>, StoreError> {
        if let Some((inline, _)) = &self.sqlite {
            let params = [Param::Text(model.to_owned()), Param::Text(id.to_owned())];
            let mut rows = inline.read(|conn| read_rows(conn, GET, &params))?;
            return rows.pop().map(|raw| decode(model, raw)).transpose();
        }
        let row: Option<RawRow> = on_pool!(&self.pools, pool => sqlx::query_as(GET).bind(model).bind(id).fetch_optional(pool))?;
        row.map(|raw| decode(model, raw)).transpose()
    }

    async fn list(&self, query: &RowQuery) -> Result<Vec<ModelRow>, StoreError> {
        let (sql, params) = list_sql(query);
        if let Some((inline, _)) = &self.sqlite {
            let rows = inline.read(|conn| read_rows(conn, &sql, &params))?;
            return decode_all(query.model, rows);
        }
        let rows = on_pool!(&self.pools, pool => bind_params!(&sql, params).fetch_all(pool))?;
        decode_all(query.model, rows)
    }

    async fn count(&self, query: &RowQuery) -> Result<u64, StoreError> {
        let (sql, params) = where_sql(query, "SELECT COUNT(*)");
        let count: i64 = match &self.sqlite {
            Some((inline, _)) => inline.read(|conn| {
                let mut statement = conn.prepare_cached(&sql)?;
                bind_all(&mut statement, &params)?;
                let mut rows = statement.raw_query();
                match rows.next()? {
                    Some(row) => row.get(0),
                    None => Ok(0),
                }
            })?,
            None => {
                on_pool!(&self.pools, pool => bind_params!(scalar &sql, params).fetch_one(pool))?
            }
        };
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn dump(&self, model: &'static str) -> Result<Vec<ModelRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM read_models WHERE model = $1 ORDER BY seq, id");
        let rows = on_pool!(&self.pools, pool => sqlx::query_as(&sql).bind(model).fetch_all(pool))?;
        decode_all(model, rows)
    }
}

impl SqlReadModels {
    async fn begin_tx(&self) -> Result<Tx, StoreError> {
        Ok(match &self.pools {
            // IMMEDIATE: take the write lock now, so a read-then-write
            // transaction never fails on upgrade when the log writer commits.
            Pools::Sqlite(pool) => Tx::Sqlite(
                pool.begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(store_error)?,
            ),
            Pools::Postgres(pool) => Tx::Postgres(pool.begin().await.map_err(store_error)?),
        })
    }
}

/// An open read-model transaction; dropped without commit, it rolls back.
enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl Tx {
    async fn commit_now(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await.map_err(store_error),
            Tx::Postgres(tx) => tx.commit().await.map_err(store_error),
        }
    }
}

mod buffered;
