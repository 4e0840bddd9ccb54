//! Fuzzes the Dockerfile parser and the build fold (`refeng::engine::build::check_dockerfile`):
//! any bytes parse or are refused with a line inside the text, and what parses plans without a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = refeng::engine::build::check_dockerfile(data);
});
