//! IP address management: IPv4 subnets, the predefined pools user networks draw from (dockerd's
//! defaults, or `default-address-pools` / `bip` from daemon.json), and the per-network allocator
//! of container addresses. Pure: no I/O; the controller persists what it returns.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why an address or a subnet cannot be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// invalid CIDR address: {0}
    #[error("invalid CIDR address: {0}")]
    InvalidCidr(String),
    /// ParseAddr("{0}"): not an IPv4 address
    #[error("invalid address {0:?}: not an IPv4 address")]
    InvalidAddress(String),
    /// Pool overlaps with other one on this address space
    #[error("Pool overlaps with other one on this address space")]
    Overlap,
    /// could not find an available, non-overlapping IPv4 address pool among the defaults to
    /// assign to the network
    #[error("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network")]
    PoolsExhausted,
    /// no available IPv4 addresses on this network's address pools: {network}
    #[error("no available IPv4 addresses on this network's address pools: {network}")]
    AddressesExhausted {
        /// The network's name.
        network: String,
    },
    /// Address already in use
    #[error("Address already in use")]
    InUse,
    /// the address is not in the network's subnet or its ip-range
    #[error("requested address {ip} is not in the network's {range}")]
    OutOfRange {
        /// The address asked for.
        ip: Ipv4Addr,
        /// The subnet or ip-range it should be in.
        range: Subnet,
    },
    /// the gateway or the ip-range is not inside the subnet
    #[error("{what} {value} is not inside the subnet {subnet}")]
    NotInSubnet {
        /// "gateway" or "ip-range".
        what: &'static str,
        /// Its value.
        value: String,
        /// The subnet.
        subnet: Subnet,
    },
    /// a bad value in daemon.json's `default-address-pools` or `bip`
    #[error("{key}: {reason}")]
    Config {
        /// The daemon.json key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// An IPv4 subnet in CIDR form. The address is kept as given (`bip` keeps a host address), and
/// [`Subnet::network`] is the masked one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    /// The address as written.
    pub addr: Ipv4Addr,
    /// The prefix length, 0 to 32.
    pub prefix: u8,
}

impl Subnet {
    /// A subnet from its parts.
    ///
    /// # Errors
    /// [`IpamError::InvalidCidr`] for a prefix above 32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Subnet, IpamError> {
        if prefix > 32 {
            return Err(IpamError::InvalidCidr(format!("{addr}/{prefix}")));
        }
        Ok(Subnet { addr, prefix })
    }

    /// The netmask as a number.
    pub fn mask(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    /// The network address (host bits cleared).
    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The broadcast address (host bits set).
    pub fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// The same subnet with the host bits cleared.
    pub fn canonical(self) -> Subnet {
        Subnet {
            addr: self.network(),
            prefix: self.prefix,
        }
    }

    /// Whether `ip` is inside.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    /// Whether the two share any address.
    pub fn overlaps(self, other: Subnet) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }

    /// The dotted netmask, as `ip` prints it.
    pub fn netmask(self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask())
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = IpamError;

    fn from_str(s: &str) -> Result<Subnet, IpamError> {
        let bad = || IpamError::InvalidCidr(s.to_string());
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        // Go's ParseCIDR takes decimal digits only: no sign, no spaces.
        if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        Subnet::new(addr, prefix).map_err(|_| bad())
    }
}

