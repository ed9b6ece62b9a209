//! The sign-in flow's real parts: panva's `oidc-provider` (Node, pinned in `tests/idp`) run as
//! a child process, and a small HTTP client that behaves as a browser does for redirects and
//! cookies (a jar per host, `Set-Cookie` honoured, `Max-Age=0` deletes), talking TLS to pomerium
//! for `*.test.localhost` and plain HTTP to the provider.

use super::{PROMPTLY, Pomerium, Reply, tls_connect};
use bytes::Bytes;
use http::header::{COOKIE, HOST, LOCATION, SET_COOKIE};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use url::Url;

/// The provider's test client.
pub const CLIENT_ID: &str = "pomerium";
pub const CLIENT_SECRET: &str = "pomerium-test-secret";

/// `oidc-provider` on 127.0.0.1; killed when dropped.
pub struct OidcProvider {
    child: Child,
    pub issuer: String,
    events: Arc<Mutex<Vec<String>>>,
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn idp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/idp")
}

impl OidcProvider {
    /// Starts the provider with the client `pomerium` allowed to return to `redirect_uris`.
    pub fn start(redirect_uris: &[&str], post_logout: &[&str], access_token_ttl: Option<u64>) -> OidcProvider {
        OidcProvider::start_with_env(redirect_uris, post_logout, access_token_ttl, &[])
    }

    /// [`OidcProvider::start`], with more environment for `provider.mjs` (its failure injection).
    pub fn start_with_env(
        redirect_uris: &[&str],
        post_logout: &[&str],
        access_token_ttl: Option<u64>,
        env: &[(&str, &str)],
    ) -> OidcProvider {
        let dir = idp_dir();
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "tests/idp/node_modules is missing: run `npm ci --prefix tests/idp` (scripts/test does)"
        );
        let mut command = Command::new("node");
        command
            .arg(dir.join("provider.mjs"))
            .current_dir(&dir)
            .env("REDIRECT_URIS", redirect_uris.join(","))
            .env("POST_LOGOUT_REDIRECT_URIS", post_logout.join(","))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(ttl) = access_token_ttl {
            command.env("ACCESS_TOKEN_TTL", ttl.to_string());
        }
        command.envs(env.iter().copied());
        let mut child = command.spawn().expect("node starts (Node.js must be installed)");
        let stdout = child.stdout.take().unwrap();
        let (issuer_tx, issuer_rx) = std::sync::mpsc::channel();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
                    if let Some(issuer) = value["issuer"].as_str() {
                        let _ = issuer_tx.send(issuer.to_owned());
                    }
                    if let Some(event) = value["event"].as_str() {
                        sink.lock().unwrap().push(event.to_owned());
                    }
                }
            }
        });
        let issuer = issuer_rx.recv_timeout(PROMPTLY).expect("oidc-provider prints its issuer");
        OidcProvider { child, issuer, events }
    }

    /// How many times an event (`revoked`, `grant.success`) has happened.
    pub fn count(&self, event: &str) -> usize {
        self.events.lock().unwrap().iter().filter(|e| *e == event).count()
    }

    /// The `idp_*` options for pomerium.
    pub fn config(&self) -> String {
        format!(
            "idp_provider: oidc\nidp_provider_url: {}\nidp_client_id: {CLIENT_ID}\nidp_client_secret: {CLIENT_SECRET}\n\
             idp_scopes: [openid, email, profile, groups, offline_access]\n",
            self.issuer
        )
    }
}

/// A cookie-keeping, redirect-following client.
pub struct Browser {
    /// Where `*.test.localhost` is served.
    pub pomerium: SocketAddr,
    ca: rustls_pki_types::CertificateDer<'static>,
    /// host → name → value.
    pub jar: BTreeMap<String, BTreeMap<String, String>>,
    /// Every URL visited, in order.
    pub visited: Vec<String>,
    /// Accept any server certificate (a server on its self-signed one).
    pub insecure: bool,
    /// Hosts served elsewhere than `pomerium` (split services: the authenticate service apart).
    pub hosts: BTreeMap<String, SocketAddr>,
}

