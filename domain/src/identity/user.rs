//! The user aggregate: registration or invitation, profile, email, status.
//! Personal fields exist here only as [`SealedField`]s (ciphertext under the
//! user's own key) and the email also as a [`BlindIndex`] for look-ups: the
//! type system keeps plaintext out of events.

use serde::{Deserialize, Serialize};

use crate::aggregate::{read, stored, Aggregate, EventSchema, SchemaError, Snapshot, StoredForm};
use crate::personal::{BlindIndex, SealedField};

/// The sealed personal fields of a profile. `attributes` is one sealed JSON
/// object of free-form key/value pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<SealedField>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<SealedField>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<SealedField>,
    /// The blind index of the `externalId` attribute (an identity
    /// provider's id for the user, kept sealed in `attributes`), so a SCIM
    /// client finds the user by it without anything being opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<BlindIndex>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    /// Invited, has not signed in yet.
    Invited,
    Active,
    Suspended,
    /// Soft-deleted: kept (sealed) until retention erases the key.
    Deleted,
    /// Erased: the key of their personal data is destroyed; nothing more
    /// can happen to them.
    Erased,
}

/// Why a subject was erased, as the requester names it (a ticket or case
/// number): plaintext in the log for good, so it is refused when it looks
/// like personal data ([`crate::personal::refuse_personal_data`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureReference(String);

impl ErasureReference {
    pub fn parse(value: &str) -> Result<Self, crate::InvalidValue> {
        let value = value.trim();
        let hidden = |c: char| c.is_control() || crate::personal::is_invisible(c);
        if value.is_empty() || value.chars().count() > 200 || value.chars().any(hidden) {
            return Err(crate::InvalidValue::new(
                "erasure reference",
                "must be 1-200 characters without control or invisible characters",
            ));
        }
        crate::personal::refuse_personal_data("erasure reference", value)?;
        Ok(Self(value.to_owned()))
    }

