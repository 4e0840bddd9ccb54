//! refengd's configuration: command-line flags over an optional `daemon.json` with dockerd's key
//! names. A key refengd does not implement is refused by name, and a key given both as a flag and
//! in the file is refused, as dockerd refuses it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::containers::seccomp;
use super::containers::spec::SeccompChoice;

/// The default API socket (`-H`).
pub const DEFAULT_HOST: &str = "unix:///run/refeng/refeng.sock";
/// The default persistent directory (`--data-root`).
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/refeng";
/// The default volatile directory (`--exec-root`).
pub const DEFAULT_EXEC_ROOT: &str = "/run/refeng";
/// The group that owns the API socket (dockerd's is `docker`).
pub const DEFAULT_GROUP: &str = "refeng";
/// The containerd namespace the engine keeps its images and containers in (dockerd's).
pub const DEFAULT_NAMESPACE: &str = "moby";

/// The log drivers refengd implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogDriver {
    /// `json-file`: one JSON object per line, with rotation.
    JsonFile,
    /// `none`: output is dropped.
    None,
}

impl LogDriver {
    /// The name the API uses.
    pub fn name(self) -> &'static str {
        match self {
            LogDriver::JsonFile => "json-file",
            LogDriver::None => "none",
        }
    }
}

/// What the daemon runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The unix sockets the API is served on.
    pub hosts: Vec<PathBuf>,
    /// The TCP addresses the API is served on, over TLS with client certificates only.
    pub tcp_hosts: Vec<std::net::SocketAddr>,
    /// The certificates of TCP serving (`--tlsverify`); `Some` whenever `tcp_hosts` is not
    /// empty.
    pub tls: Option<TlsFiles>,
    /// Persistent state: container records, logs, the engine's id; refeng-containerd's root is
    /// `<data-root>/containerd` when refengd starts it.
    pub data_root: PathBuf,
    /// Volatile state: the pidfile, the supervised refeng-containerd's socket and state.
    pub exec_root: PathBuf,
    /// The containerd API socket to drive; `None`: start and supervise refeng-containerd.
    pub containerd: Option<PathBuf>,
    /// The containerd namespace of the engine's objects.
    pub containerd_namespace: String,
    /// The group that owns the API socket.
    pub group: String,
    /// `--pidfile`.
    pub pidfile: PathBuf,
    /// trace, debug, info, warn or error.
    pub log_level: String,
    /// The default log driver of containers.
    pub log_driver: LogDriver,
    /// The default log driver's options (`max-size`, `max-file`).
    pub log_opts: BTreeMap<String, String>,
    /// Registries reached over plain HTTP (beside loopback ones).
    pub insecure_registries: Vec<String>,
    /// The engine's labels (`/info` Labels).
    pub labels: Vec<String>,
    /// Whether experimental features are announced.
    pub experimental: bool,
    /// `bip`: the default bridge's address and subnet (parsed by the network layer).
    pub bip: Option<crate::engine::network::ipam::Subnet>,
    /// `default-address-pools` (parsed by the network layer); `None`: dockerd's defaults.
    pub default_address_pools: Option<Vec<crate::engine::network::ipam::PoolSpec>>,
    /// `bridge: none` (`-b none`): no default `bridge` network; containers in the default
    /// network mode run without a network, as dockerd's `DisableBridge`.
    pub bridge_none: bool,
    /// `seccomp-profile` as given (a path or `unconfined`); `None`: the built-in profile.
    pub seccomp_profile: Option<String>,
    /// The profile of a container that names none: the built-in one, none (`unconfined`) or
    /// the one `seccomp-profile` names (read by [`Config::load`] when the daemon starts, as
    /// dockerd reads it).
    pub default_seccomp: SeccompChoice,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hosts: Vec::new(),
            tcp_hosts: Vec::new(),
            tls: None,
            data_root: DEFAULT_DATA_ROOT.into(),
            exec_root: DEFAULT_EXEC_ROOT.into(),
            containerd: None,
            containerd_namespace: DEFAULT_NAMESPACE.into(),
            group: DEFAULT_GROUP.into(),
            pidfile: PathBuf::new(),
            log_level: "info".into(),
            log_driver: LogDriver::JsonFile,
            log_opts: BTreeMap::new(),
            insecure_registries: Vec::new(),
            labels: Vec::new(),
            experimental: false,
            bip: None,
            default_address_pools: None,
            bridge_none: false,
            seccomp_profile: None,
            default_seccomp: SeccompChoice::Builtin,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// reading {path}: {source}
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// {path}: not a JSON object: {source}
    #[error("{path}: not a JSON object: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: serde_json::Error,
    },
    /// the following directives don't match any configuration option: {0}
    #[error("the following directives don't match any configuration option: {0}")]
    UnknownKeys(String),
    /// the following directives are specified both as a flag and in the configuration file: {0}
    #[error(
        "the following directives are specified both as a flag and in the configuration file: {0}"
    )]
    Conflict(String),
    /// invalid value for {key}: {reason}
    #[error("invalid value for {key}: {reason}")]
    Value {
        /// The key or flag.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The PEM files of `--tlsverify` serving: the CA that signs the clients' certificates, and
/// the daemon's own certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `--tlscacert`.
    pub ca: PathBuf,
    /// `--tlscert`.
    pub cert: PathBuf,
    /// `--tlskey`.
    pub key: PathBuf,
}

