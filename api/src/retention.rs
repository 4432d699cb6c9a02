//! The retention job, for both rules a tenant sets:
//!
//! - a user deleted longer ago than `deletedUserRetentionDays` is erased
//!   (`SubjectErased`, their key destroyed), as a privacy officer would
//!   erase them, with the system as the actor and a reference naming the
//!   rule;
//! - the access data (IP addresses, user agents) of every UTC day that
//!   ended at least `accessDataRetentionDays` ago expires
//!   (`AccessDataExpired`, the days' keys destroyed).
//!
//! It runs inside the server on a schedule, in one instance at a time (a
//! lease in the database, as projections hold theirs), and on demand with
//! `custodia privacy retention [--dry-run]`. The clock is a parameter, so
//! tests move time. Which users are due is read from the read models; the
//! erasure itself goes through the command handler, which re-checks the
//! user's state in the log.

use std::time::Duration;

use custodia_application::commands::access_data;
use custodia_application::commands::privacy::erase_subject;
use custodia_application::commands::{Caller, CommandError, Ports};
use custodia_application::{list_all, ReadModels, RowQuery, StoreError};
use custodia_domain::personal::AccessDay;
use custodia_domain::rbac::Principal;
use custodia_domain::{Actor, CommandId, Origin, TenantId, Timestamp};
use custodia_projections::documents::{self, TenantDoc, TenantStatus, UserDoc, UserStatus};
use uuid::Uuid;

/// The lease's name in the table projections use for theirs.
pub const LEASE: &str = "job:retention";
/// How often the server runs the job.
pub const EVERY: Duration = Duration::from_secs(3600);
const DAY_MICROS: i64 = 86_400_000_000;

/// A user the rule says to erase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub tenant: TenantId,
    pub user: Uuid,
    /// When they were deleted (µs).
    pub deleted_at: i64,
    /// The tenant's retention period, in days.
    pub days: u16,
}

/// A tenant's access data the rule says to expire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessDue {
    pub tenant: TenantId,
    /// The days whose keys still exist.
    pub days: Vec<AccessDay>,
    /// The tenant's access-data retention period, in days.
    pub retention_days: u16,
}

/// What one run did.
#[derive(Debug, Default)]
pub struct Report {
    /// The users due, erased unless the run was a dry run.
    pub due: Vec<Due>,
    /// How many were erased by this run.
    pub erased: usize,
    /// The users whose erasure failed, with the (typed, data-free) reason;
    /// the next run tries again.
    pub failed: Vec<(Due, String)>,
    /// The access data due, expired unless the run was a dry run.
    pub access_due: Vec<AccessDue>,
    /// How many day keys this run destroyed.
    pub access_keys_destroyed: u64,
    /// The tenants whose access data could not be expired, with the reason.
    pub access_failed: Vec<(AccessDue, String)>,
}

/// The tenants that are not closed, with their settings' document.
async fn open_tenants(models: &dyn ReadModels) -> Result<Vec<(TenantId, TenantDoc)>, StoreError> {
    let tenants = RowQuery {
        model: "tenant",
        ..RowQuery::default()
    };
    let mut open = Vec::new();
    for row in list_all(models, tenants).await? {
        let status = row.kind.as_deref().and_then(TenantStatus::parse);
        if !matches!(status, Some(TenantStatus::Active | TenantStatus::Suspended)) {
            continue;
        }
        let (Some(id), Ok(doc)) = (row.tenant, documents::read::<TenantDoc>(&row)) else {
            continue;
        };
        if let Ok(tenant) = TenantId::from_uuid(id) {
            open.push((tenant, doc));
        }
    }
    Ok(open)
}

/// Every tenant's access data due at `now`.
pub async fn access_due(
    ports: &Ports,
    models: &dyn ReadModels,
    now: Timestamp,
) -> Result<Vec<AccessDue>, StoreError> {
    let mut due = Vec::new();
    for (tenant, doc) in open_tenants(models).await? {
        let retention_days = doc.settings.access_data_retention_days;
        let days = access_data::due_days(ports, tenant, retention_days, now)
            .await
            .map_err(store_failure)?;
        if !days.is_empty() {
            due.push(AccessDue {
                tenant,
                days,
                retention_days,
            });
        }
    }
    Ok(due)
}

/// A command error on the job's path, as the store error it stops on.
fn store_failure(error: CommandError) -> StoreError {
    match error {
        CommandError::Store(error) => error,
        CommandError::Vault(custodia_application::VaultError::Store(error)) => error,
        other => StoreError::corrupt(other.to_string()),
    }
}

