//! Seccomp filters loaded into real child processes: errno rules, argument conditions, Docker's
//! default profile as dockerd writes it into config.json, and `SCMP_ACT_NOTIFY` handed to an agent.
//!
//! A filter cannot be unloaded, so each test re-runs this test binary as a child (the ignored
//! `seccomp_child` test, selected by `REFENG_SECCOMP_CHILD`); the child loads the filter, makes
//! the syscalls and writes what it saw as `key=value` lines to `report` in a temporary folder.
//!
//! The last tests run real containers (the runtime under test, see `common`) under filters that
//! come between the runtime and its own last steps: an older Docker profile loaded before the
//! user switch, and a `SCMP_ACT_NOTIFY` filter whose agent must get the fd during `create`.
//!
//! `fixtures/docker-default-seccomp.json` is moby's `profiles/seccomp/default.json` (moby/profiles
//! at cd3bed8) as dockerd's `setupSeccomp` turns it into `linux.seccomp` on amd64 with Docker's
//! default capabilities and a kernel of 4.8 or later: `archMap` resolved to `architectures`,
//! `includes`/`excludes` applied and dropped, fields in runtime-spec Go order. Only whitespace
//! differs from the compact config.json containerd writes.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use libseccomp::{ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{unshare, CloneFlags};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use oci_spec::runtime::LinuxSeccomp;
use refeng::conformance::seccomp_profiles;
use refeng::runtime::seccomp::{compile, send_listener};
use serde_json::json;

mod common;

use common::{Bundle, DEFAULT_TIMEOUT};

const CHILD_MODE: &str = "REFENG_SECCOMP_CHILD";
const CHILD_DIR: &str = "REFENG_SECCOMP_DIR";
const DOCKER_PROFILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/docker-default-seccomp.json"
);
const NOTIFY_METADATA: &str = "refeng-test-agent";
const NOTIFY_CONTAINER_ID: &str = "seccomp-notify-test";
/// Only to turn a broken child into a failure instead of a hung test run.
const HANG_GUARD: Duration = Duration::from_secs(60);

// ---- child side ---------------------------------------------------------------------------------

#[test]
#[ignore = "child-process entry point: the other tests run it with REFENG_SECCOMP_CHILD set"]
fn seccomp_child() {
    let Ok(mode) = std::env::var(CHILD_MODE) else {
        return;
    };
    let dir = PathBuf::from(std::env::var_os(CHILD_DIR).expect("REFENG_SECCOMP_DIR is set"));
    let report = match mode.as_str() {
        "errno" => child_errno(&dir),
        "args" => child_args(),
        "docker" => child_docker(),
        "notify" => child_notify(&dir),
        "cloexec-eperm" => child_cloexec(libc::EPERM),
        "cloexec-enosys" => child_cloexec(libc::ENOSYS),
        other => panic!("unknown child mode {other}"),
    };
    let text: String = report.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    fs::write(dir.join("report"), text).expect("report written");
    // Leave before the harness does anything else under the filter.
    std::process::exit(0);
}

/// Compiles `json`, sets no_new_privs (so the test needs no CAP_SYS_ADMIN) and loads the filter.
fn load(json: &str) -> Option<OwnedFd> {
    let spec: LinuxSeccomp = serde_json::from_str(json).expect("seccomp JSON parses");
    let filter = compile(&spec).expect("filter compiles");
    nix::sys::prctl::set_no_new_privs().expect("no_new_privs");
    filter.load().expect("filter loads")
}

fn outcome<T>(result: Result<T, Errno>) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(errno) => (errno as i32).to_string(),
    }
}

fn child_errno(dir: &Path) -> Vec<(&'static str, String)> {
    fs::create_dir(dir.join("existing")).expect("setup dir");
    let fd = load(
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
              {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
              {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"}
            ]}"#,
    );
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o755);
    vec![
        ("listener", fd.is_some().to_string()),
        ("mkdir", outcome(nix::unistd::mkdir(&dir.join("new"), mode))),
        // std's remove_dir is rmdir(2) on x86_64 (this suite, like the fixture, is amd64's).
        (
            "rmdir",
            outcome(
                fs::remove_dir(dir.join("existing"))
                    .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0))),
            ),
        ),
    ]
}

