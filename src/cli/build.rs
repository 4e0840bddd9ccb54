//! `build`: docker's classic builder command line (`DOCKER_BUILDKIT=0 docker build`). The
//! context (a directory walked into a tar streamed to the daemon with `.dockerignore` applied,
//! a tar or a Dockerfile on stdin, a URL), the Dockerfile (`-f` inside or outside the context,
//! or stdin), the flags as `POST /build`'s query and the registry credentials as
//! `X-Registry-Config`; the daemon's JSON message stream printed as the docker CLI prints it.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, IsTerminal, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::client::Body;
use super::format::human_size;
use super::images::display_messages;
use super::{specs, CliError, Ctx};
use crate::engine::build::dockerignore::Dockerignore;
use crate::image::tar::{Builder, Entry, Kind};

/// `build` (also `image build`), docker's flags for the classic builder.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Set build-time variables
    #[arg(long = "build-arg")]
    pub build_arg: Vec<String>,
    /// Images to consider as cache sources
    #[arg(long = "cache-from")]
    pub cache_from: Vec<String>,
    /// Optional parent cgroup for the container
    #[arg(long = "cgroup-parent")]
    pub cgroup_parent: Option<String>,
    /// Compress the build context using gzip
    #[arg(long)]
    pub compress: bool,
    /// Limit the CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<i64>,
    /// Limit the CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota")]
    pub cpu_quota: Option<i64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Skip image verification
    #[arg(long = "disable-content-trust", default_value_t = true,
          action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub disable_content_trust: bool,
    /// Name of the Dockerfile (Default is 'PATH/Dockerfile')
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// Always remove intermediate containers
    #[arg(long = "force-rm")]
    pub force_rm: bool,
    /// Write the image ID to the file
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// Container isolation technology
    #[arg(long)]
    pub isolation: Option<String>,
    /// Set metadata for an image
    #[arg(long)]
    pub label: Vec<String>,
    /// Memory limit
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    /// Set the networking mode for the RUN instructions during build
    #[arg(long)]
    pub network: Option<String>,
    /// Do not use cache when building the image
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pub pull: bool,
    /// Suppress the build output and print image ID on success
    #[arg(short, long)]
    pub quiet: bool,
    /// Remove intermediate containers after a successful build
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub rm: bool,
    /// Security options
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Size of /dev/shm
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// Squash newly built layers into a single new layer
    #[arg(long)]
    pub squash: bool,
    /// Name and optionally a tag in the 'name:tag' format
    #[arg(short = 't', long = "tag")]
    pub tag: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    pub target: Option<String>,
    /// Ulimit options
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// The context: a directory, a URL, or - for stdin
    #[arg(value_name = "PATH | URL | -")]
    pub context: String,
}

impl BuildArgs {
    /// The first flag that refengd's classic builder does not have, by name.
    fn unsupported(&self) -> Option<&'static str> {
        [
            (!self.add_host.is_empty(), "--add-host"),
            (self.cgroup_parent.is_some(), "--cgroup-parent"),
            (self.isolation.is_some(), "--isolation"),
            (!self.security_opt.is_empty(), "--security-opt"),
            (self.squash, "--squash"),
            (!self.ulimit.is_empty(), "--ulimit"),
            (!self.disable_content_trust, "--disable-content-trust=false"),
        ]
        .into_iter()
        .find_map(|(set, name)| set.then_some(name))
    }
}

/// The first 512 bytes: what tells a tar or a compressed stream from a Dockerfile.
const ARCHIVE_HEADER: usize = 512;

/// Whether `head` starts an archive, as the docker CLI's `build.IsArchive` decides: a
/// compressed stream (gzip, bzip2, xz, zstd) or a tar header whose checksum holds.
fn is_archive(head: &[u8]) -> bool {
    const MAGIC: [&[u8]; 4] = [
        &[0x1f, 0x8b, 0x08],
        b"BZh",
        &[0xfd, b'7', b'z', b'X', b'Z', 0x00],
        &[0x28, 0xb5, 0x2f, 0xfd],
    ];
    if MAGIC.iter().any(|m| head.starts_with(m)) {
        return true;
    }
    if head.len() < ARCHIVE_HEADER {
        return false;
    }
    let field = String::from_utf8_lossy(&head[148..156]);
    let Ok(stored) = u64::from_str_radix(field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
    else {
        return false;
    };
    let sum: u64 = head[..ARCHIVE_HEADER]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                u64::from(b' ')
            } else {
                u64::from(*b)
            }
        })
        .sum();
    sum == stored
}

