//! Snapshot tests (insta) of refeng-runc's machine-read output: `spec`, `spec --rootless`,
//! `features` and `state`. containerd, dockerd and users parse these documents, so any change to
//! them must be a reviewed snapshot change (`cargo insta review`).
//!
//! The snapshots are refeng-runc's own: under `REFENG_RUNTIME=<another runtime>` each test says
//! on stderr that it is skipped and why. Needs root (`state` creates a container).

mod common;

use std::fs;
use std::process::Command;

use common::{require_refeng, runtime_bin, Bundle};

/// Why these tests skip under another runtime.
const SNAPSHOTS_ARE_REFENGS: &str = "the snapshots are refeng-runc's own output";
use serde_json::Value;

/// Replaces the values of `keys` (at any depth) with `[key]`: they differ on every run.
fn redact(value: &mut Value, keys: &[&str]) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if keys.contains(&k.as_str()) {
                    *v = Value::String(format!("[{k}]"));
                } else {
                    redact(v, keys);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact(v, keys)),
        _ => {}
    }
}

fn spec_json(extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(runtime_bin())
        .arg("spec")
        .args(extra)
        .arg("--bundle")
        .arg(dir.path())
        .output()
        .expect("run spec");
    assert!(out.status.success(), "{out:?}");
    let text = fs::read_to_string(dir.path().join("config.json")).expect("config.json written");
    serde_json::from_str(&text).expect("config.json is JSON")
}

#[test]
fn spec_default() {
    require_refeng!(SNAPSHOTS_ARE_REFENGS);
    insta::assert_json_snapshot!("spec", spec_json(&[]));
}

#[test]
fn spec_rootless() {
    require_refeng!(SNAPSHOTS_ARE_REFENGS);
    let mut spec = spec_json(&["--rootless"]);
    // The mappings name the calling user's uid and gid.
    redact(&mut spec, &["hostID"]);
    insta::assert_json_snapshot!("spec_rootless", spec);
}

#[test]
fn features() {
    require_refeng!(SNAPSHOTS_ARE_REFENGS);
    let out = Command::new(runtime_bin())
        .arg("features")
        .output()
        .expect("run features");
    assert!(out.status.success(), "{out:?}");
    let features: Value = serde_json::from_slice(&out.stdout).expect("features is JSON");
    insta::assert_json_snapshot!("features", features);
}

#[test]
fn state_of_a_created_container() {
    require_refeng!(SNAPSHOTS_ARE_REFENGS);
    let c = Bundle::new("snapstate").args(&["sleep", "60"]).container();
    c.create();
    let mut state = c.state();
    redact(&mut state, &["id", "pid", "created", "bundle", "rootfs"]);
    insta::assert_json_snapshot!("state_created", state);
}

/// A test that does not apply to the runtime under test says so in the output of a plain
/// `cargo test` (output capture on), instead of passing silently: this runs the suite's own
/// binary with `REFENG_RUNTIME` naming runc and reads what it printed.
#[test]
fn a_skipped_test_says_so_in_the_output() {
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args(["spec_default", "--exact"])
        .env("REFENG_RUNTIME", "/usr/sbin/runc")
        .output()
        .expect("run the suite's binary");
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "skipped spec_default: /usr/sbin/runc is not refeng-runc: the snapshots are \
             refeng-runc's own output"
        ),
        "stderr: {stderr}"
    );
}