fn child_args() -> Vec<(&'static str, String)> {
    // EAFNOSUPPORT for AF_INET; EOPNOTSUPP for AF_UNIX datagrams whatever flags ride in the type
    // argument (the mask 0xf keeps only the type bits). SOCK_RAW (3) shares a bit with
    // SOCK_DGRAM (2) but not the masked value, so it tells mask and datum apart.
    load(
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
              {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
               "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
              {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95,
               "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                        {"index": 1, "value": 15, "valueTwo": 2, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]}"#,
    );
    let unix = |ty, flags| socket(AddressFamily::Unix, ty, flags, None);
    vec![
        (
            "unix_stream",
            outcome(unix(SockType::Stream, SockFlag::empty())),
        ),
        (
            "unix_seqpacket",
            outcome(unix(SockType::SeqPacket, SockFlag::SOCK_CLOEXEC)),
        ),
        (
            "unix_dgram",
            outcome(unix(SockType::Datagram, SockFlag::empty())),
        ),
        (
            "unix_dgram_cloexec",
            outcome(unix(SockType::Datagram, SockFlag::SOCK_CLOEXEC)),
        ),
        // AF_UNIX turns SOCK_RAW into SOCK_DGRAM, so it succeeds unless the rule matches.
        ("unix_raw", outcome(unix(SockType::Raw, SockFlag::empty()))),
        (
            "inet_stream",
            outcome(socket(
                AddressFamily::Inet,
                SockType::Stream,
                SockFlag::empty(),
                None,
            )),
        ),
    ]
}

fn child_docker() -> Vec<(&'static str, String)> {
    let profile = fs::read_to_string(DOCKER_PROFILE).expect("fixture read");
    let fd = load(&profile);
    let stream = |family| socket(family, SockType::Stream, SockFlag::empty(), None);
    vec![
        ("listener", fd.is_some().to_string()),
        ("getpid", nix::unistd::getpid().as_raw().to_string()),
        ("unshare_user", outcome(unshare(CloneFlags::CLONE_NEWUSER))),
        ("unshare_uts", outcome(unshare(CloneFlags::CLONE_NEWUTS))),
        ("socket_unix", outcome(stream(AddressFamily::Unix))),
        // The profile allows every family but AF_ALG (38) and AF_VSOCK (40).
        (
            "socket_alg",
            outcome(socket(
                AddressFamily::Alg,
                SockType::SeqPacket,
                SockFlag::empty(),
                None,
            )),
        ),
        ("socket_vsock", outcome(stream(AddressFamily::Vsock))),
        // glibc tries clone3 (ERRNO 38 in the profile), then clone without namespace flags
        // (allowed by the MASKED_EQ rule).
        (
            "thread",
            match std::thread::spawn(|| 7).join() {
                Ok(7) => "ok".to_owned(),
                _ => "failed".to_owned(),
            },
        ),
    ]
}

fn child_notify(dir: &Path) -> Vec<(&'static str, String)> {
    let listener = dir.join("agent.sock");
    let fd = load(&format!(
        r#"{{"defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": {listener:?}, "listenerMetadata": "{NOTIFY_METADATA}",
            "syscalls": [{{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}}]}}"#,
    ))
    .expect("a NOTIFY filter yields a listener fd");
    let pid = std::process::id();
    let state = format!(
        r#"{{"ociVersion": "1.2.0", "id": "{NOTIFY_CONTAINER_ID}", "status": "creating",
            "pid": {pid}, "bundle": "/nonexistent"}}"#
    );
    send_listener(fd, &listener, state.as_bytes(), NOTIFY_METADATA).expect("fd sent to agent");
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o755);
    vec![(
        "mkdir",
        outcome(nix::unistd::mkdir(&dir.join("notified"), mode)),
    )]
}

