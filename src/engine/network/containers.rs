//! The containers' side of the network layer: the controller as the engine holds it (opened at
//! start, or on first use when the default bridge is off), what a container asks of its
//! networks (from HostConfig.NetworkMode, NetworkingConfig and PortBindings), wiring its
//! namespace at start and unwiring it at exit and removal, its /etc files, and its
//! NetworkSettings / Ports as dockerd shows them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::files::{self, DnsOptions, ExtraHost, FileMode};
use super::ports::{self, PortMap, PortRequest, Protocol};
use super::state::State;
use super::{EndpointOptions, NetworkConfig, NetworkController, NetworkError, DEFAULT_NETWORK};
use crate::engine::error::ApiError;

/// The compose label whose value names a container's service (resolvable like an alias).
pub const COMPOSE_SERVICE_LABEL: &str = "com.docker.compose.service";

/// The engine's network controller: opened once, at start or at the first call that needs it.
#[derive(Debug)]
pub struct Slot {
    cell: tokio::sync::OnceCell<NetworkController>,
    config: NetworkConfig,
}

impl Slot {
    /// A slot that opens with `config` when first asked. A host whose /etc/resolv.conf names
    /// only systemd-resolved's stub (127.0.0.53) gets its upstream file instead, as dockerd
    /// picks it (the stub does not answer inside a container's namespace).
    pub fn new(mut config: NetworkConfig) -> Slot {
        if config.host_resolv_conf == Path::new("/etc/resolv.conf") {
            config.host_resolv_conf = resolv_conf_path(
                &config.host_resolv_conf,
                Path::new("/run/systemd/resolve/resolv.conf"),
            );
        }
        Slot {
            cell: tokio::sync::OnceCell::new(),
            config,
        }
    }

    /// Whether the controller should open at daemon start: with a default bridge (dockerd
    /// makes docker0 at start), or when records of an earlier run exist (their endpoints and
    /// rules are restored).
    pub fn open_at_start(&self) -> bool {
        self.config.default_network || super::state::State::path(&self.config.state_dir).exists()
    }

    /// The controller, opening it (bridge, rules, restore) on the first call.
    ///
    /// # Errors
    /// `Internal` when the records cannot be read or the kernel refuses the bridge.
    pub async fn get(&self) -> Result<&NetworkController, ApiError> {
        self.cell
            .get_or_try_init(|| async {
                let config = self.config.clone();
                let rt = tokio::runtime::Handle::current();
                tokio::task::spawn_blocking(move || NetworkController::open(config, rt))
                    .await
                    .map_err(|e| ApiError::internal("opening the network controller", e))?
                    .map_err(|e| ApiError::Internal(format!("network controller: {e}")))
            })
            .await
    }

    /// The controller if it is open (inspect shows no endpoints otherwise).
    pub fn opened(&self) -> Option<&NetworkController> {
        self.cell.get()
    }

    /// Where container `id`'s namespace file lives.
    pub fn netns_path(&self, id: &str) -> PathBuf {
        self.config.netns_dir.join(&id[..id.len().min(12)])
    }

    /// Whether the default `bridge` network exists.
    pub fn has_default(&self) -> bool {
        self.config.default_network
    }

    /// The host's resolv.conf.
    pub fn host_resolv_conf(&self) -> String {
        std::fs::read_to_string(&self.config.host_resolv_conf).unwrap_or_default()
    }
}

/// systemd-resolved's `upstream` file when `etc` names only its stub resolver and that file
/// exists, else `etc` (libnetwork resolvconf.Path).
pub fn resolv_conf_path(etc: &Path, upstream: &Path) -> PathBuf {
    let text = std::fs::read_to_string(etc).unwrap_or_default();
    let servers = files::nameservers(&text);
    let stub_only = !servers.is_empty()
        && servers
            .iter()
            .all(|s| *s == std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53)));
    if stub_only && upstream.exists() {
        upstream.to_path_buf()
    } else {
        etc.to_path_buf()
    }
}

/// What a container asks of one network (NetworkingConfig.EndpointsConfig.NAME, or the network
/// of its mode, or a connect call).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRequest {
    /// `--network-alias`.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `--ip` (IPAMConfig.IPv4Address).
    #[serde(default)]
    pub ipv4: Option<Ipv4Addr>,
}

