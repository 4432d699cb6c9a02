//! SCIM Users: a tenant's users as RFC 7643 resources, and the commands a
//! SCIM request becomes.
//!
//! A user's SCIM attributes live in their sealed profile: `displayName` is
//! the profile's display name, `userName` the sign-in address, and every
//! other attribute one entry of the profile's attributes (`title`,
//! `name.givenName`, `emails` as JSON text, `enterprise.department`, …),
//! so they are sealed, erased and exported like any personal data.
//! Attributes set outside SCIM (other keys) are kept by SCIM writes.

use std::collections::BTreeMap;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use custodia_application::commands::users::{
    self as user_commands, external_id_index, NewUser, Profile, StatusChange, EXTERNAL_ID,
};
use custodia_application::commands::{credentials, Caller, Outcome};
use custodia_application::RowQuery;
use custodia_domain::personal::{Email, FieldContext};
use custodia_domain::rbac::Permission;
use custodia_domain::{EventId, LogCursor, StreamCategory, StreamId, StreamVersion, TenantId};
use custodia_projections::documents::{self, Sealed, UserDoc, UserStatus};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::filter::{self, Filter, Schemas};
use super::patch::{self, Form, Shape};
use super::{
    answer_with, authenticate, command_error, if_match, list_response, read_json, Client,
    ListParams, ScimError, ENTERPRISE_SCHEMA, USER_SCHEMA,
};
use crate::http::AppState;

/// A filter that no index answers is evaluated on every user of the
/// tenant, opened: refused (`tooMany`) above this many users.
pub const SCAN_LIMIT: u64 = 1_000;

/// One attribute the service provider knows.
pub struct Attribute {
    pub name: &'static str,
    pub form: Form,
    /// The sub-attributes of a complex or multi-valued attribute.
    pub subs: &'static [&'static str],
    pub description: &'static str,
}

const fn simple(name: &'static str, description: &'static str) -> Attribute {
    Attribute {
        name,
        form: Form::Simple,
        subs: &[],
        description,
    }
}

const LABELLED: &[&str] = &["value", "display", "type", "primary"];

/// The core User attributes (RFC 7643 §4.1) accepted and returned.
pub const CORE: &[Attribute] = &[
    simple(
        "userName",
        "The sign-in address (unique in the tenant, case-insensitive)",
    ),
    Attribute {
        name: "name",
        form: Form::Complex,
        subs: &[
            "formatted",
            "familyName",
            "givenName",
            "middleName",
            "honorificPrefix",
            "honorificSuffix",
        ],
        description: "The person's name",
    },
    simple("displayName", "The name shown"),
    simple("nickName", "A casual name"),
    simple("profileUrl", "A profile page"),
    simple("title", "The job title"),
    simple("userType", "The kind of user (Employee, Contractor, …)"),
    simple("preferredLanguage", "The preferred language"),
    simple("locale", "The locale"),
    simple("timezone", "The time zone"),
    simple("active", "False suspends the user and ends their sessions"),
    simple(
        "password",
        "Set (checked against the tenant's policy), never returned",
    ),
    Attribute {
        name: "emails",
        form: Form::MultiValued,
        subs: LABELLED,
        description: "Email addresses",
    },
    Attribute {
        name: "phoneNumbers",
        form: Form::MultiValued,
        subs: LABELLED,
        description: "Phone numbers",
    },
    Attribute {
        name: "ims",
        form: Form::MultiValued,
        subs: LABELLED,
        description: "Instant messaging addresses",
    },
    Attribute {
        name: "photos",
        form: Form::MultiValued,
        subs: LABELLED,
        description: "Photo URLs",
    },
    Attribute {
        name: "addresses",
        form: Form::MultiValued,
        subs: &[
            "formatted",
            "streetAddress",
            "locality",
            "region",
            "postalCode",
            "country",
            "type",
            "primary",
        ],
        description: "Postal addresses",
    },
    Attribute {
        name: "roles",
        form: Form::MultiValued,
        subs: LABELLED,
        description: "Read-only, and accepted empty only: roles are granted in Custodia by the tenant's admins",
    },
    Attribute {
        name: "groups",
        form: Form::MultiValued,
        subs: &["value", "$ref", "display", "type"],
        description: "The groups the user is in (read-only)",
    },
];

