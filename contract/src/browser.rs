//! A browser as the harness needs one: its own cookie jar, redirects followed
//! (so a sign-in through the IdP completes with no form), over a connection
//! pool shared by every browser.
//!
//! One pooled hyper client serves all browsers, and each browser keeps only
//! its cookies: a reqwest client per browser costs about 144 KB and 2.5 times
//! the CPU per request (measured on this project's machines), which 10,000
//! simulated browsers cannot afford. Cookies follow RFC 6265, where a host's
//! cookies do not depend on the port, so a session cookie set by one loopback
//! instance is sent to the others, as a real browser does.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cookie_store::{CookieStore, RawCookie};
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, COOKIE, HeaderMap, HeaderValue, LOCATION, SET_COOKIE};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::reply::{
    CartItem, CartReply, ErrorReply, HomeReply, INSTANCE_HEADER, LogoutReply, ProfileReply,
    SESSION_VERSION_HEADER,
};

/// How many redirects one navigation follows (a sign-in takes three).
const MAX_REDIRECTS: usize = 10;

/// The connection pool every browser of a run shares (HTTP/1.1, keep-alive).
/// It speaks HTTPS to servers whose certificate chains to a CA it was given
/// (the mock IdP's own, for apps that sign in over HTTPS as MSAL requires)
/// and plain HTTP to the rest.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    origins: Arc<Mutex<Vec<(String, Url)>>>,
    witness: Option<Witness>,
}

/// Every secret the browsers of a client were handed: each cookie value
/// and each credential in a redirect's query (`code`, `state`, tokens).
/// A test hook: a test gives one to a run and then looks for every value
/// in what the run wrote, where none may appear.
#[derive(Clone, Default)]
pub struct Witness(Arc<Mutex<std::collections::HashSet<String>>>);

/// Query parameters that carry credentials in a sign-in's redirects.
const SECRET_PARAMETERS: [&str; 7] = [
    "code",
    "state",
    "nonce",
    "session_state",
    "id_token",
    "access_token",
    "refresh_token",
];

/// Shorter values are not worth looking for (they match by chance: `1`, `ok`).
const SHORTEST_SECRET: usize = 8;

/// Says how many values it holds, never the values.
impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Witness({} values)", self.0.lock().len())
    }
}

impl Witness {
    /// What the browsers were handed so far.
    pub fn values(&self) -> Vec<String> {
        self.0.lock().iter().cloned().collect()
    }

    fn saw(&self, value: &str) {
        if value.len() >= SHORTEST_SECRET {
            self.0.lock().insert(value.to_owned());
        }
    }
}

/// How many origins [`HttpClient::parse`] remembers (a run talks to its
/// instances and one IdP).
const MAX_ORIGINS: usize = 64;

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a CA file could not be trusted.
#[derive(Debug, thiserror::Error)]
#[error("trusting the CA in {path}: {reason}")]
pub struct TrustError {
    pub path: String,
    pub reason: String,
}

impl HttpClient {
    /// Plain HTTP, and HTTPS to no one (no CA is trusted).
    pub fn new() -> Self {
        Self::with_roots(rustls::RootCertStore::empty())
    }

    /// Also HTTPS to servers whose chain ends at a certificate in `ca_file` (PEM).
    pub fn trusting(ca_file: &std::path::Path) -> Result<Self, TrustError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let failed = |reason: String| TrustError {
            path: ca_file.display().to_string(),
            reason,
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| failed(e.to_string()))? {
            let cert = cert.map_err(|e| failed(e.to_string()))?;
            roots.add(cert).map_err(|e| failed(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(failed("no certificate in it".into()));
        }
        Ok(Self::with_roots(roots))
    }

    fn with_roots(roots: rustls::RootCertStore) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        // `https://` URLs must reach the TLS layer, which the HTTP
        // connector refuses by default.
        http.enforce_http(false);
        // The provider is named, not taken from the process default, so a
        // program that links two providers does not panic here.
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self {
            client,
            origins: Arc::default(),
            witness: None,
        }
    }

    /// This client, its browsers telling `witness` every secret they are handed.
    pub fn witnessed_by(mut self, witness: Witness) -> Self {
        self.witness = Some(witness);
        self
    }

