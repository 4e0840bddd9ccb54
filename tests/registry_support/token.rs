//! [`TokenServer`]: a Docker token server (distribution's "Token Authentication Specification"
//! and "Token Authentication Implementation") on 127.0.0.1, in a thread, signing RS256 JWTs with
//! an RSA key made for it by the openssl CLI.
//!
//! Protocol: `GET /token?service=S&scope=repository:NAME:pull,push&scope=...`, optionally with
//! HTTP Basic credentials. A known user with the right password, or a caller with no
//! credentials at all (the anonymous user), gets a token granting, per scope, the intersection
//! of the requested actions and the actions configured for that caller (as docker's auth
//! servers do: asking for more is no error, it is just not granted). Wrong credentials get a 401
//! with a JSON error. Every request is recorded, so tests can count token fetches.

use std::io::{self, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use data_encoding::{BASE32_NOPAD, BASE64, BASE64URL_NOPAD};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use super::http::{self, Listener};

/// The `service` the registry announces and the `aud` claim of every token.
pub const SERVICE: &str = "refeng-test-registry";
/// The `iss` claim of every token, which the registry is configured to trust.
pub const ISSUER: &str = "refeng-test-token-server";

/// What a [`TokenServer`] grants to whom; made by [`TokenServer::builder`].
#[derive(Debug, Clone)]
pub struct TokenServerBuilder {
    users: Vec<TokenUser>,
    anonymous: Vec<String>,
    expires_in: u64,
    exp_offset: Option<i64>,
}

#[derive(Debug, Clone)]
struct TokenUser {
    name: String,
    password: String,
    actions: Vec<String>,
}

impl TokenServerBuilder {
    /// Adds a user who may do `actions` (e.g. `&["pull", "push"]`; `"*"` allows any action) on
    /// every repository.
    pub fn user(mut self, name: &str, password: &str, actions: &[&str]) -> Self {
        self.users.push(TokenUser {
            name: name.to_owned(),
            password: password.to_owned(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        });
        self
    }

    /// What a caller without credentials may do (default: nothing; it still gets a token, one
    /// that grants no access, as docker's auth servers answer).
    pub fn anonymous(mut self, actions: &[&str]) -> Self {
        self.anonymous = actions.iter().map(|a| a.to_string()).collect();
        self
    }

    /// The `expires_in` of every answer, in seconds (default 300); the `exp` claim follows it
    /// unless [`Self::exp_claim_in`] says otherwise.
    pub fn expires_in(mut self, seconds: u64) -> Self {
        self.expires_in = seconds;
        self
    }

    /// Sets the JWT's `exp` claim to now + `seconds` regardless of `expires_in`. Registry 2.8
    /// accepts a token until 60 s after `exp` (its clock-skew leeway), so a value below -60
    /// makes tokens the registry rejects at once while the client still believes them fresh.
    pub fn exp_claim_in(mut self, seconds: i64) -> Self {
        self.exp_offset = Some(seconds);
        self
    }

    /// Generates the signing key and certificate and starts serving.
    ///
    /// Panics when the openssl CLI or the socket fails: a fixture that cannot start fails the test.
    pub fn start(self) -> TokenServer {
        let dir = tempfile::Builder::new()
            .prefix("refeng-token-")
            .tempdir()
            .expect("cannot make the token server's directory");
        let key_path = dir.path().join("signing-key.pem");
        let cert_path = dir.path().join("signing-cert.pem");
        openssl(&["genrsa", "-out", path_str(&key_path), "2048"], None);
        openssl(
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                path_str(&key_path),
                "-out",
                path_str(&cert_path),
                "-days",
                "2",
                "-subj",
                "/CN=refeng-test-token-server",
            ],
            None,
        );
        let spki = openssl(
            &[
                "pkey",
                "-in",
                path_str(&key_path),
                "-pubout",
                "-outform",
                "DER",
            ],
            None,
        );
        let key_id = libtrust_key_id(&spki);

        let shared = Arc::new(Shared {
            config: self,
            key_path,
            key_id: key_id.clone(),
            requests: Mutex::new(Vec::new()),
            issued: AtomicU64::new(0),
        });
        let listener = {
            let shared = shared.clone();
            Listener::start(move |stream| {
                let _ = serve(&shared, stream);
            })
        };
        TokenServer {
            listener,
            dir,
            cert_path,
            key_id,
            shared,
        }
    }
}

/// One request the token server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub at: SystemTime,
    /// The request path (`/token` for a token request).
    pub path: String,
    /// The user named by the Basic credentials (also when they were wrong); `None` if anonymous.
    pub user: Option<String>,
    pub service: Option<String>,
    /// Every requested scope, as sent (`repository:x:pull,push`).
    pub scopes: Vec<String>,
    /// The HTTP status of the answer: 200, 401 for wrong credentials, 404 for another path.
    pub status: u16,
    /// What the token granted (empty unless 200).
    pub granted: Vec<Access>,
}

