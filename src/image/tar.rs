//! A tar reader written for hostile input, and the small writer used for exports and tests.
//!
//! Why not the `tar` crate: it reads PAX and GNU long-name records into memory without a bound
//! and silently lets a PAX `size` override a disagreeing ustar size. Here every metadata record
//! is bounded, every number is range-checked, the header checksum is verified, and a PAX size that
//! disagrees with a non-zero ustar size is refused, so framing cannot differ between readers.
//! Supported: ustar, GNU long names/links (`L`/`K`), PAX (`x`; `g` is read and ignored, as Go's
//! archive/tar does), base-256 numbers. Refused: sparse files and other GNU extensions.

use std::io::{self, Read, Write};

const BLOCK: usize = 512;

/// Bounds on what the reader accepts.
#[derive(Debug, Clone, Copy)]
pub struct TarLimits {
    /// Largest PAX, GNU long name or long link record read into memory.
    pub max_meta_record: u64,
    /// Largest path or link target.
    pub max_path: usize,
    /// Largest total of xattr values of one entry.
    pub max_xattr_bytes: usize,
}

impl Default for TarLimits {
    fn default() -> Self {
        TarLimits {
            max_meta_record: 1 << 20,
            max_path: 4096,
            max_xattr_bytes: 256 << 10,
        }
    }
}

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// the archive ends inside a header or an entry
    #[error("archive truncated at byte {0}")]
    Truncated(u64),
    /// a header's checksum does not match
    #[error("bad header checksum at byte {0}")]
    BadChecksum(u64),
    /// a numeric field is malformed or out of range
    #[error("bad numeric field {field} at byte {offset}")]
    BadNumber {
        /// the field name
        field: &'static str,
        /// where its header starts
        offset: u64,
    },
    /// a PAX record is malformed
    #[error("malformed pax record at byte {0}")]
    BadPax(u64),
    /// PAX and ustar sizes disagree
    #[error("pax size {pax} disagrees with ustar size {ustar} at byte {offset}")]
    SizeDisagreement {
        /// the PAX size
        pax: u64,
        /// the ustar field
        ustar: u64,
        /// where the header starts
        offset: u64,
    },
    /// a metadata record exceeds its limit
    #[error("{what} of {size} bytes at byte {offset} exceeds the limit")]
    TooLarge {
        /// which record
        what: &'static str,
        /// its size
        size: u64,
        /// where its header starts
        offset: u64,
    },
    /// an entry type this reader refuses
    #[error("unsupported entry type {0:?} at byte {1}")]
    UnsupportedType(char, u64),
    /// a name contains a NUL byte or is empty
    #[error("invalid name at byte {0}")]
    BadName(u64),
    /// i/o error of the underlying stream
    #[error("reading archive")]
    Io(#[source] io::Error),
}

/// Type of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// regular file (`0`, NUL, `7`)
    File,
    /// hard link (`1`)
    HardLink,
    /// symbolic link (`2`)
    Symlink,
    /// character device (`3`)
    CharDevice,
    /// block device (`4`)
    BlockDevice,
    /// directory (`5`)
    Directory,
    /// FIFO (`6`)
    Fifo,
}

