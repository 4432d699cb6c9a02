//! The identity domain's aggregates: tenants, users, memberships.

pub mod tenant;