/// Reads one `EndpointSettings` of a create or connect body; what refengd cannot honour
/// (links, driver options, IPv6, a fixed MAC) is refused by name.
///
/// # Errors
/// `BadRequest` naming the field.
pub fn parse_endpoint(at: &str, v: &Value) -> Result<EndpointRequest, ApiError> {
    let mut req = EndpointRequest::default();
    let Some(obj) = v.as_object() else {
        if v.is_null() {
            return Ok(req);
        }
        return Err(ApiError::BadRequest(format!("{at}: not an object")));
    };
    let bad = |f: &str, v: &Value| {
        ApiError::BadRequest(format!("{at}.{f} is not supported by refengd (got {v})"))
    };
    for (k, val) in obj {
        match k.as_str() {
            "Aliases" => {
                for a in val.as_array().into_iter().flatten() {
                    let a = a
                        .as_str()
                        .ok_or_else(|| ApiError::BadRequest(format!("{at}.Aliases: {a}")))?;
                    if !a.is_empty() && !req.aliases.iter().any(|x| x == a) {
                        req.aliases.push(a.to_string());
                    }
                }
            }
            "IPAMConfig" => {
                for (f, fv) in val.as_object().into_iter().flatten() {
                    match (f.as_str(), fv) {
                        ("IPv4Address", Value::String(s)) if !s.is_empty() => {
                            req.ipv4 = Some(s.parse().map_err(|_| {
                                ApiError::BadRequest(format!("invalid IPv4 address: {s}"))
                            })?)
                        }
                        (_, fv) if crate::engine::containers::body::is_zero(fv) => {}
                        (f, fv) => return Err(bad(&format!("IPAMConfig.{f}"), fv)),
                    }
                }
            }
            // Output fields the CLI sends back empty, and dockerd's own echo of the aliases.
            "NetworkID"
            | "EndpointID"
            | "Gateway"
            | "IPAddress"
            | "IPPrefixLen"
            | "IPv6Gateway"
            | "GlobalIPv6Address"
            | "GlobalIPv6PrefixLen"
            | "DNSNames"
            | "GwPriority"
                if crate::engine::containers::body::is_zero(val) => {}
            _ if crate::engine::containers::body::is_zero(val) => {}
            f => return Err(bad(f, val)),
        }
    }
    Ok(req)
}

/// The networks a container joins at start, primary first, with what it asks of each.
pub type Attachments = Vec<(String, EndpointRequest)>;

/// What a container's start needs to wire it.
#[derive(Debug, Clone)]
pub struct Wiring {
    /// The full id.
    pub id: String,
    /// The name (without `/`).
    pub name: String,
    /// Networks to join, primary first.
    pub networks: Attachments,
    /// Ports to publish (on the primary network).
    pub ports: Vec<PortRequest>,
    /// `--dns*`.
    pub dns: DnsOptions,
    /// The compose service, resolvable as a name.
    pub service: Option<String>,
    /// Hostname and domain name for /etc/hosts.
    pub hostname: String,
    /// `--domainname`.
    pub domainname: String,
    /// `--add-host`.
    pub extra_hosts: Vec<String>,
}

/// The /etc files a container gets: hosts, hostname, resolv.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcFiles {
    /// /etc/hosts.
    pub hosts: String,
    /// /etc/hostname.
    pub hostname: String,
    /// /etc/resolv.conf.
    pub resolv_conf: String,
}

/// The files for a container: `mode` says which kind, `ip` its address on its primary network,
/// `gateway` the default bridge's address (for `host-gateway`).
///
/// # Errors
/// `BadRequest` for an `--add-host` entry dockerd refuses.
#[allow(clippy::too_many_arguments)]
pub fn etc_files(
    mode: FileMode,
    host_hosts: &str,
    host_resolv: &str,
    ip: Option<Ipv4Addr>,
    gateway: Option<Ipv4Addr>,
    hostname: &str,
    domainname: &str,
    extra_hosts: &[String],
    dns: &DnsOptions,
) -> Result<EtcFiles, ApiError> {
    let extra: Vec<ExtraHost> = extra_hosts
        .iter()
        .map(|h| files::parse_extra_host(h, gateway))
        .collect::<Result<_, _>>()
        .map_err(ApiError::BadRequest)?;
    Ok(EtcFiles {
        hosts: files::hosts_file(mode, host_hosts, ip, hostname, domainname, &extra),
        hostname: files::hostname_file(hostname),
        resolv_conf: files::resolv_conf(host_resolv, mode, dns).text,
    })
}

