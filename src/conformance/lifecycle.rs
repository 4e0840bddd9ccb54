//! Lifecycle cases: every operation in every state, with the verdict derived from
//! `refeng_spec::oci::Model::next` (runtime-spec: runtime.md "Operations"), plus the cases that
//! watch the program run only at `start`, the state document, signals, exit and delete.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::Duration;

use refeng_spec::oci::{Model, OpError, OpKind, Operation, Signal, Status};
use serde_json::json;

use crate::conformance::bundle::{self, cgroup_dirs};
use crate::conformance::driver::{Observed, Ran, STOP_TIMEOUT};
use crate::conformance::{wait_for, Case, CaseError, Draft, Env, Verdict};
use crate::sys::kernel_files::proc_cgroup::ProcCgroup;

/// How long the oracle waits after a signal the model says is ignored, so a wrongful death shows.
const SETTLE: Duration = Duration::from_millis(300);
/// The lifecycle program: busy until the oracle creates `/conformance/exit`, after noting that it
/// ran. A shell as pid 1 without handlers, as the model assumes.
const PROGRAM: &str =
    "touch /conformance/ran; while [ ! -e /conformance/exit ]; do sleep 0.05; done";

/// Builds the operation of one table row for a container id.
type MakeOp = fn(String) -> Operation;

/// The operations the table covers, by case-name label.
fn operations() -> Vec<(&'static str, MakeOp)> {
    vec![
        ("create", |id| Operation::Create { id }),
        ("start", |id| Operation::Start { id }),
        ("kill-KILL", |id| Operation::Kill {
            id,
            signal: Signal::Kill,
        }),
        ("kill-TERM", |id| Operation::Kill {
            id,
            signal: Signal::Term,
        }),
        ("delete", |id| Operation::Delete { id, force: false }),
        ("delete-force", |id| Operation::Delete { id, force: true }),
        ("state", |id| Operation::State { id }),
        ("pause", |id| Operation::Pause { id }),
        ("resume", |id| Operation::Resume { id }),
    ]
}

fn state_label(status: Option<Status>) -> &'static str {
    status.map_or("absent", Status::as_str)
}

/// The statements an operation in a state checks: the spec's where it speaks, the model's where
/// refeng decided (see spec/SPEC.md footnotes).
fn statements_for(op: &Operation, from: Option<Status>) -> Vec<&'static str> {
    let mut ids = vec!["errors-no-effect"];
    let specific = match (op, from) {
        (Operation::Create { .. }, None) => "op-create-creates",
        (Operation::Create { .. }, Some(_)) => {
            ids.push("state-id-unique");
            "op-create-unique"
        }
        (Operation::State { .. }, None) => "op-state-absent",
        (Operation::State { .. }, Some(_)) => "op-state-returns",
        (Operation::Start { .. }, Some(Status::Created)) => "op-start-runs",
        (Operation::Start { .. }, _) => "op-start-not-created",
        (Operation::Kill { .. }, Some(Status::Paused)) => "model-kill-paused",
        (Operation::Kill { signal, .. }, Some(Status::Created | Status::Running))
            if !signal.stops_process() =>
        {
            "model-kill-ignored"
        }
        (Operation::Kill { .. }, Some(Status::Created | Status::Running)) => "op-kill-sends",
        (Operation::Kill { .. }, _) => "op-kill-state",
        (Operation::Delete { force: true, .. }, _) => "model-delete-force",
        (Operation::Delete { .. }, Some(Status::Stopped)) => "op-delete-resources",
        (Operation::Delete { .. }, _) => "op-delete-not-stopped",
        (Operation::Pause { .. } | Operation::Resume { .. }, _) => "model-pause",
        (Operation::ProcessExit { .. }, _) => "model-exit",
    };
    ids.push(specific);
    ids
}