/// An address of `-H`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// `unix://PATH` (or a bare absolute path).
    Unix(PathBuf),
    /// `tcp://HOST:PORT`.
    Tcp(std::net::SocketAddr),
}

/// What was given on the command line, before the file is merged in.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `-H`/`--host`, repeatable.
    pub hosts: Vec<String>,
    /// `--data-root`.
    pub data_root: Option<PathBuf>,
    /// `--exec-root`.
    pub exec_root: Option<PathBuf>,
    /// `--containerd`.
    pub containerd: Option<PathBuf>,
    /// `--containerd-namespace`.
    pub containerd_namespace: Option<String>,
    /// `-G`/`--group`.
    pub group: Option<String>,
    /// `-p`/`--pidfile`.
    pub pidfile: Option<PathBuf>,
    /// `-l`/`--log-level`.
    pub log_level: Option<String>,
    /// `-D`/`--debug`.
    pub debug: bool,
    /// `--config-file`.
    pub config_file: Option<PathBuf>,
    /// `-b`/`--bridge`.
    pub bridge: Option<String>,
    /// `--tls`.
    pub tls: bool,
    /// `--tlsverify`.
    pub tlsverify: bool,
    /// `--tlscacert`.
    pub tlscacert: Option<PathBuf>,
    /// `--tlscert`.
    pub tlscert: Option<PathBuf>,
    /// `--tlskey`.
    pub tlskey: Option<PathBuf>,
}

/// The daemon.json keys refengd honours. Everything else dockerd knows (storage drivers,
/// networks, swarm, TLS over TCP, ...) belongs to a part refengd does not have, and is refused
/// by name rather than silently ignored.
const KEYS: &[&str] = &[
    "hosts",
    "data-root",
    "exec-root",
    "containerd",
    "containerd-namespace",
    "group",
    "pidfile",
    "debug",
    "log-level",
    "log-driver",
    "log-opts",
    "insecure-registries",
    "labels",
    "experimental",
    "live-restore",
    "bip",
    "default-address-pools",
    "bridge",
    "seccomp-profile",
    "tls",
    "tlsverify",
    "tlscacert",
    "tlscert",
    "tlskey",
];

/// The json-file options refengd implements.
const LOG_OPTS: &[&str] = &["max-size", "max-file"];

