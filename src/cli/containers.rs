//! The container commands: run, create, ps, rm, start, stop, restart, kill, wait, logs,
//! pause, unpause, rename, exec and attach, with docker's flags, output and exit codes.

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::client::{Body, ClientError, Conn};
use super::format::{self, ellipsis, short_id, Format};
use super::specs::{self, VolumeSpec};
use super::stream::{self, Ended, RawTerminal};
use super::{images, CliError, Ctx};

/// docker run flags that refengd has no equivalent for: refused by name before anything is
/// sent, rather than silently dropped.
const UNSUPPORTED_RUN_FLAGS: &[&str] = &[
    "--add-host",
    "--annotation",
    "--blkio-weight",
    "--blkio-weight-device",
    "--cgroup-parent",
    "--cgroupns",
    "--cidfile",
    "--cpu-period",
    "--cpu-quota",
    "--cpu-rt-period",
    "--cpu-rt-runtime",
    "--cpuset-mems",
    "--device-cgroup-rule",
    "--device-read-bps",
    "--device-read-iops",
    "--device-write-bps",
    "--device-write-iops",
    "--disable-content-trust",
    "--dns-option",
    "--domainname",
    "--gpus",
    "--health-start-interval",
    "--io-maxbandwidth",
    "--io-maxiops",
    "--ip6",
    "--ipc",
    "--isolation",
    "--kernel-memory",
    "--link",
    "--link-local-ip",
    "--log-driver",
    "--log-opt",
    "--mac-address",
    "--memory-swappiness",
    "--oom-score-adj",
    "--pid",
    "--platform",
    "--runtime",
    "--storage-opt",
    "--sysctl",
    "--userns",
    "--uts",
    "--volume-driver",
    "--volumes-from",
];

/// A docker flag refeng does not support, named in the error, for `run` and `create`.
pub fn refuse_unsupported(args: &[std::ffi::OsString]) -> Option<CliError> {
    let words: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // The command word: the first word that is no global flag or its value, then the one
    // after `container`; only `run` and `create` are checked.
    let mut i = 1;
    while i < words.len() && words[i].starts_with('-') {
        let takes_value = !words[i].contains('=')
            && matches!(
                words[i].as_str(),
                "-H" | "--host"
                    | "-c"
                    | "--context"
                    | "--config"
                    | "-l"
                    | "--log-level"
                    | "--tlscacert"
                    | "--tlscert"
                    | "--tlskey"
            );
        i += if takes_value { 2 } else { 1 };
    }
    if words.get(i).map(String::as_str) == Some("container") {
        i += 1;
    }
    let verb_at = i;
    if !matches!(
        words.get(verb_at).map(String::as_str),
        Some("run" | "create")
    ) {
        return None;
    }
    // Only the flags before the image: what follows belongs to the container's command.
    for w in &words[verb_at + 1..] {
        if !w.starts_with('-') {
            break;
        }
        let name = w.split('=').next().unwrap_or(w);
        if UNSUPPORTED_RUN_FLAGS.contains(&name) {
            return Some(CliError::Usage(format!(
                "{name} is not supported by refeng {}: leave it out",
                words[verb_at]
            )));
        }
    }
    None
}

/// Escapes a name or id for a URL path segment.
pub fn path_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

use super::q;

/// `run` and `create`.
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Print usage
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<String>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Add a host device to the container
    #[arg(long)]
    pub device: Vec<String>,
    /// Set custom DNS servers
    #[arg(long)]
    pub dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// Expose a port or a range of ports
    #[arg(long)]
    pub expose: Vec<String>,
    /// Add additional groups to join
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    /// Command to run to check health
    #[arg(long = "health-cmd")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h)
    #[arg(long = "health-interval")]
    pub health_interval: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries")]
    pub health_retries: Option<i64>,
    /// Start period for the container to initialize before counting retries
    #[arg(long = "health-start-period")]
    pub health_start_period: Option<String>,
    /// Maximum time to allow one check to run
    #[arg(long = "health-timeout")]
    pub health_timeout: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    pub ip: Option<String>,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// Memory limit
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    /// Attach a filesystem mount to the container
    #[arg(long)]
    pub mount: Vec<String>,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Connect a container to a network
    #[arg(long, visible_alias = "net")]
    pub network: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", visible_alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// Disable OOM Killer
    #[arg(long = "oom-kill-disable")]
    pub oom_kill_disable: bool,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Publish a container's port(s) to the host
    #[arg(short = 'p', long)]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Suppress the pull output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    pub restart: Option<String>,
    /// Automatically remove the container and its associated anonymous volumes when it exits
    #[arg(long)]
    pub rm: bool,
    /// Security Options
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Size of /dev/shm
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// Proxy received signals to the process
    #[arg(long = "sig-proxy", default_value = "true", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub sig_proxy: bool,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<i64>,
    /// Mount a tmpfs directory
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Ulimit options
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Bind mount a volume
    #[arg(short = 'v', long)]
    pub volume: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// The image to run
    pub image: String,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

