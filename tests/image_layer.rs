//! Layer application against real filesystems: every entry type and its metadata, the
//! compressions, whiteouts in both modes, and each hostile layer from issue 5 refused or
//! contained (nothing may change outside the target directory).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use refeng::image::digest::Digest;
use refeng::image::layer::{
    apply_layer, unpack_into_dir, ApplyOptions, CopyRules, LayerError, WhiteoutMode,
};
use refeng::image::tar::{fix_checksum, Builder, Entry, Kind, TarError};

fn file(path: &str, data: &[u8]) -> (Entry, Vec<u8>) {
    let mut e = Entry::new(path, Kind::File);
    e.size = data.len() as u64;
    (e, data.to_vec())
}

fn dir(path: &str) -> (Entry, Vec<u8>) {
    (Entry::new(path, Kind::Directory), vec![])
}

fn link(path: &str, kind: Kind, target: &str) -> (Entry, Vec<u8>) {
    let mut e = Entry::new(path, kind);
    e.link = target.as_bytes().to_vec();
    (e, vec![])
}

fn tar(entries: &[(Entry, Vec<u8>)]) -> Vec<u8> {
    let mut b = Builder::new(Vec::new());
    for (e, d) in entries {
        b.append(e, &d[..]).unwrap();
    }
    b.finish().unwrap()
}