impl Config {
    /// Builds the configuration from the flags and, when `--config-file` names one, the file.
    ///
    /// # Errors
    /// When the file cannot be read or parsed, names a key refengd does not implement, repeats a
    /// flag, or a value is not valid.
    pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
        let file = match &flags.config_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                Some((path.clone(), text))
            }
            None => None,
        };
        let mut config =
            Self::from_parts(flags, file.as_ref().map(|(p, t)| (p.as_path(), t.as_str())))?;
        config.read_seccomp_profile()?;
        Ok(config)
    }

    /// Reads and parses the profile daemon.json's `seccomp-profile` names into
    /// [`Config::default_seccomp`] (dockerd reads it once, at start). Apart from
    /// [`Config::from_parts`], which reads no file but daemon.json's text.
    ///
    /// # Errors
    /// [`ConfigError::Value`] naming `seccomp-profile` when the file cannot be read or is not a
    /// profile.
    pub fn read_seccomp_profile(&mut self) -> Result<(), ConfigError> {
        let Some(p) = self
            .seccomp_profile
            .as_deref()
            .filter(|p| *p != "unconfined")
        else {
            return Ok(());
        };
        let text = std::fs::read_to_string(p).map_err(|e| {
            value_error(
                "seccomp-profile",
                &format!("opening seccomp profile ({p}) failed: {e}"),
            )
        })?;
        let profile = seccomp::parse(&text)
            .map_err(|e| value_error("seccomp-profile", &format!("{p}: {e}")))?;
        self.default_seccomp = SeccompChoice::Custom(profile);
        Ok(())
    }

    /// As [`Config::load`], with the file's text already read, and the file `seccomp-profile`
    /// names not read yet ([`Config::read_seccomp_profile`]).
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn from_parts(flags: &Flags, file: Option<(&Path, &str)>) -> Result<Config, ConfigError> {
        let map: serde_json::Map<String, Value> = match file {
            // An empty file is no configuration, as dockerd reads it.
            Some((_, text)) if text.trim().is_empty() => serde_json::Map::new(),
            Some((path, text)) => {
                serde_json::from_str(text).map_err(|source| ConfigError::Json {
                    path: path.into(),
                    source,
                })?
            }
            None => serde_json::Map::new(),
        };
        let unknown: Vec<&str> = map
            .keys()
            .map(String::as_str)
            .filter(|k| !KEYS.contains(k))
            .collect();
        if !unknown.is_empty() {
            return Err(ConfigError::UnknownKeys(unknown.join(", ")));
        }
        let mut conflicts = Vec::new();
        let mut conflict = |key: &str, flag: Option<String>| {
            if let (Some(f), Some(v)) = (flag, map.get(key)) {
                conflicts.push(format!("{key}: (from flag: {f}, from file: {v})"));
            }
        };
        conflict(
            "hosts",
            (!flags.hosts.is_empty()).then(|| format!("{:?}", flags.hosts)),
        );
        conflict(
            "data-root",
            flags.data_root.as_ref().map(|p| p.display().to_string()),
        );
        conflict(
            "exec-root",
            flags.exec_root.as_ref().map(|p| p.display().to_string()),
        );
        conflict(
            "containerd",
            flags.containerd.as_ref().map(|p| p.display().to_string()),
        );
        conflict("containerd-namespace", flags.containerd_namespace.clone());
        conflict("group", flags.group.clone());
        conflict(
            "pidfile",
            flags.pidfile.as_ref().map(|p| p.display().to_string()),
        );
        conflict("log-level", flags.log_level.clone());
        conflict("debug", flags.debug.then(|| "true".to_string()));
        conflict("bridge", flags.bridge.clone());
        conflict("tls", flags.tls.then(|| "true".to_string()));
        conflict("tlsverify", flags.tlsverify.then(|| "true".to_string()));
        for (key, flag) in [
            ("tlscacert", &flags.tlscacert),
            ("tlscert", &flags.tlscert),
            ("tlskey", &flags.tlskey),
        ] {
            conflict(key, flag.as_ref().map(|p| p.display().to_string()));
        }
        if !conflicts.is_empty() {
            return Err(ConfigError::Conflict(conflicts.join(", ")));
        }

        let mut c = Config::default();
        let hosts: Vec<String> = if flags.hosts.is_empty() {
            match map.get("hosts") {
                Some(v) => strings("hosts", v)?,
                None => Vec::new(),
            }
        } else {
            flags.hosts.clone()
        };
        let hosts = if hosts.is_empty() {
            vec![DEFAULT_HOST.to_string()]
        } else {
            hosts
        };
        for h in &hosts {
            match parse_host(h)? {
                Host::Unix(p) => c.hosts.push(p),
                Host::Tcp(a) => c.tcp_hosts.push(a),
            }
        }
        let tlsverify = flags.tlsverify || boolean(&map, "tlsverify")?.unwrap_or(false);
        let tls = flags.tls || boolean(&map, "tls")?.unwrap_or(false);
        if !c.tcp_hosts.is_empty() && !tlsverify {
            return Err(value_error(
                "hosts",
                &format!(
                    "{}: refengd serves TCP only with --tlsverify, which asks every client for \
                     a certificate signed by --tlscacert{}",
                    c.tcp_hosts
                        .iter()
                        .map(|a| format!("tcp://{a}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if tls {
                        " (--tls alone, without client certificates, is not supported)"
                    } else {
                        ""
                    }
                ),
            ));
        }
        if tlsverify {
            // dockerd's defaults: the files in DOCKER_CERT_PATH, else ~/.docker.
            let dir = std::env::var_os("DOCKER_CERT_PATH")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
                .unwrap_or_else(|| PathBuf::from("/root/.docker"));
            let file =
                |flag: &Option<PathBuf>, key: &str, name: &str| -> Result<PathBuf, ConfigError> {
                    Ok(flag
                        .clone()
                        .or(path(&map, key)?)
                        .unwrap_or_else(|| dir.join(name)))
                };
            c.tls = Some(TlsFiles {
                ca: file(&flags.tlscacert, "tlscacert", "ca.pem")?,
                cert: file(&flags.tlscert, "tlscert", "cert.pem")?,
                key: file(&flags.tlskey, "tlskey", "key.pem")?,
            });
        }
        if let Some(p) = flags.data_root.clone().or(path(&map, "data-root")?) {
            c.data_root = p;
        }
        if let Some(p) = flags.exec_root.clone().or(path(&map, "exec-root")?) {
            c.exec_root = p;
        }
        c.containerd = flags.containerd.clone().or(path(&map, "containerd")?);
        if let Some(ns) = flags
            .containerd_namespace
            .clone()
            .or(string(&map, "containerd-namespace")?)
        {
            if ns.is_empty() {
                return Err(value_error("containerd-namespace", "must not be empty"));
            }
            c.containerd_namespace = ns;
        }
        if let Some(g) = flags.group.clone().or(string(&map, "group")?) {
            c.group = g;
        }
        c.pidfile = flags
            .pidfile
            .clone()
            .or(path(&map, "pidfile")?)
            .unwrap_or_else(|| c.exec_root.join("refengd.pid"));
        let debug = flags.debug || boolean(&map, "debug")?.unwrap_or(false);
        if let Some(l) = flags.log_level.clone().or(string(&map, "log-level")?) {
            match l.as_str() {
                "trace" | "debug" | "info" | "warn" | "error" | "fatal" => c.log_level = l,
                other => {
                    return Err(value_error(
                        "log-level",
                        &format!("{other:?}: use trace, debug, info, warn, error or fatal"),
                    ))
                }
            }
        }
        if debug {
            c.log_level = "debug".into();
        }
        if let Some(p) = string(&map, "seccomp-profile")?.filter(|p| !p.is_empty()) {
            if p == "unconfined" {
                c.default_seccomp = SeccompChoice::Unconfined;
            }
            c.seccomp_profile = Some(p);
        }
        if let Some(d) = string(&map, "log-driver")? {
            c.log_driver = match d.as_str() {
                "json-file" => LogDriver::JsonFile,
                "none" => LogDriver::None,
                other => {
                    return Err(value_error(
                        "log-driver",
                        &format!("{other:?} is not supported (json-file and none are)"),
                    ))
                }
            };
        }
        if let Some(v) = map.get("log-opts") {
            let Value::Object(opts) = v else {
                return Err(value_error("log-opts", "must be an object of strings"));
            };
            for (k, v) in opts {
                if !LOG_OPTS.contains(&k.as_str()) {
                    return Err(value_error(
                        "log-opts",
                        &format!(
                            "unknown log opt '{k}' for {} log driver",
                            c.log_driver.name()
                        ),
                    ));
                }
                let Value::String(s) = v else {
                    return Err(value_error(&format!("log-opts.{k}"), "must be a string"));
                };
                c.log_opts.insert(k.clone(), s.clone());
            }
        }
        if let Some(v) = map.get("insecure-registries") {
            c.insecure_registries = strings("insecure-registries", v)?;
        }
        if let Some(v) = map.get("labels") {
            c.labels = strings("labels", v)?;
            if let Some(bad) = c.labels.iter().find(|l| !l.contains('=')) {
                return Err(value_error(
                    "labels",
                    &format!("{bad:?} is not a valid label: it needs the form key=value"),
                ));
            }
        }
        c.experimental = boolean(&map, "experimental")?.unwrap_or(false);
        if let Some(b) = string(&map, "bip")? {
            c.bip = Some(crate::engine::network::ipam::parse_bip(&b).map_err(|e| {
                value_error("bip", &crate::engine::network::ipam::config_reason(&e))
            })?);
        }
        if let Some(v) = map.get("default-address-pools") {
            c.default_address_pools = Some(
                crate::engine::network::ipam::parse_default_address_pools(v).map_err(|e| {
                    value_error(
                        "default-address-pools",
                        &crate::engine::network::ipam::config_reason(&e),
                    )
                })?,
            );
        }
        match flags.bridge.clone().or(string(&map, "bridge")?).as_deref() {
            None | Some("") => {}
            Some("none") => c.bridge_none = true,
            Some(other) => {
                return Err(value_error(
                    "bridge",
                    &format!(
                    "{other:?}: refengd makes its own default bridge; only \"none\" (no default \
                         bridge network) is supported"
                ),
                ))
            }
        }
        if boolean(&map, "live-restore")? == Some(false) {
            return Err(value_error(
                "live-restore",
                "refengd always restores containers live; false is not supported",
            ));
        }
        Ok(c)
    }

    /// The socket of the refeng-containerd refengd supervises.
    pub fn supervised_socket(&self) -> PathBuf {
        self.exec_root.join("containerd/containerd.sock")
    }

    /// The containerd socket the engine drives.
    pub fn containerd_socket(&self) -> PathBuf {
        self.containerd
            .clone()
            .unwrap_or_else(|| self.supervised_socket())
    }
}

