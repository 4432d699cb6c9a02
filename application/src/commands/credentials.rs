//! Passwords, login and lockout.

use custodia_domain::aggregate::Aggregate;
use custodia_domain::identity::credential::{
    check_password_policy, Credential, CredentialCommand, CredentialError, LockoutPolicy,
    PasswordAlgorithm, Totp,
};
use custodia_domain::identity::email_claim::EmailClaim;
use custodia_domain::identity::session::RevocationReason;
use custodia_domain::identity::tenant::Tenant;
use custodia_domain::identity::user::{User, UserStatus};
use custodia_domain::personal::{Email, FieldContext, SealedField};
use custodia_domain::rbac::{Denied, Permission, Principal};
use custodia_domain::{
    Actor, ChainId, CommandId, EventId, InvalidValue, StreamId, TenantId, Timestamp,
};
use uuid::Uuid;

use super::authorized::{authorize_on_user, by_own_secret, Authorized};
use super::tenants::require_active_tenant;
use super::users::{claim_stream, user_stream};
use super::{
    decide_and_append, execute, load, load_in, stream, Caller, CommandError, Outcome, Plan, Ports,
    PLAN_RETRIES,
};
use crate::passwords::PasswordError;

const HASH_FIELD: &str = "password_hash";
const TOTP_FIELD: &str = "totp_secret";

pub(crate) fn credential_stream(user: Uuid) -> StreamId {
    stream("credential", user)
}

/// The user must exist in `tenant` and not be deleted. A user of another
/// tenant is "not found": nothing about it is revealed or written.
pub(crate) async fn require_user(
    ports: &Ports,
    tenant: TenantId,
    user: Uuid,
) -> Result<(), CommandError> {
    match user_status_in(ports, tenant, user).await? {
        UserStatus::Deleted => Err(CommandError::User(
            custodia_domain::identity::user::UserError::Deleted,
        )),
        UserStatus::Erased => Err(CommandError::User(
            custodia_domain::identity::user::UserError::Erased,
        )),
        _ => Ok(()),
    }
}

/// The status of a user of `tenant`; a user of another tenant (or none) is
/// "not found".
pub(crate) async fn user_status_in(
    ports: &Ports,
    tenant: TenantId,
    user: Uuid,
) -> Result<UserStatus, CommandError> {
    let chain = Some(ChainId::Tenant(tenant));
    load_in::<User>(&*ports.store, &user_stream(user), chain)
        .await?
        .0
        .status()
        .ok_or(CommandError::NotFound("user"))
}

async fn seal_hash(
    ports: &Ports,
    tenant: TenantId,
    user: Uuid,
    event_id: EventId,
    hash: &str,
) -> Result<SealedField, CommandError> {
    let stream = credential_stream(user);
    let context = FieldContext {
        tenant,
        stream: &stream,
        event_id,
        field: HASH_FIELD,
    };
    Ok(ports.vault.seal(user, &context, hash.as_bytes()).await?)
}

/// What a stored hash that cannot be verified counts as: a wrong password.
fn unverifiable_hash() -> crate::passwords::PasswordCheck {
    crate::passwords::PasswordCheck {
        matches: false,
        needs_rehash: false,
    }
}

fn password_failure(error: PasswordError) -> CommandError {
    match error {
        PasswordError::Busy => CommandError::Busy,
        other => CommandError::Store(crate::event_store::StoreError::database(other.to_string())),
    }
}

/// Sets a new password after checking the tenant's policy. Needs
/// `credential.manage` (or being that user). The new password and the end
/// of every other session of the user are appended together.
pub async fn set_password(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
    password: &str,
) -> Result<Outcome, CommandError> {
    let authorized =
        authorize_on_user(ports, caller, tenant, Permission::CredentialManage, user).await?;
    let Tenant::Active { settings, .. } = require_active_tenant(ports, tenant).await? else {
        return Err(CommandError::TenantSuspended);
    };
    check_password_policy(password, settings.password_min_length)?;
    require_user(ports, tenant, user).await?;
    // A user who has a password replaces it by proving it (change_password,
    // which calls this as the platform would); only a first one is set
    // without proof.
    if acts_for(ports, caller, user).await? {
        let (credential, _) = load::<Credential>(&*ports.store, &credential_stream(user)).await?;
        if credential.password.is_some() {
            return Err(Denied::CurrentPasswordRequired.into());
        }
    }
    let new = NewPassword::hash(ports, tenant, user, password).await?;
    replace_password(ports, &authorized, user, new).await
}