/// Every case of this module.
pub fn cases() -> Vec<Case> {
    let mut all = Vec::new();
    let states = [
        None,
        Some(Status::Created),
        Some(Status::Running),
        Some(Status::Paused),
        Some(Status::Stopped),
    ];
    for (label, make) in operations() {
        for from in states {
            let statements = statements_for(&make(String::new()), from);
            let name = format!("lifecycle/{label}-when-{}", state_label(from));
            all.push(Case::new(name, &statements, move |env| {
                table_case(env, make, from)
            }));
        }
    }
    all.push(Case::new(
        "lifecycle/program-runs-only-at-start",
        &[
            "lifecycle-no-program-at-create",
            "op-create-no-args",
            "lifecycle-run-program",
            "op-start-runs",
        ],
        program_runs_only_at_start,
    ));
    all.push(Case::new(
        "lifecycle/state-document",
        &[
            "state-schema",
            "state-status-values",
            "state-pid",
            "state-bundle",
            "op-state-returns",
        ],
        state_document,
    ));
    all.push(Case::new(
        "lifecycle/process-exit-stops",
        &["model-exit"],
        process_exit_stops,
    ));
    all.push(Case::new(
        "lifecycle/kill-delivers-signal",
        &["op-kill-sends"],
        kill_delivers_signal,
    ));
    all.push(Case::new(
        "lifecycle/delete-frees-resources",
        &["op-delete-resources", "lifecycle-destroy", "model-id-reuse"],
        delete_frees_resources,
    ));
    all.push(Case::new(
        "lifecycle/delete-keeps-foreign-resources",
        &["op-delete-foreign"],
        delete_keeps_foreign_resources,
    ));
    all.push(Case::new(
        "lifecycle/config-edit-after-create",
        &["lifecycle-config-updates"],
        config_edit_after_create,
    ));
    all.push(Case::new(
        "errors/failed-create-leaves-nothing",
        &[
            "op-create-cannot-apply",
            "errors-no-effect",
            "lifecycle-create-error",
            "ns-path",
        ],
        failed_create_leaves_nothing,
    ));
    all.push(Case::new(
        "errors/duplicate-namespace",
        &["ns-duplicate", "errors-no-effect"],
        duplicate_namespace,
    ));
    all.push(Case::new(
        "errors/start-without-process",
        &["op-start-no-process"],
        start_without_process,
    ));
    all.push(Case::new(
        "errors/missing-id",
        &[
            "op-state-no-id",
            "op-start-no-id",
            "op-kill-no-id",
            "op-delete-no-id",
            "op-create-args",
        ],
        missing_id,
    ));
    all.push(Case::new(
        "runc-cli/run-exit-code",
        &["model-run-exit-code"],
        run_exit_code,
    ));
    all.push(Case::new(
        "runc-cli/kill-signal-0",
        &["model-kill-probe"],
        kill_signal_0,
    ));
    all.push(Case::new("runc-cli/ps", &["model-ps"], ps_lists_processes));
    all.push(Case::new(
        "lifecycle/no-mount-namespace",
        &["ns-inherit"],
        |env| no_mount_namespace(env, false),
    ));
    all.push(Case::new(
        "lifecycle/no-mount-namespace-delete-unmounts",
        &["lifecycle-destroy", "op-delete-resources"],
        |env| no_mount_namespace(env, true),
    ));
    all.push(Case::new(
        "errors/masked-paths-without-mount-namespace",
        &["op-create-cannot-apply", "errors-no-effect"],
        masked_paths_without_mount_namespace,
    ));
    all.push(Case::new(
        "runc-cli/exec-exit-codes",
        &["model-exec-exit-code"],
        exec_exit_codes,
    ));
    all.push(Case::new(
        "runc-cli/exec-cgroup",
        &["model-exec-cgroup"],
        exec_cgroup,
    ));
    all
}

/// A draft running [`PROGRAM`].
fn lifecycle_draft(env: &mut Env<'_>) -> Result<Draft, CaseError> {
    let mut draft = env.draft()?;
    draft.config["process"]["args"] = json!(["sh", "-c", PROGRAM]);
    env.write_bundle(&draft)?;
    Ok(draft)
}

