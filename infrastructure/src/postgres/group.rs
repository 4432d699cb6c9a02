//! A group of single appends in one transaction and four round trips,
//! however many appends it holds: BEGIN with every chain lock, one lookup
//! for all of them, one insert of every event and idempotency record, and
//! COMMIT. Each append is decided in memory in queue order, seeing the
//! appends before it in the group as committed (a chain's head, a stream's
//! version), exactly as if they had run one after another.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use custodia_application::{
    AppendContext, AppendDecision, AppendError, AppendRequest, Appended, StoreError,
};
use custodia_domain::chain::ChainHead;
use custodia_domain::{
    ChainId, ChainIndex, LogCursor, Position, RecordedEvent, StreamId, Timestamp,
};
use sqlx::postgres::PgPool;
use sqlx::Row;
use uuid::Uuid;

use crate::stored::{append_context, store_error, to_i64};

/// The append lookup of `stored::lookup_sql`, for many appends at once
/// (same columns, one row per append in the order given).
const LOOKUP_MANY: &str = "
SELECT c.stream_category, c.stream_id, c.event_count, c.last_version,
       c.last_chain_index, c.last_position, c.transaction_id,
       s.chain_id, s.stream_version, h.chain_index, h.hash
FROM UNNEST($1::text[], $2::uuid[], $3::uuid[], $4::uuid[]) WITH ORDINALITY
     AS r(stream_category, stream_id, chain_id, command_id, n)
LEFT JOIN commands c ON c.command_id = r.command_id
LEFT JOIN LATERAL (SELECT chain_id, stream_version FROM events
                   WHERE stream_category = r.stream_category AND stream_id = r.stream_id
                   ORDER BY stream_version DESC LIMIT 1) s ON true
LEFT JOIN LATERAL (SELECT chain_index, hash FROM events
                   WHERE chain_id = r.chain_id ORDER BY chain_index DESC LIMIT 1) h ON true
ORDER BY r.n";

/// Every event of the group and one idempotency record per append, in one
/// statement. Events are inserted in the order given (queue order, chain
/// order within an append), so identity positions increase along each
/// chain. Answers each command's last position and the transaction id.
static INSERT_MANY: LazyLock<String> = LazyLock::new(|| {
    "
WITH inserted AS (
    INSERT INTO events (event_id, chain_id, chain_index, stream_category, stream_id,
        stream_version, event_type, schema_version, payload, actor, command_id, correlation_id,
        causation_id, origin, recorded_at, prev_hash, hash)
    SELECT e.event_id, e.chain_id, e.chain_index, e.stream_category, e.stream_id,
           e.stream_version, e.event_type, e.schema_version, e.payload, e.actor, e.command_id,
           e.correlation_id, e.causation_id, e.origin, e.recorded_at, e.prev_hash, e.hash
    FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::uuid[], $6::bigint[],
                $7::text[], $8::int[], $9::bytea[], $10::text[], $11::uuid[], $12::uuid[],
                $13::uuid[], $14::text[], $15::bigint[], $16::bytea[], $17::bytea[])
         WITH ORDINALITY
         AS e(event_id, chain_id, chain_index, stream_category, stream_id, stream_version,
              event_type, schema_version, payload, actor, command_id, correlation_id,
              causation_id, origin, recorded_at, prev_hash, hash, n)
    ORDER BY e.n
    RETURNING command_id, position, transaction_id
), last AS (
    SELECT command_id, max(position) AS position, max(transaction_id) AS transaction_id
    FROM inserted GROUP BY command_id
), recorded AS (
    INSERT INTO commands (command_id, chain_id, stream_category, stream_id, event_count,
        last_position, last_version, last_chain_index, transaction_id)
    SELECT c.command_id, c.chain_id, c.stream_category, c.stream_id, c.event_count,
           l.position, c.last_version, c.last_chain_index, l.transaction_id
    FROM UNNEST($18::uuid[], $19::uuid[], $20::text[], $21::uuid[], $22::bigint[],
                $23::bigint[], $24::bigint[])
         AS c(command_id, chain_id, stream_category, stream_id, event_count, last_version,
              last_chain_index)
    JOIN last l ON l.command_id = c.command_id
)
SELECT command_id, position, transaction_id FROM last"
        .to_owned()
});

/// Why a group could not be written as one; nothing of it was.
pub(super) enum Abandoned {
    /// The database refused a statement (a unique key raced, a deadlock)
    /// or a retry races its first try: each append runs again on its own.
    OneByOne,
    /// The database cannot be used: every append of the group fails so.
    Failed(StoreError),
}

