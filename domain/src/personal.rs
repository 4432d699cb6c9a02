//! Personal data as events hold it: never plaintext. A [`SealedField`] is
//! AES-256-GCM ciphertext under the data subject's key, bound by associated
//! data to its tenant, stream, event and field ([`field_aad`]); a
//! [`BlindIndex`] is a keyed HMAC of a normalised value, for look-ups such as
//! "find user by email". Destroying the subject's key leaves both in the log,
//! unreadable; the hash chain, which covers them as they are, still verifies.
//!
//! The cryptography itself lives behind the `PersonalData` port; this module
//! holds only the shapes and the associated-data layout.

use std::fmt;

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{EventId, StreamId, TenantId};
use crate::InvalidValue;

/// One encrypted personal field inside an event payload.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedField {
    /// Whose key: the data subject (usually the user id).
    pub subject: Uuid,
    /// The 96-bit AES-GCM nonce.
    #[serde(with = "base64_bytes")]
    pub nonce: Vec<u8>,
    /// Ciphertext followed by the 128-bit tag.
    #[serde(with = "base64_bytes")]
    pub ciphertext: Vec<u8>,
    /// Access data (IP addresses, user agents) is sealed under a key
    /// derived from the subject's key *and* the key of the UTC day it was
    /// recorded on, so retention can destroy a day's access data of every
    /// subject at once. `None`: the subject's key alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_day: Option<AccessDay>,
}

impl fmt::Debug for SealedField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SealedField(subject {}, {} bytes)",
            self.subject,
            self.ciphertext.len()
        )
    }
}

/// What a sealed field is bound to: its decryption fails anywhere else.
#[derive(Debug, Clone, Copy)]
pub struct FieldContext<'a> {
    pub tenant: TenantId,
    pub stream: &'a StreamId,
    pub event_id: EventId,
    pub field: &'a str,
}

/// The associated data of a sealed field: `custodia.field.v1`, then the
/// tenant id, stream category, stream id, event id and field name, each with
/// a 4-byte big-endian length, like the event encoding.
pub fn field_aad(context: &FieldContext<'_>) -> Vec<u8> {
    let mut aad = Vec::with_capacity(128);
    for part in [
        &b"custodia.field.v1"[..],
        context.tenant.as_uuid().as_bytes(),
        context.stream.category.as_str().as_bytes(),
        context.stream.id.as_bytes(),
        context.event_id.as_uuid().as_bytes(),
        context.field.as_bytes(),
    ] {
        aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
        aad.extend_from_slice(part);
    }
    aad
}

/// A keyed HMAC-SHA-256 of a normalised value, under a key derived from the
/// tenant key for one purpose. Equal values give equal indexes within a
/// tenant and purpose; nothing else can be learned from it without the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BlindIndex(pub [u8; 32]);

impl fmt::Debug for BlindIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlindIndex({})", hex::encode(&self.0[..4]))
    }
}

impl From<BlindIndex> for String {
    fn from(index: BlindIndex) -> String {
        hex::encode(index.0)
    }
}

impl TryFrom<String> for BlindIndex {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let bytes = hex::decode(value)
            .map_err(|_| InvalidValue::new("blind index", "must be 64 hex digits"))?;
        Ok(Self(bytes.try_into().map_err(|_| {
            InvalidValue::new("blind index", "must be 64 hex digits")
        })?))
    }
}

/// An email address, normalised (trimmed, lower-cased) and checked for a
/// plausible shape. It is personal data: it is only ever sealed or indexed,
/// and its `Debug` form hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(value: &str) -> Result<Email, InvalidValue> {
        let value = value.trim().to_lowercase();
        let valid = value.len() <= 254
            && value.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && local.len() <= 64
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            })
            && !value.chars().any(|c| c.is_whitespace() || c.is_control())
            && value.matches('@').count() == 1;
        if !valid {
            return Err(InvalidValue::new(
                "email",
                "must be an address like name@example.org",
            ));
        }
        Ok(Email(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Email(<redacted>)")
    }
}

