//! SCIM filters (RFC 7644 §3.4.2.2) and attribute paths (§3.5.2): parsed
//! into a tree, evaluated against a resource's JSON.
//!
//! Bounded: a filter is at most [`MAX_FILTER_BYTES`] long and nests at most
//! [`MAX_DEPTH`] parentheses or brackets deep, so a tiny request cannot
//! cost the server a deep recursion.

use serde_json::Value;

pub const MAX_FILTER_BYTES: usize = 4096;
pub const MAX_DEPTH: usize = 16;

/// `[schema:]name[.sub]`: an attribute, maybe URN-qualified, maybe a
/// sub-attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// The schema URN, as written (`None`: the resource's core schema).
    pub schema: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare(AttrPath, Op, Value),
    Present(AttrPath),
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    /// `attr[filter]`: some value of multi-valued `attr` matches `filter`.
    Values(AttrPath, Box<Filter>),
}

/// A PATCH path: `attrPath [ "[" valFilter "]" ] [ "." subAttr ]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
}

/// Why a filter or path was refused (no personal data: the text is the
/// client's own, but only its position is named).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

fn error<T>(message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(message.into()))
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Open,
    Close,
    OpenBracket,
    CloseBracket,
}

fn tokens(input: &str) -> Result<Vec<Token>, ParseError> {
    if input.len() > MAX_FILTER_BYTES {
        return error(format!("longer than {MAX_FILTER_BYTES} bytes"));
    }
    let bytes = input.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                out.push(Token::Open);
                i += 1;
            }
            b')' => {
                out.push(Token::Close);
                i += 1;
            }
            b'[' => {
                out.push(Token::OpenBracket);
                i += 1;
            }
            b']' => {
                out.push(Token::CloseBracket);
                i += 1;
            }
            b'"' => {
                // A JSON string: find its end, then let serde decode escapes.
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if i >= bytes.len() {
                    return error(format!("a string at byte {start} is not closed"));
                }
                i += 1;
                let text: String = serde_json::from_str(&input[start..i])
                    .or_else(|_| error(format!("the string at byte {start} is malformed")))?;
                out.push(Token::Text(text));
            }
            _ => {
                let start = i;
                while i < bytes.len() && !b" \t\n\r()[]\"".contains(&bytes[i]) {
                    i += 1;
                }
                out.push(Token::Word(input[start..i].to_owned()));
            }
        }
    }
    Ok(out)
}

/// Parses `schema:name.sub` (the schema ends at the last `:`).
pub fn attr_path(text: &str) -> Result<AttrPath, ParseError> {
    let (schema, rest) = match text.rfind(':') {
        Some(at) if text.to_ascii_lowercase().starts_with("urn:") => {
            (Some(text[..at].to_owned()), &text[at + 1..])
        }
        _ => (None, text),
    };
    let (name, sub) = match rest.split_once('.') {
        Some((name, sub)) => (name, Some(sub)),
        None => (rest, None),
    };
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "$-_".contains(c))
    };
    if !valid(name) || !sub.is_none_or(valid) {
        return error("an attribute path must be [urn:…:]name[.subAttribute]");
    }
    Ok(AttrPath {
        schema,
        name: name.to_owned(),
        sub: sub.map(str::to_owned),
    })
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return error(format!("nested more than {MAX_DEPTH} deep"));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Filter, ParseError> {
        let mut terms = vec![self.and()?];
        while self.keyword("or") {
            self.at += 1;
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Filter::Or(terms)
        })
    }

    fn and(&mut self) -> Result<Filter, ParseError> {
        let mut terms = vec![self.unary()?];
        while self.keyword("and") {
            self.at += 1;
            terms.push(self.unary()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Filter::And(terms)
        })
    }

    fn group(&mut self) -> Result<Filter, ParseError> {
        self.enter()?;
        let inner = self.or()?;
        self.depth -= 1;
        match self.next() {
            Some(Token::Close) => Ok(inner),
            _ => error("a ( is not closed"),
        }
    }

    fn unary(&mut self) -> Result<Filter, ParseError> {
        if self.keyword("not") {
            self.at += 1;
            return match self.next() {
                Some(Token::Open) => Ok(Filter::Not(Box::new(self.group()?))),
                _ => error("not must be followed by ( … )"),
            };
        }
        match self.next() {
            Some(Token::Open) => self.group(),
            Some(Token::Word(word)) => self.attribute(&word),
            _ => error("expected an attribute, not or ("),
        }
    }

    fn attribute(&mut self, word: &str) -> Result<Filter, ParseError> {
        let path = attr_path(word)?;
        if self.peek() == Some(&Token::OpenBracket) {
            self.at += 1;
            self.enter()?;
            let inner = self.or()?;
            self.depth -= 1;
            if self.next() != Some(Token::CloseBracket) {
                return error("a [ is not closed");
            }
            if path.sub.is_some() {
                return error("a value filter applies to an attribute, not a sub-attribute");
            }
            return Ok(Filter::Values(path, Box::new(inner)));
        }
        let op = match self.next() {
            Some(Token::Word(op)) => op.to_ascii_lowercase(),
            _ => return error("expected an operator after an attribute"),
        };
        let op = match op.as_str() {
            "pr" => return Ok(Filter::Present(path)),
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            _ => return error("unknown operator (eq ne co sw ew gt ge lt le pr)"),
        };
        let value = match self.next() {
            Some(Token::Text(text)) => Value::String(text),
            Some(Token::Word(word)) => match word.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                number => match serde_json::from_str::<serde_json::Number>(number) {
                    Ok(n) => Value::Number(n),
                    Err(_) => {
                        return error("a value must be a string, number, true, false or null")
                    }
                },
            },
            _ => return error("expected a value after the operator"),
        };
        let ordering = matches!(op, Op::Gt | Op::Ge | Op::Lt | Op::Le);
        let substring = matches!(op, Op::Co | Op::Sw | Op::Ew);
        if (ordering && !(value.is_string() || value.is_number()))
            || (substring && !value.is_string())
        {
            return error("this operator does not apply to a boolean or null");
        }
        Ok(Filter::Compare(path, op, value))
    }
}