fn env_lookup(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// Go duration text (`1m30s`, `500ms`) as nanoseconds.
fn go_duration(s: &str) -> Option<i64> {
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest == "0" {
        return Some(0);
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Some(total as i64)
}

/// The create request body of `run`/`create`.
///
/// # Errors
/// Specs that do not parse, unreadable env files.
pub fn create_body(a: &RunArgs) -> Result<Value, CliError> {
    let mut env = Vec::new();
    for f in &a.env_file {
        let text = std::fs::read_to_string(f).map_err(CliError::io(format!("open {f}")))?;
        env.extend(specs::env_file(f, &text, env_lookup)?);
    }
    for e in &a.env {
        env.push(specs::env_flag(e, env_lookup)?);
    }
    let (mut exposed, bindings) = specs::ports(&a.publish)?;
    for e in &a.expose {
        let (p, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        let (e0, e1) = match p.split_once('-') {
            Some((x, y)) => (x, y),
            None => (p, p),
        };
        let bad = || specs::SpecError::Port(format!("invalid range format for --expose: {e}"));
        let (x, y): (u16, u16) = (
            e0.parse().map_err(|_| bad())?,
            e1.parse().map_err(|_| bad())?,
        );
        for port in x..=y {
            exposed.insert(format!("{port}/{proto}"), json!({}));
        }
    }
    let mut volumes = Map::new();
    let mut binds = Vec::new();
    for v in &a.volume {
        match specs::volume(v)? {
            VolumeSpec::Anonymous(p) => {
                volumes.insert(p, json!({}));
            }
            VolumeSpec::Bind(b) => binds.push(b),
        }
    }
    let mounts: Vec<Value> = a
        .mount
        .iter()
        .map(|m| specs::mount(m))
        .collect::<Result<_, _>>()?;
    let mut tmpfs = Map::new();
    for t in &a.tmpfs {
        let (p, o) = specs::tmpfs(t)?;
        tmpfs.insert(p, Value::String(o));
    }
    let labels = specs::key_values(&a.label);
    let entrypoint = match &a.entrypoint {
        None => Value::Null,
        Some(e) if e.is_empty() => json!([""]),
        Some(e) => json!([e]),
    };
    let cmd = if a.command.is_empty() {
        Value::Null
    } else {
        json!(a.command)
    };
    let attach = !a.detach;
    let mut host = Map::new();
    host.insert("Binds".into(), json!(binds));
    host.insert(
        "NetworkMode".into(),
        json!(a.network.clone().unwrap_or_else(|| "default".into())),
    );
    host.insert("PortBindings".into(), json!(bindings));
    host.insert(
        "RestartPolicy".into(),
        match &a.restart {
            Some(r) => specs::restart(r)?,
            None => json!({"Name": "no", "MaximumRetryCount": 0}),
        },
    );
    host.insert("AutoRemove".into(), json!(a.rm));
    if a.tty {
        if let Some((h, w)) = stream::terminal_size() {
            host.insert("ConsoleSize".into(), json!([h, w]));
        }
    }
    host.insert("CapAdd".into(), json!(a.cap_add));
    host.insert("CapDrop".into(), json!(a.cap_drop));
    host.insert("Dns".into(), json!(a.dns));
    host.insert("DnsSearch".into(), json!(a.dns_search));
    host.insert("GroupAdd".into(), json!(a.group_add));
    host.insert("Privileged".into(), json!(a.privileged));
    host.insert("PublishAllPorts".into(), json!(a.publish_all));
    host.insert("ReadonlyRootfs".into(), json!(a.read_only));
    host.insert("SecurityOpt".into(), json!(a.security_opt));
    if a.init {
        host.insert("Init".into(), json!(true));
    }
    if !tmpfs.is_empty() {
        host.insert("Tmpfs".into(), Value::Object(tmpfs));
    }
    if !mounts.is_empty() {
        host.insert("Mounts".into(), json!(mounts));
    }
    if let Some(m) = &a.memory {
        let v = specs::size(m).map_err(CliError::flag("-m, --memory", m))?;
        host.insert("Memory".into(), json!(v));
    }
    if let Some(m) = &a.memory_reservation {
        let v = specs::size(m).map_err(CliError::flag("--memory-reservation", m))?;
        host.insert("MemoryReservation".into(), json!(v));
    }
    if let Some(m) = &a.memory_swap {
        let v = if m == "-1" { -1 } else { specs::size(m)? };
        host.insert("MemorySwap".into(), json!(v));
    }
    if let Some(c) = &a.cpus {
        host.insert("NanoCpus".into(), json!(specs::cpus(c)?));
    }
    if let Some(c) = &a.cpuset_cpus {
        host.insert("CpusetCpus".into(), json!(c));
    }
    if let Some(c) = a.cpu_shares {
        host.insert("CpuShares".into(), json!(c));
    }
    if let Some(p) = a.pids_limit {
        host.insert("PidsLimit".into(), json!(p));
    }
    if a.oom_kill_disable {
        host.insert("OomKillDisable".into(), json!(true));
    }
    if let Some(s) = &a.shm_size {
        host.insert("ShmSize".into(), json!(specs::size(s)?));
    }
    if !a.device.is_empty() {
        let devices: Vec<Value> = a
            .device
            .iter()
            .map(|d| {
                let parts: Vec<&str> = d.split(':').collect();
                let host_path = parts[0];
                let (inner, perms) = match parts.as_slice() {
                    [_, c, p] => (*c, *p),
                    [_, c] if c.starts_with('/') => (*c, "rwm"),
                    [_, p] => (host_path, *p),
                    _ => (host_path, "rwm"),
                };
                json!({"PathOnHost": host_path, "PathInContainer": inner, "CgroupPermissions": perms})
            })
            .collect();
        host.insert("Devices".into(), json!(devices));
    }
    if !a.ulimit.is_empty() {
        let mut ul = Vec::new();
        for u in &a.ulimit {
            let bad = || CliError::Usage(format!("invalid ulimit {u:?}: use name=soft[:hard]"));
            let (name, vals) = u.split_once('=').ok_or_else(bad)?;
            let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
            let soft: i64 = soft.parse().map_err(|_| bad())?;
            let hard: i64 = hard.parse().map_err(|_| bad())?;
            ul.push(json!({"Name": name, "Soft": soft, "Hard": hard}));
        }
        host.insert("Ulimits".into(), json!(ul));
    }
    let mut body = Map::new();
    body.insert(
        "Hostname".into(),
        json!(a.hostname.clone().unwrap_or_default()),
    );
    body.insert("User".into(), json!(a.user.clone().unwrap_or_default()));
    body.insert("AttachStdin".into(), json!(attach && a.interactive));
    body.insert("AttachStdout".into(), json!(attach));
    body.insert("AttachStderr".into(), json!(attach));
    body.insert("Tty".into(), json!(a.tty));
    body.insert("OpenStdin".into(), json!(a.interactive));
    body.insert("StdinOnce".into(), json!(attach && a.interactive));
    body.insert("Env".into(), json!(env));
    body.insert("Cmd".into(), cmd);
    body.insert("Entrypoint".into(), entrypoint);
    body.insert("Image".into(), json!(a.image));
    body.insert("Volumes".into(), Value::Object(volumes));
    body.insert(
        "WorkingDir".into(),
        json!(a.workdir.clone().unwrap_or_default()),
    );
    body.insert("Labels".into(), json!(labels));
    if !exposed.is_empty() {
        body.insert("ExposedPorts".into(), json!(exposed));
    }
    if let Some(s) = &a.stop_signal {
        body.insert("StopSignal".into(), json!(s));
    }
    if let Some(t) = a.stop_timeout {
        body.insert("StopTimeout".into(), json!(t));
    }
    let health_set = a.health_cmd.is_some()
        || a.health_interval.is_some()
        || a.health_retries.is_some()
        || a.health_timeout.is_some()
        || a.health_start_period.is_some();
    if a.no_healthcheck {
        body.insert("Healthcheck".into(), json!({"Test": ["NONE"]}));
    } else if health_set {
        let dur = |s: &Option<String>, flag: &str| -> Result<i64, CliError> {
            match s {
                None => Ok(0),
                Some(t) => go_duration(t)
                    .ok_or_else(|| CliError::Usage(format!("invalid duration {t:?} for {flag}"))),
            }
        };
        let mut hc = Map::new();
        if let Some(c) = &a.health_cmd {
            hc.insert("Test".into(), json!(["CMD-SHELL", c]));
        }
        hc.insert(
            "Interval".into(),
            json!(dur(&a.health_interval, "--health-interval")?),
        );
        hc.insert(
            "Timeout".into(),
            json!(dur(&a.health_timeout, "--health-timeout")?),
        );
        hc.insert(
            "StartPeriod".into(),
            json!(dur(&a.health_start_period, "--health-start-period")?),
        );
        hc.insert("Retries".into(), json!(a.health_retries.unwrap_or(0)));
        body.insert("Healthcheck".into(), Value::Object(hc));
    }
    body.insert("HostConfig".into(), Value::Object(host));
    if let Some(net) = &a.network {
        if !a.network_alias.is_empty() || a.ip.is_some() {
            let mut ep = Map::new();
            if !a.network_alias.is_empty() {
                ep.insert("Aliases".into(), json!(a.network_alias));
            }
            if let Some(ip) = &a.ip {
                ep.insert("IPAMConfig".into(), json!({"IPv4Address": ip}));
            }
            body.insert(
                "NetworkingConfig".into(),
                json!({"EndpointsConfig": {net: ep}}),
            );
        }
    }
    Ok(Value::Object(body))
}

/// Creates the container (pulling the image when missing, as `--pull` says); returns its id.
fn create(ctx: &Ctx, a: &RunArgs) -> Result<String, CliError> {
    if a.detach && a.rm {
        // Allowed since API 1.25; nothing to refuse.
    }
    if !matches!(a.pull.as_str(), "missing" | "always" | "never") {
        return Err(CliError::Usage(format!(
            "invalid pull option: {:?}: must be one of \"always\", \"missing\" or \"never\"",
            a.pull
        )));
    }
    let body = create_body(a)?;
    let mut path = "/containers/create".to_owned();
    if let Some(n) = &a.name {
        path.push_str(&format!("?name={}", q(n)));
    }
    if a.pull == "always" {
        images::pull_quietly(ctx, &a.image, a.quiet)?;
    }
    let first = ctx
        .client
        .request(
            "POST",
            &path,
            &[],
            Body::Json(serde_json::to_vec(&body).unwrap_or_default()),
        )?
        .ok();
    let r = match first {
        Err(ClientError::Api {
            status: 404,
            message,
        }) if a.pull == "missing" && message.contains("No such image") => {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(
                err,
                "Unable to find image '{}' locally",
                images::with_default_tag(&a.image)
            );
            drop(err);
            images::pull_quietly(ctx, &a.image, a.quiet)?;
            ctx.client
                .request(
                    "POST",
                    &path,
                    &[],
                    Body::Json(serde_json::to_vec(&body).unwrap_or_default()),
                )?
                .ok()?
        }
        other => other?,
    };
    let v: Value = r.json()?;
    let mut err = std::io::stderr().lock();
    for w in v["Warnings"].as_array().into_iter().flatten() {
        if let Some(w) = w.as_str() {
            let _ = writeln!(err, "WARNING: {w}");
        }
    }
    v["Id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ClientError::Protocol("create answered without an Id".into()).into())
}

/// `create`: prints the new container's id.
///
/// # Errors
/// As [`run`].
pub fn create_cmd(ctx: &Ctx, a: RunArgs) -> Result<(), CliError> {
    let id = create(ctx, &a)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{id}").map_err(CliError::io("stdout"))
}

/// Maps an error of `run`/`create` to docker's exit status: 127 when the command is not
/// found, 126 when it cannot be executed, else 125 (the container's own code passes).
pub fn run_status(e: CliError) -> CliError {
    match e {
        CliError::Exit(_) | CliError::Status { .. } | CliError::Flag { .. } => e,
        other => {
            let message = other.to_string();
            let code = if message.contains("executable file not found")
                || message.contains("no such file or directory")
                || message.contains("system cannot find the file specified")
            {
                127
            } else if message.contains("permission denied") || message.contains("is a directory") {
                126
            } else {
                125
            };
            CliError::Status { code, message }
        }
    }
}

/// A wait opened before the start, answered on a channel with the exit code.
struct Waiter {
    rx: mpsc::Receiver<Result<i32, CliError>>,
}

impl Waiter {
    fn open(ctx: &Ctx, id: &str, condition: &str) -> Result<Waiter, CliError> {
        let path = format!("/containers/{id}/wait?condition={condition}");
        let r = ctx.client.request("POST", &path, &[], Body::None)?.ok()?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let res = r.json::<Value>().map_err(CliError::from).and_then(|v| {
                if let Some(m) = v["Error"]["Message"].as_str().filter(|m| !m.is_empty()) {
                    return Err(CliError::Status {
                        code: 125,
                        message: m.to_owned(),
                    });
                }
                Ok(v["StatusCode"].as_i64().unwrap_or(0) as i32)
            });
            let _ = tx.send(res);
        });
        Ok(Waiter { rx })
    }

    fn code(self) -> Result<i32, CliError> {
        self.rx.recv().unwrap_or(Err(CliError::Exit(125)))
    }
}

fn resize(ctx: &Ctx, path_prefix: &str) {
    if let Some((h, w)) = stream::terminal_size() {
        let _ = ctx
            .client
            .request(
                "POST",
                &format!("{path_prefix}/resize?h={h}&w={w}"),
                &[],
                Body::None,
            )
            .and_then(|r| r.ok())
            .map(|r| r.bytes());
    }
}

/// An exec's first resize: the daemon refuses it until the process runs, so it is tried a few
/// times, as docker does.
fn resize_exec(ctx: &Ctx, eid: &str) {
    let Some((h, w)) = stream::terminal_size() else {
        return;
    };
    for _ in 0..10 {
        let ok = ctx
            .client
            .request(
                "POST",
                &format!("/exec/{eid}/resize?h={h}&w={w}"),
                &[],
                Body::None,
            )
            .and_then(|r| r.ok())
            .map(|r| r.bytes())
            .is_ok();
        if ok {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Resizes on SIGWINCH and forwards the proxied signals to the container.
fn watch(ctx: &Ctx, id: &str, tty: bool, proxy: bool, resize_prefix: String) {
    let endpoint = ctx.client.endpoint().clone();
    let id = id.to_owned();
    let signals: &[nix::sys::signal::Signal] = if proxy && !tty { &stream::PROXIED } else { &[] };
    stream::watch_signals(signals, move |sig| {
        let client = super::client::Client::new(endpoint.clone());
        let path = if sig == nix::sys::signal::Signal::SIGWINCH {
            if !tty {
                return;
            }
            match stream::terminal_size() {
                Some((h, w)) => format!("{resize_prefix}/resize?h={h}&w={w}"),
                None => return,
            }
        } else {
            format!("/containers/{id}/kill?signal={}", sig as i32)
        };
        let _ = client
            .request("POST", &path, &[], Body::None)
            .map(|r| r.bytes());
    });
}

fn detach_keys(ctx: &Ctx, flag: Option<&str>) -> Result<Vec<u8>, CliError> {
    let text = flag
        .map(str::to_owned)
        .or_else(|| ctx.config_value("detachKeys"))
        .unwrap_or_else(|| stream::DEFAULT_DETACH_KEYS.to_owned());
    stream::detach_keys(&text).map_err(|e| CliError::Usage(e.to_string()))
}

fn attach_conn(ctx: &Ctx, id: &str, stdin: bool, logs: bool) -> Result<BufReader<Conn>, CliError> {
    let path = format!(
        "/containers/{id}/attach?stream=1&stdout=1&stderr=1{}{}",
        if stdin { "&stdin=1" } else { "" },
        if logs { "&logs=1" } else { "" }
    );
    Ok(ctx.client.hijack(&path, Body::None)?)
}

/// Prints what is left on an attach stream, for up to two seconds.
fn drain(conn: BufReader<Conn>, tty: bool) {
    super::client::set_read_timeout(conn.get_ref(), Some(Duration::from_secs(2)));
    let _ = stream::pump(conn, tty, false, None);
}

/// `run`: create, attach, start, stream, and exit with the container's code.
///
/// # Errors
/// Create and start errors (exit 125/126/127), the container's non-zero exit.
pub fn run(ctx: &Ctx, a: RunArgs) -> Result<(), CliError> {
    if a.tty && a.interactive && !stream::stdin_is_tty() && !a.detach {
        return Err(CliError::Status {
            code: 1,
            message: "the input device is not a TTY".into(),
        });
    }
    let keys = if a.interactive && !a.detach {
        Some(detach_keys(ctx, a.detach_keys.as_deref())?)
    } else {
        None
    };
    let id = create(ctx, &a)?;
    if a.detach {
        ctx.client
            .call("POST", &format!("/containers/{id}/start"), Body::None)?;
        let mut out = std::io::stdout().lock();
        return writeln!(out, "{id}").map_err(CliError::io("stdout"));
    }
    let conn = attach_conn(ctx, &id, a.interactive, false)?;
    let condition = if a.rm { "removed" } else { "next-exit" };
    // Signals are blocked before any thread starts, so that only the watcher receives them.
    watch(ctx, &id, a.tty, a.sig_proxy, format!("/containers/{id}"));
    let waiter = Waiter::open(ctx, &id, condition)?;
    if let Err(e) = ctx
        .client
        .call("POST", &format!("/containers/{id}/start"), Body::None)
    {
        // What the container (or the runtime) wrote before failing is shown first, as
        // docker drains the attach stream, which the daemon closes after a failed start.
        drain(conn, a.tty);
        return Err(e.into());
    }
    let raw = (a.tty && a.interactive).then(RawTerminal::enable);
    if a.tty {
        resize(ctx, &format!("/containers/{id}"));
    }
    let ended = stream::pump(conn, a.tty, a.interactive, keys)
        .map_err(|e| CliError::from(ClientError::Io(e)))?;
    drop(raw);
    if ended == Ended::Detached {
        return Ok(());
    }
    match waiter.code()? {
        0 => Ok(()),
        code => Err(CliError::Exit(code)),
    }
}

/// `ps`.
#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Filter output based on conditions provided
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long, default_value_t = -1, allow_negative_numbers = true)]
    pub last: i64,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    pub latest: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only display container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Display total file sizes
    #[arg(short, long)]
    pub size: bool,
}

const PS_TABLE: &str =
    "{{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

fn ps_header() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("ID", "CONTAINER ID"),
        ("Image", "IMAGE"),
        ("Command", "COMMAND"),
        ("CreatedAt", "CREATED AT"),
        ("RunningFor", "CREATED"),
        ("Ports", "PORTS"),
        ("State", "STATE"),
        ("Status", "STATUS"),
        ("Size", "SIZE"),
        ("Names", "NAMES"),
        ("Labels", "LABELS"),
        ("Mounts", "MOUNTS"),
        ("Networks", "NETWORKS"),
        ("LocalVolumes", "LOCAL VOLUMES"),
        ("Platform", "PLATFORM"),
    ])
}

