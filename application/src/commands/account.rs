//! Self-service account flows (ADR 0013): invitations, address
//! verification and password resets, each through a single-use link
//! token, and the message that carries the link, queued in the same append
//! as the event that causes it.
//!
//! A token reads `<prefix>_<stream>_<secret>`: the prefix names its purpose,
//! the stream is the user's tokens of that purpose (a name-based UUID that
//! does not reveal the user), the secret is 256 bits. Only the secret's
//! SHA-256 is recorded. A refusal is typed ([`LinkError`]) and writes
//! nothing; only a token whose secret matches learns more than "invalid".
//! The clock is a parameter of the functions that follow a link (`at`), so
//! tests move time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use custodia_domain::aggregate::Aggregate;
use custodia_domain::identity::credential::check_password_policy;
use custodia_domain::identity::email_claim::EmailClaim;
use custodia_domain::identity::link_token::{
    LinkPurpose, LinkTokenCommand, LinkTokenError, LinkTokens,
};
use custodia_domain::identity::mail_template::Locale;
use custodia_domain::identity::message::{MessageCommand, MessageKind};
use custodia_domain::identity::session::RevocationReason;
use custodia_domain::identity::tenant::Tenant;
use custodia_domain::identity::user::{User, UserCommand, UserError, UserStatus};
use custodia_domain::personal::{BlindIndex, Email, FieldContext, SealedField};
use custodia_domain::{ChainId, EventId, StreamId, TenantId, Timestamp};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::authorized::{by_own_secret, for_account_owner, Authorized};
use super::tenants::require_active_tenant;
use super::users::{claim_stream, email_index, user_stream};
use super::{
    load, load_in, load_located, stream, Caller, CommandError, Outcome, Plan, Ports, PLAN_RETRIES,
};

/// Why a link was refused. None says whether any account exists.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Malformed, unknown, or its secret does not match.
    #[error("the link is not valid")]
    Invalid,
    #[error("the link has expired")]
    Expired,
    #[error("the link was used already")]
    Used,
    #[error("the link was replaced by a newer one or withdrawn")]
    Revoked,
    /// A valid link of another tenant than the one the request names.
    #[error("the link belongs to another tenant")]
    WrongTenant,
    #[error(transparent)]
    Command(#[from] CommandError),
}

impl From<LinkTokenError> for LinkError {
    fn from(error: LinkTokenError) -> Self {
        match error {
            LinkTokenError::Invalid => LinkError::Invalid,
            LinkTokenError::Expired => LinkError::Expired,
            LinkTokenError::Used => LinkError::Used,
            LinkTokenError::Revoked => LinkError::Revoked,
            // Only issuing is limited; a use never meets it.
            LinkTokenError::TooMany => LinkError::Invalid,
        }
    }
}

pub(crate) fn link_stream(id: Uuid) -> StreamId {
    stream("link_token", id)
}

pub(crate) fn message_stream(id: Uuid) -> StreamId {
    stream("message", id)
}

/// A presented token, parsed. `Debug` never shows the secret.
struct Presented {
    purpose: LinkPurpose,
    stream: Uuid,
    secret_sha256: [u8; 32],
}

impl Presented {
    fn parse(text: &str) -> Result<Presented, LinkError> {
        let mut parts = text.trim().splitn(3, '_');
        let (Some(prefix), Some(stream), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(LinkError::Invalid);
        };
        let purpose = LinkPurpose::from_prefix(prefix).ok_or(LinkError::Invalid)?;
        let stream = Uuid::try_parse(stream).map_err(|_| LinkError::Invalid)?;
        let secret = Zeroizing::new(B64URL.decode(secret).map_err(|_| LinkError::Invalid)?);
        if secret.len() != 32 {
            return Err(LinkError::Invalid);
        }
        Ok(Presented {
            purpose,
            stream,
            secret_sha256: Sha256::digest(secret.as_slice()).into(),
        })
    }
}

/// Where the links in messages point: the application's page for each
/// purpose, which reads the token from the link and calls the API.
#[derive(Debug, Clone)]
pub struct LinkBase(pub String);

