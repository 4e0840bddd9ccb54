//! Images, content, snapshots and containers of refeng-containerd driven by the real `ctr`:
//! `images import` (OCI and docker archives) unpacks through Diff.Apply, Snapshots and Leases;
//! `images ls/tag/rm/export`, `content ls/get`, `snapshots ls/prepare/mounts/rm`,
//! `containers create/ls/info/rm`. The same script runs against a private real containerd and
//! the transcripts must match after normalising times and the daemons' directories.

mod containerd_support;
mod registry_support;

use std::fs;
use std::path::Path;

use containerd_support::archive::{archives, IMAGE};
use containerd_support::{transcript, Daemon, Peer};

/// The transcript with the daemon's directory replaced, so paths compare.
fn run_script(d: &Daemon, script: &[&[&str]]) -> String {
    transcript(d, script).replace(&d.path().display().to_string(), "<dir>")
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn import_and_inspect_images_like_containerd() {
    let a = archives();
    let (oci, docker) = (s(&a.oci), s(&a.docker));
    let script: Vec<Vec<&str>> = vec![
        vec!["images", "import", &oci],
        vec!["images", "ls"],
        vec!["images", "ls", "-q"],
        vec!["images", "check"],
        vec!["images", "import", &docker],
        vec!["images", "ls", "-q"],
        vec!["images", "tag", IMAGE, "example.com/tagged:v1"],
        vec!["images", "ls", "name~=tagged"],
        vec!["images", "rm", "example.com/tagged:v1"],
        vec!["images", "rm", "example.com/nothere:v1"],
        vec!["content", "ls"],
        vec!["snapshots", "ls"],
        vec!["snapshots", "--snapshotter", "native", "ls"],
        vec!["snapshots", "--snapshotter", "nosuch", "ls"],
    ];
    let script: Vec<&[&str]> = script.iter().map(Vec::as_slice).collect();
    let ours = {
        let d = Daemon::start(Peer::Refeng);
        run_script(&d, &script)
    };
    let theirs = {
        let d = Daemon::start(Peer::Containerd);
        run_script(&d, &script)
    };
    assert_eq!(ours, theirs);
    assert!(ours.contains(IMAGE), "{ours}");
}

/// The chain id of the archive's one layer and its config digest, read from a daemon that
/// imported it.
fn ids_after_import(d: &Daemon) -> (String, String) {
    let snaps = d.ctr_ok(&["snapshots", "ls"]);
    let chain = snaps
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .expect("a snapshot after import")
        .to_string();
    let content = d.ctr_ok(&["content", "ls"]);
    let config = content
        .lines()
        .find(|l| l.contains("gc.ref.snapshot.overlayfs"))
        .and_then(|l| l.split_whitespace().next())
        .expect("the config blob")
        .to_string();
    (chain, config)
}

fn sha256_file(p: &Path) -> String {
    use sha2::Digest as _;
    format!("{:x}", sha2::Sha256::digest(fs::read(p).unwrap()))
}

#[test]
fn snapshots_containers_content_export_and_gc_like_containerd() {
    let a = archives();
    let oci = s(&a.oci);
    let (chain, config) = {
        let d = Daemon::start(Peer::Refeng);
        d.ctr_ok(&["images", "import", &oci]);
        ids_after_import(&d)
    };
    let run = |peer| {
        let d = Daemon::start(peer);
        let export = d.path().join("export.tar");
        let export_s = s(&export);
        let mnt = d.path().join("mnt");
        fs::create_dir_all(&mnt).unwrap();
        let mnt_s = s(&mnt);
        let script: Vec<Vec<&str>> = vec![
            vec!["images", "import", &oci],
            vec!["snapshots", "prepare", "snap1", &chain],
            vec!["snapshots", "prepare", "snap1", &chain],
            vec!["snapshots", "prepare", "snap2", "nosuchparent"],
            vec!["snapshots", "prepare", "snap3", "snap1"],
            vec!["snapshots", "ls"],
            vec!["snapshots", "mounts", &mnt_s, "snap1"],
            vec!["snapshots", "info", "snap1"],
            vec!["snapshots", "label", "snap1", "k=v"],
            vec!["snapshots", "info", "snap1"],
            vec!["snapshots", "commit", "committed1", "snap1"],
            vec!["snapshots", "info", "committed1"],
            vec!["snapshots", "commit", "committed2", "committed1"],
            vec![
                "snapshots",
                "label",
                "committed1",
                "containerd.io/gc.root=keep",
            ],
            vec!["snapshots", "tree"],
            vec!["snapshots", "usage", "committed1"],
            vec!["snapshots", "rm", &chain],
            vec!["snapshots", "rm", "nosuch"],
            vec!["content", "get", &config],
            vec![
                "content",
                "get",
                "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            ],
            vec!["content", "get", "sha256:zz"],
            vec!["containers", "create", IMAGE, "c1"],
            vec!["containers", "create", IMAGE, "c1"],
            vec![
                "containers",
                "create",
                "--snapshotter",
                "native",
                IMAGE,
                "c2",
            ],
            vec!["containers", "ls"],
            vec!["snapshots", "ls"],
            vec!["snapshots", "--snapshotter", "native", "ls"],
            vec!["containers", "rm", "c1", "c2"],
            vec!["snapshots", "rm", "committed1"],
            vec!["snapshots", "ls"],
            vec!["images", "export", &export_s, IMAGE],
            // --sync: containerd collects in the background otherwise, after some delay.
            vec!["images", "rm", "--sync", IMAGE],
            vec!["content", "ls"],
            vec!["snapshots", "ls"],
            vec!["snapshots", "--snapshotter", "native", "ls"],
        ];
        let script: Vec<&[&str]> = script.iter().map(Vec::as_slice).collect();
        let t = run_script(&d, &script);
        (t, sha256_file(&export))
    };
    let (ours, our_export) = run(Peer::Refeng);
    let (theirs, their_export) = run(Peer::Containerd);
    assert_eq!(ours, theirs);
    assert_eq!(our_export, their_export, "the exported archives differ");
    assert!(
        ours.contains("c1 docker.io/library/busybox:latest"),
        "{ours}"
    );
}

/// `ctr images push` from refeng-containerd to a loopback docker-registry, then `ctr images pull
/// --plain-http` of it into a fresh refeng-containerd and a fresh containerd.
#[test]
fn push_and_pull_plain_http_like_containerd() {
    let a = archives();
    let registry = registry_support::RegistryServer::plain();
    let remote = format!("{}/library/busybox:latest", registry.host());
    {
        let d = Daemon::start(Peer::Refeng);
        d.ctr_ok(&["images", "import", &s(&a.oci)]);
        d.ctr_ok(&["images", "tag", IMAGE, &remote]);
        let out = d.ctr_ok(&["images", "push", "--plain-http", &remote]);
        assert!(out.contains("elapsed"), "{out}");
    }
    let missing = format!("{}/library/nothere:1", registry.host());
    let script: Vec<Vec<&str>> = vec![
        vec!["images", "pull", "--plain-http", &remote],
        vec!["images", "ls"],
        vec!["images", "check"],
        vec!["snapshots", "ls"],
        vec!["content", "ls", "-q"],
        vec![
            "images",
            "pull",
            "--plain-http",
            "--snapshotter",
            "native",
            &remote,
        ],
        vec!["snapshots", "--snapshotter", "native", "ls"],
        vec!["images", "pull", "--plain-http", &missing],
    ];
    let script: Vec<&[&str]> = script.iter().map(Vec::as_slice).collect();
    // ctr pull prints a progress table whose rows depend on timing: keep what it resolved.
    let keep = |t: String| {
        t.lines()
            .filter(|l| {
                !l.contains("elapsed")
                    && !l.starts_with("done:")
                    && !l.contains("|")
                    && !l.starts_with("manifest-")
                    && !l.starts_with("layer-")
                    && !l.starts_with("config-")
                    && !l.starts_with("index-")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let ours = {
        let d = Daemon::start(Peer::Refeng);
        keep(run_script(&d, &script))
    };
    let theirs = {
        let d = Daemon::start(Peer::Containerd);
        keep(run_script(&d, &script))
    };
    assert_eq!(ours, theirs);
    assert!(ours.contains(&remote), "{ours}");
}
