//! Published ports: the API's `PortBindings` and `-P` read into requests, host ports picked
//! (fixed, from a range, or random), and the in-process proxy that makes a published port
//! reachable on the host's loopback.
//!
//! dockerd starts one `docker-proxy` process per published port for that; refengd runs the same
//! relay as a task in its own runtime instead of setting `route_localnet` and DNAT in OUTPUT for
//! 127.0.0.0/8: the sysctl would let any local process reach container ports through a
//! martian-source loophole on every interface, and holding the listening socket also reserves
//! the host port, so a port already taken fails at `connect` with dockerd's error rather than
//! being silently shadowed by a DNAT rule. Non-loopback traffic goes through DNAT ([`super::nat`])
//! and never reaches the proxy.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// tcp or udp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    fn parse(s: &str) -> Result<Protocol, PortError> {
        match s {
            "" | "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            other => Err(PortError::Protocol(other.to_string())),
        }
    }
}

/// A bad port specification, or a host port that cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// invalid proto: {0}
    #[error("invalid proto: {0} (tcp and udp are supported)")]
    Protocol(String),
    /// invalid port specification: {0}
    #[error("invalid port specification: {0:?}")]
    Spec(String),
    /// invalid IP address: {0}
    #[error("invalid IP address: {0}")]
    HostIp(String),
    /// the host IP is IPv6, which refengd's networks do not support
    #[error("host IP {0} is IPv6: IPv6 port publishing is not supported")]
    Ipv6(String),
    /// dockerd's wording for a taken port
    #[error("Error starting userland proxy: listen {proto} {addr}: bind: address already in use")]
    InUse {
        /// tcp4 or udp4.
        proto: &'static str,
        /// What was asked.
        addr: String,
    },
    /// other socket failures
    #[error("Error starting userland proxy: listen {proto} {addr}: {source}")]
    Bind {
        /// tcp4 or udp4.
        proto: &'static str,
        /// What was asked.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What the user asked for one container port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequest {
    /// tcp or udp.
    pub protocol: Protocol,
    /// The port inside the container.
    pub container_port: u16,
    /// The host address (`None`: all).
    pub host_ip: Option<Ipv4Addr>,
    /// The host ports to try, first to last; (0, 0): a random one.
    pub host_ports: (u16, u16),
}

/// A published port as bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortMap {
    /// tcp or udp.
    pub protocol: Protocol,
    /// The port inside the container.
    pub container_port: u16,
    /// The host address (`None`: all).
    pub host_ip: Option<Ipv4Addr>,
    /// The host port bound.
    pub host_port: u16,
}

fn port_range(s: &str, whole: &str) -> Result<(u16, u16), PortError> {
    let bad = || PortError::Spec(whole.to_string());
    let num = |p: &str| -> Result<u16, PortError> {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        p.parse().map_err(|_| bad())
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (num(a)?, num(b)?);
            if a > b {
                return Err(bad());
            }
            Ok((a, b))
        }
        None => {
            let p = num(s)?;
            Ok((p, p))
        }
    }
}

