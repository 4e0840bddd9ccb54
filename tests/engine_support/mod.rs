//! What the engine tests share: a refengd (with the refeng-containerd it starts, or driving a
//! given containerd) on private sockets and directories under /tmp, stopped by pid when the test
//! binary ends, also after failures; a small HTTP/1.1 client for the unix socket; the docker CLI
//! 28 and docker-py pointed at it; and a runner that starts the daemon once per test binary.
// Each test binary uses a different subset.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub const REFENGD: &str = env!("CARGO_BIN_EXE_refengd");
/// The docker CLI 28 (preinstalled in /usr/local/bin); Debian's 20.10 CLI is /usr/bin/docker.
pub const DOCKER_CLI: &str = "/usr/local/bin/docker";

/// How refengd is started.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// `--containerd`.
    pub containerd: Option<PathBuf>,
    /// The text of daemon.json (`{}` when `None`).
    pub daemon_json: Option<String>,
    /// More arguments.
    pub args: Vec<String>,
    /// Run with the default bridge network. Only for daemons inside a network namespace the
    /// test made: otherwise refengd runs with `--bridge none` and never touches the host's
    /// interfaces or packet filter.
    pub bridge: bool,
}

/// A running refengd in its own directory.
#[derive(Debug)]
pub struct Refengd {
    dir: PathBuf,
    child: Mutex<Option<Child>>,
}

impl Refengd {
    pub fn start() -> Refengd {
        Self::start_with(Options::default())
    }

    /// Starts refengd and waits until `/_ping` answers; panics with its log when it does not.
    pub fn start_with(opts: Options) -> Refengd {
        let dir = tempfile::Builder::new()
            .prefix("refengd-")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        std::fs::write(
            dir.join("daemon.json"),
            opts.daemon_json.as_deref().unwrap_or("{}"),
        )
        .unwrap();
        let d = Refengd {
            dir,
            child: Mutex::new(None),
        };
        d.spawn(&opts);
        d
    }

