//! The seccomp agent's side of `listenerPath` (config-linux.md "Seccomp"): the oracle listens on
//! the socket, the runtime sends the container process state with the `SCMP_ACT_NOTIFY` listener
//! fd, and the oracle answers the notifications the checker's probe causes.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use libseccomp::{ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde_json::{json, Value};

use crate::conformance::bundle::only_checks;
use crate::conformance::checker::NOTIFY_ERRNO_ANNOTATION;
use crate::conformance::driver::{Observed, STOP_TIMEOUT};
use crate::conformance::inside::judge_report;
use crate::conformance::{Case, CaseError, Env, Verdict};

/// What the oracle's agent answers every notification with: EROFS, which mkdir in the writable
/// /tmp of the container never returns by itself.
const AGENT_ERRNO: i32 = libc::EROFS;

/// What the agent hears as `listenerMetadata`.
const METADATA: &str = "refeng-conformance-agent";

pub fn cases() -> Vec<Case> {
    vec![Case::new(
        "inside/seccomp-listener",
        &[
            "seccomp-listener",
            "seccomp",
            "model-seccomp-listener-at-create",
        ],
        listener,
    )]
}

/// A notify filter with noNewPrivileges: runc loads it during `create` and sends the fd before
/// `create` returns, so an agent may wait for the fd before it calls `start`. Here the agent
/// does not wait at all: what the runtime sent must be there once `create` has returned.
fn listener(env: &mut Env<'_>) -> Result<Verdict, CaseError> {
    let id = env.id(0);
    let mut draft = env.draft()?;
    let socket = draft.exchange.join("agent.sock");
    let listener = match UnixListener::bind(&socket) {
        Ok(listener) => listener,
        Err(e) => {
            return Ok(Verdict::Skip(format!(
                "cannot listen on {}: {e}",
                socket.display()
            )))
        }
    };
    draft.config["process"]["noNewPrivileges"] = json!(true);
    draft.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": socket,
        "listenerMetadata": METADATA,
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}],
    });
    draft.config["annotations"][NOTIFY_ERRNO_ANNOTATION] = json!(AGENT_ERRNO.to_string());
    only_checks(&mut draft.config, &["seccomp"]);
    env.write_bundle(&draft)?;
    let created = env.create(&id, &draft)?;
    if !created.ok() {
        return Ok(Verdict::Fail(created.summary()));
    }
    let sent = match take_sent(&listener) {
        Ok(sent) => sent,
        Err(problem) => return Ok(Verdict::Fail(problem)),
    };
    let pid = match env.runtime().state(&id)? {
        Observed::Present(document) => document.pid,
        _ => None,
    };
    let mut problems = judge_message(&sent.message, &id, pid);
    if sent.fds.len() != 1 {
        problems.push(format!(
            "{} descriptors came with the state, not the one seccompFd",
            sent.fds.len()
        ));
    }
    let Some(notify_fd) = sent.fds.into_iter().next() else {
        return Ok(Verdict::Fail(problems.join("; ")));
    };
    let agent = std::thread::spawn(move || answer_until_closed(&notify_fd, STOP_TIMEOUT));
    let started = env.cmd(&["start", &id])?;
    if !started.ok() {
        return Ok(Verdict::Fail(started.summary()));
    }
    env.runtime().wait_stopped(&id, STOP_TIMEOUT)?;
    match agent.join() {
        Ok(Ok(0)) => problems.push("no notification reached the agent".into()),
        Ok(Ok(_)) => {}
        Ok(Err(problem)) => problems.push(problem),
        Err(_) => problems.push("the agent thread panicked".into()),
    }
    Ok(judge_report(&created, problems))
}

/// What a runtime sent on one connection to the agent.
struct Sent {
    message: Value,
    fds: Vec<OwnedFd>,
}

/// Takes the connection the runtime made and the state it sent, which must already be there.
fn take_sent(listener: &UnixListener) -> Result<Sent, String> {
    let hang = "an agent that waits for the fd before calling start would wait forever";
    let _ = listener.set_nonblocking(true);
    let (mut conn, _) = listener
        .accept()
        .map_err(|e| format!("create returned without connecting to listenerPath ({e}): {hang}"))?;
    let _ = conn.set_nonblocking(true);
    let mut buf = vec![0u8; 64 * 1024];
    let (n, fds) = crate::sys::scm_rights::recv_with_fds(conn.as_fd(), &mut buf)
        .map_err(|e| format!("create returned without sending the seccomp fd ({e}): {hang}"))?;
    let mut message = buf.get(..n).unwrap_or_default().to_vec();
    // runtime-spec: the connection "MUST be closed after sending"; the bound is only there so
    // that a runtime which keeps it open fails the case instead of hanging it.
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(STOP_TIMEOUT));
    conn.read_to_end(&mut message)
        .map_err(|e| format!("the connection to listenerPath was not closed after sending: {e}"))?;
    let message = serde_json::from_slice(&message).map_err(|e| {
        format!(
            "not a container process state ({e}): {:?}",
            String::from_utf8_lossy(&message)
        )
    })?;
    Ok(Sent { message, fds })
}

/// runtime-spec config-linux.md "Seccomp" and runtime.md "Container process state": the fds
/// named, the pid, the metadata, and the state as it is during `create`.
fn judge_message(message: &Value, id: &str, pid: Option<i64>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut expect = |what: &str, got: &Value, want: Value| {
        if *got != want {
            problems.push(format!(
                "container process state: {what} is {got}, want {want}"
            ));
        }
    };
    expect("fds", &message["fds"], json!(["seccompFd"]));
    expect("metadata", &message["metadata"], json!(METADATA));
    expect("state.id", &message["state"]["id"], json!(id));
    expect(
        "state.status",
        &message["state"]["status"],
        json!("creating"),
    );
    expect("pid", &message["pid"], json!(pid));
    expect("state.pid", &message["state"]["pid"], json!(pid));
    if !message["ociVersion"].is_string() {
        problems.push(format!(
            "container process state: no ociVersion in {message}"
        ));
    }
    problems
}

/// Answers every notification on `notify_fd` with [`AGENT_ERRNO`] until no process uses the
/// filter any more (POLLHUP) or `timeout` passes; returns how many it answered.
fn answer_until_closed(notify_fd: &OwnedFd, timeout: Duration) -> Result<usize, String> {
    let deadline = Instant::now() + timeout;
    let mut answered = 0;
    while Instant::now() < deadline {
        let mut fds = [PollFd::new(notify_fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(errno) => return Err(format!("poll on the seccomp fd: {errno}")),
        }
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        if revents.contains(PollFlags::POLLIN) {
            let request = ScmpNotifReq::receive(notify_fd.as_raw_fd())
                .map_err(|e| format!("receiving a notification: {e}"))?;
            // The process may have been killed since; its request is then gone, not an error.
            let _ = ScmpNotifResp::new_error(request.id, -AGENT_ERRNO, ScmpNotifRespFlags::empty())
                .respond(notify_fd.as_raw_fd());
            answered += 1;
        } else if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
            break;
        }
    }
    Ok(answered)
}