/// Reads the Engine API's `HostConfig.PortBindings` (`{"80/tcp": [{"HostIp": "", "HostPort":
/// "8080"}]}`, container and host ports possibly ranges) into requests, one per container port
/// and binding. A container range maps one to one onto a host range of the same length; a
/// single container port with a host range takes the first free port of it.
///
/// # Errors
/// [`PortError`] naming the bad key or value.
pub fn parse_port_bindings(v: &Value) -> Result<Vec<PortRequest>, PortError> {
    let mut out = Vec::new();
    let map = match v {
        Value::Null => return Ok(out),
        Value::Object(m) => m,
        other => return Err(PortError::Spec(other.to_string())),
    };
    for (key, bindings) in map {
        let (ports, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let protocol = Protocol::parse(proto)?;
        let (c0, c1) = port_range(ports, key)?;
        if c0 == 0 {
            return Err(PortError::Spec(key.clone()));
        }
        let list: Vec<&Value> = match bindings {
            Value::Null => vec![],
            Value::Array(a) => a.iter().collect(),
            other => return Err(PortError::Spec(other.to_string())),
        };
        for b in list {
            let field = |k: &str| -> Result<String, PortError> {
                match b.get(k) {
                    None | Some(Value::Null) => Ok(String::new()),
                    Some(Value::String(s)) => Ok(s.clone()),
                    Some(other) => Err(PortError::Spec(other.to_string())),
                }
            };
            let host_ip = match field("HostIp")?.as_str() {
                "" => None,
                s if s.contains(':') => return Err(PortError::Ipv6(s.to_string())),
                s => Some(
                    s.parse::<Ipv4Addr>()
                        .map_err(|_| PortError::HostIp(s.to_string()))?,
                ),
            };
            let host = field("HostPort")?;
            let (h0, h1) = if host.is_empty() {
                (0, 0)
            } else {
                port_range(&host, &host)?
            };
            let count = c1 - c0;
            if count > 0 && h0 != 0 && h1 - h0 != count {
                return Err(PortError::Spec(format!("{host}:{key}")));
            }
            for i in 0..=count {
                let hosts = if h0 == 0 {
                    (0, 0)
                } else if count > 0 {
                    (h0 + i, h0 + i)
                } else {
                    (h0, h1)
                };
                out.push(PortRequest {
                    protocol,
                    container_port: c0 + i,
                    host_ip,
                    host_ports: hosts,
                });
            }
        }
    }
    Ok(out)
}

/// `-P`: every exposed port (`"80/tcp"` keys of `ExposedPorts`) on a random host port.
///
/// # Errors
/// [`PortError`] for a bad key.
pub fn publish_all(exposed: &[String]) -> Result<Vec<PortRequest>, PortError> {
    let mut out = Vec::new();
    for key in exposed {
        let (ports, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let protocol = Protocol::parse(proto)?;
        let (c0, c1) = port_range(ports, key)?;
        for p in c0..=c1 {
            out.push(PortRequest {
                protocol,
                container_port: p,
                host_ip: None,
                host_ports: (0, 0),
            });
        }
    }
    Ok(out)
}

/// A running relay for one published port; dropping it closes the port.
#[derive(Debug)]
pub struct Proxy {
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The proxy's buffer per direction and connection.
const PROXY_BUFFER: usize = 64 * 1024;

/// How long a UDP flow without traffic keeps its upstream socket (docker-proxy's default).
const UDP_IDLE: Duration = Duration::from_secs(90);

/// Binds the host side of `req` (trying its ports in order, or a random one) and relays it to
/// `target:container_port` on `rt`.
///
/// # Errors
/// [`PortError::InUse`] when no port of the request is free, [`PortError::Bind`] otherwise.
pub fn bind(
    rt: &tokio::runtime::Handle,
    req: &PortRequest,
    target: Ipv4Addr,
) -> Result<(PortMap, Proxy), PortError> {
    let ip = req.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let (first, last) = req.host_ports;
    let proto_name = match req.protocol {
        Protocol::Tcp => "tcp4",
        Protocol::Udp => "udp4",
    };
    let addr_text = format!("{ip}:{first}");
    let upstream = SocketAddr::V4(SocketAddrV4::new(target, req.container_port));
    let _enter = rt.enter();
    let mut last_err = None;
    for port in first..=last {
        let at = SocketAddr::V4(SocketAddrV4::new(ip, port));
        let bound = match req.protocol {
            Protocol::Tcp => std::net::TcpListener::bind(at).and_then(|l| {
                l.set_nonblocking(true)?;
                let local = l.local_addr()?;
                let l = TcpListener::from_std(l)?;
                Ok((local, rt.spawn(relay_tcp(l, upstream))))
            }),
            Protocol::Udp => std::net::UdpSocket::bind(at).and_then(|s| {
                s.set_nonblocking(true)?;
                let local = s.local_addr()?;
                let s = UdpSocket::from_std(s)?;
                Ok((local, rt.spawn(relay_udp(Arc::new(s), upstream))))
            }),
        };
        match bound {
            Ok((local, task)) => {
                return Ok((
                    PortMap {
                        protocol: req.protocol,
                        container_port: req.container_port,
                        host_ip: req.host_ip,
                        host_port: local.port(),
                    },
                    Proxy { task },
                ))
            }
            Err(e) => last_err = Some(e),
        }
    }
    match last_err {
        Some(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(PortError::InUse {
            proto: proto_name,
            addr: addr_text,
        }),
        Some(source) => Err(PortError::Bind {
            proto: proto_name,
            addr: addr_text,
            source,
        }),
        None => Err(PortError::Spec(addr_text)),
    }
}

async fn relay_tcp(listener: TcpListener, upstream: SocketAddr) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            // EMFILE and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(async move {
            if let Ok(mut server) = TcpStream::connect(upstream).await {
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                // 64 KiB each way (tokio's default is 8 KiB): a request of that size crosses
                // in one read and one write instead of eight of each.
                let _ = tokio::io::copy_bidirectional_with_sizes(
                    &mut client,
                    &mut server,
                    PROXY_BUFFER,
                    PROXY_BUFFER,
                )
                .await;
            }
        });
    }
}

