//! A tenant's own mail templates (ADR 0013): for a kind of message, in a
//! language or as the tenant's default for every language. One stream per
//! tenant (`mail_templates:<tenant>`), on the tenant's chain; what it does
//! not hold falls back to the built-in English text.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::aggregate::{read, stored, Aggregate, EventSchema, SchemaError, Snapshot, StoredForm};
use crate::identity::message::MessageKind;
use crate::InvalidValue;

/// A language tag (`de`, `pt-BR`, `zh-Hant`): a language of 2 or 3
/// letters and up to two subtags of 2 to 8 letters or digits. Kept
/// lowercase; compared without regard to case.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Locale(String);

impl Locale {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let invalid = || {
            InvalidValue::new(
                "locale",
                "must be a language tag such as `de` or `pt-BR` (2-3 letters, up to two subtags)",
            )
        };
        let value = value.trim().replace('_', "-").to_ascii_lowercase();
        let mut parts = value.split('-');
        let language = parts.next().unwrap_or_default();
        if !(2..=3).contains(&language.len()) || !language.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(invalid());
        }
        let subtags: Vec<&str> = parts.collect();
        let subtag_ok =
            |s: &&str| (2..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric());
        if subtags.len() > 2 || !subtags.iter().all(subtag_ok) {
            return Err(invalid());
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The language alone (`pt` for `pt-br`), when there are subtags.
    pub fn language(&self) -> Option<Locale> {
        self.0
            .split_once('-')
            .map(|(language, _)| Locale(language.to_owned()))
    }
}

/// A template's three parts, as the tenant wrote them (minijinja syntax;
/// the API checks that they render before a command is made of them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailTemplate {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The longest subject, in characters.
pub const MAX_SUBJECT: usize = 200;
/// The longest text or HTML part, in bytes.
pub const MAX_BODY: usize = 16 * 1024;
/// The most templates a tenant keeps (every kind, in 15 languages and a
/// default).
pub const MAX_TEMPLATES: usize = MessageKind::ALL.len() * 16;

impl MailTemplate {
    /// Checks the sizes, and that no part holds personal data (the log
    /// keeps them in plaintext for good: [`crate::personal::refuse_personal_data`]).
    pub fn check(&self) -> Result<(), InvalidValue> {
        if self.subject.trim().is_empty() || self.subject.chars().count() > MAX_SUBJECT {
            return Err(InvalidValue::new("subject", "must be 1-200 characters"));
        }
        for (field, part) in [("text", &self.text), ("html", &self.html)] {
            if part.trim().is_empty() || part.len() > MAX_BODY {
                return Err(InvalidValue::new(field, "must be 1 byte to 16 KiB"));
            }
        }
        crate::personal::refuse_personal_data("subject", &self.subject)?;
        crate::personal::refuse_personal_data("text", &self.text)?;
        crate::personal::refuse_personal_data("html", &self.html)
    }
}

