//! Parsed GraphQL documents, kept by their text (issue 14): a client sends
//! the same few documents again and again, and each request used to parse
//! its document three times (the root fields it selects, the document
//! limits, the executor).
//!
//! Only documents that parse and are within the document limits are kept
//! (both depend on the text alone). The cache holds at most [`KEPT_BYTES`]
//! of document text and starts over when full, so a client sending ever
//! new documents costs it memory only up to that bound. A parsed form can
//! take about a hundred times its text (a document of one-letter fields),
//! so the bound is on the order of 25 MiB.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use async_graphql::parser::types::ExecutableDocument;

/// Document text kept at most (an application sends a few dozen
/// documents of a few hundred bytes).
pub const KEPT_BYTES: usize = 256 * 1024;
/// Longer documents are parsed every time and never kept.
const LONGEST_KEPT: usize = 8 * 1024;

/// A document that parses, and whether it is within the limits.
pub struct Parsed {
    pub document: ExecutableDocument,
    pub within_limits: Result<(), String>,
}

struct Cache {
    documents: HashMap<Arc<str>, Arc<Parsed>>,
    bytes: usize,
}

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(|| {
    Mutex::new(Cache {
        documents: HashMap::new(),
        bytes: 0,
    })
});

/// `query` parsed (from the cache when it was seen before); `None` when it
/// does not parse.
pub fn parsed(query: &str) -> Option<Arc<Parsed>> {
    let lock = || {
        CACHE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    };
    if let Some(known) = lock().documents.get(query) {
        return Some(known.clone());
    }
    let document = async_graphql::parser::parse_query(query).ok()?;
    let within_limits = super::limits::check(&document);
    let parsed = Arc::new(Parsed {
        document,
        within_limits,
    });
    if query.len() <= LONGEST_KEPT && parsed.within_limits.is_ok() {
        let mut cache = lock();
        if cache.bytes + query.len() > KEPT_BYTES {
            cache.documents.clear();
            cache.bytes = 0;
        }
        if cache
            .documents
            .insert(Arc::from(query), parsed.clone())
            .is_none()
        {
            cache.bytes += query.len();
        }
    }
    Some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_is_parsed_once_and_what_does_not_parse_is_not_kept() {
        let query = "{ me { id } } # parsed-cache test";
        let first = parsed(query).unwrap();
        let second = parsed(query).unwrap();
        assert!(
            Arc::ptr_eq(&first, &second),
            "the second use is the kept one"
        );
        assert!(first.within_limits.is_ok());
        assert!(parsed("{ me { id } # parsed-cache test, unclosed").is_none());
    }

    #[test]
    fn a_document_over_the_limits_is_refused_every_time_and_never_kept() {
        // 41 fields of 50 spread from a fragment: over the limit.
        let fields: String = (0..50).map(|i| format!(" f{i}")).collect();
        let spreads: String = (0..41).map(|_| " ...F").collect();
        let query = format!("{{ me {{ {spreads} }} }} fragment F on User {{ {fields} }}");
        let first = parsed(&query).unwrap();
        assert!(first.within_limits.is_err());
        let second = parsed(&query).unwrap();
        assert!(second.within_limits.is_err());
        assert!(!Arc::ptr_eq(&first, &second), "not kept: parsed again");
    }
}
