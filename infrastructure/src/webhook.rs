//! The webhook adapter of the mail port (ADR 0013): each rendered message
//! is POSTed as JSON to the operator's own mailer, signed with
//! HMAC-SHA256 under a shared secret, so the mailer knows it came from
//! here and unchanged. Delivery is at least once: the mailer drops a
//! second delivery by the message's id.
//!
//! The request: `Content-Type: application/json`,
//! `Custodia-Message-Id: <id>`, and
//! `Custodia-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`
//! (the time is signed too, so a captured request cannot be replayed
//! later than the mailer allows). A 2xx answer means sent; 408, 429 and
//! 5xx, a timeout or a refused connection are tried again; any other
//! answer is final.

use std::time::Duration;

use async_trait::async_trait;
use custodia_application::mail::{MailError, Mailer, OutgoingMail};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::config::{secret, ConfigError};

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET: usize = 32;

pub struct WebhookMailer {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: Zeroizing<String>,
}

impl WebhookMailer {
    /// A mailer POSTing to `url`, signing with the secret in
    /// `CUSTODIA_MAIL_WEBHOOK_SECRET` (or `_FILE`). In production the URL
    /// is HTTPS unless it is on this host.
    pub fn connect(url: &str, production: bool) -> Result<WebhookMailer, ConfigError> {
        check_url(url, production)?;
        let secret = secret("CUSTODIA_MAIL_WEBHOOK_SECRET")?.ok_or_else(|| {
            ConfigError::Invalid("CUSTODIA_MAIL_WEBHOOK_SECRET (or _FILE) is required".to_owned())
        })?;
        WebhookMailer::with_secret(url, secret, production)
    }

    /// A mailer POSTing to `url`, signing with `secret`.
    pub fn with_secret(
        url: &str,
        secret: Zeroizing<String>,
        production: bool,
    ) -> Result<WebhookMailer, ConfigError> {
        let url = check_url(url, production)?;
        if secret.len() < MIN_SECRET {
            return Err(ConfigError::Invalid(format!(
                "CUSTODIA_MAIL_WEBHOOK_SECRET must be at least {MIN_SECRET} bytes"
            )));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            // A redirect would send the message somewhere unsigned-for.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| ConfigError::Invalid("cannot build the webhook client".to_owned()))?;
        Ok(WebhookMailer {
            client,
            url,
            secret,
        })
    }
}

/// The URL, if it may carry messages: no credentials, and HTTPS in
/// production unless it is on this host.
fn check_url(url: &str, production: bool) -> Result<reqwest::Url, ConfigError> {
    let invalid = |m: &str| ConfigError::Invalid(format!("CUSTODIA_MAIL_WEBHOOK_URL: {m}"));
    let url = reqwest::Url::parse(url).map_err(|_| invalid("not a URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("holds credentials; the signature authenticates"));
    }
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback || !production => {}
        "http" => return Err(invalid("sends in plaintext to another host; use https://")),
        _ => return Err(invalid("must be http(s)")),
    }
    Ok(url)
}

/// The `Custodia-Signature` header's value for `body` sent at `t` (unix
/// seconds) under `secret`.
pub fn signature(secret: &[u8], t: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[async_trait]
impl Mailer for WebhookMailer {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError> {
        let body = Zeroizing::new(
            serde_json::to_vec(&serde_json::json!({
                "id": mail.id,
                "tenant": mail.tenant.to_string(),
                "kind": mail.kind.name(),
                "to": mail.to,
                "subject": mail.subject,
                "text": mail.text,
                "html": mail.html,
            }))
            .map_err(|_| MailError::Permanent("encoding".to_owned()))?,
        );
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let answer = self
            .client
            .post(self.url.clone())
            .header("Content-Type", "application/json")
            .header("Custodia-Message-Id", mail.id.to_string())
            .header(
                "Custodia-Signature",
                signature(self.secret.as_bytes(), t, &body),
            )
            .body(body.to_vec())
            .send()
            .await;
        match answer {
            Ok(response) => {
                let status = response.status();
                let code = status.as_u16();
                if status.is_success() {
                    Ok(())
                } else if code == 408 || code == 429 || status.is_server_error() {
                    Err(MailError::Transient(format!("webhook {code}")))
                } else {
                    Err(MailError::Permanent(format!("webhook {code}")))
                }
            }
            Err(error) if error.is_timeout() => Err(MailError::Transient("timeout".to_owned())),
            Err(error) if error.is_connect() => Err(MailError::Transient("connection".to_owned())),
            Err(_) => Err(MailError::Transient("webhook".to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_time_and_the_body() {
        // Worked by hand with Python: hmac.new(b"k"*32, b"1700000000.{}", sha256).hexdigest()
        let signed = signature(&[b'k'; 32], 1_700_000_000, b"{}");
        assert_eq!(
            signed,
            "t=1700000000,v1=0b3b35525c10b3757ffa78df69037021fc3168d8390a51a4fcb4a8d56a25b557"
        );
    }

    #[test]
    fn plaintext_to_another_host_and_credentials_are_refused_in_production() {
        for (url, production, ok) in [
            ("https://mailer.example/hook", true, true),
            ("http://127.0.0.1:9000/hook", true, true),
            ("http://mailer.example/hook", true, false),
            ("http://mailer.example/hook", false, true),
            ("https://user:pw@mailer.example/hook", true, false),
            ("ftp://mailer.example/hook", false, false),
            ("not a url", false, false),
        ] {
            let refused = WebhookMailer::connect(url, production).err();
            // Everything but the URL's checks needs the secret, absent here.
            let url_refused = matches!(&refused, Some(ConfigError::Invalid(m)) if m.starts_with("CUSTODIA_MAIL_WEBHOOK_URL"));
            assert_eq!(!url_refused, ok, "{url} {production}: {refused:?}");
        }
    }
}