/// Appends a new password together with the end of every other session of
/// the user: whoever knew the old password is signed out; the session it
/// was set from stays when the user set it themselves.
async fn replace_password(
    ports: &Ports,
    authorized: &Authorized<'_>,
    user: Uuid,
    new: NewPassword,
) -> Result<Outcome, CommandError> {
    let caller = authorized.caller();
    if let Some(outcome) = Plan::committed(ports, caller, "password").await? {
        return Ok(outcome);
    }
    let keep = caller.session.filter(|_| caller.actor == Actor::User(user));
    let at = Timestamp::now();
    for _ in 0..=PLAN_RETRIES {
        let mut plan = Plan::new(ports, authorized);
        plan.caused_by(new.event_id);
        let reason = RevocationReason::PasswordChanged;
        super::sessions::plan_end_sessions(&mut plan, user, keep, reason, at).await?;
        new.plan(&mut plan, user).await?;
        if let Some(committed) = plan.commit().await? {
            return Ok(committed.outcome("password"));
        }
    }
    Err(super::plan_gave_up())
}

/// Does `caller` act for `user`: the user themselves, or an API key the
/// user minted? (Such a caller replaces the user's password only by proving
/// the current one: a stolen token or key alone must not take an account.)
async fn acts_for(ports: &Ports, caller: &Caller, user: Uuid) -> Result<bool, CommandError> {
    Ok(match caller.actor {
        Actor::User(actor) => actor == user && caller.principal != Principal::PlatformOperator,
        Actor::Service(key) => super::api_keys::creator_of(ports, key).await? == Actor::User(user),
        Actor::System => false,
    })
}

/// A new Argon2id password, hashed and sealed, ready to be planned.
pub(crate) struct NewPassword {
    event_id: EventId,
    command: CredentialCommand,
}

impl NewPassword {
    /// Hashes `password` (the caller checked the policy) and seals the hash.
    pub(crate) async fn hash(
        ports: &Ports,
        tenant: TenantId,
        user: Uuid,
        password: &str,
    ) -> Result<NewPassword, CommandError> {
        let hash = ports
            .passwords
            .hash(password)
            .await
            .map_err(password_failure)?;
        NewPassword::sealed(ports, tenant, user, &hash, PasswordAlgorithm::Argon2id).await
    }

    /// Seals a hash made elsewhere (an Argon2id hash here, or an imported
    /// bcrypt one).
    async fn sealed(
        ports: &Ports,
        tenant: TenantId,
        user: Uuid,
        hash: &str,
        algorithm: PasswordAlgorithm,
    ) -> Result<NewPassword, CommandError> {
        let event_id = EventId::generate();
        Ok(NewPassword {
            event_id,
            command: CredentialCommand::SetPassword {
                hash: seal_hash(ports, tenant, user, event_id, hash).await?,
                algorithm,
            },
        })
    }

    /// Adds the password to `plan` as its part `password`.
    pub(crate) async fn plan(&self, plan: &mut Plan<'_>, user: Uuid) -> Result<(), CommandError> {
        plan.part::<Credential>("password", &credential_stream(user), self.event_id, |c| {
            Ok(c.decide(&self.command)?)
        })
        .await
        .map(drop)
    }
}

