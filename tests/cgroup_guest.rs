//! Resource limits really enforced on real containers, on whichever cgroup driver the machine
//! has: memory (an OOM kill), pids (a fork limit), cpu (quota written and throttling), the freezer
//! (`pause`/`resume`) and the device filter (the v2 eBPF program or the v1 `devices` lists).
//!
//! Every test is `#[ignore]`d: it changes the machine's cgroups and is meant for the guests of
//! `vm-tests/` (one cgroup v2 only, one v1), which run this file with `--include-ignored`. On a
//! root host it can also be run by hand: `cargo test --test cgroup_guest -- --include-ignored`.
//!
//! Environment: `REFENG_RUNTIME` names the runtime (default: this package's `refeng-runc`).

mod rootfs;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn runtime() -> PathBuf {
    std::env::var_os("REFENG_RUNTIME").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_refeng-runc")),
        PathBuf::from,
    )
}

/// The machine's cgroup driver, as the runtime detects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    V1,
    V2,
}

fn driver() -> Driver {
    let fs = nix::sys::statfs::statfs("/sys/fs/cgroup").expect("statfs /sys/fs/cgroup");
    if fs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC {
        Driver::V2
    } else {
        Driver::V1
    }
}

/// One container's bundle, runtime root and cgroup; dropping it deletes the container (forced)
/// and its cgroup directories.
struct Container {
    work: tempfile::TempDir,
    id: String,
    cgroups_path: String,
    config: Value,
    /// Set once `create` or `run` was called.
    made: bool,
}

impl Container {
    /// A container running `sh -c script` with the config of `<runtime> spec`.
    fn new(script: &str) -> Self {
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let id = format!("cg-guest-{}-{serial}", std::process::id());
        let work = tempfile::Builder::new()
            .prefix("refeng-cgroup-guest-")
            .tempdir()
            .expect("temp dir");
        rootfs::busybox(&work.path().join("rootfs"));
        for dir in ["root", "bundle", "ctl", "rootfs/ctl"] {
            fs::create_dir_all(work.path().join(dir)).expect("work dirs");
        }
        let spec = Command::new(runtime())
            .args(["spec", "--bundle"])
            .arg(work.path().join("bundle"))
            .output()
            .expect("run `spec`");
        assert!(spec.status.success(), "`spec` failed: {spec:?}");
        let text = fs::read_to_string(work.path().join("bundle/config.json")).expect("config");
        let mut config: Value = serde_json::from_str(&text).expect("config.json is JSON");
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(["sh", "-c", script]);
        config["root"]["path"] = json!(work.path().join("rootfs"));
        config["mounts"]
            .as_array_mut()
            .expect("mounts")
            .push(json!({
                "destination": "/ctl",
                "type": "bind",
                "source": work.path().join("ctl"),
                "options": ["rbind", "rw"],
            }));
        let cgroups_path = format!("/refeng-guest/{id}");
        config["linux"]["cgroupsPath"] = json!(cgroups_path);
        Self {
            work,
            id,
            cgroups_path,
            config,
            made: false,
        }
    }

    /// Sets `linux.resources.<key>`.
    fn resource(mut self, key: &str, value: Value) -> Self {
        self.config["linux"]["resources"][key] = value;
        self
    }

    /// Appends to `linux.resources.devices` (after the spec's `deny a *:* rwm`).
    fn device_rule(mut self, rule: Value) -> Self {
        self.config["linux"]["resources"]["devices"]
            .as_array_mut()
            .expect("the spec's config has device rules")
            .push(rule);
        self
    }

    /// Bind-mounts a host file (a device node) into the container's /dev.
    fn bind_dev(mut self, host: &str, dest: &str) -> Self {
        self.config["mounts"].as_array_mut().expect("mounts").push(
            json!({"destination": dest, "type": "bind", "source": host, "options": ["bind"]}),
        );
        self
    }

    fn write_config(&self) -> PathBuf {
        let bundle = self.work.path().join("bundle");
        fs::write(
            bundle.join("config.json"),
            serde_json::to_string_pretty(&self.config).expect("config serializes"),
        )
        .expect("write config.json");
        bundle
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(runtime());
        cmd.arg("--root")
            .arg(self.work.path().join("root"))
            .args(args);
        cmd
    }

