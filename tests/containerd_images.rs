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
        // --sync: containerd collects (here: the archive's index, which only the import's
        // lease held) in the background otherwise, some time later; refeng-containerd at once.
        vec!["images", "rm", "--sync", "example.com/tagged:v1"],
        vec!["images", "rm", "example.com/nothere:v1"],
        vec!["images", "label", IMAGE, "team=blue"],
        vec!["images", "ls", "labels.team==blue"],
        vec!["images", "label", IMAGE, "team="],
        vec!["images", "ls"],
        vec!["content", "ls"],
        vec!["snapshots", "ls"],
        vec!["snapshots", "--snapshotter", "native", "ls"],
        vec!["snapshots", "--snapshotter", "nosuch", "ls"],
        // The same image in a second namespace: the bytes are shared, the records are not.
        vec!["-n", "second", "images", "import", &oci],
        vec!["-n", "second", "images", "tag", IMAGE, "example.com/gc:1"],
        vec!["-n", "second", "images", "rm", "--sync", "example.com/gc:1"],
        vec!["-n", "second", "images", "ls", "-q"],
        vec!["-n", "second", "content", "ls"],
        vec!["-n", "second", "snapshots", "ls"],
        vec!["-n", "second", "images", "rm", "--sync", IMAGE],
        vec!["-n", "second", "content", "ls", "-q"],
        vec!["content", "ls", "-q"],
        vec!["namespaces", "ls", "-q"],
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
            vec!["content", "label", &config, "extra=1"],
            vec!["content", "ls", "labels.extra==1"],
            vec!["content", "label", &config, "extra="],
            vec![
                "content",
                "rm",
                "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            ],
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
        // Into a second namespace: the bytes are shared, the labels of the pull recorded there.
        vec!["-n", "second", "images", "pull", "--plain-http", &remote],
        vec!["-n", "second", "content", "ls"],
        vec!["images", "pull", "--plain-http", &missing],
    ];
    let script: Vec<&[&str]> = script.iter().map(Vec::as_slice).collect();
    // ctr pull prints a progress table whose rows depend on timing: keep what it resolved. Its
    // progress loop also logs "failed to get content info" or "active check failed" with
    // `context canceled` when the pull ends while it asks for a status (a race inside ctr; the
    // slower the answers, as from a debug build, the likelier).
    let keep = |t: String| {
        t.lines()
            .filter(|l| {
                !l.contains("elapsed")
                    && !l.starts_with("done:")
                    && (!l.contains("level=error") || !l.contains("error=\"context canceled\""))
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
    let second = ours
        .split("-n second content ls")
        .nth(1)
        .unwrap_or_default();
    assert!(
        second.contains("containerd.io/distribution.source."),
        "{ours}"
    );
}

/// `ctr snapshots diff --keep` makes a layer of what changed in an active snapshot, labelled
/// with its uncompressed digest; the layer lists the same entries (added, changed, whiteouts)
/// as containerd's.
#[test]
fn snapshot_diff_makes_the_layer_containerd_makes() {
    let a = archives();
    let oci = s(&a.oci);
    let run = |peer| {
        let d = Daemon::start(peer);
        d.ctr_ok(&["images", "import", &oci]);
        let (chain, _) = ids_after_import(&d);
        d.ctr_ok(&["snapshots", "prepare", "work", &chain]);
        let mnt = d.path().join("mnt");
        fs::create_dir_all(&mnt).unwrap();
        let cmd = d.ctr_ok(&["snapshots", "mounts", &s(&mnt), "work"]);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd.trim())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::write(mnt.join("hello"), "hello\n").unwrap();
        fs::write(mnt.join("etc/marker"), "changed\n").unwrap();
        fs::remove_file(mnt.join("etc/group")).unwrap();
        fs::create_dir_all(mnt.join("newdir/sub")).unwrap();
        nix::mount::umount(&mnt).unwrap();
        // ctr writes the layer it had made to stdout.
        let out = d.ctr(&["snapshots", "diff", "--keep", "work"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let layer = out.stdout;
        let digest = {
            use sha2::Digest as _;
            format!("sha256:{:x}", sha2::Sha256::digest(&layer))
        };
        let listing = std::process::Command::new("tar")
            .args(["-tzf", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                std::io::Write::write_all(c.stdin.as_mut().unwrap(), &layer)?;
                drop(c.stdin.take());
                c.wait_with_output()
            })
            .unwrap();
        let info = d.ctr_ok(&["content", "ls"]);
        let labelled = info
            .lines()
            .any(|l| l.starts_with(&digest) && l.contains("containerd.io/uncompressed=sha256:"));
        assert!(labelled, "{info}");
        String::from_utf8(listing.stdout).unwrap()
    };
    let ours = run(Peer::Refeng);
    assert!(
        ours.contains("hello") && ours.contains("etc/.wh.group"),
        "{ours}"
    );
    assert_eq!(ours, run(Peer::Containerd));
}

/// The events an import, a tag, a container and their removal publish: the same topics and
/// payloads, in the same order, as containerd's.
#[test]
fn events_of_image_and_container_verbs_match_containerd() {
    let a = archives();
    let oci = s(&a.oci);
    let run = |peer| {
        let d = Daemon::start(peer);
        let ev = containerd_support::Events::start(&d, &[]);
        let script: Vec<Vec<&str>> = vec![
            vec!["images", "import", &oci],
            vec!["images", "tag", IMAGE, "example.com/t:1"],
            vec!["containers", "create", IMAGE, "c1"],
            vec!["containers", "label", "c1", "k=v"],
            vec!["containers", "rm", "c1"],
            vec!["images", "rm", "--sync", "example.com/t:1"],
        ];
        let script: Vec<&[&str]> = script.iter().map(Vec::as_slice).collect();
        run_script(&d, &script);
        let lines = ev.lines(10);
        // Unpack keys carry a time and a random part; snapshot ids in events are those keys.
        let key = regex::Regex::new(r"extract-\d+-[A-Za-z0-9_-]+").unwrap();
        lines
            .iter()
            .map(|l| key.replace_all(l, "extract-<n>").into_owned())
            .collect::<Vec<_>>()
    };
    let ours = run(Peer::Refeng);
    let theirs = run(Peer::Containerd);
    assert_eq!(ours, theirs, "\nours:   {ours:#?}\ntheirs: {theirs:#?}");
    assert!(
        ours.iter().any(|l| l.contains("/images/create")),
        "{ours:#?}"
    );
    assert_eq!(ours.len(), 10, "{ours:#?}");
}
