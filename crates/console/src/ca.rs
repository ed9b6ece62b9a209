//! The console's own certificate authority, and each cluster's wildcard certificate it issues
//! (`*.<fqdn>` and `<fqdn>`: zero.md §2, "the control plane provides the wildcard certificate").
//!
//! The CA is made at first start and kept in the console's storage (so every console on one
//! PostgreSQL, and a restarted one, issue from the same CA); its certificate is served at
//! `GET /api/v0/organizations/{org}/ca.pem` for clients to trust. A cluster's certificate is kept
//! beside it, shipped in the cluster's bundle with the key pairs' certificates, and renewed
//! [`RENEW_WITHIN`] before it expires (checked at every apply and every [`RENEW_CHECK_EVERY`]).

use crate::store::{Kind, Store};
use jiff::SignedDuration;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{Map, Value, json};

/// The id of the CA's record (of kind [`Kind::Secret`]).
const CA_RECORD: &str = "ca";
/// How long the CA is valid.
const CA_DAYS: i64 = 3650;
/// How long a cluster's certificate is valid.
pub const LEAF_DAYS: i64 = 90;
/// A cluster's certificate is renewed when it has less than this left.
pub const RENEW_WITHIN: SignedDuration = SignedDuration::from_hours(30 * 24);
/// How often the console looks for cluster certificates to renew.
pub const RENEW_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// The console's CA: its certificate (PEM) and what it signs with.
pub struct Ca {
    pub certificate: String,
    key: String,
    common_name: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("common_name", &self.common_name).finish_non_exhaustive()
    }
}

/// A cluster's certificate as issued: PEM certificate and key, and its expiry.
#[derive(Clone, PartialEq)]
pub struct Issued {
    pub certificate: String,
    pub key: String,
    pub not_after: jiff::Timestamp,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").field("not_after", &self.not_after).finish_non_exhaustive()
    }
}

/// Valid from yesterday (UTC; a replica's clock may be a little behind) to `days` from now.
fn validity(params: &mut CertificateParams, days: i64) -> Result<(), String> {
    let date = |days: i64| {
        let at = jiff::Timestamp::now()
            .checked_add(SignedDuration::from_hours(days * 24))
            .map_err(|e| format!("certificate dates: {e}"))?;
        let date = at.to_zoned(jiff::tz::TimeZone::UTC).date();
        let month = u8::try_from(date.month()).map_err(|e| format!("certificate dates: {e}"))?;
        let day = u8::try_from(date.day()).map_err(|e| format!("certificate dates: {e}"))?;
        Ok::<_, String>(rcgen::date_time_ymd(i32::from(date.year()), month, day))
    };
    params.not_before = date(-1)?;
    params.not_after = date(days)?;
    Ok(())
}

/// The issuer's parameters: what a certificate it signs names as its issuer.
fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "pomerium-console");
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

fn random_serial() -> rcgen::SerialNumber {
    let mut bytes = [0u8; 16];
    fastrand::fill(&mut bytes);
    // Positive, non-zero.
    if let Some(first) = bytes.first_mut() {
        *first = (*first & 0x7f) | 0x01;
    }
    rcgen::SerialNumber::from_slice(&bytes)
}

impl Ca {
    /// The CA kept in `store`, or a new one (kept there) at first start.
    pub async fn open(store: &Store, org_id: &str) -> Result<Ca, String> {
        let failed = |e: databroker::storage::StorageError| format!("storage: {e}");
        if let Some(data) = store.live(Kind::Secret, CA_RECORD).await.map_err(failed)? {
            return Ca::from_record(&data);
        }
        let common_name = format!("pomerium-console CA {org_id}");
        let key = KeyPair::generate().map_err(|e| format!("cannot make the console's CA key: {e}"))?;
        let mut params = ca_params(&common_name);
        validity(&mut params, CA_DAYS)?;
        params.serial_number = Some(random_serial());
        let certificate = params.self_signed(&key).map_err(|e| format!("cannot make the console's CA: {e}"))?;
        let data = json!({"certificate": certificate.pem(), "key": key.serialize_pem(), "commonName": common_name});
        store.put(Kind::Secret, CA_RECORD, data.as_object().cloned().unwrap_or_default()).await.map_err(failed)?;
        tracing::info!(%common_name, "certificate authority made");
        // Read back: of two consoles starting at once on one database, both use what was kept.
        let data = store.live(Kind::Secret, CA_RECORD).await.map_err(failed)?.unwrap_or_default();
        Ca::from_record(&data)
    }

