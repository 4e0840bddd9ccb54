//! refengd's packet filter rules: masquerade of traffic leaving a bridge network, forwarding
//! policy (internal networks isolated), and DNAT of published ports, in chains of refengd's own.
//!
//! Through the `iptables` commands (the Debian alternative, iptables-nft on Debian 12): this
//! host and the VM guest have them but no `nft` binary, and dockerd 20.10 (the peer we are
//! compared with) programs the same tables with the same tool, so both can run side by side in
//! one namespace without one tool's rules hiding the other's. The whole rule set is derived
//! from the networks' state and loaded atomically per table with `iptables-restore --noflush`
//! (declaring a chain flushes it), so a restart after `kill -9` restores the rules without
//! duplicates; only the jumps from the built-in chains are checked (`-C`) and added one by one.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use super::ipam::Subnet;
use super::ports::{PortMap, Protocol};

/// The DNAT chain (nat table), entered from PREROUTING and OUTPUT for local destinations.
pub const CHAIN_DNAT: &str = "REFENG";
/// The masquerade chain (nat table), entered from POSTROUTING.
pub const CHAIN_MASQ: &str = "REFENG-POSTROUTING";
/// The forwarding chain (filter table), entered first from FORWARD.
pub const CHAIN_FORWARD: &str = "REFENG-FORWARD";

/// A rule set change that failed.
#[derive(Debug, thiserror::Error)]
pub enum NatError {
    /// cannot run {program}: {source}
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// {program} {args} failed: {stderr}
    #[error("{program} {args} failed: {stderr}")]
    Failed {
        /// The program.
        program: &'static str,
        /// Its arguments.
        args: String,
        /// What it said.
        stderr: String,
    },
}

/// One bridge network's part of the rule set.
#[derive(Debug, Clone)]
pub struct BridgeRules {
    /// The bridge device.
    pub bridge: String,
    /// The subnet.
    pub subnet: Subnet,
    /// Internal: no traffic in or out of the bridge.
    pub internal: bool,
    /// Masquerade outgoing traffic (dockerd's `enable_ip_masquerade`, default true).
    pub masquerade: bool,
    /// Published ports of the network's endpoints: (container address, mapping).
    pub published: Vec<(Ipv4Addr, PortMap)>,
}

const IPTABLES: &str = "iptables";
const RESTORE: &str = "iptables-restore";

fn iptables(args: &[&str]) -> Result<bool, NatError> {
    let out = Command::new(IPTABLES)
        .arg("-w")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NatError::Spawn {
            program: IPTABLES,
            source,
        })?;
    Ok(out.status.success())
}

