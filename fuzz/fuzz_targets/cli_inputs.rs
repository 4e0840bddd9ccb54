//! Fuzzes the CLI's parsers of outside input (`refeng::cli::specs::check_inputs`): `--format`
//! templates, `--filter`, env files, `-p`, `-v`, `--mount`, `--tmpfs`, sizes, `--cpus` and
//! `--restart`; the first line names the parser. Inputs parse or are refused, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = refeng::cli::specs::check_inputs(data);
});
