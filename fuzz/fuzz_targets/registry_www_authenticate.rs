//! Fuzzes the `WWW-Authenticate` challenge parser (`refeng::image::registry::auth`): a
//! registry's header is outside input; it parses to challenges with a scheme, or is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use refeng::image::registry::auth::parse_challenges;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cs) = parse_challenges(s) {
        assert!(!cs.is_empty());
        for c in cs {
            assert!(!c.scheme.is_empty());
        }
    }
});
