//! A tenant's own mail templates (ADR 0013): set or removed by whoever may
//! change the tenant's settings, read by the delivery worker at each send.
//! The API checks that a template renders before it asks for it to be set.

use custodia_domain::aggregate::Aggregate;
use custodia_domain::identity::mail_template::{
    Locale, MailTemplate, MailTemplateCommand, MailTemplateError, MailTemplates, MAX_TEMPLATES,
};
use custodia_domain::identity::message::MessageKind;
use custodia_domain::rbac::Permission;
use custodia_domain::{ChainId, EventId, InvalidValue, StreamId, TenantId};

use super::authorized::authorize;
use super::tenants::require_active_tenant;
use super::{execute, load_in, stream, Caller, CommandError, Outcome, Ports};

pub(crate) fn templates_stream(tenant: TenantId) -> StreamId {
    stream("mail_templates", tenant.as_uuid())
}

fn locale(value: Option<&str>) -> Result<Option<Locale>, CommandError> {
    value.map(Locale::parse).transpose().map_err(Into::into)
}

fn refused(error: MailTemplateError) -> CommandError {
    match error {
        MailTemplateError::Invalid(invalid) => invalid.into(),
        MailTemplateError::TooMany => CommandError::Invalid(InvalidValue {
            field: "locale",
            rule: "a tenant keeps at most 64 templates (every kind in 15 languages and a default)",
        }),
    }
}

/// Sets the tenant's template for `kind` in `locale` (`None`: its default
/// for every language). Needs `mail_template.update` (owners): every link
/// the tenant's users receive travels in these templates.
pub async fn set_mail_template(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    kind: MessageKind,
    locale_tag: Option<&str>,
    template: MailTemplate,
) -> Result<Outcome, CommandError> {
    let authorized = authorize(caller, tenant, Permission::MailTemplateUpdate, None)?;
    let locale = locale(locale_tag)?;
    require_active_tenant(ports, tenant).await?;
    let command = MailTemplateCommand::Set {
        kind,
        locale,
        template,
    };
    let stream = templates_stream(tenant);
    execute::<MailTemplates>(ports, &authorized, &stream, EventId::generate(), |t| {
        t.decide(&command).map_err(refused)
    })
    .await
}

/// Removes the tenant's template for `kind` in `locale`: the next one in
/// line (its language's, the tenant's default, the built-in) is used.
/// Needs `mail_template.update`.
pub async fn remove_mail_template(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
    kind: MessageKind,
    locale_tag: Option<&str>,
) -> Result<Outcome, CommandError> {
    let authorized = authorize(caller, tenant, Permission::MailTemplateUpdate, None)?;
    let locale = locale(locale_tag)?;
    require_active_tenant(ports, tenant).await?;
    let command = MailTemplateCommand::Remove { kind, locale };
    let stream = templates_stream(tenant);
    execute::<MailTemplates>(ports, &authorized, &stream, EventId::generate(), |t| {
        t.decide(&command).map_err(refused)
    })
    .await
}

/// The tenant's templates, for whoever may read the tenant.
pub async fn mail_templates(
    ports: &Ports,
    caller: &Caller,
    tenant: TenantId,
) -> Result<MailTemplates, CommandError> {
    caller
        .principal
        .authorize(tenant, Permission::TenantRead, None)?;
    tenant_templates(ports, tenant).await
}

/// The tenant's templates, for the delivery worker (a system reader).
pub async fn tenant_templates(
    ports: &Ports,
    tenant: TenantId,
) -> Result<MailTemplates, CommandError> {
    let chain = Some(ChainId::Tenant(tenant));
    let (templates, _) =
        load_in::<MailTemplates>(&*ports.store, &templates_stream(tenant), chain).await?;
    debug_assert!(templates.all().count() <= MAX_TEMPLATES);
    Ok(templates)
}
