//! Fuzzes image reference parsing (`refeng::image::registry::Reference::parse`): any string a
//! user or an API client sends is refused with an error or normalised; what is accepted prints
//! back to a reference that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use refeng::image::registry::Reference;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = Reference::parse(s) {
        let again = Reference::parse(&r.to_string()).expect("a normalised reference parses");
        assert_eq!(again, r, "normalisation is not idempotent");
    }
});