fn iptables_ok(args: &[&str]) -> Result<(), NatError> {
    let out = Command::new(IPTABLES)
        .arg("-w")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NatError::Spawn {
            program: IPTABLES,
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NatError::Failed {
            program: IPTABLES,
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The jumps from the built-in chains into ours: (table, chain, rule).
fn jumps() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    vec![
        (
            "nat",
            "PREROUTING",
            vec!["-m", "addrtype", "--dst-type", "LOCAL", "-j", CHAIN_DNAT],
        ),
        (
            "nat",
            "OUTPUT",
            vec![
                "!",
                "-d",
                "127.0.0.0/8",
                "-m",
                "addrtype",
                "--dst-type",
                "LOCAL",
                "-j",
                CHAIN_DNAT,
            ],
        ),
        ("nat", "POSTROUTING", vec!["-j", CHAIN_MASQ]),
        ("filter", "FORWARD", vec!["-j", CHAIN_FORWARD]),
    ]
}

/// The iptables-restore input for our chains, from the networks' state.
pub fn render(nets: &[BridgeRules]) -> String {
    let mut nat = format!("*nat\n:{CHAIN_DNAT} - [0:0]\n:{CHAIN_MASQ} - [0:0]\n");
    let mut filter = format!("*filter\n:{CHAIN_FORWARD} - [0:0]\n");
    for n in nets {
        let br = &n.bridge;
        let sub = n.subnet.canonical();
        if n.internal {
            filter.push_str(&format!("-A {CHAIN_FORWARD} -i {br} ! -o {br} -j DROP\n"));
            filter.push_str(&format!("-A {CHAIN_FORWARD} -o {br} ! -i {br} -j DROP\n"));
            filter.push_str(&format!("-A {CHAIN_FORWARD} -i {br} -o {br} -j ACCEPT\n"));
            continue;
        }
        if n.masquerade {
            nat.push_str(&format!(
                "-A {CHAIN_MASQ} -s {sub} ! -o {br} -j MASQUERADE\n"
            ));
        }
        // Traffic between containers of a bridge is not NATed back to itself.
        nat.push_str(&format!("-A {CHAIN_DNAT} -i {br} -j RETURN\n"));
        filter.push_str(&format!(
            "-A {CHAIN_FORWARD} -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
        ));
        for (ip, p) in &n.published {
            let proto = p.protocol.name();
            let host = match p.host_ip {
                Some(h) if !h.is_unspecified() => format!(" -d {h}/32"),
                _ => String::new(),
            };
            nat.push_str(&format!(
                "-A {CHAIN_DNAT}{host} ! -i {br} -p {proto} -m {proto} --dport {} -j DNAT --to-destination {ip}:{}\n",
                p.host_port, p.container_port
            ));
            filter.push_str(&format!(
                "-A {CHAIN_FORWARD} -d {ip}/32 ! -i {br} -o {br} -p {proto} -m {proto} --dport {} -j ACCEPT\n",
                p.container_port
            ));
            // A container reaching its own published port through the host (hairpin).
            nat.push_str(&format!(
                "-A {CHAIN_MASQ} -s {ip}/32 -d {ip}/32 -p {proto} -m {proto} --dport {} -j MASQUERADE\n",
                p.container_port
            ));
        }
        filter.push_str(&format!("-A {CHAIN_FORWARD} -i {br} ! -o {br} -j ACCEPT\n"));
        filter.push_str(&format!("-A {CHAIN_FORWARD} -i {br} -o {br} -j ACCEPT\n"));
    }
    nat.push_str("COMMIT\n");
    filter.push_str("COMMIT\n");
    nat + &filter
}

/// Loads the rule set for `nets`: our chains are created or flushed and refilled atomically per
/// table, then (with `check_jumps`: at start and on the first change) the jumps into them are
/// added where missing, and forwarding is switched on. Checking the four jumps costs four
/// iptables runs, which a connect need not pay once they are known to be in place.
///
/// # Errors
/// When iptables is missing or refuses the rules.
pub fn apply(nets: &[BridgeRules], check_jumps: bool) -> Result<(), NatError> {
    let text = render(nets);
    let mut child = Command::new(RESTORE)
        .args(["-w", "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NatError::Spawn {
            program: RESTORE,
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|source| NatError::Spawn {
                program: RESTORE,
                source,
            })?;
    }
    let out = child.wait_with_output().map_err(|source| NatError::Spawn {
        program: RESTORE,
        source,
    })?;
    if !out.status.success() {
        return Err(NatError::Failed {
            program: RESTORE,
            args: format!("--noflush <<{text}"),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    for (table, chain, rule) in jumps().into_iter().filter(|_| check_jumps) {
        let mut check = vec!["-t", table, "-C", chain];
        check.extend(&rule);
        if !iptables(&check)? {
            let mut insert = vec!["-t", table, "-I", chain, "1"];
            insert.extend(&rule);
            iptables_ok(&insert)?;
        }
    }
    if nets.iter().any(|n| !n.internal) {
        // dockerd turns forwarding on as well; the kernel default is off.
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1\n");
    }
    Ok(())
}

/// Removes the jumps and our chains (when the last network goes). Missing ones are fine.
///
/// # Errors
/// When iptables cannot be run.
pub fn remove() -> Result<(), NatError> {
    for (table, chain, rule) in jumps() {
        let mut check = vec!["-t", table, "-C", chain];
        check.extend(&rule);
        while iptables(&check)? {
            let mut del = vec!["-t", table, "-D", chain];
            del.extend(&rule);
            iptables_ok(&del)?;
        }
    }
    for (table, chain) in [
        ("nat", CHAIN_DNAT),
        ("nat", CHAIN_MASQ),
        ("filter", CHAIN_FORWARD),
    ] {
        if iptables(&["-t", table, "-F", chain])? {
            iptables_ok(&["-t", table, "-X", chain])?;
        }
    }
    Ok(())
}

/// Whether any of our chains exists in `table` (for tests and diagnostics).
///
/// # Errors
/// When iptables cannot be run.
pub fn chains_present() -> Result<bool, NatError> {
    Ok(iptables(&["-t", "nat", "-n", "-L", CHAIN_DNAT])?
        || iptables(&["-t", "nat", "-n", "-L", CHAIN_MASQ])?
        || iptables(&["-t", "filter", "-n", "-L", CHAIN_FORWARD])?)
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_follow_the_state() {
        let nets = [
            BridgeRules {
                bridge: "br-0123456789ab".into(),
                subnet: "172.18.0.0/16".parse().unwrap(),
                internal: false,
                masquerade: true,
                published: vec![(
                    Ipv4Addr::new(172, 18, 0, 2),
                    PortMap {
                        protocol: Protocol::Tcp,
                        container_port: 80,
                        host_ip: None,
                        host_port: 8080,
                    },
                )],
            },
            BridgeRules {
                bridge: "br-internal".into(),
                subnet: "172.19.0.0/16".parse().unwrap(),
                internal: true,
                masquerade: true,
                published: vec![],
            },
        ];
        let text = render(&nets);
        assert!(text.contains(
            "-A REFENG-POSTROUTING -s 172.18.0.0/16 ! -o br-0123456789ab -j MASQUERADE\n"
        ));
        assert!(text.contains("-A REFENG ! -i br-0123456789ab -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.18.0.2:80\n"));
        assert!(text.contains("-A REFENG-FORWARD -i br-internal ! -o br-internal -j DROP\n"));
        assert!(
            !text.contains("-s 172.19.0.0/16"),
            "an internal network is not masqueraded"
        );
        assert_eq!(text.matches("COMMIT\n").count(), 2);
    }
}