/// The guard on plaintext fields of commands (tenant names, role names,
/// consent purposes, references, attribute keys, API key names): the log
/// keeps them for good, so a value that holds an email address, a phone
/// number in international form (`+` and 8 to 15 digits, or an area code in
/// parentheses) or a payment card number (13 to 19 digits passing the Luhn
/// check, spaces and dashes allowed) is refused, naming the field, never
/// the value. It catches slips, not intent: a number written in words or a
/// local phone number without `+` passes (docs/privacy.md).
pub fn refuse_personal_data(field: &'static str, value: &str) -> Result<(), InvalidValue> {
    let value = &normalised(value);
    if holds_email(value) || holds_phone(value) || holds_card_number(value) {
        return Err(InvalidValue::new(
            field,
            "must not contain an email address, phone number or card number (it is never erased)",
        ));
    }
    Ok(())
}

/// `value` as the detectors read it: full-width forms as their ASCII
/// twins (`＠`, `＋`, `４`), every kind of space and invisible character as
/// a space, and a URL-encoded `@` as `@`.
fn normalised(value: &str) -> String {
    value
        .replace("%40", "@")
        .chars()
        .map(|c| match u32::from(c) {
            0xFF01..=0xFF5E => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(' '),
            // The small and the full-width commercial at.
            0xFE6B => '@',
            _ if c.is_whitespace() || is_invisible(c) => ' ',
            _ => c,
        })
        .collect()
}

/// Characters that change how text shows without showing themselves:
/// zero-width ones, bidirectional controls, separators, the byte order mark.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(u32::from(c), 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2069 | 0xFEFF | 0x2028 | 0x2029 | 0x00AD)
}

/// Any token with something on both sides of an `@` (an address, also one
/// without a dot in its domain).
fn holds_email(value: &str) -> bool {
    let separators = |c: char| c.is_whitespace() || "<>()[]{},;:\"'`/".contains(c);
    value.split(separators).any(|token| {
        token.split_once('@').is_some_and(|(local, domain)| {
            local.chars().any(char::is_alphanumeric) && domain.chars().any(char::is_alphanumeric)
        })
    })
}

/// Runs of digits joined by the separators people write numbers with (at
/// most two in a row, as in `) `); each run with where it starts.
fn digit_runs(value: &str, separators: &str) -> Vec<(usize, String)> {
    let mut runs = Vec::new();
    let mut current: Option<(usize, String)> = None;
    let mut separators_in_a_row = 0;
    for (at, c) in value.char_indices() {
        if c.is_ascii_digit() {
            current.get_or_insert_with(|| (at, String::new())).1.push(c);
            separators_in_a_row = 0;
        } else if separators.contains(c) && current.is_some() && separators_in_a_row < 2 {
            separators_in_a_row += 1;
        } else {
            runs.extend(current.take());
            separators_in_a_row = 0;
        }
    }
    runs.extend(current);
    runs
}

fn holds_phone(value: &str) -> bool {
    let international = digit_runs(value, " -.()/").into_iter().any(|(at, digits)| {
        value[..at].trim_end_matches([' ', '(']).ends_with('+') && (8..=15).contains(&digits.len())
    });
    let area_code = value.char_indices().any(|(at, c)| {
        c == '('
            && value[at + 1..]
                .chars()
                .take_while(char::is_ascii_digit)
                .count()
                == 3
            && value[at + 1..].chars().nth(3) == Some(')')
            && digit_runs(&value[at..], " -.()")
                .first()
                .is_some_and(|(_, d)| d.len() >= 10)
    });
    international || area_code
}

