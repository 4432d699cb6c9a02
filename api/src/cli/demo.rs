//! `custodia demo`: a sample log in the configured database, then verified,
//! so that a newcomer sees the event log work end to end.

use std::process::ExitCode;

use custodia_application::commands::tenants::{create_tenant, CreateTenant};
use custodia_application::commands::users::{register_user, update_profile, NewUser, Profile};
use custodia_application::verify_log;
use custodia_domain::identity::tenant::TenantSettings;
use custodia_domain::TenantId;
use uuid::Uuid;

#[derive(clap::Args)]
pub struct Args {
    /// Number of sample tenants.
    #[arg(long, default_value_t = 3)]
    tenants: usize,
    /// Users per tenant.
    #[arg(long, default_value_t = 5)]
    users: usize,
}

/// Tenants, each with an owner and users who update their profiles, all
/// through the command handlers (so the log holds what a server writes, and
/// `serve` on this database shows them), under the master key `serve` uses.
pub async fn run(database_url: &str, args: Args) -> Result<ExitCode, String> {
    let state = super::state(database_url).await?;
    let ports = &state.ports;
    let store = &ports.store;
    let fail = |e: custodia_application::commands::CommandError| e.to_string();
    for t in 0..args.tenants {
        let tenant = TenantId::generate();
        let owner = NewUser {
            address_vouched: true,
            user: Uuid::now_v7(),
            email: format!("owner@tenant{t}.demo.example"),
            profile: Profile::default(),
            invited: false,
            password: None,
        };
        let command = CreateTenant {
            tenant,
            name: format!("Demo {t}"),
            settings: TenantSettings::default(),
            owner,
        };
        create_tenant(ports, &super::operator(), command)
            .await
            .map_err(fail)?;
        for u in 0..args.users {
            let user = Uuid::now_v7();
            let new = NewUser {
                address_vouched: true,
                user,
                email: format!("user{u}@tenant{t}.demo.example"),
                profile: Profile {
                    display_name: Some(format!("User {u}")),
                    ..Profile::default()
                },
                invited: false,
                password: None,
            };
            register_user(ports, &super::operator(), tenant, new)
                .await
                .map_err(fail)?;
            let profile = Profile {
                display_name: Some(format!("User {u} of tenant {t}")),
                phone: Some("+1 555 0100".into()),
                ..Profile::default()
            };
            let outcome = update_profile(ports, &super::operator(), tenant, user, profile)
                .await
                .map_err(fail)?;
            if let Some(appended) = outcome.appended {
                println!(
                    "tenant {tenant}  user {user}  version {}  position {}",
                    appended.stream_version, appended.position
                );
            }
        }
    }
    let report = verify_log(&**store, None, &|_| {})
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "\nthe log in {database_url} now holds {} events in {} chains; verification: {}",
        report.events,
        report.chains,
        if report.is_intact() {
            "intact"
        } else {
            "BROKEN"
        }
    );
    println!("verify it yourself:  cargo run -p custodia -- verify");
    Ok(if report.is_intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::EXIT_BROKEN)
    })
}
