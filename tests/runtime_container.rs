//! Real containers, checked from inside: each test builds a busybox bundle, runs it with the
//! runtime under test (refeng-runc, or `$REFENG_RUNTIME` such as runc) and asserts what the
//! container's process observes. Needs root. Where another runtime departs from what refeng-runc
//! guarantees (or a case could change the host under it), the test says so on stderr.
#![allow(clippy::print_stderr)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{IoSliceMut, Read};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{
    cap_mask, is_refeng, require_refeng, run, runtime_bin, status_field, wait_until, Bundle,
    CapSets, DEFAULT_TIMEOUT,
};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

/// Lines of `text` as `first word -> rest`.
fn keyed(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(char::is_whitespace))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

/// /proc/self/mounts of the container as `target -> (fstype, options)`.
fn mounts_of(text: &str) -> BTreeMap<String, (String, Vec<String>)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() >= 4).then(|| {
                (
                    f[1].to_owned(),
                    (
                        f[2].to_owned(),
                        f[3].split(',').map(str::to_owned).collect(),
                    ),
                )
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Namespaces

#[test]
fn each_configured_namespace_differs_from_the_host_and_the_process_is_pid_1() {
    let names = ["pid", "net", "ipc", "uts", "mnt", "cgroup"];
    let (code, out, err) = run(Bundle::new("ns")
        .namespaces(&["pid", "network", "ipc", "uts", "mount", "cgroup"])
        .sh("for n in pid net ipc uts mnt cgroup user; do echo \"$n $(readlink /proc/self/ns/$n)\"; done; echo \"self $$\"; echo \"comm1 $(cat /proc/1/comm)\""));
    assert_eq!(code, 0, "stderr: {err}");
    let seen = keyed(&out);
    for n in names {
        let host = fs::read_link(format!("/proc/self/ns/{n}")).expect("host ns link");
        let inside = seen
            .get(n)
            .unwrap_or_else(|| panic!("no {n} line in {out}"));
        assert!(inside.starts_with(&format!("{n}:[")), "{n}: {inside}");
        assert_ne!(Path::new(inside), host, "{n} namespace is the host's");
    }
    // Not configured: stays the host's.
    let host_user = fs::read_link("/proc/self/ns/user").expect("host user ns");
    assert_eq!(
        Path::new(&seen["user"]),
        host_user,
        "user namespace was not asked for"
    );
    assert_eq!(
        seen["self"], "1",
        "the container process is pid 1 of its namespace"
    );
    assert_eq!(seen["comm1"], "sh");
}

#[test]
fn user_namespace_maps_uids_and_gids() {
    let (code, out, err) = run(Bundle::new("userns")
        .add_namespace(json!({ "type": "user" }))
        .id_mappings(0, 100_000, 65_536)
        .sh("echo uid_map $(cat /proc/self/uid_map); echo gid_map $(cat /proc/self/gid_map); echo uid $(id -u); echo ns $(readlink /proc/self/ns/user)"));
    assert_eq!(code, 0, "stderr: {err}");
    let seen = keyed(&out);
    assert_eq!(seen["uid_map"], "0 100000 65536");
    assert_eq!(seen["gid_map"], "0 100000 65536");
    assert_eq!(seen["uid"], "0");
    let host = fs::read_link("/proc/self/ns/user").expect("host user ns");
    assert_ne!(Path::new(&seen["ns"]), host);
}

#[test]
fn time_namespace_applies_boottime_offset() {
    require_refeng!("runc 1.1 and crun 1.8 have no time namespace (runtime-spec 1.2)");
    let ten_days = 10 * 24 * 3600;
    let mut b = Bundle::new("timens").add_namespace(json!({ "type": "time" }));
    b.spec_mut()["linux"]["timeOffsets"] =
        json!({ "boottime": { "secs": ten_days, "nanosecs": 0 } });
    let (code, out, err) = run(b.sh("cut -d. -f1 /proc/uptime"));
    assert_eq!(code, 0, "stderr: {err}");
    let inside: u64 = out.trim().parse().expect("uptime seconds");
    let host: u64 = fs::read_to_string("/proc/uptime")
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        inside >= host + ten_days as u64 - 5,
        "uptime {inside} vs host {host}"
    );
}

// ---------------------------------------------------------------------------------------------
// Root filesystem

#[test]
fn default_mounts_have_the_right_types_and_options() {
    let (code, out, err) = run(Bundle::new("mounts").args(&["cat", "/proc/self/mounts"]));
    assert_eq!(code, 0, "stderr: {err}");
    let m = mounts_of(&out);
    let expect = [
        ("/proc", "proc"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
        ("/sys", "sysfs"),
    ];
    for (target, fstype) in expect {
        let (t, _) = m
            .get(target)
            .unwrap_or_else(|| panic!("{target} not mounted: {out}"));
        assert_eq!(t, fstype, "{target}");
    }
    assert!(
        m["/sys"].1.contains(&"ro".to_owned()),
        "/sys is ro: {:?}",
        m["/sys"]
    );
    assert!(
        m["/"].1.contains(&"ro".to_owned()),
        "readonly root: {:?}",
        m["/"]
    );
    for opt in ["nosuid", "noexec", "nodev"] {
        assert!(
            m["/dev/shm"].1.contains(&opt.to_owned()),
            "/dev/shm {opt}: {:?}",
            m["/dev/shm"]
        );
    }
}

#[test]
fn default_devices_and_dev_symlinks_exist() {
    let (code, out, err) = run(Bundle::new("devs").sh(
        "for d in null zero full random urandom tty; do stat -c '%n %F %t %T' /dev/$d; done; \
         for l in fd stdin stdout stderr ptmx; do echo \"/dev/$l -> $(readlink /dev/$l)\"; done; \
         echo hello > /dev/null && echo null-writable",
    ));
    assert_eq!(code, 0, "stderr: {err}");
    for (dev, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let line = format!("/dev/{dev} character special file {major:x} {minor:x}");
        assert!(out.contains(&line), "missing {line:?} in {out}");
    }
    for link in [
        "/dev/fd -> /proc/self/fd",
        "/dev/stdin -> /proc/self/fd/0",
        "/dev/stdout -> /proc/self/fd/1",
        "/dev/stderr -> /proc/self/fd/2",
        "/dev/ptmx -> pts/ptmx",
    ] {
        assert!(out.contains(link), "missing {link:?} in {out}");
    }
    assert!(out.contains("null-writable"));
}

#[test]
fn spec_device_appears_with_its_major_minor_and_mode() {
    let (code, out, err) = run(Bundle::new("dev")
        .device(json!({ "path": "/dev/refeng-null", "type": "c", "major": 1, "minor": 3,
                        "fileMode": 0o640, "uid": 0, "gid": 0 }))
        .resources(json!({ "devices": [
            { "allow": false, "access": "rwm" },
            { "allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm" } ] }))
        .sh("stat -c '%F %t %T %a %u %g' /dev/refeng-null; echo x > /dev/refeng-null && echo written"));
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out, "character special file 1 3 640 0 0\nwritten\n");
}

#[test]
fn hostname_and_domainname_are_set() {
    let (code, out, err) = run(Bundle::new("uts")
        .hostname("refeng-box")
        .domainname("example.test")
        .sh("hostname; cat /proc/sys/kernel/domainname"));
    assert_eq!(code, 0, "stderr: {err}");
    let (hostname, domainname) = out.split_once('\n').unwrap_or((&out, ""));
    assert_eq!(hostname, "refeng-box");
    // runc 1.1 ignores `domainname` (it came with runc 1.2); refeng-runc implements it.
    if is_refeng() {
        assert_eq!(domainname, "example.test\n");
    }
}

/// Starts `unshare --uts sleep` (this test's own process, killed by pid when dropped) and waits
/// until it sits in a UTS namespace other than the host's; returns it and that namespace's path.
fn own_uts_namespace(b: &Bundle) -> (common::Spawned, String) {
    let mut cmd = Command::new("unshare");
    cmd.args(["--uts", "--", "sleep", "1000"]);
    let holder = common::Spawned::start(cmd, b.tmp());
    let path = format!("/proc/{}/ns/uts", holder.pid());
    let host = fs::read_link("/proc/self/ns/uts").expect("own uts namespace");
    assert!(
        wait_until(WAIT, || fs::read_link(&path).is_ok_and(|ns| ns != host)),
        "unshare --uts did not enter a new uts namespace"
    );
    (holder, path)
}

#[test]
fn hostname_is_set_in_a_joined_uts_namespace() {
    let b = Bundle::new("uts-join");
    let (holder, path) = own_uts_namespace(&b);
    let host_name = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let joined = fs::read_link(&path).unwrap();
    // runc 1.1.5 accepts a joined uts namespace with `hostname` (its validator only asks for a
    // uts entry) and sets the name in that namespace.
    let mut b = b
        .hostname("refeng-joined")
        .sh("hostname; readlink /proc/self/ns/uts");
    if is_refeng() {
        b = b.domainname("joined.example");
    }
    let namespaces = b.spec_mut()["linux"]["namespaces"]
        .as_array_mut()
        .expect("linux.namespaces");
    namespaces.retain(|ns| ns["type"] != "uts");
    namespaces.push(json!({ "type": "uts", "path": path }));
    let (code, out, err) = run(b);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(
        out,
        format!("refeng-joined\n{}\n", joined.display()),
        "the process is in the joined namespace under the configured name"
    );
    // The name stays with the namespace, which outlives the container.
    let seen = |file: &str| {
        let out = Command::new("nsenter")
            .args(["--uts=".to_owned() + &path, "cat".into(), file.into()])
            .output()
            .expect("run nsenter");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(seen("/proc/sys/kernel/hostname"), "refeng-joined");
    if is_refeng() {
        assert_eq!(seen("/proc/sys/kernel/domainname"), "joined.example");
    }
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_name,
        "the host's name is untouched"
    );
    drop(holder);
}

#[test]
fn hostname_without_a_uts_namespace_is_refused() {
    // This test thread gets a uts namespace of its own first, so that a runtime which wrongly
    // accepted the config would rename that one and not the host.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUTS).expect("private uts namespace");
    let b = Bundle::new("uts-none").hostname("refeng-nowhere");
    let b = b.namespaces(&["pid", "network", "ipc", "mount"]);
    let c = b.container();
    let out = c.create_with(&[]).failed();
    if is_refeng() {
        assert!(out.stderr.contains("uts namespace"), "{out:?}");
    }
    assert_ne!(
        fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim(),
        "refeng-nowhere"
    );
}

#[test]
fn masked_paths_read_empty() {
    let host_timer_list = fs::read_to_string("/proc/timer_list").unwrap_or_default();
    assert!(
        !host_timer_list.is_empty(),
        "the host's /proc/timer_list has content to mask"
    );
    let mut b = Bundle::new("masked");
    b.spec_mut()["linux"]["maskedPaths"]
        .as_array_mut()
        .unwrap()
        .push(json!("/etc/group"));
    let (code, out, err) = run(b.sh(
        "for f in /proc/kcore /proc/timer_list /proc/keys /etc/group; do echo \"$f $(cat $f 2>/dev/null | wc -c)\"; done; \
         echo \"/proc/acpi $(ls -A /proc/acpi 2>/dev/null | wc -l)\"",
    ));
    assert_eq!(code, 0, "stderr: {err}");
    let seen = keyed(&out);
    for f in [
        "/proc/kcore",
        "/proc/timer_list",
        "/proc/keys",
        "/etc/group",
        "/proc/acpi",
    ] {
        assert_eq!(
            seen.get(f).map(String::as_str),
            Some("0"),
            "{f} is masked: {out}"
        );
    }
}

#[test]
fn readonly_paths_refuse_writes() {
    let mut b = Bundle::new("ropaths").share();
    b.spec_mut()["linux"]["readonlyPaths"]
        .as_array_mut()
        .unwrap()
        .push(json!("/shared"));
    let (code, out, err) = run(b.sh(
        "if echo 1 > /proc/sys/net/ipv4/ip_forward; then echo procsys writable; else echo procsys readonly; fi; \
         if touch /shared/x; then echo shared writable; else echo shared readonly; fi",
    ));
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out, "procsys readonly\nshared readonly\n", "stderr: {err}");
    assert!(err.contains("Read-only file system"), "stderr: {err}");
}

