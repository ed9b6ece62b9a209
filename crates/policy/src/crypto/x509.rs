//! X.509 client certificates, read as Pomerium's Rego reads them:
//! `crypto.x509.parse_certificates(trim_space(leaf))[0]`.
//!
//! OPA's built-in takes PEM (Go's `encoding/pem`, every block must be a `CERTIFICATE`) or base64
//! (Go's `base64.StdEncoding`) of DER or of PEM, concatenates the DER and parses it with Go's
//! `x509.ParseCertificates`, which fails as a whole when any certificate fails. Any failure makes
//! the Rego rule undefined, which is `None` here. The PEM and base64 rules are ported exactly; the
//! DER parse is `x509-parser`'s plus the checks of Go's parser that touch what we read.

use super::CertificateFacts;
use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer as _;

/// Go's `base64.StdEncoding`: padding is required, but non-zero trailing bits are tolerated
/// (Go's decoder is not `Strict`). Go also skips `\r` and `\n`, which [`go_base64`] removes.
const GO_STD_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

const PEM_START: &[u8] = b"\n-----BEGIN ";
const PEM_END: &[u8] = b"\n-----END ";
const PEM_END_OF_LINE: &[u8] = b"-----";
const CERTIFICATE: &[u8] = b"CERTIFICATE";

impl CertificateFacts {
    /// The first certificate of `text`: PEM, or base64 of DER or of PEM. `None` when OPA's
    /// `crypto.x509.parse_certificates` would fail or return no certificate.
    pub fn from_pem_or_base64(text: &str) -> Option<CertificateFacts> {
        // Rego's trim_space is Go's strings.TrimSpace: the same Unicode White_Space set.
        let text = text.trim();
        if text.starts_with("-----BEGIN") {
            return Self::from_pem(text.as_bytes());
        }
        let decoded = go_base64(text.as_bytes())?;
        if decoded.starts_with(b"-----BEGIN") {
            return Self::from_pem(&decoded);
        }
        Self::from_der(&decoded)
    }

    /// The first certificate of `der`, one or more DER certificates back to back (Go's
    /// `x509.ParseCertificates`): `None` if any of them fails to parse, or there is none.
    pub fn from_der(der: &[u8]) -> Option<CertificateFacts> {
        let mut rest = der;
        let mut first = None;
        while !rest.is_empty() {
            let (next, cert) = X509Certificate::from_der(rest).ok()?;
            let raw = rest.get(..rest.len().checked_sub(next.len())?)?;
            if !acceptable(&cert) {
                return None;
            }
            if first.is_none() {
                first = Some(facts(raw, &cert)?);
            }
            rest = next;
        }
        first
    }

    /// OPA's `getX509CertsFromPem`: every block up to the first undecodable one, each a
    /// `CERTIFICATE`, their DER concatenated.
    fn from_pem(mut data: &[u8]) -> Option<CertificateFacts> {
        let mut der = Vec::new();
        while !data.is_empty() {
            let Some((label, bytes, rest)) = pem_decode(data) else {
                break;
            };
            if label != CERTIFICATE {
                return None;
            }
            der.extend_from_slice(&bytes);
            data = rest;
        }
        Self::from_der(&der)
    }
}

fn facts(raw: &[u8], cert: &X509Certificate<'_>) -> Option<CertificateFacts> {
    let mut facts = CertificateFacts {
        fingerprint: sha256(raw)?,
        spki_hash: sha256(cert.tbs_certificate.subject_pki.raw)?,
        ..CertificateFacts::default()
    };
    if let Some(san) = cert.subject_alternative_name().ok().flatten() {
        for name in &san.value.general_names {
            match name {
                GeneralName::RFC822Name(s) => facts.san_emails.push((*s).to_owned()),
                GeneralName::DNSName(s) => facts.san_dns.push((*s).to_owned()),
                // OPA's URIStrings is Go's url.URL.String() of the parsed URI; for the URIs that
                // parse, that is the text itself but for normalisations we do not reproduce.
                GeneralName::URI(s) => facts.san_uris.push((*s).to_owned()),
                _ => {}
            }
        }
    }
    Some(facts)
}

