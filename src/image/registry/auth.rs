//! Registry authentication: `WWW-Authenticate` challenges, credentials from a docker-style
//! `config.json` (inline or through a credential helper), and bearer tokens from the registry's
//! token service with their expiry (distribution: "Token Authentication Specification").

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::reference::DOCKER_HUB;

/// How long a token lives when the token service does not say (token spec: 60 seconds).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Largest token-service answer read.
pub const MAX_TOKEN_RESPONSE: u64 = 1 << 20;
/// Docker Hub's key in `config.json`.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// Why credentials or a token could not be had.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// `config.json` could not be read
    #[error("cannot read credentials file {path}")]
    ConfigRead {
        /// the file
        path: PathBuf,
        /// why
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is not valid JSON of the expected shape
    #[error("credentials file {path} is not valid: {why}")]
    ConfigInvalid {
        /// the file
        path: PathBuf,
        /// what is wrong
        why: String,
    },
    /// a credential helper failed
    #[error("credential helper docker-credential-{helper} failed for {registry}: {why}")]
    Helper {
        /// the helper's name
        helper: String,
        /// the registry asked for
        registry: String,
        /// what went wrong
        why: String,
    },
    /// the challenge header does not parse
    #[error("registry sent an unreadable WWW-Authenticate header {0:?}")]
    Challenge(String),
}

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lower-cased (`basic`, `bearer`).
    pub scheme: String,
    /// Its parameters, keys lower-cased.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// A parameter's value.
    #[must_use]
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }
}

/// Parses a `WWW-Authenticate` value (RFC 7235: challenges separated by commas, each a scheme
/// followed by `key=value` or `key="quoted"` parameters).
///
/// # Errors
/// [`AuthError::Challenge`] when the header does not follow the grammar.
pub fn parse_challenges(header: &str) -> Result<Vec<Challenge>, AuthError> {
    let bad = || AuthError::Challenge(header.chars().take(200).collect());
    let b = header.as_bytes();
    let mut i = 0;
    let mut out: Vec<Challenge> = Vec::new();
    let is_tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        while i < b.len() && b[i] == b',' {
            i += 1;
            skip_ws(&mut i);
        }
        if i >= b.len() {
            break;
        }
        // A token: either a new scheme or a parameter name of the current challenge.
        let start = i;
        while i < b.len() && is_tchar(b[i]) {
            i += 1;
        }
        if start == i {
            return Err(bad());
        }
        let token = &header[start..i];
        let mut j = i;
        skip_ws(&mut j);
        if j < b.len() && b[j] == b'=' && !out.is_empty() {
            // A parameter of the last challenge.
            i = j + 1;
            skip_ws(&mut i);
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = String::new();
                loop {
                    match b.get(i) {
                        None => return Err(bad()),
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => {
                            let c = header[i + 1..].chars().next().ok_or_else(bad)?;
                            v.push(c);
                            i += 1 + c.len_utf8();
                        }
                        Some(_) => {
                            let c = header[i..].chars().next().ok_or_else(bad)?;
                            v.push(c);
                            i += c.len_utf8();
                        }
                    }
                }
                v
            } else {
                let s = i;
                while i < b.len() && (is_tchar(b[i]) || b[i] == b'/' || b[i] == b':') {
                    i += 1;
                }
                header[s..i].to_owned()
            };
            if let Some(last) = out.last_mut() {
                last.params.insert(token.to_ascii_lowercase(), value);
            }
            skip_ws(&mut i);
            if i < b.len() && b[i] != b',' {
                return Err(bad());
            }
        } else {
            // token68 credentials after a scheme are not used by registries: refuse them.
            out.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password (or personal access token).
    Basic {
        /// user name
        username: String,
        /// password
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken` in `config.json`).
    IdentityToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets into logs.
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(***)"),
        }
    }
}

impl Credentials {
    /// The `Authorization: Basic` value for these credentials, if they are a user and password.
    #[must_use]
    pub fn basic_header(&self) -> Option<String> {
        match self {
            Credentials::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            Credentials::IdentityToken(_) => None,
        }
    }
}

/// Where credentials come from.
#[derive(Debug, Clone, Default)]
pub struct CredentialStore {
    /// Explicit credentials by registry (as in a reference: `docker.io`, `host:port`).
    pub explicit: BTreeMap<String, Credentials>,
    /// A parsed docker `config.json`, consulted after the explicit ones.
    pub config: Option<DockerConfig>,
}

impl CredentialStore {
    /// Credentials from the user's docker config (`$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json`); none if the file does not exist.
    ///
    /// # Errors
    /// [`AuthError::ConfigRead`] or [`AuthError::ConfigInvalid`] if it exists and cannot be used.
    pub fn from_default_config() -> Result<Self, AuthError> {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")));
        let config = match dir {
            Some(d) => DockerConfig::load_if_exists(&d.join("config.json"))?,
            None => None,
        };
        Ok(CredentialStore {
            explicit: BTreeMap::new(),
            config,
        })
    }

    /// Adds explicit credentials for `registry`.
    #[must_use]
    pub fn with(mut self, registry: &str, creds: Credentials) -> Self {
        self.explicit.insert(registry.to_owned(), creds);
        self
    }

    /// The credentials for `registry`, if any.
    ///
    /// # Errors
    /// [`AuthError::Helper`] when a configured credential helper fails.
    pub fn lookup(&self, registry: &str) -> Result<Option<Credentials>, AuthError> {
        if let Some(c) = self.explicit.get(registry) {
            return Ok(Some(c.clone()));
        }
        match &self.config {
            Some(c) => c.lookup(registry),
            None => Ok(None),
        }
    }
}

/// The parts of a docker `config.json` that hold credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerConfig {
    /// `auths`: entries by their key (normalised to a registry host).
    pub auths: BTreeMap<String, AuthEntry>,
    /// `credsStore`: the default credential helper.
    pub creds_store: Option<String>,
    /// `credHelpers`: helpers per registry host.
    pub cred_helpers: BTreeMap<String, String>,
}

/// One `auths` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct AuthEntry {
    /// base64 of `user:password`
    #[serde(default)]
    pub auth: Option<String>,
    /// user name
    #[serde(default)]
    pub username: Option<String>,
    /// password
    #[serde(default)]
    pub password: Option<String>,
    /// OAuth2 refresh token
    #[serde(default)]
    pub identitytoken: Option<String>,
}

#[derive(serde::Deserialize)]
struct RawConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

/// The registry host a `config.json` key names: `https://index.docker.io/v1/` → `docker.io`,
/// `http://host:5000/v2/` → `host:5000`.
#[must_use]
pub fn normalise_auth_key(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_owned()
        }
        h => h.to_owned(),
    }
}

