//! Hook cases (runtime-spec: config.md "POSIX-platform Hooks", runtime.md "Lifecycle" steps 3–13):
//! every hook appends its name to one order file and keeps its stdin, environment and mount
//! namespace, so order, timing, the state on stdin and the namespace it ran in can be checked.

use std::fs;
use std::path::Path;

use serde_json::{json, Value};

use crate::conformance::driver::{Observed, StateDocument, STOP_TIMEOUT};
use crate::conformance::{bundle, Case, CaseError, Draft, Env, Verdict};

/// The hook kinds in lifecycle order, with the names the order file shows (two `createRuntime`
/// hooks check the order within one kind).
const KINDS: &[(&str, &[&str])] = &[
    ("prestart", &["prestart"]),
    ("createRuntime", &["createRuntime-1", "createRuntime-2"]),
    ("createContainer", &["createContainer"]),
    ("startContainer", &["startContainer"]),
    ("poststart", &["poststart"]),
    ("poststop", &["poststop"]),
];

/// Hooks whose path resolves and which run in the container namespace (config.md Hooks).
const IN_CONTAINER: &[&str] = &["createContainer", "startContainer"];

const PROGRAM: &str = "echo program >> /conformance/order; \
                       while [ ! -e /conformance/exit ]; do sleep 0.05; done";

/// A hook that records itself; `$0` is its name. Before `pivot_root` the exchange directory is
/// reached by its host path, after it on `/conformance`.
fn recorder(exchange: &Path, name: &str, fails: bool) -> Value {
    let script = format!(
        "d={host}; [ -d \"$d\" ] || d=/conformance; \
         cat > \"$d/$0.stdin\"; echo \"$REFENG_HOOK\" > \"$d/$0.env\"; \
         readlink /proc/self/ns/mnt > \"$d/$0.mntns\"; echo \"$0\" >> \"$d/order\"; {tail}",
        host = exchange.display(),
        tail = if fails { "exit 3" } else { "exit 0" },
    );
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", script, name],
        "env": [format!("REFENG_HOOK={name}")],
    })
}

/// Installs every hook kind; `failing` names the kind whose hooks exit non-zero.
fn with_hooks(draft: &mut Draft, failing: Option<&str>) {
    let mut hooks = serde_json::Map::new();
    for (kind, names) in KINDS {
        let list: Vec<Value> = names
            .iter()
            .map(|name| recorder(&draft.exchange, name, failing == Some(*kind)))
            .collect();
        hooks.insert((*kind).to_owned(), Value::Array(list));
    }
    draft.config["hooks"] = Value::Object(hooks);
    draft.config["process"]["args"] = json!(["sh", "-c", PROGRAM]);
}

