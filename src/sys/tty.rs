//! Terminal ioctls that `nix` does not wrap safely.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

/// Makes the terminal `fd` the controlling terminal of the calling session leader (`TIOCSCTTY`).
///
/// # Errors
/// The errno of the ioctl.
pub fn set_controlling_terminal(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal), no memory is passed.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    Errno::result(ret).map(drop)
}

/// Sets the window size of the terminal `fd` (`TIOCSWINSZ`).
///
/// # Errors
/// The errno of the ioctl.
pub fn set_window_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<(), Errno> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which points at a live local.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    Errno::result(ret).map(drop)
}

/// The window size (rows, columns) of the terminal `fd` (`TIOCGWINSZ`).
///
/// # Errors
/// The errno of the ioctl (`ENOTTY` when `fd` is no terminal).
pub fn window_size(fd: BorrowedFd<'_>) -> Result<(u16, u16), Errno> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which points at a live,
    // writable local of that type.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    Errno::result(ret).map(|_| (size.ws_row, size.ws_col))
}
