//! Fuzzes the requests refeng-containerd decodes (`refeng::containerd::requests::check`): the
//! first byte picks a method, the rest is its protobuf body. Any bytes are decoded and checked
//! (ids, refs, digests, labels, filters, field paths, mounts, runtime specs in `Any`) into an
//! accepted request or a clean error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use refeng::containerd::requests::{check, METHODS};

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let method = METHODS[usize::from(which) % METHODS.len()];
    let _ = check(method, body);
});
