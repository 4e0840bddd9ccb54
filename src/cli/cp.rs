//! `cp` (also `container cp`): docker's copy between a container and the local filesystem over
//! `HEAD`, `GET` and `PUT /containers/{id}/archive`. The decisions are the docker CLI's and
//! those of moby's archive package (`CopyInfoSourcePath`, `CopyInfoDestinationPath`,
//! `PrepareArchiveCopy`, `RebaseArchiveEntries`, `CopyTo`), with Go's path rules; a local source
//! is archived by the daemon's own tree walk and an archive is unpacked by the layer unpacker in
//! its copy mode, so nothing is written outside the destination directory and no symlink is
//! followed while unpacking.

use std::fs;
use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::client::Body;
use super::containers::path_escape;
use super::format::human_size;
use super::{go_io_text, CliError, Ctx};
use crate::engine::containers::archive::archive_entry;
use crate::image::layer::{unpack_into_dir, ApplyOptions, CopyRules, LayerError};
use crate::image::tar::{Builder, Reader, TarLimits};

/// `cp`.
#[derive(Debug, clap::Args)]
pub struct CpArgs {
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Archive mode (copy all uid/gid information)
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// Suppress progress output during copy. Progress output is automatically suppressed if no
    /// terminal is attached
    #[arg(short, long)]
    pub quiet: bool,
    /// CONTAINER:SRC_PATH, or SRC_PATH|- (a tar archive on stdin)
    pub source: String,
    /// DEST_PATH|- (a tar archive on stdout), or CONTAINER:DEST_PATH
    pub destination: String,
}

/// Go's `os.FileMode` bits the CLI looks at in a path stat.
const MODE_DIR: u32 = 1 << 31;
const MODE_SYMLINK: u32 = 1 << 27;
const MODE_DEVICE: u32 = 1 << 26;
const MODE_IRREGULAR: u32 = 1 << 19;

const TO_CONTAINER_HEADER: &str = "Copying to container - ";
const FROM_CONTAINER_HEADER: &str = "Copying from container - ";

/// An error the docker CLI prints as it is, exit status 1.
fn fail(message: impl Into<String>) -> CliError {
    CliError::Status {
        code: 1,
        message: message.into(),
    }
}

/// Go's `*PathError` text: `lstat /a/b: no such file or directory`.
fn path_error(op: &str, path: &str, e: &io::Error) -> CliError {
    fail(format!("{op} {path}: {}", go_io_text(e)))
}