#[test]
fn readonly_root_refuses_writes_and_a_writable_root_accepts_them() {
    let (code, out, err) = run(Bundle::new("roroot").sh("touch /x && echo wrote"));
    assert_ne!(code, 0, "touch on a readonly root must fail: {out}");
    assert!(err.contains("Read-only file system"), "stderr: {err}");

    let b = Bundle::new("rwroot")
        .readonly_root(false)
        .sh("touch /x && echo wrote");
    let rootfs = b.rootfs();
    let c = b.container();
    let (code, out, err) = c.run();
    assert_eq!((code, out.as_str()), (0, "wrote\n"), "stderr: {err}");
    assert!(
        rootfs.join("x").exists(),
        "the file lands in the bundle's rootfs"
    );
}

#[test]
fn sysctl_is_applied_in_the_container_network_namespace() {
    let host_before = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let (code, out, err) = run(Bundle::new("sysctl")
        .sysctl("net.ipv4.ip_forward", "1")
        .sysctl("kernel.shmmni", "1234")
        .args(&[
            "cat",
            "/proc/sys/net/ipv4/ip_forward",
            "/proc/sys/kernel/shmmni",
        ]));
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out, "1\n1234\n");
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_before
    );
}

/// Mount points below `dir` in the test process's (the host's) mount table, and the optional
/// fields (propagation) of its `/`.
fn host_mounts_below(dir: &Path) -> (Vec<String>, Vec<String>) {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut below = Vec::new();
    let mut root = Vec::new();
    for line in info.lines() {
        let (before, _) = line.split_once(" - ").unwrap();
        let fields: Vec<&str> = before.split(' ').collect();
        if fields[4] == "/" {
            root.push(fields[6..].join(" "));
        } else if Path::new(fields[4]).starts_with(dir) {
            below.push(fields[4].to_owned());
        }
    }
    (below, root)
}

/// A bundle whose config has no mount namespace (and so none of the paths that need one).
fn without_mount_namespace(name: &str) -> Bundle {
    let mut b = Bundle::new(name);
    let linux = &mut b.spec_mut()["linux"];
    linux["namespaces"] = json!([{"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                                 {"type": "uts"}]);
    let linux = linux.as_object_mut().unwrap();
    linux.remove("maskedPaths");
    linux.remove("readonlyPaths");
    b
}

/// runc 1.1 applies the default rslave propagation to the host's `/` when a container has no
/// mount namespace; on a host whose `/` is shared that would change the host, so this is only
/// run against another runtime where that changes nothing.
fn other_runtime_may_touch_the_host_root() -> bool {
    let (_, root) = host_mounts_below(Path::new("/nonexistent"));
    let shared = root.iter().any(|fields| fields.contains("shared:"));
    if shared && !is_refeng() {
        eprintln!(
            "skipped against {}: the host's / is shared and runc would make it a slave",
            runtime_bin().display()
        );
    }
    shared && !is_refeng()
}

#[test]
fn without_a_mount_namespace_the_container_runs_and_leaves_no_mount_on_the_host() {
    if other_runtime_may_touch_the_host_root() {
        return;
    }
    // runtime-spec config-linux "Namespaces": a type not listed is inherited from the runtime.
    // The container's mounts are then the host's; once it is deleted none may be left (runc
    // 1.1 leaves all of them), and the host's `/` keeps its propagation.
    let b = without_mount_namespace("nomnt").share().sh(
        "cut -d' ' -f5 /proc/self/mountinfo | sort > /shared/mounts; \
         readlink /proc/self/ns/mnt > /shared/mnt; touch /shared/ready; \
         until [ -e /shared/go ]; do sleep 0.05; done",
    );
    let tmp = b.tmp().canonicalize().unwrap();
    let (below, root) = host_mounts_below(&tmp);
    assert!(below.is_empty(), "{below:?}");
    let c = b.container();
    c.create();
    c.start();
    c.wait_for_shared_file("ready", WAIT);
    let shared = c.bundle().shared();
    let host_mnt = fs::read_link("/proc/self/ns/mnt").unwrap();
    let mnt = fs::read_to_string(shared.join("mnt")).unwrap();
    assert_eq!(
        mnt.trim(),
        host_mnt.to_str().unwrap(),
        "the runtime's mount namespace"
    );
    let seen = fs::read_to_string(shared.join("mounts")).unwrap();
    for want in [
        "/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/sys", "/shared",
    ] {
        assert!(seen.lines().any(|l| l == want), "{want} in {seen}");
    }
    let (during, _) = host_mounts_below(&tmp);
    assert!(!during.is_empty(), "the container's mounts are the host's");
    // An exec enters the container's root too, not the host's (runc 1.1's does not: its exec
    // runs in the host's root).
    let out = c.runtime(&["exec", c.id(), "cat", "/shared/mnt"]);
    if is_refeng() {
        assert_eq!(out.ok().stdout, mnt);
    } else if !out.success() {
        eprintln!(
            "{}'s exec does not see the container's root",
            runtime_bin().display()
        );
    }
    fs::write(shared.join("go"), "").unwrap();
    c.wait_for_status("stopped", WAIT);
    c.delete().ok();
    let (after, root_after) = host_mounts_below(&tmp);
    if is_refeng() {
        assert!(after.is_empty(), "left on the host: {after:?}");
    } else if !after.is_empty() {
        eprintln!(
            "{} left {} mounts on the host",
            runtime_bin().display(),
            after.len()
        );
    }
    assert_eq!(root_after, root, "the host's / keeps its propagation");
}

#[test]
fn without_a_mount_namespace_a_failed_create_leaves_no_mount_on_the_host() {
    if other_runtime_may_touch_the_host_root() {
        return;
    }
    let marker = "hook-ran";
    let b = without_mount_namespace("nomntfail").share();
    let ran = b.shared().join(marker);
    // createRuntime runs after the mounts are made, so they exist when create fails.
    let b = b.hooks(
        json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c",
        format!("touch {}; exit 1", ran.display())]}]}),
    );
    let tmp = b.tmp().canonicalize().unwrap();
    let c = b.container();
    c.create_with(&[]).failed();
    assert!(
        ran.exists(),
        "the create got as far as its createRuntime hook"
    );
    let (left, _) = host_mounts_below(&tmp);
    if is_refeng() {
        assert!(left.is_empty(), "left on the host: {left:?}");
    }
}

