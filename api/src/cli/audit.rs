//! `custodia audit`: proofs over each chain's Merkle log
//! (docs/audit-format.md), built from the `merkle` projection's rows and
//! checked before they are printed.

use std::process::ExitCode;
use std::time::Instant;

use custodia_domain::merkle::{
    consistency_proof, inclusion_proof, root, verify_consistency, verify_inclusion,
};
use custodia_domain::{ChainId, TenantId};
use custodia_infrastructure::signed_note::NoteVerifier;
use custodia_infrastructure::SqlReadModels;
use custodia_projections::merkle::{size, with_subtrees};
use serde_json::json;
use uuid::Uuid;

#[derive(clap::Subcommand)]
pub enum AuditCommand {
    /// Sign a checkpoint (C2SP tlog-checkpoint) of every chain, each
    /// consistent with the last one FILE holds, and append them to FILE
    /// (ship it off the machine; check with `custodia verify --against`).
    Checkpoint {
        #[arg(long)]
        out: std::path::PathBuf,
        /// The log's name: the checkpoint key's name and the origins'
        /// prefix (`<name>/<tenant id>`).
        #[arg(long, env = "CUSTODIA_LOG_NAME", default_value = "custodia")]
        log_name: String,
    },
    /// Start signing checkpoints with a new key; the old ones stay listed
    /// (`custodia audit key`, /checkpoints/keys), so their checkpoints
    /// still verify. Prints the new verifier key.
    RotateKey {
        #[arg(long, env = "CUSTODIA_LOG_NAME", default_value = "custodia")]
        log_name: String,
    },
    /// Print the checkpoint verifier keys, the signing one first.
    Key {
        #[arg(long, env = "CUSTODIA_LOG_NAME", default_value = "custodia")]
        log_name: String,
    },
    /// Print (JSON) the inclusion proof of the event at a chain index.
    Prove {
        /// The tenant whose chain (default: the platform chain).
        #[arg(long)]
        tenant: Option<String>,
        /// The event's chain index (0 is the chain's first event).
        #[arg(long)]
        index: u64,
        /// The tree size to prove against (default: all the chain the
        /// Merkle rows cover).
        #[arg(long)]
        size: Option<u64>,
    },
    /// Print (JSON) the consistency proof between two sizes of a chain.
    Consistency {
        #[arg(long)]
        tenant: Option<String>,
        /// The earlier size (as kept from a checkpoint or a `verify` line).
        #[arg(long)]
        from: u64,
        /// The later size (default: all the Merkle rows cover).
        #[arg(long)]
        to: Option<u64>,
    },
}

fn chain_of(tenant: Option<&str>) -> Result<ChainId, String> {
    match tenant {
        None => Ok(ChainId::Platform),
        Some(id) => Uuid::parse_str(id)
            .ok()
            .and_then(|id| TenantId::from_uuid(id).ok())
            .map(ChainId::Tenant)
            .ok_or_else(|| "--tenant must be a tenant id (a UUID)".to_owned()),
    }
}

pub async fn run(database_url: &str, command: AuditCommand) -> Result<ExitCode, String> {
    let models = SqlReadModels::connect(database_url)
        .await
        .map_err(|e| e.to_string())?;
    let failed = |e: &dyn std::fmt::Display| e.to_string();
    let hexes = |hashes: &[[u8; 32]]| hashes.iter().map(hex::encode).collect::<Vec<_>>();
    match command {
        AuditCommand::Checkpoint { out, log_name } => {
            let state = super::state(database_url).await?;
            let signer = state
                .keys
                .checkpoint_signer(&log_name)
                .await
                .map_err(|e| failed(&e))?;
            let known = state
                .keys
                .checkpoint_verifiers()
                .await
                .map_err(|e| failed(&e))?
                .iter()
                .map(|key| NoteVerifier::parse(key))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| failed(&e))?;
            let lines = super::checkpoints::sign_all(
                &*state.ports.store,
                &*state.models,
                &signer,
                &known,
                &log_name,
                &out,
            )
            .await?;
            for line in lines {
                println!("{line}");
            }
        }
        AuditCommand::RotateKey { log_name } => {
            let state = super::state(database_url).await?;
            let signer = state
                .keys
                .rotate_checkpoint_key(&log_name)
                .await
                .map_err(|e| failed(&e))?;
            println!("{}", signer.verifier());
        }
        AuditCommand::Key { log_name } => {
            let state = super::state(database_url).await?;
            state
                .keys
                .checkpoint_signer(&log_name)
                .await
                .map_err(|e| failed(&e))?;
            for key in state
                .keys
                .checkpoint_verifiers()
                .await
                .map_err(|e| failed(&e))?
            {
                println!("{key}");
            }
        }
        AuditCommand::Prove {
            tenant,
            index,
            size: wanted,
        } => {
            let chain = chain_of(tenant.as_deref())?;
            let covered = size(&models, chain).await.map_err(|e| failed(&e))?;
            let tree_size = wanted.unwrap_or(covered);
            if tree_size > covered {
                return Err(format!(
                    "the Merkle rows cover {covered} events of this chain, not {tree_size}"
                ));
            }
            let started = Instant::now();
            let (proof, leaf, tree_root) = with_subtrees(&models, chain, |tree| {
                (
                    inclusion_proof(tree, index, tree_size),
                    tree.subtree(0, index),
                    root(tree, tree_size),
                )
            })
            .await
            .map_err(|e| failed(&e))?;
            let proof = proof.map_err(|e| failed(&e))?;
            let took = started.elapsed();
            verify_inclusion(index, tree_size, &leaf, &proof, &tree_root)
                .map_err(|e| format!("the proof built does not verify: {e}"))?;
            let answer = json!({
                "chain": chain.to_string(),
                "index": index,
                "tree_size": tree_size,
                "leaf_hash": hex::encode(leaf),
                "root": hex::encode(tree_root),
                "proof": hexes(&proof),
            });
            println!("{answer:#}");
            eprintln!("built and checked in {took:?}");
        }
        AuditCommand::Consistency { tenant, from, to } => {
            let chain = chain_of(tenant.as_deref())?;
            let covered = size(&models, chain).await.map_err(|e| failed(&e))?;
            let to = to.unwrap_or(covered);
            if to > covered {
                return Err(format!(
                    "the Merkle rows cover {covered} events of this chain, not {to}"
                ));
            }
            let started = Instant::now();
            let (proof, first_root, second_root) = with_subtrees(&models, chain, |tree| {
                (
                    consistency_proof(tree, from, to),
                    root(tree, from),
                    root(tree, to),
                )
            })
            .await
            .map_err(|e| failed(&e))?;
            let proof = proof.map_err(|e| failed(&e))?;
            let took = started.elapsed();
            verify_consistency(from, to, &first_root, &second_root, &proof)
                .map_err(|e| format!("the proof built does not verify: {e}"))?;
            let answer = json!({
                "chain": chain.to_string(),
                "first_size": from,
                "first_root": hex::encode(first_root),
                "second_size": to,
                "second_root": hex::encode(second_root),
                "proof": hexes(&proof),
            });
            println!("{answer:#}");
            eprintln!("built and checked in {took:?}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