/// Parses one `-H` value: a unix socket, or `tcp://HOST:PORT` (served only with
/// `--tlsverify`; the port defaults to 2376 as dockerd's does with TLS).
///
/// # Errors
/// `Value` naming the address.
pub fn parse_host(h: &str) -> Result<Host, ConfigError> {
    if let Some(rest) = h.strip_prefix("tcp://") {
        use std::net::ToSocketAddrs;
        let rest = rest.trim_end_matches('/');
        let with_port = if rest
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !rest.ends_with(']')
        {
            rest.to_string()
        } else {
            format!("{rest}:2376")
        };
        let with_port = if with_port.starts_with(':') {
            format!("0.0.0.0{with_port}")
        } else {
            with_port
        };
        return with_port
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .map(Host::Tcp)
            .ok_or_else(|| value_error("hosts", &format!("{h:?}: not a tcp://HOST:PORT address")));
    }
    parse_unix_host(h).map(Host::Unix)
}

fn parse_unix_host(h: &str) -> Result<PathBuf, ConfigError> {
    if let Some(p) = h.strip_prefix("unix://") {
        if p.is_empty() {
            return Ok(PathBuf::from("/run/refeng/refeng.sock"));
        }
        if !p.starts_with('/') {
            return Err(value_error(
                "hosts",
                &format!("{h:?}: the socket path must be absolute"),
            ));
        }
        return Ok(PathBuf::from(p));
    }
    if h.starts_with("fd://") || h.starts_with("npipe://") || h.starts_with("ssh://") {
        return Err(value_error(
            "hosts",
            &format!("{h:?}: only unix:// sockets and tcp:// with --tlsverify are served"),
        ));
    }
    if h.starts_with('/') {
        return Ok(PathBuf::from(h));
    }
    Err(value_error(
        "hosts",
        &format!("{h:?}: not a unix:// address"),
    ))
}