/// docker's `DisplayablePorts`: consecutive ports grouped into ranges, host mappings last.
pub fn displayable_ports(ports: &[Value]) -> String {
    let mut ports: Vec<(u64, String, u64, String)> = ports
        .iter()
        .map(|p| {
            (
                p["PrivatePort"].as_u64().unwrap_or(0),
                p["IP"].as_str().unwrap_or("").to_owned(),
                p["PublicPort"].as_u64().unwrap_or(0),
                p["Type"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    ports.sort();
    let mut groups: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut result = Vec::new();
    let mut host_mappings = Vec::new();
    let form = |key: &str, first: u64, last: u64| -> String {
        let (ip, ty) = key.rsplit_once('/').unwrap_or(("", key));
        let mut g = first.to_string();
        if first != last {
            g = format!("{g}-{last}");
        }
        if !ip.is_empty() {
            g = format!("{ip}:{g}->{g}");
        }
        format!("{g}/{ty}")
    };
    for (private, ip, public, ty) in &ports {
        let mut key = ty.clone();
        if !ip.is_empty() {
            if public != private {
                let host = if ip.contains(':') {
                    format!("[{ip}]:{public}")
                } else {
                    format!("{ip}:{public}")
                };
                host_mappings.push(format!("{host}->{private}/{ty}"));
                continue;
            }
            key = format!("{ip}/{ty}");
        }
        match groups.get_mut(&key) {
            None => {
                groups.insert(key.clone(), (*private, *private));
                order.push(key);
            }
            Some(g) if *private == g.1 + 1 => g.1 = *private,
            Some(g) => {
                result.push(form(&key, g.0, g.1));
                *g = (*private, *private);
            }
        }
    }
    for k in order {
        let g = groups[&k];
        result.push(form(&k, g.0, g.1));
    }
    result.extend(host_mappings);
    result.join(", ")
}

pub(crate) fn ps_row(c: &Value, no_trunc: bool) -> gotmpl::Value {
    let id = c["Id"].as_str().unwrap_or("");
    let image = c["Image"].as_str().unwrap_or("");
    let image_id = c["ImageID"].as_str().unwrap_or("");
    let image = if image.is_empty() {
        "<no image>".to_owned()
    } else if !no_trunc && short_id(image_id, false) == short_id(image, false) {
        short_id(image, false)
    } else if !no_trunc {
        // A digest reference shows without its digest, as docker's list does.
        match image.split_once('@') {
            Some((name, _)) => name.to_owned(),
            None => image.to_owned(),
        }
    } else {
        image.to_owned()
    };
    let command = c["Command"].as_str().unwrap_or("");
    let command = if no_trunc {
        command.to_owned()
    } else {
        ellipsis(command, 20)
    };
    let names: Vec<String> = c["Names"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|n| {
            let parts: Vec<&str> = n.split('/').collect();
            // "/name" is the container's own name; "/other/name" is a link.
            (parts.len() == 2 || no_trunc).then(|| n.trim_start_matches('/').to_owned())
        })
        .collect();
    let names = if no_trunc {
        names.join(",")
    } else {
        names.first().cloned().unwrap_or_default()
    };
    let created = c["Created"].as_i64().unwrap_or(0);
    let mut labels: Vec<String> = c["Labels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    labels.sort();
    let mounts: Vec<String> = c["Mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let n = m["Name"]
                .as_str()
                .filter(|n| !n.is_empty())
                .or_else(|| m["Source"].as_str())
                .unwrap_or("");
            if no_trunc {
                n.to_owned()
            } else {
                ellipsis(n, 15)
            }
        })
        .collect();
    let local_volumes = c["Mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["Driver"].as_str() == Some("local"))
        .count();
    let mut networks: Vec<&String> = c["NetworkSettings"]["Networks"]
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    networks.sort();
    let networks: Vec<&str> = networks.iter().map(|s| s.as_str()).collect();
    let srw = c["SizeRw"].as_f64().unwrap_or(0.0);
    let srf = c["SizeRootFs"].as_f64().unwrap_or(0.0);
    let size = if srf > 0.0 {
        format!(
            "{} (virtual {})",
            format::human_size(srw, 3),
            format::human_size(srf, 3)
        )
    } else {
        format::human_size(srw, 3)
    };
    format::row(&[
        ("ID", short_id(id, no_trunc)),
        ("Image", image),
        ("Command", go_quote(&command)),
        ("CreatedAt", format::go_time(created)),
        ("RunningFor", format::ago(created)),
        (
            "Ports",
            displayable_ports(c["Ports"].as_array().map_or(&[][..], |v| v.as_slice())),
        ),
        ("State", c["State"].as_str().unwrap_or("").to_owned()),
        ("Status", c["Status"].as_str().unwrap_or("").to_owned()),
        ("Size", size),
        ("Names", names),
        ("Labels", labels.join(",")),
        ("Mounts", mounts.join(",")),
        ("Networks", networks.join(",")),
        ("LocalVolumes", local_volumes.to_string()),
    ])
}

/// Go's `strconv.Quote` for the printable text docker quotes.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `ps`.
///
/// # Errors
/// Daemon, filter and template errors.
pub fn ps(ctx: &Ctx, a: PsArgs) -> Result<(), CliError> {
    let mut query = Vec::new();
    let limit = if a.latest { 1 } else { a.last };
    if a.all || limit > 0 {
        query.push("all=1".to_owned());
    }
    if limit > 0 {
        query.push(format!("limit={limit}"));
    }
    let fmt_text = if a.quiet {
        "{{.ID}}".to_owned()
    } else {
        a.format
            .clone()
            .or_else(|| ctx.config_value("psFormat"))
            .unwrap_or_else(|| "table".into())
    };
    // Sizes are costly: asked for with -s, or when the template shows them.
    let size = a.size || (!a.quiet && fmt_text.contains(".Size"));
    if size {
        query.push("size=1".to_owned());
    }
    if !a.filter.is_empty() {
        query.push(format!(
            "filters={}",
            q(&specs::filters(&a.filter)?.to_string())
        ));
    }
    let path = if query.is_empty() {
        "/containers/json".to_owned()
    } else {
        format!("/containers/json?{}", query.join("&"))
    };
    let default_table = if a.size {
        format!("{PS_TABLE}\t{{{{.Size}}}}")
    } else {
        PS_TABLE.to_owned()
    };
    let f = Format::parse(&fmt_text, &default_table)?;
    let list: Vec<Value> = ctx.client.get_json(&path)?;
    let rows: Vec<gotmpl::Value> = list.iter().map(|c| ps_row(c, a.no_trunc)).collect();
    let mut out = std::io::stdout().lock();
    f.print(&mut out, &ps_header(), &rows)?;
    Ok(())
}

/// `rm`.
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    pub force: bool,
    /// Remove the specified link
    #[arg(short, long)]
    pub link: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    pub volumes: bool,
    /// Containers
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Runs `f` for each name, printing the name on success and the error otherwise; exit 1 if
/// any failed, as docker's multi-container verbs do.
fn each(names: &[String], mut f: impl FnMut(&str) -> Result<(), CliError>) -> Result<(), CliError> {
    let mut failed = false;
    for n in names {
        match f(n) {
            Ok(()) => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{n}").map_err(CliError::io("stdout"))?;
            }
            Err(e) => {
                failed = true;
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{e}");
            }
        }
    }
    if failed {
        Err(CliError::Exit(1))
    } else {
        Ok(())
    }
}

/// `rm`.
///
/// # Errors
/// Exit 1 when any removal failed (each error printed).
pub fn rm(ctx: &Ctx, a: RmArgs) -> Result<(), CliError> {
    let mut query = Vec::new();
    if a.force {
        query.push("force=1");
    }
    if a.volumes {
        query.push("v=1");
    }
    if a.link {
        query.push("link=1");
    }
    let qs = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    };
    each(&a.containers, |n| {
        let n = n.trim_matches('/');
        ctx.client.call(
            "DELETE",
            &format!("/containers/{}{qs}", path_escape(n)),
            Body::None,
        )?;
        Ok(())
    })
}

/// `start`.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    pub attach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Attach container's STDIN
    #[arg(short, long)]
    pub interactive: bool,
    /// Containers
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `start`.
///
/// # Errors
/// Daemon errors; with `-a`, the container's non-zero exit.
pub fn start(ctx: &Ctx, a: StartArgs) -> Result<(), CliError> {
    if !(a.attach || a.interactive) {
        return each(&a.containers, |n| {
            ctx.client.call(
                "POST",
                &format!("/containers/{}/start", path_escape(n)),
                Body::None,
            )?;
            Ok(())
        });
    }
    if a.containers.len() > 1 {
        return Err(CliError::Usage(
            "you cannot start and attach multiple containers at once".into(),
        ));
    }
    let name = &a.containers[0];
    let info: Value = ctx
        .client
        .get_json(&format!("/containers/{}/json", path_escape(name)))?;
    let id = info["Id"].as_str().unwrap_or(name).to_owned();
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let stdin = a.interactive && info["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    let keys = if stdin {
        Some(detach_keys(ctx, a.detach_keys.as_deref())?)
    } else {
        None
    };
    let conn = attach_conn(ctx, &id, stdin, false)?;
    watch(ctx, &id, tty, true, format!("/containers/{id}"));
    let waiter = Waiter::open(ctx, &id, "next-exit")?;
    if let Err(e) = ctx
        .client
        .call("POST", &format!("/containers/{id}/start"), Body::None)
    {
        drain(conn, tty);
        return Err(e.into());
    }
    let raw = (tty && stdin).then(RawTerminal::enable);
    if tty {
        resize(ctx, &format!("/containers/{id}"));
    }
    let ended =
        stream::pump(conn, tty, stdin, keys).map_err(|e| CliError::from(ClientError::Io(e)))?;
    drop(raw);
    if ended == Ended::Detached {
        return Ok(());
    }
    match waiter.code()? {
        0 => Ok(()),
        c => Err(CliError::Exit(c)),
    }
}

/// `stop` and `restart`.
#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Signal to send to the container
    #[arg(short, long)]
    pub signal: Option<String>,
    /// Seconds to wait before killing the container
    #[arg(short, long)]
    pub time: Option<i64>,
    /// Containers
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `stop` / `restart`.
///
/// # Errors
/// Exit 1 when any failed.
pub fn stop(ctx: &Ctx, a: StopArgs, verb: &str) -> Result<(), CliError> {
    let mut query = Vec::new();
    if let Some(t) = a.time {
        query.push(format!("t={t}"));
    }
    if let Some(s) = &a.signal {
        query.push(format!("signal={}", q(s)));
    }
    let qs = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    };
    each(&a.containers, |n| {
        ctx.client.call(
            "POST",
            &format!("/containers/{}/{verb}{qs}", path_escape(n)),
            Body::None,
        )?;
        Ok(())
    })
}

/// `kill`.
#[derive(Debug, clap::Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short, long)]
    pub signal: Option<String>,
    /// Containers
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `kill`.
///
/// # Errors
/// Exit 1 when any failed.
pub fn kill(ctx: &Ctx, a: KillArgs) -> Result<(), CliError> {
    let qs = a
        .signal
        .as_ref()
        .map(|s| format!("?signal={}", q(s)))
        .unwrap_or_default();
    each(&a.containers, |n| {
        ctx.client.call(
            "POST",
            &format!("/containers/{}/kill{qs}", path_escape(n)),
            Body::None,
        )?;
        Ok(())
    })
}

/// Commands that take only container names.
#[derive(Debug, clap::Args)]
pub struct NamesArgs {
    /// Containers
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `pause` / `unpause`.
///
/// # Errors
/// Exit 1 when any failed.
pub fn simple(ctx: &Ctx, a: NamesArgs, verb: &str) -> Result<(), CliError> {
    each(&a.containers, |n| {
        ctx.client.call(
            "POST",
            &format!("/containers/{}/{verb}", path_escape(n)),
            Body::None,
        )?;
        Ok(())
    })
}

/// `wait`: prints each container's exit code.
///
/// # Errors
/// Exit 1 when any failed.
pub fn wait(ctx: &Ctx, a: NamesArgs) -> Result<(), CliError> {
    let mut failed = false;
    for n in &a.containers {
        let r: Result<Value, ClientError> = ctx
            .client
            .request(
                "POST",
                &format!("/containers/{}/wait", path_escape(n)),
                &[],
                Body::None,
            )
            .and_then(|r| r.ok())
            .and_then(|r| r.json());
        match r {
            Ok(v) => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{}", v["StatusCode"].as_i64().unwrap_or(0))
                    .map_err(CliError::io("stdout"))?;
            }
            Err(e) => {
                failed = true;
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{e}");
            }
        }
    }
    if failed {
        return Err(CliError::Exit(1));
    }
    Ok(())
}

/// `rename`.
#[derive(Debug, clap::Args)]
pub struct RenameArgs {
    /// The container
    pub container: String,
    /// Its new name
    pub new_name: String,
}

/// `rename`.
///
/// # Errors
/// The daemon's.
pub fn rename(ctx: &Ctx, a: RenameArgs) -> Result<(), CliError> {
    let new = a.new_name.trim();
    if new.is_empty() || a.container.trim().is_empty() {
        return Err(CliError::Status {
            code: 1,
            message: "Error: Neither old nor new names may be empty".into(),
        });
    }
    ctx.client.call(
        "POST",
        &format!(
            "/containers/{}/rename?name={}",
            path_escape(&a.container),
            q(new)
        ),
        Body::None,
    )?;
    Ok(())
}

/// `logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Show extra details provided to logs
    #[arg(long)]
    pub details: bool,
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m")
    #[arg(long)]
    pub since: Option<String>,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m")
    #[arg(long)]
    pub until: Option<String>,
    /// The container
    pub container: String,
}

/// A `--since`/`--until` value as the API's unix timestamp text: relative Go durations count
/// back from now; RFC 3339 times and unix timestamps pass through.
pub fn timestamp(s: &str) -> Result<String, CliError> {
    if let Some(ns) =
        go_duration(s).filter(|_| s != "0" && !s.chars().all(|c| c.is_ascii_digit() || c == '.'))
    {
        let now = chrono::Utc::now();
        let t = now - chrono::Duration::nanoseconds(ns);
        return Ok(format!(
            "{}.{:09}",
            t.timestamp(),
            t.timestamp_subsec_nanos()
        ));
    }
    if s.chars().all(|c| c.is_ascii_digit() || c == '.') && !s.is_empty() {
        return Ok(s.to_owned());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M:%S%:z"] {
        if let Ok(t) = chrono::DateTime::parse_from_str(s, fmt) {
            return Ok(format!(
                "{}.{:09}",
                t.timestamp(),
                t.timestamp_subsec_nanos()
            ));
        }
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(format!(
            "{}.{:09}",
            t.timestamp(),
            t.timestamp_subsec_nanos()
        ));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d",
    ] {
        let parsed = chrono::NaiveDateTime::parse_from_str(s, fmt).or_else(|_| {
            chrono::NaiveDate::parse_from_str(s, fmt)
                .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default())
        });
        if let Ok(t) = parsed {
            let t = t.and_utc();
            return Ok(format!(
                "{}.{:09}",
                t.timestamp(),
                t.timestamp_subsec_nanos()
            ));
        }
    }
    Err(CliError::Usage(format!(
        "invalid time {s:?}: use an RFC 3339 time, a unix timestamp or a duration such as 42m"
    )))
}