    /// `run --keep` in the foreground: the container's output and the runtime's exit status,
    /// with the stopped container (and its cgroup) kept for inspection.
    fn run(&mut self) -> Output {
        let bundle = self.write_config();
        self.made = true;
        self.command(&[
            "run",
            "--keep",
            "--bundle",
            &bundle.to_string_lossy(),
            &self.id,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run the runtime")
    }

    /// `create` then `start`; the container's stdio go to files in the work dir because it
    /// outlives the runtime.
    fn start(&mut self) {
        let bundle = self.write_config();
        self.made = true;
        let out = |name: &str| fs::File::create(self.work.path().join(name)).expect("out file");
        let status = self
            .command(&["create", "--bundle", &bundle.to_string_lossy(), &self.id])
            .stdin(Stdio::null())
            .stdout(out("stdout"))
            .stderr(out("stderr"))
            .status()
            .expect("run create");
        assert!(status.success(), "create failed: {}", self.errors());
        self.ok(&["start", &self.id.clone()]);
    }

    fn errors(&self) -> String {
        fs::read_to_string(self.work.path().join("stderr")).unwrap_or_default()
    }

    /// Runs a runtime command that must succeed and returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn status(&self) -> String {
        let state: Value = serde_json::from_str(&self.ok(&["state", &self.id])).expect("state");
        state["status"].as_str().expect("status").to_owned()
    }

    /// The container's cgroup directory for `controller` (ignored on v2).
    fn cgroup_dir(&self, controller: &str) -> PathBuf {
        let rel = self.cgroups_path.trim_start_matches('/');
        match driver() {
            Driver::V2 => Path::new("/sys/fs/cgroup").join(rel),
            Driver::V1 => Path::new("/sys/fs/cgroup").join(controller).join(rel),
        }
    }

    fn cgroup_file(&self, controller: &str, file: &str) -> String {
        let path = self.cgroup_dir(controller).join(file);
        fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            .trim()
            .to_owned()
    }

    fn ctl(&self, name: &str) -> String {
        fs::read_to_string(self.work.path().join("ctl").join(name))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.made {
            // Best effort: a failure here must not hide the test's own.
            let _ = self
                .command(&["delete", "--force", &self.id])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // Every hierarchy (v1 controllers, named ones like systemd, v2 at the top): the runtime
        // removed the container's cgroup; the shared parent goes once no other test uses it.
        let rel = Path::new(self.cgroups_path.trim_start_matches('/'));
        let hierarchies = fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .chain([PathBuf::from("/sys/fs/cgroup")]);
        for hierarchy in hierarchies {
            let dir = hierarchy.join(rel);
            let _ = fs::remove_dir(&dir);
            if let Some(parent) = dir.parent() {
                let _ = fs::remove_dir(parent);
            }
        }
    }
}

/// `key value` lines of a cgroup file such as `memory.events` or `cpu.stat`.
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
#[ignore = "changes the machine's cgroups: run in the vm-tests guests"]
fn memory_limit_oom_kills_a_hog() {
    const LIMIT: u64 = 32 << 20;
    // `tail` keeps the whole newline-free stream in memory: it grows until the kernel kills it,
    // and the shell (far smaller, so not the victim) reports how it ended: 128 + SIGKILL.
    let mut c = Container::new("tail /dev/zero; echo tail-exit=$?")
        .resource("memory", json!({"limit": LIMIT}));
    let out = c.run();
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stdout).contains("tail-exit=137"), "{out:?}");
    match driver() {
        Driver::V2 => {
            assert_eq!(c.cgroup_file("memory", "memory.max"), LIMIT.to_string());
            let events = c.cgroup_file("memory", "memory.events");
            assert!(
                field(&events, "oom_kill").is_some_and(|n| n >= 1),
                "no oom_kill in memory.events:\n{events}"
            );
        }
        Driver::V1 => {
            assert_eq!(
                c.cgroup_file("memory", "memory.limit_in_bytes"),
                LIMIT.to_string()
            );
            let oom = c.cgroup_file("memory", "memory.oom_control");
            assert!(
                field(&oom, "oom_kill").is_some_and(|n| n >= 1),
                "no oom_kill in memory.oom_control:\n{oom}"
            );
        }
    }
}

#[test]
#[ignore = "changes the machine's cgroups: run in the vm-tests guests"]
fn pids_limit_stops_forks_at_the_limit() {
    const LIMIT: u64 = 6;
    // An inner shell forks sleeps until a fork fails, which ends it (ash gives up on "can't
    // fork"); then the outer shell (pid 1 of the container) counts the other processes through
    // /proc with builtins only. It counts pids, not comm names: a child may not have exec'd yet.
    let mut c = Container::new(
        "sh -c 'for i in $(seq 1 12); do sleep 5 & done' 2>/dev/null; n=0; \
         for p in /proc/[0-9]*; do [ \"$p\" = /proc/$$ ] || n=$((n+1)); done; echo others=$n",
    )
    .resource("pids", json!({"limit": LIMIT}));
    let out = c.run();
    assert!(out.status.success(), "{out:?}");
    // When the fork failed, the outer and the inner shell held two of the LIMIT pids.
    assert!(
        text(&out.stdout).contains(&format!("others={}", LIMIT - 2)),
        "{out:?}"
    );
    assert_eq!(c.cgroup_file("pids", "pids.max"), LIMIT.to_string());
    let events = c.cgroup_file("pids", "pids.events");
    assert!(
        field(&events, "max").is_some_and(|n| n >= 1),
        "no refused fork in pids.events:\n{events}"
    );
}

