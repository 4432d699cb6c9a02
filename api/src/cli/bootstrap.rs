//! `custodia bootstrap`: the first-run path (the first tenant and its owner).

use std::process::ExitCode;

use custodia_application::commands::tenants::{create_tenant, CreateTenant};
use custodia_application::commands::users::{NewUser, Profile};
use custodia_domain::identity::tenant::TenantSettings;
use custodia_domain::TenantId;
use uuid::Uuid;

use super::{operator, state};

#[derive(clap::Args)]
pub struct BootstrapArgs {
    /// The first tenant's name.
    #[arg(long)]
    tenant_name: String,
    /// The email of its first owner.
    #[arg(long)]
    owner_email: String,
    /// Read the owner's password from the first line of standard input
    /// (otherwise from CUSTODIA_BOOTSTRAP_PASSWORD or its _FILE).
    #[arg(long)]
    password_stdin: bool,
    /// Create this tenant even though the database already holds one
    /// (bootstrap is for the first tenant; a second run is refused without it).
    #[arg(long)]
    another_tenant: bool,
}

pub async fn bootstrap(database_url: &str, args: BootstrapArgs) -> Result<ExitCode, String> {
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password: {e}"))?;
        zeroize::Zeroizing::new(line.trim_end_matches(['\n', '\r']).to_owned())
    } else {
        custodia_infrastructure::config::secret("CUSTODIA_BOOTSTRAP_PASSWORD")
            .map_err(|e| e.to_string())?
            .ok_or(
                "give the owner's password with --password-stdin or CUSTODIA_BOOTSTRAP_PASSWORD",
            )?
    };
    let state = state(database_url).await?;
    let holds_events = !state
        .ports
        .store
        .read_all(custodia_domain::LogCursor::START, 1)
        .await
        .map_err(|e| e.to_string())?
        .is_empty();
    if holds_events && !args.another_tenant {
        return Err(
            "this database already holds a tenant: bootstrap creates the first one \
                    (pass --another-tenant to create one more)"
                .into(),
        );
    }
    let operator = operator();
    let (tenant, owner) = (TenantId::generate(), Uuid::now_v7());
    let new_owner = NewUser {
        address_vouched: true,
        user: owner,
        email: args.owner_email.clone(),
        profile: Profile::default(),
        invited: false,
        password: Some(password.to_string()),
    };
    create_tenant(
        &state.ports,
        &operator,
        CreateTenant {
            tenant,
            name: args.tenant_name,
            settings: TenantSettings::default(),
            owner: new_owner,
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    println!("tenant {tenant}\nowner  {owner}");
    println!(
        "\nlog in:\n  curl -s http://127.0.0.1:8080/auth/login -H 'content-type: application/json' \\\n    \
         -d '{{\"tenant_id\":\"{tenant}\",\"email\":\"{}\",\"password\":\"…\"}}'",
        args.owner_email
    );
    Ok(ExitCode::SUCCESS)
}