impl LinkBase {
    fn link(&self, purpose: LinkPurpose, tenant: TenantId, token: &str) -> String {
        let page = match purpose {
            LinkPurpose::Invitation => "accept-invitation",
            LinkPurpose::Verification => "verify-email",
            LinkPurpose::Reset => "reset-password",
        };
        format!(
            "{}/{page}?tenant={tenant}&token={token}",
            self.0.trim_end_matches('/')
        )
    }
}

/// A link token and the message that carries it, minted and sealed once,
/// ready to be planned (as often as a conflict asks).
pub(crate) struct PreparedLink {
    purpose: LinkPurpose,
    user: Uuid,
    token: Uuid,
    secret_sha256: [u8; 32],
    expires_at: Timestamp,
    at: Timestamp,
    message: PreparedMessage,
}

impl PreparedLink {
    /// Mints a token of `purpose` for `user` and seals the message that
    /// sends it to `recipient`.
    pub(crate) async fn mint(
        ports: &Ports,
        tenant: TenantId,
        user: Uuid,
        purpose: LinkPurpose,
        recipient: &Email,
        lifetime_micros: i64,
        at: Timestamp,
    ) -> Result<PreparedLink, CommandError> {
        let secret = Zeroizing::new(ports.tokens.refresh_secret());
        let text = Zeroizing::new(format!(
            "{}_{}_{}",
            purpose.prefix(),
            purpose.stream_id(user).simple(),
            B64URL.encode(secret.as_slice())
        ));
        let link = Zeroizing::new(ports.links.link(purpose, tenant, &text));
        let kind = match purpose {
            LinkPurpose::Invitation => MessageKind::Invitation,
            LinkPurpose::Verification => MessageKind::Verification,
            LinkPurpose::Reset => MessageKind::PasswordReset,
        };
        let message =
            PreparedMessage::seal(ports, tenant, user, kind, recipient, Some(&link), at).await?;
        Ok(PreparedLink {
            purpose,
            user,
            token: Uuid::now_v7(),
            secret_sha256: Sha256::digest(secret.as_slice()).into(),
            expires_at: Timestamp(at.0.saturating_add(lifetime_micros)),
            at,
            message,
        })
    }

    /// Refuses with [`CommandError::LinkLimit`] when the user's stream of
    /// this purpose takes no more links now (nothing is written).
    pub(crate) async fn check_bound(&self, ports: &Ports) -> Result<(), CommandError> {
        let stream = link_stream(self.purpose.stream_id(self.user));
        let (tokens, _) = load::<LinkTokens>(&*ports.store, &stream).await?;
        match tokens.decide(&self.issue()) {
            Err(LinkTokenError::TooMany) => Err(CommandError::LinkLimit),
            _ => Ok(()),
        }
    }

    fn issue(&self) -> LinkTokenCommand {
        LinkTokenCommand::Issue {
            token: self.token,
            user: self.user,
            purpose: self.purpose,
            secret_sha256: self.secret_sha256,
            expires_at: self.expires_at,
            at: self.at,
        }
    }

    /// Adds the token (part `token`, revoking the live one) and its message
    /// (part `message`) to `plan`.
    pub(crate) async fn plan(&self, plan: &mut Plan<'_>) -> Result<(), CommandError> {
        let issue = self.issue();
        let stream = link_stream(self.purpose.stream_id(self.user));
        plan.part::<LinkTokens>("token", &stream, EventId::generate(), |tokens| {
            tokens.decide(&issue).map_err(|error| match error {
                LinkTokenError::TooMany => CommandError::LinkLimit,
                _ => CommandError::Conflict("the link stream is another's".to_owned()),
            })
        })
        .await?;
        self.message.plan(plan).await
    }
}

/// A message, sealed, ready to be planned: the recipient under the user's
/// key (erasing them makes it undeliverable), the link under a key of the
/// message's own, which the delivery worker destroys once it is sent.
pub(crate) struct PreparedMessage {
    id: Uuid,
    event_id: EventId,
    command: MessageCommand,
}

