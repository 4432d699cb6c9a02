//! Custodia's application layer: the ports that adapters implement and the
//! services that use them. Orchestration only: no SQL, no HTTP.
//!
//! - [`event_store`]: the [`EventStore`] port, its requests and errors.
//! - [`read_models`]: the [`ReadModels`] port that projections write and queries read.
//! - [`verify`]: recompute every hash chain and report the first broken link.

pub mod commands;
pub mod event_store;
pub mod mail;
pub mod one_time_codes;
pub mod passwords;
pub mod personal_data;
pub mod read_models;
pub mod tokens;
pub mod verify;

pub use event_store::{
    check_atomic, AppendContext, AppendDecision, AppendError, AppendRequest, AppendSignal,
    Appended, ChainSummary, CommittedCommand, Durability, EventStore, ExpectedVersion, StoreError,
    StoredSnapshot,
};
pub use one_time_codes::OneTimeCodes;
pub use passwords::{PasswordCheck, PasswordError, PasswordHasher};
pub use personal_data::{PersonalData, VaultError};
pub use read_models::{
    list_all, Checkpoint, CheckpointMove, CommitError, ModelRow, ReadModelTx, ReadModels, RowQuery,
};
pub use tokens::{AccessClaims, TokenError, TokenSigner};
pub use verify::{verify_chain_in_batches, verify_log, ChainLine, ChainVerdict, VerifyReport};
