//! The runc-compatible command line of refeng-runc: flags as runc spells them (`--flag value` and
//! `--flag=value`, before or after the container id), runc's output formats, and errors written
//! both to stderr and, as logrus-style JSON lines when asked, to `--log` where containerd reads them.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use nix::sys::signal::Signal;
use refeng_spec::oci::OpError;

use crate::runtime::container::{self, AnyContainer, Operation};
use crate::runtime::create::{create, CreateOptions};
use crate::runtime::state::{StateError, StateReport, StateRoot};

/// refeng-runc: an OCI runtime with runc's command line.
#[derive(Debug, Parser)]
#[command(name = "refeng-runc", version, about, disable_help_subcommand = true)]
pub struct Cli {
    /// Directory for container state.
    #[arg(long, global = true, default_value = "/run/refeng-runc")]
    pub root: PathBuf,
    /// Log file (stderr when absent).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format.
    #[arg(long = "log-format", global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Debug logging.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use systemd for cgroups (refused: refeng-runc drives cgroupfs only).
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// runc's rootless switch (before the subcommand); only `false` and `auto` (meaning not
    /// rootless, as root) are accepted.
    #[arg(long = "rootless")]
    pub rootless_mode: Option<String>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `time=... level=... msg=...`
    Text,
    /// One JSON object per line: `{"level","msg","time"}`.
    Json,
}

/// Output format of `list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// Aligned columns.
    Table,
    /// A JSON array of states.
    Json,
}

/// Flags shared by `create` and `run`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Container id.
    pub id: String,
    /// Bundle directory.
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    /// File to write the container's pid to.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Use chroot instead of pivot_root.
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not use a new session keyring (accepted; refeng-runc never creates one).
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass N extra descriptors (3..3+N) into the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
}

/// Flags of `exec` (runc's).
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Container id.
    pub id: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// A runtime-spec process JSON file describing the process.
    #[arg(long, short = 'p')]
    pub process: Option<PathBuf>,
    /// Allocate a pseudo-terminal.
    #[arg(long, short = 't')]
    pub tty: bool,
    /// Unix socket that receives the pty master.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Return once the process runs.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// File to write the process's pid to.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Set an environment variable (KEY=value).
    #[arg(long, short = 'e')]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// uid[:gid] to run as.
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// Additional gids.
    #[arg(long = "additional-gids", short = 'g')]
    pub additional_gids: Vec<u32>,
    /// Add a capability to the bounding, effective and permitted sets.
    #[arg(long, short = 'c')]
    pub cap: Vec<String>,
    /// Set no_new_privs for the process.
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// Pass N extra descriptors (3..3+N) into the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Exec into a paused container.
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
    /// AppArmor profile (refused: not supported).
    #[arg(long)]
    pub apparmor: Option<String>,
    /// SELinux process label (refused: not supported).
    #[arg(long = "process-label")]
    pub process_label: Option<String>,
    /// Run the process in an existing sub-cgroup of the container's cgroup:
    /// `[CONTROLLER[,CONTROLLER]:]PATH`, repeatable (runc 1.1's rules).
    #[arg(long)]
    pub cgroup: Vec<String>,
}