impl PreparedMessage {
    pub(crate) async fn seal(
        ports: &Ports,
        tenant: TenantId,
        user: Uuid,
        kind: MessageKind,
        recipient: &Email,
        link: Option<&str>,
        at: Timestamp,
    ) -> Result<PreparedMessage, CommandError> {
        let id = Uuid::now_v7();
        let event_id = EventId::generate();
        let stream = message_stream(id);
        let context = |field| FieldContext {
            tenant,
            stream: &stream,
            event_id,
            field,
        };
        let recipient = ports
            .vault
            .seal(user, &context("recipient"), recipient.as_str().as_bytes())
            .await?;
        let link: Option<SealedField> = match link {
            Some(link) => Some(
                ports
                    .vault
                    .seal(id, &context("link"), link.as_bytes())
                    .await?,
            ),
            None => None,
        };
        Ok(PreparedMessage {
            id,
            event_id,
            command: MessageCommand::Queue {
                kind,
                user,
                recipient,
                link,
                at,
            },
        })
    }

    /// Adds the message to `plan` as its part `message:<id>`.
    pub(crate) async fn plan(&self, plan: &mut Plan<'_>) -> Result<(), CommandError> {
        let label = format!("message:{}", self.id);
        plan.part::<custodia_domain::identity::message::Message>(
            &label,
            &message_stream(self.id),
            self.event_id,
            |message| {
                message
                    .decide(&self.command)
                    .map_err(|e| CommandError::Conflict(e.to_string()))
            },
        )
        .await
        .map(drop)
    }
}

/// The user a presented token names, after its secret and purpose were
/// checked against its stream, in `tenant`.
async fn check_token(
    ports: &Ports,
    tenant: TenantId,
    presented: &Presented,
    purpose: LinkPurpose,
    at: Timestamp,
) -> Result<Uuid, LinkError> {
    if presented.purpose != purpose {
        return Err(LinkError::Invalid);
    }
    let (tokens, _, chain) =
        load_located::<LinkTokens>(&*ports.store, &link_stream(presented.stream)).await?;
    // The secret first: only its holder learns anything more.
    tokens.decide(&LinkTokenCommand::Use {
        purpose,
        secret_sha256: presented.secret_sha256,
        at,
    })?;
    if chain != Some(ChainId::Tenant(tenant)) {
        return Err(LinkError::WrongTenant);
    }
    tokens.user().ok_or(LinkError::Invalid)
}

/// Adds the token's use to `plan` (part `use`), decided again on the
/// stream's state at planning time.
async fn plan_use(
    plan: &mut Plan<'_>,
    presented: &Presented,
    at: Timestamp,
) -> Result<(), LinkError> {
    let command = LinkTokenCommand::Use {
        purpose: presented.purpose,
        secret_sha256: presented.secret_sha256,
        at,
    };
    let mut refused = None;
    plan.part::<LinkTokens>(
        "use",
        &link_stream(presented.stream),
        EventId::generate(),
        |tokens| match tokens.decide(&command) {
            Ok(events) => Ok(events),
            Err(error) => {
                refused = Some(error);
                Ok(Vec::new())
            }
        },
    )
    .await?;
    match refused {
        Some(error) => Err(error.into()),
        None => Ok(()),
    }
}

/// What a followed link did.
#[derive(Debug, Clone, Copy)]
pub struct LinkOutcome {
    pub user: Uuid,
    pub outcome: Outcome,
}

/// The link of a flow that sets a password, checked (the token, then the
/// tenant, then the policy), and the password hashed: what is left is to
/// plan its use. The hash's cost is paid only for a valid link.
async fn password_link(
    ports: &Ports,
    tenant: TenantId,
    token: &str,
    purpose: LinkPurpose,
    password: &str,
    at: Timestamp,
) -> Result<(Presented, Uuid, super::credentials::NewPassword), LinkError> {
    let presented = Presented::parse(token)?;
    let user = check_token(ports, tenant, &presented, purpose, at).await?;
    let Tenant::Active { settings, .. } = require_active_tenant(ports, tenant).await? else {
        return Err(CommandError::TenantSuspended.into());
    };
    check_password_policy(password, settings.password_min_length).map_err(CommandError::from)?;
    let password = super::credentials::NewPassword::hash(ports, tenant, user, password).await?;
    Ok((presented, user, password))
}