/// `logs`.
///
/// # Errors
/// Daemon errors.
pub fn logs(ctx: &Ctx, a: LogsArgs) -> Result<(), CliError> {
    let info: Value = ctx
        .client
        .get_json(&format!("/containers/{}/json", path_escape(&a.container)))?;
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let mut query = vec![
        "stdout=1".to_owned(),
        "stderr=1".to_owned(),
        format!("tail={}", q(&a.tail)),
    ];
    if a.follow {
        query.push("follow=1".into());
    }
    if a.timestamps {
        query.push("timestamps=1".into());
    }
    if a.details {
        query.push("details=1".into());
    }
    if let Some(s) = &a.since {
        query.push(format!("since={}", timestamp(s)?));
    }
    if let Some(u) = &a.until {
        query.push(format!("until={}", timestamp(u)?));
    }
    let r = ctx
        .client
        .request(
            "GET",
            &format!(
                "/containers/{}/logs?{}",
                path_escape(&a.container),
                query.join("&")
            ),
            &[],
            Body::None,
        )?
        .ok()?;
    if tty {
        let mut out = std::io::stdout().lock();
        let mut r = r;
        std::io::copy(&mut r, &mut out).map_err(|e| CliError::from(ClientError::Io(e)))?;
    } else {
        stream::demux(r).map_err(|e| CliError::from(ClientError::Io(e)))?;
    }
    Ok(())
}