/// Go's `%q` of a path, close enough for the paths of messages.
fn quoted(s: &str) -> String {
    format!("{s:?}")
}

/// An I/O error as Go's `os` package words it (`lstat PATH: no such file or directory`).
fn go_error(op: &str, path: &Path, e: &io::Error) -> String {
    let text = match e.raw_os_error() {
        Some(n) => {
            let d = nix::errno::Errno::from_raw(n).desc();
            let mut c = d.chars();
            match c.next() {
                Some(f) => f.to_lowercase().chain(c).collect(),
                None => String::new(),
            }
        }
        None => e.to_string(),
    };
    format!("{op} {}: {text}", path.display())
}

fn prepare_error(message: String) -> CliError {
    CliError::Status {
        code: 1,
        message: format!("unable to prepare context: {message}"),
    }
}

/// A Dockerfile that is not a file of the context (stdin, or outside the directory): sent
/// under a random name that the context's `.dockerignore` then lists, as docker does
/// (`AddDockerfileToBuildContext`), so the builder reads it and COPY never sees it.
#[derive(Debug)]
struct ExtraDockerfile {
    name: String,
    text: Vec<u8>,
}

impl ExtraDockerfile {
    fn new(text: Vec<u8>) -> Result<ExtraDockerfile, CliError> {
        let mut random = [0u8; 10];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut random))
            .map_err(CliError::io("read /dev/urandom"))?;
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        Ok(ExtraDockerfile {
            name: format!(".dockerfile.{hex}"),
            text,
        })
    }

    /// The `.dockerignore` that also lists the Dockerfile (`None`: there was none).
    fn dockerignore(&self, original: Option<&[u8]>) -> Vec<u8> {
        let mut out = original.map_or_else(|| b".dockerignore".to_vec(), <[u8]>::to_vec);
        out.extend_from_slice(format!("\n{}\n", self.name).as_bytes());
        out
    }
}

/// A directory context: what the walk sends, in order.
#[derive(Debug)]
struct DirContext {
    root: PathBuf,
    paths: Vec<String>,
    extra: Option<ExtraDockerfile>,
}

