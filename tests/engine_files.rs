//! `docker cp` against refengd, driven by the docker CLI 28 as a user would: files,
//! directories, symlinks and a trailing `/.` both ways, a running and a stopped container, a
//! named volume mounted in the container; then hostile containers: symlinks that name a host
//! directory (absolute, relative `..` chains, inside a volume), archives with `..` entries and
//! links out of the directory sent straight to the API, and a symlink swapped in a loop while
//! cp runs. Each hostile test keeps a sentinel directory on the host that must stay as it was,
//! and gives the container a decoy at the same path, so that a copy that resolved in the
//! container (as it must) is told apart from one that reached the host.
//! Last, the same actions against a private dockerd 20.10: the stat header, the archive
//! listings, the statuses of the failures and the copied trees must match.
//!
//! One refengd and one dockerd serve the binary; both are stopped by pid at the end, also
//! after a failure. Each test removes its containers, volumes and files when it ends, failed
//! or not.

mod busybox_pair;
mod engine_support;
mod peers;
mod rootfs;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use engine_support::{try_request, HttpResponse, Refengd};
use peers::dockerd::Dockerd;
use refeng::image::tar::{Builder, Entry, Kind};

use busybox_pair::BusyboxPair as World;

static W: OnceLock<World> = OnceLock::new();

/// The image `bb:base` (busybox, with a file and a relative symlink under `/img`) in both
/// daemons.
fn world() -> &'static World {
    W.get_or_init(|| {
        World::start(|root| {
            fs::create_dir_all(root.join("img/sub")).unwrap();
            fs::write(root.join("img/sub/file"), "from the image\n").unwrap();
            std::os::unix::fs::symlink("sub/file", root.join("img/rel")).unwrap();
        })
    })
}

fn d() -> &'static Refengd {
    &world().refengd
}

fn with_dockerd<T>(f: impl FnOnce(&Dockerd) -> T) -> T {
    let g = world().dockerd.lock().unwrap_or_else(|e| e.into_inner());
    f(g.as_ref().expect("dockerd running"))
}

/// A daemon under test: refengd with the docker CLI 28 or dockerd with its own CLI.
#[derive(Clone, Copy)]
enum Peer {
    Refengd,
    Dockerd,
}

impl Peer {
    fn cmd(self, args: &[&str]) -> Command {
        match self {
            Peer::Refengd => d().docker_cmd(args),
            Peer::Dockerd => with_dockerd(|x| x.command(args)),
        }
    }

    fn try_docker(self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run docker")
    }

