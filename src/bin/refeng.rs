//! refeng: the docker-compatible command line for refengd (and dockerd).

fn main() {
    let code = refeng::cli::main(std::env::args_os().collect());
    std::process::exit(code);
}
