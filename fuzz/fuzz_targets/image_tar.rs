//! Fuzzes the hostile-input tar reader: it must never panic, loop or allocate beyond its limits.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use refeng::image::tar::{Reader, TarLimits};

fuzz_target!(|data: &[u8]| {
    let limits = TarLimits { max_meta_record: 1 << 16, ..TarLimits::default() };
    let mut r = Reader::new(data, limits);
    let mut buf = Vec::new();
    while let Ok(Some(e)) = r.next_entry() {
        assert!(e.path.len() <= limits.max_path);
        buf.clear();
        if r.data().read_to_end(&mut buf).is_err() {
            break;
        }
        assert!(buf.len() as u64 <= e.size || e.size == 0);
    }
});