/// `exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Set environment variables
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// The container
    pub container: String,
    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `exec`: exits with the command's exit code.
///
/// # Errors
/// Daemon errors; the command's non-zero exit.
pub fn exec(ctx: &Ctx, a: ExecArgs) -> Result<(), CliError> {
    if a.tty && a.interactive && !stream::stdin_is_tty() && !a.detach {
        return Err(CliError::Status {
            code: 1,
            message: "the input device is not a TTY".into(),
        });
    }
    let mut env = Vec::new();
    for f in &a.env_file {
        let text = std::fs::read_to_string(f).map_err(CliError::io(format!("open {f}")))?;
        env.extend(specs::env_file(f, &text, env_lookup)?);
    }
    for e in &a.env {
        env.push(specs::env_flag(e, env_lookup)?);
    }
    let attach = !a.detach;
    let mut body = json!({
        "User": a.user.clone().unwrap_or_default(),
        "Privileged": a.privileged,
        "Tty": a.tty,
        "AttachStdin": attach && a.interactive,
        "AttachStdout": attach,
        "AttachStderr": attach,
        "Env": env,
        "WorkingDir": a.workdir.clone().unwrap_or_default(),
        "Cmd": a.command,
    });
    if let Some(k) = &a.detach_keys {
        body["DetachKeys"] = json!(k);
    }
    // The size the process starts with (API 1.42), so that it never sees a 0x0 terminal
    // before the first resize.
    let console = if a.tty {
        stream::terminal_size().map(|(h, w)| json!([h, w]))
    } else {
        None
    };
    if let Some(c) = &console {
        body["ConsoleSize"] = c.clone();
    }
    let created: Value = ctx
        .client
        .request(
            "POST",
            &format!("/containers/{}/exec", path_escape(&a.container)),
            &[],
            Body::json(&body),
        )?
        .ok()?
        .json()?;
    let eid = created["Id"].as_str().unwrap_or("").to_owned();
    let mut start = json!({"Detach": a.detach, "Tty": a.tty});
    if let Some(c) = &console {
        start["ConsoleSize"] = c.clone();
    }
    if a.detach {
        ctx.client
            .call("POST", &format!("/exec/{eid}/start"), Body::json(&start))?;
        return Ok(());
    }
    let keys = if a.interactive {
        Some(detach_keys(ctx, a.detach_keys.as_deref())?)
    } else {
        None
    };
    let conn = ctx
        .client
        .hijack(&format!("/exec/{eid}/start"), Body::json(&start))?;
    let info: Value = ctx
        .client
        .get_json(&format!("/containers/{}/json", path_escape(&a.container)))
        .unwrap_or(Value::Null);
    let cid = info["Id"].as_str().unwrap_or(&a.container).to_owned();
    watch(ctx, &cid, a.tty, false, format!("/exec/{eid}"));
    let raw = (a.tty && a.interactive).then(RawTerminal::enable);
    if a.tty {
        resize_exec(ctx, &eid);
    }
    let ended = stream::pump(conn, a.tty, a.interactive, keys)
        .map_err(|e| CliError::from(ClientError::Io(e)))?;
    drop(raw);
    if ended == Ended::Detached {
        return Ok(());
    }
    let v: Value = ctx.client.get_json(&format!("/exec/{eid}/json"))?;
    match v["ExitCode"].as_i64().unwrap_or(0) {
        0 => Ok(()),
        c => Err(CliError::Exit(c as i32)),
    }
}

/// `attach`.
#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long = "sig-proxy", default_value = "true", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub sig_proxy: bool,
    /// The container
    pub container: String,
}

