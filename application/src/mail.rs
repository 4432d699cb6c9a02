//! The mail port (ADR 0013): how a rendered message leaves. Adapters: SMTP,
//! and the tenant's own mailer reading the outbox.

use async_trait::async_trait;
use custodia_domain::identity::message::MessageKind;
use custodia_domain::TenantId;
use uuid::Uuid;

/// A message ready to leave. `Debug` shows only ids and kind: the
/// recipient and the text are personal data.
pub struct OutgoingMail {
    /// The message's id: the `Message-ID`, so a receiver can drop a second
    /// delivery of the same message.
    pub id: Uuid,
    pub tenant: TenantId,
    pub kind: MessageKind,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl std::fmt::Debug for OutgoingMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingMail")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Why a message did not leave. The reason is short and holds no personal
/// data (an SMTP reply code, "connection refused"): it is recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    /// May pass: try again later.
    #[error("temporary failure: {0}")]
    Transient(String),
    /// Will not pass (the address was refused for good).
    #[error("permanent failure: {0}")]
    Permanent(String),
}

#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError>;
}