#[test]
#[ignore = "changes the machine's cgroups: run in the vm-tests guests"]
fn cpu_quota_is_written_and_throttles() {
    const QUOTA: i64 = 10_000;
    const PERIOD: u64 = 100_000;
    const SHARES: u64 = 512;
    let mut c = Container::new("while :; do :; done").resource(
        "cpu",
        json!({"quota": QUOTA, "period": PERIOD, "shares": SHARES}),
    );
    c.start();
    match driver() {
        Driver::V2 => {
            assert_eq!(c.cgroup_file("cpu", "cpu.max"), format!("{QUOTA} {PERIOD}"));
            // runc's shares → weight conversion: 1 + (shares - 2) * 9999 / 262142.
            let weight = 1 + (SHARES - 2) * 9999 / 262_142;
            assert_eq!(c.cgroup_file("cpu", "cpu.weight"), weight.to_string());
        }
        Driver::V1 => {
            assert_eq!(c.cgroup_file("cpu", "cpu.cfs_quota_us"), QUOTA.to_string());
            assert_eq!(
                c.cgroup_file("cpu", "cpu.cfs_period_us"),
                PERIOD.to_string()
            );
            assert_eq!(c.cgroup_file("cpu", "cpu.shares"), SHARES.to_string());
        }
    }
    // A busy loop at 10% of a CPU is throttled in nearly every period.
    let started = Instant::now();
    let throttled = loop {
        let stat = c.cgroup_file("cpu", "cpu.stat");
        let n = field(&stat, "nr_throttled").unwrap_or(0);
        if n >= 3 || started.elapsed() > Duration::from_secs(20) {
            break (n, stat);
        }
        sleep(Duration::from_millis(200));
    };
    assert!(
        throttled.0 >= 3,
        "the busy loop was not throttled:\n{}",
        throttled.1
    );
}

#[test]
#[ignore = "changes the machine's cgroups: run in the vm-tests guests"]
fn pause_freezes_and_resume_thaws() {
    let mut c =
        Container::new("i=0; while :; do i=$((i+1)); echo $i > /ctl/count; sleep 0.1; done");
    c.start();
    let advancing = |c: &Container| {
        let before = c.ctl("count");
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            sleep(Duration::from_millis(100));
            if c.ctl("count") != before {
                return true;
            }
        }
        false
    };
    assert!(advancing(&c), "the counter never ran");
    c.ok(&["pause", &c.id]);
    assert_eq!(c.status(), "paused");
    match driver() {
        Driver::V2 => {
            assert_eq!(c.cgroup_file("freezer", "cgroup.freeze"), "1");
            assert_eq!(
                field(&c.cgroup_file("freezer", "cgroup.events"), "frozen"),
                Some(1)
            );
        }
        Driver::V1 => assert_eq!(c.cgroup_file("freezer", "freezer.state"), "FROZEN"),
    }
    // Let a write that raced with the freeze land before judging.
    sleep(Duration::from_millis(300));
    assert!(!advancing(&c), "the counter ran while paused");
    c.ok(&["resume", &c.id]);
    assert_eq!(c.status(), "running");
    assert!(advancing(&c), "the counter did not run again after resume");
}

/// Writes to the container's /dev/kmsg (bind-mounted from the host: c 1:11, a device none of the
/// default rules allow) and reports whether the open was allowed.
const KMSG_PROBE: &str =
    "if echo 'refeng cgroup_guest device probe' > /dev/kmsg; then echo kmsg-w-ok; \
     else echo kmsg-w-denied; fi";

fn kmsg_probe(rules: &[Value]) -> String {
    let mut c = Container::new(KMSG_PROBE).bind_dev("/dev/kmsg", "/dev/kmsg");
    for rule in rules {
        c = c.device_rule(rule.clone());
    }
    let out = c.run();
    assert!(out.status.success(), "{out:?}");
    let stdout = text(&out.stdout);
    ["kmsg-w-ok", "kmsg-w-denied"]
        .into_iter()
        .find(|verdict| stdout.contains(verdict))
        .unwrap_or_else(|| panic!("the probe printed no verdict: {out:?}"))
        .to_owned()
}