impl Kind {
    /// The entry type for a file of type `ft`; `None` for a socket, which tar has no type for.
    #[must_use]
    pub fn of(ft: std::fs::FileType) -> Option<Kind> {
        use std::os::unix::fs::FileTypeExt;
        Some(if ft.is_dir() {
            Kind::Directory
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_file() {
            Kind::File
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_char_device() {
            Kind::CharDevice
        } else if ft.is_block_device() {
            Kind::BlockDevice
        } else {
            return None;
        })
    }

    fn flag(self) -> u8 {
        match self {
            Kind::File => b'0',
            Kind::HardLink => b'1',
            Kind::Symlink => b'2',
            Kind::CharDevice => b'3',
            Kind::BlockDevice => b'4',
            Kind::Directory => b'5',
            Kind::Fifo => b'6',
        }
    }
}

/// One entry's metadata, with PAX and GNU records applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path as stored (bytes, not yet cleaned).
    pub path: Vec<u8>,
    /// Entry type.
    pub kind: Kind,
    /// Permission bits incl. setuid/setgid/sticky (`0o7777`).
    pub mode: u32,
    /// Owner (range-checked by the caller).
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds of the modification time.
    pub mtime_nsec: u32,
    /// Data size (0 for everything but files).
    pub size: u64,
    /// Link target (hard or symbolic).
    pub link: Vec<u8>,
    /// Device major.
    pub dev_major: u64,
    /// Device minor.
    pub dev_minor: u64,
    /// Extended attributes (`SCHILY.xattr.*`), in archive order.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl Entry {
    /// A new entry with neutral metadata.
    #[must_use]
    pub fn new(path: impl Into<Vec<u8>>, kind: Kind) -> Entry {
        Entry {
            path: path.into(),
            kind,
            mode: if kind == Kind::Directory {
                0o755
            } else {
                0o644
            },
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            size: 0,
            link: Vec::new(),
            dev_major: 0,
            dev_minor: 0,
            xattrs: Vec::new(),
        }
    }

    /// The entry named `name` for the file at `path` whose metadata (links not followed) is
    /// `md`: its type, permission bits, owner, modification time in seconds, a symlink's target
    /// (read from `path`) and a device's numbers. The size stays 0 (the caller sets it with the
    /// data it appends), and so do `mtime_nsec` and the xattrs. `None` for a socket.
    ///
    /// # Errors
    /// Reading a symlink's target.
    pub fn from_metadata(
        name: impl Into<Vec<u8>>,
        path: &std::path::Path,
        md: &std::fs::Metadata,
    ) -> io::Result<Option<Entry>> {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::MetadataExt;
        let Some(kind) = Kind::of(md.file_type()) else {
            return Ok(None);
        };
        let mut e = Entry::new(name, kind);
        e.mode = md.mode() & 0o7777;
        e.uid = u64::from(md.uid());
        e.gid = u64::from(md.gid());
        e.mtime = md.mtime();
        match kind {
            Kind::Symlink => e.link = std::fs::read_link(path)?.as_os_str().as_bytes().to_vec(),
            Kind::CharDevice | Kind::BlockDevice => {
                e.dev_major = nix::sys::stat::major(md.rdev());
                e.dev_minor = nix::sys::stat::minor(md.rdev());
            }
            _ => {}
        }
        Ok(Some(e))
    }
}

#[derive(Default)]
struct Pending {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<(i64, u32)>,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// Streaming reader. Call [`Reader::next_entry`], then read the entry's data with
/// [`Reader::data`] (unread data is skipped by the next call).
#[derive(Debug)]
pub struct Reader<R> {
    inner: R,
    limits: TarLimits,
    offset: u64,
    remaining: u64,
    padding: u64,
    done: bool,
}

impl<R: Read> Reader<R> {
    /// Wraps a stream.
    pub fn new(inner: R, limits: TarLimits) -> Self {
        Reader {
            inner,
            limits,
            offset: 0,
            remaining: 0,
            padding: 0,
            done: false,
        }
    }

    /// Bytes consumed so far.
    #[must_use]
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Gives the wrapped stream back (e.g. to drain trailing bytes for a digest).
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn read_block(&mut self, buf: &mut [u8; BLOCK]) -> Result<bool, TarError> {
        let mut filled = 0;
        while filled < BLOCK {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TarError::Io(e)),
            }
        }
        self.offset += filled as u64;
        match filled {
            0 => Ok(false),
            BLOCK => Ok(true),
            _ => Err(TarError::Truncated(self.offset)),
        }
    }