/// Lists every path below `root` (relative, with whether it is a directory), not descending
/// into directories that `ignore` drops whole.
fn list_tree(root: &Path, ignore: &Dockerignore) -> Result<Vec<(String, bool)>, CliError> {
    let mut out = Vec::new();
    let mut todo = vec![String::new()];
    let prune = !ignore.has_exclusions();
    while let Some(dir) = todo.pop() {
        let at = if dir.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&dir)
        };
        let entries = fs::read_dir(&at).map_err(|e| CliError::Status {
            code: 1,
            message: format!("error checking context: {}", go_error("open", &at, &e)),
        })?;
        for entry in entries {
            let entry = entry.map_err(CliError::io(format!("read {}", at.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && !(prune && ignore.matches(&rel)) {
                todo.push(rel.clone());
            }
            out.push((rel, is_dir));
        }
    }
    Ok(out)
}

impl DirContext {
    /// Resolves the context directory and the Dockerfile as the docker CLI does
    /// (`GetContextFromLocalDir`): `-f` relative to the working directory, `Dockerfile` (or
    /// `dockerfile`) in the context by default. Returns the context and the Dockerfile's name
    /// in it.
    fn open(dir: &str, file: Option<&str>) -> Result<(DirContext, String), CliError> {
        let root = fs::canonicalize(dir).map_err(|e| {
            prepare_error(format!(
                "unable to evaluate symlinks in context path: {}",
                go_error("lstat", Path::new(dir), &e)
            ))
        })?;
        if !root.is_dir() {
            return Err(prepare_error(format!(
                "context must be a directory: {}",
                root.display()
            )));
        }
        let mut extra = None;
        let mut dockerfile_in_context = None;
        match file {
            Some("-") => {
                let mut text = Vec::new();
                io::stdin()
                    .lock()
                    .read_to_end(&mut text)
                    .map_err(CliError::io("read the Dockerfile from stdin"))?;
                extra = Some(ExtraDockerfile::new(text)?);
            }
            given => {
                let path = match given {
                    Some(f) => std::env::current_dir()
                        .map_err(CliError::io("current directory"))?
                        .join(f),
                    None => {
                        let p = root.join("Dockerfile");
                        let lower = root.join("dockerfile");
                        if p.symlink_metadata().is_err() && lower.symlink_metadata().is_ok() {
                            lower
                        } else {
                            p
                        }
                    }
                };
                let real = fs::canonicalize(&path).map_err(|e| {
                    prepare_error(format!(
                        "unable to evaluate symlinks in Dockerfile path: {}",
                        go_error("lstat", &path, &e)
                    ))
                })?;
                match real.strip_prefix(&root) {
                    Ok(rel) => dockerfile_in_context = Some(rel.to_string_lossy().into_owned()),
                    Err(_) => {
                        let mut f = fs::File::open(&real).map_err(|e| CliError::Status {
                            code: 1,
                            message: format!(
                                "unable to open Dockerfile: {}",
                                go_error("open", &path, &e)
                            ),
                        })?;
                        let mut text = Vec::new();
                        f.read_to_end(&mut text).map_err(|e| CliError::Status {
                            code: 1,
                            message: go_error("read", &path, &e),
                        })?;
                        extra = Some(ExtraDockerfile::new(text)?);
                    }
                }
            }
        }
        let ignore = match fs::read(root.join(".dockerignore")) {
            Ok(text) => Dockerignore::parse(&text).map_err(|e| CliError::Status {
                code: 1,
                message: format!("error checking context: {e}"),
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Dockerignore::default(),
            Err(e) => {
                return Err(CliError::Status {
                    code: 1,
                    message: format!(
                        "error checking context: {}",
                        go_error("open", &root.join(".dockerignore"), &e)
                    ),
                })
            }
        };
        let tree = list_tree(&root, &ignore)?;
        let paths = ignore.sent_paths(&tree, dockerfile_in_context.as_deref());
        let name = match &extra {
            Some(x) => x.name.clone(),
            None => dockerfile_in_context.unwrap_or_else(|| "Dockerfile".into()),
        };
        Ok((DirContext { root, paths, extra }, name))
    }

    /// Writes the context as a tar (`TarWithOptions` with owners 0:0, mtimes in seconds,
    /// hard links as links to the first path of their inode).
    fn write_tar(&self, w: impl Write) -> io::Result<()> {
        let mut tar = Builder::new(w);
        let mut inodes: BTreeMap<(u64, u64), String> = BTreeMap::new();
        let mut sent_dockerignore = false;
        for rel in &self.paths {
            let path = self.root.join(rel);
            let md = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                // Gone since the walk: docker's walk would not have seen it either.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let name = if md.is_dir() {
                format!("{rel}/")
            } else {
                rel.clone()
            };
            // Sockets are not archived (Go's tar has no type for them).
            let Some(mut e) = Entry::from_metadata(name, &path, &md)? else {
                continue;
            };
            // Owned by root, as the docker CLI sends a context.
            (e.uid, e.gid) = (0, 0);
            let kind = e.kind;
            if kind == Kind::File && rel == ".dockerignore" {
                if let Some(x) = &self.extra {
                    let text = x.dockerignore(Some(&fs::read(&path)?));
                    e.size = text.len() as u64;
                    tar.append(&e, &text[..])?;
                    sent_dockerignore = true;
                    continue;
                }
            }
            if kind == Kind::File && md.nlink() > 1 {
                if let Some(first) = inodes.get(&(md.dev(), md.ino())) {
                    e.kind = Kind::HardLink;
                    e.link = first.clone().into_bytes();
                    tar.append(&e, io::empty())?;
                    continue;
                }
                inodes.insert((md.dev(), md.ino()), rel.clone());
            }
            if kind == Kind::File {
                e.size = md.len();
                tar.append(&e, fs::File::open(&path)?)?;
            } else {
                tar.append(&e, io::empty())?;
            }
        }
        if let Some(x) = &self.extra {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let mut e = Entry::new(x.name.clone().into_bytes(), Kind::File);
            e.mode = 0o600;
            e.mtime = now;
            e.size = x.text.len() as u64;
            tar.append(&e, &x.text[..])?;
            if !sent_dockerignore {
                let text = x.dockerignore(None);
                let mut e = Entry::new(b".dockerignore".to_vec(), Kind::File);
                e.mode = 0o600;
                e.mtime = now;
                e.size = text.len() as u64;
                tar.append(&e, &text[..])?;
            }
        }
        tar.finish()?;
        Ok(())
    }
}

/// A tar with one file, `Dockerfile` (a Dockerfile given as the context on stdin).
fn dockerfile_tar(text: &[u8]) -> io::Result<Vec<u8>> {
    let mut e = Entry::new(b"Dockerfile".to_vec(), Kind::File);
    e.mtime = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    e.size = text.len() as u64;
    let mut tar = Builder::new(Vec::new());
    tar.append(&e, text)?;
    tar.finish()
}

/// The pipe end the tar is read from; at its end, the writer's failure (an unreadable file)
/// becomes this reader's error, so the request breaks off instead of sending a cut context.
struct TarPipe {
    pipe: UnixStream,
    failed: mpsc::Receiver<io::Error>,
}

impl Read for TarPipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.pipe.read(buf)?;
        if n == 0 {
            // The writer has dropped its end: it finished or failed.
            if let Ok(e) = self.failed.recv_timeout(Duration::from_secs(5)) {
                return Err(e);
            }
        }
        Ok(n)
    }
}

