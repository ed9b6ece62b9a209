//! The server's own HTML pages share one shell: the error and deny pages, the user info and
//! sign-out pages, and the development identity provider's pages look alike, load nothing from
//! elsewhere, and escape every value.
//!
//! Invariant: every value placed in a page goes through [`escape`]; a page is built only by
//! [`document`].

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

/// The style of every page: a card on a grey background, system fonts, no external resources.
pub const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;background:#f6f6f8;color:#222}\
main{max-width:40rem;margin:10vh auto;padding:2rem;background:#fff;border-radius:8px}\
h1{font-size:1.5rem}h2{font-size:1.1rem}.request-id{color:#666;font-size:.875rem}pre{white-space:pre-wrap}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}\
button{padding:.4rem 1rem;margin:.2rem 0}.warning{background:#b00;color:#fff;padding:.5rem;border-radius:4px}";

/// A whole page: `title` (escaped here) as the document title and its heading, `body` (HTML the
/// caller built with [`escape`]) below it.
pub fn document(title: &str, body: &str) -> String {
    let title = escape(title);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n\
         <h1>{title}</h1>\n{body}</main>\n</body>\n</html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_the_title_too() {
        assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        let page = document("<script>", "<p>ok</p>\n");
        assert!(page.contains("<title>&lt;script&gt;</title>") && page.contains("<h1>&lt;script&gt;</h1>"));
        assert!(!page.contains("<script>"));
        assert!(page.contains("<p>ok</p>"));
    }
}
