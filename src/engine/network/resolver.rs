//! The embedded DNS server of a container on a user-defined network, as dockerd's at
//! 127.0.0.11: it answers the names of the containers that share a network with the asking one
//! (container names, `--network-alias`, compose service names: every matching container), and
//! their reverse names, and forwards every other query to the servers of the container's
//! resolv.conf.
//!
//! dockerd binds random ports inside the container and DNATs port 53 to them with rules in the
//! container's namespace; refengd binds 127.0.0.11:53 itself (UDP and TCP) from a thread that
//! joined the namespace, which needs no rules there. The sockets stay in that namespace while
//! the tasks serving them run on the engine's runtime. Forwarded queries leave from refengd's
//! own namespace, so they work on networks whose containers have no route out; on an
//! `internal` network nothing is forwarded (SERVFAIL), as nothing may leave it.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use super::dns::{self, rcode, rtype, Message};
use super::files::EMBEDDED_DNS;
use super::netlink::{self, NetlinkError};

/// The TTL of the resolver's own answers (dockerd's `respTTL`).
pub const TTL: u32 = 600;
/// How long a forwarded query waits for the upstream server.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);

/// What the resolver asks the engine: names are looked up at query time, so connects,
/// disconnects and renames take effect at once.
pub trait Names: Send + Sync + 'static {
    /// The addresses `name` (lowercase, no trailing dot) stands for, as seen by `container`;
    /// `None` when the name is not one of ours.
    fn resolve(&self, container: &str, name: &str) -> Option<Vec<Ipv4Addr>>;
    /// The name of the container with `ip` on a network `container` shares
    /// (`name.network`).
    fn reverse(&self, container: &str, ip: Ipv4Addr) -> Option<String>;
    /// Where other queries go; empty: nowhere (SERVFAIL).
    fn upstream(&self, container: &str) -> Vec<Ipv4Addr>;
}

/// A running resolver; dropping it closes its sockets.
#[derive(Debug)]
pub struct Resolver {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Resolver {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the resolver of `container` in the namespace at `netns`, serving on `rt`.
///
/// # Errors
/// When the namespace cannot be joined or 127.0.0.11:53 cannot be bound there.
pub fn start(
    rt: &tokio::runtime::Handle,
    netns: &Path,
    container: &str,
    names: Arc<dyn Names>,
) -> Result<Resolver, NetlinkError> {
    let path = netns.to_path_buf();
    let at = SocketAddr::V4(SocketAddrV4::new(EMBEDDED_DNS, 53));
    let (udp, tcp) = std::thread::spawn(move || -> Result<_, NetlinkError> {
        netlink::enter(&path)?;
        let io = |source| NetlinkError::Io {
            doing: "bind 127.0.0.11:53 in",
            path: path.clone(),
            source,
        };
        let udp = std::net::UdpSocket::bind(at).map_err(io)?;
        let tcp = std::net::TcpListener::bind(at).map_err(io)?;
        udp.set_nonblocking(true).map_err(io)?;
        tcp.set_nonblocking(true).map_err(io)?;
        Ok((udp, tcp))
    })
    .join()
    .map_err(|_| NetlinkError::Thread("panicked".into()))??;
    let _enter = rt.enter();
    let io = |source| NetlinkError::Io {
        doing: "register the resolver's socket of",
        path: netns.to_path_buf(),
        source,
    };
    let udp = Arc::new(UdpSocket::from_std(udp).map_err(io)?);
    let tcp = TcpListener::from_std(tcp).map_err(io)?;
    let c = container.to_string();
    let n = names.clone();
    let udp_task = rt.spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((len, from)) = udp.recv_from(&mut buf).await else {
                continue;
            };
            let query = buf[..len].to_vec();
            let (udp, c, n) = (udp.clone(), c.clone(), n.clone());
            tokio::spawn(async move {
                if let Some(resp) = handle(&query, &c, n.as_ref(), false).await {
                    let _ = udp.send_to(&resp, from).await;
                }
            });
        }
    });
    let c = container.to_string();
    let tcp_task = rt.spawn(async move {
        loop {
            let Ok((stream, _)) = tcp.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let (c, n) = (c.clone(), names.clone());
            tokio::spawn(serve_tcp(stream, c, n));
        }
    });
    Ok(Resolver {
        tasks: vec![udp_task, tcp_task],
    })
}

async fn serve_tcp(mut stream: TcpStream, container: String, names: Arc<dyn Names>) {
    loop {
        let Ok(Ok(len)) = tokio::time::timeout(Duration::from_secs(10), stream.read_u16()).await
        else {
            return;
        };
        let mut query = vec![0u8; usize::from(len)];
        if stream.read_exact(&mut query).await.is_err() {
            return;
        }
        let Some(resp) = handle(&query, &container, names.as_ref(), true).await else {
            return;
        };
        let Ok(n) = u16::try_from(resp.len()) else {
            return;
        };
        if stream.write_u16(n).await.is_err() || stream.write_all(&resp).await.is_err() {
            return;
        }
    }
}