/// Marks descriptors close-on-exec under a filter that refuses close_range(2) with `errno`: EPERM
/// as a profile that does not list it (Docker 19.03's), ENOSYS as a kernel older than 5.9.
fn child_cloexec(errno: i32) -> Vec<(&'static str, String)> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let is_cloexec = |fd: &OwnedFd| {
        let flags = fcntl(fd, FcntlArg::F_GETFD).expect("F_GETFD");
        flags & FdFlag::FD_CLOEXEC.bits() != 0
    };
    // Two inheritable descriptors, so the fallback must walk past the first.
    let open = || {
        nix::fcntl::open(
            "/dev/null",
            nix::fcntl::OFlag::O_RDONLY,
            nix::sys::stat::Mode::empty(),
        )
        .expect("open /dev/null")
    };
    let (first, second) = (open(), open());
    let before = is_cloexec(&first) || is_cloexec(&second);
    load(&format!(
        r#"{{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{{"names": ["close_range"], "action": "SCMP_ACT_ERRNO", "errnoRet": {errno}}}]}}"#
    ));
    let low = first.as_raw_fd().min(second.as_raw_fd());
    let result = outcome(refeng::sys::process::cloexec_from(low));
    vec![
        ("inheritable_before", before.to_string()),
        ("cloexec_from", result),
        (
            "cloexec_after",
            (is_cloexec(&first) && is_cloexec(&second)).to_string(),
        ),
    ]
}

// ---- parent side ---// ---- parent side --------------------------------------------------------------------------------

/// A running child that is killed and reaped if the test fails before waiting for it.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn spawn(mode: &str, dir: &Path) -> Self {
        let child = Command::new(std::env::current_exe().expect("test binary path"))
            .args([
                "seccomp_child",
                "--exact",
                "--ignored",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(CHILD_MODE, mode)
            .env(CHILD_DIR, dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("child spawned");
        Self(Some(child))
    }

    fn pid(&self) -> u32 {
        self.0.as_ref().expect("child not yet reaped").id()
    }

    fn exited(&mut self) -> bool {
        let child = self.0.as_mut().expect("child not yet reaped");
        child.try_wait().expect("try_wait").is_some()
    }

    /// Waits for the child (by pid) and returns its report.
    fn report(mut self, dir: &Path) -> HashMap<String, String> {
        let output: Output = self
            .0
            .take()
            .expect("child not yet reaped")
            .wait_with_output()
            .expect("child reaped");
        assert!(
            output.status.success(),
            "child failed: {}\nstdout:\n{}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let text = fs::read_to_string(dir.join("report")).expect("child wrote its report");
        text.lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn run(mode: &str) -> (tempfile::TempDir, HashMap<String, String>, u32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let child = ChildGuard::spawn(mode, dir.path());
    let pid = child.pid();
    let report = child.report(dir.path());
    (dir, report, pid)
}

fn get<'a>(report: &'a HashMap<String, String>, key: &str) -> &'a str {
    report
        .get(key)
        .unwrap_or_else(|| panic!("report has {key}: {report:?}"))
}

#[test]
fn errno_rules_return_the_configured_errno_and_eperm_by_default() {
    let (dir, report, _) = run("errno");
    assert_eq!(get(&report, "listener"), "false");
    assert_eq!(get(&report, "mkdir"), libc::ENOSYS.to_string());
    assert_eq!(get(&report, "rmdir"), libc::EPERM.to_string());
    assert!(!dir.path().join("new").exists(), "mkdir was not executed");
    assert!(
        dir.path().join("existing").exists(),
        "rmdir was not executed"
    );
}

#[test]
fn argument_conditions_select_which_calls_the_rule_matches() {
    let (_dir, report, _) = run("args");
    assert_eq!(get(&report, "unix_stream"), "ok");
    assert_eq!(get(&report, "unix_seqpacket"), "ok");
    assert_eq!(get(&report, "unix_dgram"), libc::EOPNOTSUPP.to_string());
    assert_eq!(
        get(&report, "unix_dgram_cloexec"),
        libc::EOPNOTSUPP.to_string()
    );
    assert_eq!(get(&report, "unix_raw"), "ok");
    assert_eq!(get(&report, "inet_stream"), libc::EAFNOSUPPORT.to_string());
}

#[test]
fn docker_default_profile_fixture_is_what_dockerd_writes_for_amd64() {
    let spec: LinuxSeccomp =
        serde_json::from_str(&fs::read_to_string(DOCKER_PROFILE).expect("fixture"))
            .expect("parses");
    assert_eq!(spec.default_errno_ret(), Some(1));
    let arches: Vec<String> = spec
        .architectures()
        .iter()
        .flatten()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        arches,
        ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    );
    let syscalls = spec.syscalls().as_deref().unwrap_or_default();
    let names: usize = syscalls.iter().map(|rule| rule.names().len()).sum();
    assert!(names > 350, "the allow list has {names} names");
    let conditioned = syscalls.iter().filter(|rule| rule.args().is_some()).count();
    assert!(
        conditioned >= 9,
        "socket, personality and clone rules carry args"
    );
    // dockerd resolved includes/excludes for the default capabilities: no CAP_SYS_ADMIN rules.
    assert!(!syscalls
        .iter()
        .any(|rule| rule.names().iter().any(|n| n == "mount")));
    let filter = compile(&spec).expect("Docker's profile compiles");
    assert!(!filter.uses_notify());
}

#[test]
fn docker_default_profile_denies_namespaces_and_allows_the_ordinary() {
    let (_dir, report, pid) = run("docker");
    assert_eq!(get(&report, "listener"), "false");
    assert_eq!(get(&report, "getpid"), pid.to_string());
    assert_eq!(get(&report, "unshare_user"), libc::EPERM.to_string());
    assert_eq!(get(&report, "unshare_uts"), libc::EPERM.to_string());
    assert_eq!(get(&report, "socket_unix"), "ok");
    assert_eq!(get(&report, "socket_alg"), libc::EPERM.to_string());
    assert_eq!(get(&report, "socket_vsock"), libc::EPERM.to_string());
    assert_eq!(get(&report, "thread"), "ok");
}

/// Waits until `fd` is readable or the child died; false when the child exited first.
fn wait_readable(fd: std::os::fd::BorrowedFd<'_>, child: &mut ChildGuard) -> bool {
    let deadline = Instant::now() + HANG_GUARD;
    while Instant::now() < deadline {
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(200u16)) {
            Ok(n) if n > 0 => return true,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(errno) => panic!("poll: {errno}"),
        }
        if child.exited() {
            return false;
        }
    }
    panic!("nothing arrived within {HANG_GUARD:?}");
}

