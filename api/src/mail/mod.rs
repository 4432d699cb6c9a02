//! Delivery (ADR 0013): the worker that sends queued messages, in one
//! instance at a time (lease `job:mail`), and the templates they are
//! rendered from.
//!
//! The worker reads which messages are due from the `message` read model,
//! then decides from the log (a delivery recorded a moment ago may not be
//! in the read model yet). Delivery is at least once: a crash between the
//! send and its record sends the message again on restart, under the same
//! `Message-ID`.

pub mod templates;

use std::sync::Arc;
use std::time::Duration;

use custodia_application::commands::account::{pending_message, record_attempt, PendingMessage};
use custodia_application::commands::{CommandError, Ports};
use custodia_application::mail::{MailError, Mailer};
use custodia_application::{ReadModels, RowQuery, StoreError};
use custodia_domain::identity::message::Attempt;
use custodia_domain::{TenantId, Timestamp};
use uuid::Uuid;

/// The lease's name in the table projections use for theirs.
pub const LEASE: &str = "job:mail";

/// How the worker paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// How often it looks for due messages.
    pub poll: Duration,
    /// The wait after a first failure; doubled at each further failure, up
    /// to [`MAX_BACKOFF`].
    pub first_retry: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            poll: Duration::from_secs(1),
            first_retry: Duration::from_secs(60),
        }
    }
}

/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// How many due messages one pass takes.
const BATCH: usize = 50;

/// The wait before the attempt after failed attempt `attempt` (1-based).
pub fn backoff(pace: Pace, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(20);
    pace.first_retry
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF.max(pace.first_retry))
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub sent: usize,
    pub failed: usize,
    pub abandoned: usize,
}

/// Sends every message due at `now` (at most [`BATCH`]).
pub async fn pass(
    ports: &Ports,
    models: &dyn ReadModels,
    mailer: &dyn Mailer,
    pace: Pace,
    now: Timestamp,
) -> Result<Pass, StoreError> {
    let due = models
        .list(&RowQuery {
            model: "message",
            exclude_kinds: vec!["sent", "abandoned"],
            at_to: Some(now.0 + 1),
            limit: BATCH,
            ..RowQuery::default()
        })
        .await?;
    let mut done = Pass::default();
    for row in due {
        let (Some(Ok(tenant)), Ok(id)) =
            (row.tenant.map(TenantId::from_uuid), row.id.parse::<Uuid>())
        else {
            continue;
        };
        match deliver(ports, mailer, pace, tenant, id, now).await {
            Ok(Some(Outcome::Sent)) => done.sent += 1,
            Ok(Some(Outcome::Failed)) => done.failed += 1,
            Ok(Some(Outcome::Abandoned)) => done.abandoned += 1,
            Ok(None) => {}
            Err(CommandError::Store(error)) => return Err(error),
            // Another instance recorded this attempt first, or the message
            // is settled: nothing to do.
            Err(error) => tracing::debug!(message_id = %id, %error, "delivery skipped"),
        }
    }
    Ok(done)
}

enum Outcome {
    Sent,
    Failed,
    Abandoned,
}

async fn deliver(
    ports: &Ports,
    mailer: &dyn Mailer,
    pace: Pace,
    tenant: TenantId,
    id: Uuid,
    now: Timestamp,
) -> Result<Option<Outcome>, CommandError> {
    let Some(message) = pending_message(ports, tenant, id).await? else {
        return Ok(None);
    };
    if message.due > now {
        return Ok(None);
    }
    let attempt = message.attempt;
    let result = match send(ports, mailer, tenant, &message).await {
        Ok(()) => Attempt::Sent { at: now },
        Err(MailError::Transient(reason)) => {
            let wait = backoff(pace, attempt);
            let retry_at = Timestamp(now.0 + i64::try_from(wait.as_micros()).unwrap_or(i64::MAX));
            tracing::info!(message_id = %id, attempt, %reason, "a message could not be sent; trying again later");
            Attempt::Failed {
                at: now,
                retry_at,
                reason,
            }
        }
        Err(MailError::Permanent(reason)) => {
            tracing::warn!(message_id = %id, attempt, %reason, "a message was refused for good");
            Attempt::Refused { at: now, reason }
        }
    };
    let outcome = match &result {
        Attempt::Sent { .. } => Outcome::Sent,
        Attempt::Failed { .. } if attempt < custodia_domain::identity::message::MAX_ATTEMPTS => {
            Outcome::Failed
        }
        _ => Outcome::Abandoned,
    };
    record_attempt(ports, tenant, id, attempt, result).await?;
    Ok(Some(outcome))
}

async fn send(
    ports: &Ports,
    mailer: &dyn Mailer,
    tenant: TenantId,
    message: &PendingMessage,
) -> Result<(), MailError> {
    let Some(to) = message.recipient.clone() else {
        return Err(MailError::Permanent("recipient erased".to_owned()));
    };
    let tenant_name = custodia_application::commands::tenants::tenant_name(ports, tenant)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let context = templates::Context {
        kind: message.kind,
        name: message.name.clone(),
        email: to.clone(),
        link: message.link.clone(),
        tenant_name,
    };
    // The tenant's own template in the recipient's language, else the
    // built-in one. Templates not read are a delay, not a failure.
    let own = custodia_application::commands::mail_templates::tenant_templates(ports, tenant)
        .await
        .map_err(|_| MailError::Transient("templates".to_owned()))?;
    let rendered = match own.find(message.kind, message.locale.as_ref()) {
        Some(template) => templates::render_tenant(&context, template),
        None => templates::render(&context),
    }
    .map_err(|_| MailError::Permanent("template".to_owned()))?;
    mailer
        .send(&custodia_application::mail::OutgoingMail {
            id: message.id,
            tenant,
            kind: message.kind,
            to,
            subject: rendered.subject,
            text: rendered.text,
            html: rendered.html,
        })
        .await
}

/// Runs the worker until the server stops: one instance at a time holds
/// the lease and sends; the others wait to take over.
pub fn schedule(
    ports: Ports,
    models: Arc<dyn ReadModels>,
    mailer: Arc<dyn Mailer>,
    pace: Pace,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let holder = Uuid::now_v7();
        let lease = i64::try_from((pace.poll * 10).as_micros()).unwrap_or(i64::MAX);
        let mut ticks = tokio::time::interval(pace.poll);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let now = Timestamp::now();
            match models.acquire(LEASE, holder, now.0, now.0 + lease).await {
                Ok(Some(_)) => {}
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(%error, "the mail worker could not take its lease");
                    continue;
                }
            }
            match pass(&ports, &*models, &*mailer, pace, now).await {
                Ok(done) if done != Pass::default() => tracing::info!(
                    sent = done.sent,
                    failed = done.failed,
                    abandoned = done.abandoned,
                    "mail delivered"
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "the mail worker could not read what is due"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_first_wait_up_to_an_hour() {
        let pace = Pace::default();
        let minutes: Vec<u64> = (1..=9).map(|a| backoff(pace, a).as_secs() / 60).collect();
        assert_eq!(minutes, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        let fast = Pace {
            first_retry: Duration::from_millis(500),
            ..pace
        };
        assert_eq!(backoff(fast, 2), Duration::from_secs(1));
    }
}