/// One entry of a token's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// `repository`, or `registry` for `registry:catalog:*`.
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// A running token server; stopped (accept thread joined, key removed) on drop.
#[derive(Debug)]
pub struct TokenServer {
    // Dropped first: no request is served once the key is gone.
    listener: Listener,
    dir: TempDir,
    cert_path: PathBuf,
    key_id: String,
    shared: Arc<Shared>,
}

impl TokenServer {
    /// Users, anonymous rights and lifetimes to configure before [`TokenServerBuilder::start`].
    pub fn builder() -> TokenServerBuilder {
        TokenServerBuilder {
            users: Vec::new(),
            anonymous: Vec::new(),
            expires_in: 300,
            exp_offset: None,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.listener.addr())
    }

    /// The token endpoint, `http://127.0.0.1:PORT/token`: the registry's `realm`.
    pub fn realm(&self) -> String {
        format!("{}/token", self.url())
    }

    /// The `service` the registry must be configured with (and the tokens' audience).
    pub fn service(&self) -> &str {
        SERVICE
    }

    /// The `iss` claim the registry must trust.
    pub fn issuer(&self) -> &str {
        ISSUER
    }

    /// The self-signed certificate of the signing key: the registry's `rootcertbundle`.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The `kid` in every token header: the libtrust key id of the signing key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The folder holding the key and certificate.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.shared.requests.lock().unwrap().clone()
    }
}

/// The claims of a JWT (its middle part, decoded), for tests that inspect a token.
pub fn jwt_claims(token: &str) -> Option<Value> {
    jwt_part(token, 1)
}

/// The header of a JWT (its first part, decoded).
pub fn jwt_header(token: &str) -> Option<Value> {
    jwt_part(token, 0)
}

fn jwt_part(token: &str, index: usize) -> Option<Value> {
    let part = token.split('.').nth(index)?;
    let bytes = BASE64URL_NOPAD.decode(part.as_bytes()).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// libtrust's key id, which registry 2.8 matches the `kid` header against: SHA-256 of the DER
/// SubjectPublicKeyInfo, its first 240 bits in base32 (48 characters), in 12 groups of 4 joined
/// by ':' (libtrust util.go `keyIDFromCryptoKey`).
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    let encoded = BASE32_NOPAD.encode(&digest[..30]);
    encoded
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("base32 is ASCII"))
        .collect::<Vec<_>>()
        .join(":")
}

#[derive(Debug)]
struct Shared {
    config: TokenServerBuilder,
    key_path: PathBuf,
    key_id: String,
    requests: Mutex<Vec<TokenRequest>>,
    issued: AtomicU64,
}

/// Who the credentials of a request say the caller is.
enum Caller<'a> {
    Anonymous,
    Known(&'a TokenUser),
    Rejected { user: Option<String> },
}

fn serve(shared: &Shared, mut stream: TcpStream) -> io::Result<()> {
    let mut buf = Vec::new();
    let Some((head, _)) = http::read_request_head(&mut stream, &mut buf)? else {
        return Ok(());
    };
    let (path, query) = head
        .target
        .split_once('?')
        .unwrap_or((head.target.as_str(), ""));
    let mut service = None;
    let mut scopes = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "service" => service = Some(value.into_owned()),
            // The spec repeats `scope`; some clients join several with spaces instead.
            "scope" => scopes.extend(value.split(' ').filter(|s| !s.is_empty()).map(String::from)),
            _ => {}
        }
    }
    let caller = authenticate(&shared.config, http::header(&head.headers, "Authorization"));
    let mut record = TokenRequest {
        at: SystemTime::now(),
        path: path.to_owned(),
        user: match &caller {
            Caller::Anonymous => None,
            Caller::Known(u) => Some(u.name.clone()),
            Caller::Rejected { user } => user.clone(),
        },
        service: service.clone(),
        scopes: scopes.clone(),
        status: 0,
        granted: Vec::new(),
    };

    let (status, body) = if path != "/token" {
        (
            404,
            json!({"errors": [{"code": "NOT_FOUND", "message": "only /token is served"}]}),
        )
    } else if head.method != "GET" {
        (
            405,
            json!({"errors": [{"code": "UNSUPPORTED", "message": "only GET is served"}]}),
        )
    } else {
        match caller {
            Caller::Rejected { .. } => (
                401,
                json!({"errors": [{"code": "UNAUTHORIZED", "message": "invalid username or password"}]}),
            ),
            Caller::Anonymous | Caller::Known(_) => {
                let (subject, allowed) = match caller {
                    Caller::Known(u) => (u.name.as_str(), &u.actions),
                    _ => ("", &shared.config.anonymous),
                };
                record.granted = scopes.iter().filter_map(|s| grant(s, allowed)).collect();
                match issue(shared, subject, service.as_deref(), &record.granted) {
                    Ok(body) => (200, body),
                    Err(e) => {
                        record.granted.clear();
                        (
                            500,
                            json!({"errors": [{"code": "UNKNOWN", "message": e.to_string()}]}),
                        )
                    }
                }
            }
        }
    };
    record.status = status;
    shared.requests.lock().unwrap().push(record);

    let body = body.to_string();
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    };
    let mut headers = vec![
        ("Content-Type".to_owned(), "application/json".to_owned()),
        ("Content-Length".to_owned(), body.len().to_string()),
        ("Connection".to_owned(), "close".to_owned()),
    ];
    if status == 401 {
        headers.push((
            "WWW-Authenticate".to_owned(),
            format!("Basic realm=\"{ISSUER}\""),
        ));
    }
    http::write_head(
        &mut stream,
        &format!("HTTP/1.1 {status} {reason}"),
        &headers,
    )?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