/// Whether the host can freeze cgroups (v1 freezer or v2 `cgroup.freeze`).
fn host_can_freeze() -> bool {
    Path::new("/sys/fs/cgroup/freezer").is_dir()
        || Path::new("/sys/fs/cgroup/cgroup.freeze").exists()
        || Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Brings container `id` to `status`; `Err(verdict)` when the runtime cannot get there.
fn reach(env: &mut Env<'_>, id: &str, status: Status) -> Result<Result<Draft, Verdict>, CaseError> {
    let draft = lifecycle_draft(env)?;
    let steps: &[&[&str]] = match status {
        Status::Creating => {
            return Ok(Err(Verdict::Skip("creating is not a resting state".into())))
        }
        Status::Created => &[],
        Status::Running => &[&["start"]],
        Status::Paused => &[&["start"], &["pause"]],
        Status::Stopped => &[&["start"], &["kill", "KILL"]],
    };
    let ran = env.create(id, &draft)?;
    if !ran.ok() {
        return Ok(Err(Verdict::Fail(format!("setup: {}", ran.summary()))));
    }
    for step in steps {
        let mut args = vec![step[0], id];
        args.extend_from_slice(&step[1..]);
        let ran = env.cmd(&args)?;
        if !ran.ok() {
            return Ok(Err(Verdict::Fail(format!("setup: {}", ran.summary()))));
        }
    }
    let observed = if status == Status::Stopped {
        env.runtime().wait_stopped(id, STOP_TIMEOUT)?
    } else {
        env.runtime().state(id)?
    };
    match observed.status() {
        Ok(Some(seen)) if seen == status => Ok(Ok(draft)),
        other => Ok(Err(Verdict::Fail(format!(
            "setup: wanted {status}, `state` shows {other:?}"
        )))),
    }
}

fn describe(result: &Result<(refeng_spec::oci::Outcome, Option<Status>), OpError>) -> String {
    match result {
        Ok((_, next)) => format!("succeeds, leaving it {}", state_label(*next)),
        Err(error) => format!("fails ({error}), leaving it unchanged"),
    }
}

/// One cell of the table in spec/SPEC.md: `op` applied to a container in `from`.
fn table_case(env: &mut Env<'_>, make: MakeOp, from: Option<Status>) -> Result<Verdict, CaseError> {
    let id = env.id(0);
    let op = make(id.clone());
    let needs_freezer = from == Some(Status::Paused) || op.kind() == OpKind::Pause;
    if needs_freezer && !host_can_freeze() {
        return Ok(Verdict::Skip("the host has no cgroup freezer".into()));
    }
    if let Some(status) = from {
        if let Err(verdict) = reach(env, &id, status)? {
            return Ok(verdict);
        }
    }
    let expected = Model::next(&op, from);
    let ran = match &op {
        Operation::Create { .. } => {
            let draft = lifecycle_draft(env)?;
            env.create(&id, &draft)?
        }
        Operation::Start { .. } => env.cmd(&["start", &id])?,
        Operation::Kill { signal, .. } => env.cmd(&["kill", &id, signal.name()])?,
        Operation::Delete { force: true, .. } => env.cmd(&["delete", "--force", &id])?,
        Operation::Delete { force: false, .. } => env.cmd(&["delete", &id])?,
        Operation::State { .. } => env.cmd(&["state", &id])?,
        Operation::Pause { .. } => env.cmd(&["pause", &id])?,
        Operation::Resume { .. } => env.cmd(&["resume", &id])?,
        Operation::ProcessExit { .. } => {
            return Ok(Verdict::Skip("the world's event is not a command".into()))
        }
    };
    let want_next = match &expected {
        Ok((_, next)) => *next,
        Err(_) => from,
    };
    let after = if ran.ok() && want_next == Some(Status::Stopped) && from != Some(Status::Stopped) {
        env.runtime().wait_stopped(&id, STOP_TIMEOUT)?
    } else {
        if ran.ok() && op.kind() == OpKind::Kill {
            sleep(SETTLE);
        }
        env.runtime().state(&id)?
    };
    let seen = match after.status() {
        Ok(seen) => seen,
        Err(garbled) => return Ok(Verdict::Fail(format!("after `{}`: {garbled}", ran.command))),
    };
    let reported_ok = match (&op, &expected) {
        // `state` must also report the model's status.
        (Operation::State { .. }, Ok(_)) => {
            ran.ok()
                && serde_json::from_str::<crate::conformance::driver::StateDocument>(&ran.stdout)
                    .ok()
                    .and_then(|document| document.model_status())
                    == from
        }
        _ => ran.ok() == expected.is_ok(),
    };
    let summary = format!(
        "model: {} in {} {}; runtime: {} (exit {}), then `state` shows {}",
        op.kind(),
        state_label(from),
        describe(&expected),
        if ran.ok() { "succeeded" } else { "failed" },
        ran.status
            .code()
            .map_or_else(|| "signal".to_owned(), |c| c.to_string()),
        state_label(seen),
    );
    if reported_ok && seen == want_next {
        Ok(Verdict::Pass(summary))
    } else {
        Ok(Verdict::Fail(format!("{summary}; {}", ran.summary())))
    }
}

fn exists(draft: &Draft, name: &str) -> bool {
    draft.exchange.join(name).exists()
}

fn program_runs_only_at_start(env: &mut Env<'_>) -> Result<Verdict, CaseError> {
    let id = env.id(0);
    let draft = lifecycle_draft(env)?;
    let ran = env.create(&id, &draft)?;
    if !ran.ok() {
        return Ok(Verdict::Fail(ran.summary()));
    }
    sleep(SETTLE);
    if exists(&draft, "ran") {
        return Ok(Verdict::Fail("the program ran before `start`".into()));
    }
    let ran = env.cmd(&["start", &id])?;
    if !ran.ok() {
        return Ok(Verdict::Fail(ran.summary()));
    }
    if !wait_for(STOP_TIMEOUT, || exists(&draft, "ran")) {
        return Ok(Verdict::Fail(
            "the program did not run after `start`".into(),
        ));
    }
    Ok(Verdict::Pass(
        "not run after create, run after start".into(),
    ))
}

fn check_document(
    observed: &Observed,
    id: &str,
    bundle: &Path,
    want: Status,
    problems: &mut Vec<String>,
) -> Option<i64> {
    let Observed::Present(document) = observed else {
        problems.push(format!("{want}: no state document: {observed:?}"));
        return None;
    };
    if document.oci_version.as_deref().is_none_or(str::is_empty) {
        problems.push(format!("{want}: no ociVersion"));
    }
    if document.id.as_deref() != Some(id) {
        problems.push(format!("{want}: id {:?}", document.id));
    }
    if document.model_status() != Some(want) {
        problems.push(format!("{want}: status {:?}", document.status));
    }
    let bundle_text = bundle.to_string_lossy();
    if document.bundle.as_deref() != Some(&*bundle_text) {
        problems.push(format!(
            "{want}: bundle {:?}, want {bundle_text:?}",
            document.bundle
        ));
    }
    if matches!(want, Status::Created | Status::Running) {
        match document.pid {
            Some(pid) if pid > 0 && Path::new(&format!("/proc/{pid}")).exists() => {}
            other => problems.push(format!("{want}: pid {other:?} is no live host process")),
        }
    }
    document.pid
}

fn state_document(env: &mut Env<'_>) -> Result<Verdict, CaseError> {
    let id = env.id(0);
    let draft = lifecycle_draft(env)?;
    let mut problems = Vec::new();
    let ran = env.create(&id, &draft)?;
    if !ran.ok() {
        return Ok(Verdict::Fail(ran.summary()));
    }
    let observed = env.runtime().state(&id)?;
    let created_pid = check_document(&observed, &id, &draft.dir, Status::Created, &mut problems);
    env.cmd(&["start", &id])?;
    wait_for(STOP_TIMEOUT, || exists(&draft, "ran"));
    let observed = env.runtime().state(&id)?;
    let running_pid = check_document(&observed, &id, &draft.dir, Status::Running, &mut problems);
    if created_pid != running_pid {
        problems.push(format!(
            "the container process changed from {created_pid:?} to {running_pid:?} at start"
        ));
    }
    // runtime-spec: State, pid "as seen by the host": the host's /proc/<pid> is the program.
    if let Some(pid) = running_pid {
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !text.contains("while [ ! -e /conformance/exit ]") {
            problems.push(format!("pid {pid} runs {text:?}, not the program"));
        }
    }
    bundle_touch(&draft, "exit")?;
    let observed = env.runtime().wait_stopped(&id, STOP_TIMEOUT)?;
    check_document(&observed, &id, &draft.dir, Status::Stopped, &mut problems);
    if problems.is_empty() {
        Ok(Verdict::Pass(
            "created, running and stopped documents as specified".into(),
        ))
    } else {
        Ok(Verdict::Fail(problems.join("; ")))
    }
}

fn bundle_touch(draft: &Draft, name: &str) -> Result<(), CaseError> {
    crate::conformance::bundle::write(&draft.exchange.join(name), b"").map_err(CaseError::from)
}

fn process_exit_stops(env: &mut Env<'_>) -> Result<Verdict, CaseError> {
    let id = env.id(0);
    let draft = match reach(env, &id, Status::Running)? {
        Ok(draft) => draft,
        Err(verdict) => return Ok(verdict),
    };
    bundle_touch(&draft, "exit")?;
    let observed = env.runtime().wait_stopped(&id, STOP_TIMEOUT)?;
    match observed.status() {
        Ok(Some(Status::Stopped)) => Ok(Verdict::Pass("stopped after the program exited".into())),
        other => Ok(Verdict::Fail(format!(
            "the program exited; `state` shows {other:?}"
        ))),
    }
}

fn kill_delivers_signal(env: &mut Env<'_>) -> Result<Verdict, CaseError> {
    let id = env.id(0);
    let mut draft = env.draft()?;
    draft.config["process"]["args"] = json!([
        "sh",
        "-c",
        "trap 'touch /conformance/got-usr1; exit 0' USR1; touch /conformance/ready; \
         while :; do sleep 0.05; done"
    ]);
    env.write_bundle(&draft)?;
    let ran = env.create(&id, &draft)?;
    if !ran.ok() {
        return Ok(Verdict::Fail(ran.summary()));
    }
    let ran = env.cmd(&["start", &id])?;
    if !ran.ok() || !wait_for(STOP_TIMEOUT, || exists(&draft, "ready")) {
        return Ok(Verdict::Fail(format!(
            "the program did not start: {}",
            ran.summary()
        )));
    }
    let ran = env.cmd(&["kill", &id, "USR1"])?;
    if !ran.ok() {
        return Ok(Verdict::Fail(ran.summary()));
    }
    if !wait_for(STOP_TIMEOUT, || exists(&draft, "got-usr1")) {
        return Ok(Verdict::Fail("the program's USR1 handler never ran".into()));
    }
    let observed = env.runtime().wait_stopped(&id, STOP_TIMEOUT)?;
    match observed.status() {
        Ok(Some(Status::Stopped)) => Ok(Verdict::Pass("USR1 reached the program's handler".into())),
        other => Ok(Verdict::Fail(format!(
            "the handler exited the program; `state` shows {other:?}"
        ))),
    }
}

fn delete_frees_resources(env: &mut Env<'_>) -> Result<Verdict, CaseError> {
    let id = env.id(0);
    let draft = match reach(env, &id, Status::Stopped)? {
        Ok(draft) => draft,
        Err(verdict) => return Ok(verdict),
    };
    let ran = env.cmd(&["delete", &id])?;
    if !ran.ok() {
        return Ok(Verdict::Fail(ran.summary()));
    }
    let mut problems = Vec::new();
    if let Observed::Present(document) = env.runtime().state(&id)? {
        problems.push(format!("`state` still reports {:?}", document.status));
    }
    let left = cgroup_dirs(&draft.cgroups_path);
    if !left.is_empty() {
        problems.push(format!("cgroups left behind: {left:?}"));
    }
    let again = lifecycle_draft(env)?;
    let ran = env.create(&id, &again)?;
    if !ran.ok() {
        problems.push(format!("the id is not free again: {}", ran.summary()));
    }
    if problems.is_empty() {
        Ok(Verdict::Pass("state, cgroups and id released".into()))
    } else {
        Ok(Verdict::Fail(problems.join("; ")))
    }
}

fn delete_keeps_foreign_resources(env: &mut Env<'_>) -> Result<Verdict, CaseError> {
    let id = env.id(0);
    let mut draft = env.draft()?;
    draft.config["process"]["args"] = json!(["sh", "-c", PROGRAM]);
    // A bind source with content and a cgroup that exist before create belong to the caller.
    let source = draft.exchange.join("foreign");
    crate::conformance::bundle::make_dir(&source, 0o755)?;
    crate::conformance::bundle::write(&source.join("keep"), "keep")?;
    if let Some(mounts) = draft.config["mounts"].as_array_mut() {
        mounts.push(
            json!({"destination": "/mnt/foreign", "type": "bind", "source": source,
                           "options": ["rbind", "rw"]}),
        );
    }
    let mut precreated = Vec::new();
    for hierarchy in crate::conformance::bundle::cgroup_hierarchies() {
        let dir = hierarchy.join(draft.cgroups_path.trim_start_matches('/'));
        if fs::create_dir_all(&dir).is_ok() {
            precreated.push(dir);
        }
    }
    env.write_bundle(&draft)?;
    let ran = env.create(&id, &draft)?;
    if !ran.ok() {
        return Ok(Verdict::Fail(ran.summary()));
    }
    env.cmd(&["start", &id])?;
    bundle_touch(&draft, "exit")?;
    env.runtime().wait_stopped(&id, STOP_TIMEOUT)?;
    let ran = env.cmd(&["delete", &id])?;
    if !ran.ok() {
        return Ok(Verdict::Fail(ran.summary()));
    }
    let mut problems = Vec::new();
    if !source.join("keep").exists() {
        problems.push("the bind source's content was deleted".to_owned());
    }
    let removed: Vec<_> = precreated.iter().filter(|dir| !dir.exists()).collect();
    if !removed.is_empty() {
        problems.push(format!("pre-existing cgroups were removed: {removed:?}"));
    }
    if problems.is_empty() {
        Ok(Verdict::Pass(
            "bind source and pre-existing cgroups kept".into(),
        ))
    } else {
        Ok(Verdict::Fail(problems.join("; ")))
    }
}

fn config_edit_after_create(env: &mut Env<'_>) -> Result<Verdict, CaseError> {
    let id = env.id(0);
    let mut draft = lifecycle_draft(env)?;
    let ran = env.create(&id, &draft)?;
    if !ran.ok() {
        return Ok(Verdict::Fail(ran.summary()));
    }
    // A config edited after create names another program; start must still run the first one.
    draft.config["process"]["args"] = json!(["sh", "-c", "touch /conformance/edited"]);
    let text = serde_json::to_string(&draft.config).unwrap_or_default();
    crate::conformance::bundle::write(&draft.dir.join("config.json"), text)?;
    let ran = env.cmd(&["start", &id])?;
    if !ran.ok() {
        return Ok(Verdict::Fail(ran.summary()));
    }
    if !wait_for(STOP_TIMEOUT, || {
        exists(&draft, "ran") || exists(&draft, "edited")
    }) {
        return Ok(Verdict::Fail("no program ran after start".into()));
    }
    if exists(&draft, "edited") {
        Ok(Verdict::Fail(
            "start ran the program of the edited config.json".into(),
        ))
    } else {
        Ok(Verdict::Pass("the config as of create was used".into()))
    }
}

/// The container must not exist and its cgroup must be gone after a failed create.
fn left_nothing(
    env: &mut Env<'_>,
    id: &str,
    draft: &Draft,
    ran: &Ran,
) -> Result<Verdict, CaseError> {
    if ran.ok() {
        return Ok(Verdict::Fail(format!(
            "create succeeded: {}",
            ran.summary()
        )));
    }
    let mut problems = Vec::new();
    if let Observed::Present(document) = env.runtime().state(id)? {
        problems.push(format!(
            "`state` reports {:?} after the failed create",
            document.status
        ));
    }
    let left = cgroup_dirs(&draft.cgroups_path);
    if !left.is_empty() {
        problems.push(format!("cgroups left behind: {left:?}"));
    }
    let list = env.cmd(&["list", "--format", "json"])?;
    if list.stdout.contains(id) {
        problems.push("`list` still shows the container".into());
    }
    if problems.is_empty() {
        Ok(Verdict::Pass(
            "error, and no container or cgroup left".into(),
        ))
    } else {
        Ok(Verdict::Fail(problems.join("; ")))
    }
}

fn failed_create_leaves_nothing(env: &mut Env<'_>) -> Result<Verdict, CaseError> {
    let id = env.id(0);
    let mut draft = env.draft()?;
    let missing = draft.dir.join("no-such-namespace");
    // The path one replaces the plain ipc entry, so it is the only ipc namespace.
    if let Some(list) = draft.config["linux"]["namespaces"].as_array_mut() {
        list.retain(|ns| ns["type"] != "ipc");
        list.push(json!({"type": "ipc", "path": missing}));
    }
    env.write_bundle(&draft)?;
    let ran = env.create(&id, &draft)?;
    left_nothing(env, &id, &draft, &ran)
}

fn duplicate_namespace(env: &mut Env<'_>) -> Result<Verdict, CaseError> {
    let id = env.id(0);
    let mut draft = env.draft()?;
    if let Some(list) = draft.config["linux"]["namespaces"].as_array_mut() {
        list.push(json!({"type": "uts"}));
    }
    env.write_bundle(&draft)?;
    let ran = env.create(&id, &draft)?;
    left_nothing(env, &id, &draft, &ran)
}

fn start_without_process(env: &mut Env<'_>) -> Result<Verdict, CaseError> {
    let id = env.id(0);
    let mut draft = env.draft()?;
    if let Some(config) = draft.config.as_object_mut() {
        config.remove("process");
    }
    env.write_bundle(&draft)?;
    let created = env.create(&id, &draft)?;
    if !created.ok() {
        // Refusing at create is the earlier error the spec allows for an unusable config.
        return Ok(Verdict::Pass(format!(
            "refused at create: {}",
            created.summary()
        )));
    }
    let ran = env.cmd(&["start", &id])?;
    if ran.ok() {
        Ok(Verdict::Fail("start succeeded without process".into()))
    } else {
        Ok(Verdict::Pass("start failed".into()))
    }
}

fn missing_id(env: &mut Env<'_>) -> Result<Verdict, CaseError> {
    let draft = lifecycle_draft(env)?;
    let dir = draft.dir.to_string_lossy().into_owned();
    let mut problems = Vec::new();
    for args in [
        vec!["state"],
        vec!["start"],
        vec!["kill"],
        vec!["delete"],
        vec!["create", "--bundle", dir.as_str()],
    ] {
        let ran = env.cmd(&args)?;
        if ran.ok() {
            problems.push(format!("`{}` succeeded", args.join(" ")));
        }
    }
    let list = env.cmd(&["list", "--format", "json"])?;
    let listed: Vec<serde_json::Value> = serde_json::from_str(&list.stdout).unwrap_or_default();
    if !listed.is_empty() {
        problems.push(format!("containers appeared: {}", list.stdout.trim()));
    }
    if problems.is_empty() {
        Ok(Verdict::Pass("every operation without an id failed".into()))
    } else {
        Ok(Verdict::Fail(problems.join("; ")))
    }
}

fn run_exit_code(env: &mut Env<'_>) -> Result<Verdict, CaseError> {
    let id = env.id(0);
    let mut draft = env.draft()?;
    draft.config["process"]["args"] = json!(["sh", "-c", "exit 7"]);
    env.write_bundle(&draft)?;
    let ran = env.run_attached(&id, &draft)?;
    if ran.status.code() == Some(7) {
        Ok(Verdict::Pass("`run` exited 7 like the program".into()))
    } else {
        Ok(Verdict::Fail(format!(
            "the program exited 7; {}",
            ran.summary()
        )))
    }
}

/// `kill <id> 0`, kill(2)'s liveness probe: it must succeed in created and running and leave the
/// container as it was, and fail once the container is stopped.
fn kill_signal_0(env: &mut Env<'_>) -> Result<Verdict, CaseError> {
    let id = env.id(0);
    let draft = lifecycle_draft(env)?;
    let ran = env.create(&id, &draft)?;
    if !ran.ok() {
        return Ok(Verdict::Fail(format!("setup: {}", ran.summary())));
    }
    let mut problems = Vec::new();
    for (want, step) in [(Status::Created, None), (Status::Running, Some("start"))] {
        if let Some(step) = step {
            let ran = env.cmd(&[step, &id])?;
            if !ran.ok() {
                return Ok(Verdict::Fail(format!("setup: {}", ran.summary())));
            }
        }
        let ran = env.cmd(&["kill", &id, "0"])?;
        if !ran.ok() {
            problems.push(format!("`kill 0` in {want} failed: {}", ran.summary()));
        }
        sleep(SETTLE);
        match env.runtime().state(&id)?.status() {
            Ok(Some(seen)) if seen == want => {}
            other => problems.push(format!("after `kill 0` in {want}, `state` shows {other:?}")),
        }
    }
    env.cmd(&["kill", &id, "KILL"])?;
    env.runtime().wait_stopped(&id, STOP_TIMEOUT)?;
    let ran = env.cmd(&["kill", &id, "0"])?;
    if ran.ok() {
        problems.push("`kill 0` of a stopped container succeeded".into());
    }
    if problems.is_empty() {
        Ok(Verdict::Pass(
            "signal 0 probed created and running and failed on stopped".into(),
        ))
    } else {
        Ok(Verdict::Fail(problems.join("; ")))
    }
}

/// The pids `ps --format json` printed: runc prints `null` for none, refeng-runc `[]`.
fn ps_pids(ran: &Ran) -> Option<Vec<i64>> {
    serde_json::from_str::<Option<Vec<i64>>>(&ran.stdout)
        .ok()
        .map(Option::unwrap_or_default)
}

/// `ps` of a running container lists init; of a stopped one it lists nothing and succeeds, in
/// both formats (the table keeps at most its header line).
fn ps_lists_processes(env: &mut Env<'_>) -> Result<Verdict, CaseError> {
    let id = env.id(0);
    let draft = match reach(env, &id, Status::Running)? {
        Ok(draft) => draft,
        Err(verdict) => return Ok(verdict),
    };
    let mut problems = Vec::new();
    let pid = match env.runtime().state(&id)? {
        Observed::Present(document) => document.pid,
        other => return Ok(Verdict::Fail(format!("setup: `state` shows {other:?}"))),
    };
    let ran = env.cmd(&["ps", "--format", "json", &id])?;
    match ps_pids(&ran) {
        Some(pids) if ran.ok() && pid.is_some_and(|pid| pids.contains(&pid)) => {}
        _ => problems.push(format!(
            "`ps` of a running container does not list init {pid:?}: {}",
            ran.summary()
        )),
    }
    bundle_touch(&draft, "exit")?;
    env.runtime().wait_stopped(&id, STOP_TIMEOUT)?;
    let ran = env.cmd(&["ps", "--format", "json", &id])?;
    match ps_pids(&ran) {
        Some(pids) if ran.ok() && pids.is_empty() => {}
        _ => problems.push(format!(
            "`ps --format json` of a stopped container: {}; stdout {:?}",
            ran.summary(),
            ran.stdout
        )),
    }
    let ran = env.cmd(&["ps", &id])?;
    if !ran.ok() || ran.stdout.lines().count() > 1 {
        problems.push(format!(
            "`ps` of a stopped container: {}; stdout {:?}",
            ran.summary(),
            ran.stdout
        ));
    }
    if problems.is_empty() {
        Ok(Verdict::Pass(
            "init listed while running, nothing once stopped".into(),
        ))
    } else {
        Ok(Verdict::Fail(problems.join("; ")))
    }
}

/// `exec`'s exit status: the process's own, and runc's 255 for every exec that fails (a missing
/// binary, a pid file that cannot be written, a stopped container); a process started before
/// its pid file failed is not left behind.
fn exec_exit_codes(env: &mut Env<'_>) -> Result<Verdict, CaseError> {
    let id = env.id(0);
    let draft = match reach(env, &id, Status::Running)? {
        Ok(draft) => draft,
        Err(verdict) => return Ok(verdict),
    };
    let mut problems = Vec::new();
    let expect = |problems: &mut Vec<String>, ran: &Ran, code: i32, what: &str| {
        if ran.status.code() != Some(code) {
            problems.push(format!("{what}: want exit {code}, {}", ran.summary()));
        }
    };
    let ran = env.cmd(&["exec", &id, "sh", "-c", "exit 3"])?;
    expect(&mut problems, &ran, 3, "a process exiting 3");
    let ran = env.cmd(&["exec", &id, "/conformance-no-such-binary"])?;
    expect(&mut problems, &ran, 255, "a missing binary");
    let pid_file = draft.dir.join("no-such-dir").join("exec.pid");
    let pid_file = pid_file.to_string_lossy().into_owned();
    let marker = "sleep 1234";
    let ran = env.cmd(&["exec", "--pid-file", &pid_file, &id, "sh", "-c", marker])?;
    expect(
        &mut problems,
        &ran,
        255,
        "a pid file that cannot be written",
    );
    let left = |env: &mut Env<'_>| -> Result<Vec<i64>, CaseError> {
        let ran = env.cmd(&["ps", "--format", "json", &id])?;
        Ok(ps_pids(&ran)
            .unwrap_or_default()
            .into_iter()
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains("1234"))
            })
            .collect())
    };
    let mut stray = Vec::new();
    if !wait_for(STOP_TIMEOUT, || match left(env) {
        Ok(pids) => {
            stray = pids;
            stray.is_empty()
        }
        Err(_) => false,
    }) {
        problems.push(format!(
            "the process of the failed exec still runs: pids {stray:?}"
        ));
    }
    bundle_touch(&draft, "exit")?;
    env.runtime().wait_stopped(&id, STOP_TIMEOUT)?;
    let ran = env.cmd(&["exec", &id, "true"])?;
    expect(&mut problems, &ran, 255, "exec in a stopped container");
    if problems.is_empty() {
        Ok(Verdict::Pass(
            "the process's code, and 255 for each failed exec".into(),
        ))
    } else {
        Ok(Verdict::Fail(problems.join("; ")))
    }
}