fn abandon(error: sqlx::Error) -> Abandoned {
    match error {
        sqlx::Error::Database(_) => Abandoned::OneByOne,
        other => Abandoned::Failed(store_error(other)),
    }
}

/// Decides and writes `requests` in one transaction. One answer per
/// request (an append its decision refuses fails alone), or `None` for an
/// append whose chain another transaction holds (an atomic append, another
/// instance's group): it waits for its lock on its own, so that one busy
/// chain never holds up the others.
pub(super) async fn append_group(
    pool: &PgPool,
    requests: &[AppendRequest],
) -> Result<Vec<Option<Result<Appended, AppendError>>>, Abandoned> {
    // A retry racing its own first try: the replay needs the first one's
    // position, known only after the insert. Rare; let each run alone.
    let mut commands = HashSet::new();
    if !requests.iter().all(|r| commands.insert(r.command_id())) {
        return Err(Abandoned::OneByOne);
    }
    let mut tx = pool.begin().await.map_err(abandon)?;
    // Try every chain lock before anything is read or written (so this
    // transaction's id still follows chain order; ADR 0002). A try never
    // waits, so two groups can never wait for each other.
    let keys = super::chain_lock_keys(requests);
    let busy: HashSet<i64> = sqlx::query_scalar::<_, i64>(
        "SELECT k FROM unnest($1::bigint[]) AS k WHERE NOT pg_try_advisory_xact_lock(k)",
    )
    .bind(&keys)
    .fetch_all(&mut *tx)
    .await
    .map_err(abandon)?
    .into_iter()
    .collect();
    let included: Vec<usize> = (0..requests.len())
        .filter(|&i| !busy.contains(&super::lock_key(requests[i].chain())))
        .collect();
    let mut answers: Vec<Option<Result<Appended, AppendError>>> =
        requests.iter().map(|_| None).collect();
    if included.is_empty() {
        return Ok(answers);
    }
    let requests: Vec<&AppendRequest> = included.iter().map(|&i| &requests[i]).collect();
    let rows = sqlx::query(LOOKUP_MANY)
        .bind(
            requests
                .iter()
                .map(|r| r.stream().category.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(requests.iter().map(|r| r.stream().id).collect::<Vec<_>>())
        .bind(
            requests
                .iter()
                .map(|r| r.chain().as_uuid())
                .collect::<Vec<_>>(),
        )
        .bind(
            requests
                .iter()
                .map(|r| r.command_id().as_uuid())
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(abandon)?;
    if rows.len() != requests.len() {
        return Err(Abandoned::OneByOne);
    }

    // Decide in queue order, each seeing the ones before it.
    let now = Timestamp::now();
    let mut heads: HashMap<ChainId, ChainHead> = HashMap::new();
    let mut streams: HashMap<&StreamId, (ChainId, custodia_domain::StreamVersion)> = HashMap::new();
    let mut decided: Vec<Result<Decided, AppendError>> = Vec::with_capacity(requests.len());
    for (request, row) in requests.iter().zip(&rows) {
        let mut context: AppendContext = append_context(row).map_err(Abandoned::Failed)?;
        if let Some(head) = heads.get(&request.chain()) {
            context.chain_head = *head;
        }
        if let Some((chain, version)) = streams.get(request.stream()) {
            context.stream_chain = Some(*chain);
            context.stream_version = *version;
        }
        decided.push(match request.decide(context, now) {
            Ok(AppendDecision::Replay(appended)) => Ok(Decided::Replay(appended)),
            Ok(AppendDecision::Append(sealed)) => {
                let last = sealed.last().expect("an append carries at least one event");
                heads.insert(
                    request.chain(),
                    ChainHead {
                        next_index: ChainIndex(last.chain_index.0 + 1),
                        last_hash: last.hash,
                    },
                );
                streams.insert(request.stream(), (request.chain(), last.stream_version));
                Ok(Decided::Write(sealed))
            }
            Err(refused) => Err(refused),
        });
    }

    let written = write(&mut tx, &requests, &decided).await?;
    if !written.is_empty() {
        tx.commit().await.map_err(abandon)?;
    }
    let decided = requests
        .iter()
        .zip(decided)
        .map(|(request, decided)| match decided? {
            Decided::Replay(appended) => Ok(appended),
            Decided::Write(sealed) => {
                let last = sealed.last().expect("an append carries at least one event");
                let (position, transaction) = written[&request.command_id().as_uuid()];
                Ok(Appended {
                    stream_version: last.stream_version,
                    chain_index: last.chain_index,
                    position: Position(position),
                    cursor: LogCursor {
                        transaction,
                        position,
                    },
                })
            }
        })
        .collect::<Vec<_>>();
    for (index, answer) in included.into_iter().zip(decided) {
        answers[index] = Some(answer);
    }
    Ok(answers)
}

enum Decided {
    Replay(Appended),
    Write(Vec<RecordedEvent>),
}

/// Inserts what was decided; answers each written command's (last
/// position, transaction id).
async fn write(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    requests: &[&AppendRequest],
    decided: &[Result<Decided, AppendError>],
) -> Result<HashMap<Uuid, (u64, u64)>, Abandoned> {
    let writes: Vec<(&AppendRequest, &Vec<RecordedEvent>)> = requests
        .iter()
        .zip(decided)
        .filter_map(|(request, decided)| match decided {
            Ok(Decided::Write(sealed)) => Some((*request, sealed)),
            _ => None,
        })
        .collect();
    if writes.is_empty() {
        return Ok(HashMap::new());
    }
    let events = || {
        writes
            .iter()
            .flat_map(|(request, sealed)| sealed.iter().map(move |e| (*request, e)))
    };
    let rows = sqlx::query(&INSERT_MANY)
        .bind(
            events()
                .map(|(_, e)| e.event_id.as_uuid())
                .collect::<Vec<_>>(),
        )
        .bind(
            events()
                .map(|(r, _)| r.chain().as_uuid())
                .collect::<Vec<_>>(),
        )
        .bind(
            events()
                .map(|(_, e)| to_i64(e.chain_index.0))
                .collect::<Vec<_>>(),
        )
        .bind(
            events()
                .map(|(r, _)| r.stream().category.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(events().map(|(r, _)| r.stream().id).collect::<Vec<_>>())
        .bind(
            events()
                .map(|(_, e)| to_i64(e.stream_version.0))
                .collect::<Vec<_>>(),
        )
        .bind(
            events()
                .map(|(_, e)| e.event_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            events()
                .map(|(_, e)| e.schema_version.get() as i32)
                .collect::<Vec<_>>(),
        )
        .bind(
            events()
                .map(|(_, e)| e.payload.as_bytes())
                .collect::<Vec<_>>(),
        )
        .bind(
            events()
                .map(|(r, _)| r.metadata().actor.to_string())
                .collect::<Vec<_>>(),
        )
        .bind(
            events()
                .map(|(r, _)| r.command_id().as_uuid())
                .collect::<Vec<_>>(),
        )
        .bind(
            events()
                .map(|(r, _)| r.metadata().correlation_id)
                .collect::<Vec<_>>(),
        )
        .bind(
            events()
                .map(|(r, _)| r.metadata().causation_id)
                .collect::<Vec<_>>(),
        )
        .bind(
            events()
                .map(|(r, _)| r.metadata().origin.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(events().map(|(_, e)| e.recorded_at.0).collect::<Vec<_>>())
        .bind(
            events()
                .map(|(_, e)| e.prev_hash.0.as_slice())
                .collect::<Vec<_>>(),
        )
        .bind(
            events()
                .map(|(_, e)| e.hash.0.as_slice())
                .collect::<Vec<_>>(),
        )
        .bind(
            writes
                .iter()
                .map(|(r, _)| r.command_id().as_uuid())
                .collect::<Vec<_>>(),
        )
        .bind(
            writes
                .iter()
                .map(|(r, _)| r.chain().as_uuid())
                .collect::<Vec<_>>(),
        )
        .bind(
            writes
                .iter()
                .map(|(r, _)| r.stream().category.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            writes
                .iter()
                .map(|(r, _)| r.stream().id)
                .collect::<Vec<_>>(),
        )
        .bind(
            writes
                .iter()
                .map(|(_, s)| s.len() as i64)
                .collect::<Vec<_>>(),
        )
        .bind(
            writes
                .iter()
                .map(|(_, s)| to_i64(s[s.len() - 1].stream_version.0))
                .collect::<Vec<_>>(),
        )
        .bind(
            writes
                .iter()
                .map(|(_, s)| to_i64(s[s.len() - 1].chain_index.0))
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut **tx)
        .await
        .map_err(abandon)?;
    let mut written = HashMap::with_capacity(rows.len());
    for row in rows {
        let command: Uuid = row.try_get(0).map_err(|_| Abandoned::OneByOne)?;
        let position: i64 = row.try_get(1).map_err(|_| Abandoned::OneByOne)?;
        let transaction: i64 = row.try_get(2).map_err(|_| Abandoned::OneByOne)?;
        written.insert(command, (position as u64, transaction as u64));
    }
    if written.len() != writes.len() {
        return Err(Abandoned::OneByOne);
    }
    Ok(written)
}