/// Go's `x509.ParseCertificate` refuses some certificates that `x509-parser` reads; these are
/// the refusals that concern the facts we take or that a real client certificate could hit.
fn acceptable(cert: &X509Certificate<'_>) -> bool {
    let tbs = &cert.tbs_certificate;
    // "x509: inner and outer signature algorithm identifiers don't match".
    if tbs.signature != cert.signature_algorithm {
        return false;
    }
    // "x509: negative serial number" (Go 1.23 and later).
    if tbs.raw_serial().first().is_some_and(|b| b & 0x80 != 0) {
        return false;
    }
    // "x509: certificate contains duplicate extensions".
    let extensions = tbs.extensions();
    for (i, ext) in extensions.iter().enumerate() {
        if extensions.iter().skip(i + 1).any(|other| other.oid == ext.oid) {
            return false;
        }
    }
    // A malformed SAN extension fails Go's parse, and so do names that are not IA5 strings
    // (ASCII) and IP addresses that are neither 4 nor 16 bytes.
    match cert.subject_alternative_name() {
        Err(_) => false,
        Ok(None) => true,
        Ok(Some(san)) => san.value.general_names.iter().all(|name| match name {
            GeneralName::RFC822Name(s) | GeneralName::DNSName(s) | GeneralName::URI(s) => s.is_ascii(),
            GeneralName::IPAddress(ip) => ip.len() == 4 || ip.len() == 16,
            // x509-parser keeps the names it could not read; Go fails on those it reads.
            GeneralName::Invalid(tag, _) => !matches!(tag.0, 1 | 2 | 6),
            _ => true,
        }),
    }
}

fn sha256(data: &[u8]) -> Option<[u8; 32]> {
    digest::digest(&digest::SHA256, data).as_ref().try_into().ok()
}

/// Go's `base64.StdEncoding.DecodeString`, which skips every `\r` and `\n`.
fn go_base64(text: &[u8]) -> Option<Vec<u8>> {
    let kept: Vec<u8> = text.iter().copied().filter(|&b| b != b'\r' && b != b'\n').collect();
    GO_STD_BASE64.decode(kept).ok()
}

/// Go's `encoding/pem.Decode`: the label and bytes of the first well-formed block of `data`, and
/// what follows it; a malformed block is skipped, as Go does. `None` when no block decodes.
fn pem_decode(data: &[u8]) -> Option<(&[u8], Vec<u8>, &[u8])> {
    let mut rest = data;
    // Where the last search for PEM_END started and what it found (as offsets into `data`):
    // a later search from no further than the match finds the same match, which keeps hostile
    // input with many BEGIN lines linear.
    let mut end_memo: Option<(usize, Option<usize>)> = None;
    loop {
        if let Some(after) = rest.strip_prefix(PEM_START.get(1..)?) {
            rest = after;
        } else {
            rest = rest.get(find(rest, PEM_START)?.checked_add(PEM_START.len())?..)?;
        }

        let type_line;
        (type_line, rest) = get_line(rest);
        let Some(label) = type_line.strip_suffix(PEM_END_OF_LINE) else {
            continue;
        };

        let mut has_headers = false;
        loop {
            if rest.is_empty() {
                return None;
            }
            let (line, next) = get_line(rest);
            if !line.contains(&b':') {
                break;
            }
            has_headers = true;
            rest = next;
        }

        // Without headers, the END line may come at once, without a leading newline.
        let (end_index, end_trailer_index) = if !has_headers && rest.starts_with(PEM_END.get(1..)?) {
            (0, PEM_END.len().checked_sub(1)?)
        } else {
            let start = data.len().checked_sub(rest.len())?;
            let found = match end_memo {
                Some((from, found)) if from <= start && found.is_none_or(|f| start <= f) => found,
                _ => find(rest, PEM_END).map(|i| start.saturating_add(i)),
            };
            end_memo = Some((start, found));
            let Some(found) = found else {
                continue;
            };
            let index = found.checked_sub(start)?;
            (index, index.checked_add(PEM_END.len())?)
        };

        // After END come the same label and five dashes, then only spaces to the end of line.
        let end_trailer = rest.get(end_trailer_index..)?;
        let trailer_len = label.len().checked_add(PEM_END_OF_LINE.len())?;
        let (Some(trailer), Some(rest_of_end_line)) = (end_trailer.get(..trailer_len), end_trailer.get(trailer_len..))
        else {
            continue;
        };
        if !trailer.starts_with(label) || !trailer.ends_with(PEM_END_OF_LINE) {
            continue;
        }
        if !get_line(rest_of_end_line).0.is_empty() {
            continue;
        }

        let body = rest.get(..end_index)?;
        let Some(bytes) = pem_body(body) else {
            continue;
        };
        let after_end = rest.get(end_index.checked_add(PEM_END.len())?.checked_sub(1)?..)?;
        return Some((label, bytes, get_line(after_end).1));
    }
}

