//! Raw `bpf(2)` wrapper for what the cgroup v2 device controller needs: loading a
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program and attaching, querying and detaching it on a cgroup.
//!
//! libc has no `union bpf_attr`, so each command gets its own `#[repr(C)]` prefix of that union
//! (uapi/linux/bpf.h); the kernel accepts an attribute shorter than its own union and zero-fills
//! the rest.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `BPF_PROG_TYPE_CGROUP_DEVICE` (uapi enum bpf_prog_type).
pub const PROG_TYPE_CGROUP_DEVICE: u32 = 15;
/// `BPF_CGROUP_DEVICE` (uapi enum bpf_attach_type).
pub const ATTACH_TYPE_CGROUP_DEVICE: u32 = 6;
/// `BPF_F_ALLOW_MULTI`: several programs may be attached to one cgroup; all must allow.
pub const F_ALLOW_MULTI: u32 = 2;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;

/// One eBPF instruction (uapi `struct bpf_insn`); `regs` packs `dst_reg` in the low nibble and
/// `src_reg` in the high nibble, which is the uapi bitfield layout on little-endian hosts.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode: class | size/op | mode/source.
    pub code: u8,
    /// `dst_reg | src_reg << 4`.
    pub regs: u8,
    /// Signed offset (memory access displacement or jump distance).
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

impl Insn {
    /// Builds an instruction from its parts.
    #[must_use]
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Self {
            code,
            regs: (dst & 0x0f) | ((src & 0x0f) << 4),
            off,
            imm,
        }
    }

    /// Destination register.
    #[must_use]
    pub const fn dst(&self) -> u8 {
        self.regs & 0x0f
    }

    /// Source register.
    #[must_use]
    pub const fn src(&self) -> u8 {
        self.regs >> 4
    }
}

#[repr(C, align(8))]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C, align(8))]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    // Explicit so no padding byte goes to the kernel uninitialized: newer kernels read a
    // `relative_fd` here and refuse a non-zero one without BPF_F_BEFORE/AFTER.
    relative_fd: u32,
}

#[repr(C, align(8))]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    // Explicit padding, zeroed (the kernel checks unused attribute bytes are zero).
    reserved: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// Calls `bpf(cmd, attr, sizeof attr)` and returns the non-negative result.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, exclusively borrowed `#[repr(C)]` prefix of `union bpf_attr` for
    // this command, and its exact size is passed, so the kernel reads and writes only inside it.
    // Pointers stored inside `attr` are kept alive by the callers for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr).cast::<libc::c_void>(),
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Takes ownership of a file descriptor the kernel just returned.
fn owned_fd(ret: libc::c_long) -> io::Result<OwnedFd> {
    let fd = RawFd::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: `fd` was just returned by a successful bpf(2) call that creates a new descriptor;
    // nothing else owns it yet.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Loads a program of `prog_type`; on a verifier rejection the error carries the verifier log.
///
/// The first load asks for no log: with a log the verifier formats every instruction it checks
/// into it, time spent on every container start (benches/README.md). Only when the kernel
/// refuses the program is it loaded again with a log, to say why.
///
/// # Errors
/// Returns the kernel's error (`EPERM` without `CAP_BPF`/`CAP_SYS_ADMIN`, `EINVAL` on a
/// rejected program) and, when the verifier said something, its log in the message.
pub fn prog_load(prog_type: u32, insns: &[Insn], license: &CStr) -> io::Result<OwnedFd> {
    let insn_cnt =
        u32::try_from(insns.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..ProgLoadAttr::default()
    };
    let err = match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => return owned_fd(fd),
        Err(err) => err,
    };
    let mut log = vec![0u8; 64 * 1024];
    attr.log_level = 1;
    attr.log_size = log.len() as u32;
    attr.log_buf = log.as_mut_ptr() as u64;
    match bpf(BPF_PROG_LOAD, &mut attr) {
        // Loaded with a log after failing without one: nothing to explain, use it.
        Ok(fd) => owned_fd(fd),
        Err(_) => {
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]).trim().to_owned();
            if text.is_empty() {
                Err(err)
            } else {
                Err(io::Error::new(
                    err.kind(),
                    format!("{err}; verifier log: {text}"),
                ))
            }
        }
    }
}