/// A user changes their own password, proving the current one. The proof
/// goes through the same checks as a login, so it cannot be used to guess
/// passwords past the lockout.
pub async fn change_password(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
    current: &str,
    new: &str,
    at: Timestamp,
) -> Result<Outcome, LoginError> {
    // Only users themselves; once the current password is proven, that
    // proof is what authorizes the change.
    if caller.actor != Actor::User(user) {
        return Err(
            CommandError::Forbidden(custodia_domain::rbac::Denied::Missing(
                Permission::CredentialManage,
            ))
            .into(),
        );
    }
    super::authorized::require_tenant(caller, tenant)?;
    // Checked before the current password is, so a weak new one costs no attempt.
    let Tenant::Active { settings, .. } = require_active_tenant(ports, tenant).await? else {
        return Err(LoginError::TenantSuspended);
    };
    check_password_policy(new, settings.password_min_length).map_err(CommandError::from)?;
    let email = super::users::personal_record(ports, tenant, user)
        .await?
        .email
        .ok_or(LoginError::InvalidCredentials)?;
    // Second factors are not asked for here: the caller is already signed in.
    match login(ports, tenant, &email, current, None, at).await {
        Ok(_)
        | Err(LoginError::SecondFactorRequired)
        | Err(LoginError::SecondFactorEnrollmentRequired) => {}
        Err(other) => return Err(other),
    }
    // Proven: the new password replaces it like any other.
    let new = NewPassword::hash(ports, tenant, user, new).await?;
    let proven = by_own_secret(caller, tenant);
    Ok(replace_password(ports, &proven, user, new).await?)
}

/// Imports a bcrypt hash from another system (`$2a$`, `$2b$` or `$2y$`, 60
/// characters). It verifies as is and is replaced by Argon2id at the next
/// successful login.
pub async fn import_password_hash(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
    hash: &str,
) -> Result<Outcome, CommandError> {
    let authorized =
        authorize_on_user(ports, caller, tenant, Permission::CredentialManage, user).await?;
    // Nobody imports a password for themselves (it would replace theirs
    // without proof of it).
    if acts_for(ports, caller, user).await? {
        return Err(Denied::CurrentPasswordRequired.into());
    }
    let well_formed = hash.len() == 60
        && ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p))
        && hash.is_ascii();
    if !well_formed || ports.passwords.accepts_import(hash).is_err() {
        return Err(InvalidValue {
            field: "password hash",
            rule: "must be a bcrypt hash ($2a$, $2b$ or $2y$, 60 characters) of cost 4 to 12",
        }
        .into());
    }
    require_active_tenant(ports, tenant).await?;
    require_user(ports, tenant, user).await?;
    let new = NewPassword::sealed(ports, tenant, user, hash, PasswordAlgorithm::Bcrypt).await?;
    replace_password(ports, &authorized, user, new).await
}

/// Lifts a lockout. Needs `user.unlock`.
pub async fn unlock(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
    at: Timestamp,
) -> Result<Outcome, CommandError> {
    let authorized = authorize_on_user(ports, caller, tenant, Permission::UserUnlock, user).await?;
    require_active_tenant(ports, tenant).await?;
    require_user(ports, tenant, user).await?;
    let command = CredentialCommand::Unlock { at };
    decide_and_append::<Credential>(ports, &authorized, &credential_stream(user), &command).await
}

/// Why a login failed. An unknown user, a wrong password and a user who may
/// not log in all read the same, and cost the same time.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("locked after too many failed attempts")]
    Locked { until: Timestamp },
    #[error("the tenant is suspended")]
    TenantSuspended,
    /// The password was right; a current one-time code is needed too. (The
    /// attempt still counts towards the lockout until a full success.)
    #[error("a one-time code is required")]
    SecondFactorRequired,
    /// The tenant requires a second factor and the user has none enrolled.
    #[error("the tenant requires a second factor; enroll one first")]
    SecondFactorEnrollmentRequired,
    /// The credentials were right, but the tenant requires a verified
    /// address and the user has not verified theirs.
    #[error("the email address is not verified yet")]
    EmailNotVerified,
    #[error(transparent)]
    Internal(#[from] CommandError),
}

/// A sealed credential field, opened where the state says it was sealed
/// (its associated data names that event). `None`: no such field, or its
/// key was erased.
async fn open_sealed(
    ports: &Ports,
    tenant: TenantId,
    user: Uuid,
    field: &str,
    sealed: Option<(&SealedField, Option<EventId>)>,
) -> Result<Option<Vec<u8>>, CommandError> {
    let Some((sealed, Some(event_id))) = sealed else {
        return Ok(None);
    };
    let stream = credential_stream(user);
    let context = FieldContext {
        tenant,
        stream: &stream,
        event_id,
        field,
    };
    Ok(ports.vault.open(&context, sealed).await?)
}