/// Accepts an invitation: sets the user's first password (the tenant's
/// policy applies), activates them and verifies their address (the link
/// reached it), using the token, in one append.
pub async fn accept_invitation(
    ports: &Ports,
    tenant: TenantId,
    token: &str,
    password: &str,
    at: Timestamp,
) -> Result<LinkOutcome, LinkError> {
    let (presented, user, password) =
        password_link(ports, tenant, token, LinkPurpose::Invitation, password, at).await?;
    let caller = Caller::user_itself(tenant, user, "invitation");
    let authorized = by_own_secret(&caller, tenant);
    for _ in 0..=PLAN_RETRIES {
        let mut plan = Plan::new(ports, &authorized);
        plan_use(&mut plan, &presented, at).await?;
        password.plan(&mut plan, user).await?;
        plan.part::<User>("activate", &user_stream(user), EventId::generate(), |u| {
            let User::Present {
                status: UserStatus::Invited,
                email_index,
                ..
            } = u
            else {
                return Err(CommandError::User(
                    custodia_domain::identity::user::UserError::WrongStatus,
                ));
            };
            let mut events = u.decide(&UserCommand::Activate)?;
            events.extend(u.decide(&UserCommand::VerifyEmail {
                email_index: *email_index,
            })?);
            Ok(events)
        })
        .await?;
        if let Some(committed) = plan.commit().await? {
            return Ok(LinkOutcome {
                user,
                outcome: committed.outcome("activate"),
            });
        }
    }
    Err(super::plan_gave_up().into())
}

/// Verifies the address the user's live verification link was sent to,
/// using the token: the address a requested change waits on, if any (it
/// becomes the sign-in address, the old one's claim and links are
/// released), or else the current one. (Every change of address, and every
/// new request, revokes the verification link sent before.)
pub async fn verify_email(
    ports: &Ports,
    tenant: TenantId,
    token: &str,
    at: Timestamp,
) -> Result<LinkOutcome, LinkError> {
    let presented = Presented::parse(token)?;
    let user = check_token(ports, tenant, &presented, LinkPurpose::Verification, at).await?;
    require_active_tenant(ports, tenant).await?;
    let caller = Caller::user_itself(tenant, user, "verification");
    let authorized = by_own_secret(&caller, tenant);
    let chain = Some(ChainId::Tenant(tenant));
    for _ in 0..=PLAN_RETRIES {
        let (state, version) = load_in::<User>(&*ports.store, &user_stream(user), chain).await?;
        let User::Present {
            status: UserStatus::Active | UserStatus::Invited | UserStatus::Suspended,
            email_index: current,
            pending_email,
            ..
        } = state
        else {
            return Err(CommandError::User(UserError::WrongStatus).into());
        };
        let event_id = EventId::generate();
        let command = match pending_email {
            Some(pending) => UserCommand::ConfirmEmailChange {
                email: reseal_pending(ports, tenant, user, pending, event_id).await?,
                email_index: pending,
            },
            None => UserCommand::VerifyEmail {
                email_index: current,
            },
        };
        let mut plan = Plan::new(ports, &authorized);
        plan_use(&mut plan, &presented, at).await?;
        let (_, read) = plan
            .part::<User>("verify", &user_stream(user), event_id, |u| {
                Ok(u.decide(&command)?)
            })
            .await?;
        if read != version {
            continue; // changed since it was read: plan again
        }
        if pending_email.is_some() {
            // The old address is no longer theirs: its claim goes, and so
            // do the links it holds.
            super::users::plan_release(&mut plan, "release", tenant, user, &current).await?;
            let old = [LinkPurpose::Invitation, LinkPurpose::Reset];
            plan_revoke_links(&mut plan, user, &old).await?;
        }
        if let Some(committed) = plan.commit().await? {
            return Ok(LinkOutcome {
                user,
                outcome: committed.outcome("verify"),
            });
        }
    }
    Err(super::plan_gave_up().into())
}

/// The address `user`'s pending change waits on, sealed again for the
/// event `event_id` (a sealed field is bound to the event that holds it).
async fn reseal_pending(
    ports: &Ports,
    tenant: TenantId,
    user: Uuid,
    pending: BlindIndex,
    event_id: EventId,
) -> Result<SealedField, CommandError> {
    let record = super::users::personal_record(ports, tenant, user).await?;
    let address = record
        .pending_email
        .ok_or(CommandError::User(UserError::Erased))?;
    let address = Zeroizing::new(address);
    let email = Email::parse(&address)?;
    let (sealed, index) = super::users::seal_email(ports, tenant, user, &email, event_id).await?;
    if index != pending {
        // Changed again since it was read: the command is refused.
        return Err(CommandError::User(UserError::AddressChanged));
    }
    Ok(sealed)
}

