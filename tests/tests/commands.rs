//! The command side through its handlers, on both backends: RBAC and tenant
//! isolation for every command and role, typed refusals that append
//! nothing, idempotent retries, and personal data sealed at rest.

use std::collections::BTreeMap;

use custodia_application::commands::api_keys::create_api_key;
use custodia_application::commands::consent::{consent_history, record_consent, ConsentInput};
use custodia_application::commands::credentials::{set_password, unlock};
use custodia_application::commands::sessions::revoke_all_sessions;
use custodia_application::commands::tenants::{
    change_memberships, create_tenant, set_tenant_suspended, update_tenant_settings, CreateTenant,
};
use custodia_application::commands::users::{
    change_email, change_user_status, read_personal_data, register_user, update_profile, NewUser,
    Profile, StatusChange,
};
use custodia_application::commands::{member_principal, Caller, CommandError, Ports};
use custodia_domain::identity::consent::Channel;
use custodia_domain::identity::membership::{
    MembershipCommand, MembershipError, RoleName, RoleRef,
};
use custodia_domain::identity::tenant::ConsentPurpose;
use custodia_domain::identity::tenant::TenantSettings;
use custodia_domain::rbac::{BuiltInRole, Denied, Permission, PermissionSet, Principal};
use custodia_domain::Timestamp;
use custodia_domain::{Actor, CommandId, LogCursor, Origin, StreamVersion, TenantId};
use custodia_tests::identity::ports;
use custodia_tests::{backends, TestDatabase};
use uuid::Uuid;

backends!(
    rbac_matrix_every_command_every_role_own_and_other_tenant,
    rbac_matrix_nobody_acts_on_someone_who_holds_more,
    only_the_platform_operator_creates_tenants,
    bad_commands_are_typed_and_append_nothing,
    retried_commands_answer_as_the_first_time,
    the_last_owner_stays,
    personal_data_is_sealed_at_rest_and_readable_by_those_allowed,
    personal_data_is_read_from_a_stream_of_any_length,
    concurrent_changes_of_different_settings_both_hold,
);

fn caller(principal: Principal) -> Caller {
    let actor = match &principal {
        Principal::Member { user, .. } => Actor::User(*user),
        _ => Actor::System,
    };
    Caller {
        principal,
        actor,
        command_id: CommandId::generate(),
        correlation_id: Uuid::now_v7(),
        origin: Origin::parse("test").unwrap(),
        expected_version: None,
        session: None,
    }
}

fn operator() -> Caller {
    caller(Principal::PlatformOperator)
}

fn new_user(email: &str) -> NewUser {
    NewUser {
        address_vouched: false,
        user: Uuid::now_v7(),
        email: email.to_owned(),
        profile: Profile::default(),
        invited: false,
        password: None,
    }
}

/// A tenant with an owner; returns the tenant and the owner's id.
async fn tenant(ports: &Ports) -> (TenantId, Uuid) {
    let tenant = TenantId::generate();
    let owner = new_user(&format!("owner-{}@example.org", Uuid::now_v7().simple()));
    let owner_id = owner.user;
    create_tenant(
        ports,
        &operator(),
        CreateTenant {
            tenant,
            name: "Acme".into(),
            settings: TenantSettings {
                consent_purposes: vec![ConsentPurpose {
                    id: "newsletter".into(),
                    version: 1,
                }],
                ..TenantSettings::default()
            },
            owner,
        },
    )
    .await
    .unwrap();
    (tenant, owner_id)
}

/// A user of `tenant` holding `role`, authenticated as a principal.
async fn member(ports: &Ports, tenant: TenantId, role: BuiltInRole) -> (Principal, Uuid) {
    let user = new_user(&format!(
        "{}-{}@example.org",
        role.name(),
        Uuid::now_v7().simple()
    ));
    let id = user.user;
    register_user(ports, &operator(), tenant, user)
        .await
        .unwrap();
    let grant = MembershipCommand::Grant {
        user: id,
        role: RoleRef::BuiltIn(role),
    };
    change_memberships(ports, &operator(), tenant, grant)
        .await
        .unwrap();
    (
        member_principal(&*ports.store, tenant, id).await.unwrap(),
        id,
    )
}

