//! Signing keys live in the database, sealed under the master key, so that
//! every instance signs and verifies with the same keys, and rotation does
//! not cut live tokens off.

use custodia_application::{AccessClaims, TokenSigner, VaultError};
use custodia_domain::Timestamp;
use custodia_infrastructure::{open_event_store, Ed25519Signer, KeyVault, MasterKey, OpenMode};
use custodia_tests::{backends, TestDatabase};

backends!(instances_share_keys_and_rotation_keeps_old_tokens_valid);

fn claims() -> AccessClaims {
    AccessClaims {
        iss: "custodia".into(),
        aud: "custodia-api".into(),
        sub: "u".into(),
        tid: "t".into(),
        sid: "s".into(),
        jti: "j".into(),
        roles: vec![],
        iat: 1_000,
        nbf: 1_000,
        exp: 1_900,
    }
}

async fn instances_share_keys_and_rotation_keeps_old_tokens_valid(db: TestDatabase) {
    open_event_store(db.url(), OpenMode::Migrate, 2)
        .await
        .unwrap();
    let master = MasterKey::generate();
    let master_copy: MasterKey = master.to_base64().parse().unwrap();
    let (one, two) = (
        KeyVault::connect(db.url(), master).await.unwrap(),
        KeyVault::connect(db.url(), master_copy).await.unwrap(),
    );
    let signer =
        |keys: Vec<_>| Ed25519Signer::from_keys(&keys, "custodia", "custodia-api").unwrap();
    let first = signer(one.signing_keys().await.unwrap());
    let second = signer(two.signing_keys().await.unwrap());
    assert_eq!(first.jwks(), second.jwks(), "one key, made once, shared");
    let now = Timestamp(1_000 * 1_000_000);
    let token = first.sign(&claims()).unwrap();
    assert!(second.verify(&token, now).is_ok());

    one.rotate_signing_key().await.unwrap();
    let rotated = signer(two.signing_keys().await.unwrap());
    assert_eq!(
        rotated.jwks()["keys"].as_array().unwrap().len(),
        2,
        "the retired key stays published"
    );
    assert!(
        rotated.verify(&token, now).is_ok(),
        "tokens of the retired key still verify"
    );
    let new_token = rotated.sign(&claims()).unwrap();
    assert!(
        second.verify(&new_token, now).is_err(),
        "an instance that has not reloaded does not know the new key yet"
    );

    let stranger = KeyVault::connect(db.url(), MasterKey::generate())
        .await
        .unwrap();
    assert!(matches!(
        stranger.signing_keys().await,
        Err(VaultError::Tampered)
    ));
}
