//! The `custodia` server: HTTP endpoints over the application's handlers.
//! The binary's CLI lives in `main.rs`.

pub mod audit_feed;
pub mod auth_cache;
pub mod browser;
pub mod graphql;
pub mod idempotency;
pub mod metrics;
pub mod projections;
pub mod server;
