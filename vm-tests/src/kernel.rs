//! The guest kernel: fetched as a Debian `linux-image` package with `apt-get download`, unpacked
//! once into the cache as a PVH-bootable `vmlinux` plus the modules the guest needs.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};

/// The kernel every run boots unless it cannot be had: bookworm's point-release kernel, which the
/// archive keeps until the next point release.
const PINNED: (&str, &str) = ("linux-image-6.1.0-50-amd64", "6.1.176-1");

/// Tried in order when the pinned one is neither cached nor downloadable (it left the archive):
/// a pinned security update, then the newest 6.1 kernel apt knows of.
const FALLBACKS: &[(&str, &str)] = &[("linux-image-6.1.0-56-amd64", "6.1.192-2")];

/// The modules containers and the harness need; their dependencies are added from `depends=`.
/// `bfq` gives the guest the BFQ scheduler whose `blkio.bfq.weight`/`io.bfq.weight` carry
/// `blockIO.weight` (Debian hosts load it; without it a weight cannot be applied at all).
const WANTED_MODULES: &[&str] = &[
    "bfq",
    "overlay",
    "veth",
    "bridge",
    "9p",
    "9pnet_virtio",
    "virtio_pci",
];

/// An unpacked kernel in the cache.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// `package=version`, for messages and the accel probe's cache key.
    pub id: String,
    /// The decompressed ELF kernel (QEMU boots it through its PVH note).
    pub vmlinux: PathBuf,
    /// Module files in load order: each after its dependencies.
    pub modules: Vec<PathBuf>,
}

/// Returns the cached kernel, fetching and unpacking it first if needed.
///
/// # Errors
/// When no candidate package can be downloaded or unpacked.
pub fn ensure(cache: &Path) -> Result<Kernel> {
    let mut candidates: Vec<(String, Option<String>)> = std::iter::once(PINNED)
        .chain(FALLBACKS.iter().copied())
        .map(|(p, v)| (p.to_owned(), Some(v.to_owned())))
        .collect();
    // A cached kernel of any candidate beats a download.
    for (package, version) in &candidates {
        if let Some(k) = load(cache, package, version.as_deref().unwrap_or(""))? {
            return Ok(k);
        }
    }
    for package in newest_known().into_iter().take(1) {
        if !candidates.iter().any(|(p, _)| *p == package) {
            candidates.push((package, None));
        }
    }
    let mut failures = Vec::new();
    for (package, version) in &candidates {
        let deb = match download(cache, package, version.as_deref()) {
            Ok(deb) => deb,
            // Only a package missing from the archive sends us to the next candidate.
            Err(e) => {
                failures.push(format!("{package}: {e:#}"));
                continue;
            }
        };
        let unpacked = unpack_deb(cache, package, version.as_deref(), &deb);
        let _ = fs::remove_file(&deb);
        match unpacked {
            Ok(k) => {
                if package != PINNED.0 {
                    eprintln!(
                        "vm-tests: the pinned kernel {}={} was unavailable; using {}",
                        PINNED.0, PINNED.1, k.id
                    );
                }
                return Ok(k);
            }
            Err(e) => return Err(e.context(format!("unpack {}", deb.display()))),
        }
    }
    bail!(
        "no guest kernel could be fetched (is `apt-get update` done?):\n  {}",
        failures.join("\n  ")
    )
}

fn unpacked_dir(cache: &Path, package: &str, version: &str) -> PathBuf {
    cache.join("kernel").join(format!("{package}_{version}"))
}

/// The cached kernel, if a complete unpack of it is there (`modules.load` is written last) for
/// the current [`WANTED_MODULES`].
fn load(cache: &Path, package: &str, version: &str) -> Result<Option<Kernel>> {
    let dir = unpacked_dir(cache, package, version);
    let Ok(order) = fs::read_to_string(dir.join("modules.load")) else {
        return Ok(None);
    };
    if fs::read_to_string(dir.join("modules.wanted")).ok() != Some(WANTED_MODULES.join("\n")) {
        return Ok(None);
    }
    let modules = order
        .lines()
        .filter(|l| !l.is_empty())
        .map(|name| dir.join("modules").join(format!("{name}.ko")))
        .collect();
    Ok(Some(Kernel {
        id: format!("{package}={version}"),
        vmlinux: dir.join("vmlinux"),
        modules,
    }))
}

