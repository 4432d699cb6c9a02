//! Access-data retention (docs/privacy.md): IP addresses and user agents
//! are sealed under keys derived from the subject's key and the key of the
//! UTC day they were recorded on. When a day has been entirely older than
//! the tenant's `accessDataRetentionDays`, the retention job records
//! `AccessDataExpired` in the tenant's chain (the days and their key ids)
//! and then destroys the days' keys: that access data of every subject
//! becomes unreadable, and everything else in those events stays.
//!
//! As with erasure, the event comes first and is the source of truth: the
//! keys it names are destroyed again after a key-store restore.

use custodia_domain::identity::access_data::{AccessData, AccessDataCommand};
use custodia_domain::personal::{access_key_id, AccessDay};
use custodia_domain::{StreamId, TenantId, Timestamp};

use super::authorized::as_platform_operator;
use super::{decide_and_append, stream, Caller, CommandError, Ports};

/// The tenant's stream of `AccessDataExpired` records.
pub fn access_data_stream(tenant: TenantId) -> StreamId {
    stream("access_data", tenant.as_uuid())
}

/// The days of `tenant` whose access data is due at `now` under a
/// retention of `retention_days`: keys that still exist, for days that
/// ended at least that long ago.
pub async fn due_days(
    ports: &Ports,
    tenant: TenantId,
    retention_days: u16,
    now: Timestamp,
) -> Result<Vec<AccessDay>, CommandError> {
    Ok(ports
        .vault
        .access_days(tenant, AccessDay::first_kept(now, retention_days))
        .await?)
}

/// Records that the access data of `days` expired (platform operator: the
/// retention job), then destroys the keys of every day up to the last of
/// them. Returns how many keys it destroyed.
pub async fn expire(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    days: &[AccessDay],
    retention_days: u16,
) -> Result<u64, CommandError> {
    let authorized = as_platform_operator(caller, tenant)?;
    let expire = AccessDataCommand::Expire {
        days: days.to_vec(),
        keys: days
            .iter()
            .map(|day| access_key_id(tenant.as_uuid(), *day))
            .collect(),
        retention_days,
    };
    decide_and_append::<AccessData>(ports, &authorized, &access_data_stream(tenant), &expire)
        .await?;
    let Some(through) = days.iter().max() else {
        return Ok(0);
    };
    Ok(ports
        .vault
        .erase_access_days_through(tenant, *through)
        .await?)
}
