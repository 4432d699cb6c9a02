//! Passwords, login and lockout through the handlers, on both backends.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use custodia_application::commands::credentials::{
    import_password_hash, login, set_password, unlock, LoginError,
};
use custodia_application::commands::tenants::{change_memberships, create_tenant, CreateTenant};
use custodia_application::commands::users::{
    change_user_status, register_user, NewUser, Profile, StatusChange,
};
use custodia_application::commands::{Caller, CommandError, Ports};
use custodia_application::{
    EventStore, PasswordCheck, PasswordError, PasswordHasher, PersonalData,
};
use custodia_domain::identity::membership::{MembershipCommand, RoleRef};
use custodia_domain::identity::tenant::TenantSettings;
use custodia_domain::rbac::{BuiltInRole, Principal};
use custodia_domain::{StreamCategory, StreamId, StreamVersion, TenantId, Timestamp};
use custodia_infrastructure::{open_event_store, Argon2Passwords, KeyVault, MasterKey, OpenMode};
use custodia_tests::identity::operator;
use custodia_tests::{backends, TestDatabase};
use uuid::Uuid;

backends!(
    lockout_holds_under_fifty_parallel_wrong_passwords,
    unknown_users_and_wrong_passwords_are_indistinguishable,
    imported_bcrypt_hash_logs_in_and_is_rehashed_to_argon2id,
    the_lock_ends_by_time,
    password_policy_and_user_status_are_enforced,
    totp_with_codes_from_pyotp,
    recovery_codes_stand_in_for_totp_once_each,
);

/// Counts real verifications (and decoy ones) made by the real hasher.
#[derive(Default)]
struct Counting {
    inner: Argon2Passwords,
    verified: AtomicUsize,
    decoys: AtomicUsize,
}

#[async_trait]
impl PasswordHasher for Counting {
    async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        self.inner.hash(password).await
    }
    async fn verify(&self, password: &str, stored: &str) -> Result<PasswordCheck, PasswordError> {
        self.verified.fetch_add(1, Ordering::SeqCst);
        self.inner.verify(password, stored).await
    }
    fn accepts_import(&self, hash: &str) -> Result<(), PasswordError> {
        self.inner.accepts_import(hash)
    }
    async fn verify_nothing(&self, password: &str) -> Result<(), PasswordError> {
        self.decoys.fetch_add(1, Ordering::SeqCst);
        self.inner.verify_nothing(password).await
    }
}

struct World {
    ports: Ports,
    counting: Arc<Counting>,
    tenant: TenantId,
    user: Uuid,
}

const EMAIL: &str = "ada@example.org";
const PASSWORD: &str = "correct horse battery staple";

async fn world(db: &TestDatabase) -> World {
    let store: Arc<dyn EventStore> = open_event_store(db.url(), OpenMode::Migrate, 60)
        .await
        .unwrap();
    let vault: Arc<dyn PersonalData> = Arc::new(
        KeyVault::connect(db.url(), MasterKey::generate())
            .await
            .unwrap(),
    );
    let counting = Arc::new(Counting::default());
    let ports = Ports {
        store,
        vault,
        passwords: counting.clone(),
        codes: Arc::new(custodia_infrastructure::Totp),
        tokens: Arc::new(custodia_infrastructure::Ed25519Signer::generate(
            "custodia",
            "custodia-api",
        )),
        unknown_logins: Arc::default(),
        links: Arc::new(custodia_application::commands::account::LinkBase(
            "http://localhost:8080".to_owned(),
        )),
    };
    let tenant = TenantId::generate();
    let user = Uuid::now_v7();
    let owner = NewUser {
        address_vouched: false,
        user,
        email: EMAIL.into(),
        profile: Profile::default(),
        invited: false,
        password: None,
    };
    create_tenant(
        &ports,
        &operator(),
        CreateTenant {
            tenant,
            name: "Acme".into(),
            settings: TenantSettings::default(),
            owner,
        },
    )
    .await
    .unwrap();
    World {
        ports,
        counting,
        tenant,
        user,
    }
}

