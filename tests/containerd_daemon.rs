//! refeng-containerd's daemon and its first services (Version, Introspection, Namespaces,
//! Events) driven by the real `ctr` from Debian's containerd package, and the same `ctr`
//! scripts against a private real containerd: the outputs must be the same after normalising
//! times and UUIDs.

mod containerd_support;

use containerd_support::{transcript, Daemon, Events, Peer};

#[test]
fn version_and_plugins() {
    let d = Daemon::start(Peer::Refeng);
    let out = d.ctr_ok(&["version"]);
    assert!(out.contains("Server:"), "{out}");
    assert!(out.contains("+refeng."), "{out}");
    let plugins = d.ctr_ok(&["plugins", "ls"]);
    for p in ["namespaces", "events", "introspection", "version"] {
        assert!(
            plugins
                .lines()
                .any(|l| l.starts_with("io.containerd.grpc.v1") && l.contains(p)),
            "{p} missing from {plugins}"
        );
    }
    let only = d.ctr_ok(&["plugins", "ls", "id==namespaces"]);
    assert_eq!(only.lines().count(), 2, "{only}");
}

/// The namespace verbs, the state they leave, and their errors, as containerd has them.
const NAMESPACE_SCRIPT: &[&[&str]] = &[
    &["namespaces", "ls"],
    &["namespaces", "create", "foo", "a=b", "c=d"],
    &["namespaces", "create", "foo"],
    &["namespaces", "create", "bad/name"],
    &["namespaces", "create", "-x"],
    &["namespaces", "ls"],
    &["namespaces", "ls", "-q"],
    &["namespaces", "label", "foo", "a="],
    &["namespaces", "label", "foo", "e=f"],
    &["namespaces", "label", "other", "k=v"],
    &["namespaces", "ls"],
    &["namespaces", "rm", "foo", "nothere"],
    &["namespaces", "rm", "other"],
    &["namespaces", "ls"],
    &["plugins", "ls", "id=="],
    &["plugins", "ls", "topic~=/namespaces/(create|delete)"],
];

#[test]
fn namespaces_match_containerd() {
    let ours = {
        let d = Daemon::start(Peer::Refeng);
        transcript(&d, NAMESPACE_SCRIPT)
    };
    let theirs = {
        let d = Daemon::start(Peer::Containerd);
        transcript(&d, NAMESPACE_SCRIPT)
    };
    assert_eq!(ours, theirs);
    // The script did what it says (so the comparison is not of two empty outputs).
    assert!(
        ours.contains("foo  a=b,c=d") || ours.contains("foo a=b,c=d"),
        "{ours}"
    );
    assert!(ours.contains("already exists"), "{ours}");
}

#[test]
fn namespaces_survive_a_kill_and_restart() {
    let mut d = Daemon::start(Peer::Refeng);
    d.ctr_ok(&["namespaces", "create", "kept", "x=y"]);
    d.restart();
    let ls = d.ctr_ok(&["namespaces", "ls"]);
    assert!(ls.contains("kept") && ls.contains("x=y"), "{ls}");
}

const EVENTS_SCRIPT: &[&[&str]] = &[
    &["namespaces", "create", "ev1", "a=b"],
    &["namespaces", "label", "ev1", "a="],
    &["namespaces", "rm", "ev1"],
];

fn events_of(peer: Peer, filters: &[&str], want: usize) -> Vec<String> {
    let d = Daemon::start(peer);
    let ev = Events::start(&d, filters);
    transcript(&d, EVENTS_SCRIPT);
    ev.lines(want)
}

#[test]
fn events_match_containerd_with_and_without_filters() {
    let ours = events_of(Peer::Refeng, &[], 3);
    assert_eq!(ours.len(), 3, "{ours:?}");
    assert_eq!(ours, events_of(Peer::Containerd, &[], 3));
    let filters = [
        "topic~=\"^/namespaces/(create|delete)$\"",
        "namespace==nothing",
    ];
    let ours = events_of(Peer::Refeng, &filters, 2);
    assert_eq!(ours.len(), 2, "{ours:?}");
    assert!(ours[1].contains("/namespaces/delete"), "{ours:?}");
    assert_eq!(ours, events_of(Peer::Containerd, &filters, 2));
    // Fields of the event itself (containerd's fieldpaths): a label, and a name with a topic.
    for (filters, want) in [
        (&["event.labels.a==b"][..], "/namespaces/create"),
        (
            &["topic==\"/namespaces/delete\",event.name==ev1"][..],
            "/namespaces/delete",
        ),
    ] {
        let ours = events_of(Peer::Refeng, filters, 1);
        assert_eq!(ours.len(), 1, "{filters:?}: {ours:?}");
        assert!(ours[0].contains(want), "{filters:?}: {ours:?}");
        assert_eq!(ours, events_of(Peer::Containerd, filters, 1), "{filters:?}");
    }
}

#[test]
fn bad_filters_are_invalid_argument() {
    let d = Daemon::start(Peer::Refeng);
    let err = d.ctr_err(&["plugins", "ls", "id=="]);
    assert!(err.contains("invalid argument"), "{err}");
}

/// `--config` takes containerd's keys; a key refeng-containerd does not implement stops it with
/// the key's name, rather than being ignored.
#[test]
fn config_file_keys_and_refusals() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let dir = tempfile::Builder::new()
        .prefix("rctd-cfg")
        .tempdir_in("/tmp")
        .unwrap();
    let d = dir.path();
    let bad = d.join("bad.toml");
    std::fs::write(
        &bad,
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\nx = 1\n",
    )
    .unwrap();
    let out = Command::new(containerd_support::REFENG_CONTAINERD)
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plugins"), "{err}");
    let good = d.join("good.toml");
    std::fs::write(
        &good,
        format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n[grpc]\naddress = \"{0}/c.sock\"\n[debug]\nlevel = \"debug\"\nformat = \"json\"\n",
            d.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(d.join("log")).unwrap();
    let mut child = Command::new(containerd_support::REFENG_CONTAINERD)
        .arg("--config")
        .arg(&good)
        .stdin(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let ok = loop {
        let o = Command::new("ctr")
            .arg("--address")
            .arg(d.join("c.sock"))
            .arg("version")
            .output()
            .unwrap();
        if o.status.success() || Instant::now() > deadline {
            break o.status.success();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok, "not serving on the configured address");
    assert!(d.join("root/meta.redb").exists());
    let log = std::fs::read_to_string(d.join("log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.starts_with('{') && l.contains("\"level\"")),
        "{log}"
    );
}
