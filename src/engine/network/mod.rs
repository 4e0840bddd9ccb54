//! refengd's network layer: bridge networks (the default `bridge` on device `refeng0`, and
//! user-defined ones on `br-<12 hex>`), their address management, container network namespaces
//! wired with veth pairs, NAT and published ports, the embedded DNS server, and the
//! resolv.conf / hosts / hostname files, for the containers code to call.
//!
//! Split by concern: [`ipam`] (pure allocator), [`state`] (durable records), [`netlink`] (the
//! kernel: namespaces, links, addresses, routes), [`nat`] (packet filter rules), [`ports`]
//! (published ports and the loopback proxy), [`dns`] and [`resolver`] (the embedded server),
//! [`files`] (the generated /etc files) and [`inspect`] (dockerd's JSON shapes).
//!
//! Netlink goes through `rtnetlink` (with `netlink-packet-route`), the rust-netlink project's
//! crate: maintained, used by youki and netavark (Podman's network stack, which does this very
//! job), typed messages for links, veth peers, bridges, addresses and routes, and a tokio
//! transport. neli is lower level (raw attributes) and would have us re-encode what
//! netlink-packet-route already models.
//!
//! The controller's methods block (netlink runs on short-lived threads, iptables as commands):
//! async callers use `spawn_blocking`. DNS servers and port proxies run as tasks on the tokio
//! runtime handed to [`NetworkController::open`].

pub mod api;
pub mod containers;
pub mod dns;
pub mod files;
pub mod inspect;
pub mod ipam;
pub mod nat;
pub mod netlink;
pub mod ports;
pub mod resolver;
pub mod routes;
pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use serde::Deserialize;
use serde_json::Value;

use ipam::{IpamError, Pool, PoolSpec, Subnet};
use nat::{BridgeRules, NatError};
use netlink::{NetlinkError, VethPlan};
use ports::{PortError, PortMap, PortRequest, Proxy};
use resolver::{Names, Resolver};
use state::{EndpointRecord, NetworkRecord, State, StateError};

/// The default network's name.
pub const DEFAULT_NETWORK: &str = "bridge";
/// The default network's bridge device.
pub const DEFAULT_BRIDGE: &str = "refeng0";
/// The option naming a user network's bridge device.
pub const OPT_BRIDGE_NAME: &str = "com.docker.network.bridge.name";
/// The option setting a network's MTU.
pub const OPT_MTU: &str = "com.docker.network.driver.mtu";
/// The option switching masquerade off.
pub const OPT_MASQUERADE: &str = "com.docker.network.bridge.enable_ip_masquerade";
/// Inter-container connectivity (only `true` is supported).
pub const OPT_ICC: &str = "com.docker.network.bridge.enable_icc";
/// The default host address of published ports (only 0.0.0.0 is supported).
pub const OPT_HOST_BINDING: &str = "com.docker.network.bridge.host_binding_ipv4";

/// What can go wrong in the network layer; [`From<NetworkError> for ApiError`] maps each to
/// dockerd's status class.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// network {0} not found
    #[error("network {0} not found")]
    NotFound(String),
    /// network with name {0} already exists
    #[error("network with name {0} already exists")]
    NameTaken(String),
    /// a request dockerd would refuse as invalid, or an option refengd does not implement
    #[error("{0}")]
    Invalid(String),
    /// {0} is a pre-defined network and cannot be removed
    #[error("{0} is a pre-defined network and cannot be removed")]
    Predefined(String),
    /// error while removing network: network {name} id {id} has active endpoints
    #[error("error while removing network: network {name} id {id} has active endpoints")]
    InUse {
        /// The network's name.
        name: String,
        /// Its id.
        id: String,
    },
    /// endpoint with name {container} already exists in network {network}
    #[error("endpoint with name {container} already exists in network {network}")]
    AlreadyConnected {
        /// The container's name.
        container: String,
        /// The network's name.
        network: String,
    },
    /// container {container} is not connected to network {network}
    #[error("container {container} is not connected to network {network}")]
    NotConnected {
        /// The container.
        container: String,
        /// The network's name.
        network: String,
    },
    /// address management
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// published ports (dockerd's wording around it)
    #[error("driver failed programming external connectivity on endpoint {endpoint}: {source}")]
    Ports {
        /// The container's name.
        endpoint: String,
        /// Why.
        #[source]
        source: PortError,
    },
    /// the kernel
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// the packet filter
    #[error(transparent)]
    Nat(#[from] NatError),
    /// the records
    #[error(transparent)]
    State(#[from] StateError),
}

impl From<NetworkError> for crate::engine::ApiError {
    fn from(e: NetworkError) -> Self {
        use crate::engine::ApiError;
        let msg = e.to_string();
        match e {
            NetworkError::NotFound(_) => ApiError::NotFound(msg),
            NetworkError::NameTaken(_) | NetworkError::InUse { .. } => ApiError::Conflict(msg),
            NetworkError::Predefined(_) | NetworkError::AlreadyConnected { .. } => {
                ApiError::Forbidden(msg)
            }
            NetworkError::Invalid(_) | NetworkError::NotConnected { .. } => {
                ApiError::BadRequest(msg)
            }
            NetworkError::Ipam(IpamError::Overlap) | NetworkError::Ipam(IpamError::InUse) => {
                ApiError::Forbidden(msg)
            }
            NetworkError::Ipam(_) => ApiError::BadRequest(msg),
            NetworkError::Ports { .. }
            | NetworkError::Netlink(_)
            | NetworkError::Nat(_)
            | NetworkError::State(_) => ApiError::Internal(msg),
        }
    }
}

/// The daemon settings the network layer runs with.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Where the records live (`<data-root>/network`).
    pub state_dir: PathBuf,
    /// Where namespace files are made (`<exec-root>/netns`).
    pub netns_dir: PathBuf,
    /// The pools user networks draw from (`default-address-pools`, or dockerd's defaults).
    pub pools: Vec<PoolSpec>,
    /// `bip`: the default bridge's address and subnet.
    pub bip: Option<Subnet>,
    /// The host's resolv.conf the container files and the resolver's upstreams come from.
    pub host_resolv_conf: PathBuf,
    /// The default network's bridge device.
    pub default_bridge: String,
    /// Whether the default `bridge` network exists (false with `bridge: none`).
    pub default_network: bool,
}