impl World {
    fn verified(&self) -> usize {
        self.counting.verified.load(Ordering::SeqCst)
    }
}

async fn lockout_holds_under_fifty_parallel_wrong_passwords(db: TestDatabase) {
    let w = world(&db).await;
    set_password(&w.ports, &operator(), w.tenant, w.user, PASSWORD)
        .await
        .unwrap();
    let now = Timestamp::now();
    let mut attempts = Vec::new();
    for i in 0..50 {
        let (ports, tenant) = (w.ports.clone(), w.tenant);
        attempts.push(tokio::spawn(async move {
            login(
                &ports,
                tenant,
                EMAIL,
                &format!("wrong password {i}"),
                None,
                now,
            )
            .await
        }));
    }
    let (mut invalid, mut locked) = (0, 0);
    for attempt in attempts {
        match attempt.await.unwrap() {
            Err(LoginError::InvalidCredentials) => invalid += 1,
            Err(LoginError::Locked { .. }) => locked += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    // The tenant's threshold is 5: no more passwords were ever verified.
    assert!(
        w.verified() <= 5,
        "{} passwords were verified before the lock",
        w.verified()
    );
    assert_eq!((invalid + locked, invalid), (50, w.verified()));
    let checks = w
        .ports
        .store
        .read_stream(
            &StreamId::new(StreamCategory::parse("credential").unwrap(), w.user),
            StreamVersion::EMPTY,
            1000,
        )
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event_type.as_str() == "PasswordCheckStarted")
        .count();
    assert_eq!(checks, 5);

    // While locked, even the right password is refused, without being checked.
    let before = w.verified();
    assert!(matches!(
        login(&w.ports, w.tenant, EMAIL, PASSWORD, None, now).await,
        Err(LoginError::Locked { .. })
    ));
    assert_eq!(w.verified(), before);

    // An admin unlock lets the right password in.
    unlock(&w.ports, &operator(), w.tenant, w.user, now)
        .await
        .unwrap();
    assert_eq!(
        login(&w.ports, w.tenant, EMAIL, PASSWORD, None, now)
            .await
            .unwrap(),
        w.user
    );
}

async fn unknown_users_and_wrong_passwords_are_indistinguishable(db: TestDatabase) {
    let w = world(&db).await;
    set_password(&w.ports, &operator(), w.tenant, w.user, PASSWORD)
        .await
        .unwrap();
    let now = Timestamp::now();
    let unknown = login(
        &w.ports,
        w.tenant,
        "nobody@example.org",
        PASSWORD,
        None,
        now,
    )
    .await;
    let wrong = login(
        &w.ports,
        w.tenant,
        EMAIL,
        "not the password at all",
        None,
        now,
    )
    .await;
    assert_eq!(
        unknown.unwrap_err().to_string(),
        wrong.unwrap_err().to_string()
    );
    // Each did exactly one Argon2id verification's worth of work.
    assert_eq!(
        (w.counting.decoys.load(Ordering::SeqCst), w.verified()),
        (1, 1)
    );
    let malformed = login(&w.ports, w.tenant, "not an email", PASSWORD, None, now).await;
    assert!(matches!(malformed, Err(LoginError::InvalidCredentials)));
    assert_eq!(w.counting.decoys.load(Ordering::SeqCst), 2);
}

async fn imported_bcrypt_hash_logs_in_and_is_rehashed_to_argon2id(db: TestDatabase) {
    let w = world(&db).await;
    // Made by crypt_blowfish (another system): "U*U*U".
    let imported = "$2a$05$XXXXXXXXXXXXXXXXXXXXXOAcXxm9kjPGEMsLznoKqmqw7tc8WCx4a";
    import_password_hash(&w.ports, &operator(), w.tenant, w.user, imported)
        .await
        .unwrap();
    assert!(matches!(
        import_password_hash(&w.ports, &operator(), w.tenant, w.user, "$1$md5$not-bcrypt").await,
        Err(CommandError::Invalid(_))
    ));
    let now = Timestamp::now();
    assert!(matches!(
        login(&w.ports, w.tenant, EMAIL, "U*U", None, now).await,
        Err(LoginError::InvalidCredentials)
    ));
    assert_eq!(
        login(&w.ports, w.tenant, EMAIL, "U*U*U", None, now)
            .await
            .unwrap(),
        w.user
    );
    let stream = StreamId::new(StreamCategory::parse("credential").unwrap(), w.user);
    let events = w
        .ports
        .store
        .read_stream(&stream, StreamVersion::EMPTY, 100)
        .await
        .unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "PasswordSet",
            "PasswordCheckStarted",
            "PasswordCheckStarted",
            "PasswordSet",
            "LoginSucceeded"
        ]
    );
    let last_set: serde_json::Value = serde_json::from_slice(events[3].payload.as_bytes()).unwrap();
    assert_eq!(
        last_set["algorithm"], "argon2id",
        "rehashed at the successful login"
    );
    // And the new hash works.
    assert_eq!(
        login(&w.ports, w.tenant, EMAIL, "U*U*U", None, now)
            .await
            .unwrap(),
        w.user
    );
}