/// Counts what passes and prints a progress line as docker's progress reader does through
/// its raw formatter (`ACTION PROGRESS\r`): an update each 512 kB (each 1% of a known size if
/// less), at most every 100 ms, and the last one at the end.
struct Progress<'a, R> {
    inner: R,
    out: &'a mut dyn Write,
    action: String,
    /// The size when known (a download's Content-Length), else 0.
    total: u64,
    /// Print the updates before the last (docker shows only the last one of the upload
    /// when stdout is not a terminal).
    updates: bool,
    /// End the last update with a line end (the upload's; a download's does not get one).
    newline: bool,
    current: u64,
    last_update: u64,
    last_print: Option<Instant>,
    ended: bool,
}

impl<'a, R> Progress<'a, R> {
    fn new(inner: R, out: &'a mut dyn Write, action: String) -> Self {
        Progress {
            inner,
            out,
            action,
            total: 0,
            updates: false,
            newline: true,
            current: 0,
            last_update: 0,
            last_print: None,
            ended: false,
        }
    }

    /// docker's `JSONProgress.String` for a width of 200 (what it takes when not a terminal).
    fn text(&self) -> String {
        let current = human_size(self.current as f64, 4);
        if self.total == 0 {
            return format!("{current:>8}");
        }
        let half = ((self.current as f64 / self.total as f64 * 100.0) as usize / 2).min(50);
        let bar = format!("[{}>{}] ", "=".repeat(half), " ".repeat(50 - half));
        if self.current > self.total {
            format!("{bar}{current:>8}")
        } else {
            format!("{bar}{current:>8}/{}", human_size(self.total as f64, 4))
        }
    }

    fn print(&mut self, last: bool) {
        let line = format!("{} {}\r", self.action, self.text());
        let _ = self.out.write_all(line.as_bytes());
        if last && self.newline {
            let _ = self.out.write_all(b"\r\n");
        }
        let _ = self.out.flush();
    }
}

impl<R: Read> Read for Progress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.current += n as u64;
        let mut every = 512 * 1024;
        if self.total > 0 {
            every = every.min(self.total / 100);
        }
        if n == 0 {
            if !self.ended {
                self.ended = true;
                self.print(true);
            }
        } else if self.current - self.last_update > every {
            self.last_update = self.current;
            if self.updates
                && self
                    .last_print
                    .is_none_or(|t| t.elapsed() >= Duration::from_millis(100))
            {
                self.last_print = Some(Instant::now());
                self.print(false);
            }
        }
        Ok(n)
    }
}

const SENDING: &str = "Sending build context to Docker daemon";

/// Remembers the `errorDetail.code` of the message stream passing through (docker's exit
/// code for a failed build: the failed `RUN`'s status when the daemon gives it).
struct ErrorCode<R> {
    inner: R,
    line: Vec<u8>,
    code: Option<i32>,
}

impl<R: Read> Read for ErrorCode<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            if b == b'\n' {
                if let Ok(v) = serde_json::from_slice::<Value>(&self.line) {
                    if let Some(c) = v["errorDetail"]["code"].as_i64().filter(|c| *c != 0) {
                        self.code = i32::try_from(c).ok();
                    }
                }
                self.line.clear();
            } else if self.line.len() < 1 << 20 {
                self.line.push(b);
            }
        }
        Ok(n)
    }
}

/// `X-Registry-Config`: every credential of config.json (`auths` and `credHelpers`), keyed
/// by server address, base64url of the JSON, as `docker build` sends it for FROM pulls.
fn registry_config(ctx: &Ctx) -> String {
    use crate::image::registry::auth::{Credentials, DockerConfig};
    use base64::Engine as _;
    let mut all = Map::new();
    if let Ok(Some(config)) = DockerConfig::load_if_exists(&ctx.config_dir.join("config.json")) {
        let keys: Vec<String> = config
            .auths
            .keys()
            .chain(config.cred_helpers.keys())
            .cloned()
            .collect();
        for registry in keys {
            let v = match config.lookup(&registry) {
                Ok(Some(Credentials::Basic { username, password })) => {
                    json!({"username": username, "password": password, "serveraddress": registry})
                }
                Ok(Some(Credentials::IdentityToken(t))) => {
                    json!({"identitytoken": t, "serveraddress": registry})
                }
                _ => continue,
            };
            all.insert(registry, v);
        }
    }
    base64::engine::general_purpose::URL_SAFE.encode(Value::Object(all).to_string())
}

