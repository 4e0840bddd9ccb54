//! Fuzzes what refeng-containerd's task side decodes from outside
//! (`refeng::containerd::tasks::input::check`): the first byte picks a Tasks request or a shim
//! or disk input (a shim's `start` output, the task record, a forwarded exit event), the rest is
//! its bytes. Any bytes end in an accepted input or a clean error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use refeng::containerd::tasks::input::{check, INPUTS};

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let _ = check(INPUTS[usize::from(which) % INPUTS.len()], body);
});
