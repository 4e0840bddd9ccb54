//! Fuzzes what refengd parses from requests besides routes (`refeng::engine::requests::check`):
//! `filters`, `X-Registry-Auth`, the `POST /auth` body, import `changes`, `since`/`until`, the
//! API version in the path, daemon.json, build queries, seccomp profiles, the mount specs of a
//! container create (`-v`, `--mount`, `--tmpfs`), volume create bodies and the query of the
//! `docker cp` endpoints (`/containers/{id}/archive`: `path` and its flags).
//! The first line picks the parser; bad input must be a 400, never a panic, and what is
//! accepted must keep its invariant (filters survive a round trip, versions print back).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = refeng::engine::requests::check(data);
});