/// Go's `path/filepath` functions on Unix, as the docker CLI's decisions depend on them.
mod gopath {
    /// `filepath.Clean`.
    pub fn clean(path: &str) -> String {
        let rooted = path.starts_with('/');
        let mut parts: Vec<&str> = Vec::new();
        for c in path.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    if parts.last().is_some_and(|l| *l != "..") {
                        parts.pop();
                    } else if !rooted {
                        parts.push("..");
                    }
                }
                c => parts.push(c),
            }
        }
        let joined = parts.join("/");
        match (rooted, joined.is_empty()) {
            (true, _) => format!("/{joined}"),
            (false, true) => ".".into(),
            (false, false) => joined,
        }
    }

    /// `filepath.Split`: everything up to the last separator, and the rest.
    pub fn split(path: &str) -> (&str, &str) {
        match path.rfind('/') {
            Some(i) => (&path[..=i], &path[i + 1..]),
            None => ("", path),
        }
    }

    /// `filepath.Dir`.
    pub fn dir(path: &str) -> String {
        clean(split(path).0)
    }

    /// `filepath.Base`.
    pub fn base(path: &str) -> String {
        if path.is_empty() {
            return ".".into();
        }
        let trimmed = path.trim_end_matches('/');
        if trimmed.is_empty() {
            return "/".into();
        }
        split(trimmed).1.to_owned()
    }

    /// `filepath.Join` of two elements.
    pub fn join(a: &str, b: &str) -> String {
        match (a.is_empty(), b.is_empty()) {
            (true, true) => String::new(),
            (true, false) => clean(b),
            (false, true) => clean(a),
            (false, false) => clean(&format!("{a}/{b}")),
        }
    }

    /// moby's `specifiesCurrentDir`: the last element is `.`.
    pub fn specifies_current_dir(path: &str) -> bool {
        base(path) == "."
    }

    /// moby's `assertsDirectory`: ends with `/` or `/.`.
    pub fn asserts_directory(path: &str) -> bool {
        path.ends_with('/') || specifies_current_dir(path)
    }

    /// moby's `PreserveTrailingDotOrSeparator`.
    pub fn preserve_trailing(cleaned: &str, original: &str) -> String {
        let mut out = cleaned.to_owned();
        if !specifies_current_dir(&out) && specifies_current_dir(original) {
            if !out.ends_with('/') {
                out.push('/');
            }
            out.push('.');
        }
        if !out.ends_with('/') && original.ends_with('/') {
            out.push('/');
        }
        out
    }

    /// moby's `SplitPathDirEntry`: the directory and the entry, a trailing `.` kept.
    pub fn split_dir_entry(path: &str) -> (String, String) {
        let mut cleaned = clean(path);
        if specifies_current_dir(path) {
            cleaned.push_str("/.");
        }
        (dir(&cleaned), base(&cleaned))
    }

    /// moby's `GetRebaseName`: the resolved path with the original's trailing `/.` or `/`,
    /// and the name the archive's top entry must take when the last element changed.
    pub fn rebase_name(path: &str, resolved: &str) -> (String, String) {
        let mut resolved = resolved.to_owned();
        if specifies_current_dir(path) && !specifies_current_dir(&resolved) {
            resolved.push_str("/.");
        }
        if path.ends_with('/') && !resolved.ends_with('/') {
            resolved.push('/');
        }
        let name = if base(path) != base(&resolved) {
            base(path)
        } else {
            String::new()
        };
        (resolved, name)
    }

    /// Go's `strings.Replace(s, old, new, 1)` (an empty `old` matches at the start).
    pub fn replace_first(s: &[u8], old: &[u8], new: &[u8]) -> Vec<u8> {
        if old.is_empty() {
            return [new, s].concat();
        }
        match s.windows(old.len()).position(|w| w == old) {
            Some(i) => [&s[..i], new, &s[i + old.len()..]].concat(),
            None => s.to_vec(),
        }
    }
}

/// The docker CLI's `splitCpArg`: `CONTAINER:PATH`, unless the argument is an absolute path or
/// starts with `.` (`./file:name`).
fn split_cp_arg(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.starts_with('.') => ((!c.is_empty()).then_some(c), p),
        _ => (None, arg),
    }
}

/// moby's `CopyInfo`: what is known of one side of a copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct CopyInfo {
    path: String,
    exists: bool,
    is_dir: bool,
    rebase_name: String,
}

/// `filepath.Abs` with the original's trailing `/.` or `/` kept (`resolveLocalPath`).
fn resolve_local_path(path: &str) -> Result<String, CliError> {
    let abs = if path.starts_with('/') {
        gopath::clean(path)
    } else {
        let cwd = std::env::current_dir().map_err(|e| path_error("getwd", ".", &e))?;
        gopath::join(&cwd.to_string_lossy(), path)
    };
    Ok(gopath::preserve_trailing(&abs, path))
}

