//! The `/etc/resolv.conf`, `/etc/hosts` and `/etc/hostname` a container gets, as dockerd 20.10
//! (libnetwork's sandbox_dns_unix.go, resolvconf and etchosts packages) writes them: pure
//! functions from the network mode and the run options to the files' texts.

use std::net::{IpAddr, Ipv4Addr};

/// The embedded resolver's address inside every container on a user-defined network.
pub const EMBEDDED_DNS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// How a container is networked, as far as its files are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileMode {
    /// `--network host`: the host's files, copied.
    Host,
    /// The default `bridge` network, `none` or `container:`-less private namespaces: no
    /// embedded resolver.
    Private,
    /// A user-defined network: the embedded resolver at 127.0.0.11.
    Embedded,
}

/// `--dns`, `--dns-search` and `--dns-option`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsOptions {
    /// `--dns`.
    pub servers: Vec<String>,
    /// `--dns-search`.
    pub search: Vec<String>,
    /// `--dns-option`.
    pub options: Vec<String>,
}

impl DnsOptions {
    fn any(&self) -> bool {
        !(self.servers.is_empty() && self.search.is_empty() && self.options.is_empty())
    }
}

/// A container's resolv.conf, and the servers its embedded resolver forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    /// The file's text.
    pub text: String,
    /// For [`FileMode::Embedded`]: the IPv4 servers queries for other names go to (dockerd's
    /// `ExtServers`).
    pub external: Vec<Ipv4Addr>,
}

/// Text before a `#`, line by line (resolvconf.getLines).
fn lines(content: &str) -> impl Iterator<Item = &str> {
    content
        .lines()
        .map(|l| l.split_once('#').map_or(l, |(before, _)| before))
}

/// The `nameserver` addresses of a resolv.conf, in order.
pub fn nameservers(content: &str) -> Vec<IpAddr> {
    lines(content)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some("nameserver")).then_some(())?;
            let ip = f.next()?.parse().ok()?;
            f.next().is_none().then_some(ip)
        })
        .collect()
}

/// The fields of the last line starting with `key` (`search`, `options`): the last one wins,
/// as in the resolver.
fn last_fields(content: &str, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    for l in lines(content) {
        let mut f = l.split_whitespace();
        if f.next() == Some(key) {
            out = f.map(str::to_string).collect();
        }
    }
    out
}

fn is_localhost(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 127,
        IpAddr::V6(v6) => v6.is_loopback(),
    }
}

/// resolvconf.FilterResolvDNS: the host's file without localhost nameservers (they mean nothing
/// in another namespace); with none left, Google's public servers.
fn filter_localhost(content: &str) -> String {
    let mut out = String::new();
    for line in content.split_inclusive('\n') {
        let mut f = line.split_whitespace();
        let drop = f.next() == Some("nameserver")
            && f.next()
                .and_then(|a| a.parse::<IpAddr>().ok())
                .is_some_and(|ip| is_localhost(&ip))
            && f.next().is_none();
        if !drop {
            out.push_str(line);
        }
    }
    if nameservers(&out).is_empty() {
        out.push_str(
            "\nnameserver 8.8.8.8\nnameserver 8.8.4.4\nnameserver 2001:4860:4860::8888\nnameserver 2001:4860:4860::8844",
        );
    }
    out
}