/// Whether `password` is the user's current password, counted as no
/// attempt. An edge that is sent the same password again (Okta's password
/// sync repeats it with profile updates) leaves it, and the user's
/// sessions, alone. Needs `credential.manage` on the user, who could as
/// well be given a new one.
pub async fn is_current_password(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
    password: &str,
) -> Result<bool, CommandError> {
    authorize_on_user(ports, caller, tenant, Permission::CredentialManage, user).await?;
    let (credential, _) = load::<Credential>(&*ports.store, &credential_stream(user)).await?;
    // The user's own key (or the user) proves the password by changing
    // it, with lockout: never by asking here.
    if credential.password.is_some() && acts_for(ports, caller, user).await? {
        return Err(Denied::CurrentPasswordRequired.into());
    }
    let Some(hash) = current_hash(ports, tenant, user, &credential).await? else {
        return Ok(false);
    };
    match ports.passwords.verify(password, &hash).await {
        Ok(check) => Ok(check.matches),
        Err(PasswordError::UnknownFormat | PasswordError::TooCostly { .. }) => Ok(false),
        Err(other) => Err(password_failure(other)),
    }
}

async fn current_hash(
    ports: &Ports,
    tenant: TenantId,
    user: Uuid,
    credential: &Credential,
) -> Result<Option<String>, CommandError> {
    let sealed = credential
        .password
        .as_ref()
        .map(|(hash, _)| (hash, credential.password_event));
    let hash = open_sealed(ports, tenant, user, HASH_FIELD, sealed).await?;
    Ok(hash.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

async fn totp_secret(
    ports: &Ports,
    tenant: TenantId,
    user: Uuid,
    credential: &Credential,
) -> Result<Option<Vec<u8>>, CommandError> {
    let sealed = match &credential.totp {
        Totp::Pending(secret) | Totp::Active(secret) => Some((secret, credential.totp_event)),
        Totp::Off => None,
    };
    open_sealed(ports, tenant, user, TOTP_FIELD, sealed).await
}

/// Starts TOTP enrollment: a new secret, sealed, and the `otpauth://` URI
/// for the user's authenticator app. Needs `credential.manage` (or being
/// that user). Active only once confirmed with a code.
pub async fn enroll_totp(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
) -> Result<String, CommandError> {
    let authorized =
        authorize_on_user(ports, caller, tenant, Permission::CredentialManage, user).await?;
    let Tenant::Active { name, .. } = require_active_tenant(ports, tenant).await? else {
        return Err(CommandError::TenantSuspended);
    };
    require_user(ports, tenant, user).await?;
    let account = super::users::personal_record(ports, tenant, user)
        .await?
        .email
        .unwrap_or_else(|| user.to_string());
    super::refuse_repeat(ports, caller).await?;
    let secret = zeroize::Zeroizing::new(ports.codes.new_secret());
    let event_id = EventId::generate();
    let stream = credential_stream(user);
    let sealed = ports
        .vault
        .seal(
            user,
            &FieldContext {
                tenant,
                stream: &stream,
                event_id,
                field: TOTP_FIELD,
            },
            &secret,
        )
        .await?;
    let command = CredentialCommand::EnrollTotp { secret: sealed };
    execute::<Credential>(ports, &authorized, &stream, event_id, |c| {
        Ok(c.decide(&command)?)
    })
    .await?;
    Ok(ports
        .codes
        .provisioning_uri(&secret, name.as_str(), &account))
}

/// How many recovery codes are issued at a time.
pub const RECOVERY_CODES: usize = 10;

const RECOVERY_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A recovery code: 80 random bits as 16 base32 letters, `xxxx-xxxx-xxxx-xxxx`.
fn recovery_code(random: &[u8; 32]) -> String {
    let mut bits: u128 = random[..10]
        .iter()
        .fold(0, |acc, b| (acc << 8) | u128::from(*b));
    let mut letters = Vec::with_capacity(16);
    for _ in 0..16 {
        letters.push(RECOVERY_ALPHABET[(bits & 31) as usize]);
        bits >>= 5;
    }
    letters
        .chunks(4)
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

fn normalised_recovery_code(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn is_recovery_code(code: &str) -> bool {
    let normalised = normalised_recovery_code(code);
    normalised.len() == 16 && normalised.bytes().all(|b| RECOVERY_ALPHABET.contains(&b))
}

/// SHA-256 over the user id and the normalised code (80-bit codes: a fast
/// hash does not make them guessable).
fn recovery_hash(user: Uuid, code: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"custodia.recovery-code.v1");
    hasher.update(user.as_bytes());
    hasher.update(normalised_recovery_code(code).as_bytes());
    hasher.finalize().into()
}

/// Issues new single-use recovery codes, replacing earlier ones, and returns
/// them: they are shown this once and stored only hashed. Needs
/// `credential.manage` (or being that user).
pub async fn issue_recovery_codes(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
) -> Result<Vec<String>, CommandError> {
    let authorized =
        authorize_on_user(ports, caller, tenant, Permission::CredentialManage, user).await?;
    require_active_tenant(ports, tenant).await?;
    require_user(ports, tenant, user).await?;
    super::refuse_repeat(ports, caller).await?;
    let codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| recovery_code(&ports.tokens.refresh_secret()))
        .collect();
    let command = CredentialCommand::IssueRecoveryCodes {
        hashes: codes.iter().map(|code| recovery_hash(user, code)).collect(),
    };
    decide_and_append::<Credential>(ports, &authorized, &credential_stream(user), &command).await?;
    Ok(codes)
}

/// Confirms a pending enrollment with a current code (which is then spent).
pub async fn confirm_totp(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
    code: &str,
    at: Timestamp,
) -> Result<Outcome, CommandError> {
    let authorized =
        authorize_on_user(ports, caller, tenant, Permission::CredentialManage, user).await?;
    require_active_tenant(ports, tenant).await?;
    require_user(ports, tenant, user).await?;
    let (credential, _) = load::<Credential>(&*ports.store, &credential_stream(user)).await?;
    let secret = totp_secret(ports, tenant, user, &credential)
        .await?
        .ok_or(CommandError::Credential(CredentialError::NoTotpEnrollment))?;
    let step = ports
        .codes
        .matching_step(&secret, code, at)
        .ok_or(InvalidValue {
            field: "one-time code",
            rule: "is not valid now",
        })?;
    let command = CredentialCommand::ConfirmTotp { step };
    decide_and_append::<Credential>(ports, &authorized, &credential_stream(user), &command).await
}

pub async fn disable_totp(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    user: Uuid,
) -> Result<Outcome, CommandError> {
    let authorized =
        authorize_on_user(ports, caller, tenant, Permission::CredentialManage, user).await?;
    require_active_tenant(ports, tenant).await?;
    let command = CredentialCommand::DisableTotp;
    decide_and_append::<Credential>(ports, &authorized, &credential_stream(user), &command).await
}

/// Checks a user's password. At most the tenant's lockout threshold of
/// checks can be outstanding, however many attempts run in parallel; while
/// locked, even the right password is refused without being checked.
pub async fn login(
    ports: &Ports,
    tenant: TenantId,
    email: &str,
    password: &str,
    one_time_code: Option<&str>,
    at: Timestamp,
) -> Result<Uuid, LoginError> {
    verified_login(ports, tenant, email, password, one_time_code, at)
        .await
        .map(|(user, _)| user)
}

/// The answer to a login for an address with no account that may sign in:
/// counted and locked as an account would be, after one verification's
/// work, so that neither the answer nor its timing tells which addresses
/// have accounts.
async fn no_account(
    ports: &Ports,
    tenant: TenantId,
    email: &str,
    password: &str,
    at: Timestamp,
    policy: LockoutPolicy,
) -> LoginError {
    if let Some(until) = ports.unknown_logins.attempt(tenant, email, at, policy) {
        return LoginError::Locked { until };
    }
    match ports.passwords.verify_nothing(password).await {
        Ok(()) => LoginError::InvalidCredentials,
        Err(error) => password_failure(error).into(),
    }
}

/// [`login`], also returning the password it verified (sealed), so that a
/// session started from it can be refused if the password changes first.
pub(crate) async fn verified_login(
    ports: &Ports,
    tenant: TenantId,
    email: &str,
    password: &str,
    one_time_code: Option<&str>,
    at: Timestamp,
) -> Result<(Uuid, SealedField), LoginError> {
    let settings = match load::<Tenant>(&*ports.store, &super::tenants::tenant_stream(tenant))
        .await?
        .0
    {
        Tenant::Active { settings, .. } => settings,
        Tenant::Suspended { .. } => return Err(LoginError::TenantSuspended),
        // An erased tenant is answered as one that never was.
        Tenant::Absent | Tenant::Closed => {
            ports
                .passwords
                .verify_nothing(password)
                .await
                .map_err(password_failure)?;
            return Err(LoginError::InvalidCredentials);
        }
    };
    let claimed = match Email::parse(email) {
        Ok(email) => {
            let index = super::users::email_index(ports, tenant, &email).await?;
            match load::<EmailClaim>(&*ports.store, &claim_stream(tenant, &index))
                .await?
                .0
            {
                EmailClaim::ClaimedBy(user) => Some((user, index)),
                EmailClaim::Free => None,
            }
        }
        Err(_) => None,
    };
    let user = claimed.map(|(user, _)| user);
    let (may_log_in, address_verified) = match claimed {
        Some((user, index)) => {
            let state = load::<User>(&*ports.store, &user_stream(user)).await?.0;
            // Only by the current address: one a change waits on is
            // claimed too, but signs in nobody until it is verified.
            let current =
                matches!(state, User::Present { email_index, .. } if email_index == index);
            (
                current
                    && matches!(
                        state.status(),
                        Some(UserStatus::Active | UserStatus::Invited)
                    ),
                state.email_verified(),
            )
        }
        None => (false, false),
    };
    let policy = LockoutPolicy {
        threshold: settings.lockout_threshold,
        period_micros: i64::from(settings.lockout_minutes) * 60_000_000,
    };
    let (Some(user), true) = (user, may_log_in) else {
        return Err(no_account(ports, tenant, email, password, at, policy).await);
    };

    // A login attempt writes the account's credential before it is
    // authenticated: the check it starts counts towards the lockout.
    let caller = Caller::user_itself(tenant, user, "login");
    let start = CredentialCommand::StartPasswordCheck { at, policy };
    let started = execute::<Credential>(
        ports,
        &by_own_secret(&caller, tenant),
        &credential_stream(user),
        EventId::generate(),
        |c| Ok(c.decide(&start)?),
    )
    .await;
    match started {
        Ok(_) => {}
        Err(CommandError::Credential(CredentialError::Locked { until })) => {
            return Err(LoginError::Locked { until })
        }
        // No password yet (an invited user): as if there were no account.
        Err(CommandError::Credential(CredentialError::NoPassword)) => {
            return Err(no_account(ports, tenant, email, password, at, policy).await)
        }
        Err(other) => return Err(other.into()),
    }
    // The password about to be verified, as the aggregate knows it (read
    // first: if another is set meanwhile, the success below is refused).
    let (checked, _) = load::<Credential>(&*ports.store, &credential_stream(user)).await?;
    let Some((verified, _)) = checked.password.clone() else {
        return Err(LoginError::InvalidCredentials);
    };
    let Some(hash) = current_hash(ports, tenant, user, &checked).await? else {
        return Err(LoginError::InvalidCredentials);
    };
    let check = match ports.passwords.verify(password, &hash).await {
        Ok(check) => check,
        // A stored hash that cannot be verified matches nothing.
        Err(PasswordError::UnknownFormat | PasswordError::TooCostly { .. }) => unverifiable_hash(),
        Err(other) => return Err(password_failure(other).into()),
    };
    if !check.matches {
        // The started check stays outstanding: it counts as a failure.
        return Err(LoginError::InvalidCredentials);
    }
    let credential = load::<Credential>(&*ports.store, &credential_stream(user))
        .await?
        .0;
    let (totp_step, recovery_code) = match credential.totp {
        Totp::Active(_) => {
            let Some(code) = one_time_code else {
                return Err(LoginError::SecondFactorRequired);
            };
            if is_recovery_code(code) {
                let index = credential
                    .unused_recovery_code(&recovery_hash(user, code))
                    .ok_or(LoginError::InvalidCredentials)?;
                (None, Some(index))
            } else {
                let secret = totp_secret(ports, tenant, user, &credential)
                    .await?
                    .ok_or(LoginError::InvalidCredentials)?;
                (
                    Some(
                        ports
                            .codes
                            .matching_step(&secret, code, at)
                            .ok_or(LoginError::InvalidCredentials)?,
                    ),
                    None,
                )
            }
        }
        _ if settings.mfa_required => return Err(LoginError::SecondFactorEnrollmentRequired),
        _ => (None, None),
    };
    let event_id = EventId::generate();
    let rehashed = if check.needs_rehash {
        let new_hash = ports
            .passwords
            .hash(password)
            .await
            .map_err(password_failure)?;
        Some(seal_hash(ports, tenant, user, event_id, &new_hash).await?)
    } else {
        None
    };
    let rehashed_to = rehashed.clone();
    let success = CredentialCommand::RecordSuccess {
        at,
        verified: Some(verified.clone()),
        rehashed,
        totp_step,
        recovery_code,
    };
    let done = Caller {
        command_id: CommandId::generate(),
        ..caller
    };
    match execute::<Credential>(
        ports,
        &by_own_secret(&done, tenant),
        &credential_stream(user),
        event_id,
        |c| Ok(c.decide(&success)?),
    )
    .await
    {
        // The password was right (the success is recorded, so it does not
        // count towards a lockout), but the tenant wants a verified
        // address first: only the password's holder learns this.
        Ok(_) if settings.flows.require_verified_email && !address_verified => {
            Err(LoginError::EmailNotVerified)
        }
        // A rehash at this login replaced the verified password with the
        // same one under Argon2id: that is the password now.
        Ok(_) => Ok((user, rehashed_to.unwrap_or(verified))),
        // A code used already (here or by a concurrent login) is refused,
        // and so is a password replaced while it was being checked.
        Err(CommandError::Credential(
            CredentialError::TotpCodeReused | CredentialError::PasswordChanged,
        )) => Err(LoginError::InvalidCredentials),
        Err(other) => Err(other.into()),
    }
}

/// Failed logins for addresses with no account that may sign in (unknown,
/// suspended, deleted, without a password), counted like an account's
/// lockout (ADR 0005) so that the answers cannot be told apart. In memory,
/// per instance, at most [`UnknownLogins::CAPACITY`] addresses.
#[derive(Debug, Default)]
pub struct UnknownLogins {
    /// Per tenant and address digest: outstanding failures, the last one's time.
    attempts: std::sync::Mutex<std::collections::HashMap<AddressKey, (u32, Timestamp)>>,
}

type AddressKey = (TenantId, [u8; 32]);

impl UnknownLogins {
    pub const CAPACITY: usize = 100_000;

    /// Counts an attempt at `at`; `Some(until)` while the address is locked
    /// (the attempt is then not counted, as a locked account's is not).
    pub fn attempt(
        &self,
        tenant: TenantId,
        email: &str,
        at: Timestamp,
        policy: LockoutPolicy,
    ) -> Option<Timestamp> {
        use sha2::{Digest, Sha256};
        let key = (
            tenant,
            Sha256::digest(email.trim().to_lowercase().as_bytes()).into(),
        );
        let mut attempts = self.attempts.lock().expect("not poisoned");
        if attempts.len() >= Self::CAPACITY {
            attempts.retain(|_, (_, last)| at.0 < last.0.saturating_add(policy.period_micros));
            if attempts.len() >= Self::CAPACITY {
                attempts.clear();
            }
        }
        let (count, last) = attempts.entry(key).or_insert((0, at));
        let until = Timestamp(last.0.saturating_add(policy.period_micros));
        if *count >= u32::from(policy.threshold) {
            if at < until {
                return Some(until);
            }
            *count = 0;
        }
        *count += 1;
        *last = at;
        None
    }
}