/// Go's `filepath.EvalSymlinks` (its `walkSymlinks`): every symlink followed, the result
/// cleaned; an element that is no directory before a separator is `not a directory`.
fn eval_symlinks(path: &str) -> Result<String, CliError> {
    let mut path = path.to_owned();
    let mut vol = if path.starts_with('/') { "/" } else { "" };
    let mut dest = vol.to_owned();
    let mut links = 0;
    let mut end = vol.len();
    loop {
        let mut start = end;
        let bytes = path.as_bytes();
        while start < bytes.len() && bytes[start] == b'/' {
            start += 1;
        }
        end = start;
        while end < bytes.len() && bytes[end] != b'/' {
            end += 1;
        }
        let elem = &path[start..end];
        match elem {
            "" => break,
            "." => continue,
            ".." => {
                // The last separator after the volume, if any.
                let r = dest[vol.len()..].rfind('/').map(|i| i + vol.len());
                match r {
                    Some(r) if &dest[r + 1..] != ".." => dest.truncate(r),
                    _ => {
                        if dest.len() > vol.len() {
                            dest.push('/');
                        }
                        dest.push_str("..");
                    }
                }
                continue;
            }
            _ => {}
        }
        if !dest.is_empty() && !dest.ends_with('/') {
            dest.push('/');
        }
        dest.push_str(elem);
        let md = fs::symlink_metadata(&dest).map_err(|e| path_error("lstat", &dest, &e))?;
        if !md.file_type().is_symlink() {
            if !md.is_dir() && end < path.len() {
                return Err(fail("not a directory"));
            }
            continue;
        }
        links += 1;
        if links > 255 {
            return Err(fail("EvalSymlinks: too many links"));
        }
        let link = fs::read_link(&dest).map_err(|e| path_error("readlink", &dest, &e))?;
        let link = link.to_string_lossy().into_owned();
        path = format!("{link}{}", &path[end..]);
        if link.starts_with('/') {
            dest = "/".into();
            vol = "/";
            end = 1;
        } else {
            match dest[vol.len()..].rfind('/') {
                Some(i) => dest.truncate(i + vol.len()),
                None => dest = vol.to_owned(),
            }
            end = 0;
        }
    }
    Ok(gopath::clean(&dest))
}

/// moby's `CopyInfoSourcePath`: the local source, symlinks before its last separator evaluated
/// (all of them with `-L`).
fn copy_info_source_path(path: &str, follow_link: bool) -> Result<CopyInfo, CliError> {
    let (resolved, rebase_name) = if follow_link {
        let resolved = eval_symlinks(path)?;
        gopath::rebase_name(path, &resolved)
    } else {
        let (dir, base) = gopath::split(path);
        let resolved = format!("{}/{base}", eval_symlinks(dir)?);
        let rebase = if path.ends_with('/') && gopath::base(path) != gopath::base(&resolved) {
            gopath::base(path)
        } else {
            String::new()
        };
        (resolved, rebase)
    };
    let md = fs::symlink_metadata(&resolved).map_err(|e| path_error("lstat", &resolved, &e))?;
    Ok(CopyInfo {
        path: resolved,
        exists: true,
        is_dir: md.is_dir(),
        rebase_name,
    })
}