async fn relay_udp(socket: Arc<UdpSocket>, upstream: SocketAddr) {
    let flows: Arc<tokio::sync::Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((n, client)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let flow = {
            let mut f = flows.lock().await;
            match f.get(&client) {
                Some(s) => s.clone(),
                None => {
                    let Ok(up) = UdpSocket::bind("0.0.0.0:0").await else {
                        continue;
                    };
                    if up.connect(upstream).await.is_err() {
                        continue;
                    }
                    let up = Arc::new(up);
                    f.insert(client, up.clone());
                    let (back, up2, flows2) = (socket.clone(), up.clone(), flows.clone());
                    tokio::spawn(async move {
                        let mut b = vec![0u8; 65535];
                        while let Ok(Ok(n)) = tokio::time::timeout(UDP_IDLE, up2.recv(&mut b)).await
                        {
                            let _ = back.send_to(&b[..n], client).await;
                        }
                        flows2.lock().await.remove(&client);
                    });
                    up
                }
            }
        };
        let _ = flow.send(&buf[..n]).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bindings_are_read_as_dockerd_reads_them() {
        let mut got = parse_port_bindings(&json!({
            "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
            "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
            "9000-9001/tcp": [{"HostIp": "", "HostPort": "7000-7001"}],
            "443": [{"HostPort": "8443-8450"}]
        }))
        .unwrap();
        got.sort_by_key(|r| (r.container_port, r.protocol));
        assert_eq!(got.len(), 5);
        assert_eq!(got[0].container_port, 53);
        assert_eq!(got[0].host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(got[0].host_ports, (0, 0));
        assert_eq!(got[2].host_ports, (8443, 8450));
        assert_eq!(got[3].host_ports, (7000, 7000));
        assert_eq!(got[4].host_ports, (7001, 7001));
        for bad in [
            json!({"80/sctp": [{"HostPort": "1"}]}),
            json!({"x/tcp": [{"HostPort": "1"}]}),
            json!({"80/tcp": [{"HostPort": "70000"}]}),
            json!({"80-81/tcp": [{"HostPort": "1-3"}]}),
            json!({"80/tcp": [{"HostIp": "nope", "HostPort": "1"}]}),
            json!({"80/tcp": [{"HostIp": "::1", "HostPort": "1"}]}),
        ] {
            assert!(parse_port_bindings(&bad).is_err(), "{bad}");
        }
        assert_eq!(
            publish_all(&["80/tcp".into(), "53/udp".into()])
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn the_proxy_relays_tcp_and_reports_a_taken_port() {
        use std::io::{Read, Write};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let req = PortRequest {
            protocol: Protocol::Tcp,
            container_port: port,
            host_ip: Some(Ipv4Addr::LOCALHOST),
            host_ports: (0, 0),
        };
        let (map, proxy) = bind(rt.handle(), &req, Ipv4Addr::LOCALHOST).unwrap();
        assert_ne!(map.host_port, 0);
        let mut c = std::net::TcpStream::connect(("127.0.0.1", map.host_port)).unwrap();
        let (mut s, _) = server.accept().unwrap();
        c.write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
        let taken = PortRequest {
            host_ports: (map.host_port, map.host_port),
            ..req.clone()
        };
        assert!(matches!(
            bind(rt.handle(), &taken, Ipv4Addr::LOCALHOST),
            Err(PortError::InUse { .. })
        ));
        drop(proxy);
    }
}