async fn log_length(ports: &Ports) -> usize {
    let mut cursor = LogCursor::START;
    let mut count = 0;
    loop {
        // Read by chain-independent order; on PostgreSQL other tests'
        // transactions may hold back the tail, so count via chains instead.
        let batch = ports.store.read_all(cursor, 10_000).await.unwrap();
        let Some(last) = batch.last() else { break };
        cursor = last.cursor();
        count += batch.len();
    }
    let by_chain: u64 = ports
        .store
        .chains()
        .await
        .unwrap()
        .iter()
        .map(|c| c.events)
        .sum();
    by_chain.max(count as u64) as usize
}

/// Each command of the matrix, with the permission the catalogue requires.
const COMMANDS: &[(&str, Permission)] = &[
    ("update tenant settings", Permission::TenantUpdate),
    ("suspend tenant", Permission::TenantSuspend),
    ("register user", Permission::UserCreate),
    ("update another user's profile", Permission::UserUpdate),
    ("change another user's email", Permission::UserUpdate),
    ("suspend user", Permission::UserSuspend),
    ("delete user", Permission::UserDelete),
    ("grant member role", Permission::RoleGrant),
    ("revoke another user's role", Permission::RoleGrant),
    ("remove another member", Permission::RoleGrant),
    ("define custom role", Permission::RoleDefine),
    (
        "read another user's personal data",
        Permission::UserReadPersonal,
    ),
    ("record consent for another user", Permission::ConsentRecord),
    (
        "read another user's consent history",
        Permission::ConsentRead,
    ),
    ("create an API key", Permission::ApiKeyManage),
    ("unlock another user", Permission::UserUnlock),
    ("set another user's password", Permission::CredentialManage),
    (
        "sign another user out everywhere",
        Permission::SessionRevoke,
    ),
];

async fn run(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    target: Uuid,
    command: &str,
) -> Result<(), CommandError> {
    let fresh = || format!("fresh-{}@example.org", Uuid::now_v7().simple());
    match command {
        "update tenant settings" => {
            let settings = TenantSettings {
                mfa_required: true,
                ..TenantSettings::default()
            };
            update_tenant_settings(ports, caller, tenant, settings)
                .await
                .map(drop)
        }
        "suspend tenant" => set_tenant_suspended(ports, caller, tenant, true)
            .await
            .map(drop),
        "register user" => register_user(ports, caller, tenant, new_user(&fresh()))
            .await
            .map(drop),
        "update another user's profile" => {
            let profile = Profile {
                display_name: Some("Renamed".into()),
                ..Profile::default()
            };
            update_profile(ports, caller, tenant, target, profile)
                .await
                .map(drop)
        }
        "change another user's email" => change_email(ports, caller, tenant, target, &fresh())
            .await
            .map(drop),
        "suspend user" => change_user_status(ports, caller, tenant, target, StatusChange::Suspend)
            .await
            .map(drop),
        "delete user" => change_user_status(ports, caller, tenant, target, StatusChange::Delete)
            .await
            .map(drop),
        "grant member role" => {
            let grant = MembershipCommand::Grant {
                user: target,
                role: RoleRef::BuiltIn(BuiltInRole::Member),
            };
            change_memberships(ports, caller, tenant, grant)
                .await
                .map(drop)
        }
        "revoke another user's role" => {
            let revoke = MembershipCommand::Revoke {
                user: target,
                role: RoleRef::BuiltIn(BuiltInRole::Member),
            };
            change_memberships(ports, caller, tenant, revoke)
                .await
                .map(drop)
        }
        "remove another member" => change_memberships(
            ports,
            caller,
            tenant,
            MembershipCommand::RemoveMember { user: target },
        )
        .await
        .map(drop),
        "define custom role" => {
            let define = MembershipCommand::DefineRole {
                name: RoleName::parse("support").unwrap(),
                permissions: PermissionSet::from(&[Permission::UserRead][..]),
            };
            change_memberships(ports, caller, tenant, define)
                .await
                .map(drop)
        }
        "read another user's personal data" => read_personal_data(ports, caller, tenant, target)
            .await
            .map(drop),
        "record consent for another user" => {
            let input = ConsentInput {
                purpose: "newsletter".into(),
                policy_version: 1,
                channel: Channel::Web,
                evidence_sha256: None,
            };
            record_consent(ports, caller, tenant, target, input, true, Timestamp::now())
                .await
                .map(drop)
        }
        "read another user's consent history" => consent_history(ports, caller, tenant, target)
            .await
            .map(drop),
        "create an API key" => {
            let permissions = PermissionSet::from(&[Permission::TenantRead][..]);
            create_api_key(ports, caller, tenant, "ci", permissions, Timestamp::now())
                .await
                .map(drop)
        }
        "unlock another user" => unlock(ports, caller, tenant, target, Timestamp::now())
            .await
            .map(drop),
        "set another user's password" => set_password(
            ports,
            caller,
            tenant,
            target,
            "a long and unusual passphrase",
        )
        .await
        .map(drop),
        "sign another user out everywhere" => {
            revoke_all_sessions(ports, caller, tenant, target, Timestamp::now())
                .await
                .map(drop)
        }
        other => panic!("unknown command {other}"),
    }
}