/// Attaches `prog` to the cgroup directory `target` (`BPF_PROG_ATTACH`).
///
/// # Errors
/// Returns the kernel's error.
pub fn prog_attach(
    prog: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    attach_type: u32,
    flags: u32,
) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: fd_u32(target)?,
        attach_bpf_fd: fd_u32(prog)?,
        attach_type,
        attach_flags: flags,
        ..AttachAttr::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(|_| ())
}

/// Detaches `prog` from the cgroup directory `target` (`BPF_PROG_DETACH`).
///
/// # Errors
/// Returns the kernel's error (`ENOENT` when `prog` is not attached there).
pub fn prog_detach(
    prog: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    attach_type: u32,
) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: fd_u32(target)?,
        attach_bpf_fd: fd_u32(prog)?,
        attach_type,
        ..AttachAttr::default()
    };
    bpf(BPF_PROG_DETACH, &mut attr).map(|_| ())
}

/// Ids of the programs attached directly to the cgroup directory `target` (`BPF_PROG_QUERY`).
///
/// # Errors
/// Returns the kernel's error.
pub fn prog_query(target: BorrowedFd<'_>, attach_type: u32) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    loop {
        let mut attr = QueryAttr {
            target_fd: fd_u32(target)?,
            attach_type,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: ids.len() as u32,
            ..QueryAttr::default()
        };
        match bpf(BPF_PROG_QUERY, &mut attr) {
            Ok(_) => {
                ids.truncate(attr.prog_cnt as usize);
                return Ok(ids);
            }
            // The kernel reports the real count in prog_cnt when the buffer was too small.
            Err(err)
                if err.raw_os_error() == Some(libc::ENOSPC)
                    && attr.prog_cnt as usize > ids.len() =>
            {
                ids = vec![0u32; attr.prog_cnt as usize];
            }
            Err(err) => return Err(err),
        }
    }
}

/// Opens a loaded program by id (`BPF_PROG_GET_FD_BY_ID`).
///
/// # Errors
/// Returns the kernel's error (`ENOENT` when the program is gone).
pub fn prog_get_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetFdByIdAttr {
        prog_id: id,
        ..GetFdByIdAttr::default()
    };
    owned_fd(bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)?)
}

fn fd_u32(fd: BorrowedFd<'_>) -> io::Result<u32> {
    u32::try_from(fd.as_raw_fd()).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_layouts_match_the_uapi_offsets() {
        // uapi: expected_attach_type sits at byte 68 of the BPF_PROG_LOAD member.
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(QueryAttr, prog_ids), 16);
        assert_eq!(std::mem::offset_of!(QueryAttr, prog_cnt), 24);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        // No implicit padding: every byte handed to the kernel is an initialized field.
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 72);
        assert_eq!(std::mem::size_of::<AttachAttr>(), 6 * 4);
        assert_eq!(std::mem::size_of::<QueryAttr>(), 4 * 4 + 8 + 2 * 4);
        assert_eq!(std::mem::size_of::<GetFdByIdAttr>(), 3 * 4);
    }

    /// The first load asks for no log; a rejected program is loaded again with one, so the
    /// error still says what the verifier found.
    #[test]
    fn a_rejected_program_reports_the_verifier_log() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        // `exit` with r0 never written: the verifier refuses ("R0 !read_ok").
        let insns = [Insn::new(0x95, 0, 0, 0, 0)];
        let err = prog_load(PROG_TYPE_CGROUP_DEVICE, &insns, c"GPL").expect_err("rejected");
        assert!(err.to_string().contains("verifier log: "), "{err}");
        assert!(err.to_string().contains("R0"), "{err}");
        // And a valid one loads: r0 = 1; exit.
        let ok = [Insn::new(0xb7, 0, 0, 0, 1), Insn::new(0x95, 0, 0, 0, 0)];
        prog_load(PROG_TYPE_CGROUP_DEVICE, &ok, c"GPL").expect("valid program loads");
    }

    #[test]
    fn insn_packs_registers_low_nibble_first() {
        let insn = Insn::new(0x61, 2, 1, 4, 0);
        assert_eq!(insn.regs, 0x12);
        assert_eq!((insn.dst(), insn.src()), (2, 1));
    }
}
