//! Hosts: how a request's authority and a route's `from` host are compared.

use crate::{Options, RouteError};

/// Room for a host name (253 bytes), a port and IPv6 brackets. Longer authorities match nothing.
pub(crate) const LOWERCASE_CAPACITY: usize = 264;

/// The host of a route's `from`, lowercased, with the port kept or dropped per [`Options`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// A concrete host: the route belongs to this host's virtual host.
    Exact(String),
    /// `*` followed by a suffix without another `*` (`*.example.com`): any host ending with the
    /// suffix (Envoy turns `*` into `(.*)`, so the part before may even be empty).
    Suffix(String),
    /// Any other pattern with `*` (`app-*.example.com`, `example.*`): each `*` stands for any run
    /// of characters.
    Glob(String),
}

impl HostPattern {
    pub(crate) fn parse(host: &str, options: Options) -> Result<HostPattern, RouteError> {
        let invalid = |reason| RouteError::Host { host: host.to_owned(), reason };
        if host.is_empty() {
            return Err(invalid("it is empty"));
        }
        if host.len() > LOWERCASE_CAPACITY {
            return Err(invalid("it is longer than a host name can be"));
        }
        if !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._*:[]".contains(&b)) {
            return Err(invalid("a host has only letters, digits, `-`, `.`, `_`, `*`, and a port"));
        }
        let lower = host.to_ascii_lowercase();
        let (name, port) = split_port(&lower).ok_or_else(|| invalid("the port is not a number"))?;
        let key = match port {
            Some(port) if !options.match_any_incoming_port && port != options.default_port => lower.clone(),
            _ => name.to_owned(),
        };
        Ok(match key.strip_prefix('*') {
            Some(suffix) if !suffix.contains('*') => HostPattern::Suffix(suffix.to_owned()),
            _ if key.contains('*') => HostPattern::Glob(key),
            _ => HostPattern::Exact(key),
        })
    }

    /// Whether `host` (lowercased, port handled) matches this pattern.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(exact) => exact == host,
            HostPattern::Suffix(suffix) => host.ends_with(suffix.as_str()),
            HostPattern::Glob(glob) => glob_matches(glob.as_bytes(), host.as_bytes()),
        }
    }
}

/// `*` matches any run of bytes; everything else matches itself. Linear-time backtracking on the
/// last `*` only, so hostile patterns and hosts cannot make it slow.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut resume: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                resume = Some((p, t));
                p += 1;
            }
            Some(&c) if text.get(t) == Some(&c) => {
                p += 1;
                t += 1;
            }
            _ => match resume {
                Some((star, from)) => {
                    p = star + 1;
                    t = from + 1;
                    resume = Some((star, from + 1));
                }
                None => return false,
            },
        }
    }
    pattern.get(p..).is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

/// A request's authority with the port dropped per [`Options`]: the key hosts are stored under.
/// Returns `None` for an authority no route can have (too long, a port that is not a number).
pub(crate) fn authority_key<'b>(
    raw: &'b str,
    options: Options,
    buffer: &'b mut Option<[u8; LOWERCASE_CAPACITY]>,
) -> Option<&'b str> {
    if raw.len() > LOWERCASE_CAPACITY {
        return None;
    }
    let scan = Scan::of(raw.as_bytes());
    let lower = if scan.needs_lowercase { lowercase_into(raw, buffer.insert([0; LOWERCASE_CAPACITY]))? } else { raw };
    let (name, port) =
        if lower.starts_with('[') { split_port(lower)? } else { split_at_colon(lower, scan.last_colon)? };
    Some(match port {
        Some(port) if !options.match_any_incoming_port && port != options.default_port => lower,
        _ => name,
    })
}

/// `raw` lowercased in `buffer` (which it fits: the caller checked).
pub(crate) fn lowercase_into<'b>(raw: &str, buffer: &'b mut [u8; LOWERCASE_CAPACITY]) -> Option<&'b str> {
    let target = buffer.get_mut(..raw.len())?;
    target.copy_from_slice(raw.as_bytes());
    target.make_ascii_lowercase();
    std::str::from_utf8(target).ok()
}

/// One pass over an authority, eight bytes at a time: does it need lowercasing (a capital letter
/// or a non-ASCII byte), and where is its last `:`. Lookups run per request; this is most of
/// their cost, so it avoids a byte-by-byte loop.
struct Scan {
    needs_lowercase: bool,
    last_colon: Option<usize>,
}

