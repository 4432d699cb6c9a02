//! Signed checkpoints as the log's database keeps them (migration 0009):
//! the last one of each chain is what the next must be consistent with.

use custodia_application::StoreError;
use sqlx::sqlite::SqliteSynchronous;

use crate::pools::{on_pool, Pools};

/// A kept checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub size: u64,
    pub root: [u8; 32],
    /// The signed note.
    pub note: String,
    /// µs since the epoch.
    pub signed_at: i64,
}

#[derive(Debug, Clone)]
pub struct CheckpointStore(Pools);

impl CheckpointStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Ok(Self(
            Pools::connect(url, SqliteSynchronous::Full, 2, 2).await?,
        ))
    }

    /// The latest checkpoint of `chain` (`platform` or a tenant id).
    pub async fn last(&self, chain: &str) -> Result<Option<Kept>, StoreError> {
        let sql = "SELECT size, root, note, signed_at FROM checkpoints WHERE chain = $1 \
                   ORDER BY size DESC LIMIT 1";
        let row: Option<(i64, Vec<u8>, String, i64)> =
            on_pool!(&self.0, pool => sqlx::query_as(sql).bind(chain).fetch_optional(pool))?;
        row.map(kept).transpose()
    }

    /// Every checkpoint of `chain`, smallest first.
    pub async fn all(&self, chain: &str) -> Result<Vec<Kept>, StoreError> {
        let sql = "SELECT size, root, note, signed_at FROM checkpoints WHERE chain = $1 \
                   ORDER BY size";
        let rows: Vec<(i64, Vec<u8>, String, i64)> =
            on_pool!(&self.0, pool => sqlx::query_as(sql).bind(chain).fetch_all(pool))?;
        rows.into_iter().map(kept).collect()
    }

    /// Keeps a checkpoint; false when one of that size was kept already
    /// (another instance signed it first).
    pub async fn keep(&self, chain: &str, kept: &Kept) -> Result<bool, StoreError> {
        let sql = "INSERT INTO checkpoints (chain, size, root, note, signed_at) \
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (chain, size) DO NOTHING";
        let size = i64::try_from(kept.size).unwrap_or(i64::MAX);
        let inserted = on_pool!(exec &self.0, pool => sqlx::query(sql).bind(chain).bind(size)
            .bind(&kept.root[..]).bind(&kept.note).bind(kept.signed_at).execute(pool))?;
        Ok(inserted == 1)
    }
}

fn kept((size, root, note, signed_at): (i64, Vec<u8>, String, i64)) -> Result<Kept, StoreError> {
    Ok(Kept {
        size: u64::try_from(size).map_err(|_| StoreError::corrupt("a negative checkpoint size"))?,
        root: root
            .try_into()
            .map_err(|_| StoreError::corrupt("a checkpoint root is not 32 bytes"))?,
        note,
        signed_at,
    })
}