/// moby's `CopyInfoDestinationPath`: the local destination, a symlink in its last element
/// followed (up to 10 times); a missing destination needs an existing parent directory.
fn copy_info_destination_path(path: &str) -> Result<CopyInfo, CliError> {
    let original = path.to_owned();
    let mut path = path.to_owned();
    let mut links = 0;
    loop {
        match fs::symlink_metadata(&path) {
            Ok(md) if md.file_type().is_symlink() => {
                if links > 10 {
                    return Err(fail(format!("too many symlinks in {original}")));
                }
                links += 1;
                let target = fs::read_link(&path).map_err(|e| path_error("readlink", &path, &e))?;
                let mut target = target.to_string_lossy().into_owned();
                if !target.starts_with('/') {
                    target = gopath::join(&gopath::split_dir_entry(&path).0, &target);
                }
                path = target;
            }
            Ok(md) => {
                return Ok(CopyInfo {
                    exists: true,
                    is_dir: md.is_dir(),
                    path,
                    ..CopyInfo::default()
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let parent = gopath::split_dir_entry(&path).0;
                let md = fs::metadata(&parent).map_err(|e| path_error("stat", &parent, &e))?;
                if !md.is_dir() {
                    return Err(fail("not a directory"));
                }
                return Ok(CopyInfo {
                    path,
                    ..CopyInfo::default()
                });
            }
            Err(e) => return Err(path_error("lstat", &path, &e)),
        }
    }
}

/// moby's `PrepareArchiveCopy`: the directory the archive is extracted into, and the
/// `(old, new)` rename of its top entry when the copy takes the destination's name.
fn prepare_archive_copy(
    src: &CopyInfo,
    dst: &CopyInfo,
) -> Result<(String, Option<(String, String)>), CliError> {
    let (dst_dir, dst_base) = gopath::split_dir_entry(&dst.path);
    let (_, mut src_base) = gopath::split_dir_entry(&src.path);
    if !src.rebase_name.is_empty() {
        src_base = src.rebase_name.clone();
    }
    if dst.exists && dst.is_dir {
        return Ok((dst.path.clone(), None));
    }
    if dst.exists && src.is_dir {
        return Err(fail("cannot copy directory"));
    }
    if !dst.exists && !src.is_dir && gopath::asserts_directory(&dst.path) {
        return Err(fail("no such directory"));
    }
    Ok((dst_dir, Some((src_base, dst_base))))
}

/// Go's `ValidateOutputPathFileMode`.
fn validate_file_mode(mode: u32) -> Result<(), &'static str> {
    if mode & MODE_DEVICE != 0 {
        return Err("got a device");
    }
    if mode & MODE_IRREGULAR != 0 {
        return Err("got an irregular file");
    }
    Ok(())
}

/// The docker CLI's `ValidateOutputPath`: the parent directory exists, and the path, if it
/// exists, is no device.
fn validate_output_path(path: &str) -> Result<(), CliError> {
    let dir = gopath::dir(&gopath::clean(path));
    if !dir.is_empty() && dir != "." {
        if let Err(e) = fs::metadata(&dir) {
            if e.kind() == io::ErrorKind::NotFound {
                return Err(fail(format!(
                    "invalid output path: directory {dir:?} does not exist"
                )));
            }
        }
    }
    match fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(path_error("stat", path, &e)),
        Ok(md) if md.is_dir() || md.is_file() => Ok(()),
        Ok(md) => {
            let ft = md.file_type();
            let mode = if ft.is_block_device() || ft.is_char_device() {
                MODE_DEVICE
            } else {
                0
            };
            validate_file_mode(mode).map_err(|e| {
                fail(format!(
                    "invalid output path: {path:?} must be a directory or a regular file: {e}"
                ))
            })
        }
    }
}

/// dockerd's `PathStat`, from the `X-Docker-Container-Path-Stat` header.
#[derive(Debug, Clone, Default, serde::Deserialize)]
struct PathStat {
    #[serde(default)]
    mode: u32,
    #[serde(default, rename = "linkTarget")]
    link_target: String,
}

fn parse_stat(header: Option<&str>) -> Result<PathStat, String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(header.unwrap_or("").trim())
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&raw).map_err(|e| e.to_string())
}

fn archive_path(container: &str, path: &str) -> String {
    format!(
        "/containers/{}/archive?path={}",
        path_escape(container),
        super::q(path)
    )
}

/// `HEAD /containers/{id}/archive`: the stat of a container path; any failure is `None`, as
/// the docker CLI ignores it.
fn stat_path(ctx: &Ctx, container: &str, path: &str) -> Option<PathStat> {
    let r = ctx
        .client
        .request("HEAD", &archive_path(container, path), &[], Body::None)
        .ok()?;
    if r.status >= 400 {
        return None;
    }
    parse_stat(r.header("X-Docker-Container-Path-Stat")).ok()
}

/// A pipe as two files (std's `io::pipe` is newer than the crate's MSRV).
fn pipe() -> io::Result<(fs::File, fs::File)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    Ok((fs::File::from(r), fs::File::from(w)))
}

/// A reader that counts what passes, for the progress line.
struct Counted<R> {
    inner: R,
    total: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.total.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The docker CLI's progress line on a terminal stderr (`copyProgress`): redrawn every 75 ms
/// while the copy runs; `finish` erases it.
struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(header: &'static str, total: Arc<AtomicU64>) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        if !io::stderr().is_terminal() {
            return Progress { stop, thread: None };
        }
        let mut err = io::stderr();
        let _ = write!(err, "\x1b[sPreparing to copy...");
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut err = io::stderr();
            let _ = write!(err, "\x1b[?25l\x1b[u\x1b[2K{header}{}", human_size(0.0, 3));
            let mut last = 0u64;
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(75));
                let n = total.load(Ordering::Relaxed);
                if n == last {
                    continue;
                }
                let _ = write!(
                    err,
                    "\x1b[{}G\x1b[0K{}",
                    header.len() + 1,
                    human_size(n as f64, 3)
                );
                // As docker's loop does: the next comparison is against this sum.
                last = last.wrapping_add(n);
            }
            let _ = write!(err, "\x1b[?25h");
        });
        Progress {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
            let _ = write!(io::stderr(), "\x1b[u\x1b[2K");
        }
    }
}