/// The base64 of a PEM block: Go removes spaces and tabs, then decodes skipping `\r` and `\n`.
fn pem_body(body: &[u8]) -> Option<Vec<u8>> {
    // Stop at the first byte that cannot be base64 before copying anything: a body that holds
    // further BEGIN lines then costs only the distance to the first of them.
    let plausible = |b: &u8| b.is_ascii_alphanumeric() || b"+/= \t\r\n".contains(b);
    if !body.iter().all(plausible) {
        return None;
    }
    let kept: Vec<u8> = body.iter().copied().filter(|&b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n')).collect();
    GO_STD_BASE64.decode(kept).ok()
}

/// Go's pem `getLine`: the first line without its `\n` or `\r\n` and trailing spaces and tabs,
/// and the rest after the newline.
fn get_line(data: &[u8]) -> (&[u8], &[u8]) {
    let (line, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => {
            let line = data.get(..i).unwrap_or_default();
            let rest = data.get(i.saturating_add(1)..).unwrap_or_default();
            (line.strip_suffix(b"\r").unwrap_or(line), rest)
        }
        None => (data, &[][..]),
    };
    let trimmed =
        line.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(&[][..], |last| line.get(..=last).unwrap_or(line));
    (trimmed, rest)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = include_str!("../../tests/fixtures/crypto/x509/ca.pem");
    const LEAF_SANS: &str = include_str!("../../tests/fixtures/crypto/x509/leaf-sans.pem");
    const LEAF_RSA: &str = include_str!("../../tests/fixtures/crypto/x509/leaf-rsa.pem");
    const LEAF_NOSAN: &str = include_str!("../../tests/fixtures/crypto/x509/leaf-nosan.pem");
    const CHAIN: &str = include_str!("../../tests/fixtures/crypto/x509/chain.pem");
    const LEAF_SANS_B64: &str = include_str!("../../tests/fixtures/crypto/x509/leaf-sans.der.b64");
    const EXPECTED: &str = include_str!("../../tests/fixtures/crypto/x509/expected.txt");

    fn parse(text: &str) -> CertificateFacts {
        CertificateFacts::from_pem_or_base64(text).expect("the fixture parses")
    }

    /// openssl's fingerprint (hex) and SPKI hash (base64) for a fixture.
    fn expected(name: &str) -> ([u8; 32], [u8; 32]) {
        let line =
            EXPECTED.lines().find(|l| l.split(' ').next() == Some(name)).expect("the fixture is in expected.txt");
        let fields: Vec<&str> = line.split(' ').collect();
        let hex = fields[1].as_bytes();
        let fingerprint: Vec<u8> =
            hex.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap()).collect();
        let spki = base64::engine::general_purpose::STANDARD.decode(fields[2]).unwrap();
        (fingerprint.try_into().unwrap(), spki.try_into().unwrap())
    }

    fn der(pem: &str) -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD.decode(body).unwrap()
    }

    #[test]
    fn fingerprint_and_spki_hash_match_openssl() {
        for (name, pem) in [("ca", CA), ("leaf-sans", LEAF_SANS), ("leaf-rsa", LEAF_RSA), ("leaf-nosan", LEAF_NOSAN)] {
            let facts = parse(pem);
            let (fingerprint, spki_hash) = expected(name);
            assert_eq!(facts.fingerprint, fingerprint, "{name}");
            assert_eq!(facts.spki_hash, spki_hash, "{name}");
        }
    }

    #[test]
    fn subject_alternative_names_of_each_kind_in_order() {
        let facts = parse(LEAF_SANS);
        assert_eq!(facts.san_emails, ["alice@example.com", "bob@example.com"]);
        assert_eq!(facts.san_dns, ["a.example.com", "*.b.example.com"]);
        assert_eq!(facts.san_uris, ["spiffe://example.com/ns/default/sa/alice", "https://example.com/users/alice?x=1"]);

        let facts = parse(LEAF_RSA);
        assert_eq!(facts.san_dns, ["only.example.com"]);
        assert!(facts.san_emails.is_empty() && facts.san_uris.is_empty());

        let facts = parse(LEAF_NOSAN);
        assert!(facts.san_emails.is_empty() && facts.san_dns.is_empty());
        assert!(facts.san_uris.is_empty());
    }

    #[test]
    fn the_first_certificate_of_a_chain() {
        assert_eq!(parse(CHAIN), parse(LEAF_SANS));
        assert_ne!(parse(CHAIN), parse(CA));
    }

    #[test]
    fn the_forms_opa_accepts() {
        let want = parse(LEAF_SANS);
        // base64 of DER, on one line, wrapped with \n or \r\n, with surrounding whitespace.
        assert_eq!(parse(LEAF_SANS_B64), want);
        let wrapped: Vec<String> =
            LEAF_SANS_B64.trim().as_bytes().chunks(64).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
        assert_eq!(parse(&wrapped.join("\n")), want);
        assert_eq!(parse(&format!(" \n\t{}\r\n ", wrapped.join("\r\n"))), want);
        // base64 of PEM.
        let pem_b64 = base64::engine::general_purpose::STANDARD.encode(LEAF_SANS);
        assert_eq!(parse(&pem_b64), want);
        // PEM with CRLF line ends, surrounding whitespace, text between blocks, or headers.
        assert_eq!(parse(&LEAF_SANS.replace('\n', "\r\n")), want);
        assert_eq!(parse(&format!("\n\n  {LEAF_SANS}\n\n")), want);
        assert_eq!(parse(&format!("{LEAF_SANS}some text\n{CA}trailing")), want);
        let with_header =
            LEAF_SANS.replacen("-----BEGIN CERTIFICATE-----\n", "-----BEGIN CERTIFICATE-----\nComment: fixture\n\n", 1);
        assert_eq!(parse(&with_header), want);
        // Trailing spaces and tabs on PEM lines are fine.
        assert_eq!(parse(&LEAF_SANS.replace('\n', " \t\n")), want);
        // DER directly, alone or followed by another certificate.
        let der = der(LEAF_SANS);
        assert_eq!(CertificateFacts::from_der(&der), Some(want.clone()));
        let mut two = der.clone();
        two.extend(self::der(CA));
        assert_eq!(CertificateFacts::from_der(&two), Some(want));
    }

    #[test]
    fn what_opa_refuses() {
        let refused = [
            "",
            "   \n",
            "not a certificate",
            "-----BEGIN CERTIFICATE-----",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
            // base64 without its padding.
            "QUJDRA",
        ];
        for text in refused {
            assert_eq!(CertificateFacts::from_pem_or_base64(text), None, "{text:?}");
        }
        // A block of another type anywhere fails the whole input, as in OPA.
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert_eq!(CertificateFacts::from_pem_or_base64(key), None);
        assert_eq!(CertificateFacts::from_pem_or_base64(&format!("{LEAF_SANS}{key}")), None);
        // So does a second certificate that does not parse.
        let broken = "-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n";
        assert_eq!(CertificateFacts::from_pem_or_base64(&format!("{LEAF_SANS}{broken}")), None);
        // An END line for another label makes the block malformed; Go then finds no block.
        let mislabeled = LEAF_SANS.replace("END CERTIFICATE", "END CERTIFICATES");
        assert_eq!(CertificateFacts::from_pem_or_base64(&mislabeled), None);
        // Whitespace other than \r and \n inside base64 is not skipped by Go's decoder.
        let spaced = LEAF_SANS_B64.trim().replacen('A', "A ", 1);
        assert_eq!(CertificateFacts::from_pem_or_base64(&spaced), None);
    }

    #[test]
    fn truncated_or_extended_der_is_refused() {
        let der = der(LEAF_SANS);
        for len in 0..der.len() {
            assert_eq!(CertificateFacts::from_der(&der[..len]), None, "{len}");
        }
        let mut junk = der.clone();
        junk.push(0);
        assert_eq!(CertificateFacts::from_der(&junk), None);
    }

    #[test]
    fn go_refusals_of_what_we_read() {
        let der = der(LEAF_SANS);
        // A DNS name that is not ASCII ("a." becomes "é", the same length).
        let at = der.windows(13).position(|w| w == b"a.example.com").unwrap();
        let mut utf8 = der.clone();
        utf8[at..at + 2].copy_from_slice("é".as_bytes());
        assert_eq!(CertificateFacts::from_der(&utf8), None);
        // A negative serial number.
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let serial = cert.tbs_certificate.raw_serial();
        let at = der.windows(serial.len()).position(|w| w == serial).unwrap();
        let mut negative = der.clone();
        negative[at] |= 0x80;
        assert_eq!(CertificateFacts::from_der(&negative), None);
    }

    #[test]
    fn hostile_input_never_panics() {
        // xorshift64: deterministic, no dependency.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let der = der(LEAF_SANS);
        for round in 0..3000 {
            let len = (next() % 600) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = CertificateFacts::from_der(&bytes);
            let _ = CertificateFacts::from_pem_or_base64(&String::from_utf8_lossy(&bytes));
            // Mutations of a real certificate reach deeper into the parser.
            let mut mutated = der.clone();
            for _ in 0..1 + round % 4 {
                let at = (next() as usize) % mutated.len();
                mutated[at] = next() as u8;
            }
            let _ = CertificateFacts::from_der(&mutated);
            let mut pem = LEAF_SANS.as_bytes().to_vec();
            let at = (next() as usize) % pem.len();
            pem[at] = b"-\n\r :=AB"[(next() % 8) as usize];
            let _ = CertificateFacts::from_pem_or_base64(&String::from_utf8_lossy(&pem));
        }
        // Many BEGIN lines with no END stay fast (linear).
        let many = "-----BEGIN CERTIFICATE-----\n".repeat(20_000);
        assert_eq!(CertificateFacts::from_pem_or_base64(&many), None);
        let nested = format!("{many}AAAA\n-----END CERTIFICATE-----\n");
        assert_eq!(CertificateFacts::from_pem_or_base64(&nested), None);
    }
}
