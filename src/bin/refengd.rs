//! refengd: the Docker Engine API on unix sockets (and TCP with client certificates), over refeng-containerd (started and watched
//! here unless `--containerd` names another containerd API daemon).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use refeng::engine::{self, Config, Flags};

/// The Docker Engine API daemon of refeng.
#[derive(Debug, Parser)]
#[command(name = "refengd", version)]
struct Args {
    /// Daemon socket(s) to serve on (unix://PATH, or tcp://HOST:PORT with --tlsverify).
    #[arg(short = 'H', long = "host")]
    hosts: Vec<String>,
    /// Root of persistent state.
    #[arg(long)]
    data_root: Option<PathBuf>,
    /// Root of volatile state.
    #[arg(long)]
    exec_root: Option<PathBuf>,
    /// A containerd API socket to drive instead of starting refeng-containerd.
    #[arg(long)]
    containerd: Option<PathBuf>,
    /// The containerd namespace of the engine's objects.
    #[arg(long)]
    containerd_namespace: Option<String>,
    /// daemon.json with dockerd's keys.
    #[arg(long, default_value = "/etc/refeng/daemon.json")]
    config_file: PathBuf,
    /// The group owning the API socket.
    #[arg(short = 'G', long)]
    group: Option<String>,
    /// Where the daemon's pid is written.
    #[arg(short, long)]
    pidfile: Option<PathBuf>,
    /// Debug logging.
    #[arg(short = 'D', long)]
    debug: bool,
    /// trace, debug, info, warn, error or fatal.
    #[arg(short, long)]
    log_level: Option<String>,
    /// `none`: no default bridge network (containers in the default mode get no network).
    #[arg(short = 'b', long)]
    bridge: Option<String>,
    /// TLS on tcp:// hosts; only together with --tlsverify.
    #[arg(long)]
    tls: bool,
    /// Serve tcp:// hosts over TLS to clients with a certificate signed by --tlscacert.
    #[arg(long)]
    tlsverify: bool,
    /// The CA that signs the clients' certificates (default ~/.docker/ca.pem).
    #[arg(long)]
    tlscacert: Option<PathBuf>,
    /// The daemon's certificate (default ~/.docker/cert.pem).
    #[arg(long)]
    tlscert: Option<PathBuf>,
    /// The daemon's key (default ~/.docker/key.pem).
    #[arg(long)]
    tlskey: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // As dockerd: the default file may be absent; one named on the command line must exist.
    let config_file = if args.config_file.exists()
        || std::env::args_os().any(|a| a.to_string_lossy().starts_with("--config-file"))
    {
        Some(args.config_file)
    } else {
        None
    };
    let flags = Flags {
        hosts: args.hosts,
        data_root: args.data_root,
        exec_root: args.exec_root,
        containerd: args.containerd,
        containerd_namespace: args.containerd_namespace,
        group: args.group,
        pidfile: args.pidfile,
        log_level: args.log_level,
        debug: args.debug,
        config_file,
        bridge: args.bridge,
        tls: args.tls,
        tlsverify: args.tlsverify,
        tlscacert: args.tlscacert,
        tlscert: args.tlscert,
        tlskey: args.tlskey,
    };
    let config = Config::load(&flags)?;
    let level: tracing::Level = match config.log_level.as_str() {
        "fatal" => tracing::Level::ERROR,
        other => other
            .parse()
            .with_context(|| format!("log level {other:?}"))?,
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "warn,refeng={level},refengd={level}"
        )))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(engine::run(flags))
}