impl TryFrom<String> for Subnet {
    type Error = IpamError;
    fn try_from(s: String) -> Result<Subnet, IpamError> {
        s.parse()
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

/// Parses an IPv4 address, naming it in the error.
///
/// # Errors
/// [`IpamError::InvalidAddress`].
pub fn parse_ip(s: &str) -> Result<Ipv4Addr, IpamError> {
    s.parse()
        .map_err(|_| IpamError::InvalidAddress(s.to_string()))
}

/// One entry of `default-address-pools`: carve subnets of `size` bits out of `base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSpec {
    /// The range to carve from.
    pub base: Subnet,
    /// The prefix length of each network's subnet.
    pub size: u8,
}

/// dockerd's predefined local pools (libnetwork ipamutils, 20.10): the first free /16 of
/// 172.17–172.31, then /20s of 192.168.0.0/16.
pub fn default_pools() -> Vec<PoolSpec> {
    [
        ("172.17.0.0/16", 16),
        ("172.18.0.0/16", 16),
        ("172.19.0.0/16", 16),
        ("172.20.0.0/14", 16),
        ("172.24.0.0/14", 16),
        ("172.28.0.0/14", 16),
        ("192.168.0.0/16", 20),
    ]
    .into_iter()
    .map(|(b, size)| PoolSpec {
        base: b.parse().expect("a constant CIDR"),
        size,
    })
    .collect()
}

/// Parses daemon.json's `default-address-pools`: an array of `{"base": CIDR, "size": N}`.
///
/// # Errors
/// [`IpamError::Config`] naming what is wrong; unknown keys in an entry are refused.
pub fn parse_default_address_pools(v: &serde_json::Value) -> Result<Vec<PoolSpec>, IpamError> {
    let err = |reason: String| IpamError::Config {
        key: "default-address-pools",
        reason,
    };
    let serde_json::Value::Array(items) = v else {
        return Err(err(
            "must be an array of {\"base\": CIDR, \"size\": N}".into()
        ));
    };
    let mut out = Vec::new();
    for item in items {
        let serde_json::Value::Object(m) = item else {
            return Err(err(format!("{item} is not an object")));
        };
        if let Some(k) = m.keys().find(|k| *k != "base" && *k != "size") {
            return Err(err(format!("unknown key {k:?} in a pool")));
        }
        let base = m
            .get("base")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| err(format!("{item}: base must be a CIDR string")))?;
        let base: Subnet = base.parse().map_err(|e: IpamError| err(e.to_string()))?;
        let size = m
            .get("size")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| err(format!("{item}: size must be a number")))?;
        if size > 32 || size < u64::from(base.prefix) {
            return Err(err(format!(
                "invalid pool size {size} for base {base}: it must be between {} and 32",
                base.prefix
            )));
        }
        out.push(PoolSpec {
            base: base.canonical(),
            size: size as u8,
        });
    }
    if out.is_empty() {
        return Err(err("must name at least one pool".into()));
    }
    Ok(out)
}

/// Parses daemon.json's `bip`: the default bridge's own address with the prefix length of its
/// subnet (`192.168.1.5/24`: bridge at .5, containers in 192.168.1.0/24).
///
/// # Errors
/// [`IpamError::Config`] for anything but an IPv4 CIDR whose address is a usable host address.
pub fn parse_bip(s: &str) -> Result<Subnet, IpamError> {
    let subnet: Subnet = s.parse().map_err(|e: IpamError| IpamError::Config {
        key: "bip",
        reason: e.to_string(),
    })?;
    if subnet.prefix > 30 || subnet.addr == subnet.network() || subnet.addr == subnet.broadcast() {
        return Err(IpamError::Config {
            key: "bip",
            reason: format!("{s} does not leave a host address for the bridge and containers"),
        });
    }
    Ok(subnet)
}

/// The first subnet the pools offer that overlaps none of `taken` (other networks, host routes,
/// nameservers as /32s), as dockerd's default IPAM picks it.
///
/// # Errors
/// [`IpamError::PoolsExhausted`].
pub fn next_free_subnet(pools: &[PoolSpec], taken: &[Subnet]) -> Result<Subnet, IpamError> {
    for pool in pools {
        let step = 1u64 << (32 - u32::from(pool.size));
        let start = u64::from(u32::from(pool.base.network()));
        let end = u64::from(u32::from(pool.base.broadcast()));
        let mut at = start;
        while at <= end {
            let candidate = Subnet {
                addr: Ipv4Addr::from(at as u32),
                prefix: pool.size,
            };
            if !taken.iter().any(|t| t.overlaps(candidate)) {
                return Ok(candidate);
            }
            at += step;
        }
    }
    Err(IpamError::PoolsExhausted)
}

