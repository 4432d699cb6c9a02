//! `custodia tenant`: what the platform operator does to a tenant from the
//! command line.

use std::process::ExitCode;

use custodia_domain::TenantId;
use uuid::Uuid;

use super::{operator, state};

/// What the platform operator does to a tenant from the command line (the
/// way back when nobody in the tenant can act any more).
#[derive(clap::Subcommand)]
pub enum TenantCommand {
    /// Suspend a tenant: its sessions, refresh tokens and API keys stop at once.
    Suspend {
        #[arg(long)]
        tenant: String,
    },
    /// Reactivate a suspended tenant.
    Reactivate {
        #[arg(long)]
        tenant: String,
    },
    /// Make a user of the tenant an owner (repairs a tenant left without an
    /// active owner).
    GrantOwner {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user: String,
    },
    /// Invite someone to the tenant: an invitation link goes to the address
    /// (sent by a server with CUSTODIA_SMTP_URL; the link points to
    /// CUSTODIA_APP_URL). With --owner, they become an owner too.
    Invite {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        owner: bool,
    },
}

pub async fn tenant(database_url: &str, command: TenantCommand) -> Result<ExitCode, String> {
    use custodia_application::commands::tenants::{change_memberships, set_tenant_suspended};
    use custodia_domain::identity::membership::{MembershipCommand, RoleRef};
    let parse_tenant = |id: &str| {
        Uuid::parse_str(id)
            .ok()
            .and_then(|id| TenantId::from_uuid(id).ok())
            .ok_or_else(|| "--tenant must be a tenant id (a UUID)".to_owned())
    };
    let state = state(database_url).await?;
    let operator = operator();
    let outcome = match command {
        TenantCommand::Suspend { tenant } => {
            set_tenant_suspended(&state.ports, &operator, parse_tenant(&tenant)?, true).await
        }
        TenantCommand::Reactivate { tenant } => {
            set_tenant_suspended(&state.ports, &operator, parse_tenant(&tenant)?, false).await
        }
        TenantCommand::GrantOwner { tenant, user } => {
            let user = Uuid::parse_str(&user).map_err(|_| "--user must be a user id (a UUID)")?;
            let grant = MembershipCommand::Grant {
                user,
                role: RoleRef::BuiltIn(custodia_domain::rbac::BuiltInRole::Owner),
            };
            change_memberships(&state.ports, &operator, parse_tenant(&tenant)?, grant).await
        }
        TenantCommand::Invite {
            tenant,
            email,
            owner,
        } => {
            use custodia_application::commands::users::{register_user, NewUser};
            let tenant = parse_tenant(&tenant)?;
            let user = Uuid::now_v7();
            let new = NewUser {
                user,
                email,
                invited: true,
                ..NewUser::default()
            };
            let invited = register_user(&state.ports, &operator, tenant, new)
                .await
                .map_err(|e| e.to_string())?;
            println!("invited user {user}; the invitation is queued");
            if !owner {
                println!("done (stream version {})", invited.stream_version.0);
                return Ok(ExitCode::SUCCESS);
            }
            let grant = MembershipCommand::Grant {
                user,
                role: RoleRef::BuiltIn(custodia_domain::rbac::BuiltInRole::Owner),
            };
            change_memberships(&state.ports, &operator, tenant, grant).await
        }
    };
    let outcome = outcome.map_err(|e| e.to_string())?;
    println!("done (stream version {})", outcome.stream_version.0);
    Ok(ExitCode::SUCCESS)
}
