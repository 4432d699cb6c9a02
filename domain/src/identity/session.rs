//! Sessions, kept server-side as events. The refresh token is opaque and
//! stored only as its SHA-256; every refresh rotates it, and presenting a
//! token that was already rotated away revokes the whole session (someone
//! holds a stolen copy), recording why.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{
    read, snapshot_json, stored, Aggregate, EventSchema, SchemaError, Snapshot, StoredForm,
};
use crate::event::Timestamp;
use crate::personal::SealedField;

/// SHA-256 of a refresh token's secret part.
pub type TokenHash = [u8; 32];

/// How many rotated-away refresh tokens a session remembers for reuse
/// detection. Reuse detection exists for the race after a theft: thief and
/// client both hold one token, and whoever presents it second presents a
/// spent one, within a rotation or two. 256 rotations cover more than two
/// days of refreshes every 15 minutes; a token older than that is refused
/// as invalid (without revoking the session). A bound, so that a session's
/// state, and a refresh's cost, do not grow with its age.
pub const REMEMBERED_SPENT_TOKENS: usize = 256;

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
    /// The user started more sessions than one user may hold
    /// ([`MAX_LISTED_SESSIONS`]); the oldest ended.
    SessionLimit,
    /// The user was erased.
    SubjectErased,
    /// The user's password was reset through a reset link.
    PasswordReset,
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
        /// Rotated-away tokens, oldest first, at most
        /// [`REMEMBERED_SPENT_TOKENS`].
        spent: VecDeque<TokenHash>,
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
                spent: VecDeque::new(),
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
                if spent.len() == REMEMBERED_SPENT_TOKENS {
                    spent.pop_front();
                }
                spent.push_back(current);
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

/// The snapshot form, version 1.
mod snapshot {
    use super::*;

    #[derive(Serialize, Deserialize)]
    #[serde(tag = "state", rename_all = "snake_case")]
    pub enum SessionV1 {
        Absent,
        Live {
            user: Uuid,
            current_sha256: String,
            /// Oldest first, 64 hex digits each, concatenated.
            spent_sha256: String,
            refresh_expires_at: i64,
        },
        Revoked {
            user: Uuid,
            reason: RevocationReason,
        },
    }

    #[derive(Serialize, Deserialize)]
    pub struct SessionIndexV1 {
        pub sessions: Vec<Uuid>,
    }
}

impl Snapshot for Session {
    const SNAPSHOT_VERSION: Option<u32> = Some(1);

    fn to_snapshot(&self) -> Vec<u8> {
        snapshot_json(&match self {
            Session::Absent => snapshot::SessionV1::Absent,
            Session::Live {
                user,
                current,
                spent,
                refresh_expires_at,
            } => snapshot::SessionV1::Live {
                user: *user,
                current_sha256: hex::encode(current),
                spent_sha256: spent.iter().map(hex::encode).collect(),
                refresh_expires_at: refresh_expires_at.0,
            },
            Session::Revoked { user, reason } => snapshot::SessionV1::Revoked {
                user: *user,
                reason: *reason,
            },
        })
    }

    fn from_snapshot(version: u32, bytes: &[u8]) -> Option<Self> {
        if version != 1 {
            return None;
        }
        Some(match serde_json::from_slice(bytes).ok()? {
            snapshot::SessionV1::Absent => Session::Absent,
            snapshot::SessionV1::Live {
                user,
                current_sha256,
                spent_sha256,
                refresh_expires_at,
            } => Session::Live {
                user,
                current: token_hash(&current_sha256)?,
                spent: hex::decode(spent_sha256)
                    .ok()?
                    .chunks(32)
                    .map(|hash| hash.try_into().ok())
                    .collect::<Option<_>>()?,
                refresh_expires_at: Timestamp(refresh_expires_at),
            },
            snapshot::SessionV1::Revoked { user, reason } => Session::Revoked { user, reason },
        })
    }
}

impl Snapshot for SessionIndex {
    const SNAPSHOT_VERSION: Option<u32> = Some(1);

    fn to_snapshot(&self) -> Vec<u8> {
        snapshot_json(&snapshot::SessionIndexV1 {
            sessions: self.0.clone(),
        })
    }