#[test]
fn masked_and_readonly_paths_need_a_mount_namespace() {
    let mut b = without_mount_namespace("nomntmask");
    b.spec_mut()["linux"]["maskedPaths"] = json!(["/proc/kcore"]);
    b.spec_mut()["linux"]["readonlyPaths"] = json!(["/proc/sys"]);
    let c = b.container();
    let err = c.create_with(&[]).failed().stderr;
    if is_refeng() {
        assert!(
            err.contains("linux.maskedPaths and linux.readonlyPaths need a mount namespace"),
            "{err}"
        );
    }
    c.runtime(&["state", c.id()]).failed();
}

#[test]
fn tmpfs_and_bind_mounts_from_the_spec() {
    let b = Bundle::new("bind");
    fs::write(b.shared().join("hello.txt"), "from the host\n").unwrap();
    let src = b.shared().to_string_lossy().into_owned();
    let (code, out, err) = run(b
        .mount(json!({ "destination": "/data", "type": "bind", "source": src, "options": ["bind", "ro"] }))
        .mount(json!({ "destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m", "mode=700"] }))
        .sh("cat /data/hello.txt; touch /data/y 2>/dev/null || echo data-ro; touch /scratch/z && echo scratch-rw; grep ' /scratch ' /proc/self/mounts"));
    assert_eq!(code, 0, "stderr: {err}");
    // (runc chmods a tmpfs to the mode of the directory it covers, so the mode is read from the
    // mount options, which the kernel reports as given.)
    let (head, mount) = out.split_at(out.find("tmpfs /scratch").unwrap_or(out.len()));
    assert_eq!(head, "from the host\ndata-ro\nscratch-rw\n");
    let m = mounts_of(mount);
    let (fstype, opts) = &m["/scratch"];
    assert_eq!(fstype, "tmpfs");
    assert!(
        opts.contains(&"mode=700".to_owned()) && opts.contains(&"size=1024k".to_owned()),
        "{opts:?}"
    );
}

#[test]
fn rnorelatime_leaves_the_access_time_setting_alone() {
    // runc 1.1.5: `rnorelatime` clears MOUNT_ATTR_RELATIME, whose value is 0, so a new tmpfs
    // keeps the kernel's relatime, a strictatime one stays strictatime and `rnoatime` before it
    // stays in force.
    let b = Bundle::new("rnorelatime");
    let source = b.shared().to_string_lossy().into_owned();
    let (code, out, err) = run(b
        .mount(
            json!({ "destination": "/mnt/plain", "type": "tmpfs", "source": "tmpfs",
                       "options": ["rnorelatime"] }),
        )
        .mount(
            json!({ "destination": "/mnt/strict", "type": "tmpfs", "source": "tmpfs",
                       "options": ["strictatime", "rnorelatime"] }),
        )
        .mount(
            json!({ "destination": "/mnt/noatime", "type": "bind", "source": source,
                       "options": ["rbind", "rnoatime", "rnorelatime"] }),
        )
        .sh("grep ' /mnt/' /proc/self/mounts"));
    assert_eq!(code, 0, "stderr: {err}");
    let m = mounts_of(&out);
    let atime = |target: &str| -> Vec<String> {
        m.get(target)
            .unwrap_or_else(|| panic!("{target} is not mounted: {out}"))
            .1
            .iter()
            .filter(|o| o.ends_with("atime"))
            .cloned()
            .collect()
    };
    assert_eq!(atime("/mnt/plain"), ["relatime"], "{out}");
    // /proc/mounts names no access-time option for strictatime.
    assert!(atime("/mnt/strict").is_empty(), "{out}");
    assert_eq!(atime("/mnt/noatime"), ["noatime"], "{out}");
}

// ---------------------------------------------------------------------------------------------
// Process

#[test]
fn user_uid_gid_and_additional_gids() {
    let (code, out, err) = run(Bundle::new("user")
        .user(1000, 1000, &[10, 2000])
        .sh("echo uid $(id -u); echo gid $(id -g); grep '^Groups:' /proc/self/status"));
    assert_eq!(code, 0, "stderr: {err}");
    let seen = keyed(&out);
    assert_eq!(seen["uid"], "1000");
    assert_eq!(seen["gid"], "1000");
    let groups: BTreeSet<u32> = seen["Groups:"]
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .filter(|g| *g != 1000)
        .collect();
    assert_eq!(groups, BTreeSet::from([10, 2000]), "{out}");
}

#[test]
fn duplicate_additional_gids_become_one_group_each() {
    // runc 1.1.5 gives `Groups: 5 6` for [5, 6, 5]; the kernel keeps what setgroups(2) gets,
    // duplicates included.
    let (code, out, err) = run(Bundle::new("user-dup")
        .user(0, 0, &[5, 6, 5])
        .sh("grep '^Groups:' /proc/self/status"));
    assert_eq!(code, 0, "stderr: {err}");
    let seen = keyed(&out);
    let groups: Vec<&str> = seen
        .get("Groups:")
        .map(|g| g.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(groups, ["5", "6"], "{out}");
}

#[test]
fn umask_is_applied() {
    let (code, out, err) = run(Bundle::new("umask").umask(0o027).sh("umask"));
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out.trim(), "0027");
}

