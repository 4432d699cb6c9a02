//! Field errors at the root, as the spec handles them (§6.4.4): a failing
//! nullable root field answers `null` with its key kept, and a failing
//! non-null one makes `data` `null`. async-graphql leaves the key out, and
//! keeps the other fields when a non-null one failed; this puts it right.

use std::collections::HashSet;
use std::sync::LazyLock;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Selection, SelectionSet, TypeKind, TypeSystemDefinition,
};
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
/// (`operation_name`), also through fragments: each field's response key
/// and name.
pub fn selected(query: &str, operation_name: Option<&str>) -> Vec<(String, String)> {
    let Some(parsed) = super::parsed::parsed(query) else {
        return Vec::new();
    };
    let document = &parsed.document;
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(operation), _) => Some(operation),
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name),
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            operations.values().next()
        }
        _ => None,
    };
    let mut fields = Vec::new();
    if let Some(operation) = operation {
        collect(document, &operation.node.selection_set.node, &mut fields, 0);
    }
    fields
}

/// How deep fragments may nest here (the limits refuse cycles before any
/// of this runs; this only bounds the walk).
const MAX_FRAGMENT_DEPTH: usize = 16;

fn collect(
    document: &ExecutableDocument,
    selection: &SelectionSet,
    fields: &mut Vec<(String, String)>,
    depth: usize,
) {
    if depth > MAX_FRAGMENT_DEPTH {
        return;
    }
    for item in &selection.items {
        match &item.node {
            Selection::Field(field) => {
                let name = field.node.name.node.to_string();
                let key = field
                    .node
                    .alias
                    .as_ref()
                    .map_or_else(|| name.clone(), |alias| alias.node.to_string());
                if !fields.iter().any(|(k, _)| *k == key) {
                    fields.push((key, name));
                }
            }
            Selection::FragmentSpread(spread) => {
                if let Some(fragment) = document.fragments.get(&spread.node.fragment_name.node) {
                    collect(
                        document,
                        &fragment.node.selection_set.node,
                        fields,
                        depth + 1,
                    );
                }
            }
            Selection::InlineFragment(inline) => {
                collect(document, &inline.node.selection_set.node, fields, depth + 1);
            }
        }
    }
}

/// Applies §6.4.4 to the root: a failed nullable root field is `null`, its
/// key kept; a failed non-null one makes `data` itself `null`.
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
    if failed.is_empty() {
        return;
    }
    if failed.iter().any(|(_, name)| !NULLABLE.contains(name)) {
        *data = Value::Null;
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
