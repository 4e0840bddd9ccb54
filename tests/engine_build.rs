//! `POST /build` against the real thing: each Dockerfile of a corpus is built by refengd (docker
//! CLI 28, `DOCKER_BUILDKIT=0`) and by a private dockerd 20.10's classic builder from the same
//! context and the same busybox base; the flattened filesystems (paths, types, modes, owners,
//! content, link targets; not mtimes) and the image configs must match. Then the errors (the
//! message at the right step, nothing left behind) and docker-py's `images.build`.
//!
//! One refengd and one dockerd serve the binary; both are stopped by pid at the end, also after
//! a failure.

mod busybox_pair;
mod engine_support;
mod peers;
mod rootfs;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

use peers::dockerd::Dockerd;
use refeng::image::layer::decompress;
use refeng::image::tar::{Kind, Reader, TarLimits};
use serde_json::Value;

use busybox_pair::BusyboxPair as World;

static W: OnceLock<World> = OnceLock::new();

fn world() -> &'static World {
    W.get_or_init(|| World::start(|_| {}))
}

fn with_dockerd<T>(f: impl FnOnce(&Dockerd) -> T) -> T {
    let g = world().dockerd.lock().unwrap_or_else(|e| e.into_inner());
    f(g.as_ref().expect("dockerd running"))
}

/// A context: files (path, mode, content); a path ending in `/` is a directory; `->` makes a
/// symlink (`link->target`).
fn context(name: &str, dockerfile: &str, files: &[(&str, u32, &str)]) -> std::path::PathBuf {
    let dir = world().work.path().join("ctx").join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    for (path, mode, content) in files {
        let p = dir.join(path.trim_end_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        if let Some((link, target)) = path.split_once("->") {
            std::os::unix::fs::symlink(target, dir.join(link)).unwrap();
            continue;
        }
        if path.ends_with('/') {
            fs::create_dir_all(&p).unwrap();
        } else {
            fs::write(&p, content).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).unwrap();
    }
    dir
}

fn build_refengd(dir: &Path, tag: &str, flags: &[&str]) -> Output {
    let mut args = vec!["build", "--network", "none", "-t", tag];
    args.extend_from_slice(flags);
    let d = dir.to_str().unwrap();
    args.push(d);
    world()
        .refengd
        .docker_cmd(&args)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap()
}

fn build_dockerd(dir: &Path, tag: &str, flags: &[&str]) -> Output {
    let mut args = vec!["build", "--network", "none", "-t", tag];
    args.extend_from_slice(flags);
    let d = dir.to_str().unwrap();
    args.push(d);
    with_dockerd(|dd| dd.command(&args).output().unwrap())
}

/// One entry of a flattened filesystem: type, mode, uid, gid, content or link.
type Flat = BTreeMap<String, (String, u32, u64, u64, Vec<u8>)>;

/// Reads `docker save`'s archive and applies its layers in order, whiteouts included.
fn flatten(archive: &[u8]) -> (Flat, Value) {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut r = Reader::new(archive, TarLimits::default());
    while let Some(e) = r.next_entry().unwrap() {
        let mut data = Vec::new();
        r.data().read_to_end(&mut data).unwrap();
        files.insert(
            String::from_utf8_lossy(&e.path)
                .trim_start_matches("./")
                .to_owned(),
            data,
        );
    }
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let config: Value =
        serde_json::from_slice(&files[manifest[0]["Config"].as_str().unwrap()]).unwrap();
    let mut flat = Flat::new();
    for layer in manifest[0]["Layers"].as_array().unwrap() {
        let bytes = &files[layer.as_str().unwrap()];
        let (_, plain) = decompress(&bytes[..]).unwrap();
        let mut r = Reader::new(plain, TarLimits::default());
        while let Some(e) = r.next_entry().unwrap() {
            let path = String::from_utf8_lossy(&e.path)
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_owned();
            if path.is_empty() || path == "." {
                continue;
            }
            let (dir, base) = path.rsplit_once('/').unwrap_or(("", &path));
            if base == ".wh..wh..opq" {
                let prefix = format!("{dir}/");
                flat.retain(|k, _| !k.starts_with(&prefix));
                continue;
            }
            if let Some(gone) = base.strip_prefix(".wh.") {
                let gone = if dir.is_empty() {
                    gone.to_owned()
                } else {
                    format!("{dir}/{gone}")
                };
                let prefix = format!("{gone}/");
                flat.retain(|k, _| *k != gone && !k.starts_with(&prefix));
                continue;
            }
            let mut data = Vec::new();
            r.data().read_to_end(&mut data).unwrap();
            let kind = match e.kind {
                Kind::File => "file",
                Kind::Directory => "dir",
                Kind::Symlink => {
                    data.clone_from(&e.link);
                    "symlink"
                }
                Kind::HardLink => {
                    data.clone_from(&e.link);
                    "hardlink"
                }
                _ => "special",
            };
            if e.kind != Kind::Directory {
                let prefix = format!("{path}/");
                flat.retain(|k, _| !k.starts_with(&prefix));
            }
            flat.insert(path, (kind.into(), e.mode & 0o7777, e.uid, e.gid, data));
        }
    }
    (flat, config)
}

const FIELDS: [&str; 11] = [
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "Healthcheck",
    "StopSignal",
    "OnBuild",
];

/// The config fields compared, with absent, null and empty alike (dockerd 20.10 writes some
/// as null where a newer writer leaves them out).
fn fields(config: &Value) -> BTreeMap<&'static str, Value> {
    FIELDS
        .iter()
        .map(|f| {
            let v = config["config"].get(*f).cloned().unwrap_or(Value::Null);
            let v = match &v {
                Value::String(s) if s.is_empty() => Value::Null,
                Value::Array(a) if a.is_empty() => Value::Null,
                Value::Object(o) if o.is_empty() => Value::Null,
                _ => v,
            };
            (*f, v)
        })
        .collect()
}