/// Mount points at or below `dir` in the oracle's (the host's) mount table.
fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(point.replace("\\040", " ")))
        .filter(|point| point.starts_with(dir))
        .collect()
}

/// A draft without a mount namespace, on a rootfs of the case's own: what a runtime leaves
/// mounted on it is the host's, and goes with the case's cleanup (below its directory) instead
/// of showing up under the shared rootfs in later cases. `Err(verdict)`: skip.
fn no_mount_namespace_draft(
    env: &mut Env<'_>,
    program: &str,
) -> Result<Result<(Draft, PathBuf), Verdict>, CaseError> {
    let host_root_shared = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_once(" - ").map(|(fields, _)| fields))
        .any(|fields| fields.split(' ').nth(4) == Some("/") && fields.contains(" shared:"));
    if host_root_shared {
        return Ok(Err(Verdict::Skip(
            "the host's / is shared: a runtime that applies its rootfs propagation to / without \
             a mount namespace (runc 1.1) would change the host's"
                .into(),
        )));
    }
    let rootfs = env.dir.join("rootfs");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&env.run.rootfs)
        .arg(&rootfs)
        .status()
        .and_then(|status| {
            if status.success() {
                Ok(())
            } else {
                Err(std::io::Error::other(format!("cp -a exited {status}")))
            }
        });
    copied.map_err(|source| crate::conformance::bundle::BundleError::Io {
        action: "cannot copy the rootfs to",
        path: rootfs.clone(),
        source,
    })?;
    let mut draft = env.draft()?;
    draft.config["root"]["path"] = json!(rootfs);
    draft.config["linux"]["namespaces"] =
        json!([{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}]);
    if let Some(linux) = draft.config["linux"].as_object_mut() {
        linux.remove("maskedPaths");
        linux.remove("readonlyPaths");
    }
    draft.config["process"]["args"] = json!(["sh", "-c", program]);
    Ok(Ok((draft, rootfs)))
}

