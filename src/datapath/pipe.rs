//! The log pipe: logd keeps the read end (non-blocking, close-on-exec) and hands out the write
//! end (blocking, as a guest's stdout expects).
//!
//! Capacity adapts to the writer:
//! - A new pipe is shrunk to one page. A pipe that has never carried a byte costs the kernel
//!   its ring of buffer slots, and the default ring (16 slots) is a 1 KiB allocation where one
//!   slot is 64 bytes: with 10,000 idle guests, that is 10 MB. It also keeps idle pipes out of
//!   the user's pipe quota (`fs.pipe-user-pages-soft`).
//! - At the first read that finds data, the pipe takes [`DEFAULT_PIPE_SIZE`], the kernel's
//!   default: from then on a guest has the room it would have had without logd.
//! - It is enlarged ×4 (up to [`MAX_PIPE_SIZE`]) only when a read finds it full. The kernel
//!   charges a resized pipe's whole capacity against the user's pipe quota, which is why logd
//!   does not enlarge pipes up front.
//!
//! A refused resize (EPERM, EBUSY) is counted, and the pipe goes on at its current size.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};

/// The largest capacity logd asks for (the default `/proc/sys/fs/pipe-max-size`).
pub const MAX_PIPE_SIZE: usize = 1024 * 1024;
/// The capacity a pipe takes at its first data: the kernel's default (16 pages).
pub const DEFAULT_PIPE_SIZE: usize = 64 * 1024;
/// The capacity of a pipe that has never carried data: one page, the kernel's minimum.
const IDLE_PIPE_SIZE: i32 = 4096;

/// Why a pipe could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    #[error("cannot create a pipe: {0}")]
    Create(Errno),
    #[error("cannot configure the pipe: {0}")]
    Configure(Errno),
}

/// Creates a pipe: returns (read end, non-blocking; write end, blocking), both close-on-exec,
/// and the read end's capacity: one page, or the kernel's default if it refused to shrink it.
pub fn create() -> Result<(OwnedFd, OwnedFd, usize), PipeError> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(PipeError::Create)?;
    fcntl(&r, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(PipeError::Configure)?;
    let size = match fcntl(&r, FcntlArg::F_SETPIPE_SZ(IDLE_PIPE_SIZE)) {
        Ok(size) => size as usize,
        Err(_) => fcntl(&r, FcntlArg::F_GETPIPE_SZ).map_err(PipeError::Configure)? as usize,
    };
    Ok((r, w, size))
}

/// Tries to enlarge the pipe to the next step after `current`: the default size first, then ×4.
/// Returns the new capacity, or the errno when the kernel refuses.
pub fn grow(fd: impl AsFd, current: usize) -> Result<usize, Errno> {
    let want = if current < DEFAULT_PIPE_SIZE {
        DEFAULT_PIPE_SIZE
    } else {
        current.saturating_mul(4).min(MAX_PIPE_SIZE)
    };
    let got = fcntl(fd.as_fd(), FcntlArg::F_SETPIPE_SZ(want as i32))?;
    Ok(got as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_start_at_one_page_take_the_default_then_grow_to_the_cap() {
        let (r, _w, size) = create().unwrap();
        assert_eq!(size, 4096);
        assert_eq!(fcntl(&r, FcntlArg::F_GETPIPE_SZ).unwrap(), 4096);
        let flags = fcntl(&r, FcntlArg::F_GETFL).unwrap();
        assert!(OFlag::from_bits_truncate(flags).contains(OFlag::O_NONBLOCK));
        let mut sizes = vec![size];
        while *sizes.last().unwrap() < MAX_PIPE_SIZE {
            sizes.push(grow(&r, *sizes.last().unwrap()).unwrap());
        }
        assert_eq!(sizes, [4096, DEFAULT_PIPE_SIZE, 256 * 1024, MAX_PIPE_SIZE]);
    }
}