/// One answer and the URL it came from.
pub struct Page {
    pub url: Url,
    pub reply: Reply,
}

impl Browser {
    pub fn new(pomerium: &Pomerium) -> Browser {
        Browser {
            pomerium: pomerium.address,
            ca: pomerium.ca.clone(),
            jar: BTreeMap::new(),
            visited: Vec::new(),
            insecure: false,
            hosts: BTreeMap::new(),
        }
    }

    /// Points the browser at another replica (same CA): the cookies stay.
    pub fn switch_to(&mut self, pomerium: &Pomerium) {
        self.pomerium = pomerium.address;
    }

    pub fn cookie(&self, host: &str, name: &str) -> Option<String> {
        self.jar.get(host).and_then(|c| c.get(name)).cloned()
    }

    pub fn set_cookie(&mut self, host: &str, name: &str, value: &str) {
        self.jar.entry(host.to_owned()).or_default().insert(name.to_owned(), value.to_owned());
    }

    /// One request, no redirect followed; cookies sent and stored.
    pub async fn send(
        &mut self,
        method: Method,
        url: &Url,
        form: Option<&[(&str, &str)]>,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.visited.push(url.to_string());
        let host = url.host_str().unwrap().to_owned();
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        };
        let path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let mut builder = Request::builder().method(method).uri(path).header(HOST, authority);
        let cookies: Vec<String> = self.cookies_for(&host);
        if !cookies.is_empty() {
            builder = builder.header(COOKIE, cookies.join("; "));
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let body = match form {
            Some(fields) => {
                builder = builder.header("content-type", "application/x-www-form-urlencoded");
                Bytes::from(url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish())
            }
            None => Bytes::new(),
        };
        let request = builder.body(Full::new(body)).unwrap();
        let reply = if url.scheme() == "https" {
            let config = if self.insecure {
                super::accept_any_server(&[b"http/1.1"])
            } else {
                super::client_tls(&self.ca, &[b"http/1.1"], None)
            };
            let address = self.hosts.get(&host).copied().unwrap_or(self.pomerium);
            let stream = tls_connect(address, config, &host).await;
            send_on(TokioIo::new(stream), request).await
        } else {
            let address = format!("{host}:{}", url.port_or_known_default().unwrap());
            let stream = tokio::net::TcpStream::connect(address).await.unwrap();
            send_on(TokioIo::new(stream), request).await
        };
        self.store_cookies(&host, &reply);
        reply
    }

    fn cookies_for(&self, host: &str) -> Vec<String> {
        self.jar.get(host).map(|c| c.iter().map(|(k, v)| format!("{k}={v}")).collect()).unwrap_or_default()
    }

    fn store_cookies(&mut self, host: &str, reply: &Reply) {
        for value in reply.headers.get_all(SET_COOKIE) {
            let text = value.to_str().unwrap();
            let mut parts = text.split(';');
            let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else { continue };
            let attributes: Vec<String> = parts.map(|p| p.trim().to_ascii_lowercase()).collect();
            let expired = attributes.iter().any(|a| a == "max-age=0" || a.starts_with("max-age=-"));
            let domain =
                attributes.iter().find_map(|a| a.strip_prefix("domain=")).map(|d| d.trim_start_matches('.').to_owned());
            let target = domain.unwrap_or_else(|| host.to_owned());
            let hosts: Vec<String> = if target == host {
                vec![host.to_owned()]
            } else {
                // A domain cookie: kept for the domain and every host seen under it.
                let mut hosts: Vec<String> =
                    self.jar.keys().filter(|h| h.ends_with(&format!(".{target}"))).cloned().collect();
                hosts.push(target.clone());
                hosts.push(host.to_owned());
                hosts
            };
            for h in hosts {
                let cookies = self.jar.entry(h).or_default();
                if expired || value.is_empty() {
                    cookies.remove(name.trim());
                } else {
                    cookies.insert(name.trim().to_owned(), value.to_owned());
                }
            }
        }
    }

