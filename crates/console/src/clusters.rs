//! `/organizations/{org}/clusters`: create (a starter domain and the cluster token), get, list,
//! rename, delete, rotate the token, settings, replicas, health.

use crate::api::{Reply, Request, existing, public, storage_failed};
use crate::auth;
use crate::state::{Event, State};
use crate::store::{Kind, new_id, now};
use http::{Method, StatusCode};
use serde_json::{Map, Value, json};

type Result<T> = std::result::Result<T, Reply>;

/// Replicas not seen for longer than this are not shown.
pub const REPLICA_HIDDEN_AFTER: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

pub async fn handle(state: &State, request: &Request<'_>, rest: &[&str]) -> Result<Reply> {
    let method = request.method.clone();
    match (method, rest) {
        (Method::GET, []) => {
            let clusters = state.store.list(Kind::Cluster).await.map_err(storage_failed)?;
            Ok(Reply::ok(Value::Array(clusters.into_iter().map(|c| Value::Object(public(c))).collect())))
        }
        (Method::POST, []) => create(state, request).await,
        (Method::GET, [id]) => Ok(Reply::ok(Value::Object(public(existing(state, Kind::Cluster, id).await?)))),
        (Method::PUT, [id]) => {
            let mut cluster = existing(state, Kind::Cluster, id).await?;
            let body = request.object()?;
            if let Some(name) = body.get("name").and_then(Value::as_str) {
                if name.trim().is_empty() {
                    return Err(Reply::error(StatusCode::BAD_REQUEST, "`name` may not be empty"));
                }
                cluster.insert("name".to_owned(), json!(name));
            }
            match body.get("manualOverrideIpAddress") {
                Some(Value::String(ip)) if ip.parse::<std::net::IpAddr>().is_err() => {
                    return Err(Reply::error(
                        StatusCode::BAD_REQUEST,
                        "`manualOverrideIpAddress` must be an IP address",
                    ));
                }
                Some(Value::String(ip)) => {
                    cluster.insert("manualOverrideIpAddress".to_owned(), json!(ip));
                }
                Some(Value::Null) => {
                    cluster.remove("manualOverrideIpAddress");
                }
                _ => {}
            }
            cluster.insert("updatedAt".to_owned(), json!(now()));
            state.store.put(Kind::Cluster, id, cluster.clone()).await.map_err(storage_failed)?;
            Ok(Reply::ok(Value::Object(public(cluster))))
        }
        (Method::DELETE, [id]) => {
            let cluster = existing(state, Kind::Cluster, id).await?;
            if let Some(token) = cluster.get("tokenId").and_then(Value::as_str) {
                state.store.remove(Kind::ClusterToken, token).await.map_err(storage_failed)?;
            }
            // `State::follow` ends the cluster's streams, on every console.
            state.store.delete(Kind::Cluster, id).await.map_err(storage_failed)?;
            Ok(Reply::no_content())
        }
        (Method::POST, [id, "token"]) => {
            let mut cluster = existing(state, Kind::Cluster, id).await?;
            let token = rotate(state, id, &mut cluster).await?;
            Ok(Reply::ok(json!({ "refreshToken": token })))
        }
        (Method::GET, [id, "settings"]) => {
            existing(state, Kind::Cluster, id).await?;
            Ok(Reply::ok(Value::Object(settings(state, id).await?)))
        }
        (Method::PUT, [id, "settings"]) => {
            existing(state, Kind::Cluster, id).await?;
            let body = request.object()?;
            put_settings(state, id, body).await
        }
        (Method::PATCH, [id, "settings"]) => {
            existing(state, Kind::Cluster, id).await?;
            let current = settings(state, id).await?;
            let patched = crate::patch::apply(&Value::Object(current), &request.json()?)
                .map_err(|e| Reply::error(StatusCode::BAD_REQUEST, format!("cannot apply the JSON Patch: {e}")))?;
            let Value::Object(body) = patched else {
                return Err(Reply::error(StatusCode::BAD_REQUEST, "the patched settings are not an object"));
            };
            put_settings(state, id, body).await
        }
        (Method::GET, [id, "replicas"]) => {
            existing(state, Kind::Cluster, id).await?;
            let now = jiff::Timestamp::now();
            let day_ago = now.checked_sub(REPLICA_HIDDEN_AFTER).unwrap_or(now);
            let start = time_parameter(request, "startTime")?.unwrap_or(day_ago);
            let end = time_parameter(request, "endTime")?.unwrap_or(now);
            if start > end {
                return Err(Reply::error(StatusCode::BAD_REQUEST, "`startTime` is after `endTime`"));
            }
            Ok(Reply::ok(Value::Array(replicas_between(state, id, start, end).await?)))
        }
        (Method::POST, [id, "ping"]) => {
            existing(state, Kind::Cluster, id).await?;
            Ok(Reply::ok(ping(state, id).await?))
        }
        (Method::GET, [id, "health"]) => {
            existing(state, Kind::Cluster, id).await?;
            Ok(Reply::ok(Value::Array(health(state, id).await?)))
        }
        (Method::POST, [id, "health"]) => {
            existing(state, Kind::Cluster, id).await?;
            state.publish(Event::RunHealthChecks { cluster: (*id).to_owned() });
            Ok(Reply::no_content())
        }
        _ => Err(Reply::error(
            StatusCode::NOT_FOUND,
            format!("no API endpoint {} /api/v0/…/clusters/{}", request.method, rest.join("/")),
        )),
    }
}

