//! Keys named by erasure and expiry events are destroyed again. The events are the
//! source of truth (ADR 0010): a key store restored from a backup taken
//! before an erasure holds the erased key again, and this takes it back
//! out. `serve` does it at start-up, `custodia privacy reapply-erasures` on
//! demand (after restoring keys).
//!
//! The erasures are found through the audit timeline's rows (one per event,
//! filtered by type), so the cost is one key read per erasure ever made,
//! and a write only for a key that came back.

use custodia_application::commands::{access_data, Ports};
use custodia_application::{list_all, ReadModels, RowQuery, StoreError};
use custodia_domain::TenantId;
use custodia_projections::documents::{self, AuditDoc};

/// How many keys one pass found restored and destroyed again.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reapplied {
    /// Erasures and expiries the log holds (subjects, tenants, days of
    /// access data).
    pub erasures: usize,
    /// Keys that were back and are destroyed again.
    pub destroyed: usize,
}

pub async fn destroy_again(
    ports: &Ports,
    models: &dyn ReadModels,
) -> Result<Reapplied, StoreError> {
    let of_type = |event_type: &str| RowQuery {
        model: "audit_event",
        kind: Some(event_type.to_owned()),
        ..RowQuery::default()
    };
    let unreadable = |e: documents::MalformedDocument| StoreError::corrupt(e.to_string());
    let vault_failure = |e: custodia_application::VaultError| match e {
        custodia_application::VaultError::Store(store) => store,
        other => StoreError::corrupt(other.to_string()),
    };
    let mut reapplied = Reapplied::default();
    for row in list_all(models, of_type("SubjectErased")).await? {
        let doc: AuditDoc = documents::read(&row).map_err(unreadable)?;
        let Some(tenant) = row.tenant.and_then(|t| TenantId::from_uuid(t).ok()) else {
            continue;
        };
        reapplied.erasures += 1;
        if ports
            .vault
            .erase_subject(tenant, doc.stream_id)
            .await
            .map_err(vault_failure)?
        {
            reapplied.destroyed += 1;
        }
    }
    for row in list_all(models, of_type("TenantErased")).await? {
        let doc: AuditDoc = documents::read(&row).map_err(unreadable)?;
        // The record's stream is named by the tenant it erased.
        let Ok(tenant) = TenantId::from_uuid(doc.stream_id) else {
            continue;
        };
        reapplied.erasures += 1;
        if ports
            .vault
            .erase_tenant(tenant)
            .await
            .map_err(vault_failure)?
        {
            reapplied.destroyed += 1;
        }
    }
    // Access data expired by retention: the days each tenant's log names
    // (every record of a tenant read at once).
    let mut tenants = std::collections::BTreeSet::new();
    for row in list_all(models, of_type("AccessDataExpired")).await? {
        let doc: AuditDoc = documents::read(&row).map_err(unreadable)?;
        if let Ok(tenant) = TenantId::from_uuid(doc.stream_id) {
            reapplied.erasures += 1;
            tenants.insert(tenant);
        }
    }
    for tenant in tenants {
        let days = access_data::expired_days(ports, tenant)
            .await
            .map_err(|e| match e {
                custodia_application::commands::CommandError::Store(store) => store,
                other => StoreError::corrupt(other.to_string()),
            })?;
        let destroyed = ports
            .vault
            .erase_access_days(tenant, &days)
            .await
            .map_err(vault_failure)?;
        reapplied.destroyed += usize::try_from(destroyed).unwrap_or(usize::MAX);
    }
    if reapplied.destroyed > 0 {
        tracing::warn!(
            destroyed = reapplied.destroyed,
            "keys that erasure events name were back (a restored key store?) and are destroyed again"
        );
    }
    Ok(reapplied)
}
