//! Access control under attack, on both backends: removing access takes
//! effect at the next request, nobody acts on someone who holds more than
//! they do, the last active owner stays, commands check everything before
//! they write, and an unknown user is "not found".

use custodia_application::commands::api_keys::{create_api_key, identify_api_key, revoke_api_key};
use custodia_application::commands::credentials::{
    change_password, enroll_totp, import_password_hash, set_password, unlock,
};
use custodia_application::commands::sessions::{
    authenticate, refresh_session, revoke_all_sessions, revoke_session, start_session,
    SessionFailure, SessionTokens,
};
use custodia_application::commands::tenants::{change_memberships, set_tenant_suspended};
use custodia_application::commands::users::{
    change_email, change_user_status, register_user, update_profile, NewUser, Profile, StatusChange,
};
use custodia_application::commands::{member_principal, Caller, CommandError, Ports};
use custodia_domain::identity::membership::{MembershipCommand, MembershipError, RoleRef};
use custodia_domain::rbac::{BuiltInRole, Denied, Permission, PermissionSet};
use custodia_domain::{Actor, CommandId, TenantId, Timestamp};
use custodia_tests::identity::{operator, ports, tenant_with_owner};
use custodia_tests::{backends, TestDatabase};
use uuid::Uuid;

backends!(
    suspension_and_deletion_end_access_at_once,
    a_suspended_tenant_opens_nothing,
    api_keys_act_for_the_person_who_minted_them,
    a_new_password_ends_the_other_sessions,
    a_revoked_role_is_gone_at_the_next_request,
    a_login_racing_a_suspension_leaves_no_session,
    an_admin_cannot_take_over_an_owner,
    the_last_active_owner_stays,
    registration_checks_everything_before_writing,
    a_command_on_several_streams_writes_all_or_nothing,
    concurrent_email_changes_leave_no_claim_behind,
    unknown_users_are_not_found,
);

const PASSWORD: &str = "correct horse battery staple";

fn email(label: &str) -> String {
    format!("{label}-{}@example.org", Uuid::now_v7().simple())
}

/// A user of `tenant` with `role` and [`PASSWORD`]; returns the id and email.
async fn user_with_role(ports: &Ports, tenant: TenantId, role: BuiltInRole) -> (Uuid, String) {
    let address = email(role.name());
    let user = Uuid::now_v7();
    let new = NewUser {
        address_vouched: false,
        user,
        email: address.clone(),
        profile: Profile::default(),
        invited: false,
        password: Some(PASSWORD.into()),
    };
    register_user(ports, &operator(), tenant, new)
        .await
        .unwrap();
    let grant = MembershipCommand::Grant {
        user,
        role: RoleRef::BuiltIn(role),
    };
    change_memberships(ports, &operator(), tenant, grant)
        .await
        .unwrap();
    (user, address)
}

async fn sign_in(ports: &Ports, tenant: TenantId, address: &str) -> SessionTokens {
    start_session(
        ports,
        tenant,
        address,
        PASSWORD,
        None,
        None,
        Timestamp::now(),
    )
    .await
    .unwrap()
}

/// The caller a signed-in user's request becomes.
async fn as_user(ports: &Ports, tenant: TenantId, user: Uuid, session: Option<Uuid>) -> Caller {
    Caller {
        principal: member_principal(&*ports.store, tenant, user).await.unwrap(),
        actor: Actor::User(user),
        session,
        ..operator()
    }
}

/// The same caller for its next command (a new idempotency key).
fn fresh(caller: &Caller) -> Caller {
    Caller {
        command_id: CommandId::generate(),
        ..caller.clone()
    }
}

async fn refused(ports: &Ports, tokens: &SessionTokens) -> bool {
    matches!(
        authenticate(ports, &tokens.access_token, Timestamp::now()).await,
        Err(SessionFailure::Revoked)
    )
}

async fn refresh_refused(ports: &Ports, tenant: TenantId, tokens: &SessionTokens) -> bool {
    matches!(
        refresh_session(ports, Some(tenant), &tokens.refresh_token, Timestamp::now()).await,
        Err(SessionFailure::Revoked)
    )
}

async fn log_length(ports: &Ports) -> u64 {
    ports
        .store
        .chains()
        .await
        .unwrap()
        .iter()
        .map(|c| c.events)
        .sum()
}

