//! [`RegistryServer`]: Debian's docker-registry 2.8 (distribution) on 127.0.0.1, with its
//! storage, configuration and log in a temporary folder of its own, killed by pid and removed on
//! drop, also when the test panics.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::http;
use super::token::TokenServer;

/// Debian's `docker-registry` package (distribution 2.8.2); .ci/setup installs it.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// How long the registry may take to answer `/v2/` after it was started.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Lines of the registry log quoted when it fails to start.
const LOG_TAIL_LINES: usize = 40;

/// A running docker-registry. `host()`/`url()` say where; dropping it kills the process (by its
/// pid), reaps it and removes its folder.
#[derive(Debug)]
pub struct RegistryServer {
    child: Option<Child>,
    dir: TempDir,
    addr: SocketAddr,
    /// `http.tls` settings, when the registry speaks HTTPS.
    tls: Option<String>,
}

/// The `auth` section the registry is started with.
enum Auth<'a> {
    None,
    Basic(&'a [(&'a str, &'a str)]),
    Token(&'a TokenServer),
}

/// How one start attempt ended.
enum Startup {
    Ready,
    /// Another process took the free port between our probe and the registry's bind.
    PortTaken,
    Failed(String),
}

impl RegistryServer {
    /// A registry that lets anyone pull and push.
    pub fn plain() -> Self {
        Self::start(Auth::None)
    }

    /// A registry with htpasswd auth (`auth.htpasswd`) for `users` as `(name, password)`.
    pub fn basic(users: &[(&str, &str)]) -> Self {
        Self::start(Auth::Basic(users))
    }

    /// A registry with token auth (`auth.token`) that sends clients to `tokens` and trusts the
    /// tokens it signs.
    pub fn token(tokens: &TokenServer) -> Self {
        Self::start(Auth::Token(tokens))
    }

    /// A registry that speaks HTTPS only, with a certificate for 127.0.0.1 issued by `ca`;
    /// with `client_certs`, clients must present a certificate `ca` issued.
    pub fn tls(ca: &super::TestCa, client_certs: bool) -> Self {
        let (crt, key) = ca.issue("registry", "serverAuth");
        let mut tls = format!(
            "  tls:\n    certificate: \"{}\"\n    key: \"{}\"\n",
            crt.display(),
            key.display()
        );
        if client_certs {
            tls.push_str(&format!(
                "    clientcas:\n      - \"{}\"\n",
                ca.cert().display()
            ));
        }
        Self::start_with(Auth::None, Some(tls))
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The registry's folder: `config.yml`, `registry.log`, `storage/`, `htpasswd`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The filesystem storage root (`storage.filesystem.rootdirectory`).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The file the registry's stdout and stderr (its log, access log included) go to.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// The registry's log so far, for failure messages and assertions.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The registry process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn start(auth: Auth<'_>) -> Self {
        Self::start_with(auth, None)
    }

    fn start_with(auth: Auth<'_>, tls: Option<String>) -> Self {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is not installed: .ci/setup installs the docker-registry package"
        );
        let dir = tempfile::Builder::new()
            .prefix("refeng-registry-")
            .tempdir()
            .expect("cannot make the registry's directory");
        let auth_yaml = auth_section(&auth, dir.path());
        // Built before the process starts, so that a panic below still kills and removes.
        let mut server = RegistryServer {
            child: None,
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls,
        };
        for _ in 0..5 {
            server.addr = free_port();
            let config = server.dir().join("config.yml");
            fs::write(&config, config_yaml(&server, &auth_yaml)).expect("write config.yml");
            // Truncated per attempt, so a port race logged before does not fail the next one.
            let log = File::create(server.log_path()).expect("create registry.log");
            let child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config)
                // REGISTRY_* variables override the config file; none of the caller's apply.
                .env_clear()
                .current_dir(server.dir())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup registry.log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {REGISTRY_BIN}: {e}"));
            server.child = Some(child);
            match server.wait_ready() {
                Startup::Ready => return server,
                Startup::PortTaken => server.kill(),
                Startup::Failed(why) => panic!("{why}"),
            }
        }
        panic!(
            "docker-registry found its port taken five times\n{}",
            server.log_tail()
        );
    }

    /// Waits until `/v2/` answers as a registry (200, or 401 with auth) or the process exits.
    fn wait_ready(&mut self) -> Startup {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                if self.log().contains("address already in use") {
                    return Startup::PortTaken;
                }
                return Startup::Failed(format!(
                    "docker-registry exited during startup ({status}); log tail:\n{}",
                    self.log_tail()
                ));
            }
            if self.tls.is_some() {
                // Go answers plain HTTP on a TLS port with this 400 once it serves.
                if let Ok(head) = http::probe(self.addr, "/v2/") {
                    if head.status == 400 {
                        return Startup::Ready;
                    }
                }
            } else if let Ok(head) = http::probe(self.addr, "/v2/") {
                // The header tells the registry from whatever else may have taken the port.
                if http::header(&head.headers, "Docker-Distribution-Api-Version")
                    == Some("registry/2.0")
                {
                    return Startup::Ready;
                }
            }
            if Instant::now() >= deadline {
                return Startup::Failed(format!(
                    "docker-registry did not answer /v2/ on {} within {STARTUP_TIMEOUT:?}; log tail:\n{}",
                    self.addr,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// SIGKILLs the process we started (by its pid, through `Child`) and reaps it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        self.kill();
        // The TempDir field removes the folder after this.
    }
}

/// A port that was free a moment ago; the registry binds it itself (a race that
/// [`RegistryServer::start`] retries).
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("cannot find a free port on 127.0.0.1")
}

fn config_yaml(server: &RegistryServer, auth: &str) -> String {
    // Paths are double-quoted YAML scalars: tempfile names hold no '"' or '\'.
    format!(
        r#"version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: "{storage}"
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {addr}
  secret: refeng-test-http-secret
{tls}health:
  storagedriver:
    enabled: false
{auth}"#,
        storage = server.storage_dir().display(),
        addr = server.addr,
        tls = server.tls.as_deref().unwrap_or(""),
    )
}

/// The `auth` section; writes the htpasswd file it names.
fn auth_section(auth: &Auth<'_>, dir: &Path) -> String {
    match auth {
        Auth::None => String::new(),
        Auth::Basic(users) => {
            let path = dir.join("htpasswd");
            let mut text = String::new();
            for (name, password) in *users {
                // Registry 2.8 reads bcrypt entries only. Cost 4 (the least) keeps the unoptimised
                // test build fast; the registry pays the same cost per request.
                let hash = bcrypt::hash_with_result(password, 4)
                    .expect("bcrypt")
                    .format_for_version(bcrypt::Version::TwoY);
                let _ = writeln!(text, "{name}:{hash}");
            }
            fs::write(&path, text).expect("write htpasswd");
            format!(
                "auth:\n  htpasswd:\n    realm: refeng-test-registry\n    path: \"{}\"\n",
                path.display()
            )
        }
        Auth::Token(tokens) => format!(
            "auth:\n  token:\n    realm: \"{}\"\n    service: \"{}\"\n    issuer: \"{}\"\n    rootcertbundle: \"{}\"\n",
            tokens.realm(),
            tokens.service(),
            tokens.issuer(),
            tokens.cert_path().display()
        ),
    }
}
