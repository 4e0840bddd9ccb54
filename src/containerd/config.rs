//! The daemon's configuration: command-line flags over an optional TOML file with containerd's
//! key names (`root`, `state`, `[grpc] address`, `[debug] level` and `format`). A key
//! refeng-containerd does not implement is refused by name rather than ignored.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The default socket (`--address`).
pub const DEFAULT_ADDRESS: &str = "/run/refeng/containerd/containerd.sock";
/// The default persistent directory (`--root`).
pub const DEFAULT_ROOT: &str = "/var/lib/refeng/containerd";
/// The default volatile directory (`--state`).
pub const DEFAULT_STATE: &str = "/run/refeng/containerd";

/// What the daemon runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The gRPC unix socket.
    pub address: PathBuf,
    /// Persistent state: metadata, content, snapshots.
    pub root: PathBuf,
    /// Volatile state: task bundles, sockets.
    pub state: PathBuf,
    /// The log level (trace, debug, info, warn, error).
    pub log_level: String,
    /// The log format (text or json).
    pub log_format: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            address: DEFAULT_ADDRESS.into(),
            root: DEFAULT_ROOT.into(),
            state: DEFAULT_STATE.into(),
            log_level: "info".into(),
            log_format: "text".into(),
        }
    }
}

/// A configuration file that cannot be used.
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
    /// {path}: {source}
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong (toml names an unsupported key here).
        #[source]
        source: toml::de::Error,
    },
    /// {path}: config version {version} is not supported (1 and 2 are)
    #[error("{path}: config version {version} is not supported (1 and 2 are)")]
    Version {
        /// The file.
        path: PathBuf,
        /// The version it declares.
        version: i64,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: Option<i64>,
    root: Option<PathBuf>,
    state: Option<PathBuf>,
    grpc: Option<GrpcSection>,
    debug: Option<DebugSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrpcSection {
    address: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DebugSection {
    level: Option<String>,
    format: Option<String>,
}

impl Config {
    /// Applies the settings of the TOML file at `path` over `self`.
    ///
    /// # Errors
    /// When the file cannot be read, is not TOML, or has a key or version not supported.
    pub fn apply_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        self.apply_text(path, &text)
    }

    fn apply_text(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let f: File = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })?;
        if let Some(v) = f.version.filter(|v| !(1..=2).contains(v)) {
            return Err(ConfigError::Version {
                path: path.into(),
                version: v,
            });
        }
        if let Some(r) = f.root {
            self.root = r;
        }
        if let Some(s) = f.state {
            self.state = s;
        }
        if let Some(a) = f.grpc.and_then(|g| g.address) {
            self.address = a;
        }
        if let Some(d) = f.debug {
            if let Some(l) = d.level {
                self.log_level = l;
            }
            if let Some(f) = d.format {
                self.log_format = f;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_apply_and_unknown_keys_are_refused_by_name() {
        let mut c = Config::default();
        c.apply_text(
            Path::new("c.toml"),
            "version = 2\nroot = \"/r\"\n[grpc]\naddress = \"/s.sock\"\n[debug]\nlevel = \"debug\"\n",
        )
        .unwrap();
        assert_eq!(c.root, PathBuf::from("/r"));
        assert_eq!(c.address, PathBuf::from("/s.sock"));
        assert_eq!(c.log_level, "debug");
        let err = c
            .apply_text(Path::new("c.toml"), "[plugins]\nx = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("plugins"), "{err}");
        assert!(c.apply_text(Path::new("c.toml"), "version = 3\n").is_err());
    }
}
