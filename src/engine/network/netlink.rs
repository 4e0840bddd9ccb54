//! The kernel's side of the bridge driver, through rtnetlink: network namespaces as bind-mounted
//! files (as dockerd keeps them under /var/run/docker/netns), bridges, veth pairs, addresses and
//! routes.
//!
//! A netlink socket belongs to the namespace of the thread that opened it, so work inside a
//! container's namespace runs on a short-lived thread that joins it (`setns` changes only the
//! calling thread) with a current-thread tokio runtime of its own. The caller's threads never
//! change namespace, and the engine's runtime never blocks on netlink.

use std::fs::File;
use std::future::Future;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use nix::mount::{umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::ipam::Subnet;

/// A failure of the kernel side.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// netlink: {doing}: {source}
    #[error("{doing}: {source}")]
    Netlink {
        /// What was being done.
        doing: String,
        /// The kernel's answer.
        #[source]
        source: rtnetlink::Error,
    },
    /// {doing} {path}: {source}
    #[error("{doing} {path}: {source}")]
    Io {
        /// What was being done.
        doing: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// the netlink thread panicked or could not start
    #[error("the netlink worker thread failed: {0}")]
    Thread(String),
    /// no link named {0}
    #[error("no network device named {0}")]
    NoLink(String),
}

impl NetlinkError {
    fn nl(doing: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
        let doing = doing.into();
        move |source| NetlinkError::Netlink { doing, source }
    }
}

fn errno_of(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

/// Runs `f` with a netlink handle in `netns` (`None`: the caller's namespace), on a thread of
/// its own.
///
/// # Errors
/// `f`'s error, or why the thread could not join the namespace.
pub fn run<T, F, Fut>(netns: Option<&Path>, f: F) -> Result<T, NetlinkError>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, NetlinkError>>,
{
    let netns = netns.map(Path::to_path_buf);
    let worker = std::thread::Builder::new()
        .name("refengd-netlink".into())
        .spawn(move || -> Result<T, NetlinkError> {
            if let Some(path) = &netns {
                enter(path)?;
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
                .map_err(|e| NetlinkError::Thread(e.to_string()))?;
            rt.block_on(async move {
                let (conn, handle, _) =
                    rtnetlink::new_connection().map_err(|source| NetlinkError::Io {
                        doing: "open a netlink socket in",
                        path: netns.clone().unwrap_or_default(),
                        source,
                    })?;
                tokio::spawn(conn);
                f(handle).await
            })
        })
        .map_err(|e| NetlinkError::Thread(e.to_string()))?;
    worker
        .join()
        .map_err(|_| NetlinkError::Thread("panicked".into()))?
}

/// Moves the calling thread into the network namespace at `path`.
///
/// # Errors
/// When the file cannot be opened or is not a network namespace.
pub fn enter(path: &Path) -> Result<(), NetlinkError> {
    let file = File::open(path).map_err(|source| NetlinkError::Io {
        doing: "open the network namespace",
        path: path.into(),
        source,
    })?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| NetlinkError::Io {
        doing: "join the network namespace",
        path: path.into(),
        source: e.into(),
    })
}

/// Creates a network namespace kept alive by a bind mount on `path` (the file is created), with
/// its loopback up, as dockerd's sandbox does.
///
/// # Errors
/// When the file, the namespace or the mount cannot be made; nothing is left behind then.
pub fn create_netns(path: &Path) -> Result<(), NetlinkError> {
    let io = |doing, source| NetlinkError::Io {
        doing,
        path: path.into(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("create the directory of", e))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io("create", e))?;
    let target = path.to_path_buf();
    let made = std::thread::spawn(move || -> Result<(), NetlinkError> {
        let io = |doing, source| NetlinkError::Io {
            doing,
            path: target.clone(),
            source,
        };
        unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| io("unshare a network namespace for", e.into()))?;
        let own = format!("/proc/self/task/{}/ns/net", nix::unistd::gettid());
        nix::mount::mount(
            Some(own.as_str()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| io("bind-mount the network namespace on", e.into()))
    })
    .join()
    .map_err(|_| NetlinkError::Thread("panicked".into()))
    .and_then(|r| r)
    .and_then(|()| {
        run(Some(path), |h| async move {
            let lo = link_index(&h, "lo")
                .await?
                .ok_or_else(|| NetlinkError::NoLink("lo".into()))?;
            h.link()
                .set(LinkUnspec::new_with_index(lo).up().build())
                .execute()
                .await
                .map_err(NetlinkError::nl("set lo up"))
        })
    });
    if made.is_err() {
        let _ = remove_netns(path);
    }
    made
}

/// Unmounts and removes a namespace file made by [`create_netns`]; the namespace goes away with
/// its last user. A missing file is not an error.
///
/// # Errors
/// When the mount or the file cannot be removed.
pub fn remove_netns(path: &Path) -> Result<(), NetlinkError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            return Err(NetlinkError::Io {
                doing: "unmount the network namespace",
                path: path.into(),
                source: e.into(),
            })
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetlinkError::Io {
            doing: "remove",
            path: path.into(),
            source,
        }),
    }
}