async fn the_lock_ends_by_time(db: TestDatabase) {
    let w = world(&db).await;
    set_password(&w.ports, &operator(), w.tenant, w.user, PASSWORD)
        .await
        .unwrap();
    let start = Timestamp::now();
    for _ in 0..5 {
        assert!(matches!(
            login(&w.ports, w.tenant, EMAIL, "wrong wrong wrong", None, start).await,
            Err(LoginError::InvalidCredentials)
        ));
    }
    let Err(LoginError::Locked { until }) =
        login(&w.ports, w.tenant, EMAIL, PASSWORD, None, start).await
    else {
        panic!("locked after 5 failures")
    };
    assert_eq!(
        until.0,
        start.0 + 15 * 60_000_000,
        "the default lockout period is 15 minutes"
    );
    assert!(matches!(
        login(
            &w.ports,
            w.tenant,
            EMAIL,
            PASSWORD,
            None,
            Timestamp(until.0 - 1)
        )
        .await,
        Err(LoginError::Locked { .. })
    ));
    assert_eq!(
        login(&w.ports, w.tenant, EMAIL, PASSWORD, None, until)
            .await
            .unwrap(),
        w.user
    );
}

async fn password_policy_and_user_status_are_enforced(db: TestDatabase) {
    let w = world(&db).await;
    for weak in ["short", "passwordpassword", "Password1234"] {
        let outcome = set_password(&w.ports, &operator(), w.tenant, w.user, weak).await;
        assert!(
            matches!(outcome, Err(CommandError::Invalid(_))),
            "{weak}: {outcome:?}"
        );
    }
    // A member sets their own password (self-service), not someone else's.
    let me = Caller {
        principal: Principal::Member {
            tenant: w.tenant,
            user: w.user,
            permissions: Default::default(),
        },
        ..operator()
    };
    set_password(&w.ports, &me, w.tenant, w.user, PASSWORD)
        .await
        .unwrap();
    assert!(matches!(
        set_password(&w.ports, &me, w.tenant, Uuid::now_v7(), PASSWORD).await,
        Err(CommandError::Forbidden(_))
    ));

    // A second owner, so that this one is not the last active owner.
    let second = NewUser {
        address_vouched: false,
        user: Uuid::now_v7(),
        email: "second-owner@example.org".into(),
        profile: Profile::default(),
        invited: false,
        password: None,
    };
    let second_id = second.user;
    register_user(&w.ports, &operator(), w.tenant, second)
        .await
        .unwrap();
    let grant = MembershipCommand::Grant {
        user: second_id,
        role: RoleRef::BuiltIn(BuiltInRole::Owner),
    };
    change_memberships(&w.ports, &operator(), w.tenant, grant)
        .await
        .unwrap();
    change_user_status(
        &w.ports,
        &operator(),
        w.tenant,
        w.user,
        StatusChange::Suspend,
    )
    .await
    .unwrap();
    assert!(matches!(
        login(&w.ports, w.tenant, EMAIL, PASSWORD, None, Timestamp::now()).await,
        Err(LoginError::InvalidCredentials)
    ));
    assert!(matches!(
        login(
            &w.ports,
            TenantId::generate(),
            EMAIL,
            PASSWORD,
            None,
            Timestamp::now()
        )
        .await,
        Err(LoginError::InvalidCredentials)
    ));
}