/// Resets a password with a reset link: the new password (the tenant's
/// policy applies), the token's use and the end of every session of the
/// user, in one append.
pub async fn confirm_password_reset(
    ports: &Ports,
    tenant: TenantId,
    token: &str,
    password: &str,
    at: Timestamp,
) -> Result<LinkOutcome, LinkError> {
    let (presented, user, password) =
        password_link(ports, tenant, token, LinkPurpose::Reset, password, at).await?;
    let caller = Caller::user_itself(tenant, user, "password-reset");
    let authorized = by_own_secret(&caller, tenant);
    for _ in 0..=PLAN_RETRIES {
        let mut plan = Plan::new(ports, &authorized);
        plan_use(&mut plan, &presented, at).await?;
        // Only a user who may sign in resets a password: a suspended or
        // deleted one stays out.
        let (state, _) = super::load_in::<User>(
            &*ports.store,
            &user_stream(user),
            Some(ChainId::Tenant(tenant)),
        )
        .await?;
        if state.status() != Some(UserStatus::Active) {
            return Err(LinkError::Revoked);
        }
        let reason = RevocationReason::PasswordReset;
        super::sessions::plan_end_sessions(&mut plan, user, None, reason, at).await?;
        password.plan(&mut plan, user).await?;
        if let Some(committed) = plan.commit().await? {
            return Ok(LinkOutcome {
                user,
                outcome: committed.outcome("password"),
            });
        }
    }
    Err(super::plan_gave_up().into())
}

/// The work behind a password-reset request, done after the request was
/// answered: if `email` is an active user's address in `tenant`, a reset
/// link (revoking the one before) and its message. Whether it was is only
/// logged as a count, never answered.
pub async fn request_password_reset(
    ports: &Ports,
    tenant: TenantId,
    email: &str,
) -> Result<bool, CommandError> {
    let Ok(email) = Email::parse(email) else {
        return Ok(false);
    };
    let Ok(Tenant::Active { settings, .. }) = require_active_tenant(ports, tenant).await else {
        return Ok(false);
    };
    let index = email_index(ports, tenant, &email).await?;
    let (claim, _) = load::<EmailClaim>(&*ports.store, &claim_stream(tenant, &index)).await?;
    let EmailClaim::ClaimedBy(user) = claim else {
        return Ok(false);
    };
    let at = Timestamp::now();
    let lifetime = settings.flows.lifetime_micros(LinkPurpose::Reset);
    let link = PreparedLink::mint(
        ports,
        tenant,
        user,
        LinkPurpose::Reset,
        &email,
        lifetime,
        at,
    )
    .await?;
    let caller = Caller::user_itself(tenant, user, "password-reset");
    let authorized = for_account_owner(&caller, tenant);
    for _ in 0..=PLAN_RETRIES {
        let mut plan = Plan::new(ports, &authorized);
        let (state, _) = plan
            .part::<User>("user", &user_stream(user), EventId::generate(), |_| {
                Ok(Vec::new())
            })
            .await?;
        // The claim may be older than the user's current address, and only
        // someone who may sign in gets a link.
        match state {
            User::Present {
                status: UserStatus::Active,
                email_index,
                ..
            } if email_index == index => {}
            _ => return Ok(false),
        }
        match link.plan(&mut plan).await {
            Ok(()) => {}
            // Enough links went to this user this hour: nothing more goes.
            Err(CommandError::LinkLimit) => return Ok(false),
            Err(other) => return Err(other),
        }
        if plan.commit().await?.is_some() {
            return Ok(true);
        }
    }
    Err(super::plan_gave_up())
}

/// Sends an invited user a new invitation, revoking the one before. Needs
/// `user.create`, on a user who holds no more than the caller.
pub async fn reinvite(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
) -> Result<Outcome, CommandError> {
    use custodia_domain::rbac::Permission;
    resend(
        ports,
        caller,
        tenant,
        user,
        Permission::UserCreate,
        LinkPurpose::Invitation,
    )
    .await
}

