//! Roles and memberships.

use async_graphql::{Context, Object, Result, ID};
use custodia_domain::identity::membership::{MembershipCommand, RoleName};

use crate::graphql::{error, uuid};

use super::*;

#[derive(Default)]
pub struct RoleMutations;

#[Object]
impl RoleMutations {
    /// Defines (or redefines) a custom role. Needs `role.define`.
    async fn define_role(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The role's name, without `custom:` (`[a-z0-9_]`, 1 to 64).")]
        name: String,
        #[graphql(desc = "The permissions it grants; the caller must hold each.")] permissions: Vec<
            String,
        >,
    ) -> Result<Done> {
        let name = RoleName::parse(&name).map_err(|e| error("VALIDATION", e.to_string()))?;
        let command = MembershipCommand::DefineRole {
            name,
            permissions: self::permissions(&permissions)?,
        };
        memberships(ctx, tenant_id, command).await
    }

    /// Grants a role (`owner`, …, `custom:<name>`). Needs `role.grant` and
    /// every permission of the role.
    async fn grant_role(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The user acted on.")] user_id: ID,
        #[graphql(desc = "`admin`, … or `custom:<name>`.")] role: String,
    ) -> Result<Done> {
        let command = MembershipCommand::Grant {
            user: uuid(&user_id, "userId")?,
            role: self::role(&role)?,
        };
        memberships(ctx, tenant_id, command).await
    }

    /// Revokes a role. Needs `role.grant`; the last owner stays.
    async fn revoke_role(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The user acted on.")] user_id: ID,
        #[graphql(desc = "`admin`, … or `custom:<name>`.")] role: String,
    ) -> Result<Done> {
        let command = MembershipCommand::Revoke {
            user: uuid(&user_id, "userId")?,
            role: self::role(&role)?,
        };
        memberships(ctx, tenant_id, command).await
    }

    /// Grants a role to a group of members (ADR 0012): every member holds
    /// it while they are in the group. Needs `role.grant`, every permission
    /// of the role, and at least what each member holds.
    async fn grant_role_to_group(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The group (as SCIM names it).")] group_id: ID,
        #[graphql(desc = "`admin`, … or `custom:<name>`.")] role: String,
    ) -> Result<Done> {
        let command = MembershipCommand::GrantRoleToGroup {
            group: uuid(&group_id, "groupId")?,
            role: self::role(&role)?,
        };
        memberships(ctx, tenant_id, command).await
    }

    /// Revokes a role from a group. Needs `role.grant` and at least what
    /// each member holds; the last owner stays.
    async fn revoke_role_from_group(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The group (as SCIM names it).")] group_id: ID,
        #[graphql(desc = "`admin`, … or `custom:<name>`.")] role: String,
    ) -> Result<Done> {
        let command = MembershipCommand::RevokeRoleFromGroup {
            group: uuid(&group_id, "groupId")?,
            role: self::role(&role)?,
        };
        memberships(ctx, tenant_id, command).await
    }

    /// Revokes every role of a user. Needs `role.grant`.
    async fn remove_member(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The user acted on.")] user_id: ID,
    ) -> Result<Done> {
        let command = MembershipCommand::RemoveMember {
            user: uuid(&user_id, "userId")?,
        };
        memberships(ctx, tenant_id, command).await
    }
}
