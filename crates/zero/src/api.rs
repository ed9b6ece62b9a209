//! The cluster API's JSON models (`pkg/zero/cluster/openapi.yaml` upstream), served under
//! `{cluster_api}` (by default `https://console.pomerium.app/cluster/v1`). Field names are
//! camelCase exactly as Zero's; byte fields are standard base64; `expiresInSeconds` is an integer
//! sent as a string.

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::time::Duration;

/// The default cluster API base URL.
pub const DEFAULT_CLUSTER_API_ENDPOINT: &str = "https://console.pomerium.app/cluster/v1";
/// The default Connect server URL.
pub const DEFAULT_CONNECT_SERVER_ENDPOINT: &str = "https://connect.pomerium.app";

/// Paths under the cluster API base (no leading base, leading slash).
pub mod paths {
    pub const EXCHANGE_TOKEN: &str = "/exchangeToken";
    pub const BOOTSTRAP: &str = "/bootstrap";
    pub const BUNDLES: &str = "/bundles";
    pub const REPORT_USAGE: &str = "/reportUsage";
    pub const CONFIG_IMPORT: &str = "/config/import";

    /// `/bundles/{id}/download`.
    pub fn bundle_download(id: &str) -> String {
        format!("/bundles/{id}/download")
    }

    /// `/bundles/{id}/status`.
    pub fn bundle_status(id: &str) -> String {
        format!("/bundles/{id}/status")
    }
}

/// The response header whose value a client logs with an error.
pub const RESPONSE_ID_HEADER: &str = "x-response-id";

/// `POST /exchangeToken` (no Authorization): the cluster token is a refresh token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeTokenRequest {
    pub refresh_token: String,
}

/// The answer to [`ExchangeTokenRequest`]: a bearer token for the other calls and its lifetime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeTokenResponse {
    pub id_token: String,
    #[serde(with = "seconds_as_string")]
    pub expires_in_seconds: u64,
}

impl ExchangeTokenResponse {
    pub fn expires_in(&self) -> Duration {
        Duration::from_secs(self.expires_in_seconds)
    }
}

/// `GET /bootstrap`: what a replica needs to start (also the content of `bootstrap.dat`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapConfig {
    pub cluster_id: String,
    pub organization_id: String,
    /// The databroker's shared secret (32 bytes).
    #[serde(with = "base64_bytes")]
    pub shared_secret: Vec<u8>,
    #[serde(with = "base64_bytes")]
    pub pseudonymization_key: Vec<u8>,
    /// None: in-memory storage; `postgres://...`: PostgreSQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub databroker_storage_connection: Option<String>,
}

impl std::fmt::Debug for BootstrapConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets and the connection string (it may hold a password) stay out of logs.
        f.debug_struct("BootstrapConfig")
            .field("cluster_id", &self.cluster_id)
            .field("organization_id", &self.organization_id)
            .field("databroker_storage_connection", &self.databroker_storage_connection.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

/// One bundle of resources (the `config` bundle carries the cluster's configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    pub id: String,
}

/// `GET /bundles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetBundlesResponse {
    pub bundles: Vec<Bundle>,
}

/// `GET /bundles/{id}/download`: a signed URL to GET without Authorization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownloadBundleResponse {
    pub url: String,
    #[serde(with = "seconds_as_string")]
    pub expires_in_seconds: u64,
    /// Response headers of the download whose values the cluster keeps as bundle metadata.
    #[serde(default)]
    pub capture_metadata_headers: Vec<String>,
}

/// `POST /bundles/{id}/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BundleStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<BundleStatusSuccess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<BundleStatusFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BundleStatusSuccess {
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleStatusFailure {
    pub message: String,
    pub source: BundleFailureSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BundleFailureSource {
    DatabrokerError,
    DownloadError,
    InvalidBundle,
    IoError,
    UnknownError,
}

/// `POST /reportUsage` (answers 204).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportUsageRequest {
    pub users: Vec<ReportUsageUser>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportUsageUser {
    /// RFC 3339.
    pub last_signed_in_at: String,
    pub pseudonymous_email: String,
    pub pseudonymous_id: String,
}

/// `PUT /config/import`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ImportResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnings: Option<Vec<String>>,
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: String,
}

mod seconds_as_string {
    use super::*;

