//! Access tokens: JWTs signed with Ed25519 (EdDSA) by `jsonwebtoken`.
//!
//! The signer is a key ring: it signs with the newest key and verifies with
//! whichever published key a token names (`kid`), so keys can rotate without
//! cutting live tokens off. Keys are kept in the database, sealed under the
//! master key (`KeyVault::signing_keys`), so every instance shares them.

use std::collections::HashMap;
use std::sync::Mutex;

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::OsRng;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use custodia_application::{AccessClaims, TokenError, TokenSigner};
use custodia_domain::Timestamp;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// One Ed25519 key pair as stored: its id, the private key (PKCS#8 DER) and
/// the public key (base64url, the JWK `x`).
pub struct SigningKeyMaterial {
    pub kid: String,
    pub private_der: Zeroizing<Vec<u8>>,
    pub public_x: String,
}

impl SigningKeyMaterial {
    pub fn generate() -> Self {
        let key = SigningKey::generate(&mut OsRng);
        let der = key
            .to_pkcs8_der()
            .expect("an Ed25519 key encodes as PKCS#8");
        Self {
            kid: uuid::Uuid::now_v7().simple().to_string(),
            private_der: Zeroizing::new(der.as_bytes().to_vec()),
            public_x: B64URL.encode(key.verifying_key().to_bytes()),
        }
    }

    /// Checks that the private key is an Ed25519 key whose public half is
    /// `public_x`.
    fn check(&self) -> bool {
        SigningKey::from_pkcs8_der(&self.private_der)
            .is_ok_and(|key| B64URL.encode(key.verifying_key().to_bytes()) == self.public_x)
    }
}

struct PublicKey {
    kid: String,
    x: String,
    decoding: DecodingKey,
}

pub struct Ed25519Signer {
    current_kid: String,
    encoding: EncodingKey,
    published: Vec<PublicKey>,
    issuer: String,
    audience: String,
    /// Claims of tokens whose signature and claims were checked, by the
    /// SHA-256 of the token's bytes: a client presents the same token on
    /// every request, and checking an Ed25519 signature costs more than
    /// the rest of a small query. Time is still checked on every use; the
    /// published keys never change for the life of the signer.
    verified: Mutex<HashMap<[u8; 32], AccessClaims>>,
}

/// Verified tokens kept at most (then the cache starts over).
const VERIFIED_KEPT: usize = 65_536;

