//! Each chain as a Merkle log, kept as read-model rows (docs/audit-format.md):
//! the hash of every perfect subtree (model `merkle_node`, id
//! `<chain>/<level>/<index>`) and each chain's size (model `merkle_size`).
//! Derived from the log like any read model; proofs are built from these
//! rows in O(log n) reads per perfect subtree they need.

use async_trait::async_trait;
use custodia_application::{ModelRow, ReadModelTx, ReadModels, StoreError};
use custodia_domain::merkle::{leaf_hash, node_hash, Hash, Subtrees};
use custodia_domain::{ChainId, RecordedEvent};
use serde::{Deserialize, Serialize};

use crate::{Projection, ProjectionError};

pub const NODE: &str = "merkle_node";
pub const SIZE: &str = "merkle_size";

/// A chain's name in row ids: `platform` or the tenant's id.
pub fn chain_key(chain: ChainId) -> String {
    match chain {
        ChainId::Platform => "platform".to_owned(),
        ChainId::Tenant(tenant) => tenant.to_string(),
    }
}

fn node_id(chain: &str, level: u32, index: u64) -> String {
    format!("{chain}/{level}/{index}")
}

#[derive(Serialize, Deserialize)]
struct NodeDoc {
    /// Hex.
    hash: String,
}

#[derive(Serialize, Deserialize)]
pub struct SizeDoc {
    pub size: u64,
}

fn unreadable(what: &str) -> StoreError {
    StoreError::corrupt(format!("a Merkle {what} row cannot be read"))
}

fn hash_of(row: &ModelRow) -> Result<Hash, StoreError> {
    let doc: NodeDoc = serde_json::from_value(row.doc.clone()).map_err(|_| unreadable("node"))?;
    hex::decode(doc.hash)
        .ok()
        .and_then(|bytes| Hash::try_from(bytes).ok())
        .ok_or_else(|| unreadable("node"))
}

pub struct MerkleLog;

#[async_trait]
impl Projection for MerkleLog {
    fn name(&self) -> &'static str {
        "merkle"
    }
    fn models(&self) -> &'static [&'static str] {
        &[NODE, SIZE]
    }
    async fn apply(
        &self,
        event: &RecordedEvent,
        tx: &mut dyn ReadModelTx,
    ) -> Result<(), ProjectionError> {
        let chain = chain_key(event.chain);
        let tenant = match event.chain {
            ChainId::Platform => None,
            ChainId::Tenant(tenant) => Some(tenant.as_uuid()),
        };
        let row = |model: &'static str, id: String, level: u32, doc: serde_json::Value| ModelRow {
            model,
            id,
            tenant,
            parent: None,
            kind: None,
            actor: None,
            lookup: None,
            at: event.recorded_at.0,
            // Unique within the model: at most one node per level per event.
            seq: i64::try_from(event.position.0)
                .unwrap_or(i64::MAX / 64)
                .saturating_mul(64)
                + i64::from(level),
            doc,
        };
        let node = |level: u32, index: u64, hash: &Hash| {
            row(
                NODE,
                node_id(&chain, level, index),
                level,
                serde_json::json!(NodeDoc {
                    hash: hex::encode(hash)
                }),
            )
        };
        // Leaf i is the event at chain index i; each completed pair above it
        // becomes a node one level up.
        let mut index = event.chain_index.0;
        let mut hash = leaf_hash(&event.hash.0);
        let mut level = 0;
        tx.put(&node(level, index, &hash)).await?;
        while index % 2 == 1 {
            let left = tx
                .get(NODE, &node_id(&chain, level, index - 1))
                .await?
                .ok_or_else(|| unreadable("node (a left sibling is missing)"))?;
            hash = node_hash(&hash_of(&left)?, &hash);
            index /= 2;
            level += 1;
            tx.put(&node(level, index, &hash)).await?;
        }
        let size = serde_json::json!(SizeDoc {
            size: event.chain_index.0 + 1
        });
        tx.put(&row(SIZE, chain.clone(), 63, size)).await?;
        Ok(())
    }
}

/// The perfect subtrees of one chain a computation asks for, fetched from
/// the read models first (the computation is run twice: once to learn
/// which it needs, once with them).
pub struct FetchedSubtrees {
    nodes: std::collections::HashMap<(u32, u64), Hash>,
}

impl Subtrees for FetchedSubtrees {
    fn subtree(&self, level: u32, index: u64) -> Hash {
        self.nodes.get(&(level, index)).copied().unwrap_or_default()
    }
}

/// Records what a computation asks for.
#[derive(Default)]
struct Recorder(std::cell::RefCell<Vec<(u32, u64)>>);

impl Subtrees for Recorder {
    fn subtree(&self, level: u32, index: u64) -> Hash {
        self.0.borrow_mut().push((level, index));
        Hash::default()
    }
}

/// Runs `compute` over `chain`'s stored subtrees.
pub async fn with_subtrees<T>(
    models: &dyn ReadModels,
    chain: ChainId,
    compute: impl Fn(&dyn Subtrees) -> T,
) -> Result<T, StoreError> {
    let recorder = Recorder::default();
    compute(&recorder);
    let key = chain_key(chain);
    let mut nodes = std::collections::HashMap::new();
    let mut wanted = recorder.0.into_inner();
    wanted.sort_unstable();
    wanted.dedup();
    for (level, index) in wanted {
        let row = models
            .get(NODE, &node_id(&key, level, index))
            .await?
            .ok_or_else(|| unreadable("node (not projected yet)"))?;
        nodes.insert((level, index), hash_of(&row)?);
    }
    Ok(compute(&FetchedSubtrees { nodes }))
}

/// How many of `chain`'s events the Merkle rows cover.
pub async fn size(models: &dyn ReadModels, chain: ChainId) -> Result<u64, StoreError> {
    Ok(match models.get(SIZE, &chain_key(chain)).await? {
        Some(row) => {
            serde_json::from_value::<SizeDoc>(row.doc)
                .map_err(|_| unreadable("size"))?
                .size
        }
        None => 0,
    })
}
