//! Single-use link tokens (ADR 0013): an invitation, an address
//! verification, a password reset. One stream per user and purpose holds
//! at most one live token; issuing a new one revokes the one before. Only
//! the SHA-256 of a token's 256-bit secret is ever recorded.

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::aggregate::{
    read, snapshot_json, stored, Aggregate, EventSchema, SchemaError, Snapshot, StoredForm,
};
use crate::event::Timestamp;

/// What a link is for. Its prefix starts the token (`inv_…`), so a token
/// of one purpose is never accepted for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkPurpose {
    Invitation,
    Verification,
    Reset,
}

impl LinkPurpose {
    pub const ALL: [LinkPurpose; 3] = [Self::Invitation, Self::Verification, Self::Reset];

    pub fn prefix(self) -> &'static str {
        match self {
            Self::Invitation => "inv",
            Self::Verification => "vfy",
            Self::Reset => "rst",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Invitation => "invitation",
            Self::Verification => "verification",
            Self::Reset => "reset",
        }
    }

    pub fn from_prefix(prefix: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.prefix() == prefix)
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The stream of `user`'s tokens of this purpose: a name-based UUID, so
    /// the token can carry it without carrying the user's id.
    pub fn stream_id(self, user: Uuid) -> Uuid {
        Uuid::new_v5(&user, self.name().as_bytes())
    }
}

/// Why a token was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokedBecause {
    /// A newer token of the same purpose was issued.
    Replaced,
    /// Its purpose is gone (the invited user was activated otherwise, the
    /// address it verifies was changed, the user was deleted).
    Obsolete,
}