#[test]
fn env_and_cwd_are_applied() {
    let (code, out, err) = run(Bundle::new("env")
        .env(&["FOO=bar", "WITH_SPACE=a b  c"])
        .cwd("/home/user")
        .sh("pwd; echo \"$FOO\"; echo \"$WITH_SPACE\"; echo \"$PATH\""));
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(
        out,
        "/home/user\nbar\na b  c\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
}

fn check_caps(out: &str, sets: &CapSets) {
    for (field, names) in [
        ("CapBnd", &sets.bounding),
        ("CapEff", &sets.effective),
        ("CapPrm", &sets.permitted),
        ("CapInh", &sets.inheritable),
        ("CapAmb", &sets.ambient),
    ] {
        let seen = status_field(out, field).unwrap_or_else(|| panic!("no {field} in {out}"));
        let seen = u64::from_str_radix(seen, 16).expect("hex mask");
        assert_eq!(
            seen,
            cap_mask(names),
            "{field}: got {seen:#x}, configured {names:?}"
        );
    }
}

#[test]
fn capabilities_of_root_match_the_configured_sets() {
    // Root execs with permitted = inheritable | bounding and effective = permitted (no file caps),
    // so the configured sets are chosen the way a runtime-spec user would write them for root.
    let sets = CapSets {
        bounding: vec![
            "CAP_CHOWN",
            "CAP_KILL",
            "CAP_NET_BIND_SERVICE",
            "CAP_SYS_CHROOT",
        ],
        effective: vec![
            "CAP_CHOWN",
            "CAP_KILL",
            "CAP_NET_BIND_SERVICE",
            "CAP_SYS_CHROOT",
        ],
        permitted: vec![
            "CAP_CHOWN",
            "CAP_KILL",
            "CAP_NET_BIND_SERVICE",
            "CAP_SYS_CHROOT",
        ],
        inheritable: vec!["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        ambient: vec!["CAP_KILL"],
    };
    let (code, out, err) = run(Bundle::new("capsroot")
        .caps(&sets)
        .args(&["cat", "/proc/self/status"]));
    assert_eq!(code, 0, "stderr: {err}");
    check_caps(&out, &sets);
}

#[test]
fn capabilities_of_a_user_match_the_configured_sets() {
    // A non-root user keeps after exec exactly its ambient set as permitted and effective.
    let sets = CapSets {
        bounding: vec![
            "CAP_CHOWN",
            "CAP_KILL",
            "CAP_NET_BIND_SERVICE",
            "CAP_NET_RAW",
        ],
        effective: vec!["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
        permitted: vec!["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
        inheritable: vec!["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
        ambient: vec!["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
    };
    let (code, out, err) = run(Bundle::new("capsuser")
        .user(1000, 1000, &[])
        .caps(&sets)
        .args(&["cat", "/proc/self/status"]));
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(
        status_field(&out, "Uid").map(|u| u.split_whitespace().next()),
        Some(Some("1000"))
    );
    check_caps(&out, &sets);
}

#[test]
fn rlimits_are_applied() {
    let (code, out, err) = run(Bundle::new("rlimit")
        .rlimit("RLIMIT_NOFILE", 1234, 2345)
        .rlimit("RLIMIT_CORE", 0, 4096)
        .sh("echo soft $(ulimit -n); echo hard $(ulimit -Hn); grep -E '^Max (open files|core file size)' /proc/self/limits"));
    assert_eq!(code, 0, "stderr: {err}");
    let seen = keyed(&out);
    assert_eq!(seen["soft"], "1234");
    assert_eq!(seen["hard"], "2345");
    let limits: Vec<Vec<&str>> = out
        .lines()
        .filter(|l| l.starts_with("Max "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        limits
            .iter()
            .any(|f| f[..5] == ["Max", "open", "files", "1234", "2345"]),
        "{out}"
    );
    assert!(
        limits
            .iter()
            .any(|f| f[..6] == ["Max", "core", "file", "size", "0", "4096"]),
        "{out}"
    );
}

#[test]
fn no_new_privileges_is_set_only_when_asked() {
    for (on, want) in [(true, "1"), (false, "0")] {
        let (code, out, err) = run(Bundle::new("nnp")
            .no_new_privileges(on)
            .args(&["cat", "/proc/self/status"]));
        assert_eq!(code, 0, "stderr: {err}");
        assert_eq!(
            status_field(&out, "NoNewPrivs"),
            Some(want),
            "noNewPrivileges={on}"
        );
    }
}

#[test]
fn oom_score_adj_is_applied() {
    let (code, out, err) = run(Bundle::new("oomadj")
        .oom_score_adj(123)
        .args(&["cat", "/proc/self/oom_score_adj"]));
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out.trim(), "123");
}

#[test]
fn exit_code_of_the_process_is_returned() {
    let (code, out, err) = run(Bundle::new("exit3").sh("echo bye; exit 3"));
    assert_eq!((code, out.as_str()), (3, "bye\n"), "stderr: {err}");
}

#[test]
fn sigkill_gives_137() {
    let c = Bundle::new("exit137")
        .share()
        .sh("touch /shared/ready; sleep 60")
        .container();
    let running = c.spawn_run(&[]);
    c.wait_for_shared_file("ready", WAIT);
    c.kill("KILL").ok();
    let out = running.wait(WAIT);
    assert_eq!(out.code, 137, "{out:?}");
}

#[test]
fn terminal_pty_master_goes_over_the_console_socket() {
    let c = Bundle::new("console")
        .terminal(true)
        .sh("echo hello-from-pty; [ -t 0 ] && [ -t 1 ] && echo stdio-is-a-tty; tty")
        .container();
    let sock = c.bundle().tmp().join("console.sock");
    let listener = UnixListener::bind(&sock).expect("bind console socket");
    // Never blocks for good: a runtime that does not connect, or connects and sends nothing,
    // fails the test after WAIT.
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let receiver = std::thread::spawn(move || -> Option<OwnedFd> {
        let mut accepted = None;
        wait_until(WAIT, || {
            accepted = listener.accept().ok();
            accepted.is_some()
        });
        let (stream, _) = accepted?;
        stream.set_nonblocking(false).ok()?;
        stream.set_read_timeout(Some(WAIT)).ok()?;
        let mut buf = [0u8; 256];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
        rustix::net::recvmsg(
            &stream,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            rustix::net::RecvFlags::CMSG_CLOEXEC,
        )
        .ok()?;
        let fds = control.drain().find_map(|m| match m {
            rustix::net::RecvAncillaryMessage::ScmRights(fds) => Some(fds.collect::<Vec<_>>()),
            _ => None,
        });
        fds?.pop()
    });
    c.create_with(&["--console-socket", sock.to_str().unwrap()])
        .ok();
    let master = receiver
        .join()
        .expect("receiver thread")
        .expect("the runtime sends the pty master over the console socket");
    c.start();
    // The output stays buffered in the pty after the container is gone; reading it then cannot
    // block, and ends with EIO once it is drained.
    c.wait_for_status("stopped", WAIT);
    let mut master = fs::File::from(master);
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("hello-from-pty"), "pty output: {text:?}");
    assert!(text.contains("stdio-is-a-tty"), "pty output: {text:?}");
    assert!(
        text.contains("/dev/pts/") || text.contains("/dev/console"),
        "pty output: {text:?}"
    );
    c.wait_for_status("stopped", WAIT);
}

#[test]
fn preserve_fds_passes_extra_fds() {
    let b = Bundle::new("preserve").args(&["cat", "/proc/self/fd/3"]);
    let msg = b.tmp().join("fd3.txt");
    fs::write(&msg, "through fd 3\n").unwrap();
    let c = b.container();
    // The host shell opens fd 3 and execs the runtime, which must hand it to the container.
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("exec 3<\"$0\"; exec \"$@\"")
        .arg(&msg)
        .arg(runtime_bin())
        .arg("--root")
        .arg(c.bundle().state_root())
        .args(["run", "--preserve-fds", "1", "--bundle"])
        .arg(c.bundle().dir())
        .arg(c.id());
    let out = common::Spawned::start(cmd, &c.bundle().tmp().join("out")).wait(DEFAULT_TIMEOUT);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "through fd 3\n"),
        "{out:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Cgroups

#[test]
fn memory_hog_is_oom_killed() {
    let limit = 32 * 1024 * 1024;
    let mem = json!({ "memory": { "limit": limit, "swap": limit } });
    // A 16M buffer fits under the limit: the limit is what kills, not dd itself.
    let (code, _, err) = run(Bundle::new("memok").resources(mem.clone()).args(&[
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=16M",
        "count=1",
    ]));
    assert_eq!(code, 0, "16M under a 32M limit: {err}");
    let (code, out, err) = run(Bundle::new("memhog").resources(mem).args(&[
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=256M",
        "count=1",
    ]));
    assert_eq!(
        code, 137,
        "a 256M buffer under a 32M limit is OOM-killed: {out} {err}"
    );
}

/// The runtime's intermediate process forks init from inside the container's cgroup (so that
/// init is born there), except where a pid limit of 1 leaves room for init alone: that
/// container must still start, and its one process still cannot fork.
#[test]
fn a_pid_limit_of_one_leaves_room_for_init() {
    let (code, out, err) = run(Bundle::new("pidsone")
        .resources(json!({ "pids": { "limit": 1 } }))
        .sh("echo started; (exit 0); echo forked"));
    assert_eq!(
        out, "started\n",
        "init starts under pids.max 1: code {code} err {err}"
    );
    assert!(
        err.contains("can't fork"),
        "its subshell cannot fork: code {code} err {err}"
    );
}

#[test]
fn fork_loop_stops_at_pids_max() {
    // The inner shell forks 20 sleeps (and gives up at the first failed fork); the outer one then
    // counts the container's processes with a glob, which needs no fork.
    let script = "sh -c 'i=0; while [ $i -lt 20 ]; do sleep 5 & i=$((i+1)); done'; \
                  set -- /proc/[0-9]*; echo procs $#";
    let (code, out, err) = run(Bundle::new("pidsmax")
        .resources(json!({ "pids": { "limit": 10 } }))
        .sh(script));
    let procs: usize = keyed(&out)
        .get("procs")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        err.contains("can't fork"),
        "forks beyond pids.max fail: code {code} out {out} err {err}"
    );
    assert!(
        (2..=10).contains(&procs),
        "some sleeps, at most 10 processes, saw {procs}: {out} {err}"
    );

    let (code, out, err) = run(Bundle::new("pidsfree").sh(script));
    assert_eq!(
        (code, out.as_str()),
        (0, "procs 21\n"),
        "without a limit all 20 start: {err}"
    );
}

#[test]
fn cgroup_holds_the_process_with_its_limits_and_goes_on_delete() {
    let b = Bundle::new("cgroup")
        .share()
        .resources(json!({ "memory": { "limit": 64 * 1024 * 1024 }, "pids": { "limit": 42 } }))
        .sh("touch /shared/ready; sleep 60");
    let rel = b.cgroup_path();
    let c = b.container();
    c.create();
    let pid = c.state()["pid"].as_i64().expect("pid");
    c.start();
    c.wait_for_shared_file("ready", WAIT);
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let (memdir, pidsdir) = if v2 {
        let d = format!("/sys/fs/cgroup{rel}");
        (d.clone(), d)
    } else {
        (
            format!("/sys/fs/cgroup/memory{rel}"),
            format!("/sys/fs/cgroup/pids{rel}"),
        )
    };
    let read = |p: String| fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
    let procs = read(format!("{memdir}/cgroup.procs"));
    assert!(
        procs.lines().any(|l| l.trim() == pid.to_string()),
        "pid {pid} in {procs}"
    );
    let mem = if v2 {
        read(format!("{memdir}/memory.max"))
    } else {
        read(format!("{memdir}/memory.limit_in_bytes"))
    };
    assert_eq!(mem.trim(), (64 * 1024 * 1024).to_string());
    assert_eq!(read(format!("{pidsdir}/pids.max")).trim(), "42");
    c.kill("KILL").ok();
    c.wait_for_status("stopped", WAIT);
    c.delete().ok();
    assert!(!Path::new(&memdir).exists(), "{memdir} removed on delete");
    assert!(!Path::new(&pidsdir).exists(), "{pidsdir} removed on delete");
}

/// For each line of a `/proc/<pid>/cgroup` (`memberships`), the cgroup `join` below the one
/// listed: the line a process in it shows, and its directory on the host.
fn placed(
    memberships: &refeng::sys::kernel_files::proc_cgroup::ProcCgroup,
    join: &str,
) -> Vec<(String, std::path::PathBuf)> {
    use refeng::sys::kernel_files::mountinfo;
    let mounts = mountinfo::read(None).expect("own mountinfo");
    memberships
        .memberships
        .iter()
        .filter_map(|m| {
            let path = m.path.join(join);
            let path = if join.is_empty() {
                m.path.clone()
            } else {
                path
            };
            let line = format!(
                "{}:{}:{}",
                m.hierarchy_id,
                m.controllers.join(","),
                path.display()
            );
            let mount = mounts.iter().find(|mount| {
                if m.is_unified() {
                    mount.fs_type == "cgroup2"
                } else {
                    mount.fs_type == "cgroup"
                        && m.controllers
                            .iter()
                            .all(|c| mount.super_options.contains(c))
                }
            })?;
            let inside = path.strip_prefix(&mount.root).ok()?;
            Some((line, mount.mount_point.join(inside)))
        })
        .collect()
}

/// Where each hierarchy's cgroup of a relative cgroupsPath `rel` lives, as runc 1.1 resolves it:
/// below the caller's own cgroup in that hierarchy. One entry per line of the caller's
/// /proc/self/cgroup: the line the container's process must show, and the host directory.
fn relative_cgroups(rel: &str) -> Vec<(String, std::path::PathBuf)> {
    use refeng::sys::kernel_files::proc_cgroup::ProcCgroup;
    placed(&ProcCgroup::read(None).expect("own /proc/self/cgroup"), rel)
}

/// Removes test-made cgroup directories when the test ends, however it ends (children first:
/// list them so).
struct RemoveCgroups(Vec<std::path::PathBuf>);

impl Drop for RemoveCgroups {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = fs::remove_dir(dir);
        }
    }
}

#[test]
fn relative_cgroups_path_goes_below_the_callers_cgroup_in_every_hierarchy() {
    let mut b = Bundle::new("relcg").args(&["sleep", "1000"]);
    // One path component, unique to this test: nothing shared to leave behind.
    let rel = format!("refeng-test-relative-{}", b.id());
    b.spec_mut()["linux"]["cgroupsPath"] = json!(rel);
    let expected = relative_cgroups(&rel);
    assert!(!expected.is_empty(), "no hierarchy to test");
    let _remove = RemoveCgroups(expected.iter().map(|(_, dir)| dir.clone()).collect());
    let c = b.container();
    c.create();
    let pid = c.state()["pid"].as_i64().expect("pid");
    let got = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("container's cgroups");
    let got: Vec<&str> = got.lines().collect();
    let want: Vec<&str> = expected.iter().map(|(line, _)| line.as_str()).collect();
    assert_eq!(got, want, "the container's /proc/{pid}/cgroup");
    for (_, dir) in &expected {
        assert!(dir.is_dir(), "{} made", dir.display());
    }
    // Under v1 the container's cgroup mount binds its own cgroup of each hierarchy, memory's
    // included (under v2 without a cgroup namespace it shows the whole hierarchy).
    if !Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        let procs = "/sys/fs/cgroup/memory/cgroup.procs";
        let out = c.runtime(&["exec", c.id(), "cat", procs]).ok();
        assert!(
            out.stdout.lines().any(|l| l == "1"),
            "{procs} in the container: {out:?}"
        );
    }
    c.runtime(&["delete", "--force", c.id()]).ok();
    for (_, dir) in &expected {
        assert!(!dir.exists(), "{} removed on delete", dir.display());
    }
}

#[test]
fn exec_cgroup_runs_the_process_in_sub_cgroups_of_the_container() {
    use refeng::sys::kernel_files::proc_cgroup::ProcCgroup;
    let c = Bundle::new("execcg").args(&["sleep", "1000"]).container();
    c.create();
    c.start();
    let pid = c.state()["pid"].as_i64().expect("pid");
    let init = ProcCgroup::read(Some(u32::try_from(pid).expect("pid"))).expect("init's cgroups");
    let container = placed(&init, "");
    let sub = placed(&init, "sub");
    assert!(!sub.is_empty(), "no hierarchy to test");
    let _remove = RemoveCgroups(sub.iter().map(|(_, dir)| dir.clone()).collect());
    for (_, dir) in &sub {
        fs::create_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        // A new v1 cpuset cgroup takes no task until it has cpus and mems.
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if let Ok(parent) = fs::read_to_string(dir.parent().unwrap().join(file)) {
                fs::write(dir.join(file), parent.trim()).expect("copy cpuset");
            }
        }
    }
    let lines = |flags: &[&str]| -> Result<Vec<String>, String> {
        let mut args = vec!["exec"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[c.id(), "cat", "/proc/self/cgroup"]);
        let out = c.runtime(&args);
        if out.success() {
            Ok(out.stdout.lines().map(str::to_owned).collect())
        } else {
            Err(out.stderr)
        }
    };
    let all_sub: Vec<String> = sub.iter().map(|(l, _)| l.clone()).collect();
    assert_eq!(
        lines(&["--cgroup", "sub"]),
        Ok(all_sub.clone()),
        "--cgroup sub"
    );
    assert_eq!(
        lines(&["--cgroup", ":sub"]),
        Ok(all_sub.clone()),
        "--cgroup :sub"
    );
    assert_eq!(
        lines(&["--cgroup", "/sub"]),
        Ok(all_sub),
        "a leading / is still below the container"
    );
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if v2 {
        assert!(
            lines(&["--cgroup", "memory:sub"]).is_err(),
            "cgroup v2 has no per-controller hierarchy"
        );
    } else {
        // Only the named controllers' hierarchies move.
        let want: Vec<String> = init
            .memberships
            .iter()
            .zip(container.iter().zip(&sub))
            .map(|(m, ((in_container, _), (in_sub, _)))| {
                if m.has("memory") || m.has("pids") {
                    in_sub.clone()
                } else {
                    in_container.clone()
                }
            })
            .collect();
        assert_eq!(lines(&["--cgroup", "memory,pids:sub"]), Ok(want));
    }
    for bad in [
        &["--cgroup", "nosuch"][..],
        &["--cgroup", "../escape"],
        &["--cgroup", "a:b:c"],
        &["--cgroup", "sub", "--cgroup", "pids:sub"],
        &["--cgroup", "bogus:sub"],
    ] {
        assert!(lines(bad).is_err(), "{bad:?} must be refused");
    }
    // Nothing was left running in the sub-cgroups.
    for (_, dir) in &sub {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        assert_eq!(procs, "", "{}", dir.display());
    }
}