/// `attach`: streams until the container ends or the detach keys; exits with its code.
///
/// # Errors
/// Daemon errors; the container's non-zero exit.
pub fn attach(ctx: &Ctx, a: AttachArgs) -> Result<(), CliError> {
    let info: Value = ctx
        .client
        .get_json(&format!("/containers/{}/json", path_escape(&a.container)))?;
    let id = info["Id"].as_str().unwrap_or(&a.container).to_owned();
    if info["State"]["Paused"].as_bool() == Some(true) {
        return Err(CliError::Status {
            code: 1,
            message: "You cannot attach to a paused container, unpause it first".into(),
        });
    }
    if info["State"]["Running"].as_bool() != Some(true) {
        return Err(CliError::Status {
            code: 1,
            message: "You cannot attach to a stopped container, start it first".into(),
        });
    }
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let stdin = !a.no_stdin && info["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    if tty && stdin && !stream::stdin_is_tty() {
        return Err(CliError::Status {
            code: 1,
            message: "the input device is not a TTY".into(),
        });
    }
    let keys = if stdin {
        Some(detach_keys(ctx, a.detach_keys.as_deref())?)
    } else {
        None
    };
    watch(ctx, &id, tty, a.sig_proxy, format!("/containers/{id}"));
    let waiter = Waiter::open(ctx, &id, "not-running")?;
    let conn = attach_conn(ctx, &id, stdin, false)?;
    let raw = (tty && stdin).then(RawTerminal::enable);
    if tty {
        resize(ctx, &format!("/containers/{id}"));
    }
    let ended =
        stream::pump(conn, tty, stdin, keys).map_err(|e| CliError::from(ClientError::Io(e)))?;
    drop(raw);
    if ended == Ended::Detached {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "read escape sequence");
        return Ok(());
    }
    // The output ended: the container has stopped or is stopping.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(waiter.code());
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(0)) => Ok(()),
        Ok(Ok(c)) => Err(CliError::Exit(c)),
        Ok(Err(e)) => Err(e),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_display_as_docker() {
        let p = |private: u64, public: u64, ip: &str| json!({"PrivatePort": private, "PublicPort": public, "IP": ip, "Type": "tcp"});
        assert_eq!(
            displayable_ports(&[json!({"PrivatePort": 80, "Type": "tcp"})]),
            "80/tcp"
        );
        assert_eq!(
            displayable_ports(&[
                json!({"PrivatePort": 80, "Type": "tcp"}),
                json!({"PrivatePort": 81, "Type": "tcp"}),
                json!({"PrivatePort": 82, "Type": "tcp"})
            ]),
            "80-82/tcp"
        );
        assert_eq!(
            displayable_ports(&[p(80, 8080, "0.0.0.0")]),
            "0.0.0.0:8080->80/tcp"
        );
        assert_eq!(
            displayable_ports(&[p(80, 80, "0.0.0.0")]),
            "0.0.0.0:80->80/tcp"
        );
        assert_eq!(displayable_ports(&[p(80, 8080, "::")]), "[::]:8080->80/tcp");
    }

    #[test]
    fn quotes_as_go() {
        assert_eq!(go_quote("sh -c \"x\"\n"), "\"sh -c \\\"x\\\"\\n\"");
    }

    #[test]
    fn durations_and_times() {
        assert_eq!(go_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(go_duration("500ms"), Some(500_000_000));
        assert_eq!(go_duration("x"), None);
        assert_eq!(timestamp("1700000000").unwrap(), "1700000000");
        assert_eq!(
            timestamp("2023-11-14T22:13:20Z").unwrap(),
            "1700000000.000000000"
        );
        assert!(timestamp("yesterday").is_err());
    }

    #[test]
    fn unsupported_flags_are_named() {
        let args: Vec<std::ffi::OsString> = ["refeng", "run", "--rm", "--pid=host", "busybox"]
            .iter()
            .map(Into::into)
            .collect();
        let e = refuse_unsupported(&args).unwrap();
        assert!(e.to_string().contains("--pid"), "{e}");
        let args: Vec<std::ffi::OsString> = ["refeng", "run", "busybox", "ls", "--pid"]
            .iter()
            .map(Into::into)
            .collect();
        assert!(refuse_unsupported(&args).is_none());
        let args: Vec<std::ffi::OsString> = [
            "refeng",
            "-H",
            "unix:///x",
            "container",
            "create",
            "--link=a",
            "busybox",
        ]
        .iter()
        .map(Into::into)
        .collect();
        assert!(refuse_unsupported(&args).is_some());
        // `run` as another command's argument is not the run command.
        let args: Vec<std::ffi::OsString> = ["refeng", "exec", "c", "run", "--pid"]
            .iter()
            .map(Into::into)
            .collect();
        assert!(refuse_unsupported(&args).is_none());
    }
}

/// `top`.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// The container
    pub container: String,
    /// ps options
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

/// `top`: the container's processes as the daemon's `ps` shows them.
///
/// # Errors
/// The daemon's.
pub fn top(ctx: &Ctx, a: TopArgs) -> Result<(), CliError> {
    let mut path = format!("/containers/{}/top", path_escape(&a.container));
    if !a.ps_args.is_empty() {
        path.push_str(&format!("?ps_args={}", q(&a.ps_args.join(" "))));
    }
    let v: Value = ctx.client.get_json(&path)?;
    let mut text = String::new();
    let cells = |row: &Value| -> String {
        row.as_array()
            .into_iter()
            .flatten()
            .map(|c| c.as_str().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
            .join("\t")
    };
    text.push_str(&cells(&v["Titles"]));
    text.push('\n');
    for p in v["Processes"].as_array().into_iter().flatten() {
        text.push_str(&cells(p));
        text.push('\n');
    }
    let mut out = std::io::stdout().lock();
    out.write_all(format::tabwrite(&text, 20, 1).as_bytes())
        .map_err(CliError::io("stdout"))
}

/// `port`.
#[derive(Debug, clap::Args)]
pub struct PortArgs {
    /// The container
    pub container: String,
    /// PRIVATE_PORT[/PROTO]
    pub port: Option<String>,
}

/// `port`: the published ports (`80/tcp -> 0.0.0.0:8080`), or the host addresses of one.
///
/// # Errors
/// The daemon's; a port that is not published.
pub fn port(ctx: &Ctx, a: PortArgs) -> Result<(), CliError> {
    let v: Value = ctx
        .client
        .get_json(&format!("/containers/{}/json", path_escape(&a.container)))?;
    let ports = v["NetworkSettings"]["Ports"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let addr = |b: &Value| -> String {
        let ip = b["HostIp"].as_str().unwrap_or("");
        let port = b["HostPort"].as_str().unwrap_or("");
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    };
    let mut out = std::io::stdout().lock();
    if let Some(want) = &a.port {
        let key = if want.contains('/') {
            want.clone()
        } else {
            format!("{want}/tcp")
        };
        let bindings = ports
            .get(&key)
            .and_then(Value::as_array)
            .filter(|b| !b.is_empty());
        let Some(bindings) = bindings else {
            return Err(CliError::Status {
                code: 1,
                message: format!(
                    "Error: No public port '{want}' published for {}",
                    a.container
                ),
            });
        };
        for b in bindings {
            writeln!(out, "{}", addr(b)).map_err(CliError::io("stdout"))?;
        }
        return Ok(());
    }
    let mut keys: Vec<&String> = ports.keys().collect();
    keys.sort_by_key(|k| {
        let (p, proto) = k.split_once('/').unwrap_or((k, ""));
        (p.parse::<u32>().unwrap_or(0), proto.to_owned())
    });
    for k in keys {
        for b in ports[k].as_array().into_iter().flatten() {
            writeln!(out, "{k} -> {}", addr(b)).map_err(CliError::io("stdout"))?;
        }
    }
    Ok(())
}

/// `diff`.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The container
    pub container: String,
}

/// `diff`: `A`, `C` and `D` lines for the container's changes.
///
/// # Errors
/// The daemon's.
pub fn diff(ctx: &Ctx, a: DiffArgs) -> Result<(), CliError> {
    let v: Value = ctx.client.get_json(&format!(
        "/containers/{}/changes",
        path_escape(&a.container)
    ))?;
    let mut out = std::io::stdout().lock();
    for c in v.as_array().into_iter().flatten() {
        let kind = match c["Kind"].as_i64() {
            Some(0) => "C",
            Some(1) => "A",
            Some(2) => "D",
            _ => "?",
        };
        writeln!(out, "{kind} {}", c["Path"].as_str().unwrap_or(""))
            .map_err(CliError::io("stdout"))?;
    }
    Ok(())
}

/// `export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<String>,
    /// The container
    pub container: String,
}

/// Copies a download (export, save) to `-o FILE` or to stdout, which must not be a terminal.
pub(crate) fn download(
    ctx: &Ctx,
    path: &str,
    output: Option<&str>,
    what: &str,
) -> Result<(), CliError> {
    use std::io::IsTerminal;
    if output.is_none() && std::io::stdout().is_terminal() {
        return Err(CliError::Status {
            code: 1,
            message: "cowardly refusing to save to a terminal. Use the -o flag or redirect".into(),
        });
    }
    // The output's directory is checked first, as docker does, so nothing is asked of the
    // daemon for a download that cannot be kept.
    let dir = output.map(|p| {
        std::path::Path::new(p)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."))
            .to_path_buf()
    });
    if let Some(d) = &dir {
        if let Err(e) = std::fs::metadata(d) {
            return Err(CliError::Status {
                code: 1,
                message: format!(
                    "failed to {what}: invalid output path: stat {}: {}",
                    d.display(),
                    super::go_io_text(&e)
                ),
            });
        }
    }
    let mut r = ctx.client.request("GET", path, &[], Body::None)?.ok()?;
    match output {
        Some(p) => {
            // Written beside the target and renamed, so a failed download leaves no file.
            let target = std::path::Path::new(p);
            let dir = dir.unwrap_or_else(|| std::path::PathBuf::from("."));
            let mut tmp = tempfile::NamedTempFile::new_in(dir)
                .map_err(CliError::io(format!("failed to save to {p}")))?;
            std::io::copy(&mut r, &mut tmp)
                .map_err(CliError::io(format!("failed to save to {p}")))?;
            tmp.persist(target).map_err(|e| CliError::Io {
                what: format!("failed to save to {p}"),
                source: e.error,
            })?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            std::io::copy(&mut r, &mut out).map_err(CliError::io("stdout"))?;
        }
    }
    Ok(())
}

/// `export`: the container's filesystem as a tar archive.
///
/// # Errors
/// The daemon's; stdout on a terminal.
pub fn export(ctx: &Ctx, a: ExportArgs) -> Result<(), CliError> {
    download(
        ctx,
        &format!("/containers/{}/export", path_escape(&a.container)),
        a.output.as_deref(),
        "export container",
    )
}

/// `commit`.
#[derive(Debug, clap::Args)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    pub message: Option<String>,
    /// Pause container during commit
    #[arg(short, long, default_value = "true", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub pause: bool,
    /// The container
    pub container: String,
    /// REPOSITORY[:TAG]
    pub reference: Option<String>,
}