    fn from_record(data: &Map<String, Value>) -> Result<Ca, String> {
        let field = |name: &str| data.get(name).and_then(Value::as_str).map(str::to_owned);
        let unreadable = "the stored certificate authority (record `ca`) is unreadable; delete it to make a new one (clusters then get certificates from the new CA)";
        let (Some(certificate), Some(key), Some(common_name)) =
            (field("certificate"), field("key"), field("commonName"))
        else {
            return Err(unreadable.to_owned());
        };
        KeyPair::from_pem(&key).map_err(|_| unreadable.to_owned())?;
        Ok(Ca { certificate, key, common_name })
    }

    /// A new certificate for `*.<fqdn>` and `<fqdn>`, valid [`LEAF_DAYS`].
    pub fn issue(&self, fqdn: &str) -> Result<Issued, String> {
        self.issue_for(fqdn, LEAF_DAYS)
    }

    pub(crate) fn issue_for(&self, fqdn: &str, days: i64) -> Result<Issued, String> {
        let failed = |e: rcgen::Error| format!("cannot issue the certificate of `{fqdn}`: {e}");
        let signing = KeyPair::from_pem(&self.key).map_err(failed)?;
        let issuer = Issuer::new(ca_params(&self.common_name), signing);
        let key = KeyPair::generate().map_err(failed)?;
        let wildcard = format!("*.{fqdn}");
        let mut params = CertificateParams::new(vec![wildcard.clone(), fqdn.to_owned()]).map_err(failed)?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, wildcard);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, days)?;
        params.serial_number = Some(random_serial());
        let certificate = params.signed_by(&key, &issuer).map_err(failed)?;
        let pem = certificate.pem();
        let not_after =
            crate::certinfo::not_after(&pem).ok_or_else(|| format!("cannot read back the certificate of `{fqdn}`"))?;
        Ok(Issued { certificate: pem, key: key.serialize_pem(), not_after })
    }
}

/// Whether a certificate expiring at `not_after` is renewed now.
pub fn due(not_after: jiff::Timestamp, now: jiff::Timestamp) -> bool {
    not_after.duration_since(now) <= RENEW_WITHIN
}

/// The cluster's certificate as stored (`None` before the first).
pub async fn stored(store: &Store, cluster: &str) -> Result<Option<Issued>, databroker::storage::StorageError> {
    let Some(data) = store.live(Kind::ClusterCertificate, cluster).await? else { return Ok(None) };
    let field = |name: &str| data.get(name).and_then(Value::as_str).map(str::to_owned);
    let (Some(certificate), Some(key)) = (field("certificate"), field("key")) else { return Ok(None) };
    let Some(not_after) = crate::certinfo::not_after(&certificate) else { return Ok(None) };
    Ok(Some(Issued { certificate, key, not_after }))
}

/// The cluster's certificate: the stored one, or a new one when there is none, it is due for
/// renewal, or it does not name `fqdn`.
pub async fn for_cluster(state: &crate::state::State, cluster: &str, fqdn: &str) -> Result<Issued, String> {
    let failed = |e: databroker::storage::StorageError| format!("storage: {e}");
    let now = jiff::Timestamp::now();
    if let Some(issued) = stored(&state.store, cluster).await.map_err(failed)?
        && !due(issued.not_after, now)
        && crate::certinfo::dns_names(&issued.certificate).iter().any(|n| n == fqdn)
    {
        return Ok(issued);
    }
    let issued = state.ca.issue(fqdn)?;
    keep(&state.store, cluster, &issued).await.map_err(failed)?;
    tracing::info!(%cluster, %fqdn, not_after = %issued.not_after, "cluster certificate issued");
    Ok(issued)
}