impl Scan {
    fn of(bytes: &[u8]) -> Scan {
        let mut scan = Scan { needs_lowercase: false, last_colon: None };
        let mut chunks = bytes.chunks_exact(8);
        let mut offset = 0;
        for chunk in chunks.by_ref() {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            scan.add(u64::from_le_bytes(word), offset);
            offset += 8;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            for (w, b) in word.iter_mut().zip(rest) {
                *w = *b;
            }
            scan.add(u64::from_le_bytes(word), offset);
        }
        scan
    }

    /// Eight bytes starting at `offset` (zero-padded: a zero byte is neither a capital nor `:`).
    fn add(&mut self, x: u64, offset: usize) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
        // With every byte below 0x80, byte + 0x3f has its high bit set from `A` up, and byte +
        // 0x25 from `[` up; a byte at or above 0x80 is flagged on its own.
        let upper = x.wrapping_add(0x3f * ONES) & !x.wrapping_add(0x25 * ONES);
        self.needs_lowercase |= (upper | x) & HIGH != 0;
        // Exact zero-byte test on x ^ ':' (no carries between bytes).
        let y = x ^ (u64::from(b':') * ONES);
        let colons = !((y & LOW7).wrapping_add(LOW7) | y) & HIGH;
        if colons != 0 {
            self.last_colon = Some(offset + (63 - colons.leading_zeros() as usize) / 8);
        }
    }
}

/// Splits at the colon found by [`Scan`]; `None` when what follows is not a port number.
fn split_at_colon(authority: &str, colon: Option<usize>) -> Option<(&str, Option<u16>)> {
    let Some(colon) = colon else { return Some((authority, None)) };
    let port = authority.get(colon + 1..)?.parse::<u16>().ok()?;
    Some((authority.get(..colon)?, Some(port)))
}

/// The key of a `tcp+https` route: `host:port`, lowercased; `None` without a port.
pub(crate) fn connect_key(host: &str) -> Option<String> {
    let lower = host.to_ascii_lowercase();
    match split_port(&lower)? {
        (_, Some(_)) => Some(lower),
        (_, None) => None,
    }
}

/// Splits `host:port` (or `[v6]:port`); `None` when the port is not a number.
fn split_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let colon = if authority.starts_with('[') {
        match authority.find(']') {
            Some(end) => authority.get(end + 1..).and_then(|rest| rest.starts_with(':').then_some(end + 1)),
            None => return None,
        }
    } else {
        authority.rfind(':')
    };
    let Some(colon) = colon else { return Some((authority, None)) };
    let port = authority.get(colon + 1..)?.parse::<u16>().ok()?;
    Some((authority.get(..colon)?, Some(port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_any_run_of_characters() {
        assert!(glob_matches(b"app-*.example.com", b"app-1.example.com"));
        assert!(glob_matches(b"app-*.example.com", b"app-.example.com"));
        assert!(!glob_matches(b"app-*.example.com", b"app.example.com"));
        assert!(glob_matches(b"*.*.example.com", b"a.b.example.com"));
        assert!(glob_matches(b"example.*", b"example.org"));
        assert!(!glob_matches(b"example.*", b"www.example.org"));
        assert!(glob_matches(b"a*b*c", b"aXXbYYbc"));
    }

    #[test]
    fn the_scan_agrees_with_the_plain_reading() {
        let cases = [
            "",
            "a",
            "A",
            "a.example.com",
            "a.Example.com:443",
            "é:1",
            "abcdefg:",
            "abcdefgh:12345678:9",
            "[::1]:443",
            "ZZZZZZZZZZZZZZZZ",
            "@[`{",
            ":::::::::::::::::",
        ];
        for case in cases {
            let scan = Scan::of(case.as_bytes());
            assert_eq!(scan.last_colon, case.rfind(':'), "{case}");
            let needs = case.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii());
            assert_eq!(scan.needs_lowercase, needs, "{case}");
        }
        for b in 0..=255u8 {
            let text = [b'a', b, b'a'];
            let scan = Scan::of(&text);
            assert_eq!(scan.needs_lowercase, b.is_ascii_uppercase() || !b.is_ascii(), "byte {b}");
            assert_eq!(scan.last_colon, (b == b':').then_some(1), "byte {b}");
        }
    }

    #[test]
    fn ports_split_for_names_and_ipv6() {
        assert_eq!(split_port("a.example.com:8443"), Some(("a.example.com", Some(8443))));
        assert_eq!(split_port("a.example.com"), Some(("a.example.com", None)));
        assert_eq!(split_port("[::1]:443"), Some(("[::1]", Some(443))));
        assert_eq!(split_port("[::1]"), Some(("[::1]", None)));
        assert_eq!(split_port("a:b"), None);
        assert_eq!(split_port("[::1"), None);
    }
}
