//! refeng, the CLI: docker's commands and flags turned into Engine API requests, so the same
//! program drives refengd and the real dockerd. One file per command group; the client,
//! address resolution, output formatting and input parsers beside them.

pub mod address;
pub mod build;
pub mod client;
pub mod completion;
pub mod containers;
pub mod cp;
pub mod format;
pub mod images;
pub mod inspect;
pub mod login;
pub mod progress;
pub mod specs;
pub mod stream;
pub mod system;
pub mod volumes;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use client::{Client, ClientError};
use format::FormatError;
use specs::SpecError;

/// `s` as a query value (form-urlencoded, as Go's `url.Values` encodes it).
pub(crate) fn q(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `?filters=<JSON>` for docker's `--filter` values, or nothing when there are none.
///
/// # Errors
/// A filter that does not parse.
pub(crate) fn filters_query(f: &[String]) -> Result<String, CliError> {
    if f.is_empty() {
        return Ok(String::new());
    }
    Ok(format!("?filters={}", q(&specs::filters(f)?.to_string())))
}

/// What a command can fail with; each maps to docker's exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// the daemon or the connection failed
    #[error(transparent)]
    Client(#[from] ClientError),
    /// the daemon address cannot be used
    #[error(transparent)]
    Address(#[from] address::AddressError),
    /// a `--format` failed
    #[error(transparent)]
    Format(#[from] FormatError),
    /// an input spec failed to parse
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// a local file or the terminal failed
    #[error("{what}: {}", go_io_text(.source))]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// a flag's value that does not parse, worded as docker's flag errors
    #[error("invalid argument {value:?} for {flag:?} flag: {reason}")]
    Flag {
        flag: &'static str,
        value: String,
        reason: String,
    },
    /// a usage error (wrong arguments, unsupported flag)
    #[error("{0}")]
    Usage(String),
    /// an error with a given exit status (run's 125/126/127), printed as `refeng: <error>`
    #[error("{message}")]
    Status { code: i32, message: String },
    /// an exit status without a message (a container's, or errors already printed)
    #[error("exit status {0}")]
    Exit(i32),
}

/// An I/O error worded as Go words it (`no such file or directory`), as docker prints it.
pub(crate) fn go_io_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => {
            let d = nix::errno::Errno::from_raw(n).desc();
            let mut c = d.chars();
            c.next()
                .map(|f| f.to_lowercase().chain(c).collect())
                .unwrap_or_default()
        }
        None => e.to_string(),
    }
}

impl CliError {
    /// docker's exit code for this error.
    pub fn code(&self) -> i32 {
        match self {
            CliError::Status { code, .. } | CliError::Exit(code) => *code,
            CliError::Usage(_) | CliError::Spec(SpecError::Filter(_)) | CliError::Flag { .. } => {
                125
            }
            _ => 1,
        }
    }

    /// A flag error for `flag` (`"-m, --memory"`) from a parser's error on `value`.
    pub fn flag(flag: &'static str, value: &str) -> impl FnOnce(SpecError) -> CliError {
        let value = value.to_owned();
        move |e| CliError::Flag {
            flag,
            value,
            reason: e.to_string(),
        }
    }

    /// A local I/O error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
        let what = what.into();
        move |source| CliError::Io { what, source }
    }
}

