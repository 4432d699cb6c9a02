//! `custodia scim token create|list|revoke`: SCIM tokens made by the platform
//! operator from the command line (tenant admins use GraphQL
//! `createScimToken`); ADR 0012, docs/scim.md.

use std::process::ExitCode;

use custodia_application::commands::api_keys::{create_scim_token, revoke_api_key};
use custodia_domain::{TenantId, Timestamp};
use uuid::Uuid;

use super::{operator, state};

#[derive(clap::Subcommand)]
pub enum ScimCommand {
    /// SCIM tokens of a tenant.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Create a SCIM token and print it (once: only its hash is kept).
    Create {
        #[arg(long)]
        tenant: TenantId,
        /// A name for people (`Okta`, `Entra ID`).
        #[arg(long)]
        name: String,
    },
    /// List a tenant's SCIM tokens as JSON lines (never a secret).
    List {
        #[arg(long)]
        tenant: TenantId,
    },
    /// Revoke a SCIM token at once.
    Revoke {
        #[arg(long)]
        tenant: TenantId,
        /// The token's id (the `keyId` it was created with).
        #[arg(long)]
        key_id: Uuid,
    },
}

pub async fn run(database_url: &str, command: ScimCommand) -> Result<ExitCode, String> {
    let state = state(database_url).await?;
    let ScimCommand::Token(command) = command;
    match command {
        TokenCommand::Create { tenant, name } => {
            let created =
                create_scim_token(&state.ports, &operator(), tenant, &name, Timestamp::now())
                    .await
                    .map_err(|e| e.to_string())?;
            eprintln!(
                "SCIM token {} for tenant {tenant}: shown once, keep it in the identity provider",
                created.key_id
            );
            println!("{}", created.key);
        }
        TokenCommand::List { tenant } => {
            // The read models, brought up to the log first.
            let running = state.projections.start(state.ports.store.clone());
            let head = state.ports.store.head().await.map_err(|e| e.to_string())?;
            state
                .projections
                .wait_for(head)
                .await
                .map_err(|e| e.to_string())?;
            let rows = custodia_application::read_models::list_all(
                &*state.models,
                custodia_application::RowQuery {
                    model: "api_key",
                    tenant: Some(tenant.as_uuid()),
                    kind: Some("scim".into()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            running.stop().await;
            for row in rows {
                let doc: custodia_projections::documents::ApiKeyDoc =
                    custodia_projections::documents::read(&row).map_err(|e| e.to_string())?;
                let time = |micros: Option<i64>| micros.map(|m| Timestamp(m).to_string());
                println!(
                    "{}",
                    serde_json::json!({
                        "key_id": row.id,
                        "name": doc.name,
                        "created_by": doc.created_by,
                        "last_used_at": time(doc.last_used_at),
                        "revoked_at": time(doc.revoked_at),
                    })
                );
            }
        }
        TokenCommand::Revoke { tenant, key_id } => {
            let outcome =
                revoke_api_key(&state.ports, &operator(), tenant, key_id, Timestamp::now())
                    .await
                    .map_err(|e| e.to_string())?;
            println!(
                "{}",
                if outcome.appended.is_some() {
                    "revoked"
                } else {
                    "already revoked"
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
