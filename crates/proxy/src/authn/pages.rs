//! The HTML pages of the control plane: the user info page, the sign-out confirmation and the
//! signed-out page. Every value is escaped; no page loads anything from elsewhere.

use serde_json::{Map, Value};

pub use pages::escape;

fn page(title: &str, body: &str) -> String {
    pages::document(title, &format!("{body}\n"))
}

/// `/.pomerium/`: who the user is, or that they are not signed in.
pub fn user_info(claims: Option<&Map<String, Value>>, sign_out_url: &str, sign_in_url: Option<&str>) -> String {
    let Some(claims) = claims else {
        let link = sign_in_url
            .map(|url| format!("<p><a id=\"sign-in\" href=\"{}\">Sign in</a></p>", escape(url)))
            .unwrap_or_default();
        return page("Not signed in", &format!("<p>You are not signed in.</p>{link}"));
    };
    let mut rows = String::new();
    for (name, value) in claims {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(", "),
            other => other.to_string(),
        };
        rows.push_str(&format!(
            "<tr><th>{}</th><td class=\"claim-{}\">{}</td></tr>\n",
            escape(name),
            escape(name),
            escape(&text)
        ));
    }
    let email = claims.get("email").and_then(Value::as_str).unwrap_or_default();
    page(
        "Signed in",
        &format!(
            "<p id=\"user\">Signed in as <strong>{}</strong>.</p>\n<table>\n{rows}</table>\n\
             <form method=\"post\" action=\"{}\"><p><button type=\"submit\">Sign out</button></p></form>",
            escape(email),
            escape(sign_out_url)
        ),
    )
}

/// `/.pomerium/sign_out` on an unsigned GET: a page asking to confirm, which POSTs.
pub fn confirm_sign_out(action: &str) -> String {
    page(
        "Sign out?",
        &format!(
            "<p>Do you want to sign out?</p><form method=\"post\" action=\"{}\">\
             <button id=\"sign-out\" type=\"submit\">Sign out</button></form>",
            escape(action)
        ),
    )
}

/// `/.pomerium/signed_out`.
pub fn signed_out() -> String {
    page("Signed out", "<p>You have been signed out.</p>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let mut claims = Map::new();
        claims.insert("name".to_owned(), Value::String("<script>alert(1)</script>".to_owned()));
        let html = user_info(Some(&claims), "/.pomerium/sign_out?a=1&b=\"2\"", None);
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("a=1&amp;b=&quot;2&quot;"));
    }
}
