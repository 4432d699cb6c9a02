//! The tenant: its creation (platform operator), settings and suspension.

use async_graphql::{Context, Object, Result, ID};
use custodia_application::commands::tenants::{
    create_tenant, set_tenant_suspended, update_tenant_settings, CreateTenant,
};
use custodia_application::commands::users::{NewUser, Profile};
use custodia_domain::identity::mail_template::MailTemplate;
use custodia_domain::identity::message::MessageKind;
use custodia_domain::identity::tenant::{SettingsChange, TenantSettings};
use custodia_domain::TenantId;
use uuid::Uuid;

use crate::graphql::{data, fail};

use super::*;

#[derive(Default)]
pub struct TenantMutations;

#[Object]
impl TenantMutations {
    /// Creates a tenant and its first owner. Platform operator only.
    async fn create_tenant(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant's display name (1 to 200 characters).")] name: String,
        #[graphql(
            desc = "The first owner's address (active, without a password until one is set)."
        )]
        owner_email: String,
    ) -> Result<TenantPayload> {
        let caller = data(ctx).caller().await?;
        let tenant = TenantId::generate();
        let outcome = create_tenant(
            &data(ctx).state.ports,
            &caller,
            CreateTenant {
                tenant,
                name,
                settings: TenantSettings::default(),
                owner: NewUser {
                    address_vouched: false,
                    user: Uuid::now_v7(),
                    email: owner_email,
                    profile: Profile::default(),
                    invited: false,
                    password: None,
                },
            },
        )
        .await
        .map_err(fail)?;
        tenant_payload(ctx, tenant, cursor(&outcome)).await
    }

    /// Changes the tenant's settings: those given, the others stay. Needs
    /// `tenant.update`.
    async fn update_tenant_settings(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "The settings to change; the rest keep their values.")]
        settings: TenantSettingsInput,
    ) -> Result<TenantPayload> {
        let tenant = tenant(ctx, tenant_id.as_ref())?;
        let caller = data(ctx).caller().await?;
        let outcome = update_tenant_settings(
            &data(ctx).state.ports,
            &caller,
            tenant,
            SettingsChange::from(settings),
        )
        .await
        .map_err(fail)?;
        tenant_payload(ctx, tenant, cursor(&outcome)).await
    }

    /// Gives the tenant a slug for people (`acme`): login and the account
    /// flows take it as well as the id. Unique across the platform; the
    /// slug it replaces is free again. Needs `tenant.update`.
    async fn set_tenant_slug(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(
            desc = "3 to 63 of a-z, 0-9 and single hyphens, starting and ending with a letter or digit (plaintext in the log for good)."
        )]
        slug: String,
    ) -> Result<TenantPayload> {
        let tenant = tenant(ctx, tenant_id.as_ref())?;
        let caller = data(ctx).caller().await?;
        let outcome = custodia_application::commands::tenants::set_tenant_slug(
            &data(ctx).state.ports,
            &caller,
            tenant,
            &slug,
        )
        .await
        .map_err(fail)?;
        tenant_payload(ctx, tenant, cursor(&outcome)).await
    }

    /// Sets the tenant's own mail template for a kind of message, in a
    /// language or as its default for every language (`locale: null`).
    /// A message goes out in the recipient's `locale` (or
    /// `preferredLanguage`) attribute's template, else its language's, else
    /// the tenant's default, else the built-in English text. The parts use
    /// minijinja syntax and only `name`, `email`, `link` and `tenant_name`;
    /// a template that does not render, uses another name, leaves out the
    /// link (where there is one) or holds an address or a phone number is
    /// refused (`VALIDATION`). Plaintext in the log for good. Needs
    /// `mail_template.update` (owners: every link travels in a template).
    async fn set_mail_template(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(
            desc = "`invitation`, `verification`, `password_reset` or `address_change_notice`."
        )]
        kind: String,
        #[graphql(desc = "A language tag (`de`, `pt-BR`); null for the tenant's default.")]
        locale: Option<String>,
        #[graphql(desc = "The template's three parts.")] template: MailTemplateInput,
    ) -> Result<MailTemplatesPayload> {
        let tenant = tenant(ctx, tenant_id.as_ref())?;
        let caller = data(ctx).caller().await?;
        // Authorised before the template is rendered: an outsider's request
        // costs no rendering.
        let permission = custodia_domain::rbac::Permission::MailTemplateUpdate;
        data(ctx).authorize(tenant, permission, None)?;
        let kind = mail_kind(&kind)?;
        let template = MailTemplate {
            subject: template.subject,
            text: template.text,
            html: template.html,
        };
        crate::mail::templates::check(kind, &template)
            .map_err(|refused| crate::graphql::error("VALIDATION", refused.0))?;
        custodia_application::commands::mail_templates::set_mail_template(
            &data(ctx).state.ports,
            &caller,
            tenant,
            kind,
            locale.as_deref(),
            template,
        )
        .await
        .map_err(fail)?;
        templates_payload(ctx, tenant).await
    }

    /// Removes the tenant's template for a kind in a language (or its
    /// default): the next one in line is used. Needs `mail_template.update`.
    async fn remove_mail_template(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(
            desc = "`invitation`, `verification`, `password_reset` or `address_change_notice`."
        )]
        kind: String,
        #[graphql(desc = "A language tag; null for the tenant's default.")] locale: Option<String>,
    ) -> Result<MailTemplatesPayload> {
        let tenant = tenant(ctx, tenant_id.as_ref())?;
        let caller = data(ctx).caller().await?;
        let kind = mail_kind(&kind)?;
        custodia_application::commands::mail_templates::remove_mail_template(
            &data(ctx).state.ports,
            &caller,
            tenant,
            kind,
            locale.as_deref(),
        )
        .await
        .map_err(fail)?;
        templates_payload(ctx, tenant).await
    }

    /// Suspends (`suspended: true`) or reactivates the tenant. Needs `tenant.suspend`.
    async fn set_tenant_suspended(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The tenant (default: the caller's).")] tenant_id: Option<ID>,
        #[graphql(desc = "True to suspend, false to reactivate.")] suspended: bool,
    ) -> Result<TenantPayload> {
        let tenant = tenant(ctx, tenant_id.as_ref())?;
        let caller = data(ctx).caller().await?;
        let outcome = set_tenant_suspended(&data(ctx).state.ports, &caller, tenant, suspended)
            .await
            .map_err(fail)?;
        tenant_payload(ctx, tenant, cursor(&outcome)).await
    }
}

