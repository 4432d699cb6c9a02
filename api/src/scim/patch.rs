//! SCIM PATCH (RFC 7644 §3.5.2) applied to a resource's JSON: add,
//! remove and replace, with or without a path, value filters, dotted and
//! URN-qualified keys, and the quirks of the real clients (capitalised
//! operation names, removal by a value array). The result is checked as a
//! whole resource afterwards, as a PUT would be.

use serde_json::{Map, Value};

use super::filter::{self, AttrPath, Filter, PatchPath, Schemas};

/// At most this many operations in one request.
pub const MAX_OPERATIONS: usize = 1000;

/// Why an operation could not be applied, with its SCIM `scimType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchError {
    pub scim_type: &'static str,
    pub detail: String,
}

fn refuse<T>(scim_type: &'static str, detail: impl Into<String>) -> Result<T, PatchError> {
    Err(PatchError {
        scim_type,
        detail: detail.into(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Add,
    Remove,
    Replace,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub kind: Kind,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

/// What the patched resource's attributes are: their canonical names and
/// whether they are multi-valued or complex.
pub trait Shape {
    /// The canonical name of attribute `name` of `schema` (`None`: the
    /// core schema), and its form; `None` if there is no such attribute.
    fn attribute(&self, schema: Option<&str>, name: &str) -> Option<(&'static str, Form)>;
    /// The key an extension's attributes live under, canonically spelled.
    fn extension(&self, schema: &str) -> Option<&'static str>;
    fn schemas(&self) -> Schemas<'_>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Simple,
    Complex,
    MultiValued,
}

/// Reads a PatchOp request body.
pub fn operations(body: &Value) -> Result<Vec<Operation>, PatchError> {
    let schemas = filter::get(body, "schemas").and_then(Value::as_array);
    let patch_op = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
    if !schemas.is_some_and(|s| s.iter().any(|s| s.as_str() == Some(patch_op))) {
        return refuse("invalidSyntax", format!("schemas must hold {patch_op}"));
    }
    let Some(list) = filter::get(body, "Operations").and_then(Value::as_array) else {
        return refuse("invalidSyntax", "Operations must be an array");
    };
    if list.is_empty() || list.len() > MAX_OPERATIONS {
        return refuse(
            "invalidSyntax",
            format!("Operations must hold 1 to {MAX_OPERATIONS} operations"),
        );
    }
    list.iter()
        .enumerate()
        .map(|(n, op)| {
            let kind = match filter::get(op, "op").and_then(Value::as_str) {
                Some(k) if k.eq_ignore_ascii_case("add") => Kind::Add,
                Some(k) if k.eq_ignore_ascii_case("remove") => Kind::Remove,
                Some(k) if k.eq_ignore_ascii_case("replace") => Kind::Replace,
                _ => {
                    return refuse(
                        "invalidSyntax",
                        format!("operation {n}: op must be add, remove or replace"),
                    )
                }
            };
            let path =
                match filter::get(op, "path") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(path)) if path.is_empty() => None,
                    Some(Value::String(path)) => Some(filter::patch_path(path).or_else(|e| {
                        refuse("invalidPath", format!("operation {n}: path: {}", e.0))
                    })?),
                    Some(_) => {
                        return refuse(
                            "invalidPath",
                            format!("operation {n}: path must be a string"),
                        )
                    }
                };
            let value = filter::get(op, "value").filter(|v| !v.is_null()).cloned();
            if kind != Kind::Remove && value.is_none() {
                return refuse(
                    "invalidValue",
                    format!("operation {n}: a value is required"),
                );
            }
            if kind == Kind::Remove && path.is_none() {
                return refuse("noTarget", format!("operation {n}: remove needs a path"));
            }
            Ok(Operation { kind, path, value })
        })
        .collect()
}

/// Applies `operations` in order to `resource`.
pub fn apply(
    resource: &mut Value,
    operations: &[Operation],
    shape: &dyn Shape,
) -> Result<(), PatchError> {
    for operation in operations {
        let (kind, value) = (operation.kind, operation.value.as_ref());
        match &operation.path {
            // A bare extension URN: its whole object.
            Some(path) if extension_named(path, shape).is_some() => {
                let extension = extension_named(path, shape).expect("just matched");
                match kind {
                    Kind::Remove => {
                        if let Some(object) = resource.as_object_mut() {
                            object.retain(|key, _| !key.eq_ignore_ascii_case(extension));
                        }
                    }
                    Kind::Add | Kind::Replace => {
                        extension_values(resource, kind, extension, value, shape)?
                    }
                }
            }
            Some(path) => apply_at(resource, kind, path, value, shape)?,
            None => {
                // Path-less: each key of the value is a path (dotted or
                // URN-qualified keys included), or an extension's object.
                let Some(Value::Object(values)) = value else {
                    return refuse(
                        "invalidValue",
                        "a path-less operation's value must be an object",
                    );
                };
                for (key, value) in values {
                    if let Some(extension) = shape.extension(key) {
                        extension_values(resource, kind, extension, Some(value), shape)?;
                        continue;
                    }
                    let path = PatchPath {
                        attr: attr(key)?,
                        filter: None,
                    };
                    apply_at(resource, kind, &path, Some(value), shape)?;
                }
            }
        }
    }
    Ok(())
}

/// The extension a path names as a whole (`urn:…:enterprise:2.0:User`).
fn extension_named(path: &PatchPath, shape: &dyn Shape) -> Option<&'static str> {
    let schema = path.attr.schema.as_deref()?;
    if path.filter.is_some() || path.attr.sub.is_some() {
        return None;
    }
    shape.extension(&format!("{schema}:{}", path.attr.name))
}

/// Adds or replaces each attribute of an extension's object `value`.
fn extension_values(
    resource: &mut Value,
    kind: Kind,
    extension: &'static str,
    value: Option<&Value>,
    shape: &dyn Shape,
) -> Result<(), PatchError> {
    let Some(Value::Object(inner)) = value else {
        return refuse("invalidValue", format!("{extension} must be an object"));
    };
    // Some clients repeat the extension's `schemas` inside it.
    for (name, value) in inner
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("schemas"))
    {
        let path = PatchPath {
            attr: attr(&format!("{extension}:{name}"))?,
            filter: None,
        };
        apply_at(resource, kind, &path, Some(value), shape)?;
    }
    Ok(())
}

fn attr(key: &str) -> Result<AttrPath, PatchError> {
    filter::attr_path(key).or_else(|e| refuse("invalidPath", e.0))
}

/// An attribute's place: the object it lives in, its canonical name, its form.
type Place<'r> = (&'r mut Map<String, Value>, &'static str, Form);

/// The object an attribute lives in (the resource, or an extension's
/// object, made when `create`), and the attribute's canonical name and form.
fn container<'r>(
    resource: &'r mut Value,
    path: &AttrPath,
    shape: &dyn Shape,
    create: bool,
) -> Result<Option<Place<'r>>, PatchError> {
    let Some((name, form)) = shape.attribute(path.schema.as_deref(), &path.name) else {
        return refuse("invalidPath", "no such attribute");
    };
    let core = path
        .schema
        .as_deref()
        .is_none_or(|s| shape.extension(s).is_none());
    let Some(root) = resource.as_object_mut() else {
        return refuse("invalidValue", "the resource is not an object");
    };
    if core {
        return Ok(Some((root, name, form)));
    }
    let key = path
        .schema
        .as_deref()
        .and_then(|s| shape.extension(s))
        .expect("checked above");
    if !root.contains_key(key) {
        if !create {
            return Ok(None);
        }
        root.insert(key.to_owned(), Value::Object(Map::new()));
    }
    match root.get_mut(key) {
        Some(Value::Object(object)) => Ok(Some((object, name, form))),
        _ => refuse("invalidValue", format!("{key} must be an object")),
    }
}

