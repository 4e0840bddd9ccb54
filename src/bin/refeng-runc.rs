//! refeng-runc: the OCI runtime binary, a thin main over `refeng::runtime::cli`.

use clap::Parser;
use refeng::runtime::cli::{self, Cli};

fn main() {
    let cli = Cli::parse();
    cli::init_logging(cli.log.as_deref(), cli.log_format, cli.debug);
    let failure = cli.command.failure_exit_code();
    // Every process a container can see during setup descends from this one: run from a sealed
    // copy of the binary, so that none of them exposes the host file (CVE-2019-5736).
    if cli.command.builds_container_processes() {
        if let Err(e) = refeng::sys::exe::ensure_sealed() {
            cli::log_error(
                cli.log.as_ref(),
                cli.log_format,
                &format!("cannot re-execute from a sealed copy of refeng-runc: {e}"),
            );
            std::process::exit(failure);
        }
    }
    let log = cli.log.clone();
    let format = cli.log_format;
    let code = match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            cli::log_error(log.as_ref(), format, &e.to_string());
            failure
        }
    };
    std::process::exit(code);
}