/// Flags of `update` (runc's).
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Container id.
    pub id: String,
    /// A runtime-spec resources JSON file, `-` for stdin.
    #[arg(long, short = 'r')]
    pub resources: Option<PathBuf>,
    /// Memory limit (bytes or with a k/m/g suffix; -1 unlimited).
    #[arg(long)]
    pub memory: Option<String>,
    /// Memory soft limit.
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit.
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    /// Kernel memory limit.
    #[arg(long = "kernel-memory")]
    pub kernel_memory: Option<String>,
    /// Kernel TCP memory limit.
    #[arg(long = "kernel-memory-tcp")]
    pub kernel_memory_tcp: Option<String>,
    /// CPU shares.
    #[arg(long = "cpu-share")]
    pub cpu_share: Option<u64>,
    /// CPU CFS quota in microseconds.
    #[arg(long = "cpu-quota", allow_negative_numbers = true)]
    pub cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds.
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    /// CPU realtime runtime in microseconds.
    #[arg(long = "cpu-rt-runtime")]
    pub cpu_rt_runtime: Option<i64>,
    /// CPU realtime period in microseconds.
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<u64>,
    /// CPUs to run on.
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes to allocate from.
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Maximum number of processes (-1 or 0 unlimited).
    #[arg(long = "pids-limit", allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    /// Block IO weight (10-1000).
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    /// Intel RDT L3 cache schema (refused: not supported).
    #[arg(long = "l3-cache-schema")]
    pub l3_cache_schema: Option<String>,
    /// Intel RDT memory bandwidth schema (refused: not supported).
    #[arg(long = "mem-bw-schema")]
    pub mem_bw_schema: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container.
    Create(CreateArgs),
    /// Start a created container.
    Start {
        /// Container id.
        id: String,
    },
    /// Create and start a container; in the foreground, wait for it and return its exit code.
    Run {
        /// create's flags.
        #[command(flatten)]
        create: CreateArgs,
        /// Return once the container runs.
        #[arg(long, short = 'd')]
        detach: bool,
        /// Keep the container after it exits.
        #[arg(long)]
        keep: bool,
    },
    /// Run a new process inside a container.
    Exec(ExecArgs),
    /// Freeze every process of a running container.
    Pause {
        /// Container id.
        id: String,
    },
    /// Thaw a paused container.
    Resume {
        /// Container id.
        id: String,
    },
    /// List the processes of a container.
    Ps {
        /// Container id.
        id: String,
        /// Output format.
        #[arg(long, short = 'f', value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        /// Arguments for ps(1) (table format; `-ef` by default).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Change the resource limits of a container.
    Update(UpdateArgs),
    /// Print resource usage and OOM events of a container as JSON lines.
    Events {
        /// Container id.
        id: String,
        /// Print one stats event and exit.
        #[arg(long)]
        stats: bool,
        /// Time between stats events.
        #[arg(long, default_value = "5s")]
        interval: String,
    },
    /// Print the state of a container.
    State {
        /// Container id.
        id: String,
    },
    /// Send a signal to a container.
    Kill {
        /// Container id.
        id: String,
        /// Signal name (KILL, SIGKILL) or number; SIGTERM by default.
        signal: Option<String>,
        /// Signal every process of the container.
        #[arg(long, short = 'a')]
        all: bool,
    },
    /// Delete a container.
    Delete {
        /// Container id.
        id: String,
        /// Kill it first if it is alive.
        #[arg(long, short = 'f')]
        force: bool,
    },
    /// List containers.
    #[command(alias = "ls")]
    List {
        /// Output format.
        #[arg(long, short = 'f', value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        /// Print only ids.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Write a default config.json.
    Spec {
        /// Bundle directory to write config.json into.
        #[arg(long, short = 'b')]
        bundle: Option<PathBuf>,
        /// A config for a rootless container.
        #[arg(long)]
        rootless: bool,
    },
    /// Print the runtime-spec features document.
    Features,
}

/// runc's exit code for every `exec` that fails, whatever the cause (its `fatalWithCode(err,
/// 255)`): callers such as containerd tell "exec failed" from "the process exited 1" by it.
pub const EXEC_FAILED: i32 = 255;

impl Command {
    /// The exit code of a failure of this command: [`EXEC_FAILED`] for `exec`, 1 otherwise.
    pub fn failure_exit_code(&self) -> i32 {
        match self {
            Command::Exec(_) => EXEC_FAILED,
            _ => 1,
        }
    }

    /// Whether the command forks processes that end up inside a container (and so must run from
    /// a sealed copy of the binary).
    pub fn builds_container_processes(&self) -> bool {
        matches!(
            self,
            Command::Create(_) | Command::Run { .. } | Command::Exec(_)
        )
    }
}

/// What `state` and `list --format json` print: runc's document, with its keys in runc's order
/// (scripts match on the text) and `pid` always present, 0 once stopped. Hooks get the
/// runtime-spec state ([`StateReport`]) instead, whose `pid` is absent once stopped.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CliState {
    /// Runtime-spec version.
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Host pid of the container process; 0 once stopped.
    pub pid: i32,
    /// Derived status.
    pub status: crate::runtime::state::Status,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339.
    pub created: chrono::DateTime<chrono::Utc>,
    /// Annotations of the config, left out when there are none.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
    /// The user that created the container.
    pub owner: String,
}