async fn link_index(h: &Handle, name: &str) -> Result<Option<u32>, NetlinkError> {
    match h.link().get().match_name(name).execute().try_next().await {
        Ok(Some(m)) => Ok(Some(m.header.index)),
        Ok(None) => Ok(None),
        Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(NetlinkError::nl(format!("look up {name}"))(e)),
    }
}

fn link_name(m: &LinkMessage) -> Option<String> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

/// The names of the network devices in `netns` (`None`: the caller's).
///
/// # Errors
/// A netlink failure.
pub fn links(netns: Option<&Path>) -> Result<Vec<String>, NetlinkError> {
    run(netns, |h| async move {
        let mut out = Vec::new();
        let mut s = h.link().get().execute();
        while let Some(m) = s.try_next().await.map_err(NetlinkError::nl("list links"))? {
            out.extend(link_name(&m));
        }
        Ok(out)
    })
}

/// The IPv4 destinations of the routes in the caller's namespace (all tables), so a default
/// subnet is picked that collides with none of them.
///
/// # Errors
/// A netlink failure.
pub fn routes() -> Result<Vec<Subnet>, NetlinkError> {
    run(None, |h| async move {
        let mut out = Vec::new();
        let mut s = h
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute();
        while let Some(m) = s
            .try_next()
            .await
            .map_err(NetlinkError::nl("list routes"))?
        {
            let prefix = m.header.destination_prefix_length;
            // The default route collides with everything; it is not a subnet in use.
            if prefix == 0 {
                continue;
            }
            for a in &m.attributes {
                if let RouteAttribute::Destination(RouteAddress::Inet(ip)) = a {
                    if let Ok(s) = Subnet::new(*ip, prefix) {
                        out.push(s.canonical());
                    }
                }
            }
        }
        Ok(out)
    })
}

/// Makes sure bridge `name` exists, is up, has `address` (the gateway, with the subnet's prefix)
/// and, when given, `mtu`. An existing bridge (after a restart) is kept.
///
/// # Errors
/// A netlink failure.
pub fn ensure_bridge(name: &str, address: Subnet, mtu: Option<u32>) -> Result<(), NetlinkError> {
    let name = name.to_string();
    run(None, move |h| async move {
        let index = match link_index(&h, &name).await? {
            Some(i) => i,
            None => {
                let mut b = LinkBridge::new(&name);
                if let Some(m) = mtu {
                    b = b.mtu(m);
                }
                h.link()
                    .add(b.build())
                    .execute()
                    .await
                    .map_err(NetlinkError::nl(format!("create bridge {name}")))?;
                link_index(&h, &name)
                    .await?
                    .ok_or_else(|| NetlinkError::NoLink(name.clone()))?
            }
        };
        match h
            .address()
            .add(index, address.addr.into(), address.prefix)
            .execute()
            .await
        {
            Ok(()) => {}
            Err(e) if errno_of(&e) == Some(libc::EEXIST) => {}
            Err(e) => return Err(NetlinkError::nl(format!("add {address} to {name}"))(e)),
        }
        h.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(NetlinkError::nl(format!("set {name} up")))
    })
}

/// Deletes device `name` in `netns`; a missing one is not an error.
///
/// # Errors
/// A netlink failure.
pub fn delete_link(netns: Option<&Path>, name: &str) -> Result<(), NetlinkError> {
    let name = name.to_string();
    run(netns, move |h| async move {
        let Some(index) = link_index(&h, &name).await? else {
            return Ok(());
        };
        match h.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(()),
            Err(e) => Err(NetlinkError::nl(format!("delete {name}"))(e)),
        }
    })
}