    /// GET `url`, following redirects (at most 20); the last page.
    pub async fn get(&mut self, url: &str) -> Page {
        self.follow(Method::GET, Url::parse(url).unwrap(), None).await
    }

    /// A request, then its redirects.
    pub async fn follow(&mut self, method: Method, url: Url, form: Option<&[(&str, &str)]>) -> Page {
        let mut url = url;
        let mut reply = self.send(method, &url, form, &[("accept", "text/html")]).await;
        for _ in 0..20 {
            if !reply.status.is_redirection() || reply.status == StatusCode::NOT_MODIFIED {
                return Page { url, reply };
            }
            let location = reply.headers.get(LOCATION).expect("a redirect has a Location").to_str().unwrap().to_owned();
            url = url.join(&location).unwrap();
            reply = self.send(Method::GET, &url, None, &[("accept", "text/html")]).await;
        }
        panic!("too many redirects: {:?}", self.visited);
    }

    /// Follows the redirects from `url` to the provider's login page (and says so when they end
    /// elsewhere).
    pub async fn open_provider_login(&mut self, url: &str) -> Page {
        let page = self.get(url).await;
        assert!(
            page.url.as_str().contains("/interaction/"),
            "not at the provider's login: {} {:?}",
            page.url,
            self.visited
        );
        page
    }

    /// Signs in at `oidc-provider`'s development login form as `login`, from its login page,
    /// consenting if asked; the page the flow ends on.
    pub async fn sign_in_at_provider(&mut self, page: Page, login: &str) -> Page {
        let mut page = page;
        for _ in 0..3 {
            let text = page.reply.text();
            if text.contains("name=\"login\"") {
                let action = form_action(&text);
                let url = page.url.join(&action).unwrap();
                page = self
                    .follow(Method::POST, url, Some(&[("prompt", "login"), ("login", login), ("password", "x")]))
                    .await;
            } else if text.contains("value=\"consent\"") {
                let action = form_action(&text);
                let url = page.url.join(&action).unwrap();
                page = self.follow(Method::POST, url, Some(&[("prompt", "consent")])).await;
            } else {
                return page;
            }
        }
        page
    }
}

impl Browser {
    /// Submits the first form of `page` whose HTML contains `needle`, with its inputs' values.
    pub async fn submit_first_form_containing(&mut self, page: Page, needle: &str) -> Page {
        let (url, fields) = first_form_containing(&page, needle);
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.follow(Method::POST, url, Some(&pairs)).await
    }
}

/// Where the first form of `page` whose HTML contains `needle` posts, and its inputs' values.
pub fn first_form_containing(page: &Page, needle: &str) -> (Url, Vec<(String, String)>) {
    {
        let html = page.reply.text();
        let form = html
            .split("<form")
            .skip(1)
            .map(|chunk| chunk.split("</form>").next().unwrap())
            .find(|form| form.contains(needle))
            .unwrap_or_else(|| panic!("no form with {needle}: {html}"));
        let action = attribute(form, "action").unwrap_or_default();
        let mut fields = Vec::new();
        for input in form.split("<input").skip(1).chain(form.split("<button").skip(1)) {
            let tag = input.split('>').next().unwrap();
            if let (Some(name), Some(value)) = (attribute(tag, "name"), attribute(tag, "value")) {
                fields.push((name, value));
            }
        }
        (page.url.join(&action).unwrap(), fields)
    }
}

/// An attribute's value in a tag's text (double or single quotes), HTML entities decoded.
fn attribute(tag: &str, name: &str) -> Option<String> {
    for quote in ['"', '\''] {
        let marker = format!(" {name}={quote}");
        if let Some(start) = tag.find(&marker) {
            let rest = &tag[start + marker.len()..];
            let value = &rest[..rest.find(quote)?];
            return Some(
                value
                    .replace("&quot;", "\"")
                    .replace("&#39;", "'")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&"),
            );
        }
    }
    None
}