/// The addresses of one network: its subnet, the range containers draw from, its gateway and
/// what is handed out. Serialized as part of the network's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// The network's subnet (canonical).
    pub subnet: Subnet,
    /// `--ip-range`: where dynamic addresses come from (fixed ones may be anywhere in the
    /// subnet, as dockerd allows).
    pub range: Option<Subnet>,
    /// The gateway (the bridge's address).
    pub gateway: Ipv4Addr,
    /// Addresses handed out to endpoints.
    pub allocated: BTreeSet<Ipv4Addr>,
}

impl Pool {
    /// A pool over `subnet` with an optional range and gateway (default: the first host
    /// address, as dockerd picks it).
    ///
    /// # Errors
    /// [`IpamError::NotInSubnet`] when the gateway or the range lies outside the subnet, or
    /// [`IpamError::InvalidCidr`] for a subnet with no host addresses.
    pub fn new(
        subnet: Subnet,
        range: Option<Subnet>,
        gateway: Option<Ipv4Addr>,
    ) -> Result<Pool, IpamError> {
        let subnet_c = subnet.canonical();
        if subnet_c.prefix > 30 {
            return Err(IpamError::InvalidCidr(subnet.to_string()));
        }
        if let Some(r) = range {
            if !subnet_c.contains(r.network()) || r.prefix < subnet_c.prefix {
                return Err(IpamError::NotInSubnet {
                    what: "ip-range",
                    value: r.to_string(),
                    subnet,
                });
            }
        }
        let gateway = match gateway {
            Some(g) => {
                if !subnet_c.contains(g) || g == subnet_c.network() || g == subnet_c.broadcast() {
                    return Err(IpamError::NotInSubnet {
                        what: "gateway",
                        value: g.to_string(),
                        subnet,
                    });
                }
                g
            }
            None => Ipv4Addr::from(u32::from(subnet_c.network()) + 1),
        };
        Ok(Pool {
            subnet: subnet_c,
            range: range.map(Subnet::canonical),
            gateway,
            allocated: BTreeSet::new(),
        })
    }

    /// Whether `ip` can ever be handed to an endpoint: inside the subnet, not its network or
    /// broadcast address, not the gateway.
    fn usable(&self, ip: Ipv4Addr) -> bool {
        self.subnet.contains(ip)
            && ip != self.subnet.network()
            && ip != self.subnet.broadcast()
            && ip != self.gateway
    }

