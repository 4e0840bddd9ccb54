//! refengd against the Engine lifecycle model (`refeng_spec::engine::Model`) over HTTP: random
//! sequences of create, start, stop, restart, kill, pause, unpause, inspect and remove calls,
//! container processes that exit by themselves with a chosen code, and `kill -9` of refengd
//! followed by a restart. Each call must answer with the model's HTTP status (and dockerd's
//! message for a refusal), and after each step refengd's containers must reach the model's
//! statuses, restart counts and exit codes. One refengd serves the whole binary.

mod engine_support;
mod rootfs;

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use engine_support::{Options, Refengd};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use refeng_spec::engine::{Answer, Model, Op, RestartPolicy, Status};
use serde_json::{json, Value};

static DAEMON: OnceLock<Refengd> = OnceLock::new();

fn d() -> &'static Refengd {
    DAEMON.get_or_init(|| {
        let d = Refengd::start();
        let dir = d.dir().join("rootfs");
        rootfs::busybox(&dir);
        let tar = d.dir().join("busybox.tar");
        rootfs::tar(&dir, &tar);
        let _ = std::fs::remove_dir_all(&dir);
        d.docker(&[
            "import",
            "-c",
            "ENV PATH=/bin",
            &tar.to_string_lossy(),
            "mbox:latest",
        ]);
        d
    })
}

/// The container's process: waits until a test writes an exit code to /tmp/exit, then exits
/// with it (removing the file, so that a restart by the policy runs on).
const LOOP: &str = "while :; do if [ -f /tmp/exit ]; then c=$(cat /tmp/exit); rm -f /tmp/exit; \
                    exit $c; fi; sleep 0.1; done";

fn policy_body(p: RestartPolicy) -> Value {
    match p {
        RestartPolicy::No => json!({"Name": "no"}),
        RestartPolicy::Always => json!({"Name": "always"}),
        RestartPolicy::UnlessStopped => json!({"Name": "unless-stopped"}),
        RestartPolicy::OnFailure(n) => json!({"Name": "on-failure", "MaximumRetryCount": n}),
    }
}

/// Names are unique per case, so that leftovers of a failed case never meet the next one.
fn full(case: u32, name: &str) -> String {
    format!("m{case}-{name}")
}

/// Sends `op` to refengd; its HTTP status and body.
fn call(case: u32, op: &Op) -> (u16, Value) {
    let d = d();
    let r = match op {
        Op::Create { name, policy } => {
            let body = json!({
                "Image": "mbox",
                "Cmd": ["sh", "-c", LOOP],
                "HostConfig": {"RestartPolicy": policy_body(*policy), "NetworkMode": "none"},
            });
            d.request(
                "POST",
                &format!("/containers/create?name={}", full(case, name)),
                Some(body.to_string().as_bytes()),
            )
        }
        Op::Start(n) => d.request(
            "POST",
            &format!("/containers/{}/start", full(case, n)),
            None,
        ),
        Op::Stop(n) => d.request(
            "POST",
            &format!("/containers/{}/stop?t=0", full(case, n)),
            None,
        ),
        Op::Restart(n) => d.request(
            "POST",
            &format!("/containers/{}/restart?t=0", full(case, n)),
            None,
        ),
        Op::Kill(n) => d.request("POST", &format!("/containers/{}/kill", full(case, n)), None),
        Op::Pause(n) => d.request(
            "POST",
            &format!("/containers/{}/pause", full(case, n)),
            None,
        ),
        Op::Unpause(n) => d.request(
            "POST",
            &format!("/containers/{}/unpause", full(case, n)),
            None,
        ),
        Op::Inspect(n) => d.request("GET", &format!("/containers/{}/json", full(case, n)), None),
        Op::Remove { name, force } => d.request(
            "DELETE",
            &format!(
                "/containers/{}?force={}",
                full(case, name),
                u8::from(*force)
            ),
            None,
        ),
        Op::Exit { name, code } => {
            let path = format!("/containers/{}/json", full(case, name));
            let before = d.request("GET", &path, None).json()["State"]["StartedAt"].clone();
            let out = d
                .docker_cmd(&[
                    "exec",
                    &full(case, name),
                    "sh",
                    "-c",
                    &format!("echo {code} > /tmp/exit"),
                ])
                .output()
                .expect("docker exec");
            assert!(out.status.success(), "{out:?}");
            // The process sees the file within 0.1 s: wait until this run is over (stopped,
            // or started again by its policy).
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                let v = d.request("GET", &path, None).json();
                if v["State"]["Status"] != "running" || v["State"]["StartedAt"] != before {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            return (200, Value::Null);
        }
        Op::DaemonRestart => {
            d.restart(&Options::default());
            return (200, Value::Null);
        }
        Op::RestartDue(_) | Op::RemovalFails(_) => unreachable!("not generated"),
    };
    let body = if r.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&r.body).unwrap_or(Value::Null)
    };
    (r.status, body)
}

type View = BTreeMap<String, (Status, u32, i32)>;

fn model_view(case: u32, m: &Model) -> View {
    m.containers
        .iter()
        .map(|(n, c)| (full(case, n), (c.status, c.restart_count, c.exit_code)))
        .collect()
}

fn daemon_view(case: u32) -> View {
    let prefix = format!("m{case}-");
    let list = d().request("GET", "/containers/json?all=1", None).json();
    let mut out = BTreeMap::new();
    for c in list.as_array().into_iter().flatten() {
        let name = c["Names"][0].as_str().unwrap_or("").trim_start_matches('/');
        if !name.starts_with(&prefix) {
            continue;
        }
        let v = d()
            .request("GET", &format!("/containers/{name}/json"), None)
            .json();
        let status: Status =
            serde_json::from_value(v["State"]["Status"].clone()).expect("a known status");
        out.insert(
            name.to_string(),
            (
                status,
                u32::try_from(v["RestartCount"].as_u64().unwrap_or(0)).unwrap_or(0),
                i32::try_from(v["State"]["ExitCode"].as_i64().unwrap_or(0)).unwrap_or(0),
            ),
        );
    }
    out
}