#[test]
fn notify_hands_the_listener_to_the_agent_which_answers_the_syscall() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = UnixListener::bind(dir.path().join("agent.sock")).expect("agent socket");
    let mut child = ChildGuard::spawn("notify", dir.path());
    let pid = child.pid();

    assert!(
        wait_readable(listener.as_fd(), &mut child),
        "child exited before connecting"
    );
    let (mut conn, _) = listener.accept().expect("child connects");
    let mut buf = vec![0u8; 64 * 1024];
    let (n, mut fds) =
        refeng::sys::scm_rights::recv_with_fds(conn.as_fd(), &mut buf).expect("recvmsg");
    let mut message = buf[..n].to_vec();
    conn.read_to_end(&mut message)
        .expect("rest of the state; the runtime closes the connection");
    assert_eq!(fds.len(), 1, "exactly the seccomp fd travels");
    let notify_fd = fds.remove(0);

    let state: serde_json::Value =
        serde_json::from_slice(&message).expect("containerProcessState JSON");
    assert_eq!(state["ociVersion"], "1.2.0");
    assert_eq!(state["fds"], serde_json::json!(["seccompFd"]));
    assert_eq!(state["pid"], pid);
    assert_eq!(state["metadata"], NOTIFY_METADATA);
    assert_eq!(state["state"]["id"], NOTIFY_CONTAINER_ID);
    assert_eq!(state["state"]["pid"], pid);

    assert!(
        wait_readable(notify_fd.as_fd(), &mut child),
        "child exited before its mkdir"
    );
    let request = ScmpNotifReq::receive(notify_fd.as_raw_fd()).expect("notification");
    // The kernel reports the thread that made the call; it must be one of the child's.
    let status = fs::read_to_string(format!("/proc/{}/status", request.pid)).expect("task status");
    assert!(
        status.lines().any(|l| l == format!("Tgid:\t{pid}")),
        "request from {}",
        request.pid
    );
    let name = request
        .data
        .syscall
        .get_name_by_arch(request.data.arch)
        .expect("syscall name");
    assert!(name == "mkdir" || name == "mkdirat", "notified for {name}");
    ScmpNotifResp::new_error(request.id, -libc::EROFS, ScmpNotifRespFlags::empty())
        .respond(notify_fd.as_raw_fd())
        .expect("response accepted");

    let report = child.report(dir.path());
    assert_eq!(get(&report, "mkdir"), libc::EROFS.to_string());
    assert!(
        !dir.path().join("notified").exists(),
        "the agent's answer replaced the syscall"
    );
}