/// `commit`: prints the new image's id.
///
/// # Errors
/// The daemon's.
pub fn commit(ctx: &Ctx, a: CommitArgs) -> Result<(), CliError> {
    let mut query = vec![format!("container={}", q(&a.container))];
    if let Some(r) = &a.reference {
        let (repo, tag) = images::split_tag(r);
        query.push(format!("repo={}", q(repo)));
        if let Some(t) = tag {
            query.push(format!("tag={}", q(t)));
        }
    }
    if let Some(m) = &a.message {
        query.push(format!("comment={}", q(m)));
    }
    if let Some(au) = &a.author {
        query.push(format!("author={}", q(au)));
    }
    query.push(format!("pause={}", if a.pause { 1 } else { 0 }));
    for c in &a.change {
        query.push(format!("changes={}", q(c)));
    }
    let v: Value = ctx
        .client
        .request(
            "POST",
            &format!("/commit?{}", query.join("&")),
            &[],
            Body::Json(b"null".to_vec()),
        )?
        .ok()?
        .json()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", v["Id"].as_str().unwrap_or("")).map_err(CliError::io("stdout"))
}

/// `update`.
#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<String>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Memory limit
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    pub restart: Option<String>,
    /// Containers
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `update`: new resource limits or restart policy; prints each name.
///
/// # Errors
/// Exit 1 when any update failed; unparsable values before anything is sent.
pub fn update(ctx: &Ctx, a: UpdateArgs) -> Result<(), CliError> {
    let mut body = Map::new();
    if let Some(c) = a.cpu_shares {
        body.insert("CpuShares".into(), json!(c));
    }
    if let Some(c) = &a.cpus {
        body.insert("NanoCpus".into(), json!(specs::cpus(c)?));
    }
    if let Some(c) = &a.cpuset_cpus {
        body.insert("CpusetCpus".into(), json!(c));
    }
    if let Some(m) = &a.memory {
        let v = specs::size(m).map_err(CliError::flag("-m, --memory", m))?;
        body.insert("Memory".into(), json!(v));
    }
    if let Some(m) = &a.memory_reservation {
        let v = specs::size(m).map_err(CliError::flag("--memory-reservation", m))?;
        body.insert("MemoryReservation".into(), json!(v));
    }
    if let Some(m) = &a.memory_swap {
        let v = if m == "-1" { -1 } else { specs::size(m)? };
        body.insert("MemorySwap".into(), json!(v));
    }
    if let Some(p) = a.pids_limit {
        body.insert("PidsLimit".into(), json!(p));
    }
    if let Some(r) = &a.restart {
        body.insert("RestartPolicy".into(), specs::restart(r)?);
    }
    if body.is_empty() {
        return Err(CliError::Usage(
            "you must provide one or more flags when using this command".into(),
        ));
    }
    let body = Value::Object(body);
    each(&a.containers, |n| {
        let v: Value = ctx
            .client
            .request(
                "POST",
                &format!("/containers/{}/update", path_escape(n)),
                &[],
                Body::json(&body),
            )?
            .ok()?
            .json()?;
        let mut err = std::io::stderr().lock();
        for w in v["Warnings"].as_array().into_iter().flatten() {
            let _ = writeln!(err, "{}", w.as_str().unwrap_or(""));
        }
        Ok(())
    })
}

/// `container prune`.
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long)]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

/// Asks `question` on the terminal unless `force`; `false` when the answer is not yes.
pub(crate) fn confirm(force: bool, warning: &str) -> Result<bool, CliError> {
    if force {
        return Ok(true);
    }
    let mut out = std::io::stdout().lock();
    write!(out, "{warning}\nAre you sure you want to continue? [y/N] ")
        .map_err(CliError::io("stdout"))?;
    out.flush().map_err(CliError::io("stdout"))?;
    drop(out);
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(CliError::io("stdin"))?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// `container prune`: removes the stopped containers; prints their ids and the space freed.
///
/// # Errors
/// The daemon's; filters that do not parse.
pub fn prune(ctx: &Ctx, a: PruneArgs) -> Result<(), CliError> {
    if !confirm(a.force, "WARNING! This will remove all stopped containers.")? {
        return Ok(());
    }
    let v = super::system::prune_one(ctx, "/containers/prune", &a.filter, "")?;
    let mut text = super::system::removed(&v, "ContainersDeleted", "Deleted Containers:");
    text.push_str(&super::system::total_reclaimed(
        v["SpaceReclaimed"].as_f64().unwrap_or(0.0),
    ));
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(CliError::io("stdout"))
}

/// `stats`.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Containers
    pub containers: Vec<String>,
}

/// One container's stats line from one Engine API stats sample, with docker's arithmetic.
fn stats_row(s: &Value, container: &str, no_trunc: bool) -> gotmpl::Value {
    let n = |v: &Value| v.as_f64().unwrap_or(0.0);
    let cpu = &s["cpu_stats"];
    let pre = &s["precpu_stats"];
    let cpu_delta = n(&cpu["cpu_usage"]["total_usage"]) - n(&pre["cpu_usage"]["total_usage"]);
    let sys_delta = n(&cpu["system_cpu_usage"]) - n(&pre["system_cpu_usage"]);
    let online = match cpu["online_cpus"].as_f64() {
        Some(o) if o > 0.0 => o,
        _ => cpu["cpu_usage"]["percpu_usage"]
            .as_array()
            .map_or(0.0, |a| a.len() as f64),
    };
    let cpu_pct = if sys_delta > 0.0 && cpu_delta > 0.0 {
        cpu_delta / sys_delta * online * 100.0
    } else {
        0.0
    };
    let mem = &s["memory_stats"];
    let usage = n(&mem["usage"]);
    // The page cache is not counted, as docker does (cgroup v1: total_inactive_file; v2:
    // inactive_file).
    let cache = mem["stats"]["total_inactive_file"]
        .as_f64()
        .or_else(|| mem["stats"]["inactive_file"].as_f64())
        .filter(|c| *c < usage)
        .unwrap_or(0.0);
    let used = usage - cache;
    let limit = n(&mem["limit"]);
    let mem_pct = if limit > 0.0 {
        used / limit * 100.0
    } else {
        0.0
    };
    let (mut rx, mut tx) = (0.0, 0.0);
    for (_, v) in s["networks"].as_object().into_iter().flatten() {
        rx += n(&v["rx_bytes"]);
        tx += n(&v["tx_bytes"]);
    }
    let (mut read, mut write) = (0.0, 0.0);
    for e in s["blkio_stats"]["io_service_bytes_recursive"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match e["op"].as_str().map(str::to_lowercase).as_deref() {
            Some("read") => read += n(&e["value"]),
            Some("write") => write += n(&e["value"]),
            _ => {}
        }
    }
    let id = s["id"].as_str().unwrap_or("");
    let name = s["name"].as_str().unwrap_or("").trim_start_matches('/');
    let hs = |v: f64| format::human_size(v, 3);
    format::row(&[
        ("ID", short_id(id, no_trunc)),
        ("Container", container.to_owned()),
        ("Name", name.to_owned()),
        ("CPUPerc", format!("{cpu_pct:.2}%")),
        (
            "MemUsage",
            format!(
                "{} / {}",
                format::bytes_size(used),
                format::bytes_size(limit)
            ),
        ),
        ("MemPerc", format!("{mem_pct:.2}%")),
        ("NetIO", format!("{} / {}", hs(rx), hs(tx))),
        ("BlockIO", format!("{} / {}", hs(read), hs(write))),
        (
            "PIDs",
            format!("{}", s["pids_stats"]["current"].as_u64().unwrap_or(0)),
        ),
    ])
}

/// The line of a container whose stats stopped (docker's `IsInvalid`): its id and name from the
/// last sample, `--` for every value.
fn invalid_stats_row(last: Option<&Value>, container: &str, no_trunc: bool) -> gotmpl::Value {
    let id = last.and_then(|s| s["id"].as_str()).unwrap_or("");
    let name = last
        .and_then(|s| s["name"].as_str())
        .filter(|n| n.len() > 1)
        .map_or("--", |n| n.trim_start_matches('/'));
    let dash = || "--".to_owned();
    format::row(&[
        ("ID", short_id(id, no_trunc)),
        ("Container", container.to_owned()),
        ("Name", name.to_owned()),
        ("CPUPerc", dash()),
        ("MemUsage", "-- / --".to_owned()),
        ("MemPerc", dash()),
        ("NetIO", dash()),
        ("BlockIO", dash()),
        ("PIDs", dash()),
    ])
}

/// The column titles of `stats`.
fn stats_header() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("ID", "CONTAINER ID"),
        ("Container", "CONTAINER"),
        ("Name", "NAME"),
        ("CPUPerc", "CPU %"),
        ("MemUsage", "MEM USAGE / LIMIT"),
        ("MemPerc", "MEM %"),
        ("NetIO", "NET I/O"),
        ("BlockIO", "BLOCK I/O"),
        ("PIDs", "PIDS"),
    ])
}

/// The `--format` of `stats` (the config file's `statsFormat`, else the table).
fn stats_format(ctx: &Ctx, a: &StatsArgs) -> Result<Format, CliError> {
    let table = "{{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";
    Ok(Format::parse(
        &a.format
            .clone()
            .or_else(|| ctx.config_value("statsFormat"))
            .unwrap_or_else(|| "table".into()),
        table,
    )?)
}