    fn spawn(&self, opts: &Options) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("refengd.log"))
            .unwrap();
        let mut cmd = self.command(opts);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start refengd");
        *self.child.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = try_request(&self.socket(), "GET", "/_ping", &[], None) {
                if r.status == 200 {
                    return;
                }
            }
            if let Some(status) = self
                .child
                .lock()
                .unwrap()
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("refengd exited at start ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "refengd did not answer:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The command line refengd is started with (for tests that run it themselves).
    pub fn command(&self, opts: &Options) -> Command {
        let mut cmd = Command::new(REFENGD);
        cmd.arg("-H")
            .arg(format!("unix://{}", self.socket().display()))
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("exec"))
            .arg("--config-file")
            .arg(self.dir.join("daemon.json"))
            .args(["--log-level", "debug"])
            .args(&opts.args);
        if !opts.bridge {
            cmd.args(["--bridge", "none"]);
        }
        if let Some(c) = &opts.containerd {
            cmd.arg("--containerd").arg(c);
        }
        cmd
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("refengd.sock")
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    pub fn pid(&self) -> Option<Pid> {
        self.child
            .lock()
            .unwrap()
            .as_ref()
            .map(|c| Pid::from_raw(c.id() as i32))
    }

    /// The pid of the refeng-containerd refengd supervises, from its pidfile.
    pub fn containerd_pid(&self) -> Option<Pid> {
        let text = std::fs::read_to_string(self.dir.join("exec/containerd/containerd.pid")).ok()?;
        Some(Pid::from_raw(text.trim().parse().ok()?))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("refengd.log")).unwrap_or_default()
    }

    /// Sends `sig` to refengd.
    pub fn signal(&self, sig: Signal) {
        if let Some(pid) = self.pid() {
            kill(pid, sig).unwrap();
        }
    }

    /// SIGKILL to refengd alone (its refeng-containerd keeps running), as a crash would.
    pub fn crash(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for refengd to exit by itself, up to `timeout`.
    pub fn wait_exit(&self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut guard = self.child.lock().unwrap();
            let c = guard.as_mut()?;
            if let Ok(Some(status)) = c.try_wait() {
                *guard = None;
                return Some(status);
            }
            drop(guard);
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts refengd again on the same directories.
    pub fn restart(&self, opts: &Options) {
        self.crash();
        self.spawn(opts);
    }

    /// A request to refengd; panics when the connection fails.
    #[track_caller]
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> HttpResponse {
        self.request_with(method, path, &[], body)
    }

    #[track_caller]
    pub fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpResponse {
        try_request(&self.socket(), method, path, headers, body).unwrap_or_else(|e| {
            panic!(
                "{method} {path}: {e}\n--- refengd log ---\n{}",
                tail(&self.log(), 40)
            )
        })
    }

    /// The docker CLI 28 against this daemon, with a private config directory.
    pub fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(DOCKER_CLI);
        cmd.args(args)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.dir.join("cli"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION")
            .stdin(Stdio::null());
        cmd
    }

    /// `docker args`, which must succeed; returns stdout.
    #[track_caller]
    pub fn docker(&self, args: &[&str]) -> String {
        let out = self.docker_cmd(args).output().expect("run docker");
        assert!(
            out.status.success(),
            "docker {args:?} failed ({}): {}{}\n--- refengd log ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 40)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A docker-py 7 script run with `DOCKER_HOST` set to this daemon; returns its stdout.
    #[track_caller]
    pub fn python(&self, script: &str) -> String {
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.dir.join("cli"))
            .stdin(Stdio::null())
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "docker-py script failed ({}): {}{}\n--- refengd log ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 40)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops refengd as a service manager does (TERM, KILL after 20 s); its directories and
    /// the containers that live restore keeps stay.
    pub fn stop(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let pid = Pid::from_raw(c.id() as i32);
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Removes every container with force (and its anonymous volumes): with live restore a
    /// container a test left would keep running under its shim after the daemon is gone.
    fn remove_containers(&self) {
        if self.pid().is_none() {
            return;
        }
        let Ok(r) = try_request(&self.socket(), "GET", "/containers/json?all=1", &[], None) else {
            return;
        };
        if r.status != 200 {
            return;
        }
        for c in r.json().as_array().into_iter().flatten() {
            if let Some(id) = c["Id"].as_str() {
                let path = format!("/containers/{id}?force=1&v=1");
                let _ = try_request(&self.socket(), "DELETE", &path, &[], None);
            }
        }
    }

    /// Removes the containers, stops refengd (TERM, KILL after 20 s), then whatever
    /// refeng-containerd is left by pid, and removes the directory.
    pub fn shutdown(&self) {
        self.remove_containers();
        self.stop();
        if let Some(pid) = self.containerd_pid() {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            if exe
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("refeng-containerd"))
            {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
        if self.dir.exists() {
            // Volumes of the local driver may be mounted below it (a tmpfs, a bind of a host
            // directory): detach them first, so that the removal never reaches through one.
            let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            let mut below: Vec<&str> = info
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|m| Path::new(m).starts_with(&self.dir))
                .collect();
            below.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for m in below {
                let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for Refengd {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as JSON lines (streams: events, progress).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&self.body)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request over a fresh connection (`Connection: close`), read to the end.
pub fn try_request(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<HttpResponse> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    if let Some(b) = body {
        s.write_all(b)?;
    }
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        // Go's server answers a request whose body it did not read, half-closes, waits 500 ms
        // and closes: a client that was not scheduled in time (a loaded machine) gets a reset
        // after the whole answer. The answer read so far stands if it is complete.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !raw.is_empty() => {
            let r = parse_response(&raw, method == "HEAD").map_err(|_| e)?;
            let whole = method == "HEAD"
                || r.header("content-length")
                    .and_then(|l| l.parse::<usize>().ok())
                    .is_some_and(|l| l == r.body.len());
            if !whole {
                return Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
            }
            return Ok(r);
        }
        Err(e) => return Err(e),
    }
    parse_response(&raw, method == "HEAD")
}

fn parse_response(raw: &[u8], head_only: bool) -> std::io::Result<HttpResponse> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut hdrs = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut hdrs);
    let n = match resp.parse(raw).map_err(|e| bad(&e.to_string()))? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Err(bad("incomplete response head")),
    };
    let status = resp.code.unwrap_or(0);
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let rest = &raw[n..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if head_only {
        Vec::new()
    } else if chunked {
        dechunk(rest).ok_or_else(|| bad("bad chunked body"))?
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs the named tests of a `harness = false` test binary one after the other, each caught
/// on panic, then `finally` (which stops the shared daemons), and exits with the outcome.
/// Arguments that do not start with `-` select tests by substring, as libtest's do.
// The runner's report is the test binary's output, as libtest's is.
#[allow(clippy::print_stdout, clippy::print_stderr)]
pub fn run(tests: &[(&str, &dyn Fn())], finally: impl FnOnce()) -> ! {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if std::env::args().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        finally();
        std::process::exit(0);
    }
    let mut failed = Vec::new();
    let mut passed = 0;
    for (name, test) in tests {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        eprintln!("test {name} ...");
        match catch_unwind(AssertUnwindSafe(test)) {
            Ok(()) => {
                passed += 1;
                eprintln!("test {name} ... ok");
            }
            Err(_) => {
                eprintln!("test {name} ... FAILED");
                failed.push(*name);
            }
        }
    }
    finally();
    eprintln!(
        "\ntest result: {}. {passed} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len()
    );
    for f in &failed {
        eprintln!("    {f}");
    }
    std::process::exit(i32::from(!failed.is_empty()));
}

/// Makes the test binary run inside a fresh network and mount namespace: the first run starts
/// it again there ([`reexec_in_private_namespaces`]) and exits with its status; the inner run
/// (`inner_env` set) brings its loopback up. `--list` runs where it is.
pub fn in_private_namespaces(inner_env: &str) {
    if std::env::var_os(inner_env).is_none() {
        if !std::env::args().any(|a| a == "--list") {
            reexec_in_private_namespaces(inner_env);
        }
        return;
    }
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status();
    assert!(up.is_ok_and(|s| s.success()), "lo up");
}

/// Runs the test binary again inside a fresh network and mount namespace, passing its
/// arguments, with `inner_env` set so that the second run knows it is the inner one; exits
/// with its status.
fn reexec_in_private_namespaces(inner_env: &str) -> ! {
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("unshare")
        .args(["--net", "--mount", "--propagation", "private", "--"])
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(inner_env, "1")
        .status()
        .expect("run unshare");
    std::process::exit(status.code().unwrap_or(1));
}