/// Sends the user a new verification link, revoking the one before: to
/// the address a requested change waits on, or else to their current one. The user themselves, or `user.update` on them.
pub async fn resend_verification(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
) -> Result<Outcome, CommandError> {
    use custodia_domain::rbac::Permission;
    let purpose = LinkPurpose::Verification;
    resend(ports, caller, tenant, user, Permission::UserUpdate, purpose).await
}

/// A new link of `purpose` (an invitation while they are invited, a
/// verification while their active address is not verified or a change
/// waits on a new one) to the address it proves, revoking the one before.
async fn resend(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
    permission: custodia_domain::rbac::Permission,
    purpose: LinkPurpose,
) -> Result<Outcome, CommandError> {
    let authorized =
        super::authorized::authorize_on_user(ports, caller, tenant, permission, user).await?;
    let Tenant::Active { settings, .. } = require_active_tenant(ports, tenant).await? else {
        return Err(CommandError::TenantSuspended);
    };
    if let Some(outcome) = Plan::committed(ports, caller, "token").await? {
        return Ok(outcome);
    }
    let record = super::users::personal_record(ports, tenant, user).await?;
    let email = match purpose {
        LinkPurpose::Verification => record.pending_email.or(record.email),
        LinkPurpose::Invitation | LinkPurpose::Reset => record.email,
    };
    let email = Email::parse(&email.ok_or(CommandError::User(UserError::Erased))?)?;
    let target = email_index(ports, tenant, &email).await?;
    let lifetime = settings.flows.lifetime_micros(purpose);
    let at = Timestamp::now();
    let link = PreparedLink::mint(ports, tenant, user, purpose, &email, lifetime, at).await?;
    let status = match purpose {
        LinkPurpose::Invitation => UserStatus::Invited,
        LinkPurpose::Verification | LinkPurpose::Reset => UserStatus::Active,
    };
    plan_link(ports, &authorized, user, &link, status, target).await
}

/// Plans `link` for `user` if they are in `status` and the address it goes
/// to, `target`, is still the one to prove: the pending one, or else the
/// current one while it is not verified (for an invitation: still invited).
async fn plan_link(
    ports: &Ports,
    authorized: &Authorized<'_>,
    user: Uuid,
    link: &PreparedLink,
    status: UserStatus,
    target: BlindIndex,
) -> Result<Outcome, CommandError> {
    for _ in 0..=PLAN_RETRIES {
        let mut plan = Plan::new(ports, authorized);
        let (state, _) = plan
            .part::<User>("user", &user_stream(user), EventId::generate(), |_| {
                Ok(Vec::new())
            })
            .await?;
        let User::Present {
            status: now,
            email_index,
            email_verified,
            pending_email,
        } = state
        else {
            return Err(CommandError::NotFound("user"));
        };
        let wanted = match pending_email {
            _ if now != status => false,
            _ if status == UserStatus::Invited => email_index == target,
            Some(pending) => pending == target,
            None => email_index == target && !email_verified,
        };
        if !wanted {
            return Err(CommandError::User(
                custodia_domain::identity::user::UserError::WrongStatus,
            ));
        }
        link.plan(&mut plan).await?;
        if let Some(committed) = plan.commit().await? {
            return Ok(committed.outcome("token"));
        }
    }
    Err(super::plan_gave_up())
}

/// A queued message, opened for sending. `Debug` shows only ids.
pub struct PendingMessage {
    pub id: Uuid,
    pub tenant: TenantId,
    pub kind: MessageKind,
    pub user: Uuid,
    /// The number the next attempt takes (1 for the first).
    pub attempt: u32,
    /// When the attempt is due.
    pub due: Timestamp,
    /// `None` once the recipient's key is erased: undeliverable.
    pub recipient: Option<String>,
    pub link: Option<String>,
    /// The recipient's display name, if they have one.
    pub name: Option<String>,
    /// The recipient's language (their `locale` or `preferredLanguage`
    /// attribute), if they have one that reads as a language tag.
    pub locale: Option<Locale>,
}

