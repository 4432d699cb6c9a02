//! TOTP (RFC 6238) with `totp-rs`: HMAC-SHA-1, 6 digits, 30-second steps —
//! what every authenticator app speaks — and one step of drift allowed.

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::OsRng;
use custodia_application::OneTimeCodes;
use custodia_domain::Timestamp;
use totp_rs::{Algorithm, TOTP};

const STEP_SECONDS: u64 = 30;
const DIGITS: usize = 6;

#[derive(Debug, Default, Clone, Copy)]
pub struct Totp;

fn totp(algorithm: Algorithm, digits: usize, secret: &[u8]) -> Option<TOTP> {
    // Skew 0: each step is checked on its own, so the matching step is known.
    TOTP::new(algorithm, digits, 0, STEP_SECONDS, secret.to_vec()).ok()
}

/// Percent-encodes a URI path or query component (RFC 3986 unreserved kept).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl OneTimeCodes for Totp {
    fn new_secret(&self) -> Vec<u8> {
        let mut secret = vec![0u8; 20];
        OsRng.fill_bytes(&mut secret);
        secret
    }

    fn provisioning_uri(&self, secret: &[u8], issuer: &str, account: &str) -> String {
        let base32 = totp(Algorithm::SHA1, DIGITS, secret)
            .map(|t| t.get_secret_base32())
            .unwrap_or_default();
        format!(
            "otpauth://totp/{}:{}?secret={base32}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
            encode(issuer),
            encode(account),
            encode(issuer)
        )
    }

    fn matching_step(&self, secret: &[u8], code: &str, at: Timestamp) -> Option<u64> {
        let totp = totp(Algorithm::SHA1, DIGITS, secret)?;
        let now = u64::try_from(at.0 / 1_000_000).ok()?;
        let step = now / STEP_SECONDS;
        [step.saturating_sub(1), step, step + 1]
            .into_iter()
            .find(|s| totp.check(code, s * STEP_SECONDS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B: 8-digit codes for SHA-1, SHA-256 and SHA-512.
    #[test]
    fn rfc_6238_appendix_b_vectors() {
        let sha1 = b"12345678901234567890".to_vec();
        let sha256 = b"12345678901234567890123456789012".to_vec();
        let sha512 = b"1234567890123456789012345678901234567890123456789012345678901234".to_vec();
        let vectors: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (time, code1, code256, code512) in vectors {
            assert_eq!(
                totp(Algorithm::SHA1, 8, &sha1).unwrap().generate(time),
                code1,
                "SHA-1 at {time}"
            );
            assert_eq!(
                totp(Algorithm::SHA256, 8, &sha256).unwrap().generate(time),
                code256,
                "SHA-256 at {time}"
            );
            assert_eq!(
                totp(Algorithm::SHA512, 8, &sha512).unwrap().generate(time),
                code512,
                "SHA-512 at {time}"
            );
        }
    }

    #[test]
    fn codes_match_their_step_with_one_step_of_drift() {
        let secret = Totp.new_secret();
        let generator = totp(Algorithm::SHA1, 6, &secret).unwrap();
        let at = Timestamp(1_767_225_615 * 1_000_000); // 15 s into a step
        let step = 1_767_225_615 / 30;
        for (offset, expected) in [
            (-1i64, Some(step - 1)),
            (0, Some(step)),
            (1, Some(step + 1)),
            (2, None),
            (-2, None),
        ] {
            let code = generator.generate(((step as i64 + offset) as u64) * 30);
            assert_eq!(
                Totp.matching_step(&secret, &code, at),
                expected,
                "offset {offset}"
            );
        }
        assert_eq!(Totp.matching_step(&secret, "not a code", at), None);
    }

    #[test]
    fn provisioning_uri_is_well_formed() {
        let uri = Totp.provisioning_uri(&[0u8; 20], "Acme Corp", "ada@example.org");
        assert_eq!(
            uri,
            "otpauth://totp/Acme%20Corp:ada%40example.org?secret=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA&issuer=Acme%20Corp&algorithm=SHA1&digits=6&period=30"
        );
    }
}