async fn create(state: &State, request: &Request<'_>) -> Result<Reply> {
    let body = request.object()?;
    let name = body.get("name").and_then(Value::as_str).unwrap_or_default().trim().to_owned();
    if name.is_empty() {
        return Err(Reply::error(StatusCode::BAD_REQUEST, "a cluster needs a `name`"));
    }
    let domain = match body.get("domain").and_then(Value::as_str).map(str::trim) {
        None | Some("") => crate::names::generate(),
        Some(domain) => domain.to_ascii_lowercase(),
    };
    let label_ok = !domain.is_empty()
        && domain.len() <= 63
        && domain.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !domain.starts_with('-')
        && !domain.ends_with('-');
    if !label_ok {
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            format!("`domain` `{domain}` is not one DNS label; use GET /generateSubdomainName for a starter name"),
        ));
    }
    let fqdn = format!("{domain}.{}", state.settings.base_domain);
    let taken = state.store.list(Kind::Cluster).await.map_err(storage_failed)?;
    if taken.iter().any(|c| c.get("fqdn").and_then(Value::as_str) == Some(fqdn.as_str())) {
        return Err(Reply::error(StatusCode::CONFLICT, format!("`{fqdn}` is already a cluster's domain")));
    }
    let id = new_id();
    let at = now();
    let mut cluster = json!({
        "id": id, "name": name, "namespaceId": id, "domain": domain, "fqdn": fqdn,
        "hasFailingHealthChecks": false, "componentVersions": {}, "flavor": "standard",
        "createdAt": at, "updatedAt": at, "tokenGeneration": 0, "changesetVersion": 0,
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    if let Some(ip) = body.get("manualOverrideIpAddress").and_then(Value::as_str) {
        if ip.parse::<std::net::IpAddr>().is_err() {
            return Err(Reply::error(StatusCode::BAD_REQUEST, "`manualOverrideIpAddress` must be an IP address"));
        }
        cluster.insert("manualOverrideIpAddress".to_owned(), json!(ip));
    }
    let token = issue_token(state, &id, &mut cluster).await?;
    state.store.put(Kind::Settings, &id, default_settings()).await.map_err(storage_failed)?;
    state.store.put(Kind::Cluster, &id, cluster.clone()).await.map_err(storage_failed)?;
    tracing::info!(cluster = %id, %fqdn, "cluster made");
    let mut answer = public(cluster);
    answer.insert("refreshToken".to_owned(), json!(token));
    Ok(Reply::json(StatusCode::CREATED, Value::Object(answer)))
}

/// Rotates a cluster's token: the new token; the old one and its id tokens are refused from
/// now on, and the cluster's Connect streams end.
pub async fn rotate(state: &State, id: &str, cluster: &mut Map<String, Value>) -> Result<String> {
    let token = issue_token(state, id, cluster).await?;
    cluster.insert("updatedAt".to_owned(), json!(now()));
    state.store.put(Kind::Cluster, id, cluster.clone()).await.map_err(storage_failed)?;
    // `State::follow` ends the streams of the old token, on every console.
    tracing::info!(cluster = %id, "cluster token rotated; the old token is refused from now on");
    Ok(token)
}

fn default_settings() -> Map<String, Value> {
    json!({ "autoApplyChangesets": false }).as_object().cloned().unwrap_or_default()
}

/// A new cluster token: the old one (if any) is removed, the generation advances (so id tokens
/// issued for the old one stop working too).
async fn issue_token(state: &State, id: &str, cluster: &mut Map<String, Value>) -> Result<String> {
    if let Some(old) = cluster.get("tokenId").and_then(Value::as_str) {
        state.store.remove(Kind::ClusterToken, old).await.map_err(storage_failed)?;
    }
    let generation = cluster.get("tokenGeneration").and_then(Value::as_u64).unwrap_or(0) + 1;
    let token = auth::new_refresh_token().map_err(|e| Reply::error(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let token_id = auth::token_id(&token);
    let record = json!({ "clusterId": id, "generation": generation }).as_object().cloned().unwrap_or_default();
    state.store.put(Kind::ClusterToken, &token_id, record).await.map_err(storage_failed)?;
    cluster.insert("tokenGeneration".to_owned(), json!(generation));
    cluster.insert("tokenId".to_owned(), json!(token_id));
    Ok(token)
}

async fn settings(state: &State, id: &str) -> Result<Map<String, Value>> {
    Ok(state.store.live(Kind::Settings, id).await.map_err(storage_failed)?.unwrap_or_else(default_settings))
}

async fn put_settings(state: &State, id: &str, mut body: Map<String, Value>) -> Result<Reply> {
    body.remove("id");
    if body.get("autoApplyChangesets").is_some_and(|value| !value.is_boolean()) {
        return Err(Reply::error(StatusCode::BAD_REQUEST, "`autoApplyChangesets` must be true or false"));
    }
    if body.get("databrokerStorageConnection").is_some_and(|value| !value.is_string() && !value.is_null()) {
        return Err(Reply::error(StatusCode::BAD_REQUEST, "`databrokerStorageConnection` must be a string"));
    }
    let candidate = (Kind::Settings, body.clone());
    let (_, result) = crate::api::namespace_config(state, id, Some(&candidate)).await?;
    if let Err(errors) = result {
        let diagnostics: Vec<Value> = errors.iter().map(crate::check::Diagnostic::to_json).collect();
        let first = errors.first().map(|d| d.message.clone()).unwrap_or_default();
        return Err(Reply::json(
            StatusCode::BAD_REQUEST,
            json!({ "error": format!("the settings do not load: {first}"), "diagnostics": diagnostics }),
        ));
    }
    store_settings(state, id, body.clone()).await?;
    Ok(Reply::ok(Value::Object(body)))
}

/// Stores checked settings: the bootstrap's change announced, the change in the namespace's
/// changeset.
pub(crate) async fn store_settings(state: &State, id: &str, body: Map<String, Value>) -> Result<()> {
    let old = settings(state, id).await?;
    let bootstrap_changed = old.get("databrokerStorageConnection") != body.get("databrokerStorageConnection");
    state.store.put(Kind::Settings, id, body).await.map_err(storage_failed)?;
    if bootstrap_changed {
        state.publish(Event::BootstrapUpdated { cluster: id.to_owned() });
    }
    crate::api::changed(state, id).await
}

/// A query parameter that is an RFC 3339 time, if given.
fn time_parameter(request: &Request<'_>, name: &str) -> Result<Option<jiff::Timestamp>> {
    match request.query(name) {
        None => Ok(None),
        Some(value) if value.is_empty() => Ok(None),
        Some(value) => value.parse::<jiff::Timestamp>().map(Some).map_err(|e| {
            Reply::error(
                StatusCode::BAD_REQUEST,
                format!("`{name}` `{value}` is not an RFC 3339 time such as 2024-05-01T12:00:00Z: {e}"),
            )
        }),
    }
}

fn timestamp_of(record: &Map<String, Value>, field: &str) -> Option<jiff::Timestamp> {
    record.get(field).and_then(Value::as_str).and_then(|t| t.parse::<jiff::Timestamp>().ok())
}

/// Replicas seen within the last 24 h.
pub async fn replicas(state: &State, cluster: &str) -> Result<Vec<Value>> {
    let now = jiff::Timestamp::now();
    replicas_between(state, cluster, now.checked_sub(REPLICA_HIDDEN_AFTER).unwrap_or(now), now).await
}

/// Replicas active at some time between `start` and `end` (made before `end`, seen after
/// `start`). Replicas gone for longer than [`REPLICA_HIDDEN_AFTER`] and their health reports are
/// deleted on the way: the storage keeps what it shows.
pub async fn replicas_between(
    state: &State,
    cluster: &str,
    start: jiff::Timestamp,
    end: jiff::Timestamp,
) -> Result<Vec<Value>> {
    let list = live_replicas(state, cluster).await?;
    Ok(list
        .into_iter()
        .filter(|r| {
            timestamp_of(r, "updatedAt").is_some_and(|t| t >= start)
                && timestamp_of(r, "createdAt").is_none_or(|t| t <= end)
        })
        .map(|r| {
            json!({
                "id": r.get("id"), "hostname": r.get("hostname"), "version": r.get("version"),
                "createdAt": r.get("createdAt"), "updatedAt": r.get("updatedAt"),
            })
        })
        .collect())
}

/// The cluster's replica records, after deleting those (and their health reports) not seen for
/// longer than [`REPLICA_HIDDEN_AFTER`].
async fn live_replicas(state: &State, cluster: &str) -> Result<Vec<Map<String, Value>>> {
    let now = jiff::Timestamp::now();
    let mut kept = Vec::new();
    let mut gone = Vec::new();
    for replica in state.store.list_where(Kind::Replica, "clusterId", cluster).await.map_err(storage_failed)? {
        let stale = timestamp_of(&replica, "updatedAt").is_none_or(|t| now.duration_since(t) > REPLICA_HIDDEN_AFTER);
        if stale {
            gone.push(replica);
        } else {
            kept.push(replica);
        }
    }
    if !gone.is_empty() {
        let active: Vec<&str> = kept.iter().filter_map(|r| r.get("hostname").and_then(Value::as_str)).collect();
        let reports = state.store.list_where(Kind::HealthReport, "clusterId", cluster).await.map_err(storage_failed)?;
        for replica in &gone {
            let hostname = replica.get("hostname").and_then(Value::as_str).unwrap_or_default();
            if active.contains(&hostname) {
                continue;
            }
            for report in reports.iter().filter(|r| r.get("hostname").and_then(Value::as_str) == Some(hostname)) {
                let check = report.get("check").and_then(Value::as_str).unwrap_or_default();
                let id = crate::cluster_api::report_id(cluster, hostname, check);
                state.store.remove(Kind::HealthReport, &id).await.map_err(storage_failed)?;
            }
            let id = replica.get("id").and_then(Value::as_str).unwrap_or_default();
            state.store.remove(Kind::Replica, id).await.map_err(storage_failed)?;
            tracing::info!(%cluster, %hostname, "replica gone for more than 24 hours: forgotten");
        }
    }
    Ok(kept)
}

/// A replica is connected when its Connect stream is open and was refreshed within this (two
/// heartbeats: a console that stopped without closing its streams does not keep them "open").
const CONNECTED_WITHIN: jiff::SignedDuration = jiff::SignedDuration::from_secs(150);

/// `POST .../ping`: whether the cluster is connected to the control plane (a replica with an
/// open Connect stream), as Zero's `{success, errorCode?, errorMessage?}`.
async fn ping(state: &State, cluster: &str) -> Result<Value> {
    let now = jiff::Timestamp::now();
    let replicas = live_replicas(state, cluster).await?;
    let connected = replicas.iter().filter(|r| {
        r.get("connected") == Some(&json!(true))
            && timestamp_of(r, "updatedAt").is_some_and(|t| now.duration_since(t) <= CONNECTED_WITHIN)
    });
    let connected: Vec<&str> = connected.filter_map(|r| r.get("hostname").and_then(Value::as_str)).collect();
    Ok(if !connected.is_empty() {
        json!({"success": true})
    } else if replicas.is_empty() {
        json!({
            "success": false, "errorCode": "err_cluster_ping_no_identity",
            "errorMessage": "no replica of this cluster has connected to the control plane: start `pomerium` with POMERIUM_ZERO_TOKEN set to the cluster's token (and CLUSTER_API_ENDPOINT, CONNECT_SERVER_ENDPOINT pointing at this console)",
        })
    } else {
        json!({
            "success": false, "errorCode": "err_cluster_ping_connection_error",
            "errorMessage": "no replica of this cluster is connected to the control plane now (none has its Connect stream open); check that the replicas run and can reach CONNECT_SERVER_ENDPOINT",
        })
    })
}

/// How soon before expiry a certificate is alerted about.
pub const CERTIFICATE_WARNING: jiff::SignedDuration = jiff::SignedDuration::from_hours(10 * 24);

const HELP: &str = "https://www.pomerium.com/docs/internals/clusters";

fn alert(id: &str, status: &str, description: String, hostname: Option<&str>) -> Value {
    let mut alert =
        json!({"id": id, "status": status, "description": description, "helpUrl": HELP, "updatedAt": now()});
    if let (Some(hostname), Some(map)) = (hostname, alert.as_object_mut()) {
        map.insert("hostname".to_owned(), json!(hostname));
    }
    alert
}

/// `1.2.10` is newer than `1.2.9`: dotted numbers compared as numbers.
fn older(version: &str, than: &str) -> bool {
    let parse = |v: &str| -> Vec<u64> {
        v.trim_start_matches('v').split(['.', '-', '+']).map_while(|p| p.parse().ok()).collect()
    };
    parse(version) < parse(than)
}

/// The cluster's status alerts (`GET .../health`), each with its cause and what to do:
/// `persistent_backend`, `cluster_active_replicas`, `cluster_version_current`, `config_build`
/// (the cluster could not apply its configuration), `certificates_current`, and the health checks
/// each active replica reported (`storage.backend`, `zero.connect`, `routes.reachable`, ...).
pub async fn health(state: &State, cluster: &str) -> Result<Vec<Value>> {
    let settings = settings(state, cluster).await?;
    let mut alerts = Vec::new();
    let persistent = settings.get("databrokerStorageConnection").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    alerts.push(if persistent {
        alert("persistent_backend", "success", "The cluster keeps its state in PostgreSQL.".to_owned(), None)
    } else {
        alert(
            "persistent_backend",
            "warning",
            "The cluster uses in-memory storage: sessions are lost when a replica restarts, and replicas do not share them. Set `databrokerStorageConnection` in the cluster's settings to a PostgreSQL connection string, then apply.".to_owned(),
            None,
        )
    });
    let replicas = replicas(state, cluster).await?;
    alerts.push(if replicas.is_empty() {
        alert(
            "cluster_active_replicas",
            "warning",
            "No replica of this cluster has connected in the last 24 hours. Start `pomerium` with POMERIUM_ZERO_TOKEN set to the cluster's token (and CLUSTER_API_ENDPOINT, CONNECT_SERVER_ENDPOINT pointing at this console).".to_owned(),
            None,
        )
    } else {
        alert(
            "cluster_active_replicas",
            "success",
            format!("{} replica(s) connected in the last 24 hours.", replicas.len()),
            None,
        )
    });
    let current = env!("CARGO_PKG_VERSION");
    for replica in &replicas {
        let version = replica.get("version").and_then(Value::as_str).unwrap_or_default();
        if older(version, current) {
            alerts.push(alert(
                "cluster_version_current",
                "warning",
                format!(
                    "This replica runs version {version}, older than the console's {current}. Upgrade it to the latest release."
                ),
                replica.get("hostname").and_then(Value::as_str),
            ));
        }
    }
    let status = state.store.live(Kind::BundleStatus, &format!("{cluster}/config")).await.map_err(storage_failed)?;
    match status.as_ref().and_then(|s| s.get("failure")).filter(|f| !f.is_null()) {
        Some(failure) => alerts.push(alert(
            "config_build",
            "error",
            format!(
                "The cluster could not apply its configuration: {}. Fix the route or setting it names, then apply again; the cluster keeps serving its last good configuration.",
                failure.get("message").and_then(Value::as_str).unwrap_or("unknown error")
            ),
            None,
        )),
        None if status.is_some() => {
            alerts.push(alert("config_build", "success", "The cluster applied its configuration.".to_owned(), None));
        }
        None => {}
    }
    let active: Vec<&str> = replicas.iter().filter_map(|r| r.get("hostname").and_then(Value::as_str)).collect();
    let mut reports = state.store.list_where(Kind::HealthReport, "clusterId", cluster).await.map_err(storage_failed)?;
    reports.retain(|r| r.get("hostname").and_then(Value::as_str).is_some_and(|h| active.contains(&h)));
    reports.sort_by_key(|r| (text(r, "check").to_owned(), text(r, "hostname").to_owned()));
    // `cluster_config_current`: each replica's configuration against the cluster's latest apply.
    let latest = state
        .store
        .live(Kind::Cluster, cluster)
        .await
        .map_err(storage_failed)?
        .and_then(|c| c.get("changesetVersion").and_then(Value::as_i64))
        .unwrap_or(0);
    for report in reports.iter().filter(|r| text(r, "check") == "config.databroker.build") {
        let Some(applied) = report.get("changesetVersion").and_then(Value::as_i64) else { continue };
        let hostname = report.get("hostname").and_then(Value::as_str);
        alerts.push(if applied < latest {
            alert(
                "cluster_config_current",
                "warning",
                format!(
                    "This replica serves changeset {applied}, not the latest ({latest}). Check its connection to the control plane (`zero.connect`) and its storage (`storage.backend`); it catches up when it syncs again."
                ),
                hostname,
            )
        } else {
            alert("cluster_config_current", "success", format!("This replica serves the latest changeset ({latest})."), hostname)
        });
    }
    for report in &reports {
        let check = text(report, "check");
        let (status, description) = if text(report, "status") == "error" {
            ("error", reported_error(check, text(report, "message")))
        } else {
            ("success", format!("The health check `{check}` passes."))
        };
        let mut alert = alert(check, status, description, report.get("hostname").and_then(Value::as_str));
        if let (Some(map), Some(at)) = (alert.as_object_mut(), report.get("updatedAt")) {
            map.insert("updatedAt".to_owned(), at.clone());
        }
        alerts.push(alert);
    }
    alerts.extend(certificate_alerts(state, cluster).await?);
    Ok(alerts)
}

/// `certificates_current` (each certificate the cluster serves: its key pairs' and its wildcard
/// certificate from the console's CA) and `certificates_match_hostnames` (each https route's
/// host has a certificate).
async fn certificate_alerts(state: &State, cluster: &str) -> Result<Vec<Value>> {
    let mut alerts = Vec::new();
    let now = jiff::Timestamp::now();
    // (what it is, what to do, PEM, serves: it has its key)
    let mut certificates: Vec<(String, &str, String, bool)> = Vec::new();
    for pair in state.store.list_where(Kind::KeyPair, "namespaceId", cluster).await.map_err(storage_failed)? {
        let pem = pair.get("certificate").and_then(Value::as_str).unwrap_or_default().to_owned();
        let name = pair.get("name").and_then(Value::as_str).unwrap_or("a key pair").to_owned();
        certificates.push((
            format!("The certificate of `{name}`"),
            "Upload a renewed certificate to the key pair.",
            pem,
            pair.get("hasKey") == Some(&json!(true)),
        ));
    }
    let fqdn = state
        .store
        .live(Kind::Cluster, cluster)
        .await
        .map_err(storage_failed)?
        .and_then(|c| c.get("fqdn").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    let mut names: Vec<String> = Vec::new();
    match crate::ca::stored(&state.store, cluster).await.map_err(storage_failed)? {
        Some(issued) => certificates.push((
            format!("The cluster's certificate `*.{fqdn}` (from this console's CA)"),
            "The console renews it 30 days before it expires; check the console's log for why it could not, then apply a changeset to issue a new one.",
            issued.certificate,
            true,
        )),
        // Issued at the first apply, before any route is served.
        None if !fqdn.is_empty() => names.extend([format!("*.{fqdn}"), fqdn.clone()]),
        None => {}
    }
    for (what, remedy, pem, serves) in &certificates {
        if *serves {
            names.extend(crate::certinfo::dns_names(pem));
        }
        let Some(not_after) = crate::certinfo::not_after(pem) else { continue };
        let left = not_after.duration_since(now);
        if left <= CERTIFICATE_WARNING {
            let (status, when) = if left.is_negative() {
                ("error", "expired".to_owned())
            } else {
                ("warning", format!("expires within {} days", left.as_hours() / 24 + 1))
            };
            alerts.push(alert("certificates_current", status, format!("{what} {when} ({not_after}). {remedy}"), None));
        }
    }
    if !certificates.is_empty() && !alerts.iter().any(|a| a["id"] == "certificates_current") {
        alerts.push(alert(
            "certificates_current",
            "success",
            format!("The cluster's {} certificate(s) are valid for more than 10 days.", certificates.len()),
            None,
        ));
    }
    let routes = state.store.list_where(Kind::Route, "namespaceId", cluster).await.map_err(storage_failed)?;
    let mut uncovered: Vec<String> = Vec::new();
    let mut https = 0;
    for route in &routes {
        let Some(from) = route.get("from").and_then(Value::as_str).and_then(|f| url::Url::parse(f).ok()) else {
            continue;
        };
        if from.scheme() != "https" {
            continue;
        }
        https += 1;
        let Some(host) = from.host_str() else { continue };
        if !crate::certinfo::covers(&names, host) && !uncovered.iter().any(|h| h == host) {
            uncovered.push(host.to_owned());
        }
    }
    if !uncovered.is_empty() {
        alerts.push(alert(
            "certificates_match_hostnames",
            "warning",
            format!(
                "No certificate of the cluster matches the route host(s) {}. Put the routes under the cluster's domain `{fqdn}` (its wildcard certificate covers `*.{fqdn}`), or add a key pair with a certificate and key for these hosts, then apply.",
                uncovered.join(", ")
            ),
            None,
        ));
    } else if https > 0 {
        alerts.push(alert(
            "certificates_match_hostnames",
            "success",
            "Every https route host has a matching certificate.".to_owned(),
            None,
        ));
    }
    Ok(alerts)
}

fn text<'a>(map: &'a serde_json::Map<String, Value>, key: &str) -> &'a str {
    map.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A failing health check a replica reported: its cause and the steps to resolve it, as seed 000
/// words them.
fn reported_error(check: &str, message: &str) -> String {
    let bind = message.contains("bind") && (message.contains("ermission denied") || message.contains("EACCES"));
    match check {
        _ if bind => format!(
            "The replica cannot listen on its address: {message}. Ports below 1024 need privileges: grant the binary the CAP_NET_BIND_SERVICE capability (`setcap cap_net_bind_service=+ep $(which pomerium)`, or `cap_add: [NET_BIND_SERVICE]` in a container), or listen on a port above 1024."
        ),
        "storage.backend" => format!(
            "The replica cannot reach its storage backend: {message}. Check that PostgreSQL is running and reachable from the replica, and that `databrokerStorageConnection` in the cluster's settings is right."
        ),
        "zero.bootstrap-config.save" => format!(
            "The replica cannot write its bootstrap cache file: {message}. Point BOOTSTRAP_CONFIG_FILE (or BOOTSTRAP_CONFIG_WRITEBACK_URI) at a writable location, such as a persistent volume, so that it can start while the control plane is unreachable."
        ),
        "zero.connect" => format!(
            "The replica cannot stay connected to the control plane: {message}. Allow outbound connections from the replica to CONNECT_SERVER_ENDPOINT and CLUSTER_API_ENDPOINT (HTTP/2, long-lived); the replica keeps serving its last configuration meanwhile."
        ),
        "routes.reachable" => format!(
            "{message}. Create or fix a DNS record for each of these route hosts so that it points at the cluster's address (or its load balancer); until then, users cannot reach them."
        ),
        "config.databroker.build" => format!(
            "The replica rejected its configuration: {message}. Fix the route or setting it names, then apply again; the replica keeps serving its last good configuration."
        ),
        c if c.starts_with("xds.") => format!(
            "The replica rejected its configuration or a route: {message}. Fix the route or setting it names, then apply again."
        ),
        _ => format!("The health check `{check}` fails: {message}."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_numbers() {
        assert!(older("0.9.0", "0.10.0"));
        assert!(older("v1.2.9", "1.2.10"));
        assert!(!older("1.2.10", "1.2.9"));
        assert!(!older("0.0.0", "0.0.0"));
    }

    #[tokio::test]
    async fn replicas_gone_for_a_day_are_deleted_with_their_health_reports() {
        let state = State::open(crate::settings::Settings::default()).await.unwrap();
        let now = jiff::Timestamp::now();
        let long_ago = now.checked_sub(jiff::SignedDuration::from_hours(25)).unwrap().to_string();
        for (hostname, at) in [("gone", long_ago.as_str()), ("here", &now.to_string())] {
            let id = format!("r-{hostname}");
            let replica = json!({"id": id, "clusterId": "c1", "hostname": hostname, "createdAt": at, "updatedAt": at});
            state.store.put(Kind::Replica, &id, replica.as_object().cloned().unwrap()).await.unwrap();
            let report = json!({"clusterId": "c1", "hostname": hostname, "check": "storage.backend", "status": "ok", "updatedAt": at});
            let report_id = crate::cluster_api::report_id("c1", hostname, "storage.backend");
            state.store.put(Kind::HealthReport, &report_id, report.as_object().cloned().unwrap()).await.unwrap();
        }
        let shown = replicas(&state, "c1").await.unwrap();
        assert_eq!(shown.len(), 1);
        assert_eq!(shown.first().and_then(|r| r.get("hostname")), Some(&json!("here")));
        let missing = crate::store::Found::Missing;
        assert_eq!(state.store.get(Kind::Replica, "r-gone").await.unwrap(), missing, "deleted, not only hidden");
        let gone_report = crate::cluster_api::report_id("c1", "gone", "storage.backend");
        assert_eq!(state.store.get(Kind::HealthReport, &gone_report).await.unwrap(), missing);
        let kept_report = crate::cluster_api::report_id("c1", "here", "storage.backend");
        assert!(state.store.live(Kind::HealthReport, &kept_report).await.unwrap().is_some());
    }
}
