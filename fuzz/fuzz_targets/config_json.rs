//! Fuzzes config.json loading and validation (`refeng::oci::config::parse_config`): a malformed
//! or hostile config must come back as an error, never as a panic, an abort or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(spec) = refeng::oci::config::parse_config(data) {
        // What validation accepted must survive a round trip through its own serialization:
        // refeng writes specs back out (state, `spec`), and reads them again later.
        let bytes = serde_json::to_vec(&spec).expect("a parsed spec serializes");
        assert!(
            refeng::oci::config::parse_config(&bytes).is_ok(),
            "a validated spec no longer validates after a round trip"
        );
    }
});
