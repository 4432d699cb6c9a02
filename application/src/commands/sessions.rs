//! Sessions: started by a full login, refreshed with rotation, revoked one
//! at a time or all at once. Access tokens are short-lived JWTs; a request
//! is authenticated by the token *and* a live session, so a revocation takes
//! effect at the next request.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use custodia_domain::aggregate::Aggregate;
use custodia_domain::identity::membership::Memberships;
use custodia_domain::identity::session::{
    RevocationReason, Session, SessionCommand, SessionError, SessionEvent, SessionIndex,
    SessionIndexCommand,
};
use custodia_domain::identity::tenant::{Tenant, TenantSettings};
use custodia_domain::personal::{AccessDay, FieldContext};
use custodia_domain::rbac::{Permission, Principal};
use custodia_domain::{Actor, ChainId, EventId, LogCursor, StreamId, TenantId, Timestamp};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::authorized::{authorize_on_user, by_own_secret};
use super::credentials::LoginError;
use super::tenants::tenant_stream;
use super::{
    decide_and_append, execute, load, load_in, load_located, memberships_stream, stream, Caller,
    CommandError, Outcome, Plan, Ports, PLAN_RETRIES,
};
use crate::tokens::{AccessClaims, TokenError};

fn session_stream(session: Uuid) -> StreamId {
    stream("session", session)
}

fn index_stream(user: Uuid) -> StreamId {
    stream("user_sessions", user)
}

/// Where a session was started from. Personal data: sealed in the log,
/// never logged. `Debug` hides it.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl std::fmt::Debug for ClientInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientInfo(<redacted>)")
    }
}

impl ClientInfo {
    fn check(&self) -> Result<(), custodia_domain::InvalidValue> {
        use custodia_domain::InvalidValue;
        if self
            .ip
            .as_deref()
            .is_some_and(|ip| ip.parse::<std::net::IpAddr>().is_err())
        {
            return Err(InvalidValue {
                field: "IP address",
                rule: "must be an IPv4 or IPv6 address",
            });
        }
        if self
            .user_agent
            .as_deref()
            .is_some_and(|ua| ua.len() > 512 || ua.chars().any(char::is_control))
        {
            return Err(InvalidValue {
                field: "user agent",
                rule: "must be at most 512 bytes without control characters",
            });
        }
        Ok(())
    }
}

/// What a client holds after a login or a refresh. `Debug` hides the tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionTokens {
    pub session: Uuid,
    pub access_token: String,
    pub access_expires_at: Timestamp,
    /// `<session id>.<secret>`: opaque to the client, stored only hashed.
    pub refresh_token: String,
    pub refresh_expires_at: Timestamp,
}

impl std::fmt::Debug for SessionTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTokens")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

/// Why a refresh or an authentication failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionFailure {
    #[error("the token is not valid")]
    InvalidToken,
    #[error("the token has expired")]
    Expired,
    #[error("the session is revoked")]
    Revoked,
    /// A rotated refresh token was presented again: the whole session was
    /// revoked just now, and the reason recorded.
    #[error("the refresh token was already used; the session is revoked")]
    RefreshTokenReused,
    #[error(transparent)]
    Internal(#[from] CommandError),
}