/// Wires a container's namespace at start: makes the namespace file `netns` and connects it to
/// each network; on any failure undoes what it did.
///
/// # Errors
/// The first failure, after the undo.
pub fn attach(
    net: &NetworkController,
    netns: &Path,
    w: &Wiring,
) -> Result<Vec<super::Endpoint>, NetworkError> {
    // A file left by a crash before the last exit was recorded: begin again from nothing.
    detach(net, &w.id, netns)?;
    net.create_netns(netns)?;
    let mut done = Vec::new();
    for (i, (network, req)) in w.networks.iter().enumerate() {
        let mut aliases = req.aliases.clone();
        if let Some(s) = &w.service {
            if !aliases.contains(s) {
                aliases.push(s.clone());
            }
        }
        let opts = EndpointOptions {
            container_id: w.id.clone(),
            container_name: w.name.clone(),
            aliases,
            ip: req.ipv4,
            ports: if i == 0 { w.ports.clone() } else { Vec::new() },
            dns: w.dns.clone(),
        };
        match net.connect(netns, network, &opts) {
            Ok(e) => done.push(e),
            Err(e) => {
                let _ = detach(net, &w.id, netns);
                return Err(e);
            }
        }
    }
    Ok(done)
}

/// Unwires a container: disconnects it from every network it is on and removes its namespace
/// file. Nothing to do is no error.
///
/// # Errors
/// The first failure (the rest is still attempted).
pub fn detach(net: &NetworkController, id: &str, netns: &Path) -> Result<(), NetworkError> {
    let mine: Vec<String> = net
        .snapshot()
        .networks
        .values()
        .filter(|n| n.endpoints.contains_key(id))
        .map(|n| n.id.clone())
        .collect();
    let mut first = None;
    for n in mine {
        if let Err(e) = net.disconnect(id, &n) {
            first.get_or_insert(e);
        }
    }
    if netns.exists() {
        if let Err(e) = net.remove_netns(netns) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

fn port_key(p: u16, proto: Protocol) -> String {
    let proto = match proto {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    format!("{p}/{proto}")
}

/// The ports of a running container as `NetworkSettings.Ports` shows them: every exposed port
/// (null when not published) and every bound one.
pub fn ports_json(exposed: &[String], bound: &[PortMap]) -> Value {
    let mut out = Map::new();
    for k in exposed {
        let k = if k.contains('/') {
            k.clone()
        } else {
            format!("{k}/tcp")
        };
        out.insert(k, Value::Null);
    }
    for b in bound {
        let key = port_key(b.container_port, b.protocol);
        let entry = json!({
            "HostIp": b.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string(),
            "HostPort": b.host_port.to_string(),
        });
        match out.get_mut(&key) {
            Some(Value::Array(a)) => a.push(entry),
            _ => {
                out.insert(key, json!([entry]));
            }
        }
    }
    Value::Object(out)
}

/// The container list's `Ports`: bound ones with their host side, exposed ones without.
pub fn list_ports(exposed: &[String], bound: &[PortMap]) -> Value {
    let mut rows: Vec<Value> = Vec::new();
    for b in bound {
        rows.push(json!({
            "IP": b.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string(),
            "PrivatePort": b.container_port,
            "PublicPort": b.host_port,
            "Type": match b.protocol { Protocol::Tcp => "tcp", Protocol::Udp => "udp" },
        }));
    }
    for k in exposed {
        let (p, proto) = k.split_once('/').unwrap_or((k.as_str(), "tcp"));
        let Ok(p) = p.parse::<u16>() else { continue };
        let published = bound
            .iter()
            .any(|b| b.container_port == p && port_key(p, b.protocol) == format!("{p}/{proto}"));
        if !published {
            rows.push(json!({"PrivatePort": p, "Type": proto}));
        }
    }
    Value::Array(rows)
}

/// The ports bound for container `id` (on any of its networks).
pub fn bound_ports(state: &State, id: &str) -> Vec<PortMap> {
    state
        .networks
        .values()
        .filter_map(|n| n.endpoints.get(id))
        .flat_map(|e| e.ports.iter().copied())
        .collect()
}

/// One `NetworkSettings.Networks` entry: live values when connected, the request otherwise.
fn endpoint_json(state: &State, id: &str, key: &str, req: &EndpointRequest) -> Value {
    let n = state.find(key);
    let e = n.and_then(|n| n.endpoints.get(id));
    let ipam = req
        .ipv4
        .map(|ip| json!({"IPv4Address": ip.to_string()}))
        .unwrap_or(Value::Null);
    // API 1.44 (dockerd 25) still lists the short container id among the aliases on a user
    // network (1.45 drops it for DNSNames alone).
    let mut all = req.aliases.clone();
    if n.is_some_and(|n| !n.default) && !all.iter().any(|a| a == &id[..12]) {
        all.push(id[..12].to_string());
    }
    let aliases = if all.is_empty() {
        Value::Null
    } else {
        json!(all)
    };
    match (n, e) {
        (Some(n), Some(e)) => {
            let mut dns_names = vec![e.container_name.clone(), id[..12].to_string()];
            dns_names.extend(e.aliases.iter().cloned());
            json!({
                "IPAMConfig": ipam, "Links": null, "Aliases": aliases, "MacAddress": e.mac,
                "DriverOpts": null, "NetworkID": n.id, "EndpointID": e.endpoint_id,
                "Gateway": if n.internal { String::new() } else { n.pool.gateway.to_string() },
                "IPAddress": e.ip.to_string(), "IPPrefixLen": n.pool.subnet.prefix,
                "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                "DNSNames": if n.default { Value::Null } else { json!(dns_names) },
            })
        }
        _ => json!({
            "IPAMConfig": ipam, "Links": null, "Aliases": aliases, "MacAddress": "",
            "DriverOpts": null, "NetworkID": n.map(|n| n.id.clone()).unwrap_or_default(),
            "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "DNSNames": null,
        }),
    }
}

/// `NetworkSettings` of a container on bridge networks (`networks`, primary first), from the
/// controller's records (`None`: not open, nothing connected).
pub fn settings_json(
    state: Option<&State>,
    id: &str,
    networks: &Attachments,
    netns: &Path,
    exposed: &[String],
) -> Value {
    let empty = State::default();
    let state = state.unwrap_or(&empty);
    let connected = state
        .networks
        .values()
        .any(|n| n.endpoints.contains_key(id));
    let mut nets = Map::new();
    for (key, req) in networks {
        // dockerd keys the map by the network's name, whatever the request named it by.
        let name = state
            .find(key)
            .map(|n| n.name.clone())
            .unwrap_or_else(|| key.clone());
        nets.insert(name, endpoint_json(state, id, key, req));
    }
    // The top-level fields mirror the default bridge's endpoint (dockerd's legacy fields).
    let default = state
        .networks
        .values()
        .find(|n| n.default)
        .and_then(|n| n.endpoints.get(id).map(|e| (n, e)));
    let (endpoint, gateway, ip, prefix, mac) = match default {
        Some((n, e)) => (
            e.endpoint_id.clone(),
            n.pool.gateway.to_string(),
            e.ip.to_string(),
            n.pool.subnet.prefix,
            e.mac.clone(),
        ),
        None => Default::default(),
    };
    let sandbox = if connected {
        netns.display().to_string()
    } else {
        String::new()
    };
    json!({
        "Bridge": "", "SandboxID": if connected { id.to_string() } else { String::new() },
        "SandboxKey": sandbox,
        "Ports": if connected { ports_json(exposed, &bound_ports(state, id)) } else { json!({}) },
        "HairpinMode": false, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
        "SecondaryIPAddresses": null, "SecondaryIPv6Addresses": null, "EndpointID": endpoint,
        "Gateway": gateway, "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": ip,
        "IPPrefixLen": prefix, "IPv6Gateway": "", "MacAddress": mac,
        "Networks": nets,
    })
}

/// NetworkSettings as a client of an older API version reads them: before 1.44 endpoints have
/// no `DNSNames` (dockerd's version gate); `path` is the request's, with its version prefix.
pub fn for_api_version(settings: &mut Value, path: &str) {
    use crate::engine::server::{strip_version, ApiVersion};
    let older = strip_version(path)
        .0
        .and_then(ApiVersion::parse)
        .is_some_and(|v| v < ApiVersion(1, 44));
    if !older {
        return;
    }
    for ep in settings["Networks"].as_object_mut().into_iter().flatten() {
        if let Some(o) = ep.1.as_object_mut() {
            o.remove("DNSNames");
        }
    }
}

/// The ports a container publishes: its PortBindings, plus every exposed port with `-P`.
///
/// # Errors
/// `BadRequest` naming the bad binding.
pub fn port_requests(
    bindings: Option<&Value>,
    publish_all: bool,
    exposed: &[String],
) -> Result<Vec<PortRequest>, ApiError> {
    let bad = |e: ports::PortError| ApiError::BadRequest(e.to_string());
    let mut out = match bindings {
        Some(v) => ports::parse_port_bindings(v).map_err(bad)?,
        None => Vec::new(),
    };
    if publish_all {
        for r in ports::publish_all(exposed).map_err(bad)? {
            if !out
                .iter()
                .any(|o| o.container_port == r.container_port && o.protocol == r.protocol)
            {
                out.push(r);
            }
        }
    }
    Ok(out)
}

/// The network a mode names: `default` is `bridge`.
pub fn mode_network(mode: &str) -> &str {
    match mode {
        "" | "default" => DEFAULT_NETWORK,
        m => m,
    }
}

/// The networks a container in network mode `mode` joins, primary first, each with what
/// `endpoints` (NetworkingConfig.EndpointsConfig) asks of it, keyed by the network's name.
///
/// # Errors
/// 400 "network X not found" for a network that does not exist.
pub fn resolve_attachments(
    net: &NetworkController,
    mode: &str,
    mut endpoints: BTreeMap<String, EndpointRequest>,
) -> Result<Attachments, ApiError> {
    let state = net.snapshot();
    // 400, not 404: the docker CLI reads a 404 from create as a missing image and pulls.
    let find = |key: &str| {
        state
            .find(mode_network(key))
            .ok_or_else(|| ApiError::BadRequest(format!("network {key} not found")))
    };
    let primary = find(mode)?;
    let mut out: Attachments = Vec::new();
    let mut rest: Vec<(String, EndpointRequest)> = Vec::new();
    let mut primary_req = EndpointRequest::default();
    for (key, req) in std::mem::take(&mut endpoints) {
        let n = find(&key)?;
        if n.id == primary.id {
            primary_req = req;
        } else if !rest.iter().any(|(name, _)| *name == n.name) {
            rest.push((n.name.clone(), req));
        }
    }
    if primary.default && (!primary_req.aliases.is_empty()) {
        return Err(ApiError::BadRequest(
            "network-scoped alias is supported only for containers in user defined networks".into(),
        ));
    }
    if primary.default && primary_req.ipv4.is_some() {
        return Err(ApiError::BadRequest(
            "user specified IP address is supported on user defined networks only".into(),
        ));
    }
    out.push((primary.name.clone(), primary_req));
    out.extend(rest);
    Ok(out)
}

/// Writes the /etc files into the container's directory (bind-mounted from there).
///
/// # Errors
/// `Internal` when a write fails.
pub fn write_etc(dir: &Path, f: &EtcFiles) -> Result<(), ApiError> {
    // Written as one set: one fsync of the directory for the three.
    crate::sys::durable::write_all_in(
        dir,
        &[
            ("hosts", 0o644, f.hosts.as_bytes()),
            ("hostname", 0o644, f.hostname.as_bytes()),
            ("resolv.conf", 0o644, f.resolv_conf.as_bytes()),
        ],
    )
    .map_err(|e| ApiError::internal("writing the container's hosts, hostname and resolv.conf", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_settings_are_read_and_unsupported_fields_named() {
        let r = parse_endpoint(
            "EndpointsConfig.app",
            &json!({"IPAMConfig": {"IPv4Address": "10.1.0.9"}, "Aliases": ["db", "db"],
                    "Links": null, "MacAddress": "", "NetworkID": ""}),
        )
        .unwrap();
        assert_eq!(r.aliases, vec!["db".to_string()]);
        assert_eq!(r.ipv4, Some(Ipv4Addr::new(10, 1, 0, 9)));
        let e = parse_endpoint("E.app", &json!({"MacAddress": "02:42:ac:11:00:02"})).unwrap_err();
        assert!(e.to_string().contains("E.app.MacAddress"), "{e}");
        let e = parse_endpoint("E.app", &json!({"Links": ["a:b"]})).unwrap_err();
        assert!(e.to_string().contains("Links"), "{e}");
        let e =
            parse_endpoint("E.app", &json!({"IPAMConfig": {"IPv6Address": "::5"}})).unwrap_err();
        assert!(e.to_string().contains("IPAMConfig.IPv6Address"), "{e}");
    }

    #[test]
    fn ports_show_as_dockerd_shows_them() {
        let bound = [PortMap {
            protocol: Protocol::Tcp,
            container_port: 80,
            host_ip: None,
            host_port: 8080,
        }];
        let exposed = ["80/tcp".to_string(), "53/udp".to_string()];
        assert_eq!(
            ports_json(&exposed, &bound),
            json!({"53/udp": null, "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]})
        );
        assert_eq!(
            list_ports(&exposed, &bound),
            json!([{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                   {"PrivatePort": 53, "Type": "udp"}])
        );
    }

    #[test]
    fn publish_all_adds_exposed_ports_not_bound_already() {
        let r = port_requests(
            Some(&json!({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]})),
            true,
            &["80/tcp".into(), "443/tcp".into()],
        )
        .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].host_ports, (8080, 8080));
        assert_eq!(r[1].container_port, 443);
        assert_eq!(r[1].host_ports, (0, 0));
    }

    #[test]
    fn a_stub_only_resolv_conf_gives_way_to_resolveds_upstream_file() {
        let dir = tempfile::tempdir().unwrap();
        let (etc, up) = (dir.path().join("etc"), dir.path().join("up"));
        std::fs::write(&etc, "nameserver 127.0.0.53\noptions edns0\n").unwrap();
        assert_eq!(resolv_conf_path(&etc, &up), etc, "no upstream file yet");
        std::fs::write(&up, "nameserver 10.0.0.2\n").unwrap();
        assert_eq!(resolv_conf_path(&etc, &up), up);
        std::fs::write(&etc, "nameserver 127.0.0.53\nnameserver 10.0.0.3\n").unwrap();
        assert_eq!(resolv_conf_path(&etc, &up), etc, "another server is kept");
    }

    #[test]
    fn dns_names_are_left_out_before_api_1_44() {
        let v = json!({"Networks": {"app": {"Aliases": ["db"], "DNSNames": ["c", "db"]}}});
        for (path, kept) in [
            ("/v1.41/containers/c/json", false),
            ("/v1.44/containers/c/json", true),
            ("/containers/c/json", true),
        ] {
            let mut s = v.clone();
            for_api_version(&mut s, path);
            assert_eq!(
                s["Networks"]["app"].get("DNSNames").is_some(),
                kept,
                "{path}"
            );
            assert_eq!(s["Networks"]["app"]["Aliases"], json!(["db"]));
        }
    }

    #[test]
    fn files_follow_the_mode() {
        let f = etc_files(
            FileMode::Embedded,
            "",
            "nameserver 10.0.0.2\n",
            Some(Ipv4Addr::new(172, 18, 0, 2)),
            None,
            "web",
            "example.org",
            &["db:10.1.1.1".into()],
            &DnsOptions::default(),
        )
        .unwrap();
        assert!(f.hosts.contains("10.1.1.1\tdb\n"), "{}", f.hosts);
        assert!(
            f.hosts.ends_with("172.18.0.2\tweb.example.org web\n"),
            "{}",
            f.hosts
        );
        assert!(
            f.resolv_conf.starts_with("nameserver 127.0.0.11\n"),
            "{}",
            f.resolv_conf
        );
        assert_eq!(f.hostname, "web\n");
        assert!(etc_files(
            FileMode::Private,
            "",
            "",
            None,
            None,
            "h",
            "",
            &["nope".into()],
            &DnsOptions::default()
        )
        .is_err());
    }
}
