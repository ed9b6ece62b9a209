//! What the API says about a certificate: a key pair's `certificateInfo` (field names as Zero's
//! `CertificateInfo` model), its names and expiry (for the certificate alerts).

use serde_json::{Value, json};
use x509_parser::prelude::*;

fn parse_first<T>(pem: &str, read: impl FnOnce(&X509Certificate<'_>) -> T) -> Option<T> {
    let der = proxy::tls::certificates_from_pem(pem.as_bytes()).ok()?.into_iter().next()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(read(&parsed))
}

fn timestamp(time: ASN1Time) -> Option<jiff::Timestamp> {
    jiff::Timestamp::from_second(time.timestamp()).ok()
}

/// The expiry of the first certificate in `pem`.
pub fn not_after(pem: &str) -> Option<jiff::Timestamp> {
    parse_first(pem, |c| timestamp(c.validity().not_after)).flatten()
}

/// The DNS names of the first certificate in `pem` (its subject alternative names, or its
/// common name when it has none).
pub fn dns_names(pem: &str) -> Vec<String> {
    parse_first(pem, names).unwrap_or_default()
}

fn names(certificate: &X509Certificate<'_>) -> Vec<String> {
    let sans: Vec<String> = certificate
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| if let GeneralName::DNSName(d) = n { Some((*d).to_owned()) } else { None })
                .collect()
        })
        .unwrap_or_default();
    if !sans.is_empty() {
        return sans;
    }
    certificate.subject().iter_common_name().filter_map(|a| a.as_str().ok()).map(str::to_owned).collect()
}

/// Whether a certificate for `names` serves `host` (`*.example.com` covers one label).
pub fn covers(names: &[String], host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    names.iter().any(|name| {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        match name.strip_prefix("*.") {
            Some(parent) => host.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
            None => name == host,
        }
    })
}

fn name_json(name: &X509Name<'_>) -> Value {
    let all = |iter: &mut dyn Iterator<Item = &AttributeTypeAndValue<'_>>| -> Vec<String> {
        iter.filter_map(|a| a.as_str().ok()).map(str::to_owned).collect()
    };
    let serial = name
        .iter_by_oid(&x509_parser::oid_registry::OID_X509_SERIALNUMBER)
        .find_map(|a| a.as_str().ok())
        .unwrap_or_default();
    json!({
        "commonName": name.iter_common_name().find_map(|a| a.as_str().ok()).unwrap_or_default(),
        "country": all(&mut name.iter_country()),
        "locality": all(&mut name.iter_locality()),
        "organization": all(&mut name.iter_organization()),
        "organizationalUnit": all(&mut name.iter_organizational_unit()),
        "postalCode": all(&mut name.iter_by_oid(&x509_parser::oid_registry::OID_X509_POSTAL_CODE)),
        "province": all(&mut name.iter_state_or_province()),
        "serialNumber": serial,
        "streetAddress": all(&mut name.iter_by_oid(&x509_parser::oid_registry::OID_X509_STREET_ADDRESS)),
    })
}

/// The first certificate of `pem` as Zero's `CertificateInfo`: `issuer`, `subject` (names),
/// `notBefore`, `notAfter` (RFC 3339), `dnsNames`, `ipAddresses`, `emailAddresses`, `uris`,
/// `serial`, `version`, `keyUsage`, `extKeyUsage`, and the name constraints.
pub fn info(pem: &str) -> Option<Value> {
    parse_first(pem, |c| {
        let mut ip_addresses = Vec::new();
        let mut emails = Vec::new();
        let mut uris = Vec::new();
        if let Ok(Some(ext)) = c.subject_alternative_name() {
            for name in &ext.value.general_names {
                match name {
                    GeneralName::IPAddress(bytes) => {
                        if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                            ip_addresses.push(std::net::IpAddr::from(v4).to_string());
                        } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                            ip_addresses.push(std::net::IpAddr::from(v6).to_string());
                        }
                    }
                    GeneralName::RFC822Name(email) => emails.push((*email).to_owned()),
                    GeneralName::URI(uri) => uris.push((*uri).to_owned()),
                    _ => {}
                }
            }
        }
        let usage = c.key_usage().ok().flatten().map(|e| *e.value);
        let flag = |read: fn(&KeyUsage) -> bool| usage.as_ref().is_some_and(read);
        let ext = c.extended_key_usage().ok().flatten().map(|e| e.value.clone());
        let ext_flag = |read: fn(&ExtendedKeyUsage<'_>) -> bool| ext.as_ref().is_some_and(read);
        let time = |t: ASN1Time| timestamp(t).map(|t| t.to_string()).unwrap_or_default();
        json!({
            "issuer": name_json(c.issuer()),
            "subject": name_json(c.subject()),
            "notBefore": time(c.validity().not_before),
            "notAfter": time(c.validity().not_after),
            "dnsNames": names(c),
            "ipAddresses": ip_addresses,
            "emailAddresses": emails,
            "uris": uris,
            "serial": c.serial.to_string(),
            "version": c.version().0 + 1,
            "keyUsage": {
                "certSign": flag(KeyUsage::key_cert_sign),
                "contentCommitment": flag(KeyUsage::non_repudiation),
                "crlSign": flag(KeyUsage::crl_sign),
                "dataEncipherment": flag(KeyUsage::data_encipherment),
                "decipherOnly": flag(KeyUsage::decipher_only),
                "digitalSignature": flag(KeyUsage::digital_signature),
                "encipherOnly": flag(KeyUsage::encipher_only),
                "keyAgreement": flag(KeyUsage::key_agreement),
                "keyEncipherment": flag(KeyUsage::key_encipherment),
            },
            "extKeyUsage": {
                "any": ext_flag(|e| e.any),
                "clientAuth": ext_flag(|e| e.client_auth),
                "codeSigning": ext_flag(|e| e.code_signing),
                "emailProtection": ext_flag(|e| e.email_protection),
                "ipsecEndSystem": false, "ipsecTunnel": false, "ipsecUser": false,
                "microsoftCommercialCodeSigning": false, "microsoftKernelCodeSigning": false,
                "microsoftServerGatedCrypto": false, "netscapeServerGatedCrypto": false,
                "ocspSigning": ext_flag(|e| e.ocsp_signing),
                "serverAuth": ext_flag(|e| e.server_auth),
                "timeStamping": ext_flag(|e| e.time_stamping),
            },
            "permittedDnsDomains": [], "permittedDnsDomainsCritical": false, "permittedEmailAddresses": [],
            "permittedIpRanges": [], "permittedUriDomains": [], "excludedDnsDomains": [],
            "excludedEmailAddresses": [], "excludedIpRanges": [], "excludedUriDomains": [],
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        let names = vec!["*.c.example.com".to_owned(), "c.example.com".to_owned()];
        assert!(covers(&names, "app.c.example.com"));
        assert!(covers(&names, "C.Example.com"));
        assert!(!covers(&names, "a.b.c.example.com"));
        assert!(!covers(&names, "other.example.com"));
        assert!(!covers(&names, ".c.example.com"));
    }
}
