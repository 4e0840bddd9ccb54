//! The runtime-spec 1.2 statements for Linux the oracle knows about, each with an id the cases
//! cite; `spec/CONFORMANCE.md` embeds [`table`] so the mapping cannot drift from the cases.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// How binding a statement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// RFC 2119 MUST (or MUST NOT).
    Must,
    /// RFC 2119 SHOULD.
    Should,
    /// A property definition without a keyword ("`uid` specifies the user ID"): the runtime
    /// realises it or the property means nothing.
    Property,
    /// Not the spec: refeng's lifecycle model (`spec/SPEC.md`) or the runc command line.
    Model,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Self::Must => "MUST",
            Self::Should => "SHOULD",
            Self::Property => "property",
            Self::Model => "model",
        }
    }
}

/// One statement.
#[derive(Debug, Clone, Copy)]
pub struct Statement {
    /// The id cases cite.
    pub id: &'static str,
    /// How binding it is.
    pub level: Level,
    /// Where it is: `runtime.md Start`, `config-linux.md Devices`, ...
    pub section: &'static str,
    /// The statement, abridged.
    pub text: &'static str,
}

const fn s(id: &'static str, level: Level, section: &'static str, text: &'static str) -> Statement {
    Statement {
        id,
        level,
        section,
        text,
    }
}

use Level::{Model, Must, Property, Should};