async fn suspension_and_deletion_end_access_at_once(db: TestDatabase) {
    let ports = ports(&db).await;
    let (tenant, owner) = tenant_with_owner(&ports, &email("owner"), Some(PASSWORD)).await;
    let (admin, address) = user_with_role(&ports, tenant, BuiltInRole::Admin).await;
    let (laptop, phone) = (
        sign_in(&ports, tenant, &address).await,
        sign_in(&ports, tenant, &address).await,
    );
    let by_owner = as_user(&ports, tenant, owner, None).await;
    change_user_status(
        &ports,
        &fresh(&by_owner),
        tenant,
        admin,
        StatusChange::Suspend,
    )
    .await
    .unwrap();
    for tokens in [&laptop, &phone] {
        assert!(
            refused(&ports, tokens).await,
            "access token after suspension"
        );
        assert!(
            refresh_refused(&ports, tenant, tokens).await,
            "refresh token after suspension"
        );
    }
    // Reactivation does not bring the old sessions back: they were ended.
    change_user_status(
        &ports,
        &fresh(&by_owner),
        tenant,
        admin,
        StatusChange::Reactivate,
    )
    .await
    .unwrap();
    assert!(refused(&ports, &laptop).await);
    let again = sign_in(&ports, tenant, &address).await;
    assert!(authenticate(&ports, &again.access_token, Timestamp::now())
        .await
        .is_ok());
    change_user_status(
        &ports,
        &fresh(&by_owner),
        tenant,
        admin,
        StatusChange::Delete,
    )
    .await
    .unwrap();
    assert!(refused(&ports, &again).await, "access token after deletion");
    assert!(refresh_refused(&ports, tenant, &again).await);
}

async fn a_suspended_tenant_opens_nothing(db: TestDatabase) {
    let ports = ports(&db).await;
    let address = email("owner");
    let (tenant, owner) = tenant_with_owner(&ports, &address, Some(PASSWORD)).await;
    let tokens = sign_in(&ports, tenant, &address).await;
    let permissions = PermissionSet::from(&[Permission::UserRead][..]);
    let key = create_api_key(
        &ports,
        &as_user(&ports, tenant, owner, None).await,
        tenant,
        "ci",
        permissions,
        Timestamp::now(),
    )
    .await
    .unwrap();
    set_tenant_suspended(&ports, &operator(), tenant, true)
        .await
        .unwrap();
    assert!(refused(&ports, &tokens).await, "access token");
    assert!(refresh_refused(&ports, tenant, &tokens).await, "refresh");
    assert!(
        matches!(
            identify_api_key(&ports, &key.key, Timestamp::now()).await,
            Err(SessionFailure::Revoked)
        ),
        "API key"
    );
    // Reactivating the tenant restores its sessions and keys (a tenant's
    // suspension is not a judgement on its users).
    set_tenant_suspended(&ports, &operator(), tenant, false)
        .await
        .unwrap();
    assert!(!refused(&ports, &tokens).await);
    assert!(identify_api_key(&ports, &key.key, Timestamp::now())
        .await
        .is_ok());
}

