//! Fuzzes the DNS messages the embedded resolver reads from containers
//! (`refeng::engine::network::dns::check`): bad input is refused, never a panic, and every
//! answer built for an accepted query parses back with the same id and question.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = refeng::engine::network::dns::check(data);
});