/// The enterprise User extension's attributes (RFC 7643 §4.3).
pub const ENTERPRISE: &[Attribute] = &[
    simple("employeeNumber", "The employee number"),
    simple("costCenter", "The cost center"),
    simple("organization", "The organization"),
    simple("division", "The division"),
    simple("department", "The department"),
    Attribute {
        name: "manager",
        form: Form::Complex,
        subs: &["value", "$ref", "displayName"],
        description: "The user's manager",
    },
];

/// Attributes every resource has (RFC 7643 §3.1).
const COMMON: &[Attribute] = &[
    simple("id", "The user's id in Custodia"),
    simple("externalId", "The identity provider's id for the user"),
    Attribute {
        name: "meta",
        form: Form::Complex,
        subs: &[
            "resourceType",
            "created",
            "lastModified",
            "location",
            "version",
        ],
        description: "Resource metadata",
    },
    Attribute {
        name: "schemas",
        form: Form::MultiValued,
        subs: &[],
        description: "The resource's schemas",
    },
];

/// The prefix of the enterprise extension's entries in the profile.
const ENTERPRISE_KEY: &str = "enterprise.";

fn find(table: &'static [Attribute], name: &str) -> Option<&'static Attribute> {
    table.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

pub struct UserShape;

impl Shape for UserShape {
    fn attribute(&self, schema: Option<&str>, name: &str) -> Option<(&'static str, Form)> {
        let table: &[&'static [Attribute]] = match schema {
            Some(s) if s.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) => &[ENTERPRISE],
            Some(s) if !s.eq_ignore_ascii_case(USER_SCHEMA) => return None,
            _ => &[CORE, COMMON],
        };
        table
            .iter()
            .find_map(|t| find(t, name))
            .map(|a| (a.name, a.form))
    }

    fn extension(&self, schema: &str) -> Option<&'static str> {
        schema
            .eq_ignore_ascii_case(ENTERPRISE_SCHEMA)
            .then_some(ENTERPRISE_SCHEMA)
    }

    fn schemas(&self) -> Schemas<'_> {
        SCHEMAS
    }
}

pub const SCHEMAS: Schemas<'static> = Schemas {
    core: USER_SCHEMA,
    extensions: &[ENTERPRISE_SCHEMA],
};

/// A user as a SCIM request states them, checked, ready to compare.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Incoming {
    pub user_name: String,
    pub display_name: Option<String>,
    /// The SCIM entries of the profile's attributes.
    pub attributes: BTreeMap<String, String>,
    pub active: Option<bool>,
    pub password: Option<String>,
}

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::typed(StatusCode::BAD_REQUEST, "invalidValue", detail)
}

fn syntax(detail: impl Into<String>) -> ScimError {
    ScimError::typed(StatusCode::BAD_REQUEST, "invalidSyntax", detail)
}

/// An attribute name as an error may repeat it: short, printable.
fn shown(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(80)
        .collect()
}

fn text(name: &str, value: &Value) -> Result<Option<String>, ScimError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(invalid(format!("{} must be a string", shown(name)))),
    }
}

/// `true`, `false`, or the strings `"True"` / `"False"` Entra sends.
fn boolean(name: &str, value: &Value) -> Result<bool, ScimError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(invalid(format!("{} must be true or false", shown(name)))),
    }
}

/// The sub-attributes of a complex value, under their canonical names.
fn complex(
    attribute: &Attribute,
    value: &Value,
    prefix: &str,
    out: &mut BTreeMap<String, String>,
) -> Result<(), ScimError> {
    let Value::Object(members) = value else {
        return match value {
            Value::Null => Ok(()),
            _ => Err(invalid(format!("{} must be an object", attribute.name))),
        };
    };
    for (name, value) in members {
        let Some(sub) = attribute.subs.iter().find(|s| s.eq_ignore_ascii_case(name)) else {
            return Err(syntax(format!(
                "{}.{} is not a known attribute",
                attribute.name,
                shown(name)
            )));
        };
        if let Some(text) = text(sub, value)? {
            out.insert(format!("{prefix}{}.{sub}", attribute.name), text);
        }
    }
    Ok(())
}