// ---------------------------------------------------------------------------------------------
// Hooks

fn hook(name: &str, log: &Path) -> Value {
    json!({ "path": "/bin/sh",
            "args": ["sh", "-c", format!("echo \"{name} $(cat)\" >> {}", log.display())] })
}

/// A poststart hook that logs like [`hook`] and records what the container's pid executes.
fn poststart_probe(log: &Path, exe: &Path) -> Value {
    json!({ "path": "/bin/sh",
            "args": ["sh", "-c", format!(
                "st=$(cat); echo \"poststart $st\" >> {log}; \
                 pid=$(echo \"$st\" | sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p'); \
                 readlink /proc/$pid/exe > {exe}",
                log = log.display(), exe = exe.display())] })
}

fn hook_lines(log: &Path) -> Vec<(String, Value)> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let (name, state) = l.split_once(' ').unwrap_or((l, ""));
            let state = serde_json::from_str(state)
                .unwrap_or_else(|e| panic!("hook {name} state is not JSON ({e}): {l}"));
            (name.to_owned(), state)
        })
        .collect()
}

#[test]
fn hooks_run_in_order_with_the_state_on_stdin() {
    let b = Bundle::new("hooks").share();
    let host_log = b.shared().join("hooks.log");
    let exe_log = b.shared().join("poststart-exe.txt");
    // startContainer runs inside the container (after pivot_root): it sees the log at /shared.
    let inside_log = Path::new("/shared/hooks.log");
    let c = b
        .hooks(json!({
            "prestart": [hook("prestart", &host_log)],
            "createRuntime": [hook("createRuntime", &host_log)],
            "createContainer": [hook("createContainer", &host_log)],
            "startContainer": [hook("startContainer", inside_log)],
            "poststart": [poststart_probe(&host_log, &exe_log)],
            "poststop": [hook("poststop", &host_log)],
        }))
        .sh("echo 'process {}' >> /shared/hooks.log; until [ -e /shared/go ]; do sleep 0.05; done")
        .container();
    let names =
        |lines: &[(String, Value)]| lines.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    c.create();
    let after_create = names(&hook_lines(&host_log));
    c.start();
    assert!(
        wait_until(WAIT, || hook_lines(&host_log).len() >= 5),
        "{:?}",
        hook_lines(&host_log)
    );
    fs::write(c.bundle().shared().join("go"), "").unwrap();
    c.wait_for_status("stopped", WAIT);
    c.delete().ok();
    let lines = hook_lines(&host_log);
    let all = names(&lines);
    let order: Vec<&str> = all
        .iter()
        .map(String::as_str)
        .filter(|n| *n != "process")
        .collect();
    let pos = |n: &str| {
        all.iter()
            .position(|x| x == n)
            .unwrap_or_else(|| panic!("{n} ran: {all:?}"))
    };
    if is_refeng() {
        assert_eq!(
            after_create,
            ["prestart", "createRuntime", "createContainer"]
        );
        assert_eq!(
            order,
            [
                "prestart",
                "createRuntime",
                "createContainer",
                "startContainer",
                "poststart",
                "poststop"
            ]
        );
        // runtime-spec: poststart runs "after the user-specified process is executed". The
        // program's own log line may still come after the hook's, but what the container's pid
        // runs when poststart starts must already be the program, not the runtime.
        let exe = fs::read_to_string(&exe_log).unwrap_or_default();
        assert!(
            exe.trim().ends_with("busybox") && !exe.contains("refeng"),
            "poststart ran before the process was executed: its pid ran {exe:?}"
        );
        let _ = pos("process");
    } else {
        // runc 1.1 runs poststart already in `create` (fixed in runc 1.2); the rest is in order.
        let without_poststart: Vec<&str> = order
            .iter()
            .copied()
            .filter(|n| *n != "poststart")
            .collect();
        assert_eq!(
            without_poststart,
            [
                "prestart",
                "createRuntime",
                "createContainer",
                "startContainer",
                "poststop"
            ]
        );
        assert!(pos("createContainer") < pos("poststart"));
    }
    assert!(
        pos("startContainer") < pos("process"),
        "startContainer runs before the process"
    );
    assert!(pos("process") < pos("poststop"));
    for (name, state) in &lines {
        if name == "process" {
            continue;
        }
        assert_eq!(state["id"], c.id(), "{name}: {state}");
        assert_eq!(
            state["bundle"],
            c.bundle().dir().to_str().unwrap(),
            "{name}: {state}"
        );
        assert!(
            state["ociVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with("1.")),
            "{name}: {state}"
        );
        let status = state["status"].as_str().unwrap_or_default();
        let allowed: &[&str] = match name.as_str() {
            "prestart" | "createRuntime" | "createContainer" => &["creating", "created"],
            "startContainer" => &["created"],
            "poststart" if is_refeng() => &["running"],
            "poststart" => &["creating", "created", "running"],
            "poststop" => &["stopped"],
            other => panic!("unexpected hook {other}"),
        };
        assert!(
            allowed.contains(&status),
            "{name} saw status {status}: {state}"
        );
        if name != "poststop" {
            assert!(
                state["pid"].as_i64().unwrap_or(0) > 0,
                "{name} gets the pid: {state}"
            );
        }
    }
}

#[test]
fn a_failing_poststop_hook_does_not_stop_delete() {
    let b = Bundle::new("poststopfail");
    let log = b.tmp().join("poststop.log");
    let c = b
        .hooks(json!({ "poststop": [
            { "path": "/bin/sh", "args": ["sh", "-c", "exit 7"] },
            hook("poststop", &log),
        ] }))
        .container();
    c.create();
    c.start();
    c.wait_for_status("stopped", WAIT);
    let out = c.delete();
    if is_refeng() {
        // runtime-spec: a poststop failure is logged as a warning, the rest still runs.
        assert!(out.success(), "{out:?}");
        assert_eq!(
            hook_lines(&log).len(),
            1,
            "the second poststop hook still ran"
        );
    }
    let state = c.runtime(&["state", c.id()]);
    assert!(
        !state.success(),
        "the container is gone after delete: {state:?}"
    );
}

#[test]
fn a_failing_prestart_hook_fails_create() {
    let c = Bundle::new("prestartfail")
        .hooks(json!({ "prestart": [{ "path": "/bin/sh", "args": ["sh", "-c", "exit 1"] }] }))
        .container();
    c.create_with(&[]).failed();
    let state = c.runtime(&["state", c.id()]);
    if state.success() {
        let state: Value = serde_json::from_str(&state.stdout).unwrap();
        assert_eq!(
            state["status"], "stopped",
            "a failed create leaves nothing running"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Lifecycle and command line

#[test]
fn lifecycle_create_start_exit_delete() {
    let c = Bundle::new("life")
        .share()
        .sh("until [ -e /shared/go ]; do sleep 0.05; done")
        .container();
    c.create();
    let state = c.state();
    assert_eq!(state["id"], c.id());
    assert_eq!(state["status"], "created");
    assert!(state["pid"].as_i64().unwrap() > 0);
    assert_eq!(state["bundle"], c.bundle().dir().to_str().unwrap());
    assert!(state["ociVersion"].as_str().unwrap().starts_with("1."));
    c.start();
    assert_eq!(c.status(), "running");
    fs::write(c.bundle().shared().join("go"), "").unwrap();
    c.wait_for_status("stopped", WAIT);
    c.delete().ok();
    c.runtime(&["state", c.id()]).failed();
    assert!(
        !c.bundle().state_root().join(c.id()).exists(),
        "delete removes the container's state folder"
    );
}

#[test]
fn operations_in_the_wrong_state_fail_naming_container_state_and_operation() {
    let c = Bundle::new("wrong")
        .share()
        .sh("until [ -e /shared/go ]; do sleep 0.05; done")
        .container();
    let id = c.id().to_owned();
    let err = c.runtime(&["state", &id]).failed().stderr;
    if is_refeng() {
        assert!(
            err.contains(&format!("container {id} does not exist")),
            "{err}"
        );
    }
    c.create();
    let err = c.create_with(&[]).failed().stderr;
    if is_refeng() {
        assert!(
            err.contains(&format!("container {id} already exists")),
            "{err}"
        );
    }
    c.start();
    let err = c.runtime(&["start", &id]).failed().stderr;
    if is_refeng() {
        assert!(
            err.contains(&format!("cannot start container {id}: it is running")),
            "{err}"
        );
    }
    let err = c.delete().failed().stderr;
    if is_refeng() {
        assert!(
            err.contains(&format!("cannot delete container {id}: it is running")),
            "{err}"
        );
    }
    assert_eq!(
        c.status(),
        "running",
        "failed operations leave the container as it was"
    );
    fs::write(c.bundle().shared().join("go"), "").unwrap();
    c.wait_for_status("stopped", WAIT);
    let err = c.runtime(&["start", &id]).failed().stderr;
    if is_refeng() {
        assert!(
            err.contains(&format!("cannot start container {id}: it is stopped")),
            "{err}"
        );
    }
    let err = c.kill("TERM").failed().stderr;
    if is_refeng() {
        assert!(
            err.contains(&format!("cannot kill container {id}: it is stopped")),
            "{err}"
        );
    }
    c.delete().ok();
}

#[test]
fn pid_file_holds_the_container_pid() {
    let c = Bundle::new("pidfile").sh("sleep 60").container();
    let pid_file = c.bundle().tmp().join("container.pid");
    c.create_with(&["--pid-file", pid_file.to_str().unwrap()])
        .ok();
    let pid: i64 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(c.state()["pid"].as_i64(), Some(pid));
    // The pid is the container's init on the host: its /proc entry shows the container's process.
    let cmdline = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status_field(&cmdline, "NSpid").is_some_and(|f| f.split_whitespace().last() == Some("1")),
        "{cmdline}"
    );
}

#[test]
fn run_detached_with_pid_file_and_kill_all() {
    let c = Bundle::new("detach")
        .share()
        .sh("sleep 60 & sleep 60 & touch /shared/ready; wait")
        .container();
    let pid_file = c.bundle().tmp().join("run.pid");
    let dir = c.bundle().dir();
    c.runtime(&[
        "run",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--bundle",
        dir.to_str().unwrap(),
        c.id(),
    ])
    .ok();
    c.wait_for_shared_file("ready", WAIT);
    let pid: i64 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(c.state()["pid"].as_i64(), Some(pid));
    assert_eq!(c.status(), "running");
    c.runtime(&["kill", "--all", c.id(), "KILL"]).ok();
    c.wait_for_status("stopped", WAIT);
    c.delete().ok();
}

#[test]
fn run_keep_leaves_a_stopped_container() {
    let c = Bundle::new("keep").sh("exit 5").container();
    let dir = c.bundle().dir();
    let out = c.runtime(&["run", "--keep", "--bundle", dir.to_str().unwrap(), c.id()]);
    assert_eq!(out.code, 5, "{out:?}");
    assert_eq!(c.status(), "stopped");
    c.delete().ok();
}

#[test]
fn run_with_no_pivot() {
    let c = Bundle::new("nopivot")
        .sh("hostname; ls /bin/busybox")
        .container();
    let dir = c.bundle().dir();
    let out = c.runtime(&[
        "run",
        "--no-pivot",
        "--bundle",
        dir.to_str().unwrap(),
        c.id(),
    ]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "refeng-test\n/bin/busybox\n"),
        "{out:?}"
    );
}

#[test]
fn kill_accepts_signal_names_with_and_without_sig_and_numbers() {
    let script = "trap 'exit 42' TERM; trap 'exit 43' USR1; trap 'exit 44' HUP; \
                  touch /shared/ready; while true; do sleep 0.05; done";
    for (signal, code) in [
        ("TERM", 42),
        ("SIGTERM", 42),
        ("15", 42),
        ("SIGUSR1", 43),
        ("10", 43),
        ("HUP", 44),
    ] {
        let c = Bundle::new("kill").share().sh(script).container();
        let running = c.spawn_run(&[]);
        c.wait_for_shared_file("ready", WAIT);
        c.kill(signal).ok();
        let out = running.wait(WAIT);
        assert_eq!(out.code, code, "kill {signal}: {out:?}");
    }
}

#[test]
fn list_in_table_json_and_quiet_formats() {
    let first = Bundle::new("lista").sh("sleep 60");
    let root = first.state_root().to_path_buf();
    let second = Bundle::new("listb").sh("sleep 60").with_state_root(&root);
    let (a, b) = (first.container(), second.container());
    a.create();
    b.create();
    let mut ids = vec![a.id().to_owned(), b.id().to_owned()];
    ids.sort();

    let quiet = a.runtime(&["list", "-q"]).ok().stdout;
    let mut listed: Vec<&str> = quiet.lines().collect();
    listed.sort();
    assert_eq!(listed, ids);

    let table = a.runtime(&["list"]).ok().stdout;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    );
    for c in [&a, &b] {
        let row = table
            .lines()
            .find(|l| l.starts_with(c.id()))
            .expect("a row per container");
        let f: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(f[1], c.state()["pid"].as_i64().unwrap().to_string());
        assert_eq!(f[2], "created");
        assert_eq!(f[3], c.bundle().dir().to_str().unwrap());
        assert_eq!(f[5], "root");
    }

    let json: Value =
        serde_json::from_str(&a.runtime(&["list", "--format", "json"]).ok().stdout).unwrap();
    let mut entries = json.as_array().expect("a JSON array").clone();
    entries.sort_by_key(|e| e["id"].as_str().unwrap().to_owned());
    assert_eq!(entries.len(), 2);
    for (e, id) in entries.iter().zip(&ids) {
        assert_eq!(e["id"], id.as_str());
        assert_eq!(e["status"], "created");
        assert!(e["pid"].as_i64().unwrap() > 0);
        assert!(e["bundle"].as_str().unwrap().ends_with("/bundle"));
        assert!(e["created"].as_str().is_some());
    }
}

/// The keys of each JSON object in `text` (one object, or an array of them), in written order:
/// scripts that match on `state` and `list` output depend on it, and `Value` does not keep it.
fn key_orders(text: &str) -> Vec<Vec<String>> {
    struct Keys(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl<'de> serde::de::Visitor<'de> for Visitor {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some(key) = map.next_key::<String>()? {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        keys.push(key);
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(Visitor)
        }
    }
    let text = text.trim();
    if text.starts_with('[') {
        let all: Vec<Keys> = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        all.into_iter().map(|k| k.0).collect()
    } else {
        let one: Keys = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        vec![one.0]
    }
}

#[test]
fn state_and_list_print_runcs_keys_in_runcs_order() {
    // runc 1.1: ociVersion, id, pid, status, bundle, rootfs, created, annotations (when there
    // are any), owner; pid is 0 once stopped.
    let plain = [
        "ociVersion",
        "id",
        "pid",
        "status",
        "bundle",
        "rootfs",
        "created",
        "owner",
    ];
    let mut annotated = plain.to_vec();
    annotated.insert(7, "annotations");
    let first = Bundle::new("ordera").sh("sleep 60");
    let root = first.state_root().to_path_buf();
    let mut second = Bundle::new("orderb").sh("sleep 60").with_state_root(&root);
    second.spec_mut()["annotations"] = json!({"org.example.key": "value"});
    let (a, b) = (first.container(), second.container());
    a.create();
    b.create();
    let state = a.runtime(&["state", a.id()]).ok().stdout;
    assert_eq!(key_orders(&state), [plain.to_vec()], "{state}");
    let state = b.runtime(&["state", b.id()]).ok().stdout;
    assert_eq!(key_orders(&state), [annotated.clone()], "{state}");
    a.kill("KILL").ok();
    a.wait_for_status("stopped", WAIT);
    assert_eq!(a.state()["pid"], 0, "a stopped container's pid");
    let list = a.runtime(&["list", "--format", "json"]).ok().stdout;
    let listed: Value = serde_json::from_str(&list).unwrap();
    let orders = key_orders(&list);
    assert_eq!(orders.len(), 2, "{list}");
    for (entry, keys) in listed.as_array().unwrap().iter().zip(&orders) {
        let (want, pid_ok) = if entry["id"] == a.id() {
            (plain.to_vec(), entry["pid"] == 0)
        } else {
            (annotated.clone(), entry["pid"].as_i64().unwrap_or(0) > 0)
        };
        assert_eq!(*keys, want, "{list}");
        assert!(pid_ok, "{list}");
    }
}

#[test]
fn json_log_format_writes_errors_as_json_lines() {
    let c = Bundle::new("jsonlog").container();
    let log = c.bundle().tmp().join("runtime.log");
    let out = c.runtime(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        c.id(),
    ]);
    assert!(!out.success());
    let text = fs::read_to_string(&log).expect("the log file is written");
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let error = lines
        .iter()
        .find(|l| l["level"] == "error")
        .unwrap_or_else(|| panic!("an error line in {text}"));
    let msg = error["msg"]
        .as_str()
        .or(error["message"].as_str())
        .expect("msg or message");
    assert!(msg.contains("does not exist"), "{msg}");
    // With a log file, stderr has the bare message (runc's fatal()), not a log line.
    assert_eq!(out.stderr.trim(), msg, "{out:?}");
    if is_refeng() {
        assert!(
            msg.contains(&format!("container {} does not exist", c.id())),
            "{msg}"
        );
    }
}

#[test]
fn spec_writes_a_valid_default_config() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().to_str().unwrap();
    let out = Command::new(runtime_bin())
        .args(["spec", "--bundle", bundle])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = fs::read_to_string(dir.path().join("config.json")).unwrap();
    let spec: oci_spec::runtime::Spec = serde_json::from_str(&text).expect("spec parses");
    let raw: Value = serde_json::from_str(&text).unwrap();
    assert!(raw["ociVersion"].as_str().unwrap().starts_with("1."));
    assert_eq!(raw["process"]["args"], json!(["sh"]));
    assert_eq!(raw["root"]["path"], "rootfs");
    let ns: Vec<&str> = raw["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    for want in ["pid", "network", "ipc", "uts", "mount"] {
        assert!(ns.contains(&want), "{want} in {ns:?}");
    }
    assert!(spec.process().is_some());
    // Like runc, an existing config.json is not overwritten.
    let again = Command::new(runtime_bin())
        .args(["spec", "--bundle", bundle])
        .output()
        .unwrap();
    assert!(!again.status.success());

    let rootless = tempfile::tempdir().unwrap();
    let out = Command::new(runtime_bin())
        .args([
            "spec",
            "--rootless",
            "--bundle",
            rootless.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let raw: Value =
        serde_json::from_str(&fs::read_to_string(rootless.path().join("config.json")).unwrap())
            .unwrap();
    serde_json::from_value::<oci_spec::runtime::Spec>(raw.clone()).expect("rootless spec parses");
    let ns = raw["linux"]["namespaces"].as_array().unwrap();
    assert!(
        ns.iter().any(|n| n["type"] == "user"),
        "rootless has a user namespace"
    );
    assert!(!raw["linux"]["uidMappings"].as_array().unwrap().is_empty());
}

/// The namespaces `spec` writes, by type, in order.
fn spec_namespaces(extra: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(runtime_bin())
        .arg("spec")
        .args(extra)
        .arg("--bundle")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let raw: Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join("config.json")).unwrap()).unwrap();
    raw["linux"]["namespaces"]
        .as_array()
        .expect("linux.namespaces")
        .iter()
        .map(|n| n["type"].as_str().expect("a type").to_owned())
        .collect()
}

