//! What a GraphQL document may cost, checked on the parsed document before
//! it is validated or run (validation itself walks fragment spreads, so a
//! few hundred bytes of nested fragments would otherwise cost seconds).
//!
//! The expanded size counts every field as often as it would be selected
//! with fragments spread in place, in time linear in the document (each
//! fragment's size is computed once).

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{
    ExecutableDocument, FragmentDefinition, Selection, SelectionSet,
};
use async_graphql::{Positioned, ServerError, ServerResult, Variables};

/// The most fields a document may select once its fragments are spread
/// (the standard introspection query selects about 200).
pub const MAX_EXPANDED_FIELDS: usize = 2_000;
/// The most variables an operation may declare.
pub const MAX_VARIABLES: usize = 64;
/// The most errors one response lists; the rest are summed up in one more.
pub const MAX_ERRORS: usize = 20;

/// The schema extension that applies [`check`] to every document before
/// the executor parses and walks it, however it came (HTTP or WebSocket).
pub struct DocumentLimits;

impl ExtensionFactory for DocumentLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(DocumentLimits)
    }
}

#[async_trait::async_trait]
impl Extension for DocumentLimits {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        // Before the executor's own parse: it walks fragment spreads for
        // its depth limit right after parsing, which is already exponential.
        // (A document that does not parse is left to it to report.)
        if let Some(parsed) = super::parsed::parsed(query) {
            parsed
                .within_limits
                .clone()
                .map_err(|limit| ServerError::new(limit, None))?;
        }
        next.run(ctx, query, variables).await
    }
}

/// Refuses a document over the limits, naming the limit.
pub fn check(document: &ExecutableDocument) -> Result<(), String> {
    let mut total = 0usize;
    let mut sizes = Sizes {
        fragments: &document.fragments,
        known: HashMap::new(),
    };
    for (_, operation) in document.operations.iter() {
        if operation.node.variable_definitions.len() > MAX_VARIABLES {
            return Err(format!(
                "an operation may declare at most {MAX_VARIABLES} variables"
            ));
        }
        total = total.saturating_add(sizes.of(&operation.node.selection_set));
    }
    if total > MAX_EXPANDED_FIELDS {
        return Err(format!(
            "the query selects too many fields once its fragments are spread \
             (at most {MAX_EXPANDED_FIELDS}), or spreads a fragment that is unknown or \
             spreads itself"
        ));
    }
    Ok(())
}

struct Sizes<'a> {
    fragments: &'a HashMap<async_graphql::Name, Positioned<FragmentDefinition>>,
    /// A fragment's expanded size; `None` while it is being measured (a
    /// spread of it then is a cycle, which validation refuses: counted 0).
    known: HashMap<&'a str, Option<usize>>,
}

impl<'a> Sizes<'a> {
    fn of(&mut self, set: &'a Positioned<SelectionSet>) -> usize {
        set.node.items.iter().fold(0usize, |sum, item| {
            let size = match &item.node {
                Selection::Field(field) => {
                    1usize.saturating_add(self.of(&field.node.selection_set))
                }
                Selection::InlineFragment(inline) => self.of(&inline.node.selection_set),
                Selection::FragmentSpread(spread) => self.fragment(&spread.node.fragment_name.node),
            };
            sum.saturating_add(size)
        })
    }

    fn fragment(&mut self, name: &'a str) -> usize {
        if let Some(known) = self.known.get(name) {
            // A cycle: refused here, before the executor's walks unfold it.
            return known.unwrap_or(usize::MAX);
        }
        let Some(definition) = self.fragments.get(name) else {
            // Unknown: refused here too (the executor would walk the whole
            // tree above it before saying so).
            return usize::MAX;
        };
        self.known.insert(name, None);
        let size = self.of(&definition.node.selection_set);
        self.known.insert(name, Some(size));
        size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expanded(query: &str) -> Result<(), String> {
        check(&async_graphql::parser::parse_query(query).unwrap())
    }

    /// Fragments that each spread the previous one twice: `levels` levels
    /// select 2^levels fields in a document of a few hundred bytes.
    fn doubling(levels: usize) -> String {
        let mut query = String::from("query { ...F0 }\nfragment F0 on Query { serverTime }\n");
        for level in 1..=levels {
            query.push_str(&format!(
                "fragment F{level} on Query {{ ...F{prev} ...F{prev} }}\n",
                prev = level - 1
            ));
        }
        query.replace("{ ...F0 }", &format!("{{ ...F{levels} }}"))
    }

    #[test]
    fn nested_fragments_are_measured_spread_and_refused_past_the_limit() {
        assert!(expanded(&doubling(10)).is_ok(), "1,024 fields");
        let exponential = doubling(24);
        assert!(exponential.len() < 1_500);
        let refused = expanded(&exponential).unwrap_err();
        assert!(refused.contains("too many fields"), "{refused}");
    }

    #[tokio::test]
    async fn the_schema_refuses_before_its_own_exponential_walks() {
        // 2^60 fields: only a check ahead of the executor's own parse and
        // depth walk answers at all (the bound only stops a regression from
        // hanging the suite).
        let schema = super::super::schema(true);
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            schema.execute(doubling(60)),
        )
        .await
        .expect("answered");
        assert!(
            answer.errors[0].message.contains("too many fields"),
            "{:?}",
            answer.errors
        );
    }

    #[test]
    fn the_standard_introspection_query_fits() {
        assert!(expanded(INTROSPECTION).is_ok());
    }

    #[test]
    fn declared_variables_are_bounded() {
        let declare = |n: usize| {
            let vars: Vec<String> = (0..n).map(|i| format!("$v{i}: Int")).collect();
            format!("query Q({}) {{ serverTime }}", vars.join(", "))
        };
        assert!(expanded(&declare(MAX_VARIABLES)).is_ok());
        assert!(expanded(&declare(MAX_VARIABLES + 1)).is_err());
    }

    #[test]
    fn cycles_and_unknown_fragments_are_refused_at_once() {
        let cycle = "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }";
        assert!(expanded(cycle).is_err());
        let unknown = doubling(24).replace(
            "fragment F0 on Query { serverTime }",
            "fragment F0 on Query { ...Missing }",
        );
        assert!(expanded(&unknown).is_err());
    }

    /// The query the GraphQL tests send too (graphql-js `getIntrospectionQuery`).
    const INTROSPECTION: &str = include_str!("../../tests/introspection.graphql");
}