/// runtime-spec config-linux "Namespaces": without a `mount` entry the container inherits the
/// runtime's mount namespace, and still gets its mounts (on its rootfs, in that namespace).
/// With `unmounts`: once deleted, nothing it mounted is left there (runtime-spec "delete":
/// the resources create made go).
fn no_mount_namespace(env: &mut Env<'_>, unmounts: bool) -> Result<Verdict, CaseError> {
    let id = env.id(0);
    let program = "busybox readlink /proc/self/ns/mnt > /conformance/mnt; \
                   cat /proc/self/mountinfo > /conformance/mountinfo";
    let (draft, rootfs) = match no_mount_namespace_draft(env, program)? {
        Ok(prepared) => prepared,
        Err(verdict) => return Ok(verdict),
    };
    env.write_bundle(&draft)?;
    let ran = env.create(&id, &draft)?;
    if !ran.ok() {
        return Ok(Verdict::Fail(format!("create: {}", ran.summary())));
    }
    let ran = env.cmd(&["start", &id])?;
    if !ran.ok() {
        return Ok(Verdict::Fail(format!("start: {}", ran.summary())));
    }
    env.runtime().wait_stopped(&id, STOP_TIMEOUT)?;
    let mut problems = Vec::new();
    if unmounts {
        let ran = env.cmd(&["delete", &id])?;
        if !ran.ok() {
            return Ok(Verdict::Fail(format!("delete: {}", ran.summary())));
        }
        let left = mounts_below(&rootfs);
        if !left.is_empty() {
            problems.push(format!(
                "{} mounts left on the host after delete: {left:?}",
                left.len()
            ));
        }
    } else {
        let read = |name: &str| fs::read_to_string(draft.exchange.join(name)).unwrap_or_default();
        let own = fs::read_link("/proc/self/ns/mnt").unwrap_or_default();
        if read("mnt").trim() != own.to_string_lossy() {
            problems.push(format!(
                "the container's mount namespace is {:?}, the runtime's {own:?}",
                read("mnt").trim()
            ));
        }
        let mountinfo = read("mountinfo");
        let points: Vec<&str> = mountinfo
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .collect();
        for want in ["/proc", "/dev", "/conformance"] {
            if !points.contains(&want) {
                problems.push(format!(
                    "the container does not see {want} mounted: {points:?}"
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(Verdict::Pass(if unmounts {
            "nothing of the container left mounted on the host".into()
        } else {
            "the runtime's mount namespace, with the container's mounts".into()
        }))
    } else {
        Ok(Verdict::Fail(problems.join("; ")))
    }
}

/// maskedPaths without a mount namespace would only cover entries below the rootfs in the host's
/// namespace: refused (runc: "unable to restrict sys entries without a private MNT namespace"),
/// leaving no container, cgroup or mount behind.
fn masked_paths_without_mount_namespace(env: &mut Env<'_>) -> Result<Verdict, CaseError> {
    let id = env.id(0);
    let (mut draft, rootfs) = match no_mount_namespace_draft(env, "true")? {
        Ok(prepared) => prepared,
        Err(verdict) => return Ok(verdict),
    };
    draft.config["linux"]["maskedPaths"] = json!(["/proc/kcore"]);
    env.write_bundle(&draft)?;
    let ran = env.create(&id, &draft)?;
    let verdict = left_nothing(env, &id, &draft, &ran)?;
    let left = mounts_below(&rootfs);
    match verdict {
        Verdict::Pass(_) if !left.is_empty() => Ok(Verdict::Fail(format!(
            "{} mounts left on the host: {left:?}",
            left.len()
        ))),
        verdict => Ok(verdict),
    }
}

/// `exec --cgroup sub`: the process runs in the sub-cgroup `sub` of the container's cgroup in
/// every hierarchy; a path that leaves the container's cgroup is refused (runc 1.1
/// `exec --cgroup`).
fn exec_cgroup(env: &mut Env<'_>) -> Result<Verdict, CaseError> {
    let id = env.id(0);
    let mut draft = env.draft()?;
    draft.config["process"]["args"] = json!(["sleep", "1000"]);
    env.write_bundle(&draft)?;
    let created = env.create(&id, &draft)?;
    if !created.ok() {
        return Ok(Verdict::Fail(created.summary()));
    }
    let started = env.cmd(&["start", &id])?;
    if !started.ok() {
        return Ok(Verdict::Fail(started.summary()));
    }
    let pid = match env.runtime().state(&id)? {
        Observed::Present(document) => document.pid.and_then(|p| u32::try_from(p).ok()),
        Observed::Absent(_) | Observed::Garbled(_) => None,
    };
    let Some(pid) = pid else {
        return Ok(Verdict::Fail(
            "state shows no pid of a running container".into(),
        ));
    };
    let init = match ProcCgroup::read(Some(pid)) {
        Ok(init) => init,
        Err(e) => return Ok(Verdict::Fail(crate::runtime::init::error_chain(&e))),
    };
    let sub = bundle::cgroups_below(&init, "sub");
    if sub.is_empty() {
        return Ok(Verdict::Skip(
            "no mounted cgroup hierarchy holds the container".into(),
        ));
    }
    for (_, dir) in &sub {
        if let Err(e) = fs::create_dir(dir) {
            return Ok(Verdict::Skip(format!("cannot make {}: {e}", dir.display())));
        }
        // A new v1 cpuset cgroup takes no task until it has cpus and mems.
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if let Some(value) = dir
                .parent()
                .and_then(|p| fs::read_to_string(p.join(file)).ok())
            {
                let _ = fs::write(dir.join(file), value.trim());
            }
        }
    }
    let want: Vec<String> = sub.into_iter().map(|(line, _)| line).collect();
    let ran = env.cmd(&["exec", "--cgroup", "sub", &id, "cat", "/proc/self/cgroup"])?;
    if !ran.ok() {
        return Ok(Verdict::Fail(ran.summary()));
    }
    let got: Vec<&str> = ran.stdout.lines().collect();
    if got != want {
        return Ok(Verdict::Fail(format!(
            "exec --cgroup sub: the process is in {got:?}, not {want:?}"
        )));
    }
    let escape = env.cmd(&["exec", "--cgroup", "../escape", &id, "true"])?;
    if escape.ok() {
        return Ok(Verdict::Fail(
            "exec --cgroup ../escape (outside the container's cgroup) succeeded".into(),
        ));
    }
    Ok(Verdict::Pass(format!(
        "in the sub-cgroup in {} hierarchies; ../escape refused",
        want.len()
    )))
}