#[test]
fn spec_lists_runcs_namespaces_so_a_caller_can_add_a_cgroup_namespace() {
    // runc 1.1's `spec` (and `spec --rootless`) has no cgroup namespace; tools that start from
    // it add their own, which must not then be listed twice.
    assert_eq!(
        spec_namespaces(&[]),
        ["pid", "network", "ipc", "uts", "mount"]
    );
    assert_eq!(
        spec_namespaces(&["--rootless"]),
        ["pid", "ipc", "uts", "mount", "user"]
    );
    let mut b = Bundle::new("specns").args(&["true"]);
    b.spec_mut()["linux"]["namespaces"] = spec_namespaces(&[])
        .iter()
        .map(|t| json!({ "type": t }))
        .collect();
    let (code, _, err) = run(b.add_namespace(json!({ "type": "cgroup" })));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn features_is_a_runtime_spec_features_document() {
    let out = Command::new(runtime_bin())
        .arg("features")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let features: oci_spec::runtime::Features =
        serde_json::from_slice(&out.stdout).expect("features parses");
    let raw: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(raw["ociVersionMin"].as_str().unwrap().starts_with("1.0"));
    assert!(raw["ociVersionMax"].as_str().unwrap().starts_with("1."));
    let hooks = features.hooks().clone().unwrap_or_default();
    for h in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        assert!(hooks.iter().any(|x| x == h), "{h} in {hooks:?}");
    }
    let ns: Vec<&str> = raw["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    for want in ["pid", "network", "ipc", "uts", "mount", "user", "cgroup"] {
        assert!(ns.contains(&want), "{want} in {ns:?}");
    }
    let opts: Vec<&str> = raw["mountOptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    for want in ["ro", "rbind", "nosuid", "rprivate"] {
        assert!(opts.contains(&want), "{want} in mountOptions");
    }
    if is_refeng() {
        assert!(raw["ociVersionMax"].as_str().unwrap().starts_with("1.2"));
        assert!(
            ns.contains(&"time"),
            "refeng-runc implements the time namespace"
        );
    }
}