    pub fn serialize<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        // A string as Zero sends it; a bare number is accepted too.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            S(String),
            N(u64),
        }
        match Either::deserialize(d)? {
            Either::N(n) => Ok(n),
            Either::S(s) => s
                .trim()
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("expiresInSeconds `{s}` is not a non-negative integer"))),
        }
    }
}

mod base64_bytes {
    use super::*;

    pub fn serialize<S: Serializer>(value: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("not standard base64: {e}")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;
    use serde_json::json;

    #[test]
    fn exchange_token_uses_zero_names_and_a_string_lifetime() {
        let request = serde_json::to_value(ExchangeTokenRequest { refresh_token: "t".into() }).unwrap();
        assert_eq!(request, json!({"refreshToken": "t"}));
        let response: ExchangeTokenResponse =
            serde_json::from_value(json!({"idToken": "id", "expiresInSeconds": "3600"})).unwrap();
        assert_eq!(response.expires_in(), Duration::from_secs(3600));
        assert_eq!(serde_json::to_value(&response).unwrap(), json!({"idToken": "id", "expiresInSeconds": "3600"}));
        assert!(
            serde_json::from_value::<ExchangeTokenResponse>(json!({"idToken": "id", "expiresInSeconds": "-1"}))
                .is_err()
        );
        assert!(
            serde_json::from_value::<ExchangeTokenResponse>(json!({"idToken": "id", "expiresInSeconds": "x"})).is_err()
        );
    }

    #[test]
    fn bootstrap_config_bytes_are_standard_base64() {
        let value = json!({
            "clusterId": "c", "organizationId": "o",
            "sharedSecret": "AAEC/w==", "pseudonymizationKey": "",
            "databrokerStorageConnection": "postgres://db"
        });
        let config: BootstrapConfig = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(config.shared_secret, [0, 1, 2, 255]);
        assert_eq!(serde_json::to_value(&config).unwrap(), value);
        let debug = format!("{config:?}");
        assert!(!debug.contains("postgres://db") && !debug.contains("255"), "{debug}");
        let memory: BootstrapConfig = serde_json::from_value(
            json!({"clusterId": "c", "organizationId": "o", "sharedSecret": "", "pseudonymizationKey": ""}),
        )
        .unwrap();
        assert_eq!(memory.databroker_storage_connection, None);
        assert!(
            serde_json::from_value::<BootstrapConfig>(json!({
                "clusterId": "c", "organizationId": "o", "sharedSecret": "not base64!", "pseudonymizationKey": ""
            }))
            .is_err()
        );
    }

    #[test]
    fn bundles_download_usage_and_errors() {
        let bundles: GetBundlesResponse = serde_json::from_value(json!({"bundles": [{"id": "config"}]})).unwrap();
        assert_eq!(bundles.bundles, [Bundle { id: "config".into() }]);
        let download = DownloadBundleResponse {
            url: "https://x/b?sig=1".into(),
            expires_in_seconds: 60,
            capture_metadata_headers: vec!["x-goog-meta-a".into()],
        };
        assert_eq!(
            serde_json::to_value(&download).unwrap(),
            json!({"url": "https://x/b?sig=1", "expiresInSeconds": "60", "captureMetadataHeaders": ["x-goog-meta-a"]})
        );
        let usage = ReportUsageRequest {
            users: vec![ReportUsageUser {
                last_signed_in_at: "2026-01-01T00:00:00Z".into(),
                pseudonymous_email: "e".into(),
                pseudonymous_id: "i".into(),
            }],
        };
        assert_eq!(
            serde_json::to_value(&usage).unwrap(),
            json!({"users": [{"lastSignedInAt": "2026-01-01T00:00:00Z", "pseudonymousEmail": "e", "pseudonymousId": "i"}]})
        );
        let failure = BundleStatus {
            success: None,
            failure: Some(BundleStatusFailure { message: "m".into(), source: BundleFailureSource::InvalidBundle }),
        };
        assert_eq!(
            serde_json::to_value(&failure).unwrap(),
            json!({"failure": {"message": "m", "source": "invalid_bundle"}})
        );
        let error: ErrorResponse = serde_json::from_str(r#"{"error":"bad token"}"#).unwrap();
        assert_eq!(error.error, "bad token");
        assert_eq!(paths::bundle_download("config"), "/bundles/config/download");
    }
}