    /// A reference as the log holds it: history is read back whatever a
    /// later guard would say of it.
    pub(crate) fn from_log(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id of a destroyed key, as an erasure event names it: what it
/// belonged to and its version (`subject:<tenant>/<subject>:v1`).
pub fn subject_key_id(tenant: uuid::Uuid, subject: uuid::Uuid) -> String {
    format!("subject:{tenant}/{subject}:v1")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    Register {
        email: SealedField,
        email_index: BlindIndex,
        profile: SealedProfile,
        invited: bool,
        /// The address is vouched for at registration (an identity
        /// provider's or an operator's word): verified from the start.
        email_verified: bool,
    },
    /// The invited user signed in for the first time.
    Activate,
    UpdateProfile {
        profile: SealedProfile,
    },
    /// Changes the address at once (an invited user's, or one vouched
    /// for): unverified unless vouched. Cancels a pending change.
    ChangeEmail {
        email: SealedField,
        email_index: BlindIndex,
    },
    /// Asks to change the address: the new one is pending until it is
    /// verified, the current one stays the sign-in address. Asking for the
    /// current address cancels a pending change; asking again for the
    /// pending one changes nothing.
    RequestEmailChange {
        email: SealedField,
        email_index: BlindIndex,
    },
    /// A link sent to the pending address was followed: it becomes the
    /// address, verified. `email` is the pending address sealed again for
    /// the event that records the change. Refused unless `email_index` is
    /// the pending address.
    ConfirmEmailChange {
        email: SealedField,
        email_index: BlindIndex,
    },
    /// The user proved they receive mail at the address `email_index`
    /// names (a link sent there was followed). Refused if the address
    /// changed since the link was sent.
    VerifyEmail {
        email_index: BlindIndex,
    },
    Suspend,
    Reactivate,
    Delete,
    /// Records the destruction of the user's keys (the handler destroys
    /// them once this is in the log). Erasing an erased user changes nothing.
    Erase {
        keys: Vec<String>,
        reference: ErasureReference,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserEvent {
    Registered {
        email: SealedField,
        email_index: BlindIndex,
        profile: SealedProfile,
        invited: bool,
        email_verified: bool,
    },
    Activated,
    ProfileUpdated {
        profile: SealedProfile,
    },
    EmailChanged {
        email: SealedField,
        email_index: BlindIndex,
    },
    /// The address `email_index` names is verified (until it changes).
    EmailVerified {
        email_index: BlindIndex,
    },
    /// A change to the address `email_index` names awaits its
    /// verification; the current address stays the sign-in address.
    EmailChangeRequested {
        email: SealedField,
        email_index: BlindIndex,
    },
    /// The pending change to `email_index` was withdrawn.
    EmailChangeCancelled {
        email_index: BlindIndex,
    },
    Suspended,
    Reactivated,
    Deleted,
    /// `SubjectErased`: no personal data, only the ids of the keys destroyed
    /// and the request's reference (the actor and time are in the metadata).
    Erased {
        keys: Vec<String>,
        reference: ErasureReference,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("the user already exists")]
    AlreadyExists,
    #[error("the user does not exist")]
    NotFound,
    #[error("the user is deleted")]
    Deleted,
    #[error("the user is erased")]
    Erased,
    #[error("the user is not in a state that allows this")]
    WrongStatus,
    #[error("the user's address changed since the link was sent")]
    AddressChanged,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum User {
    #[default]
    Absent,
    Present {
        status: UserStatus,
        email_index: BlindIndex,
        /// Whether the current address is verified.
        email_verified: bool,
        /// The address a requested change awaits the verification of.
        pending_email: Option<BlindIndex>,
    },
}

impl User {
    pub fn status(&self) -> Option<UserStatus> {
        match self {
            User::Absent => None,
            User::Present { status, .. } => Some(*status),
        }
    }

    /// The address a requested change awaits the verification of.
    pub fn pending_email(&self) -> Option<BlindIndex> {
        match self {
            User::Present { pending_email, .. } => *pending_email,
            User::Absent => None,
        }
    }

    /// Whether the current address is verified (`false` for nobody).
    pub fn email_verified(&self) -> bool {
        matches!(
            self,
            User::Present {
                email_verified: true,
                ..
            }
        )
    }
}

/// Not snapshotted: the stream stays short (ADR 0008).
impl Snapshot for User {}

impl Aggregate for User {
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;

    fn decide(&self, command: &UserCommand) -> Result<Vec<UserEvent>, UserError> {
        use UserCommand as C;
        use UserEvent as E;
        use UserStatus as S;
        let (status, current_index, verified, pending) = match (self, command) {
            (
                User::Absent,
                C::Register {
                    email,
                    email_index,
                    profile,
                    invited,
                    email_verified,
                },
            ) => {
                return Ok(vec![E::Registered {
                    email: email.clone(),
                    email_index: *email_index,
                    profile: profile.clone(),
                    invited: *invited,
                    email_verified: *email_verified,
                }])
            }
            (User::Absent, _) => return Err(UserError::NotFound),
            (User::Present { .. }, C::Register { .. }) => return Err(UserError::AlreadyExists),
            (
                User::Present {
                    status: S::Erased, ..
                },
                C::Erase { .. },
            ) => return Ok(vec![]),
            (
                User::Present {
                    status: S::Erased, ..
                },
                _,
            ) => return Err(UserError::Erased),
            // Any other user may be erased, deleted ones included (that is
            // what retention does).
            (User::Present { .. }, C::Erase { keys, reference }) => {
                return Ok(vec![E::Erased {
                    keys: keys.clone(),
                    reference: reference.clone(),
                }])
            }
            (
                User::Present {
                    status: S::Deleted, ..
                },
                _,
            ) => return Err(UserError::Deleted),
            (
                User::Present {
                    status,
                    email_index,
                    email_verified,
                    pending_email,
                },
                _,
            ) => (*status, *email_index, *email_verified, *pending_email),
        };
        match (status, command) {
            (S::Invited, C::Activate) => Ok(vec![E::Activated]),
            (_, C::Activate) => Err(UserError::WrongStatus),
            (_, C::UpdateProfile { profile }) => Ok(vec![E::ProfileUpdated {
                profile: profile.clone(),
            }]),
            (_, C::ChangeEmail { email_index, .. } | C::RequestEmailChange { email_index, .. })
                if *email_index == current_index =>
            {
                Ok(pending
                    .map(|email_index| E::EmailChangeCancelled { email_index })
                    .into_iter()
                    .collect())
            }
            (_, C::ChangeEmail { email, email_index }) => Ok(vec![E::EmailChanged {
                email: email.clone(),
                email_index: *email_index,
            }]),
            (S::Invited, C::RequestEmailChange { .. }) => Err(UserError::WrongStatus),
            (_, C::RequestEmailChange { email_index, .. }) if Some(*email_index) == pending => {
                Ok(vec![])
            }
            (_, C::RequestEmailChange { email, email_index }) => {
                Ok(vec![E::EmailChangeRequested {
                    email: email.clone(),
                    email_index: *email_index,
                }])
            }
            (_, C::ConfirmEmailChange { email_index, .. }) if Some(*email_index) != pending => {
                Err(UserError::AddressChanged)
            }
            (_, C::ConfirmEmailChange { email, email_index }) => Ok(vec![
                E::EmailChanged {
                    email: email.clone(),
                    email_index: *email_index,
                },
                E::EmailVerified {
                    email_index: *email_index,
                },
            ]),
            (S::Active | S::Invited, C::Suspend) => Ok(vec![E::Suspended]),
            (_, C::Suspend) => Err(UserError::WrongStatus),
            (_, C::VerifyEmail { email_index }) if *email_index != current_index => {
                Err(UserError::AddressChanged)
            }
            (_, C::VerifyEmail { .. }) if verified => Ok(vec![]),
            (_, C::VerifyEmail { email_index }) => Ok(vec![E::EmailVerified {
                email_index: *email_index,
            }]),
            (S::Suspended, C::Reactivate) => Ok(vec![E::Reactivated]),
            (_, C::Reactivate) => Err(UserError::WrongStatus),
            (_, C::Delete) => Ok(vec![E::Deleted]),
            (_, C::Register { .. }) => Err(UserError::AlreadyExists),
            (_, C::Erase { .. }) => unreachable!("decided above"),
        }
    }

    fn apply(self, event: &UserEvent) -> User {
        use UserStatus as S;
        let User::Present {
            status,
            email_index,
            email_verified,
            pending_email,
        } = self
        else {
            return match event {
                UserEvent::Registered {
                    email_index,
                    invited,
                    email_verified,
                    ..
                } => User::Present {
                    status: if *invited { S::Invited } else { S::Active },
                    email_index: *email_index,
                    email_verified: *email_verified,
                    pending_email: None,
                },
                _ => self,
            };
        };
        let with_status = |status| User::Present {
            status,
            email_index,
            email_verified,
            pending_email,
        };
        match event {
            UserEvent::Registered { .. } | UserEvent::ProfileUpdated { .. } => with_status(status),
            UserEvent::EmailChanged { email_index, .. } => User::Present {
                status,
                email_index: *email_index,
                email_verified: false,
                pending_email: None,
            },
            UserEvent::EmailVerified { email_index: index } => User::Present {
                status,
                email_index,
                email_verified: email_verified || *index == email_index,
                pending_email,
            },
            UserEvent::EmailChangeRequested {
                email_index: index, ..
            } => User::Present {
                status,
                email_index,
                email_verified,
                pending_email: Some(*index),
            },
            UserEvent::EmailChangeCancelled { .. } => User::Present {
                status,
                email_index,
                email_verified,
                pending_email: None,
            },
            UserEvent::Activated | UserEvent::Reactivated => with_status(S::Active),
            UserEvent::Suspended => with_status(S::Suspended),
            UserEvent::Deleted => with_status(S::Deleted),
            UserEvent::Erased { .. } => with_status(S::Erased),
        }
    }
}

mod dto {
    use super::*;

    #[derive(Serialize, Deserialize)]
    pub struct Registered {
        pub email: SealedField,
        pub email_index: BlindIndex,
        pub profile: SealedProfile,
        pub invited: bool,
        /// Absent unless true (and in every event before verification).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pub email_verified: bool,
    }

    #[derive(Serialize, Deserialize)]
    pub struct ProfileUpdated {
        pub profile: SealedProfile,
    }

    #[derive(Serialize, Deserialize)]
    pub struct EmailChanged {
        pub email: SealedField,
        pub email_index: BlindIndex,
    }

    #[derive(Serialize, Deserialize)]
    pub struct EmailVerified {
        pub email_index: BlindIndex,
    }

    #[derive(Serialize, Deserialize)]
    pub struct EmailChangeCancelled {
        pub email_index: BlindIndex,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Empty {}

    #[derive(Serialize, Deserialize)]
    pub struct Erased {
        pub keys: Vec<String>,
        pub reference: String,
    }
}

impl EventSchema for UserEvent {
    fn to_stored(&self) -> StoredForm {
        match self {
            UserEvent::Registered {
                email,
                email_index,
                profile,
                invited,
                email_verified,
            } => stored(
                "UserRegistered",
                1,
                &dto::Registered {
                    email: email.clone(),
                    email_index: *email_index,
                    profile: profile.clone(),
                    invited: *invited,
                    email_verified: *email_verified,
                },
            ),
            UserEvent::Activated => stored("UserActivated", 1, &dto::Empty {}),
            UserEvent::ProfileUpdated { profile } => stored(
                "UserProfileUpdated",
                1,
                &dto::ProfileUpdated {
                    profile: profile.clone(),
                },
            ),
            UserEvent::EmailChanged { email, email_index } => stored(
                "UserEmailChanged",
                1,
                &dto::EmailChanged {
                    email: email.clone(),
                    email_index: *email_index,
                },
            ),
            UserEvent::EmailVerified { email_index } => stored(
                "UserEmailVerified",
                1,
                &dto::EmailVerified {
                    email_index: *email_index,
                },
            ),
            UserEvent::EmailChangeRequested { email, email_index } => stored(
                "UserEmailChangeRequested",
                1,
                &dto::EmailChanged {
                    email: email.clone(),
                    email_index: *email_index,
                },
            ),
            UserEvent::EmailChangeCancelled { email_index } => stored(
                "UserEmailChangeCancelled",
                1,
                &dto::EmailChangeCancelled {
                    email_index: *email_index,
                },
            ),
            UserEvent::Suspended => stored("UserSuspended", 1, &dto::Empty {}),
            UserEvent::Reactivated => stored("UserReactivated", 1, &dto::Empty {}),
            UserEvent::Deleted => stored("UserDeleted", 1, &dto::Empty {}),
            UserEvent::Erased { keys, reference } => stored(
                "SubjectErased",
                1,
                &dto::Erased {
                    keys: keys.clone(),
                    reference: reference.as_str().to_owned(),
                },
            ),
        }
    }

    fn from_stored(form: &StoredForm) -> Result<Self, SchemaError> {
        let version = form.schema_version.get();
        let name = form.event_type.as_str();
        if version != 1 {
            return match name {
                "UserRegistered"
                | "UserActivated"
                | "UserProfileUpdated"
                | "UserEmailChanged"
                | "UserEmailVerified"
                | "UserEmailChangeRequested"
                | "UserEmailChangeCancelled"
                | "UserSuspended"
                | "UserReactivated"
                | "UserDeleted"
                | "SubjectErased" => Err(SchemaError::UnknownVersion {
                    event_type: name.to_owned(),
                    version,
                }),
                other => Err(SchemaError::UnknownType(other.to_owned())),
            };
        }
        Ok(match name {
            "UserRegistered" => {
                let d: dto::Registered = read(form)?;
                UserEvent::Registered {
                    email: d.email,
                    email_index: d.email_index,
                    profile: d.profile,
                    invited: d.invited,
                    email_verified: d.email_verified,
                }
            }
            "UserActivated" => UserEvent::Activated,
            "UserProfileUpdated" => UserEvent::ProfileUpdated {
                profile: read::<dto::ProfileUpdated>(form)?.profile,
            },
            "UserEmailChanged" => {
                let d: dto::EmailChanged = read(form)?;
                UserEvent::EmailChanged {
                    email: d.email,
                    email_index: d.email_index,
                }
            }
            "UserEmailVerified" => UserEvent::EmailVerified {
                email_index: read::<dto::EmailVerified>(form)?.email_index,
            },
            "UserEmailChangeRequested" => {
                let d: dto::EmailChanged = read(form)?;
                UserEvent::EmailChangeRequested {
                    email: d.email,
                    email_index: d.email_index,
                }
            }
            "UserEmailChangeCancelled" => UserEvent::EmailChangeCancelled {
                email_index: read::<dto::EmailChangeCancelled>(form)?.email_index,
            },
            "UserSuspended" => UserEvent::Suspended,
            "UserReactivated" => UserEvent::Reactivated,
            "UserDeleted" => UserEvent::Deleted,
            "SubjectErased" => {
                let d: dto::Erased = read(form)?;
                // Read back without the personal-data guard: what the log
                // holds is history, whatever a later guard would say.
                UserEvent::Erased {
                    keys: d.keys,
                    reference: ErasureReference::from_log(d.reference),
                }
            }
            other => return Err(SchemaError::UnknownType(other.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::aggregate::given;

    fn sealed(tag: u8) -> SealedField {
        SealedField {
            subject: Uuid::nil(),
            nonce: vec![tag; 12],
            ciphertext: vec![tag; 20],
            access_day: None,
        }
    }

    fn registered(invited: bool) -> UserEvent {
        UserEvent::Registered {
            email: sealed(1),
            email_index: BlindIndex([1; 32]),
            profile: SealedProfile::default(),
            invited,
            email_verified: false,
        }
    }

    #[test]
    fn register_once_then_only_commands_on_existing_users() {
        given::<User>(&[])
            .when(&UserCommand::Register {
                email: sealed(1),
                email_index: BlindIndex([1; 32]),
                profile: SealedProfile::default(),
                invited: false,
                email_verified: false,
            })
            .then(&[registered(false)]);
        given::<User>(&[registered(false)])
            .when(&UserCommand::Register {
                email: sealed(2),
                email_index: BlindIndex([2; 32]),
                profile: SealedProfile::default(),
                invited: false,
                email_verified: false,
            })
            .then_error(UserError::AlreadyExists);
        given::<User>(&[])
            .when(&UserCommand::Suspend)
            .then_error(UserError::NotFound);
    }

    #[test]
    fn invited_users_activate_once() {
        given::<User>(&[registered(true)])
            .when(&UserCommand::Activate)
            .then(&[UserEvent::Activated]);
        given::<User>(&[registered(false)])
            .when(&UserCommand::Activate)
            .then_error(UserError::WrongStatus);
        assert_eq!(
            User::fold(&[registered(true)]).status(),
            Some(UserStatus::Invited)
        );
    }

    fn erase() -> UserCommand {
        UserCommand::Erase {
            keys: vec!["subject:k".into()],
            reference: ErasureReference::parse("DSR-17").unwrap(),
        }
    }

    #[test]
    fn any_user_may_be_erased_once_and_then_nothing_else_happens() {
        let erased = UserEvent::Erased {
            keys: vec!["subject:k".into()],
            reference: ErasureReference::parse("DSR-17").unwrap(),
        };
        for history in [
            vec![registered(true)],
            vec![registered(false), UserEvent::Suspended],
            vec![registered(false), UserEvent::Deleted],
        ] {
            given::<User>(&history)
                .when(&erase())
                .then(std::slice::from_ref(&erased));
        }
        let after = [registered(false), erased.clone()];
        given::<User>(&after).when(&erase()).then(&[]);
        given::<User>(&after)
            .when(&UserCommand::Reactivate)
            .then_error(UserError::Erased);
        given::<User>(&after)
            .when(&UserCommand::UpdateProfile {
                profile: SealedProfile::default(),
            })
            .then_error(UserError::Erased);
        given::<User>(&[])
            .when(&erase())
            .then_error(UserError::NotFound);
        assert_eq!(User::fold(&after).status(), Some(UserStatus::Erased));
        // A reference shows as it is: no invisible or reordering characters.
        for hidden in ["DSR\u{202e}71", "DSR\u{200b}71", "DSR\u{2028}71", "DSR\n71"] {
            assert!(ErasureReference::parse(hidden).is_err(), "{hidden:?}");
        }
    }

    #[test]
    fn suspend_reactivate_and_delete() {
        given::<User>(&[registered(false)])
            .when(&UserCommand::Suspend)
            .then(&[UserEvent::Suspended]);
        given::<User>(&[registered(false), UserEvent::Suspended])
            .when(&UserCommand::Suspend)
            .then_error(UserError::WrongStatus);
        given::<User>(&[registered(false), UserEvent::Suspended])
            .when(&UserCommand::Reactivate)
            .then(&[UserEvent::Reactivated]);
        given::<User>(&[registered(false)])
            .when(&UserCommand::Reactivate)
            .then_error(UserError::WrongStatus);
        given::<User>(&[registered(false), UserEvent::Suspended])
            .when(&UserCommand::Delete)
            .then(&[UserEvent::Deleted]);
    }

    #[test]
    fn deleted_users_accept_nothing() {
        let history = [registered(false), UserEvent::Deleted];
        for command in [
            UserCommand::Delete,
            UserCommand::Reactivate,
            UserCommand::UpdateProfile {
                profile: SealedProfile::default(),
            },
            UserCommand::ChangeEmail {
                email: sealed(3),
                email_index: BlindIndex([3; 32]),
            },
        ] {
            given::<User>(&history)
                .when(&command)
                .then_error(UserError::Deleted);
        }
    }

    #[test]
    fn changing_to_the_same_email_is_a_no_op() {
        given::<User>(&[registered(false)])
            .when(&UserCommand::ChangeEmail {
                email: sealed(9),
                email_index: BlindIndex([1; 32]),
            })
            .then(&[]);
        let change = UserCommand::ChangeEmail {
            email: sealed(2),
            email_index: BlindIndex([2; 32]),
        };
        given::<User>(&[registered(false)])
            .when(&change)
            .then(&[UserEvent::EmailChanged {
                email: sealed(2),
                email_index: BlindIndex([2; 32]),
            }]);
    }

    #[test]
    fn a_requested_change_waits_for_its_verification() {
        let index = |tag| BlindIndex([tag; 32]);
        let request = |tag| UserCommand::RequestEmailChange {
            email: sealed(tag),
            email_index: index(tag),
        };
        let requested = UserEvent::EmailChangeRequested {
            email: sealed(2),
            email_index: index(2),
        };
        given::<User>(&[registered(false)])
            .when(&request(2))
            .then(std::slice::from_ref(&requested));
        let history = [registered(false), requested.clone()];
        let state = User::fold(&history);
        assert_eq!(state.pending_email(), Some(index(2)));
        // The current address stays: it is the sign-in address until then.
        assert!(matches!(state, User::Present { email_index, .. } if email_index == index(1)));
        // Asking again for it changes nothing; another address replaces it.
        given::<User>(&history).when(&request(2)).then(&[]);
        given::<User>(&history)
            .when(&request(3))
            .then(&[UserEvent::EmailChangeRequested {
                email: sealed(3),
                email_index: index(3),
            }]);
        // Asking for the current address withdraws it.
        given::<User>(&history)
            .when(&request(1))
            .then(&[UserEvent::EmailChangeCancelled {
                email_index: index(2),
            }]);
        given::<User>(&[registered(false)])
            .when(&request(1))
            .then(&[]);
        // Only the pending address is confirmed, and verified with it.
        given::<User>(&history)
            .when(&UserCommand::ConfirmEmailChange {
                email: sealed(7),
                email_index: index(3),
            })
            .then_error(UserError::AddressChanged);
        given::<User>(&[registered(false)])
            .when(&UserCommand::ConfirmEmailChange {
                email: sealed(7),
                email_index: index(2),
            })
            .then_error(UserError::AddressChanged);
        let confirmed = [
            UserEvent::EmailChanged {
                email: sealed(7),
                email_index: index(2),
            },
            UserEvent::EmailVerified {
                email_index: index(2),
            },
        ];
        given::<User>(&history)
            .when(&UserCommand::ConfirmEmailChange {
                email: sealed(7),
                email_index: index(2),
            })
            .then(&confirmed);
        let after: Vec<UserEvent> = history.iter().chain(&confirmed).cloned().collect();
        let state = User::fold(&after);
        assert_eq!(state.pending_email(), None);
        assert!(state.email_verified());
        // A direct change (an identity provider's) ends the pending one.
        let direct: Vec<UserEvent> = history
            .iter()
            .cloned()
            .chain([UserEvent::EmailChanged {
                email: sealed(4),
                email_index: index(4),
            }])
            .collect();
        assert_eq!(User::fold(&direct).pending_email(), None);
        // An invited user has no sign-in address to keep.
        given::<User>(&[registered(true)])
            .when(&request(2))
            .then_error(UserError::WrongStatus);
    }

    #[test]
    fn events_round_trip_and_hold_no_plaintext_fields() {
        let profile = SealedProfile {
            display_name: Some(sealed(4)),
            phone: None,
            attributes: Some(sealed(5)),
            external_id: Some(BlindIndex([6; 32])),
        };
        for event in [
            registered(true),
            UserEvent::Activated,
            UserEvent::ProfileUpdated { profile },
            UserEvent::EmailChanged {
                email: sealed(6),
                email_index: BlindIndex([6; 32]),
            },
            UserEvent::EmailChangeRequested {
                email: sealed(7),
                email_index: BlindIndex([7; 32]),
            },
            UserEvent::EmailChangeCancelled {
                email_index: BlindIndex([7; 32]),
            },
            UserEvent::Suspended,
            UserEvent::Reactivated,
            UserEvent::Deleted,
        ] {
            let form = event.to_stored();
            assert_eq!(UserEvent::from_stored(&form), Ok(event));
        }
        let json: serde_json::Value =
            serde_json::from_slice(registered(false).to_stored().payload.as_bytes()).unwrap();
        assert!(
            json["email"]["ciphertext"].is_string(),
            "the email is stored sealed: {json}"
        );
    }
}

#[cfg(test)]
mod verification_tests {
    use uuid::Uuid;

    use super::*;
    use crate::aggregate::given;

    fn sealed() -> SealedField {
        SealedField {
            subject: Uuid::nil(),
            nonce: vec![0; 12],
            ciphertext: vec![0; 20],
            access_day: None,
        }
    }

    fn registered() -> UserEvent {
        UserEvent::Registered {
            email: sealed(),
            email_index: BlindIndex([1; 32]),
            profile: SealedProfile::default(),
            invited: false,
            email_verified: false,
        }
    }

    #[test]
    fn an_address_is_verified_once_and_unverified_by_a_change() {
        let verify = |n| UserCommand::VerifyEmail {
            email_index: BlindIndex([n; 32]),
        };
        let verified = UserEvent::EmailVerified {
            email_index: BlindIndex([1; 32]),
        };
        given::<User>(&[registered()])
            .when(&verify(1))
            .then(std::slice::from_ref(&verified));
        given::<User>(&[registered()])
            .when(&verify(2))
            .then_error(UserError::AddressChanged);
        given::<User>(&[registered(), verified.clone()])
            .when(&verify(1))
            .then(&[]);
        assert!(User::fold(&[registered(), verified.clone()]).email_verified());
        let changed = UserEvent::EmailChanged {
            email: sealed(),
            email_index: BlindIndex([2; 32]),
        };
        assert!(!User::fold(&[registered(), verified.clone(), changed.clone()]).email_verified());
        assert_eq!(
            UserEvent::from_stored(&verified.to_stored()),
            Ok(verified.clone())
        );
    }
}