#[test]
#[ignore = "changes the machine's cgroups: run in the vm-tests guests"]
fn device_rules_decide_who_opens_a_device() {
    // The spec's `deny a *:* rwm` covers a device no default rule allows.
    assert_eq!(kmsg_probe(&[]), "kmsg-w-denied");
    // An allow rule opens it.
    let allow = json!({"allow": true, "type": "c", "major": 1, "minor": 11, "access": "rw"});
    assert_eq!(kmsg_probe(std::slice::from_ref(&allow)), "kmsg-w-ok");
    // The last matching rule decides: a later write deny closes it again.
    let deny_w = json!({"allow": false, "type": "c", "major": 1, "minor": 11, "access": "w"});
    assert_eq!(kmsg_probe(&[allow, deny_w]), "kmsg-w-denied");
}

#[test]
#[ignore = "changes the machine's cgroups: run in the vm-tests guests"]
fn default_devices_stay_usable_under_deny_all() {
    // runtime-spec "Default Devices" are allowed after the spec's own rules, as in runc, so even
    // an explicit deny of /dev/null cannot take it away.
    let mut c = Container::new(
        "if echo x > /dev/null; then echo null-w-ok; else echo null-w-denied; fi; \
         if cat /dev/null; then echo null-r-ok; else echo null-r-denied; fi",
    )
    .device_rule(json!({"allow": false, "type": "c", "major": 1, "minor": 3, "access": "rwm"}));
    let out = c.run();
    assert!(out.status.success(), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("null-w-ok"), "{out:?}");
    assert!(stdout.contains("null-r-ok"), "{out:?}");
}

#[test]
#[ignore = "changes the machine's cgroups: run in the vm-tests guests"]
fn cpuset_confines_the_container_to_its_cpus() {
    // Builtins only: the shell reads its own allowed CPUs.
    let mut c = Container::new(
        "while read k v; do [ \"$k\" = Cpus_allowed_list: ] && echo cpus=$v; done < /proc/self/status; true",
    )
    .resource("cpu", json!({"cpus": "0", "mems": "0"}));
    let out = c.run();
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stdout).contains("cpus=0\n"), "{out:?}");
    assert_eq!(c.cgroup_file("cpuset", "cpuset.cpus"), "0");
    assert_eq!(c.cgroup_file("cpuset", "cpuset.mems"), "0");
}

#[test]
#[ignore = "changes the machine's cgroups: run in the vm-tests guests"]
fn update_changes_the_limits_of_a_running_container() {
    let mut c = Container::new("sleep 600")
        .resource("memory", json!({"limit": 64u64 << 20}))
        .resource("pids", json!({"limit": 10}));
    c.start();
    c.ok(&[
        "update",
        "--memory",
        "96m",
        "--pids-limit",
        "20",
        "--cpu-quota",
        "20000",
        "--cpu-period",
        "100000",
        &c.id,
    ]);
    let memory = (96u64 << 20).to_string();
    match driver() {
        Driver::V2 => {
            assert_eq!(c.cgroup_file("memory", "memory.max"), memory);
            assert_eq!(c.cgroup_file("cpu", "cpu.max"), "20000 100000");
        }
        Driver::V1 => {
            assert_eq!(c.cgroup_file("memory", "memory.limit_in_bytes"), memory);
            assert_eq!(c.cgroup_file("cpu", "cpu.cfs_quota_us"), "20000");
        }
    }
    assert_eq!(c.cgroup_file("pids", "pids.max"), "20");
    assert_eq!(c.status(), "running");
}

#[test]
#[ignore = "changes the machine's cgroups: run in the vm-tests guests"]
fn block_io_weight_reaches_the_scheduler() {
    const WEIGHT: u64 = 500;
    let mut c = Container::new("true").resource("blockIO", json!({"weight": WEIGHT}));
    let out = c.run();
    assert!(out.status.success(), "{out:?}");
    // BFQ (which the vm-tests guests load, as Debian hosts do) takes the blkio scale as is and
    // reads back as `default N`; without it v2 has io.weight on its own scale.
    let read = match driver() {
        Driver::V2 if c.cgroup_dir("io").join("io.bfq.weight").exists() => {
            c.cgroup_file("io", "io.bfq.weight")
        }
        Driver::V2 => {
            let converted = 1 + (WEIGHT - 10) * 9999 / 990;
            assert_eq!(
                c.cgroup_file("io", "io.weight"),
                format!("default {converted}")
            );
            return;
        }
        Driver::V1 => c.cgroup_file("blkio", "blkio.bfq.weight"),
    };
    assert!(
        read == WEIGHT.to_string() || read == format!("default {WEIGHT}"),
        "weight reads back as {read:?}"
    );
}
