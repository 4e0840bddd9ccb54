//! Fuzzes the readers of the kernel's text files (`refeng::sys::kernel_files`): what a process or
//! a cgroupfs shows the runtime, the shim and the conformance oracle. The first byte picks the
//! format. Every input gives a value or an error naming a line of the input, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use refeng::sys::kernel_files::{cgroup_file, mountinfo, proc_cgroup::ProcCgroup, Malformed};

/// An error must point at a line that exists.
fn check_error(text: &[u8], e: &Malformed) {
    let lines = text.split(|b| *b == b'\n').count().max(1);
    assert!(e.line >= 1 && e.line <= lines, "line {} of {lines}", e.line);
    assert!(e.content.chars().count() <= 123, "the excerpt is cut");
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, text)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => match ProcCgroup::parse(text) {
            Ok(p) => {
                for m in &p.memberships {
                    assert!(m.path.is_absolute(), "{m:?}");
                    assert!(m.controllers.iter().all(|c| !c.is_empty()), "{m:?}");
                }
            }
            Err(e) => check_error(text, &e),
        },
        1 => match mountinfo::parse(text) {
            Ok(mounts) => {
                for m in &mounts {
                    let _ = m.propagation();
                    let _ = mountinfo::covering(&mounts, &m.mount_point);
                }
            }
            Err(e) => check_error(text, &e),
        },
        2 => match cgroup_file::flat_keyed(text) {
            Ok(map) => assert!(map.keys().all(|k| !k.is_empty() && !k.contains(char::is_whitespace))),
            Err(e) => check_error(text, &e),
        },
        3 => match cgroup_file::nested_keyed(text) {
            Ok(entries) => {
                for entry in &entries {
                    for (k, v) in &entry.fields {
                        assert!(!k.is_empty() && !v.is_empty() && !k.contains('='));
                        if let Err(e) = entry.get_u64(k) {
                            assert_eq!(e.line, entry.line);
                        }
                    }
                }
            }
            Err(e) => check_error(text, &e),
        },
        4 => {
            if let Err(e) = cgroup_file::single_u64(text) {
                assert_eq!(e.line, 1);
            }
            if let Err(e) = cgroup_file::list::<i32>(text) {
                check_error(text, &e);
            }
        }
        _ => {
            if let Err(e) = cgroup_file::blkio_v1_counters(text) {
                check_error(text, &e);
            }
        }
    }
});
