//! refeng-containerd's task manager against real shims, without the gRPC layer: refeng-shim
//! (`io.containerd.refeng.v2`) over refeng-runc and Debian's containerd-shim-runc-v2
//! (`io.containerd.runc.v2`) over runc, with busybox bundles. The manager starts each shim with
//! the shim v2 `start` protocol, drives it over ttrpc, receives its events on the ttrpc
//! endpoint, and after a simulated daemon crash re-attaches from the bundles. Needs root, runc,
//! containerd (for the runc shim) and busybox-static, which .ci/setup installs.

mod rootfs;
mod shims;

use std::ffi::OsString;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use containerd_shim_protos::api;
use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::shim::event::Envelope;
use protobuf::well_known_types::any::Any;
use protobuf::{CodedOutputStream, Message};
use refeng::containerd::tasks::{
    CreateTask, ErrorCode, ManagerConfig, ProcessStatus, TaskManager, TaskOpError,
};
use refeng_spec::task::{ExecStatus, Status};

const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-refeng-v2");
const REFENG_RUNC: &str = env!("CARGO_BIN_EXE_refeng-runc");
const RUNC: &str = "/usr/sbin/runc";
const RUNC_SHIM: &str = "/usr/bin/containerd-shim-runc-v2";
const NS: &str = "testns";

/// Which shim and OCI runtime a test runs.
#[derive(Clone, Copy, Debug)]
enum Flavour {
    /// refeng-shim over refeng-runc.
    Refeng,
    /// containerd-shim-runc-v2 over runc.
    Runc,
}

impl Flavour {
    fn runtime(self) -> &'static str {
        match self {
            Flavour::Refeng => "io.containerd.refeng.v2",
            Flavour::Runc => "io.containerd.runc.v2",
        }
    }

    fn oci(self) -> &'static str {
        match self {
            Flavour::Refeng => REFENG_RUNC,
            Flavour::Runc => RUNC,
        }
    }
}

fn require() {
    assert!(nix::unistd::geteuid().is_root(), "cannot run: not root");
    for p in [RUNC, RUNC_SHIM, rootfs::BUSYBOX] {
        assert!(
            Path::new(p).exists(),
            "cannot run: {p} is missing (apt-get install runc containerd busybox-static)"
        );
    }
}

/// A daemon's worth of task manager in a temporary folder; dropping it removes every shim,
/// container, mount and cgroup the test made, by pid and by path, also after a failure.
struct Env {
    dir: tempfile::TempDir,
    manager: Option<Arc<TaskManager>>,
    endpoint: Option<refeng::containerd::tasks::forward::EventEndpoint>,
    events: Arc<Mutex<Vec<Envelope>>>,
    rootfs: PathBuf,
    cgroup_parent: String,
}