    /// Skips `n` bytes of padding; `false` when the archive ends before.
    fn skip_padding(&mut self, mut n: u64) -> Result<bool, TarError> {
        let mut buf = [0u8; BLOCK];
        while n > 0 {
            let want = n.min(buf.len() as u64) as usize;
            match self.inner.read(&mut buf[..want]) {
                Ok(0) => return Ok(false),
                Ok(k) => {
                    n -= k as u64;
                    self.offset += k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TarError::Io(e)),
            }
        }
        Ok(true)
    }

    fn skip(&mut self, mut n: u64) -> Result<(), TarError> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let want = n.min(buf.len() as u64) as usize;
            let got = match self.inner.read(&mut buf[..want]) {
                Ok(0) => return Err(TarError::Truncated(self.offset)),
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(TarError::Io(e)),
            };
            n -= got as u64;
            self.offset += got as u64;
        }
        Ok(())
    }

    fn read_record(&mut self, size: u64, what: &'static str, at: u64) -> Result<Vec<u8>, TarError> {
        if size > self.limits.max_meta_record {
            return Err(TarError::TooLarge {
                what,
                size,
                offset: at,
            });
        }
        let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        let mut buf = vec![0u8; padded as usize];
        self.inner.read_exact(&mut buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                TarError::Truncated(self.offset)
            } else {
                TarError::Io(e)
            }
        })?;
        self.offset += padded;
        buf.truncate(size as usize);
        Ok(buf)
    }

    /// The next entry, or `None` at the end of the archive.
    ///
    /// # Errors
    /// Any [`TarError`]; after an error the reader must not be used further.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, TarError> {
        if self.done {
            return Ok(None);
        }
        let (rest, padding) = (self.remaining, self.padding);
        self.remaining = 0;
        self.padding = 0;
        self.skip(rest)?;
        if !self.skip_padding(padding)? {
            // EOF inside the last entry's padding: the end, as Go's reader takes it (its
            // `tryReadFull`). The docker CLI's tar of a Dockerfile from stdin or from outside
            // the context ends that way: its writer is closed after the pipe it writes to.
            self.done = true;
            return Ok(None);
        }
        let mut pending = Pending::default();
        let mut block = [0u8; BLOCK];
        loop {
            let at = self.offset;
            if !self.read_block(&mut block)? {
                // EOF without the end-of-archive marker: accepted, as GNU tar and Go do.
                self.done = true;
                return Ok(None);
            }
            if block.iter().all(|&b| b == 0) {
                self.done = true;
                return Ok(None);
            }
            verify_checksum(&block, at)?;
            let size = number(&block[124..136], "size", at)?;
            let flag = block[156];
            match flag {
                b'x' => {
                    let rec = self.read_record(size, "pax header", at)?;
                    parse_pax(&rec, &mut pending, &self.limits, at)?;
                    continue;
                }
                b'g' => {
                    let _ = self.read_record(size, "global pax header", at)?;
                    continue;
                }
                b'L' => {
                    let mut rec = self.read_record(size, "gnu long name", at)?;
                    trim_nul(&mut rec);
                    pending.path = Some(rec);
                    continue;
                }
                b'K' => {
                    let mut rec = self.read_record(size, "gnu long link", at)?;
                    trim_nul(&mut rec);
                    pending.link = Some(rec);
                    continue;
                }
                _ => {}
            }
            let kind = match flag {
                b'0' | 0 | b'7' => Kind::File,
                b'1' => Kind::HardLink,
                b'2' => Kind::Symlink,
                b'3' => Kind::CharDevice,
                b'4' => Kind::BlockDevice,
                b'5' => Kind::Directory,
                b'6' => Kind::Fifo,
                other => return Err(TarError::UnsupportedType(other as char, at)),
            };
            let ustar = &block[257..263] == b"ustar\0" || &block[257..263] == b"ustar ";
            let mut path = match pending.path.take() {
                Some(p) => p,
                None => {
                    let name = cstr(&block[0..100]);
                    let prefix = if &block[257..263] == b"ustar\0" {
                        cstr(&block[345..500])
                    } else {
                        &[]
                    };
                    if prefix.is_empty() {
                        name.to_vec()
                    } else {
                        [prefix, b"/", name].concat()
                    }
                }
            };
            let link = pending
                .link
                .take()
                .unwrap_or_else(|| cstr(&block[157..257]).to_vec());
            if path.is_empty() || path.contains(&0) || link.contains(&0) {
                return Err(TarError::BadName(at));
            }
            if path.len() > self.limits.max_path || link.len() > self.limits.max_path {
                return Err(TarError::TooLarge {
                    what: "path",
                    size: path.len().max(link.len()) as u64,
                    offset: at,
                });
            }
            let size = match pending.size {
                Some(p) if size != 0 && p != size => {
                    return Err(TarError::SizeDisagreement {
                        pax: p,
                        ustar: size,
                        offset: at,
                    })
                }
                Some(p) => p,
                None => size,
            };
            // Old tars mark directories with a trailing slash on a regular-file entry.
            let kind = if kind == Kind::File && path.ends_with(b"/") {
                Kind::Directory
            } else {
                kind
            };
            let data_size = match kind {
                Kind::File => size,
                // Links, devices, dirs and fifos carry no data; a size on them is skipped.
                _ => size,
            };
            let mode = number(&block[100..108], "mode", at)?;
            let (mtime, mtime_nsec) = match pending.mtime {
                Some(m) => m,
                None => {
                    let m = number(&block[136..148], "mtime", at)?;
                    (
                        i64::try_from(m).map_err(|_| TarError::BadNumber {
                            field: "mtime",
                            offset: at,
                        })?,
                        0,
                    )
                }
            };
            let (dev_major, dev_minor) = if ustar {
                (
                    number(&block[329..337], "devmajor", at)?,
                    number(&block[337..345], "devminor", at)?,
                )
            } else {
                (0, 0)
            };
            while path.len() > 1 && path.ends_with(b"//") {
                path.pop();
            }
            let entry = Entry {
                path,
                kind,
                mode: (mode & 0o7777) as u32,
                uid: match pending.uid {
                    Some(u) => u,
                    None => number(&block[108..116], "uid", at)?,
                },
                gid: match pending.gid {
                    Some(g) => g,
                    None => number(&block[116..124], "gid", at)?,
                },
                mtime,
                mtime_nsec,
                size: if kind == Kind::File { size } else { 0 },
                link,
                dev_major,
                dev_minor,
                xattrs: std::mem::take(&mut pending.xattrs),
            };
            self.remaining = data_size;
            self.padding = data_size.next_multiple_of(BLOCK as u64) - data_size;
            return Ok(Some(entry));
        }
    }

    /// Reader over the current entry's data.
    pub fn data(&mut self) -> Data<'_, R> {
        Data { reader: self }
    }
}