fn order(draft: &Draft) -> Vec<String> {
    fs::read_to_string(draft.exchange.join("order"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// What one full lifecycle with every hook showed.
#[derive(Debug, Default)]
struct Recorded {
    after_create: Vec<String>,
    after_start: Vec<String>,
    after_delete: Vec<String>,
    container_mntns: Option<String>,
    /// The container process's pid from `state` after create.
    container_pid: Option<i64>,
    problems: Vec<String>,
}

/// Which aspect a case judges.
#[derive(Debug, Clone, Copy)]
enum Focus {
    Order,
    Stdin,
    Namespaces,
}

pub fn cases() -> Vec<Case> {
    let mut all = vec![
        Case::new(
            "hooks/order-and-timing",
            &[
                "hooks-order",
                "hooks-timing",
                "lifecycle-prestart",
                "lifecycle-createruntime",
                "lifecycle-createcontainer",
                "lifecycle-startcontainer",
                "lifecycle-poststart",
                "lifecycle-poststop",
            ],
            |env| full_lifecycle(env, Focus::Order),
        ),
        Case::new("hooks/state-on-stdin", &["hooks-stdin"], |env| {
            full_lifecycle(env, Focus::Stdin)
        }),
        Case::new("hooks/namespaces", &["hooks-namespaces"], |env| {
            full_lifecycle(env, Focus::Namespaces)
        }),
    ];
    for (kind, statement) in [
        ("prestart", "lifecycle-prestart-fail"),
        ("createRuntime", "lifecycle-createruntime-fail"),
        ("createContainer", "lifecycle-createcontainer-fail"),
        ("startContainer", "lifecycle-startcontainer-fail"),
    ] {
        all.push(Case::new(
            format!("hooks/{kind}-failure-stops"),
            &[statement],
            move |env| failing_hook(env, kind, false),
        ));
        all.push(Case::new(
            format!("hooks/{kind}-failure-runs-poststop"),
            &[statement, "lifecycle-poststop"],
            move |env| failing_hook(env, kind, true),
        ));
    }
    all.push(Case::new("hooks/timeout", &["hooks-timeout"], hook_timeout));
    all.push(Case::new(
        "hooks/poststart-failure-continues",
        &["lifecycle-poststart-fail", "warnings-continue"],
        |env| warning_hook(env, "poststart"),
    ));
    all.push(Case::new(
        "hooks/poststop-failure-continues",
        &["lifecycle-poststop-fail", "warnings-continue"],
        |env| warning_hook(env, "poststop"),
    ));
    all
}

fn record(env: &mut Env<'_>, id: &str, draft: &Draft) -> Result<Recorded, CaseError> {
    let mut recorded = Recorded::default();
    let ran = env.create(id, draft)?;
    if !ran.ok() {
        recorded.problems.push(format!("create: {}", ran.summary()));
        return Ok(recorded);
    }
    recorded.after_create = order(draft);
    if let Observed::Present(document) = env.runtime().state(id)? {
        recorded.container_pid = document.pid;
        recorded.container_mntns = document
            .pid
            .and_then(|pid| fs::read_link(format!("/proc/{pid}/ns/mnt")).ok())
            .map(|link| link.display().to_string());
    }
    let ran = env.cmd(&["start", id])?;
    if !ran.ok() {
        recorded.problems.push(format!("start: {}", ran.summary()));
        return Ok(recorded);
    }
    recorded.after_start = order(draft);
    bundle::write(&draft.exchange.join("exit"), b"")?;
    env.runtime().wait_stopped(id, STOP_TIMEOUT)?;
    let ran = env.cmd(&["delete", id])?;
    if !ran.ok() {
        recorded.problems.push(format!("delete: {}", ran.summary()));
    }
    recorded.after_delete = order(draft);
    Ok(recorded)
}

fn full_lifecycle(env: &mut Env<'_>, focus: Focus) -> Result<Verdict, CaseError> {
    let id = env.id(0);
    let mut draft = env.draft()?;
    with_hooks(&mut draft, None);
    env.write_bundle(&draft)?;
    let recorded = record(env, &id, &draft)?;
    let mut problems = recorded.problems.clone();
    if problems.is_empty() {
        match focus {
            Focus::Order => judge_order(&recorded, &mut problems),
            Focus::Stdin => judge_stdin(&draft, &id, recorded.container_pid, &mut problems),
            Focus::Namespaces => judge_namespaces(&draft, &recorded, &mut problems),
        }
    }
    if problems.is_empty() {
        Ok(Verdict::Pass(format!(
            "hooks ran: {}",
            recorded.after_delete.join(" ")
        )))
    } else {
        Ok(Verdict::Fail(problems.join("; ")))
    }
}

fn judge_order(recorded: &Recorded, problems: &mut Vec<String>) {
    let create_phase = [
        "prestart",
        "createRuntime-1",
        "createRuntime-2",
        "createContainer",
    ];
    if recorded.after_create != create_phase {
        problems.push(format!(
            "after create: want {create_phase:?}, hooks ran {:?}",
            recorded.after_create
        ));
    }
    let start_phase =
        &recorded.after_start[recorded.after_create.len().min(recorded.after_start.len())..];
    let position = |name: &str| start_phase.iter().position(|seen| seen == name);
    // startContainer runs as part of `start`, before the program; poststart after the program
    // was executed and before `start` returns (config.md Hooks). The program's own line may come
    // after poststart: it is written once the program runs, which is not synchronised with start.
    if position("startContainer").is_none() {
        problems.push(format!(
            "startContainer had not run when start returned: {start_phase:?}"
        ));
    }
    if position("poststart").is_none() {
        problems.push(format!(
            "poststart had not run when start returned: {start_phase:?}"
        ));
    }
    let last = &recorded.after_delete;
    let at = |name: &str| last.iter().position(|seen| seen == name);
    for (before, after) in [
        ("startContainer", "program"),
        ("startContainer", "poststart"),
    ] {
        if let (Some(first), Some(second)) = (at(before), at(after)) {
            if first > second {
                problems.push(format!("{after} ran before {before}: {last:?}"));
            }
        }
    }
    if recorded.after_start.iter().any(|seen| seen == "poststop") {
        problems.push("poststop ran before delete".into());
    }
    if recorded.after_delete.last().map(String::as_str) != Some("poststop") {
        problems.push(format!(
            "poststop had not run last when delete returned: {:?}",
            recorded.after_delete
        ));
    }
}

/// The state on each hook's stdin: the container's id and bundle, a status, and a pid that is
/// the container process as the host sees it where the hook runs in the runtime namespace
/// (runtime-spec: State "pid", REQUIRED when created or running).
fn judge_stdin(draft: &Draft, id: &str, pid: Option<i64>, problems: &mut Vec<String>) {
    let bundle_text = draft.dir.to_string_lossy().into_owned();
    for (kind, names) in KINDS {
        for name in *names {
            let stdin = fs::read_to_string(draft.exchange.join(format!("{name}.stdin")));
            let document = stdin
                .as_deref()
                .ok()
                .and_then(|text| serde_json::from_str::<StateDocument>(text).ok());
            let Some(document) = document else {
                problems.push(format!("{name}: stdin is no state document: {stdin:?}"));
                continue;
            };
            if document.id.as_deref() != Some(id) {
                problems.push(format!("{name}: id {:?}", document.id));
            }
            if document.bundle.as_deref() != Some(bundle_text.as_str()) {
                problems.push(format!("{name}: bundle {:?}", document.bundle));
            }
            let status = document.status.clone().unwrap_or_default();
            if status.is_empty() {
                problems.push(format!("{name}: no status"));
            }
            let required = matches!(status.as_str(), "created" | "running");
            match document.pid {
                None if required => {
                    problems.push(format!("{name}: status {status} without a pid"));
                }
                Some(seen) if seen <= 0 => problems.push(format!("{name}: pid {seen}")),
                Some(seen)
                    if !IN_CONTAINER.contains(kind) && *kind != "poststop" && Some(seen) != pid =>
                {
                    problems.push(format!(
                        "{name}: pid {seen}, but the container process is {pid:?} on the host"
                    ));
                }
                None | Some(_) => {}
            }
            let env_seen =
                fs::read_to_string(draft.exchange.join(format!("{name}.env"))).unwrap_or_default();
            if env_seen.trim() != *name {
                problems.push(format!(
                    "{name}: its env REFENG_HOOK was {:?}",
                    env_seen.trim()
                ));
            }
        }
    }
}

fn judge_namespaces(draft: &Draft, recorded: &Recorded, problems: &mut Vec<String>) {
    let Some(container) = recorded.container_mntns.as_deref() else {
        problems.push("no container mount namespace seen after create".into());
        return;
    };
    for (kind, names) in KINDS {
        for name in *names {
            let seen = fs::read_to_string(draft.exchange.join(format!("{name}.mntns")))
                .unwrap_or_default();
            let seen = seen.trim();
            let in_container = seen == container;
            if IN_CONTAINER.contains(kind) != in_container {
                problems.push(format!(
                    "{name} ran in mount namespace {seen} (container's: {container}); \
                     the spec puts it in the {} namespace",
                    if IN_CONTAINER.contains(kind) {
                        "container"
                    } else {
                        "runtime"
                    }
                ));
            }
        }
    }
}

fn failing_hook(env: &mut Env<'_>, kind: &str, judge_poststop: bool) -> Result<Verdict, CaseError> {
    let id = env.id(0);
    let mut draft = env.draft()?;
    with_hooks(&mut draft, Some(kind));
    env.write_bundle(&draft)?;
    let created = env.create(&id, &draft)?;
    let failed = if kind == "startContainer" {
        if !created.ok() {
            return Ok(Verdict::Fail(format!("create: {}", created.summary())));
        }
        env.cmd(&["start", &id])?
    } else {
        created
    };
    if failed.ok() {
        return Ok(Verdict::Fail(format!(
            "a failing {kind} hook did not make `{}` fail; hooks and program ran: {:?}",
            failed.command,
            order(&draft)
        )));
    }
    let mut problems = Vec::new();
    if judge_poststop {
        // Step 12 (destroy) and 13 (poststop) follow the failure; a runtime may want `delete`
        // to get there for a container it only stopped.
        if !order(&draft).iter().any(|seen| seen == "poststop") {
            let _ = env.cmd(&["delete", &id])?;
            if !order(&draft).iter().any(|seen| seen == "poststop") {
                problems.push(format!("poststop never ran: hooks ran {:?}", order(&draft)));
            }
        }
    } else {
        std::thread::sleep(std::time::Duration::from_millis(300));
        if order(&draft).iter().any(|seen| seen == "program") {
            problems.push("the program ran".into());
        }
        match env.runtime().state(&id)?.status() {
            Ok(None | Some(refeng_spec::oci::Status::Stopped)) => {}
            other => problems.push(format!("the container was not stopped: {other:?}")),
        }
    }
    if problems.is_empty() {
        Ok(Verdict::Pass(format!(
            "`{}` failed; {kind} failure handled",
            failed.command
        )))
    } else {
        Ok(Verdict::Fail(problems.join("; ")))
    }
}

fn warning_hook(env: &mut Env<'_>, kind: &str) -> Result<Verdict, CaseError> {
    let id = env.id(0);
    let mut draft = env.draft()?;
    with_hooks(&mut draft, Some(kind));
    env.write_bundle(&draft)?;
    let ran = env.create(&id, &draft)?;
    if !ran.ok() {
        return Ok(Verdict::Fail(format!("create: {}", ran.summary())));
    }
    let ran = env.cmd(&["start", &id])?;
    if kind == "poststart" {
        if !ran.ok() {
            return Ok(Verdict::Fail(format!(
                "a failing poststart hook failed start: {}",
                ran.summary()
            )));
        }
        return match env.runtime().state(&id)?.status() {
            Ok(Some(refeng_spec::oci::Status::Running)) => Ok(Verdict::Pass(
                "start succeeded and the container runs".into(),
            )),
            other => Ok(Verdict::Fail(format!("after start: {other:?}"))),
        };
    }
    if !ran.ok() {
        return Ok(Verdict::Fail(format!("start: {}", ran.summary())));
    }
    bundle::write(&draft.exchange.join("exit"), b"")?;
    env.runtime().wait_stopped(&id, STOP_TIMEOUT)?;
    let ran = env.cmd(&["delete", &id])?;
    let gone = matches!(env.runtime().state(&id)?, Observed::Absent(_));
    if ran.ok() && gone {
        Ok(Verdict::Pass(
            "delete succeeded and the container is gone".into(),
        ))
    } else {
        Ok(Verdict::Fail(format!(
            "a failing poststop hook: {}; container gone: {gone}",
            ran.summary()
        )))
    }
}

fn hook_timeout(env: &mut Env<'_>) -> Result<Verdict, CaseError> {
    let id = env.id(0);
    let mut draft = env.draft()?;
    draft.config["hooks"] = json!({"createRuntime": [{
        "path": "/bin/sh",
        "args": ["sh", "-c", "exec sleep 60"],
        "timeout": 1,
    }]});
    env.write_bundle(&draft)?;
    let started = std::time::Instant::now();
    let ran = env.create(&id, &draft)?;
    let took = started.elapsed();
    // A hook past its timeout is aborted, which fails it like any other failing hook.
    if !ran.ok() && took < std::time::Duration::from_secs(10) {
        Ok(Verdict::Pass(format!("create failed after {took:?}")))
    } else {
        Ok(Verdict::Fail(format!(
            "a hook sleeping 60 s with timeout 1: create {} after {took:?}",
            if ran.ok() { "succeeded" } else { "failed" }
        )))
    }
}