#[test]
fn foreground_run_prints_what_runc_prints() {
    // The acceptance check: the same bundle gives the same output under runc.
    let script = "echo hello; hostname; id; umask; ulimit -n; pwd; env | sort; \
                  grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status; ls /dev | sort";
    let (code, out, err) = run(Bundle::new("same").sh(script));
    assert_eq!(code, 0, "stderr: {err}");
    assert!(
        out.starts_with("hello\nrefeng-test\nuid=0(root) gid=0(root)"),
        "{out}"
    );
    let runc = Path::new("/usr/sbin/runc");
    if is_refeng() {
        // .ci/setup installs runc: a missing one must not turn this comparison off silently.
        assert!(
            runc.exists(),
            "{} is missing: apt-get install runc (.ci/setup)",
            runc.display()
        );
        let c = Bundle::new("same-runc").sh(script).container();
        let mut cmd = Command::new(runc);
        cmd.arg("--root")
            .arg(c.bundle().state_root())
            .args(["run", "--bundle"])
            .arg(c.bundle().dir())
            .arg(c.id());
        // runc's foreground run deletes the container itself; the guard still removes cgroups.
        let expected =
            common::Spawned::start(cmd, &c.bundle().tmp().join("out")).wait(DEFAULT_TIMEOUT);
        assert_eq!(out, expected.stdout, "refeng-runc and runc print the same");
    }
}

