//! Sessions, kept server-side as events. The refresh token is opaque and
//! stored only as its SHA-256; every refresh rotates it, and presenting a
//! token that was already rotated away revokes the whole session (someone
//! holds a stolen copy), recording why.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{read, stored, Aggregate, EventSchema, SchemaError, StoredForm};
use crate::event::Timestamp;
use crate::personal::SealedField;

/// SHA-256 of a refresh token's secret part.
pub type TokenHash = [u8; 32];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    Logout,
    /// By an administrator, or "sign out everywhere".
    Revoked,
    /// A rotated refresh token was presented again.
    RefreshReuse,
    /// The user was suspended or deleted.
    UserDisabled,
    /// The user's password was set or changed (every other session ends).
    PasswordChanged,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCommand {
    Start {
        user: Uuid,
        at: Timestamp,
        refresh: TokenHash,
        refresh_expires_at: Timestamp,
    },
    Refresh {
        presented: TokenHash,
        next: TokenHash,
        at: Timestamp,
        refresh_expires_at: Timestamp,
    },
    Revoke {
        at: Timestamp,
        reason: RevocationReason,
    },
    /// Records where the session was started from (sealed: IP address and
    /// user agent are personal data).
    RecordClient { client: SealedField },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    Started {
        user: Uuid,
        at: Timestamp,
        refresh: TokenHash,
        refresh_expires_at: Timestamp,
    },
    Refreshed {
        at: Timestamp,
        refresh: TokenHash,
        refresh_expires_at: Timestamp,
    },
    Revoked {
        at: Timestamp,
        reason: RevocationReason,
    },
    ClientRecorded {
        client: SealedField,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session already exists")]
    AlreadyStarted,
    #[error("no such session")]
    NotFound,
    #[error("the session is revoked")]
    Revoked,
    #[error("the refresh token has expired")]
    Expired,
    #[error("the refresh token is not valid")]
    InvalidToken,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Session {
    #[default]
    Absent,
    Live {
        user: Uuid,
        current: TokenHash,
        spent: Vec<TokenHash>,
        refresh_expires_at: Timestamp,
    },
    Revoked {
        user: Uuid,
        reason: RevocationReason,
    },
}

impl Session {
    pub fn user(&self) -> Option<Uuid> {
        match self {
            Session::Absent => None,
            Session::Live { user, .. } | Session::Revoked { user, .. } => Some(*user),
        }
    }

    pub fn is_live(&self) -> bool {
        matches!(self, Session::Live { .. })
    }
}

impl Aggregate for Session {
    type Command = SessionCommand;
    type Event = SessionEvent;
    type Error = SessionError;

    fn decide(&self, command: &SessionCommand) -> Result<Vec<SessionEvent>, SessionError> {
        use SessionCommand as C;
        use SessionEvent as E;
        match (self, command) {
            (
                Session::Absent,
                C::Start {
                    user,
                    at,
                    refresh,
                    refresh_expires_at,
                },
            ) => Ok(vec![E::Started {
                user: *user,
                at: *at,
                refresh: *refresh,
                refresh_expires_at: *refresh_expires_at,
            }]),
            (_, C::Start { .. }) => Err(SessionError::AlreadyStarted),
            (Session::Absent, _) => Err(SessionError::NotFound),
            (Session::Live { .. }, C::RecordClient { client }) => Ok(vec![E::ClientRecorded {
                client: client.clone(),
            }]),
            (Session::Revoked { .. }, C::RecordClient { .. }) => Err(SessionError::Revoked),
            (Session::Revoked { .. }, C::Revoke { .. }) => Ok(vec![]),
            (Session::Revoked { .. }, C::Refresh { .. }) => Err(SessionError::Revoked),
            (Session::Live { .. }, C::Revoke { at, reason }) => Ok(vec![E::Revoked {
                at: *at,
                reason: *reason,
            }]),
            (
                Session::Live {
                    current,
                    spent,
                    refresh_expires_at: expires,
                    ..
                },
                C::Refresh {
                    presented,
                    next,
                    at,
                    refresh_expires_at,
                },
            ) => {
                if spent.contains(presented) {
                    // Reuse: revoke everything. The handler reports it.
                    return Ok(vec![E::Revoked {
                        at: *at,
                        reason: RevocationReason::RefreshReuse,
                    }]);
                }
                if presented != current {
                    return Err(SessionError::InvalidToken);
                }
                if at >= expires {
                    return Err(SessionError::Expired);
                }
                Ok(vec![E::Refreshed {
                    at: *at,
                    refresh: *next,
                    refresh_expires_at: *refresh_expires_at,
                }])
            }
        }
    }

    fn apply(self, event: &SessionEvent) -> Session {
        match (self, event) {
            (
                _,
                SessionEvent::Started {
                    user,
                    refresh,
                    refresh_expires_at,
                    ..
                },
            ) => Session::Live {
                user: *user,
                current: *refresh,
                spent: Vec::new(),
                refresh_expires_at: *refresh_expires_at,
            },
            (
                Session::Live {
                    user,
                    current,
                    mut spent,
                    ..
                },
                SessionEvent::Refreshed {
                    refresh,
                    refresh_expires_at,
                    ..
                },
            ) => {
                spent.push(current);
                Session::Live {
                    user,
                    current: *refresh,
                    spent,
                    refresh_expires_at: *refresh_expires_at,
                }
            }
            (Session::Live { user, .. }, SessionEvent::Revoked { reason, .. }) => {
                Session::Revoked {
                    user,
                    reason: *reason,
                }
            }
            (state, _) => state,
        }
    }
}

mod dto {
    use super::*;

    #[derive(Serialize, Deserialize)]
    pub struct Client {
        pub client: SealedField,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Started {
        pub user: Uuid,
        pub at: i64,
        pub refresh_sha256: String,
        pub refresh_expires_at: i64,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Refreshed {
        pub at: i64,
        pub refresh_sha256: String,
        pub refresh_expires_at: i64,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Revoked {
        pub at: i64,
        pub reason: RevocationReason,
    }
}

fn token_hash(hex_text: &str) -> Option<TokenHash> {
    hex::decode(hex_text).ok()?.try_into().ok()
}

impl EventSchema for SessionEvent {
    fn to_stored(&self) -> StoredForm {
        match self {
            SessionEvent::Started {
                user,
                at,
                refresh,
                refresh_expires_at,
            } => stored(
                "SessionStarted",
                1,
                &dto::Started {
                    user: *user,
                    at: at.0,
                    refresh_sha256: hex::encode(refresh),
                    refresh_expires_at: refresh_expires_at.0,
                },
            ),
            SessionEvent::Refreshed {
                at,
                refresh,
                refresh_expires_at,
            } => stored(
                "SessionRefreshed",
                1,
                &dto::Refreshed {
                    at: at.0,
                    refresh_sha256: hex::encode(refresh),
                    refresh_expires_at: refresh_expires_at.0,
                },
            ),
            SessionEvent::Revoked { at, reason } => stored(
                "SessionRevoked",
                1,
                &dto::Revoked {
                    at: at.0,
                    reason: *reason,
                },
            ),
            SessionEvent::ClientRecorded { client } => stored(
                "SessionClientRecorded",
                1,
                &dto::Client {
                    client: client.clone(),
                },
            ),
        }
    }

    fn from_stored(form: &StoredForm) -> Result<Self, SchemaError> {
        let name = form.event_type.as_str();
        let malformed = || SchemaError::Malformed {
            event_type: name.to_owned(),
            version: form.schema_version.get(),
        };
        match (name, form.schema_version.get()) {
            ("SessionStarted", 1) => {
                let d: dto::Started = read(form)?;
                Ok(SessionEvent::Started {
                    user: d.user,
                    at: Timestamp(d.at),
                    refresh: token_hash(&d.refresh_sha256).ok_or_else(malformed)?,
                    refresh_expires_at: Timestamp(d.refresh_expires_at),
                })
            }
            ("SessionClientRecorded", 1) => Ok(SessionEvent::ClientRecorded {
                client: read::<dto::Client>(form)?.client,
            }),
            ("SessionRefreshed", 1) => {
                let d: dto::Refreshed = read(form)?;
                Ok(SessionEvent::Refreshed {
                    at: Timestamp(d.at),
                    refresh: token_hash(&d.refresh_sha256).ok_or_else(malformed)?,
                    refresh_expires_at: Timestamp(d.refresh_expires_at),
                })
            }
            ("SessionRevoked", 1) => {
                let d: dto::Revoked = read(form)?;
                Ok(SessionEvent::Revoked {
                    at: Timestamp(d.at),
                    reason: d.reason,
                })
            }
            (
                "SessionStarted" | "SessionRefreshed" | "SessionRevoked" | "SessionClientRecorded",
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
    use super::*;
    use crate::aggregate::given;

    const DAY: i64 = 86_400_000_000;

    fn started(user: Uuid) -> SessionEvent {
        SessionEvent::Started {
            user,
            at: Timestamp(0),
            refresh: [1; 32],
            refresh_expires_at: Timestamp(7 * DAY),
        }
    }

    fn refresh(presented: u8, next: u8, at: i64) -> SessionCommand {
        SessionCommand::Refresh {
            presented: [presented; 32],
            next: [next; 32],
            at: Timestamp(at),
            refresh_expires_at: Timestamp(at + 7 * DAY),
        }
    }

    #[test]
    fn refresh_rotates_the_token() {
        let user = Uuid::now_v7();
        given::<Session>(&[started(user)])
            .when(&refresh(1, 2, 10))
            .then(&[SessionEvent::Refreshed {
                at: Timestamp(10),
                refresh: [2; 32],
                refresh_expires_at: Timestamp(10 + 7 * DAY),
            }]);
        given::<Session>(&[started(user)])
            .when(&refresh(9, 2, 10))
            .then_error(SessionError::InvalidToken);
        given::<Session>(&[started(user)])
            .when(&refresh(1, 2, 7 * DAY))
            .then_error(SessionError::Expired);
    }

    #[test]
    fn a_rotated_token_presented_again_revokes_the_session() {
        let user = Uuid::now_v7();
        let rotated = [
            started(user),
            SessionEvent::Refreshed {
                at: Timestamp(10),
                refresh: [2; 32],
                refresh_expires_at: Timestamp(7 * DAY),
            },
        ];
        given::<Session>(&rotated)
            .when(&refresh(1, 3, 20))
            .then(&[SessionEvent::Revoked {
                at: Timestamp(20),
                reason: RevocationReason::RefreshReuse,
            }]);
        let revoked = [
            rotated[0].clone(),
            rotated[1].clone(),
            SessionEvent::Revoked {
                at: Timestamp(20),
                reason: RevocationReason::RefreshReuse,
            },
        ];
        // Even the legitimate current token is dead now.
        given::<Session>(&revoked)
            .when(&refresh(2, 3, 30))
            .then_error(SessionError::Revoked);
        assert_eq!(
            Session::fold(&revoked),
            Session::Revoked {
                user,
                reason: RevocationReason::RefreshReuse
            }
        );
    }

    #[test]
    fn revoke_is_idempotent_and_start_happens_once() {
        let user = Uuid::now_v7();
        let revoke = SessionCommand::Revoke {
            at: Timestamp(5),
            reason: RevocationReason::Logout,
        };
        given::<Session>(&[started(user)])
            .when(&revoke)
            .then(&[SessionEvent::Revoked {
                at: Timestamp(5),
                reason: RevocationReason::Logout,
            }]);
        given::<Session>(&[
            started(user),
            SessionEvent::Revoked {
                at: Timestamp(5),
                reason: RevocationReason::Logout,
            },
        ])
        .when(&revoke)
        .then(&[]);
        given::<Session>(&[])
            .when(&revoke)
            .then_error(SessionError::NotFound);
        given::<Session>(&[started(user)])
            .when(&SessionCommand::Start {
                user,
                at: Timestamp(0),
                refresh: [1; 32],
                refresh_expires_at: Timestamp(1),
            })
            .then_error(SessionError::AlreadyStarted);
    }

    #[test]
    fn events_round_trip() {
        for event in [
            started(Uuid::now_v7()),
            SessionEvent::Refreshed {
                at: Timestamp(3),
                refresh: [4; 32],
                refresh_expires_at: Timestamp(5),
            },
            SessionEvent::Revoked {
                at: Timestamp(6),
                reason: RevocationReason::RefreshReuse,
            },
            SessionEvent::ClientRecorded {
                client: SealedField {
                    subject: Uuid::nil(),
                    nonce: vec![1; 12],
                    ciphertext: vec![2; 30],
                },
            },
        ] {
            assert_eq!(SessionEvent::from_stored(&event.to_stored()), Ok(event));
        }
    }
}

/// The sessions of a user that may still be live: what "sign out
/// everywhere", a suspension or a new password ends. Ending them is an
/// event here too, so a session started at the same moment conflicts with
/// the ending (one of the two is decided again), and the index stays short.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionIndex(pub Vec<Uuid>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionIndexCommand {
    List(Uuid),
    /// Every session but `keep` is being ended (in the same command).
    EndAll {
        keep: Option<Uuid>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionIndexEvent {
    Listed(Uuid),
    Ended { kept: Option<Uuid> },
}

impl Aggregate for SessionIndex {
    type Command = SessionIndexCommand;
    type Event = SessionIndexEvent;
    type Error = std::convert::Infallible;

    fn decide(&self, command: &SessionIndexCommand) -> Result<Vec<SessionIndexEvent>, Self::Error> {
        Ok(match command {
            SessionIndexCommand::List(session) if self.0.contains(session) => vec![],
            SessionIndexCommand::List(session) => vec![SessionIndexEvent::Listed(*session)],
            SessionIndexCommand::EndAll { keep } => vec![SessionIndexEvent::Ended { kept: *keep }],
        })
    }

    fn apply(mut self, event: &SessionIndexEvent) -> SessionIndex {
        match event {
            SessionIndexEvent::Listed(session) => self.0.push(*session),
            SessionIndexEvent::Ended { kept } => self.0.retain(|s| Some(*s) == *kept),
        }
        self
    }
}

#[derive(Serialize, Deserialize)]
struct Listed {
    session: Uuid,
}

#[derive(Serialize, Deserialize)]
struct Ended {
    kept: Option<Uuid>,
}

impl EventSchema for SessionIndexEvent {
    fn to_stored(&self) -> StoredForm {
        match self {
            SessionIndexEvent::Listed(session) => {
                stored("SessionListed", 1, &Listed { session: *session })
            }
            SessionIndexEvent::Ended { kept } => stored("SessionsEnded", 1, &Ended { kept: *kept }),
        }
    }

    fn from_stored(form: &StoredForm) -> Result<Self, SchemaError> {
        match (form.event_type.as_str(), form.schema_version.get()) {
            ("SessionListed", 1) => Ok(SessionIndexEvent::Listed(read::<Listed>(form)?.session)),
            ("SessionsEnded", 1) => Ok(SessionIndexEvent::Ended {
                kept: read::<Ended>(form)?.kept,
            }),
            (event_type @ ("SessionListed" | "SessionsEnded"), version) => {
                Err(SchemaError::UnknownVersion {
                    event_type: event_type.into(),
                    version,
                })
            }
            (other, _) => Err(SchemaError::UnknownType(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod index_tests {
    use super::*;
    use crate::aggregate::given;

    #[test]
    fn ending_sessions_empties_the_index_but_the_kept_one() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let listed = [SessionIndexEvent::Listed(a), SessionIndexEvent::Listed(b)];
        given::<SessionIndex>(&listed)
            .when(&SessionIndexCommand::List(a))
            .then(&[]);
        let state = listed
            .iter()
            .chain([&SessionIndexEvent::Ended { kept: Some(b) }])
            .fold(SessionIndex::default(), |s, e| s.apply(e));
        assert_eq!(state, SessionIndex(vec![b]));
        for event in [
            SessionIndexEvent::Listed(a),
            SessionIndexEvent::Ended { kept: None },
        ] {
            assert_eq!(
                SessionIndexEvent::from_stored(&event.to_stored()),
                Ok(event)
            );
        }
    }
}
