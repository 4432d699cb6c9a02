//! The SMTP adapter of the mail port (ADR 0013), on `lettre`: STARTTLS
//! (`smtp://host:587?tls=required`) or implicit TLS (`smtps://host:465`),
//! credentials from `CUSTODIA_SMTP_USERNAME` and
//! `CUSTODIA_SMTP_PASSWORD` (or `_FILE`), never from the URL.

use async_trait::async_trait;
use custodia_application::mail::{MailError, Mailer, OutgoingMail};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{secret, ConfigError};

pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

/// The SMTP settings an operator gives.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// `smtp://host:port?tls=required` (STARTTLS), `smtps://host:port`
    /// (TLS), or `smtp://host:port` (plaintext: loopback only in
    /// production).
    pub url: String,
    /// The sender, as `Name <address>` or a bare address.
    pub from: String,
}

impl SmtpMailer {
    /// A mailer for `settings`, with credentials from the environment.
    pub fn connect(settings: &SmtpSettings, production: bool) -> Result<SmtpMailer, ConfigError> {
        let invalid =
            |message: String| ConfigError::Invalid(format!("CUSTODIA_SMTP_URL: {message}"));
        let parsed = url_parts(&settings.url).ok_or_else(|| invalid("not a URL".to_owned()))?;
        if parsed.has_password {
            return Err(invalid(
                "holds a password; give it in CUSTODIA_SMTP_PASSWORD_FILE".to_owned(),
            ));
        }
        let plaintext = parsed.scheme == "smtp" && !parsed.tls_required;
        if production && plaintext && !parsed.loopback {
            return Err(invalid(
                "sends in plaintext to another host; use ?tls=required or smtps://".to_owned(),
            ));
        }
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&settings.url)
            .map_err(|_| invalid("not an SMTP URL (smtp:// or smtps://)".to_owned()))?
            .timeout(Some(std::time::Duration::from_secs(20)));
        let username = std::env::var("CUSTODIA_SMTP_USERNAME").ok();
        let password = secret("CUSTODIA_SMTP_PASSWORD")?;
        match (username, password) {
            (Some(user), Some(password)) => {
                builder = builder.credentials(Credentials::new(user, password.to_string()));
            }
            (None, None) => {}
            _ => {
                return Err(ConfigError::Invalid(
                    "CUSTODIA_SMTP_USERNAME and CUSTODIA_SMTP_PASSWORD go together".to_owned(),
                ))
            }
        }
        let from = settings
            .from
            .parse()
            .map_err(|_| ConfigError::Invalid("CUSTODIA_MAIL_FROM is not an address".to_owned()))?;
        Ok(SmtpMailer {
            transport: builder.build(),
            from,
        })
    }
}

struct UrlParts {
    scheme: String,
    has_password: bool,
    tls_required: bool,
    loopback: bool,
}

/// The little of the URL the checks need (lettre parses it for real).
fn url_parts(url: &str) -> Option<UrlParts> {
    let (scheme, rest) = url.split_once("://")?;
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, q),
        None => (rest, ""),
    };
    let authority = authority.split('/').next().unwrap_or_default();
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let host = host
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(h, _)| h);
    Some(UrlParts {
        scheme: scheme.to_ascii_lowercase(),
        has_password: userinfo.is_some_and(|u| u.contains(':')),
        tls_required: query.split('&').any(|pair| pair == "tls=required"),
        loopback: matches!(host, "localhost" | "127.0.0.1" | "[::1]"),
    })
}

/// A short reason without personal data: the reply code, or the kind of
/// failure (a server's reply text may quote the address, so it is never
/// kept).
fn reason(error: &lettre::transport::smtp::Error) -> String {
    match error.status() {
        Some(code) => format!("smtp {code}"),
        None if error.is_timeout() => "timeout".to_owned(),
        None if error.is_tls() => "tls".to_owned(),
        None => "connection".to_owned(),
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError> {
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|_| MailError::Permanent("recipient address".to_owned()))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&mail.subject)
            .message_id(Some(format!("<{}@custodia>", mail.id)))
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(mail.text.clone()),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(mail.html.clone()),
                    ),
            )
            .map_err(|_| MailError::Permanent("message".to_owned()))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(error) if error.is_permanent() => Err(MailError::Permanent(reason(&error))),
            Err(error) => Err(MailError::Transient(reason(&error))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plaintext_to_another_host_and_passwords_in_the_url_are_refused() {
        let settings = |url: &str| SmtpSettings {
            url: url.to_owned(),
            from: "Custodia <no-reply@example.org>".to_owned(),
        };
        for (url, production, ok) in [
            ("smtp://127.0.0.1:2525", true, true),
            ("smtp://mail.example.org:25", false, true),
            ("smtp://mail.example.org:25", true, false),
            ("smtp://mail.example.org:587?tls=required", true, true),
            ("smtps://mail.example.org", true, true),
            ("smtps://user:secret@mail.example.org", false, false),
            ("mail.example.org", false, false),
            ("http://mail.example.org", false, false),
        ] {
            let result = SmtpMailer::connect(&settings(url), production);
            assert_eq!(result.is_ok(), ok, "{url} production={production}");
            if let Err(error) = result {
                assert!(!error.to_string().contains("secret"), "{error}");
            }
        }
    }
}
