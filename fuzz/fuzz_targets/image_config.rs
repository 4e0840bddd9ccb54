//! Fuzzes image config parsing and diff_id validation; accepted configs yield chain ids.
#![no_main]

use libfuzzer_sys::fuzz_target;
use refeng::image::format;

fuzz_target!(|data: &[u8]| {
    let layers = data.first().map_or(0, |b| usize::from(*b % 8));
    if let Ok((_, diff_ids)) = format::parse_config(data, layers) {
        assert_eq!(diff_ids.len(), layers);
        assert_eq!(format::chain_ids(&diff_ids).len(), layers);
    }
});