    /// Parses `url` as [`Url::parse`] does, reusing the parse of its origin:
    /// parsing a whole URL (host, IDNA checks, serialization) was the
    /// driver's largest cost of its own per request, and a run talks to a
    /// handful of origins. Only plain `http://host:port/...` URLs take the
    /// shortcut; anything unusual is parsed in full.
    pub fn parse(&self, url: &str) -> Result<Url, BrowserError> {
        let Some((origin, rest)) = split_origin(url) else {
            return parse_url(url);
        };
        let known = self
            .origins
            .lock()
            .iter()
            .find(|(o, _)| o == origin)
            .map(|(_, parsed)| parsed.clone());
        let base = match known {
            Some(base) => base,
            None => {
                let base = parse_url(origin)?;
                let mut origins = self.origins.lock();
                if origins.len() < MAX_ORIGINS {
                    origins.push((origin.to_owned(), base.clone()));
                }
                base
            }
        };
        base.join(rest).map_err(|e| BrowserError::BadUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// `http://host:port` and the path-absolute rest (`/p?q`) of a URL whose
/// origin is plain (letters, digits, `.`, `-`, `:`); `None` otherwise.
fn split_origin(url: &str) -> Option<(&str, &str)> {
    let authority = url.strip_prefix("http://")?;
    let end = authority.find('/')?;
    let (host, rest) = authority.split_at(end);
    let plain = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
    // `//x` would be a network-path reference to another host.
    (plain && !rest.starts_with("//")).then(|| url.split_at("http://".len() + end))
}

/// Why a request got no answer. Whether the server acted on it matters to
/// the checker: a refused connection means it never arrived; a timeout or a
/// connection lost mid-request leaves it unknown.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error("{url}: not a URL this browser can fetch: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("{url}: cannot connect: {reason}")]
    Connect { url: String, reason: String },
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url}: the connection failed mid-request: {reason}")]
    Transport { url: String, reason: String },
    #[error("{url}: more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects { url: String },
}

impl BrowserError {
    /// The message without any URL's query or fragment, where a sign-in's
    /// redirects carry credentials (`code`, `state`): what may be kept.
    pub fn redacted(&self) -> String {
        let bare = |url: &str| match url.find(['?', '#']) {
            Some(end) => format!("{}?...", &url[..end]),
            None => url.to_owned(),
        };
        let mut copy = match self {
            BrowserError::BadUrl { url, reason } => BrowserError::BadUrl {
                url: bare(url),
                reason: reason.clone(),
            },
            BrowserError::Connect { url, reason } => BrowserError::Connect {
                url: bare(url),
                reason: reason.clone(),
            },
            BrowserError::Timeout { url, timeout } => BrowserError::Timeout {
                url: bare(url),
                timeout: *timeout,
            },
            BrowserError::Transport { url, reason } => BrowserError::Transport {
                url: bare(url),
                reason: reason.clone(),
            },
            BrowserError::TooManyRedirects { url } => {
                BrowserError::TooManyRedirects { url: bare(url) }
            }
        }
        .to_string();
        // A reason may quote a URL of its own (hyper names the one it tried).
        while let Some(start) = copy.find("code=").or_else(|| copy.find("state=")) {
            let end = copy[start..]
                .find(['&', ' ', '"', ')'])
                .map_or(copy.len(), |e| start + e);
            copy.replace_range(start..end, "...");
        }
        copy
    }

    /// Whether the request may have been carried out although no answer came.
    pub fn is_indeterminate(&self) -> bool {
        matches!(
            self,
            BrowserError::Timeout { .. } | BrowserError::Transport { .. }
        )
    }
}

/// A response as the browser saw it, after any redirects.
#[derive(Clone, Debug)]
pub struct Page {
    pub status: u16,
    /// Where the browser ended up.
    pub url: Url,
    /// `x-instance`, when the app sent it.
    pub instance: Option<String>,
    /// `x-session-version`, when the app sent it.
    pub session_version: Option<u64>,
    /// `Location` of a redirect that was not followed.
    pub location: Option<String>,
    pub body: Bytes,
}

impl Page {
    fn from_parts(url: Url, status: StatusCode, headers: &HeaderMap, body: Bytes) -> Self {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Self {
            status: status.as_u16(),
            instance: text(INSTANCE_HEADER),
            session_version: text(SESSION_VERSION_HEADER).and_then(|v| v.parse().ok()),
            location: text(LOCATION.as_str()),
            url,
            body,
        }
    }

