//! "Did you mean" suggestions for misspelt names.

/// The closest candidate to `word`, if one is close enough to be a likely typo.
///
/// Names are compared after normalising case and separators (`startsWith` and `starts-with` both
/// find `starts_with`); then by Damerau–Levenshtein distance, allowing one edit per three
/// characters; then by prefix (`http` finds `http_method`), when exactly one candidate has it.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let normal = normalise(word);
    if normal.is_empty() {
        return None;
    }
    if let Some(exact) = candidates.iter().find(|c| normalise(c) == normal) {
        return Some(exact);
    }
    let best = candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(&normal, &normalise(c)), *c))
        .min_by_key(|(distance, _)| *distance);
    if let Some((distance, candidate)) = best {
        let allowed = (normal.chars().count().max(candidate.len()) / 3).max(1);
        if distance <= allowed {
            return Some(candidate);
        }
    }
    let mut prefixed = candidates.iter().filter(|c| normal.len() >= 3 && normalise(c).starts_with(&normal));
    match (prefixed.next(), prefixed.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

/// "did you mean `x`?", if a candidate is close to `word`.
pub fn did_you_mean(word: &str, candidates: &[&str]) -> Option<String> {
    closest(word, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// A help line: the suggestion if there is one, otherwise the list of what is allowed.
pub fn help(word: &str, candidates: &[&str], what: &str) -> String {
    did_you_mean(word, candidates).unwrap_or_else(|| {
        let quoted: Vec<String> = candidates.iter().map(|c| format!("`{c}`")).collect();
        format!("the {what} are {}", join_and(&quoted))
    })
}

/// "a", "a and b", "a, b and c".
pub fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn normalise(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    for (i, c) in word.chars().enumerate() {
        if c == '-' || c == ' ' || c == '_' {
            out.push('_');
        } else if c.is_uppercase() {
            if i > 0 && !out.ends_with('_') {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CRITERIA: &[&str] = &["email", "domain", "http_method", "http_path", "groups", "claim", "source_ip"];

    #[test]
    fn suggests_close_names() {
        assert_eq!(closest("emial", CRITERIA), Some("email"));
        assert_eq!(closest("group", CRITERIA), Some("groups"));
        assert_eq!(closest("httpMethod", CRITERIA), Some("http_method"));
        assert_eq!(closest("source-ip", CRITERIA), Some("source_ip"));
        assert_eq!(closest("sourceip", CRITERIA), Some("source_ip"));
        assert_eq!(closest("zzz", CRITERIA), None);
        assert_eq!(closest("http", CRITERIA), None, "two candidates share the prefix");
        assert_eq!(closest("", CRITERIA), None);
    }

    #[test]
    fn lists_candidates_when_nothing_is_close() {
        assert_eq!(help("xyz", &["allow", "deny"], "actions"), "the actions are `allow` and `deny`");
        assert_eq!(help("alow", &["allow", "deny"], "actions"), "did you mean `allow`?");
    }
}