/// The data of the current entry.
#[derive(Debug)]
pub struct Data<'a, R> {
    reader: &'a mut Reader<R>,
}

impl<R: Read> Read for Data<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = &mut *self.reader;
        if r.remaining == 0 {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(r.remaining) as usize;
        let n = r.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive truncated inside an entry",
            ));
        }
        r.remaining -= n as u64;
        r.offset += n as u64;
        Ok(n)
    }
}

fn trim_nul(v: &mut Vec<u8>) {
    while v.last() == Some(&0) {
        v.pop();
    }
}

fn cstr(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

fn verify_checksum(block: &[u8; BLOCK], at: u64) -> Result<(), TarError> {
    let stored = number(&block[148..156], "checksum", at).map_err(|_| TarError::BadChecksum(at))?;
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    if stored == unsigned || i64::try_from(stored).ok() == Some(signed) {
        Ok(())
    } else {
        Err(TarError::BadChecksum(at))
    }
}

/// Parses an octal (NUL/space padded) or base-256 numeric field.
fn number(field: &[u8], name: &'static str, at: u64) -> Result<u64, TarError> {
    let bad = || TarError::BadNumber {
        field: name,
        offset: at,
    };
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        // base-256: first byte 0x80 is positive, 0xff negative (refused).
        if field[0] == 0xff {
            return Err(bad());
        }
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v
                .checked_mul(256)
                .ok_or_else(bad)?
                .checked_add(u64::from(b))
                .ok_or_else(bad)?;
        }
        return Ok(v);
    }
    let s = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|&b| b != 0 && b != b' ')
        .collect::<Vec<u8>>();
    // Anything after the digits must be padding.
    let digits_end = field
        .iter()
        .position(|&b| b != b' ')
        .map_or(field.len(), |p| p + s.len());
    if field[digits_end..].iter().any(|&b| b != 0 && b != b' ') {
        return Err(bad());
    }
    if s.is_empty() {
        return Ok(0);
    }
    let mut v: u64 = 0;
    for b in s {
        if !(b'0'..=b'7').contains(&b) {
            return Err(bad());
        }
        v = v
            .checked_mul(8)
            .ok_or_else(bad)?
            .checked_add(u64::from(b - b'0'))
            .ok_or_else(bad)?;
    }
    Ok(v)
}

