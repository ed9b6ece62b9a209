//! The HTML pages of the control plane: the user info page, the sign-out confirmation and the
//! signed-out page. Every value is escaped; no page loads anything from elsewhere.

use serde_json::{Map, Value};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <style>body{{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}}\
         button{{padding:.4rem 1rem}}</style></head><body>\n<h1>{title}</h1>\n{body}\n</body></html>\n",
        title = escape(title),
    )
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