/// resolvconf.Build.
fn build(servers: &[String], search: &[String], options: &[String]) -> String {
    let mut out = String::new();
    if !search.is_empty() {
        let joined = search.join(" ");
        if joined.trim_matches(' ') != "." {
            out.push_str(&format!("search {joined}\n"));
        }
    }
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// The resolv.conf dockerd writes for a container, from the host's file (`host`: the content
/// of /etc/resolv.conf, or systemd-resolved's upstream file when the host's names only
/// 127.0.0.53, which the caller picks as dockerd does).
pub fn resolv_conf(host: &str, mode: FileMode, user: &DnsOptions) -> ResolvConf {
    if mode == FileMode::Host && !user.any() {
        return ResolvConf {
            text: host.to_string(),
            external: Vec::new(),
        };
    }
    // setupDNS: the user's settings over the host's, or the host's file filtered.
    let first = if user.any() {
        let pick = |mine: &[String], theirs: Vec<String>| {
            if mine.is_empty() {
                theirs
            } else {
                mine.to_vec()
            }
        };
        build(
            &pick(
                &user.servers,
                nameservers(host).iter().map(IpAddr::to_string).collect(),
            ),
            &pick(&user.search, last_fields(host, "search")),
            &pick(&user.options, last_fields(host, "options")),
        )
    } else {
        filter_localhost(host)
    };
    if mode != FileMode::Embedded {
        return ResolvConf {
            text: first,
            external: Vec::new(),
        };
    }
    // rebuildDNS: the embedded server first, the IPv6 servers kept (the resolver forwards IPv4
    // only), the search domains and the options, plus ndots:0 unless the user set ndots > 0.
    let all = nameservers(&first);
    let external = all
        .iter()
        .filter_map(|ip| match ip {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
        .collect();
    let mut servers = vec![EMBEDDED_DNS.to_string()];
    servers.extend(all.iter().filter(|ip| ip.is_ipv6()).map(IpAddr::to_string));
    let mut options = last_fields(&first, "options");
    let user_ndots = options.iter().any(|o| {
        o.contains("ndots")
            && o.split(':')
                .nth(1)
                .and_then(|n| n.parse::<i64>().ok())
                .is_some_and(|n| n > 0)
    });
    if !user_ndots {
        options.push("ndots:0".into());
    }
    ResolvConf {
        text: build(&servers, &last_fields(&first, "search"), &options),
        external,
    }
}

/// An `--add-host` entry: `name:ip`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraHost {
    /// The name(s), space-separated as written to the file.
    pub names: String,
    /// The address.
    pub ip: IpAddr,
}

/// Parses `--add-host` `name:ip` (`host-gateway` stands for `gateway`, the default bridge's
/// address, as dockerd resolves it).
///
/// # Errors
/// A message naming the bad entry, as dockerd words it.
pub fn parse_extra_host(s: &str, gateway: Option<Ipv4Addr>) -> Result<ExtraHost, String> {
    let Some((name, ip)) = s.split_once(':') else {
        return Err(format!("bad format for add-host: {s:?}"));
    };
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!("bad format for add-host: {s:?}"));
    }
    let ip = if ip == "host-gateway" {
        IpAddr::V4(gateway.ok_or_else(|| {
            format!("invalid IP address in add-host: {ip:?}: no default bridge gateway")
        })?)
    } else {
        ip.trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("invalid IP address in add-host: {ip:?}"))?
    };
    Ok(ExtraHost {
        names: name.to_string(),
        ip,
    })
}

/// The default entries every private /etc/hosts starts with (etchosts.defaultContent).
const DEFAULT_HOSTS: &[(&str, &str)] = &[
    ("127.0.0.1", "localhost"),
    ("::1", "localhost ip6-localhost ip6-loopback"),
    ("fe00::0", "ip6-localnet"),
    ("ff00::0", "ip6-mcastprefix"),
    ("ff02::1", "ip6-allnodes"),
    ("ff02::2", "ip6-allrouters"),
];

/// The /etc/hosts dockerd writes: for [`FileMode::Host`] the host's file (`host`) as it is;
/// otherwise the defaults, the `--add-host` entries and, when the container has an address,
/// its own line (`ip\tfqdn host` with the domain name, `ip\thostname` without).
pub fn hosts_file(
    mode: FileMode,
    host: &str,
    ip: Option<Ipv4Addr>,
    hostname: &str,
    domainname: &str,
    extra: &[ExtraHost],
) -> String {
    if mode == FileMode::Host {
        return host.to_string();
    }
    let mut out = String::new();
    for (ip, names) in DEFAULT_HOSTS {
        out.push_str(&format!("{ip}\t{names}\n"));
    }
    for e in extra {
        out.push_str(&format!("{}\t{}\n", e.ip, e.names));
    }
    if let Some(ip) = ip {
        let fqdn = if domainname.is_empty() {
            hostname.to_string()
        } else {
            format!("{hostname}.{domainname}")
        };
        let names = match fqdn.split_once('.') {
            Some((short, _)) => format!("{fqdn} {short}"),
            None => fqdn,
        };
        out.push_str(&format!("{ip}\t{names}\n"));
    }
    out
}