/// Parses a `filter` parameter.
pub fn parse(input: &str) -> Result<Filter, ParseError> {
    let mut parser = Parser {
        tokens: tokens(input)?,
        at: 0,
        depth: 0,
    };
    if parser.tokens.is_empty() {
        return error("the filter is empty");
    }
    let filter = parser.or()?;
    if parser.at != parser.tokens.len() {
        return error("unexpected text after the filter");
    }
    Ok(filter)
}

/// Parses a PATCH operation's `path`.
pub fn patch_path(input: &str) -> Result<PatchPath, ParseError> {
    let Some(open) = input.find('[') else {
        return Ok(PatchPath {
            attr: attr_path(input.trim())?,
            filter: None,
        });
    };
    let close = input
        .rfind(']')
        .filter(|close| *close > open)
        .map_or_else(|| error("a [ is not closed"), Ok)?;
    let mut attr = attr_path(input[..open].trim())?;
    if attr.sub.is_some() {
        return error("a value filter applies to an attribute, not a sub-attribute");
    }
    let rest = &input[close + 1..];
    if !rest.is_empty() {
        let sub = rest
            .strip_prefix('.')
            .map_or_else(|| error("expected .subAttribute after ]"), Ok)?;
        attr.sub = Some(attr_path(sub)?.name);
    }
    Ok(PatchPath {
        attr,
        filter: Some(parse(&input[open + 1..close])?),
    })
}

/// What a resource's schemas are called, to resolve URN-qualified paths.
pub struct Schemas<'a> {
    /// The resource's core schema (paths qualified by it read the top level).
    pub core: &'a str,
    /// Extension schemas (paths qualified by one read its object).
    pub extensions: &'a [&'a str],
}

impl Schemas<'_> {
    /// The object a path reads from, or `None` for an unknown schema.
    pub fn base<'v>(&self, resource: &'v Value, path: &AttrPath) -> Option<&'v Value> {
        match &path.schema {
            None => Some(resource),
            Some(schema) if schema.eq_ignore_ascii_case(self.core) => Some(resource),
            Some(schema) => {
                let extension = self
                    .extensions
                    .iter()
                    .find(|e| e.eq_ignore_ascii_case(schema))?;
                get(resource, extension)
            }
        }
    }
}

/// A member of an object, by case-insensitive name.
pub fn get<'v>(object: &'v Value, name: &str) -> Option<&'v Value> {
    object
        .as_object()?
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

/// Attributes whose strings compare case-sensitively.
fn case_exact(path: &AttrPath) -> bool {
    let name = path.sub.as_deref().unwrap_or(&path.name);
    ["id", "externalId", "$ref", "version"]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
}

