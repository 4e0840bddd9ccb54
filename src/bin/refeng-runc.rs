//! refeng-runc: the OCI runtime binary, a thin main over `refeng::runtime::cli`.

use clap::Parser;
use refeng::runtime::cli::{self, Cli};

/// musl's malloc is slow at the many small allocations of parsing a config; the installed
/// (static musl) build uses dlmalloc instead (benches/README.md).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

fn main() {
    // Every process a container can see during setup descends from this one: run from a sealed
    // copy of the binary, so that none of them exposes the host file (CVE-2019-5736). First of
    // all, before the command line is parsed and logging set up, so that the copy that is
    // replaced by the re-execution has done no work (benches/README.md). Decided from the raw
    // arguments: any argument naming such a command re-executes (a false positive, say a
    // container called `run`, costs time only). A failure here is reported below, where the log
    // settings are known.
    if refeng::sys::exe::names_sealed_command(std::env::args_os().skip(1)) {
        let _ = refeng::sys::exe::ensure_sealed();
    }
    let cli = Cli::parse();
    cli::init_logging(cli.log.as_deref(), cli.log_format, cli.debug);
    let failure = cli.command.failure_exit_code();
    // Whatever the raw arguments looked like, no such command runs unsealed.
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
