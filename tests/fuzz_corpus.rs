//! Every committed fuzz seed runs through its parser in plain `cargo test`, so a seed that once
//! crashed stays fixed without a fuzzing toolchain: the check is the fuzz target's own (an error
//! or a value that survives its round trip, never a panic).

use std::path::Path;

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

#[test]
fn config_json_seeds_parse_or_fail_cleanly() {
    let mut accepted = 0;
    for (name, bytes) in seeds("config_json") {
        if let Ok(spec) = refeng::oci::config::parse_config(&bytes) {
            accepted += 1;
            let again = serde_json::to_vec(&spec).unwrap();
            assert!(
                refeng::oci::config::parse_config(&again).is_ok(),
                "{name}: accepted, but not after a round trip"
            );
        }
    }
    // The corpus holds real configs (runc's default, Docker's) as well as broken ones.
    assert!(accepted >= 2, "only {accepted} seeds were accepted");
}