fn value_error(key: &str, reason: &str) -> ConfigError {
    ConfigError::Value {
        key: key.into(),
        reason: reason.into(),
    }
}

fn string(map: &serde_json::Map<String, Value>, key: &str) -> Result<Option<String>, ConfigError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(value_error(key, "must be a string")),
    }
}

fn path(map: &serde_json::Map<String, Value>, key: &str) -> Result<Option<PathBuf>, ConfigError> {
    match string(map, key)? {
        Some(s) if s.starts_with('/') => Ok(Some(PathBuf::from(s))),
        Some(s) => Err(value_error(key, &format!("{s:?} is not an absolute path"))),
        None => Ok(None),
    }
}

fn boolean(map: &serde_json::Map<String, Value>, key: &str) -> Result<Option<bool>, ConfigError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(value_error(key, "must be true or false")),
    }
}

fn strings(key: &str, v: &Value) -> Result<Vec<String>, ConfigError> {
    let Value::Array(items) = v else {
        return Err(value_error(key, "must be an array of strings"));
    };
    items
        .iter()
        .map(|i| match i {
            Value::String(s) => Ok(s.clone()),
            _ => Err(value_error(key, "must be an array of strings")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<Config, ConfigError> {
        Config::from_parts(&Flags::default(), Some((Path::new("daemon.json"), text)))
    }

    #[test]
    fn defaults_are_the_issues() {
        let c = Config::from_parts(&Flags::default(), None).unwrap();
        assert_eq!(c.hosts, vec![PathBuf::from("/run/refeng/refeng.sock")]);
        assert_eq!(c.data_root, PathBuf::from("/var/lib/refeng"));
        assert_eq!(c.exec_root, PathBuf::from("/run/refeng"));
        assert_eq!(c.pidfile, PathBuf::from("/run/refeng/refengd.pid"));
        assert_eq!(
            c.containerd_socket(),
            PathBuf::from("/run/refeng/containerd/containerd.sock")
        );
        assert_eq!(c.containerd_namespace, "moby");
    }

    #[test]
    fn file_keys_apply() {
        let c = file(
            r#"{"data-root":"/d","exec-root":"/e","debug":true,"log-driver":"none",
                "log-opts":{"max-size":"10m","max-file":"3"},"labels":["a=b"],
                "insecure-registries":["r:5000"],"live-restore":true,"hosts":["unix:///s.sock"]}"#,
        )
        .unwrap();
        assert_eq!(c.data_root, PathBuf::from("/d"));
        assert_eq!(c.pidfile, PathBuf::from("/e/refengd.pid"));
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.log_driver, LogDriver::None);
        assert_eq!(c.log_opts.get("max-file").map(String::as_str), Some("3"));
        assert_eq!(c.hosts, vec![PathBuf::from("/s.sock")]);
    }

    #[test]
    fn network_keys_are_parsed_by_the_network_layer() {
        let c = file(
            r#"{"bip":"192.168.7.5/24","default-address-pools":[{"base":"10.80.0.0/16","size":24}]}"#,
        )
        .unwrap();
        assert_eq!(
            c.bip.map(|b| b.to_string()).as_deref(),
            Some("192.168.7.5/24")
        );
        assert_eq!(c.default_address_pools.map(|p| p.len()), Some(1));
        let e = file(r#"{"bip":"192.168.7.0/24"}"#).unwrap_err().to_string();
        assert!(
            e.starts_with("invalid value for bip: 192.168.7.0/24"),
            "{e}"
        );
        let e = file(r#"{"default-address-pools":[{"base":"10.0.0.0/8","size":4}]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("default-address-pools") && e.contains("size 4"),
            "{e}"
        );
    }

    #[test]
    fn bridge_none_is_the_only_bridge_setting() {
        assert!(file(r#"{"bridge":"none"}"#).unwrap().bridge_none);
        assert!(!file("{}").unwrap().bridge_none);
        let e = file(r#"{"bridge":"docker0"}"#).unwrap_err().to_string();
        assert!(
            e.starts_with("invalid value for bridge: \"docker0\""),
            "{e}"
        );
        let flags = Flags {
            bridge: Some("none".into()),
            ..Flags::default()
        };
        assert!(Config::from_parts(&flags, None).unwrap().bridge_none);
        let e = Config::from_parts(&flags, Some((Path::new("d.json"), r#"{"bridge":"none"}"#)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bridge"), "{e}");
    }

    #[test]
    fn unknown_keys_and_options_are_refused_by_name() {
        let e = file(r#"{"storage-driver":"overlay2","fixed-cidr":"1.2.3.0/25"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("storage-driver") && e.contains("fixed-cidr"),
            "{e}"
        );
        let e = file(r#"{"log-opts":{"compress":"true"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("compress"), "{e}");
        let e = file(r#"{"log-driver":"syslog"}"#).unwrap_err().to_string();
        assert!(e.contains("syslog"), "{e}");
        let e = file(r#"{"live-restore":false}"#).unwrap_err().to_string();
        assert!(e.contains("live-restore"), "{e}");
        let e = file(r#"{"hosts":["tcp://0.0.0.0:2375"]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tcp://0.0.0.0:2375") && e.contains("--tlsverify"),
            "{e}"
        );
        let e = file(r#"{"hosts":["tcp://127.0.0.1:2376"],"tls":true}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--tls alone"), "{e}");
        let c = file(
            r#"{"hosts":["unix:///s.sock","tcp://127.0.0.1"],"tlsverify":true,
                "tlscacert":"/c/ca.pem","tlscert":"/c/cert.pem","tlskey":"/c/key.pem"}"#,
        )
        .unwrap();
        assert_eq!(c.hosts, vec![PathBuf::from("/s.sock")]);
        assert_eq!(c.tcp_hosts, vec!["127.0.0.1:2376".parse().unwrap()]);
        assert_eq!(
            c.tls,
            Some(TlsFiles {
                ca: "/c/ca.pem".into(),
                cert: "/c/cert.pem".into(),
                key: "/c/key.pem".into()
            })
        );
        assert!(file(r#"{"hosts":["tcp://nowhere.invalid.:x"],"tlsverify":true}"#).is_err());
        assert!(file("[1]").is_err());
        let e = file(r#"{"seccomp-profile":"/nonexistent/profile.json"}"#)
            .unwrap()
            .read_seccomp_profile()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("seccomp-profile") && e.contains("/nonexistent"),
            "{e}"
        );
    }

    #[test]
    fn seccomp_profile_names_the_default_profile() {
        assert_eq!(file("{}").unwrap().default_seccomp, SeccompChoice::Builtin);
        let c = file(r#"{"seccomp-profile":"unconfined"}"#).unwrap();
        assert_eq!(c.default_seccomp, SeccompChoice::Unconfined);
        assert_eq!(c.seccomp_profile.as_deref(), Some("unconfined"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(&path, r#"{"defaultAction":"SCMP_ACT_LOG"}"#).unwrap();
        let json = format!(r#"{{"seccomp-profile":{:?}}}"#, path.display().to_string());
        let mut c = file(&json).unwrap();
        assert_eq!(c.default_seccomp, SeccompChoice::Builtin, "not read yet");
        c.read_seccomp_profile().unwrap();
        assert!(matches!(c.default_seccomp, SeccompChoice::Custom(_)));
        std::fs::write(&path, r#"{"defaultAction":"SCMP_ACT_LOG","x":1}"#).unwrap();
        let e = file(&json)
            .unwrap()
            .read_seccomp_profile()
            .unwrap_err()
            .to_string();
        assert!(e.contains("seccomp-profile") && e.contains('x'), "{e}");
    }

    #[test]
    fn a_flag_repeated_in_the_file_is_refused() {
        let flags = Flags {
            data_root: Some("/x".into()),
            ..Flags::default()
        };
        let e = Config::from_parts(&flags, Some((Path::new("d.json"), r#"{"data-root":"/y"}"#)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("data-root") && e.contains("/x"), "{e}");
    }
}