/// `KEY=VAL` items into a JSON object; a bare `KEY` takes the environment's value, or null
/// when it has none (docker's `--build-arg` rules).
fn build_args(items: &[String]) -> Value {
    let mut m = Map::new();
    for i in items {
        match i.split_once('=') {
            Some((k, v)) => m.insert(k.to_owned(), json!(v)),
            None => m.insert(i.clone(), std::env::var(i).map_or(Value::Null, Value::from)),
        };
    }
    Value::Object(m)
}

use super::q;

/// The query of `POST /build` for these flags.
fn query(a: &BuildArgs, dockerfile: &str) -> Result<String, CliError> {
    let mut qs: Vec<String> = a.tag.iter().map(|t| format!("t={}", q(t))).collect();
    qs.push(format!("dockerfile={}", q(dockerfile)));
    if a.quiet {
        qs.push("q=1".into());
    }
    if a.no_cache {
        qs.push("nocache=1".into());
    }
    qs.push(format!("rm={}", u8::from(a.rm)));
    if a.force_rm {
        qs.push("forcerm=1".into());
    }
    if a.pull {
        qs.push("pull=1".into());
    }
    if let Some(t) = &a.target {
        qs.push(format!("target={}", q(t)));
    }
    if let Some(n) = &a.network {
        qs.push(format!("networkmode={}", q(n)));
    }
    let platform = a
        .platform
        .clone()
        .or_else(|| std::env::var("DOCKER_DEFAULT_PLATFORM").ok())
        .filter(|p| !p.is_empty());
    if let Some(p) = platform {
        qs.push(format!("platform={}", q(&p.to_lowercase())));
    }
    if !a.build_arg.is_empty() {
        qs.push(format!(
            "buildargs={}",
            q(&build_args(&a.build_arg).to_string())
        ));
    }
    if !a.label.is_empty() {
        let labels: Map<String, Value> = specs::key_values(&a.label)
            .into_iter()
            .map(|(k, v)| (k, Value::from(v)))
            .collect();
        qs.push(format!("labels={}", q(&Value::Object(labels).to_string())));
    }
    if !a.cache_from.is_empty() {
        qs.push(format!("cachefrom={}", q(&json!(a.cache_from).to_string())));
    }
    for (key, value) in [("shmsize", &a.shm_size), ("memory", &a.memory)] {
        if let Some(v) = value {
            qs.push(format!("{key}={}", specs::size(v)?));
        }
    }
    if let Some(m) = &a.memory_swap {
        let v = if m == "-1" { -1 } else { specs::size(m)? };
        qs.push(format!("memswap={v}"));
    }
    for (key, value) in [
        ("cpushares", a.cpu_shares),
        ("cpuperiod", a.cpu_period),
        ("cpuquota", a.cpu_quota),
    ] {
        if let Some(v) = value {
            qs.push(format!("{key}={v}"));
        }
    }
    if let Some(c) = &a.cpuset_cpus {
        qs.push(format!("cpusetcpus={}", q(c)));
    }
    if let Some(c) = &a.cpuset_mems {
        qs.push(format!("cpusetmems={}", q(c)));
    }
    qs.push("version=1".into());
    Ok(qs.join("&"))
}

/// Reads the first bytes of `r` (up to [`ARCHIVE_HEADER`]) and gives them back with the rest.
fn peek(mut r: impl Read) -> io::Result<(Vec<u8>, impl Read)> {
    let mut head = Vec::with_capacity(ARCHIVE_HEADER);
    (&mut r)
        .take(ARCHIVE_HEADER as u64)
        .read_to_end(&mut head)?;
    Ok((head.clone(), io::Cursor::new(head).chain(r)))
}

/// Where the context comes from, resolved.
enum Source {
    /// A directory, written as a tar by a thread while it is sent.
    Dir(DirContext),
    /// A context read from a stream (stdin, a download) and sent as it is.
    Stream(Box<dyn Read>),
}