fn saved_refengd(tag: &str) -> Vec<u8> {
    let out = world().refengd.docker_cmd(&["save", tag]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn saved_dockerd(tag: &str) -> Vec<u8> {
    with_dockerd(|d| {
        let out = d.command(&["save", tag]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    })
}

struct Case {
    name: &'static str,
    dockerfile: &'static str,
    files: &'static [(&'static str, u32, &'static str)],
    flags: &'static [&'static str],
}

const FILES: &[(&str, u32, &str)] = &[
    ("a.txt", 0o644, "a\n"),
    ("b.txt", 0o600, "bee\n"),
    ("run.sh", 0o755, "#!/bin/sh\necho run\n"),
    ("dir/", 0o750, ""),
    ("dir/one", 0o644, "1\n"),
    ("dir/sub/two", 0o640, "22\n"),
    ("dir/link->one", 0, ""),
    ("ignored.log", 0o644, "no\n"),
    ("keep/x.log", 0o644, "x\n"),
    (".dockerignore", 0o644, "*.log\n"),
];

/// A context with a tar and a gzipped tar (made by GNU tar in `archives`).
const ARCHIVES: &[(&str, u32, &str)] = &[("a.txt", 0o644, "a\n")];

/// Packs `inside/` (a file owned 1000:1000, a directory, a link) as ctx.tar and ctx.tar.gz in
/// `dir`.
fn archives(dir: &Path) {
    let inside = dir.join("inside");
    fs::create_dir_all(inside.join("d")).unwrap();
    fs::write(inside.join("d/f"), "in the archive\n").unwrap();
    std::os::unix::fs::symlink("d/f", inside.join("l")).unwrap();
    std::os::unix::fs::chown(inside.join("d/f"), Some(1000), Some(1000)).unwrap();
    for (name, flag) in [
        ("ctx.tar", "-cf"),
        ("ctx.tar.gz", "-czf"),
        ("ctx.tar.bz2", "-cjf"),
        ("ctx.tar.xz", "-cJf"),
    ] {
        let ok = std::process::Command::new("tar")
            .arg("-C")
            .arg(&inside)
            .arg(flag)
            .arg(dir.join(name))
            .arg(".")
            .status()
            .unwrap();
        assert!(ok.success());
    }
    fs::remove_dir_all(&inside).unwrap();
}

fn corpus() -> Vec<Case> {
    let c = |name, dockerfile| Case {
        name,
        dockerfile,
        files: FILES,
        flags: &[],
    };
    vec![
        c("metadata", "FROM bb:base\nENV A=1 B=\"x y\"\nLABEL a=$A \"l 2\"=b\nUSER 1000:1000\nEXPOSE 80 53/udp\nVOLUME /v1 [\"/v2\"]\nSTOPSIGNAL SIGUSR1\nHEALTHCHECK --interval=5s --retries=3 CMD [\"true\"]\nONBUILD ENV T=1\nCMD [\"a\", \"b\"]\nENTRYPOINT [\"/bin/echo\"]\n"),
        c("copy-file-to-dir", "FROM bb:base\nCOPY a.txt /dst/\nCOPY b.txt /dst/renamed\nCOPY run.sh /\n"),
        c("copy-dir-contents", "FROM bb:base\nCOPY dir /d\nCOPY dir/ /e/\n"),
        c("copy-globs", "FROM bb:base\nCOPY *.txt /g/\nCOPY dir/s* /h/\n"),
        c("copy-chown", "FROM bb:base\nCOPY --chown=1000:1000 dir /o\nCOPY --chown=7 a.txt /o7\n"),
        c("copy-chown-names", "FROM bb:base\nCOPY --chown=user a.txt /u\nCOPY --chown=user:wheel b.txt /uw\nCOPY --chown=root:1000 dir /r\n"),
        c("copy-dot-and-dockerignore", "FROM bb:base\nCOPY . /ctx\n"),
        c("workdir-relative-copy", "FROM bb:base\nWORKDIR /w/x\nCOPY a.txt .\nWORKDIR sub\nCOPY b.txt ./\n"),
        c("workdir-existing", "FROM bb:base\nWORKDIR /tmp\nWORKDIR /etc\n"),
        c("run-shell", "FROM bb:base\nRUN echo hi > /hi && mkdir -p /m/n && chmod 700 /m && ln -s /hi /m/l\n"),
        c("run-exec-form", "FROM bb:base\nRUN [\"sh\", \"-c\", \"echo $0 > /argv0\"]\n"),
        c("run-env-and-args", "FROM bb:base\nARG V=dflt\nARG W\nENV E=env\nRUN echo $V $W $E > /vals\n"),
        c("run-user-workdir", "FROM bb:base\nWORKDIR /home/user\nUSER 1000\nRUN touch mine && id -u > uid\n"),
        c("run-removes", "FROM bb:base\nRUN rm -rf /etc/group /home/user && touch /etc/new\n"),
        c("shell", "FROM bb:base\nSHELL [\"/bin/sh\", \"-ec\"]\nRUN echo $0 > /shell\n"),
        c("multi-stage", "FROM bb:base AS one\nRUN echo one > /one\nFROM one AS two\nRUN echo two > /two\nFROM bb:base\nENV LAST=1\n"),
        Case {
            name: "target",
            dockerfile: "FROM bb:base AS one\nRUN echo one > /one\nFROM one AS two\nRUN echo two > /two\nFROM bb:base\nENV LAST=1\n",
            files: FILES,
            flags: &["--target", "two"],
        },
        Case {
            name: "build-args-and-labels",
            dockerfile: "FROM bb:base\nARG A=x\nARG B\nRUN echo $A $B > /ab\nENV A=$A\n",
            files: FILES,
            flags: &["--build-arg", "B=bee", "--label", "l=v"],
        },
        c("from-scratch-copy", "FROM scratch\nCOPY dir /\nCOPY a.txt /top\n"),
        c("onbuild-triggers", "FROM bb:base\nONBUILD RUN echo trig > /trig\n"),
        c("copy-from-stage", "FROM bb:base AS build\nRUN mkdir -p /out/d && echo made > /out/d/f && chown -R 1000:1000 /out && ln -s d/f /out/l\nFROM bb:base\nCOPY --from=build /out /copied\nCOPY --from=build /out/d/f /out/l /files/\nCOPY --from=0 --chown=5:5 /out/d /chowned\n"),
        c("copy-from-image-glob", "FROM bb:base\nCOPY --from=bb:base /etc/pass* /etc/gro?p /e/\nCOPY --from=bb:base /home /h\n"),
        Case {
            name: "add-archives",
            dockerfile: "FROM bb:base\nADD ctx.tar /plain\nADD ctx.tar.gz /gz/\nADD ctx.tar /\nADD ctx.tar.bz2 /bz2\nADD ctx.tar.xz /xz/\nCOPY ctx.tar /copied.tar\n",
            files: ARCHIVES,
            flags: &[],
        },
        c("maintainer-and-add-plain", "FROM bb:base\nMAINTAINER me\nADD a.txt /added\n"),
    ]
}

fn differential() {
    let mut failures = Vec::new();
    for case in corpus() {
        let dir = context(case.name, case.dockerfile, case.files);
        if case.name == "add-archives" {
            archives(&dir);
        }
        let tag = format!("corpus-{}", case.name);
        let theirs = build_dockerd(&dir, &tag, case.flags);
        let ours = build_refengd(&dir, &tag, case.flags);
        if !theirs.status.success() {
            failures.push(format!(
                "{}: dockerd failed: {}",
                case.name,
                String::from_utf8_lossy(&theirs.stderr)
            ));
            continue;
        }
        if !ours.status.success() {
            failures.push(format!(
                "{}: refengd failed: {}{}",
                case.name,
                String::from_utf8_lossy(&ours.stdout),
                String::from_utf8_lossy(&ours.stderr)
            ));
            continue;
        }
        let (their_fs, their_cfg) = flatten(&saved_dockerd(&tag));
        let (our_fs, our_cfg) = flatten(&saved_refengd(&tag));
        if fields(&their_cfg) != fields(&our_cfg) {
            failures.push(format!(
                "{}: configs differ:\n dockerd {:?}\n refengd {:?}",
                case.name,
                fields(&their_cfg),
                fields(&our_cfg)
            ));
        }
        let keys: std::collections::BTreeSet<&String> =
            their_fs.keys().chain(our_fs.keys()).collect();
        for k in keys {
            if their_fs.get(k) != our_fs.get(k) {
                failures.push(format!(
                    "{}: {k}: dockerd {:?} refengd {:?}",
                    case.name,
                    their_fs
                        .get(k)
                        .map(|e| (&e.0, format!("{:o}", e.1), e.2, e.3, e.4.len())),
                    our_fs
                        .get(k)
                        .map(|e| (&e.0, format!("{:o}", e.1), e.2, e.3, e.4.len()))
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The last `error` of a refengd build's output and dockerd's.
fn error_text(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.lines()
        .map(str::trim)
        .rfind(|l| {
            !l.is_empty()
                && !l.contains("DEPRECATED")
                && !l.contains("BuildKit")
                && !l.contains("environment-variable")
        })
        .unwrap_or_default()
        .to_owned()
}

fn containers_and_images(list: impl Fn(&[&str]) -> String) -> (String, String) {
    (list(&["ps", "-aq"]), list(&["images", "-aq", "--no-trunc"]))
}

fn bad_input() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "unknown-instruction",
            "FROM bb:base\nENV A=1\nFOO bar\n",
            &[],
        ),
        (
            "copy-missing",
            "FROM bb:base\nENV A=2\nCOPY nothere /x\n",
            &[],
        ),
        ("copy-outside", "FROM bb:base\nCOPY ../x /x\n", &[]),
        (
            "run-fails",
            "FROM bb:base\nENV A=3\nRUN echo before && exit 3\n",
            &["--force-rm"],
        ),
    ];
    let mut failures = Vec::new();
    for (name, dockerfile, flags) in cases {
        let dir = context(name, dockerfile, FILES);
        let before = containers_and_images(|a| world().refengd.docker(a));
        let ours = build_refengd(&dir, "bad", flags);
        let theirs = build_dockerd(&dir, "bad", flags);
        let after = containers_and_images(|a| world().refengd.docker(a));
        if ours.status.success() || theirs.status.success() {
            failures.push(format!(
                "{name}: a build succeeded: refengd {} dockerd {}",
                ours.status, theirs.status
            ));
            continue;
        }
        let (o, t) = (error_text(&ours), error_text(&theirs));
        if o != t {
            failures.push(format!(
                "{name}: errors differ:\n refengd {o:?}\n dockerd {t:?}"
            ));
        }
        if before.0 != after.0 {
            failures.push(format!(
                "{name}: containers left: {:?} -> {:?}",
                before.0, after.0
            ));
        }
        let new_images: Vec<&str> = after.1.lines().filter(|l| !before.1.contains(l)).collect();
        // Only the steps that succeeded before the failing one may leave images.
        let steps_before = dockerfile.lines().count().saturating_sub(2);
        if new_images.len() > steps_before {
            failures.push(format!("{name}: images left: {new_images:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn cache_and_stream() {
    let dockerfile = "FROM bb:base\nENV A=1\nRUN echo ran > /ran\nCOPY a.txt /a\n";
    let dir = context("stream", dockerfile, FILES);
    let build = |flags: &[&str]| {
        let out = build_refengd(&dir, "stream:1", flags);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = world()
            .refengd
            .docker(&["inspect", "--format", "{{.Id}}", "stream:1"]);
        (text, id.trim().to_owned())
    };
    let (first, id1) = build(&["--no-cache"]);
    for want in [
        "Step 1/4 : FROM bb:base",
        "Step 2/4 : ENV A=1",
        "Step 3/4 : RUN echo ran > /ran",
        " ---> Running in ",
        "Removing intermediate container ",
        "Step 4/4 : COPY a.txt /a",
        "Successfully tagged stream:1",
    ] {
        assert!(first.contains(want), "{want:?} not in:\n{first}");
    }
    assert!(!first.contains("Using cache"), "{first}");
    let short = &id1.trim_start_matches("sha256:")[..12];
    assert!(
        first.contains(&format!("Successfully built {short}")),
        "{first}"
    );
    // The same build again: every step from the cache, the same image.
    let (second, id2) = build(&[]);
    assert_eq!(second.matches(" ---> Using cache").count(), 3, "{second}");
    assert!(!second.contains("Running in"), "{second}");
    assert_eq!(id1, id2);
    // One changed file: the steps before the copy still come from the cache.
    fs::write(dir.join("a.txt"), "changed\n").unwrap();
    let (third, id3) = build(&[]);
    assert_eq!(third.matches(" ---> Using cache").count(), 2, "{third}");
    assert_ne!(id3, id2);
    // --no-cache runs every step again.
    let (fourth, _) = build(&["--no-cache"]);
    assert!(!fourth.contains("Using cache"), "{fourth}");
    assert!(fourth.contains("Running in"), "{fourth}");
}

/// `--cache-from`: an image that came from elsewhere (saved, removed with its intermediates,
/// loaded back: no local cache, no parent chain) stands in for the steps its history matches,
/// on refengd as on dockerd: the same steps come from it, and a build whose every step matches
/// ends at the very image.
fn cache_from_matches_dockerd() {
    let dockerfile =
        "FROM bb:base\nENV A=1\nRUN echo ran > /ran\nCOPY a.txt /a\nRUN echo two > /two\n";
    let dir = context("cachefrom", dockerfile, FILES);
    // One daemon's side of the scenario: the "Using cache" count of each build, whether the
    // full match ended at the loaded image, and how many images and layers `rmi` of a build's
    // result deleted (its untagged intermediates go with it). The `Untagged` lines differ:
    // refengd gives every named image a repository digest (as dockerd over containerd's
    // image store does), dockerd 20.10 only pulled ones, and untags it too.
    let scenario = |docker: &dyn Fn(&[&str]) -> Output| -> (Vec<usize>, bool, usize) {
        let ok = |args: &[&str]| {
            let out = docker(args);
            assert!(
                out.status.success(),
                "{args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let d = dir.to_str().unwrap();
        let build = |tag: &str, extra: &[&str]| {
            let mut args = vec!["build", "--network", "none", "-t", tag];
            args.extend_from_slice(extra);
            args.push(d);
            ok(&args).matches(" ---> Using cache").count()
        };
        fs::write(dir.join("a.txt"), "a\n").unwrap();
        build("cf:src", &["--no-cache"]);
        let saved = dir.join("cf.tar");
        ok(&["save", "-o", saved.to_str().unwrap(), "cf:src"]);
        ok(&["rmi", "cf:src"]);
        ok(&["load", "-i", saved.to_str().unwrap()]);
        let source = ok(&["inspect", "--format", "{{.Id}}", "cf:src"]);
        let mut hits = vec![build("cf:plain", &[])];
        // The local cache of the build just made must not answer for the next ones.
        let removed = ok(&["rmi", "cf:plain"])
            .lines()
            .filter(|l| l.starts_with("Deleted: "))
            .count();
        hits.push(build("cf:from", &["--cache-from", "cf:src"]));
        let same = ok(&["inspect", "--format", "{{.Id}}", "cf:from"]) == source;
        ok(&["rmi", "cf:from"]);
        fs::write(dir.join("a.txt"), "changed\n").unwrap();
        hits.push(build("cf:changed", &["--cache-from", "cf:src"]));
        ok(&["rmi", "cf:changed", "cf:src"]);
        fs::write(dir.join("a.txt"), "a\n").unwrap();
        (hits, same, removed)
    };
    let refengd = scenario(&|args: &[&str]| {
        world()
            .refengd
            .docker_cmd(args)
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .unwrap()
    });
    let dockerd = scenario(&|args: &[&str]| with_dockerd(|dd| dd.command(args).output().unwrap()));
    assert_eq!(
        refengd, dockerd,
        "(cache hits per build, full match is the source): refengd vs dockerd"
    );
    assert_eq!(
        (&refengd.0, refengd.1),
        (&vec![0, 4, 2], true),
        "the expected hits"
    );
    // The result, its three untagged intermediates, and the three layers they made.
    assert_eq!(refengd.2, 7);
}

/// A build's output with the ids made `ID` and the CLI's deprecation notice left out.
fn normalised(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = regex::Regex::new(r"\b[0-9a-f]{12}\b").unwrap();
    text.lines()
        .filter(|l| !l.starts_with("Sending build context"))
        .map(|l| hex.replace_all(l, "ID").into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

fn stream_matches_dockerd() {
    let base = context("trig-base", "FROM bb:base\nONBUILD RUN echo trig\n", FILES);
    assert!(build_dockerd(&base, "trig:1", &[]).status.success());
    assert!(build_refengd(&base, "trig:1", &[]).status.success());
    let dir = context(
        "trig-child",
        "FROM trig:1\nRUN echo out && echo err >&2\nCOPY a.txt /a\nRUN [\"true\"]\n",
        FILES,
    );
    let theirs = build_dockerd(&dir, "child:1", &["--no-cache"]);
    let ours = build_refengd(&dir, "child:1", &["--no-cache"]);
    assert!(theirs.status.success() && ours.status.success());
    let (t, o) = (normalised(&theirs), normalised(&ours));
    // dockerd colours a RUN's stderr; so must refengd.
    assert!(o.contains("\u{1b}[91merr\n\u{1b}[0m"), "{o}");
    let plain = |s: &str| s.replace("\u{1b}[91m", "").replace("\u{1b}[0m", "");
    let (t, o) = (plain(&t), plain(&o));
    // stdout and stderr of a RUN come over separate pipes: their order is not the stream's.
    let sorted = |s: &str| {
        let mut v: Vec<String> = s.lines().map(String::from).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&o), sorted(&t), "refengd:\n{o}\ndockerd:\n{t}");
    let order = |s: &str| {
        s.lines()
            .filter(|l| *l != "out" && *l != "err")
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(order(&o), order(&t), "refengd:\n{o}\ndockerd:\n{t}");
}

fn docker_py() {
    let dir = context(
        "py",
        "FROM bb:base\nARG X\nRUN echo $X > /x\nLABEL from=py\n",
        FILES,
    );
    let script = format!(
        "import docker\nc = docker.from_env()\nimg, logs = c.images.build(path={:?}, tag='py:1', buildargs={{'X': 'ex'}}, network_mode='none', rm=True)\nprint(img.labels['from'])\nprint(''.join(l.get('stream', '') for l in logs))\n",
        dir.to_str().unwrap()
    );
    let out = world().refengd.python(&script);
    assert!(out.starts_with("py\n"), "{out}");
    assert!(out.contains("Step 3/4 : RUN echo $X > /x"), "{out}");
    let (fs, _) = flatten(&saved_refengd("py:1"));
    assert_eq!(fs.get("x").map(|e| e.4.clone()), Some(b"ex\n".to_vec()));
}

/// A random context (files in up to two levels, some modes, a `.dockerignore` from a set of
/// patterns with exceptions) built `FROM scratch` by random COPY steps that together copy
/// every top-level entry to `/`: the image's files are exactly the context's files that the
/// `.dockerignore` matcher lets through, with their content and mode, owned by root.
fn scratch_copies_are_the_context() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use refeng::engine::build::dockerignore::Dockerignore;
    let names = prop::sample::select(vec!["a", "b.log", "c.txt", "d", "keep.log", "x"]);
    let file = (
        prop::collection::vec(names.clone(), 1..=3),
        prop::sample::select(vec![0o644u32, 0o600, 0o755, 0o640]),
        "[a-z]{0,12}",
    );
    let patterns = prop::collection::vec(
        prop::sample::select(vec![
            "*.log",
            "!keep.log",
            "d",
            "!d/x",
            "**/c.txt",
            "x/*",
            "a/a",
        ]),
        0..4,
    );
    let steps = 1usize..4;
    let mut runner = TestRunner::new(Config {
        cases: 6,
        failure_persistence: None,
        ..Config::default()
    });
    let counter = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(
            &(prop::collection::vec(file, 1..10), patterns, steps),
            |(files, patterns, steps)| {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let dir = world().work.path().join("prop").join(n.to_string());
                let _ = fs::remove_dir_all(&dir);
                fs::create_dir_all(&dir).unwrap();
                // A path is a file unless another path runs below it.
                let mut tree: BTreeMap<String, (u32, String)> = BTreeMap::new();
                for (parts, mode, content) in &files {
                    let path = parts.join("/");
                    let clash = tree.keys().any(|k| {
                        k.starts_with(&format!("{path}/")) || path.starts_with(&format!("{k}/"))
                    });
                    if !clash {
                        tree.insert(path, (*mode, content.clone()));
                    }
                }
                for (path, (mode, content)) in &tree {
                    let p = dir.join(path);
                    fs::create_dir_all(p.parent().unwrap()).unwrap();
                    fs::write(&p, content).unwrap();
                    use std::os::unix::fs::PermissionsExt;
                    fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).unwrap();
                }
                let ignore = patterns.join("\n");
                fs::write(dir.join(".dockerignore"), &ignore).unwrap();
                let tops: Vec<String> = {
                    let mut t: Vec<String> = tree
                        .keys()
                        .map(|k| k.split('/').next().unwrap().to_owned())
                        .collect();
                    t.push(".dockerignore".into());
                    t.sort();
                    t.dedup();
                    t
                };
                // Files in `steps` groups to `/`; a directory's contents to a directory of its
                // name (COPY of a directory copies what is in it).
                let (dirs, plain): (Vec<&String>, Vec<&String>) = tops
                    .iter()
                    .partition(|t| tree.keys().any(|k| k.starts_with(&format!("{t}/"))));
                let mut dockerfile = String::from("FROM scratch\n");
                let plain: Vec<&str> = plain.iter().map(|s| s.as_str()).collect();
                for chunk in plain.chunks(plain.len().div_ceil(steps).max(1)) {
                    dockerfile.push_str(&format!("COPY {} /\n", chunk.join(" ")));
                }
                for d in dirs {
                    dockerfile.push_str(&format!("COPY {d} /{d}/\n"));
                }
                fs::write(dir.join("Dockerfile"), &dockerfile).unwrap();
                let tag = format!("prop:{n}");
                let out = build_refengd(&dir, &tag, &[]);
                // A COPY whose sources are all ignored fails as dockerd's does; such a
                // context says nothing about what arrives.
                let text = String::from_utf8_lossy(&out.stderr).into_owned();
                if !out.status.success() {
                    prop_assert!(text.contains("file not found in build context"), "{text}");
                    return Ok(());
                }
                let mut entries: Vec<(String, bool)> = Vec::new();
                for path in tree
                    .keys()
                    .chain([&".dockerignore".to_owned(), &"Dockerfile".to_owned()])
                {
                    let mut at = path.as_str();
                    entries.push((at.to_owned(), false));
                    while let Some((parent, _)) = at.rsplit_once('/') {
                        entries.push((parent.to_owned(), true));
                        at = parent;
                    }
                }
                entries.sort();
                entries.dedup();
                let d = Dockerignore::parse(ignore.as_bytes()).unwrap();
                let sent: std::collections::BTreeSet<String> = d
                    .context_paths(&entries, "Dockerfile")
                    .into_iter()
                    .collect();
                let mut want: BTreeMap<String, (u32, Vec<u8>)> = BTreeMap::new();
                for (path, (mode, content)) in &tree {
                    if sent.contains(path) {
                        want.insert(path.clone(), (*mode, content.clone().into_bytes()));
                    }
                }
                if sent.contains(".dockerignore") {
                    want.insert(".dockerignore".into(), (0o644, ignore.clone().into_bytes()));
                }
                let (flat, _) = flatten(&saved_refengd(&tag));
                let got: BTreeMap<String, (u32, Vec<u8>)> = flat
                    .into_iter()
                    .filter(|(_, e)| e.0 == "file")
                    .map(|(k, e)| {
                        assert_eq!((e.2, e.3), (0, 0), "{k} owned by root");
                        (k, (e.1, e.4))
                    })
                    .collect();
                prop_assert_eq!(
                    got,
                    want,
                    "Dockerfile:\n{}\n.dockerignore:\n{}",
                    dockerfile,
                    ignore
                );
                let _ = fs::remove_dir_all(&dir);
                Ok(())
            },
        )
        .unwrap();
}

/// A loopback HTTP/1.0 server for `ADD` URLs: `/files/data.txt` with a Last-Modified,
/// `/named/` naming its file in Content-Disposition, anything else 404. Serves until the
/// process ends (the thread only accepts on its own socket).
fn file_server() -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut first = String::new();
            let mut r = BufReader::new(c.try_clone().unwrap());
            let _ = r.read_line(&mut first);
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
                    break;
                }
            }
            let path = first.split_whitespace().nth(1).unwrap_or("");
            let answer = match path {
                "/files/data.txt" => "HTTP/1.0 200 OK\r\nLast-Modified: Tue, 01 Dec 2026 10:00:00 GMT\r\nContent-Length: 12\r\n\r\ndownloaded!\n".to_string(),
                "/named/" => "HTTP/1.0 200 OK\r\nContent-Disposition: attachment; filename=\"given.bin\"\r\nContent-Length: 3\r\n\r\nabc".to_string(),
                _ => "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string(),
            };
            let _ = c.write_all(answer.as_bytes());
        }
    });
    port
}

/// `ADD` of URLs on both engines (the daemon downloads them, from a loopback server): the
/// same files, modes and owners, the server's Last-Modified as their mtime; a 404 fails both.
fn add_url_matches_dockerd() {
    let port = file_server();
    let df = format!(
        "FROM bb:base\nADD http://127.0.0.1:{port}/files/data.txt /dl/\n\
         ADD http://127.0.0.1:{port}/files/data.txt /renamed\n\
         ADD --chown=1000:1000 http://127.0.0.1:{port}/named/ /n/\n"
    );
    let dir = context("add-url", &df, &[]);
    let theirs = build_dockerd(&dir, "addurl", &[]);
    let ours = build_refengd(&dir, "addurl", &[]);
    assert!(
        theirs.status.success(),
        "{}",
        String::from_utf8_lossy(&theirs.stderr)
    );
    assert!(
        ours.status.success(),
        "{}{}",
        String::from_utf8_lossy(&ours.stdout),
        String::from_utf8_lossy(&ours.stderr)
    );
    let (their_fs, _) = flatten(&saved_dockerd("addurl"));
    let (our_fs, _) = flatten(&saved_refengd("addurl"));
    for k in ["dl/data.txt", "renamed", "n/given.bin"] {
        assert!(
            our_fs.contains_key(k),
            "{k} missing: {:?}",
            our_fs
                .keys()
                .filter(|p| !p.starts_with("bin/"))
                .collect::<Vec<_>>()
        );
        assert_eq!(our_fs.get(k), their_fs.get(k), "{k}");
    }
    let stat = [
        "run",
        "--rm",
        "--network",
        "none",
        "addurl",
        "stat",
        "-c",
        "%Y %a",
        "/dl/data.txt",
        "/n/given.bin",
    ];
    let ours = world().refengd.docker(&stat);
    let theirs = with_dockerd(|dd| dd.docker(&stat));
    assert_eq!(ours, theirs);
    assert!(ours.starts_with("1796119200 600\n"), "{ours}");
    let dir = context(
        "add-url-404",
        &format!("FROM bb:base\nADD http://127.0.0.1:{port}/nope /x\n"),
        &[],
    );
    assert!(!build_dockerd(&dir, "addurl404", &[]).status.success());
    let ours = build_refengd(&dir, "addurl404", &[]);
    assert!(!ours.status.success());
    assert!(
        String::from_utf8_lossy(&ours.stderr).contains("404"),
        "{ours:?}"
    );
    let _ = world().refengd.docker_cmd(&["rmi", "addurl"]).output();
    with_dockerd(|dd| {
        let _ = dd.command(&["rmi", "addurl"]).output();
    });
}

/// A docker-compose 1.29 project with `build:` (build args, a COPY, a RUN): `up --build` builds
/// and runs it on refengd as on dockerd, and `down --rmi local` removes the image it built.
fn compose_build_matches_dockerd() {
    let proj = world().work.path().join("composebuild");
    fs::create_dir_all(&proj).unwrap();
    fs::write(
        proj.join("Dockerfile"),
        "FROM bb:base\nARG GREETING=hello\nCOPY msg /msg\n\
         RUN echo \"$GREETING from the build\" > /built\nCMD cat /msg /built\n",
    )
    .unwrap();
    fs::write(proj.join("msg"), "copied\n").unwrap();
    // network_mode none and a build without network: neither daemon here has a bridge.
    fs::write(
        proj.join("docker-compose.yml"),
        "version: \"3.4\"\nservices:\n  app:\n    build:\n      context: .\n      \
         network: none\n      args:\n        GREETING: hi\n    network_mode: none\n",
    )
    .unwrap();
    let project = |host: &str, config: &Path| {
        let compose = |args: &[&str]| {
            let out = Command::new("docker-compose")
                .args(["--no-ansi", "-p", "composebuild"])
                .args(args)
                .current_dir(&proj)
                .env("DOCKER_HOST", host)
                .env("DOCKER_CONFIG", config)
                .env_remove("COMPOSE_DOCKER_CLI_BUILD")
                .stdin(std::process::Stdio::null())
                .output()
                .expect("run docker-compose");
            assert!(
                out.status.success(),
                "docker-compose {args:?} on {host}: {out:?}"
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let said: Vec<String> = compose(&["up", "--build"])
            .lines()
            .filter_map(|l| l.split_once("| ").map(|(_, t)| t.trim().to_string()))
            .collect();
        compose(&["down", "--rmi", "local"]);
        said
    };
    let ours = project(&world().refengd.host(), &world().refengd.dir().join("cli"));
    assert_eq!(ours, ["copied", "hi from the build"]);
    let left = world()
        .refengd
        .docker(&["images", "-q", "composebuild_app"]);
    assert_eq!(left, "", "down --rmi local left the built image");
    let theirs = with_dockerd(|dd| project(&dd.host(), &dd.dir().join("cli")));
    assert_eq!(ours, theirs);
}

fn main() {
    engine_support::run(
        &[
            ("stream", &cache_and_stream),
            ("stream_matches_dockerd", &stream_matches_dockerd),
            ("cache_from_matches_dockerd", &cache_from_matches_dockerd),
            ("differential_against_dockerd", &differential),
            ("add_url_matches_dockerd", &add_url_matches_dockerd),
            ("bad_input", &bad_input),
            ("docker_py", &docker_py),
            (
                "compose_build_matches_dockerd",
                &compose_build_matches_dockerd,
            ),
            (
                "scratch_copies_are_the_context",
                &scratch_copies_are_the_context,
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
