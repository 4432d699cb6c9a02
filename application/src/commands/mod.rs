//! Command handlers: one pipeline for every command.
//!
//! authenticate (the caller resolved a [`Principal`]) → authorize (the
//! permission in that tenant) → load the aggregate (fold its stream) →
//! decide → append with the expected version and the command's idempotency
//! key → return the new version and position. A version conflict is retried
//! by deciding again on the fresh state (safe: nothing was written); a
//! retried command id returns the original result.

pub mod access_data;
pub mod account;
pub mod api_keys;
pub mod audit;
mod authorized;
pub mod consent;
pub mod credentials;
pub mod mail_templates;
pub mod privacy;
pub mod sessions;
pub mod tenants;
pub mod users;

use std::sync::Arc;

use custodia_domain::aggregate::{Aggregate, EventSchema, SchemaError, Snapshot, StoredForm};
use custodia_domain::identity::api_key::ApiKeyError;
use custodia_domain::identity::credential::CredentialError;
use custodia_domain::identity::membership::{MembershipError, Memberships};
use custodia_domain::identity::session::SessionError;
use custodia_domain::identity::tenant::TenantError;
use custodia_domain::identity::user::UserError;
use custodia_domain::rbac::{Denied, Principal};
use custodia_domain::{
    Actor, ChainId, CommandId, EventId, InvalidValue, Metadata, NewEvent, Origin, StreamCategory,
    StreamId, StreamVersion, TenantId,
};
use uuid::Uuid;

pub(crate) use authorized::Authorized;

use crate::event_store::{
    AppendError, AppendRequest, Appended, EventStore, ExpectedVersion, StoreError, StoredSnapshot,
};
use crate::one_time_codes::OneTimeCodes;
use crate::passwords::PasswordHasher;
use crate::personal_data::{PersonalData, VaultError};
use crate::tokens::TokenSigner;

/// The ports a handler needs.
#[derive(Clone)]
pub struct Ports {
    pub store: Arc<dyn EventStore>,
    pub vault: Arc<dyn PersonalData>,
    pub passwords: Arc<dyn PasswordHasher>,
    pub codes: Arc<dyn OneTimeCodes>,
    pub tokens: Arc<dyn TokenSigner>,
    /// Failed logins of addresses without an account (in memory).
    pub unknown_logins: Arc<credentials::UnknownLogins>,
    /// Where the links in messages point (ADR 0013).
    pub links: Arc<account::LinkBase>,
}

/// Who asks, and how the command is identified.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// The user or service behind the principal, as recorded in metadata.
    pub actor: Actor,
    /// The idempotency key: a retried request carries the same one.
    pub command_id: CommandId,
    pub correlation_id: Uuid,
    pub origin: Origin,
    /// The version of the target stream the caller last read, if it wants
    /// the command refused when someone changed it since (optimistic
    /// concurrency at the edge). `None`: decide on the current state.
    pub expected_version: Option<StreamVersion>,
    /// The session the request was made in, if any: a password change
    /// ends every other session of the user, but not this one.
    pub session: Option<Uuid>,
}

impl Caller {
    /// A caller for work a handler does in a user's or service's own name
    /// without an authenticated request (a login, a refresh, a key's use):
    /// a fresh command id, and the actor's own principal.
    pub(crate) fn internal(principal: Principal, actor: Actor, origin: &str) -> Caller {
        Caller {
            principal,
            actor,
            command_id: CommandId::generate(),
            correlation_id: Uuid::now_v7(),
            origin: Origin::parse(origin).expect("handler origins are valid"),
            expected_version: None,
            session: None,
        }
    }

    /// [`Caller::internal`] for a member of `tenant` acting on their own account.
    pub(crate) fn user_itself(tenant: TenantId, user: Uuid, origin: &str) -> Caller {
        let principal = Principal::Member {
            tenant,
            user,
            permissions: Default::default(),
        };
        Caller::internal(principal, Actor::User(user), origin)
    }
}

/// What a successful command did. `appended` is `None` when the command was
/// valid but changed nothing (for example granting a role already held).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub stream_version: StreamVersion,
    pub appended: Option<Appended>,
}