/// A context from a stream (`GetContextFromReader`): an archive passes through, anything else
/// is a Dockerfile.
fn from_reader(r: impl Read + 'static, file: Option<&str>) -> Result<(Source, String), CliError> {
    let (head, r) = peek(r).map_err(|e| CliError::Status {
        code: 1,
        message: format!(
            "unable to prepare context: failed to peek context header from STDIN: {e}"
        ),
    })?;
    if is_archive(&head) {
        return Ok((
            Source::Stream(Box::new(r)),
            file.unwrap_or("Dockerfile").to_owned(),
        ));
    }
    if file == Some("-") {
        return Err(prepare_error("build context is not an archive".into()));
    }
    let mut text = Vec::new();
    let mut r = r;
    r.read_to_end(&mut text)
        .map_err(CliError::io("read the Dockerfile"))?;
    if file.is_some() {
        return Err(prepare_error(
            "ambiguous Dockerfile source: both stdin and flag correspond to Dockerfiles".into(),
        ));
    }
    let tar = dockerfile_tar(&text).map_err(CliError::io("make the context"))?;
    Ok((
        Source::Stream(Box::new(io::Cursor::new(tar))),
        "Dockerfile".into(),
    ))
}

/// docker's `urlutil.IsGitURL`.
fn is_git_url(s: &str) -> bool {
    let url_like = s.starts_with("http://") || s.starts_with("https://");
    s.starts_with("git://")
        || s.starts_with("git@")
        || s.starts_with("github.com/")
        || (url_like && s.split('#').next().unwrap_or(s).ends_with(".git"))
}

/// Downloads a context (`GetContextFromURL`), with docker's progress line.
fn download(url: &str, out: &mut dyn Write) -> Result<Vec<u8>, CliError> {
    let fail = |why: String| CliError::Status {
        code: 1,
        message: format!(
            "unable to prepare context: unable to download remote context {url}: {why}"
        ),
    };
    let resp = ureq::get(url).call().map_err(|e| fail(e.to_string()))?;
    let total = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = Vec::new();
    let mut p = Progress::new(
        resp.into_body().into_reader(),
        out,
        format!("Downloading build context from remote url: {url}"),
    );
    p.total = total;
    p.updates = true;
    p.newline = false;
    p.read_to_end(&mut body).map_err(|e| fail(e.to_string()))?;
    Ok(body)
}