    /// The body as JSON of type `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// Reads the body as the contract says: `T` on a 2xx, the error body otherwise.
    pub fn answer<T: DeserializeOwned>(self) -> Answer<T> {
        let outcome = if (200..300).contains(&self.status) {
            match self.json::<T>() {
                Ok(reply) => Outcome::Reply(reply),
                Err(e) => Outcome::Unreadable(format!("{e}: {}", snippet(&self.body))),
            }
        } else {
            match self.json::<ErrorReply>() {
                Ok(error) => Outcome::Error(error),
                Err(_) => Outcome::Unreadable(format!(
                    "status {} without an error body: {}",
                    self.status,
                    snippet(&self.body)
                )),
            }
        };
        Answer {
            status: self.status,
            instance: self.instance,
            session_version: self.session_version,
            outcome,
        }
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    match text.char_indices().nth(200) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.into_owned(),
    }
}

/// A contract call's answer: the headers the checker reads and the typed body.
#[derive(Clone, Debug)]
pub struct Answer<T> {
    pub status: u16,
    pub instance: Option<String>,
    pub session_version: Option<u64>,
    pub outcome: Outcome<T>,
}

/// What the body of an answer held.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome<T> {
    /// A 2xx with the reply the contract names.
    Reply(T),
    /// The contract's error body.
    Error(ErrorReply),
    /// Neither; why, with the start of the body.
    Unreadable(String),
}

impl<T> Answer<T> {
    pub fn reply(&self) -> Option<&T> {
        match &self.outcome {
            Outcome::Reply(reply) => Some(reply),
            _ => None,
        }
    }

    /// The reply, or what came instead (for tests: `answer.into_reply().expect(..)`).
    pub fn into_reply(self) -> Result<T, String> {
        match self.outcome {
            Outcome::Reply(reply) => Ok(reply),
            Outcome::Error(e) => Err(format!("{}: {} ({})", self.status, e.error, e.detail)),
            Outcome::Unreadable(why) => Err(format!("{}: {why}", self.status)),
        }
    }

    pub fn error(&self) -> Option<&ErrorReply> {
        match &self.outcome {
            Outcome::Error(error) => Some(error),
            _ => None,
        }
    }
}

/// One simulated browser. Clones share the cookie jar, as tabs of one browser
/// do, so a test can send concurrent requests of one session.
#[derive(Clone)]
pub struct Browser {
    http: HttpClient,
    jar: Arc<Mutex<Jar>>,
    timeout: Duration,
}

impl Browser {
    /// A browser with an empty jar on the shared pool; each request may take `timeout`.
    pub fn new(http: &HttpClient, timeout: Duration) -> Self {
        Self {
            http: http.clone(),
            jar: Arc::default(),
            timeout,
        }
    }