async fn rbac_matrix_every_command_every_role_own_and_other_tenant(db: TestDatabase) {
    let ports = ports(&db).await;
    for role in BuiltInRole::ALL {
        for (command, permission) in COMMANDS {
            // A fresh tenant per case: some commands (suspend) change what follows.
            let (own, _) = tenant(&ports).await;
            let (principal, _) = member(&ports, own, *role).await;
            let (_, target) = member(&ports, own, BuiltInRole::Member).await;
            let as_member = caller(principal.clone());
            let outcome = run(&ports, &as_member, own, target, command).await;
            let allowed = role.permissions().contains(*permission);
            match (&outcome, allowed) {
                (Ok(()), true) => {}
                (Err(CommandError::Forbidden(Denied::Missing(_))), false) => {}
                _ => panic!(
                    "{} / {command} in own tenant: expected allowed={allowed}, got {outcome:?}",
                    role.name()
                ),
            }
            let (other, other_owner) = tenant(&ports).await;
            let outcome = run(&ports, &caller(principal), other, other_owner, command).await;
            assert!(
                matches!(outcome, Err(CommandError::Forbidden(Denied::OtherTenant))),
                "{} / {command} in another tenant: {outcome:?}",
                role.name()
            );
        }
    }
}

/// The commands that change another user's credentials, email, status,
/// roles or membership: refused unless the actor holds every permission
/// the target holds.
const ON_ANOTHER_USER: &[&str] = &[
    "update another user's profile",
    "change another user's email",
    "suspend user",
    "delete user",
    "grant member role",
    "revoke another user's role",
    "remove another member",
    "unlock another user",
    "set another user's password",
];

async fn rbac_matrix_nobody_acts_on_someone_who_holds_more(db: TestDatabase) {
    let ports = ports(&db).await;
    for actor in BuiltInRole::ALL {
        for held in BuiltInRole::ALL {
            // The tenant's first owner stays active, so the last-owner rule
            // never decides here.
            let (tenant_id, _) = tenant(&ports).await;
            let (principal, _) = member(&ports, tenant_id, *actor).await;
            for command in ON_ANOTHER_USER {
                let permission = COMMANDS
                    .iter()
                    .find(|(name, _)| name == command)
                    .map(|(_, p)| *p)
                    .unwrap();
                let (_, target) = member(&ports, tenant_id, *held).await;
                let outcome = run(
                    &ports,
                    &caller(principal.clone()),
                    tenant_id,
                    target,
                    command,
                )
                .await;
                let may = actor.permissions().contains(permission);
                let outranks = held.permissions().is_subset(&actor.permissions());
                let expected = match (may, outranks) {
                    (true, true) => matches!(outcome, Ok(())),
                    (false, _) => {
                        matches!(outcome, Err(CommandError::Forbidden(Denied::Missing(_))))
                    }
                    (true, false) => {
                        matches!(outcome, Err(CommandError::Forbidden(Denied::Outranked(_))))
                    }
                };
                assert!(
                    expected,
                    "{} / {command} on a user holding {}: {outcome:?}",
                    actor.name(),
                    held.name()
                );
            }
        }
    }
}