/// Whether `value` holds a phone number in local form too (9 to 15 digits,
/// written with the usual separators, not part of a longer word or id):
/// for text shown to people, such as group names, where a long bare number
/// is far more likely a phone number than anything else.
pub fn holds_local_phone(value: &str) -> bool {
    let value = &normalised(value);
    digit_runs(value, " -.()/").into_iter().any(|(at, digits)| {
        let before = value[..at].chars().next_back();
        let mut end = at;
        let mut seen = 0;
        for (i, c) in value[at..].char_indices() {
            if c.is_ascii_digit() {
                seen += 1;
                end = at + i + 1;
                if seen == digits.len() {
                    break;
                }
            }
        }
        let after = value[end..].chars().next();
        let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
        (9..=15).contains(&digits.len()) && !word(before) && !word(after)
    })
}

fn holds_card_number(value: &str) -> bool {
    digit_runs(value, " -./")
        .into_iter()
        .any(|(_, digits)| (13..=19).contains(&digits.len()) && luhn_valid(&digits))
}

fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 1 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// A UTC calendar day, the unit in which access data is kept and destroyed
/// (one key per tenant per day). Written `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccessDay(chrono::NaiveDate);

impl AccessDay {
    /// The day `at` (µs since the epoch, UTC) falls on.
    pub fn of(at: crate::Timestamp) -> AccessDay {
        let date = chrono::DateTime::from_timestamp_micros(at.0)
            .map_or(chrono::NaiveDate::MIN, |t| t.date_naive());
        AccessDay(date)
    }

    /// The first day whose access data is still kept at `now` under a
    /// retention of `days`: every day before it has been entirely older
    /// than `days` days. So access data lives at least `days` days and less
    /// than `days + 1`.
    pub fn first_kept(now: crate::Timestamp, days: u16) -> AccessDay {
        AccessDay::of(crate::Timestamp(
            now.0.saturating_sub(i64::from(days) * 86_400_000_000),
        ))
    }

    pub fn parse(value: &str) -> Result<AccessDay, InvalidValue> {
        chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
            .ok()
            .filter(|date| date.format("%Y-%m-%d").to_string() == value)
            .map(AccessDay)
            .ok_or(InvalidValue::new(
                "access day",
                "must be a date like 2026-11-30",
            ))
    }
}

impl fmt::Display for AccessDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

impl From<AccessDay> for String {
    fn from(day: AccessDay) -> String {
        day.to_string()
    }
}

impl TryFrom<String> for AccessDay {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        AccessDay::parse(&value)
    }
}

/// The id of a tenant's access-data key for one day, as the event that
/// records its destruction names it.
pub fn access_key_id(tenant: Uuid, day: AccessDay) -> String {
    format!("access:{tenant}/{day}:v1")
}

mod base64_bytes {
    use super::*;