    #[track_caller]
    fn docker(self, args: &[&str]) -> String {
        let out = self.try_docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn socket(self) -> PathBuf {
        match self {
            Peer::Refengd => d().socket(),
            Peer::Dockerd => with_dockerd(|x| x.dir().join("docker.sock")),
        }
    }

    fn request(self, method: &str, path: &str, body: Option<&[u8]>) -> HttpResponse {
        try_request(&self.socket(), method, path, &[], body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }
}

/// Removes its containers and volumes (forced) when dropped, also after a failed assertion.
struct Cleanup {
    peer: Peer,
    containers: Vec<String>,
    volumes: Vec<String>,
}

impl Cleanup {
    fn new(peer: Peer) -> Cleanup {
        Cleanup {
            peer,
            containers: Vec::new(),
            volumes: Vec::new(),
        }
    }

    /// `docker run -d` (or `create` without a command to run) of a container named `name`.
    fn container(&mut self, name: &str, args: &[&str]) -> String {
        self.containers.push(name.to_owned());
        let mut a = vec![args[0], "--name", name];
        a.extend_from_slice(&args[1..]);
        self.peer.docker(&a);
        name.to_owned()
    }

    fn volume(&mut self, name: &str) {
        self.volumes.push(name.to_owned());
        self.peer.docker(&["volume", "create", name]);
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = self.peer.try_docker(&["rm", "-f", c]);
        }
        for v in &self.volumes {
            let _ = self.peer.try_docker(&["volume", "rm", "-f", v]);
        }
    }
}

/// Runs `sh -c script` in a running container and returns its stdout.
fn sh(peer: Peer, c: &str, script: &str) -> String {
    peer.docker(&["exec", c, "sh", "-c", script])
}

/// A tree as `path -> description` (type, mode, content or link target).
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut names: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
        names.sort_by_key(fs::DirEntry::file_name);
        for e in names {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let m = fs::symlink_metadata(&p).unwrap();
            let mode = m.permissions().mode() & 0o7777;
            let desc = if m.file_type().is_symlink() {
                format!("link -> {}", fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                walk(base, &p, out);
                format!("dir {mode:o}")
            } else {
                format!(
                    "file {mode:o} {}",
                    String::from_utf8_lossy(&fs::read(&p).unwrap())
                )
            };
            out.insert(rel, desc);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The host tree every cp test copies: files (one executable), a subdirectory and a symlink.
fn source_tree(dir: &Path) {
    fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    fs::write(dir.join("a.txt"), "alpha\n").unwrap();
    fs::write(dir.join("sub/run.sh"), "#!/bin/sh\necho run\n").unwrap();
    fs::set_permissions(dir.join("sub/run.sh"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::write(dir.join("sub/deeper/z"), vec![b'z'; 70_000]).unwrap();
    std::os::unix::fs::symlink("sub/run.sh", dir.join("link")).unwrap();
}

fn both_ways_in_a_running_container() {
    let p = Peer::Refengd;
    let mut g = Cleanup::new(p);
    let c = g.container("cp-run", &["run", "-d", "bb:base", "sleep", "1000"]);
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    source_tree(&src);
    // A directory to a new name, then back.
    p.docker(&["cp", src.to_str().unwrap(), &format!("{c}:/dst")]);
    assert_eq!(
        sh(
            p,
            &c,
            "cat /dst/a.txt; readlink /dst/link; stat -c %a /dst/sub/run.sh"
        ),
        "alpha\nsub/run.sh\n750\n"
    );
    let back = t.path().join("back");
    p.docker(&["cp", &format!("{c}:/dst"), back.to_str().unwrap()]);
    assert_eq!(tree(&back), tree(&src));
    // A file into an existing directory and onto a new name.
    p.docker(&[
        "cp",
        src.join("a.txt").to_str().unwrap(),
        &format!("{c}:/tmp/"),
    ]);
    p.docker(&[
        "cp",
        src.join("a.txt").to_str().unwrap(),
        &format!("{c}:/tmp/renamed"),
    ]);
    assert_eq!(sh(p, &c, "cat /tmp/a.txt /tmp/renamed"), "alpha\nalpha\n");
    // A trailing `/.`: the contents, both ways.
    sh(p, &c, "mkdir -p /into");
    p.docker(&["cp", &format!("{}/.", src.display()), &format!("{c}:/into")]);
    assert_eq!(
        sh(p, &c, "ls -A /into | sort | tr '\\n' ' '"),
        "a.txt link sub "
    );
    let contents = t.path().join("contents");
    fs::create_dir(&contents).unwrap();
    p.docker(&["cp", &format!("{c}:/into/."), contents.to_str().unwrap()]);
    assert_eq!(tree(&contents), tree(&src));
    // A symlink in the container: copied as a link, or followed with -L.
    let l = t.path().join("l");
    p.docker(&["cp", &format!("{c}:/img/rel"), l.to_str().unwrap()]);
    assert_eq!(fs::read_link(&l).unwrap(), Path::new("sub/file"));
    let lf = t.path().join("lf");
    p.docker(&["cp", "-L", &format!("{c}:/img/rel"), lf.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(&lf).unwrap(), "from the image\n");
    // Through a symlinked directory with a trailing slash.
    sh(p, &c, "ln -s /dst /dstlink");
    let via = t.path().join("via");
    p.docker(&["cp", &format!("{c}:/dstlink/"), via.to_str().unwrap()]);
    assert_eq!(tree(&via), tree(&src));
    // Missing paths are a 404 and named.
    let out = p.try_docker(&["cp", &format!("{c}:/nope"), t.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("Could not find the file /nope in container cp-run"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Into a file path whose parent is missing.
    let out = p.try_docker(&[
        "cp",
        src.join("a.txt").to_str().unwrap(),
        &format!("{c}:/no/such/dir/"),
    ]);
    assert!(!out.status.success());
}

fn archive_mode_takes_the_container_user() {
    let p = Peer::Refengd;
    let mut g = Cleanup::new(p);
    let c = g.container(
        "cp-user",
        &["run", "-d", "-u", "user", "bb:base", "sleep", "1000"],
    );
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    source_tree(&src);
    std::os::unix::fs::chown(src.join("a.txt"), Some(4321), Some(4321)).unwrap();
    // -a: every entry belongs to the container's user, from its own /etc/passwd.
    p.docker(&[
        "cp",
        "-a",
        src.to_str().unwrap(),
        &format!("{c}:/tmp/owned"),
    ]);
    assert_eq!(
        sh(
            p,
            &c,
            "stat -c %u:%g /tmp/owned /tmp/owned/a.txt /tmp/owned/sub/run.sh"
        ),
        "1000:1000\n1000:1000\n1000:1000\n"
    );
    // Without it, the archive's owners stay.
    p.docker(&[
        "cp",
        src.join("a.txt").to_str().unwrap(),
        &format!("{c}:/tmp/kept"),
    ]);
    assert_eq!(sh(p, &c, "stat -c %u:%g /tmp/kept"), "4321:4321\n");
}

fn commit_of_a_large_change() {
    let p = Peer::Refengd;
    let mut g = Cleanup::new(p);
    // More than the 8 MiB a whole document may have: the layer is streamed, never read whole.
    let c = g.container(
        "cp-commit",
        &[
            "run",
            "bb:base",
            "sh",
            "-c",
            "head -c 20971520 /dev/urandom > /big && md5sum /big > /sum",
        ],
    );
    let image = p.docker(&["commit", &c, "cp-committed:1"]);
    assert!(image.trim().starts_with("sha256:"), "{image}");
    let out = p.docker(&[
        "run",
        "--rm",
        "cp-committed:1",
        "sh",
        "-c",
        "md5sum -c /sum && wc -c < /big",
    ]);
    assert!(out.ends_with("20971520\n"), "{out}");
    p.docker(&["rmi", "cp-committed:1"]);
}

/// No mount made for a copy stays below the daemon's directory.
fn mounts_below(dir: &Path) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(dir.join("data/tmp")))
        .map(String::from)
        .collect()
}

fn stopped_container_and_its_volume() {
    let p = Peer::Refengd;
    let mut g = Cleanup::new(p);
    g.volume("cp-vol");
    let c = g.container(
        "cp-stopped",
        &[
            "create",
            "-v",
            "cp-vol:/data",
            "bb:base",
            "sh",
            "-c",
            "cat /data/a.txt /etc/added",
        ],
    );
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    source_tree(&src);
    // Into the volume and into the snapshot of a container that never ran.
    p.docker(&[
        "cp",
        src.join("a.txt").to_str().unwrap(),
        &format!("{c}:/data/"),
    ]);
    fs::write(t.path().join("added"), "added\n").unwrap();
    p.docker(&[
        "cp",
        t.path().join("added").to_str().unwrap(),
        &format!("{c}:/etc/added"),
    ]);
    assert!(
        mounts_below(d().dir()).is_empty(),
        "{:?}",
        mounts_below(d().dir())
    );
    // Out of both while it is stopped.
    let out = t.path().join("out");
    p.docker(&["cp", &format!("{c}:/data/a.txt"), out.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(&out).unwrap(), "alpha\n");
    let img = t.path().join("img");
    p.docker(&["cp", &format!("{c}:/img"), img.to_str().unwrap()]);
    assert_eq!(
        fs::read_to_string(img.join("sub/file")).unwrap(),
        "from the image\n"
    );
    // The container sees both; another container sees the volume's file.
    p.docker(&["start", &c]);
    assert_eq!(p.docker(&["wait", &c]).trim(), "0");
    assert_eq!(p.docker(&["logs", &c]), "alpha\nadded\n");
    assert_eq!(
        p.docker(&[
            "run",
            "--rm",
            "-v",
            "cp-vol:/v",
            "bb:base",
            "cat",
            "/v/a.txt"
        ]),
        "alpha\n"
    );
    // After it ran and stopped, the same again.
    fs::write(t.path().join("later"), "later\n").unwrap();
    p.docker(&[
        "cp",
        t.path().join("later").to_str().unwrap(),
        &format!("{c}:/later"),
    ]);
    let later = t.path().join("later-out");
    p.docker(&["cp", &format!("{c}:/later"), later.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(&later).unwrap(), "later\n");
    assert!(
        mounts_below(d().dir()).is_empty(),
        "{:?}",
        mounts_below(d().dir())
    );
}

fn into_a_named_volume_of_a_running_container() {
    let p = Peer::Refengd;
    let mut g = Cleanup::new(p);
    g.volume("cp-live");
    let c = g.container(
        "cp-live-c",
        &[
            "run",
            "-d",
            "-v",
            "cp-live:/v",
            "-v",
            "/ro-anon:/ro:ro",
            "bb:base",
            "sleep",
            "1000",
        ],
    );
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    source_tree(&src);
    p.docker(&["cp", src.to_str().unwrap(), &format!("{c}:/v/tree")]);
    let mp =
        serde_json::from_str::<serde_json::Value>(&p.docker(&["volume", "inspect", "cp-live"]))
            .unwrap()[0]["Mountpoint"]
            .as_str()
            .unwrap()
            .to_owned();
    assert_eq!(tree(&Path::new(&mp).join("tree")), tree(&src));
    // A read-only mount refuses the copy as dockerd does.
    let out = p.try_docker(&[
        "cp",
        src.join("a.txt").to_str().unwrap(),
        &format!("{c}:/ro/"),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("marked read-only"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A host directory with a secret that no copy may read or change; compared at the end.
struct Sentinel {
    dir: tempfile::TempDir,
    before: BTreeMap<String, String>,
    mtime: i64,
}

const HOST_SECRET: &str = "host secret, never to be copied\n";
const DECOY: &str = "the decoy in the container\n";

impl Sentinel {
    fn new() -> Sentinel {
        let dir = tempfile::Builder::new()
            .prefix("refeng-sentinel-")
            .tempdir_in("/tmp")
            .unwrap();
        fs::write(dir.path().join("secret"), HOST_SECRET).unwrap();
        let before = tree(dir.path());
        let mtime = fs::metadata(dir.path()).unwrap().mtime();
        Sentinel { dir, before, mtime }
    }

    fn path(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    #[track_caller]
    fn check(&self) {
        assert_eq!(
            tree(self.dir.path()),
            self.before,
            "the host's sentinel changed"
        );
        assert_eq!(fs::metadata(self.dir.path()).unwrap().mtime(), self.mtime);
    }

    /// Makes the same directory in the container, with a decoy secret.
    fn decoy(&self, peer: Peer, c: &str) {
        sh(
            peer,
            c,
            &format!(
                "mkdir -p {0} && printf %s '{DECOY}' > {0}/secret",
                self.path()
            ),
        );
    }
}

/// Asserts that a copy out of `c:path` either failed or gave the container's decoy.
#[track_caller]
fn never_the_secret(out: &Output, copied: &Path) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("host secret"), "{stdout}");
    if let Ok(text) = fs::read_to_string(copied) {
        assert!(
            !text.contains("host secret"),
            "a copy read the host: {text}"
        );
    }
    if copied.is_dir() {
        for (_, v) in tree(copied) {
            assert!(!v.contains("host secret"), "a copy read the host: {v}");
        }
    }
}

fn symlink_escapes_stay_in_the_container() {
    let p = Peer::Refengd;
    let mut g = Cleanup::new(p);
    let s = Sentinel::new();
    g.volume("cp-esc");
    let c = g.container(
        "cp-esc-c",
        &["run", "-d", "-v", "cp-esc:/v", "bb:base", "sleep", "1000"],
    );
    let rel = format!("../../../../../../../..{}", s.path());
    sh(p, &c, &format!(
        "mkdir -p /w && ln -s {0} /w/abs && ln -s {rel} /w/rel && ln -s / /w/root && ln -s {0} /v/abs && ln -s ../../../../..{0} /v/rel",
        s.path()
    ));
    let t = tempfile::tempdir().unwrap();
    let up = t.path().join("upload");
    fs::write(&up, "uploaded\n").unwrap();
    let check_all = || {
        for link in ["/w/abs", "/w/rel", "/v/abs", "/v/rel"] {
            let dest = t.path().join(format!("out{}", link.replace('/', "-")));
            let _ = fs::remove_dir_all(&dest);
            let _ = fs::remove_file(&dest);
            for src in [
                format!("{link}/secret"),
                format!("{link}/"),
                format!("{link}/."),
            ] {
                let out = p.try_docker(&["cp", &format!("{c}:{src}"), dest.to_str().unwrap()]);
                never_the_secret(&out, &dest);
                let _ = fs::remove_dir_all(&dest);
                let _ = fs::remove_file(&dest);
            }
            let out = p.try_docker(&["cp", "-L", &format!("{c}:{link}"), dest.to_str().unwrap()]);
            never_the_secret(&out, &dest);
            let _ = fs::remove_dir_all(&dest);
            for into in [
                format!("{link}/"),
                format!("{link}/pwned"),
                format!("{link}/secret"),
            ] {
                let _ = p.try_docker(&["cp", up.to_str().unwrap(), &format!("{c}:{into}")]);
            }
            let _ = fs::remove_file(&dest);
        }
        s.check();
    };
    // The links dangle in the container: every copy fails or misses.
    check_all();
    // With the same path in the container, copies reach the container's decoy.
    s.decoy(p, &c);
    check_all();
    // The uploads above went to the decoy (in the container): make it again.
    s.decoy(p, &c);
    let dest = t.path().join("decoy-out");
    p.docker(&["cp", &format!("{c}:/w/abs/secret"), dest.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(&dest).unwrap(), DECOY);
    p.docker(&["cp", up.to_str().unwrap(), &format!("{c}:/v/rel/")]);
    assert_eq!(sh(p, &c, &format!("cat {}/upload", s.path())), "uploaded\n");
    // A stopped container resolves the same way.
    p.docker(&["stop", "-t", "0", &c]);
    let dest2 = t.path().join("stopped-out");
    p.docker(&["cp", &format!("{c}:/v/abs/secret"), dest2.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(&dest2).unwrap(), DECOY);
    let _ = p.try_docker(&["cp", up.to_str().unwrap(), &format!("{c}:/w/rel/stopped")]);
    s.check();
}

/// A tar of `entries` (name, kind, data or link target).
fn tar_of(entries: &[(&str, Kind, &str)]) -> Vec<u8> {
    let mut b = Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut e = Entry::new(name.as_bytes().to_vec(), *kind);
        match kind {
            Kind::File => e.size = data.len() as u64,
            Kind::Symlink | Kind::HardLink => e.link = data.as_bytes().to_vec(),
            _ => {}
        }
        e.mtime = 1_700_000_000;
        let body: &[u8] = if *kind == Kind::File {
            data.as_bytes()
        } else {
            b""
        };
        b.append(&e, body).unwrap();
    }
    b.finish().unwrap()
}

/// The hostile archives, each with what dockerd answers (the status).
fn hostile_tars(sentinel: &str) -> Vec<(&'static str, Vec<u8>, u16)> {
    let dotdot = format!("../../../../../../../..{sentinel}/pwned");
    let up = format!("../../../../../../../..{sentinel}");
    vec![
        ("dotdot", tar_of(&[(&dotdot, Kind::File, "x")]), 500),
        (
            "inner-dotdot",
            tar_of(&[("a/../../pwned", Kind::File, "x")]),
            500,
        ),
        ("symlink-up", tar_of(&[("up", Kind::Symlink, &up)]), 500),
        (
            "hardlink-up",
            tar_of(&[("h", Kind::HardLink, &format!("{up}/secret"))]),
            500,
        ),
        (
            "through-symlink",
            tar_of(&[
                ("lnk", Kind::Symlink, sentinel),
                ("lnk/pwned", Kind::File, "x"),
            ]),
            200,
        ),
        (
            "absolute",
            tar_of(&[(&format!("{sentinel}/pwned"), Kind::File, "x")]),
            200,
        ),
    ]
}

fn hostile_archives_are_contained() {
    let p = Peer::Refengd;
    let mut g = Cleanup::new(p);
    let s = Sentinel::new();
    let c = g.container("cp-tar", &["run", "-d", "bb:base", "sleep", "1000"]);
    sh(p, &c, "mkdir -p /x/y");
    for (what, tar, _) in hostile_tars(s.path()) {
        let r = p.request(
            "PUT",
            &format!("/containers/{c}/archive?path=/x/y"),
            Some(&tar),
        );
        s.check();
        match what {
            // Absolute names are taken below the directory, as dockerd does.
            "absolute" => {
                assert_eq!(r.status, 200, "{what}: {}", r.text());
                assert_eq!(sh(p, &c, &format!("cat /x/y{}/pwned", s.path())), "x");
            }
            // dockerd writes through the symlink it just made (inside the container); refengd
            // refuses to go through any symlink.
            "through-symlink" => assert_eq!(r.status, 500, "{what}: {}", r.text()),
            _ => {
                assert_eq!(r.status, 500, "{what}: {}", r.text());
                assert!(
                    r.text().contains("Error processing tar file"),
                    "{what}: {}",
                    r.text()
                );
            }
        }
    }
    // A device node is refused; a FIFO is made.
    let mut dev = Entry::new(b"null2".to_vec(), Kind::CharDevice);
    dev.dev_major = 1;
    dev.dev_minor = 3;
    let mut b = Builder::new(Vec::new());
    b.append(&dev, &b""[..]).unwrap();
    let r = p.request(
        "PUT",
        &format!("/containers/{c}/archive?path=/x/y"),
        Some(&b.finish().unwrap()),
    );
    assert_eq!(r.status, 500, "{}", r.text());
    // What is left: the link made before the entry through it was refused, and the absolute
    // name's directories.
    assert_eq!(sh(p, &c, "ls -A /x/y/ | tr '\\n' ' '"), "lnk tmp ");
    // The stat header for what is left and the queries' errors.
    let r = p.request("HEAD", &format!("/containers/{c}/archive?path=/x"), None);
    assert_eq!(r.status, 200);
    let r = p.request("GET", &format!("/containers/{c}/archive"), None);
    assert_eq!(
        (r.status, r.text().trim()),
        (400, "{\"message\":\"bad parameter: pathcannot be empty\"}")
    );
    let r = p.request(
        "PUT",
        &format!("/containers/{c}/archive?path=/x/y/nope"),
        Some(b""),
    );
    assert_eq!(r.status, 404);
    s.check();
}

fn swapped_symlink_never_reaches_the_host() {
    let p = Peer::Refengd;
    let mut g = Cleanup::new(p);
    let s = Sentinel::new();
    let script = format!(
        "mkdir -p /w/real && printf %s '{DECOY}' > /w/real/secret; \
         while :; do ln -sfn {0} /w/x; ln -sfn ../../../../../..{0} /w/x; \
         ln -sfn /w/real /w/x; usleep 20000; rm -f /w/x; mkdir /w/x; rmdir /w/x; done",
        s.path()
    );
    let c = g.container("cp-swap", &["run", "-d", "bb:base", "sh", "-c", &script]);
    let t = tempfile::tempdir().unwrap();
    let up = t.path().join("upload");
    fs::write(&up, "uploaded\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut decoys = 0;
    let mut rounds = 0;
    while Instant::now() < deadline && rounds < 60 {
        rounds += 1;
        let dest = t.path().join(format!("out{rounds}"));
        let out = p.try_docker(&["cp", &format!("{c}:/w/x/secret"), dest.to_str().unwrap()]);
        never_the_secret(&out, &dest);
        if fs::read_to_string(&dest).is_ok_and(|s| s == DECOY) {
            decoys += 1;
        }
        let dest = t.path().join(format!("dir{rounds}"));
        let out = p.try_docker(&["cp", &format!("{c}:/w/x/"), dest.to_str().unwrap()]);
        never_the_secret(&out, &dest);
        let _ = p.try_docker(&["cp", up.to_str().unwrap(), &format!("{c}:/w/x/")]);
        s.check();
    }
    s.check();
    // The loop really swapped: some copies found the container's own file.
    assert!(decoys > 0, "no copy in {rounds} rounds reached /w/real");
}

/// What a peer answers for one path: the decoded stat (dir sizes and times left out: they
/// depend on the file system and the moment) and the names and kinds of the archive.
fn observe(peer: Peer, c: &str, path: &str) -> (u16, String, Vec<String>) {
    let q = format!("/containers/{c}/archive?path={path}");
    let head = peer.request("HEAD", &q, None);
    let stat = head
        .header("X-Docker-Container-Path-Stat")
        .map_or(String::new(), |h| {
            let json =
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, h).unwrap();
            let mut v: serde_json::Value = serde_json::from_slice(&json).unwrap();
            let dir = v["mode"].as_u64().unwrap() & (1 << 31) != 0;
            if dir {
                v["size"] = serde_json::Value::Null;
            }
            if !path.starts_with("/img") || dir {
                v["mtime"] = serde_json::Value::Null;
            }
            v.to_string()
        });
    let get = peer.request("GET", &q, None);
    let mut names = Vec::new();
    if get.status == 200 {
        let mut r = refeng::image::tar::Reader::new(&get.body[..], Default::default());
        while let Some(e) = r.next_entry().unwrap() {
            let link = String::from_utf8_lossy(&e.link);
            names.push(format!(
                "{} {:?} {:o} {link}",
                String::from_utf8_lossy(&e.path),
                e.kind,
                e.mode
            ));
        }
    }
    (head.status, stat, names)
}

fn differential_against_dockerd() {
    let setup = "mkdir -p /w/d/e && echo hi > /w/d/f && chmod 4755 /w/d/f && ln -s /w/d /w/l && \
                 ln -s ../../.. /w/up && ln -s /nope /w/broken && ln -s d/f /w/rel && \
                 mkfifo /w/fifo && ln /w/d/f /w/d/hard && touch -d @1700000000 /w/d/f";
    let paths = [
        "/w/d",
        "/w/d/",
        "/w/d/.",
        "/w/l",
        "/w/l/",
        "/w/l/.",
        "/w/up",
        "/w/broken",
        "/w/broken/",
        "/w/rel",
        "/w/d/f",
        "/w/d/f/",
        "/nonexist",
        "/w/fifo",
        "/w/../w/d",
        "../../w/d",
        "w/d/./",
        "/img",
        "/img/rel",
        "/img/sub/file",
        "/w/up/w/d",
    ];
    let t = tempfile::tempdir().unwrap();
    let s = Sentinel::new();
    let mut results = Vec::new();
    for peer in [Peer::Refengd, Peer::Dockerd] {
        let mut g = Cleanup::new(peer);
        let c = g.container("cp-diff", &["run", "-d", "bb:base", "sleep", "1000"]);
        sh(peer, &c, setup);
        let mut seen = Vec::new();
        for path in paths {
            seen.push((path.to_owned(), observe(peer, &c, path)));
        }
        // The statuses of the failing PUTs.
        for (what, tar, _) in hostile_tars(s.path()) {
            if what == "through-symlink" {
                continue;
            }
            sh(peer, &c, "rm -rf /x && mkdir -p /x/y");
            let r = peer.request(
                "PUT",
                &format!("/containers/{c}/archive?path=/x/y"),
                Some(&tar),
            );
            seen.push((format!("PUT {what}"), (r.status, String::new(), Vec::new())));
        }
        let plain = tar_of(&[("f", Kind::File, "x")]);
        for dest in ["/w/d/f", "/w/missing", "/w/l"] {
            let r = peer.request(
                "PUT",
                &format!("/containers/{c}/archive?path={dest}"),
                Some(&plain),
            );
            seen.push((
                format!("PUT to {dest}"),
                (r.status, r.text().trim().to_owned(), Vec::new()),
            ));
        }
        let dir_over_file = tar_of(&[("f", Kind::Directory, "")]);
        let r = peer.request(
            "PUT",
            &format!("/containers/{c}/archive?path=/w/d&noOverwriteDirNonDir=1"),
            Some(&dir_over_file),
        );
        seen.push((
            "PUT dir over file".into(),
            (r.status, String::new(), Vec::new()),
        ));
        // docker cp results, by each side's CLI.
        let src = t.path().join("src");
        if !src.exists() {
            source_tree(&src);
        }
        peer.docker(&["cp", src.to_str().unwrap(), &format!("{c}:/copied")]);
        peer.docker(&["cp", &format!("{}/.", src.display()), &format!("{c}:/w/d")]);
        let out = t.path().join(format!("out-{}", results.len()));
        fs::create_dir(&out).unwrap();
        for from in ["/copied", "/w/d/.", "/w/l", "/img/sub/file"] {
            let dest = out.join(from.trim_start_matches('/').replace('/', "_"));
            peer.docker(&["cp", &format!("{c}:{from}"), dest.to_str().unwrap()]);
        }
        seen.push((
            "cp out".into(),
            (0, format!("{:?}", tree(&out)), Vec::new()),
        ));
        results.push(seen);
    }
    s.check();
    let (ours, theirs) = (&results[0], &results[1]);
    assert_eq!(ours.len(), theirs.len());
    for (a, b) in ours.iter().zip(theirs) {
        // dockerd's 500 texts name its host paths; the statuses must match, and the texts too
        // where they name none.
        let (sa, ta, la) = &a.1;
        let (sb, tb, lb) = &b.1;
        assert_eq!((&a.0, sa, la), (&b.0, sb, lb), "{}", a.0);
        if !tb.contains("/tmp/") && !tb.contains("lstat") {
            assert_eq!(ta, tb, "{}", a.0);
        }
    }
}

fn main() {
    engine_support::run(
        &[
            ("both_ways_running", &both_ways_in_a_running_container),
            ("stopped_and_volume", &stopped_container_and_its_volume),
            ("archive_mode_user", &archive_mode_takes_the_container_user),
            ("commit_of_a_large_change", &commit_of_a_large_change),
            (
                "named_volume_running",
                &into_a_named_volume_of_a_running_container,
            ),
            ("symlink_escapes", &symlink_escapes_stay_in_the_container),
            ("hostile_archives", &hostile_archives_are_contained),
            ("swapped_symlink", &swapped_symlink_never_reaches_the_host),
            (
                "differential_against_dockerd",
                &differential_against_dockerd,
            ),
        ],
        || {
            if let Some(w) = W.get() {
                w.dockerd.lock().unwrap_or_else(|e| e.into_inner()).take();
                w.refengd.shutdown();
                let _ = fs::remove_dir_all(w.work.path());
            }
        },
    );
}
