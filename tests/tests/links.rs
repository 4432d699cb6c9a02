//! Link tokens through the handlers, on both backends, with the clock
//! moved: expired links are refused and change nothing; a link does
//! nothing for a user who may no longer use it; a sent message's link
//! becomes unreadable (ADR 0013).

use custodia_application::commands::account::{
    accept_invitation, confirm_password_reset, pending_message, record_attempt,
    request_password_reset, resend_verification, verify_email, LinkError,
};
use custodia_application::commands::credentials::{login, LoginError};
use custodia_application::commands::users::{
    change_email, change_user_status, read_personal_data, register_user, NewUser, StatusChange,
};
use custodia_application::commands::{CommandError, Ports};
use custodia_domain::aggregate::{EventSchema, StoredForm};
use custodia_domain::identity::message::{Attempt, MessageEvent, MessageKind};
use custodia_domain::personal::FieldContext;
use custodia_domain::{StreamCategory, StreamId, TenantId, Timestamp};
use custodia_tests::identity::{operator, ports, tenant_with_owner};
use custodia_tests::{backends, TestDatabase};
use uuid::Uuid;

backends!(
    expired_links_are_refused_and_change_nothing,
    a_link_does_nothing_for_a_user_who_may_no_longer_use_it,
    a_sent_messages_link_is_unreadable_afterwards,
    a_new_address_waits_for_its_link_and_the_old_one_is_told,
    a_pending_address_is_withdrawn_replaced_or_freed,
    a_tenants_racing_slug_changes_leave_it_one_slug_and_free_the_others,
    changing_someone_elses_address_takes_their_credentials_too,
    only_owners_change_the_templates_every_link_travels_in,
);

const PASSWORD: &str = "correct horse battery staple";
const MINUTE: i64 = 60_000_000;

