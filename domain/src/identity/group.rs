//! Groups of members (ADR 0012): an identity provider's groups, kept in
//! the tenant's memberships. The provider owns a group's name and members;
//! the tenant's admins own which roles it grants.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::membership::RoleRef;
use crate::InvalidValue;

/// Text that lives in the log for good: 1 to `max` characters, no control
/// or invisible characters, and nothing that looks like personal data.
fn plaintext(field: &'static str, value: &str, max: usize) -> Result<String, InvalidValue> {
    let value = value.trim();
    let hidden = |c: char| c.is_control() || crate::personal::is_invisible(c);
    if value.is_empty() || value.chars().count() > max || value.chars().any(hidden) {
        return Err(InvalidValue::new(
            field,
            "must be 1-256 characters without control or invisible characters",
        ));
    }
    crate::personal::refuse_personal_data(field, value)?;
    Ok(value.to_owned())
}

/// A group's name, as its provider gives it ("Engineering – EU").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupName(String);

impl GroupName {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let name = plaintext("group name", value, 256)?;
        // Shown to people: a long bare number is a phone number here.
        if crate::personal::holds_local_phone(&name) {
            return Err(InvalidValue::new(
                "group name",
                "must not contain a phone number (it is never erased)",
            ));
        }
        Ok(Self(name))
    }

    /// A name as the log holds it (read back whatever a later guard says).
    pub(crate) fn from_log(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The provider's id for a group (Entra's object id, Okta's group id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupExternalId(String);

impl GroupExternalId {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        plaintext("group externalId", value, 256).map(Self)
    }

    pub(crate) fn from_log(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A group as the memberships hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: GroupName,
    pub external_id: Option<GroupExternalId>,
    pub members: BTreeSet<Uuid>,
    /// The roles the tenant's admins granted to the group.
    pub roles: BTreeSet<RoleRef>,
    /// How many events changed the group: its version, for `If-Match`.
    pub revision: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plaintext_so_personal_data_is_refused() {
        assert_eq!(
            GroupName::parse("  Engineering – EU ").unwrap().as_str(),
            "Engineering – EU"
        );
        for bad in [
            "",
            "   ",
            "ann@example.org",
            "alice\u{FE6B}example.com",
            "+44 20 7946 0958",
            "555-123-4567",
            "555.123.4567",
            "06 12 34 56 78",
            "030 1234567",
            "0049 30 1234567",
            "\u{FF15}\u{FF15}\u{FF15}\u{FF11}\u{FF12}\u{FF13}\u{FF14}\u{FF15}\u{FF16}\u{FF17}",
            "a\u{200B}b",
            "tab\there",
        ] {
            assert!(GroupName::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(GroupName::parse(&"x".repeat(257)).is_err());
        // Dates, years and ids with letters in them are not phone numbers.
        for fine in [
            "Team 2024-2025",
            "Release 2026-12-05",
            "Cost centre 4711",
            "Grp 8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
        ] {
            assert!(GroupName::parse(fine).is_ok(), "{fine:?} was refused");
        }
        assert!(GroupExternalId::parse("0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef").is_ok());
        assert!(GroupExternalId::parse("ann@example.org").is_err());
    }
}