async fn api_keys_act_for_the_person_who_minted_them(db: TestDatabase) {
    let ports = ports(&db).await;
    let (tenant, owner) = tenant_with_owner(&ports, &email("owner"), Some(PASSWORD)).await;
    let (admin, _) = user_with_role(&ports, tenant, BuiltInRole::Admin).await;
    let by_admin = as_user(&ports, tenant, admin, None).await;
    let wide = PermissionSet::from(
        &[
            Permission::UserRead,
            Permission::UserCreate,
            Permission::ApiKeyManage,
        ][..],
    );
    let key = create_api_key(
        &ports,
        &fresh(&by_admin),
        tenant,
        "ci",
        wide,
        Timestamp::now(),
    )
    .await
    .unwrap();
    let principal = || async { identify_api_key(&ports, &key.key, Timestamp::now()).await };
    let (_, _, service) = principal().await.unwrap();
    assert_eq!(
        service.authorize(tenant, Permission::UserCreate, None),
        Ok(())
    );
    // A key does not mint keys (they would outlive the person behind it).
    let as_key = Caller {
        principal: service,
        actor: Actor::Service(key.key_id),
        ..operator()
    };
    let minted = create_api_key(
        &ports,
        &as_key,
        tenant,
        "child",
        PermissionSet::from(&[Permission::UserRead][..]),
        Timestamp::now(),
    )
    .await;
    assert!(
        matches!(minted, Err(CommandError::Forbidden(_))),
        "{minted:?}"
    );
    // Demoted: the key keeps only what its creator still holds.
    let by_owner = as_user(&ports, tenant, owner, None).await;
    let grant = MembershipCommand::Grant {
        user: admin,
        role: RoleRef::BuiltIn(BuiltInRole::Member),
    };
    change_memberships(&ports, &fresh(&by_owner), tenant, grant)
        .await
        .unwrap();
    let revoke = MembershipCommand::Revoke {
        user: admin,
        role: RoleRef::BuiltIn(BuiltInRole::Admin),
    };
    change_memberships(&ports, &fresh(&by_owner), tenant, revoke)
        .await
        .unwrap();
    let (_, _, narrowed) = principal().await.unwrap();
    assert_eq!(
        narrowed.authorize(tenant, Permission::UserRead, None),
        Ok(())
    );
    assert_eq!(
        narrowed.authorize(tenant, Permission::UserCreate, None),
        Err(Denied::Missing(Permission::UserCreate))
    );
    // Deleted: the key opens nothing.
    change_user_status(
        &ports,
        &fresh(&by_owner),
        tenant,
        admin,
        StatusChange::Delete,
    )
    .await
    .unwrap();
    assert!(matches!(principal().await, Err(SessionFailure::Revoked)));
}

async fn a_new_password_ends_the_other_sessions(db: TestDatabase) {
    let ports = ports(&db).await;
    let (tenant, owner) = tenant_with_owner(&ports, &email("owner"), Some(PASSWORD)).await;
    let (user, address) = user_with_role(&ports, tenant, BuiltInRole::Member).await;
    let (here, elsewhere) = (
        sign_in(&ports, tenant, &address).await,
        sign_in(&ports, tenant, &address).await,
    );
    // The user changes it: the session they did it from stays.
    let me = as_user(&ports, tenant, user, Some(here.session)).await;
    // Not without the current one: a stolen access token alone does not
    // replace the password.
    let stolen = set_password(&ports, &fresh(&me), tenant, user, "the thief's choice here").await;
    assert!(
        matches!(
            stolen,
            Err(CommandError::Forbidden(Denied::CurrentPasswordRequired))
        ),
        "{stolen:?}"
    );
    let new = "another long passphrase";
    change_password(
        &ports,
        &fresh(&me),
        tenant,
        user,
        PASSWORD,
        new,
        Timestamp::now(),
    )
    .await
    .unwrap();
    assert!(
        !refused(&ports, &here).await,
        "the session it was changed in"
    );
    assert!(refused(&ports, &elsewhere).await, "every other session");
    assert!(refresh_refused(&ports, tenant, &elsewhere).await);
    // An admin sets it: every session ends.
    let by_owner = as_user(&ports, tenant, owner, None).await;
    set_password(&ports, &fresh(&by_owner), tenant, user, PASSWORD)
        .await
        .unwrap();
    assert!(refused(&ports, &here).await, "set by someone else");
    // An imported hash is a new password too.
    let again = sign_in(&ports, tenant, &address).await;
    let imported = "$2a$05$XXXXXXXXXXXXXXXXXXXXXOAcXxm9kjPGEMsLznoKqmqw7tc8WCx4a";
    import_password_hash(&ports, &fresh(&by_owner), tenant, user, imported)
        .await
        .unwrap();
    assert!(refused(&ports, &again).await, "imported");
    // The first login with the imported password starts a session (it is
    // rehashed to Argon2id on the way).
    start_session(
        &ports,
        tenant,
        &address,
        "U*U*U",
        None,
        None,
        Timestamp::now(),
    )
    .await
    .expect("the imported password signs in at once");
    // Nobody imports a password for themselves, nor through a key they
    // minted sets their own: a stolen token or key alone takes no account.
    let own_import = import_password_hash(&ports, &fresh(&by_owner), tenant, owner, imported).await;
    assert!(
        matches!(
            own_import,
            Err(CommandError::Forbidden(Denied::CurrentPasswordRequired))
        ),
        "{own_import:?}"
    );
    let all = PermissionSet::from(Permission::ALL);
    let key = create_api_key(
        &ports,
        &fresh(&by_owner),
        tenant,
        "ci",
        all,
        Timestamp::now(),
    )
    .await
    .unwrap();
    let (_, _, service) = identify_api_key(&ports, &key.key, Timestamp::now())
        .await
        .unwrap();
    let as_key = Caller {
        principal: service,
        actor: Actor::Service(key.key_id),
        ..operator()
    };
    let through_key = set_password(&ports, &as_key, tenant, owner, "the key's own choice").await;
    assert!(
        matches!(
            through_key,
            Err(CommandError::Forbidden(Denied::CurrentPasswordRequired))
        ),
        "{through_key:?}"
    );
    // One whose cost would make every login expensive is refused.
    let costly = "$2b$31$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
    let refused_import =
        import_password_hash(&ports, &fresh(&by_owner), tenant, user, costly).await;
    assert!(
        matches!(refused_import, Err(CommandError::Invalid(_))),
        "{refused_import:?}"
    );
}