/// A root dir inside a base dir holding a sentinel: `outside` must never change.
struct Sandbox {
    base: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let base = tempfile::tempdir().unwrap();
        fs::create_dir(base.path().join("root")).unwrap();
        fs::create_dir(base.path().join("outside")).unwrap();
        fs::write(base.path().join("outside/sentinel"), b"keep").unwrap();
        Sandbox { base }
    }
    fn root(&self) -> std::path::PathBuf {
        self.base.path().join("root")
    }
    fn outside(&self) -> String {
        self.base.path().join("outside").display().to_string()
    }
    fn apply(
        &self,
        entries: &[(Entry, Vec<u8>)],
        mode: WhiteoutMode,
    ) -> Result<Digest, LayerError> {
        let opts = ApplyOptions {
            whiteouts: mode,
            ..ApplyOptions::default()
        };
        apply_layer(&self.root(), &tar(entries)[..], &opts).map(|a| a.diff_id)
    }
    fn assert_outside_untouched(&self) {
        let names: Vec<_> = fs::read_dir(self.base.path().join("outside"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["sentinel"]);
        assert_eq!(
            fs::read(self.base.path().join("outside/sentinel")).unwrap(),
            b"keep"
        );
        let top: Vec<_> = fs::read_dir(self.base.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(top.len(), 2, "{top:?}");
    }
}

#[test]
fn applies_every_entry_type_with_metadata() {
    let sb = Sandbox::new();
    let mut suid = file("bin/su", b"#!");
    suid.0.mode = 0o4755;
    suid.0.uid = 1000;
    suid.0.gid = 2000;
    suid.0.mtime = 1_600_000_000;
    suid.0.mtime_nsec = 123;
    suid.0.xattrs = vec![("user.note".into(), b"hi".to_vec())];
    let mut d = dir("etc/");
    d.0.mode = 0o750;
    d.0.mtime = 1_500_000_000;
    let mut chr = Entry::new("dev/null", Kind::CharDevice);
    chr.dev_major = 1;
    chr.dev_minor = 3;
    chr.mode = 0o666;
    let mut sym = link("etc/link", Kind::Symlink, "/outside/anything");
    sym.0.uid = 7;
    sym.0.mtime = 1_400_000_000;
    let entries = vec![
        d,
        file("etc/passwd", b"root:x:0:0"),
        suid,
        sym,
        link("etc/hard", Kind::HardLink, "etc/passwd"),
        (Entry::new("run/fifo", Kind::Fifo), vec![]),
        (chr, vec![]),
    ];
    let diff = sb.apply(&entries, WhiteoutMode::Overlay).unwrap();
    assert_eq!(diff, Digest::sha256(&tar(&entries)));
    let r = sb.root();
    let su = fs::metadata(r.join("bin/su")).unwrap();
    assert_eq!(su.mode() & 0o7777, 0o4755);
    assert_eq!((su.uid(), su.gid()), (1000, 2000));
    assert_eq!((su.mtime(), su.mtime_nsec()), (1_600_000_000, 123));
    assert_eq!(
        xattr::get(r.join("bin/su"), "user.note").unwrap().unwrap(),
        b"hi"
    );
    let etc = fs::metadata(r.join("etc")).unwrap();
    assert_eq!(etc.mode() & 0o7777, 0o750);
    assert_eq!(
        etc.mtime(),
        1_500_000_000,
        "dir mtime set after its children"
    );
    let l = fs::symlink_metadata(r.join("etc/link")).unwrap();
    assert!(l.file_type().is_symlink());
    assert_eq!((l.uid(), l.mtime()), (7, 1_400_000_000));
    assert_eq!(
        fs::read_link(r.join("etc/link")).unwrap(),
        Path::new("/outside/anything")
    );
    let h = fs::metadata(r.join("etc/hard")).unwrap();
    assert_eq!(h.ino(), fs::metadata(r.join("etc/passwd")).unwrap().ino());
    assert!(fs::metadata(r.join("run/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    let n = fs::metadata(r.join("dev/null")).unwrap();
    assert!(n.file_type().is_char_device());
    assert_eq!(n.rdev(), nix::sys::stat::makedev(1, 3));
    sb.assert_outside_untouched();
}

#[test]
fn compressed_layers_have_the_uncompressed_diff_id() {
    let entries = vec![dir("a/"), file("a/b", &[7u8; 10_000])];
    let plain = tar(&entries);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&plain[..], 1).unwrap();
    for blob in [plain.clone(), gz, zst] {
        let sb = Sandbox::new();
        let opts = ApplyOptions {
            expected_diff_id: Some(Digest::sha256(&plain)),
            ..ApplyOptions::default()
        };
        let a = apply_layer(&sb.root(), &blob[..], &opts).unwrap();
        assert_eq!(a.size, plain.len() as u64);
        assert_eq!(fs::read(sb.root().join("a/b")).unwrap(), vec![7u8; 10_000]);
    }
    let sb = Sandbox::new();
    let opts = ApplyOptions {
        expected_diff_id: Some(Digest::sha256(b"other")),
        ..ApplyOptions::default()
    };
    assert!(matches!(
        apply_layer(&sb.root(), &plain[..], &opts),
        Err(LayerError::DiffIdMismatch { .. })
    ));
}

#[test]
fn whiteouts_in_overlay_mode_are_overlay_whiteouts() {
    let sb = Sandbox::new();
    sb.apply(
        &[
            dir("a/"),
            file("a/.wh.gone", b""),
            file("b/.wh..wh..opq", b""),
            file("b/kept", b"1"),
            file(".wh.same", b""),
            file("same", b"x"),
        ],
        WhiteoutMode::Overlay,
    )
    .unwrap();
    let r = sb.root();
    let wh = fs::symlink_metadata(r.join("a/gone")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert_eq!(
        xattr::get(r.join("b"), "trusted.overlay.opaque")
            .unwrap()
            .unwrap(),
        b"y"
    );
    assert_eq!(fs::read(r.join("b/kept")).unwrap(), b"1");
    // a whiteout never hides an entry of its own layer, whatever the order
    assert_eq!(fs::read(r.join("same")).unwrap(), b"x");
    assert!(!r.join("a/.wh.gone").exists());
}

#[test]
fn a_directory_recreated_under_its_own_whiteout_hides_the_lower_one() {
    let sb = Sandbox::new();
    sb.apply(
        &[file(".wh.a", b""), file("a/new", b"n")],
        WhiteoutMode::Overlay,
    )
    .unwrap();
    let r = sb.root();
    assert_eq!(fs::read(r.join("a/new")).unwrap(), b"n");
    assert_eq!(
        xattr::get(r.join("a"), "trusted.overlay.opaque")
            .unwrap()
            .unwrap(),
        b"y"
    );
    // a regular file in the way is still no directory
    let e = sb
        .apply(&[file("f", b""), file("f/x", b"")], WhiteoutMode::Overlay)
        .unwrap_err();
    assert!(matches!(e, LayerError::ThroughSymlink { .. }), "{e}");
}

#[test]
fn whiteouts_in_delete_mode_delete() {
    let sb = Sandbox::new();
    sb.apply(
        &[
            file("a/x", b"1"),
            file("a/y", b"2"),
            file("b/old", b"3"),
            file("c", b"4"),
        ],
        WhiteoutMode::Delete,
    )
    .unwrap();
    sb.apply(
        &[
            file("a/.wh.x", b""),
            file("b/new", b"5"),
            file("b/.wh..wh..opq", b""),
            file(".wh.c", b""),
        ],
        WhiteoutMode::Delete,
    )
    .unwrap();
    let r = sb.root();
    assert!(!r.join("a/x").exists());
    assert!(r.join("a/y").exists());
    assert!(!r.join("b/old").exists());
    assert_eq!(fs::read(r.join("b/new")).unwrap(), b"5");
    assert!(!r.join("c").exists());
}

// ---- hostile layers (issue 5) ----

#[test]
fn hostile_dotdot_is_refused() {
    let sb = Sandbox::new();
    let e = sb
        .apply(&[file("../outside/evil", b"x")], WhiteoutMode::Overlay)
        .unwrap_err();
    assert!(matches!(e, LayerError::PathEscape { .. }), "{e}");
    let e = sb
        .apply(&[file("a/../../outside/evil", b"x")], WhiteoutMode::Overlay)
        .unwrap_err();
    assert!(matches!(e, LayerError::PathEscape { .. }), "{e}");
    sb.assert_outside_untouched();
}

#[test]
fn hostile_absolute_path_is_contained() {
    let sb = Sandbox::new();
    let abs = format!("{}/evil", sb.outside());
    sb.apply(&[file(&abs, b"x")], WhiteoutMode::Overlay)
        .unwrap();
    assert_eq!(
        fs::read(sb.root().join(abs.trim_start_matches('/'))).unwrap(),
        b"x"
    );
    sb.assert_outside_untouched();
}

#[test]
fn hostile_write_through_symlink_of_same_layer_is_refused() {
    for target in ["/", "..", "../outside"] {
        let sb = Sandbox::new();
        let out = sb.outside();
        let t = if target == "/" { out.as_str() } else { target };
        let e = sb
            .apply(
                &[link("esc", Kind::Symlink, t), file("esc/evil", b"x")],
                WhiteoutMode::Overlay,
            )
            .unwrap_err();
        assert!(
            matches!(e, LayerError::ThroughSymlink { .. }),
            "{target}: {e}"
        );
        sb.assert_outside_untouched();
    }
    // also when the symlink came from an earlier layer (delete mode unpacks onto it)
    let sb = Sandbox::new();
    sb.apply(
        &[link("esc", Kind::Symlink, &sb.outside())],
        WhiteoutMode::Delete,
    )
    .unwrap();
    let e = sb
        .apply(&[file("esc/evil", b"x")], WhiteoutMode::Delete)
        .unwrap_err();
    assert!(matches!(e, LayerError::ThroughSymlink { .. }), "{e}");
    sb.assert_outside_untouched();
}

#[test]
fn hostile_symlink_then_directory_of_the_same_name_is_contained() {
    let sb = Sandbox::new();
    sb.apply(
        &[
            link("d", Kind::Symlink, &sb.outside()),
            dir("d/"),
            file("d/evil", b"x"),
        ],
        WhiteoutMode::Overlay,
    )
    .unwrap();
    let m = fs::symlink_metadata(sb.root().join("d")).unwrap();
    assert!(m.is_dir());
    assert_eq!(fs::read(sb.root().join("d/evil")).unwrap(), b"x");
    sb.assert_outside_untouched();
}

#[test]
fn hostile_hardlinks_are_refused_or_contained() {
    let sb = Sandbox::new();
    let e = sb
        .apply(
            &[link("h", Kind::HardLink, "../outside/sentinel")],
            WhiteoutMode::Overlay,
        )
        .unwrap_err();
    assert!(matches!(e, LayerError::HardlinkTarget { .. }), "{e}");
    // absolute: resolved inside the root, where it does not exist
    let abs = format!("{}/sentinel", sb.outside());
    let e = sb
        .apply(&[link("h", Kind::HardLink, &abs)], WhiteoutMode::Overlay)
        .unwrap_err();
    assert!(matches!(e, LayerError::HardlinkTarget { .. }), "{e}");
    // through a symlink directory
    let e = sb
        .apply(
            &[
                link("s", Kind::Symlink, &sb.outside()),
                link("h", Kind::HardLink, "s/sentinel"),
            ],
            WhiteoutMode::Overlay,
        )
        .unwrap_err();
    assert!(matches!(e, LayerError::HardlinkTarget { .. }), "{e}");
    // to a symlink: links the symlink itself, never what it points at
    let sb2 = Sandbox::new();
    sb2.apply(
        &[
            link("s", Kind::Symlink, &abs),
            link("h", Kind::HardLink, "s"),
        ],
        WhiteoutMode::Overlay,
    )
    .unwrap();
    let h = fs::symlink_metadata(sb2.root().join("h")).unwrap();
    assert!(h.file_type().is_symlink());
    assert_ne!(h.ino(), fs::metadata(&abs).unwrap().ino());
    assert_eq!(fs::metadata(&abs).unwrap().nlink(), 1);
    sb.assert_outside_untouched();
    sb2.assert_outside_untouched();
}

#[test]
fn hostile_root_replacement_is_refused() {
    let sb = Sandbox::new();
    for entries in [
        vec![link(".", Kind::Symlink, "/")],
        vec![link("./", Kind::Symlink, &sb.outside())],
        vec![file(".", b"x")],
        vec![(Entry::new("./", Kind::Fifo), vec![])],
    ] {
        let e = sb.apply(&entries, WhiteoutMode::Overlay).unwrap_err();
        assert!(matches!(e, LayerError::ReplaceRoot { .. }), "{e}");
    }
    assert!(fs::symlink_metadata(sb.root()).unwrap().is_dir());
    sb.assert_outside_untouched();
}

#[test]
fn hostile_whiteouts_escaping_their_directory_are_refused() {
    let sb = Sandbox::new();
    fs::write(sb.root().join("keep"), b"k").unwrap();
    for name in ["a/.wh..", ".wh..", ".wh.", "a/.wh."] {
        let e = sb
            .apply(&[file(name, b"")], WhiteoutMode::Delete)
            .unwrap_err();
        assert!(
            matches!(
                e,
                LayerError::WhiteoutEscape { .. } | LayerError::PathEscape { .. }
            ),
            "{name}: {e}"
        );
    }
    assert!(sb.root().join("keep").exists());
    sb.assert_outside_untouched();
}

#[test]
fn hostile_overflowing_ids_and_devices_are_refused() {
    let sb = Sandbox::new();
    let mut f = file("f", b"");
    f.0.uid = 1 << 32;
    assert!(matches!(
        sb.apply(&[f], WhiteoutMode::Overlay),
        Err(LayerError::IdOverflow { .. })
    ));
    let mut f = file("g", b"");
    f.0.gid = u64::from(u32::MAX);
    assert!(matches!(
        sb.apply(&[f], WhiteoutMode::Overlay),
        Err(LayerError::IdOverflow { .. })
    ));
    let mut d = Entry::new("dev", Kind::BlockDevice);
    d.dev_major = 0x1000;
    assert!(matches!(
        sb.apply(&[(d, vec![])], WhiteoutMode::Overlay),
        Err(LayerError::DeviceOverflow { .. })
    ));
    // octal field overflowing u64 in a raw header
    let mut raw = tar(&[file("h", b"")]);
    let block: &mut [u8; 512] = (&mut raw[..512]).try_into().unwrap();
    block[108] = 0x80;
    block[109..116].fill(0xff);
    block[124..136].copy_from_slice(&[
        0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ]);
    fix_checksum(block);
    let e = apply_layer(&sb.root(), &raw[..], &ApplyOptions::default()).unwrap_err();
    assert!(
        matches!(e, LayerError::Tar(TarError::BadNumber { .. })),
        "{e}"
    );
    sb.assert_outside_untouched();
}

fn raw_header(name: &str, flag: u8, size: u64) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[..name.len()].copy_from_slice(name.as_bytes());
    b[100..107].copy_from_slice(b"0000644");
    let s = format!("{size:011o}");
    b[124..135].copy_from_slice(s.as_bytes());
    b[156] = flag;
    b[257..263].copy_from_slice(b"ustar\0");
    fix_checksum(&mut b);
    b
}

#[test]
fn hostile_pax_and_ustar_sizes_that_disagree_are_refused() {
    let sb = Sandbox::new();
    let pax = b"13 size=1024\n";
    let mut bytes = raw_header("PaxHeaders/f", b'x', pax.len() as u64).to_vec();
    bytes.extend_from_slice(pax);
    bytes.resize(1024, 0);
    bytes.extend_from_slice(&raw_header("f", b'0', 1));
    bytes.resize(bytes.len() + 2048, 0);
    let e = apply_layer(&sb.root(), &bytes[..], &ApplyOptions::default()).unwrap_err();
    assert!(
        matches!(e, LayerError::Tar(TarError::SizeDisagreement { .. })),
        "{e}"
    );
    assert!(!sb.root().join("f").exists());
}

#[test]
fn hostile_truncated_headers_are_refused() {
    let sb = Sandbox::new();
    let full = tar(&[file("a", b"abc"), file("b", b"def")]);
    let e = apply_layer(
        &sb.root(),
        &full[..512 + 512 + 100],
        &ApplyOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, LayerError::Tar(TarError::Truncated(_))), "{e}");
    // truncated inside the data
    let e = apply_layer(&sb.root(), &full[..514], &ApplyOptions::default()).unwrap_err();
    assert!(
        matches!(e, LayerError::Fs { .. } | LayerError::Tar(_)),
        "{e}"
    );
}

#[test]
fn hostile_decompression_bomb_is_bounded() {
    let sb = Sandbox::new();
    let plain = tar(&[file("zeros", &vec![0u8; 8 << 20])]);
    let zst = zstd::encode_all(&plain[..], 3).unwrap();
    assert!(zst.len() < 4096, "a bomb: {} bytes", zst.len());
    let opts = ApplyOptions {
        max_uncompressed: 1 << 20,
        ..ApplyOptions::default()
    };
    let e = apply_layer(&sb.root(), &zst[..], &opts).unwrap_err();
    assert!(matches!(e, LayerError::TooLarge { .. }), "{e}");
    let len = fs::metadata(sb.root().join("zeros"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(len <= 1 << 20);
    let opts = ApplyOptions {
        max_entries: 3,
        ..ApplyOptions::default()
    };
    let many: Vec<_> = (0..10).map(|i| file(&format!("f{i}"), b"")).collect();
    assert!(matches!(
        apply_layer(&sb.root(), &tar(&many)[..], &opts),
        Err(LayerError::TooManyEntries { limit: 3 })
    ));
}

#[test]
fn hostile_overlay_xattrs_are_refused() {
    let sb = Sandbox::new();
    for name in [
        "trusted.overlay.opaque",
        "trusted.overlay.redirect",
        "user.overlay.origin",
    ] {
        let mut d = dir("d/");
        d.0.xattrs = vec![(name.into(), b"y".to_vec())];
        let e = sb.apply(&[d], WhiteoutMode::Overlay).unwrap_err();
        assert!(matches!(e, LayerError::ForbiddenXattr { .. }), "{e}");
    }
    assert!(xattr::get(sb.root(), "trusted.overlay.opaque")
        .unwrap()
        .is_none());
}

#[test]
fn file_tree_listing_is_stable() {
    // helper used by the property tests; checked once here on a known tree
    let sb = Sandbox::new();
    sb.apply(&[file("a", b"1"), dir("d/")], WhiteoutMode::Delete)
        .unwrap();
    let mut m = BTreeMap::new();
    for e in fs::read_dir(sb.root()).unwrap() {
        let e = e.unwrap();
        m.insert(e.file_name(), e.metadata().unwrap().permissions().mode());
    }
    assert_eq!(m.len(), 2);
}

#[test]
fn hardlink_to_a_lower_layer_file_copies_it_up() {
    let sb = Sandbox::new();
    let lower = sb.base.path().join("outside/lower");
    fs::create_dir(&lower).unwrap();
    let mut f = file("etc/passwd", b"root");
    f.0.mode = 0o640;
    f.0.uid = 5;
    apply_layer(&lower, &tar(&[f])[..], &ApplyOptions::default()).unwrap();
    let opts = ApplyOptions {
        lowers: vec![lower.clone()],
        ..ApplyOptions::default()
    };
    apply_layer(
        &sb.root(),
        &tar(&[link("etc/hard", Kind::HardLink, "etc/passwd")])[..],
        &opts,
    )
    .unwrap();
    let r = sb.root();
    let a = fs::metadata(r.join("etc/passwd")).unwrap();
    assert_eq!(a.ino(), fs::metadata(r.join("etc/hard")).unwrap().ino());
    assert_eq!((a.mode() & 0o7777, a.uid()), (0o640, 5));
    assert_eq!(fs::read(r.join("etc/hard")).unwrap(), b"root");
    // the lower layer is untouched (its inode is not the upper's)
    assert_eq!(fs::metadata(lower.join("etc/passwd")).unwrap().nlink(), 1);
}

fn copy_into(dir: &Path, tar_bytes: &[u8], rules: CopyRules) -> Result<(), LayerError> {
    let fd = nix::fcntl::open(
        dir,
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    unpack_into_dir(fd, tar_bytes, rules, &ApplyOptions::default()).map(|_| ())
}

#[test]
fn a_copy_keeps_whiteout_names_and_leaves_its_directory_alone() {
    let t = tempfile::tempdir().unwrap();
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o711)).unwrap();
    fs::write(t.path().join("old"), "old").unwrap();
    let mut top = dir("./");
    top.0.mode = 0o700;
    top.0.uid = 4242;
    copy_into(
        t.path(),
        &tar(&[
            top,
            file("./.wh.old", b"w"),
            file("./sub/.wh..wh..opq", b"o"),
        ]),
        CopyRules::default(),
    )
    .unwrap();
    // `.wh.` names are files; the directory's own mode and owner stay.
    assert_eq!(fs::read_to_string(t.path().join("old")).unwrap(), "old");
    assert_eq!(fs::read_to_string(t.path().join(".wh.old")).unwrap(), "w");
    assert!(t.path().join("sub/.wh..wh..opq").is_file());
    let m = fs::metadata(t.path()).unwrap();
    assert_eq!((m.permissions().mode() & 0o7777, m.uid()), (0o711, 0));
}

#[test]
fn a_copy_refuses_what_dockerd_refuses_and_devices() {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir(t.path().join("d")).unwrap();
    let refused = |entries: &[(Entry, Vec<u8>)], rules| copy_into(t.path(), &tar(entries), rules);
    assert!(matches!(
        refused(&[link("up", Kind::Symlink, "../x")], CopyRules::default()),
        Err(LayerError::SymlinkEscape { .. })
    ));
    assert!(matches!(
        refused(
            &[link("a/b/up", Kind::Symlink, "../../../x")],
            CopyRules::default()
        ),
        Err(LayerError::SymlinkEscape { .. })
    ));
    // Within the directory, or absolute (taken below it by Go's Join): made.
    refused(
        &[link("a/b/ok", Kind::Symlink, "../../d")],
        CopyRules::default(),
    )
    .unwrap();
    refused(&[link("abs", Kind::Symlink, "/etc")], CopyRules::default()).unwrap();
    let mut dev = Entry::new("null", Kind::CharDevice);
    dev.dev_major = 1;
    dev.dev_minor = 3;
    assert!(matches!(
        refused(&[(dev, Vec::new())], CopyRules::default()),
        Err(LayerError::DeviceRefused { .. })
    ));
    assert!(!t.path().join("null").exists());
    let strict = CopyRules {
        no_overwrite_dir_non_dir: true,
        owner: None,
    };
    assert!(matches!(
        refused(&[file("d", b"x")], strict),
        Err(LayerError::WouldReplace { .. })
    ));
    assert!(t.path().join("d").is_dir());
    fs::write(t.path().join("f"), "f").unwrap();
    assert!(matches!(
        refused(&[dir("f")], strict),
        Err(LayerError::WouldReplace { .. })
    ));
    // Without the rule, a file replaces a directory, as dockerd's Untar does.
    refused(&[file("d", b"x")], CopyRules::default()).unwrap();
    assert_eq!(fs::read_to_string(t.path().join("d")).unwrap(), "x");
}

#[test]
fn a_copy_owned_by_the_container_user() {
    let t = tempfile::tempdir().unwrap();
    let mut f = file("sub/f", b"x");
    f.0.uid = 7;
    f.0.gid = 8;
    let rules = CopyRules {
        no_overwrite_dir_non_dir: false,
        owner: Some((1000, 1001)),
    };
    copy_into(t.path(), &tar(&[dir("sub"), f]), rules).unwrap();
    for p in ["sub", "sub/f"] {
        let m = fs::metadata(t.path().join(p)).unwrap();
        assert_eq!((m.uid(), m.gid()), (1000, 1001), "{p}");
    }
}
