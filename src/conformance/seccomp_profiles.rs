//! Seccomp profiles that engines in use write into `linux.seccomp`, for the cases (and tests)
//! that run a container under one.

use serde_json::Value;

/// moby's default profile as dockerd writes it into config.json on amd64 with Docker's default
/// capabilities (the integration tests' fixture; see `tests/seccomp.rs` for how it was made).
const DOCKER_DEFAULT: &str = include_str!("../../tests/fixtures/docker-default-seccomp.json");

/// The names moby's default profile lists today and Docker 19.03's did not (moby v19.03.15
/// `profiles/seccomp/default.json`, compared name by name). The default action of both is
/// SCMP_ACT_ERRNO (EPERM), so under the older profile each of these is refused with EPERM,
/// clone3 included (19.03 had no ENOSYS rule for it). Older Kubernetes default profiles lack the
/// same names.
pub const NEWER_THAN_DOCKER_19_03: &[&str] = &[
    "cachestat",
    "clock_adjtime",
    "clock_adjtime64",
    "clone3",
    "close_range",
    "epoll_pwait2",
    "faccessat2",
    "fchmodat2",
    "futex_requeue",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "getxattrat",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "listmount",
    "listxattrat",
    "map_shadow_stack",
    "membarrier",
    "memfd_secret",
    "mseal",
    "openat2",
    "pidfd_open",
    "pidfd_send_signal",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "process_mrelease",
    "removexattrat",
    "riscv_hwprobe",
    "rseq",
    "setxattrat",
    "statmount",
    "uretprobe",
];

/// Docker's current default profile for amd64, as dockerd writes it.
#[must_use]
pub fn docker_default() -> Value {
    serde_json::from_str(DOCKER_DEFAULT)
        .expect("the embedded profile is JSON (a compile-time constant the unit tests parse)")
}

/// Docker 19.03's default profile for amd64: the current one without
/// [`NEWER_THAN_DOCKER_19_03`].
#[must_use]
pub fn docker_19_03() -> Value {
    let mut profile = docker_default();
    if let Some(rules) = profile["syscalls"].as_array_mut() {
        for rule in rules.iter_mut() {
            if let Some(names) = rule["names"].as_array_mut() {
                names.retain(|name| {
                    !NEWER_THAN_DOCKER_19_03.contains(&name.as_str().unwrap_or_default())
                });
            }
        }
        rules.retain(|rule| rule["names"].as_array().is_some_and(|n| !n.is_empty()));
    }
    profile
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(profile: &Value) -> Vec<String> {
        profile["syscalls"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|rule| rule["names"].as_array().into_iter().flatten())
            .filter_map(|name| name.as_str().map(str::to_owned))
            .collect()
    }

    #[test]
    fn the_docker_19_03_profile_lists_none_of_the_newer_syscalls_and_compiles() {
        let current = docker_default();
        assert_eq!(current["defaultAction"], "SCMP_ACT_ERRNO");
        let now = listed(&current);
        for name in NEWER_THAN_DOCKER_19_03 {
            assert!(
                now.iter().any(|n| n == name),
                "{name} is not in today's profile"
            );
        }
        let old = docker_19_03();
        assert_eq!(old["defaultAction"], "SCMP_ACT_ERRNO");
        let then = listed(&old);
        for name in NEWER_THAN_DOCKER_19_03 {
            assert!(!then.iter().any(|n| n == name), "{name} is still listed");
        }
        // What any program (and a runtime's last steps) needs is there.
        for name in [
            "execve",
            "fcntl",
            "setgroups",
            "capset",
            "rt_sigaction",
            "clone",
        ] {
            assert!(then.iter().any(|n| n == name), "{name} is missing");
        }
        let spec: oci_spec::runtime::LinuxSeccomp =
            serde_json::from_value(old).expect("a linux.seccomp object");
        crate::runtime::seccomp::compile(&spec).expect("the older profile compiles");
    }
}