    fn from_snapshot(version: u32, bytes: &[u8]) -> Option<Self> {
        let snapshot::SessionIndexV1 { sessions } =
            (version == 1).then(|| serde_json::from_slice(bytes).ok())??;
        Some(SessionIndex(sessions))
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
                    access_day: None,
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
/// the ending (one of the two is decided again). The index stays short: it
/// holds at most [`MAX_LISTED_SESSIONS`]; when it is full, a new session
/// first unlists the sessions that are over and, if that frees too little,
/// ends the oldest ([`RevocationReason::SessionLimit`]), down to
/// [`LISTED_AFTER_PRUNING`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionIndex(pub Vec<Uuid>);

/// The most sessions one user holds at once.
pub const MAX_LISTED_SESSIONS: usize = 100;

/// How many sessions are left listed (the new one included) after a full
/// index was pruned, so that pruning happens once per many logins.
pub const LISTED_AFTER_PRUNING: usize = 75;

impl SessionIndex {
    pub fn is_full(&self) -> bool {
        self.0.len() >= MAX_LISTED_SESSIONS
    }

    /// Which listed sessions to unlist before listing one more, given the
    /// ones known to be over: those, then the oldest of the rest until
    /// [`LISTED_AFTER_PRUNING`] remain with the new one. The second part
    /// must be ended in the same command.
    pub fn to_prune(&self, over: &[Uuid]) -> (Vec<Uuid>, Vec<Uuid>) {
        let (ended, live): (Vec<Uuid>, Vec<Uuid>) =
            self.0.iter().partition(|session| over.contains(session));
        let excess = (live.len() + 1).saturating_sub(LISTED_AFTER_PRUNING);
        (ended, live.into_iter().take(excess).collect())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionIndexCommand {
    List(Uuid),
    /// These sessions are over (or being ended in the same command).
    Unlist(Vec<Uuid>),
    /// Every session but `keep` is being ended (in the same command).
    EndAll {
        keep: Option<Uuid>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionIndexEvent {
    Listed(Uuid),
    Unlisted(Vec<Uuid>),
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
            SessionIndexCommand::Unlist(sessions) => {
                let listed: Vec<Uuid> = sessions
                    .iter()
                    .filter(|s| self.0.contains(s))
                    .copied()
                    .collect();
                if listed.is_empty() {
                    vec![]
                } else {
                    vec![SessionIndexEvent::Unlisted(listed)]
                }
            }
        })
    }

    fn apply(mut self, event: &SessionIndexEvent) -> SessionIndex {
        match event {
            SessionIndexEvent::Listed(session) => self.0.push(*session),
            SessionIndexEvent::Ended { kept } => self.0.retain(|s| Some(*s) == *kept),
            SessionIndexEvent::Unlisted(sessions) => self.0.retain(|s| !sessions.contains(s)),
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

#[derive(Serialize, Deserialize)]
struct Unlisted {
    sessions: Vec<Uuid>,
}

impl EventSchema for SessionIndexEvent {
    fn to_stored(&self) -> StoredForm {
        match self {
            SessionIndexEvent::Listed(session) => {
                stored("SessionListed", 1, &Listed { session: *session })
            }
            SessionIndexEvent::Ended { kept } => stored("SessionsEnded", 1, &Ended { kept: *kept }),
            SessionIndexEvent::Unlisted(sessions) => stored(
                "SessionsUnlisted",
                1,
                &Unlisted {
                    sessions: sessions.clone(),
                },
            ),
        }
    }

    fn from_stored(form: &StoredForm) -> Result<Self, SchemaError> {
        match (form.event_type.as_str(), form.schema_version.get()) {
            ("SessionListed", 1) => Ok(SessionIndexEvent::Listed(read::<Listed>(form)?.session)),
            ("SessionsEnded", 1) => Ok(SessionIndexEvent::Ended {
                kept: read::<Ended>(form)?.kept,
            }),
            ("SessionsUnlisted", 1) => Ok(SessionIndexEvent::Unlisted(
                read::<Unlisted>(form)?.sessions,
            )),
            (event_type @ ("SessionListed" | "SessionsEnded" | "SessionsUnlisted"), version) => {
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
    fn a_full_index_unlists_ended_sessions_first_then_the_oldest() {
        let sessions: Vec<Uuid> = (0..MAX_LISTED_SESSIONS).map(|_| Uuid::now_v7()).collect();
        let index = SessionIndex(sessions.clone());
        assert!(index.is_full());
        // Enough are over: only they go.
        let over: Vec<Uuid> = sessions.iter().step_by(3).copied().collect();
        assert_eq!(index.to_prune(&over), (over.clone(), vec![]));
        // None is over: the oldest live ones end, leaving room to spare.
        let (ended, evicted) = index.to_prune(&[]);
        assert!(ended.is_empty());
        assert_eq!(
            evicted,
            sessions[..MAX_LISTED_SESSIONS + 1 - LISTED_AFTER_PRUNING]
        );
        // Unlisting what is not listed changes nothing.
        given::<SessionIndex>(&[SessionIndexEvent::Listed(sessions[0])])
            .when(&SessionIndexCommand::Unlist(vec![sessions[1]]))
            .then(&[]);
    }

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
            SessionIndexEvent::Unlisted(vec![a, b]),
        ] {
            assert_eq!(
                SessionIndexEvent::from_stored(&event.to_stored()),
                Ok(event)
            );
        }
    }
}