/// The message ids queued for `user` of `kind`, oldest first.
async fn messages(ports: &Ports, user: Uuid, kind: MessageKind) -> Vec<(Uuid, MessageEvent)> {
    let mut found = Vec::new();
    let mut after = custodia_domain::LogCursor::START;
    // Everything committed before the call: on PostgreSQL the log is read
    // below the oldest transaction still running, so the newest commits
    // may show a moment later.
    let head = ports.store.head().await.unwrap();
    let patience = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let page = ports.store.read_all(after, 1000).await.unwrap();
        let Some(last) = page.last() else {
            if after >= head || std::time::Instant::now() > patience {
                return found;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        after = last.cursor();
        for event in page {
            if event.event_type.as_str() != "MessageQueued" {
                continue;
            }
            let typed = MessageEvent::from_stored(&StoredForm {
                event_type: event.event_type,
                schema_version: event.schema_version,
                payload: event.payload,
            })
            .unwrap();
            if matches!(&typed, MessageEvent::Queued { user: u, kind: k, .. } if *u == user && *k == kind)
            {
                found.push((event.stream.id, typed));
            }
        }
    }
}

/// The last message queued for `user` of `kind` (the log's reads may hold
/// back the newest commits a moment, as a follower's do).
async fn last_message(ports: &Ports, user: Uuid, kind: MessageKind) -> (Uuid, MessageEvent) {
    for _ in 0..100 {
        if let Some(found) = messages(ports, user, kind).await.pop() {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no {kind:?} message for {user}");
}

/// The token of the last link queued for `user` of `kind`.
async fn last_token(ports: &Ports, tenant: TenantId, user: Uuid, kind: MessageKind) -> String {
    let (id, _) = last_message(ports, user, kind).await;
    let message = pending_message(ports, tenant, id).await.unwrap().unwrap();
    let link = message.link.expect("a link");
    link.split("token=").nth(1).unwrap().to_owned()
}

async fn invite(ports: &Ports, tenant: TenantId, email: &str) -> Uuid {
    let user = Uuid::now_v7();
    let new = NewUser {
        user,
        email: email.into(),
        invited: true,
        ..NewUser::default()
    };
    register_user(ports, &operator(), tenant, new)
        .await
        .unwrap();
    user
}

async fn expired_links_are_refused_and_change_nothing(db: TestDatabase) {
    let ports = ports(&db).await;
    let (tenant, owner) = tenant_with_owner(&ports, "ada@example.org", Some(PASSWORD)).await;
    let now = Timestamp::now();
    let later = |minutes: i64| Timestamp(now.0 + minutes * MINUTE);
    // A reset link lasts 15 minutes.
    assert!(request_password_reset(&ports, tenant, "ada@example.org")
        .await
        .unwrap());
    let reset = last_token(&ports, tenant, owner, MessageKind::PasswordReset).await;
    let head = ports.store.head().await.unwrap();
    let refused = confirm_password_reset(&ports, tenant, &reset, PASSWORD, later(16)).await;
    assert!(matches!(refused, Err(LinkError::Expired)), "{refused:?}");
    assert_eq!(ports.store.head().await.unwrap(), head);
    confirm_password_reset(&ports, tenant, &reset, PASSWORD, later(14))
        .await
        .unwrap();
    // An invitation lasts 7 days.
    let bob = invite(&ports, tenant, "bob@example.org").await;
    let invited = Timestamp::now();
    let invitation = last_token(&ports, tenant, bob, MessageKind::Invitation).await;
    let head = ports.store.head().await.unwrap();
    let seven_days = Timestamp(invited.0 + 7 * 1440 * MINUTE);
    let refused = accept_invitation(&ports, tenant, &invitation, PASSWORD, seven_days).await;
    assert!(matches!(refused, Err(LinkError::Expired)), "{refused:?}");
    assert_eq!(ports.store.head().await.unwrap(), head);
    accept_invitation(&ports, tenant, &invitation, PASSWORD, later(6 * 1440))
        .await
        .unwrap();
    // A verification link lasts 48 hours (the owner's, sent when the
    // tenant was made).
    let verification = last_token(&ports, tenant, owner, MessageKind::Verification).await;
    let head = ports.store.head().await.unwrap();
    let refused = verify_email(&ports, tenant, &verification, later(48 * 60)).await;
    assert!(matches!(refused, Err(LinkError::Expired)), "{refused:?}");
    assert_eq!(ports.store.head().await.unwrap(), head);
    verify_email(&ports, tenant, &verification, later(47 * 60))
        .await
        .unwrap();
}

async fn a_link_does_nothing_for_a_user_who_may_no_longer_use_it(db: TestDatabase) {
    let ports = ports(&db).await;
    let (tenant, _) = tenant_with_owner(&ports, "ada@example.org", Some(PASSWORD)).await;
    let bob = invite(&ports, tenant, "bob@example.org").await;
    let now = Timestamp::now();
    // Activated by an administrator meanwhile: the invitation is spent.
    let invitation = last_token(&ports, tenant, bob, MessageKind::Invitation).await;
    change_user_status(&ports, &operator(), tenant, bob, StatusChange::Activate)
        .await
        .unwrap();
    let head = ports.store.head().await.unwrap();
    let refused = accept_invitation(&ports, tenant, &invitation, PASSWORD, now).await;
    assert!(matches!(refused, Err(LinkError::Revoked)), "{refused:?}");
    assert_eq!(ports.store.head().await.unwrap(), head);
    // A suspended user is sent no reset link, and one sent before their
    // suspension does nothing.
    custodia_application::commands::credentials::set_password(
        &ports,
        &operator(),
        tenant,
        bob,
        PASSWORD,
    )
    .await
    .unwrap();
    assert!(request_password_reset(&ports, tenant, "bob@example.org")
        .await
        .unwrap());
    let reset = last_token(&ports, tenant, bob, MessageKind::PasswordReset).await;
    change_user_status(&ports, &operator(), tenant, bob, StatusChange::Suspend)
        .await
        .unwrap();
    assert!(!request_password_reset(&ports, tenant, "bob@example.org")
        .await
        .unwrap());
    let head = ports.store.head().await.unwrap();
    let refused =
        confirm_password_reset(&ports, tenant, &reset, "another long passphrase", now).await;
    assert!(matches!(refused, Err(LinkError::Revoked)), "{refused:?}");
    assert_eq!(ports.store.head().await.unwrap(), head);
    // Reactivated, the link withdrawn at the suspension stays withdrawn.
    change_user_status(&ports, &operator(), tenant, bob, StatusChange::Reactivate)
        .await
        .unwrap();
    let refused =
        confirm_password_reset(&ports, tenant, &reset, "another long passphrase", now).await;
    assert!(matches!(refused, Err(LinkError::Revoked)), "{refused:?}");
    // Erased, the user's live links are withdrawn with them.
    assert!(request_password_reset(&ports, tenant, "bob@example.org")
        .await
        .unwrap());
    let reset = last_token(&ports, tenant, bob, MessageKind::PasswordReset).await;
    custodia_application::commands::privacy::erase_subject(
        &ports,
        &operator(),
        tenant,
        bob,
        "DSR-7",
    )
    .await
    .unwrap();
    let refused =
        confirm_password_reset(&ports, tenant, &reset, "another long passphrase", now).await;
    assert!(matches!(refused, Err(LinkError::Revoked)), "{refused:?}");
    // At most five links of a purpose an hour go to one user, whoever asks.
    let carol = Uuid::now_v7();
    let new = NewUser {
        user: carol,
        email: "carol@example.org".into(),
        ..NewUser::default()
    };
    register_user(&ports, &operator(), tenant, new)
        .await
        .unwrap();
    for _ in 1..5 {
        resend_verification(&ports, &operator(), tenant, carol)
            .await
            .unwrap();
    }
    let head = ports.store.head().await.unwrap();
    let refused = resend_verification(&ports, &operator(), tenant, carol).await;
    assert!(
        matches!(refused, Err(CommandError::LinkLimit)),
        "{refused:?}"
    );
    assert_eq!(ports.store.head().await.unwrap(), head);
    // Unknown addresses, and addresses of another tenant, get nothing.
    let (other, _) = tenant_with_owner(&ports, "eve@example.org", None).await;
    for (tenant, email) in [(tenant, "nobody@example.org"), (other, "ada@example.org")] {
        let head = ports.store.head().await.unwrap();
        assert!(!request_password_reset(&ports, tenant, email).await.unwrap());
        assert_eq!(ports.store.head().await.unwrap(), head);
    }
}

async fn a_sent_messages_link_is_unreadable_afterwards(db: TestDatabase) {
    let ports = ports(&db).await;
    let (tenant, _) = tenant_with_owner(&ports, "ada@example.org", Some(PASSWORD)).await;
    let bob = invite(&ports, tenant, "bob@example.org").await;
    let (id, queued) = last_message(&ports, bob, MessageKind::Invitation).await;
    let MessageEvent::Queued {
        link: Some(link), ..
    } = queued
    else {
        panic!("an invitation carries a link");
    };
    let stream = StreamId::new(StreamCategory::parse("message").unwrap(), id);
    let queued_at = ports
        .store
        .read_stream(&stream, Default::default(), 1)
        .await
        .unwrap();
    let context = FieldContext {
        tenant,
        stream: &stream,
        event_id: queued_at[0].event_id,
        field: "link",
    };
    assert!(ports.vault.open(&context, &link).await.unwrap().is_some());
    // A failure keeps it (the next attempt needs it); the send destroys it.
    let now = Timestamp::now();
    let failed = Attempt::Failed {
        at: now,
        retry_at: now,
        reason: "connection".into(),
    };
    record_attempt(&ports, tenant, id, 1, failed).await.unwrap();
    assert!(ports.vault.open(&context, &link).await.unwrap().is_some());
    record_attempt(&ports, tenant, id, 2, Attempt::Sent { at: now })
        .await
        .unwrap();
    assert_eq!(ports.vault.open(&context, &link).await.unwrap(), None);
    assert!(pending_message(&ports, tenant, id).await.unwrap().is_none());
    // A second record of the same attempt is refused and writes nothing.
    let head = ports.store.head().await.unwrap();
    assert!(
        record_attempt(&ports, tenant, id, 2, Attempt::Sent { at: now })
            .await
            .is_err()
    );
    assert_eq!(ports.store.head().await.unwrap(), head);
}

/// Whether `email` is free in `tenant`: a registration with it works (and
/// is kept), or is refused as taken.
async fn free(ports: &Ports, tenant: TenantId, email: &str) -> bool {
    let new = NewUser {
        user: Uuid::now_v7(),
        email: email.into(),
        ..NewUser::default()
    };
    match register_user(ports, &operator(), tenant, new).await {
        Ok(_) => true,
        Err(CommandError::EmailTaken) => false,
        Err(other) => panic!("{other:?}"),
    }
}

async fn a_new_address_waits_for_its_link_and_the_old_one_is_told(db: TestDatabase) {
    let ports = ports(&db).await;
    let (tenant, owner) = tenant_with_owner(&ports, "ada@example.org", Some(PASSWORD)).await;
    let sign_in = |email: &'static str| {
        let ports = &ports;
        async move { login(ports, tenant, email, PASSWORD, None, Timestamp::now()).await }
    };
    // A reset link to the current address, live when the change is asked.
    assert!(request_password_reset(&ports, tenant, "ada@example.org")
        .await
        .unwrap());
    let reset = last_token(&ports, tenant, owner, MessageKind::PasswordReset).await;
    change_email(&ports, &operator(), tenant, owner, "ada@example.net")
        .await
        .unwrap();
    let record = read_personal_data(&ports, &operator(), tenant, owner)
        .await
        .unwrap();
    assert_eq!(record.email.as_deref(), Some("ada@example.org"));
    assert_eq!(record.pending_email.as_deref(), Some("ada@example.net"));
    // The old address still signs in, the new one not yet, and nobody
    // else may take the new one meanwhile.
    assert_eq!(sign_in("ada@example.org").await.unwrap(), owner);
    let refused = sign_in("ada@example.net").await;
    assert!(
        matches!(refused, Err(LoginError::InvalidCredentials)),
        "{refused:?}"
    );
    assert!(!free(&ports, tenant, "ada@example.net").await);
    // The link goes to the new address; the old one is told, with no link.
    let (link_id, _) = last_message(&ports, owner, MessageKind::Verification).await;
    let link_mail = pending_message(&ports, tenant, link_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(link_mail.recipient.as_deref(), Some("ada@example.net"));
    let (notice_id, _) = last_message(&ports, owner, MessageKind::AddressChangeNotice).await;
    let notice = pending_message(&ports, tenant, notice_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(notice.recipient.as_deref(), Some("ada@example.org"));
    assert!(notice.link.is_none());
    // A new link (asked again) goes to the pending address too.
    resend_verification(&ports, &operator(), tenant, owner)
        .await
        .unwrap();
    let (resent, _) = last_message(&ports, owner, MessageKind::Verification).await;
    assert_ne!(resent, link_id);
    let resent_mail = pending_message(&ports, tenant, resent)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resent_mail.recipient.as_deref(), Some("ada@example.net"));
    let first = link_mail.link.unwrap();
    let first = first.split("token=").nth(1).unwrap();
    let refused = verify_email(&ports, tenant, first, Timestamp::now()).await;
    assert!(matches!(refused, Err(LinkError::Revoked)), "{refused:?}");
    // Following the link moves the sign-in address, verified.
    let token = last_token(&ports, tenant, owner, MessageKind::Verification).await;
    verify_email(&ports, tenant, &token, Timestamp::now())
        .await
        .unwrap();
    let record = read_personal_data(&ports, &operator(), tenant, owner)
        .await
        .unwrap();
    assert_eq!(record.email.as_deref(), Some("ada@example.net"));
    assert_eq!(record.pending_email, None);
    assert_eq!(sign_in("ada@example.net").await.unwrap(), owner);
    let refused = sign_in("ada@example.org").await;
    assert!(
        matches!(refused, Err(LoginError::InvalidCredentials)),
        "{refused:?}"
    );
    // The reset link sent to the old address went with it.
    let refused = confirm_password_reset(&ports, tenant, &reset, PASSWORD, Timestamp::now()).await;
    assert!(matches!(refused, Err(LinkError::Revoked)), "{refused:?}");
    let refused = verify_email(&ports, tenant, &token, Timestamp::now()).await;
    assert!(matches!(refused, Err(LinkError::Used)), "{refused:?}");
    // And the old address is free for someone else.
    assert!(free(&ports, tenant, "ada@example.org").await);
}

async fn a_pending_address_is_withdrawn_replaced_or_freed(db: TestDatabase) {
    let ports = ports(&db).await;
    let (tenant, owner) = tenant_with_owner(&ports, "ada@example.org", Some(PASSWORD)).await;
    let change = |email: &'static str| {
        let ports = &ports;
        async move { change_email(ports, &operator(), tenant, owner, email).await }
    };
    // Asked for b, then c: b is free again and its link revoked.
    change("ada@b.example").await.unwrap();
    let to_b = last_token(&ports, tenant, owner, MessageKind::Verification).await;
    change("ada@c.example").await.unwrap();
    assert!(free(&ports, tenant, "ada@b.example").await);
    let refused = verify_email(&ports, tenant, &to_b, Timestamp::now()).await;
    assert!(matches!(refused, Err(LinkError::Revoked)), "{refused:?}");
    // Asking for the current address withdraws the change: c is free,
    // its link revoked, and nothing moved.
    let to_c = last_token(&ports, tenant, owner, MessageKind::Verification).await;
    change("ada@example.org").await.unwrap();
    assert!(free(&ports, tenant, "ada@c.example").await);
    let refused = verify_email(&ports, tenant, &to_c, Timestamp::now()).await;
    assert!(matches!(refused, Err(LinkError::Revoked)), "{refused:?}");
    let record = read_personal_data(&ports, &operator(), tenant, owner)
        .await
        .unwrap();
    assert_eq!(record.email.as_deref(), Some("ada@example.org"));
    assert_eq!(record.pending_email, None);
    // An address taken by someone else cannot be asked for.
    let refused = change("ada@b.example").await;
    assert!(
        matches!(refused, Err(CommandError::EmailTaken)),
        "{refused:?}"
    );
    // A user deleted while a change waits frees both addresses.
    let bob = Uuid::now_v7();
    let new = NewUser {
        user: bob,
        email: "bob@example.org".into(),
        ..NewUser::default()
    };
    register_user(&ports, &operator(), tenant, new)
        .await
        .unwrap();
    change_email(&ports, &operator(), tenant, bob, "bob@example.net")
        .await
        .unwrap();
    change_user_status(&ports, &operator(), tenant, bob, StatusChange::Delete)
        .await
        .unwrap();
    assert!(free(&ports, tenant, "bob@example.org").await);
    assert!(free(&ports, tenant, "bob@example.net").await);
}

async fn a_tenants_racing_slug_changes_leave_it_one_slug_and_free_the_others(db: TestDatabase) {
    use custodia_application::commands::tenants::{resolve_tenant, set_tenant_slug};
    let ports = ports(&db).await;
    let (acme, _) = tenant_with_owner(&ports, "ada@example.org", None).await;
    let (globex, _) = tenant_with_owner(&ports, "eve@example.org", None).await;
    for round in 0..4 {
        let slugs = [0, 1, 2].map(|i| format!("slug-{round}-{i}"));
        let callers = [operator(), operator(), operator()];
        let (a, b, c) = tokio::join!(
            set_tenant_slug(&ports, &callers[0], acme, &slugs[0]),
            set_tenant_slug(&ports, &callers[1], acme, &slugs[1]),
            set_tenant_slug(&ports, &callers[2], acme, &slugs[2]),
        );
        for outcome in [a, b, c] {
            match outcome {
                Ok(_) | Err(CommandError::Contended) => {}
                Err(other) => panic!("{other:?}"),
            }
        }
        // Exactly one of them names the tenant; the others (and every
        // earlier one) are free: another tenant takes them.
        let mut held = 0;
        for slug in &slugs {
            if resolve_tenant(&ports, slug).await.unwrap() == Some(acme) {
                held += 1;
            } else {
                set_tenant_slug(&ports, &operator(), globex, slug)
                    .await
                    .unwrap_or_else(|e| panic!("{slug} is not free: {e:?}"));
                assert_eq!(resolve_tenant(&ports, slug).await.unwrap(), Some(globex));
            }
        }
        assert_eq!(held, 1, "round {round}");
    }
}

/// Found by the outside review: an address is how a password is reset, so
/// `user.update` alone (a custom "helpdesk" role) took over an account by
/// changing its address to a mailbox of the helpdesk's and resetting.
/// Past the bound of links, a taken and a free address answer alike (they
/// told which addresses exist, without limit).
async fn changing_someone_elses_address_takes_their_credentials_too(db: TestDatabase) {
    use custodia_application::commands::Caller;
    use custodia_domain::rbac::{Permission, Principal};
    let ports = ports(&db).await;
    let (tenant, _) = tenant_with_owner(&ports, "ada@example.org", None).await;
    let register = |email: &'static str| {
        let ports = &ports;
        async move {
            let user = Uuid::now_v7();
            let new = NewUser {
                user,
                email: email.into(),
                ..NewUser::default()
            };
            register_user(ports, &operator(), tenant, new)
                .await
                .unwrap();
            user
        }
    };
    let (helpdesk, member) = (
        register("help@example.org").await,
        register("bob@example.org").await,
    );
    let holding = |user: Uuid, permissions: &[Permission]| Caller {
        principal: Principal::Member {
            tenant,
            user,
            permissions: permissions.into(),
        },
        actor: custodia_domain::Actor::User(user),
        ..operator()
    };
    let plain = [
        Permission::TenantRead,
        Permission::UserRead,
        Permission::RoleRead,
    ];
    let mut helpdesk_role = plain.to_vec();
    helpdesk_role.push(Permission::UserUpdate);
    let refused = change_email(
        &ports,
        &holding(helpdesk, &helpdesk_role),
        tenant,
        member,
        "mine@example.net",
    )
    .await;
    assert!(
        matches!(refused, Err(CommandError::Forbidden(_))),
        "{refused:?}"
    );
    helpdesk_role.push(Permission::CredentialManage);
    change_email(
        &ports,
        &holding(helpdesk, &helpdesk_role),
        tenant,
        member,
        "mine@example.net",
    )
    .await
    .unwrap();
    // The user themselves needs nothing more (self-service).
    let me = || holding(member, &plain);
    change_email(&ports, &me(), tenant, member, "bob@example.net")
        .await
        .unwrap();
    // Past the bound (5 links an hour: the registration's, the two changes
    // above, two more), taken and free answer alike.
    for n in 0..2 {
        let address = format!("bob{n}@example.net");
        change_email(&ports, &me(), tenant, member, &address)
            .await
            .unwrap();
    }
    let head = ports.store.head().await.unwrap();
    for address in ["ada@example.org", "free@example.net"] {
        let refused = change_email(&ports, &me(), tenant, member, address).await;
        assert!(
            matches!(refused, Err(CommandError::LinkLimit)),
            "{address}: {refused:?}"
        );
    }
    assert_eq!(ports.store.head().await.unwrap(), head);
    // Withdrawing the pending change sends nothing, and is not refused.
    change_email(&ports, &me(), tenant, member, "bob@example.org")
        .await
        .unwrap();
    let record = read_personal_data(&ports, &operator(), tenant, member)
        .await
        .unwrap();
    assert_eq!(record.pending_email, None);
}

/// Found by the outside review: an admin (`tenant.update`) could send an
/// owner's reset link to a tracking pixel of theirs through a template,
/// and take the owner's account. Templates need `mail_template.update`,
/// which only owners hold.
async fn only_owners_change_the_templates_every_link_travels_in(db: TestDatabase) {
    use custodia_application::commands::mail_templates::{remove_mail_template, set_mail_template};
    use custodia_application::commands::Caller;
    use custodia_domain::identity::mail_template::MailTemplate;
    use custodia_domain::rbac::{BuiltInRole, Principal};
    let ports = ports(&db).await;
    let (tenant, owner) = tenant_with_owner(&ports, "ada@example.org", None).await;
    let as_role = |role: BuiltInRole| Caller {
        principal: Principal::Member {
            tenant,
            user: owner,
            permissions: role.permissions(),
        },
        actor: custodia_domain::Actor::User(owner),
        ..operator()
    };
    let template = MailTemplate {
        subject: "Hi".to_owned(),
        text: "{{ link }}".to_owned(),
        html: "<a href=\"{{ link }}\">go</a>".to_owned(),
    };
    let kind = MessageKind::PasswordReset;
    for role in [
        BuiltInRole::Admin,
        BuiltInRole::Member,
        BuiltInRole::PrivacyOfficer,
    ] {
        let refused =
            set_mail_template(&ports, &as_role(role), tenant, kind, None, template.clone()).await;
        assert!(
            matches!(refused, Err(CommandError::Forbidden(_))),
            "{role:?}: {refused:?}"
        );
        let refused = remove_mail_template(&ports, &as_role(role), tenant, kind, None).await;
        assert!(
            matches!(refused, Err(CommandError::Forbidden(_))),
            "{role:?}: {refused:?}"
        );
    }
    set_mail_template(
        &ports,
        &as_role(BuiltInRole::Owner),
        tenant,
        kind,
        None,
        template,
    )
    .await
    .unwrap();
}