/// A code computed by pyotp (an independent implementation) for `secret`
/// (base32) at `unix_seconds`.
fn pyotp_code(secret: &str, unix_seconds: i64) -> String {
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import pyotp, sys; print(pyotp.TOTP(sys.argv[1]).at(int(sys.argv[2])))",
            secret,
            &unix_seconds.to_string(),
        ])
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "pyotp: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

async fn totp_with_codes_from_pyotp(db: TestDatabase) {
    use custodia_application::commands::credentials::{confirm_totp, disable_totp, enroll_totp};
    let w = world(&db).await;
    set_password(&w.ports, &operator(), w.tenant, w.user, PASSWORD)
        .await
        .unwrap();
    let uri = enroll_totp(&w.ports, &operator(), w.tenant, w.user)
        .await
        .unwrap();
    assert!(
        uri.starts_with("otpauth://totp/Acme:ada%40example.org?secret="),
        "{uri}"
    );
    let secret = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();

    // Not active until confirmed: the password alone still logs in.
    let now = Timestamp::now();
    let seconds = now.0 / 1_000_000;
    assert_eq!(
        login(&w.ports, w.tenant, EMAIL, PASSWORD, None, now)
            .await
            .unwrap(),
        w.user
    );
    let wrong = confirm_totp(
        &w.ports,
        &operator(),
        w.tenant,
        w.user,
        "000000",
        Timestamp(0),
    )
    .await;
    assert!(matches!(wrong, Err(CommandError::Invalid(_))), "{wrong:?}");
    let first = pyotp_code(&secret, seconds);
    confirm_totp(&w.ports, &operator(), w.tenant, w.user, &first, now)
        .await
        .unwrap();

    // Now the password alone is not enough, and the confirming code is spent.
    assert!(matches!(
        login(&w.ports, w.tenant, EMAIL, PASSWORD, None, now).await,
        Err(LoginError::SecondFactorRequired)
    ));
    assert!(matches!(
        login(&w.ports, w.tenant, EMAIL, PASSWORD, Some(&first), now).await,
        Err(LoginError::InvalidCredentials)
    ));
    // The next step's code works once.
    let next_at = Timestamp(now.0 + 30_000_000);
    let next = pyotp_code(&secret, seconds + 30);
    assert_eq!(
        login(&w.ports, w.tenant, EMAIL, PASSWORD, Some(&next), next_at)
            .await
            .unwrap(),
        w.user
    );
    assert!(matches!(
        login(&w.ports, w.tenant, EMAIL, PASSWORD, Some(&next), next_at).await,
        Err(LoginError::InvalidCredentials)
    ));
    // A right code with a wrong password is still refused.
    let later = pyotp_code(&secret, seconds + 60);
    let later_at = Timestamp(now.0 + 60_000_000);
    assert!(matches!(
        login(
            &w.ports,
            w.tenant,
            EMAIL,
            "wrong wrong wrong",
            Some(&later),
            later_at
        )
        .await,
        Err(LoginError::InvalidCredentials)
    ));

    // The right password without a code says a code is needed, and still
    // counts as a failed attempt: it reveals no more than the lockout
    // bounds (ADR 0007).
    let mut answers = Vec::new();
    for _ in 0..6 {
        match login(&w.ports, w.tenant, EMAIL, PASSWORD, None, later_at).await {
            Err(LoginError::SecondFactorRequired) => answers.push("code"),
            Err(LoginError::Locked { .. }) => answers.push("locked"),
            other => panic!("{other:?}"),
        }
    }
    assert!(
        answers.starts_with(&["code"]) && answers.ends_with(&["locked"]),
        "{answers:?}"
    );
    unlock(&w.ports, &operator(), w.tenant, w.user, later_at)
        .await
        .unwrap();

    disable_totp(&w.ports, &operator(), w.tenant, w.user)
        .await
        .unwrap();
    assert_eq!(
        login(&w.ports, w.tenant, EMAIL, PASSWORD, None, later_at)
            .await
            .unwrap(),
        w.user
    );

    // A tenant that requires MFA refuses a user with none enrolled.
    let settings = TenantSettings {
        mfa_required: true,
        ..TenantSettings::default()
    };
    custodia_application::commands::tenants::update_tenant_settings(
        &w.ports,
        &operator(),
        w.tenant,
        settings,
    )
    .await
    .unwrap();
    assert!(matches!(
        login(&w.ports, w.tenant, EMAIL, PASSWORD, None, later_at).await,
        Err(LoginError::SecondFactorEnrollmentRequired)
    ));
}

