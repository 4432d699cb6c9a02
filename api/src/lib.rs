//! The `custodia` server: HTTP endpoints over the application's handlers.
//! The binary's CLI lives in `main.rs`.

pub mod audit_feed;
pub mod checkpoints;
pub mod erasures;
pub mod export;
pub mod graphql;
pub mod http;
pub mod mail;
pub mod projections;
pub mod retention;
pub mod scim;
