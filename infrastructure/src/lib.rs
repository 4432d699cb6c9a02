//! Custodia's adapters: the event store on SQLite (embedded default) and on
//! PostgreSQL (production), their migrations, and how a database URL picks
//! one. The only crate that knows SQL.

pub mod checkpoints;
pub mod config;
pub mod database;
pub mod idempotency;
mod inline_reader;
mod key_cache;
pub mod key_store;
pub mod migrations;
pub mod passwords;
mod pools;
pub mod postgres;
pub mod read_models;
pub mod signed_note;
pub mod smtp;
pub mod sqlite;
mod stored;
pub mod tokens;
pub mod totp;
pub mod vault;
pub mod webhook;

pub use database::{default_keys_url, open_event_store, Backend, OpenMode, DEFAULT_DATABASE_URL};
pub use idempotency::IdempotencyKeys;
pub use key_cache::KeyCacheStats;
pub use passwords::Argon2Passwords;
pub use postgres::PostgresEventStore;
pub use read_models::SqlReadModels;
pub use sqlite::SqliteEventStore;
pub use tokens::Ed25519Signer;
pub use totp::Totp;
pub use vault::{KeyVault, MasterKey, MasterKeys, Rotation};