impl Env {
    fn new() -> Self {
        require();
        // Shim log lines come through the daemon's log: shown for a failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "debug".into()),
            )
            .with_test_writer()
            .try_init();
        let dir = tempfile::Builder::new()
            .prefix("ctasks")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("bin")).unwrap();
        symlink(SHIM, d.join("bin/containerd-shim-refeng-v2")).unwrap();
        symlink(RUNC_SHIM, d.join("bin/containerd-shim-runc-v2")).unwrap();
        let rootfs = d.join("rootfs");
        rootfs::busybox(&rootfs);
        let cgroup_parent = format!("refeng-ctasks-{}", d.file_name().unwrap().to_string_lossy());
        let mut env = Self {
            dir,
            manager: None,
            endpoint: None,
            events: Arc::new(Mutex::new(Vec::new())),
            rootfs,
            cgroup_parent,
        };
        env.start_daemon();
        env
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn config(&self) -> ManagerConfig {
        let d = self.path();
        ManagerConfig {
            state: d.join("state"),
            root: d.join("root"),
            address: d.join("c.sock").to_string_lossy().into_owned(),
            ttrpc_address: d.join("c.sock.ttrpc"),
            publish_binary: std::env::current_exe().unwrap(),
            shim_dirs: vec![d.join("bin")],
            shim_env: vec![(
                OsString::from("REFENG_SHIM_SOCKET_DIR"),
                d.join("s").into_os_string(),
            )],
        }
    }

    /// Starts the daemon's task side: restore, then the event endpoint, as the daemon does.
    fn start_daemon(&mut self) {
        let events = self.events.clone();
        let manager = TaskManager::new(
            self.config(),
            Arc::new(move |e| events.lock().unwrap().push(e)),
        );
        manager.restore();
        self.endpoint = Some(manager.serve_events().unwrap());
        self.manager = Some(manager);
    }

    /// What `kill -9` of the daemon leaves: shims and bundles, no daemon.
    fn crash_daemon(&mut self) {
        self.endpoint = None;
        self.manager = None;
    }

    fn m(&self) -> &TaskManager {
        self.manager.as_ref().unwrap()
    }

    fn options(&self, flavour: Flavour) -> Any {
        // containerd.runc.v1.Options: binary_name = 6, root = 7.
        let mut value = Vec::new();
        {
            let mut out = CodedOutputStream::vec(&mut value);
            out.write_string(6, flavour.oci()).unwrap();
            out.write_string(7, &self.runtime_root(flavour).to_string_lossy())
                .unwrap();
            out.flush().unwrap();
        }
        Any {
            type_url: "containerd.runc.v1.Options".into(),
            value,
            ..Default::default()
        }
    }

    fn runtime_root(&self, flavour: Flavour) -> PathBuf {
        self.path().join(format!("runtime-{flavour:?}"))
    }

    fn spec(&self, id: &str, args: &[&str]) -> Vec<u8> {
        let mut spec: serde_json::Value =
            serde_json::from_str(include_str!("common/runc-default-spec.json")).unwrap();
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = args.into();
        spec["process"]["env"] = vec!["PATH=/bin"].into();
        spec["linux"]["cgroupsPath"] = format!("/{}/{id}", self.cgroup_parent).into();
        serde_json::to_vec(&spec).unwrap()
    }

    fn create(&self, flavour: Flavour, id: &str, args: &[&str]) -> u32 {
        let info = self
            .m()
            .create(CreateTask {
                namespace: NS.into(),
                id: id.into(),
                runtime: flavour.runtime().into(),
                options: Some(self.options(flavour)),
                spec: self.spec(id, args),
                rootfs: vec![api::Mount {
                    type_: "bind".into(),
                    source: self.rootfs.to_string_lossy().into_owned(),
                    options: vec!["rbind".into(), "rw".into()],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("create {id}: {e:#?}"));
        info.pid
    }

    fn exec_spec(args: &[&str]) -> Any {
        let process = serde_json::json!({
            "args": args, "env": ["PATH=/bin"], "cwd": "/", "user": {"uid": 0, "gid": 0},
            "terminal": false,
        });
        Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
            value: serde_json::to_vec(&process).unwrap(),
            ..Default::default()
        }
    }

    fn status(&self, id: &str) -> ProcessStatus {
        self.m().get(NS, id, "").unwrap().status
    }

    /// Events on the bus for `id`: (topic, process id as the event names it).
    fn events_for(&self, id: &str) -> Vec<(String, String)> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| {
                let any = e.event.as_ref()?;
                let (cid, pid) = match e.topic.as_str() {
                    "/tasks/exit" => {
                        let m = ev::TaskExit::parse_from_bytes(&any.value).ok()?;
                        (m.container_id, m.id)
                    }
                    "/tasks/exec-added" => {
                        let m = ev::TaskExecAdded::parse_from_bytes(&any.value).ok()?;
                        (m.container_id, m.exec_id)
                    }
                    "/tasks/exec-started" => {
                        let m = ev::TaskExecStarted::parse_from_bytes(&any.value).ok()?;
                        (m.container_id, m.exec_id)
                    }
                    "/tasks/create" => (
                        ev::TaskCreate::parse_from_bytes(&any.value)
                            .ok()?
                            .container_id,
                        String::new(),
                    ),
                    "/tasks/start" => (
                        ev::TaskStart::parse_from_bytes(&any.value)
                            .ok()?
                            .container_id,
                        String::new(),
                    ),
                    "/tasks/delete" => (
                        ev::TaskDelete::parse_from_bytes(&any.value)
                            .ok()?
                            .container_id,
                        String::new(),
                    ),
                    "/tasks/paused" => (
                        ev::TaskPaused::parse_from_bytes(&any.value)
                            .ok()?
                            .container_id,
                        String::new(),
                    ),
                    "/tasks/resumed" => (
                        ev::TaskResumed::parse_from_bytes(&any.value)
                            .ok()?
                            .container_id,
                        String::new(),
                    ),
                    _ => return None,
                };
                (cid == id).then(|| (e.topic.clone(), pid))
            })
            .collect()
    }

    fn wait_for_event(&self, id: &str, topic: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.events_for(id).iter().any(|(t, _)| t == topic) {
            assert!(
                Instant::now() < deadline,
                "no {topic} for {id}: {:?}",
                self.events_for(id)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The shims serving this test's daemon (their command line names its address).
    fn shim_pids(&self) -> Vec<i32> {
        let address = self.path().join("c.sock").to_string_lossy().into_owned();
        shims::serving(&address, "containerd-shim-")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.crash_daemon();
        // Containers first, through each runtime's own state under our folder.
        for flavour in [Flavour::Refeng, Flavour::Runc] {
            let root = self.runtime_root(flavour);
            if let Ok(entries) = std::fs::read_dir(&root) {
                for entry in entries.flatten() {
                    let _ = Command::new(flavour.oci())
                        .arg("--root")
                        .arg(&root)
                        .args(["delete", "--force"])
                        .arg(entry.file_name())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
        for pid in self.shim_pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // Rootfs mounts the shims made in our bundles.
        let prefix = self.path().to_string_lossy().into_owned();
        if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
            let mut points: Vec<&str> = info
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|p| p.starts_with(&prefix))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
            for c in controllers.flatten() {
                let parent = c.path().join(&self.cgroup_parent);
                if let Ok(children) = std::fs::read_dir(&parent) {
                    for child in children.flatten().filter(|e| e.path().is_dir()) {
                        let _ = std::fs::remove_dir(child.path());
                    }
                }
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

fn code(r: Result<impl std::fmt::Debug, TaskOpError>) -> ErrorCode {
    match r {
        Ok(v) => panic!("expected a refusal, got {v:?}"),
        Err(e) => e.code(),
    }
}

fn lifecycle(flavour: Flavour) {
    let env = Env::new();
    let m = env.m();
    let id = "life";
    env.create(flavour, id, &["sleep", "1000"]);
    assert_eq!(env.status(id), ProcessStatus::Task(Status::Created));
    assert_eq!(code(m.pause(NS, id)), ErrorCode::FailedPrecondition);
    let pid = m.start(NS, id, "").unwrap();
    assert!(pid > 0);
    assert_eq!(env.status(id), ProcessStatus::Task(Status::Running));
    assert_eq!(code(m.start(NS, id, "")), ErrorCode::FailedPrecondition);

    m.exec(
        NS,
        id,
        "e1",
        Some(Env::exec_spec(&["sleep", "1000"])),
        Default::default(),
    )
    .unwrap();
    assert_eq!(
        code(m.exec(
            NS,
            id,
            "e1",
            Some(Env::exec_spec(&["true"])),
            Default::default()
        )),
        ErrorCode::AlreadyExists
    );
    let exec_pid = m.start(NS, id, "e1").unwrap();
    let pids: Vec<u32> = m.pids(NS, id).unwrap().iter().map(|p| p.pid).collect();
    assert!(
        pids.contains(&pid) && pids.contains(&exec_pid),
        "{pids:?} has {pid} and {exec_pid}"
    );
    assert!(m.stats(NS, id).unwrap().is_some(), "stats");

    m.pause(NS, id).unwrap();
    assert_eq!(env.status(id), ProcessStatus::Task(Status::Paused));
    // An exec of a frozen task is not signalled (SIGKILL would stay pending under v1).
    assert_eq!(
        code(m.kill(NS, id, "e1", 9, false)),
        ErrorCode::FailedPrecondition
    );
    assert_eq!(code(m.delete(NS, id)), ErrorCode::FailedPrecondition);
    m.resume(NS, id).unwrap();
    assert_eq!(code(m.delete(NS, id)), ErrorCode::FailedPrecondition);

    assert_eq!(
        code(m.delete_process(NS, id, "e1")),
        ErrorCode::FailedPrecondition
    );
    m.kill(NS, id, "e1", 9, false).unwrap();
    assert_eq!(m.wait(NS, id, "e1").unwrap().exit_status, 137);
    assert_eq!(
        m.get(NS, id, "e1").unwrap().status,
        ProcessStatus::Exec(ExecStatus::Stopped)
    );
    assert_eq!(code(m.kill(NS, id, "e1", 9, false)), ErrorCode::NotFound);
    assert_eq!(m.delete_process(NS, id, "e1").unwrap().exit_status, 137);
    assert_eq!(code(m.get(NS, id, "e1")), ErrorCode::NotFound);

    m.kill(NS, id, "", 9, false).unwrap();
    let exit = m.wait(NS, id, "").unwrap();
    assert_eq!(exit.exit_status, 137);
    assert_eq!(env.status(id), ProcessStatus::Task(Status::Stopped));
    assert_eq!(code(m.kill(NS, id, "", 9, false)), ErrorCode::NotFound);
    let bundle = env
        .path()
        .join("state/io.containerd.runtime.v2.task")
        .join(NS)
        .join(id);
    assert!(bundle.join("config.json").exists());
    assert_eq!(m.delete(NS, id).unwrap().exit_status, 137);
    assert_eq!(code(m.get(NS, id, "")), ErrorCode::NotFound);
    assert!(
        !bundle.exists(),
        "the bundle is removed, but holds {:?}",
        std::fs::read_dir(&bundle).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    env.wait_for_event(id, "/tasks/delete");
    let topics: Vec<String> = env.events_for(id).into_iter().map(|(t, _)| t).collect();
    for want in [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exec-added",
        "/tasks/exec-started",
        "/tasks/paused",
        "/tasks/resumed",
        "/tasks/exit",
        "/tasks/delete",
    ] {
        assert!(topics.iter().any(|t| t == want), "{want} in {topics:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env.shim_pids().is_empty() {
        assert!(Instant::now() < deadline, "the shim exits after delete");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn lifecycle_under_refeng_shim() {
    lifecycle(Flavour::Refeng);
}

#[test]
fn lifecycle_under_runc_shim() {
    lifecycle(Flavour::Runc);
}

/// containerd passes Kill of a paused task to the shim, and the runtime thaws the cgroup after
/// SIGKILL (runc 1.1 does; the v1 freezer would otherwise keep the kill pending for ever).
fn kill_paused(flavour: Flavour) {
    let env = Env::new();
    let m = env.m();
    let id = "frozen";
    env.create(flavour, id, &["sleep", "1000"]);
    m.start(NS, id, "").unwrap();
    m.pause(NS, id).unwrap();
    assert_eq!(env.status(id), ProcessStatus::Task(Status::Paused));
    m.kill(NS, id, "", 9, false).unwrap();
    assert_eq!(m.wait(NS, id, "").unwrap().exit_status, 137);
    assert_eq!(env.status(id), ProcessStatus::Task(Status::Stopped));
    assert_eq!(m.delete(NS, id).unwrap().exit_status, 137);
}

#[test]
fn a_paused_task_is_killed_under_refeng_shim() {
    kill_paused(Flavour::Refeng);
}

#[test]
fn a_paused_task_is_killed_under_runc_shim() {
    kill_paused(Flavour::Runc);
}

#[test]
fn an_unknown_runtime_and_a_second_create_are_refused_and_leave_nothing() {
    let env = Env::new();
    let m = env.m();
    let mut req = CreateTask {
        namespace: NS.into(),
        id: "x".into(),
        runtime: "io.containerd.nosuch.v1".into(),
        spec: env.spec("x", &["true"]),
        ..Default::default()
    };
    assert_eq!(code(m.create(req.clone())), ErrorCode::NotFound);
    req.runtime = "nodots".into();
    assert_eq!(code(m.create(req.clone())), ErrorCode::InvalidArgument);
    req.runtime = Flavour::Refeng.runtime().into();
    req.id = "../escape".into();
    assert_eq!(code(m.create(req)), ErrorCode::InvalidArgument);
    let ns_dir = env
        .path()
        .join("state/io.containerd.runtime.v2.task")
        .join(NS);
    assert!(
        std::fs::read_dir(&ns_dir).map_or(true, |mut d| d.next().is_none()),
        "no bundle left behind"
    );
    env.create(Flavour::Refeng, "twice", &["sleep", "1000"]);
    let again = m.create(CreateTask {
        namespace: NS.into(),
        id: "twice".into(),
        runtime: Flavour::Refeng.runtime().into(),
        spec: env.spec("twice", &["true"]),
        ..Default::default()
    });
    assert_eq!(code(again), ErrorCode::AlreadyExists);
    assert_eq!(m.delete(NS, "twice").unwrap().exit_status, 137);
}

fn restart(flavour: Flavour) {
    let mut env = Env::new();
    env.create(flavour, "alive", &["sleep", "1000"]);
    env.m().start(NS, "alive", "").unwrap();
    env.create(flavour, "dies", &["sleep", "1000"]);
    let dies_pid = env.m().start(NS, "dies", "").unwrap();
    env.create(flavour, "orphan", &["sleep", "1000"]);
    let orphan_pid = env.m().start(NS, "orphan", "").unwrap();
    let orphan_shim = env.m().shim_pid(NS, "orphan").unwrap();
    env.wait_for_event("orphan", "/tasks/start");

    env.crash_daemon();
    // While the daemon is down: one init is killed, one shim dies (its container lives on).
    let kill = |pid: u32| {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap()
    };
    kill(dies_pid);
    kill(orphan_shim);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{dies_pid}")).exists() {
        assert!(Instant::now() < deadline, "init {dies_pid} not reaped");
        std::thread::sleep(Duration::from_millis(20));
    }
    env.start_daemon();
    let m = env.m();

    assert_eq!(env.status("alive"), ProcessStatus::Task(Status::Running));
    m.exec(
        NS,
        "alive",
        "after",
        Some(Env::exec_spec(&["true"])),
        Default::default(),
    )
    .unwrap();
    m.start(NS, "alive", "after").unwrap();
    assert_eq!(m.wait(NS, "alive", "after").unwrap().exit_status, 0);

    assert_eq!(env.status("dies"), ProcessStatus::Task(Status::Stopped));
    assert_eq!(m.wait(NS, "dies", "").unwrap().exit_status, 137);
    env.wait_for_event("dies", "/tasks/exit");

    // The dead shim's task is cleaned up: gone from the list, its container killed.
    assert_eq!(code(m.get(NS, "orphan", "")), ErrorCode::NotFound);
    env.wait_for_event("orphan", "/tasks/exit");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{orphan_pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{orphan_pid}/stat"))
            .is_ok_and(|s| s.contains(") Z "))
    {
        assert!(
            Instant::now() < deadline,
            "orphaned init {orphan_pid} lives on"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let ids: Vec<String> = m.list(NS).into_iter().map(|p| p.id).collect();
    assert_eq!(ids, ["alive", "dies"]);

    // The shim's own queued exit (if it kept one) comes before its delete event: once the
    // delete is seen, every exit of "dies" has been through the daemon, and only one passed.
    assert_eq!(m.delete(NS, "dies").unwrap().exit_status, 137);
    env.wait_for_event("dies", "/tasks/delete");
    let exits = env
        .events_for("dies")
        .into_iter()
        .filter(|(t, _)| t == "/tasks/exit")
        .count();
    assert_eq!(exits, 1, "{:?}", env.events_for("dies"));

    m.kill(NS, "alive", "", 9, false).unwrap();
    m.wait(NS, "alive", "").unwrap();
    m.delete(NS, "alive").unwrap();
}

#[test]
fn restart_reattaches_reports_missed_exits_and_cleans_up_dead_shims_refeng() {
    restart(Flavour::Refeng);
}

#[test]
fn restart_reattaches_reports_missed_exits_and_cleans_up_dead_shims_runc() {
    restart(Flavour::Runc);
}
