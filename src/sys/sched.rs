//! `sched_setattr(2)` and `personality(2)`: the scheduling policy and execution domain of the
//! calling process, which libc and nix do not wrap for every field the runtime-spec sets.

use nix::errno::Errno;

/// The kernel's `struct sched_attr`, first version (48 bytes, no utilization clamps).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct SchedAttr {
    /// Size of this struct.
    pub size: u32,
    /// `SCHED_*` policy.
    pub policy: u32,
    /// `SCHED_FLAG_*` bits.
    pub flags: u64,
    /// Nice value (SCHED_OTHER, SCHED_BATCH).
    pub nice: i32,
    /// Static priority (SCHED_FIFO, SCHED_RR).
    pub priority: u32,
    /// SCHED_DEADLINE runtime, nanoseconds.
    pub runtime: u64,
    /// SCHED_DEADLINE deadline, nanoseconds.
    pub deadline: u64,
    /// SCHED_DEADLINE period, nanoseconds.
    pub period: u64,
}

/// Sets the scheduling attributes of the calling thread (pid 0).
///
/// # Errors
/// The errno of `sched_setattr(2)`.
pub fn set_scheduler(mut attr: SchedAttr) -> Result<(), Errno> {
    attr.size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: `attr` is a live, fully initialised sched_attr whose size field says how much the
    // kernel may read; the kernel only reads it during the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            0 as libc::pid_t,
            &attr as *const SchedAttr,
            0 as libc::c_uint,
        )
    };
    Errno::result(ret).map(drop)
}

/// Sets the execution domain (`PER_LINUX`, `PER_LINUX32`) of the calling process.
///
/// # Errors
/// The errno of `personality(2)`.
pub fn set_personality(persona: libc::c_ulong) -> Result<(), Errno> {
    // SAFETY: personality takes a plain integer and touches no memory of ours.
    let ret = unsafe { libc::personality(persona) };
    Errno::result(ret).map(drop)
}