fn parse_pax(rec: &[u8], p: &mut Pending, limits: &TarLimits, at: u64) -> Result<(), TarError> {
    let bad = || TarError::BadPax(at);
    let mut rest = rec;
    let mut xattr_bytes = 0usize;
    while !rest.is_empty() {
        let sp = rest.iter().position(|&b| b == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(bad());
        }
        let kv = &rest[sp + 1..len - 1];
        rest = &rest[len..];
        let eq = kv.iter().position(|&b| b == b'=').ok_or_else(bad)?;
        let key = std::str::from_utf8(&kv[..eq]).map_err(|_| bad())?;
        let value = &kv[eq + 1..];
        let num = |v: &[u8]| -> Result<u64, TarError> {
            std::str::from_utf8(v)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)
        };
        match key {
            "path" => p.path = Some(value.to_vec()),
            "linkpath" => p.link = Some(value.to_vec()),
            "size" => p.size = Some(num(value)?),
            "uid" => p.uid = Some(num(value)?),
            "gid" => p.gid = Some(num(value)?),
            "mtime" => {
                let s = std::str::from_utf8(value).map_err(|_| bad())?;
                let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
                let secs: i64 = secs.parse().map_err(|_| bad())?;
                let frac: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
                let nsec: u32 = frac.parse().map_err(|_| bad())?;
                p.mtime = Some((secs, if secs < 0 { 0 } else { nsec }));
            }
            _ => {
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    xattr_bytes += value.len() + name.len();
                    if xattr_bytes > limits.max_xattr_bytes {
                        return Err(TarError::TooLarge {
                            what: "xattrs",
                            size: xattr_bytes as u64,
                            offset: at,
                        });
                    }
                    p.xattrs.push((name.to_owned(), value.to_vec()));
                }
                // Other keys (atime, ctime, uname, gname, comment, vendor keys) do not change
                // what is unpacked.
            }
        }
    }
    Ok(())
}

/// Writes tar archives (ustar, with a PAX record where a field does not fit).
#[derive(Debug)]
pub struct Builder<W: Write> {
    inner: W,
}

impl<W: Write> Builder<W> {
    /// Wraps a sink.
    pub fn new(inner: W) -> Self {
        Builder { inner }
    }