impl std::fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ed25519Signer")
            .field("current_kid", &self.current_kid)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Ed25519Signer {
    /// A signer with one fresh key (tests, tools).
    pub fn generate(issuer: &str, audience: &str) -> Self {
        Self::from_keys(&[SigningKeyMaterial::generate()], issuer, audience)
            .expect("a fresh key is valid")
    }

    /// A signer over `keys`, newest first: it signs with the first and
    /// verifies with any.
    pub fn from_keys(
        keys: &[SigningKeyMaterial],
        issuer: &str,
        audience: &str,
    ) -> Result<Self, TokenError> {
        let current = keys.first().ok_or(TokenError::Invalid)?;
        if !keys.iter().all(SigningKeyMaterial::check) {
            return Err(TokenError::Invalid);
        }
        let published = keys
            .iter()
            .map(|k| {
                Ok(PublicKey {
                    kid: k.kid.clone(),
                    x: k.public_x.clone(),
                    decoding: DecodingKey::from_ed_components(&k.public_x)
                        .map_err(|_| TokenError::Invalid)?,
                })
            })
            .collect::<Result<_, TokenError>>()?;
        Ok(Self {
            current_kid: current.kid.clone(),
            encoding: EncodingKey::from_ed_der(&current.private_der),
            published,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            verified: Mutex::default(),
        })
    }

    /// The token's signature and claims checked (time aside), as
    /// [`TokenSigner::verify`] does the first time it sees a token.
    fn check_signature(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let kid = decode_header(token)
            .map_err(|_| TokenError::Invalid)?
            .kid
            .ok_or(TokenError::Invalid)?;
        let key = self
            .published
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(TokenError::Invalid)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        // Time is checked by the caller, against its clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        Ok(decode::<AccessClaims>(token, &key.decoding, &validation)
            .map_err(|_| TokenError::Invalid)?
            .claims)
    }

    /// Every published public key, as a JWK Set.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self
            .published
            .iter()
            .map(|k| serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": k.kid, "x": k.x }))
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

impl TokenSigner for Ed25519Signer {
    fn issuer(&self) -> &str {
        &self.issuer
    }

    fn audience(&self) -> &str {
        &self.audience
    }

    fn sign(&self, claims: &AccessClaims) -> Result<String, TokenError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.current_kid.clone());
        encode(&header, claims, &self.encoding).map_err(|_| TokenError::Invalid)
    }

    fn verify(&self, token: &str, now: Timestamp) -> Result<AccessClaims, TokenError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let known = self
            .verified
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&digest)
            .cloned();
        let claims = match known {
            Some(claims) => claims,
            None => {
                let claims = self.check_signature(token)?;
                let mut verified = self
                    .verified
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if verified.len() >= VERIFIED_KEPT {
                    verified.clear();
                }
                verified.insert(digest, claims.clone());
                claims
            }
        };
        let seconds = now.0.div_euclid(1_000_000);
        if !(claims.nbf <= seconds && seconds < claims.exp) {
            return Err(TokenError::OutOfTime);
        }
        Ok(claims)
    }

    fn refresh_secret(&self) -> [u8; 32] {
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        secret
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(iat: i64) -> AccessClaims {
        AccessClaims {
            iss: "custodia".into(),
            aud: "custodia-api".into(),
            sub: "u".into(),
            tid: "t".into(),
            sid: "s".into(),
            jti: "j".into(),
            roles: vec!["owner".into()],
            iat,
            nbf: iat,
            exp: iat + 900,
        }
    }

    /// `token` with its payload replaced by one that adds the admin role
    /// (its signature kept).
    fn with_admin_role(token: &str) -> String {
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = B64URL.encode(
            serde_json::to_vec(&AccessClaims {
                roles: vec!["owner".into(), "admin".into()],
                ..claims(1_000)
            })
            .unwrap(),
        );
        parts.join(".")
    }

    #[test]
    fn signed_tokens_verify_within_their_lifetime_only() {
        let signer = Ed25519Signer::generate("custodia", "custodia-api");
        let token = signer.sign(&claims(1_000)).unwrap();
        assert_eq!(
            signer.verify(&token, Timestamp(1_000 * 1_000_000)).unwrap(),
            claims(1_000)
        );
        assert_eq!(
            signer.verify(&token, Timestamp(1_900 * 1_000_000)),
            Err(TokenError::OutOfTime)
        );
        assert_eq!(
            signer.verify(&token, Timestamp(999 * 1_000_000)),
            Err(TokenError::OutOfTime)
        );
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!((header.alg, header.kid.is_some()), (Algorithm::EdDSA, true));
    }

    #[test]
    fn other_keys_audiences_and_tampering_are_refused() {
        let signer = Ed25519Signer::generate("custodia", "custodia-api");
        let token = signer.sign(&claims(1_000)).unwrap();
        let now = Timestamp(1_000 * 1_000_000);
        assert_eq!(
            Ed25519Signer::generate("custodia", "custodia-api").verify(&token, now),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            Ed25519Signer::generate("custodia", "elsewhere")
                .verify(&signer.sign(&claims(1_000)).unwrap(), now),
            Err(TokenError::Invalid)
        );
        let raised = with_admin_role(&token);
        assert_eq!(signer.verify(&raised, now), Err(TokenError::Invalid));
        // "alg: none" is not accepted.
        let payload = raised.split('.').nth(1).unwrap();
        let none = format!(
            "{}.{payload}.",
            B64URL.encode(br#"{"alg":"none","typ":"JWT"}"#)
        );
        assert_eq!(signer.verify(&none, now), Err(TokenError::Invalid));
    }

    #[test]
    fn a_verified_token_is_remembered_by_its_exact_bytes_only() {
        let signer = Ed25519Signer::generate("custodia", "custodia-api");
        let token = signer.sign(&claims(1_000)).unwrap();
        let now = Timestamp(1_000 * 1_000_000);
        assert_eq!(signer.verify(&token, now).unwrap(), claims(1_000));
        assert_eq!(signer.verified.lock().unwrap().len(), 1, "remembered");
        // Remembered or not, any other bytes are checked in full.
        assert_eq!(
            signer.verify(&with_admin_role(&token), now),
            Err(TokenError::Invalid)
        );
        let signature = token.split('.').nth(2).unwrap();
        let flipped = if signature.starts_with('A') { "B" } else { "A" };
        let forged = format!("{}{}", flipped, &signature[1..]);
        let original: Vec<&str> = token.split('.').collect();
        assert_eq!(
            signer.verify(&format!("{}.{}.{forged}", original[0], original[1]), now),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            signer.verified.lock().unwrap().len(),
            1,
            "refusals are not kept"
        );
        // The remembered token still answers, and still by the clock.
        assert_eq!(signer.verify(&token, now).unwrap(), claims(1_000));
        assert_eq!(
            signer.verify(&token, Timestamp(1_900 * 1_000_000)),
            Err(TokenError::OutOfTime)
        );
    }

    #[test]
    fn a_rotated_ring_still_verifies_tokens_of_the_previous_key() {
        let (old, new) = (
            SigningKeyMaterial::generate(),
            SigningKeyMaterial::generate(),
        );
        let old_kid = old.kid.clone();
        let before =
            Ed25519Signer::from_keys(std::slice::from_ref(&old), "custodia", "custodia-api")
                .unwrap();
        let token = before.sign(&claims(1_000)).unwrap();
        let after = Ed25519Signer::from_keys(&[new, old], "custodia", "custodia-api").unwrap();
        let now = Timestamp(1_000 * 1_000_000);
        assert_eq!(after.verify(&token, now).unwrap(), claims(1_000));
        assert_ne!(
            jsonwebtoken::decode_header(after.sign(&claims(1_000)).unwrap())
                .unwrap()
                .kid,
            Some(old_kid)
        );
        assert_eq!(after.jwks()["keys"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn mismatched_key_material_is_refused() {
        let mut key = SigningKeyMaterial::generate();
        key.public_x = SigningKeyMaterial::generate().public_x;
        assert!(Ed25519Signer::from_keys(&[key], "custodia", "custodia-api").is_err());
    }
}