/// The elements of a multi-valued attribute, each with canonical names,
/// as one JSON text (`None` when empty).
fn multi_valued(attribute: &Attribute, value: &Value) -> Result<Option<String>, ScimError> {
    let items = match value {
        Value::Null => return Ok(None),
        Value::Array(items) => items.as_slice(),
        single @ Value::Object(_) => std::slice::from_ref(single),
        _ => return Err(invalid(format!("{} must be an array", attribute.name))),
    };
    let mut out = Vec::with_capacity(items.len());
    let mut primaries = 0;
    for item in items {
        let Value::Object(members) = item else {
            return Err(invalid(format!(
                "each of {} must be an object",
                attribute.name
            )));
        };
        let mut element = Map::new();
        for (name, value) in members {
            let Some(sub) = attribute.subs.iter().find(|s| s.eq_ignore_ascii_case(name)) else {
                return Err(syntax(format!(
                    "{}.{} is not a known attribute",
                    attribute.name,
                    shown(name)
                )));
            };
            if *sub == "primary" {
                let primary = boolean(sub, value)?;
                primaries += usize::from(primary);
                element.insert((*sub).to_owned(), Value::Bool(primary));
            } else if let Some(text) = text(sub, value)? {
                element.insert((*sub).to_owned(), Value::String(text));
            }
        }
        if !element.is_empty() {
            out.push(Value::Object(element));
        }
    }
    if primaries > 1 {
        return Err(invalid(format!(
            "at most one of {} may be primary",
            attribute.name
        )));
    }
    Ok((!out.is_empty()).then(|| Value::Array(out).to_string()))
}

/// Reads a User resource (a POST or PUT body, or a patched resource).
/// `id`: the user's id, which a body may repeat but not change.
pub fn incoming(body: &Value, id: Option<Uuid>) -> Result<Incoming, ScimError> {
    let Value::Object(members) = body else {
        return Err(syntax("the body must be a JSON object"));
    };
    let schemas = filter::get(body, "schemas").and_then(Value::as_array);
    if !schemas.is_some_and(|s| s.iter().any(|s| s.as_str() == Some(USER_SCHEMA))) {
        return Err(syntax(format!("schemas must hold {USER_SCHEMA}")));
    }
    let mut user = Incoming::default();
    let mut user_name = None;
    for (key, value) in members {
        if key.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) {
            let Value::Object(extension) = value else {
                return Err(invalid(format!("{ENTERPRISE_SCHEMA} must be an object")));
            };
            for (name, value) in extension {
                if name.eq_ignore_ascii_case("schemas") {
                    continue; // repeated inside by some clients
                }
                let Some(attribute) = find(ENTERPRISE, name) else {
                    return Err(syntax(format!(
                        "{} is not an attribute of the enterprise extension",
                        shown(name)
                    )));
                };
                if attribute.form == Form::Complex {
                    complex(attribute, value, ENTERPRISE_KEY, &mut user.attributes)?;
                } else if let Some(text) = text(attribute.name, value)? {
                    user.attributes
                        .insert(format!("{ENTERPRISE_KEY}{}", attribute.name), text);
                }
            }
            continue;
        }
        let Some(attribute) = find(CORE, key).or_else(|| find(COMMON, key)) else {
            return Err(syntax(format!("{} is not a known attribute", shown(key))));
        };
        match attribute.name {
            "schemas" | "meta" | "groups" => {} // read-only: ignored (RFC 7644 §3.5.1)
            "id" => {
                let same = value
                    .as_str()
                    .and_then(|v| Uuid::parse_str(v).ok())
                    .is_some_and(|v| Some(v) == id);
                if id.is_some() && !same {
                    return Err(ScimError::typed(
                        StatusCode::BAD_REQUEST,
                        "mutability",
                        "id cannot be changed",
                    ));
                }
            }
            "userName" => user_name = text("userName", value)?,
            "displayName" => user.display_name = text("displayName", value)?,
            "active" => {
                if !value.is_null() {
                    user.active = Some(boolean("active", value)?);
                }
            }
            "password" => user.password = text("password", value)?,
            "roles" => {
                if multi_valued(attribute, value)?.is_some() {
                    return Err(ScimError::typed(
                        StatusCode::BAD_REQUEST,
                        "mutability",
                        "roles are granted in Custodia by the tenant's admins, not over SCIM",
                    ));
                }
            }
            name => match attribute.form {
                Form::Simple => {
                    if let Some(text) = text(name, value)? {
                        user.attributes.insert(name.to_owned(), text);
                    }
                }
                Form::Complex => complex(attribute, value, "", &mut user.attributes)?,
                Form::MultiValued => {
                    if let Some(json) = multi_valued(attribute, value)? {
                        user.attributes.insert(name.to_owned(), json);
                    }
                }
            },
        }
    }
    let Some(user_name) = user_name else {
        return Err(invalid("userName is required"));
    };
    // The sign-in address; the case it was given in is kept to answer with.
    let email = Email::parse(&user_name).map_err(|_| {
        invalid("userName must be an email address: Custodia signs users in by address")
    })?;
    if user_name.trim() != email.as_str() {
        user.attributes
            .insert("userName".to_owned(), user_name.trim().to_owned());
    }
    user.user_name = user_name.trim().to_owned();
    Ok(user)
}