    /// Appends an entry and its data (`data.len()` must equal `entry.size` for files).
    ///
    /// # Errors
    /// I/O errors of the sink, or `InvalidInput` if the data length is wrong.
    pub fn append(&mut self, entry: &Entry, data: impl Read) -> io::Result<()> {
        let mut pax = Vec::new();
        let mut rec = |k: &str, v: &[u8]| {
            let body_len = k.len() + v.len() + 3;
            let mut len = body_len + body_len.to_string().len();
            if len.to_string().len() != body_len.to_string().len() {
                len += 1;
            }
            pax.extend_from_slice(format!("{len} {k}=").as_bytes());
            pax.extend_from_slice(v);
            pax.push(b'\n');
        };
        if entry.path.len() > 100 {
            rec("path", &entry.path);
        }
        if entry.link.len() > 100 {
            rec("linkpath", &entry.link);
        }
        if entry.uid > 0o7777777 {
            rec("uid", entry.uid.to_string().as_bytes());
        }
        if entry.gid > 0o7777777 {
            rec("gid", entry.gid.to_string().as_bytes());
        }
        if entry.size > 0o77777777777 {
            rec("size", entry.size.to_string().as_bytes());
        }
        if entry.mtime_nsec != 0 || entry.mtime < 0 || entry.mtime > 0o77777777777 {
            rec(
                "mtime",
                format!("{}.{:09}", entry.mtime, entry.mtime_nsec).as_bytes(),
            );
        }
        for (k, v) in &entry.xattrs {
            rec(&format!("SCHILY.xattr.{k}"), v);
        }
        if !pax.is_empty() {
            let mut h = Entry::new(b"PaxHeaders/entry".to_vec(), Kind::File);
            h.size = pax.len() as u64;
            self.header(&h, b'x')?;
            self.inner.write_all(&pax)?;
            self.pad(pax.len() as u64)?;
        }
        self.header(entry, entry.kind.flag())?;
        let size = if entry.kind == Kind::File {
            entry.size
        } else {
            0
        };
        let n = io::copy(&mut data.take(size), &mut self.inner)?;
        if n != size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "entry data shorter than its size",
            ));
        }
        self.pad(size)
    }

    /// Writes raw bytes (for crafting hostile archives in tests and fuzz seeds).
    ///
    /// # Errors
    /// I/O errors of the sink.
    pub fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes)
    }

    /// Writes the end-of-archive marker and returns the sink.
    ///
    /// # Errors
    /// I/O errors of the sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.inner.write_all(&[0u8; BLOCK * 2])?;
        self.inner.flush()?;
        Ok(self.inner)
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let pad = (size.next_multiple_of(BLOCK as u64) - size) as usize;
        self.inner.write_all(&[0u8; BLOCK][..pad])
    }

    fn header(&mut self, e: &Entry, flag: u8) -> io::Result<()> {
        let mut b = [0u8; BLOCK];
        let n = e.path.len().min(100);
        b[..n].copy_from_slice(&e.path[..n]);
        octal(&mut b[100..108], u64::from(e.mode));
        octal(&mut b[108..116], e.uid.min(0o7777777));
        octal(&mut b[116..124], e.gid.min(0o7777777));
        let size = if flag == b'x' || e.kind == Kind::File {
            e.size
        } else {
            0
        };
        octal(
            &mut b[124..136],
            if size > 0o77777777777 { 0 } else { size },
        );
        octal(
            &mut b[136..148],
            u64::try_from(e.mtime).unwrap_or(0).min(0o77777777777),
        );
        b[156] = flag;
        let n = e.link.len().min(100);
        b[157..157 + n].copy_from_slice(&e.link[..n]);
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        octal(&mut b[329..337], e.dev_major.min(0o7777777));
        octal(&mut b[337..345], e.dev_minor.min(0o7777777));
        b[148..156].copy_from_slice(b"        ");
        let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
        octal(&mut b[148..155], sum);
        self.inner.write_all(&b)
    }
}

/// Writes `v` as zero-padded octal filling `field` but its last byte (a NUL).
fn octal(field: &mut [u8], v: u64) {
    let width = field.len() - 1;
    let s = format!("{v:0width$o}");
    let s = &s.as_bytes()[s.len().saturating_sub(width)..];
    field[..width].copy_from_slice(s);
    field[width] = 0;
}