/// Every way a command can be refused. None carries personal data.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("forbidden: {0}")]
    Forbidden(#[from] Denied),
    #[error("invalid input: {0}")]
    Invalid(#[from] InvalidValue),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("the email address is already used in this tenant")]
    EmailTaken,
    #[error("the tenant is suspended")]
    TenantSuspended,
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Membership(#[from] MembershipError),
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    ApiKey(#[from] ApiKeyError),
    #[error(transparent)]
    AccessData(#[from] custodia_domain::identity::access_data::AccessDataError),
    #[error("the stream is at version {actual}, not the expected {expected}")]
    StaleVersion {
        expected: StreamVersion,
        actual: StreamVersion,
    },
    #[error("conflict: {0}")]
    Conflict(String),
    /// Others changed the same data at the same moment, again and again:
    /// nothing was written, and the same request may well pass if sent again.
    #[error("too many concurrent changes to the same data; try again")]
    Contended,
    /// Enough links (and messages) went to this user this hour.
    #[error("too many links were sent to this user; try again later")]
    LinkLimit,
    /// A bounded resource (password hashing) is saturated: try again shortly.
    #[error("the server is busy; try again shortly")]
    Busy,
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("stored events could not be read: {0}")]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<AppendError> for CommandError {
    fn from(error: AppendError) -> Self {
        match error {
            AppendError::Store(store) => CommandError::Store(store),
            // The stream lives in another tenant: to this tenant it does
            // not exist (and nothing about it is revealed).
            AppendError::WrongChain { stream } => {
                CommandError::NotFound(match stream.category.as_str() {
                    "user" => "user",
                    "session" | "user_sessions" => "session",
                    "credential" => "credential",
                    "consent" => "consent ledger",
                    "api_key" => "API key",
                    _ => "target",
                })
            }
            AppendError::Conflict { .. } => CommandError::Contended,
            other => CommandError::Conflict(other.to_string()),
        }
    }
}

/// How many times a command is decided again after a version conflict. Each
/// conflict means another append won; login checks stop appending once the
/// lockout threshold (at most 20) is reached, so 25 always suffices there.
const CONFLICT_RETRIES: usize = 25;

/// The stream of an aggregate.
pub(crate) fn stream(category: &str, id: Uuid) -> StreamId {
    StreamId::new(
        StreamCategory::parse(category).expect("handler categories are valid"),
        id,
    )
}

/// Folds an aggregate's stream; returns the state and the stream version.
pub(crate) async fn load<A>(
    store: &dyn EventStore,
    stream: &StreamId,
) -> Result<(A, StreamVersion), CommandError>
where
    A: Aggregate + Snapshot,
    A::Event: EventSchema,
{
    let (state, version, _) = load_located(store, stream).await?;
    Ok((state, version))
}

/// [`load`], refusing a stream of another chain than `chain` as not found,
/// before anything of its state can show in a decision.
pub(crate) async fn load_in<A>(
    store: &dyn EventStore,
    stream: &StreamId,
    chain: Option<ChainId>,
) -> Result<(A, StreamVersion), CommandError>
where
    A: Aggregate + Snapshot,
    A::Event: EventSchema,
{
    let (state, version, found) = load_located(store, stream).await?;
    match (chain, found) {
        (Some(chain), Some(found)) if found != chain => Err(AppendError::WrongChain {
            stream: stream.clone(),
        }
        .into()),
        _ => Ok((state, version)),
    }
}

/// [`load`], also returning the chain the stream belongs to (`None` while
/// it has no events). Starts from the stream's snapshot, if the aggregate
/// keeps them, and folds only the events after it; once more than
/// [`SNAPSHOT_EVERY`] events were folded, saves a new one. So a command's
/// cost does not grow with its stream's history (ADR 0008).
pub(crate) async fn load_located<A>(
    store: &dyn EventStore,
    stream: &StreamId,
) -> Result<(A, StreamVersion, Option<ChainId>), CommandError>
where
    A: Aggregate + Snapshot,
    A::Event: EventSchema,
{
    let mut state = A::default();
    let mut version = StreamVersion::EMPTY;
    let mut chain = None;
    // The version of a kept snapshot that could not be read, if any.
    let mut unusable = None;
    if A::SNAPSHOT_VERSION.is_some() {
        if let Some(snapshot) = store.snapshot(stream).await? {
            // An unknown form (an older or newer binary's) is ignored: the
            // stream is folded from its start and a current one replaces it.
            match A::from_snapshot(snapshot.form_version, &snapshot.state) {
                Some(restored) => {
                    state = restored;
                    version = snapshot.stream_version;
                    chain = Some(snapshot.chain);
                }
                None => unusable = Some(snapshot.stream_version),
            }
        }
    }
    let from = version;
    loop {
        let batch = store.read_stream(stream, version, 1000).await?;
        let Some(last) = batch.last() else { break };
        chain = Some(last.chain);
        version = last.stream_version;
        for recorded in batch {
            let event = A::Event::from_stored(&StoredForm {
                event_type: recorded.event_type,
                schema_version: recorded.schema_version,
                payload: recorded.payload,
            })?;
            state = state.apply_recorded(&event, recorded.event_id);
        }
    }
    if let (Some(form_version), Some(chain)) = (A::SNAPSHOT_VERSION, chain) {
        if version.0 - from.0 >= SNAPSHOT_EVERY || unusable.is_some() {
            let snapshot = StoredSnapshot {
                stream: stream.clone(),
                chain,
                stream_version: version,
                form_version,
                state: state.to_snapshot(),
            };
            // A snapshot only saves work: failing to keep one fails nothing.
            if let Err(error) = store.save_snapshot(snapshot, unusable).await {
                tracing::warn!(%error, stream = %stream, "could not save a snapshot");
            }
        }
    }
    Ok((state, version, chain))
}

/// Every event of `stream`, read page by page (for the answers that are a
/// stream's whole history; commands load with [`load`]).
pub(crate) async fn whole_stream(
    store: &dyn EventStore,
    stream: &StreamId,
) -> Result<Vec<custodia_domain::RecordedEvent>, CommandError> {
    let mut events = Vec::new();
    loop {
        let after = events.last().map_or(
            StreamVersion::EMPTY,
            |e: &custodia_domain::RecordedEvent| e.stream_version,
        );
        let page = store.read_stream(stream, after, 1000).await?;
        if page.is_empty() {
            return Ok(events);
        }
        events.extend(page);
    }
}

/// How many events a load folds before it saves a new snapshot: a command
/// folds at most this many (plus what was appended since), whatever the
/// stream's length.
pub const SNAPSHOT_EVERY: u64 = 32;

/// Load → decide → append with the expected version and the command id,
/// deciding again on a version conflict. `decide` may refuse with any
/// [`CommandError`]. The first new event gets `first_event_id` (personal
/// fields in it were sealed for that id). Only an authorized command gets
/// here ([`Authorized`]).
pub(crate) async fn execute<A>(
    ports: &Ports,
    authorized: &Authorized<'_>,
    stream: &StreamId,
    first_event_id: EventId,
    decide: impl Fn(&A) -> Result<Vec<A::Event>, CommandError>,
) -> Result<Outcome, CommandError>
where
    A: Aggregate + Snapshot,
    A::Event: EventSchema,
{
    let (caller, chain) = (authorized.caller(), authorized.chain());
    tracing::debug!(stream = %stream, basis = ?authorized.basis(), "command authorized");
    // A retried command answers as it did the first time, whatever the
    // state is now.
    if let Some(committed) = ports.store.committed_command(caller.command_id).await? {
        // The same id for another target is a client bug, not a retry.
        if committed.stream != *stream {
            return Err(CommandError::Conflict(format!(
                "command id {} was already used for another command",
                caller.command_id
            )));
        }
        return Ok(Outcome {
            stream_version: committed.appended.stream_version,
            appended: Some(committed.appended),
        });
    }
    let mut attempt = 0;
    loop {
        let (state, version) = load_in::<A>(&*ports.store, stream, Some(chain)).await?;
        if let Some(expected) = caller
            .expected_version
            .filter(|expected| *expected != version)
        {
            return Err(CommandError::StaleVersion {
                expected,
                actual: version,
            });
        }
        let events = decide(&state)?;
        if events.is_empty() {
            return Ok(Outcome {
                stream_version: version,
                appended: None,
            });
        }
        let request = AppendRequest::new(
            chain,
            stream.clone(),
            ExpectedVersion::Exactly(version),
            new_events(&events, &[first_event_id]),
            caller.metadata(),
        )?;
        match ports.store.append(request).await {
            Ok(appended) => {
                return Ok(Outcome {
                    stream_version: appended.stream_version,
                    appended: Some(appended),
                })
            }
            Err(AppendError::Conflict { .. }) if attempt < CONFLICT_RETRIES => {
                attempt += 1;
                tracing::debug!(stream = %stream, attempt, "version conflict; deciding again");
            }
            Err(error) => {
                if matches!(error, AppendError::Conflict { .. }) {
                    tracing::warn!(stream = %stream, attempts = attempt + 1, "gave up after version conflicts");
                }
                return Err(error.into());
            }
        }
    }
}

/// Domain events in their stored form, the first ones under `ids` in
/// order (personal fields in them were sealed for those ids), the rest
/// under fresh ids.
fn new_events<E: EventSchema>(events: &[E], ids: &[EventId]) -> Vec<NewEvent> {
    events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let form = event.to_stored();
            NewEvent {
                event_id: ids.get(i).copied().unwrap_or_else(EventId::generate),
                event_type: form.event_type,
                schema_version: form.schema_version,
                payload: form.payload,
            }
        })
        .collect()
}

impl Caller {
    /// The metadata every event of this caller's command carries.
    fn metadata(&self) -> Metadata {
        Metadata {
            actor: self.actor,
            command_id: self.command_id,
            correlation_id: self.correlation_id,
            causation_id: None,
            origin: self.origin.clone(),
        }
    }
}

/// A command that writes several streams of one chain: each part is
/// decided on its stream's current state, then every part is appended in
/// one transaction, or none is. Each part is a step of the caller's command
/// (its own idempotency key, derived from the caller's), so a retried
/// request finds the whole command committed or nothing of it.
pub(crate) struct Plan<'a> {
    ports: &'a Ports,
    caller: &'a Caller,
    chain: ChainId,
    requests: Vec<AppendRequest>,
    labels: Vec<String>,
    /// The version each part's stream was read at.
    read: Vec<(String, StreamVersion)>,
    /// The event that causes the others, if the command has one.
    cause: Option<EventId>,
}

/// What a committed plan appended, part by part (parts that decided
/// nothing are absent).
pub(crate) struct Committed {
    appended: Vec<(String, Appended)>,
    read: Vec<(String, StreamVersion)>,
}

impl Committed {
    /// Where the part `label` landed, if it appended anything.
    pub(crate) fn part(&self, label: &str) -> Option<Appended> {
        self.appended
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, a)| *a)
    }

    /// The furthest cursor of the command, for read-your-writes.
    pub(crate) fn last(&self) -> Option<Appended> {
        self.appended
            .iter()
            .map(|(_, a)| *a)
            .max_by_key(|a| a.cursor)
    }

    /// How many parts appended something.
    pub(crate) fn len(&self) -> usize {
        self.appended.len()
    }

    /// The command's outcome: where part `main` landed (or its stream's
    /// current version if it appended nothing). Handlers plan their main
    /// part last, so its cursor is the command's furthest, and a retry,
    /// which finds the main part committed, answers the same.
    pub(crate) fn outcome(&self, main: &str) -> Outcome {
        Outcome {
            stream_version: self.part(main).map_or_else(
                || {
                    self.read
                        .iter()
                        .find(|(l, _)| l == main)
                        .map_or(StreamVersion::EMPTY, |(_, v)| *v)
                },
                |a| a.stream_version,
            ),
            appended: self.part(main).or_else(|| self.last()),
        }
    }
}