/// The /etc/hostname dockerd writes: the host name alone (the domain name goes to the UTS
/// namespace's domainname, not here).
pub fn hostname_file(hostname: &str) -> String {
    format!("{hostname}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "# from dhcp\nsearch example.com lan\nnameserver 127.0.0.53\nnameserver 10.0.0.2\noptions edns0 trust-ad\n";

    #[test]
    fn private_mode_filters_localhost_servers() {
        let r = resolv_conf(HOST, FileMode::Private, &DnsOptions::default());
        assert_eq!(
            r.text,
            "# from dhcp\nsearch example.com lan\nnameserver 10.0.0.2\noptions edns0 trust-ad\n"
        );
        let only_local = resolv_conf(
            "nameserver 127.0.0.1\n",
            FileMode::Private,
            &DnsOptions::default(),
        );
        assert_eq!(
            only_local.text,
            "\nnameserver 8.8.8.8\nnameserver 8.8.4.4\nnameserver 2001:4860:4860::8888\nnameserver 2001:4860:4860::8844"
        );
    }

    #[test]
    fn embedded_mode_points_at_the_resolver_and_keeps_search_and_options() {
        let r = resolv_conf(HOST, FileMode::Embedded, &DnsOptions::default());
        assert_eq!(
            r.text,
            "search example.com lan\nnameserver 127.0.0.11\noptions edns0 trust-ad ndots:0\n"
        );
        assert_eq!(r.external, vec![Ipv4Addr::new(10, 0, 0, 2)]);
        let user = DnsOptions {
            servers: vec!["1.1.1.1".into()],
            search: vec![],
            options: vec!["ndots:3".into()],
        };
        let r = resolv_conf(HOST, FileMode::Embedded, &user);
        assert_eq!(
            r.text,
            "search example.com lan\nnameserver 127.0.0.11\noptions ndots:3\n"
        );
        assert_eq!(r.external, vec![Ipv4Addr::new(1, 1, 1, 1)]);
    }

    #[test]
    fn host_mode_copies_unless_options_are_given() {
        assert_eq!(
            resolv_conf(HOST, FileMode::Host, &DnsOptions::default()).text,
            HOST
        );
        let user = DnsOptions {
            search: vec![".".into()],
            ..DnsOptions::default()
        };
        assert_eq!(
            resolv_conf(HOST, FileMode::Host, &user).text,
            "nameserver 127.0.0.53\nnameserver 10.0.0.2\noptions edns0 trust-ad\n"
        );
    }

    #[test]
    fn hosts_file_orders_defaults_extra_then_own() {
        let extra = [parse_extra_host("db:10.1.1.1", None).unwrap()];
        let text = hosts_file(
            FileMode::Embedded,
            "",
            Some(Ipv4Addr::new(172, 18, 0, 2)),
            "web",
            "example.org",
            &extra,
        );
        assert!(
            text.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
        );
        assert!(text
            .ends_with("ff02::2\tip6-allrouters\n10.1.1.1\tdb\n172.18.0.2\tweb.example.org web\n"));
        assert!(parse_extra_host("db", None).is_err());
        assert!(parse_extra_host("db:nope", None).is_err());
        assert_eq!(
            parse_extra_host("gw:host-gateway", Some(Ipv4Addr::new(172, 17, 0, 1)))
                .unwrap()
                .ip,
            IpAddr::V4(Ipv4Addr::new(172, 17, 0, 1))
        );
        assert_eq!(hostname_file("web"), "web\n");
    }
}
