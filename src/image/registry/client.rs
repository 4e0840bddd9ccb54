//! The HTTP side of the registry client: choosing HTTPS or (for insecure registries only)
//! plain HTTP, sending requests with the right credentials, answering `401` challenges with
//! basic credentials or a bearer token for the request's scopes, refreshing tokens as they
//! expire, and turning the registry's error bodies into [`RegistryError`]s.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

use ureq::http::{self, Method, Response, StatusCode};
use ureq::Body;

use super::auth::{self, CachedToken, Challenge, Credentials, TokenResponse};
use super::errors;
use super::reference::{is_loopback, Reference};
use super::tls::RegistryTls;
use super::{ClientConfig, RegistryError};

/// A request body that can be sent again (after a `401`, or a retry).
#[derive(Debug, Clone, Copy)]
pub(crate) enum ReqBody<'a> {
    /// No body.
    Empty,
    /// Bytes in memory (manifests).
    Bytes(&'a [u8]),
    /// A range of a file (a blob or a chunk of one), read with `pread` so the file is shared.
    File {
        /// the file
        file: &'a File,
        /// first byte
        offset: u64,
        /// byte count
        len: u64,
    },
}

/// One request to a registry.
#[derive(Debug, Clone)]
pub(crate) struct Req<'a> {
    pub method: Method,
    /// Path and query below the registry's base URL (`/v2/...`), or an absolute URL from a
    /// `Location` header.
    pub target: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: ReqBody<'a>,
}

impl<'a> Req<'a> {
    pub(crate) fn new(method: Method, target: impl Into<String>) -> Self {
        Req {
            method,
            target: target.into(),
            headers: Vec::new(),
            body: ReqBody::Empty,
        }
    }

    pub(crate) fn header(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.headers.push((k, v.into()));
        self
    }

    pub(crate) fn body(mut self, body: ReqBody<'a>) -> Self {
        self.body = body;
        self
    }
}

/// A `pread` reader over part of a file: several uploads can share one open blob.
struct RangeReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let left = self.end.saturating_sub(self.pos);
        if left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "blob file shorter than its size",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// The scheme and authentication a registry host turned out to want.
#[derive(Debug, Default)]
struct HostState {
    /// `https` or `http`, once decided.
    scheme: Option<&'static str>,
    /// The bearer challenge (realm, service) once seen.
    bearer: Option<Challenge>,
    /// The registry asked for basic credentials.
    basic: bool,
}

/// A registry client. Cheap to share between threads: connections are pooled per host.
pub struct Client {
    pub(crate) config: ClientConfig,
    /// One agent (connection pool and TLS trust) per registry: trust differs per registry
    /// (certs.d), and insecure registries' HTTPS is not verified (as dockerd's
    /// insecure-registries, before it falls back to HTTP).
    agents: Mutex<BTreeMap<String, ureq::Agent>>,
    hosts: Mutex<BTreeMap<String, HostState>>,
    /// Tokens by (host, sorted scopes).
    tokens: Mutex<BTreeMap<(String, Vec<String>), CachedToken>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("insecure", &self.config.insecure_registries)
            .finish_non_exhaustive()
    }
}

fn agent(config: &ClientConfig, tls: ureq::tls::TlsConfig) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .user_agent(config.user_agent.clone())
        .max_idle_connections_per_host(16)
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        // A stalled body read is treated as a cut connection and resumed.
        .timeout_recv_body(None)
        .timeout_per_read(Some(config.read_timeout))
        .tls_config(tls)
        // Blob GETs redirect to storage; credentials must not follow to another host.
        .max_redirects(8)
        .build()
        .new_agent()
}

/// What a token request is for: `repository:<name>:<actions>` scopes.
#[must_use]
pub fn repository_scope(repository: &str, actions: &str) -> String {
    format!("repository:{repository}:{actions}")
}

