//! The log pipe: logd keeps the read end (non-blocking, close-on-exec) and hands out the write
//! end (blocking, as a guest's stdout expects).
//!
//! Capacity adapts to the writer: a pipe starts at the kernel default and is enlarged (up to
//! [`MAX_PIPE_SIZE`]) only when a read finds it full, so idle pipes stay small. The kernel
//! charges a resized pipe's whole capacity against the user's pipe quota, which is why logd does
//! not enlarge pipes up front. A refused resize (EPERM, EBUSY) is counted, and the pipe goes on at
//! its current size.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};

/// The largest capacity logd asks for (the default `/proc/sys/fs/pipe-max-size`).
pub const MAX_PIPE_SIZE: usize = 1024 * 1024;

/// Why a pipe could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    #[error("cannot create a pipe: {0}")]
    Create(Errno),
    #[error("cannot configure the pipe: {0}")]
    Configure(Errno),
}

/// Creates a pipe: returns (read end, non-blocking; write end, blocking), both close-on-exec,
/// and the read end's capacity.
pub fn create() -> Result<(OwnedFd, OwnedFd, usize), PipeError> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(PipeError::Create)?;
    fcntl(&r, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(PipeError::Configure)?;
    let size = fcntl(&r, FcntlArg::F_GETPIPE_SZ).map_err(PipeError::Configure)? as usize;
    Ok((r, w, size))
}

/// Tries to enlarge the pipe to the next step after `current`. Returns the new capacity, or
/// the errno when the kernel refuses.
pub fn grow(fd: impl AsFd, current: usize) -> Result<usize, Errno> {
    let want = (current.saturating_mul(4)).min(MAX_PIPE_SIZE);
    let got = fcntl(fd.as_fd(), FcntlArg::F_SETPIPE_SZ(want as i32))?;
    Ok(got as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_start_at_the_default_and_grow_to_the_cap() {
        let (r, _w, size) = create().unwrap();
        assert!(size >= 4096);
        let flags = fcntl(&r, FcntlArg::F_GETFL).unwrap();
        assert!(OFlag::from_bits_truncate(flags).contains(OFlag::O_NONBLOCK));
        let mut cur = size;
        while cur < MAX_PIPE_SIZE {
            cur = grow(&r, cur).unwrap();
        }
        assert_eq!(cur, MAX_PIPE_SIZE);
    }
}