/// The key of `name` in `object`, whatever its case.
fn key_of(object: &Map<String, Value>, name: &str) -> Option<String> {
    object
        .keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
}

/// Merges `value`'s members into `target` (an object), each by name. A
/// bare string stands for `{"value": …}` and a one-element array for its
/// element (as Entra sends a manager).
fn merge(target: &mut Value, value: &Value) -> Result<(), PatchError> {
    let wrapped;
    let value = match value {
        Value::String(_) => {
            wrapped = Value::Object(Map::from_iter([("value".to_owned(), value.clone())]));
            &wrapped
        }
        Value::Array(items) if items.len() == 1 => &items[0],
        other => other,
    };
    let Value::Object(incoming) = value else {
        return refuse(
            "invalidValue",
            "a complex attribute's value must be an object",
        );
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let object = target.as_object_mut().expect("made an object");
    for (name, value) in incoming {
        let key = key_of(object, name).unwrap_or_else(|| name.clone());
        object.insert(key, value.clone());
    }
    Ok(())
}

fn apply_at(
    resource: &mut Value,
    kind: Kind,
    path: &PatchPath,
    value: Option<&Value>,
    shape: &dyn Shape,
) -> Result<(), PatchError> {
    let Some((object, name, form)) = container(resource, &path.attr, shape, kind != Kind::Remove)?
    else {
        return Ok(()); // removing from an extension that is not there
    };
    let key = key_of(object, name);
    match (&path.filter, &path.attr.sub, form) {
        (Some(_), _, Form::Simple | Form::Complex) => refuse(
            "invalidPath",
            "a value filter applies to a multi-valued attribute",
        ),
        (None, Some(_), Form::Simple) => {
            refuse("invalidPath", "this attribute has no sub-attributes")
        }
        (None, Some(_), Form::MultiValued) => refuse(
            "invalidPath",
            "name the values with a filter: attribute[filter].sub",
        ),
        // name.givenName, manager.value
        (None, Some(sub), Form::Complex) => {
            let key = key.unwrap_or_else(|| name.to_owned());
            match kind {
                Kind::Remove => {
                    if let Some(Value::Object(inner)) = object.get_mut(&key) {
                        if let Some(sub_key) = key_of(inner, sub) {
                            inner.remove(&sub_key);
                        }
                    }
                    Ok(())
                }
                Kind::Add | Kind::Replace => {
                    let target = object
                        .entry(key)
                        .or_insert_with(|| Value::Object(Map::new()));
                    merge(
                        target,
                        &Value::Object(Map::from_iter([(
                            sub.clone(),
                            value.cloned().unwrap_or(Value::Null),
                        )])),
                    )
                }
            }
        }
        (None, None, form) => {
            let key = key.unwrap_or_else(|| name.to_owned());
            match (kind, form) {
                (Kind::Remove, Form::MultiValued) if value.is_some() => {
                    // Remove the elements listed (as Entra sends a member's
                    // removal): each matched by its `value`.
                    let listed: Vec<Value> = match value {
                        Some(Value::Array(items)) => items.clone(),
                        Some(other) => vec![other.clone()],
                        None => vec![],
                    };
                    let value_of = |v: &Value| {
                        filter::get(v, "value")
                            .cloned()
                            .unwrap_or_else(|| v.clone())
                    };
                    let gone: Vec<Value> = listed.iter().map(value_of).collect();
                    if let Some(Value::Array(items)) = object.get_mut(&key) {
                        items.retain(|item| !gone.contains(&value_of(item)));
                    }
                    Ok(())
                }
                (Kind::Remove, _) => {
                    object.remove(&key);
                    Ok(())
                }
                (Kind::Add, Form::MultiValued) => {
                    let incoming = match value {
                        Some(Value::Array(items)) => items.clone(),
                        Some(other) => vec![other.clone()],
                        None => vec![],
                    };
                    let entry = object.entry(key).or_insert_with(|| Value::Array(vec![]));
                    if !entry.is_array() {
                        *entry = Value::Array(vec![]);
                    }
                    let items = entry.as_array_mut().expect("made an array");
                    for item in incoming {
                        if !items.contains(&item) {
                            items.push(item);
                        }
                    }
                    Ok(())
                }
                (Kind::Replace, Form::MultiValued) => {
                    let items = match value {
                        Some(Value::Array(items)) => items.clone(),
                        Some(other) => vec![other.clone()],
                        None => vec![],
                    };
                    object.insert(key, Value::Array(items));
                    Ok(())
                }
                (Kind::Add | Kind::Replace, Form::Complex) => {
                    let target = object.entry(key).or_insert(Value::Null);
                    merge(target, value.unwrap_or(&Value::Null))
                }
                (Kind::Add | Kind::Replace, Form::Simple) => {
                    object.insert(key, value.cloned().unwrap_or(Value::Null));
                    Ok(())
                }
            }
        }
        (Some(selector), sub, Form::MultiValued) => {
            let schemas = shape.schemas();
            let key = key.unwrap_or_else(|| name.to_owned());
            let entry = object.entry(key).or_insert_with(|| Value::Array(vec![]));
            if !entry.is_array() {
                *entry = Value::Array(vec![]);
            }
            let items = entry.as_array_mut().expect("made an array");
            let matched: Vec<usize> = (0..items.len())
                .filter(|i| selector.matches(&items[*i], &schemas))
                .collect();
            match kind {
                Kind::Remove => {
                    match sub {
                        None => {
                            let mut index = 0;
                            items.retain(|_| {
                                index += 1;
                                !matched.contains(&(index - 1))
                            });
                        }
                        Some(sub) => {
                            for i in matched {
                                if let Some(Value::Object(item)) = items.get_mut(i) {
                                    if let Some(sub_key) = key_of(item, sub) {
                                        item.remove(&sub_key);
                                    }
                                }
                            }
                        }
                    }
                    Ok(())
                }
                Kind::Add | Kind::Replace => {
                    let incoming = value.cloned().unwrap_or(Value::Null);
                    let change = |item: &mut Value| match sub {
                        Some(sub) => merge(
                            item,
                            &Value::Object(Map::from_iter([(sub.clone(), incoming.clone())])),
                        ),
                        None => merge(item, &incoming),
                    };
                    if matched.is_empty() {
                        // No element matches: a simple `attr eq "x"` filter
                        // makes one (as Entra expects of
                        // `emails[type eq "work"].value`); others have no target.
                        let Filter::Compare(on, filter::Op::Eq, Value::String(wanted)) = selector
                        else {
                            return refuse("noTarget", "no value matches the path's filter");
                        };
                        if on.sub.is_some() {
                            return refuse("noTarget", "no value matches the path's filter");
                        }
                        let mut item = Value::Object(Map::from_iter([(
                            on.name.clone(),
                            Value::String(wanted.clone()),
                        )]));
                        change(&mut item)?;
                        items.push(item);
                        return Ok(());
                    }
                    for i in matched {
                        change(&mut items[i])?;
                    }
                    Ok(())
                }
            }
        }
    }
}
