//! The messages' text: built-in templates for each kind, rendered with
//! `minijinja` from a fixed context (the recipient's name and address, the
//! link, the tenant's name; nothing else personal). HTML is auto-escaped,
//! and rendering is bounded (fuel), so a template can never run away.

use std::sync::OnceLock;

use custodia_domain::identity::message::MessageKind;
use minijinja::Environment;

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

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
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
    })
}

/// Renders the message of `context.kind`.
pub fn render(context: &Context) -> Result<Rendered, minijinja::Error> {
    let env = environment();
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
}