impl<'a> Plan<'a> {
    /// A plan of an authorized command ([`Authorized`]).
    pub(crate) fn new(ports: &'a Ports, authorized: &Authorized<'a>) -> Self {
        tracing::debug!(basis = ?authorized.basis(), "command authorized");
        Self {
            ports,
            caller: authorized.caller(),
            chain: authorized.chain(),
            requests: Vec::new(),
            labels: Vec::new(),
            read: Vec::new(),
            cause: None,
        }
    }

    /// Every other event of the plan is caused by `event` (one of its
    /// parts' first event), and names it as its causation id.
    pub(crate) fn caused_by(&mut self, event: EventId) {
        self.cause = Some(event);
    }

    /// The earlier outcome of this very command (the same caller command
    /// id), found by its part `label`, if it was committed before: a retry
    /// answers with it.
    pub(crate) async fn committed(
        ports: &Ports,
        caller: &Caller,
        label: &str,
    ) -> Result<Option<Outcome>, CommandError> {
        let id = caller.step(label).command_id;
        Ok(ports
            .store
            .committed_command(id)
            .await?
            .map(|committed| Outcome {
                stream_version: committed.appended.stream_version,
                appended: Some(committed.appended),
            }))
    }

    /// Loads `stream` (of this chain, else "not found"), decides on its
    /// state, and adds the events as the part `label`. Returns the state and
    /// version it decided on.
    pub(crate) async fn part<A>(
        &mut self,
        label: &str,
        stream: &StreamId,
        first_event_id: EventId,
        decide: impl FnOnce(&A) -> Result<Vec<A::Event>, CommandError>,
    ) -> Result<(A, StreamVersion), CommandError>
    where
        A: Aggregate + Snapshot,
        A::Event: EventSchema,
    {
        self.part_with_ids(label, stream, &[first_event_id], decide)
            .await
    }