#[test]
fn cloexec_falls_back_when_a_filter_refuses_close_range() {
    for mode in ["cloexec-eperm", "cloexec-enosys"] {
        let (_dir, report, _) = run(mode);
        assert_eq!(get(&report, "inheritable_before"), "false", "{mode}");
        assert_eq!(get(&report, "cloexec_from"), "ok", "{mode}");
        assert_eq!(get(&report, "cloexec_after"), "true", "{mode}");
    }
}

// ---- containers ---------------------------------------------------------------------------------

/// With noNewPrivileges false the filter is loaded early, while the runtime is still root, and
/// everything the runtime does after it (the user switch, capabilities, the startContainer hook,
/// marking descriptors close-on-exec, execve) runs under it. Docker 19.03's profile refuses
/// close_range and clone3 with EPERM (`seccomp_profiles::docker_19_03`); runc 1.1.5 starts the
/// container all the same.
#[test]
fn a_docker_19_03_profile_loaded_early_still_starts_the_container() {
    let mut b = Bundle::new("old-profile")
        .no_new_privileges(false)
        .user(1000, 1000, &[10, 2000])
        .hooks(json!({ "startContainer": [
            { "path": "/bin/sh", "args": ["sh", "-c", "true"] } ] }))
        .sh(
            "cat <&3; test -e /proc/self/fd/7 && echo fd7-leaked || echo fd7-closed; \
             grep -E '^(Groups|NoNewPrivs|Seccomp):' /proc/self/status",
        );
    b.spec_mut()["linux"]["seccomp"] = seccomp_profiles::docker_19_03();
    let message = b.tmp().join("fd3.txt");
    fs::write(&message, "through fd 3\n").expect("write fd 3 source");
    let c = b.container();
    // The host shell opens fd 3 (preserved) and fd 7 (not: it must be closed by execve) and
    // execs the runtime.
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("exec 3<\"$0\" 7<\"$0\"; exec \"$@\"")
        .arg(&message)
        .arg(common::runtime_bin())
        .arg("--root")
        .arg(c.bundle().state_root())
        .args(["run", "--preserve-fds", "1", "--bundle"])
        .arg(c.bundle().dir())
        .arg(c.id());
    let out = common::Spawned::start(cmd, &c.bundle().tmp().join("out")).wait(DEFAULT_TIMEOUT);
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        [
            "through fd 3",
            "fd7-closed",
            "Groups:\t10 2000",
            "NoNewPrivs:\t0",
            "Seccomp:\t2"
        ],
        "{out:?}"
    );
}

/// What a runtime sent the seccomp agent on one connection.
#[derive(Debug)]
struct Sent {
    /// The containerProcessState.
    message: serde_json::Value,
    /// The descriptors that came with it.
    fds: Vec<OwnedFd>,
}

/// Takes the connection a runtime made to the agent's `listener` and what it sent on it, which
/// must already be there: the runtime sends it before the command that made it (`create`,
/// `exec -d`) returns, so nothing here waits for it to arrive.
fn take_sent(listener: &UnixListener) -> Result<Sent, String> {
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let (mut conn, _) = listener
        .accept()
        .map_err(|e| format!("the runtime never connected to the agent: {e}"))?;
    conn.set_nonblocking(true).expect("nonblocking connection");
    let mut buf = vec![0u8; 64 * 1024];
    let (n, fds) = refeng::sys::scm_rights::recv_with_fds(conn.as_fd(), &mut buf)
        .map_err(|e| format!("the runtime connected but sent nothing: {e}"))?;
    let mut message = buf[..n].to_vec();
    // The rest of the state, up to the close the runtime does after sending (bounded only so a
    // runtime that keeps the connection open fails instead of hanging).
    conn.set_nonblocking(false).expect("blocking connection");
    conn.set_read_timeout(Some(HANG_GUARD))
        .expect("read timeout");
    conn.read_to_end(&mut message)
        .map_err(|e| format!("the runtime did not close the agent's connection: {e}"))?;
    let message = serde_json::from_slice(&message)
        .map_err(|e| format!("not a containerProcessState ({e}): {message:?}"))?;
    Ok(Sent { message, fds })
}