/// The values a path names in `object`: a multi-valued attribute gives
/// each element's sub-attribute (its `value` when none is named).
fn values<'v>(object: &'v Value, path: &AttrPath) -> Vec<&'v Value> {
    let Some(attribute) = get(object, &path.name) else {
        return vec![];
    };
    let sub = |value: &'v Value| match &path.sub {
        Some(sub) => get(value, sub),
        None if value.is_object() => get(value, "value"),
        None => Some(value),
    };
    match attribute {
        Value::Array(items) => items.iter().filter_map(sub).collect(),
        Value::Object(_) => path
            .sub
            .as_ref()
            .and_then(|s| get(attribute, s))
            .into_iter()
            .collect(),
        Value::Null => vec![],
        scalar => vec![scalar],
    }
}

fn present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// Compares one attribute value with a filter's value.
fn compare(actual: &Value, op: Op, expected: &Value, exact: bool) -> bool {
    use std::cmp::Ordering;
    let ordering = match (actual, expected) {
        (Value::String(a), Value::String(e)) => {
            // Timestamps compare as instants, whatever their notation.
            if let (Ok(a), Ok(e)) = (
                chrono::DateTime::parse_from_rfc3339(a),
                chrono::DateTime::parse_from_rfc3339(e),
            ) {
                if matches!(op, Op::Co | Op::Sw | Op::Ew) {
                    return false;
                }
                Some(a.cmp(&e))
            } else {
                let (a, e) = if exact {
                    (a.clone(), e.clone())
                } else {
                    (a.to_lowercase(), e.to_lowercase())
                };
                match op {
                    Op::Co => return a.contains(&e),
                    Op::Sw => return a.starts_with(&e),
                    Op::Ew => return a.ends_with(&e),
                    _ => Some(a.cmp(&e)),
                }
            }
        }
        (Value::Number(a), Value::Number(e)) => a
            .as_f64()
            .zip(e.as_f64())
            .and_then(|(a, e)| a.partial_cmp(&e)),
        (Value::Bool(a), Value::Bool(e)) => Some(a.cmp(e)),
        // A boolean sent as a string ("True"), as some clients do.
        (Value::Bool(a), Value::String(e)) => e
            .to_ascii_lowercase()
            .parse::<bool>()
            .ok()
            .map(|e| a.cmp(&e)),
        _ => None,
    };
    match (op, ordering) {
        (Op::Eq, Some(o)) => o == Ordering::Equal,
        (Op::Gt, Some(o)) => o == Ordering::Greater,
        (Op::Ge, Some(o)) => o != Ordering::Less,
        (Op::Lt, Some(o)) => o == Ordering::Less,
        (Op::Le, Some(o)) => o != Ordering::Greater,
        _ => false,
    }
}

impl Filter {
    /// Whether `resource` (or a multi-valued attribute's element) matches.
    pub fn matches(&self, resource: &Value, schemas: &Schemas) -> bool {
        match self {
            Filter::And(terms) => terms.iter().all(|t| t.matches(resource, schemas)),
            Filter::Or(terms) => terms.iter().any(|t| t.matches(resource, schemas)),
            Filter::Not(inner) => !inner.matches(resource, schemas),
            Filter::Present(path) => schemas
                .base(resource, path)
                .is_some_and(|base| values(base, path).into_iter().any(present)),
            Filter::Compare(path, op, expected) => {
                let found = schemas
                    .base(resource, path)
                    .map(|base| values(base, path))
                    .unwrap_or_default();
                match (op, expected) {
                    (Op::Eq, Value::Null) => !found.into_iter().any(present),
                    (Op::Ne, Value::Null) => found.into_iter().any(present),
                    (Op::Ne, _) => !found
                        .iter()
                        .any(|v| compare(v, Op::Eq, expected, case_exact(path))),
                    _ => found
                        .iter()
                        .any(|v| compare(v, *op, expected, case_exact(path))),
                }
            }
            Filter::Values(path, inner) => schemas
                .base(resource, path)
                .and_then(|base| get(base, &path.name))
                .and_then(Value::as_array)
                .is_some_and(|items| items.iter().any(|item| inner.matches(item, schemas))),
        }
    }

