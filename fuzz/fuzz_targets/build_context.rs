//! Fuzzes the reader of `POST /build`'s context tar (`refeng::engine::build::check_build_context`):
//! bad archives are refused, and what is read holds only clean paths inside the context.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = refeng::engine::build::check_build_context(data);
});
