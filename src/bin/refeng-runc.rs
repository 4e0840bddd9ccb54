//! refeng-runc: the OCI runtime binary, a thin main over `refeng::runtime::cli`.

use clap::Parser;
use refeng::runtime::cli::{self, Cli, LogFormat};

fn main() {
    let cli = Cli::parse();
    init_tracing(&cli);
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