/// Whether a profile attribute is one SCIM owns.
fn scim_key(key: &str) -> bool {
    key == EXTERNAL_ID
        || key.starts_with(ENTERPRISE_KEY)
        || key
            .split('.')
            .next()
            .and_then(|top| find(CORE, top))
            .is_some()
}

/// A user as stored, opened.
pub struct Stored {
    pub id: Uuid,
    pub status: UserStatus,
    pub email: String,
    pub profile: Profile,
    pub version: u64,
    pub created: i64,
    pub updated: i64,
}

fn time(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

impl Stored {
    pub fn active(&self) -> bool {
        matches!(self.status, UserStatus::Active | UserStatus::Invited)
    }

    /// The user as a SCIM resource.
    pub fn resource(&self, base: &str) -> Value {
        let attributes = &self.profile.attributes;
        let mut resource = Map::new();
        let mut schemas = vec![json!(USER_SCHEMA)];
        resource.insert("id".into(), json!(self.id.to_string()));
        if let Some(external) = attributes.get(EXTERNAL_ID) {
            resource.insert("externalId".into(), json!(external));
        }
        let user_name = attributes
            .get("userName")
            .filter(|n| n.to_lowercase() == self.email)
            .unwrap_or(&self.email);
        resource.insert("userName".into(), json!(user_name));
        if let Some(name) = &self.profile.display_name {
            resource.insert("displayName".into(), json!(name));
        }
        resource.insert("active".into(), json!(self.active()));
        let mut enterprise = Map::new();
        for (key, value) in attributes {
            let (target, table, key) = match key.strip_prefix(ENTERPRISE_KEY) {
                Some(rest) => (&mut enterprise, ENTERPRISE, rest),
                None => (&mut resource, CORE, key.as_str()),
            };
            let (top, sub) = match key.split_once('.') {
                Some((top, sub)) => (top, Some(sub)),
                None => (key, None),
            };
            // Kept elsewhere, or set outside SCIM under a name SCIM gives
            // another meaning: not shown.
            let Some(attribute) = find(table, top).filter(|a| {
                ![
                    "userName",
                    "displayName",
                    "active",
                    "password",
                    "groups",
                    "roles",
                ]
                .contains(&a.name)
            }) else {
                continue;
            };
            match (attribute.form, sub) {
                (Form::Complex, Some(sub)) => {
                    let entry = target
                        .entry(attribute.name.to_owned())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(object) = entry {
                        object.insert(sub.to_owned(), json!(value));
                    }
                }
                (Form::MultiValued, None) => {
                    if let Ok(items) = serde_json::from_str::<Value>(value) {
                        target.insert(attribute.name.to_owned(), items);
                    }
                }
                (Form::Simple, None) => {
                    target.insert(attribute.name.to_owned(), json!(value));
                }
                _ => {}
            }
        }
        if !enterprise.is_empty() {
            schemas.push(json!(ENTERPRISE_SCHEMA));
            resource.insert(ENTERPRISE_SCHEMA.into(), Value::Object(enterprise));
        }
        resource.insert("schemas".into(), Value::Array(schemas));
        resource.insert(
            "meta".into(),
            json!({
                "resourceType": "User",
                "created": time(self.created),
                "lastModified": time(self.updated),
                "location": format!("{base}/Users/{}", self.id),
                "version": etag(self.version),
            }),
        );
        Value::Object(resource)
    }
}

/// Opens one sealed field of a user's row.
async fn open(
    state: &AppState,
    tenant: TenantId,
    user: Uuid,
    sealed: Option<&Sealed>,
    field: &str,
) -> Result<Option<String>, ScimError> {
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let event_id = EventId::from_uuid(sealed.event_id)
        .map_err(|_| ScimError::internal("a sealed field in a read model is unreadable"))?;
    let stream = StreamId::new(
        StreamCategory::parse("user").expect("a valid category"),
        user,
    );
    let context = FieldContext {
        tenant,
        stream: &stream,
        event_id,
        field,
    };
    let plain = state
        .ports
        .vault
        .open(&context, &sealed.sealed)
        .await
        .map_err(|e| command_error(e.into()))?;
    Ok(plain.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

/// The user `id` of `tenant` as stored now, opened; `None` if there is no
/// such live user in this tenant (another tenant's ids included).
pub async fn stored(
    state: &AppState,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<Stored>, ScimError> {
    let row = state
        .models
        .get("user", &id.to_string())
        .await
        .map_err(|e| command_error(e.into()))?;
    let Some(row) = row.filter(|r| r.tenant == Some(tenant.as_uuid())) else {
        return Ok(None);
    };
    let status = row.kind.as_deref().and_then(UserStatus::parse);
    let Some(status) = status.filter(|s| !matches!(s, UserStatus::Deleted | UserStatus::Erased))
    else {
        return Ok(None);
    };
    let doc: UserDoc =
        documents::read(&row).map_err(|_| ScimError::internal("a user row is unreadable"))?;
    let Some(email) = open(state, tenant, id, doc.email.as_ref(), "email").await? else {
        return Ok(None); // erased meanwhile
    };
    let attributes = match open(
        state,
        tenant,
        id,
        doc.profile.attributes.as_ref(),
        "attributes",
    )
    .await?
    {
        Some(json) => serde_json::from_str(&json)
            .map_err(|_| ScimError::internal("a profile's attributes are unreadable"))?,
        None => BTreeMap::new(),
    };
    Ok(Some(Stored {
        id,
        status,
        email,
        profile: Profile {
            display_name: open(
                state,
                tenant,
                id,
                doc.profile.display_name.as_ref(),
                "display_name",
            )
            .await?,
            phone: open(state, tenant, id, doc.profile.phone.as_ref(), "phone").await?,
            attributes,
        },
        version: doc.stamp.version,
        created: doc.created_at,
        updated: doc.stamp.updated_at,
    }))
}

/// The commands a request needs, run in order; the last cursor written.
struct Writes<'a> {
    state: &'a AppState,
    client: &'a Client,
    origin: String,
    /// `If-Match`, for the first command only (the ones after it see the
    /// version it made).
    expected: Option<StreamVersion>,
    cursor: Option<LogCursor>,
}

impl Writes<'_> {
    /// A caller for the next command on the user's stream.
    fn caller(&mut self) -> Caller {
        self.client.caller(&self.origin, self.expected.take())
    }

    fn wrote(&mut self, outcome: Outcome) {
        if let Some(appended) = outcome.appended {
            self.cursor = Some(appended.cursor);
        }
    }

    /// Changes the user's status (suspends, reactivates or deletes).
    async fn status(&mut self, id: Uuid, change: StatusChange) -> Result<(), ScimError> {
        let caller = self.caller();
        let (ports, tenant) = (&self.state.ports, self.client.tenant);
        let outcome = user_commands::change_user_status(ports, &caller, tenant, id, change)
            .await
            .map_err(command_error)?;
        self.wrote(outcome);
        Ok(())
    }

    /// Waits until the read models hold what was written.
    async fn settle(&self) -> Result<(), ScimError> {
        if let Some(cursor) = self.cursor {
            self.state
                .projections
                .wait_for(cursor)
                .await
                .map_err(|e| command_error(e.into()))?;
        }
        Ok(())
    }

    /// Makes `current` what `wanted` says: profile, address, password, status.
    async fn change(&mut self, current: &Stored, wanted: Incoming) -> Result<(), ScimError> {
        let (state, tenant, id) = (self.state, self.client.tenant, current.id);
        let mut attributes: BTreeMap<String, String> = current
            .profile
            .attributes
            .iter()
            .filter(|(k, _)| !scim_key(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        attributes.extend(wanted.attributes);
        let profile = Profile {
            display_name: wanted.display_name,
            phone: current.profile.phone.clone(),
            attributes,
        };
        let email = Email::parse(&wanted.user_name)
            .map_err(|_| invalid("userName must be an email address"))?;
        // Everything is checked before the first command is written.
        user_commands::check_changes(
            &state.ports,
            tenant,
            id,
            &profile,
            email.as_str(),
            wanted.password.as_deref(),
        )
        .await
        .map_err(command_error)?;
        // The commands that can still be refused go first (a password the
        // caller must prove, a status the last owner needs), so a refusal
        // leaves the rest unwritten too.
        // The same password again (Okta's sync repeats it) changes nothing.
        let password = match wanted.password {
            Some(password) => {
                let caller = self.client.caller(&self.origin, None);
                let same =
                    credentials::is_current_password(&state.ports, &caller, tenant, id, &password)
                        .await
                        .map_err(command_error)?;
                (!same).then_some(password)
            }
            None => None,
        };
        if let Some(password) = password {
            // Another stream (the credential's): the version is not its own.
            let caller = self.client.caller(&self.origin, None);
            let outcome = credentials::set_password(&state.ports, &caller, tenant, id, &password)
                .await
                .map_err(command_error)?;
            self.wrote(outcome);
        }
        let change = match (wanted.active, current.active()) {
            (Some(false), true) => Some(StatusChange::Suspend),
            (Some(true), false) => Some(StatusChange::Reactivate),
            _ => None,
        };
        if let Some(change) = change {
            self.status(id, change).await?;
        }
        if profile != current.profile {
            let caller = self.caller();
            let outcome = user_commands::update_profile(&state.ports, &caller, tenant, id, profile)
                .await
                .map_err(command_error)?;
            self.wrote(outcome);
        }
        if email.as_str() != current.email {
            let caller = self.caller();
            let outcome = user_commands::change_email_vouched(
                &state.ports,
                &caller,
                tenant,
                id,
                email.as_str(),
            )
            .await
            .map_err(command_error)?;
            self.wrote(outcome);
        }
        Ok(())
    }
}

fn user_id(path: &str) -> Result<Uuid, ScimError> {
    Uuid::parse_str(path).map_err(|_| not_found())
}

fn not_found() -> ScimError {
    ScimError::new(StatusCode::NOT_FOUND, "no such user")
}

/// The user's resource, as answered (with its ETag).
fn respond(
    status: StatusCode,
    user: &Stored,
    base: &str,
    params: Option<&ListParams>,
) -> HttpResponse {
    let mut resource = user.resource(base);
    if let Some(params) = params {
        params.project(&mut resource, &SCHEMAS);
    }
    let mut response = answer_with(status, &resource);
    if let Ok(value) = header::HeaderValue::from_str(&etag(user.version)) {
        response.headers_mut().insert(header::ETAG, value.clone());
    }
    if status == StatusCode::CREATED {
        if let Ok(value) = header::HeaderValue::from_str(&format!("{base}/Users/{}", user.id)) {
            response.headers_mut().insert(header::LOCATION, value);
        }
    }
    response
}

pub async fn create(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ScimError> {
    let client = authenticate(&state, &request).await?;
    let wanted = incoming(&read_json(&body)?, None)?;
    let id = Uuid::now_v7();
    let mut writes = Writes {
        state: &state,
        client: &client,
        origin: format!("scim POST /Users/{id}"),
        expected: None,
        cursor: None,
    };
    let mut attributes = wanted.attributes.clone();
    attributes.retain(|_, v| !v.is_empty());
    let new = NewUser {
        address_vouched: false,
        user: id,
        email: wanted.user_name.clone(),
        profile: Profile {
            display_name: wanted.display_name.clone(),
            phone: None,
            attributes,
        },
        invited: false,
        password: wanted.password.clone(),
    };
    let caller = writes.caller();
    let outcome = user_commands::register_user(&state.ports, &caller, client.tenant, new)
        .await
        .map_err(command_error)?;
    writes.wrote(outcome);
    if wanted.active == Some(false) {
        writes.status(id, StatusChange::Suspend).await?;
    }
    writes.settle().await?;
    let user = stored(&state, client.tenant, id)
        .await?
        .ok_or_else(|| ScimError::internal("a created user could not be read back"))?;
    Ok(respond(StatusCode::CREATED, &user, &client.base, None))
}

pub async fn get(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ScimError> {
    let client = authenticate(&state, &request).await?;
    client.require(Permission::UserReadPersonal)?;
    let params = ListParams::from_query(&query)?;
    let id = user_id(&path)?;
    let user = stored(&state, client.tenant, id)
        .await?
        .ok_or_else(not_found)?;
    let none_match = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    if none_match.is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag(user.version))) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag(user.version)))
            .finish());
    }
    Ok(respond(StatusCode::OK, &user, &client.base, Some(&params)))
}