    /// Hands out `fixed` when given (it must be free and in the subnet), else the lowest free
    /// address of the range (or the subnet), as dockerd's default IPAM does.
    ///
    /// # Errors
    /// [`IpamError::InUse`], [`IpamError::OutOfRange`] or [`IpamError::AddressesExhausted`].
    pub fn allocate(
        &mut self,
        network: &str,
        fixed: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, IpamError> {
        if let Some(ip) = fixed {
            if !self.subnet.contains(ip) {
                return Err(IpamError::OutOfRange {
                    ip,
                    range: self.subnet,
                });
            }
            if !self.usable(ip) || self.allocated.contains(&ip) {
                return Err(IpamError::InUse);
            }
            self.allocated.insert(ip);
            return Ok(ip);
        }
        let from = self.range.unwrap_or(self.subnet);
        let first = u32::from(from.network());
        let last = u32::from(from.broadcast());
        for n in first..=last {
            let ip = Ipv4Addr::from(n);
            if self.usable(ip) && !self.allocated.contains(&ip) {
                self.allocated.insert(ip);
                return Ok(ip);
            }
        }
        Err(IpamError::AddressesExhausted {
            network: network.to_string(),
        })
    }

    /// Gives `ip` back; false when it was not handed out.
    pub fn release(&mut self, ip: Ipv4Addr) -> bool {
        self.allocated.remove(&ip)
    }
}

/// The reason alone of a daemon.json error (the key is named by the caller).
pub fn config_reason(e: &IpamError) -> String {
    match e {
        IpamError::Config { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// The MAC address dockerd derives from an endpoint's IPv4 address: `02:42` and the four bytes.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// A MAC address as the API prints it (lowercase, colon-separated).
pub fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(x: &str) -> Subnet {
        x.parse().unwrap()
    }

    #[test]
    fn cidr_parsing_takes_what_go_takes() {
        assert_eq!(s("10.1.2.3/8").network(), Ipv4Addr::new(10, 0, 0, 0));
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0/8",
            "10.0.0.0/+8",
            "10.0.0.0/",
            "x/8",
        ] {
            assert_eq!(
                bad.parse::<Subnet>(),
                Err(IpamError::InvalidCidr(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn overlap_is_symmetric_and_by_prefix() {
        assert!(s("10.0.0.0/8").overlaps(s("10.5.0.0/16")));
        assert!(s("10.5.0.0/16").overlaps(s("10.0.0.0/8")));
        assert!(!s("10.0.0.0/16").overlaps(s("10.1.0.0/16")));
    }

    #[test]
    fn next_free_subnet_skips_taken_and_routes() {
        let pools = default_pools();
        assert_eq!(next_free_subnet(&pools, &[]).unwrap(), s("172.17.0.0/16"));
        let taken = [s("172.17.0.0/16"), s("172.18.5.0/24")];
        assert_eq!(
            next_free_subnet(&pools, &taken).unwrap(),
            s("172.19.0.0/16")
        );
        let custom =
            parse_default_address_pools(&serde_json::json!([{"base": "10.10.0.0/16", "size": 24}]))
                .unwrap();
        assert_eq!(
            next_free_subnet(&custom, &[s("10.10.0.0/24")]).unwrap(),
            s("10.10.1.0/24")
        );
        let tiny = [PoolSpec {
            base: s("10.0.0.0/24"),
            size: 24,
        }];
        assert_eq!(
            next_free_subnet(&tiny, &[s("10.0.0.0/8")]),
            Err(IpamError::PoolsExhausted)
        );
    }

    #[test]
    fn daemon_json_values_are_checked() {
        for bad in [
            serde_json::json!({"base": "10.0.0.0/8", "size": 24}),
            serde_json::json!([{"base": "10.0.0.0/8"}]),
            serde_json::json!([{"base": "10.0.0.0/16", "size": 8}]),
            serde_json::json!([{"base": "10.0.0.0/8", "size": 24, "x": 1}]),
            serde_json::json!([]),
        ] {
            assert!(parse_default_address_pools(&bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_bip("192.168.1.5/24").unwrap().addr,
            Ipv4Addr::new(192, 168, 1, 5)
        );
        assert!(parse_bip("192.168.1.0/24").is_err());
        assert!(parse_bip("192.168.1.1").is_err());
    }

    #[test]
    fn allocation_skips_gateway_and_honours_range_and_fixed() {
        let mut p = Pool::new(s("10.9.0.0/24"), Some(s("10.9.0.128/25")), None).unwrap();
        assert_eq!(p.gateway, Ipv4Addr::new(10, 9, 0, 1));
        assert_eq!(p.allocate("n", None).unwrap(), Ipv4Addr::new(10, 9, 0, 128));
        assert_eq!(
            p.allocate("n", Some(Ipv4Addr::new(10, 9, 0, 5))).unwrap(),
            Ipv4Addr::new(10, 9, 0, 5)
        );
        assert_eq!(
            p.allocate("n", Some(Ipv4Addr::new(10, 9, 0, 5))),
            Err(IpamError::InUse)
        );
        assert_eq!(
            p.allocate("n", Some(Ipv4Addr::new(10, 9, 0, 1))),
            Err(IpamError::InUse)
        );
        assert!(matches!(
            p.allocate("n", Some(Ipv4Addr::new(10, 8, 0, 5))),
            Err(IpamError::OutOfRange { .. })
        ));
        assert!(Pool::new(s("10.9.0.0/24"), None, Some(Ipv4Addr::new(10, 8, 0, 1))).is_err());
        assert!(Pool::new(s("10.9.0.0/24"), Some(s("10.8.0.0/25")), None).is_err());
        let mut small = Pool::new(s("10.9.0.0/30"), None, None).unwrap();
        assert_eq!(
            small.allocate("n", None).unwrap(),
            Ipv4Addr::new(10, 9, 0, 2)
        );
        assert!(matches!(
            small.allocate("n", None),
            Err(IpamError::AddressesExhausted { .. })
        ));
        assert!(small.release(Ipv4Addr::new(10, 9, 0, 2)));
        assert_eq!(
            small.allocate("n", None).unwrap(),
            Ipv4Addr::new(10, 9, 0, 2)
        );
    }

    #[test]
    fn mac_is_derived_from_the_ip() {
        assert_eq!(
            mac_string(mac_for(Ipv4Addr::new(172, 17, 0, 2))),
            "02:42:ac:11:00:02"
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Allocate,
        Fixed(u8),
        Release(u8),
        Restart,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => Just(Op::Allocate),
            2 => any::<u8>().prop_map(Op::Fixed),
            3 => any::<u8>().prop_map(Op::Release),
            1 => Just(Op::Restart),
        ]
    }

    proptest! {
        /// Against a model (the set of handed-out addresses): no address is handed out twice,
        /// every one is usable and in range, a release frees exactly that address, and a
        /// restart (serialize, deserialize) changes nothing.
        #[test]
        fn allocator_matches_its_model(
            prefix in 26u8..=29,
            ranged in any::<bool>(),
            ops in proptest::collection::vec(op(), 1..80),
        ) {
            let subnet = Subnet::new(Ipv4Addr::new(10, 1, 0, 0), prefix).unwrap();
            let range = ranged.then(|| Subnet::new(Ipv4Addr::new(10, 1, 0, 0), prefix + 1).unwrap());
            let mut pool = Pool::new(subnet, range, None).unwrap();
            let mut model: BTreeSet<Ipv4Addr> = BTreeSet::new();
            let dynamic = range.unwrap_or(subnet);
            let usable = |ip: Ipv4Addr| subnet.contains(ip) && ip != subnet.network()
                && ip != subnet.broadcast() && ip != Ipv4Addr::new(10, 1, 0, 1);
            for op in ops {
                match op {
                    Op::Allocate => {
                        let free = (u32::from(dynamic.network())..=u32::from(dynamic.broadcast()))
                            .map(Ipv4Addr::from)
                            .find(|ip| usable(*ip) && !model.contains(ip));
                        match (pool.allocate("n", None), free) {
                            (Ok(ip), Some(want)) => {
                                prop_assert_eq!(ip, want);
                                model.insert(ip);
                            }
                            (Err(IpamError::AddressesExhausted { .. }), None) => {}
                            (got, want) => prop_assert!(false, "{got:?} but model {want:?}"),
                        }
                    }
                    Op::Fixed(last) => {
                        let ip = Ipv4Addr::new(10, 1, 0, last);
                        let got = pool.allocate("n", Some(ip));
                        if !subnet.contains(ip) {
                            let out_of_range = matches!(got, Err(IpamError::OutOfRange { .. }));
                            prop_assert!(out_of_range);
                        } else if !usable(ip) || model.contains(&ip) {
                            prop_assert_eq!(got, Err(IpamError::InUse));
                        } else {
                            prop_assert_eq!(got, Ok(ip));
                            model.insert(ip);
                        }
                    }
                    Op::Release(last) => {
                        let ip = Ipv4Addr::new(10, 1, 0, last);
                        prop_assert_eq!(pool.release(ip), model.remove(&ip));
                    }
                    Op::Restart => {
                        let saved = serde_json::to_string(&pool).unwrap();
                        pool = serde_json::from_str(&saved).unwrap();
                    }
                }
                prop_assert_eq!(&pool.allocated, &model);
            }
        }
    }
}