    /// The value of a cookie the jar would send to `url`.
    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        let url = Url::parse(url).ok()?;
        self.jar
            .lock()
            .store
            .get_request_values(&url)
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_owned())
    }

    /// Puts a cookie in the jar as if `url` had set it (`name=value; attributes`).
    pub fn set_cookie(&self, url: &str, cookie: &str) -> Result<(), BrowserError> {
        let url = parse_url(url)?;
        let raw = RawCookie::parse(cookie.to_owned()).map_err(|e| BrowserError::BadUrl {
            url: url.to_string(),
            reason: format!("cookie {cookie:?}: {e}"),
        })?;
        self.jar.lock().keep(std::iter::once(raw), &url);
        Ok(())
    }

    /// Forgets every cookie.
    pub fn clear_cookies(&self) {
        self.jar.lock().keep_none();
    }

    /// GET, following redirects.
    pub async fn get(&self, url: &str) -> Result<Page, BrowserError> {
        self.navigate(Method::GET, self.http.parse(url)?, None, true)
            .await
    }

    /// GET without following a redirect (the `Location` is on the page).
    pub async fn get_once(&self, url: &str) -> Result<Page, BrowserError> {
        self.navigate(Method::GET, self.http.parse(url)?, None, false)
            .await
    }

    /// POST a JSON body; a redirect in answer is not followed.
    pub async fn post_json<T: Serialize>(&self, url: &str, body: &T) -> Result<Page, BrowserError> {
        let url = self.http.parse(url)?;
        let bytes = serde_json::to_vec(body).map_err(|e| BrowserError::BadUrl {
            url: url.to_string(),
            reason: format!("body: {e}"),
        })?;
        self.navigate(Method::POST, url, Some(Bytes::from(bytes)), false)
            .await
    }

    /// Signs `user` in at the app at `base`: `/login?login_hint=USER`, through
    /// the IdP and the callback, to the home page.
    pub async fn sign_in(&self, base: &str, user: &str) -> Result<Answer<HomeReply>, BrowserError> {
        let mut url = self.http.parse(&join(base, "/login"))?;
        url.query_pairs_mut().append_pair("login_hint", user);
        Ok(self.navigate(Method::GET, url, None, true).await?.answer())
    }

    pub async fn home(&self, base: &str) -> Result<Answer<HomeReply>, BrowserError> {
        Ok(self.get(&join(base, "/")).await?.answer())
    }

    pub async fn profile(&self, base: &str) -> Result<Answer<ProfileReply>, BrowserError> {
        Ok(self.get(&join(base, "/profile")).await?.answer())
    }

    /// `GET /data/{resource}`; `resource` is one path segment.
    pub async fn data(
        &self,
        base: &str,
        resource: &str,
    ) -> Result<Answer<ProfileReply>, BrowserError> {
        let mut url = self.http.parse(&join(base, "/data/"))?;
        url.path_segments_mut()
            .map_err(|()| BrowserError::BadUrl {
                url: base.to_owned(),
                reason: "cannot be a base".into(),
            })?
            .pop_if_empty()
            .push(resource);
        Ok(self.navigate(Method::GET, url, None, true).await?.answer())
    }

    pub async fn add_to_cart(
        &self,
        base: &str,
        item: &str,
    ) -> Result<Answer<CartReply>, BrowserError> {
        let body = CartItem {
            item: item.to_owned(),
        };
        Ok(self.post_json(&join(base, "/cart"), &body).await?.answer())
    }

    pub async fn cart(&self, base: &str) -> Result<Answer<CartReply>, BrowserError> {
        Ok(self.get(&join(base, "/cart")).await?.answer())
    }

    /// `GET /logout`, following a redirect if the app answers with one.
    pub async fn logout(&self, base: &str) -> Result<Answer<LogoutReply>, BrowserError> {
        Ok(self.get(&join(base, "/logout")).await?.answer())
    }

    /// One request, then its redirects when `follow` (as GETs, RFC 9110 15.4).
    /// A GET whose connection fails mid-request is sent once more, as
    /// browsers do for idempotent requests on a kept-alive connection; a POST
    /// never is, so its outcome stays the server's to tell.
    async fn navigate(
        &self,
        mut method: Method,
        mut url: Url,
        mut body: Option<Bytes>,
        follow: bool,
    ) -> Result<Page, BrowserError> {
        for _ in 0..=MAX_REDIRECTS {
            let page = match self.exchange(&method, &url, body.clone()).await {
                // A kept-alive connection the server closed as the request
                // went out (a restarted instance): browsers send an idempotent
                // request again, once, on a new connection.
                Err(BrowserError::Transport { .. }) if method == Method::GET => {
                    self.exchange(&method, &url, None).await?
                }
                other => other?,
            };
            body = None;
            if let (Some(witness), Some(location)) = (&self.http.witness, &page.location)
                && let Ok(next) = url.join(location)
            {
                for (name, value) in next.query_pairs() {
                    if SECRET_PARAMETERS.contains(&name.as_ref()) {
                        witness.saw(&value);
                    }
                }
            }
            let next = match (&page.location, (300..400).contains(&page.status) && follow) {
                (Some(location), true) => url.join(location).map_err(|e| BrowserError::BadUrl {
                    url: location.clone(),
                    reason: e.to_string(),
                })?,
                _ => return Ok(page),
            };
            method = Method::GET;
            url = next;
        }
        Err(BrowserError::TooManyRedirects {
            url: url.to_string(),
        })
    }

    /// One request and its whole response, cookies sent and kept, within the timeout.
    async fn exchange(
        &self,
        method: &Method,
        url: &Url,
        body: Option<Bytes>,
    ) -> Result<Page, BrowserError> {
        let mut request = Request::builder().method(method.clone()).uri(url.as_str());
        let cookies = self.jar.lock().header_for(url);
        if !cookies.is_empty() {
            request = request.header(COOKIE, cookies);
        }
        if body.is_some() {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| BrowserError::BadUrl {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        let exchange = async {
            let response = self.http.client.request(request).await.map_err(|e| {
                let reason = error_chain(&e);
                if e.is_connect() {
                    BrowserError::Connect {
                        url: url.to_string(),
                        reason,
                    }
                } else {
                    BrowserError::Transport {
                        url: url.to_string(),
                        reason,
                    }
                }
            })?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| BrowserError::Transport {
                    url: url.to_string(),
                    reason: error_chain(&e),
                })?
                .to_bytes();
            Ok::<_, BrowserError>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| BrowserError::Timeout {
                url: url.to_string(),
                timeout: self.timeout,
            })??;
        self.keep_cookies(url, &parts.headers);
        Ok(Page::from_parts(
            url.clone(),
            parts.status,
            &parts.headers,
            body,
        ))
    }

    fn keep_cookies(&self, url: &Url, headers: &HeaderMap) {
        let set = headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| RawCookie::parse(v.to_owned()).ok())
            .inspect(|cookie| {
                if let Some(witness) = &self.http.witness {
                    witness.saw(cookie.value());
                }
            });
        let mut set = set.peekable();
        if set.peek().is_some() {
            self.jar.lock().keep(set, url);
        }
    }
}