impl RevokedBecause {
    fn name(self) -> &'static str {
        match self {
            Self::Replaced => "replaced",
            Self::Obsolete => "obsolete",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "replaced" => Some(Self::Replaced),
            "obsolete" => Some(Self::Obsolete),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkTokenCommand {
    /// Issues a token (revoking the live one, if any), at `at`.
    Issue {
        token: Uuid,
        user: Uuid,
        purpose: LinkPurpose,
        secret_sha256: [u8; 32],
        expires_at: Timestamp,
        at: Timestamp,
    },
    /// Uses the token whose secret hashes to `secret_sha256`, at `at`.
    Use {
        purpose: LinkPurpose,
        secret_sha256: [u8; 32],
        at: Timestamp,
    },
    /// Revokes the live token, if any.
    Revoke { because: RevokedBecause },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkTokenEvent {
    Issued {
        token: Uuid,
        user: Uuid,
        purpose: LinkPurpose,
        secret_sha256: [u8; 32],
        expires_at: Timestamp,
        at: Timestamp,
    },
    Used {
        token: Uuid,
    },
    Revoked {
        token: Uuid,
        because: RevokedBecause,
    },
}

/// Why a token is refused. Only a token whose secret matches learns more
/// than [`LinkTokenError::Invalid`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkTokenError {
    #[error("the link is not valid")]
    Invalid,
    #[error("the link has expired")]
    Expired,
    #[error("the link was used already")]
    Used,
    #[error("the link was replaced or withdrawn")]
    Revoked,
    /// [`MAX_ISSUED_PER_HOUR`] links of this purpose went to this user in
    /// the last hour: no more mail to them for now.
    #[error("too many links were sent to this user; try again later")]
    TooMany,
}

/// The most links of one purpose issued to one user in an hour. Every link
/// is a message to an address: without a bound, anyone allowed to ask for
/// one (the user themselves, for a verification link) could flood an
/// address that is not theirs.
pub const MAX_ISSUED_PER_HOUR: usize = 5;

const HOUR_MICROS: i64 = 3_600_000_000;

/// A token no longer live, kept so that presenting it again is answered
/// for what it is (used, revoked), not as unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spent {
    secret_sha256: [u8; 32],
    used: bool,
}

/// How many spent tokens are remembered per user and purpose.
const SPENT_KEPT: usize = 8;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkTokens {
    user: Option<Uuid>,
    purpose: Option<LinkPurpose>,
    live: Option<Live>,
    spent: Vec<Spent>,
    /// When the last [`MAX_ISSUED_PER_HOUR`] tokens were issued.
    issued: Vec<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Live {
    token: Uuid,
    secret_sha256: [u8; 32],
    expires_at: Timestamp,
}

impl LinkTokens {
    /// The user the tokens are for (`None` before the first).
    pub fn user(&self) -> Option<Uuid> {
        self.user
    }

    fn retire(&mut self, secret_sha256: [u8; 32], used: bool) {
        self.spent.push(Spent {
            secret_sha256,
            used,
        });
        if self.spent.len() > SPENT_KEPT {
            self.spent.remove(0);
        }
    }
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

impl Aggregate for LinkTokens {
    type Command = LinkTokenCommand;
    type Event = LinkTokenEvent;
    type Error = LinkTokenError;

    fn decide(&self, command: &LinkTokenCommand) -> Result<Vec<LinkTokenEvent>, LinkTokenError> {
        match command {
            LinkTokenCommand::Issue {
                token,
                user,
                purpose,
                secret_sha256,
                expires_at,
                at,
            } => {
                // A stream is one user's and one purpose's (its id says so).
                if self.user.is_some_and(|u| u != *user)
                    || self.purpose.is_some_and(|p| p != *purpose)
                {
                    return Err(LinkTokenError::Invalid);
                }
                let recent = self
                    .issued
                    .iter()
                    .filter(|t| at.0 - t.0 < HOUR_MICROS)
                    .count();
                if recent >= MAX_ISSUED_PER_HOUR {
                    return Err(LinkTokenError::TooMany);
                }
                let mut events = Vec::new();
                if let Some(live) = &self.live {
                    events.push(LinkTokenEvent::Revoked {
                        token: live.token,
                        because: RevokedBecause::Replaced,
                    });
                }
                events.push(LinkTokenEvent::Issued {
                    token: *token,
                    user: *user,
                    purpose: *purpose,
                    secret_sha256: *secret_sha256,
                    expires_at: *expires_at,
                    at: *at,
                });
                Ok(events)
            }
            LinkTokenCommand::Use {
                purpose,
                secret_sha256,
                at,
            } => {
                if self.purpose != Some(*purpose) {
                    return Err(LinkTokenError::Invalid);
                }
                if let Some(live) = &self.live {
                    if same(&live.secret_sha256, secret_sha256) {
                        if *at >= live.expires_at {
                            return Err(LinkTokenError::Expired);
                        }
                        return Ok(vec![LinkTokenEvent::Used { token: live.token }]);
                    }
                }
                match self
                    .spent
                    .iter()
                    .find(|spent| same(&spent.secret_sha256, secret_sha256))
                {
                    Some(Spent { used: true, .. }) => Err(LinkTokenError::Used),
                    Some(Spent { used: false, .. }) => Err(LinkTokenError::Revoked),
                    None => Err(LinkTokenError::Invalid),
                }
            }
            LinkTokenCommand::Revoke { because } => Ok(self
                .live
                .iter()
                .map(|live| LinkTokenEvent::Revoked {
                    token: live.token,
                    because: *because,
                })
                .collect()),
        }
    }

    fn apply(mut self, event: &LinkTokenEvent) -> LinkTokens {
        match event {
            LinkTokenEvent::Issued {
                token,
                user,
                purpose,
                secret_sha256,
                expires_at,
                at,
            } => {
                if let Some(live) = self.live.take() {
                    self.retire(live.secret_sha256, false);
                }
                self.issued.push(*at);
                if self.issued.len() > MAX_ISSUED_PER_HOUR {
                    self.issued.remove(0);
                }
                self.user = Some(*user);
                self.purpose = Some(*purpose);
                self.live = Some(Live {
                    token: *token,
                    secret_sha256: *secret_sha256,
                    expires_at: *expires_at,
                });
            }
            LinkTokenEvent::Used { token } | LinkTokenEvent::Revoked { token, .. } => {
                if let Some(live) = self.live.take_if(|live| live.token == *token) {
                    let used = matches!(event, LinkTokenEvent::Used { .. });
                    self.retire(live.secret_sha256, used);
                }
            }
        }
        self
    }
}

/// The snapshot form, version 1: a user asked for resets again and again
/// would otherwise make every use fold their whole history.
#[derive(Serialize, Deserialize)]
struct LinkTokensV1 {
    user: Option<Uuid>,
    purpose: Option<String>,
    live: Option<LiveV1>,
    spent: Vec<(String, bool)>,
    #[serde(default)]
    issued: Vec<i64>,
}

#[derive(Serialize, Deserialize)]
struct LiveV1 {
    token: Uuid,
    secret_sha256: String,
    expires_at: i64,
}

fn hash_from_hex(text: &str) -> Option<[u8; 32]> {
    hex::decode(text).ok()?.try_into().ok()
}

impl Snapshot for LinkTokens {
    const SNAPSHOT_VERSION: Option<u32> = Some(1);

    fn to_snapshot(&self) -> Vec<u8> {
        snapshot_json(&LinkTokensV1 {
            user: self.user,
            purpose: self.purpose.map(|p| p.name().to_owned()),
            live: self.live.as_ref().map(|live| LiveV1 {
                token: live.token,
                secret_sha256: hex::encode(live.secret_sha256),
                expires_at: live.expires_at.0,
            }),
            spent: self
                .spent
                .iter()
                .map(|s| (hex::encode(s.secret_sha256), s.used))
                .collect(),
            issued: self.issued.iter().map(|t| t.0).collect(),
        })
    }

    fn from_snapshot(version: u32, bytes: &[u8]) -> Option<Self> {
        if version != 1 {
            return None;
        }
        let v1: LinkTokensV1 = serde_json::from_slice(bytes).ok()?;
        Some(LinkTokens {
            user: v1.user,
            purpose: match v1.purpose {
                Some(name) => Some(LinkPurpose::from_name(&name)?),
                None => None,
            },
            live: match v1.live {
                Some(live) => Some(Live {
                    token: live.token,
                    secret_sha256: hash_from_hex(&live.secret_sha256)?,
                    expires_at: Timestamp(live.expires_at),
                }),
                None => None,
            },
            spent: v1
                .spent
                .into_iter()
                .map(|(hash, used)| {
                    Some(Spent {
                        secret_sha256: hash_from_hex(&hash)?,
                        used,
                    })
                })
                .collect::<Option<_>>()?,
            issued: v1.issued.into_iter().map(Timestamp).collect(),
        })
    }
}

mod dto {
    use super::*;

    #[derive(Serialize, Deserialize)]
    pub struct Issued {
        pub token: Uuid,
        pub user: Uuid,
        pub purpose: String,
        pub secret_sha256: String,
        pub expires_at: i64,
        pub at: i64,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Used {
        pub token: Uuid,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Revoked {
        pub token: Uuid,
        pub because: String,
    }
}

impl EventSchema for LinkTokenEvent {
    fn to_stored(&self) -> StoredForm {
        match self {
            LinkTokenEvent::Issued {
                token,
                user,
                purpose,
                secret_sha256,
                expires_at,
                at,
            } => stored(
                "LinkTokenIssued",
                1,
                &dto::Issued {
                    token: *token,
                    user: *user,
                    purpose: purpose.name().to_owned(),
                    secret_sha256: hex::encode(secret_sha256),
                    expires_at: expires_at.0,
                    at: at.0,
                },
            ),
            LinkTokenEvent::Used { token } => {
                stored("LinkTokenUsed", 1, &dto::Used { token: *token })
            }
            LinkTokenEvent::Revoked { token, because } => stored(
                "LinkTokenRevoked",
                1,
                &dto::Revoked {
                    token: *token,
                    because: because.name().to_owned(),
                },
            ),
        }
    }

    fn from_stored(form: &StoredForm) -> Result<Self, SchemaError> {
        let name = form.event_type.as_str();
        let version = form.schema_version.get();
        let malformed = || SchemaError::Malformed {
            event_type: name.to_owned(),
            version,
        };
        match (name, version) {
            ("LinkTokenIssued", 1) => {
                let d: dto::Issued = read(form)?;
                Ok(LinkTokenEvent::Issued {
                    token: d.token,
                    user: d.user,
                    purpose: LinkPurpose::from_name(&d.purpose).ok_or_else(malformed)?,
                    secret_sha256: hash_from_hex(&d.secret_sha256).ok_or_else(malformed)?,
                    expires_at: Timestamp(d.expires_at),
                    at: Timestamp(d.at),
                })
            }
            ("LinkTokenUsed", 1) => Ok(LinkTokenEvent::Used {
                token: read::<dto::Used>(form)?.token,
            }),
            ("LinkTokenRevoked", 1) => {
                let d: dto::Revoked = read(form)?;
                Ok(LinkTokenEvent::Revoked {
                    token: d.token,
                    because: RevokedBecause::from_name(&d.because).ok_or_else(malformed)?,
                })
            }
            ("LinkTokenIssued" | "LinkTokenUsed" | "LinkTokenRevoked", version) => {
                Err(SchemaError::UnknownVersion {
                    event_type: name.to_owned(),
                    version,
                })
            }
            (other, _) => Err(SchemaError::UnknownType(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::given;

    const USER: Uuid = Uuid::from_u128(7);

    fn issued(token: u128, secret: u8, expires_at: i64) -> LinkTokenEvent {
        LinkTokenEvent::Issued {
            token: Uuid::from_u128(token),
            user: USER,
            purpose: LinkPurpose::Reset,
            secret_sha256: [secret; 32],
            expires_at: Timestamp(expires_at),
            at: Timestamp(expires_at - 100),
        }
    }

    fn use_(secret: u8, at: i64) -> LinkTokenCommand {
        LinkTokenCommand::Use {
            purpose: LinkPurpose::Reset,
            secret_sha256: [secret; 32],
            at: Timestamp(at),
        }
    }

    #[test]
    fn a_live_token_is_used_once_and_then_answers_used() {
        given::<LinkTokens>(&[issued(1, 1, 100)])
            .when(&use_(1, 50))
            .then(&[LinkTokenEvent::Used {
                token: Uuid::from_u128(1),
            }]);
        let used = [
            issued(1, 1, 100),
            LinkTokenEvent::Used {
                token: Uuid::from_u128(1),
            },
        ];
        given::<LinkTokens>(&used)
            .when(&use_(1, 51))
            .then_error(LinkTokenError::Used);
    }

    #[test]
    fn an_expired_wrong_or_foreign_purpose_token_is_refused() {
        given::<LinkTokens>(&[issued(1, 1, 100)])
            .when(&use_(1, 100))
            .then_error(LinkTokenError::Expired);
        given::<LinkTokens>(&[issued(1, 1, 100)])
            .when(&use_(2, 50))
            .then_error(LinkTokenError::Invalid);
        given::<LinkTokens>(&[])
            .when(&use_(1, 50))
            .then_error(LinkTokenError::Invalid);
        given::<LinkTokens>(&[issued(1, 1, 100)])
            .when(&LinkTokenCommand::Use {
                purpose: LinkPurpose::Invitation,
                secret_sha256: [1; 32],
                at: Timestamp(50),
            })
            .then_error(LinkTokenError::Invalid);
    }

    #[test]
    fn issuing_again_revokes_the_live_token() {
        let issue = LinkTokenCommand::Issue {
            token: Uuid::from_u128(2),
            user: USER,
            purpose: LinkPurpose::Reset,
            secret_sha256: [2; 32],
            expires_at: Timestamp(200),
            at: Timestamp(100),
        };
        given::<LinkTokens>(&[issued(1, 1, 100)])
            .when(&issue)
            .then(&[
                LinkTokenEvent::Revoked {
                    token: Uuid::from_u128(1),
                    because: RevokedBecause::Replaced,
                },
                issued(2, 2, 200),
            ]);
        let replaced = [
            issued(1, 1, 100),
            LinkTokenEvent::Revoked {
                token: Uuid::from_u128(1),
                because: RevokedBecause::Replaced,
            },
            issued(2, 2, 200),
        ];
        given::<LinkTokens>(&replaced)
            .when(&use_(1, 50))
            .then_error(LinkTokenError::Revoked);
        given::<LinkTokens>(&replaced)
            .when(&use_(2, 50))
            .then(&[LinkTokenEvent::Used {
                token: Uuid::from_u128(2),
            }]);
        let other_user = LinkTokenCommand::Issue {
            token: Uuid::from_u128(3),
            user: Uuid::from_u128(8),
            purpose: LinkPurpose::Reset,
            secret_sha256: [3; 32],
            expires_at: Timestamp(200),
            at: Timestamp(100),
        };
        given::<LinkTokens>(&replaced)
            .when(&other_user)
            .then_error(LinkTokenError::Invalid);
    }

    #[test]
    fn revoking_ends_the_live_token_only() {
        let revoke = LinkTokenCommand::Revoke {
            because: RevokedBecause::Obsolete,
        };
        given::<LinkTokens>(&[issued(1, 1, 100)])
            .when(&revoke)
            .then(&[LinkTokenEvent::Revoked {
                token: Uuid::from_u128(1),
                because: RevokedBecause::Obsolete,
            }]);
        given::<LinkTokens>(&[]).when(&revoke).then(&[]);
    }

    #[test]
    fn events_and_snapshots_round_trip() {
        let history = [
            issued(1, 1, 100),
            LinkTokenEvent::Used {
                token: Uuid::from_u128(1),
            },
            issued(2, 2, 200),
            LinkTokenEvent::Revoked {
                token: Uuid::from_u128(2),
                because: RevokedBecause::Obsolete,
            },
            issued(3, 3, 300),
        ];
        for event in &history {
            assert_eq!(
                LinkTokenEvent::from_stored(&event.to_stored()).as_ref(),
                Ok(event)
            );
        }
        let state = LinkTokens::fold(&history);
        let restored = LinkTokens::from_snapshot(1, &state.to_snapshot()).unwrap();
        assert_eq!(restored, state);
        assert_eq!(restored.decide(&use_(1, 5)), Err(LinkTokenError::Used));
        assert_eq!(restored.decide(&use_(2, 5)), Err(LinkTokenError::Revoked));
        assert!(LinkTokens::from_snapshot(2, &state.to_snapshot()).is_none());
    }

    #[test]
    fn at_most_five_links_an_hour_go_to_a_user() {
        let issue = |n: u128, at: i64| LinkTokenCommand::Issue {
            token: Uuid::from_u128(n),
            user: USER,
            purpose: LinkPurpose::Reset,
            secret_sha256: [n as u8; 32],
            expires_at: Timestamp(at + 100),
            at: Timestamp(at),
        };
        let mut state = LinkTokens::default();
        for n in 0..MAX_ISSUED_PER_HOUR as u128 {
            for event in state.decide(&issue(n, n as i64 * 1000)).unwrap() {
                state = state.apply(&event);
            }
        }
        assert_eq!(state.decide(&issue(9, 5_000)), Err(LinkTokenError::TooMany));
        // An hour after the first, one more may go.
        assert!(state.decide(&issue(9, HOUR_MICROS)).is_ok());
        let restored = LinkTokens::from_snapshot(1, &state.to_snapshot()).unwrap();
        assert_eq!(
            restored.decide(&issue(9, 5_000)),
            Err(LinkTokenError::TooMany)
        );
    }

    #[test]
    fn only_the_last_spent_tokens_are_remembered() {
        let mut history = Vec::new();
        for n in 0..=SPENT_KEPT as u8 + 1 {
            history.push(issued(u128::from(n) + 1, n, 100));
        }
        let state = LinkTokens::fold(&history);
        assert_eq!(state.decide(&use_(0, 5)), Err(LinkTokenError::Invalid));
        assert_eq!(state.decide(&use_(2, 5)), Err(LinkTokenError::Revoked));
    }
}
