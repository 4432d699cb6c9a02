//! The key vault on both backends: sealing, opening, blind indexes, and
//! erasure by key destruction, with the event log still verifying after it.

use custodia_application::{verify_log, AppendRequest, ExpectedVersion, PersonalData, VaultError};
use custodia_domain::aggregate::EventSchema;
use custodia_domain::identity::user::{SealedProfile, UserEvent};
use custodia_domain::personal::SealedField;
use custodia_domain::personal::{AccessDay, Email, FieldContext};
use custodia_domain::{
    Actor, ChainId, CommandId, EventId, Metadata, NewEvent, Origin, StreamCategory, StreamId,
    StreamVersion, TenantId, Timestamp,
};
use custodia_infrastructure::{open_event_store, KeyVault, MasterKey, OpenMode};
use custodia_tests::{backends, TestDatabase};
use sha2::{Digest, Sha256};
use uuid::Uuid;

backends!(
    sealed_fields_open_only_in_their_context,
    erasing_a_subject_shreds_its_data_and_the_chain_still_verifies,
    erasing_a_tenant_shreds_every_subject_of_it,
    blind_indexes_are_keyed_per_tenant_and_purpose,
    another_master_key_opens_nothing,
    no_personal_data_in_plaintext_anywhere_in_the_database,
    a_destroyed_key_stops_on_every_instance_within_a_second,
);

async fn vault(db: &TestDatabase, master: MasterKey) -> KeyVault {
    // Migrations (events and keys) come with the event store.
    open_event_store(db.url(), OpenMode::Migrate, 2)
        .await
        .unwrap();
    KeyVault::connect(db.url(), master).await.unwrap()
}

fn user_stream(user: Uuid) -> StreamId {
    StreamId::new(StreamCategory::parse("user").unwrap(), user)
}

async fn sealed_fields_open_only_in_their_context(db: TestDatabase) {
    let vault = vault(&db, MasterKey::generate()).await;
    let (tenant, user) = (TenantId::generate(), Uuid::now_v7());
    let stream = user_stream(user);
    let context = FieldContext {
        tenant,
        stream: &stream,
        event_id: EventId::generate(),
        field: "email",
    };
    let sealed = vault
        .seal(user, &context, b"ada@example.org")
        .await
        .unwrap();
    assert_eq!(
        vault.open(&context, &sealed).await.unwrap().as_deref(),
        Some(&b"ada@example.org"[..])
    );
    // Two seals of the same value differ (fresh nonces).
    assert_ne!(
        vault
            .seal(user, &context, b"ada@example.org")
            .await
            .unwrap()
            .ciphertext,
        sealed.ciphertext
    );

    let moved = FieldContext {
        field: "phone",
        ..context
    };
    assert!(matches!(
        vault.open(&moved, &sealed).await,
        Err(VaultError::Tampered)
    ));
    let other_event = FieldContext {
        event_id: EventId::generate(),
        ..context
    };
    assert!(matches!(
        vault.open(&other_event, &sealed).await,
        Err(VaultError::Tampered)
    ));
    let mut altered = sealed.clone();
    altered.ciphertext[0] ^= 1;
    assert!(matches!(
        vault.open(&context, &altered).await,
        Err(VaultError::Tampered)
    ));
}

/// Appends a `UserRegistered` event whose email is sealed for `user`.
async fn register(
    db: &TestDatabase,
    vault: &KeyVault,
    tenant: TenantId,
    user: Uuid,
    email: &str,
) -> EventId {
    let store = open_event_store(db.url(), OpenMode::Existing, 2)
        .await
        .unwrap();
    let stream = user_stream(user);
    let event_id = EventId::generate();
    let email = Email::parse(email).unwrap();
    let context = FieldContext {
        tenant,
        stream: &stream,
        event_id,
        field: "email",
    };
    let event = UserEvent::Registered {
        email: vault
            .seal(user, &context, email.as_str().as_bytes())
            .await
            .unwrap(),
        email_index: vault
            .blind_index(tenant, "email", email.as_str().as_bytes())
            .await
            .unwrap(),
        profile: SealedProfile {
            display_name: Some(
                vault
                    .seal(
                        user,
                        &FieldContext {
                            field: "display_name",
                            ..context
                        },
                        b"Ada Lovelace",
                    )
                    .await
                    .unwrap(),
            ),
            ..SealedProfile::default()
        },
        invited: false,
        email_verified: false,
    };
    let form = event.to_stored();
    let request = AppendRequest::new(
        ChainId::Tenant(tenant),
        stream,
        ExpectedVersion::Exactly(StreamVersion::EMPTY),
        vec![NewEvent {
            event_id,
            event_type: form.event_type,
            schema_version: form.schema_version,
            payload: form.payload,
        }],
        Metadata {
            actor: Actor::System,
            command_id: CommandId::generate(),
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            origin: Origin::parse("test").unwrap(),
        },
    )
    .unwrap();
    store.append(request).await.unwrap();
    event_id
}