/// Answers the next notification on `notify_fd` with `errno`; returns the syscall's name.
#[track_caller]
fn answer_next(notify_fd: &OwnedFd, errno: i32) -> String {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let mut fds = [PollFd::new(notify_fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(200u16)) {
            Ok(n) if n > 0 => break,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(errno) => panic!("poll: {errno}"),
        }
        assert!(
            Instant::now() < deadline,
            "no notification within {HANG_GUARD:?}"
        );
    }
    let request = ScmpNotifReq::receive(notify_fd.as_raw_fd()).expect("notification");
    let name = request
        .data
        .syscall
        .get_name_by_arch(request.data.arch)
        .expect("syscall name");
    ScmpNotifResp::new_error(request.id, -errno, ScmpNotifRespFlags::empty())
        .respond(notify_fd.as_raw_fd())
        .expect("response accepted");
    name
}

/// A bundle whose mkdir and mkdirat go to the agent listening at `<tmp>/agent.sock`.
fn notify_bundle(name: &str, script: &str) -> (Bundle, UnixListener) {
    let mut b = Bundle::new(name).share().no_new_privileges(true).sh(script);
    let socket = b.tmp().join("agent.sock");
    let listener = UnixListener::bind(&socket).expect("agent socket");
    b.spec_mut()["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": socket,
        "listenerMetadata": NOTIFY_METADATA,
        "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY" }],
    });
    (b, listener)
}

/// runc 1.1.5 loads a no_new_privs filter with notify rules during `create` and sends the fd
/// then, with the state "creating" and init's host pid: an agent may wait for the fd before it
/// calls `start` (or `kill`, `delete`), and must not wait forever.
#[test]
fn the_notify_fd_reaches_the_agent_during_create() {
    let (b, listener) = notify_bundle(
        "notify-create",
        "mkdir /shared/notified 2>/dev/null; echo $? > /shared/mkdir-rc",
    );
    let c = b.container();
    c.create_with(&[]).ok();
    let pid = c.state()["pid"].as_i64().expect("state has the pid");
    let sent = take_sent(&listener).unwrap_or_else(|e| panic!("after create: {e}"));
    assert_eq!(sent.fds.len(), 1, "{:?}", sent.message);
    assert_eq!(sent.message["fds"], json!(["seccompFd"]));
    assert_eq!(sent.message["metadata"], NOTIFY_METADATA);
    assert_eq!(sent.message["pid"], pid);
    assert_eq!(sent.message["state"]["id"], c.id());
    assert_eq!(sent.message["state"]["status"], "creating");
    assert_eq!(sent.message["state"]["pid"], pid);

    c.start();
    let name = answer_next(&sent.fds[0], libc::EROFS);
    assert!(name == "mkdir" || name == "mkdirat", "notified for {name}");
    c.wait_for_shared_file("mkdir-rc", HANG_GUARD);
    let rc = fs::read_to_string(c.bundle().shared().join("mkdir-rc")).expect("mkdir-rc");
    assert_eq!(rc.trim(), "1", "the agent's EROFS reached mkdir");
    assert!(!c.bundle().shared().join("notified").exists());
}

/// `exec` loads the filter in its own process, which gets a listener of its own: the agent gets
/// it before `exec -d` returns, with the container's state.
#[test]
fn the_notify_fd_of_an_exec_reaches_the_agent_before_exec_returns() {
    let (b, listener) = notify_bundle("notify-exec", "sleep 1000");
    let c = b.container();
    c.create_with(&[]).ok();
    let pid = c.state()["pid"].as_i64().expect("state has the pid");
    drop(take_sent(&listener).unwrap_or_else(|e| panic!("after create: {e}")));
    c.start();
    c.runtime(&[
        "exec",
        "-d",
        c.id(),
        "sh",
        "-c",
        "mkdir /shared/exec-notified 2>/dev/null; echo $? > /shared/exec-rc",
    ])
    .ok();
    let sent = take_sent(&listener).unwrap_or_else(|e| panic!("after exec: {e}"));
    assert_eq!(sent.fds.len(), 1, "{:?}", sent.message);
    assert_eq!(sent.message["state"]["id"], c.id());
    assert_eq!(sent.message["state"]["status"], "running");
    assert_eq!(sent.message["state"]["pid"], pid);
    let name = answer_next(&sent.fds[0], libc::EROFS);
    assert!(name == "mkdir" || name == "mkdirat", "notified for {name}");
    c.wait_for_shared_file("exec-rc", HANG_GUARD);
    let rc = fs::read_to_string(c.bundle().shared().join("exec-rc")).expect("exec-rc");
    assert_eq!(rc.trim(), "1", "the agent's EROFS reached mkdir");
}