fn authenticate<'a>(config: &'a TokenServerBuilder, authorization: Option<&str>) -> Caller<'a> {
    let Some(value) = authorization else {
        return Caller::Anonymous;
    };
    let decoded = value
        .strip_prefix("Basic ")
        .and_then(|b64| BASE64.decode(b64.trim().as_bytes()).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok());
    let Some((name, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
        return Caller::Rejected { user: None };
    };
    match config.users.iter().find(|u| u.name == name) {
        Some(user) if user.password == password => Caller::Known(user),
        _ => Caller::Rejected {
            user: Some(name.to_owned()),
        },
    }
}

/// The part of `scope` (`type:name:actions`) that `allowed` covers, or `None` if nothing is.
fn grant(scope: &str, allowed: &[String]) -> Option<Access> {
    // The name may itself hold ':' (a registry host with a port), so type and actions are cut
    // off the ends.
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let any = allowed.iter().any(|a| a == "*");
    let mut granted: Vec<String> = Vec::new();
    for action in actions.split(',') {
        if (any || allowed.iter().any(|a| a == action)) && !granted.iter().any(|g| g == action) {
            granted.push(action.to_owned());
        }
    }
    (!granted.is_empty()).then(|| Access {
        kind: kind.to_owned(),
        name: name.to_owned(),
        actions: granted,
    })
}

/// The JSON answer with a freshly signed token.
fn issue(
    shared: &Shared,
    subject: &str,
    service: Option<&str>,
    access: &[Access],
) -> io::Result<Value> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(io::Error::other)?
        .as_secs() as i64;
    let expires_in = shared.config.expires_in;
    let exp = now + shared.config.exp_offset.unwrap_or(expires_in as i64);
    let jti = format!(
        "{}-{}-{now}",
        std::process::id(),
        shared.issued.fetch_add(1, Ordering::SeqCst)
    );
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": shared.key_id});
    let claims = json!({
        "iss": ISSUER,
        "sub": subject,
        "aud": service.unwrap_or(SERVICE),
        "exp": exp,
        "nbf": now,
        "iat": now,
        "jti": jti,
        "access": access.iter().map(|a| json!({
            "type": a.kind,
            "name": a.name,
            "actions": a.actions,
        })).collect::<Vec<_>>(),
    });
    let signing_input = format!(
        "{}.{}",
        BASE64URL_NOPAD.encode(header.to_string().as_bytes()),
        BASE64URL_NOPAD.encode(claims.to_string().as_bytes())
    );
    // RS256 is RSASSA-PKCS1-v1_5 over SHA-256, which is what `dgst -sign` makes of an RSA key.
    let signature = try_openssl(
        &["dgst", "-sha256", "-sign", path_str(&shared.key_path)],
        Some(signing_input.as_bytes()),
    )?;
    let token = format!("{signing_input}.{}", BASE64URL_NOPAD.encode(&signature));
    let issued_at = chrono::DateTime::<chrono::Utc>::from_timestamp(now, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Ok(json!({
        "token": token,
        "access_token": token,
        "expires_in": expires_in,
        "issued_at": issued_at,
    }))
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Runs the openssl CLI with `stdin` and returns its stdout; panics when it fails (used while
/// starting, where a failure is the test's).
fn openssl(args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    try_openssl(args, stdin).unwrap_or_else(|e| panic!("openssl {}: {e}", args.join(" ")))
}

fn try_openssl(args: &[&str], stdin: Option<&[u8]>) -> io::Result<Vec<u8>> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut input = child.stdin.take().expect("piped stdin");
    let data = stdin.unwrap_or_default().to_vec();
    // Written from a thread so a large output cannot deadlock against a full input pipe.
    let writer = std::thread::spawn(move || input.write_all(&data));
    let out = child.wait_with_output()?;
    let _ = writer.join();
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "openssl {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(out.stdout)
}
