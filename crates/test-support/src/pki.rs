//! A test certificate authority and the leaf certificates it issues.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A test certificate authority.
pub struct Pki {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate issued by a [`Pki`], in DER and PEM.
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Leaf {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }

    /// The chain and the key, as rustls and the proxy's configurations take them.
    pub fn pair(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (self.chain.clone(), self.key())
    }
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        Self { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    pub fn ca(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate for `names` (server or client; the first is also the common name).
    pub fn issue(&self, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        if let Some(first) = names.first() {
            params.distinguished_name.push(rcgen::DnType::CommonName, *first);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}