impl From<StateReport> for CliState {
    fn from(report: StateReport) -> Self {
        Self {
            oci_version: report.oci_version,
            id: report.id,
            pid: report.pid.unwrap_or(0),
            status: report.status,
            bundle: report.bundle,
            rootfs: report.rootfs,
            created: report.created,
            annotations: report.annotations,
            owner: report.owner,
        }
    }
}

/// A failure of a command, already worded for the user.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(String);

fn chain(err: &dyn std::error::Error) -> CliError {
    CliError(crate::runtime::init::error_chain(err))
}

/// Parses a signal like runc: `9`, `KILL`, `SIGKILL`, `kill`; `0` is `None`, kill(2)'s probe
/// that checks the process exists and delivers nothing.
///
/// # Errors
/// An unknown name or number.
pub fn parse_signal(text: &str) -> Result<Option<Signal>, CliError> {
    if let Ok(n) = text.parse::<i32>() {
        if n == 0 {
            return Ok(None);
        }
        return Signal::try_from(n)
            .map(Some)
            .map_err(|_| CliError(format!("unknown signal {text:?}")));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map(Some)
        .map_err(|_| CliError(format!("unknown signal {text:?}")))
}

/// Runs the parsed command; returns the process exit code.
///
/// # Errors
/// The failure, worded for the user.
pub fn run(cli: Cli) -> Result<i32, CliError> {
    if cli.systemd_cgroup {
        return Err(CliError(
            "--systemd-cgroup is not supported: refeng-runc manages cgroups through cgroupfs only"
                .into(),
        ));
    }
    if let Some(r) = &cli.rootless_mode {
        if r != "false" && r != "auto" {
            return Err(CliError(format!(
                "--rootless={r} is not supported: refeng-runc runs as root"
            )));
        }
    }
    let root = StateRoot::new(&cli.root);
    match cli.command {
        Command::Create(args) => {
            create(&root, &create_options(&args)).map_err(|e| chain(&e))?;
            Ok(0)
        }
        Command::Start { id } => {
            start(&root, &id)?;
            Ok(0)
        }
        Command::Run {
            create: args,
            detach,
            keep,
        } => crate::runtime::run::run(&root, &create_options(&args), detach, keep)
            .map_err(|e| chain(&e)),
        Command::Exec(args) => {
            for (set, flag) in [
                (args.apparmor.is_some(), "--apparmor"),
                (args.process_label.is_some(), "--process-label"),
            ] {
                if set {
                    return Err(CliError(format!("{flag} is not supported by refeng-runc")));
                }
            }
            let opts = crate::runtime::exec::ExecOptions {
                id: args.id,
                process_file: args.process,
                args: args.command,
                tty: args.tty,
                console_socket: args.console_socket,
                detach: args.detach,
                pid_file: args.pid_file,
                env: args.env,
                cwd: args.cwd,
                user: args.user,
                additional_gids: args.additional_gids,
                caps: args.cap,
                no_new_privs: args.no_new_privs,
                preserve_fds: args.preserve_fds,
                ignore_paused: args.ignore_paused,
                sub_cgroups: args.cgroup,
            };
            crate::runtime::exec::exec(&root, &opts).map_err(|e| chain(&e))
        }
        Command::Pause { id } => {
            match AnyContainer::load(&root, &id).map_err(|e| chain(&e))? {
                AnyContainer::Running(c) => c.pause().map(drop).map_err(|(_, e)| chain(&e))?,
                other => return Err(chain(&other.wrong_state(Operation::Pause))),
            }
            Ok(0)
        }
        Command::Resume { id } => {
            match AnyContainer::load(&root, &id).map_err(|e| chain(&e))? {
                AnyContainer::Paused(c) => c.resume().map(drop).map_err(|(_, e)| chain(&e))?,
                other => return Err(chain(&other.wrong_state(Operation::Resume))),
            }
            Ok(0)
        }
        Command::Ps {
            id,
            format,
            ps_args,
        } => {
            ps(&root, &id, format, &ps_args)?;
            Ok(0)
        }
        Command::Events {
            id,
            stats,
            interval,
        } => {
            let interval =
                crate::runtime::events::parse_interval(&interval).map_err(|e| chain(&e))?;
            crate::runtime::events::events(&root, &id, stats, interval, &mut std::io::stdout())
                .map_err(|e| chain(&e))?;
            Ok(0)
        }
        Command::Update(args) => {
            update(&root, args)?;
            Ok(0)
        }
        Command::State { id } => {
            let report = container::report(&root, &id).map_err(|e| chain(&e))?;
            print_json(&CliState::from(report))?;
            Ok(0)
        }
        Command::Kill { id, signal, all } => {
            let signal = parse_signal(signal.as_deref().unwrap_or("SIGTERM"))?;
            kill(&root, &id, signal, all)?;
            Ok(0)
        }
        Command::Delete { id, force } => {
            delete(&root, &id, force)?;
            Ok(0)
        }
        Command::List { format, quiet } => {
            list(&root, format, quiet)?;
            Ok(0)
        }
        Command::Spec { bundle, rootless } => {
            crate::runtime::spec_cmd::write_default_spec(
                &bundle.unwrap_or_else(|| PathBuf::from(".")),
                rootless,
            )
            .map_err(|e| chain(&e))?;
            Ok(0)
        }
        Command::Features => {
            print_json(&crate::runtime::spec_cmd::features())?;
            Ok(0)
        }
    }
}

fn create_options(args: &CreateArgs) -> CreateOptions {
    CreateOptions {
        id: args.id.clone(),
        bundle: args.bundle.clone(),
        pid_file: args.pid_file.clone(),
        console_socket: args.console_socket.clone(),
        no_pivot: args.no_pivot,
        preserve_fds: args.preserve_fds,
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| chain(&e))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").map_err(|e| chain(&e))
}

/// `start ID`.
///
/// # Errors
/// Unknown id, wrong state, or a failed start.
pub fn start(root: &StateRoot, id: &str) -> Result<(), CliError> {
    match AnyContainer::load(root, id).map_err(|e| chain(&e))? {
        AnyContainer::Created(c) => c.start().map(drop).map_err(|(_, e)| chain(&e)),
        other => Err(chain(&other.wrong_state(Operation::Start))),
    }
}

/// `kill ID SIGNAL`: allowed in created, running and paused (runtime-spec "kill": a container
/// that is neither created nor running MUST be left alone and the call MUST fail; paused is the
/// runtime's refinement of running, signalled as runc signals it).
///
/// # Errors
/// Unknown id, a container in another state, or a failed signal.
pub fn kill(root: &StateRoot, id: &str, signal: Option<Signal>, all: bool) -> Result<(), CliError> {
    let result = match AnyContainer::load(root, id).map_err(|e| chain(&e))? {
        AnyContainer::Created(c) => c.kill(signal, all),
        AnyContainer::Running(c) => c.kill(signal, all),
        AnyContainer::Paused(c) => c.kill(signal, all),
        other @ AnyContainer::Stopped(_) => return Err(chain(&other.wrong_state(Operation::Kill))),
    };
    result.map_err(|e| chain(&e))
}

/// `delete ID [--force]`: a container that is not stopped is refused without `--force`
/// (runtime-spec "delete"). With `--force` an id that does not exist is success, as with runc:
/// the caller wants it gone, and it is.
///
/// # Errors
/// Unknown id without force, a live container without force, or a failed teardown.
pub fn delete(root: &StateRoot, id: &str, force: bool) -> Result<(), CliError> {
    let loaded = match AnyContainer::load(root, id) {
        Ok(c) => c,
        // A create that died half way leaves a directory without state: force removes it.
        Err(StateError::Lifecycle(OpError::NotFound { .. })) if force => {
            if let Ok(dir) = root.open(id) {
                dir.remove().map_err(|e| chain(&e))?;
            }
            return Ok(());
        }
        Err(e) => return Err(chain(&e)),
    };
    let stopped = match loaded {
        AnyContainer::Stopped(c) => c,
        other if !force => return Err(chain(&other.wrong_state(Operation::Delete))),
        AnyContainer::Created(c) => c.stop_forcibly().map_err(|(_, e)| chain(&e))?,
        AnyContainer::Running(c) => c.stop_forcibly().map_err(|(_, e)| chain(&e))?,
        AnyContainer::Paused(c) => c.stop_forcibly().map_err(|(_, e)| chain(&e))?,
    };
    stopped.delete().map_err(|e| chain(&e))
}

fn update(root: &StateRoot, args: UpdateArgs) -> Result<(), CliError> {
    if args.l3_cache_schema.is_some() || args.mem_bw_schema.is_some() {
        return Err(CliError(
            "--l3-cache-schema and --mem-bw-schema are not supported: Intel RDT is not implemented"
                .into(),
        ));
    }
    let flags = crate::runtime::update::UpdateFlags {
        resources: args.resources,
        memory: args.memory,
        memory_reservation: args.memory_reservation,
        memory_swap: args.memory_swap,
        kernel_memory: args.kernel_memory,
        kernel_memory_tcp: args.kernel_memory_tcp,
        cpu_shares: args.cpu_share,
        cpu_quota: args.cpu_quota,
        cpu_period: args.cpu_period,
        cpu_rt_runtime: args.cpu_rt_runtime,
        cpu_rt_period: args.cpu_rt_period,
        cpuset_cpus: args.cpuset_cpus,
        cpuset_mems: args.cpuset_mems,
        pids_limit: args.pids_limit,
        blkio_weight: args.blkio_weight,
    };
    let resources = crate::runtime::update::resources_from(&flags).map_err(|e| chain(&e))?;
    let result = match AnyContainer::load(root, &args.id).map_err(|e| chain(&e))? {
        AnyContainer::Created(mut c) => c.update(&resources),
        AnyContainer::Running(mut c) => c.update(&resources),
        AnyContainer::Paused(mut c) => c.update(&resources),
        stopped @ AnyContainer::Stopped(_) => {
            return Err(chain(&stopped.wrong_state(Operation::Update)))
        }
    };
    result.map_err(|e| chain(&e))
}

/// `ps`: the container's processes, as pids (json) or as ps(1) lines filtered to them. Like
/// runc's, it lists what the container's cgroup holds in any state: for a stopped container that
/// is usually nothing (the header alone, or `[]`), which is an answer, not an error.
fn ps(root: &StateRoot, id: &str, format: ListFormat, ps_args: &[String]) -> Result<(), CliError> {
    let loaded = AnyContainer::load(root, id).map_err(|e| chain(&e))?;
    let pids: Vec<i32> = match loaded.state().cgroup.procs() {
        Ok(procs) => procs.into_iter().map(|p| p.as_raw()).collect(),
        // A stopped container whose cgroup is gone (removed by someone else) has no processes.
        Err(_) if loaded.status() == crate::runtime::state::Status::Stopped => Vec::new(),
        Err(e) => return Err(chain(&e)),
    };
    drop(loaded);
    let mut out = std::io::stdout().lock();
    let write_err = |e: std::io::Error| chain(&e);
    if format == ListFormat::Json {
        let text = serde_json::to_string(&pids).map_err(|e| chain(&e))?;
        return writeln!(out, "{text}").map_err(write_err);
    }
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let output = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| CliError(format!("cannot run ps: {e}")))?;
    if !output.status.success() {
        return Err(CliError(format!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_col = header
        .split_whitespace()
        .position(|c| c == "PID")
        .ok_or_else(|| CliError(format!("ps {}: no PID column", args.join(" "))))?;
    writeln!(out, "{header}").map_err(write_err)?;
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            writeln!(out, "{line}").map_err(write_err)?;
        }
    }
    Ok(())
}

fn list(root: &StateRoot, format: ListFormat, quiet: bool) -> Result<(), CliError> {
    let mut reports: Vec<CliState> = Vec::new();
    for id in root.ids().map_err(|e| chain(&e))? {
        // A container being created or deleted right now has no readable state: skip it.
        if let Ok(report) = container::report(root, &id) {
            reports.push(report.into());
        }
    }
    let mut out = std::io::stdout().lock();
    let write_err = |e: std::io::Error| chain(&e);
    if quiet {
        for r in &reports {
            writeln!(out, "{}", r.id).map_err(write_err)?;
        }
        return Ok(());
    }
    match format {
        ListFormat::Json => {
            let text = serde_json::to_string(&reports).map_err(|e| chain(&e))?;
            writeln!(out, "{text}").map_err(write_err)
        }
        ListFormat::Table => {
            let rows: Vec<[String; 6]> = reports
                .iter()
                .map(|r| {
                    [
                        r.id.clone(),
                        r.pid.to_string(),
                        r.status.to_string(),
                        r.bundle.display().to_string(),
                        r.created
                            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                        r.owner.clone(),
                    ]
                })
                .collect();
            let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
            let mut widths = [0usize; 6];
            for row in std::iter::once(&header).chain(rows.iter()) {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.len());
                }
            }
            for row in std::iter::once(&header).chain(rows.iter()) {
                let mut line = String::new();
                for (i, cell) in row.iter().enumerate() {
                    if i + 1 == row.len() {
                        line.push_str(cell);
                    } else {
                        line.push_str(&format!("{cell:<width$}   ", width = widths[i]));
                    }
                }
                writeln!(out, "{}", line.trim_end()).map_err(write_err)?;
            }
            Ok(())
        }
    }
}