/// The answer to one query, or `None` to stay silent (responses, or no parsable id at all).
async fn handle(query: &[u8], container: &str, names: &dyn Names, tcp: bool) -> Option<Vec<u8>> {
    let msg = match Message::parse(query) {
        Ok(m) => m,
        Err(_) => {
            // Answer FORMERR when at least the header is there, as servers do.
            let m = Message {
                header: dns::Header {
                    id: u16::from_be_bytes([*query.first()?, *query.get(1)?]),
                    flags: u16::from_be_bytes([*query.get(2)?, *query.get(3)?]),
                    qdcount: 0,
                    ancount: 0,
                    nscount: 0,
                    arcount: 0,
                },
                questions: vec![],
                records: vec![],
                question_end: 12,
            };
            if m.header.is_response() {
                return None;
            }
            return Some(dns::reply(query, &m, rcode::FORMERR));
        }
    };
    if msg.header.is_response() {
        return None;
    }
    if msg.header.opcode() != 0 {
        return Some(dns::reply(query, &msg, rcode::NOTIMP));
    }
    let [q] = msg.questions.as_slice() else {
        return Some(dns::reply(query, &msg, rcode::FORMERR));
    };
    match q.qtype {
        rtype::A | rtype::AAAA => {
            if let Some(ips) = names.resolve(container, &q.name) {
                // Our names have IPv4 addresses only: an empty NOERROR for AAAA, as dockerd.
                let ips = if q.qtype == rtype::A { ips } else { vec![] };
                return Some(dns::answer_a(query, &msg, &ips, TTL));
            }
        }
        rtype::PTR => {
            if let Some(ip) = dns::reverse_ipv4(&q.name) {
                if let Some(name) = names.reverse(container, ip) {
                    return Some(dns::answer_ptr(query, &msg, &name, TTL));
                }
            }
        }
        _ => {}
    }
    forward(query, &msg, &names.upstream(container), tcp).await
}

async fn forward(query: &[u8], msg: &Message, servers: &[Ipv4Addr], tcp: bool) -> Option<Vec<u8>> {
    for server in servers {
        let at = SocketAddr::V4(SocketAddrV4::new(*server, 53));
        let got = if tcp {
            tokio::time::timeout(FORWARD_TIMEOUT, forward_tcp(query, at)).await
        } else {
            tokio::time::timeout(FORWARD_TIMEOUT, forward_udp(query, at)).await
        };
        if let Ok(Ok(resp)) = got {
            return Some(resp);
        }
    }
    Some(dns::reply(query, msg, rcode::SERVFAIL))
}

async fn forward_udp(query: &[u8], at: SocketAddr) -> std::io::Result<Vec<u8>> {
    let s = UdpSocket::bind("0.0.0.0:0").await?;
    s.connect(at).await?;
    s.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = s.recv(&mut buf).await?;
        // Only the answer to this query's id counts.
        if n >= 2 && buf[..2] == query[..2] {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn forward_tcp(query: &[u8], at: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(at).await?;
    let len = u16::try_from(query.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "query too long"))?;
    s.write_u16(len).await?;
    s.write_all(query).await?;
    let n = s.read_u16().await?;
    let mut buf = vec![0u8; usize::from(n)];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Table;
    impl Names for Table {
        fn resolve(&self, _: &str, name: &str) -> Option<Vec<Ipv4Addr>> {
            (name == "web").then(|| vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)])
        }
        fn reverse(&self, _: &str, ip: Ipv4Addr) -> Option<String> {
            (ip == Ipv4Addr::new(10, 0, 0, 2)).then(|| "web.net".to_string())
        }
        fn upstream(&self, _: &str) -> Vec<Ipv4Addr> {
            vec![]
        }
    }

    fn answer(q: &[u8]) -> Option<Message> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(handle(q, "c", &Table, false))
            .map(|r| Message::parse(&r).unwrap())
    }

    #[test]
    fn known_names_are_answered_and_others_fail_without_upstream() {
        let a = answer(&dns::query(1, "WEB.", rtype::A)).unwrap();
        assert_eq!(a.records.len(), 2);
        let aaaa = answer(&dns::query(2, "web", rtype::AAAA)).unwrap();
        assert_eq!(
            (aaaa.header.rcode(), aaaa.records.len()),
            (rcode::NOERROR, 0)
        );
        let ptr = answer(&dns::query(3, "2.0.0.10.in-addr.arpa", rtype::PTR)).unwrap();
        assert_eq!(ptr.records[0].rtype, rtype::PTR);
        let other = answer(&dns::query(4, "example.com", rtype::A)).unwrap();
        assert_eq!(other.header.rcode(), rcode::SERVFAIL);
        let garbage = answer(&[0, 5, 1, 0, 0, 1, 0]).unwrap();
        assert_eq!(
            (garbage.header.id, garbage.header.rcode()),
            (5, rcode::FORMERR)
        );
        assert!(answer(&[0]).is_none());
        let mut resp = dns::query(6, "web", rtype::A);
        resp[2] |= 0x80;
        assert!(answer(&resp).is_none(), "responses are not answered");
    }
}
