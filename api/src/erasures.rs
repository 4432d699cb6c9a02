//! Keys named by erasure and expiry events are destroyed again. The events are the
//! source of truth (ADR 0010): a key store restored from a backup taken
//! before an erasure holds the erased key again, and this takes it back
//! out. `serve` does it at start-up, `custodia privacy reapply-erasures` on
//! demand (after restoring keys).
//!
//! The erasures are found through the audit timeline's rows (one per event,
//! filtered by type), and the expiries through the tenants' rows (the last
//! day expired), so the cost is one key read per erasure ever made and one
//! statement per tenant with expired access data, and a write only for a
//! key that came back.

use std::collections::{BTreeMap, BTreeSet};

use custodia_application::commands::Ports;
use custodia_application::{list_all, ReadModels, RowQuery, StoreError};
use custodia_domain::personal::AccessDay;
use custodia_domain::TenantId;
use custodia_projections::documents::{self, AuditDoc, TenantDoc};
use uuid::Uuid;

/// How many keys one pass found restored and destroyed again.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reapplied {
    /// Erasures and expiries the log holds (subjects, tenants, days of
    /// access data).
    pub erasures: usize,
    /// Keys that were back and are destroyed again.
    pub destroyed: usize,
}

/// What the log says is destroyed, as the read models index it.
#[derive(Debug, Default)]
pub struct Destroyed {
    /// Erased subjects (`SubjectErased`).
    pub subjects: BTreeSet<(TenantId, Uuid)>,
    /// Erased tenants (`TenantErased`).
    pub tenants: BTreeSet<TenantId>,
    /// Per tenant, the last day whose access data expired
    /// (`AccessDataExpired`).
    pub access_through: BTreeMap<TenantId, AccessDay>,
}

impl Destroyed {
    fn count(&self) -> usize {
        self.subjects.len() + self.tenants.len() + self.access_through.len()
    }
}

/// Every key the log's erasure and expiry events name: through the audit
/// timeline's index by event type (one row per erasure) and the tenants'
/// rows (one per tenant, however many days expired).
pub async fn destroyed(models: &dyn ReadModels) -> Result<Destroyed, StoreError> {
    let of_type = |event_type: &str| RowQuery {
        model: "audit_event",
        kind: Some(event_type.to_owned()),
        ..RowQuery::default()
    };
    let unreadable = |e: documents::MalformedDocument| StoreError::corrupt(e.to_string());
    let mut destroyed = Destroyed::default();
    for row in list_all(models, of_type("SubjectErased")).await? {
        let doc: AuditDoc = documents::read(&row).map_err(unreadable)?;
        if let Some(tenant) = row.tenant.and_then(|t| TenantId::from_uuid(t).ok()) {
            destroyed.subjects.insert((tenant, doc.stream_id));
        }
    }
    for row in list_all(models, of_type("TenantErased")).await? {
        let doc: AuditDoc = documents::read(&row).map_err(unreadable)?;
        // The record's stream is named by the tenant it erased.
        if let Ok(tenant) = TenantId::from_uuid(doc.stream_id) {
            destroyed.tenants.insert(tenant);
        }
    }
    let tenants = RowQuery {
        model: "tenant",
        ..RowQuery::default()
    };
    for row in list_all(models, tenants).await? {
        let doc: TenantDoc = documents::read(&row).map_err(unreadable)?;
        let tenant = row.tenant.and_then(|t| TenantId::from_uuid(t).ok());
        if let (Some(tenant), Some(through)) = (tenant, doc.access_data_expired_through) {
            destroyed.access_through.insert(tenant, through);
        }
    }
    Ok(destroyed)
}

/// Destroys again every key [`destroyed`] names.
pub async fn destroy_again(
    ports: &Ports,
    models: &dyn ReadModels,
) -> Result<Reapplied, StoreError> {
    let vault_failure = |e: custodia_application::VaultError| match e {
        custodia_application::VaultError::Store(store) => store,
        other => StoreError::corrupt(other.to_string()),
    };
    let destroyed = destroyed(models).await?;
    let mut reapplied = Reapplied {
        erasures: destroyed.count(),
        destroyed: 0,
    };
    for (tenant, subject) in &destroyed.subjects {
        let again = ports.vault.erase_subject(*tenant, *subject).await;
        reapplied.destroyed += usize::from(again.map_err(vault_failure)?);
    }
    for tenant in &destroyed.tenants {
        let again = ports.vault.erase_tenant(*tenant).await;
        reapplied.destroyed += usize::from(again.map_err(vault_failure)?);
    }
    for (tenant, through) in &destroyed.access_through {
        let again = ports
            .vault
            .erase_access_days_through(*tenant, *through)
            .await;
        let again = again.map_err(vault_failure)?;
        reapplied.destroyed += usize::try_from(again).unwrap_or(usize::MAX);
    }
    if reapplied.destroyed > 0 {
        tracing::warn!(
            destroyed = reapplied.destroyed,
            "keys that erasure events name were back (a restored key store?) and are destroyed again"
        );
    }
    Ok(reapplied)
}