/// One log line in runc's (logrus) shape, which containerd's runc shim parses out of the log
/// file: `{"level","msg","time"}` in JSON, `time=.. level=.. msg=..` in text.
fn log_line(format: LogFormat, level: &str, msg: &str) -> String {
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    match format {
        LogFormat::Json => {
            serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
        }
        LogFormat::Text => format!("time={time:?} level={level} msg={msg:?}"),
    }
}

/// Writes an error as runc does: a log line to `--log` and the bare message to stderr, or the
/// log line to stderr without `--log`. Shims read the log file; the bare message keeps the
/// container's stderr (a runtime's stderr during `create`) free of log syntax.
pub fn log_error(log: Option<&PathBuf>, format: LogFormat, msg: &str) {
    let line = log_line(format, "error", msg);
    match log {
        Some(path) => {
            if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
                let _ = writeln!(f, "{line}");
            }
            let _ = writeln!(std::io::stderr(), "{msg}");
        }
        None => {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    }
}

/// Routes `tracing` events to `--log` (stderr without it) in the same shape as errors: warnings
/// always (the runtime-spec asks for a warning when a poststart or poststop hook fails), debug
/// events with `--debug`.
pub fn init_logging(log: Option<&std::path::Path>, format: LogFormat, debug: bool) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;
    let file = log.and_then(|p| OpenOptions::new().create(true).append(true).open(p).ok());
    let layer = LogrusLayer {
        file: file.map(std::sync::Mutex::new),
        format,
    };
    let level = if debug {
        tracing::level_filters::LevelFilter::DEBUG
    } else {
        tracing::level_filters::LevelFilter::WARN
    };
    let subscriber = tracing_subscriber::registry().with(layer.with_filter(level));
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// A tracing layer that writes logrus-style lines.
struct LogrusLayer {
    file: Option<std::sync::Mutex<std::fs::File>>,
    format: LogFormat,
}