/// A browser's cookies, and the `Cookie` headers last sent: matching every
/// cookie against a URL (domain, path, expiry, flags) was a tenth of the
/// driver's time per request, and a browser asks the same few URLs again
/// and again with its jar unchanged.
#[derive(Default)]
struct Jar {
    store: CookieStore,
    /// Bumped on every change, so a header made before it is not reused.
    version: u64,
    sent: Vec<SentHeader>,
}

/// A `Cookie` header as sent to one URL (without its query).
struct SentHeader {
    url: String,
    version: u64,
    /// Unix seconds before which no cookie in it has expired (`None`: none expires).
    good_before: Option<i64>,
    header: String,
}

/// How many URLs a jar remembers headers for.
const SENT_HEADERS: usize = 8;

impl Jar {
    fn keep(&mut self, cookies: impl Iterator<Item = RawCookie<'static>>, url: &Url) {
        self.store.store_response_cookies(cookies, url);
        self.version += 1;
    }

    fn keep_none(&mut self) {
        self.store.clear();
        self.version += 1;
    }

    /// The `Cookie` header for `url` (empty: no cookie), as
    /// `CookieStore::get_request_values` gives it, made again only when
    /// the jar changed or a cookie in it reached its expiry.
    fn header_for(&mut self, url: &Url) -> String {
        let key = &url[..url::Position::AfterPath];
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let fresh = |sent: &SentHeader| {
            sent.url == key
                && sent.version == self.version
                && sent.good_before.is_none_or(|before| now < before)
        };
        if let Some(sent) = self.sent.iter().find(|s| fresh(s)) {
            return sent.header.clone();
        }
        let mut header = String::new();
        let mut good_before: Option<i64> = None;
        for cookie in self.store.matches(url) {
            if let cookie_store::CookieExpiration::AtUtc(at) = &cookie.expires {
                let at = at.unix_timestamp();
                good_before = Some(good_before.map_or(at, |b| b.min(at)));
            }
            if !header.is_empty() {
                header.push_str("; ");
            }
            let (name, value) = cookie.name_value();
            header.push_str(name);
            header.push('=');
            header.push_str(value);
        }
        self.sent.retain(|s| s.url != key);
        if self.sent.len() >= SENT_HEADERS {
            self.sent.remove(0);
        }
        self.sent.push(SentHeader {
            url: key.to_owned(),
            version: self.version,
            good_before,
            header: header.clone(),
        });
        header
    }
}