impl NetworkConfig {
    /// The settings for a daemon with `data_root` and `exec_root` and daemon.json's `bip` and
    /// `default-address-pools`.
    pub fn new(
        data_root: &Path,
        exec_root: &Path,
        bip: Option<Subnet>,
        pools: Option<Vec<PoolSpec>>,
    ) -> NetworkConfig {
        NetworkConfig {
            state_dir: data_root.join("network"),
            netns_dir: exec_root.join("netns"),
            pools: pools.unwrap_or_else(ipam::default_pools),
            bip,
            host_resolv_conf: "/etc/resolv.conf".into(),
            default_bridge: DEFAULT_BRIDGE.into(),
            default_network: true,
        }
    }
}

/// `POST /networks/create`'s body, as dockerd reads it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct NetworkCreate {
    /// The name.
    pub name: String,
    /// Deprecated and ignored by dockerd since API 1.44; accepted.
    #[serde(default)]
    pub check_duplicate: Option<bool>,
    /// Only `bridge` (the default).
    #[serde(default)]
    pub driver: Option<String>,
    /// Only `local`.
    #[serde(default)]
    pub scope: Option<String>,
    /// No route in or out.
    #[serde(default)]
    pub internal: bool,
    /// `--attachable`.
    #[serde(default)]
    pub attachable: bool,
    /// Swarm only: refused when true.
    #[serde(default)]
    pub ingress: bool,
    /// Refused when true: refengd's networks are IPv4.
    #[serde(default, rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    /// API 1.47's `EnableIPv4`: only true (or absent) is supported.
    #[serde(default, rename = "EnableIPv4")]
    pub enable_ipv4: Option<bool>,
    /// Address settings.
    #[serde(default, rename = "IPAM")]
    pub ipam: Option<IpamRequest>,
    /// Driver options.
    #[serde(default)]
    pub options: Option<BTreeMap<String, String>>,
    /// Labels.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Refused when true.
    #[serde(default)]
    pub config_only: bool,
    /// Refused when set.
    #[serde(default)]
    pub config_from: Option<Value>,
}

/// The IPAM part of a create request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct IpamRequest {
    /// Only `default`.
    #[serde(default)]
    pub driver: Option<String>,
    /// At most one IPv4 entry.
    #[serde(default)]
    pub config: Option<Vec<IpamConfig>>,
    /// Refused when not empty.
    #[serde(default)]
    pub options: Option<BTreeMap<String, String>>,
}

/// One IPAM config entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct IpamConfig {
    /// CIDR.
    #[serde(default)]
    pub subnet: Option<String>,
    /// CIDR inside the subnet.
    #[serde(default, rename = "IPRange")]
    pub ip_range: Option<String>,
    /// An address inside the subnet.
    #[serde(default)]
    pub gateway: Option<String>,
    /// Refused when not empty.
    #[serde(default)]
    pub aux_address: Option<BTreeMap<String, String>>,
}

/// What a container brings to [`NetworkController::connect`].
#[derive(Debug, Clone, Default)]
pub struct EndpointOptions {
    /// The container's id.
    pub container_id: String,
    /// Its name (without `/`).
    pub container_name: String,
    /// `--network-alias`, and compose's service name.
    pub aliases: Vec<String>,
    /// `--ip`.
    pub ip: Option<Ipv4Addr>,
    /// Ports to publish on this endpoint.
    pub ports: Vec<PortRequest>,
    /// `--dns`, `--dns-search`, `--dns-option` (for the resolver's upstreams).
    pub dns: files::DnsOptions,
}