/// `linux-image-6.1.0-N-amd64` packages apt knows of, newest first.
fn newest_known() -> Vec<String> {
    let Ok(out) = Command::new("apt-cache")
        .args([
            "search",
            "--names-only",
            r"^linux-image-6\.1\.0-[0-9]+-amd64$",
        ])
        .stderr(Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    let mut found: Vec<(u32, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|p| {
            let abi = p
                .strip_prefix("linux-image-6.1.0-")?
                .strip_suffix("-amd64")?;
            Some((abi.parse().ok()?, p.to_owned()))
        })
        .collect();
    found.sort_unstable_by(|a, b| b.cmp(a));
    found.into_iter().map(|(_, p)| p).collect()
}

/// Downloads the package into the cache and returns the .deb's path.
fn download(cache: &Path, package: &str, version: Option<&str>) -> Result<PathBuf> {
    let debs = cache.join("debs");
    fs::create_dir_all(&debs)?;
    let spec = version.map_or_else(|| package.to_owned(), |v| format!("{package}={v}"));
    eprintln!("vm-tests: downloading {spec}");
    // apt verifies the .deb against the signed archive index.
    let out = Command::new("apt-get")
        .args(["download", "-q", &spec])
        .current_dir(&debs)
        .stdout(Stdio::null())
        .output()
        .context("cannot run apt-get")?;
    ensure!(
        out.status.success(),
        "apt-get download failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    fs::read_dir(&debs)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .filter(|p| version.is_none_or(|v| p.to_string_lossy().contains(&format!("_{v}_"))))
        .max()
        .context("apt-get download left no .deb")
}

fn unpack_deb(cache: &Path, package: &str, version: Option<&str>, deb: &Path) -> Result<Kernel> {
    let version = match version {
        Some(v) => v.to_owned(),
        None => deb
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split('_').nth(1))
            .context("unparsable .deb name")?
            .to_owned(),
    };
    unpack(deb, &unpacked_dir(cache, package, &version))?;
    load(cache, package, &version)?.context("unpack wrote no module list")
}

/// One module file in the package.
struct ModuleEntry {
    path: String,
    depends: Vec<String>,
}

/// Unpacks `vmlinux` and the wanted modules (with their dependencies) into `dir`. Two passes over
/// the package: the first learns every module's `depends=`, the second keeps only the closure.
fn unpack(deb: &Path, dir: &Path) -> Result<()> {
    let tmp = dir.with_extension("partial");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(tmp.join("modules"))?;

    let mut index: BTreeMap<String, ModuleEntry> = BTreeMap::new();
    let mut have_vmlinux = false;
    for_each_file(deb, |path, data| {
        if path.contains("/boot/vmlinuz-") {
            let elf = decompress_bzimage(data).with_context(|| format!("decompress {path}"))?;
            fs::write(tmp.join("vmlinux"), elf)?;
            have_vmlinux = true;
        } else if path.ends_with(".ko") {
            let info = modinfo(data);
            let name = info.get("name").cloned().unwrap_or_else(|| {
                let stem = path.rsplit('/').next().unwrap_or(path);
                stem.trim_end_matches(".ko").replace('-', "_")
            });
            let depends = info
                .get("depends")
                .map(|d| {
                    d.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            index.insert(
                name,
                ModuleEntry {
                    path: path.to_owned(),
                    depends,
                },
            );
        }
        Ok(())
    })?;
    ensure!(have_vmlinux, "{} has no /boot/vmlinuz", deb.display());

    let order = load_order(&index)?;
    let by_path: BTreeMap<&str, &str> = order
        .iter()
        .map(|n| (index[n].path.as_str(), n.as_str()))
        .collect();
    let mut written = BTreeSet::new();
    for_each_file(deb, |path, data| {
        if let Some(name) = by_path.get(path) {
            fs::write(tmp.join("modules").join(format!("{name}.ko")), data)?;
            written.insert((*name).to_owned());
        }
        Ok(())
    })?;
    ensure!(written.len() == order.len(), "second pass missed modules");
    fs::write(tmp.join("modules.wanted"), WANTED_MODULES.join("\n"))?;
    fs::write(tmp.join("modules.load"), order.join("\n") + "\n")?;
    let _ = fs::remove_dir_all(dir);
    fs::rename(&tmp, dir)?;
    Ok(())
}

/// Wanted modules and their dependencies, each after what it depends on. A wanted module absent
/// from the package is built in (or the kernel cannot do what we need: boot will tell).
fn load_order(index: &BTreeMap<String, ModuleEntry>) -> Result<Vec<String>> {
    fn visit(
        name: &str,
        index: &BTreeMap<String, ModuleEntry>,
        done: &mut BTreeSet<String>,
        order: &mut Vec<String>,
        depth: usize,
    ) -> Result<()> {
        ensure!(depth < 64, "module dependency cycle at {name}");
        if done.contains(name) {
            return Ok(());
        }
        let Some(entry) = index.get(name) else {
            return Ok(());
        };
        for dep in &entry.depends {
            ensure!(index.contains_key(dep), "{name} depends on unknown {dep}");
            visit(dep, index, done, order, depth + 1)?;
        }
        done.insert(name.to_owned());
        order.push(name.to_owned());
        Ok(())
    }
    let mut done = BTreeSet::new();
    let mut order = Vec::new();
    for name in WANTED_MODULES {
        visit(name, index, &mut done, &mut order, 0)?;
    }
    Ok(order)
}

/// Streams the package's data tar through `dpkg-deb --fsys-tarfile` and hands every regular file
/// to `each`.
fn for_each_file(deb: &Path, mut each: impl FnMut(&str, &[u8]) -> Result<()>) -> Result<()> {
    let mut child = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run dpkg-deb")?;
    let stdout = child.stdout.take().context("dpkg-deb stdout")?;
    let mut archive = tar::Archive::new(stdout);
    let mut buf = Vec::new();
    let result = (|| -> Result<()> {
        for entry in archive.entries()? {
            let mut entry = entry?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let path = entry.path()?.to_string_lossy().into_owned();
            buf.clear();
            entry.read_to_end(&mut buf)?;
            each(&path, &buf)?;
        }
        Ok(())
    })();
    // Drain and reap dpkg-deb whether or not we read it all.
    drop(archive);
    let status = child.wait()?;
    result?;
    ensure!(status.success(), "dpkg-deb --fsys-tarfile failed: {status}");
    Ok(())
}

/// The `key=value` strings of a module's `.modinfo` section, found by their NUL-separated form.
fn modinfo(ko: &[u8]) -> BTreeMap<String, String> {
    let mut info = BTreeMap::new();
    for key in ["name", "depends"] {
        let needle = format!("\0{key}=");
        if let Some(at) = find(ko, needle.as_bytes()) {
            let start = at + needle.len();
            let end = ko[start..]
                .iter()
                .position(|&b| b == 0)
                .map_or(ko.len(), |n| start + n);
            info.insert(
                key.to_owned(),
                String::from_utf8_lossy(&ko[start..end]).into_owned(),
            );
        }
    }
    info
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Extracts the ELF kernel from a bzImage: x86 boot protocol 2.08+ gives the payload's offset
/// (`payload_offset`, 0x248) past the setup sectors (`setup_sects`, 0x1f1) and its length (0x24c).
/// Debian compresses it with xz.
fn decompress_bzimage(image: &[u8]) -> Result<Vec<u8>> {
    let u32_at = |off: usize| -> Result<usize> {
        let b = image
            .get(off..off + 4)
            .context("bzImage header truncated")?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    ensure!(image.get(0x202..0x206) == Some(b"HdrS"), "not a bzImage");
    let setup_sects = match image[0x1f1] {
        0 => 4,
        n => usize::from(n),
    };
    let start = (setup_sects + 1) * 512 + u32_at(0x248)?;
    let len = u32_at(0x24c)?;
    let payload = image
        .get(start..start + len)
        .context("bzImage payload out of range")?;
    // The kernel build appends the decompressed size (le32) after the compressed stream.
    let (payload, size) = payload.split_at(len.checked_sub(4).context("empty payload")?);
    let size = u32::from_le_bytes([size[0], size[1], size[2], size[3]]) as usize;
    ensure!(
        payload.starts_with(b"\xfd7zXZ\x00"),
        "bzImage payload is not xz (first bytes {:02x?})",
        &payload[..payload.len().min(6)]
    );
    let mut elf = Vec::new();
    xz2::read::XzDecoder::new(payload)
        .read_to_end(&mut elf)
        .context("xz")?;
    ensure!(
        elf.starts_with(b"\x7fELF"),
        "decompressed kernel is not ELF"
    );
    ensure!(
        elf.len() == size,
        "decompressed kernel is {} bytes, the header says {size}",
        elf.len()
    );
    Ok(elf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, depends: &[&str]) -> ModuleEntry {
        ModuleEntry {
            path: path.to_owned(),
            depends: depends.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn load_order_puts_dependencies_first_once() {
        let index: BTreeMap<String, ModuleEntry> = [
            ("9p", entry("a", &["9pnet", "netfs"])),
            ("9pnet", entry("b", &[])),
            ("netfs", entry("c", &[])),
            ("9pnet_virtio", entry("d", &["9pnet"])),
            ("bridge", entry("e", &["stp", "llc"])),
            ("stp", entry("f", &["llc"])),
            ("llc", entry("g", &[])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let order = load_order(&index).unwrap();
        assert_eq!(
            order,
            [
                "llc",
                "stp",
                "bridge",
                "9pnet",
                "netfs",
                "9p",
                "9pnet_virtio"
            ]
        );
    }

    #[test]
    fn modinfo_reads_nul_separated_fields() {
        let ko = b"\x7fELF junk\0license=GPL\0depends=9pnet,netfs\0name=9p\0vermagic=6.1";
        let info = modinfo(ko);
        assert_eq!(info["depends"], "9pnet,netfs");
        assert_eq!(info["name"], "9p");
    }
}