#[test]
fn a_default_bundle_runs_and_execs_silently() {
    // runc's default spec asks for ambient capabilities without inheritable ones, which the
    // kernel cannot grant; runc leaves them out without a word, and so must we: a default
    // bundle prints nothing but what its program prints.
    let (code, out, err) = run(Bundle::new("silent").sh("echo ok"));
    assert_eq!((code, out.as_str(), err.as_str()), (0, "ok\n", ""));
    let c = Bundle::new("silentexec").sh("sleep 60").container();
    c.create();
    c.start();
    let exec = c.runtime(&["exec", c.id(), "echo", "ok"]).ok();
    assert_eq!((exec.stdout.as_str(), exec.stderr.as_str()), ("ok\n", ""));
}

#[test]
fn the_process_starts_with_no_blocked_or_ignored_signals() {
    // A runtime written in Rust (or Go) ignores SIGPIPE itself; the container's program must
    // not inherit that, nor any blocked signal. (Signals 32 and 33 belong to the C library and
    // are left as they are, as runc does.)
    let (code, out, err) =
        run(Bundle::new("sigs").args(&["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]));
    assert_eq!(code, 0, "{err}");
    let masks = keyed(&out);
    let hex = |k: &str| u64::from_str_radix(masks[k].trim(), 16).unwrap();
    assert_eq!(hex("SigBlk:"), 0, "{out}");
    assert_eq!(hex("SigIgn:") & !0x1_8000_0000, 0, "{out}");
}