fn hash(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

async fn settings(ports: &Ports, tenant: TenantId) -> Result<TenantSettings, CommandError> {
    match load::<Tenant>(&*ports.store, &tenant_stream(tenant))
        .await?
        .0
    {
        Tenant::Active { settings, .. } => Ok(settings),
        Tenant::Suspended { .. } => Err(CommandError::TenantSuspended),
        Tenant::Absent | Tenant::Closed => Err(CommandError::NotFound("tenant")),
    }
}

/// A fresh access token for a session, with the user's current roles.
async fn access_token(
    ports: &Ports,
    tenant: TenantId,
    user: Uuid,
    session: Uuid,
    minutes: u16,
    at: Timestamp,
) -> Result<(String, Timestamp), CommandError> {
    let (memberships, _) = load::<Memberships>(&*ports.store, &memberships_stream(tenant)).await?;
    let now = at.0.div_euclid(1_000_000);
    let exp = now + i64::from(minutes) * 60;
    let claims = AccessClaims {
        iss: ports.tokens.issuer().to_owned(),
        aud: ports.tokens.audience().to_owned(),
        sub: user.to_string(),
        tid: tenant.to_string(),
        sid: session.to_string(),
        jti: Uuid::now_v7().to_string(),
        roles: memberships
            .roles_of(user)
            .map(ToString::to_string)
            .collect(),
        iat: now,
        nbf: now,
        exp,
    };
    let token = ports
        .tokens
        .sign(&claims)
        .map_err(|e| CommandError::Conflict(e.to_string()))?;
    Ok((token, Timestamp(exp * 1_000_000)))
}

/// What the client receives: a fresh access token and the refresh token
/// for `secret`.
#[allow(clippy::too_many_arguments)]
async fn tokens(
    ports: &Ports,
    tenant: TenantId,
    user: Uuid,
    session: Uuid,
    settings: &TenantSettings,
    secret: &[u8; 32],
    refresh_expires_at: Timestamp,
    at: Timestamp,
) -> Result<SessionTokens, CommandError> {
    let (access_token, access_expires_at) = access_token(
        ports,
        tenant,
        user,
        session,
        settings.access_token_minutes,
        at,
    )
    .await?;
    Ok(SessionTokens {
        session,
        access_token,
        access_expires_at,
        refresh_token: format!("{session}.{}", B64URL.encode(secret)),
        refresh_expires_at,
    })
}

/// Logs in (password, and a one-time code when required) and starts a session.
pub async fn start_session(
    ports: &Ports,
    tenant: TenantId,
    email: &str,
    password: &str,
    one_time_code: Option<&str>,
    client: Option<&ClientInfo>,
    at: Timestamp,
) -> Result<SessionTokens, LoginError> {
    if let Some(client) = client {
        client.check().map_err(CommandError::from)?;
    }
    let (user, verified) =
        super::credentials::verified_login(ports, tenant, email, password, one_time_code, at)
            .await?;
    let settings = settings(ports, tenant).await?;
    let session = Uuid::now_v7();
    let secret = ports.tokens.refresh_secret();
    let refresh_expires_at =
        Timestamp(at.0 + i64::from(settings.refresh_token_days) * 86_400_000_000);
    let caller = Caller::user_itself(tenant, user, "session");
    let start = SessionCommand::Start {
        user,
        at,
        refresh: hash(&secret),
        refresh_expires_at,
    };
    let stream = session_stream(session);
    let record = match client {
        Some(client) => {
            let event_id = EventId::generate();
            let context = FieldContext {
                tenant,
                stream: &stream,
                event_id,
                field: "client",
            };
            let json = serde_json::to_vec(client).expect("client info serialises");
            // Access data: under the subject's key and the day's, so that
            // retention can expire it (docs/privacy.md).
            match ports
                .vault
                .seal_access_data(user, AccessDay::of(at), &context, &json)
                .await
            {
                Ok(sealed) => Some((event_id, SessionCommand::RecordClient { client: sealed })),
                // The day's access data has expired already (a clock behind
                // the retention job's): nothing of it may be kept.
                Err(crate::VaultError::Erased) => None,
                Err(other) => return Err(CommandError::from(other).into()),
            }
        }
        None => None,
    };
    let list = SessionIndexCommand::List(session);
    // The session (with where it came from) and the user's index of
    // sessions, together.
    let mut started = false;
    for _ in 0..=super::PLAN_RETRIES {
        let (unlist, evict) = room_for_one_more(ports, user, at).await?;
        // The password (and second factor) just verified is the proof.
        let proven = by_own_secret(&caller, tenant);
        let mut plan = Plan::new(ports, &proven);
        let limit = SessionCommand::Revoke {
            at,
            reason: RevocationReason::SessionLimit,
        };
        for oldest in &evict {
            plan.part::<Session>(
                &oldest.to_string(),
                &session_stream(*oldest),
                EventId::generate(),
                |s| Ok(s.decide(&limit)?),
            )
            .await?;
        }
        let ids = [
            EventId::generate(),
            record.as_ref().map_or_else(EventId::generate, |r| r.0),
        ];
        plan.part_with_ids::<Session>("session", &stream, &ids, |s| {
            let mut events = s.decide(&start)?;
            if let Some((_, record)) = &record {
                let after = events.iter().fold(s.clone(), |s, e| s.apply(e));
                events.extend(after.decide(record)?);
            }
            Ok(events)
        })
        .await?;
        let unlist = SessionIndexCommand::Unlist(unlist.into_iter().chain(evict).collect());
        plan.part::<SessionIndex>("index", &index_stream(user), EventId::generate(), |i| {
            let mut events = i.decide(&unlist).unwrap_or_default();
            let after = events.iter().fold(i.clone(), |i, e| i.apply(e));
            events.extend(after.decide(&list).unwrap_or_default());
            Ok(events)
        })
        .await?;
        // The user must still be allowed in, with the password that was
        // checked: read after the index. A suspension or a new password
        // writes the index too, so one committed before that read is seen
        // here, and one committed after it conflicts with this plan (which
        // is then decided again). Read before the index, a suspension could
        // commit in between and the session start after it.
        still_allowed(ports, tenant, user, &verified).await?;
        if plan.commit().await?.is_some() {
            started = true;
            break;
        }
    }
    if !started {
        return Err(super::plan_gave_up().into());
    }
    Ok(tokens(
        ports,
        tenant,
        user,
        session,
        &settings,
        &secret,
        refresh_expires_at,
        at,
    )
    .await?)
}

/// What a new session of `user` unlists from their full index (sessions
/// that are over) and which of the oldest it ends to stay under the limit
/// (`SessionIndex::to_prune`); nothing while the index has room. Reading
/// every listed session happens once per many logins, when it fills up.
async fn room_for_one_more(
    ports: &Ports,
    user: Uuid,
    at: Timestamp,
) -> Result<(Vec<Uuid>, Vec<Uuid>), CommandError> {
    let (index, _) = load::<SessionIndex>(&*ports.store, &index_stream(user)).await?;
    if !index.is_full() {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut over = Vec::new();
    for listed in &index.0 {
        let (state, _) = load::<Session>(&*ports.store, &session_stream(*listed)).await?;
        let live =
            matches!(&state, Session::Live { refresh_expires_at, .. } if *refresh_expires_at > at);
        if !live {
            over.push(*listed);
        }
    }
    Ok(index.to_prune(&over))
}

/// Is the user who just logged in still allowed to start a session: may
/// sign in, and has the password the login verified?
async fn still_allowed(
    ports: &Ports,
    tenant: TenantId,
    user: Uuid,
    verified: &custodia_domain::personal::SealedField,
) -> Result<(), LoginError> {
    use custodia_domain::identity::credential::Credential;
    use custodia_domain::identity::user::UserStatus;
    let status = super::credentials::user_status_in(ports, tenant, user).await?;
    let (credential, _) =
        load::<Credential>(&*ports.store, &super::credentials::credential_stream(user)).await?;
    let same_password = credential.password.as_ref().map(|(p, _)| p) == Some(verified);
    match (status, same_password) {
        (UserStatus::Active | UserStatus::Invited, true) => Ok(()),
        _ => Err(LoginError::InvalidCredentials),
    }
}

/// Exchanges a refresh token for new tokens, rotating it. Presenting a
/// token that was already rotated away revokes the whole session. The
/// token alone names its session, and so its tenant (RFC 6749 clients send
/// nothing else); a client that names a tenant is refused for any other.
pub async fn refresh_session(
    ports: &Ports,
    tenant: Option<TenantId>,
    refresh_token: &str,
    at: Timestamp,
) -> Result<SessionTokens, SessionFailure> {
    let (session, secret) = refresh_token
        .split_once('.')
        .ok_or(SessionFailure::InvalidToken)?;
    let session = Uuid::parse_str(session).map_err(|_| SessionFailure::InvalidToken)?;
    let secret = B64URL
        .decode(secret)
        .map_err(|_| SessionFailure::InvalidToken)?;
    let (state, _, chain) =
        load_located::<Session>(&*ports.store, &session_stream(session)).await?;
    // A session of another tenant (or of none) is no session here.
    let tenant = match (chain, tenant) {
        (Some(ChainId::Tenant(found)), None) => found,
        (Some(ChainId::Tenant(found)), Some(named)) if found == named => found,
        _ => return Err(SessionFailure::InvalidToken),
    };
    let user = state.user().ok_or(SessionFailure::InvalidToken)?;
    let settings = require_access(ports, tenant, user).await?;
    let next = ports.tokens.refresh_secret();
    let refresh_expires_at =
        Timestamp(at.0 + i64::from(settings.refresh_token_days) * 86_400_000_000);
    let command = SessionCommand::Refresh {
        presented: hash(&secret),
        next: hash(&next),
        at,
        refresh_expires_at,
    };
    let caller = Caller::user_itself(tenant, user, "refresh");
    // Set by the last decision (a conflict decides again).
    let reused = std::sync::atomic::AtomicBool::new(false);
    // Presenting the session's refresh token is the proof.
    let outcome = execute::<Session>(
        ports,
        &by_own_secret(&caller, tenant),
        &session_stream(session),
        EventId::generate(),
        |s| {
            let events = s.decide(&command)?;
            let reuse = matches!(
                events.as_slice(),
                [SessionEvent::Revoked {
                    reason: RevocationReason::RefreshReuse,
                    ..
                }]
            );
            reused.store(reuse, std::sync::atomic::Ordering::Relaxed);
            Ok(events)
        },
    )
    .await;
    match outcome {
        Ok(_) if reused.load(std::sync::atomic::Ordering::Relaxed) => {
            Err(SessionFailure::RefreshTokenReused)
        }
        Ok(_) => Ok(tokens(
            ports,
            tenant,
            user,
            session,
            &settings,
            &next,
            refresh_expires_at,
            at,
        )
        .await?),
        Err(CommandError::Session(SessionError::Revoked)) => Err(SessionFailure::Revoked),
        Err(CommandError::Session(SessionError::Expired)) => Err(SessionFailure::Expired),
        Err(CommandError::Session(_)) => Err(SessionFailure::InvalidToken),
        Err(other) => Err(other.into()),
    }
}

/// Is `refresh_token` its session's current one, the session live and the
/// token unexpired at `at`? (For answers kept under an idempotency key:
/// tokens once handed out are handed out again only while they stand.)
pub async fn refresh_token_is_current(
    ports: &Ports,
    refresh_token: &str,
    at: Timestamp,
) -> Result<bool, CommandError> {
    let Some((session, secret)) = refresh_token.split_once('.') else {
        return Ok(false);
    };
    let (Ok(session), Ok(secret)) = (Uuid::parse_str(session), B64URL.decode(secret)) else {
        return Ok(false);
    };
    let (state, _) = load::<Session>(&*ports.store, &session_stream(session)).await?;
    Ok(
        matches!(state, Session::Live { current, refresh_expires_at, .. }
        if current == hash(&secret) && at < refresh_expires_at),
    )
}

/// Revokes one session: the user's own (logout) or, with `session.revoke`,
/// anyone's in the tenant.
pub async fn revoke_session(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    session: Uuid,
    at: Timestamp,
) -> Result<Outcome, CommandError> {
    super::authorized::require_tenant(caller, tenant)?;
    let chain = Some(ChainId::Tenant(tenant));
    let (state, _) = load_in::<Session>(&*ports.store, &session_stream(session), chain).await?;
    let owner = state.user().ok_or(CommandError::NotFound("session"))?;
    // Nobody signs out someone who holds more than they do.
    let authorized =
        authorize_on_user(ports, caller, tenant, Permission::SessionRevoke, owner).await?;
    let reason = if caller.actor == Actor::User(owner) {
        RevocationReason::Logout
    } else {
        RevocationReason::Revoked
    };
    let command = SessionCommand::Revoke { at, reason };
    decide_and_append::<Session>(ports, &authorized, &session_stream(session), &command).await
}

/// Revokes every session of a user ("sign out everywhere"), all together.
/// Returns how many were live, and the cursor of the last revocation.
pub async fn revoke_all_sessions(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
    at: Timestamp,
) -> Result<(usize, Option<LogCursor>), CommandError> {
    let authorized =
        authorize_on_user(ports, caller, tenant, Permission::SessionRevoke, user).await?;
    for _ in 0..=PLAN_RETRIES {
        let mut plan = Plan::new(ports, &authorized);
        plan_end_sessions(&mut plan, user, None, RevocationReason::Revoked, at).await?;
        if let Some(committed) = plan.commit().await? {
            let index = usize::from(committed.part("index").is_some());
            return Ok((committed.len() - index, committed.last().map(|a| a.cursor)));
        }
    }
    Err(super::plan_gave_up())
}

/// Adds the end of every live session of `user` but `keep` to `plan` (a
/// suspension, a deletion, a new password, "sign out everywhere"); each
/// session is a part of its own, labelled by its id.
pub(crate) async fn plan_end_sessions(
    plan: &mut Plan<'_>,
    user: Uuid,
    keep: Option<Uuid>,
    reason: RevocationReason,
    at: Timestamp,
) -> Result<(), CommandError> {
    // The index records the ending too: a session started meanwhile
    // conflicts with this plan (or this plan with it), and is decided again.
    let end_all = SessionIndexCommand::EndAll { keep };
    let (SessionIndex(sessions), _) = plan
        .part::<SessionIndex>("index", &index_stream(user), EventId::generate(), |i| {
            Ok(i.decide(&end_all).unwrap_or_default())
        })
        .await?;
    let command = SessionCommand::Revoke { at, reason };
    for session in sessions.into_iter().filter(|s| Some(*s) != keep) {
        plan.part::<Session>(
            &session.to_string(),
            &session_stream(session),
            EventId::generate(),
            |s| Ok(s.decide(&command)?),
        )
        .await?;
    }
    Ok(())
}

/// Whom a verified access token speaks for, as it was signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenSubject {
    pub tenant: TenantId,
    pub user: Uuid,
    pub session: Uuid,
}

/// Checks an access token's signature and lifetime (no I/O).
pub fn verify_access_token(
    ports: &Ports,
    access_token: &str,
    at: Timestamp,
) -> Result<(AccessClaims, TokenSubject), SessionFailure> {
    let claims = ports.tokens.verify(access_token, at).map_err(|e| match e {
        TokenError::OutOfTime => SessionFailure::Expired,
        TokenError::Invalid => SessionFailure::InvalidToken,
    })?;
    let parse = |s: &str| Uuid::parse_str(s).map_err(|_| SessionFailure::InvalidToken);
    let subject = TokenSubject {
        user: parse(&claims.sub)?,
        session: parse(&claims.sid)?,
        tenant: TenantId::from_uuid(parse(&claims.tid)?)
            .map_err(|_| SessionFailure::InvalidToken)?,
    };
    Ok((claims, subject))
}

/// The principal of a verified token's subject: its session must be live,
/// its tenant active and its user allowed to sign in (not suspended or
/// deleted), and the user's current roles give the permissions. So every
/// way of removing access takes effect at the next request.
pub async fn session_principal(
    ports: &Ports,
    subject: &TokenSubject,
) -> Result<Principal, SessionFailure> {
    let (state, _) = load::<Session>(&*ports.store, &session_stream(subject.session)).await?;
    if state.user() != Some(subject.user) {
        return Err(SessionFailure::InvalidToken);
    }
    if !state.is_live() {
        return Err(SessionFailure::Revoked);
    }
    require_access(ports, subject.tenant, subject.user).await?;
    Ok(super::member_principal(&*ports.store, subject.tenant, subject.user).await?)
}

/// A session gives access only while its tenant is active and its user may
/// sign in; otherwise it is as good as revoked. Returns the tenant's settings.
async fn require_access(
    ports: &Ports,
    tenant: TenantId,
    user: Uuid,
) -> Result<TenantSettings, SessionFailure> {
    use custodia_domain::identity::user::UserStatus;
    let settings = match settings(ports, tenant).await {
        Ok(settings) => settings,
        Err(CommandError::TenantSuspended | CommandError::NotFound(_)) => {
            return Err(SessionFailure::Revoked)
        }
        Err(other) => return Err(other.into()),
    };
    match super::credentials::user_status_in(ports, tenant, user).await {
        Ok(UserStatus::Active | UserStatus::Invited) => Ok(settings),
        Ok(_) | Err(CommandError::NotFound(_)) => Err(SessionFailure::Revoked),
        Err(other) => Err(other.into()),
    }
}

/// Authenticates a request: a valid access token of a live session, for the
/// tenant it names. Returns the principal with the user's current roles.
pub async fn authenticate(
    ports: &Ports,
    access_token: &str,
    at: Timestamp,
) -> Result<(Principal, AccessClaims), SessionFailure> {
    let (claims, subject) = verify_access_token(ports, access_token, at)?;
    Ok((session_principal(ports, &subject).await?, claims))
}