/// Reads the user's `UserRegistered` back from the log and opens its email.
async fn stored_email(
    db: &TestDatabase,
    vault: &KeyVault,
    tenant: TenantId,
    user: Uuid,
) -> Option<Vec<u8>> {
    let store = open_event_store(db.url(), OpenMode::Existing, 2)
        .await
        .unwrap();
    let stream = user_stream(user);
    let recorded = store
        .read_stream(&stream, StreamVersion::EMPTY, 1)
        .await
        .unwrap()
        .remove(0);
    let form = custodia_domain::aggregate::StoredForm {
        event_type: recorded.event_type.clone(),
        schema_version: recorded.schema_version,
        payload: recorded.payload.clone(),
    };
    let UserEvent::Registered { email, .. } = UserEvent::from_stored(&form).unwrap() else {
        panic!("registered")
    };
    let context = FieldContext {
        tenant,
        stream: &stream,
        event_id: recorded.event_id,
        field: "email",
    };
    vault.open(&context, &email).await.unwrap()
}

async fn erasing_a_subject_shreds_its_data_and_the_chain_still_verifies(db: TestDatabase) {
    let vault = vault(&db, MasterKey::generate()).await;
    let tenant = TenantId::generate();
    let (ada, bob) = (Uuid::now_v7(), Uuid::now_v7());
    register(&db, &vault, tenant, ada, "ada@example.org").await;
    register(&db, &vault, tenant, bob, "bob@example.org").await;
    assert_eq!(
        stored_email(&db, &vault, tenant, ada).await.as_deref(),
        Some(&b"ada@example.org"[..])
    );

    assert!(
        vault.erase_subject(tenant, ada).await.unwrap(),
        "a key was destroyed"
    );
    assert_eq!(
        stored_email(&db, &vault, tenant, ada).await,
        None,
        "erased: unreadable, not an error"
    );
    assert_eq!(
        stored_email(&db, &vault, tenant, bob).await.as_deref(),
        Some(&b"bob@example.org"[..])
    );
    // Nothing new is sealed for an erased subject, and erasing twice is harmless.
    let stream = user_stream(ada);
    let context = FieldContext {
        tenant,
        stream: &stream,
        event_id: EventId::generate(),
        field: "email",
    };
    assert!(matches!(
        vault.seal(ada, &context, b"again").await,
        Err(VaultError::Erased)
    ));
    assert!(!vault.erase_subject(tenant, ada).await.unwrap());

    let store = open_event_store(db.url(), OpenMode::Existing, 2)
        .await
        .unwrap();
    let report = verify_log(&*store, None, &|_| {}).await.unwrap();
    assert!(
        report.is_intact(),
        "erasure touches no hashed byte: {:?}",
        report.breaks
    );
    assert_eq!(report.events, 2);
}

async fn erasing_a_tenant_shreds_every_subject_of_it(db: TestDatabase) {
    let vault = vault(&db, MasterKey::generate()).await;
    let (acme, globex) = (TenantId::generate(), TenantId::generate());
    let (ada, bob, eve) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    register(&db, &vault, acme, ada, "ada@example.org").await;
    register(&db, &vault, acme, bob, "bob@example.org").await;
    register(&db, &vault, globex, eve, "eve@example.org").await;

    assert!(vault.erase_tenant(acme).await.unwrap());
    assert_eq!(stored_email(&db, &vault, acme, ada).await, None);
    assert_eq!(stored_email(&db, &vault, acme, bob).await, None);
    assert_eq!(
        stored_email(&db, &vault, globex, eve).await.as_deref(),
        Some(&b"eve@example.org"[..])
    );
    assert!(matches!(
        vault.blind_index(acme, "email", b"x").await,
        Err(VaultError::Erased)
    ));
    let store = open_event_store(db.url(), OpenMode::Existing, 2)
        .await
        .unwrap();
    assert!(verify_log(&*store, None, &|_| {})
        .await
        .unwrap()
        .is_intact());
}

