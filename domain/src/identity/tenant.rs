//! The tenant aggregate: creation, settings, suspension.

use serde::{Deserialize, Serialize};

use crate::aggregate::{read, stored, Aggregate, EventSchema, SchemaError, Snapshot, StoredForm};
use crate::InvalidValue;

/// A tenant's display name: 1–200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantName(String);

impl TenantName {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let value = value.trim();
        if value.is_empty() || value.chars().count() > 200 || value.chars().any(char::is_control) {
            return Err(InvalidValue::new(
                "tenant name",
                "must be 1-200 characters without control characters",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A tenant's name for people (`acme`), unique across the platform, that
/// login and the account flows take as well as the id (ADR 0013):
/// `[a-z0-9](-?[a-z0-9]){2,62}`, never shaped like a UUID, and plaintext in
/// the log for good, so it is refused when it looks like personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSlug(String);

impl TenantSlug {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let bytes = value.as_bytes();
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let shaped = (3..=63).contains(&bytes.len())
            && bytes.first().is_some_and(alnum)
            && bytes.last().is_some_and(alnum)
            && bytes.iter().all(|b| alnum(b) || *b == b'-')
            && !value.contains("--");
        if !shaped {
            return Err(InvalidValue::new(
                "tenant slug",
                "must be 3-63 of a-z, 0-9 and single hyphens, starting and ending with a letter or digit",
            ));
        }
        if uuid::Uuid::try_parse(value).is_ok() {
            return Err(InvalidValue::new(
                "tenant slug",
                "must not look like a tenant id",
            ));
        }
        crate::personal::refuse_personal_data("tenant slug", value)?;
        // A slug is public, as a group name is: a phone number in local
        // form is refused too.
        if crate::personal::holds_local_phone(value) {
            return Err(InvalidValue::new(
                "tenant slug",
                "must not hold a phone number or other personal data",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// A slug as the log holds it (history is read back whatever a later
    /// guard would say of it).
    pub(crate) fn from_log(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A purpose users can consent to, at a version of its policy text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentPurpose {
    /// A slug: `marketing_email`, `analytics`.
    pub id: String,
    pub version: u32,
}

/// Everything a tenant configures. Built only through [`TenantSettings::new`],
/// so every instance respects the bounds (also when read back: serde goes
/// through the stored form and [`TenantSettings::new`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "dto::Settings", try_from = "dto::Settings")]
pub struct TenantSettings {
    pub password_min_length: u8,
    pub mfa_required: bool,
    pub access_token_minutes: u16,
    pub refresh_token_days: u16,
    pub lockout_threshold: u8,
    pub lockout_minutes: u16,
    pub consent_purposes: Vec<ConsentPurpose>,
    pub deleted_user_retention_days: u16,
    pub access_data_retention_days: u16,
    /// Whether users may erase themselves (off by default: erasure cannot
    /// be undone).
    pub self_service_erasure: bool,
    /// Invitations, verification and password resets (ADR 0013).
    pub flows: AccountFlows,
}

/// How a tenant's account flows behave: link lifetimes, and whether an
/// unverified address may sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountFlows {
    /// Login refuses a user whose address is not verified.
    pub require_verified_email: bool,
    /// How long an invitation link lasts (1 to 30 days).
    pub invitation_days: u16,
    /// How long a verification link lasts (1 to 168 hours).
    pub verification_hours: u16,
    /// How long a password-reset link lasts (5 to 60 minutes).
    pub reset_minutes: u16,
}

impl Default for AccountFlows {
    fn default() -> Self {
        Self {
            require_verified_email: false,
            invitation_days: 7,
            verification_hours: 48,
            reset_minutes: 15,
        }
    }
}

impl AccountFlows {
    /// The flows, if every lifetime is within its bounds.
    pub fn checked(self) -> Result<Self, InvalidValue> {
        if !(1..=30).contains(&self.invitation_days) {
            return Err(InvalidValue::new(
                "invitation lifetime",
                "must be 1-30 days",
            ));
        }
        if !(1..=168).contains(&self.verification_hours) {
            return Err(InvalidValue::new(
                "verification lifetime",
                "must be 1-168 hours",
            ));
        }
        if !(5..=60).contains(&self.reset_minutes) {
            return Err(InvalidValue::new(
                "password reset lifetime",
                "must be 5-60 minutes",
            ));
        }
        Ok(self)
    }

    /// How long a link of `purpose` lasts, in µs.
    pub fn lifetime_micros(&self, purpose: super::link_token::LinkPurpose) -> i64 {
        use super::link_token::LinkPurpose as P;
        const MINUTE: i64 = 60_000_000;
        match purpose {
            P::Invitation => i64::from(self.invitation_days) * 24 * 60 * MINUTE,
            P::Verification => i64::from(self.verification_hours) * 60 * MINUTE,
            P::Reset => i64::from(self.reset_minutes) * MINUTE,
        }
    }
}

impl Default for TenantSettings {
    /// OWASP-minded defaults: 12-character passwords, 15-minute access
    /// tokens, 7-day refresh tokens, lockout after 5 failures for 15 minutes.
    fn default() -> Self {
        Self {
            password_min_length: 12,
            mfa_required: false,
            access_token_minutes: 15,
            refresh_token_days: 7,
            lockout_threshold: 5,
            lockout_minutes: 15,
            consent_purposes: Vec::new(),
            deleted_user_retention_days: 30,
            access_data_retention_days: 90,
            self_service_erasure: false,
            flows: AccountFlows::default(),
        }
    }
}

/// The most consent purposes a tenant declares (every settings event
/// carries them all, and every login reads them).
pub const MAX_CONSENT_PURPOSES: usize = 100;

/// The highest policy version: GraphQL's `Int` is 32 bits, signed.
pub const MAX_POLICY_VERSION: u32 = i32::MAX as u32;

impl TenantSettings {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        password_min_length: u8,
        mfa_required: bool,
        access_token_minutes: u16,
        refresh_token_days: u16,
        lockout_threshold: u8,
        lockout_minutes: u16,
        consent_purposes: Vec<ConsentPurpose>,
        deleted_user_retention_days: u16,
        access_data_retention_days: u16,
    ) -> Result<Self, InvalidValue> {
        let check = |ok: bool, field, rule| {
            if ok {
                Ok(())
            } else {
                Err(InvalidValue::new(field, rule))
            }
        };
        check(
            (8..=128).contains(&password_min_length),
            "password minimum length",
            "must be 8-128",
        )?;
        check(
            (1..=15).contains(&access_token_minutes),
            "access token lifetime",
            "must be 1-15 minutes",
        )?;
        check(
            (1..=30).contains(&refresh_token_days),
            "refresh token lifetime",
            "must be 1-30 days",
        )?;
        check(
            (1..=20).contains(&lockout_threshold),
            "lockout threshold",
            "must be 1-20 failures",
        )?;
        check(
            (1..=1440).contains(&lockout_minutes),
            "lockout period",
            "must be 1-1440 minutes",
        )?;
        check(
            (1..=3650).contains(&deleted_user_retention_days),
            "deleted-user retention",
            "must be 1-3650 days",
        )?;
        check(
            (1..=3650).contains(&access_data_retention_days),
            "access-data retention",
            "must be 1-3650 days",
        )?;
        for purpose in &consent_purposes {
            let slug = !purpose.id.is_empty()
                && purpose.id.len() <= 64
                && purpose
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            check(slug, "consent purpose", "must be 1-64 of [a-z0-9_]")?;
            check(
                (1..=MAX_POLICY_VERSION).contains(&purpose.version),
                "consent purpose version",
                "must be 1 to 2147483647",
            )?;
        }
        check(
            consent_purposes.len() <= MAX_CONSENT_PURPOSES,
            "consent purposes",
            "must be at most 100",
        )?;
        let mut ids: Vec<&str> = consent_purposes.iter().map(|p| p.id.as_str()).collect();
        ids.sort_unstable();
        check(
            ids.windows(2).all(|w| w[0] != w[1]),
            "consent purposes",
            "must be distinct",
        )?;
        Ok(Self {
            password_min_length,
            mfa_required,
            access_token_minutes,
            refresh_token_days,
            lockout_threshold,
            lockout_minutes,
            consent_purposes,
            deleted_user_retention_days,
            access_data_retention_days,
            self_service_erasure: false,
            flows: AccountFlows::default(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantCommand {
    Create {
        name: TenantName,
        settings: TenantSettings,
    },
    UpdateSettings {
        settings: TenantSettings,
    },
    /// Records the tenant's slug (claimed on the platform chain first).
    SetSlug {
        slug: TenantSlug,
    },
    Suspend,
    Reactivate,
    /// Ends the tenant for good (its erasure): nothing more happens in its
    /// chain. Closing a closed tenant changes nothing.
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantEvent {
    Created {
        name: TenantName,
        settings: TenantSettings,
    },
    SettingsChanged {
        settings: TenantSettings,
    },
    /// `TenantSlugSet`: the tenant's slug is now `slug`.
    SlugSet {
        slug: TenantSlug,
    },
    Suspended,
    Reactivated,
    /// `TenantClosed`: the tenant was erased; its chain ends here.
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("the tenant already exists")]
    AlreadyExists,
    #[error("the tenant does not exist")]
    NotFound,
    #[error("the tenant is suspended")]
    Suspended,
    #[error("the tenant is not suspended")]
    NotSuspended,
    #[error("the tenant is erased")]
    Closed,
}

/// A tenant's state: a fold over its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Tenant {
    #[default]
    Absent,
    Active {
        name: TenantName,
        settings: TenantSettings,
        slug: Option<TenantSlug>,
    },
    Suspended {
        name: TenantName,
        settings: TenantSettings,
        slug: Option<TenantSlug>,
    },
    /// Erased: nothing more happens in it.
    Closed,
}

/// A change to some of a tenant's settings: what it leaves out stays as it
/// is (so a client that changes one setting does not resend the others, nor
/// undo a change made meanwhile).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsChange {
    pub password_min_length: Option<u8>,
    pub mfa_required: Option<bool>,
    pub access_token_minutes: Option<u16>,
    pub refresh_token_days: Option<u16>,
    pub lockout_threshold: Option<u8>,
    pub lockout_minutes: Option<u16>,
    /// The whole list, replacing the current one.
    pub consent_purposes: Option<Vec<ConsentPurpose>>,
    /// Purposes added, or given a new policy version (by id), after that.
    pub add_consent_purposes: Vec<ConsentPurpose>,
    /// Purposes removed (by id), last.
    pub remove_consent_purposes: Vec<String>,
    pub deleted_user_retention_days: Option<u16>,
    pub access_data_retention_days: Option<u16>,
    pub self_service_erasure: Option<bool>,
    pub require_verified_email: Option<bool>,
    pub invitation_days: Option<u16>,
    pub verification_hours: Option<u16>,
    pub reset_minutes: Option<u16>,
}

impl SettingsChange {
    /// `current` with this change, checked like any settings.
    pub fn applied_to(&self, current: &TenantSettings) -> Result<TenantSettings, InvalidValue> {
        let mut purposes = self
            .consent_purposes
            .clone()
            .unwrap_or_else(|| current.consent_purposes.clone());
        let invalid = |rule| Err(InvalidValue::new("consent purposes", rule));
        for added in &self.add_consent_purposes {
            if self.remove_consent_purposes.contains(&added.id) {
                return invalid("must not be added and removed at once");
            }
            if self
                .add_consent_purposes
                .iter()
                .filter(|other| other.id == added.id)
                .count()
                > 1
            {
                return invalid("must be distinct");
            }
            match purposes.iter_mut().find(|p| p.id == added.id) {
                // A policy version only goes up: an older grant must not
                // become current again.
                Some(existing) if added.version < existing.version => {
                    return invalid("must not lower a purpose's policy version");
                }
                Some(existing) => existing.version = added.version,
                None => purposes.push(added.clone()),
            }
        }
        for removed in &self.remove_consent_purposes {
            if !purposes.iter().any(|p| &p.id == removed) {
                return invalid("must name declared purposes to remove");
            }
        }
        purposes.retain(|p| !self.remove_consent_purposes.contains(&p.id));
        let mut settings = TenantSettings::new(
            self.password_min_length
                .unwrap_or(current.password_min_length),
            self.mfa_required.unwrap_or(current.mfa_required),
            self.access_token_minutes
                .unwrap_or(current.access_token_minutes),
            self.refresh_token_days
                .unwrap_or(current.refresh_token_days),
            self.lockout_threshold.unwrap_or(current.lockout_threshold),
            self.lockout_minutes.unwrap_or(current.lockout_minutes),
            purposes,
            self.deleted_user_retention_days
                .unwrap_or(current.deleted_user_retention_days),
            self.access_data_retention_days
                .unwrap_or(current.access_data_retention_days),
        )?;
        settings.self_service_erasure = self
            .self_service_erasure
            .unwrap_or(current.self_service_erasure);
        let flows = &current.flows;
        settings.flows = AccountFlows {
            require_verified_email: self
                .require_verified_email
                .unwrap_or(flows.require_verified_email),
            invitation_days: self.invitation_days.unwrap_or(flows.invitation_days),
            verification_hours: self.verification_hours.unwrap_or(flows.verification_hours),
            reset_minutes: self.reset_minutes.unwrap_or(flows.reset_minutes),
        }
        .checked()?;
        Ok(settings)
    }
}

/// Every setting, as a change: a full replacement.
impl From<TenantSettings> for SettingsChange {
    fn from(settings: TenantSettings) -> Self {
        SettingsChange {
            password_min_length: Some(settings.password_min_length),
            mfa_required: Some(settings.mfa_required),
            access_token_minutes: Some(settings.access_token_minutes),
            refresh_token_days: Some(settings.refresh_token_days),
            lockout_threshold: Some(settings.lockout_threshold),
            lockout_minutes: Some(settings.lockout_minutes),
            consent_purposes: Some(settings.consent_purposes),
            add_consent_purposes: Vec::new(),
            remove_consent_purposes: Vec::new(),
            deleted_user_retention_days: Some(settings.deleted_user_retention_days),
            access_data_retention_days: Some(settings.access_data_retention_days),
            self_service_erasure: Some(settings.self_service_erasure),
            require_verified_email: Some(settings.flows.require_verified_email),
            invitation_days: Some(settings.flows.invitation_days),
            verification_hours: Some(settings.flows.verification_hours),
            reset_minutes: Some(settings.flows.reset_minutes),
        }
    }
}

impl Tenant {
    pub fn settings(&self) -> Option<&TenantSettings> {
        match self {
            Tenant::Absent | Tenant::Closed => None,
            Tenant::Active { settings, .. } | Tenant::Suspended { settings, .. } => Some(settings),
        }
    }
}

/// Not snapshotted: the stream stays short (ADR 0008).
impl Snapshot for Tenant {}

impl Aggregate for Tenant {
    type Command = TenantCommand;
    type Event = TenantEvent;
    type Error = TenantError;

    fn decide(&self, command: &TenantCommand) -> Result<Vec<TenantEvent>, TenantError> {
        use TenantCommand as C;
        use TenantEvent as E;
        match (self, command) {
            (Tenant::Absent, C::Create { name, settings }) => Ok(vec![E::Created {
                name: name.clone(),
                settings: settings.clone(),
            }]),
            (_, C::Create { .. }) => Err(TenantError::AlreadyExists),
            (Tenant::Absent, _) => Err(TenantError::NotFound),
            (Tenant::Closed, C::Close) => Ok(vec![]),
            (Tenant::Closed, _) => Err(TenantError::Closed),
            (_, C::Close) => Ok(vec![E::Closed]),
            (
                Tenant::Active {
                    settings: current, ..
                },
                C::UpdateSettings { settings },
            ) => {
                if current == settings {
                    Ok(vec![])
                } else {
                    Ok(vec![E::SettingsChanged {
                        settings: settings.clone(),
                    }])
                }
            }
            (Tenant::Suspended { .. }, C::UpdateSettings { .. }) => Err(TenantError::Suspended),
            (Tenant::Active { slug: current, .. }, C::SetSlug { slug }) => {
                Ok(if current.as_ref() == Some(slug) {
                    vec![]
                } else {
                    vec![E::SlugSet { slug: slug.clone() }]
                })
            }
            (Tenant::Suspended { .. }, C::SetSlug { .. }) => Err(TenantError::Suspended),
            (Tenant::Active { .. }, C::Suspend) => Ok(vec![E::Suspended]),
            (Tenant::Suspended { .. }, C::Suspend) => Err(TenantError::Suspended),
            (Tenant::Suspended { .. }, C::Reactivate) => Ok(vec![E::Reactivated]),
            (Tenant::Active { .. }, C::Reactivate) => Err(TenantError::NotSuspended),
        }
    }

    fn apply(self, event: &TenantEvent) -> Tenant {
        match (self, event) {
            (_, TenantEvent::Created { name, settings }) => Tenant::Active {
                name: name.clone(),
                settings: settings.clone(),
                slug: None,
            },
            (Tenant::Active { name, slug, .. }, TenantEvent::SettingsChanged { settings }) => {
                Tenant::Active {
                    name,
                    settings: settings.clone(),
                    slug,
                }
            }
            (Tenant::Active { name, settings, .. }, TenantEvent::SlugSet { slug }) => {
                Tenant::Active {
                    name,
                    settings,
                    slug: Some(slug.clone()),
                }
            }
            (
                Tenant::Active {
                    name,
                    settings,
                    slug,
                },
                TenantEvent::Suspended,
            ) => Tenant::Suspended {
                name,
                settings,
                slug,
            },
            (
                Tenant::Suspended {
                    name,
                    settings,
                    slug,
                },
                TenantEvent::Reactivated,
            ) => Tenant::Active {
                name,
                settings,
                slug,
            },
            (_, TenantEvent::Closed) => Tenant::Closed,
            // Events were decided against this state; anything else is ignored.
            (state, _) => state,
        }
    }
}

/// The stored payloads. Field names here are the on-disk schema.
mod dto {
    use super::*;

    #[derive(Serialize, Deserialize)]
    pub struct Purpose {
        pub id: String,
        pub version: u32,
    }

    /// Settings, schema version 2 (version 1 had no lockout fields;
    /// `self_service_erasure` came later, absent meaning off).
    #[derive(Serialize, Deserialize)]
    pub struct Settings {
        pub password_min_length: u8,
        pub mfa_required: bool,
        pub access_token_minutes: u16,
        pub refresh_token_days: u16,
        pub lockout_threshold: u8,
        pub lockout_minutes: u16,
        pub consent_purposes: Vec<Purpose>,
        pub deleted_user_retention_days: u16,
        pub access_data_retention_days: u16,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pub self_service_erasure: bool,
        /// Absent while the tenant keeps the defaults (and before flows
        /// existed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub flows: Option<Flows>,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Flows {
        pub require_verified_email: bool,
        pub invitation_days: u16,
        pub verification_hours: u16,
        pub reset_minutes: u16,
    }

    #[derive(Deserialize)]
    pub struct SettingsV1 {
        pub password_min_length: u8,
        pub mfa_required: bool,
        pub access_token_minutes: u16,
        pub refresh_token_days: u16,
        pub consent_purposes: Vec<Purpose>,
        pub deleted_user_retention_days: u16,
        pub access_data_retention_days: u16,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Created<S> {
        pub name: String,
        pub settings: S,
    }

    #[derive(Serialize, Deserialize)]
    pub struct SettingsChanged<S> {
        pub settings: S,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Empty {}

    #[derive(Serialize, Deserialize)]
    pub struct SlugSet {
        pub slug: String,
    }

    impl From<&TenantSettings> for Settings {
        fn from(s: &TenantSettings) -> Self {
            Settings {
                password_min_length: s.password_min_length,
                mfa_required: s.mfa_required,
                access_token_minutes: s.access_token_minutes,
                refresh_token_days: s.refresh_token_days,
                lockout_threshold: s.lockout_threshold,
                lockout_minutes: s.lockout_minutes,
                consent_purposes: s
                    .consent_purposes
                    .iter()
                    .map(|p| Purpose {
                        id: p.id.clone(),
                        version: p.version,
                    })
                    .collect(),
                deleted_user_retention_days: s.deleted_user_retention_days,
                access_data_retention_days: s.access_data_retention_days,
                self_service_erasure: s.self_service_erasure,
                flows: (s.flows != AccountFlows::default()).then_some(Flows {
                    require_verified_email: s.flows.require_verified_email,
                    invitation_days: s.flows.invitation_days,
                    verification_hours: s.flows.verification_hours,
                    reset_minutes: s.flows.reset_minutes,
                }),
            }
        }
    }

    impl From<SettingsV1> for Settings {
        /// The upcast: version 1 tenants get the default lockout policy.
        fn from(v1: SettingsV1) -> Self {
            let defaults = TenantSettings::default();
            Settings {
                password_min_length: v1.password_min_length,
                mfa_required: v1.mfa_required,
                access_token_minutes: v1.access_token_minutes,
                refresh_token_days: v1.refresh_token_days,
                lockout_threshold: defaults.lockout_threshold,
                lockout_minutes: defaults.lockout_minutes,
                consent_purposes: v1.consent_purposes,
                deleted_user_retention_days: v1.deleted_user_retention_days,
                access_data_retention_days: v1.access_data_retention_days,
                self_service_erasure: false,
                flows: None,
            }
        }
    }

    impl From<TenantSettings> for Settings {
        fn from(s: TenantSettings) -> Self {
            Settings::from(&s)
        }
    }

    impl TryFrom<Settings> for TenantSettings {
        type Error = InvalidValue;
        fn try_from(s: Settings) -> Result<Self, InvalidValue> {
            s.into_domain()
        }
    }

    impl Settings {
        pub fn into_domain(self) -> Result<TenantSettings, InvalidValue> {
            let self_service_erasure = self.self_service_erasure;
            let flows = match self.flows {
                Some(f) => AccountFlows {
                    require_verified_email: f.require_verified_email,
                    invitation_days: f.invitation_days,
                    verification_hours: f.verification_hours,
                    reset_minutes: f.reset_minutes,
                }
                .checked()?,
                None => AccountFlows::default(),
            };
            let mut settings = TenantSettings::new(
                self.password_min_length,
                self.mfa_required,
                self.access_token_minutes,
                self.refresh_token_days,
                self.lockout_threshold,
                self.lockout_minutes,
                self.consent_purposes
                    .into_iter()
                    .map(|p| ConsentPurpose {
                        id: p.id,
                        version: p.version,
                    })
                    .collect(),
                self.deleted_user_retention_days,
                self.access_data_retention_days,
            )?;
            settings.self_service_erasure = self_service_erasure;
            settings.flows = flows;
            Ok(settings)
        }
    }
}

impl EventSchema for TenantEvent {
    fn to_stored(&self) -> StoredForm {
        match self {
            TenantEvent::Created { name, settings } => stored(
                "TenantCreated",
                2,
                &dto::Created {
                    name: name.as_str().to_owned(),
                    settings: dto::Settings::from(settings),
                },
            ),
            TenantEvent::SettingsChanged { settings } => stored(
                "TenantSettingsChanged",
                2,
                &dto::SettingsChanged {
                    settings: dto::Settings::from(settings),
                },
            ),
            TenantEvent::SlugSet { slug } => stored(
                "TenantSlugSet",
                1,
                &dto::SlugSet {
                    slug: slug.as_str().to_owned(),
                },
            ),
            TenantEvent::Suspended => stored("TenantSuspended", 1, &dto::Empty {}),
            TenantEvent::Reactivated => stored("TenantReactivated", 1, &dto::Empty {}),
            TenantEvent::Closed => stored("TenantClosed", 1, &dto::Empty {}),
        }
    }

    fn from_stored(form: &StoredForm) -> Result<Self, SchemaError> {
        let malformed = || SchemaError::Malformed {
            event_type: form.event_type.as_str().to_owned(),
            version: form.schema_version.get(),
        };
        let settings = |s: dto::Settings| s.into_domain().map_err(|_| malformed());
        let name = |n: &str| TenantName::parse(n).map_err(|_| malformed());
        match (form.event_type.as_str(), form.schema_version.get()) {
            ("TenantCreated", 1) => {
                let v1: dto::Created<dto::SettingsV1> = read(form)?;
                Ok(TenantEvent::Created {
                    name: name(&v1.name)?,
                    settings: settings(v1.settings.into())?,
                })
            }
            ("TenantCreated", 2) => {
                let v2: dto::Created<dto::Settings> = read(form)?;
                Ok(TenantEvent::Created {
                    name: name(&v2.name)?,
                    settings: settings(v2.settings)?,
                })
            }
            ("TenantSettingsChanged", 1) => {
                let v1: dto::SettingsChanged<dto::SettingsV1> = read(form)?;
                Ok(TenantEvent::SettingsChanged {
                    settings: settings(v1.settings.into())?,
                })
            }
            ("TenantSettingsChanged", 2) => {
                let v2: dto::SettingsChanged<dto::Settings> = read(form)?;
                Ok(TenantEvent::SettingsChanged {
                    settings: settings(v2.settings)?,
                })
            }
            ("TenantSlugSet", 1) => Ok(TenantEvent::SlugSet {
                slug: TenantSlug::from_log(read::<dto::SlugSet>(form)?.slug),
            }),
            ("TenantSuspended", 1) => Ok(TenantEvent::Suspended),
            ("TenantReactivated", 1) => Ok(TenantEvent::Reactivated),
            ("TenantClosed", 1) => Ok(TenantEvent::Closed),
            (
                "TenantCreated"
                | "TenantSettingsChanged"
                | "TenantSlugSet"
                | "TenantSuspended"
                | "TenantReactivated"
                | "TenantClosed",
                version,
            ) => Err(SchemaError::UnknownVersion {
                event_type: form.event_type.as_str().to_owned(),
                version,
            }),
            (other, _) => Err(SchemaError::UnknownType(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::given;
    use crate::event::{EventType, Payload, SchemaVersion};

    fn created() -> TenantEvent {
        TenantEvent::Created {
            name: TenantName::parse("Acme").unwrap(),
            settings: TenantSettings::default(),
        }
    }

    fn stricter() -> TenantSettings {
        TenantSettings {
            mfa_required: true,
            lockout_threshold: 3,
            ..TenantSettings::default()
        }
    }

    #[test]
    fn a_tenant_is_created_once() {
        given::<Tenant>(&[])
            .when(&TenantCommand::Create {
                name: TenantName::parse("Acme").unwrap(),
                settings: TenantSettings::default(),
            })
            .then(&[created()]);
        given::<Tenant>(&[created()])
            .when(&TenantCommand::Create {
                name: TenantName::parse("Acme").unwrap(),
                settings: TenantSettings::default(),
            })
            .then_error(TenantError::AlreadyExists);
    }

    #[test]
    fn commands_on_a_missing_tenant_are_refused() {
        given::<Tenant>(&[])
            .when(&TenantCommand::Suspend)
            .then_error(TenantError::NotFound);
        given::<Tenant>(&[])
            .when(&TenantCommand::UpdateSettings {
                settings: stricter(),
            })
            .then_error(TenantError::NotFound);
    }

    #[test]
    fn settings_change_only_when_different_and_active() {
        given::<Tenant>(&[created()])
            .when(&TenantCommand::UpdateSettings {
                settings: stricter(),
            })
            .then(&[TenantEvent::SettingsChanged {
                settings: stricter(),
            }]);
        given::<Tenant>(&[created()])
            .when(&TenantCommand::UpdateSettings {
                settings: TenantSettings::default(),
            })
            .then(&[]);
        given::<Tenant>(&[created(), TenantEvent::Suspended])
            .when(&TenantCommand::UpdateSettings {
                settings: stricter(),
            })
            .then_error(TenantError::Suspended);
    }

    #[test]
    fn suspend_and_reactivate_alternate() {
        given::<Tenant>(&[created()])
            .when(&TenantCommand::Suspend)
            .then(&[TenantEvent::Suspended]);
        given::<Tenant>(&[created()])
            .when(&TenantCommand::Reactivate)
            .then_error(TenantError::NotSuspended);
        given::<Tenant>(&[created(), TenantEvent::Suspended])
            .when(&TenantCommand::Suspend)
            .then_error(TenantError::Suspended);
        given::<Tenant>(&[created(), TenantEvent::Suspended])
            .when(&TenantCommand::Reactivate)
            .then(&[TenantEvent::Reactivated]);
        let state = Tenant::fold(&[created(), TenantEvent::Suspended, TenantEvent::Reactivated]);
        assert!(matches!(state, Tenant::Active { .. }));
    }

    #[test]
    fn a_settings_change_keeps_what_it_leaves_out() {
        let purpose = |id: &str, version| ConsentPurpose {
            id: id.into(),
            version,
        };
        let current = TenantSettings {
            consent_purposes: vec![purpose("newsletter", 1), purpose("analytics", 2)],
            ..TenantSettings::default()
        };
        let change = SettingsChange {
            mfa_required: Some(true),
            add_consent_purposes: vec![purpose("analytics", 3), purpose("research", 1)],
            remove_consent_purposes: vec!["newsletter".into()],
            ..SettingsChange::default()
        };
        let changed = change.applied_to(&current).unwrap();
        assert!(changed.mfa_required);
        assert_eq!(changed.password_min_length, current.password_min_length);
        assert_eq!(
            changed.consent_purposes,
            vec![purpose("analytics", 3), purpose("research", 1)]
        );
        let too_short = SettingsChange {
            password_min_length: Some(4),
            ..SettingsChange::default()
        };
        assert!(
            too_short.applied_to(&current).is_err(),
            "checked like any settings"
        );
        assert_eq!(
            SettingsChange::from(current.clone()).applied_to(&TenantSettings::default()),
            Ok(current)
        );
    }

    #[test]
    fn settings_bounds_are_enforced() {
        let d = TenantSettings::default();
        let build = |min_len: u8, access: u16, threshold: u8| {
            TenantSettings::new(min_len, false, access, 7, threshold, 15, vec![], 30, 90)
        };
        assert_eq!(build(12, 15, 5), Ok(d));
        assert!(build(7, 15, 5).is_err(), "passwords shorter than 8");
        assert!(build(12, 16, 5).is_err(), "access tokens beyond 15 minutes");
        assert!(build(12, 15, 0).is_err(), "lockout after zero failures");
        let duplicate = vec![
            ConsentPurpose {
                id: "news".into(),
                version: 1,
            },
            ConsentPurpose {
                id: "news".into(),
                version: 2,
            },
        ];
        assert!(TenantSettings::new(12, false, 15, 7, 5, 15, duplicate, 30, 90).is_err());
        assert!(TenantName::parse("  ").is_err());
    }

    #[test]
    fn every_event_round_trips_through_its_stored_form() {
        let settings = TenantSettings {
            consent_purposes: vec![ConsentPurpose {
                id: "newsletter".into(),
                version: 3,
            }],
            ..stricter()
        };
        for event in [
            created(),
            TenantEvent::SettingsChanged { settings },
            TenantEvent::Suspended,
            TenantEvent::Reactivated,
        ] {
            assert_eq!(TenantEvent::from_stored(&event.to_stored()), Ok(event));
        }
    }

    #[test]
    fn the_stored_name_is_not_the_rust_name() {
        let form = created().to_stored();
        assert_eq!(form.event_type.as_str(), "TenantCreated");
        assert_eq!(form.schema_version.get(), 2);
    }

    #[test]
    fn version_1_tenant_created_is_upcast_with_default_lockout() {
        let v1 = StoredForm {
            event_type: EventType::parse("TenantCreated").unwrap(),
            schema_version: SchemaVersion::new(1).unwrap(),
            payload: Payload::json(
                br#"{"name":"Old Co","settings":{"password_min_length":10,"mfa_required":true,
                    "access_token_minutes":10,"refresh_token_days":14,"consent_purposes":[],
                    "deleted_user_retention_days":60,"access_data_retention_days":30}}"#
                    .to_vec(),
            )
            .unwrap(),
        };
        let Ok(TenantEvent::Created { name, settings }) = TenantEvent::from_stored(&v1) else {
            panic!("version 1 reads back");
        };
        assert_eq!(name.as_str(), "Old Co");
        assert_eq!(
            (settings.password_min_length, settings.mfa_required),
            (10, true)
        );
        assert_eq!(
            (settings.lockout_threshold, settings.lockout_minutes),
            (5, 15)
        );
    }

    #[test]
    fn unknown_types_versions_and_garbage_are_typed_errors() {
        let form = |t: &str, v: u32, p: &[u8]| StoredForm {
            event_type: EventType::parse(t).unwrap(),
            schema_version: SchemaVersion::new(v).unwrap(),
            payload: Payload::json(p.to_vec()).unwrap(),
        };
        assert!(matches!(
            TenantEvent::from_stored(&form("Nope", 1, b"{}")),
            Err(SchemaError::UnknownType(_))
        ));
        assert!(matches!(
            TenantEvent::from_stored(&form("TenantCreated", 9, b"{}")),
            Err(SchemaError::UnknownVersion { .. })
        ));
        assert!(matches!(
            TenantEvent::from_stored(&form("TenantCreated", 2, b"[1]")),
            Err(SchemaError::Malformed { .. })
        ));
        let out_of_bounds = br#"{"name":"X","settings":{"password_min_length":1,"mfa_required":false,"access_token_minutes":15,"refresh_token_days":7,"lockout_threshold":5,"lockout_minutes":15,"consent_purposes":[],"deleted_user_retention_days":30,"access_data_retention_days":90}}"#;
        assert!(matches!(
            TenantEvent::from_stored(&form("TenantCreated", 2, out_of_bounds)),
            Err(SchemaError::Malformed { .. })
        ));
    }
}
