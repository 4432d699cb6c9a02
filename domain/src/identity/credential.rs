//! A user's credentials: password (Argon2id, or an imported bcrypt hash
//! until the next successful login), login checks and lockout.
//!
//! Lockout holds under parallel attempts: before a password is verified, the
//! attempt must append `PasswordCheckStarted` at the credential's exact
//! version, and a started check counts as a failure until a success clears
//! it. Once `threshold` checks are outstanding, no further check starts, so
//! no more than `threshold` passwords are ever verified before the lock.

use serde::{Deserialize, Serialize};

use crate::aggregate::{
    read, snapshot_json, stored, Aggregate, EventSchema, SchemaError, Snapshot, StoredForm,
};
use crate::event::Timestamp;
use crate::ids::EventId;
use crate::personal::SealedField;
use crate::InvalidValue;

/// The longest password accepted (Argon2 takes any length; this bounds work).
pub const MAX_PASSWORD_LEN: usize = 128;

const COMMON: &str = include_str!("common-passwords.txt");

/// Checks a new password against the tenant's minimum length, the maximum,
/// and the shipped list of common passwords. The error never holds it.
pub fn check_password_policy(password: &str, min_length: u8) -> Result<(), InvalidValue> {
    let length = password.chars().count();
    if length < min_length as usize {
        return Err(InvalidValue::new(
            "password",
            "is shorter than the tenant's minimum length",
        ));
    }
    if length > MAX_PASSWORD_LEN {
        return Err(InvalidValue::new(
            "password",
            "must be at most 128 characters",
        ));
    }
    let lowered = password.to_lowercase();
    if COMMON
        .lines()
        .any(|line| !line.starts_with('#') && line == lowered)
    {
        return Err(InvalidValue::new("password", "is too common"));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PasswordAlgorithm {
    Argon2id,
    /// Imported from another system; rehashed to Argon2id at the next
    /// successful login.
    Bcrypt,
}

/// The tenant's lockout policy, as of the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub threshold: u8,
    pub period_micros: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialCommand {
    SetPassword {
        hash: SealedField,
        algorithm: PasswordAlgorithm,
    },
    StartPasswordCheck {
        at: Timestamp,
        policy: LockoutPolicy,
    },
    /// The password (and second factor) matched. `rehashed` replaces an
    /// imported hash; `totp_step` is the time step of the code used, which
    /// may not be used again.
    RecordSuccess {
        at: Timestamp,
        /// The password the check verified: refused if another one has
        /// been set since (a login racing a password change loses).
        verified: Option<SealedField>,
        rehashed: Option<SealedField>,
        totp_step: Option<u64>,
        /// The index of the recovery code used as second factor, if one was.
        recovery_code: Option<usize>,
    },
    Unlock {
        at: Timestamp,
    },
    /// Starts TOTP enrollment with a new (sealed) secret.
    EnrollTotp {
        secret: SealedField,
    },
    /// The user proved the authenticator works with a code of this step.
    ConfirmTotp {
        step: u64,
    },
    DisableTotp,
    /// Replaces all recovery codes with new ones (their SHA-256s).
    IssueRecoveryCodes {
        hashes: Vec<[u8; 32]>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialEvent {
    PasswordSet {
        hash: SealedField,
        algorithm: PasswordAlgorithm,
    },
    PasswordCheckStarted {
        at: Timestamp,
    },
    LoginSucceeded {
        at: Timestamp,
    },
    /// By an admin, or (`by_time`) because the lockout period ran out.
    Unlocked {
        at: Timestamp,
        by_time: bool,
    },
    TotpEnrolled {
        secret: SealedField,
    },
    TotpConfirmed,
    TotpDisabled,
    /// A code of this time step was used; it and earlier steps are spent.
    TotpCodeAccepted {
        step: u64,
    },
    RecoveryCodesIssued {
        hashes: Vec<[u8; 32]>,
    },
    RecoveryCodeUsed {
        index: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("no password is set")]
    NoPassword,
    #[error("locked after too many failed attempts")]
    Locked { until: Timestamp },
    #[error("no TOTP enrollment to confirm")]
    NoTotpEnrollment,
    #[error("this one-time code was already used")]
    TotpCodeReused,
    #[error("the password changed while it was being checked")]
    PasswordChanged,
}

/// The state of a user's TOTP second factor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Totp {
    #[default]
    Off,
    /// Enrolled, waiting for a first code.
    Pending(SealedField),
    Active(SealedField),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credential {
    pub password: Option<(SealedField, PasswordAlgorithm)>,
    /// Checks started since the last success or unlock (each a failure
    /// until a success clears them).
    pub outstanding_checks: u32,
    pub last_check_at: Option<Timestamp>,
    pub totp: Totp,
    /// The last time step whose code was accepted (replay protection).
    pub last_totp_step: Option<u64>,
    /// Hashes of the recovery codes; `None` once used.
    pub recovery_codes: Vec<Option<[u8; 32]>>,
    /// The events that sealed the password and the TOTP secret (their
    /// associated data names them), when folded from stored events.
    pub password_event: Option<EventId>,
    pub totp_event: Option<EventId>,
}

impl Credential {
    /// The index of the unused recovery code with this hash.
    pub fn unused_recovery_code(&self, hash: &[u8; 32]) -> Option<usize> {
        self.recovery_codes
            .iter()
            .position(|code| code.as_ref() == Some(hash))
    }

    fn spend_step(&self, step: u64) -> Result<CredentialEvent, CredentialError> {
        if self.last_totp_step.is_some_and(|last| step <= last) {
            return Err(CredentialError::TotpCodeReused);
        }
        Ok(CredentialEvent::TotpCodeAccepted { step })
    }

    /// When the lock ends, if the account is locked at `now`.
    pub fn locked_until(&self, now: Timestamp, policy: LockoutPolicy) -> Option<Timestamp> {
        let last = self.last_check_at?;
        let until = Timestamp(last.0.saturating_add(policy.period_micros));
        (self.outstanding_checks >= u32::from(policy.threshold) && now < until).then_some(until)
    }
}

impl Aggregate for Credential {
    type Command = CredentialCommand;
    type Event = CredentialEvent;
    type Error = CredentialError;

    fn decide(&self, command: &CredentialCommand) -> Result<Vec<CredentialEvent>, CredentialError> {
        use CredentialEvent as E;
        match command {
            CredentialCommand::SetPassword { hash, algorithm } => Ok(vec![E::PasswordSet {
                hash: hash.clone(),
                algorithm: *algorithm,
            }]),
            CredentialCommand::StartPasswordCheck { at, policy } => {
                if self.password.is_none() {
                    return Err(CredentialError::NoPassword);
                }
                if let Some(until) = self.locked_until(*at, *policy) {
                    return Err(CredentialError::Locked { until });
                }
                let mut events = Vec::new();
                if self.outstanding_checks >= u32::from(policy.threshold) {
                    events.push(E::Unlocked {
                        at: *at,
                        by_time: true,
                    });
                }
                events.push(E::PasswordCheckStarted { at: *at });
                Ok(events)
            }
            CredentialCommand::RecordSuccess {
                at,
                verified,
                rehashed,
                totp_step,
                recovery_code,
            } => {
                if verified
                    .as_ref()
                    .is_some_and(|v| self.password.as_ref().map(|(p, _)| p) != Some(v))
                {
                    return Err(CredentialError::PasswordChanged);
                }
                // The rehash comes first: the handler sealed it for the
                // first event's id.
                let mut events = Vec::new();
                if let Some(hash) = rehashed {
                    events.push(E::PasswordSet {
                        hash: hash.clone(),
                        algorithm: PasswordAlgorithm::Argon2id,
                    });
                }
                if let Some(step) = totp_step {
                    events.push(self.spend_step(*step)?);
                }
                if let Some(index) = recovery_code {
                    if self.recovery_codes.get(*index).is_none_or(Option::is_none) {
                        return Err(CredentialError::TotpCodeReused);
                    }
                    events.push(E::RecoveryCodeUsed { index: *index });
                }
                events.push(E::LoginSucceeded { at: *at });
                Ok(events)
            }
            CredentialCommand::EnrollTotp { secret } => Ok(vec![E::TotpEnrolled {
                secret: secret.clone(),
            }]),
            CredentialCommand::ConfirmTotp { step } => match self.totp {
                Totp::Pending(_) => Ok(vec![self.spend_step(*step)?, E::TotpConfirmed]),
                _ => Err(CredentialError::NoTotpEnrollment),
            },
            CredentialCommand::IssueRecoveryCodes { hashes } => Ok(vec![E::RecoveryCodesIssued {
                hashes: hashes.clone(),
            }]),
            CredentialCommand::DisableTotp => match self.totp {
                Totp::Off => Ok(vec![]),
                _ => Ok(vec![E::TotpDisabled]),
            },
            CredentialCommand::Unlock { at } => {
                if self.outstanding_checks == 0 {
                    return Ok(vec![]);
                }
                Ok(vec![E::Unlocked {
                    at: *at,
                    by_time: false,
                }])
            }
        }
    }

    fn apply(mut self, event: &CredentialEvent) -> Credential {
        match event {
            CredentialEvent::PasswordSet { hash, algorithm } => {
                // A new password (changed, reset by an admin, or rehashed at
                // a login) clears the failed checks.
                self.password = Some((hash.clone(), *algorithm));
                self.outstanding_checks = 0;
            }
            CredentialEvent::PasswordCheckStarted { at } => {
                self.outstanding_checks += 1;
                self.last_check_at = Some(*at);
            }
            CredentialEvent::LoginSucceeded { .. } | CredentialEvent::Unlocked { .. } => {
                self.outstanding_checks = 0
            }
            CredentialEvent::TotpEnrolled { secret } => self.totp = Totp::Pending(secret.clone()),
            CredentialEvent::TotpConfirmed => {
                if let Totp::Pending(secret) = std::mem::take(&mut self.totp) {
                    self.totp = Totp::Active(secret);
                }
            }
            CredentialEvent::TotpDisabled => self.totp = Totp::Off,
            CredentialEvent::TotpCodeAccepted { step } => self.last_totp_step = Some(*step),
            CredentialEvent::RecoveryCodesIssued { hashes } => {
                self.recovery_codes = hashes.iter().copied().map(Some).collect()
            }
            CredentialEvent::RecoveryCodeUsed { index } => {
                if let Some(code) = self.recovery_codes.get_mut(*index) {
                    *code = None;
                }
            }
        }
        self
    }

    fn apply_recorded(self, event: &CredentialEvent, event_id: EventId) -> Credential {
        let mut next = self.apply(event);
        match event {
            CredentialEvent::PasswordSet { .. } => next.password_event = Some(event_id),
            CredentialEvent::TotpEnrolled { .. } => next.totp_event = Some(event_id),
            _ => {}
        }
        next
    }
}

/// The snapshot form, version 1.
mod snapshot {
    use super::*;

    #[derive(Serialize, Deserialize)]
    pub struct Sealed {
        pub field: SealedField,
        pub event: Option<uuid::Uuid>,
    }

    #[derive(Serialize, Deserialize)]
    pub struct CredentialV1 {
        pub password: Option<Sealed>,
        pub algorithm: Option<PasswordAlgorithm>,
        pub outstanding_checks: u32,
        pub last_check_at: Option<i64>,
        /// `off`, `pending` or `active`, with the secret unless off.
        pub totp: String,
        pub totp_secret: Option<Sealed>,
        pub last_totp_step: Option<u64>,
        /// SHA-256 of each recovery code, hex; `null` once used.
        pub recovery_codes_sha256: Vec<Option<String>>,
    }
}

impl Snapshot for Credential {
    const SNAPSHOT_VERSION: Option<u32> = Some(1);

    fn to_snapshot(&self) -> Vec<u8> {
        let (totp, secret) = match &self.totp {
            Totp::Off => ("off", None),
            Totp::Pending(secret) => ("pending", Some(secret)),
            Totp::Active(secret) => ("active", Some(secret)),
        };
        snapshot_json(&snapshot::CredentialV1 {
            password: self.password.as_ref().map(|(field, _)| snapshot::Sealed {
                field: field.clone(),
                event: self.password_event.map(|id| id.as_uuid()),
            }),
            algorithm: self.password.as_ref().map(|(_, algorithm)| *algorithm),
            outstanding_checks: self.outstanding_checks,
            last_check_at: self.last_check_at.map(|at| at.0),
            totp: totp.to_owned(),
            totp_secret: secret.map(|field| snapshot::Sealed {
                field: field.clone(),
                event: self.totp_event.map(|id| id.as_uuid()),
            }),
            last_totp_step: self.last_totp_step,
            recovery_codes_sha256: self
                .recovery_codes
                .iter()
                .map(|code| code.map(hex::encode))
                .collect(),
        })
    }

    fn from_snapshot(version: u32, bytes: &[u8]) -> Option<Self> {
        if version != 1 {
            return None;
        }
        let form: snapshot::CredentialV1 = serde_json::from_slice(bytes).ok()?;
        let password = match (form.password, form.algorithm) {
            (Some(sealed), Some(algorithm)) => Some((sealed, algorithm)),
            (None, None) => None,
            _ => return None,
        };
        let event = |id: Option<uuid::Uuid>| id.and_then(|id| EventId::from_uuid(id).ok());
        let (totp, totp_event) = match (form.totp.as_str(), form.totp_secret) {
            ("off", None) => (Totp::Off, None),
            ("pending", Some(sealed)) => (Totp::Pending(sealed.field), event(sealed.event)),
            ("active", Some(sealed)) => (Totp::Active(sealed.field), event(sealed.event)),
            _ => return None,
        };
        let recovery_codes = form
            .recovery_codes_sha256
            .iter()
            .map(|code| match code {
                None => Some(None),
                Some(hex_text) => hex::decode(hex_text).ok()?.try_into().ok().map(Some),
            })
            .collect::<Option<_>>()?;
        Some(Credential {
            password_event: password
                .as_ref()
                .and_then(|(sealed, _)| event(sealed.event)),
            password: password.map(|(sealed, algorithm)| (sealed.field, algorithm)),
            outstanding_checks: form.outstanding_checks,
            last_check_at: form.last_check_at.map(Timestamp),
            totp,
            last_totp_step: form.last_totp_step,
            recovery_codes,
            totp_event,
        })
    }
}

mod dto {
    use super::*;

    #[derive(Serialize, Deserialize)]
    pub struct PasswordSet {
        pub hash: SealedField,
        pub algorithm: PasswordAlgorithm,
    }

    #[derive(Serialize, Deserialize)]
    pub struct At {
        pub at: i64,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Secret {
        pub secret: SealedField,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Step {
        pub step: u64,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Empty {}

    #[derive(Serialize, Deserialize)]
    pub struct RecoveryCodes {
        pub sha256: Vec<String>,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Index {
        pub index: usize,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Unlocked {
        pub at: i64,
        pub by_time: bool,
    }
}

impl EventSchema for CredentialEvent {
    fn to_stored(&self) -> StoredForm {
        match self {
            CredentialEvent::PasswordSet { hash, algorithm } => stored(
                "PasswordSet",
                1,
                &dto::PasswordSet {
                    hash: hash.clone(),
                    algorithm: *algorithm,
                },
            ),
            CredentialEvent::PasswordCheckStarted { at } => {
                stored("PasswordCheckStarted", 1, &dto::At { at: at.0 })
            }
            CredentialEvent::LoginSucceeded { at } => {
                stored("LoginSucceeded", 1, &dto::At { at: at.0 })
            }
            CredentialEvent::Unlocked { at, by_time } => stored(
                "CredentialUnlocked",
                1,
                &dto::Unlocked {
                    at: at.0,
                    by_time: *by_time,
                },
            ),
            CredentialEvent::TotpEnrolled { secret } => stored(
                "TotpEnrolled",
                1,
                &dto::Secret {
                    secret: secret.clone(),
                },
            ),
            CredentialEvent::TotpConfirmed => stored("TotpConfirmed", 1, &dto::Empty {}),
            CredentialEvent::TotpDisabled => stored("TotpDisabled", 1, &dto::Empty {}),
            CredentialEvent::TotpCodeAccepted { step } => {
                stored("TotpCodeAccepted", 1, &dto::Step { step: *step })
            }
            CredentialEvent::RecoveryCodesIssued { hashes } => stored(
                "RecoveryCodesIssued",
                1,
                &dto::RecoveryCodes {
                    sha256: hashes.iter().map(hex::encode).collect(),
                },
            ),
            CredentialEvent::RecoveryCodeUsed { index } => {
                stored("RecoveryCodeUsed", 1, &dto::Index { index: *index })
            }
        }
    }

    fn from_stored(form: &StoredForm) -> Result<Self, SchemaError> {
        let name = form.event_type.as_str();
        match (name, form.schema_version.get()) {
            ("PasswordSet", 1) => {
                let d: dto::PasswordSet = read(form)?;
                Ok(CredentialEvent::PasswordSet {
                    hash: d.hash,
                    algorithm: d.algorithm,
                })
            }
            ("PasswordCheckStarted", 1) => Ok(CredentialEvent::PasswordCheckStarted {
                at: Timestamp(read::<dto::At>(form)?.at),
            }),
            ("LoginSucceeded", 1) => Ok(CredentialEvent::LoginSucceeded {
                at: Timestamp(read::<dto::At>(form)?.at),
            }),
            ("CredentialUnlocked", 1) => {
                let d: dto::Unlocked = read(form)?;
                Ok(CredentialEvent::Unlocked {
                    at: Timestamp(d.at),
                    by_time: d.by_time,
                })
            }
            ("TotpEnrolled", 1) => Ok(CredentialEvent::TotpEnrolled {
                secret: read::<dto::Secret>(form)?.secret,
            }),
            ("TotpConfirmed", 1) => Ok(CredentialEvent::TotpConfirmed),
            ("TotpDisabled", 1) => Ok(CredentialEvent::TotpDisabled),
            ("TotpCodeAccepted", 1) => Ok(CredentialEvent::TotpCodeAccepted {
                step: read::<dto::Step>(form)?.step,
            }),
            ("RecoveryCodesIssued", 1) => {
                let d: dto::RecoveryCodes = read(form)?;
                let hashes: Option<Vec<[u8; 32]>> = d
                    .sha256
                    .iter()
                    .map(|h| hex::decode(h).ok().and_then(|b| b.try_into().ok()))
                    .collect();
                let malformed = SchemaError::Malformed {
                    event_type: name.to_owned(),
                    version: 1,
                };
                Ok(CredentialEvent::RecoveryCodesIssued {
                    hashes: hashes.ok_or(malformed)?,
                })
            }
            ("RecoveryCodeUsed", 1) => Ok(CredentialEvent::RecoveryCodeUsed {
                index: read::<dto::Index>(form)?.index,
            }),
            (
                "PasswordSet"
                | "PasswordCheckStarted"
                | "LoginSucceeded"
                | "CredentialUnlocked"
                | "TotpEnrolled"
                | "TotpConfirmed"
                | "TotpDisabled"
                | "TotpCodeAccepted"
                | "RecoveryCodesIssued"
                | "RecoveryCodeUsed",
                version,
            ) => Err(SchemaError::UnknownVersion {
                event_type: name.to_owned(),
                version,
            }),
            (other, _) => Err(SchemaError::UnknownType(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::aggregate::given;

    const POLICY: LockoutPolicy = LockoutPolicy {
        threshold: 3,
        period_micros: 60_000_000,
    };

    fn hash() -> SealedField {
        SealedField {
            subject: Uuid::nil(),
            nonce: vec![0; 12],
            ciphertext: vec![1; 40],
            access_day: None,
        }
    }

    fn with_password() -> CredentialEvent {
        CredentialEvent::PasswordSet {
            hash: hash(),
            algorithm: PasswordAlgorithm::Argon2id,
        }
    }

    fn check(at: i64) -> CredentialEvent {
        CredentialEvent::PasswordCheckStarted { at: Timestamp(at) }
    }

    fn start(at: i64) -> CredentialCommand {
        CredentialCommand::StartPasswordCheck {
            at: Timestamp(at),
            policy: POLICY,
        }
    }

    #[test]
    fn no_check_without_a_password() {
        given::<Credential>(&[])
            .when(&start(0))
            .then_error(CredentialError::NoPassword);
    }

    #[test]
    fn checks_start_until_the_threshold_then_the_account_is_locked() {
        given::<Credential>(&[with_password()])
            .when(&start(1))
            .then(&[check(1)]);
        given::<Credential>(&[with_password(), check(1), check(2)])
            .when(&start(3))
            .then(&[check(3)]);
        given::<Credential>(&[with_password(), check(1), check(2), check(3)])
            .when(&start(4))
            .then_error(CredentialError::Locked {
                until: Timestamp(3 + 60_000_000),
            });
    }

    #[test]
    fn the_lock_ends_by_time_with_a_recorded_unlock() {
        let history = [with_password(), check(1), check(2), check(3)];
        let later = 3 + 60_000_000;
        given::<Credential>(&history).when(&start(later)).then(&[
            CredentialEvent::Unlocked {
                at: Timestamp(later),
                by_time: true,
            },
            check(later),
        ]);
    }

    #[test]
    fn success_and_admin_unlock_clear_the_count() {
        let history = [
            with_password(),
            check(1),
            check(2),
            CredentialEvent::LoginSucceeded { at: Timestamp(2) },
        ];
        assert_eq!(Credential::fold(&history).outstanding_checks, 0);
        let locked = [with_password(), check(1), check(2), check(3)];
        given::<Credential>(&locked)
            .when(&CredentialCommand::Unlock { at: Timestamp(5) })
            .then(&[CredentialEvent::Unlocked {
                at: Timestamp(5),
                by_time: false,
            }]);
        given::<Credential>(&[with_password()])
            .when(&CredentialCommand::Unlock { at: Timestamp(5) })
            .then(&[]);
    }

    #[test]
    fn a_successful_login_on_an_imported_hash_rehashes() {
        let rehashed = SealedField {
            subject: Uuid::nil(),
            nonce: vec![2; 12],
            ciphertext: vec![3; 40],
            access_day: None,
        };
        given::<Credential>(&[
            CredentialEvent::PasswordSet {
                hash: hash(),
                algorithm: PasswordAlgorithm::Bcrypt,
            },
            check(1),
        ])
        .when(&CredentialCommand::RecordSuccess {
            at: Timestamp(2),
            verified: None,
            rehashed: Some(rehashed.clone()),
            totp_step: None,
            recovery_code: None,
        })
        .then(&[
            CredentialEvent::PasswordSet {
                hash: rehashed,
                algorithm: PasswordAlgorithm::Argon2id,
            },
            CredentialEvent::LoginSucceeded { at: Timestamp(2) },
        ]);
    }

    #[test]
    fn a_success_for_a_password_replaced_meanwhile_is_refused() {
        let sealed = |byte| SealedField {
            subject: Uuid::nil(),
            nonce: vec![byte; 12],
            ciphertext: vec![byte; 40],
            access_day: None,
        };
        let (old, new) = (sealed(1), sealed(2));
        let set = |hash: &SealedField| CredentialEvent::PasswordSet {
            hash: hash.clone(),
            algorithm: PasswordAlgorithm::Argon2id,
        };
        let success = |verified: &SealedField| CredentialCommand::RecordSuccess {
            at: Timestamp(1),
            verified: Some(verified.clone()),
            rehashed: None,
            totp_step: None,
            recovery_code: None,
        };
        given::<Credential>(&[set(&old), set(&new)])
            .when(&success(&old))
            .then_error(CredentialError::PasswordChanged);
        given::<Credential>(&[set(&old)])
            .when(&success(&old))
            .then(&[CredentialEvent::LoginSucceeded { at: Timestamp(1) }]);
    }

    #[test]
    fn totp_is_confirmed_once_and_codes_are_single_use() {
        let secret = hash();
        let enrolled = CredentialEvent::TotpEnrolled {
            secret: secret.clone(),
        };
        given::<Credential>(&[])
            .when(&CredentialCommand::ConfirmTotp { step: 9 })
            .then_error(CredentialError::NoTotpEnrollment);
        given::<Credential>(std::slice::from_ref(&enrolled))
            .when(&CredentialCommand::ConfirmTotp { step: 9 })
            .then(&[
                CredentialEvent::TotpCodeAccepted { step: 9 },
                CredentialEvent::TotpConfirmed,
            ]);
        let active = [
            enrolled,
            CredentialEvent::TotpCodeAccepted { step: 9 },
            CredentialEvent::TotpConfirmed,
        ];
        assert_eq!(Credential::fold(&active).totp, Totp::Active(secret));
        let success = |step| CredentialCommand::RecordSuccess {
            at: Timestamp(1),
            verified: None,
            rehashed: None,
            totp_step: Some(step),
            recovery_code: None,
        };
        given::<Credential>(&active)
            .when(&success(9))
            .then_error(CredentialError::TotpCodeReused);
        given::<Credential>(&active)
            .when(&success(8))
            .then_error(CredentialError::TotpCodeReused);
        given::<Credential>(&active).when(&success(10)).then(&[
            CredentialEvent::TotpCodeAccepted { step: 10 },
            CredentialEvent::LoginSucceeded { at: Timestamp(1) },
        ]);
        given::<Credential>(&active)
            .when(&CredentialCommand::DisableTotp)
            .then(&[CredentialEvent::TotpDisabled]);
        given::<Credential>(&[])
            .when(&CredentialCommand::DisableTotp)
            .then(&[]);
    }

    #[test]
    fn recovery_codes_are_single_use_and_reissued_whole() {
        let issued = CredentialEvent::RecoveryCodesIssued {
            hashes: vec![[1; 32], [2; 32]],
        };
        let state = Credential::fold(std::slice::from_ref(&issued));
        assert_eq!(
            (
                state.unused_recovery_code(&[2; 32]),
                state.unused_recovery_code(&[3; 32])
            ),
            (Some(1), None)
        );
        let with = |index| CredentialCommand::RecordSuccess {
            at: Timestamp(1),
            verified: None,
            rehashed: None,
            totp_step: None,
            recovery_code: Some(index),
        };
        given::<Credential>(std::slice::from_ref(&issued))
            .when(&with(1))
            .then(&[
                CredentialEvent::RecoveryCodeUsed { index: 1 },
                CredentialEvent::LoginSucceeded { at: Timestamp(1) },
            ]);
        let used = [
            issued.clone(),
            CredentialEvent::RecoveryCodeUsed { index: 1 },
        ];
        given::<Credential>(&used)
            .when(&with(1))
            .then_error(CredentialError::TotpCodeReused);
        assert_eq!(Credential::fold(&used).unused_recovery_code(&[2; 32]), None);
        let reissued = [
            issued,
            CredentialEvent::RecoveryCodeUsed { index: 1 },
            CredentialEvent::RecoveryCodesIssued {
                hashes: vec![[2; 32]],
            },
        ];
        assert_eq!(
            Credential::fold(&reissued).unused_recovery_code(&[2; 32]),
            Some(0)
        );
    }

    #[test]
    fn password_policy() {
        assert!(check_password_policy("correct horse battery staple", 12).is_ok());
        assert!(check_password_policy("short", 12).is_err());
        assert!(
            check_password_policy("PasswordPassword", 12).is_err(),
            "common, case-insensitive"
        );
        assert!(check_password_policy(&"x".repeat(129), 12).is_err());
        let error = check_password_policy("hunter2hunter2x", 20).unwrap_err();
        assert!(
            !error.to_string().contains("hunter2"),
            "the error never holds the password"
        );
    }

    #[test]
    fn events_round_trip() {
        for event in [
            with_password(),
            check(7),
            CredentialEvent::LoginSucceeded { at: Timestamp(8) },
            CredentialEvent::Unlocked {
                at: Timestamp(9),
                by_time: true,
            },
            CredentialEvent::TotpEnrolled { secret: hash() },
            CredentialEvent::TotpConfirmed,
            CredentialEvent::TotpDisabled,
            CredentialEvent::TotpCodeAccepted { step: 57_000_000 },
            CredentialEvent::RecoveryCodesIssued {
                hashes: vec![[1; 32], [2; 32]],
            },
            CredentialEvent::RecoveryCodeUsed { index: 1 },
        ] {
            assert_eq!(CredentialEvent::from_stored(&event.to_stored()), Ok(event));
        }
    }
}