/// Two instances share one key store, each with its own pool and its own
/// key cache. A key one of them destroys stops opening anything on the
/// other within one second, although the other held it in memory: a
/// subject's key, a day's access key, and a tenant key (with every subject
/// key under it).
async fn a_destroyed_key_stops_on_every_instance_within_a_second(db: TestDatabase) {
    const WITHIN: std::time::Duration = std::time::Duration::from_secs(1);
    assert!(KeyVault::ERASURE_SEEN_WITHIN < WITHIN);
    let master = MasterKey::generate();
    let here = vault(&db, master.to_base64().parse().unwrap()).await;
    let there = vault(&db, master).await;
    let tenant = TenantId::generate();
    let (ada, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let (ada_stream, bob_stream) = (user_stream(ada), user_stream(bob));
    let event = EventId::generate();
    let context = |stream| FieldContext {
        tenant,
        stream,
        event_id: event,
        field: "email",
    };
    async fn opens(
        vault: &KeyVault,
        field: &SealedField,
        context: FieldContext<'_>,
    ) -> Option<Vec<u8>> {
        vault.open(&context, field).await.unwrap()
    }
    let ada_field = here
        .seal(ada, &context(&ada_stream), b"ada@example.org")
        .await
        .unwrap();
    let bob_field = here
        .seal(bob, &context(&bob_stream), b"bob@example.org")
        .await
        .unwrap();
    let day = AccessDay::of(Timestamp::now());
    let ada_ip = here
        .seal_access_data(ada, day, &context(&ada_stream), b"192.0.2.1")
        .await
        .unwrap();
    let bob_ip = here
        .seal_access_data(bob, day, &context(&bob_stream), b"192.0.2.2")
        .await
        .unwrap();

    // The other instance reads every key once, then answers from memory.
    for (field, stream) in [
        (&ada_field, &ada_stream),
        (&bob_field, &bob_stream),
        (&ada_ip, &ada_stream),
        (&bob_ip, &bob_stream),
    ] {
        assert!(opens(&there, field, context(stream)).await.is_some());
    }
    let warm = there.cache_stats();
    assert!(opens(&there, &ada_field, context(&ada_stream))
        .await
        .is_some());
    assert!(opens(&there, &ada_ip, context(&ada_stream)).await.is_some());
    let cached = there.cache_stats();
    assert_eq!(cached.misses, warm.misses, "answered from memory");
    assert!(cached.hits > warm.hits);

    // A subject's key: gone here at once, there within the bound.
    assert!(here.erase_subject(tenant, ada).await.unwrap());
    assert_eq!(opens(&here, &ada_field, context(&ada_stream)).await, None);
    tokio::time::sleep(WITHIN).await;
    assert_eq!(opens(&there, &ada_field, context(&ada_stream)).await, None);
    assert_eq!(opens(&there, &ada_ip, context(&ada_stream)).await, None);
    assert_eq!(
        opens(&there, &bob_field, context(&bob_stream))
            .await
            .as_deref(),
        Some(&b"bob@example.org"[..]),
        "the others still open"
    );
    assert!(there.cache_stats().drops > cached.drops);

    // A day's access key, destroyed by retention on the other instance.
    assert!(opens(&here, &bob_ip, context(&bob_stream)).await.is_some());
    assert_eq!(
        there.erase_access_days_through(tenant, day).await.unwrap(),
        1
    );
    tokio::time::sleep(WITHIN).await;
    assert_eq!(opens(&here, &bob_ip, context(&bob_stream)).await, None);
    assert!(opens(&here, &bob_field, context(&bob_stream))
        .await
        .is_some());

    // The tenant key, and with it every subject key under it.
    assert!(opens(&there, &bob_field, context(&bob_stream))
        .await
        .is_some());
    assert!(here.erase_tenant(tenant).await.unwrap());
    tokio::time::sleep(WITHIN).await;
    assert_eq!(opens(&there, &bob_field, context(&bob_stream)).await, None);
    assert!(matches!(
        there.blind_index(tenant, "email", b"x").await,
        Err(VaultError::Erased)
    ));
}

async fn blind_indexes_are_keyed_per_tenant_and_purpose(db: TestDatabase) {
    let vault = vault(&db, MasterKey::generate()).await;
    let (acme, globex) = (TenantId::generate(), TenantId::generate());
    let value = b"ada@example.org";
    let index = vault.blind_index(acme, "email", value).await.unwrap();
    assert_eq!(
        vault.blind_index(acme, "email", value).await.unwrap(),
        index,
        "deterministic"
    );
    assert_ne!(
        vault
            .blind_index(acme, "email", b"bob@example.org")
            .await
            .unwrap(),
        index
    );
    assert_ne!(
        vault.blind_index(globex, "email", value).await.unwrap(),
        index,
        "per tenant"
    );
    assert_ne!(
        vault.blind_index(acme, "phone", value).await.unwrap(),
        index,
        "per purpose"
    );
    let plain: [u8; 32] = Sha256::digest(value).into();
    assert_ne!(index.0, plain, "keyed, not a plain hash");
}

async fn another_master_key_opens_nothing(db: TestDatabase) {
    let vault_a = vault(&db, MasterKey::generate()).await;
    let (tenant, user) = (TenantId::generate(), Uuid::now_v7());
    let stream = user_stream(user);
    let context = FieldContext {
        tenant,
        stream: &stream,
        event_id: EventId::generate(),
        field: "email",
    };
    let sealed = vault_a.seal(user, &context, b"secret").await.unwrap();
    let vault_b = KeyVault::connect(db.url(), MasterKey::generate())
        .await
        .unwrap();
    assert!(matches!(
        vault_b.open(&context, &sealed).await,
        Err(VaultError::Tampered)
    ));
}

async fn no_personal_data_in_plaintext_anywhere_in_the_database(db: TestDatabase) {
    let vault = vault(&db, MasterKey::generate()).await;
    let tenant = TenantId::generate();
    register(
        &db,
        &vault,
        tenant,
        Uuid::now_v7(),
        "marker-4f1c9e@example.org",
    )
    .await;
    let dump = if db.is_postgres() {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(db.url())
            .await
            .unwrap();
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT coalesce(string_agg(t::text, ' '), '') FROM events t \
             UNION ALL SELECT coalesce(string_agg(encode(payload, 'escape'), ' '), '') FROM events \
             UNION ALL SELECT coalesce(string_agg(k::text, ' '), '') FROM subject_keys k \
             UNION ALL SELECT coalesce(string_agg(k::text, ' '), '') FROM tenant_keys k",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        rows.into_iter()
            .map(|(text,)| text)
            .collect::<Vec<_>>()
            .join(" ")
            .into_bytes()
    } else {
        // Every byte of the database file and its write-ahead log.
        let path = db.url().trim_start_matches("sqlite://").to_owned();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
        bytes
    };
    assert!(dump.len() > 1000, "the dump holds the data");
    for marker in [&b"marker-4f1c9e"[..], b"Ada Lovelace"] {
        assert!(
            !dump.windows(marker.len()).any(|w| w == marker),
            "plaintext found in the database"
        );
    }
}

/// Python's `cryptography`, following docs/adr/0004 alone, unwraps the keys
/// from the database and opens a field Custodia sealed.
#[tokio::test]
async fn independent_python_opens_a_sealed_field() {
    use base64::Engine;
    let db = TestDatabase::sqlite();
    let master = MasterKey::generate();
    let master_b64 = master.to_base64();
    let vault = vault(&db, master).await;
    let (tenant, user) = (TenantId::generate(), Uuid::now_v7());
    let stream = user_stream(user);
    let event_id = EventId::generate();
    let context = FieldContext {
        tenant,
        stream: &stream,
        event_id,
        field: "display_name",
    };
    let sealed = vault
        .seal(user, &context, "Ada Lovelace — ünïcode".as_bytes())
        .await
        .unwrap();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
    let output = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/python/open_sealed_field.py"
        ))
        .args([
            db.url().trim_start_matches("sqlite://"),
            &master_b64,
            &tenant.to_string(),
            "user",
            &user.to_string(),
            &event_id.to_string(),
            "display_name",
            &sealed.subject.to_string(),
            &b64(&sealed.nonce),
            &b64(&sealed.ciphertext),
        ])
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "Ada Lovelace — ünïcode"
    );
}
