//! Making a layer from two directory trees (Diff.Diff): walk the upper tree against the lower
//! one, as containerd's walking differ does, and write what was added or changed as tar entries
//! and what was removed as `.wh.` whiteouts (image-spec: "Representing Changes"), parents
//! before children, in name order. Files of the same size and modification time (and
//! directories of the same modification time) are taken as unchanged, as containerd takes them.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::image::layer::WHITEOUT_PREFIX;
use crate::image::tar::{Builder, Entry, Kind};

/// Writes the changes from `lower` to `upper` into `out`; mtimes later than `clamp` (seconds)
/// are set to it.
///
/// # Errors
/// I/O errors of either tree or of the sink.
pub fn write_changes<W: Write>(
    lower: &Path,
    upper: &Path,
    clamp: Option<i64>,
    out: &mut Builder<W>,
) -> io::Result<()> {
    let mut links = HashMap::new();
    walk(lower, upper, Path::new(""), clamp, &mut links, out)
}

fn names(dir: &Path) -> io::Result<BTreeSet<std::ffi::OsString>> {
    match fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.map(|e| e.file_name())).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(e),
    }
}

fn same(a: &fs::Metadata, b: &fs::Metadata, la: &Path, lb: &Path) -> io::Result<bool> {
    if a.file_type() != b.file_type()
        || a.mode() != b.mode()
        || a.uid() != b.uid()
        || a.gid() != b.gid()
        || a.rdev() != b.rdev()
    {
        return Ok(false);
    }
    if a.file_type().is_symlink() {
        return Ok(fs::read_link(la)? == fs::read_link(lb)?);
    }
    Ok(a.size() == b.size() && a.mtime() == b.mtime() && a.mtime_nsec() == b.mtime_nsec())
}

fn walk<W: Write>(
    lower: &Path,
    upper: &Path,
    rel: &Path,
    clamp: Option<i64>,
    links: &mut HashMap<(u64, u64), Vec<u8>>,
    out: &mut Builder<W>,
) -> io::Result<()> {
    let ldir = lower.join(rel);
    let udir = upper.join(rel);
    let lnames = names(&ldir)?;
    let unames = names(&udir)?;
    let all: BTreeSet<_> = lnames.union(&unames).cloned().collect();
    for name in all {
        let r = rel.join(&name);
        let in_upper = unames.contains(&name);
        let lmeta = if lnames.contains(&name) {
            Some(fs::symlink_metadata(lower.join(&r))?)
        } else {
            None
        };
        if !in_upper {
            // Removed: one whiteout names it (and everything below it).
            let mut wh = rel.as_os_str().as_bytes().to_vec();
            if !wh.is_empty() {
                wh.push(b'/');
            }
            wh.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
            wh.extend_from_slice(name.as_bytes());
            let mut e = Entry::new(wh, Kind::File);
            e.mode = 0o644;
            e.mtime = clamp.unwrap_or(0);
            out.append(&e, io::empty())?;
            continue;
        }
        let umeta = fs::symlink_metadata(upper.join(&r))?;
        let changed = match &lmeta {
            None => true,
            Some(l) => !same(l, &umeta, &lower.join(&r), &upper.join(&r))?,
        };
        if changed {
            append(upper, &r, &umeta, clamp, links, out)?;
        }
        if umeta.is_dir() {
            // A directory that replaced a non-directory has nothing below it in the lower tree.
            let lower_for_children = match &lmeta {
                Some(l) if l.is_dir() => lower,
                _ => Path::new("/nonexistent-refeng-lower"),
            };
            walk(lower_for_children, upper, &r, clamp, links, out)?;
        }
    }
    Ok(())
}

fn append<W: Write>(
    root: &Path,
    rel: &Path,
    md: &fs::Metadata,
    clamp: Option<i64>,
    links: &mut HashMap<(u64, u64), Vec<u8>>,
    out: &mut Builder<W>,
) -> io::Result<()> {
    let path = root.join(rel);
    let mut name = rel.as_os_str().as_bytes().to_vec();
    if md.is_dir() {
        name.push(b'/');
    }
    // Sockets have no tar form; tar and containerd skip them too.
    let Some(mut e) = Entry::from_metadata(name.clone(), &path, md)? else {
        return Ok(());
    };
    let kind = e.kind;
    e.mtime_nsec = u32::try_from(md.mtime_nsec()).unwrap_or(0);
    if let Some(c) = clamp {
        if e.mtime > c {
            e.mtime = c;
            e.mtime_nsec = 0;
        }
    }
    if let Ok(list) = xattr::list(&path) {
        for k in list {
            let k = k.to_string_lossy().into_owned();
            // The overlay's own bookkeeping is not part of the layer.
            if k.starts_with("trusted.overlay.") || k.starts_with("user.overlay.") {
                continue;
            }
            if let Ok(Some(v)) = xattr::get(&path, &k) {
                e.xattrs.push((k, v));
            }
        }
    }
    if kind == Kind::File && md.nlink() > 1 {
        let key = (md.dev(), md.ino());
        if let Some(first) = links.get(&key) {
            e.kind = Kind::HardLink;
            e.link = first.clone();
            return out.append(&e, io::empty());
        }
        links.insert(key, name);
    }
    if kind == Kind::File {
        e.size = md.size();
        out.append(&e, fs::File::open(&path)?)
    } else {
        out.append(&e, io::empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::tar::{Reader, TarLimits};

    #[test]
    fn additions_changes_and_removals_become_entries_and_whiteouts() {
        let d = tempfile::tempdir().unwrap();
        let (lo, up) = (d.path().join("lo"), d.path().join("up"));
        for p in [&lo, &up] {
            fs::create_dir_all(p.join("etc")).unwrap();
            fs::write(p.join("etc/same"), "same").unwrap();
            fs::write(p.join("keep"), "k").unwrap();
        }
        // Same content and time in both trees: unchanged.
        for f in ["etc/same", "keep"] {
            let t = fs::metadata(lo.join(f)).unwrap().modified().unwrap();
            fs::File::options()
                .write(true)
                .open(up.join(f))
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        let t = fs::metadata(lo.join("etc")).unwrap().modified().unwrap();
        fs::File::open(up.join("etc"))
            .unwrap()
            .set_modified(t)
            .unwrap();
        fs::create_dir_all(lo.join("gone/deep")).unwrap();
        fs::write(lo.join("changed"), "old").unwrap();
        fs::write(up.join("changed"), "new!").unwrap();
        fs::write(up.join("etc/new"), "n").unwrap();
        std::os::unix::fs::symlink("keep", up.join("link")).unwrap();
        // The lower etc/ is older than the upper one, whatever the clock's granularity.
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::open(lo.join("etc"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let mut b = Builder::new(Vec::new());
        write_changes(&lo, &up, None, &mut b).unwrap();
        let bytes = b.finish().unwrap();
        let mut r = Reader::new(&bytes[..], TarLimits::default());
        let mut seen = Vec::new();
        while let Some(e) = r.next_entry().unwrap() {
            seen.push(String::from_utf8(e.path).unwrap());
        }
        // etc/ changed too: a file was added to it (its mtime moved), as containerd sees it.
        assert_eq!(seen, ["changed", "etc/", "etc/new", ".wh.gone", "link"]);
    }
}
