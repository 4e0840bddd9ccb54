//! Fuzzes `.dockerignore` matching (`refeng::engine::build::check_dockerignore`): the first
//! line is a path, the rest the file; patterns parse or are refused, and the walk never sends a
//! path the patterns ignore.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = refeng::engine::build::check_dockerignore(data);
});