/// A kind of message, by its name.
pub(crate) fn mail_kind(name: &str) -> Result<MessageKind> {
    MessageKind::parse(name).ok_or_else(|| {
        crate::graphql::error(
            "VALIDATION",
            "kind must be invitation, verification, password_reset or address_change_notice",
        )
    })
}

/// A mail template's parts (minijinja syntax; the names are `name`,
/// `email`, `link` and `tenant_name`).
#[derive(async_graphql::InputObject)]
pub struct MailTemplateInput {
    /// The subject (at most 200 characters; line breaks are dropped).
    pub subject: String,
    /// The plain-text part (at most 16 KiB).
    pub text: String,
    /// The HTML part (at most 16 KiB; every value is escaped).
    pub html: String,
}

/// What a change of a mail template returns.
#[derive(async_graphql::SimpleObject)]
pub struct MailTemplatesPayload {
    /// The tenant's templates after the change (read from the log, so
    /// they include it).
    pub templates: Vec<crate::graphql::types::MailTemplateView>,
}

async fn templates_payload(ctx: &Context<'_>, tenant: TenantId) -> Result<MailTemplatesPayload> {
    let templates = custodia_application::commands::mail_templates::tenant_templates(
        &data(ctx).state.ports,
        tenant,
    )
    .await
    .map_err(fail)?;
    Ok(MailTemplatesPayload {
        templates: crate::graphql::types::MailTemplateView::all(&templates),
    })
}
