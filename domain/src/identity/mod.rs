//! The identity domain's aggregates: tenants, users, memberships.

pub mod access_data;
pub mod api_key;
pub mod consent;
pub mod credential;
pub mod email_claim;
pub mod group;
pub mod link_token;
pub mod mail_template;
pub mod membership;
pub mod message;
pub mod session;
pub mod slug_claim;
pub mod tenant;
pub mod tenant_erasure;
pub mod user;

#[cfg(test)]
mod snapshot_tests;