/// What a veth pair into a container is made with.
#[derive(Debug, Clone)]
pub struct VethPlan {
    /// The host end's name (`veth` and 7 hex digits, as dockerd names it).
    pub host_name: String,
    /// The bridge the host end joins.
    pub bridge: String,
    /// The container's namespace file.
    pub netns: PathBuf,
    /// The name inside the container (`eth0`, `eth1`, ...).
    pub ifname: String,
    /// The container's address, with the subnet's prefix length.
    pub address: Subnet,
    /// Its MAC address.
    pub mac: [u8; 6],
    /// The default route's gateway; `None` on internal networks and for a second network.
    pub gateway: Option<Ipv4Addr>,
    /// The MTU of both ends.
    pub mtu: Option<u32>,
}

/// Creates the veth pair of `plan`: the host end on the bridge and up, the other end moved into
/// the container's namespace, renamed, addressed, up, with the default route. On failure the
/// pair is deleted again (deleting one end deletes both).
///
/// # Errors
/// A netlink failure, or a namespace that cannot be opened.
pub fn create_veth(plan: &VethPlan) -> Result<(), NetlinkError> {
    let made = create_veth_steps(plan);
    if made.is_err() {
        let _ = delete_link(None, &plan.host_name);
    }
    made
}

fn create_veth_steps(plan: &VethPlan) -> Result<(), NetlinkError> {
    let netns_file = File::open(&plan.netns).map_err(|source| NetlinkError::Io {
        doing: "open the network namespace",
        path: plan.netns.clone(),
        source,
    })?;
    // A temporary peer name unique on the host (the container's name may be taken there).
    let peer = format!("{}c", &plan.host_name[..plan.host_name.len().min(14)]);
    let p = plan.clone();
    let peer_outside = peer.clone();
    run(None, move |h| async move {
        let mut veth = LinkVeth::new(&p.host_name, &peer_outside);
        if let Some(m) = p.mtu {
            veth = veth.mtu(m);
        }
        h.link()
            .add(veth.build())
            .execute()
            .await
            .map_err(NetlinkError::nl(format!("create veth {}", p.host_name)))?;
        let bridge = link_index(&h, &p.bridge)
            .await?
            .ok_or_else(|| NetlinkError::NoLink(p.bridge.clone()))?;
        let host = link_index(&h, &p.host_name)
            .await?
            .ok_or_else(|| NetlinkError::NoLink(p.host_name.clone()))?;
        let inner = link_index(&h, &peer_outside)
            .await?
            .ok_or_else(|| NetlinkError::NoLink(peer_outside.clone()))?;
        if let Some(m) = p.mtu {
            h.link()
                .set(LinkUnspec::new_with_index(inner).mtu(m).build())
                .execute()
                .await
                .map_err(NetlinkError::nl("set the peer's mtu"))?;
        }
        h.link()
            .set(
                LinkUnspec::new_with_index(host)
                    .controller(bridge)
                    .up()
                    .build(),
            )
            .execute()
            .await
            .map_err(NetlinkError::nl(format!(
                "attach {} to {}",
                p.host_name, p.bridge
            )))?;
        h.link()
            .set(
                LinkUnspec::new_with_index(inner)
                    .setns_by_fd(netns_file.as_raw_fd())
                    .build(),
            )
            .execute()
            .await
            .map_err(NetlinkError::nl(
                "move the peer into the container's namespace",
            ))?;
        drop(netns_file);
        Ok(())
    })?;
    let p = plan.clone();
    run(Some(&plan.netns), move |h| async move {
        let index = link_index(&h, &peer)
            .await?
            .ok_or_else(|| NetlinkError::NoLink(peer.clone()))?;
        h.link()
            .set(
                LinkUnspec::new_with_index(index)
                    .name(p.ifname.clone())
                    .address(p.mac.to_vec())
                    .build(),
            )
            .execute()
            .await
            .map_err(NetlinkError::nl(format!("rename the peer to {}", p.ifname)))?;
        h.address()
            .add(index, p.address.addr.into(), p.address.prefix)
            .execute()
            .await
            .map_err(NetlinkError::nl(format!(
                "add {} to {}",
                p.address, p.ifname
            )))?;
        h.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(NetlinkError::nl(format!("set {} up", p.ifname)))?;
        if let Some(gw) = p.gateway {
            h.route()
                .add(RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).build())
                .execute()
                .await
                .map_err(NetlinkError::nl(format!("add the default route via {gw}")))?;
        }
        Ok(())
    })
}