async fn a_login_racing_a_suspension_leaves_no_session(db: TestDatabase) {
    let ports = ports(&db).await;
    let (tenant, owner) = tenant_with_owner(&ports, &email("owner"), Some(PASSWORD)).await;
    let by_owner = as_user(&ports, tenant, owner, None).await;
    for _ in 0..5 {
        let (user, address) = user_with_role(&ports, tenant, BuiltInRole::Member).await;
        let suspender = fresh(&by_owner);
        let (login, suspension) = tokio::join!(
            start_session(
                &ports,
                tenant,
                &address,
                PASSWORD,
                None,
                None,
                Timestamp::now()
            ),
            change_user_status(&ports, &suspender, tenant, user, StatusChange::Suspend),
        );
        suspension.unwrap();
        // Whichever came first, the suspended user holds no working session,
        // and reactivation does not bring one back.
        change_user_status(
            &ports,
            &fresh(&by_owner),
            tenant,
            user,
            StatusChange::Reactivate,
        )
        .await
        .unwrap();
        if let Ok(tokens) = login {
            // The answer itself is in the message: only `Revoked` passes.
            let answer = authenticate(&ports, &tokens.access_token, Timestamp::now()).await;
            assert!(
                matches!(answer, Err(SessionFailure::Revoked)),
                "a session survived the suspension: {answer:?}"
            );
        }
    }
}

