//! Fuzzes what refengd parses from network requests (`refeng::engine::network::api::check`):
//! `POST /networks/create` bodies, a container's `EndpointSettings` (create and connect),
//! `PortBindings` with `-P`, and `--add-host` entries. The first line picks the parser; bad
//! input must be a 400, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = refeng::engine::network::api::check(data);
});