/// Clones a git context (`GetContextFromGitURL`): `URL#REF:DIR`, depth 1, submodules too.
fn clone_git(url: &str) -> Result<(tempfile::TempDir, PathBuf), CliError> {
    let (repo, fragment) = url.split_once('#').unwrap_or((url, ""));
    let (reference, subdir) = fragment.split_once(':').unwrap_or((fragment, ""));
    let repo = if repo.starts_with("github.com/") {
        format!("https://{repo}")
    } else {
        repo.to_owned()
    };
    let dir = tempfile::Builder::new()
        .prefix("refeng-build-git-")
        .tempdir()
        .map_err(CliError::io("make a directory for the git context"))?;
    let mut cmd = std::process::Command::new("git");
    cmd.args(["clone", "--quiet", "--recurse-submodules", "--depth", "1"]);
    if !reference.is_empty() {
        cmd.args(["--branch", reference]);
    }
    cmd.arg(&repo)
        .arg(dir.path())
        .stdin(std::process::Stdio::null());
    let out = cmd.output().map_err(|e| CliError::Status {
        code: 1,
        message: format!("unable to prepare context: unable to find 'git': {e}"),
    })?;
    if !out.status.success() {
        return Err(prepare_error(format!(
            "unable to 'git clone' to temporary context directory: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let at = dir.path().join(subdir);
    Ok((dir, at))
}

/// `build`.
///
/// # Errors
/// Unsupported flags, an unusable context or Dockerfile, the daemon's errors and the build's
/// own (with the failed step's exit code when the daemon gives one).
pub fn build(ctx: &Ctx, a: BuildArgs) -> Result<(), CliError> {
    if let Some(flag) = a.unsupported() {
        return Err(CliError::Usage(format!(
            "{flag} is not supported by refeng build: refengd's classic builder does not have it"
        )));
    }
    if a.file.as_deref() == Some("-") && a.context == "-" {
        return Err(CliError::Status {
            code: 1,
            message: "invalid argument: can't use stdin for both build context and dockerfile"
                .into(),
        });
    }
    if let Some(f) = &a.iidfile {
        // No stale id if this build fails.
        match fs::remove_file(f) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(CliError::Status {
                    code: 1,
                    message: format!("Removing image ID file: {}", go_error("remove", f, &e)),
                })
            }
            _ => {}
        }
    }
    // docker's `progBuff` and `buildBuff`: the terminal, or buffers when quiet.
    let mut prog: Vec<u8> = Vec::new();
    let mut stdout = io::stdout().lock();
    let quiet = a.quiet;
    let progress: &mut dyn Write = if quiet { &mut prog } else { &mut stdout };
    let mut git_dir = None;
    let terminal = !quiet && io::stdout().is_terminal();
    // A downloaded archive is sent without a line of its own, as docker does (its upload
    // progress never sees the end of that stream); a downloaded Dockerfile gets both lines.
    let mut silent_send = false;
    let (source, dockerfile) = if a.context == "-" {
        from_reader(io::stdin(), a.file.as_deref())?
    } else if Path::new(&a.context).symlink_metadata().is_ok() {
        let (c, name) = DirContext::open(&a.context, a.file.as_deref())?;
        (Source::Dir(c), name)
    } else if is_git_url(&a.context) {
        let (dir, at) = clone_git(&a.context)?;
        let file = a
            .file
            .as_deref()
            .map(|f| at.join(f).to_string_lossy().into_owned());
        let (c, name) = DirContext::open(&at.to_string_lossy(), file.as_deref())?;
        git_dir = Some(dir);
        (Source::Dir(c), name)
    } else if a.context.starts_with("http://") || a.context.starts_with("https://") {
        let body = download(&a.context, progress)?;
        if is_archive(&body[..body.len().min(ARCHIVE_HEADER)]) {
            silent_send = true;
        } else {
            let _ = progress.write_all(b"\r\n");
        }
        from_reader(io::Cursor::new(body), a.file.as_deref())?
    } else {
        return Err(prepare_error(format!(
            "path {} not found",
            quoted(&a.context)
        )));
    };
    let path = format!("/build?{}", query(&a, &dockerfile)?);
    let config = registry_config(ctx);
    let headers = [("X-Registry-Config", config.as_str())];

    let response = match source {
        Source::Dir(c) => {
            // A socket pair as the pipe (its ends are std types on every supported Rust).
            let (reader, writer) = UnixStream::pair().map_err(CliError::io("make a pipe"))?;
            let (fail_tx, fail_rx) = mpsc::channel();
            let compress = a.compress;
            let writer_thread = std::thread::spawn(move || {
                let r = if compress {
                    let gz = flate2::write::GzEncoder::new(writer, flate2::Compression::fast());
                    c.write_tar(gz)
                } else {
                    c.write_tar(io::BufWriter::with_capacity(256 * 1024, writer))
                };
                if let Err(e) = r {
                    // A daemon that stopped reading is reported by the request itself.
                    if e.kind() != io::ErrorKind::BrokenPipe {
                        let _ = fail_tx.send(e);
                    }
                }
            });
            let mut sending = Progress::new(
                TarPipe {
                    pipe: reader,
                    failed: fail_rx,
                },
                progress,
                SENDING.into(),
            );
            sending.updates = terminal;
            let r = ctx.client.request(
                "POST",
                &path,
                &headers,
                Body::Stream(&mut sending, "application/x-tar"),
            );
            drop(sending);
            let _ = writer_thread.join();
            r
        }
        Source::Stream(mut r) => {
            let mut sink = io::sink();
            let out: &mut dyn Write = if silent_send { &mut sink } else { progress };
            let mut sending = Progress::new(&mut r, out, SENDING.into());
            sending.updates = terminal;
            let r = ctx.client.request(
                "POST",
                &path,
                &headers,
                Body::Stream(&mut sending, "application/x-tar"),
            );
            r
        }
    };
    drop(git_dir);
    let response = response?.ok()?;
    let mut stream = ErrorCode {
        inner: response,
        line: Vec::new(),
        code: None,
    };
    let mut buffered: Vec<u8> = Vec::new();
    let result = if quiet {
        display_messages(&mut stream, &mut buffered, None)
    } else {
        let terminal = super::stream::terminal_width(io::stdout());
        display_messages(&mut stream, &mut stdout, terminal)
    };
    let messages = match result {
        Ok(m) => m,
        Err(CliError::Status { message, .. }) => {
            if quiet {
                let mut err = io::stderr().lock();
                let _ = err.write_all(&prog);
                let _ = err.write_all(&buffered);
            }
            return Err(CliError::Status {
                code: stream.code.unwrap_or(1),
                message,
            });
        }
        Err(e) => return Err(e),
    };
    let image_id = messages
        .iter()
        .rev()
        .find_map(|m| m["aux"]["ID"].as_str())
        .unwrap_or("")
        .to_owned();
    if let Some(f) = &a.iidfile {
        if image_id.is_empty() {
            return Err(CliError::Status {
                code: 1,
                message: format!(
                    "Server did not provide an image ID. Cannot write {}",
                    f.display()
                ),
            });
        }
        fs::write(f, &image_id).map_err(CliError::io(format!("write {}", f.display())))?;
    }
    if quiet {
        stdout
            .write_all(&buffered)
            .and_then(|()| stdout.flush())
            .map_err(CliError::io("stdout"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_are_told_from_dockerfiles() {
        assert!(is_archive(&[0x1f, 0x8b, 0x08, 0]));
        assert!(is_archive(b"BZh91AY"));
        let tar = dockerfile_tar(b"FROM scratch\n").unwrap();
        assert!(is_archive(&tar[..ARCHIVE_HEADER]));
        let mut broken = tar.clone();
        broken[0] ^= 1;
        assert!(!is_archive(&broken[..ARCHIVE_HEADER]));
        assert!(!is_archive(b"FROM busybox\nRUN true\n"));
        assert!(!is_archive(&[b' '; ARCHIVE_HEADER]));
    }

    #[test]
    fn git_urls_are_recognised_as_docker_does() {
        assert!(is_git_url("git://host/repo"));
        assert!(is_git_url("git@github.com:a/b"));
        assert!(is_git_url("github.com/a/b"));
        assert!(is_git_url("https://host/a/b.git#main:dir"));
        assert!(!is_git_url("https://host/ctx.tar"));
        assert!(!is_git_url("./dir"));
    }

    #[test]
    fn build_args_take_the_environment_or_null() {
        std::env::set_var("REFENG_BUILD_TEST_ARG", "from-env");
        let v = build_args(&[
            "A=1".into(),
            "B=".into(),
            "REFENG_BUILD_TEST_ARG".into(),
            "REFENG_BUILD_TEST_UNSET".into(),
        ]);
        assert_eq!(
            v,
            json!({"A": "1", "B": "", "REFENG_BUILD_TEST_ARG": "from-env", "REFENG_BUILD_TEST_UNSET": null})
        );
    }

    #[test]
    fn an_extra_dockerfile_is_listed_in_the_dockerignore() {
        let x = ExtraDockerfile::new(b"FROM a\n".to_vec()).unwrap();
        assert!(
            x.name.starts_with(".dockerfile.") && x.name.len() == 32,
            "{}",
            x.name
        );
        assert_eq!(
            x.dockerignore(None),
            format!(".dockerignore\n{}\n", x.name).into_bytes()
        );
        assert_eq!(
            x.dockerignore(Some(b"*.log")),
            format!("*.log\n{}\n", x.name).into_bytes()
        );
        let d = Dockerignore::parse(&x.dockerignore(Some(b"*.log"))).unwrap();
        assert!(d.matches(&x.name));
    }

    #[test]
    fn registry_config_carries_config_json_credentials_as_dockerd_reads_them() {
        use base64::Engine as _;
        let dir = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("user:secret");
        fs::write(
            dir.path().join("config.json"),
            json!({"auths": {"127.0.0.1:5000": {"auth": auth}, "http://other:5001/v2/": {"identitytoken": "tok"}}})
                .to_string(),
        )
        .unwrap();
        let ctx = Ctx {
            client: super::super::client::Client::new(super::super::client::Endpoint {
                transport: super::super::client::Transport::Unix(dir.path().join("sock")),
                address: "unix:///nowhere".into(),
                refengd_default: false,
            }),
            config_dir: dir.path().to_path_buf(),
        };
        let header = registry_config(&ctx);
        let got = crate::engine::auth::decode_config(&header).unwrap();
        let by_host: BTreeMap<String, String> = got
            .iter()
            .map(|(h, c)| (h.clone(), format!("{c:?}")))
            .collect();
        assert_eq!(by_host["127.0.0.1:5000"], "Basic(user, ***)");
        assert_eq!(by_host["other:5001"], "IdentityToken(***)");
        // Without a config.json: an empty object, as docker sends.
        let empty = tempfile::tempdir().unwrap();
        let ctx = Ctx {
            config_dir: empty.path().to_path_buf(),
            ..ctx
        };
        let plain = base64::engine::general_purpose::URL_SAFE
            .decode(registry_config(&ctx))
            .unwrap();
        assert_eq!(plain, b"{}");
    }

    #[test]
    fn the_sending_line_is_dockers() {
        let mut out = Vec::new();
        let mut s = Progress::new(&[0u8; 2048][..], &mut out, SENDING.into());
        io::copy(&mut s, &mut io::sink()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Sending build context to Docker daemon  2.048kB\r\r\n"
        );
        let mut out = Vec::new();
        let mut d = Progress::new(&[0u8; 10240][..], &mut out, "Downloading".into());
        d.total = 10240;
        d.newline = false;
        io::copy(&mut d, &mut io::sink()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("Downloading [{}>]  10.24kB/10.24kB\r", "=".repeat(50))
        );
    }
}