/// Every deleted user whose tenant's retention period has passed at `now`.
pub async fn due(models: &dyn ReadModels, now: Timestamp) -> Result<Vec<Due>, StoreError> {
    let mut due = Vec::new();
    for (tenant, tenant_doc) in open_tenants(models).await? {
        let id = tenant.as_uuid();
        let days = tenant_doc.settings.deleted_user_retention_days;
        let cutoff = now.0 - i64::from(days) * DAY_MICROS;
        let users = RowQuery {
            model: "user",
            tenant: Some(id),
            kind: Some(UserStatus::Deleted.as_str().to_owned()),
            ..RowQuery::default()
        };
        for row in list_all(models, users).await? {
            let (Ok(user), Ok(doc)) = (Uuid::parse_str(&row.id), documents::read::<UserDoc>(&row))
            else {
                continue;
            };
            // Nothing changes a deleted user but their erasure: the row's
            // last change is the deletion.
            if doc.stamp.updated_at <= cutoff {
                due.push(Due {
                    tenant,
                    user,
                    deleted_at: doc.stamp.updated_at,
                    days,
                });
            }
        }
    }
    Ok(due)
}

/// Erases every user due at `now` (or, with `dry_run`, only finds them).
pub async fn run(
    ports: &Ports,
    models: &dyn ReadModels,
    now: Timestamp,
    dry_run: bool,
) -> Result<Report, StoreError> {
    let mut report = Report {
        due: due(models, now).await?,
        access_due: access_due(ports, models, now).await?,
        ..Report::default()
    };
    if dry_run {
        return Ok(report);
    }
    for due in &report.access_due {
        let expired =
            access_data::expire(ports, &caller(), due.tenant, &due.days, due.retention_days).await;
        match expired {
            Ok(destroyed) => report.access_keys_destroyed += destroyed,
            Err(CommandError::Store(error)) => return Err(error),
            // One tenant's refusal does not stop the others; the next run
            // tries again.
            Err(other) => {
                tracing::warn!(tenant = %due.tenant, error = %other, "retention could not expire access data");
                report.access_failed.push((due.clone(), other.to_string()));
            }
        }
    }
    for due in &report.due {
        let reference = format!("retention: deleted more than {} days ago", due.days);
        match erase_subject(ports, &caller(), due.tenant, due.user, &reference).await {
            Ok(_) => report.erased += 1,
            Err(CommandError::Store(error)) => return Err(error),
            Err(other) => {
                tracing::warn!(tenant = %due.tenant, user = %due.user, error = %other, "retention could not erase a user");
                report.failed.push((due.clone(), other.to_string()));
            }
        }
    }
    Ok(report)
}

/// [`run`] in at most one instance at a time: `None` when another
/// instance holds the job's lease.
pub async fn run_alone(
    ports: &Ports,
    models: &dyn ReadModels,
    now: Timestamp,
) -> Result<Option<Report>, StoreError> {
    let holder = Uuid::now_v7();
    let wall = Timestamp::now().0;
    let lease = i64::try_from(EVERY.as_micros()).unwrap_or(i64::MAX);
    if models
        .acquire(LEASE, holder, wall, wall + lease)
        .await?
        .is_none()
    {
        return Ok(None);
    }
    let report = run(ports, models, now, false).await;
    models.release(LEASE, holder).await?;
    report.map(Some)
}

/// The job's actor: the system, with the platform operator's reach (it
/// acts on every tenant by their own settings).
fn caller() -> Caller {
    Caller {
        principal: Principal::PlatformOperator,
        actor: Actor::System,
        command_id: CommandId::generate(),
        correlation_id: Uuid::now_v7(),
        origin: Origin::parse("retention").expect("a valid origin"),
        expected_version: None,
        session: None,
    }
}

/// Runs the job every [`EVERY`] until the server stops (the first run
/// soon after the start).
pub fn schedule(
    ports: Ports,
    models: std::sync::Arc<dyn ReadModels>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(EVERY);
        loop {
            ticks.tick().await;
            match run_alone(&ports, &*models, Timestamp::now()).await {
                Ok(Some(report)) if !report.due.is_empty() || !report.access_due.is_empty() => {
                    tracing::info!(
                        due = report.due.len(),
                        erased = report.erased,
                        failed = report.failed.len() + report.access_failed.len(),
                        access_keys_destroyed = report.access_keys_destroyed,
                        "retention ran"
                    )
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "retention could not run; next time"),
            }
        }
    })
}
