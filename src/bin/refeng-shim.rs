//! refeng-shim (installed as `containerd-shim-refeng-v2`): containerd's shim v2 binary.

use std::io::Write;
use std::os::fd::RawFd;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::Context;
use refeng::shim::cli::{Action, Args};
use refeng::shim::logging::{self, Sink};
use refeng::shim::{serve, start};

/// Logs go to stderr for `start`/`delete` (containerd shows it on failure) and to the bundle's
/// `log` FIFO for the serving shim (containerd copies it into its own log); never block on it.
fn init_logging(args: &Args, to_log_fifo: bool) {
    let level = if args.debug {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    let sink = if to_log_fifo {
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("log")
            .map_or(Sink::Discard, Sink::File)
    } else {
        Sink::Stderr
    };
    logging::init(level, sink);
}

pub fn main() -> anyhow::Result<()> {
    let args = Args::parse(std::env::args_os().skip(1))?;
    let mut stdout = std::io::stdout();
    match args.action {
        Action::Version => {
            writeln!(stdout, "refeng-shim {}", env!("CARGO_PKG_VERSION"))?;
        }
        Action::Start => {
            init_logging(&args, false);
            let address = start::start(&args).context("start")?;
            stdout.write_all(address.as_bytes())?;
        }
        Action::Delete => {
            init_logging(&args, false);
            let bytes = start::delete(&args).context("delete")?;
            stdout.write_all(&bytes)?;
        }
        Action::Serve => {
            let fd: RawFd = std::env::var(start::LISTEN_FD_ENV)
                .ok()
                .and_then(|v| v.parse().ok())
                .context("refeng-shim serves only when spawned by its start subcommand")?;
            std::env::remove_var(start::LISTEN_FD_ENV);
            init_logging(&args, true);
            serve::serve(&args, fd).context("serve")?;
        }
    }
    Ok(())
}
