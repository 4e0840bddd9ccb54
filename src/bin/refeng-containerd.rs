//! refeng-containerd: containerd's gRPC API on a unix socket, for the real `ctr` and refengd.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use refeng::containerd::{self, Config};

/// containerd's gRPC API: images, content, snapshots, containers, tasks and events.
#[derive(Debug, Parser)]
#[command(name = "refeng-containerd", version)]
struct Args {
    /// The gRPC unix socket to serve on.
    #[arg(short, long)]
    address: Option<PathBuf>,
    /// The directory of persistent state (metadata, content, snapshots).
    #[arg(long)]
    root: Option<PathBuf>,
    /// The directory of volatile state (task bundles, sockets).
    #[arg(long)]
    state: Option<PathBuf>,
    /// A TOML file with containerd's keys (root, state, [grpc] address, [debug] level, format).
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// trace, debug, info, warn or error.
    #[arg(short, long)]
    log_level: Option<String>,
    /// text (level, message and fields on one line) or json (one object per line).
    #[arg(long)]
    log_format: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = Config::default();
    if let Some(path) = &args.config {
        config.apply_file(path)?;
    }
    if let Some(a) = args.address {
        config.address = a;
    }
    if let Some(r) = args.root {
        config.root = r;
    }
    if let Some(s) = args.state {
        config.state = s;
    }
    if let Some(l) = args.log_level {
        config.log_level = l;
    }
    if let Some(f) = args.log_format {
        config.log_format = f;
    }
    let level: tracing::Level = match config.log_level.as_str() {
        "fatal" | "panic" => tracing::Level::ERROR,
        "warning" => tracing::Level::WARN,
        other => other.parse().with_context(|| {
            format!("--log-level {other:?}: use trace, debug, info, warn or error")
        })?,
    };
    // Our own records at the chosen level; the HTTP/2 and gRPC libraries' only from warn up,
    // or `debug` drowns in frame traces.
    let filter = tracing_subscriber::EnvFilter::new(format!(
        "warn,refeng={level},refeng_containerd={level}"
    ));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match config.log_format.as_str() {
        "text" => logs.init(),
        "json" => logs.json().init(),
        other => anyhow::bail!("--log-format {other:?}: use text or json"),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        tokio::select! {
            r = containerd::run(config) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
            _ = terminate() => Ok(()),
        }
    })
}

async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