/// moby's `RebaseArchiveEntries`, each rename applied in turn to every entry name (and hard
/// link target): the archive is rewritten in a thread, read from the returned pipe.
fn rebased<R: Read + Send + 'static>(
    content: R,
    renames: Vec<(String, String)>,
) -> io::Result<(fs::File, std::thread::JoinHandle<io::Result<()>>)> {
    let (reader, writer) = pipe()?;
    let thread = std::thread::spawn(move || -> io::Result<()> {
        let mut src = Reader::new(content, TarLimits::default());
        let mut out = Builder::new(io::BufWriter::new(writer));
        while let Some(mut e) = src.next_entry().map_err(io::Error::other)? {
            for (old, new) in &renames {
                // A root source (`/`) renames nothing away: its entries all start with `/`.
                let old = if old == "/" { "" } else { old.as_str() };
                e.path = gopath::replace_first(&e.path, old.as_bytes(), new.as_bytes());
                if e.kind == crate::image::tar::Kind::HardLink {
                    e.link = gopath::replace_first(&e.link, old.as_bytes(), new.as_bytes());
                }
            }
            let data = src.data();
            out.append(&e, data)?;
        }
        // The rest of the stream (its end blocks) is read too, as docker's progress counts it.
        io::copy(&mut src.into_inner(), &mut io::sink())?;
        out.finish()?.flush()
    });
    Ok((reader, thread))
}

/// moby's `CopyTo` with the docker CLI's options (`NoLchown`, `NoOverwriteDirNonDir`): the
/// archive unpacked into the destination, or into its parent under the destination's name.
fn copy_to_local<R: Read + Send + 'static>(
    content: R,
    src: &CopyInfo,
    renames: Vec<(String, String)>,
    dst_path: &str,
) -> Result<(), CliError> {
    let dst = copy_info_destination_path(dst_path)?;
    let (dst_dir, rename) = prepare_archive_copy(src, &dst)?;
    let mut renames = renames;
    renames.extend(rename);
    let dst_dir = gopath::clean(&dst_dir);
    let dir: OwnedFd = nix::fcntl::open(
        dst_dir.as_str(),
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| path_error("open", &dst_dir, &io::Error::from(e)))?;
    // The files belong to whoever runs the copy, as docker's `NoLchown` leaves them.
    let rules = CopyRules {
        no_overwrite_dir_non_dir: true,
        owner: Some((
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )),
    };
    let opts = ApplyOptions::default();
    let (result, writer) = if renames.is_empty() {
        (unpack_into_dir(dir, content, rules, &opts), None)
    } else {
        let (pipe, thread) =
            rebased(content, renames).map_err(|e| path_error("pipe", &dst_dir, &e))?;
        let r = unpack_into_dir(dir, pipe, rules, &opts);
        (r, Some(thread))
    };
    let rewritten = writer.map(|t| t.join().unwrap_or_else(|_| Err(io::Error::other("panic"))));
    match result {
        Ok(_) => match rewritten {
            Some(Err(e)) => Err(fail(format!("rewriting the archive: {e}"))),
            _ => Ok(()),
        },
        Err(e) => Err(unpack_error(&e, &dst_dir)),
    }
}

/// An unpacker error as docker's `Untar` words the ones a user meets.
fn unpack_error(e: &LayerError, dst_dir: &str) -> CliError {
    if let LayerError::WouldReplace {
        path,
        existing,
        new,
    } = e
    {
        let full = gopath::join(dst_dir, path);
        return fail(format!(
            "cannot overwrite {existing} {full:?} with {new} {dst_dir:?}"
        ));
    }
    let mut s = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    fail(s)
}