async fn only_the_platform_operator_creates_tenants(db: TestDatabase) {
    let ports = ports(&db).await;
    let (own, _) = tenant(&ports).await;
    let (owner, _) = member(&ports, own, BuiltInRole::Owner).await;
    let create = CreateTenant {
        tenant: TenantId::generate(),
        name: "Rogue".into(),
        settings: TenantSettings::default(),
        owner: new_user("x@example.org"),
    };
    assert!(matches!(
        create_tenant(&ports, &caller(owner), create).await,
        Err(CommandError::Forbidden(Denied::PlatformOnly))
    ));
}

async fn bad_commands_are_typed_and_append_nothing(db: TestDatabase) {
    let ports = ports(&db).await;
    let (tenant_id, owner) = tenant(&ports).await;
    let before = log_length(&ports).await;

    let unknown = register_user(
        &ports,
        &operator(),
        TenantId::generate(),
        new_user("a@example.org"),
    )
    .await;
    assert!(
        matches!(unknown, Err(CommandError::NotFound("tenant"))),
        "{unknown:?}"
    );
    let malformed = register_user(&ports, &operator(), tenant_id, new_user("not an email")).await;
    assert!(
        matches!(malformed, Err(CommandError::Invalid(_))),
        "{malformed:?}"
    );
    let bad_phone = NewUser {
        profile: Profile {
            phone: Some("call me".into()),
            ..Profile::default()
        },
        ..new_user("b@example.org")
    };
    assert!(matches!(
        register_user(&ports, &operator(), tenant_id, bad_phone).await,
        Err(CommandError::Invalid(_))
    ));
    let mut stale = operator();
    stale.expected_version = Some(StreamVersion(7));
    let outcome = update_profile(
        &ports,
        &stale,
        tenant_id,
        owner,
        Profile {
            display_name: Some("X".into()),
            ..Profile::default()
        },
    )
    .await;
    assert!(
        matches!(
            outcome,
            Err(CommandError::StaleVersion {
                expected: StreamVersion(7),
                actual: StreamVersion(1)
            })
        ),
        "{outcome:?}"
    );
    let ghost = change_user_status(
        &ports,
        &operator(),
        tenant_id,
        Uuid::now_v7(),
        StatusChange::Suspend,
    )
    .await;
    assert!(
        matches!(ghost, Err(CommandError::NotFound("user"))),
        "{ghost:?}"
    );
    assert_eq!(
        log_length(&ports).await,
        before,
        "refused commands appended nothing"
    );

    // The same email twice in one tenant: the second is refused (its claim
    // is the only thing it may not append).
    register_user(&ports, &operator(), tenant_id, new_user("dup@example.org"))
        .await
        .unwrap();
    let after_first = log_length(&ports).await;
    let twin = register_user(
        &ports,
        &operator(),
        tenant_id,
        new_user("  DUP@example.org"),
    )
    .await;
    assert!(matches!(twin, Err(CommandError::EmailTaken)), "{twin:?}");
    assert_eq!(log_length(&ports).await, after_first);
    // The same address in another tenant is fine.
    let (other, _) = tenant(&ports).await;
    register_user(&ports, &operator(), other, new_user("dup@example.org"))
        .await
        .unwrap();

    set_tenant_suspended(&ports, &operator(), tenant_id, true)
        .await
        .unwrap();
    let suspended =
        register_user(&ports, &operator(), tenant_id, new_user("late@example.org")).await;
    assert!(
        matches!(suspended, Err(CommandError::TenantSuspended)),
        "{suspended:?}"
    );
}

async fn retried_commands_answer_as_the_first_time(db: TestDatabase) {
    let ports = ports(&db).await;
    let create_caller = operator();
    let tenant_id = TenantId::generate();
    let create = CreateTenant {
        tenant: tenant_id,
        name: "Acme".into(),
        settings: TenantSettings::default(),
        owner: new_user("o@example.org"),
    };
    let first = create_tenant(&ports, &create_caller, create.clone())
        .await
        .unwrap();
    let length = log_length(&ports).await;
    assert_eq!(
        create_tenant(&ports, &create_caller, create).await.unwrap(),
        first
    );
    assert_eq!(
        log_length(&ports).await,
        length,
        "a retried multi-step command appends nothing"
    );

    let suspend = operator();
    let suspended = set_tenant_suspended(&ports, &suspend, tenant_id, true)
        .await
        .unwrap();
    // Retrying "suspend" after it succeeded is not "already suspended".
    assert_eq!(
        set_tenant_suspended(&ports, &suspend, tenant_id, true)
            .await
            .unwrap(),
        suspended
    );
    // A new suspend command is.
    assert!(matches!(
        set_tenant_suspended(&ports, &operator(), tenant_id, true).await,
        Err(CommandError::Tenant(_))
    ));
}

