//! Device cgroup rules: the spec's `linux.resources.devices` plus the runtime's extra allows,
//! validated once into [`Rule`]s that the v1 driver renders for `devices.allow`/`devices.deny`
//! and the v2 driver compiles to an eBPF filter. Both share one meaning: rules apply in order and
//! the last rule matching an access decides; nothing matching means allowed (a new v1 cgroup
//! starts from its parent's allow-all), so lists start with `deny a *:* rwm`.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use super::CgroupError;

/// `mknod` access bit, as in the kernel's `BPF_DEVCG_ACC_MKNOD`.
pub(super) const ACC_MKNOD: u32 = 1;
/// `read` access bit (`BPF_DEVCG_ACC_READ`).
pub(super) const ACC_READ: u32 = 2;
/// `write` access bit (`BPF_DEVCG_ACC_WRITE`).
pub(super) const ACC_WRITE: u32 = 4;
/// All access bits.
pub(super) const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// Which devices a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Every device (`a`).
    All,
    /// Character devices (`c`, and `u` which is an unbuffered character device).
    Char,
    /// Block devices (`b`).
    Block,
}

/// One validated device rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rule {
    /// Allow (`true`) or deny.
    pub allow: bool,
    /// Device kind.
    pub kind: Kind,
    /// Major number; `None` is `*`.
    pub major: Option<u32>,
    /// Minor number; `None` is `*`.
    pub minor: Option<u32>,
    /// `ACC_*` bits, never zero.
    pub access: u32,
}

impl Rule {
    /// Validates a spec rule. An absent type is `a`, an absent or empty access is `rwm` (as in
    /// runc and crun), a negative major/minor is `*`. An `a` rule covers every device with every
    /// access whatever else it says, which is how cgroup v1 reads it.
    pub fn from_spec(spec: &LinuxDeviceCgroup) -> Result<Self, CgroupError> {
        let invalid = |reason| CgroupError::InvalidDeviceRule {
            rule: spec.to_string(),
            reason,
        };
        let kind = match spec.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => Kind::All,
            LinuxDeviceType::C | LinuxDeviceType::U => Kind::Char,
            LinuxDeviceType::B => Kind::Block,
            LinuxDeviceType::P => {
                return Err(invalid("fifos are not subject to the device cgroup"))
            }
        };
        let number = |n: Option<i64>| -> Result<Option<u32>, CgroupError> {
            match n {
                None => Ok(None),
                Some(n) if n < 0 => Ok(None),
                // The eBPF filter compares against a sign-extended 32-bit immediate.
                Some(n) => i32::try_from(n)
                    .map(|n| Some(n.unsigned_abs()))
                    .map_err(|_| invalid("major/minor number out of range")),
            }
        };
        let mut access = 0;
        for c in spec.access().as_deref().unwrap_or("").chars() {
            access |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => return Err(invalid("access may only contain r, w and m")),
            };
        }
        if access == 0 {
            access = ACC_ALL;
        }
        if kind == Kind::All {
            return Ok(Self {
                allow: spec.allow(),
                kind,
                major: None,
                minor: None,
                access: ACC_ALL,
            });
        }
        Ok(Self {
            allow: spec.allow(),
            kind,
            major: number(spec.major())?,
            minor: number(spec.minor())?,
            access,
        })
    }

    /// Whether this rule covers every device and every access, overriding all rules before it.
    pub fn is_catch_all(&self) -> bool {
        self.kind == Kind::All
    }

    /// The line written to `devices.allow`/`devices.deny` (`c 1:3 rw`, `a`).
    pub fn render(&self) -> String {
        let kind = match self.kind {
            Kind::All => return "a".to_owned(),
            Kind::Char => 'c',
            Kind::Block => 'b',
        };
        let num = |n: Option<u32>| n.map_or_else(|| "*".to_owned(), |n| n.to_string());
        let mut access = String::new();
        for (bit, c) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
            if self.access & bit != 0 {
                access.push(c);
            }
        }
        format!("{kind} {}:{} {access}", num(self.major), num(self.minor))
    }

    /// Whether this rule decides a request for `kind` device `major:minor` with `access` bits:
    /// an allow rule when it grants every requested bit, a deny rule when it forbids any of them.
    #[cfg(test)]
    pub fn matches(&self, kind: Kind, major: u32, minor: u32, access: u32) -> bool {
        (self.kind == Kind::All || self.kind == kind)
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
            && if self.allow {
                access & !self.access == 0
            } else {
                access & self.access != 0
            }
    }
}

