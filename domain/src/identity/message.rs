//! A message to a person (ADR 0013): the outbox is the log. A message is
//! queued in the same append as the event that causes it, in a stream of
//! its own (so queuing never contends with other commands), and the
//! delivery worker records each attempt. Its recipient and link are sealed;
//! its text is rendered only when it is sent.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{read, stored, Aggregate, EventSchema, SchemaError, Snapshot, StoredForm};
use crate::event::Timestamp;
use crate::personal::SealedField;

/// What a message says, which picks its template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// An invitation with a link to choose a password.
    Invitation,
    /// A link that verifies an address.
    Verification,
    /// A password-reset link.
    PasswordReset,
    /// To the old address: the sign-in address is being changed (no link).
    AddressChangeNotice,
}

impl MessageKind {
    pub const ALL: [MessageKind; 4] = [
        Self::Invitation,
        Self::Verification,
        Self::PasswordReset,
        Self::AddressChangeNotice,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Invitation => "invitation",
            Self::Verification => "verification",
            Self::PasswordReset => "password_reset",
            Self::AddressChangeNotice => "address_change_notice",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// How many times a message is tried before it is abandoned.
pub const MAX_ATTEMPTS: u32 = 12;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageCommand {
    Queue {
        kind: MessageKind,
        /// The person it is about (their key seals the recipient).
        user: Uuid,
        recipient: SealedField,
        /// Sealed under the message's own key, destroyed once it is sent.
        link: Option<SealedField>,
        at: Timestamp,
    },
    /// One delivery attempt's result.
    Record { attempt: u32, result: Attempt },
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Sent {
        at: Timestamp,
    },
    /// A failure that may pass: try again at `retry_at` (abandoned instead
    /// after [`MAX_ATTEMPTS`]).
    Failed {
        at: Timestamp,
        retry_at: Timestamp,
        reason: String,
    },
    /// A failure that will not pass (the recipient was erased, the server
    /// refused the address for good).
    Refused {
        at: Timestamp,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageEvent {
    Queued {
        kind: MessageKind,
        user: Uuid,
        recipient: SealedField,
        link: Option<SealedField>,
        at: Timestamp,
    },
    Sent {
        attempt: u32,
        at: Timestamp,
    },
    Failed {
        attempt: u32,
        at: Timestamp,
        retry_at: Timestamp,
        /// A short, data-free reason (an SMTP reply code, "timeout").
        reason: String,
    },
    Abandoned {
        attempt: u32,
        at: Timestamp,
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("the message already exists")]
    AlreadyExists,
    #[error("no such message")]
    NotFound,
    #[error("the message was delivered or abandoned already")]
    Settled,
    #[error("another attempt was recorded meanwhile")]
    StaleAttempt,
}

/// Where a message stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Message {
    #[default]
    Absent,
    Pending {
        kind: MessageKind,
        user: Uuid,
        /// Attempts made so far.
        attempts: u32,
        /// When the next attempt is due.
        due: Timestamp,
        recipient: SealedField,
        link: Option<SealedField>,
    },
    Sent {
        user: Uuid,
        attempts: u32,
    },
    Abandoned {
        user: Uuid,
        attempts: u32,
    },
}

/// Not snapshotted: a message has at most [`MAX_ATTEMPTS`] + 1 events.
impl Snapshot for Message {}

impl Aggregate for Message {
    type Command = MessageCommand;
    type Event = MessageEvent;
    type Error = MessageError;

    fn decide(&self, command: &MessageCommand) -> Result<Vec<MessageEvent>, MessageError> {
        match (self, command) {
            (
                Message::Absent,
                MessageCommand::Queue {
                    kind,
                    user,
                    recipient,
                    link,
                    at,
                },
            ) => Ok(vec![MessageEvent::Queued {
                kind: *kind,
                user: *user,
                recipient: recipient.clone(),
                link: link.clone(),
                at: *at,
            }]),
            (_, MessageCommand::Queue { .. }) => Err(MessageError::AlreadyExists),
            (Message::Absent, _) => Err(MessageError::NotFound),
            (Message::Sent { .. } | Message::Abandoned { .. }, _) => Err(MessageError::Settled),
            (Message::Pending { attempts, .. }, MessageCommand::Record { attempt, result }) => {
                if *attempt != attempts + 1 {
                    return Err(MessageError::StaleAttempt);
                }
                Ok(vec![match result {
                    Attempt::Sent { at } => MessageEvent::Sent {
                        attempt: *attempt,
                        at: *at,
                    },
                    Attempt::Failed {
                        at,
                        retry_at,
                        reason,
                    } if *attempt < MAX_ATTEMPTS => MessageEvent::Failed {
                        attempt: *attempt,
                        at: *at,
                        retry_at: *retry_at,
                        reason: reason.clone(),
                    },
                    Attempt::Failed { at, reason, .. } | Attempt::Refused { at, reason } => {
                        MessageEvent::Abandoned {
                            attempt: *attempt,
                            at: *at,
                            reason: reason.clone(),
                        }
                    }
                }])
            }
        }
    }

    fn apply(self, event: &MessageEvent) -> Message {
        match (self, event) {
            (
                _,
                MessageEvent::Queued {
                    kind,
                    user,
                    recipient,
                    link,
                    at,
                },
            ) => Message::Pending {
                kind: *kind,
                user: *user,
                attempts: 0,
                due: *at,
                recipient: recipient.clone(),
                link: link.clone(),
            },
            (Message::Pending { user, .. }, MessageEvent::Sent { attempt, .. }) => Message::Sent {
                user,
                attempts: *attempt,
            },
            (Message::Pending { user, .. }, MessageEvent::Abandoned { attempt, .. }) => {
                Message::Abandoned {
                    user,
                    attempts: *attempt,
                }
            }
            (
                Message::Pending {
                    kind,
                    user,
                    recipient,
                    link,
                    ..
                },
                MessageEvent::Failed {
                    attempt, retry_at, ..
                },
            ) => Message::Pending {
                kind,
                user,
                attempts: *attempt,
                due: *retry_at,
                recipient,
                link,
            },
            (state, _) => state,
        }
    }
}

mod dto {
    use super::*;

    #[derive(Serialize, Deserialize)]
    pub struct Queued {
        pub kind: String,
        pub user: Uuid,
        pub recipient: SealedField,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub link: Option<SealedField>,
        pub at: i64,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Sent {
        pub attempt: u32,
        pub at: i64,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Failed {
        pub attempt: u32,
        pub at: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub retry_at: Option<i64>,
        pub reason: String,
    }
}

impl EventSchema for MessageEvent {
    fn to_stored(&self) -> StoredForm {
        match self {
            MessageEvent::Queued {
                kind,
                user,
                recipient,
                link,
                at,
            } => stored(
                "MessageQueued",
                1,
                &dto::Queued {
                    kind: kind.name().to_owned(),
                    user: *user,
                    recipient: recipient.clone(),
                    link: link.clone(),
                    at: at.0,
                },
            ),
            MessageEvent::Sent { attempt, at } => stored(
                "MessageSent",
                1,
                &dto::Sent {
                    attempt: *attempt,
                    at: at.0,
                },
            ),
            MessageEvent::Failed {
                attempt,
                at,
                retry_at,
                reason,
            } => stored(
                "MessageFailed",
                1,
                &dto::Failed {
                    attempt: *attempt,
                    at: at.0,
                    retry_at: Some(retry_at.0),
                    reason: reason.clone(),
                },
            ),
            MessageEvent::Abandoned {
                attempt,
                at,
                reason,
            } => stored(
                "MessageAbandoned",
                1,
                &dto::Failed {
                    attempt: *attempt,
                    at: at.0,
                    retry_at: None,
                    reason: reason.clone(),
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
            ("MessageQueued", 1) => {
                let d: dto::Queued = read(form)?;
                Ok(MessageEvent::Queued {
                    kind: MessageKind::parse(&d.kind).ok_or_else(malformed)?,
                    user: d.user,
                    recipient: d.recipient,
                    link: d.link,
                    at: Timestamp(d.at),
                })
            }
            ("MessageSent", 1) => {
                let d: dto::Sent = read(form)?;
                Ok(MessageEvent::Sent {
                    attempt: d.attempt,
                    at: Timestamp(d.at),
                })
            }
            ("MessageFailed", 1) => {
                let d: dto::Failed = read(form)?;
                Ok(MessageEvent::Failed {
                    attempt: d.attempt,
                    at: Timestamp(d.at),
                    retry_at: Timestamp(d.retry_at.ok_or_else(malformed)?),
                    reason: d.reason,
                })
            }
            ("MessageAbandoned", 1) => {
                let d: dto::Failed = read(form)?;
                Ok(MessageEvent::Abandoned {
                    attempt: d.attempt,
                    at: Timestamp(d.at),
                    reason: d.reason,
                })
            }
            ("MessageQueued" | "MessageSent" | "MessageFailed" | "MessageAbandoned", version) => {
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

    fn sealed() -> SealedField {
        SealedField {
            subject: Uuid::from_u128(1),
            nonce: vec![0; 12],
            ciphertext: vec![1; 20],
            access_day: None,
        }
    }

    fn queued() -> MessageEvent {
        MessageEvent::Queued {
            kind: MessageKind::PasswordReset,
            user: Uuid::from_u128(1),
            recipient: sealed(),
            link: Some(sealed()),
            at: Timestamp(10),
        }
    }

    fn failed(attempt: u32) -> Attempt {
        Attempt::Failed {
            at: Timestamp(20),
            retry_at: Timestamp(30),
            reason: format!("attempt {attempt}"),
        }
    }

    #[test]
    fn attempts_are_recorded_in_order_and_a_settled_message_stays_settled() {
        let record = |attempt, result| MessageCommand::Record { attempt, result };
        given::<Message>(&[queued()])
            .when(&record(2, failed(2)))
            .then_error(MessageError::StaleAttempt);
        given::<Message>(&[queued()])
            .when(&record(1, failed(1)))
            .then(&[MessageEvent::Failed {
                attempt: 1,
                at: Timestamp(20),
                retry_at: Timestamp(30),
                reason: "attempt 1".into(),
            }]);
        let sent = [
            queued(),
            MessageEvent::Sent {
                attempt: 1,
                at: Timestamp(20),
            },
        ];
        given::<Message>(&sent)
            .when(&record(2, Attempt::Sent { at: Timestamp(40) }))
            .then_error(MessageError::Settled);
    }

    #[test]
    fn the_last_allowed_failure_abandons_the_message() {
        let mut history = vec![queued()];
        for attempt in 1..MAX_ATTEMPTS {
            history.push(MessageEvent::Failed {
                attempt,
                at: Timestamp(20),
                retry_at: Timestamp(30),
                reason: "busy".into(),
            });
        }
        given::<Message>(&history)
            .when(&MessageCommand::Record {
                attempt: MAX_ATTEMPTS,
                result: failed(MAX_ATTEMPTS),
            })
            .then(&[MessageEvent::Abandoned {
                attempt: MAX_ATTEMPTS,
                at: Timestamp(20),
                reason: format!("attempt {MAX_ATTEMPTS}"),
            }]);
        let state = Message::fold(&history);
        assert!(
            matches!(state, Message::Pending { attempts, due: Timestamp(30), .. } if attempts == MAX_ATTEMPTS - 1)
        );
    }

    #[test]
    fn events_round_trip() {
        for event in [
            queued(),
            MessageEvent::Sent {
                attempt: 1,
                at: Timestamp(2),
            },
            MessageEvent::Failed {
                attempt: 1,
                at: Timestamp(2),
                retry_at: Timestamp(3),
                reason: "421".into(),
            },
            MessageEvent::Abandoned {
                attempt: 12,
                at: Timestamp(2),
                reason: "550".into(),
            },
        ] {
            assert_eq!(MessageEvent::from_stored(&event.to_stored()), Ok(event));
        }
    }
}