    /// [`Plan::part`] whose first events take `ids`, in order (each holds
    /// fields sealed for its id).
    pub(crate) async fn part_with_ids<A>(
        &mut self,
        label: &str,
        stream: &StreamId,
        ids: &[EventId],
        decide: impl FnOnce(&A) -> Result<Vec<A::Event>, CommandError>,
    ) -> Result<(A, StreamVersion), CommandError>
    where
        A: Aggregate + Snapshot,
        A::Event: EventSchema,
    {
        let (state, version) = load_in::<A>(&*self.ports.store, stream, Some(self.chain)).await?;
        let events = decide(&state)?;
        self.read.push((label.to_owned(), version));
        if !events.is_empty() {
            let mut metadata = self.caller.step(label).metadata();
            metadata.causation_id = self
                .cause
                .filter(|cause| ids.first() != Some(cause))
                .map(|cause| cause.as_uuid());
            self.requests.push(AppendRequest::new(
                self.chain,
                stream.clone(),
                ExpectedVersion::Exactly(version),
                new_events(&events, ids),
                metadata,
            )?);
            self.labels.push(label.to_owned());
        }
        Ok((state, version))
    }

    /// Appends every part or none. `Ok(None)`: a stream changed since it was
    /// read; plan the command again.
    pub(crate) async fn commit(self) -> Result<Option<Committed>, CommandError> {
        if self.requests.is_empty() {
            return Ok(Some(Committed {
                appended: Vec::new(),
                read: self.read,
            }));
        }
        match self.ports.store.append_atomic(self.requests).await {
            Ok(appended) => Ok(Some(Committed {
                appended: self.labels.into_iter().zip(appended).collect(),
                read: self.read,
            })),
            Err(AppendError::Conflict { .. }) => {
                tracing::debug!(chain = %self.chain, "version conflict; planning again");
                Ok(None)
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// For commands whose answer is a secret shown once (an API key, a TOTP
/// secret, recovery codes): a retry of one that was committed cannot answer
/// the same again, and must not answer with a secret that was never kept.
pub(crate) async fn refuse_repeat(ports: &Ports, caller: &Caller) -> Result<(), CommandError> {
    if ports
        .store
        .committed_command(caller.command_id)
        .await?
        .is_some()
    {
        return Err(CommandError::Conflict(
            "this request was carried out already, and its secret was shown once".to_owned(),
        ));
    }
    Ok(())
}

/// How often a plan is made again after a version conflict.
pub(crate) const PLAN_RETRIES: usize = CONFLICT_RETRIES;

/// What a plan answers when it lost [`PLAN_RETRIES`] conflicts in a row.
pub(crate) fn plan_gave_up() -> CommandError {
    tracing::warn!(
        plans = PLAN_RETRIES + 1,
        "a command gave up after conflicting plans"
    );
    CommandError::Contended
}

/// [`execute`] for the common case: one domain command on one of the
/// authorized tenant's streams, its events under fresh ids.
pub(crate) async fn decide_and_append<A>(
    ports: &Ports,
    authorized: &Authorized<'_>,
    stream: &StreamId,
    command: &A::Command,
) -> Result<Outcome, CommandError>
where
    A: Aggregate + Snapshot,
    A::Event: EventSchema,
    CommandError: From<A::Error>,
{
    execute::<A>(ports, authorized, stream, EventId::generate(), |state| {
        Ok(state.decide(command)?)
    })
    .await
}

/// Authentication's last step: the principal of a user of a tenant, with
/// the permissions their current roles give.
pub async fn member_principal(
    store: &dyn EventStore,
    tenant: TenantId,
    user: Uuid,
) -> Result<Principal, CommandError> {
    let (memberships, _) = load::<Memberships>(store, &memberships_stream(tenant)).await?;
    Ok(Principal::Member {
        tenant,
        user,
        permissions: memberships.permissions_of(user),
    })
}

pub(crate) fn memberships_stream(tenant: TenantId) -> StreamId {
    stream("memberships", tenant.as_uuid())
}
