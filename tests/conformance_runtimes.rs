//! CI gate: runs `refeng-conformance` against refeng-runc and against runc, and asserts that
//! refeng-runc passes every case runc passes, except the bugs named in [`KNOWN_BUGS`], which
//! must still fail (so a fix shows up as a list to shrink, not as silence).
//!
//! Needs root, busybox-static at /usr/bin/busybox and runc at /usr/sbin/runc (or `REFENG_RUNC`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Cases runc passes and refeng-runc fails today, each a bug for the runtime's owner, with what
/// the oracle saw. Remove an entry when the runtime is fixed; this test then keeps it fixed.
const KNOWN_BUGS: &[(&str, &str)] = &[];

/// One run of the oracle: case name → verdict (`pass`, `fail`, `skip`) and detail.
fn oracle(runtime: &Path) -> BTreeMap<String, (String, String)> {
    let output = Command::new(env!("CARGO_BIN_EXE_refeng-conformance"))
        .arg("--runtime")
        .arg(runtime)
        .arg("--checker")
        .arg(env!("CARGO_BIN_EXE_refeng-conformance-checker"))
        .args(["--format", "json"])
        .output()
        .expect("run refeng-conformance");
    let text = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "refeng-conformance printed no JSON report for {} ({e}); stderr: {}",
            runtime.display(),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    report["cases"]
        .as_array()
        .expect("the report lists cases")
        .iter()
        .map(|case| {
            let field = |name: &str| case[name].as_str().unwrap_or_default().to_owned();
            (field("name"), (field("verdict"), field("detail")))
        })
        .collect()
}

#[test]
fn refeng_runc_passes_every_case_runc_passes() {
    let refeng = oracle(Path::new(env!("CARGO_BIN_EXE_refeng-runc")));
    assert!(
        refeng.len() > 50,
        "the oracle ran only {} cases against refeng-runc",
        refeng.len()
    );
    let runc = std::env::var_os("REFENG_RUNC").map_or_else(
        || Path::new("/usr/sbin/runc").to_owned(),
        std::path::PathBuf::from,
    );
    assert!(
        runc.exists(),
        "runc not found at {} (set REFENG_RUNC): the comparison is the point of this test",
        runc.display()
    );
    let reference = oracle(&runc);
    let mut regressions = Vec::new();
    let mut fixed = Vec::new();
    for (name, (verdict, _)) in &reference {
        if verdict != "pass" {
            continue;
        }
        let (got, detail) = refeng
            .get(name)
            .cloned()
            .unwrap_or_else(|| ("missing".to_owned(), String::new()));
        let known = KNOWN_BUGS.iter().any(|(bug, _)| bug == name);
        match (got == "pass", known) {
            (true, true) => fixed.push(name.clone()),
            (false, false) => regressions.push(format!("{name}: {got}: {detail}")),
            (true, false) | (false, true) => {}
        }
    }
    assert!(
        regressions.is_empty(),
        "refeng-runc fails cases runc passes:\n  {}",
        regressions.join("\n  ")
    );
    assert!(
        fixed.is_empty(),
        "fixed in refeng-runc, remove from KNOWN_BUGS: {fixed:?}"
    );
}
