//! The networks' durable records: each network with its address pool and its endpoints (one per
//! connected container, with the address, MAC, veth and published ports it holds), in one JSON
//! file under the data root, replaced by a durable write on every change. An address is recorded
//! before its veth is made and released only after the veth is gone, so a crash in between never
//! lets a restarted engine hand it out twice.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ipam::{Pool, Subnet};
use super::ports::PortMap;

/// One connected container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    /// 64 hex digits.
    pub endpoint_id: String,
    /// The container's id.
    pub container_id: String,
    /// The container's name, without the leading `/`.
    pub container_name: String,
    /// `--network-alias` and compose service names.
    pub aliases: Vec<String>,
    /// The address.
    pub ip: Ipv4Addr,
    /// The MAC address as printed.
    pub mac: String,
    /// The host end of the veth pair.
    pub veth: String,
    /// The name inside the container.
    pub ifname: String,
    /// The container's namespace file.
    pub netns: PathBuf,
    /// The published ports bound for this endpoint.
    pub ports: Vec<PortMap>,
    /// Where the embedded resolver forwards other queries of this container.
    pub upstream: Vec<Ipv4Addr>,
}

/// One network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// 64 hex digits.
    pub id: String,
    /// Its unique name.
    pub name: String,
    /// When it was made (RFC 3339 with nanoseconds, as dockerd prints it).
    pub created: String,
    /// The bridge device.
    pub bridge: String,
    /// Addresses.
    pub pool: Pool,
    /// Whether the subnet was given by the user (dockerd shows the IPAM config as given).
    pub subnet_given: Option<Subnet>,
    /// The gateway as given by the user.
    pub gateway_given: Option<Ipv4Addr>,
    /// No route in or out.
    pub internal: bool,
    /// `--attachable`.
    pub attachable: bool,
    /// The default `bridge` network.
    pub default: bool,
    /// The MTU of the bridge and its veths.
    pub mtu: Option<u32>,
    /// Masquerade outgoing traffic.
    pub masquerade: bool,
    /// The driver options, as given (and, for the default network, as dockerd lists them).
    pub options: BTreeMap<String, String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Connected containers by container id.
    pub endpoints: BTreeMap<String, EndpointRecord>,
}

/// `host` or `none`: networks dockerd always lists, which only say how a container's namespace
/// is chosen (the host's, or a private one with loopback only); no devices, no addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PredefinedNetwork {
    /// 64 hex digits.
    pub id: String,
    /// `host` or `none`.
    pub name: String,
    /// `host` or `null`, as dockerd names their drivers.
    pub driver: String,
    /// When it was first made.
    pub created: String,
}

/// All networks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// By network id.
    pub networks: BTreeMap<String, NetworkRecord>,
    /// `host` and `none`.
    #[serde(default)]
    pub predefined: Vec<PredefinedNetwork>,
}

/// Why the state cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// reading {path}: {source}
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// {path} is not a network state file: {source}
    #[error("{path} is not a network state file: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// the durable write failed
    #[error(transparent)]
    Write(#[from] crate::sys::durable::DurableWriteError),
}

impl State {
    /// The file under `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("networks.json")
    }

    /// Loads the state from `dir` (empty when there is no file yet).
    ///
    /// # Errors
    /// [`StateError`] when the file exists but cannot be read or parsed.
    pub fn load(dir: &Path) -> Result<State, StateError> {
        let path = Self::path(dir);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| StateError::Parse { path, source })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(source) => Err(StateError::Read { path, source }),
        }
    }

    /// Replaces the file under `dir` durably.
    ///
    /// # Errors
    /// [`StateError::Write`].
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::Read {
            path: dir.into(),
            source,
        })?;
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        crate::sys::durable::write(&Self::path(dir), 0o600, &bytes)?;
        Ok(())
    }

    /// The network called `key`: by full id, by name, then by unique id prefix, as dockerd
    /// looks networks up.
    pub fn find(&self, key: &str) -> Option<&NetworkRecord> {
        if let Some(n) = self.networks.get(key) {
            return Some(n);
        }
        if let Some(n) = self.networks.values().find(|n| n.name == key) {
            return Some(n);
        }
        let mut by_prefix = self
            .networks
            .values()
            .filter(|n| n.id.starts_with(key) && !key.is_empty());
        match (by_prefix.next(), by_prefix.next()) {
            (Some(n), None) => Some(n),
            _ => None,
        }
    }

    /// The predefined network called `key` (id, name or unique id prefix).
    pub fn find_predefined(&self, key: &str) -> Option<&PredefinedNetwork> {
        if let Some(p) = self
            .predefined
            .iter()
            .find(|p| p.id == key || p.name == key)
        {
            return Some(p);
        }
        let mut by_prefix = self
            .predefined
            .iter()
            .filter(|p| p.id.starts_with(key) && !key.is_empty());
        match (by_prefix.next(), by_prefix.next()) {
            (Some(p), None) if self.find(key).is_none() => Some(p),
            _ => None,
        }
    }
}