async fn the_last_owner_stays(db: TestDatabase) {
    let ports = ports(&db).await;
    let (tenant_id, owner) = tenant(&ports).await;
    let revoke = MembershipCommand::Revoke {
        user: owner,
        role: RoleRef::BuiltIn(BuiltInRole::Owner),
    };
    let outcome = change_memberships(&ports, &operator(), tenant_id, revoke.clone()).await;
    assert!(
        matches!(
            outcome,
            Err(CommandError::Membership(MembershipError::LastOwner))
        ),
        "{outcome:?}"
    );
    let (_, second) = member(&ports, tenant_id, BuiltInRole::Owner).await;
    change_memberships(&ports, &operator(), tenant_id, revoke)
        .await
        .unwrap();
    let principal = member_principal(&*ports.store, tenant_id, owner)
        .await
        .unwrap();
    assert!(
        principal
            .authorize(tenant_id, Permission::TenantRead, None)
            .is_err(),
        "the revoked owner holds nothing"
    );
    let principal = member_principal(&*ports.store, tenant_id, second)
        .await
        .unwrap();
    assert!(principal
        .authorize(tenant_id, Permission::TenantSuspend, None)
        .is_ok());
}

async fn personal_data_is_sealed_at_rest_and_readable_by_those_allowed(db: TestDatabase) {
    let ports = ports(&db).await;
    let (tenant_id, _) = tenant(&ports).await;
    let marker = "q7z3marker";
    let user = NewUser {
        address_vouched: false,
        user: Uuid::now_v7(),
        email: format!("{marker}-mail@example.org"),
        profile: Profile {
            display_name: Some(format!("{marker}-name")),
            phone: Some("+44 7700 900 123".into()),
            attributes: BTreeMap::from([("team".to_owned(), format!("{marker}-attr"))]),
        },
        invited: true,
        password: None,
    };
    let id = user.user;
    register_user(&ports, &operator(), tenant_id, user)
        .await
        .unwrap();

    let dump: Vec<u8> = if db.is_postgres() {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(db.url())
            .await
            .unwrap();
        let text: String = sqlx::query_scalar(
            "SELECT concat_ws(' ', (SELECT string_agg(e::text || encode(payload, 'escape'), ' ') FROM events e),
                                   (SELECT string_agg(c::text, ' ') FROM commands c),
                                   (SELECT string_agg(k::text, ' ') FROM subject_keys k))",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        text.into_bytes()
    } else {
        let path = db.url().trim_start_matches("sqlite://").to_owned();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
        bytes
    };
    for needle in [marker.as_bytes(), b"7700 900"] {
        assert!(
            !dump.windows(needle.len()).any(|w| w == needle),
            "plaintext personal data at rest"
        );
    }

    let (auditor, _) = member(&ports, tenant_id, BuiltInRole::Auditor).await;
    assert!(matches!(
        read_personal_data(&ports, &caller(auditor), tenant_id, id).await,
        Err(CommandError::Forbidden(Denied::Missing(
            Permission::UserReadPersonal
        )))
    ));
    let (officer, _) = member(&ports, tenant_id, BuiltInRole::PrivacyOfficer).await;
    let record = read_personal_data(&ports, &caller(officer.clone()), tenant_id, id)
        .await
        .unwrap();
    assert_eq!(
        record.email.as_deref(),
        Some(format!("{marker}-mail@example.org").as_str())
    );
    assert_eq!(
        record.profile.attributes.get("team").map(String::as_str),
        Some(format!("{marker}-attr").as_str())
    );
    // The user reads their own data without the permission (self-service).
    let me = Principal::Member {
        tenant: tenant_id,
        user: id,
        permissions: PermissionSet::default(),
    };
    assert!(read_personal_data(&ports, &caller(me), tenant_id, id)
        .await
        .is_ok());

    ports.vault.erase_subject(tenant_id, id).await.unwrap();
    let erased = read_personal_data(&ports, &caller(officer), tenant_id, id)
        .await
        .unwrap();
    assert_eq!(
        (erased.email, erased.profile.display_name),
        (None, None),
        "erased reads as absent, not as an error"
    );
}

