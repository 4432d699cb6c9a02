//! Access tokens: JWTs signed with Ed25519 (EdDSA) by `jsonwebtoken`. The
//! key is made at start; publishing it as JWKS and rotating it come with the
//! HTTP server.

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::OsRng;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use custodia_application::{AccessClaims, TokenError, TokenSigner};
use custodia_domain::Timestamp;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};

pub struct Ed25519Signer {
    kid: String,
    /// The public key, base64url (the JWK `x`).
    public_x: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ed25519Signer")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Ed25519Signer {
    /// A signer with a fresh key.
    pub fn generate(issuer: &str, audience: &str) -> Self {
        let key = SigningKey::generate(&mut OsRng);
        let der = key
            .to_pkcs8_der()
            .expect("an Ed25519 key encodes as PKCS#8");
        let public_x = B64URL.encode(key.verifying_key().to_bytes());
        Self {
            kid: uuid::Uuid::now_v7().simple().to_string(),
            decoding: DecodingKey::from_ed_components(&public_x).expect("a valid public key"),
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            public_x,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    /// The public key as a JWK (for the JWKS endpoint).
    pub fn public_jwk(&self) -> serde_json::Value {
        serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": self.kid, "x": self.public_x })
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
        header.kid = Some(self.kid.clone());
        encode(&header, claims, &self.encoding).map_err(|_| TokenError::Invalid)
    }

    fn verify(&self, token: &str, now: Timestamp) -> Result<AccessClaims, TokenError> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        // Time is checked below against the caller's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let claims = decode::<AccessClaims>(token, &self.decoding, &validation)
            .map_err(|_| TokenError::Invalid)?
            .claims;
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
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = B64URL.encode(
            serde_json::to_vec(&AccessClaims {
                roles: vec!["owner".into(), "admin".into()],
                ..claims(1_000)
            })
            .unwrap(),
        );
        assert_eq!(
            signer.verify(&parts.join("."), now),
            Err(TokenError::Invalid)
        );
        // "alg: none" is not accepted.
        let none = format!(
            "{}.{}.",
            B64URL.encode(br#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        );
        assert_eq!(signer.verify(&none, now), Err(TokenError::Invalid));
    }
}