/// `cp`: between a container and the local filesystem, either way.
///
/// # Errors
/// The daemon's, the local filesystem's, and docker's refusals, in docker's words.
pub fn cp(ctx: &Ctx, a: CpArgs) -> Result<(), CliError> {
    if a.source.is_empty() {
        return Err(fail("source can not be empty"));
    }
    if a.destination.is_empty() {
        return Err(fail("destination can not be empty"));
    }
    // docker: without -q, the progress is shown only when stdout is a terminal.
    let quiet = a.quiet || !io::stdout().is_terminal();
    match (split_cp_arg(&a.source), split_cp_arg(&a.destination)) {
        ((Some(c), src), (None, dst)) => from_container(ctx, &a, quiet, c, src, dst),
        ((None, src), (Some(c), dst)) => to_container(ctx, &a, quiet, c, src, dst),
        ((Some(_), _), (Some(_), _)) => Err(fail("copying between containers is not supported")),
        ((None, _), (None, _)) => Err(fail("must specify at least one container source")),
    }
}

fn from_container(
    ctx: &Ctx,
    a: &CpArgs,
    quiet: bool,
    container: &str,
    src: &str,
    dst: &str,
) -> Result<(), CliError> {
    let dst_path = if dst == "-" {
        dst.to_owned()
    } else {
        resolve_local_path(dst)?
    };
    validate_output_path(&dst_path)?;
    let mut src_path = src.to_owned();
    let mut rebase_name = String::new();
    if a.follow_link {
        if let Some(st) = stat_path(ctx, container, &src_path) {
            if st.mode & MODE_SYMLINK != 0 {
                let mut target = st.link_target;
                if !target.starts_with('/') {
                    target = gopath::join(&gopath::split_dir_entry(&src_path).0, &target);
                }
                (src_path, rebase_name) = gopath::rebase_name(&src_path, &target);
            }
        }
    }
    let r = ctx
        .client
        .request("GET", &archive_path(container, &src_path), &[], Body::None)?
        .ok()?;
    let stat = parse_stat(r.header("X-Docker-Container-Path-Stat"))
        .map_err(|e| fail(format!("unable to get resource stat from response: {e}")))?;
    let mut content = r;
    if dst_path == "-" {
        let mut out = io::stdout().lock();
        io::copy(&mut content, &mut out).map_err(CliError::io("stdout"))?;
        return out.flush().map_err(CliError::io("stdout"));
    }
    let src_info = CopyInfo {
        path: src_path.clone(),
        exists: true,
        is_dir: stat.mode & MODE_DIR != 0,
        rebase_name: rebase_name.clone(),
    };
    let mut renames = Vec::new();
    if !rebase_name.is_empty() {
        renames.push((gopath::split_dir_entry(&src_path).1, rebase_name));
    }
    let total = Arc::new(AtomicU64::new(0));
    let counted = Counted {
        inner: content,
        total: total.clone(),
    };
    if quiet {
        return copy_to_local(counted, &src_info, renames, &dst_path);
    }
    let progress = Progress::start(FROM_CONTAINER_HEADER, total.clone());
    let res = copy_to_local(counted, &src_info, renames, &dst_path);
    progress.finish();
    let _ = writeln!(
        io::stderr(),
        "Successfully copied {} to {dst_path}",
        human_size(total.load(Ordering::Relaxed) as f64, 3)
    );
    res
}