async fn personal_data_is_read_from_a_stream_of_any_length(db: TestDatabase) {
    use custodia_application::{AppendRequest, ExpectedVersion};
    use custodia_domain::aggregate::EventSchema;
    use custodia_domain::identity::user::UserEvent;
    use custodia_domain::{ChainId, EventId, Metadata, NewEvent, StreamCategory, StreamId};
    let ports = ports(&db).await;
    let (tenant, _) =
        custodia_tests::identity::tenant_with_owner(&ports, "owner@example.org", None).await;
    let user = Uuid::now_v7();
    let new = NewUser {
        address_vouched: false,
        user,
        email: "first@example.org".into(),
        profile: Profile::default(),
        invited: false,
        password: None,
    };
    let operator = || caller(Principal::PlatformOperator);
    register_user(&ports, &operator(), tenant, new)
        .await
        .unwrap();
    // Ten thousand changes of status, then a new address.
    let stream = StreamId::new(StreamCategory::parse("user").unwrap(), user);
    for batch in 0..10 {
        let events = (0..1000)
            .map(|i| {
                let form = if (batch * 1000 + i) % 2 == 0 {
                    UserEvent::Suspended
                } else {
                    UserEvent::Reactivated
                }
                .to_stored();
                NewEvent {
                    event_id: EventId::generate(),
                    event_type: form.event_type,
                    schema_version: form.schema_version,
                    payload: form.payload,
                }
            })
            .collect();
        let metadata = Metadata {
            actor: Actor::System,
            command_id: CommandId::generate(),
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            origin: Origin::parse("test").unwrap(),
        };
        let request = AppendRequest::new(
            ChainId::Tenant(tenant),
            stream.clone(),
            ExpectedVersion::Any,
            events,
            metadata,
        )
        .unwrap();
        ports.store.append(request).await.unwrap();
    }
    change_email(&ports, &operator(), tenant, user, "latest@example.org")
        .await
        .unwrap();
    let record = read_personal_data(&ports, &operator(), tenant, user)
        .await
        .unwrap();
    // Waiting for its verification (the current one stays until then).
    assert_eq!(record.email.as_deref(), Some("first@example.org"));
    assert_eq!(record.pending_email.as_deref(), Some("latest@example.org"));
}

async fn concurrent_changes_of_different_settings_both_hold(db: TestDatabase) {
    use custodia_domain::identity::tenant::SettingsChange;
    let ports = ports(&db).await;
    let (tenant, _) =
        custodia_tests::identity::tenant_with_owner(&ports, "owner@example.org", None).await;
    let operator = || caller(Principal::PlatformOperator);
    let mfa = SettingsChange {
        mfa_required: Some(true),
        ..SettingsChange::default()
    };
    let lockout = SettingsChange {
        lockout_minutes: Some(60),
        ..SettingsChange::default()
    };
    let (first, second) = (operator(), operator());
    let (a, b) = tokio::join!(
        update_tenant_settings(&ports, &first, tenant, mfa),
        update_tenant_settings(&ports, &second, tenant, lockout),
    );
    a.unwrap();
    b.unwrap();
    use custodia_domain::aggregate::{Aggregate, EventSchema, StoredForm};
    use custodia_domain::identity::tenant::{Tenant, TenantEvent};
    let stream = custodia_domain::StreamId::new(
        custodia_domain::StreamCategory::parse("tenant").unwrap(),
        tenant.as_uuid(),
    );
    let events: Vec<TenantEvent> = ports
        .store
        .read_stream(&stream, StreamVersion::EMPTY, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            TenantEvent::from_stored(&StoredForm {
                event_type: e.event_type,
                schema_version: e.schema_version,
                payload: e.payload,
            })
            .unwrap()
        })
        .collect();
    let state = Tenant::fold(&events);
    let settings = state.settings().unwrap();
    assert!(settings.mfa_required, "neither change undid the other");
    assert_eq!(settings.lockout_minutes, 60);
}
