//! refeng-conformance: the runtime-spec conformance oracle, a thin main over
//! `refeng::conformance::cli`.

use std::io::Write;

use clap::Parser;
use refeng::conformance::cli::{self, Cli};

fn main() {
    let code = match cli::main(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "refeng-conformance: {e}");
            2
        }
    };
    std::process::exit(code);
}