fn form_action(html: &str) -> String {
    let start = html.find("action=\"").expect("a form") + "action=\"".len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].replace("&amp;", "&")
}

async fn send_on<S>(io: TokioIo<S>, request: Request<Full<Bytes>>) -> Reply
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(connection);
    let response =
        tokio::time::timeout(PROMPTLY, sender.send_request(request)).await.expect("an answer in time").unwrap();
    Reply::read(response).await
}

/// The provider's other client (`tests/idp/provider.mjs`): a relying party that is not pomerium.
pub const OTHER_CLIENT_ID: &str = "someone-else";
pub const OTHER_CLIENT_SECRET: &str = "someone-else-secret";

impl OidcProvider {
    /// [`OidcProvider::code_flow`] for the client `someone-else`, with the scopes `openid email`.
    pub async fn code_flow_for_other_client(
        &self,
        browser: &mut Browser,
        redirect_uri: &str,
        login: &str,
    ) -> serde_json::Value {
        self.code_flow(browser, (OTHER_CLIENT_ID, OTHER_CLIENT_SECRET), redirect_uri, login, "openid email").await
    }

    /// A plain authorization-code flow for `client` (id, secret), straight at the provider (plain
    /// HTTP, with `browser`'s jar): its `/auth` with `scope`, the development login as `login` and
    /// the consent, then its `/token` with the client's secret, as a command-line tool holding
    /// its own tokens would. The redirect to `redirect_uri` (one of `REDIRECT_URIS`) is not
    /// followed: the code is taken from its `Location`. The token endpoint's JSON answer.
    pub async fn code_flow(
        &self,
        browser: &mut Browser,
        (client_id, client_secret): (&str, &str),
        redirect_uri: &str,
        login: &str,
        scope: &str,
    ) -> serde_json::Value {
        let mut url = Url::parse(&format!("{}/auth", self.issuer)).unwrap();
        url.query_pairs_mut()
            .append_pair("client_id", client_id)
            .append_pair("response_type", "code")
            .append_pair("scope", scope)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", "other-client-state")
            .append_pair("nonce", "other-client-nonce");
        let accept = [("accept", "text/html")];
        let mut reply = browser.send(Method::GET, &url, None, &accept).await;
        let mut code = None;
        for _ in 0..20 {
            if reply.status.is_redirection() {
                let location = reply.header("location").to_owned();
                if location.starts_with(redirect_uri) {
                    let back = Url::parse(&location).unwrap();
                    code = back.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned());
                    assert!(code.is_some(), "no code in the redirect: {location}");
                    break;
                }
                url = url.join(&location).unwrap();
                reply = browser.send(Method::GET, &url, None, &accept).await;
                continue;
            }
            let text = reply.text();
            let fields: &[(&str, &str)] = if text.contains("name=\"login\"") {
                &[("prompt", "login"), ("login", login), ("password", "x")]
            } else if text.contains("value=\"consent\"") {
                &[("prompt", "consent")]
            } else {
                panic!("an unexpected page at the provider ({}): {text}", reply.status);
            };
            url = url.join(&form_action(&text)).unwrap();
            reply = browser.send(Method::POST, &url, Some(fields), &accept).await;
        }
        let code = code.unwrap_or_else(|| panic!("the flow did not come back: {:?}", browser.visited));
        let basic =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{client_id}:{client_secret}"));
        let token_url = Url::parse(&format!("{}/token", self.issuer)).unwrap();
        let form = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", redirect_uri)];
        let reply =
            browser.send(Method::POST, &token_url, Some(&form), &[("authorization", &format!("Basic {basic}"))]).await;
        assert_eq!(reply.status, StatusCode::OK, "the token endpoint: {}", reply.text());
        reply.json()
    }
}