fn to_container(
    ctx: &Ctx,
    a: &CpArgs,
    quiet: bool,
    container: &str,
    src: &str,
    dst: &str,
) -> Result<(), CliError> {
    let src_path = if src == "-" {
        src.to_owned()
    } else {
        resolve_local_path(src)?
    };
    let mut dst_info = CopyInfo {
        path: dst.to_owned(),
        ..CopyInfo::default()
    };
    let mut st = stat_path(ctx, container, dst);
    if let Some(s) = &st {
        if s.mode & MODE_SYMLINK != 0 {
            let mut target = s.link_target.clone();
            if !target.starts_with('/') {
                target = gopath::join(&gopath::split_dir_entry(dst).0, &target);
            }
            st = stat_path(ctx, container, &target);
            dst_info.path = target;
        }
    }
    validate_file_mode(st.as_ref().map_or(0, |s| s.mode)).map_err(|e| {
        fail(format!(
            "destination \"{container}:{dst}\" must be a directory or a regular file: {e}"
        ))
    })?;
    if let Some(s) = &st {
        dst_info.exists = true;
        dst_info.is_dir = s.mode & MODE_DIR != 0;
    }
    let mut query = String::from("&noOverwriteDirNonDir=true");
    if a.archive {
        query.push_str("&copyUIDGID=true");
    }
    if src_path == "-" {
        if !dst_info.is_dir {
            return Err(fail(format!(
                "destination \"{container}:{dst}\" must be a directory"
            )));
        }
        let path = format!("{}{query}", archive_path(container, &dst_info.path));
        let mut stdin = io::stdin().lock();
        let res = put(ctx, &path, &mut stdin);
        if !quiet {
            // The docker CLI counts nothing read from stdin.
            let _ = writeln!(
                io::stderr(),
                "Successfully copied {} to {container}:{}",
                human_size(0.0, 3),
                dst_info.path
            );
        }
        return res;
    }
    let src_info = copy_info_source_path(&src_path, a.follow_link)?;
    let (dst_dir, rename) = prepare_archive_copy(&src_info, &dst_info)?;
    let (parent, mut last) = gopath::split_dir_entry(&src_info.path);
    let mut name = if src_info.rebase_name.is_empty() {
        last.clone()
    } else {
        src_info.rebase_name.clone()
    };
    if let Some((_, new)) = rename {
        name = new;
    }
    if last == "/" {
        last = ".".into();
        if name == "/" {
            name = ".".into();
        }
    }
    let dir: OwnedFd = nix::fcntl::open(
        parent.as_str(),
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| path_error("open", &parent, &io::Error::from(e)))?;
    let (reader, writer) = pipe().map_err(|e| path_error("pipe", &parent, &e))?;
    let thread = std::thread::spawn(move || -> io::Result<()> {
        let out = io::BufWriter::with_capacity(256 << 10, writer);
        archive_entry(dir.as_fd(), last.as_bytes(), name.into_bytes(), out)?.flush()
    });
    let total = Arc::new(AtomicU64::new(0));
    let mut counted = Counted {
        inner: reader,
        total: total.clone(),
    };
    let path = format!("{}{query}", archive_path(container, &dst_dir));
    let progress = (!quiet).then(|| Progress::start(TO_CONTAINER_HEADER, total.clone()));
    let res = put(ctx, &path, &mut counted);
    // The archive writer ends once its pipe has no reader.
    drop(counted);
    let written = thread
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("panic")));
    if let Some(p) = progress {
        p.finish();
        let _ = writeln!(
            io::stderr(),
            "Successfully copied {} to {container}:{}",
            human_size(total.load(Ordering::Relaxed) as f64, 3),
            dst_info.path
        );
    }
    res?;
    written.map_err(|e| fail(format!("archiving {}: {}", src_info.path, go_io_text(&e))))
}