impl std::fmt::Debug for PendingMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingMessage")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// The message `id` of `tenant` opened, if it is still to be sent (the
/// log decides: a read model may lag behind a delivery just recorded).
pub async fn pending_message(
    ports: &Ports,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<PendingMessage>, CommandError> {
    use custodia_domain::aggregate::{EventSchema, StoredForm};
    use custodia_domain::identity::message::{Message, MessageEvent};
    let stream = message_stream(id);
    let events = super::whole_stream(&*ports.store, &stream).await?;
    let Some(first) = events.first() else {
        return Ok(None);
    };
    if first.chain != ChainId::Tenant(tenant) {
        return Ok(None);
    }
    let queued_id = first.event_id;
    let mut state = Message::default();
    for recorded in &events {
        let event = MessageEvent::from_stored(&StoredForm {
            event_type: recorded.event_type.clone(),
            schema_version: recorded.schema_version,
            payload: recorded.payload.clone(),
        })?;
        state = state.apply(&event);
    }
    let Message::Pending {
        kind,
        user,
        attempts,
        due,
        recipient,
        link,
    } = state
    else {
        return Ok(None);
    };
    let context = |field| FieldContext {
        tenant,
        stream: &stream,
        event_id: queued_id,
        field,
    };
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    let recipient = ports
        .vault
        .open(&context("recipient"), &recipient)
        .await?
        .map(text);
    let link = match link {
        Some(sealed) => ports.vault.open(&context("link"), &sealed).await?.map(text),
        None => None,
    };
    let profile = match recipient {
        Some(_) => super::users::personal_record(ports, tenant, user)
            .await
            .ok()
            .map(|record| record.profile),
        None => None,
    };
    let name = profile.as_ref().and_then(|p| p.display_name.clone());
    // The language a SCIM client or the app recorded for the user.
    let locale = profile.and_then(|p| {
        ["locale", "preferredLanguage"]
            .into_iter()
            .find_map(|key| p.attributes.get(key))
            .and_then(|tag| Locale::parse(tag).ok())
    });
    Ok(Some(PendingMessage {
        id,
        tenant,
        kind,
        user,
        attempt: attempts + 1,
        due,
        recipient,
        link,
        name,
        locale,
    }))
}

/// Records one delivery attempt of message `id`. Once the message is sent
/// or abandoned, the key of its link is destroyed: the link's secret is
/// unreadable from then on, even to someone holding the database and the
/// master key.
pub async fn record_attempt(
    ports: &Ports,
    tenant: TenantId,
    id: Uuid,
    attempt: u32,
    result: custodia_domain::identity::message::Attempt,
) -> Result<(), CommandError> {
    use custodia_domain::identity::message::{Message, MessageError};
    let caller = Caller::internal(
        custodia_domain::rbac::Principal::PlatformOperator,
        custodia_domain::Actor::System,
        "mail",
    );
    let authorized = super::authorized::by_system(&caller, tenant);
    let command = MessageCommand::Record { attempt, result };
    let outcome = super::execute::<Message>(
        ports,
        &authorized,
        &message_stream(id),
        EventId::generate(),
        |message| {
            message.decide(&command).map_err(|error| match error {
                MessageError::NotFound => CommandError::NotFound("message"),
                other => CommandError::Conflict(other.to_string()),
            })
        },
    )
    .await?;
    let (state, _) = load::<Message>(&*ports.store, &message_stream(id)).await?;
    if outcome.appended.is_some() && !matches!(state, Message::Pending { .. }) {
        ports.vault.erase_subject(tenant, id).await?;
    }
    Ok(())
}

/// Adds the revocation of `user`'s live links of `purposes` to `plan` (parts
/// `revoke:<purpose>`), because what they were for is gone: the address
/// they went to changed, the user was suspended, deleted or activated
/// otherwise. A link revoked this way answers `REVOKED`, also after the
/// user is reactivated.
pub(crate) async fn plan_revoke_links(
    plan: &mut Plan<'_>,
    user: Uuid,
    purposes: &[LinkPurpose],
) -> Result<(), CommandError> {
    use custodia_domain::identity::link_token::RevokedBecause;
    let revoke = LinkTokenCommand::Revoke {
        because: RevokedBecause::Obsolete,
    };
    for purpose in purposes {
        let label = format!("revoke:{}", purpose.name());
        let stream = link_stream(purpose.stream_id(user));
        plan.part::<LinkTokens>(&label, &stream, EventId::generate(), |tokens| {
            Ok(tokens.decide(&revoke).unwrap_or_default())
        })
        .await?;
    }
    Ok(())
}