/// An event's message first, then its other fields as `key=value`.
struct EventText(String);

impl tracing::field::Visit for EventText {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.insert_str(0, &format!("{value:?}"));
        } else {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogrusLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut text = EventText(String::new());
        event.record(&mut text);
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        let line = log_line(self.format, &level, text.0.trim());
        match &self.file {
            Some(file) => {
                if let Ok(mut f) = file.lock() {
                    let _ = writeln!(f, "{line}");
                }
            }
            None => {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    /// main re-executes sealed before parsing, from the raw arguments
    /// (`sys::exe::names_sealed_command`): every command that builds container processes must
    /// be one it recognises by name, and no other command name (or alias) may be.
    #[test]
    fn the_raw_argument_check_knows_exactly_the_sealed_commands() {
        use crate::sys::exe::names_sealed_command;
        use clap::CommandFactory;
        for line in [
            &["refeng-runc", "create", "id"][..],
            &["refeng-runc", "run", "id"],
            &["refeng-runc", "exec", "id", "true"],
        ] {
            let cli = Cli::try_parse_from(line).expect(line[1]);
            assert!(cli.command.builds_container_processes(), "{line:?}");
            assert!(names_sealed_command(&line[1..]), "{line:?}");
        }
        let cmd = Cli::command();
        for sub in cmd.get_subcommands() {
            let sealed = ["create", "run", "exec"].contains(&sub.get_name());
            for name in std::iter::once(sub.get_name()).chain(sub.get_all_aliases()) {
                assert_eq!(names_sealed_command([name]), sealed, "{name}");
            }
        }
    }

    #[test]
    fn signals_parse_like_runc() {
        for (text, sig) in [
            ("9", Signal::SIGKILL),
            ("KILL", Signal::SIGKILL),
            ("SIGKILL", Signal::SIGKILL),
            ("term", Signal::SIGTERM),
            ("SIGUSR1", Signal::SIGUSR1),
        ] {
            assert_eq!(parse_signal(text).unwrap(), Some(sig), "{text}");
        }
        assert_eq!(parse_signal("0").unwrap(), None, "signal 0 is the probe");
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("999").is_err());
    }

    #[test]
    fn flags_go_before_or_after_the_id_and_take_equals() {
        let a = Cli::try_parse_from([
            "refeng-runc",
            "--root=/tmp/r",
            "create",
            "--bundle",
            "/b",
            "c1",
            "--pid-file=/p",
        ])
        .unwrap();
        let Command::Create(args) = a.command else {
            panic!("not create")
        };
        assert_eq!(args.id, "c1");
        assert_eq!(args.bundle, PathBuf::from("/b"));
        assert_eq!(args.pid_file, Some(PathBuf::from("/p")));
        let b = Cli::try_parse_from([
            "refeng-runc",
            "kill",
            "--all",
            "c1",
            "9",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(b.log_format, LogFormat::Json);
        assert!(matches!(b.command, Command::Kill { all: true, .. }));
    }

    /// The command lines containerd's runc shim (go-runc) and dockerd issue, in both flag
    /// spellings: all must parse to the intended subcommand.
    #[test]
    fn every_containerd_command_line_parses() {
        let lines: &[&str] = &[
            "--root /run/containerd/runc/default --log /b/log.json --log-format json create --bundle /b --pid-file /b/init.pid --console-socket /tmp/c.sock c1",
            "--root=/r --log=/b/log.json --log-format=json create --bundle=/b --pid-file=/b/init.pid --no-pivot c1",
            "--root /r --log /b/log.json --log-format json create c1 --bundle /b --preserve-fds 2",
            "--root /r start c1",
            "--root /r --log /b/log.json --log-format json delete --force c1",
            "--root /r delete c1 --force",
            "--root /r kill --all c1 9",
            "--root /r kill c1 SIGTERM",
            "--root /r kill c1 15 --all",
            "--root /r --log /b/log.json --log-format json exec --process /tmp/p.json --detach --pid-file /b/e.pid --console-socket /tmp/c.sock c1",
            "--root /r exec --process=/tmp/p.json --detach --pid-file=/b/e.pid c1",
            "--root /r ps --format json c1",
            "--root /r ps c1 -eo pid,comm",
            "--root /r pause c1",
            "--root /r resume c1",
            "--root /r update --resources - c1",
            "--root /r update --resources=/tmp/r.json c1",
            "--root /r events --stats c1",
            "--root /r events --interval=1s c1",
            "--root /r state c1",
            "--root /r list --format json",
            "--root /r run --bundle /b --detach --pid-file /b/p c1",
            "--root /r exec -t c1 sh -c true",
            "features",
        ];
        for line in lines {
            let argv = std::iter::once("refeng-runc").chain(line.split_whitespace());
            let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{line}: {e}"));
            let verb = line
                .split_whitespace()
                .find(|w| {
                    [
                        "create", "start", "delete", "kill", "exec", "ps", "pause", "resume",
                        "update", "events", "state", "list", "run", "features",
                    ]
                    .contains(w)
                })
                .unwrap();
            let parsed = format!("{:?}", cli.command).to_lowercase();
            assert!(parsed.starts_with(verb), "{line}: parsed as {parsed}");
        }
        // exec's command keeps its own flags.
        let cli =
            Cli::try_parse_from(["refeng-runc", "exec", "c1", "sh", "-c", "echo -n x"]).unwrap();
        let Command::Exec(args) = cli.command else {
            panic!("not exec")
        };
        assert_eq!(args.command, ["sh", "-c", "echo -n x"]);
    }
}
