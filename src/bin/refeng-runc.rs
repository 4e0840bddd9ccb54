//! refeng-runc: the OCI runtime binary, a thin main over `refeng::runtime::cli`.

use clap::Parser;
use refeng::runtime::cli::{self, Cli, LogFormat};

fn main() {
    let cli = Cli::parse();
    init_tracing(&cli);
    // Every process a container can see during setup descends from this one: run from a sealed
    // copy of the binary, so that none of them exposes the host file (CVE-2019-5736).
    if cli.command.builds_container_processes() {
        if let Err(e) = refeng::sys::exe::ensure_sealed() {
            cli::log_error(
                cli.log.as_ref(),
                cli.log_format,
                &format!("cannot re-execute from a sealed copy of refeng-runc: {e}"),
            );
            std::process::exit(1);
        }
    }
    let log = cli.log.clone();
    let format = cli.log_format;
    let code = match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            cli::log_error(log.as_ref(), format, &e.to_string());
            1
        }
    };
    std::process::exit(code);
}

/// Debug logs go to --log (or stderr) only with --debug; errors are written by `log_error`.
fn init_tracing(cli: &Cli) {
    if !cli.debug {
        return;
    }
    let builder = tracing_subscriber::fmt().with_max_level(tracing::Level::DEBUG);
    let file = cli.log.as_ref().and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
    });
    match (file, cli.log_format) {
        (Some(f), LogFormat::Json) => builder.json().with_writer(std::sync::Mutex::new(f)).init(),
        (Some(f), LogFormat::Text) => builder.with_writer(std::sync::Mutex::new(f)).init(),
        (None, _) => builder.with_writer(std::io::stderr).init(),
    }
}