/// refeng: a docker-compatible command line for refengd (and dockerd).
#[derive(Debug, Parser)]
#[command(
    name = "refeng",
    about = "A self-sufficient runtime for containers",
    disable_version_flag = true,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Location of client config files
    #[arg(long, value_name = "DIR")]
    pub config: Option<PathBuf>,
    /// Name of the context to use to connect to the daemon
    #[arg(short = 'c', long)]
    pub context: Option<String>,
    /// Enable debug mode
    #[arg(short = 'D', long)]
    pub debug: bool,
    /// Daemon socket to connect to
    #[arg(short = 'H', long = "host")]
    pub host: Option<String>,
    /// Set the logging level ("debug", "info", "warn", "error", "fatal")
    #[arg(short = 'l', long = "log-level")]
    pub log_level: Option<String>,
    /// Use TLS; implied by --tlsverify
    #[arg(long)]
    pub tls: bool,
    /// Trust certs signed only by this CA
    #[arg(long)]
    pub tlscacert: Option<PathBuf>,
    /// Path to TLS certificate file
    #[arg(long)]
    pub tlscert: Option<PathBuf>,
    /// Path to TLS key file
    #[arg(long)]
    pub tlskey: Option<PathBuf>,
    /// Use TLS and verify the remote
    #[arg(long)]
    pub tlsverify: bool,
    /// Print version information and quit
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The commands, docker's names.
#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Containers(ContainerVerb),
    /// List containers
    Ps(containers::PsArgs),
    /// Remove one or more containers
    Rm(containers::RmArgs),
    /// List images
    Images(images::ImagesArgs),
    /// Load an image from a tar archive or STDIN
    Load(images::LoadArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(images::SaveArgs),
    /// Show the history of an image
    History(images::HistoryArgs),
    /// Download an image from a registry
    Pull(images::PullArgs),
    /// Upload an image to a registry
    Push(images::PushArgs),
    /// Authenticate to a registry
    Login(login::LoginArgs),
    /// Log out from a registry
    Logout(login::LogoutArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(images::ImportArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(images::TagArgs),
    /// Remove one or more images
    Rmi(images::RmiArgs),
    /// Return low-level information on Docker objects
    Inspect(inspect::InspectArgs),
    /// Build an image from a Dockerfile
    Build(Box<build::BuildArgs>),
    /// Show the Docker version information
    Version(system::VersionArgs),
    /// Display system-wide information
    Info(system::InfoArgs),
    /// Get real time events from the server
    Events(system::EventsArgs),
    /// Generate the autocompletion script for the specified shell
    Completion(completion::CompletionArgs),
    /// Write man pages for refeng and each of its commands to a directory
    Man(completion::ManArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage Docker
    #[command(subcommand)]
    System(SystemCommand),
    /// Manage volumes
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Manage networks
    #[command(subcommand)]
    Network(NetworkCommand),
}

/// `refeng volume ...`.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// List volumes
    #[command(visible_alias = "list")]
    Ls(volumes::LsArgs),
    /// Create a volume
    Create(volumes::VolumeCreateArgs),
    /// Display detailed information on one or more volumes
    Inspect(volumes::InspectArgs),
    /// Remove one or more volumes
    #[command(visible_alias = "remove")]
    Rm(volumes::VolumeRmArgs),
    /// Remove unused local volumes
    Prune(volumes::VolumePruneArgs),
}

/// `refeng network ...`.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// List networks
    #[command(visible_alias = "list")]
    Ls(volumes::LsArgs),
    /// Display detailed information on one or more networks
    Inspect(volumes::InspectArgs),
    /// Create a network
    Create(volumes::NetworkCreateArgs),
    /// Remove one or more networks
    #[command(visible_alias = "remove")]
    Rm(volumes::NetworkRmArgs),
    /// Connect a container to a network
    Connect(volumes::NetworkConnectArgs),
    /// Disconnect a container from a network
    Disconnect(volumes::NetworkDisconnectArgs),
    /// Remove all unused networks
    Prune(volumes::NetworkPruneArgs),
}

/// The container commands that are both top-level (`refeng run`) and under `refeng container`.
#[derive(Debug, Subcommand)]
pub enum ContainerVerb {
    /// Create and run a new container from an image
    Run(Box<containers::RunArgs>),
    /// Create a new container
    Create(Box<containers::RunArgs>),
    /// Start one or more stopped containers
    Start(containers::StartArgs),
    /// Stop one or more running containers
    Stop(containers::StopArgs),
    /// Restart one or more containers
    Restart(containers::StopArgs),
    /// Kill one or more running containers
    Kill(containers::KillArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(containers::NamesArgs),
    /// Fetch the logs of a container
    Logs(containers::LogsArgs),
    /// Pause all processes within one or more containers
    Pause(containers::NamesArgs),
    /// Unpause all processes within one or more containers
    Unpause(containers::NamesArgs),
    /// Rename a container
    Rename(containers::RenameArgs),
    /// Execute a command in a running container
    Exec(containers::ExecArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(containers::AttachArgs),
    /// Display the running processes of a container
    Top(containers::TopArgs),
    /// List port mappings or a specific mapping for the container
    Port(containers::PortArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(containers::DiffArgs),
    /// Export a container's filesystem as a tar archive
    Export(containers::ExportArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(cp::CpArgs),
    /// Create a new image from a container's changes
    Commit(containers::CommitArgs),
    /// Update configuration of one or more containers
    Update(containers::UpdateArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(containers::StatsArgs),
}

/// `refeng container ...`.
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    #[command(flatten)]
    Verb(ContainerVerb),
    /// List containers
    #[command(visible_aliases = ["ps", "list"])]
    Ls(containers::PsArgs),
    /// Remove one or more containers
    #[command(visible_alias = "remove")]
    Rm(containers::RmArgs),
    /// Display detailed information on one or more containers
    Inspect(inspect::TypedInspectArgs),
    /// Remove all stopped containers
    Prune(containers::PruneArgs),
}

/// `refeng image ...`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build an image from a Dockerfile
    Build(Box<build::BuildArgs>),
    /// List images
    #[command(visible_aliases = ["images", "list"])]
    Ls(images::ImagesArgs),
    /// Load an image from a tar archive or STDIN
    Load(images::LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(images::ImportArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(images::TagArgs),
    /// Remove one or more images
    #[command(visible_alias = "remove")]
    Rm(images::RmiArgs),
    /// Display detailed information on one or more images
    Inspect(inspect::TypedInspectArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(images::SaveArgs),
    /// Show the history of an image
    History(images::HistoryArgs),
    /// Download an image from a registry
    Pull(images::PullArgs),
    /// Upload an image to a registry
    Push(images::PushArgs),
    /// Remove unused images
    Prune(images::ImagePruneArgs),
}

/// `refeng system ...`.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Display system-wide information
    Info(system::InfoArgs),
    /// Get real time events from the server
    Events(system::EventsArgs),
    /// Show docker disk usage
    Df(system::DfArgs),
    /// Remove unused data
    Prune(system::PruneArgs),
}

/// What a command runs with: the client and where the docker config lives.
#[derive(Debug)]
pub struct Ctx {
    pub client: Client,
    pub config_dir: PathBuf,
}

impl Ctx {
    /// A setting of the docker config file (`psFormat`, `imagesFormat`, `detachKeys`).
    pub fn config_value(&self, key: &str) -> Option<String> {
        let text = std::fs::read(self.config_dir.join("config.json")).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
        v[key].as_str().filter(|s| !s.is_empty()).map(str::to_owned)
    }
}

/// Runs the CLI with `args` (the program name first) and returns the exit code, having
/// printed errors as the docker CLI prints them.
pub fn main(args: Vec<std::ffi::OsString>) -> i32 {
    if let Some(e) = containers::refuse_unsupported(&args) {
        return report(&e, None);
    }
    let mut cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                _ => 125,
            };
            let _ = e.print();
            return code;
        }
    };
    if cli.version {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "refeng version {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    let Some(command) = cli.command.take() else {
        return 0;
    };
    // Generated from the command definitions: no daemon needed.
    let local = match command {
        Command::Completion(a) => Some(completion::completion(a)),
        Command::Man(a) => Some(completion::man(a)),
        other => {
            return run_command(other, &cli);
        }
    };
    match local {
        Some(Ok(())) | None => 0,
        Some(Err(e)) => report(&e, None),
    }
}

/// Runs a command that talks to the daemon.
fn run_command(command: Command, cli: &Cli) -> i32 {
    let verb = match &command {
        Command::Containers(v) | Command::Container(ContainerCommand::Verb(v)) => match v {
            ContainerVerb::Run(_) => Some("run"),
            ContainerVerb::Create(_) => Some("create"),
            _ => None,
        },
        _ => None,
    };
    let run_like = verb.is_some();
    let config_dir = address::config_dir(cli.config.as_deref());
    let tls = address::TlsFlags {
        tls: cli.tls,
        verify: cli.tlsverify,
        ca: cli.tlscacert.clone(),
        cert: cli.tlscert.clone(),
        key: cli.tlskey.clone(),
    };
    let endpoint = match address::resolve(
        cli.host.as_deref(),
        cli.context.as_deref(),
        &config_dir,
        &tls,
    ) {
        Ok(e) => e,
        Err(e) => return report(&CliError::from(e), verb),
    };
    let ctx = Ctx {
        client: Client::new(endpoint),
        config_dir,
    };
    match dispatch(&ctx, command) {
        Ok(()) => 0,
        Err(e) => {
            let e = if run_like {
                containers::run_status(e)
            } else {
                e
            };
            report(&e, verb)
        }
    }
}

/// Prints an error as the docker CLI does and returns its exit code.
fn report(e: &CliError, verb: Option<&str>) -> i32 {
    let mut err = std::io::stderr().lock();
    match e {
        // A reader that went away (`refeng export | head`): quiet, as a program killed by
        // SIGPIPE is, with the status a shell shows for that.
        CliError::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe => {
            return 141;
        }
        CliError::Exit(code) => return *code,
        CliError::Status { code, message } => {
            let _ = match verb {
                Some(v) => writeln!(
                    err,
                    "refeng: {message}\n\nRun 'refeng {v} --help' for more information"
                ),
                None => writeln!(err, "{message}"),
            };
            return *code;
        }
        CliError::Usage(m) => {
            let _ = writeln!(err, "refeng: {m}");
        }
        CliError::Spec(SpecError::Filter(_)) | CliError::Flag { .. } => {
            let _ = writeln!(
                err,
                "{e}\n\nRun 'refeng {} --help' for more information",
                command_path()
            );
        }
        other => {
            let _ = writeln!(err, "{other}");
        }
    }
    e.code()
}

/// The command words of this invocation (`images`, `container ls`), for help hints.
fn command_path() -> String {
    let mut words = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a.starts_with('-') {
            if !a.contains('=')
                && matches!(
                    a.as_str(),
                    "-H" | "--host"
                        | "-c"
                        | "--context"
                        | "--config"
                        | "-l"
                        | "--log-level"
                        | "--tlscacert"
                        | "--tlscert"
                        | "--tlskey"
                )
            {
                args.next();
            }
            continue;
        }
        let group = matches!(
            a.as_str(),
            "container" | "image" | "system" | "volume" | "network"
        );
        words.push(a);
        if !group {
            break;
        }
    }
    words.join(" ")
}

fn verb(ctx: &Ctx, v: ContainerVerb) -> Result<(), CliError> {
    match v {
        ContainerVerb::Run(a) => containers::run(ctx, *a),
        ContainerVerb::Create(a) => containers::create_cmd(ctx, *a),
        ContainerVerb::Start(a) => containers::start(ctx, a),
        ContainerVerb::Stop(a) => containers::stop(ctx, a, "stop"),
        ContainerVerb::Restart(a) => containers::stop(ctx, a, "restart"),
        ContainerVerb::Kill(a) => containers::kill(ctx, a),
        ContainerVerb::Wait(a) => containers::wait(ctx, a),
        ContainerVerb::Logs(a) => containers::logs(ctx, a),
        ContainerVerb::Pause(a) => containers::simple(ctx, a, "pause"),
        ContainerVerb::Unpause(a) => containers::simple(ctx, a, "unpause"),
        ContainerVerb::Rename(a) => containers::rename(ctx, a),
        ContainerVerb::Exec(a) => containers::exec(ctx, a),
        ContainerVerb::Attach(a) => containers::attach(ctx, a),
        ContainerVerb::Top(a) => containers::top(ctx, a),
        ContainerVerb::Port(a) => containers::port(ctx, a),
        ContainerVerb::Diff(a) => containers::diff(ctx, a),
        ContainerVerb::Export(a) => containers::export(ctx, a),
        ContainerVerb::Cp(a) => cp::cp(ctx, a),
        ContainerVerb::Commit(a) => containers::commit(ctx, a),
        ContainerVerb::Update(a) => containers::update(ctx, a),
        ContainerVerb::Stats(a) => containers::stats(ctx, a),
    }
}

fn dispatch(ctx: &Ctx, command: Command) -> Result<(), CliError> {
    match command {
        Command::Containers(v) | Command::Container(ContainerCommand::Verb(v)) => verb(ctx, v),
        Command::Ps(a) | Command::Container(ContainerCommand::Ls(a)) => containers::ps(ctx, a),
        Command::Rm(a) | Command::Container(ContainerCommand::Rm(a)) => containers::rm(ctx, a),
        Command::Container(ContainerCommand::Prune(a)) => containers::prune(ctx, a),
        Command::Container(ContainerCommand::Inspect(a)) => {
            inspect::inspect_typed(ctx, a, inspect::Kind::Container)
        }
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => images::images(ctx, a),
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => images::load(ctx, a),
        Command::Import(a) | Command::Image(ImageCommand::Import(a)) => images::import(ctx, a),
        Command::Tag(a) | Command::Image(ImageCommand::Tag(a)) => images::tag(ctx, a),
        Command::Save(a) | Command::Image(ImageCommand::Save(a)) => images::save(ctx, a),
        Command::History(a) | Command::Image(ImageCommand::History(a)) => images::history(ctx, a),
        Command::Pull(a) | Command::Image(ImageCommand::Pull(a)) => images::pull(ctx, a),
        Command::Push(a) | Command::Image(ImageCommand::Push(a)) => images::push(ctx, a),
        Command::Login(a) => login::login(ctx, a),
        Command::Logout(a) => login::logout(ctx, a),
        Command::Image(ImageCommand::Prune(a)) => images::prune(ctx, a),
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => images::rmi(ctx, a),
        Command::Image(ImageCommand::Inspect(a)) => {
            inspect::inspect_typed(ctx, a, inspect::Kind::Image)
        }
        Command::Inspect(a) => inspect::inspect(ctx, a),
        Command::Build(a) | Command::Image(ImageCommand::Build(a)) => build::build(ctx, *a),
        Command::Version(a) => system::version(ctx, a),
        Command::Info(a) | Command::System(SystemCommand::Info(a)) => system::info(ctx, a),
        Command::Events(a) | Command::System(SystemCommand::Events(a)) => system::events(ctx, a),
        Command::System(SystemCommand::Df(a)) => system::df(ctx, a),
        Command::System(SystemCommand::Prune(a)) => system::prune(ctx, a),
        Command::Volume(VolumeCommand::Ls(a)) => volumes::volume_ls(ctx, a),
        Command::Volume(VolumeCommand::Create(a)) => volumes::volume_create(ctx, a),
        Command::Volume(VolumeCommand::Inspect(a)) => volumes::volume_inspect(ctx, a),
        Command::Volume(VolumeCommand::Rm(a)) => volumes::volume_rm(ctx, a),
        Command::Volume(VolumeCommand::Prune(a)) => volumes::volume_prune(ctx, a),
        Command::Network(NetworkCommand::Ls(a)) => volumes::network_ls(ctx, a),
        Command::Network(NetworkCommand::Inspect(a)) => volumes::network_inspect(ctx, a),
        Command::Network(NetworkCommand::Create(a)) => volumes::network_create(ctx, a),
        Command::Network(NetworkCommand::Rm(a)) => volumes::network_rm(ctx, a),
        Command::Network(NetworkCommand::Connect(a)) => volumes::network_connect(ctx, a),
        Command::Network(NetworkCommand::Disconnect(a)) => volumes::network_disconnect(ctx, a),
        Command::Network(NetworkCommand::Prune(a)) => volumes::network_prune(ctx, a),
        Command::Completion(a) => completion::completion(a),
        Command::Man(a) => completion::man(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_definitions_are_consistent() {
        // clap's own checks (unique short flags per command, ...), which otherwise only fire
        // when a command is first parsed.
        <Cli as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn docker_command_lines_parse() {
        for line in [
            "refeng -H unix:///x run --rm -it -e A=1 -v /d -p 80:80 --name n busybox sh -c 'echo -n'",
            "refeng run -d --restart on-failure:3 -m 64m --cpus 0.5 busybox",
            "refeng ps -a -q --no-trunc -n 3 --filter status=exited",
            "refeng images -a --format {{.ID}} busybox",
            "refeng import -c ENV=1 - busybox:latest",
            "refeng container ls -s",
            "refeng image inspect busybox",
            "refeng exec -it -u 0 -w / c sh",
            "refeng build -t a:1 -t b --build-arg X=1 --rm=false -f - --label l=v .",
            "refeng image build -q --iidfile /tmp/id -",
            "refeng logs -f --tail 5 -t c",
            "refeng events --since 10m --until 1700000000 -f type=container --format json",
            "refeng system events --filter event=create",
        ] {
            let args: Vec<String> = line.split(' ').map(str::to_owned).collect();
            if let Err(e) = Cli::try_parse_from(&args) {
                panic!("{line}: {e}");
            }
        }
    }
}