    pub fn serialize<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&B64.encode(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        B64.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn access_days_are_utc_days_and_retention_keeps_whole_days() {
        use super::AccessDay;
        use crate::Timestamp;
        let at = |text: &str| {
            Timestamp(
                chrono::DateTime::parse_from_rfc3339(text)
                    .unwrap()
                    .timestamp_micros(),
            )
        };
        assert_eq!(
            AccessDay::of(at("2026-11-30T23:59:59.999999Z")).to_string(),
            "2026-11-30"
        );
        assert_eq!(
            AccessDay::of(at("2026-12-01T00:30:00+01:00")).to_string(),
            "2026-11-30"
        );
        // 30 days, at noon on 31 December: 30 November ended 30.5 days ago
        // (gone); 1 December ended 29.5 days ago (kept).
        let first = AccessDay::first_kept(at("2026-12-31T12:00:00Z"), 30);
        assert_eq!(first.to_string(), "2026-12-01");
        assert!(AccessDay::parse("2026-11-30").unwrap() < first);
        assert!(AccessDay::parse("2026-02-30").is_err());
        assert!(AccessDay::parse("2026-1-05").is_err());
        assert!(AccessDay::parse("").is_err());
        let json = serde_json::to_string(&first).unwrap();
        assert_eq!(json, "\"2026-12-01\"");
        assert_eq!(serde_json::from_str::<AccessDay>(&json).unwrap(), first);
    }

    use super::*;
    use crate::ids::StreamCategory;

    #[test]
    fn email_is_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ada@Example.ORG ").unwrap().as_str(),
            "ada@example.org"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.org",
            "ada@example",
            "a b@example.org",
            "a@@example.org",
            "ada@.org",
            "ada@example..org",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_never_shows_personal_data() {
        let email = Email::parse("ada@example.org").unwrap();
        assert!(!format!("{email:?}").contains("ada"));
        let sealed = SealedField {
            subject: Uuid::nil(),
            nonce: vec![1; 12],
            ciphertext: b"secret".to_vec(),
            access_day: None,
        };
        assert!(!format!("{sealed:?}").contains("secret"));
    }

    #[test]
    fn the_plaintext_guard_refuses_contact_and_card_data_only() {
        for personal in [
            "ticket for ada@example.org",
            "<Ada.Lovelace@Example.ORG>",
            "call +44 20 7946 0958",
            "+1 (555) 010-9999",
            "(555) 010-9999",
            "card 4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "5500005555555559",
            "+44\u{a0}7911\u{a0}123456",
            "4111\u{a0}1111\u{a0}1111\u{a0}1111",
            "4111.1111.1111.1111",
            "4111/1111/1111/1111",
            "+44/7911/123456",
            "jane%40example.com",
            "jane\u{ff20}example.com",
            "\u{ff0b}447911123456",
            "\u{ff14}\u{ff11}\u{ff11}\u{ff11}111111111111",
            "jane@localhost",
        ] {
            let refused = refuse_personal_data("reference", personal).unwrap_err();
            assert_eq!(refused.field, "reference");
            assert!(!refused.to_string().contains(personal));
        }
        for fine in [
            "DSR-2026-000123",
            "case 2026-11-29 #42",
            "Acme Corp (EMEA)",
            "user@",
            "support_agents",
            "order 1234 5678 9012 3456",
            "1+1 = 2",
        ] {
            assert!(
                refuse_personal_data("reference", fine).is_ok(),
                "{fine} was refused"
            );
        }
    }

    #[test]
    fn sealed_field_serialises_as_base64() {
        let sealed = SealedField {
            subject: Uuid::nil(),
            nonce: vec![0; 12],
            ciphertext: vec![0xff; 3],
            access_day: None,
        };
        let json = serde_json::to_string(&sealed).unwrap();
        assert_eq!(
            json,
            r#"{"subject":"00000000-0000-0000-0000-000000000000","nonce":"AAAAAAAAAAAAAAAA","ciphertext":"////"}"#
        );
        assert_eq!(serde_json::from_str::<SealedField>(&json).unwrap(), sealed);
    }

    #[test]
    fn associated_data_binds_every_part() {
        let stream = StreamId::new(StreamCategory::parse("user").unwrap(), Uuid::now_v7());
        let other_stream = StreamId::new(StreamCategory::parse("user").unwrap(), Uuid::now_v7());
        let (tenant, event_id) = (TenantId::generate(), EventId::generate());
        let base = FieldContext {
            tenant,
            stream: &stream,
            event_id,
            field: "email",
        };
        let variants = [
            FieldContext {
                tenant: TenantId::generate(),
                ..base
            },
            FieldContext {
                stream: &other_stream,
                ..base
            },
            FieldContext {
                event_id: EventId::generate(),
                ..base
            },
            FieldContext {
                field: "phone",
                ..base
            },
        ];
        for variant in variants {
            assert_ne!(field_aad(&variant), field_aad(&base));
        }
        // Length prefixes: moving bytes between fields changes the encoding.
        let a = FieldContext {
            field: "ab",
            ..base
        };
        assert_ne!(
            field_aad(&a),
            field_aad(&FieldContext { field: "a", ..base })
        );
    }

    #[test]
    fn blind_index_round_trips_as_hex() {
        let index = BlindIndex([0xab; 32]);
        let json = serde_json::to_string(&index).unwrap();
        assert_eq!(serde_json::from_str::<BlindIndex>(&json).unwrap(), index);
        assert!(serde_json::from_str::<BlindIndex>("\"abc\"").is_err());
    }
}