fn parse_url(url: &str) -> Result<Url, BrowserError> {
    let parsed = Url::parse(url).map_err(|e| BrowserError::BadUrl {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    if parsed.scheme() != "http" {
        return Err(BrowserError::BadUrl {
            url: url.to_owned(),
            reason: "only http:// is spoken here".into(),
        });
    }
    Ok(parsed)
}

fn join(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

/// An error and its sources, one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text += &format!(": {cause}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_through_a_known_origin_gives_what_a_full_parse_gives() {
        let http = HttpClient::new();
        let urls = [
            "http://127.0.0.1:8080/healthz",
            "http://127.0.0.1:8080/healthz",
            "http://127.0.0.1:8080/data/a%20b?x=1&y=%C3%A9#frag",
            "http://127.0.0.1:8080/login?login_hint=alice",
            "http://127.0.0.1:8080/../up/./here",
            "http://localhost:9400/cart",
            "http://LocalHost:9400/Cart",
            "http://127.0.0.1:8080//other-host/x",
            "http://user@127.0.0.1:8080/x",
            "http://127.0.0.1:8080\\evil/x",
            "http://127.0.0.1:8080/",
        ];
        for url in urls {
            let expected = Url::parse(url).expect("valid");
            assert_eq!(http.parse(url).expect("parses"), expected, "{url}");
            // Twice: the second goes through the remembered origin.
            assert_eq!(http.parse(url).expect("parses"), expected, "{url}");
        }
        assert!(http.parse("ftp://127.0.0.1/x").is_err(), "only http://");
        assert!(http.parse("http://[::1/x").is_err());
    }

    #[test]
    fn a_redacted_error_keeps_no_query_where_a_sign_in_carries_its_code() {
        let error = BrowserError::Timeout {
            url: "http://127.0.0.1:8080/auth/callback?code=SECRETCODE1234&state=SECRETSTATE".into(),
            timeout: Duration::from_secs(10),
        };
        let kept = error.redacted();
        assert_eq!(
            kept,
            "http://127.0.0.1:8080/auth/callback?...: no answer within 10s"
        );
        let quoted = BrowserError::Transport {
            url: "http://h/x".into(),
            reason: "sending http://h/auth/callback?code=SECRETCODE1234&state=S2 failed".into(),
        };
        assert!(
            !quoted.redacted().contains("SECRET"),
            "{}",
            quoted.redacted()
        );
    }

    /// The header as `CookieStore` would make it afresh.
    fn afresh(jar: &Jar, url: &Url) -> String {
        jar.store
            .get_request_values(url)
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[test]
    fn a_remembered_cookie_header_follows_every_change_and_expiry() {
        let mut jar = Jar::default();
        let url = |u: &str| Url::parse(u).expect("url");
        let cookie = |c: &str| RawCookie::parse(c.to_owned()).expect("cookie");
        let (root, x) = (url("http://h:1/"), url("http://h:1/x/y"));
        assert_eq!(jar.header_for(&root), "");
        jar.keep(std::iter::once(cookie("a=1")), &root);
        assert_eq!(jar.header_for(&root), "a=1");
        assert_eq!(jar.header_for(&root), "a=1", "remembered");
        jar.keep(std::iter::once(cookie("b=2; Path=/x")), &x);
        for u in [
            &root,
            &x,
            &url("http://h:2/x/z?q=1"),
            &url("http://other:1/"),
        ] {
            assert_eq!(jar.header_for(u), afresh(&jar, u), "{u}");
            assert_eq!(jar.header_for(u), afresh(&jar, u), "{u}, again");
        }
        assert!(jar.header_for(&x).contains("b=2"));
        jar.keep(std::iter::once(cookie("a=3")), &root);
        assert_eq!(jar.header_for(&root), "a=3", "a changed cookie is sent");
        jar.keep(std::iter::once(cookie("soon=1; Max-Age=1")), &root);
        assert!(jar.header_for(&root).contains("soon=1"));
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(
            jar.header_for(&root),
            "a=3",
            "an expired cookie is not sent"
        );
        jar.keep_none();
        assert_eq!(jar.header_for(&x), "");
    }
}