    /// The value an equality on `name` (a core attribute, no sub-attribute)
    /// requires, if every match must have it: the filter is that equality
    /// or an `and` holding it. Lets a list use an index.
    pub fn required_equal(&self, name: &str) -> Option<&str> {
        match self {
            Filter::Compare(path, Op::Eq, Value::String(value))
                if path.sub.is_none() && path.name.eq_ignore_ascii_case(name) =>
            {
                Some(value)
            }
            Filter::And(terms) => terms.iter().find_map(|t| t.required_equal(name)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SCHEMAS: Schemas = Schemas {
        core: "urn:ietf:params:scim:schemas:core:2.0:User",
        extensions: &["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
    };

    fn user() -> Value {
        json!({
            "id": "2819c223",
            "userName": "Bjensen@Example.com",
            "externalId": "AbC",
            "name": { "givenName": "Barbara", "familyName": "Jensen" },
            "active": true,
            "emails": [
                { "value": "bjensen@example.com", "type": "work", "primary": true },
                { "value": "babs@jensen.org", "type": "home" }
            ],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": { "department": "Tour" },
            "meta": { "lastModified": "2026-11-01T10:00:00Z", "version": "W/\"3\"" }
        })
    }

    fn matches(filter: &str) -> bool {
        parse(filter)
            .unwrap_or_else(|e| panic!("{filter}: {e:?}"))
            .matches(&user(), &SCHEMAS)
    }

    #[test]
    fn every_operator_and_combination_of_rfc_7644_is_evaluated() {
        for (filter, expected) in [
            (r#"userName eq "bjensen@example.com""#, true),
            (r#"USERNAME Eq "BJENSEN@EXAMPLE.COM""#, true),
            (r#"userName ne "bjensen@example.com""#, false),
            (r#"externalId eq "abc""#, false),
            (r#"externalId eq "AbC""#, true),
            (r#"name.familyName co "ens""#, true),
            (r#"userName sw "bj""#, true),
            (r#"userName ew ".org""#, false),
            (r#"emails ew ".org""#, true),
            (
                r#"emails[type eq "work" and value co "@example.com"]"#,
                true,
            ),
            (
                r#"emails[type eq "work" and value co "@jensen.org"]"#,
                false,
            ),
            (r#"emails.type eq "home""#, true),
            ("name.middleName pr", false),
            ("title pr", false),
            ("emails pr", true),
            ("active eq true", true),
            (r#"active eq "True""#, true),
            (r#"meta.lastModified gt "2026-11-01T09:00:00-02:00""#, false),
            (r#"meta.lastModified ge "2026-11-01T10:00:00.000Z""#, true),
            (r#"meta.lastModified lt "2026-11-02T00:00:00Z""#, true),
            (
                r#"not (userName eq "x@y.z") and (title pr or active eq true)"#,
                true,
            ),
            (r#"userName eq "x" or name.givenName eq "barbara""#, true),
            (
                r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "tour""#,
                true,
            ),
            (
                r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "BJ""#,
                true,
            ),
            (r#"urn:example:other:department eq "tour""#, false),
            ("title eq null", true),
            ("userName eq null", false),
            (r#"userName eq "\u0062jensen@example.com""#, true),
        ] {
            assert_eq!(matches(filter), expected, "{filter}");
        }
    }

    #[test]
    fn malformed_and_oversized_filters_are_refused() {
        let deep = format!("{}active eq true{}", "(".repeat(40), ")".repeat(40));
        let long = format!("userName eq \"{}\"", "a".repeat(MAX_FILTER_BYTES));
        for filter in [
            "",
            "userName",
            "userName eq",
            "userName xx \"a\"",
            "userName eq \"a",
            "(userName eq \"a\"",
            "userName eq \"a\")",
            "emails[type eq \"work\"",
            "not userName eq \"a\"",
            "active gt true",
            "userName co 3",
            "userName eq bare",
            "na me eq \"a\"",
            "userName eq \"a\" and",
            deep.as_str(),
            long.as_str(),
        ] {
            assert!(parse(filter).is_err(), "{filter} was accepted");
        }
    }

    #[test]
    fn an_indexed_equality_is_found_inside_an_and() {
        let filter = parse(r#"active eq true and userName eq "A@b.c""#).unwrap();
        assert_eq!(filter.required_equal("username"), Some("A@b.c"));
        let filter = parse(r#"active eq true or userName eq "A@b.c""#).unwrap();
        assert_eq!(filter.required_equal("userName"), None);
    }

    #[test]
    fn patch_paths_name_an_attribute_a_filter_and_a_sub_attribute() {
        let path = patch_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(path.attr.name, "emails");
        assert_eq!(path.attr.sub.as_deref(), Some("value"));
        assert!(path.filter.is_some());
        let path =
            patch_path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value")
                .unwrap();
        assert_eq!(
            path.attr.schema.as_deref(),
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
        );
        assert_eq!(
            (path.attr.name.as_str(), path.attr.sub.as_deref()),
            ("manager", Some("value"))
        );
        for bad in [
            "",
            "emails[type eq \"work\"",
            "emails[x]",
            "emails[type eq \"w\"]value",
            "a b",
        ] {
            assert!(patch_path(bad).is_err(), "{bad} was accepted");
        }
    }
}