impl Client {
    /// A client with `config`.
    #[must_use]
    pub fn new(config: ClientConfig) -> Self {
        Client {
            agents: Mutex::new(BTreeMap::new()),
            config,
            hosts: Mutex::new(BTreeMap::new()),
            tokens: Mutex::new(BTreeMap::new()),
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Whether plain HTTP (and unverified HTTPS) may be used with `registry`.
    #[must_use]
    pub fn is_insecure(&self, registry: &str) -> bool {
        (self.config.loopback_insecure && is_loopback(registry))
            || self
                .config
                .insecure_registries
                .iter()
                .any(|r| r == registry)
    }

    fn lock_hosts(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, HostState>> {
        self.hosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_tokens(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<(String, Vec<String>), CachedToken>> {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn agent_for(&self, registry: &str) -> Result<ureq::Agent, RegistryError> {
        let mut agents = self
            .agents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(a) = agents.get(registry) {
            return Ok(a.clone());
        }
        let settings = match &self.config.certs_dir {
            Some(dir) => RegistryTls::load(dir, registry),
            None => Ok(RegistryTls::default()),
        };
        let tls = settings
            .and_then(|t| t.config(!self.is_insecure(registry)))
            .map_err(|source| RegistryError::Tls {
                registry: registry.to_owned(),
                source,
            })?;
        let a = agent(&self.config, tls);
        agents.insert(registry.to_owned(), a.clone());
        Ok(a)
    }

    /// `https://host` or, for an insecure registry that does not speak TLS, `http://host`.
    pub(crate) fn base_url(&self, r: &Reference) -> Result<String, RegistryError> {
        let host = r.api_host();
        if let Some(s) = self.lock_hosts().get(host).and_then(|h| h.scheme) {
            return Ok(format!("{s}://{host}"));
        }
        let scheme = if self.is_insecure(&r.registry) {
            // Probe HTTPS once; a TLS or connection failure means a plain HTTP registry.
            let probe = self
                .agent_for(&r.registry)?
                .get(format!("https://{host}/v2/"))
                .config()
                .timeout_global(Some(Duration::from_secs(5)))
                .build()
                .call();
            match probe {
                Ok(_) => "https",
                Err(e) => {
                    tracing::debug!(%host, error = %e, "no TLS on insecure registry, using http");
                    "http"
                }
            }
        } else {
            "https"
        };
        self.lock_hosts().entry(host.to_owned()).or_default().scheme = Some(scheme);
        Ok(format!("{scheme}://{host}"))
    }

    /// Checks the credentials configured for `registry` as `docker login` does: `GET /v2/`,
    /// answering the registry's basic or bearer challenge (a token without repository scope).
    /// A registry that asks for no authentication accepts any credentials, as with dockerd.
    ///
    /// # Errors
    /// [`RegistryError::WrongCredentials`], [`RegistryError::AuthRequired`] or
    /// [`RegistryError::Unauthorized`] when the credentials are refused; transport failures;
    /// [`RegistryError::Refused`] for any other non-success answer.
    pub fn login(&self, registry: &str) -> Result<(), RegistryError> {
        let r = Reference {
            registry: registry.to_owned(),
            repository: String::new(),
            tag: None,
            digest: None,
        };
        let resp = self.send(&r, &[], &Req::new(Method::GET, "/v2/"))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.refused(&r, "log in", resp))
        }
    }

    /// Sends `req` for repository operations needing `scopes`, authenticating as the registry
    /// asks. Returns any HTTP answer but `401`; a `401` that survives fresh credentials becomes
    /// an error.
    ///
    /// # Errors
    /// [`RegistryError::Unreachable`] on transport failures; the auth errors.
    pub(crate) fn send(
        &self,
        r: &Reference,
        scopes: &[String],
        req: &Req<'_>,
    ) -> Result<Response<Body>, RegistryError> {
        let host = r.api_host().to_owned();
        let base = self.base_url(r)?;
        let url = if req.target.starts_with("http://") || req.target.starts_with("https://") {
            req.target.clone()
        } else {
            format!("{base}{}", req.target)
        };
        let mut scopes: Vec<String> = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        let mut fresh_token = false;
        let mut sent_basic = false;
        for _ in 0..4 {
            let authorization = self.authorization(r, &scopes, &mut fresh_token)?;
            sent_basic |= authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Basic "));
            let resp = self.run(r, &url, req, authorization.as_deref())?;
            let status = resp.status();
            let challenge = resp
                .headers()
                .get_all(http::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|v| {
                    auth::parse_challenges(v).ok().and_then(|cs| {
                        cs.into_iter()
                            .find(|c| c.scheme == "bearer" || c.scheme == "basic")
                    })
                });
            let insufficient = challenge
                .as_ref()
                .is_some_and(|c| c.param("error") == Some("insufficient_scope"));
            if status != StatusCode::UNAUTHORIZED
                && !(status == StatusCode::FORBIDDEN && insufficient)
            {
                return Ok(resp);
            }
            let Some(ch) = challenge else {
                return Err(self.refused(r, "authenticate", resp));
            };
            match ch.scheme.as_str() {
                "basic" => {
                    if sent_basic {
                        return Err(RegistryError::WrongCredentials {
                            registry: r.registry.clone(),
                        });
                    }
                    if self.credentials(r)?.is_none() {
                        return Err(RegistryError::AuthRequired {
                            registry: r.registry.clone(),
                        });
                    }
                    self.lock_hosts().entry(host.clone()).or_default().basic = true;
                }
                _ => {
                    if fresh_token {
                        // A token fetched for exactly these scopes was refused.
                        return Err(if insufficient {
                            RegistryError::InsufficientScope {
                                registry: r.registry.clone(),
                                scope: ch.param("scope").unwrap_or_default().to_owned(),
                                authenticated: self.credentials(r)?.is_some(),
                            }
                        } else {
                            RegistryError::Unauthorized {
                                registry: r.registry.clone(),
                                detail: self.refusal_text(resp),
                            }
                        });
                    }
                    if let Some(s) = ch.param("scope") {
                        // The registry names the scope it wants (insufficient_scope, or a
                        // first request without a token): ask for it as well as ours.
                        for one in s.split(' ') {
                            if !one.is_empty() && !scopes.iter().any(|x| x == one) {
                                scopes.push(one.to_owned());
                            }
                        }
                        scopes.sort();
                    }
                    self.lock_tokens().retain(|(h, _), _| h != &host);
                    self.lock_hosts().entry(host.clone()).or_default().bearer = Some(ch);
                }
            }
        }
        Err(RegistryError::Unauthorized {
            registry: r.registry.clone(),
            detail: "the registry kept asking for authentication".into(),
        })
    }

    fn run(
        &self,
        r: &Reference,
        url: &str,
        req: &Req<'_>,
        authorization: Option<&str>,
    ) -> Result<Response<Body>, RegistryError> {
        let mut b = http::Request::builder().method(req.method.clone()).uri(url);
        for (k, v) in &req.headers {
            b = b.header(*k, v);
        }
        if let Some(a) = authorization {
            b = b.header(http::header::AUTHORIZATION, a);
        }
        let unreachable = |e: ureq::Error| RegistryError::Unreachable {
            registry: r.registry.clone(),
            url: redact(url),
            source: Box::new(e),
        };
        let agent = self.agent_for(&r.registry)?;
        let invalid = |e: http::Error| RegistryError::Protocol {
            registry: r.registry.clone(),
            what: format!("cannot build a request for {}: {e}", redact(url)),
        };
        match req.body {
            ReqBody::Empty => {
                let request = b.body(()).map_err(invalid)?;
                agent.run(request).map_err(unreachable)
            }
            ReqBody::Bytes(bytes) => {
                let request = b.body(bytes).map_err(invalid)?;
                agent.run(request).map_err(unreachable)
            }
            ReqBody::File { file, offset, len } => {
                let mut reader = RangeReader {
                    file,
                    pos: offset,
                    end: offset + len,
                };
                let request = b
                    .header(http::header::CONTENT_LENGTH, len.to_string())
                    .body(ureq::SendBody::from_reader(&mut reader))
                    .map_err(invalid)?;
                agent.run(request).map_err(unreachable)
            }
        }
    }

    fn credentials(&self, r: &Reference) -> Result<Option<Credentials>, RegistryError> {
        Ok(self.config.credentials.lookup(&r.registry)?)
    }

    /// The `Authorization` value for a request: a cached fresh token, a new token when the
    /// registry's bearer challenge is known, basic credentials when it asked for those.
    fn authorization(
        &self,
        r: &Reference,
        scopes: &[String],
        fresh_token: &mut bool,
    ) -> Result<Option<String>, RegistryError> {
        let host = r.api_host().to_owned();
        let (bearer, basic) = {
            let hosts = self.lock_hosts();
            let h = hosts.get(&host);
            (h.and_then(|h| h.bearer.clone()), h.is_some_and(|h| h.basic))
        };
        if let Some(ch) = bearer {
            let key = (host.clone(), scopes.to_vec());
            if let Some(t) = self.lock_tokens().get(&key).filter(|t| t.fresh()) {
                return Ok(Some(format!("Bearer {}", t.token)));
            }
            let token = self.fetch_token(r, &ch, scopes)?;
            *fresh_token = true;
            let value = format!("Bearer {}", token.token);
            self.lock_tokens().insert(key, token);
            return Ok(Some(value));
        }
        if basic {
            return Ok(self.credentials(r)?.and_then(|c| c.basic_header()));
        }
        Ok(None)
    }

    /// Asks the token service named by `ch` for a token covering `scopes`.
    fn fetch_token(
        &self,
        r: &Reference,
        ch: &Challenge,
        scopes: &[String],
    ) -> Result<CachedToken, RegistryError> {
        let realm = ch.param("realm").ok_or_else(|| RegistryError::Protocol {
            registry: r.registry.clone(),
            what: "bearer challenge without a realm".into(),
        })?;
        if !(realm.starts_with("https://")
            || (realm.starts_with("http://") && self.is_insecure(&r.registry)))
        {
            return Err(RegistryError::Protocol {
                registry: r.registry.clone(),
                what: format!(
                    "token service {realm:?} is not HTTPS (allowed only for insecure registries)"
                ),
            });
        }
        let creds = self.credentials(r)?;
        let service = ch.param("service").unwrap_or_default();
        let agent = self.agent_for(&r.registry)?;
        let resp = match &creds {
            Some(Credentials::IdentityToken(refresh)) => {
                // OAuth2 refresh-token grant (token spec: "OAuth2 Token").
                let mut form = form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "refresh_token")
                    .append_pair("service", service)
                    .append_pair("client_id", "refeng")
                    .append_pair("refresh_token", refresh)
                    .append_pair("scope", &scopes.join(" "));
                agent
                    .post(realm)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .send(form.finish())
            }
            _ => {
                let mut q = form_urlencoded::Serializer::new(String::new());
                if !service.is_empty() {
                    q.append_pair("service", service);
                }
                for s in scopes {
                    q.append_pair("scope", s);
                }
                let sep = if realm.contains('?') { '&' } else { '?' };
                let mut g = agent.get(format!("{realm}{sep}{}", q.finish()));
                if let Some(h) = creds.as_ref().and_then(Credentials::basic_header) {
                    g = g.header("Authorization", h);
                }
                g.call()
            }
        }
        .map_err(|e| RegistryError::Unreachable {
            registry: r.registry.clone(),
            url: redact(realm),
            source: Box::new(e),
        })?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let bytes = body
            .with_config()
            .limit(auth::MAX_TOKEN_RESPONSE)
            .read_to_vec()
            .unwrap_or_default();
        match status {
            200 => {}
            401 | 403 if creds.is_some() => {
                return Err(RegistryError::WrongCredentials {
                    registry: r.registry.clone(),
                })
            }
            401 | 403 => {
                return Err(RegistryError::AuthRequired {
                    registry: r.registry.clone(),
                })
            }
            _ => {
                return Err(RegistryError::Protocol {
                    registry: r.registry.clone(),
                    what: format!(
                        "token service answered HTTP {status}: {}",
                        errors::describe(status, &errors::parse_error_body(&bytes))
                    ),
                })
            }
        }
        let (token, life) =
            TokenResponse::parse(&bytes).map_err(|what| RegistryError::Protocol {
                registry: r.registry.clone(),
                what,
            })?;
        tracing::debug!(registry = %r.registry, ?scopes, ?life, "got a token");
        Ok(CachedToken::new(token, life))
    }

    /// The text of a refusal: the registry's error entries in plain words.
    pub(crate) fn refusal_text(&self, resp: Response<Body>) -> String {
        let (status, entries) = error_entries(resp);
        errors::describe(status, &entries)
    }

    /// A [`RegistryError::Refused`] for an unexpected answer to `op` on `r`.
    pub(crate) fn refused(&self, r: &Reference, op: &str, resp: Response<Body>) -> RegistryError {
        let (status, entries) = error_entries(resp);
        RegistryError::Refused {
            operation: format!("{op} {r}"),
            status,
            code: entries.first().map(|e| e.code.clone()).unwrap_or_default(),
            message: entries
                .first()
                .map(|e| e.message.clone())
                .unwrap_or_default(),
            text: errors::describe(status, &entries),
        }
    }
}

/// The status and the registry's error entries of a refusal (body read up to a bound).
fn error_entries(resp: Response<Body>) -> (u16, Vec<errors::ErrorEntry>) {
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .with_config()
        .limit(errors::MAX_ERROR_BODY)
        .read_to_vec()
        .unwrap_or_default();
    (status, errors::parse_error_body(&bytes))
}

/// A URL for messages: query strings (upload state, tokens) are dropped.
fn redact(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_owned()
}

/// Resolves a `Location` header against the registry: absolute URLs stay, paths are joined to
/// the base.
pub(crate) fn location(resp: &Response<Body>) -> Option<String> {
    resp.headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Appends `key=value` to a URL that may already have a query.
pub(crate) fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    let pair = form_urlencoded::Serializer::new(String::new())
        .append_pair(key, value)
        .finish();
    format!("{url}{sep}{pair}")
}

/// The set of scopes for pulling from `r`.
pub(crate) fn pull_scopes(r: &Reference) -> Vec<String> {
    vec![repository_scope(&r.repository, "pull")]
}

/// The set of scopes for pushing to `r`, mounting from `mount_from` repositories.
pub(crate) fn push_scopes(r: &Reference, mount_from: &BTreeSet<String>) -> Vec<String> {
    let mut v = vec![repository_scope(&r.repository, "pull,push")];
    v.extend(
        mount_from
            .iter()
            .filter(|m| **m != r.repository)
            .map(|m| repository_scope(m, "pull")),
    );
    v
}

impl From<auth::AuthError> for RegistryError {
    fn from(e: auth::AuthError) -> Self {
        RegistryError::Credentials(e)
    }
}