/// Every statement, in spec order.
pub const ALL: &[Statement] = &[
    s("state-id-unique", Must, "runtime.md State", "id MUST be unique across all containers on this host"),
    s("state-status-values", Must, "runtime.md State", "additional status values MUST represent new runtime states"),
    s("state-pid", Must, "runtime.md State", "pid REQUIRED when status is created or running, as seen by the host"),
    s("state-bundle", Must, "runtime.md State", "bundle REQUIRED: absolute path to the bundle"),
    s("state-schema", Must, "runtime.md State", "the state MUST adhere to state-schema.json (ociVersion, id, status, bundle)"),
    s("lifecycle-create-env", Must, "runtime.md Lifecycle 2", "the runtime environment MUST be created according to config.json"),
    s("lifecycle-create-error", Must, "runtime.md Lifecycle 2", "unable to create the environment: MUST generate an error"),
    s("lifecycle-no-program-at-create", Must, "runtime.md Lifecycle 2", "the user-specified program MUST NOT be run at create"),
    s("lifecycle-config-updates", Must, "runtime.md Lifecycle 2", "updates to config.json after create MUST NOT affect the container"),
    s("lifecycle-prestart", Must, "runtime.md Lifecycle 3", "prestart hooks MUST be invoked"),
    s("lifecycle-prestart-fail", Must, "runtime.md Lifecycle 3", "a failing prestart hook: error, stop the container, continue at step 12"),
    s("lifecycle-createruntime", Must, "runtime.md Lifecycle 4", "createRuntime hooks MUST be invoked"),
    s("lifecycle-createruntime-fail", Must, "runtime.md Lifecycle 4", "a failing createRuntime hook: error, stop, continue at step 12"),
    s("lifecycle-createcontainer", Must, "runtime.md Lifecycle 5", "createContainer hooks MUST be invoked"),
    s("lifecycle-createcontainer-fail", Must, "runtime.md Lifecycle 5", "a failing createContainer hook: error, stop, continue at step 12"),
    s("lifecycle-startcontainer", Must, "runtime.md Lifecycle 7", "startContainer hooks MUST be invoked"),
    s("lifecycle-startcontainer-fail", Must, "runtime.md Lifecycle 7", "a failing startContainer hook: error, stop, continue at step 12"),
    s("lifecycle-run-program", Must, "runtime.md Lifecycle 8", "the runtime MUST run the user-specified program"),
    s("lifecycle-poststart", Must, "runtime.md Lifecycle 9", "poststart hooks MUST be invoked"),
    s("lifecycle-poststart-fail", Must, "runtime.md Lifecycle 9", "a failing poststart hook: log a warning, lifecycle continues"),
    s("lifecycle-destroy", Must, "runtime.md Lifecycle 12", "the container MUST be destroyed by undoing the create steps"),
    s("lifecycle-poststop", Must, "runtime.md Lifecycle 13", "poststop hooks MUST be invoked"),
    s("lifecycle-poststop-fail", Must, "runtime.md Lifecycle 13", "a failing poststop hook: log a warning, lifecycle continues"),
    s("errors-no-effect", Must, "runtime.md Errors", "an error MUST leave the environment as if the operation were never attempted"),
    s("warnings-continue", Must, "runtime.md Warnings", "a warning MUST NOT change the flow of the operation"),
    s("op-state-no-id", Must, "runtime.md Query State", "MUST generate an error without an ID"),
    s("op-state-absent", Must, "runtime.md Query State", "querying a container that does not exist MUST generate an error"),
    s("op-state-returns", Must, "runtime.md Query State", "MUST return the state as specified in State"),
    s("op-create-args", Must, "runtime.md Create", "MUST generate an error without a bundle path and an ID"),
    s("op-create-unique", Must, "runtime.md Create", "an ID that is not unique: error, and no new container"),
    s("op-create-creates", Must, "runtime.md Create", "MUST create a new container"),
    s("op-create-apply", Must, "runtime.md Create", "all properties except process MUST be applied"),
    s("op-create-no-args", Must, "runtime.md Create", "process.args MUST NOT be applied until start"),
    s("op-create-cannot-apply", Must, "runtime.md Create", "a property that cannot be applied: error, and no new container"),
    s("op-start-no-id", Must, "runtime.md Start", "MUST generate an error without the container ID"),
    s("op-start-not-created", Must, "runtime.md Start", "start of a container that is not created: no effect, and an error"),
    s("op-start-runs", Must, "runtime.md Start", "MUST run the user-specified program"),
    s("op-start-no-process", Must, "runtime.md Start", "MUST generate an error if process was not set"),
    s("op-kill-no-id", Must, "runtime.md Kill", "MUST generate an error without the container ID"),
    s("op-kill-state", Must, "runtime.md Kill", "kill of a container neither created nor running: no effect, and an error"),
    s("op-kill-sends", Must, "runtime.md Kill", "MUST send the specified signal to the container process"),
    s("op-delete-no-id", Must, "runtime.md Delete", "MUST generate an error without the container ID"),
    s("op-delete-not-stopped", Must, "runtime.md Delete", "delete of a container that is not stopped: no effect, and an error"),
    s("op-delete-resources", Must, "runtime.md Delete", "deleting MUST delete the resources created during create"),
    s("op-delete-foreign", Must, "runtime.md Delete", "resources not created by this container MUST NOT be deleted"),
    s("linux-fds", Property, "runtime-linux.md File descriptors", "only stdin, stdout and stderr are kept open by default"),
    s("linux-dev-symlinks", Must, "runtime-linux.md Dev symbolic links", "MUST create /dev/fd, /dev/stdin, /dev/stdout, /dev/stderr"),
    s("root-path", Must, "config.md Root", "a directory MUST exist at root.path"),
    s("root-readonly", Must, "config.md Root", "readonly: the root filesystem MUST be read-only inside the container"),
    s("mounts-order", Must, "config.md Mounts", "the runtime MUST mount entries in the listed order"),
    s("mounts-relative-destination", Must, "config.md Mounts", "a relative destination MUST be interpreted as relative to /"),
    s("mounts-options", Must, "config.md Mounts", "MUST implement ro, rw, nosuid, nodev, noexec, bind, rbind, ... (mount(8))"),
    s("mounts-propagation-options", Must, "config.md Mounts", "MUST implement private, rprivate, shared, rshared, slave, rslave, unbindable"),
    s("mounts-recursive-options", Should, "config.md Mounts", "SHOULD implement rro, rnosuid, ... (mount_setattr)"),
    s("mounts-idmap", Should, "config.md Mounts", "idmap/ridmap SHOULD be supported; uidMappings MUST be used"),
    s("process-terminal", Property, "config.md Process", "terminal attaches a pseudoterminal; consoleSize ignored without it (MUST)"),
    s("process-cwd", Must, "config.md Process", "cwd: the working directory; MUST be absolute"),
    s("process-env", Property, "config.md Process", "env: the environment, as environ"),
    s("process-args", Property, "config.md Process", "args: the program and its arguments, as execvp"),
    s("process-rlimits", Must, "config.md POSIX process", "for each rlimit, getrlimit MUST match soft and hard"),
    s("process-rlimits-invalid", Must, "config.md POSIX process", "unmappable or duplicated rlimits MUST generate an error"),
    s("process-capabilities", Property, "config.md Linux process", "capabilities: the five capability sets of the process"),
    s("process-capabilities-warn", Must, "config.md Linux process", "capabilities that cannot be granted MUST be logged as a warning"),
    s("process-no-new-privileges", Property, "config.md Linux process", "noNewPrivileges prevents gaining privileges (PR_SET_NO_NEW_PRIVS)"),
    s("process-oom-score-adj", Must, "config.md Linux process", "oomScoreAdj set: MUST set oom_score_adj; unset: MUST NOT change it"),
    s("process-user", Property, "config.md User", "uid, gid, umask and additionalGids of the process"),
    s("process-apparmor-selinux", Property, "config.md Linux process", "apparmorProfile and selinuxLabel of the process"),
    s("process-io-priority", Property, "config.md Linux process", "ioPriority of the process (1.2)"),
    s("process-scheduler", Property, "config.md Linux process", "scheduler policy of the process (1.2)"),
    s("hostname", Property, "config.md Hostname", "hostname (and domainname) of the container's UTS namespace"),
    s("hooks-order", Must, "config.md Hooks", "hooks MUST be called in the listed order"),
    s("hooks-stdin", Must, "config.md Hooks", "the state MUST be passed to hooks over stdin"),
    s("hooks-namespaces", Must, "config.md Hooks", "each hook's path resolves and runs in the namespace the spec names"),
    s("hooks-timing", Must, "config.md Hooks", "prestart/createRuntime/createContainer during create, startContainer before the program, poststart before start returns, poststop before delete returns"),
    s("hooks-timeout", Must, "config.md Hooks", "timeout: the hook is killed after it"),
    s("annotations-unknown", Must, "config.md Annotations", "unknown annotation keys MUST be handled like unknown properties"),
    s("extensibility-unknown", Must, "config.md Extensibility", "unknown properties MUST be ignored"),
    s("invalid-values", Must, "config.md Valid values", "invalid or unsupported values MUST generate an error"),
    s("linux-filesystems", Should, "config-linux.md Default filesystems", "/proc, /sys, /dev/pts and /dev/shm SHOULD be available"),
    s("ns-path", Must, "config-linux.md Namespaces", "a namespace path: the process MUST be placed in it"),
    s("ns-path-wrong-type", Must, "config-linux.md Namespaces", "a path of another namespace type MUST generate an error"),
    s("ns-new", Must, "config-linux.md Namespaces", "no path: the runtime MUST create a new namespace"),
    s("ns-inherit", Must, "config-linux.md Namespaces", "a type not listed MUST be inherited from the runtime"),
    s("ns-duplicate", Must, "config-linux.md Namespaces", "duplicated namespace types MUST generate an error"),
    s("ns-types", Should, "config-linux.md Namespaces", "pid, network, mount, ipc, uts, user, cgroup (time) SHOULD be supported"),
    s("user-mappings", Property, "config-linux.md User namespace mappings", "uidMappings and gidMappings of the user namespace"),
    s("time-offsets", Property, "config-linux.md Offset for Time Namespace", "timeOffsets of the time namespace"),
    s("devices-available", Must, "config-linux.md Devices", "devices MUST be available in the container (type, numbers, mode, owner)"),
    s("devices-conflict", Must, "config-linux.md Devices", "an existing file at path that does not match MUST generate an error"),
    s("default-devices", Must, "config-linux.md Default Devices", "MUST supply null, zero, full, random, urandom, tty, ptmx (console with a terminal)"),
    s("cgroups-fit-check", Must, "config-linux.md Control groups", "a failed fitness check of the cgroup MUST generate an error"),
    s("cgroups-path-absolute", Must, "config-linux.md cgroupsPath", "an absolute cgroupsPath MUST be relative to the cgroups mount point"),
    s("cgroups-path-consistent", Must, "config-linux.md cgroupsPath", "the same cgroupsPath MUST attach to the same place"),
    s("cgroups-path-relative", Model, "config-linux.md cgroupsPath (runc)", "a relative cgroupsPath is below the caller's own cgroup in each hierarchy"),
    s("cgroups-device-allowlist", Must, "config-linux.md Device allowlist", "device rules MUST be applied in the listed order"),
    s("cgroups-resources", Property, "config-linux.md memory, cpu, pids, ...", "resource limits are written to the container's cgroup"),
    s("cgroups-missing-controller", Must, "config-linux.md Unified", "a controller that is not present MUST generate an error"),
    s("intel-rdt", Must, "config-linux.md IntelRdt", "intelRdt: resctrl handling"),
    s("sysctl", Property, "config-linux.md Sysctl", "sysctl: kernel parameters set for the container"),
    s("seccomp", Property, "config-linux.md Seccomp", "seccomp: the filter is loaded; actions and errnoRet as written"),
    s("seccomp-errno-unsupported", Must, "config-linux.md Seccomp", "an action without errno support given errnoRet MUST fail"),
    s("seccomp-listener", Must, "config-linux.md Seccomp", "listenerPath: one state per connection over AF_UNIX, fds with SCM_RIGHTS"),
    s("rootfs-propagation", Property, "config-linux.md Rootfs Mount Propagation", "rootfsPropagation: shared, slave, private, unbindable"),
    s("masked-paths", Property, "config-linux.md Masked Paths", "maskedPaths cannot be read inside the container"),
    s("readonly-paths", Property, "config-linux.md Readonly Paths", "readonlyPaths are read-only inside the container"),
    s("mount-label", Property, "config-linux.md Mount Label", "mountLabel: the SELinux context of the mounts"),
    s("personality", Property, "config-linux.md Personality", "personality: the execution domain"),
    s("model-pause", Model, "SPEC.md (runc CLI)", "pause only from running, resume only from paused"),
    s("model-delete-force", Model, "SPEC.md (runc CLI)", "delete --force removes a container in any state; an absent id is no error"),
    s("model-kill-paused", Model, "SPEC.md (runc CLI)", "a paused container is signalled as a running one: KILL stops it (the runtime thaws it), other signals leave it paused"),
    s("model-kill-ignored", Model, "SPEC.md", "a signal pid 1 has no handler for (TERM, USR1) leaves created and running as they are"),
    s("model-run-exit-code", Model, "runc CLI", "run exits with the container process's exit code"),
    s("model-exec-exit-code", Model, "runc CLI", "exec exits with the process's exit code, and 255 when the process cannot be started"),
    s("model-ps", Model, "runc CLI", "ps lists the container's processes; of a stopped container none, and succeeds"),
    s("model-kill-probe", Model, "runc CLI", "kill with signal 0 succeeds while the process lives, delivers nothing, and fails once stopped"),
    s("model-exec-cgroup", Model, "runc CLI exec --cgroup", "exec --cgroup runs the process in existing sub-cgroups of the container's cgroup, never outside it"),
    s("model-id-reuse", Model, "SPEC.md", "an id is free again after delete"),
    s("model-exit", Model, "SPEC.md", "the process exiting by itself makes the container stopped"),
    s("model-seccomp-listener-at-create", Model, "runc CLI", "a notify filter's fd reaches listenerPath during create (state creating, init's pid), before create returns"),
];

/// The statement with this id.
#[must_use]
pub fn find(id: &str) -> Option<&'static Statement> {
    ALL.iter().find(|statement| statement.id == id)
}

/// The markdown table: every statement, its level and section, and the cases that check it
/// (`—` for the uncovered ones), followed by the list of uncovered ids.
#[must_use]
pub fn table(cases: &[(String, Vec<&'static str>)]) -> String {
    let mut by_statement: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, ids) in cases {
        for id in ids {
            by_statement.entry(id).or_default().push(name);
        }
    }
    let mut out =
        String::from("| id | level | section | statement | cases |\n|---|---|---|---|---|\n");
    let mut uncovered = Vec::new();
    for statement in ALL {
        let names = by_statement.get(statement.id);
        let cell = names.map_or_else(
            || "—".to_owned(),
            |names| {
                names
                    .iter()
                    .map(|name| format!("`{name}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        );
        if names.is_none() {
            uncovered.push(statement.id);
        }
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {cell} |",
            statement.id,
            statement.level.as_str(),
            statement.section,
            statement.text
        );
    }
    let _ = writeln!(
        out,
        "\nNot covered yet ({}): {}",
        uncovered.len(),
        uncovered
            .iter()
            .map(|id| format!("`{id}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out
}