/// Which template: a kind, in a language or (`None`) the tenant's default.
pub type TemplateKey = (MessageKind, Option<Locale>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailTemplateCommand {
    Set {
        kind: MessageKind,
        locale: Option<Locale>,
        template: MailTemplate,
    },
    Remove {
        kind: MessageKind,
        locale: Option<Locale>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailTemplateEvent {
    Set {
        kind: MessageKind,
        locale: Option<Locale>,
        template: MailTemplate,
    },
    Removed {
        kind: MessageKind,
        locale: Option<Locale>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailTemplateError {
    #[error("a tenant keeps at most {MAX_TEMPLATES} templates")]
    TooMany,
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
}

/// A tenant's templates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailTemplates(BTreeMap<(u8, Option<Locale>), (MessageKind, MailTemplate)>);

fn key(kind: MessageKind, locale: &Option<Locale>) -> (u8, Option<Locale>) {
    let position = MessageKind::ALL.iter().position(|k| *k == kind);
    (position.unwrap_or_default() as u8, locale.clone())
}

impl MailTemplates {
    /// The tenant's template for `kind` in `locale`: the locale's own, else
    /// its language's, else the tenant's default; `None` means the
    /// built-in text.
    pub fn find(&self, kind: MessageKind, locale: Option<&Locale>) -> Option<&MailTemplate> {
        let exact = locale.cloned();
        let language = locale.and_then(Locale::language);
        [exact, language]
            .into_iter()
            .flatten()
            .map(Some)
            .chain([None])
            .find_map(|l| self.0.get(&key(kind, &l)))
            .map(|(_, template)| template)
    }

    /// Every template, by kind and locale.
    pub fn all(&self) -> impl Iterator<Item = (MessageKind, Option<&Locale>, &MailTemplate)> {
        self.0
            .iter()
            .map(|((_, locale), (kind, template))| (*kind, locale.as_ref(), template))
    }
}

/// Not snapshotted: templates change rarely.
impl Snapshot for MailTemplates {}

impl Aggregate for MailTemplates {
    type Command = MailTemplateCommand;
    type Event = MailTemplateEvent;
    type Error = MailTemplateError;

    fn decide(
        &self,
        command: &MailTemplateCommand,
    ) -> Result<Vec<MailTemplateEvent>, MailTemplateError> {
        match command {
            MailTemplateCommand::Set {
                kind,
                locale,
                template,
            } => {
                template.check()?;
                match self.0.get(&key(*kind, locale)) {
                    Some((_, same)) if same == template => Ok(vec![]),
                    None if self.0.len() >= MAX_TEMPLATES => Err(MailTemplateError::TooMany),
                    _ => Ok(vec![MailTemplateEvent::Set {
                        kind: *kind,
                        locale: locale.clone(),
                        template: template.clone(),
                    }]),
                }
            }
            MailTemplateCommand::Remove { kind, locale } => {
                if self.0.contains_key(&key(*kind, locale)) {
                    Ok(vec![MailTemplateEvent::Removed {
                        kind: *kind,
                        locale: locale.clone(),
                    }])
                } else {
                    Ok(vec![])
                }
            }
        }
    }

    fn apply(mut self, event: &MailTemplateEvent) -> Self {
        match event {
            MailTemplateEvent::Set {
                kind,
                locale,
                template,
            } => {
                self.0.insert(key(*kind, locale), (*kind, template.clone()));
            }
            MailTemplateEvent::Removed { kind, locale } => {
                self.0.remove(&key(*kind, locale));
            }
        }
        self
    }
}

mod dto {
    use super::*;

    #[derive(Serialize, Deserialize)]
    pub struct Set {
        pub kind: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub locale: Option<String>,
        pub subject: String,
        pub text: String,
        pub html: String,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Removed {
        pub kind: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub locale: Option<String>,
    }
}

fn kind_of(name: &str, event_type: &str) -> Result<MessageKind, SchemaError> {
    MessageKind::parse(name).ok_or_else(|| SchemaError::Malformed {
        event_type: event_type.to_owned(),
        version: 1,
    })
}

/// A locale as the log holds it (checked when it was written).
fn locale_of(value: Option<String>) -> Option<Locale> {
    value.map(Locale)
}

impl EventSchema for MailTemplateEvent {
    fn to_stored(&self) -> StoredForm {
        match self {
            MailTemplateEvent::Set {
                kind,
                locale,
                template,
            } => stored(
                "MailTemplateSet",
                1,
                &dto::Set {
                    kind: kind.name().to_owned(),
                    locale: locale.as_ref().map(|l| l.0.clone()),
                    subject: template.subject.clone(),
                    text: template.text.clone(),
                    html: template.html.clone(),
                },
            ),
            MailTemplateEvent::Removed { kind, locale } => stored(
                "MailTemplateRemoved",
                1,
                &dto::Removed {
                    kind: kind.name().to_owned(),
                    locale: locale.as_ref().map(|l| l.0.clone()),
                },
            ),
        }
    }

    fn from_stored(form: &StoredForm) -> Result<Self, SchemaError> {
        let version = form.schema_version.get();
        let name = form.event_type.as_str();
        match (name, version) {
            ("MailTemplateSet", 1) => {
                let d: dto::Set = read(form)?;
                Ok(MailTemplateEvent::Set {
                    kind: kind_of(&d.kind, name)?,
                    locale: locale_of(d.locale),
                    template: MailTemplate {
                        subject: d.subject,
                        text: d.text,
                        html: d.html,
                    },
                })
            }
            ("MailTemplateRemoved", 1) => {
                let d: dto::Removed = read(form)?;
                Ok(MailTemplateEvent::Removed {
                    kind: kind_of(&d.kind, name)?,
                    locale: locale_of(d.locale),
                })
            }
            ("MailTemplateSet" | "MailTemplateRemoved", version) => {
                Err(SchemaError::UnknownVersion {
                    event_type: name.to_owned(),
                    version,
                })
            }
            (other, _) => Err(SchemaError::UnknownType(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::given;

    fn template(subject: &str) -> MailTemplate {
        MailTemplate {
            subject: subject.to_owned(),
            text: "{{ link }}".to_owned(),
            html: "<a href=\"{{ link }}\">go</a>".to_owned(),
        }
    }

    fn set(kind: MessageKind, locale: Option<&str>, subject: &str) -> MailTemplateEvent {
        MailTemplateEvent::Set {
            kind,
            locale: locale.map(|l| Locale::parse(l).unwrap()),
            template: template(subject),
        }
    }

    #[test]
    fn locales_are_language_tags() {
        for good in ["de", "pt-BR", "pt_br", "zh-Hant-TW", "gsw"] {
            assert!(Locale::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "d",
            "deutsch",
            "de-",
            "de-a",
            "de-toolongtag",
            "a-b-c-d",
            "de-CH-x-y",
        ] {
            assert!(Locale::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Locale::parse("pt-BR").unwrap().as_str(), "pt-br");
        assert_eq!(
            Locale::parse("pt-BR").unwrap().language(),
            Some(Locale::parse("pt").unwrap())
        );
    }

    #[test]
    fn the_closest_template_is_found_and_the_rest_is_built_in() {
        use MessageKind::{Invitation, PasswordReset};
        let templates = MailTemplates::fold(&[
            set(Invitation, None, "default"),
            set(Invitation, Some("pt"), "pt"),
            set(Invitation, Some("pt-BR"), "pt-br"),
        ]);
        let find = |locale: Option<&str>| {
            let locale = locale.map(|l| Locale::parse(l).unwrap());
            templates
                .find(Invitation, locale.as_ref())
                .map(|t| t.subject.clone())
        };
        assert_eq!(find(Some("pt-BR")).as_deref(), Some("pt-br"));
        assert_eq!(find(Some("pt-PT")).as_deref(), Some("pt"));
        assert_eq!(find(Some("de")).as_deref(), Some("default"));
        assert_eq!(find(None).as_deref(), Some("default"));
        assert_eq!(templates.find(PasswordReset, None), None);
    }

    #[test]
    fn set_changes_once_remove_forgets_and_bounds_hold() {
        let kind = MessageKind::Verification;
        let command = MailTemplateCommand::Set {
            kind,
            locale: None,
            template: template("Bitte bestätigen"),
        };
        given::<MailTemplates>(&[])
            .when(&command)
            .then(&[set(kind, None, "Bitte bestätigen")]);
        given::<MailTemplates>(&[set(kind, None, "Bitte bestätigen")])
            .when(&command)
            .then(&[]);
        let remove = MailTemplateCommand::Remove { kind, locale: None };
        given::<MailTemplates>(&[set(kind, None, "x")])
            .when(&remove)
            .then(&[MailTemplateEvent::Removed { kind, locale: None }]);
        given::<MailTemplates>(&[]).when(&remove).then(&[]);
        // Personal data and sizes are refused.
        for bad in [
            template("Call +44 20 7946 0958"),
            template(""),
            MailTemplate {
                text: "x".repeat(MAX_BODY + 1),
                ..template("fine")
            },
        ] {
            let refused = MailTemplates::default().decide(&MailTemplateCommand::Set {
                kind,
                locale: None,
                template: bad,
            });
            assert!(matches!(refused, Err(MailTemplateError::Invalid(_))));
        }
        // Every kind in 15 languages and a default, and no more.
        let locales: Vec<Option<String>> = (0..15u8)
            .map(|i| Some(format!("l{}", (b'a' + i) as char)))
            .chain([None])
            .collect();
        let full: Vec<MailTemplateEvent> = MessageKind::ALL
            .into_iter()
            .flat_map(|k| locales.iter().map(move |l| set(k, l.as_deref(), "x")))
            .collect();
        let full = MailTemplates::fold(&full);
        assert_eq!(full.all().count(), MAX_TEMPLATES);
        let one_more = MailTemplateCommand::Set {
            kind,
            locale: Some(Locale::parse("zz").unwrap()),
            template: template("x"),
        };
        assert_eq!(full.decide(&one_more), Err(MailTemplateError::TooMany));
        let replaced = MailTemplateCommand::Set {
            kind,
            locale: None,
            template: template("y"),
        };
        assert_eq!(full.decide(&replaced).unwrap().len(), 1);
    }

    #[test]
    fn events_round_trip() {
        for event in [
            set(MessageKind::PasswordReset, Some("de-CH"), "Passwort"),
            set(MessageKind::Invitation, None, "Einladung"),
            MailTemplateEvent::Removed {
                kind: MessageKind::AddressChangeNotice,
                locale: Some(Locale::parse("fr").unwrap()),
            },
        ] {
            assert_eq!(
                MailTemplateEvent::from_stored(&event.to_stored()),
                Ok(event)
            );
        }
    }
}
