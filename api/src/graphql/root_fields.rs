//! A failing nullable root field answers `null` with its key kept (spec
//! §6.4.4, "Handling Field Errors"). async-graphql leaves the key out, and
//! answers `data: null` when every root field failed; this puts them back.

use std::collections::HashSet;
use std::sync::LazyLock;

use async_graphql::parser::types::{DocumentOperations, Selection, TypeKind, TypeSystemDefinition};
use async_graphql::{Name, Value};

/// The nullable fields of `Query` and `Mutation`.
static NULLABLE: LazyLock<HashSet<String>> = LazyLock::new(|| {
    let sdl = super::sdl();
    let Ok(document) = async_graphql::parser::parse_schema(&sdl) else {
        return HashSet::new();
    };
    document
        .definitions
        .iter()
        .filter_map(|definition| match definition {
            TypeSystemDefinition::Type(ty) => Some(&ty.node),
            _ => None,
        })
        .filter(|ty| matches!(ty.name.node.as_str(), "Query" | "Mutation"))
        .filter_map(|ty| match &ty.kind {
            TypeKind::Object(object) => Some(&object.fields),
            _ => None,
        })
        .flatten()
        .filter(|field| field.node.ty.node.nullable)
        .map(|field| field.node.name.node.to_string())
        .collect()
});

/// The root fields `query` selects in the operation it runs
/// (`operation_name`): each field's response key and name.
pub fn selected(query: &str, operation_name: Option<&str>) -> Vec<(String, String)> {
    let Ok(document) = async_graphql::parser::parse_query(query) else {
        return Vec::new();
    };
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(operation), _) => Some(operation),
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name),
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            operations.values().next()
        }
        _ => None,
    };
    let Some(operation) = operation else {
        return Vec::new();
    };
    operation
        .node
        .selection_set
        .node
        .items
        .iter()
        .filter_map(|item| match &item.node {
            Selection::Field(field) => {
                let name = field.node.name.node.to_string();
                let key = field
                    .node
                    .alias
                    .as_ref()
                    .map_or_else(|| name.clone(), |alias| alias.node.to_string());
                Some((key, name))
            }
            _ => None,
        })
        .collect()
}

/// Puts `null` back for every failed nullable root field (one an error's
/// path starts at). A failed non-null root field nulls `data` (spec
/// §6.4.4), and that is left as it is.
pub fn keep_failed(
    data: &mut Value,
    errors: &[async_graphql::ServerError],
    selected: &[(String, String)],
) {
    let failed: Vec<&(String, String)> = selected
        .iter()
        .filter(|(key, _)| {
            errors.iter().any(|error| {
                matches!(error.path.first(),
                    Some(async_graphql::PathSegment::Field(first)) if first == key)
            })
        })
        .collect();
    if failed.is_empty() || failed.iter().any(|(_, name)| !NULLABLE.contains(name)) {
        return;
    }
    if *data == Value::Null {
        // Only if nothing else was selected: then every field failed.
        if failed.len() != selected.len() {
            return;
        }
        *data = Value::Object(Default::default());
    }
    if let Value::Object(object) = data {
        for (key, _) in failed {
            object.entry(Name::new(key)).or_insert(Value::Null);
        }
    }
}