fn valid_helper_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl DockerConfig {
    /// Parses a `config.json` document.
    ///
    /// # Errors
    /// [`AuthError::ConfigInvalid`] naming `path` (for the message only).
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, AuthError> {
        let invalid = |why: String| AuthError::ConfigInvalid {
            path: path.to_owned(),
            why,
        };
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        if !value.is_object() {
            return Err(invalid("not a JSON object".into()));
        }
        let raw: RawConfig = serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
        let mut auths = BTreeMap::new();
        for (k, v) in raw.auths {
            auths.insert(normalise_auth_key(&k), v);
        }
        for helper in raw.creds_store.iter().chain(raw.cred_helpers.values()) {
            if !valid_helper_name(helper) {
                return Err(invalid(format!("credential helper name {helper:?}")));
            }
        }
        Ok(DockerConfig {
            auths,
            creds_store: raw.creds_store.filter(|s| !s.is_empty()),
            cred_helpers: raw
                .cred_helpers
                .into_iter()
                .map(|(k, v)| (normalise_auth_key(&k), v))
                .collect(),
        })
    }

    /// Reads `path`; `None` if it does not exist.
    ///
    /// # Errors
    /// [`AuthError::ConfigRead`], [`AuthError::ConfigInvalid`].
    pub fn load_if_exists(path: &Path) -> Result<Option<Self>, AuthError> {
        match std::fs::read(path) {
            Ok(b) => Self::parse(&b, path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(AuthError::ConfigRead {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Credentials for `registry`: a per-registry helper, then `auths`, then the default helper
    /// (docker's order).
    ///
    /// # Errors
    /// [`AuthError::Helper`] when a helper fails; [`AuthError::ConfigInvalid`] when an `auth`
    /// field is not base64 of `user:password`.
    pub fn lookup(&self, registry: &str) -> Result<Option<Credentials>, AuthError> {
        if let Some(h) = self.cred_helpers.get(registry) {
            return run_helper(h, registry);
        }
        if let Some(e) = self.auths.get(registry) {
            if let Some(t) = e.identitytoken.as_ref().filter(|t| !t.is_empty()) {
                return Ok(Some(Credentials::IdentityToken(t.clone())));
            }
            if let Some(a) = e.auth.as_ref().filter(|a| !a.is_empty()) {
                let invalid = |why: &str| AuthError::ConfigInvalid {
                    path: PathBuf::from("config.json"),
                    why: format!("auth for {registry}: {why}"),
                };
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(a.trim())
                    .map_err(|_| invalid("not base64"))?;
                let text = String::from_utf8(decoded).map_err(|_| invalid("not UTF-8"))?;
                let (u, p) = text
                    .split_once(':')
                    .ok_or_else(|| invalid("not user:password"))?;
                return Ok(Some(Credentials::Basic {
                    username: u.to_owned(),
                    password: p.to_owned(),
                }));
            }
            if let (Some(u), Some(p)) = (&e.username, &e.password) {
                return Ok(Some(Credentials::Basic {
                    username: u.clone(),
                    password: p.clone(),
                }));
            }
        }
        match &self.creds_store {
            Some(h) => run_helper(h, registry),
            None => Ok(None),
        }
    }
}

/// Runs `docker-credential-<helper> get` (docker-credential-helpers protocol: server URL on
/// stdin, `{"Username","Secret"}` on stdout; user `<token>` means an identity token).
fn run_helper(helper: &str, registry: &str) -> Result<Option<Credentials>, AuthError> {
    let fail = |why: String| AuthError::Helper {
        helper: helper.to_owned(),
        registry: registry.to_owned(),
        why,
    };
    let server = if registry == DOCKER_HUB {
        DOCKER_HUB_AUTH_KEY.to_owned()
    } else {
        registry.to_owned()
    };
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout);
        // The helpers' protocol: "credentials not found in native keychain" means none.
        if msg.contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(format!("{}: {}", out.status, msg.trim())));
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let a: Answer =
        serde_json::from_slice(&out.stdout).map_err(|e| fail(format!("bad answer: {e}")))?;
    Ok(Some(if a.username == "<token>" {
        Credentials::IdentityToken(a.secret)
    } else {
        Credentials::Basic {
            username: a.username,
            password: a.secret,
        }
    }))
}

/// A token service's answer (token spec: "Token Response Fields").
#[derive(Debug, Clone, serde::Deserialize)]
pub struct TokenResponse {
    /// the bearer token
    #[serde(default)]
    pub token: Option<String>,
    /// the same, under its OAuth2 name
    #[serde(default)]
    pub access_token: Option<String>,
    /// seconds the token lives
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// a refresh token (OAuth2 flow)
    #[serde(default)]
    pub refresh_token: Option<String>,
}

impl TokenResponse {
    /// Parses an answer; the token is whichever of `token` and `access_token` is set.
    ///
    /// # Errors
    /// A message saying what is missing or malformed.
    pub fn parse(bytes: &[u8]) -> Result<(String, Duration), String> {
        let r: TokenResponse =
            serde_json::from_slice(bytes).map_err(|e| format!("token answer is not JSON: {e}"))?;
        let token = r
            .token
            .filter(|t| !t.is_empty())
            .or(r.access_token.filter(|t| !t.is_empty()))
            .ok_or("token answer has no token")?;
        if token.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err("token contains spaces or control characters".into());
        }
        let life = r
            .expires_in
            .filter(|s| *s > 0)
            .map_or(DEFAULT_TOKEN_LIFETIME, |s| {
                Duration::from_secs(s.min(365 * 24 * 3600))
            });
        Ok((token, life))
    }
}

/// A cached bearer token.
#[derive(Debug, Clone)]
pub struct CachedToken {
    /// The token.
    pub token: String,
    /// When it stops being used: a little before it expires, so it is not sent stale.
    pub refresh_at: Instant,
}

impl CachedToken {
    /// A token fetched now that lives `life`.
    #[must_use]
    pub fn new(token: String, life: Duration) -> Self {
        // Refresh a tenth early (at most 10 s) so a request in flight does not cross expiry.
        let margin = (life / 10).min(Duration::from_secs(10));
        CachedToken {
            token,
            refresh_at: Instant::now() + life - margin,
        }
    }

    /// Whether it may still be sent.
    #[must_use]
    pub fn fresh(&self) -> bool {
        Instant::now() < self.refresh_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_registry_challenges() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:library/busybox:pull"));
        let c = parse_challenges(
            r#"Bearer realm="http://127.0.0.1:1/t",service="s",scope="repository:a:pull,push",error="insufficient_scope""#,
        )
        .unwrap();
        assert_eq!(c[0].param("error"), Some("insufficient_scope"));
        assert_eq!(c[0].param("scope"), Some("repository:a:pull,push"));
        let c = parse_challenges(r#"Basic realm="Registry Realm", Bearer realm=x"#).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[1].param("realm"), Some("x"));
        let c = parse_challenges(r#"Basic realm="a \"quoted\" realm""#).unwrap();
        assert_eq!(c[0].param("realm"), Some(r#"a "quoted" realm"#));
    }

    #[test]
    fn refuses_broken_challenges() {
        for bad in [
            "",
            "   ",
            r#"Bearer realm="unterminated"#,
            "=x",
            "Bearer realm=\"a\" junk",
        ] {
            assert!(parse_challenges(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reads_docker_config() {
        let json = br#"{
            "auths": {
                "https://index.docker.io/v1/": {"auth": "dXNlcjpwYTpzcw=="},
                "http://127.0.0.1:5000/v2/": {"username": "u", "password": "p"},
                "ghcr.io": {"identitytoken": "refresh"}
            },
            "credHelpers": {"example.com": "nosuchhelper-refeng-test"}
        }"#;
        let c = DockerConfig::parse(json, Path::new("config.json")).unwrap();
        assert_eq!(
            c.lookup("docker.io").unwrap(),
            Some(Credentials::Basic {
                username: "user".into(),
                password: "pa:ss".into()
            })
        );
        assert_eq!(
            c.lookup("127.0.0.1:5000").unwrap(),
            Some(Credentials::Basic {
                username: "u".into(),
                password: "p".into()
            })
        );
        assert_eq!(
            c.lookup("ghcr.io").unwrap(),
            Some(Credentials::IdentityToken("refresh".into()))
        );
        assert_eq!(c.lookup("quay.io").unwrap(), None);
        let e = c.lookup("example.com").unwrap_err().to_string();
        assert!(
            e.contains("docker-credential-nosuchhelper-refeng-test"),
            "{e}"
        );
        assert!(DockerConfig::parse(br#"{"credsStore": "../x"}"#, Path::new("c")).is_err());
        assert!(DockerConfig::parse(b"[]", Path::new("c")).is_err());
        let bad = DockerConfig::parse(br#"{"auths":{"h":{"auth":"!!"}}}"#, Path::new("c")).unwrap();
        assert!(bad.lookup("h").is_err());
    }

    #[test]
    fn token_answers() {
        let (t, life) = TokenResponse::parse(br#"{"token":"abc","expires_in":300}"#).unwrap();
        assert_eq!((t.as_str(), life), ("abc", Duration::from_secs(300)));
        let (t, life) = TokenResponse::parse(br#"{"access_token":"xyz"}"#).unwrap();
        assert_eq!((t.as_str(), life), ("xyz", DEFAULT_TOKEN_LIFETIME));
        assert!(TokenResponse::parse(br#"{"token":""}"#).is_err());
        assert!(TokenResponse::parse(br#"{"token":"a b"}"#).is_err());
        assert!(TokenResponse::parse(b"nope").is_err());
        let c = CachedToken::new("t".into(), Duration::from_secs(60));
        assert!(c.fresh());
        let c = CachedToken::new("t".into(), Duration::ZERO);
        assert!(!c.fresh());
    }

    #[test]
    fn credentials_never_print_secrets() {
        let c = Credentials::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.basic_header().unwrap(), "Basic dTpodW50ZXIy");
    }
}
