//! The retention job: a user deleted longer ago than their tenant's
//! `deletedUserRetentionDays` is erased (`SubjectErased`, their key
//! destroyed), as a privacy officer would erase them, with the system as
//! the actor and a reference naming the rule.
//!
//! It runs inside the server on a schedule, in one instance at a time (a
//! lease in the database, as projections hold theirs), and on demand with
//! `custodia privacy retention [--dry-run]`. The clock is a parameter, so
//! tests move time. Which users are due is read from the read models; the
//! erasure itself goes through the command handler, which re-checks the
//! user's state in the log.

use std::time::Duration;

use custodia_application::commands::privacy::erase_subject;
use custodia_application::commands::{Caller, CommandError, Ports};
use custodia_application::{list_all, ReadModels, RowQuery, StoreError};
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
}

/// Every deleted user whose tenant's retention period has passed at `now`.
pub async fn due(models: &dyn ReadModels, now: Timestamp) -> Result<Vec<Due>, StoreError> {
    let mut due = Vec::new();
    let tenants = RowQuery {
        model: "tenant",
        ..RowQuery::default()
    };
    for tenant_row in list_all(models, tenants).await? {
        if tenant_row.kind.as_deref() != Some(TenantStatus::Active.as_str())
            && tenant_row.kind.as_deref() != Some(TenantStatus::Suspended.as_str())
        {
            continue;
        }
        let (Some(id), Ok(tenant_doc)) =
            (tenant_row.tenant, documents::read::<TenantDoc>(&tenant_row))
        else {
            continue;
        };
        let Ok(tenant) = TenantId::from_uuid(id) else {
            continue;
        };
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
        ..Report::default()
    };
    if dry_run {
        return Ok(report);
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
                Ok(Some(report)) if !report.due.is_empty() => tracing::info!(
                    due = report.due.len(),
                    erased = report.erased,
                    failed = report.failed.len(),
                    "retention ran"
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "retention could not run; next time"),
            }
        }
    })
}