/// `PUT /containers/{id}/archive` with `body`.
fn put(ctx: &Ctx, path: &str, body: &mut dyn Read) -> Result<(), CliError> {
    let r = ctx
        .client
        .request("PUT", path, &[], Body::Stream(body, "application/x-tar"))?
        .ok()?;
    let _ = r.bytes();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::gopath::*;
    use super::*;

    #[test]
    fn go_paths() {
        assert_eq!(clean("/a//b/./c/../d/"), "/a/b/d");
        assert_eq!(clean("../a/.."), "..");
        assert_eq!(clean("/.."), "/");
        assert_eq!(clean(""), ".");
        assert_eq!(base("/a/b/"), "b");
        assert_eq!(base("/"), "/");
        assert_eq!(dir("/a/b"), "/a");
        assert_eq!(dir("a"), ".");
        assert_eq!(split_dir_entry("/a/b/."), ("/a/b".into(), ".".into()));
        assert_eq!(split_dir_entry("/a/b/"), ("/a".into(), "b".into()));
        assert_eq!(split_dir_entry("/"), ("/".into(), "/".into()));
        assert_eq!(preserve_trailing("/a/b", "b/."), "/a/b/.");
        assert_eq!(preserve_trailing("/a/b", "b/"), "/a/b/");
        assert_eq!(preserve_trailing("/", "/"), "/");
        assert_eq!(
            rebase_name("/d/link/", "/d/real"),
            ("/d/real/".into(), "link".into())
        );
        assert_eq!(rebase_name("/d/x", "/e/x"), ("/e/x".into(), String::new()));
        assert_eq!(replace_first(b"d/f", b"d", b"t"), b"t/f");
        assert_eq!(replace_first(b"/bin", b"", b"r"), b"r/bin");
        assert_eq!(replace_first(b"x", b"y", b"z"), b"x");
    }

    #[test]
    fn cp_arguments_split_as_docker_splits_them() {
        assert_eq!(split_cp_arg("c:/a"), (Some("c"), "/a"));
        assert_eq!(split_cp_arg("/a:b"), (None, "/a:b"));
        assert_eq!(split_cp_arg("./a:b"), (None, "./a:b"));
        assert_eq!(split_cp_arg("a"), (None, "a"));
        assert_eq!(split_cp_arg(":a"), (None, "a"));
        assert_eq!(split_cp_arg("-"), (None, "-"));
    }

    #[test]
    fn archive_copies_are_prepared_as_moby_prepares_them() {
        let info = |path: &str, exists, is_dir| CopyInfo {
            path: path.into(),
            exists,
            is_dir,
            rebase_name: String::new(),
        };
        let file = info("/s/f", true, false);
        let dir = info("/s/d", true, true);
        let dot = info("/s/d/.", true, true);
        assert_eq!(
            prepare_archive_copy(&file, &info("/t", true, true)).unwrap(),
            ("/t".into(), None)
        );
        assert_eq!(
            prepare_archive_copy(&file, &info("/t/g", true, false)).unwrap(),
            ("/t".into(), Some(("f".into(), "g".into())))
        );
        assert_eq!(
            prepare_archive_copy(&dot, &info("/t/n", false, false)).unwrap(),
            ("/t".into(), Some((".".into(), "n".into())))
        );
        let e = prepare_archive_copy(&dir, &info("/t/g", true, false)).unwrap_err();
        assert_eq!(e.to_string(), "cannot copy directory");
        let e = prepare_archive_copy(&file, &info("/t/n/", false, false)).unwrap_err();
        assert_eq!(e.to_string(), "no such directory");
    }

    #[test]
    fn symlinks_are_evaluated_as_go_evaluates_them() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_string_lossy().into_owned();
        fs::create_dir(t.path().join("real")).unwrap();
        fs::write(t.path().join("real/f"), "x").unwrap();
        std::os::unix::fs::symlink("real", t.path().join("rel")).unwrap();
        std::os::unix::fs::symlink(t.path().join("real/f"), t.path().join("abs")).unwrap();
        assert_eq!(
            eval_symlinks(&format!("{root}/rel/f")).unwrap(),
            format!("{root}/real/f")
        );
        assert_eq!(
            eval_symlinks(&format!("{root}/abs")).unwrap(),
            format!("{root}/real/f")
        );
        assert_eq!(
            eval_symlinks(&format!("{root}/rel/../real")).unwrap(),
            format!("{root}/real")
        );
        let e = eval_symlinks(&format!("{root}/real/f/")).unwrap_err();
        assert_eq!(e.to_string(), "not a directory");
        let e = eval_symlinks(&format!("{root}/nope/x")).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("lstat {root}/nope: no such file or directory")
        );
        let src = copy_info_source_path(&format!("{root}/rel/"), false).unwrap();
        assert_eq!(
            (src.path.as_str(), src.rebase_name.as_str(), src.is_dir),
            (format!("{root}/real/").as_str(), "rel", true)
        );
        let dst = copy_info_destination_path(&format!("{root}/abs")).unwrap();
        assert_eq!(dst.path, format!("{root}/real/f"));
        let e = copy_info_destination_path(&format!("{root}/real/f/x")).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("lstat {root}/real/f/x: not a directory")
        );
    }
}