/// A connected endpoint, as the container's NetworkSettings show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The network's id.
    pub network_id: String,
    /// 64 hex digits.
    pub endpoint_id: String,
    /// The address.
    pub ip: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix: u8,
    /// The gateway (`None` on an internal network).
    pub gateway: Option<Ipv4Addr>,
    /// The MAC address as printed.
    pub mac: String,
    /// The device name inside the container.
    pub ifname: String,
    /// The published ports as bound.
    pub ports: Vec<PortMap>,
    /// Whether the container uses the embedded resolver (user-defined network).
    pub embedded_dns: bool,
}

/// What runs in refengd for the networks: not persisted, rebuilt at start.
#[derive(Debug, Default)]
struct Live {
    resolvers: HashMap<String, Resolver>,
    proxies: HashMap<(String, String), Vec<Proxy>>,
}

#[derive(Debug)]
struct Inner {
    config: NetworkConfig,
    rt: tokio::runtime::Handle,
    /// Serializes every change (records, devices, rules).
    ops: Mutex<()>,
    state: Mutex<State>,
    live: Mutex<Live>,
    /// The jumps into our chains were checked by this process (see [`nat::apply`]).
    jumps_in_place: std::sync::atomic::AtomicBool,
}

/// The network layer of one daemon.
#[derive(Debug, Clone)]
pub struct NetworkController {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut buf);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl NetworkController {
    /// Loads the records, creates the default network on first start, and restores what a
    /// restart lost: bridges (after a reboot), the rule set (without duplicates), published
    /// ports' proxies and the resolvers of containers whose namespace still exists.
    ///
    /// # Errors
    /// When the records cannot be read, or the bridge or rules cannot be set up.
    pub fn open(
        config: NetworkConfig,
        rt: tokio::runtime::Handle,
    ) -> Result<NetworkController, NetworkError> {
        let state = State::load(&config.state_dir)?;
        let c = NetworkController {
            inner: Arc::new(Inner {
                config,
                rt,
                ops: Mutex::new(()),
                state: Mutex::new(state),
                live: Mutex::new(Live::default()),
                jumps_in_place: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        c.restore()?;
        Ok(c)
    }

    fn restore(&self) -> Result<(), NetworkError> {
        let c = self;
        let _ops = lock(&c.inner.ops);
        let has_default = lock(&c.inner.state).networks.values().any(|n| n.default);
        if !has_default && c.inner.config.default_network {
            c.create_default()?;
        }
        for (name, driver) in [("host", "host"), ("none", "null")] {
            let missing = !lock(&c.inner.state)
                .predefined
                .iter()
                .any(|p| p.name == name);
            if missing {
                let p = state::PredefinedNetwork {
                    id: random_hex(32),
                    name: name.into(),
                    driver: driver.into(),
                    created: now_rfc3339(),
                };
                c.commit(|s| s.predefined.push(p))?;
            }
        }
        let nets: Vec<NetworkRecord> = lock(&c.inner.state).networks.values().cloned().collect();
        for n in &nets {
            netlink::ensure_bridge(&n.bridge, gateway_cidr(&n.pool), n.mtu)?;
        }
        for n in &nets {
            for e in n.endpoints.values() {
                if !e.netns.exists() {
                    // The container is gone with its namespace; the engine disconnects it.
                    continue;
                }
                c.start_live(n, e)?;
            }
        }
        c.apply_rules()
    }

    fn create_default(&self) -> Result<(), NetworkError> {
        let cfg = &self.inner.config;
        let (subnet, gateway) = match cfg.bip {
            Some(bip) => (bip.canonical(), Some(bip.addr)),
            None => (
                ipam::next_free_subnet(&cfg.pools, &self.taken_subnets()?)?,
                None,
            ),
        };
        let pool = Pool::new(subnet, None, gateway)?;
        let options = [
            ("com.docker.network.bridge.default_bridge", "true"),
            (OPT_ICC, "true"),
            (OPT_MASQUERADE, "true"),
            (OPT_HOST_BINDING, "0.0.0.0"),
            (OPT_BRIDGE_NAME, cfg.default_bridge.as_str()),
            (OPT_MTU, "1500"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let rec = NetworkRecord {
            id: random_hex(32),
            name: DEFAULT_NETWORK.into(),
            created: now_rfc3339(),
            bridge: cfg.default_bridge.clone(),
            pool,
            subnet_given: Some(subnet),
            // dockerd shows the default bridge's gateway only when `bip` names it.
            gateway_given: gateway,
            internal: false,
            attachable: false,
            default: true,
            mtu: None,
            masquerade: true,
            options,
            labels: BTreeMap::new(),
            endpoints: BTreeMap::new(),
        };
        self.commit(|s| {
            s.networks.insert(rec.id.clone(), rec.clone());
        })?;
        netlink::ensure_bridge(&rec.bridge, gateway_cidr(&rec.pool), None)?;
        Ok(())
    }

    /// Subnets a new network must not collide with: other networks', the host's routes and
    /// nameservers.
    fn taken_subnets(&self) -> Result<Vec<Subnet>, NetworkError> {
        let mut taken: Vec<Subnet> = lock(&self.inner.state)
            .networks
            .values()
            .map(|n| n.pool.subnet)
            .collect();
        let own: Vec<Subnet> = taken.clone();
        taken.extend(netlink::routes()?.into_iter().filter(|r| !own.contains(r)));
        let resolv =
            std::fs::read_to_string(&self.inner.config.host_resolv_conf).unwrap_or_default();
        for ns in files::nameservers(&resolv) {
            if let std::net::IpAddr::V4(v4) = ns {
                taken.push(Subnet {
                    addr: v4,
                    prefix: 32,
                });
            }
        }
        Ok(taken)
    }

    /// Applies `change` to the records and writes them durably; on a failed write the records
    /// are put back.
    fn commit(&self, change: impl FnOnce(&mut State)) -> Result<(), NetworkError> {
        let mut s = lock(&self.inner.state);
        let before = s.clone();
        change(&mut s);
        if let Err(e) = s.save(&self.inner.config.state_dir) {
            *s = before;
            return Err(e.into());
        }
        Ok(())
    }

    /// A copy of the records.
    pub fn snapshot(&self) -> State {
        lock(&self.inner.state).clone()
    }

    /// The network called `key` (id, name or id prefix).
    ///
    /// # Errors
    /// [`NetworkError::NotFound`].
    pub fn get(&self, key: &str) -> Result<NetworkRecord, NetworkError> {
        lock(&self.inner.state)
            .find(key)
            .cloned()
            .ok_or_else(|| NetworkError::NotFound(key.to_string()))
    }

    /// Creates a bridge network as `POST /networks/create` asks; returns its id.
    ///
    /// # Errors
    /// [`NetworkError::NameTaken`], [`NetworkError::Invalid`] for an option refengd does not
    /// implement (named), [`IpamError`] for a bad or overlapping subnet; nothing is left
    /// behind on failure.
    pub fn create_network(&self, req: &NetworkCreate) -> Result<String, NetworkError> {
        let _ops = lock(&self.inner.ops);
        let invalid = |m: String| Err(NetworkError::Invalid(m));
        if req.name.is_empty() {
            return invalid("network name must not be empty".into());
        }
        {
            let s = lock(&self.inner.state);
            if s.networks.values().any(|n| n.name == req.name)
                || s.predefined.iter().any(|p| p.name == req.name)
            {
                return Err(NetworkError::NameTaken(req.name.clone()));
            }
        }
        match req.driver.as_deref() {
            None | Some("") | Some("bridge") => {}
            Some(d) => {
                return invalid(format!(
                    "plugin \"{d}\" not found: only the bridge driver is supported"
                ))
            }
        }
        match req.scope.as_deref() {
            None | Some("") | Some("local") => {}
            Some(s) => return invalid(format!("scope {s:?} is not supported (only local)")),
        }
        if req.ingress {
            return invalid("Ingress is not supported: refengd has no swarm".into());
        }
        if req.enable_ipv6 {
            return invalid("EnableIPv6 is not supported: refengd's networks are IPv4 only".into());
        }
        if req.enable_ipv4 == Some(false) {
            return invalid(
                "EnableIPv4=false is not supported: refengd's networks are IPv4".into(),
            );
        }
        if req.config_only || req.config_from.as_ref().is_some_and(|v| !v.is_null()) {
            return invalid("ConfigOnly and ConfigFrom networks are not supported".into());
        }
        let mut subnet = None;
        let mut range = None;
        let mut gateway = None;
        if let Some(ipam_req) = &req.ipam {
            match ipam_req.driver.as_deref() {
                None | Some("") | Some("default") => {}
                Some(d) => {
                    return invalid(format!("IPAM driver {d:?} is not supported (only default)"))
                }
            }
            if ipam_req.options.as_ref().is_some_and(|o| !o.is_empty()) {
                return invalid("IPAM Options are not supported".into());
            }
            let configs = ipam_req.config.clone().unwrap_or_default();
            if configs.len() > 1 {
                return invalid(
                    "more than one IPAM config is not supported (one IPv4 subnet)".into(),
                );
            }
            if let Some(c) = configs.first() {
                if c.aux_address.as_ref().is_some_and(|a| !a.is_empty()) {
                    return invalid("IPAM AuxiliaryAddresses are not supported".into());
                }
                subnet = c
                    .subnet
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .map(str::parse)
                    .transpose()?;
                range = c
                    .ip_range
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .map(str::parse)
                    .transpose()?;
                gateway = c
                    .gateway
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .map(ipam::parse_ip)
                    .transpose()?;
                if subnet.is_none() && (range.is_some() || gateway.is_some()) {
                    return invalid("an ip-range or a gateway needs a subnet".into());
                }
            }
        }
        let options = req.options.clone().unwrap_or_default();
        let mut bridge = None;
        let mut mtu = None;
        let mut masquerade = true;
        for (k, v) in &options {
            match k.as_str() {
                OPT_BRIDGE_NAME => bridge = Some(v.clone()),
                OPT_MTU => {
                    mtu = Some(
                        v.parse::<u32>()
                            .ok()
                            .filter(|m| (68..=65535).contains(m))
                            .ok_or_else(|| {
                                NetworkError::Invalid(format!("invalid MTU {v:?} in {OPT_MTU}"))
                            })?,
                    )
                }
                OPT_MASQUERADE => {
                    masquerade = v.parse::<bool>().map_err(|_| {
                        NetworkError::Invalid(format!("invalid value {v:?} for {OPT_MASQUERADE}"))
                    })?
                }
                OPT_ICC if v == "true" => {}
                OPT_HOST_BINDING if v == "0.0.0.0" => {}
                other => {
                    return invalid(format!(
                        "network option {other}={v} is not supported by refengd's bridge driver"
                    ))
                }
            }
        }
        let id = random_hex(32);
        let bridge = bridge.unwrap_or_else(|| format!("br-{}", &id[..12]));
        if bridge.is_empty() || bridge.len() > 15 || bridge.contains(['/', ' ']) {
            return invalid(format!("invalid bridge name {bridge:?}"));
        }
        if lock(&self.inner.state)
            .networks
            .values()
            .any(|n| n.bridge == bridge)
        {
            return invalid(format!(
                "bridge name {bridge} is already used by another network"
            ));
        }
        let taken = self.taken_subnets()?;
        let subnet_c = match subnet {
            Some(s) => {
                let s: Subnet = s;
                let others = lock(&self.inner.state);
                if others.networks.values().any(|n| n.pool.subnet.overlaps(s)) {
                    return Err(IpamError::Overlap.into());
                }
                s
            }
            None => ipam::next_free_subnet(&self.inner.config.pools, &taken)?,
        };
        let pool = Pool::new(subnet_c, range, gateway)?;
        let rec = NetworkRecord {
            id: id.clone(),
            name: req.name.clone(),
            created: now_rfc3339(),
            bridge: bridge.clone(),
            subnet_given: subnet,
            gateway_given: gateway,
            pool,
            internal: req.internal,
            attachable: req.attachable,
            default: false,
            mtu,
            masquerade,
            options,
            labels: req.labels.clone().unwrap_or_default(),
            endpoints: BTreeMap::new(),
        };
        self.commit(|s| {
            s.networks.insert(id.clone(), rec.clone());
        })?;
        let made = netlink::ensure_bridge(&bridge, gateway_cidr(&rec.pool), mtu)
            .map_err(NetworkError::from)
            .and_then(|()| self.apply_rules());
        if let Err(e) = made {
            let _ = netlink::delete_link(None, &bridge);
            let _ = self.commit(|s| {
                s.networks.remove(&id);
            });
            let _ = self.apply_rules();
            return Err(e);
        }
        Ok(id)
    }

    /// Removes the network called `key`.
    ///
    /// # Errors
    /// [`NetworkError::NotFound`], [`NetworkError::Predefined`] for `bridge`,
    /// [`NetworkError::InUse`] while containers are connected.
    pub fn remove_network(&self, key: &str) -> Result<(), NetworkError> {
        let _ops = lock(&self.inner.ops);
        if let Some(p) = lock(&self.inner.state).find_predefined(key) {
            return Err(NetworkError::Predefined(p.name.clone()));
        }
        let n = self.get(key)?;
        if n.default {
            return Err(NetworkError::Predefined(n.name));
        }
        if !n.endpoints.is_empty() {
            return Err(NetworkError::InUse {
                name: n.name,
                id: n.id,
            });
        }
        self.commit(|s| {
            s.networks.remove(&n.id);
        })?;
        self.apply_rules()?;
        netlink::delete_link(None, &n.bridge)?;
        Ok(())
    }

    /// Removes every user-defined network without endpoints; returns their names.
    ///
    /// # Errors
    /// As [`NetworkController::remove_network`].
    pub fn prune(&self) -> Result<Vec<String>, NetworkError> {
        self.prune_matching(|_| true)
    }

    /// As [`NetworkController::prune`], limited to the networks `wanted` accepts (the API's
    /// `until` and `label` filters).
    ///
    /// # Errors
    /// As [`NetworkController::remove_network`].
    pub fn prune_matching(
        &self,
        wanted: impl Fn(&NetworkRecord) -> bool,
    ) -> Result<Vec<String>, NetworkError> {
        let idle: Vec<String> = lock(&self.inner.state)
            .networks
            .values()
            .filter(|n| !n.default && n.endpoints.is_empty() && wanted(n))
            .map(|n| n.id.clone())
            .collect();
        let mut removed = Vec::new();
        for id in idle {
            let name = self.get(&id)?.name;
            match self.remove_network(&id) {
                Ok(()) => removed.push(name),
                // Connected or removed meanwhile.
                Err(NetworkError::InUse { .. }) | Err(NetworkError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        removed.sort();
        Ok(removed)
    }

    /// The namespace file of a container, under the exec root (dockerd: /var/run/docker/netns).
    pub fn netns_path(&self, container_id: &str) -> PathBuf {
        let short = &container_id[..container_id.len().min(12)];
        self.inner.config.netns_dir.join(short)
    }

    /// Creates a network namespace bound on `path` with its loopback up.
    ///
    /// # Errors
    /// [`NetlinkError`]; nothing is left behind.
    pub fn create_netns(&self, path: &Path) -> Result<(), NetworkError> {
        Ok(netlink::create_netns(path)?)
    }

    /// Removes a namespace file made by [`NetworkController::create_netns`].
    ///
    /// # Errors
    /// [`NetlinkError`].
    pub fn remove_netns(&self, path: &Path) -> Result<(), NetworkError> {
        Ok(netlink::remove_netns(path)?)
    }

    /// Connects the container whose namespace is `netns` to `network`: an address (fixed or
    /// the next free), a veth pair (`eth0` for the first network, `eth1`...), the default route
    /// via the first non-internal network, published ports, and the embedded resolver on
    /// user-defined networks.
    ///
    /// # Errors
    /// [`NetworkError::NotFound`], [`NetworkError::AlreadyConnected`], [`IpamError`] for the
    /// address, [`NetworkError::Ports`] for a taken port, or a kernel failure; nothing is left
    /// behind on failure.
    pub fn connect(
        &self,
        netns: &Path,
        network: &str,
        opts: &EndpointOptions,
    ) -> Result<Endpoint, NetworkError> {
        let _ops = lock(&self.inner.ops);
        if let Some(p) = lock(&self.inner.state).find_predefined(network) {
            // dockerd's words: host and none are chosen at create, not connected.
            return Err(NetworkError::Invalid(format!(
                "container cannot be disconnected from host network or connected to {} network",
                p.name
            )));
        }
        let n = self.get(network)?;
        if n.endpoints.contains_key(&opts.container_id) {
            return Err(NetworkError::AlreadyConnected {
                container: opts.container_name.clone(),
                network: n.name,
            });
        }
        let (existing, has_gateway) = {
            let s = lock(&self.inner.state);
            let mine: Vec<&NetworkRecord> = s
                .networks
                .values()
                .filter(|m| m.endpoints.contains_key(&opts.container_id))
                .collect();
            (mine.len(), mine.iter().any(|m| !m.internal))
        };
        let mut pool = n.pool.clone();
        let ip = pool.allocate(&n.name, opts.ip)?;
        let mac = ipam::mac_string(ipam::mac_for(ip));
        let upstream = if n.internal {
            Vec::new()
        } else {
            let host =
                std::fs::read_to_string(&self.inner.config.host_resolv_conf).unwrap_or_default();
            files::resolv_conf(&host, files::FileMode::Embedded, &opts.dns).external
        };
        let rec = EndpointRecord {
            endpoint_id: random_hex(32),
            container_id: opts.container_id.clone(),
            container_name: opts.container_name.trim_start_matches('/').to_string(),
            aliases: opts.aliases.clone(),
            ip,
            mac: mac.clone(),
            veth: format!("veth{}", &random_hex(4)[..7]),
            ifname: format!("eth{existing}"),
            netns: netns.to_path_buf(),
            ports: Vec::new(),
            upstream,
        };
        // The address is on record before any device exists.
        self.commit(|s| {
            if let Some(m) = s.networks.get_mut(&n.id) {
                m.pool.allocated.insert(ip);
                m.endpoints.insert(opts.container_id.clone(), rec.clone());
            }
        })?;
        let gateway = (!n.internal && !has_gateway).then_some(n.pool.gateway);
        let plan = VethPlan {
            host_name: rec.veth.clone(),
            bridge: n.bridge.clone(),
            netns: netns.to_path_buf(),
            ifname: rec.ifname.clone(),
            address: Subnet {
                addr: ip,
                prefix: n.pool.subnet.prefix,
            },
            mac: ipam::mac_for(ip),
            gateway,
            mtu: n.mtu,
        };
        let undo = |me: &Self| {
            let _ = netlink::delete_link(None, &rec.veth);
            lock(&me.inner.live)
                .proxies
                .remove(&(n.id.clone(), opts.container_id.clone()));
            let _ = me.commit(|s| {
                if let Some(m) = s.networks.get_mut(&n.id) {
                    m.pool.release(ip);
                    m.endpoints.remove(&opts.container_id);
                }
            });
            let _ = me.apply_rules();
        };
        if let Err(e) = netlink::create_veth(&plan) {
            undo(self);
            return Err(e.into());
        }
        let mut proxies = Vec::new();
        let mut bound = Vec::new();
        for req in &opts.ports {
            match ports::bind(&self.inner.rt, req, ip) {
                Ok((map, proxy)) => {
                    bound.push(map);
                    proxies.push(proxy);
                }
                Err(source) => {
                    drop(proxies);
                    undo(self);
                    return Err(NetworkError::Ports {
                        endpoint: rec.container_name.clone(),
                        source,
                    });
                }
            }
        }
        lock(&self.inner.live)
            .proxies
            .insert((n.id.clone(), opts.container_id.clone()), proxies);
        let saved = self.commit(|s| {
            if let Some(e) = s
                .networks
                .get_mut(&n.id)
                .and_then(|m| m.endpoints.get_mut(&opts.container_id))
            {
                e.ports = bound.clone();
            }
        });
        // Rules depend on the networks and the published ports only.
        let live = saved
            .and_then(|()| {
                if bound.is_empty() {
                    Ok(())
                } else {
                    self.apply_rules()
                }
            })
            .and_then(|()| {
                if !n.default {
                    self.ensure_resolver(&opts.container_id, netns)?;
                }
                Ok(())
            });
        if let Err(e) = live {
            undo(self);
            return Err(e);
        }
        Ok(Endpoint {
            network_id: n.id,
            endpoint_id: rec.endpoint_id,
            ip,
            prefix: n.pool.subnet.prefix,
            gateway: (!n.internal).then_some(n.pool.gateway),
            mac,
            ifname: rec.ifname,
            ports: bound,
            embedded_dns: !n.default,
        })
    }

    /// Disconnects `container_id` from `network`: its veth, published ports, rules and
    /// address go; the resolver goes with its last user-defined network.
    ///
    /// # Errors
    /// [`NetworkError::NotFound`], [`NetworkError::NotConnected`], a kernel failure.
    pub fn disconnect(&self, container_id: &str, network: &str) -> Result<(), NetworkError> {
        let _ops = lock(&self.inner.ops);
        let n = self.get(network)?;
        let Some(e) = n.endpoints.get(container_id).cloned() else {
            return Err(NetworkError::NotConnected {
                container: container_id.to_string(),
                network: n.name,
            });
        };
        lock(&self.inner.live)
            .proxies
            .remove(&(n.id.clone(), container_id.to_string()));
        // Deleting the host end deletes the pair; a namespace already gone took both with it.
        netlink::delete_link(None, &e.veth)?;
        self.commit(|s| {
            if let Some(m) = s.networks.get_mut(&n.id) {
                m.endpoints.remove(container_id);
                m.pool.release(e.ip);
            }
        })?;
        if !e.ports.is_empty() {
            self.apply_rules()?;
        }
        let still_embedded = lock(&self.inner.state)
            .networks
            .values()
            .any(|m| !m.default && m.endpoints.contains_key(container_id));
        if !still_embedded {
            lock(&self.inner.live).resolvers.remove(container_id);
        }
        Ok(())
    }

    /// Stops the resolvers and proxies (refengd's shutdown): devices, rules and records stay,
    /// so running containers keep their network and the next start restores the rest.
    /// Gives container `container_id`'s endpoints its new name (what the embedded DNS
    /// answers to and network inspect shows), as dockerd does on rename.
    ///
    /// # Errors
    /// When the records cannot be written.
    pub fn rename_endpoints(&self, container_id: &str, name: &str) -> Result<(), NetworkError> {
        let _ops = lock(&self.inner.ops);
        let name = name.trim_start_matches('/').to_string();
        self.commit(|s| {
            for n in s.networks.values_mut() {
                if let Some(e) = n.endpoints.get_mut(container_id) {
                    e.container_name = name.clone();
                }
            }
        })
    }

    pub fn shutdown(&self) {
        let mut live = lock(&self.inner.live);
        live.resolvers.clear();
        live.proxies.clear();
    }

    /// The daemon stops: the proxies and resolvers end with it; refengd's chains go too when
    /// no container is wired (the last user is gone), and stay for the containers that keep
    /// running (live restore). The next start restores them. Bridges and records stay.
    ///
    /// # Errors
    /// When iptables fails.
    pub fn stop(&self) -> Result<(), NetworkError> {
        let _ops = lock(&self.inner.ops);
        self.shutdown();
        let wired = lock(&self.inner.state)
            .networks
            .values()
            .any(|n| !n.endpoints.is_empty());
        if !wired {
            nat::remove()?;
            self.inner
                .jumps_in_place
                .store(false, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// Removes everything the network layer made in the host's namespace: the bridges of the
    /// networks without endpoints (all of them once the containers are gone) and, when no
    /// network remains, refengd's chains; the records of removed user networks go too. For
    /// uninstalling and tests.
    ///
    /// # Errors
    /// [`NetworkError::InUse`] while a network has endpoints, or a kernel or iptables failure.
    pub fn teardown(&self) -> Result<(), NetworkError> {
        let _ops = lock(&self.inner.ops);
        if let Some(n) = lock(&self.inner.state)
            .networks
            .values()
            .find(|n| !n.endpoints.is_empty())
        {
            return Err(NetworkError::InUse {
                name: n.name.clone(),
                id: n.id.clone(),
            });
        }
        self.shutdown();
        let nets: Vec<NetworkRecord> = lock(&self.inner.state).networks.values().cloned().collect();
        nat::remove()?;
        self.inner
            .jumps_in_place
            .store(false, std::sync::atomic::Ordering::Relaxed);
        for n in &nets {
            netlink::delete_link(None, &n.bridge)?;
        }
        self.commit(|s| {
            s.networks.clear();
            s.predefined.clear();
        })?;
        Ok(())
    }

    fn ensure_resolver(&self, container_id: &str, netns: &Path) -> Result<(), NetworkError> {
        if lock(&self.inner.live).resolvers.contains_key(container_id) {
            return Ok(());
        }
        let names: Arc<dyn Names> = Arc::new(NameView(Arc::downgrade(&self.inner)));
        let r = resolver::start(&self.inner.rt, netns, container_id, names)?;
        lock(&self.inner.live)
            .resolvers
            .insert(container_id.to_string(), r);
        Ok(())
    }

    /// Restart: the proxies of an endpoint's published ports and its resolver.
    fn start_live(&self, n: &NetworkRecord, e: &EndpointRecord) -> Result<(), NetworkError> {
        let mut proxies = Vec::new();
        for p in &e.ports {
            let req = PortRequest {
                protocol: p.protocol,
                container_port: p.container_port,
                host_ip: p.host_ip,
                host_ports: (p.host_port, p.host_port),
            };
            match ports::bind(&self.inner.rt, &req, e.ip) {
                Ok((_, proxy)) => proxies.push(proxy),
                // The DNAT rule still serves non-loopback traffic; say what is missing.
                Err(err) => {
                    tracing::warn!(container = %e.container_id, error = %err, "cannot restore the loopback proxy of a published port")
                }
            }
        }
        lock(&self.inner.live)
            .proxies
            .insert((n.id.clone(), e.container_id.clone()), proxies);
        if !n.default {
            self.ensure_resolver(&e.container_id, &e.netns)?;
        }
        Ok(())
    }

    fn apply_rules(&self) -> Result<(), NetworkError> {
        let rules: Vec<BridgeRules> = lock(&self.inner.state)
            .networks
            .values()
            .map(|n| BridgeRules {
                bridge: n.bridge.clone(),
                subnet: n.pool.subnet,
                internal: n.internal,
                masquerade: n.masquerade,
                published: n
                    .endpoints
                    .values()
                    .flat_map(|e| e.ports.iter().map(move |p| (e.ip, *p)))
                    .collect(),
            })
            .collect();
        let check = !self
            .inner
            .jumps_in_place
            .load(std::sync::atomic::Ordering::Relaxed);
        nat::apply(&rules, check)?;
        self.inner
            .jumps_in_place
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The network's inspect JSON as dockerd answers `GET /networks/{id}`.
    ///
    /// # Errors
    /// [`NetworkError::NotFound`].
    pub fn inspect(&self, key: &str) -> Result<Value, NetworkError> {
        if let Some(p) = lock(&self.inner.state).find_predefined(key) {
            return Ok(inspect::predefined(p));
        }
        Ok(inspect::network(&self.get(key)?, true))
    }

    /// Every network as `GET /networks` lists them (dockerd leaves `Containers` empty there).
    pub fn list(&self) -> Vec<Value> {
        let s = lock(&self.inner.state);
        let mut out: Vec<Value> = s
            .networks
            .values()
            .map(|n| inspect::network(n, false))
            .chain(s.predefined.iter().map(inspect::predefined))
            .collect();
        out.sort_by(|a, b| a["Name"].as_str().cmp(&b["Name"].as_str()));
        out
    }
}

fn gateway_cidr(pool: &Pool) -> Subnet {
    Subnet {
        addr: pool.gateway,
        prefix: pool.subnet.prefix,
    }
}

/// The resolver's view of the records (weak: resolvers must not keep the controller alive).
#[derive(Debug)]
struct NameView(Weak<Inner>);

impl NameView {
    fn with<T>(&self, f: impl FnOnce(&State) -> T) -> Option<T> {
        let inner = self.0.upgrade()?;
        let s = lock(&inner.state);
        Some(f(&s))
    }
}

impl Names for NameView {
    fn resolve(&self, container: &str, name: &str) -> Option<Vec<Ipv4Addr>> {
        self.with(|s| {
            let mut ips = Vec::new();
            for n in s
                .networks
                .values()
                .filter(|n| !n.default && n.endpoints.contains_key(container))
            {
                // `name` or `name.network`.
                let bare = name
                    .strip_suffix(&format!(".{}", n.name.to_lowercase()))
                    .unwrap_or(name);
                for e in n.endpoints.values() {
                    let matches = e.container_name.eq_ignore_ascii_case(bare)
                        || e.aliases.iter().any(|a| a.eq_ignore_ascii_case(bare))
                        || (bare.len() == 12 && e.container_id.starts_with(bare));
                    if matches && !ips.contains(&e.ip) {
                        ips.push(e.ip);
                    }
                }
            }
            (!ips.is_empty()).then_some(ips)
        })
        .flatten()
    }

    fn reverse(&self, container: &str, ip: Ipv4Addr) -> Option<String> {
        self.with(|s| {
            s.networks
                .values()
                .filter(|n| !n.default && n.endpoints.contains_key(container))
                .find_map(|n| {
                    n.endpoints
                        .values()
                        .find(|e| e.ip == ip)
                        .map(|e| format!("{}.{}", e.container_name, n.name))
                })
        })
        .flatten()
    }

    fn upstream(&self, container: &str) -> Vec<Ipv4Addr> {
        self.with(|s| {
            s.networks
                .values()
                .filter(|n| !n.default && !n.internal)
                .find_map(|n| n.endpoints.get(container).map(|e| e.upstream.clone()))
                .unwrap_or_default()
        })
        .unwrap_or_default()
    }
}
