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
    /// Who held which role (and permissions) in a tenant at a moment, since
    /// when and granted by whom (JSON, or CSV with --csv).
    AccessReview {
        #[arg(long)]
        tenant: String,
        /// RFC 3339 (default: now).
        #[arg(long)]
        at: Option<String>,
        #[arg(long)]
        csv: bool,
    },
    /// The grants and revocations in a tenant between two moments (JSON,
    /// or CSV with --csv): what a quarterly access review reads.
    AccessChanges {
        #[arg(long)]
        tenant: String,
        /// RFC 3339, inclusive.
        #[arg(long)]
        from: String,
        /// RFC 3339, exclusive (default: now).
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        csv: bool,
    },
    /// A user as the log held them at a moment (JSON): status, personal
    /// data (opened, or erased where the key is gone), roles and consents
    /// in force.
    Subject {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user: Uuid,
        /// RFC 3339 (default: now).
        #[arg(long)]
        at: Option<String>,
    },
    /// Print the checkpoint verifier keys, the signing one first.
    Key {
        #[arg(long, env = "CUSTODIA_LOG_NAME", default_value = "custodia")]
        log_name: String,
    },
    /// Export a tenant's events (as stored: personal data as ciphertext),
    /// its signed checkpoints and the proofs that tie them, with a manifest
    /// of hashes, to a new directory an auditor checks with `custodia audit
    /// verify` and no database. Signs a checkpoint first if the latest one
    /// does not cover every event the Merkle rows do.
    Export {
        #[arg(long)]
        tenant: String,
        /// RFC 3339: the first event recorded at or after it (default:
        /// the chain's first).
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339: up to the first event recorded at or after it
        /// (default: the latest checkpoint's end).
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Check an export directory or a proof file without a database: every
    /// event hash, the chain, the Merkle root, the checkpoints' signatures
    /// and their consistency. Exits 0 when it verifies, 1 naming the first
    /// failure.
    Verify {
        /// An export directory, or a proof file (`prove --out`).
        path: std::path::PathBuf,
        /// A checkpoint verifier key to trust (`custodia audit key`,
        /// GET /checkpoints/keys); more than one may be given.
        #[arg(long, required = true)]
        checkpoint_key: Vec<String>,
        /// A checkpoint file you kept from earlier (JSON lines, or one
        /// note): the export must be the same log, grown.
        #[arg(long)]
        trusted_checkpoint: Option<std::path::PathBuf>,
    },
    /// Print (JSON) the inclusion proof of the event at a chain index; with
    /// --out, write a proof file (C2SP tlog-proof: the event, its proof
    /// and the latest signed checkpoint) that `custodia audit verify`
    /// checks alone.
    Prove {
        /// The tenant whose chain (default: the platform chain).
        #[arg(long)]
        tenant: Option<String>,
        /// The event's chain index (0 is the chain's first event).
        #[arg(long)]
        index: u64,
        /// The tree size to prove against (default: all the chain the
        /// Merkle rows cover).
        #[arg(long, conflicts_with = "out")]
        size: Option<u64>,
        /// Write a proof file under the latest signed checkpoint.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
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
    // No database: an auditor's machine.
    if let AuditCommand::Verify {
        path,
        checkpoint_key,
        trusted_checkpoint,
    } = &command
    {
        return super::offline::run(path, checkpoint_key, trusted_checkpoint.as_deref());
    }
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
                &out,
            )
            .await?;
            for line in lines {
                println!("{line}");
            }
        }
        AuditCommand::AccessReview { tenant, at, csv } => {
            use custodia_application::commands::audit::access_review;
            let ChainId::Tenant(tenant) = chain_of(Some(&tenant))? else {
                unreachable!("a tenant was given")
            };
            let at = time(at.as_deref())?;
            let state = super::state(database_url).await?;
            let holdings = access_review(&state.ports, &super::operator(), tenant, at)
                .await
                .map_err(|e| failed(&e))?;
            let rows: Vec<[String; 8]> = holdings
                .iter()
                .map(|h| {
                    [
                        h.user.to_string(),
                        h.role.clone(),
                        h.since.to_string(),
                        h.granted_by.to_string(),
                        h.grant_event.to_string(),
                        h.paused.to_string(),
                        h.permissions.join(" "),
                        h.group.map(|g| g.to_string()).unwrap_or_default(),
                    ]
                })
                .collect();
            let header = [
                "user",
                "role",
                "since",
                "granted_by",
                "grant_event",
                "paused",
                "permissions",
                "through_group",
            ];
            print_rows(&header, &rows, csv);
        }
        AuditCommand::AccessChanges {
            tenant,
            from,
            to,
            csv,
        } => {
            use custodia_application::commands::audit::access_changes;
            let ChainId::Tenant(tenant) = chain_of(Some(&tenant))? else {
                unreachable!("a tenant was given")
            };
            let (from, to) = (time(Some(&from))?, time(to.as_deref())?);
            let state = super::state(database_url).await?;
            let changes = access_changes(&state.ports, &super::operator(), tenant, from, to)
                .await
                .map_err(|e| failed(&e))?;
            let rows: Vec<[String; 7]> = changes
                .iter()
                .map(|c| {
                    [
                        c.at.to_string(),
                        c.change.to_owned(),
                        c.user.to_string(),
                        c.role.clone(),
                        c.actor.to_string(),
                        c.event_id.to_string(),
                        c.group.map(|g| g.to_string()).unwrap_or_default(),
                    ]
                })
                .collect();
            print_rows(
                &[
                    "at",
                    "change",
                    "user",
                    "role",
                    "actor",
                    "event",
                    "through_group",
                ],
                &rows,
                csv,
            );
        }
        AuditCommand::Subject { tenant, user, at } => {
            use custodia_application::commands::audit::{subject_as_of, PersonalData};
            let ChainId::Tenant(tenant) = chain_of(Some(&tenant))? else {
                unreachable!("a tenant was given")
            };
            let at = time(at.as_deref())?;
            let state = super::state(database_url).await?;
            let subject = subject_as_of(&state.ports, &super::operator(), tenant, user, at)
                .await
                .map_err(|e| failed(&e))?;
            let personal = &subject.personal;
            let answer = json!({
                "user": user,
                "at": at.to_string(),
                "status": subject.status.map(|s| format!("{s:?}").to_lowercase()),
                "personal_data": match subject.personal_data {
                    PersonalData::Shown => "shown",
                    PersonalData::Withheld => "withheld",
                    PersonalData::Erased => "erased",
                },
                "email": personal.email,
                "display_name": personal.profile.display_name,
                "phone": personal.profile.phone,
                "roles": subject.roles.iter().map(|h| json!({
                    "role": h.role,
                    "since": h.since.to_string(),
                    "granted_by": h.granted_by.to_string(),
                    "grant_event": h.grant_event.to_string(),
                    "paused": h.paused,
                    "through_group": h.group,
                })).collect::<Vec<_>>(),
                "consents": subject.consents.as_ref().map(|consents| consents.iter().map(|c| json!({
                    "purpose": c.purpose,
                    "granted": c.granted,
                    "policy_version": c.policy_version,
                    "since": c.since.to_string(),
                    "actor": c.actor.to_string(),
                    "event": c.event_id.to_string(),
                })).collect::<Vec<_>>()),
                "last_event": subject.last_event.map(|(id, at)| json!({
                    "id": id.to_string(),
                    "at": at.to_string(),
                })),
            });
            println!("{answer:#}");
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
        AuditCommand::Verify { .. } => unreachable!("answered above"),
        AuditCommand::Export {
            tenant,
            from,
            to,
            out,
        } => {
            let chain = chain_of(Some(&tenant))?;
            let from = from
                .as_deref()
                .map(|text| time(Some(text)).map(|at| (text, at)))
                .transpose()?;
            let to = to
                .as_deref()
                .map(|text| time(Some(text)).map(|at| (text, at)))
                .transpose()?;
            let state = super::state(database_url).await?;
            let request = super::audit_export::Request {
                chain,
                from,
                to,
                out: &out,
            };
            for line in super::audit_export::export(&state, request).await? {
                println!("{line}");
            }
        }
        AuditCommand::Prove {
            tenant,
            index,
            out: Some(out),
            ..
        } => {
            let chain = chain_of(tenant.as_deref())?;
            let state = super::state(database_url).await?;
            println!(
                "{}",
                super::audit_export::prove_to_file(&state, chain, index, &out).await?
            );
        }
        AuditCommand::Prove {
            tenant,
            index,
            size: wanted,
            out: None,
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

/// An RFC 3339 time, or now.
fn time(text: Option<&str>) -> Result<custodia_domain::Timestamp, String> {
    match text {
        None => Ok(custodia_domain::Timestamp::now()),
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map(|at| custodia_domain::Timestamp(at.timestamp_micros()))
            .map_err(|_| format!("{text} is not an RFC 3339 time")),
    }
}

/// Rows as a JSON array of objects, or as CSV (RFC 4180: a field with a
/// comma, quote or line break is quoted, quotes doubled).
fn print_rows<const N: usize>(header: &[&str; N], rows: &[[String; N]], csv: bool) {
    if csv {
        let field = |value: &str| {
            if value.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", value.replace('"', "\"\""))
            } else {
                value.to_owned()
            }
        };
        println!("{}", header.join(","));
        for row in rows {
            let fields: Vec<String> = row.iter().map(|value| field(value)).collect();
            println!("{}", fields.join(","));
        }
        return;
    }
    let objects: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            header
                .iter()
                .zip(row)
                .map(|(name, value)| ((*name).to_owned(), json!(value)))
                .collect::<serde_json::Map<_, _>>()
                .into()
        })
        .collect();
    println!("{:#}", serde_json::Value::Array(objects));
}