/// `stats`: a live table redrawn every half second (docker's `RunStats`), or with
/// `--no-stream` one sample of each container.
///
/// # Errors
/// The daemon's; for named containers, the failure of any of them before its first sample.
pub fn stats(ctx: &Ctx, a: StatsArgs) -> Result<(), CliError> {
    if !a.no_stream {
        return stats_stream(ctx, &a);
    }
    let names: Vec<String> = if a.containers.is_empty() {
        let list: Vec<Value> = ctx.client.get_json(if a.all {
            "/containers/json?all=1"
        } else {
            "/containers/json"
        })?;
        list.iter()
            .filter_map(|c| c["Id"].as_str().map(str::to_owned))
            .collect()
    } else {
        a.containers.clone()
    };
    let mut rows = Vec::new();
    let mut failed = false;
    for n in &names {
        match ctx
            .client
            .get_json::<Value>(&format!("/containers/{}/stats?stream=0", path_escape(n)))
        {
            Ok(s) => {
                // docker's key: the name given, or the short id of a listed container.
                let key = if a.containers.is_empty() {
                    short_id(n, false)
                } else {
                    n.clone()
                };
                rows.push(stats_row(&s, &key, a.no_trunc));
            }
            Err(e) => {
                failed = true;
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{e}");
            }
        }
    }
    let f = stats_format(ctx, &a)?;
    let header = stats_header();
    // As docker: a container that cannot be read means no table at all.
    if failed {
        return Err(CliError::Exit(1));
    }
    let mut out = std::io::stdout().lock();
    f.print(&mut out, &header, &rows)?;
    Ok(())
}

/// One container a live `stats` follows (docker's `Stats`): its key (the name given, or the
/// short id of a listed container), its last sample and whether that still stands.
#[derive(Debug)]
struct Followed {
    key: String,
    sample: Option<Value>,
    /// docker's `IsInvalid`: the stream ended, failed or went quiet; the line shows `--`.
    invalid: bool,
    /// Why the stats could not be read, reported for named containers.
    error: Option<String>,
    /// The first sample came, or an error took its place (docker's `waitFirst`).
    settled: bool,
    /// When the last sample (or the start) was: two quiet seconds make the line invalid.
    heard: std::time::Instant,
}

type Followers = std::sync::Arc<std::sync::Mutex<Vec<Followed>>>;

/// How long a container may send nothing before its line turns to `--` (docker's collector).
const STATS_QUIET: Duration = Duration::from_secs(2);

/// Follows `key` unless it is followed already: a thread reads its stats stream.
fn follow(client: &std::sync::Arc<super::client::Client>, list: &Followers, key: String) {
    {
        let mut l = list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if l.iter().any(|f| f.key == key) {
            return;
        }
        l.push(Followed {
            key: key.clone(),
            sample: None,
            invalid: false,
            error: None,
            settled: false,
            heard: std::time::Instant::now(),
        });
    }
    let client = client.clone();
    let list = list.clone();
    std::thread::spawn(move || collect_stats(&client, &list, &key));
}

/// Reads the stats stream of `key` into its [`Followed`] until the stream ends or the
/// container is no longer followed.
fn collect_stats(client: &super::client::Client, list: &Followers, key: &str) {
    // Applies `f` to the followed container; false once it is no longer followed.
    let update = |f: &mut dyn FnMut(&mut Followed)| -> bool {
        let mut l = list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match l.iter_mut().find(|x| x.key == key) {
            Some(x) => {
                f(x);
                true
            }
            None => false,
        }
    };
    let path = format!("/containers/{}/stats?stream=1", path_escape(key));
    let resp = match client
        .request("GET", &path, &[], Body::None)
        .and_then(super::client::Response::ok)
    {
        Ok(r) => r,
        Err(e) => {
            update(&mut |f| {
                f.error = Some(e.to_string());
                f.invalid = true;
                f.settled = true;
            });
            return;
        }
    };
    let samples = serde_json::Deserializer::from_reader(BufReader::new(resp)).into_iter::<Value>();
    for sample in samples {
        let mut sample = Some(sample);
        let followed = update(&mut |f| match sample.take() {
            Some(Ok(v)) => {
                f.sample = Some(v);
                f.invalid = false;
                f.error = None;
                f.settled = true;
                f.heard = std::time::Instant::now();
            }
            Some(Err(e)) => {
                f.error = Some(e.to_string());
                f.invalid = true;
                f.settled = true;
            }
            None => {}
        });
        if !followed {
            return;
        }
    }
    // The stream ended (the container was removed, or the daemon went away).
    update(&mut |f| {
        f.invalid = true;
        f.settled = true;
    });
}

/// The containers a `stats` without names follows: those listed now, then those the
/// daemon's events start (and, with `-a`, create), less those that die (without `-a`).
/// Subscribed before listing, as docker does, so a start in between is not missed.
fn follow_all(
    client: &std::sync::Arc<super::client::Client>,
    list: &Followers,
    all: bool,
    errors: mpsc::Sender<Option<CliError>>,
) -> Result<(), CliError> {
    let filters = q(r#"{"type":["container"]}"#);
    let events = client
        .request(
            "GET",
            &format!("/events?filters={filters}"),
            &[],
            Body::None,
        )?
        .ok()?;
    {
        let client = client.clone();
        let list = list.clone();
        std::thread::spawn(move || {
            let stream =
                serde_json::Deserializer::from_reader(BufReader::new(events)).into_iter::<Value>();
            for ev in stream {
                let ev = match ev {
                    Ok(ev) => ev,
                    // A stream cut short (the daemon restarting) ends the display quietly,
                    // as docker's does on an unexpected EOF.
                    Err(e) if e.is_eof() => {
                        let _ = errors.send(None);
                        return;
                    }
                    Err(e) => {
                        let _ = errors.send(Some(CliError::Client(ClientError::Io(e.into()))));
                        return;
                    }
                };
                let action = ev["Action"]
                    .as_str()
                    .or(ev["status"].as_str())
                    .unwrap_or("");
                let id = ev["Actor"]["ID"]
                    .as_str()
                    .or(ev["id"].as_str())
                    .unwrap_or("");
                let key = short_id(id, false);
                match action {
                    "start" => follow(&client, &list, key),
                    "create" if all => follow(&client, &list, key),
                    "die" if !all => list
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .retain(|f| f.key != key),
                    _ => {}
                }
            }
            // The daemon closed the stream: docker reports its decoder's EOF.
            let _ = errors.send(Some(CliError::Status {
                code: 1,
                message: "EOF".into(),
            }));
        });
    }
    let listed: Vec<Value> = client.get_json(if all {
        "/containers/json?all=1"
    } else {
        "/containers/json"
    })?;
    for c in &listed {
        if let Some(id) = c["Id"].as_str() {
            follow(client, list, short_id(id, false));
        }
    }
    Ok(())
}

/// docker's live `stats`: every half second the table is drawn again from the top left, each
/// line followed by an erase to its end and the rest of the screen erased after it. On a pipe
/// the same bytes are written (docker does not look), so a reader sees one table per tick.
fn stats_stream(ctx: &Ctx, a: &StatsArgs) -> Result<(), CliError> {
    let client = std::sync::Arc::new(super::client::Client::new(ctx.client.endpoint().clone()));
    client.version()?;
    let list: Followers = std::sync::Arc::default();
    let show_all = a.containers.is_empty();
    let (errors, failures) = mpsc::channel();
    if show_all {
        follow_all(&client, &list, a.all, errors)?;
    } else {
        drop(errors);
        for name in &a.containers {
            follow(&client, &list, name.clone());
        }
    }
    // Until every container has sent its first sample (or failed, or kept quiet too long).
    let start = std::time::Instant::now();
    loop {
        let settled = list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .all(|f| f.settled);
        if settled || start.elapsed() > STATS_QUIET {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if !show_all {
        let errs: Vec<String> = list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter_map(|f| f.error.clone())
            .collect();
        if !errs.is_empty() {
            return Err(CliError::Status {
                code: 1,
                message: errs.join("\n"),
            });
        }
    }
    let f = stats_format(ctx, a)?;
    let header = stats_header();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let rows: Vec<gotmpl::Value> = {
            let mut l = list
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            l.iter_mut()
                .map(|x| {
                    if x.heard.elapsed() > STATS_QUIET {
                        x.invalid = true;
                    }
                    match (&x.sample, x.invalid) {
                        (Some(s), false) => stats_row(s, &x.key, a.no_trunc),
                        (last, _) => invalid_stats_row(last.as_ref(), &x.key, a.no_trunc),
                    }
                })
                .collect()
        };
        let mut table = b"\x1b[H".to_vec();
        f.print(&mut table, &header, &rows)?;
        let table = String::from_utf8_lossy(&table).into_owned();
        let mut screen = table.clone();
        for line in table.split('\n') {
            screen.push_str(line);
            screen.push_str(" \x1b[K\n");
        }
        screen.push_str("\x1b[J");
        let mut out = std::io::stdout().lock();
        out.write_all(screen.as_bytes())
            .and_then(|()| out.flush())
            .map_err(CliError::io("stdout"))?;
        if let Ok(e) = failures.try_recv() {
            return e.map_or(Ok(()), Err);
        }
    }
}
