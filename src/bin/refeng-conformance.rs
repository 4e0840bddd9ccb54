//! refeng-conformance: the runtime-spec conformance oracle, a thin main over
//! `refeng::conformance::cli`.

use clap::Parser;
use refeng::conformance::cli::{self, Cli};

fn main() -> anyhow::Result<()> {
    let code = cli::main(Cli::parse())?;
    std::process::exit(code);
}