pub(crate) async fn keep(
    store: &Store,
    cluster: &str,
    issued: &Issued,
) -> Result<(), databroker::storage::StorageError> {
    let data = json!({
        "clusterId": cluster, "certificate": issued.certificate, "key": issued.key,
        "notAfter": issued.not_after.to_string(),
    });
    store.put(Kind::ClusterCertificate, cluster, data.as_object().cloned().unwrap_or_default()).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]
    use super::*;
    use rustls::client::danger::ServerCertVerifier as _;

    fn memory() -> Store {
        Store::new(std::sync::Arc::new(databroker::storage::AnyStorage::Memory(
            databroker::storage::memory::MemoryStorage::new(),
        )))
    }

    #[tokio::test]
    async fn the_ca_is_kept_and_its_certificates_chain_to_it() {
        let store = memory();
        let ca = Ca::open(&store, "org").await.unwrap();
        let again = Ca::open(&store, "org").await.unwrap();
        assert_eq!(ca.certificate, again.certificate, "the stored CA is reused");
        let issued = again.issue("happy-otter-0001.example.test").unwrap();
        assert_eq!(
            crate::certinfo::dns_names(&issued.certificate),
            vec!["*.happy-otter-0001.example.test".to_owned(), "happy-otter-0001.example.test".to_owned()]
        );
        // It verifies against the CA, as a client trusting ca.pem sees it.
        let ca_der = proxy::tls::certificates_from_pem(ca.certificate.as_bytes()).unwrap().remove(0);
        let leaf_der = proxy::tls::certificates_from_pem(issued.certificate.as_bytes()).unwrap().remove(0);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_der).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .build()
        .unwrap();
        let name = rustls_pki_types::ServerName::try_from("app.happy-otter-0001.example.test").unwrap();
        let now = rustls_pki_types::UnixTime::now();
        verifier.verify_server_cert(&leaf_der, &[], &name, &[], now).unwrap();
        let days = issued.not_after.duration_since(jiff::Timestamp::now()).as_hours() / 24;
        assert!((LEAF_DAYS - 2..=LEAF_DAYS).contains(&days), "{days}");
        assert!(!due(issued.not_after, jiff::Timestamp::now()));
        let short = again.issue_for("x.example.test", 20).unwrap();
        assert!(due(short.not_after, jiff::Timestamp::now()), "20 days left: renewed");
    }

    #[tokio::test]
    async fn a_certificate_due_for_renewal_is_renewed_and_shipped_in_a_new_bundle() {
        let state = crate::state::State::open(crate::settings::Settings::default()).await.unwrap();
        let cluster = json!({"id": "c1", "fqdn": "c1.example.test", "changesetVersion": 3, "createdAt": "x"});
        state.store.put(Kind::Cluster, "c1", cluster.as_object().cloned().unwrap()).await.unwrap();
        let bundle = json!({"clusterId": "c1", "version": 3, "config": {"routes": []}, "certificates": []});
        state.store.put(Kind::Bundle, "c1", bundle.as_object().cloned().unwrap()).await.unwrap();
        let old = state.ca.issue_for("c1.example.test", 20).unwrap();
        keep(&state.store, "c1", &old).await.unwrap();

        state.renew_due().await;
        let renewed = stored(&state.store, "c1").await.unwrap().unwrap();
        assert_ne!(renewed.certificate, old.certificate);
        assert!(!due(renewed.not_after, jiff::Timestamp::now()));
        let bundle = state.store.live(Kind::Bundle, "c1").await.unwrap().unwrap();
        assert_eq!(bundle["version"], 4, "a new version, so that the replicas fetch it");
        assert_eq!(bundle["certificates"][0]["cert"], renewed.certificate.as_str());
        let cluster = state.store.live(Kind::Cluster, "c1").await.unwrap().unwrap();
        assert_eq!(cluster["changesetVersion"], 4);

        // Not due: nothing changes.
        state.renew_due().await;
        assert_eq!(state.store.live(Kind::Bundle, "c1").await.unwrap().unwrap()["version"], 4);
    }
}
