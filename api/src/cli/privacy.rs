//! `custodia privacy`: erasure from the command line (the platform
//! operator's hand; inside a tenant, owners and privacy officers use the
//! `eraseSubject` mutation).

use std::process::ExitCode;

use custodia_domain::TenantId;
use uuid::Uuid;

use super::{operator, state};

#[derive(clap::Subcommand)]
pub enum PrivacyCommand {
    /// Erase a data subject for good: destroy their key, end their
    /// sessions, record a `SubjectErased` event. Prints the erasure
    /// receipt (JSON) to keep.
    EraseSubject {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user: String,
        /// The request's reference (a ticket or case number; no personal data).
        #[arg(long)]
        reference: String,
    },
    /// Apply every tenant's retention rules (the server does it every
    /// hour): erase the users deleted longer ago than
    /// `deletedUserRetentionDays`, and expire the access data (IP addresses,
    /// user agents) of the days that ended `accessDataRetentionDays` ago.
    Retention {
        /// List what would be erased and expired; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Judge as of this time (RFC 3339) instead of now.
        #[arg(long)]
        at: Option<String>,
    },
    /// Destroy again every key an erasure or expiry event names (after
    /// restoring a key-store backup; `serve` and `keys restore` do it too).
    ReapplyErasures,
    /// Print everything held about a user as one JSON document (access and
    /// portability; docs/subject-export.schema.json).
    Export {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user: String,
    },
    /// Erase a whole tenant: close its chain (all its sessions and API
    /// keys stop), record `TenantErased` in the platform chain, destroy
    /// the tenant key. Prints the erasure receipt (JSON).
    EraseTenant {
        #[arg(long)]
        tenant: String,
        /// The request's reference (no personal data).
        #[arg(long)]
        reference: String,
    },
}

pub async fn run(database_url: &str, command: PrivacyCommand) -> Result<ExitCode, String> {
    use custodia_application::commands::privacy::{erase_subject, erase_tenant};
    let parse_tenant = |id: &str| {
        Uuid::parse_str(id)
            .ok()
            .and_then(|id| TenantId::from_uuid(id).ok())
            .ok_or("--tenant must be a tenant id (a UUID)")
    };
    let (tenant, erasure) = match command {
        PrivacyCommand::Retention { dry_run, at } => {
            return retention(database_url, dry_run, at).await
        }
        PrivacyCommand::ReapplyErasures => {
            let state = state(database_url).await?;
            let reapplied = custodia::erasures::destroy_again(&state.ports, &*state.models)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "{} erasures in the log; {} keys were back and are destroyed again",
                reapplied.erasures, reapplied.destroyed
            );
            return Ok(ExitCode::SUCCESS);
        }
        PrivacyCommand::Export { tenant, user } => {
            let tenant = parse_tenant(&tenant)?;
            let user = Uuid::parse_str(&user).map_err(|_| "--user must be a user id (a UUID)")?;
            let state = state(database_url).await?;
            let document = custodia::export::export_subject(
                &state.ports,
                &*state.models,
                &operator(),
                tenant,
                user,
            )
            .await
            .map_err(|e| e.to_string())?;
            println!("{document:#}");
            return Ok(ExitCode::SUCCESS);
        }
        PrivacyCommand::EraseSubject {
            tenant,
            user,
            reference,
        } => {
            let tenant = parse_tenant(&tenant)?;
            let user = Uuid::parse_str(&user).map_err(|_| "--user must be a user id (a UUID)")?;
            let state = state(database_url).await?;
            let erasure = erase_subject(&state.ports, &operator(), tenant, user, &reference).await;
            (tenant, erasure.map(|e| (state, e)))
        }
        PrivacyCommand::EraseTenant { tenant, reference } => {
            let tenant = parse_tenant(&tenant)?;
            let state = state(database_url).await?;
            let erasure = erase_tenant(&state.ports, &operator(), tenant, &reference).await;
            (tenant, erasure.map(|e| (state, e)))
        }
    };
    let (state, erasure) = erasure.map_err(|e| e.to_string())?;
    // Kept answers of the tenant's requests may hold personal data.
    state
        .idempotency
        .withdraw_tenant(tenant.as_uuid())
        .await
        .map_err(|e| e.to_string())?;
    let receipt = serde_json::to_string_pretty(&erasure.receipt)
        .map_err(|e| format!("cannot write the receipt: {e}"))?;
    println!("{receipt}");
    Ok(ExitCode::SUCCESS)
}

async fn retention(
    database_url: &str,
    dry_run: bool,
    at: Option<String>,
) -> Result<ExitCode, String> {
    use custodia_domain::Timestamp;
    let now = match at {
        None => Timestamp::now(),
        Some(text) => chrono::DateTime::parse_from_rfc3339(&text)
            .map(|at| Timestamp(at.timestamp_micros()))
            .map_err(|_| "--at must be an RFC 3339 time")?,
    };
    let state = state(database_url).await?;
    let report = custodia::retention::run(&state.ports, &*state.models, now, dry_run)
        .await
        .map_err(|e| e.to_string())?;
    let verb = if dry_run { "would erase" } else { "erased" };
    for due in &report.due {
        if report.failed.iter().any(|(failed, _)| failed == due) {
            continue;
        }
        println!(
            "{verb} user {} of tenant {} (deleted {}, retention {} days)",
            due.user,
            due.tenant,
            Timestamp(due.deleted_at),
            due.days
        );
    }
    for (due, reason) in &report.failed {
        println!(
            "FAILED user {} of tenant {}: {reason}",
            due.user, due.tenant
        );
    }
    let verb = if dry_run { "would expire" } else { "expired" };
    for due in &report.access_due {
        let days: Vec<String> = due.days.iter().map(ToString::to_string).collect();
        println!(
            "{verb} the access data of tenant {} for {} (retention {} days)",
            due.tenant,
            days.join(", "),
            due.retention_days
        );
    }
    println!(
        "{} due, {} erased, {} failed; access data of {} days due, {} day keys destroyed",
        report.due.len(),
        report.erased,
        report.failed.len(),
        report
            .access_due
            .iter()
            .map(|due| due.days.len())
            .sum::<usize>(),
        report.access_keys_destroyed
    );
    for (due, reason) in &report.access_failed {
        println!("FAILED the access data of tenant {}: {reason}", due.tenant);
    }
    Ok(
        if report.failed.is_empty() && report.access_failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(crate::EXIT_FAILED)
        },
    )
}