async fn a_revoked_role_is_gone_at_the_next_request(db: TestDatabase) {
    let ports = ports(&db).await;
    let (tenant, owner) = tenant_with_owner(&ports, &email("owner"), Some(PASSWORD)).await;
    let (admin, address) = user_with_role(&ports, tenant, BuiltInRole::Admin).await;
    let tokens = sign_in(&ports, tenant, &address).await;
    let revoke = MembershipCommand::Revoke {
        user: admin,
        role: RoleRef::BuiltIn(BuiltInRole::Admin),
    };
    change_memberships(
        &ports,
        &as_user(&ports, tenant, owner, None).await,
        tenant,
        revoke,
    )
    .await
    .unwrap();
    let (principal, _) = authenticate(&ports, &tokens.access_token, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(
        principal.authorize(tenant, Permission::UserCreate, None),
        Err(Denied::Missing(Permission::UserCreate))
    );
}

async fn an_admin_cannot_take_over_an_owner(db: TestDatabase) {
    let ports = ports(&db).await;
    let owner_email = email("owner");
    let (tenant, owner) = tenant_with_owner(&ports, &owner_email, Some(PASSWORD)).await;
    let (admin, _) = user_with_role(&ports, tenant, BuiltInRole::Admin).await;
    let by_admin = as_user(&ports, tenant, admin, None).await;
    let before = log_length(&ports).await;
    let owner_role = RoleRef::BuiltIn(BuiltInRole::Owner);
    let bcrypt = "$2b$04$ZsRu4ZR0ViMaGd0v7ALBkuHnhAXRDuSoDWj/lfUSnq6dhNxY8Jb3a";
    let attempts: Vec<(&str, Result<(), CommandError>)> = vec![
        (
            "set password",
            set_password(
                &ports,
                &fresh(&by_admin),
                tenant,
                owner,
                "a password of my choosing",
            )
            .await
            .map(drop),
        ),
        (
            "import password hash",
            import_password_hash(&ports, &fresh(&by_admin), tenant, owner, bcrypt)
                .await
                .map(drop),
        ),
        (
            "change email",
            change_email(&ports, &fresh(&by_admin), tenant, owner, &email("mine"))
                .await
                .map(drop),
        ),
        (
            "update profile",
            update_profile(&ports, &fresh(&by_admin), tenant, owner, Profile::default())
                .await
                .map(drop),
        ),
        (
            "enroll TOTP",
            enroll_totp(&ports, &fresh(&by_admin), tenant, owner)
                .await
                .map(drop),
        ),
        (
            "unlock",
            unlock(&ports, &fresh(&by_admin), tenant, owner, Timestamp::now())
                .await
                .map(drop),
        ),
        (
            "suspend",
            change_user_status(
                &ports,
                &fresh(&by_admin),
                tenant,
                owner,
                StatusChange::Suspend,
            )
            .await
            .map(drop),
        ),
        (
            "delete",
            change_user_status(
                &ports,
                &fresh(&by_admin),
                tenant,
                owner,
                StatusChange::Delete,
            )
            .await
            .map(drop),
        ),
        (
            "revoke the owner role",
            change_memberships(
                &ports,
                &fresh(&by_admin),
                tenant,
                MembershipCommand::Revoke {
                    user: owner,
                    role: owner_role.clone(),
                },
            )
            .await
            .map(drop),
        ),
        (
            "remove the member",
            change_memberships(
                &ports,
                &fresh(&by_admin),
                tenant,
                MembershipCommand::RemoveMember { user: owner },
            )
            .await
            .map(drop),
        ),
        (
            "grant a role",
            change_memberships(
                &ports,
                &fresh(&by_admin),
                tenant,
                MembershipCommand::Grant {
                    user: owner,
                    role: RoleRef::BuiltIn(BuiltInRole::Member),
                },
            )
            .await
            .map(drop),
        ),
    ];
    assert_eq!(log_length(&ports).await, before, "nothing was written");
    let owners_key = create_api_key(
        &ports,
        &fresh(&as_user(&ports, tenant, owner, None).await),
        tenant,
        "owner's",
        PermissionSet::from(&[Permission::UserRead][..]),
        Timestamp::now(),
    )
    .await
    .unwrap();
    let owners_session = sign_in(&ports, tenant, &owner_email).await;
    let before = log_length(&ports).await;
    let mut attempts = attempts;
    attempts.push((
        "sign out everywhere",
        revoke_all_sessions(&ports, &fresh(&by_admin), tenant, owner, Timestamp::now())
            .await
            .map(drop),
    ));
    attempts.push((
        "revoke a session",
        revoke_session(
            &ports,
            &fresh(&by_admin),
            tenant,
            owners_session.session,
            Timestamp::now(),
        )
        .await
        .map(drop),
    ));
    attempts.push((
        "revoke the owner's key",
        revoke_api_key(
            &ports,
            &fresh(&by_admin),
            tenant,
            owners_key.key_id,
            Timestamp::now(),
        )
        .await
        .map(drop),
    ));
    for (what, outcome) in attempts {
        assert!(
            matches!(outcome, Err(CommandError::Forbidden(Denied::Outranked(_)))),
            "admin on owner, {what}: {outcome:?}"
        );
    }
    assert_eq!(log_length(&ports).await, before, "nothing was written");
    // The other way round is the owner's right.
    let by_owner = as_user(&ports, tenant, owner, None).await;
    set_password(
        &ports,
        &fresh(&by_owner),
        tenant,
        admin,
        "an owner's reset password",
    )
    .await
    .unwrap();
}

async fn the_last_active_owner_stays(db: TestDatabase) {
    let ports = ports(&db).await;
    let (tenant, owner) = tenant_with_owner(&ports, &email("owner"), Some(PASSWORD)).await;
    let me = as_user(&ports, tenant, owner, None).await;
    let last = |outcome: Result<(), CommandError>| {
        matches!(
            outcome,
            Err(CommandError::Membership(MembershipError::LastOwner))
        )
    };
    for change in [StatusChange::Suspend, StatusChange::Delete] {
        let outcome = change_user_status(&ports, &fresh(&me), tenant, owner, change).await;
        assert!(last(outcome.map(drop)), "{change:?} of the only owner");
    }
    // A second owner who is suspended does not count.
    let (second, _) = user_with_role(&ports, tenant, BuiltInRole::Owner).await;
    change_user_status(&ports, &fresh(&me), tenant, second, StatusChange::Suspend)
        .await
        .unwrap();
    let owner_role = RoleRef::BuiltIn(BuiltInRole::Owner);
    let attempts = [
        change_user_status(&ports, &fresh(&me), tenant, owner, StatusChange::Delete)
            .await
            .map(drop),
        change_memberships(
            &ports,
            &fresh(&me),
            tenant,
            MembershipCommand::Revoke {
                user: owner,
                role: owner_role,
            },
        )
        .await
        .map(drop),
        change_memberships(
            &ports,
            &fresh(&me),
            tenant,
            MembershipCommand::RemoveMember { user: owner },
        )
        .await
        .map(drop),
    ];
    for outcome in attempts {
        assert!(last(outcome), "with the other owner suspended");
    }
    // Two owners suspending each other at the same moment: the memberships
    // decide both, one after the other, so one is refused.
    change_user_status(
        &ports,
        &fresh(&me),
        tenant,
        second,
        StatusChange::Reactivate,
    )
    .await
    .unwrap();
    let them = as_user(&ports, tenant, second, None).await;
    let (mine, theirs) = (fresh(&me), fresh(&them));
    let (a, b) = tokio::join!(
        change_user_status(&ports, &mine, tenant, second, StatusChange::Suspend),
        change_user_status(&ports, &theirs, tenant, owner, StatusChange::Suspend),
    );
    assert!(
        a.is_ok() != b.is_ok(),
        "exactly one suspension passes: {a:?} / {b:?}"
    );
    let refused = if a.is_ok() { b } else { a };
    assert!(
        last(refused.map(drop)),
        "the other is the last-owner refusal"
    );
    // Restore: whoever was suspended comes back.
    let suspended = if is_suspended(&ports, second).await {
        second
    } else {
        owner
    };
    change_user_status(
        &ports,
        &operator(),
        tenant,
        suspended,
        StatusChange::Reactivate,
    )
    .await
    .unwrap();
    change_user_status(&ports, &fresh(&me), tenant, second, StatusChange::Suspend)
        .await
        .unwrap();
    // Once the other owner is back, the first may go.
    change_user_status(
        &ports,
        &fresh(&me),
        tenant,
        second,
        StatusChange::Reactivate,
    )
    .await
    .unwrap();
    change_user_status(&ports, &fresh(&me), tenant, owner, StatusChange::Delete)
        .await
        .unwrap();
}

/// Is `user` suspended now?
async fn is_suspended(ports: &Ports, user: Uuid) -> bool {
    let stream = custodia_domain::StreamId::new(
        custodia_domain::StreamCategory::parse("user").unwrap(),
        user,
    );
    let events = ports
        .store
        .read_stream(&stream, custodia_domain::StreamVersion::EMPTY, 1000)
        .await
        .unwrap();
    events
        .last()
        .is_some_and(|e| e.event_type.as_str() == "UserSuspended")
}

async fn registration_checks_everything_before_writing(db: TestDatabase) {
    let ports = ports(&db).await;
    let (tenant, _) = tenant_with_owner(&ports, &email("owner"), None).await;
    let before = log_length(&ports).await;
    let address = email("new");
    let new = |password: &str| NewUser {
        address_vouched: false,
        user: Uuid::now_v7(),
        email: address.clone(),
        profile: Profile::default(),
        invited: false,
        password: Some(password.into()),
    };
    let short = register_user(&ports, &operator(), tenant, new("short")).await;
    assert!(matches!(short, Err(CommandError::Invalid(_))), "{short:?}");
    assert_eq!(log_length(&ports).await, before, "nothing was written");
    // The retry is not refused as a conflict: the address was never taken.
    register_user(&ports, &operator(), tenant, new(PASSWORD))
        .await
        .unwrap();
}

async fn a_command_on_several_streams_writes_all_or_nothing(db: TestDatabase) {
    let ports = ports(&db).await;
    let (tenant, _) = tenant_with_owner(&ports, &email("owner"), None).await;
    let user = Uuid::now_v7();
    let first = NewUser {
        address_vouched: false,
        user,
        email: email("first"),
        profile: Profile::default(),
        invited: false,
        password: None,
    };
    register_user(&ports, &operator(), tenant, first)
        .await
        .unwrap();
    // The same user id again with a free address: its claim would succeed,
    // the user part is refused, and so the whole command writes nothing.
    let before = log_length(&ports).await;
    let address = email("second");
    let again = NewUser {
        address_vouched: false,
        user,
        email: address.clone(),
        profile: Profile::default(),
        invited: false,
        password: Some(PASSWORD.into()),
    };
    let refused = register_user(&ports, &operator(), tenant, again).await;
    assert!(matches!(refused, Err(CommandError::User(_))), "{refused:?}");
    assert_eq!(log_length(&ports).await, before, "no claim, no password");
    let other = NewUser {
        address_vouched: false,
        user: Uuid::now_v7(),
        email: address,
        profile: Profile::default(),
        invited: false,
        password: None,
    };
    register_user(&ports, &operator(), tenant, other)
        .await
        .expect("the address was never claimed");
}

async fn concurrent_email_changes_leave_no_claim_behind(db: TestDatabase) {
    let ports = ports(&db).await;
    let (tenant, owner) = tenant_with_owner(&ports, &email("owner"), None).await;
    let by_owner = as_user(&ports, tenant, owner, None).await;
    for _ in 0..4 {
        let (user, _) = user_with_role(&ports, tenant, BuiltInRole::Member).await;
        let (b, c) = (email("b"), email("c"));
        let (one, two) = (fresh(&by_owner), fresh(&by_owner));
        let (first, second) = tokio::join!(
            change_email(&ports, &one, tenant, user, &b),
            change_email(&ports, &two, tenant, user, &c),
        );
        first.unwrap();
        second.unwrap();
        // Whichever change won, the address the user does not hold now is
        // free for someone else: exactly one of the two registrations works.
        let mut free = 0;
        for address in [&b, &c] {
            let other = NewUser {
                address_vouched: false,
                user: Uuid::now_v7(),
                email: address.clone(),
                profile: Profile::default(),
                invited: false,
                password: None,
            };
            match register_user(&ports, &operator(), tenant, other).await {
                Ok(_) => free += 1,
                Err(CommandError::EmailTaken) => {}
                Err(other) => panic!("{other:?}"),
            }
        }
        assert_eq!(free, 1, "one address held by the user, the other free");
    }
}

async fn unknown_users_are_not_found(db: TestDatabase) {
    let ports = ports(&db).await;
    let (tenant, owner) = tenant_with_owner(&ports, &email("owner"), None).await;
    let by_owner = as_user(&ports, tenant, owner, None).await;
    let ghost = Uuid::now_v7();
    let not_found =
        |outcome: Result<(), CommandError>| matches!(outcome, Err(CommandError::NotFound("user")));
    assert!(not_found(
        change_user_status(
            &ports,
            &fresh(&by_owner),
            tenant,
            ghost,
            StatusChange::Suspend
        )
        .await
        .map(drop)
    ));
    assert!(not_found(
        set_password(&ports, &fresh(&by_owner), tenant, ghost, PASSWORD)
            .await
            .map(drop)
    ));
    assert!(not_found(
        change_email(&ports, &fresh(&by_owner), tenant, ghost, &email("x"))
            .await
            .map(drop)
    ));
    assert!(not_found(
        update_profile(&ports, &fresh(&by_owner), tenant, ghost, Profile::default())
            .await
            .map(drop)
    ));
    let grant = MembershipCommand::Grant {
        user: ghost,
        role: RoleRef::BuiltIn(BuiltInRole::Member),
    };
    assert!(not_found(
        change_memberships(&ports, &fresh(&by_owner), tenant, grant)
            .await
            .map(drop)
    ));
}