/// Reads the user and checks `If-Match` against them.
async fn current(
    state: &AppState,
    client: &Client,
    request: &HttpRequest,
    id: Uuid,
) -> Result<(Stored, Option<StreamVersion>), ScimError> {
    let user = stored(state, client.tenant, id)
        .await?
        .ok_or_else(not_found)?;
    let expected = if_match(request)?;
    if let Some(expected) = expected {
        if expected.0 != user.version {
            return Err(ScimError::new(
                StatusCode::PRECONDITION_FAILED,
                "the user changed since that version (If-Match)",
            ));
        }
    }
    Ok((user, expected))
}

pub async fn replace(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ScimError> {
    let client = authenticate(&state, &request).await?;
    client.require(Permission::UserUpdate)?;
    let id = user_id(&path)?;
    let body = read_json(&body)?;
    retried(&state, &client, &request, id, "PUT", |_| {
        incoming(&body, Some(id))
    })
    .await
}

/// Reads the user, makes what `wanted` asks of them, and writes it, with
/// the version read as the expected one. Without `If-Match`, a change by
/// someone else in between is not a refusal: the request is applied again
/// to the user as they are now (a few times), so nothing is lost.
async fn retried(
    state: &AppState,
    client: &Client,
    request: &HttpRequest,
    id: Uuid,
    method: &str,
    wanted: impl Fn(&Stored) -> Result<Incoming, ScimError>,
) -> Result<HttpResponse, ScimError> {
    for attempt in 0.. {
        let (user, asked) = current(state, client, request, id).await?;
        let wanted = wanted(&user)?;
        let expected = asked.or(Some(StreamVersion(user.version)));
        match write(state, client, method, user, expected, wanted).await {
            Err(e) if e.status == StatusCode::PRECONDITION_FAILED && asked.is_none() => {
                if attempt == super::RETRIES {
                    return Err(super::too_busy());
                }
                super::catch_up(state).await?;
                super::pause(attempt).await;
            }
            answer => return answer,
        }
    }
    unreachable!("the loop returns")
}

async fn write(
    state: &AppState,
    client: &Client,
    method: &str,
    user: Stored,
    expected: Option<StreamVersion>,
    wanted: Incoming,
) -> Result<HttpResponse, ScimError> {
    let mut writes = Writes {
        state,
        client,
        origin: format!("scim {method} /Users/{}", user.id),
        expected,
        cursor: None,
    };
    writes.change(&user, wanted).await?;
    writes.settle().await?;
    let user = stored(state, client.tenant, user.id)
        .await?
        .ok_or_else(not_found)?;
    Ok(respond(StatusCode::OK, &user, &client.base, None))
}

pub async fn modify(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ScimError> {
    let client = authenticate(&state, &request).await?;
    client.require(Permission::UserUpdate)?;
    let id = user_id(&path)?;
    let operations = patch::operations(&read_json(&body)?).map_err(ScimError::from)?;
    // A user always has a status: `active` is set, never removed.
    let removes_active = operations.iter().any(|op| {
        op.kind == patch::Kind::Remove
            && op
                .path
                .as_ref()
                .is_some_and(|p| p.attr.name.eq_ignore_ascii_case("active") && p.filter.is_none())
    });
    if removes_active {
        return Err(ScimError::typed(
            StatusCode::BAD_REQUEST,
            "mutability",
            "active cannot be removed; replace it with false to suspend the user",
        ));
    }
    retried(&state, &client, &request, id, "PATCH", |user| {
        let mut resource = user.resource(&client.base);
        patch::apply(&mut resource, &operations, &UserShape).map_err(ScimError::from)?;
        // A password set by the patch is in the patched resource; the rest
        // is checked as a whole resource, as a PUT would be.
        incoming(&resource, Some(id))
    })
    .await
}

pub async fn delete(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ScimError> {
    let client = authenticate(&state, &request).await?;
    client.require(Permission::UserDelete)?;
    let id = user_id(&path)?;
    let (user, expected) = current(&state, &client, &request, id).await?;
    let mut writes = Writes {
        state: &state,
        client: &client,
        origin: format!("scim DELETE /Users/{}", user.id),
        expected,
        cursor: None,
    };
    writes.status(id, StatusChange::Delete).await?;
    writes.settle().await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The ids a filter's indexed equality (`id`, `userName`, `externalId`)
/// narrows the list to; `None` when the filter has none.
async fn indexed(
    state: &AppState,
    tenant: TenantId,
    filter: &Filter,
) -> Result<Option<Vec<Uuid>>, ScimError> {
    if let Some(id) = filter.required_equal("id") {
        return Ok(Some(Uuid::parse_str(id).into_iter().collect()));
    }
    let (model, lookup) = if let Some(name) = filter.required_equal("userName") {
        let Ok(email) = Email::parse(name) else {
            return Ok(Some(vec![]));
        };
        let index = user_commands::email_index(&state.ports, tenant, &email)
            .await
            .map_err(command_error)?;
        ("user", hex::encode(index.0))
    } else if let Some(external) = filter.required_equal(EXTERNAL_ID) {
        let index = external_id_index(&*state.ports.vault, tenant, external)
            .await
            .map_err(command_error)?;
        ("user_external_id", hex::encode(index.0))
    } else {
        return Ok(None);
    };
    let rows = custodia_application::read_models::list_all(
        &*state.models,
        RowQuery {
            model,
            tenant: Some(tenant.as_uuid()),
            lookup: Some(lookup),
            ..RowQuery::default()
        },
    )
    .await
    .map_err(|e| command_error(e.into()))?;
    Ok(Some(
        rows.iter()
            .filter_map(|r| match model {
                "user" => Uuid::parse_str(&r.id).ok(),
                _ => r.parent,
            })
            .collect(),
    ))
}

fn live_users(tenant: TenantId) -> RowQuery {
    RowQuery {
        model: "user",
        tenant: Some(tenant.as_uuid()),
        exclude_kinds: vec![UserStatus::Deleted.as_str(), UserStatus::Erased.as_str()],
        ..RowQuery::default()
    }
}

pub async fn list(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ScimError> {
    let client = authenticate(&state, &request).await?;
    let params = ListParams::from_query(&query)?;
    let (total, resources) = search(&state, &client, &params).await?;
    Ok(list_response(total, params.start_index, resources))
}

pub async fn search_post(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ScimError> {
    let client = authenticate(&state, &request).await?;
    let params = ListParams::from_search(&read_json(&body)?)?;
    let (total, resources) = search(&state, &client, &params).await?;
    Ok(list_response(total, params.start_index, resources))
}

/// One page of the resources `params` selects, and how many it selects.
pub async fn search(
    state: &AppState,
    client: &Client,
    params: &ListParams,
) -> Result<(u64, Vec<Value>), ScimError> {
    client.require(Permission::UserReadPersonal)?;
    let tenant = client.tenant;
    let store = |e: custodia_application::event_store::StoreError| command_error(e.into());
    let (total, page): (u64, Vec<Stored>) = match &params.filter {
        None => {
            let total = state
                .models
                .count(&live_users(tenant))
                .await
                .map_err(store)?;
            let rows = state
                .models
                .list(&RowQuery {
                    offset: params.start_index - 1,
                    limit: params.count,
                    ..live_users(tenant)
                })
                .await
                .map_err(store)?;
            let mut page = Vec::with_capacity(rows.len());
            for row in rows {
                if let Some(user) = stored(state, tenant, user_id(&row.id)?).await? {
                    page.push(user);
                }
            }
            (total, page)
        }
        Some(filter) => {
            let ids = match indexed(state, tenant, filter).await? {
                Some(ids) => ids,
                None => {
                    let users = state
                        .models
                        .count(&live_users(tenant))
                        .await
                        .map_err(store)?;
                    if users > SCAN_LIMIT {
                        return Err(ScimError::typed(
                            StatusCode::BAD_REQUEST,
                            "tooMany",
                            format!(
                                "this filter is evaluated on every user, and the tenant has more than {SCAN_LIMIT}: filter on id, userName or externalId with eq"
                            ),
                        ));
                    }
                    custodia_application::read_models::list_all(&*state.models, live_users(tenant))
                        .await
                        .map_err(store)?
                        .iter()
                        .filter_map(|r| Uuid::parse_str(&r.id).ok())
                        .collect()
                }
            };
            let mut matched = Vec::new();
            for id in ids {
                if let Some(user) = stored(state, tenant, id).await? {
                    if filter.matches(&user.resource(&client.base), &SCHEMAS) {
                        matched.push(user);
                    }
                }
            }
            // Creation order (ids are UUIDv7): stable across pages.
            matched.sort_by_key(|u| u.id);
            let total = matched.len() as u64;
            let page = matched
                .into_iter()
                .skip(params.start_index - 1)
                .take(params.count)
                .collect();
            (total, page)
        }
    };
    let resources = page
        .iter()
        .map(|user| {
            let mut resource = user.resource(&client.base);
            params.project(&mut resource, &SCHEMAS);
            resource
        })
        .collect();
    Ok((total, resources))
}