/// Lets policy restarts happen: the model's back-off runs out for every restarting container
/// once refengd has started it again; then waits until refengd shows the model's view.
fn settle(case: u32, model: &mut Model) -> Result<(), TestCaseError> {
    let restarting: Vec<String> = model
        .containers
        .iter()
        .filter(|(_, c)| c.status == Status::Restarting)
        .map(|(n, _)| n.clone())
        .collect();
    for n in restarting {
        model.apply(&Op::RestartDue(n));
    }
    let want = model_view(case, model);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = daemon_view(case);
        if got == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(TestCaseError::fail(format!(
                "refengd {got:?}\nmodel   {want:?}\nlog: {}",
                engine_support::tail(&d().log(), 30)
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn op() -> impl Strategy<Value = Op> {
    let name = prop::sample::select(vec!["a", "b"]).prop_map(String::from);
    let policy = prop_oneof![
        Just(RestartPolicy::No),
        Just(RestartPolicy::Always),
        Just(RestartPolicy::UnlessStopped),
        (0u32..3).prop_map(RestartPolicy::OnFailure),
    ];
    prop_oneof![
        3 => (name.clone(), policy).prop_map(|(name, policy)| Op::Create { name, policy }),
        3 => name.clone().prop_map(Op::Start),
        1 => name.clone().prop_map(Op::Stop),
        1 => name.clone().prop_map(Op::Restart),
        1 => name.clone().prop_map(Op::Kill),
        1 => name.clone().prop_map(Op::Pause),
        1 => name.clone().prop_map(Op::Unpause),
        1 => name.clone().prop_map(Op::Inspect),
        1 => (name.clone(), any::<bool>()).prop_map(|(name, force)| Op::Remove { name, force }),
        2 => (name, prop::sample::select(vec![0, 1, 3]))
            .prop_map(|(name, code)| Op::Exit { name, code }),
        1 => Just(Op::DaemonRestart),
    ]
}

fn run_case(case: u32, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model::new();
    let result = (|| {
        for op in ops {
            if !model.legal(op) {
                continue;
            }
            let want = model.apply(op);
            let (status, body) = call(case, op);
            let id = match op {
                Op::Exit { .. } | Op::DaemonRestart => String::new(),
                Op::Create { name: n, .. }
                | Op::Start(n)
                | Op::Stop(n)
                | Op::Restart(n)
                | Op::Kill(n)
                | Op::Pause(n)
                | Op::Unpause(n)
                | Op::Inspect(n)
                | Op::Remove { name: n, .. }
                | Op::RestartDue(n)
                | Op::RemovalFails(n) => n.clone(),
            };
            prop_assert_eq!(status, want.status(), "{:?}: {}", op, body);
            if let Answer::Refused(r) = want {
                let name = full(case, &id);
                let cid = d()
                    .request("GET", &format!("/containers/{name}/json"), None)
                    .json()["Id"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let mut want_msg = r.message(&name, &cid);
                if matches!(op, Op::Kill(_)) && r.status() == 409 {
                    // dockerd names the container in front of why it cannot be killed.
                    want_msg = format!("Cannot kill container: {name}: {want_msg}");
                }
                prop_assert_eq!(body["message"].as_str().unwrap_or(""), want_msg, "{:?}", op);
            }
            settle(case, &mut model)?;
        }
        Ok(())
    })();
    for n in ["a", "b"] {
        let _ = d().request(
            "DELETE",
            &format!("/containers/{}?force=1", full(case, n)),
            None,
        );
    }
    result
}

fn http_calls_follow_the_model() {
    let cases: u32 = std::env::var("REFENG_MODEL_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let mut runner = TestRunner::new(Config {
        cases,
        // Each case runs real containers: shrinking would take minutes; the failing sequence
        // is printed whole instead.
        max_shrink_iters: 0,
        failure_persistence: None,
        ..Config::default()
    });
    // Sequences that once went wrong, first: a paused container killed, stopped and removed
    // with force (the runtime refused to signal it while frozen).
    let fixed = [vec![
        Op::Create {
            name: "a".into(),
            policy: RestartPolicy::No,
        },
        Op::Start("a".into()),
        Op::Pause("a".into()),
        Op::Remove {
            name: "a".into(),
            force: true,
        },
        Op::Create {
            name: "b".into(),
            policy: RestartPolicy::Always,
        },
        Op::Start("b".into()),
        Op::Pause("b".into()),
        Op::Stop("b".into()),
        Op::Start("b".into()),
        Op::Pause("b".into()),
        Op::Kill("b".into()),
    ]];
    let serial = std::sync::atomic::AtomicU32::new(0);
    for ops in &fixed {
        let case = serial.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = run_case(case, ops) {
            panic!("{e}\n{ops:?}");
        }
    }
    let r = runner.run(&prop::collection::vec(op(), 1..12), |ops| {
        let case = serial.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        run_case(case, &ops)
    });
    if let Err(e) = r {
        panic!("{e}");
    }
}

fn main() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the engine tests run as root"
    );
    engine_support::run(
        &[("http_calls_follow_the_model", &http_calls_follow_the_model)],
        || {
            if let Some(d) = DAEMON.get() {
                d.shutdown();
            }
        },
    )
}