async fn recovery_codes_stand_in_for_totp_once_each(db: TestDatabase) {
    use custodia_application::commands::credentials::{
        confirm_totp, enroll_totp, issue_recovery_codes,
    };
    let w = world(&db).await;
    set_password(&w.ports, &operator(), w.tenant, w.user, PASSWORD)
        .await
        .unwrap();
    let uri = enroll_totp(&w.ports, &operator(), w.tenant, w.user)
        .await
        .unwrap();
    let secret = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let now = Timestamp::now();
    confirm_totp(
        &w.ports,
        &operator(),
        w.tenant,
        w.user,
        &pyotp_code(&secret, now.0 / 1_000_000),
        now,
    )
    .await
    .unwrap();

    let codes = issue_recovery_codes(&w.ports, &operator(), w.tenant, w.user)
        .await
        .unwrap();
    assert_eq!(codes.len(), 10);
    assert!(
        codes
            .iter()
            .all(|c| c.len() == 19 && c.matches('-').count() == 3),
        "{codes:?}"
    );
    assert_eq!(
        codes.iter().collect::<std::collections::HashSet<_>>().len(),
        10
    );

    assert_eq!(
        login(&w.ports, w.tenant, EMAIL, PASSWORD, Some(&codes[3]), now)
            .await
            .unwrap(),
        w.user
    );
    assert!(
        matches!(
            login(&w.ports, w.tenant, EMAIL, PASSWORD, Some(&codes[3]), now).await,
            Err(LoginError::InvalidCredentials)
        ),
        "single use"
    );
    let shouted = codes[4].to_uppercase().replace('-', " ");
    assert_eq!(
        login(&w.ports, w.tenant, EMAIL, PASSWORD, Some(&shouted), now)
            .await
            .unwrap(),
        w.user,
        "spacing and case do not matter"
    );
    assert!(matches!(
        login(
            &w.ports,
            w.tenant,
            EMAIL,
            PASSWORD,
            Some("aaaa-bbbb-cccc-dddd"),
            now
        )
        .await,
        Err(LoginError::InvalidCredentials)
    ));

    // Reissuing replaces every earlier code.
    let fresh = issue_recovery_codes(&w.ports, &operator(), w.tenant, w.user)
        .await
        .unwrap();
    assert!(matches!(
        login(&w.ports, w.tenant, EMAIL, PASSWORD, Some(&codes[5]), now).await,
        Err(LoginError::InvalidCredentials)
    ));
    assert_eq!(
        login(&w.ports, w.tenant, EMAIL, PASSWORD, Some(&fresh[0]), now)
            .await
            .unwrap(),
        w.user
    );
}