/// Computes a valid header checksum for a raw 512-byte block (for crafting archives).
pub fn fix_checksum(block: &mut [u8; BLOCK]) {
    block[148..156].copy_from_slice(b"        ");
    let sum: u64 = block.iter().map(|&x| u64::from(x)).sum();
    octal(&mut block[148..155], sum);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(entries: &[(Entry, Vec<u8>)]) -> Vec<(Entry, Vec<u8>)> {
        let mut b = Builder::new(Vec::new());
        for (e, d) in entries {
            b.append(e, &d[..]).unwrap();
        }
        let bytes = b.finish().unwrap();
        let mut r = Reader::new(&bytes[..], TarLimits::default());
        let mut out = Vec::new();
        while let Some(e) = r.next_entry().unwrap() {
            let mut d = Vec::new();
            r.data().read_to_end(&mut d).unwrap();
            out.push((e, d));
        }
        out
    }

    #[test]
    fn writer_and_reader_agree() {
        let mut f = Entry::new("a/".repeat(80) + "file", Kind::File);
        f.size = 3;
        f.uid = 1 << 30;
        f.mode = 0o4755;
        f.mtime = 1_700_000_000;
        f.mtime_nsec = 5;
        f.xattrs = vec![("user.k".into(), b"v".to_vec())];
        let mut l = Entry::new("link", Kind::Symlink);
        l.link = b"t".repeat(200);
        let got = roundtrip(&[(f.clone(), b"abc".to_vec()), (l.clone(), vec![])]);
        assert_eq!(got, vec![(f, b"abc".to_vec()), (l, vec![])]);
    }

    fn header(name: &str, flag: u8, size: u64) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        b[..name.len()].copy_from_slice(name.as_bytes());
        octal(&mut b[100..108], 0o644);
        octal(&mut b[124..136], size);
        b[156] = flag;
        b[257..263].copy_from_slice(b"ustar\0");
        fix_checksum(&mut b);
        b
    }

    #[test]
    fn refuses_disagreeing_pax_size() {
        let pax = b"12 size=100\n";
        let mut bytes = header("pax", b'x', pax.len() as u64).to_vec();
        bytes.extend_from_slice(pax);
        bytes.resize(1024, 0);
        bytes.extend_from_slice(&header("f", b'0', 5));
        bytes.extend_from_slice(&[0u8; 1536]);
        let mut r = Reader::new(&bytes[..], TarLimits::default());
        assert!(matches!(
            r.next_entry(),
            Err(TarError::SizeDisagreement {
                pax: 100,
                ustar: 5,
                ..
            })
        ));
    }

    #[test]
    fn refuses_truncated_and_corrupt_headers() {
        let h = header("f", b'0', 0);
        let mut r = Reader::new(&h[..300], TarLimits::default());
        assert!(matches!(r.next_entry(), Err(TarError::Truncated(_))));
        let mut bad = h;
        bad[0] = b'g';
        let mut r = Reader::new(&bad[..], TarLimits::default());
        assert!(matches!(r.next_entry(), Err(TarError::BadChecksum(_))));
        // data shorter than the declared size
        let h = header("f", b'0', 4096);
        let mut r = Reader::new(&h[..], TarLimits::default());
        r.next_entry().unwrap().unwrap();
        assert!(r.data().read_to_end(&mut Vec::new()).is_err());
    }

    #[test]
    fn an_archive_may_end_inside_the_last_padding() {
        // As the docker CLI sends a context with a Dockerfile from stdin, and Go reads it.
        let mut b = Builder::new(Vec::new());
        let mut e = Entry::new(b"a".to_vec(), Kind::File);
        e.size = 3;
        b.append(&e, &b"abc"[..]).unwrap();
        let mut e = Entry::new(b"b".to_vec(), Kind::File);
        e.size = 64;
        b.append(&e, &[7u8; 64][..]).unwrap();
        let bytes = b.finish().unwrap();
        let cut = &bytes[..3 * BLOCK + 64];
        let mut r = Reader::new(cut, TarLimits::default());
        assert_eq!(r.next_entry().unwrap().unwrap().path, b"a");
        let mut data = Vec::new();
        assert_eq!(r.next_entry().unwrap().unwrap().path, b"b");
        r.data().read_to_end(&mut data).unwrap();
        assert_eq!(data, [7u8; 64]);
        assert!(r.next_entry().unwrap().is_none());
        // Cut inside the data, it is still truncated.
        let mut r = Reader::new(&bytes[..3 * BLOCK + 10], TarLimits::default());
        r.next_entry().unwrap();
        r.next_entry().unwrap();
        assert!(r.next_entry().is_err());
    }

    #[test]
    fn bounds_metadata_records() {
        let mut bytes = header("long", b'L', 10 << 20).to_vec();
        bytes.resize(BLOCK * 4, b'a');
        let mut r = Reader::new(&bytes[..], TarLimits::default());
        assert!(matches!(r.next_entry(), Err(TarError::TooLarge { .. })));
    }

    #[test]
    fn refuses_overflowing_numbers() {
        let mut b = header("f", b'0', 0);
        // base-256 uid that overflows u64
        b[108] = 0x80;
        b[109..116].fill(0xff);
        let mut bytes = b;
        bytes[124..136].copy_from_slice(&[
            0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ]);
        fix_checksum(&mut bytes);
        let mut r = Reader::new(&bytes[..], TarLimits::default());
        assert!(matches!(r.next_entry(), Err(TarError::BadNumber { .. })));
        let mut b = header("f", b'0', 0);
        b[100..108].copy_from_slice(b"0000x44\0");
        fix_checksum(&mut b);
        let mut r = Reader::new(&b[..], TarLimits::default());
        assert!(matches!(r.next_entry(), Err(TarError::BadNumber { .. })));
    }

    #[test]
    fn entries_from_metadata_carry_what_the_file_has() {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "data").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o4751)).unwrap();
        let md = std::fs::symlink_metadata(&file).unwrap();
        let e = Entry::from_metadata("f", &file, &md).unwrap().unwrap();
        assert_eq!((e.kind, e.mode, e.size), (Kind::File, 0o4751, 0));
        assert_eq!(
            (e.uid, e.gid, e.mtime),
            (u64::from(md.uid()), u64::from(md.gid()), md.mtime())
        );

        let link = dir.path().join("l");
        // Not UTF-8: the target's bytes are kept as they are.
        let target = std::ffi::OsStr::from_bytes(b"../target \xff");
        std::os::unix::fs::symlink(target, &link).unwrap();
        let md = std::fs::symlink_metadata(&link).unwrap();
        let e = Entry::from_metadata("l", &link, &md).unwrap().unwrap();
        assert_eq!(
            (e.kind, e.link.as_slice()),
            (Kind::Symlink, b"../target \xff".as_slice())
        );

        let md = std::fs::symlink_metadata(dir.path()).unwrap();
        let e = Entry::from_metadata("d/", dir.path(), &md)
            .unwrap()
            .unwrap();
        assert_eq!(
            (e.kind, e.path.as_slice()),
            (Kind::Directory, b"d/".as_slice())
        );

        let fifo = dir.path().join("p");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let md = std::fs::symlink_metadata(&fifo).unwrap();
        assert_eq!(
            Entry::from_metadata("p", &fifo, &md).unwrap().unwrap().kind,
            Kind::Fifo
        );

        let null = std::path::Path::new("/dev/null");
        let md = std::fs::symlink_metadata(null).unwrap();
        let e = Entry::from_metadata("null", null, &md).unwrap().unwrap();
        assert_eq!((e.kind, e.dev_major, e.dev_minor), (Kind::CharDevice, 1, 3));

        let sock = dir.path().join("s");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let md = std::fs::symlink_metadata(&sock).unwrap();
        assert!(Entry::from_metadata("s", &sock, &md).unwrap().is_none());
    }
}