/// The spec's rules followed by the runtime's extra allows; empty when neither says anything,
/// in which case the device cgroup is left alone.
pub(super) fn combined(
    resources: Option<&LinuxResources>,
    extra_allows: &[LinuxDeviceCgroup],
) -> Result<Vec<Rule>, CgroupError> {
    resources
        .and_then(|r| r.devices().as_ref())
        .into_iter()
        .flatten()
        .chain(extra_allows)
        .map(Rule::from_spec)
        .collect()
}

/// Reference evaluation of a rule list (last match wins, default allow), used to check the
/// compiled filter.
#[cfg(test)]
pub(super) fn evaluate(rules: &[Rule], kind: Kind, major: u32, minor: u32, access: u32) -> bool {
    rules
        .iter()
        .rev()
        .find(|r| r.matches(kind, major, minor, access))
        .is_none_or(|r| r.allow)
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    use super::*;

    fn spec(
        allow: bool,
        typ: Option<LinuxDeviceType>,
        major: Option<i64>,
        minor: Option<i64>,
        access: Option<&str>,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default().allow(allow);
        if let Some(t) = typ {
            b = b.typ(t);
        }
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        if let Some(a) = access {
            b = b.access(a);
        }
        b.build().unwrap()
    }

    #[test]
    fn rules_render_like_devices_allow_lines() {
        let cases = [
            (spec(false, None, None, None, Some("rwm")), "a"),
            (
                spec(true, Some(LinuxDeviceType::C), Some(1), Some(3), Some("rw")),
                "c 1:3 rw",
            ),
            (
                spec(true, Some(LinuxDeviceType::B), Some(8), None, Some("mr")),
                "b 8:* rm",
            ),
            (
                spec(true, Some(LinuxDeviceType::C), None, Some(-1), None),
                "c *:* rwm",
            ),
            (
                spec(true, Some(LinuxDeviceType::U), Some(5), Some(1), Some("")),
                "c 5:1 rwm",
            ),
        ];
        for (s, want) in cases {
            assert_eq!(Rule::from_spec(&s).unwrap().render(), want, "{s}");
        }
    }

    #[test]
    fn bad_rules_are_refused() {
        for s in [
            spec(true, Some(LinuxDeviceType::P), None, None, None),
            spec(true, Some(LinuxDeviceType::C), Some(1), Some(3), Some("rx")),
            spec(true, Some(LinuxDeviceType::C), Some(1 << 40), Some(3), None),
        ] {
            assert!(
                matches!(
                    Rule::from_spec(&s),
                    Err(CgroupError::InvalidDeviceRule { .. })
                ),
                "{s}"
            );
        }
    }

    #[test]
    fn extra_allows_come_after_the_spec_rules() {
        let res = oci_spec::runtime::LinuxResourcesBuilder::default()
            .devices(vec![spec(false, None, None, None, None)])
            .build()
            .unwrap();
        let extra = [spec(
            true,
            Some(LinuxDeviceType::C),
            Some(1),
            Some(3),
            Some("rwm"),
        )];
        let rules = combined(Some(&res), &extra).unwrap();
        assert_eq!(
            rules.iter().map(Rule::render).collect::<Vec<_>>(),
            ["a", "c 1:3 rwm"]
        );
        assert!(combined(None, &[]).unwrap().is_empty());
    }

    #[test]
    fn last_match_wins() {
        let rules = [
            Rule::from_spec(&spec(false, None, None, None, None)).unwrap(),
            Rule::from_spec(&spec(
                true,
                Some(LinuxDeviceType::C),
                Some(1),
                None,
                Some("rw"),
            ))
            .unwrap(),
            Rule::from_spec(&spec(
                false,
                Some(LinuxDeviceType::C),
                Some(1),
                Some(3),
                Some("w"),
            ))
            .unwrap(),
        ];
        assert!(evaluate(&rules, Kind::Char, 1, 5, ACC_READ | ACC_WRITE));
        assert!(evaluate(&rules, Kind::Char, 1, 3, ACC_READ));
        assert!(!evaluate(&rules, Kind::Char, 1, 3, ACC_WRITE));
        assert!(!evaluate(&rules, Kind::Char, 1, 5, ACC_MKNOD));
        assert!(!evaluate(&rules, Kind::Block, 8, 0, ACC_READ));
    }
}
