//! The tally: each stored log's byte counters, kept in a file mapped `MAP_SHARED`, so that they
//! outlive the process and a crash's loss can be counted exactly (docs/DECISIONS.md, "What is
//! lost and how it is counted").
//!
//! The file (`<socket>.tally`, in `/run`, beside the fd store's record) is a header and
//! [`MAX_SLOTS`] slots of 64 bytes, one cache line each; it is sparse, so only the pages of
//! slots in use cost memory. A SIGKILL leaves its pages in the page cache: the next process
//! maps the file and reads exactly what the dead one stored.
//!
//! Who writes what, at the syscall sites, with plain stores (no lock, no syscall):
//! - a log's sink ([`crate::datapath::sink`], on its domain's thread) marks a read in flight
//!   just before the read ([`Slot::reading`]: `r_len`, `r_at`), and counts what it took
//!   (`read`) and what it dropped (`dropped`);
//! - the disk writer ([`crate::datapath::rotate`], on its thread) marks a write in flight just
//!   before each `write(2)` ([`Slot::writing`]: `w_inode`, `w_offset`, `w_len`, `w_at`) and
//!   counts what reached the file (`written`) right after it returns.
//!
//! After a crash, [`settle`] turns a slot into the loss (read, neither written nor dropped): exact,
//! or a bracket one read wide when the process died around a read. `control::stored` gives
//! slots out (by record id, kept in its record) and binds them to a log's path here; a sink finds
//! its slot by its path ([`lookup`]) when the bindings' generation changes, so a sink restored
//! by a re-exec, or re-adopted after a crash, picks its slot up by itself.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Slots in a tally: as many as systemd's fd store holds fds (`FileDescriptorStoreMax=65536`).
pub(crate) const MAX_SLOTS: usize = 65_536;
/// A slot's size: one cache line.
const SLOT_SIZE: usize = 64;
/// The header's size (one slot's room, so every slot stays on its own cache line).
const HEADER_SIZE: usize = SLOT_SIZE;
/// The file's size: the header and every slot.
pub(crate) const FILE_SIZE: usize = HEADER_SIZE + MAX_SLOTS * SLOT_SIZE;
/// The file's first bytes.
const MAGIC: [u8; 8] = *b"LOGDTALY";
/// The slot layout's version.
const VERSION: u32 = 1;

/// An owner not yet counting: the slot is given to a log, whose sink has not started it yet
/// (it starts it at a moment it holds nothing, [`Slot::start`]). A slot with this bit is never
/// believed.
const UNSTARTED: u64 = 1 << 63;

/// One log's counters. Fields are written by one thread each (see the module's doc); the
/// `_at` fields keep the low 32 bits of their counter, which is all a comparison needs (one
/// read or write moves a counter by less than 2³²).
#[repr(C, align(64))]
#[derive(Default)]
pub(crate) struct Slot {
    /// The record id of the log that holds the slot ([`UNSTARTED`] set until it counts; 0: free).
    owner: AtomicU64,
    /// Bytes taken from the source (domain thread).
    read: AtomicU64,
    /// Bytes the sink dropped and counted (domain thread).
    dropped: AtomicU64,
    /// Bytes that reached the file (disk thread).
    written: AtomicU64,
    /// The write in flight: the active file's inode and size before it (disk thread).
    w_inode: AtomicU64,
    w_offset: AtomicU64,
    /// The read in flight: `read` (low bits) when it began, and the most it may take.
    r_at: AtomicU32,
    r_len: AtomicU32,
    /// The write in flight: `written` (low bits) when it began, and its length.
    w_at: AtomicU32,
    w_len: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<Slot>() == SLOT_SIZE);

/// A length as a slot keeps it (reads and writes are far below 4 GiB; a larger one is kept
/// as the most a u32 says, which only widens a bracket).
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Slot {
    /// A read of at most `max` bytes is about to take bytes from the source. Until
    /// [`took`](Self::took) or [`took_nothing`](Self::took_nothing), a crash is counted as a
    /// bracket `max` wide.
    #[inline]
    pub(crate) fn reading(&self, max: usize) {
        // The length first: if `r_at` is stale it differs from `read` (the last read counted)
        // or describes a read that took nothing; either way nothing is believed too small.
        self.r_len.store(len32(max), Ordering::Release);
        let at = self.read.load(Ordering::Relaxed) as u32;
        self.r_at.store(at, Ordering::Release);
    }

    /// The read took `n` bytes (more than 0).
    #[inline]
    pub(crate) fn took(&self, n: usize) {
        let r = self.read.load(Ordering::Relaxed);
        self.read.store(r.wrapping_add(n as u64), Ordering::Release);
    }

    /// The read took nothing (`EAGAIN`, end of file, an error).
    #[inline]
    pub(crate) fn took_nothing(&self) {
        self.r_len.store(0, Ordering::Release);
    }

    /// The sink dropped (and counted) `n` bytes it had taken.
    #[inline]
    pub(crate) fn dropped(&self, n: usize) {
        let d = self.dropped.load(Ordering::Relaxed);
        self.dropped
            .store(d.wrapping_add(n as u64), Ordering::Release);
    }

    /// A `write(2)` of `len` bytes is about to append to the active file (`inode`, of `size`
    /// bytes before it).
    #[inline]
    pub(crate) fn writing(&self, inode: u64, size: u64, len: usize) {
        // Described first, then made current by `w_at`: until then `w_at` is stale, and differs
        // from `written` (the last write counted) or goes with a `w_len` of 0.
        self.w_inode.store(inode, Ordering::Release);
        self.w_offset.store(size, Ordering::Release);
        self.w_len.store(len32(len), Ordering::Release);
        let at = self.written.load(Ordering::Relaxed) as u32;
        self.w_at.store(at, Ordering::Release);
    }

    /// The write returned `n` bytes written (more than 0).
    #[inline]
    pub(crate) fn wrote(&self, n: usize) {
        let w = self.written.load(Ordering::Relaxed);
        self.written
            .store(w.wrapping_add(n as u64), Ordering::Release);
    }

    /// The write failed: it wrote nothing.
    #[inline]
    pub(crate) fn wrote_nothing(&self) {
        self.w_len.store(0, Ordering::Release);
    }

    /// Clears the slot for `owner`, not yet counting.
    fn reset(&self, owner: u64) {
        self.owner.store(0, Ordering::Release);
        for c in [
            &self.read,
            &self.dropped,
            &self.written,
            &self.w_inode,
            &self.w_offset,
        ] {
            c.store(0, Ordering::Release);
        }
        for c in [&self.r_at, &self.r_len, &self.w_at, &self.w_len] {
            c.store(0, Ordering::Release);
        }
        self.owner.store(owner | UNSTARTED, Ordering::Release);
    }

    /// The sink starts counting from its own counters (it holds nothing: every byte it took is
    /// written or dropped), then the slot is believed.
    fn start(&self, owner: u64, bytes_in: u64, bytes_written: u64, dropped_disk: u64) {
        self.owner.store(owner | UNSTARTED, Ordering::Release);
        self.r_len.store(0, Ordering::Release);
        self.w_len.store(0, Ordering::Release);
        self.read.store(bytes_in, Ordering::Release);
        self.written.store(bytes_written, Ordering::Release);
        self.dropped.store(dropped_disk, Ordering::Release);
        self.owner.store(owner, Ordering::Release);
    }

    /// What the slot holds now.
    pub(crate) fn values(&self) -> Values {
        Values {
            owner: self.owner.load(Ordering::Acquire),
            read: self.read.load(Ordering::Acquire),
            dropped: self.dropped.load(Ordering::Acquire),
            written: self.written.load(Ordering::Acquire),
            w_inode: self.w_inode.load(Ordering::Acquire),
            w_offset: self.w_offset.load(Ordering::Acquire),
            r_at: self.r_at.load(Ordering::Acquire),
            r_len: self.r_len.load(Ordering::Acquire),
            w_at: self.w_at.load(Ordering::Acquire),
            w_len: self.w_len.load(Ordering::Acquire),
        }
    }
}

/// A slot's fields, read at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Values {
    pub(crate) owner: u64,
    pub(crate) read: u64,
    pub(crate) dropped: u64,
    pub(crate) written: u64,
    pub(crate) w_inode: u64,
    pub(crate) w_offset: u64,
    pub(crate) r_at: u32,
    pub(crate) r_len: u32,
    pub(crate) w_at: u32,
    pub(crate) w_len: u32,
}

/// What became of the write in flight at the crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteInFlight {
    /// None was.
    None,
    /// One was, and the active file says how much of it landed.
    Landed(u64),
    /// One was, of this many bytes, and the active file is another now: it may have landed
    /// whole or not at all (counted as landed, the lower end of the loss).
    Unknown(u64),
}

/// The counters of a log at its crash, and what it lost: bytes taken from its source that
/// reached neither its file nor its drop count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settled {
    /// Bytes taken from the source, counted (a read in flight not included).
    pub(crate) bytes_in: u64,
    /// Bytes in the file (a write in flight included as far as it landed, or whole when that
    /// cannot be told).
    pub(crate) bytes_written: u64,
    /// Bytes dropped and counted (the loss not included).
    pub(crate) dropped: u64,
    /// The loss's lower end: exact when equal to `lost_at_most`.
    pub(crate) lost_at_least: u64,
    pub(crate) lost_at_most: u64,
    /// The read in flight's length (0: none was).
    pub(crate) read_in_flight: u64,
    pub(crate) write: WriteInFlight,
}

impl Settled {
    /// The loss, when it is known exactly.
    pub(crate) fn exact(&self) -> Option<u64> {
        (self.lost_at_least == self.lost_at_most).then_some(self.lost_at_least)
    }
}

/// The loss a slot's values say, given the active file at the log's path now (its inode and
/// size; None if there is none). The slot must be its log's, and started.
pub(crate) fn loss(v: &Values, active: Option<(u64, u64)>) -> Settled {
    let mut written = v.written;
    let mut write = WriteInFlight::None;
    // A write began and its count never came: how much of it is in the file?
    if v.w_len > 0 && v.written as u32 == v.w_at {
        let len = u64::from(v.w_len);
        write = match active {
            // Nothing else writes the active file, and a rotation comes after the count: its
            // size past the write's offset is what the write put there.
            Some((inode, size)) if inode == v.w_inode => {
                WriteInFlight::Landed(size.saturating_sub(v.w_offset).min(len))
            }
            _ => WriteInFlight::Unknown(len),
        };
        written += match write {
            WriteInFlight::Landed(n) | WriteInFlight::Unknown(n) => n,
            WriteInFlight::None => 0,
        };
    }
    let read_in_flight = if v.r_len > 0 && v.read as u32 == v.r_at {
        u64::from(v.r_len)
    } else {
        0
    };
    let unknown = match write {
        WriteInFlight::Unknown(n) => n,
        _ => 0,
    };
    let held = v.read.saturating_sub(written).saturating_sub(v.dropped);
    Settled {
        bytes_in: v.read,
        bytes_written: written,
        dropped: v.dropped,
        lost_at_least: held,
        lost_at_most: held + unknown + read_in_flight,
        read_in_flight,
        write,
    }
}

/// Why the tally could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TallyError {
    #[error("tally {path}: cannot open: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tally {path}: not a regular file")]
    NotAFile { path: PathBuf },
    #[error("tally {path}: cannot make it anew: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tally {path}: cannot map it: {source}")]
    Map { path: PathBuf, source: nix::Error },
}

/// What [`Tally::map`] found at the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// A tally: its slots are what the last process stored.
    Kept,
    /// None, or not one (the reason): a fresh one was made, with every slot empty.
    Made(String),
}

/// A tally file, mapped.
pub(crate) struct Tally {
    path: PathBuf,
    base: NonNull<u8>,
    /// Slots in use in this process, one bit each (set under `bindings`, cleared by a lease's
    /// drop without it).
    used: Box<[AtomicU64]>,
    /// Where the next search for a free slot starts: freed slots are taken again last.
    cursor: AtomicU32,
    /// Each bound log's slot, by path.
    bindings: Mutex<HashMap<PathBuf, Arc<Lease>>>,
}

// SAFETY: the mapping is shared memory accessed only through atomics (`Slot`), and the rest of
// the struct is Sync already; the pointer is never written through otherwise.
#[allow(unsafe_code)]
unsafe impl Send for Tally {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl Sync for Tally {}

impl Tally {
    /// Maps the tally at `path`: the one there if it is one (its magic, version and size
    /// right), else a fresh one made in its place. A path that is not a regular file is refused.
    pub(crate) fn map(path: &Path) -> Result<(Tally, Found), TallyError> {
        let open = |source| TallyError::Open {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(path)
            .map_err(open)?;
        let meta = file.metadata().map_err(open)?;
        if !meta.file_type().is_file() {
            return Err(TallyError::NotAFile {
                path: path.to_owned(),
            });
        }
        let found = match check(&file, meta.size()) {
            Ok(()) => Found::Kept,
            Err(why) => {
                make(&file).map_err(|source| TallyError::Create {
                    path: path.to_owned(),
                    source,
                })?;
                Found::Made(why)
            }
        };
        let base = map_shared(&file).map_err(|source| TallyError::Map {
            path: path.to_owned(),
            source,
        })?;
        let used = (0..MAX_SLOTS / 64).map(|_| AtomicU64::new(0)).collect();
        let tally = Tally {
            path: path.to_owned(),
            base,
            used,
            cursor: AtomicU32::new(0),
            bindings: Mutex::new(HashMap::new()),
        };
        Ok((tally, found))
    }

    /// Slot `index` (below [`MAX_SLOTS`]).
    #[allow(unsafe_code)]
    fn slot(&self, index: u32) -> &Slot {
        let index = index as usize;
        assert!(index < MAX_SLOTS, "tally slot {index} out of range");
        // SAFETY: the mapping is FILE_SIZE bytes, readable and writable, and lives as long as
        // self; slot `index` lies within it (checked), at a multiple of 64 bytes from its
        // page-aligned start, so it is aligned for `Slot`, a struct of atomics valid for any
        // bit pattern. The memory is shared with other processes (a later logd) only through
        // atomics, and nothing in this process writes it otherwise.
        unsafe {
            &*self
                .base
                .as_ptr()
                .add(HEADER_SIZE + index * SLOT_SIZE)
                .cast::<Slot>()
        }
    }

    /// Takes slot `index` in this process; false if it is taken already.
    fn take(&self, index: u32) -> bool {
        let (word, bit) = (index as usize / 64, 1u64 << (index % 64));
        self.used[word].fetch_or(bit, Ordering::AcqRel) & bit == 0
    }

    /// Takes a free slot, searching from the cursor (call under `bindings`).
    fn take_free(&self) -> Option<u32> {
        let start = self.cursor.load(Ordering::Relaxed) as usize % MAX_SLOTS;
        for k in 0..MAX_SLOTS {
            let index = ((start + k) % MAX_SLOTS) as u32;
            if self.used[index as usize / 64].load(Ordering::Relaxed) & (1 << (index % 64)) == 0
                && self.take(index)
            {
                self.cursor.store(index + 1, Ordering::Relaxed);
                return Some(index);
            }
        }
        None
    }

    fn release(&self, index: u32) {
        let (word, bit) = (index as usize / 64, 1u64 << (index % 64));
        self.used[word].fetch_and(!bit, Ordering::AcqRel);
    }

    fn bindings(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Arc<Lease>>> {
        self.bindings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Binds `path` to `lease`; the lease it had goes (outside the lock: a lease's drop frees
    /// its slot).
    fn bind(&'static self, path: &Path, lease: Lease) {
        let old = self.bindings().insert(path.to_owned(), Arc::new(lease));
        GENERATION.fetch_add(1, Ordering::Release);
        drop(old);
    }

    /// Gives a free slot to the log at `path` (record id `owner`), empty, not yet counting.
    /// None when every slot is taken.
    pub(crate) fn assign(&'static self, path: &Path, owner: u64) -> Option<u32> {
        let index = {
            let _held = self.bindings();
            self.take_free()?
        };
        self.slot(index).reset(owner);
        self.bind(path, Lease::new(self, index, owner));
        Some(index)
    }

    /// Gives slot `index`, as a previous process left it, to the log at `path` again (a
    /// re-exec: its sink goes on counting there). False, and nothing bound, when the slot is not
    /// `owner`'s or is taken here already.
    pub(crate) fn adopt(&'static self, path: &Path, index: u32, owner: u64) -> bool {
        if index as usize >= MAX_SLOTS {
            return false;
        }
        let mine = self.slot(index).owner.load(Ordering::Acquire) & !UNSTARTED == owner;
        if !mine || !self.take(index) {
            return false;
        }
        self.bind(path, Lease::new(self, index, owner));
        true
    }

    /// After a crash: the loss slot `index` says for the log at `path` (record id `owner`),
    /// then the slot is given to it again, empty (before its file is opened again: the stat of
    /// the active file must see it as the crash left it). Err (the reason) when the slot
    /// cannot be believed; it is given to the log anyway if it is free.
    pub(crate) fn settle(
        &'static self,
        path: &Path,
        index: u32,
        owner: u64,
    ) -> Result<Settled, &'static str> {
        if index as usize >= MAX_SLOTS {
            return Err("the record's slot is out of range");
        }
        if !self.take(index) {
            return Err("the record's slot is taken twice");
        }
        let slot = self.slot(index);
        let v = slot.values();
        let res = if v.owner == owner {
            let active = std::fs::symlink_metadata(path)
                .ok()
                .filter(|m| m.file_type().is_file())
                .map(|m| (m.ino(), m.size()));
            Ok(loss(&v, active))
        } else if v.owner == owner | UNSTARTED {
            Err("the log had not started counting")
        } else {
            Err("the slot is another log's")
        };
        slot.reset(owner);
        self.bind(path, Lease::new(self, index, owner));
        res
    }

    /// Unbinds `path`: its slot is free once its sink and its last batch are gone.
    pub(crate) fn unbind(&self, path: &Path) {
        let old = self.bindings().remove(path);
        if old.is_some() {
            GENERATION.fetch_add(1, Ordering::Release);
        }
        drop(old);
    }

    /// Whether `path` has a slot.
    pub(crate) fn is_bound(&self, path: &Path) -> bool {
        self.bindings().contains_key(path)
    }

    /// The slot `path` is bound to.
    pub(crate) fn lookup(&self, path: &Path) -> Option<Arc<Lease>> {
        self.bindings().get(path).cloned()
    }
}

impl Drop for Tally {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: the mapping was made in `map` with FILE_SIZE bytes and is unmapped only
        // here; every `&Slot` borrows self, and every lease holds a `&'static Tally`, so none
        // outlives it.
        let _ = unsafe { nix::sys::mman::munmap(self.base.cast(), FILE_SIZE) };
    }
}

/// Whether `file` (of `size` bytes) is a tally this logd reads; the reason when it is not.
fn check(file: &File, size: u64) -> Result<(), String> {
    if size != FILE_SIZE as u64 {
        return Err(format!("{size} bytes, not {FILE_SIZE}"));
    }
    let mut h = [0u8; 20];
    file.read_exact_at(&mut h, 0)
        .map_err(|e| format!("cannot read its header: {e}"))?;
    if h[..8] != MAGIC {
        return Err(format!("not a tally (magic {:02x?})", &h[..8]));
    }
    let word = |at: usize| u32::from_le_bytes(h[at..at + 4].try_into().expect("4 bytes"));
    if (word(8), word(12), word(16)) != (VERSION, SLOT_SIZE as u32, MAX_SLOTS as u32) {
        return Err(format!(
            "version {}, slots of {} bytes, {} slots: not this logd's",
            word(8),
            word(12),
            word(16)
        ));
    }
    Ok(())
}

/// Empties `file` and makes it a tally with every slot empty (sparse: no page is touched but
/// the header's). The magic goes last, so a half-made tally is never taken for one.
fn make(file: &File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.set_len(FILE_SIZE as u64)?;
    let mut h = [0u8; 12];
    h[..4].copy_from_slice(&VERSION.to_le_bytes());
    h[4..8].copy_from_slice(&(SLOT_SIZE as u32).to_le_bytes());
    h[8..].copy_from_slice(&(MAX_SLOTS as u32).to_le_bytes());
    file.write_all_at(&h, 8)?;
    file.write_all_at(&MAGIC, 0)
}

/// Maps the whole of `file` (FILE_SIZE bytes, checked or made so) shared, readable and writable.
#[allow(unsafe_code)]
fn map_shared(file: &File) -> Result<NonNull<u8>, nix::Error> {
    use nix::sys::mman::{mmap, MapFlags, ProtFlags};
    let len = std::num::NonZeroUsize::new(FILE_SIZE).expect("not empty");
    // SAFETY: a new shared mapping of a regular file of FILE_SIZE bytes at an address the
    // kernel chooses aliases no Rust object; it is read and written only through atomics
    // (`Slot`), and unmapped once, by `Tally`'s drop. The file lives in logd's own directory
    // (mode 0700): nobody else truncates it under the mapping (which would fault).
    let p = unsafe {
        mmap(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
            file.as_fd(),
            0,
        )
    }?;
    Ok(p.cast())
}

/// A log's hold on its slot, shared by its binding, its sink and its batches in flight: the
/// slot is free for another log once the last goes, so a batch still being written never counts
/// into a slot given to someone else.
pub(crate) struct Lease {
    tally: &'static Tally,
    index: u32,
    owner: u64,
}

impl Lease {
    fn new(tally: &'static Tally, index: u32, owner: u64) -> Lease {
        Lease {
            tally,
            index,
            owner,
        }
    }

    /// The sink starts counting here, from its own counters (it holds nothing).
    pub(crate) fn start(&self, bytes_in: u64, bytes_written: u64, dropped_disk: u64) {
        self.tally
            .slot(self.index)
            .start(self.owner, bytes_in, bytes_written, dropped_disk);
    }
}

impl std::ops::Deref for Lease {
    type Target = Slot;

    fn deref(&self) -> &Slot {
        self.tally.slot(self.index)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // The slot is nobody's now (a crash from here on finds no owner for it).
        self.tally
            .slot(self.index)
            .owner
            .store(0, Ordering::Release);
        self.tally.release(self.index);
    }
}

/// The tally of this process, once mapped.
static TALLY: OnceLock<Tally> = OnceLock::new();
/// Moves on at every binding and unbinding: a sink without a slot looks its path up only when
/// it changes (one atomic load per read otherwise).
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Maps this process's tally at `path` (once; later calls return the one mapped, and say so).
pub(crate) fn open(path: &Path) -> Result<(&'static Tally, Found), TallyError> {
    if let Some(t) = TALLY.get() {
        return Ok((t, Found::Kept));
    }
    let (t, found) = Tally::map(path)?;
    // Only the daemon's start and take-over call this, one at a time.
    let _ = TALLY.set(t);
    Ok((TALLY.get().expect("just set"), found))
}

/// This process's tally, if mapped.
pub(crate) fn get() -> Option<&'static Tally> {
    TALLY.get()
}

/// The bindings' generation (0 until a first binding: a logd without the fd store never looks).
#[inline]
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// The slot bound to `path`, if any.
pub(crate) fn lookup(path: &Path) -> Option<Arc<Lease>> {
    TALLY.get()?.lookup(path)
}

/// A clean stop: the tally goes with the record (the mapping stays until the exit).
pub(crate) fn remove_file() {
    if let Some(t) = TALLY.get() {
        if let Err(e) = std::fs::remove_file(&t.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %t.path.display(), cause = %e, "cannot remove the tally");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tally for one test, mapped for the rest of the process (leases need it `'static`).
    fn tally_at(path: &Path) -> (&'static Tally, Found) {
        let (t, found) = Tally::map(path).unwrap();
        (Box::leak(Box::new(t)), found)
    }

    fn values(read: u64, written: u64, dropped: u64) -> Values {
        Values {
            owner: 7,
            read,
            written,
            dropped,
            // Both in-flight records describe counts already made.
            r_at: read as u32 ^ 1,
            w_at: written as u32 ^ 1,
            ..Values::default()
        }
    }

    #[test]
    fn with_nothing_in_flight_the_loss_is_what_was_read_and_neither_written_nor_dropped() {
        let s = loss(&values(1000, 600, 100), None);
        assert_eq!(s.exact(), Some(300));
        assert_eq!((s.bytes_in, s.bytes_written, s.dropped), (1000, 600, 100));
        assert_eq!((s.read_in_flight, s.write), (0, WriteInFlight::None));
        // In-flight records of reads and writes that were counted are not believed.
        let mut v = values(1000, 600, 100);
        v.r_len = 4096;
        v.w_len = 4096;
        assert_eq!(loss(&v, Some((5, 0))).exact(), Some(300));
        // A read that took nothing cleared its length.
        v.r_at = v.read as u32;
        v.r_len = 0;
        assert_eq!(loss(&v, None).exact(), Some(300));
    }

    #[test]
    fn a_read_in_flight_makes_a_bracket_as_wide_as_the_read() {
        let mut v = values(1000, 600, 100);
        v.r_at = 1000;
        v.r_len = 65_536;
        let s = loss(&v, None);
        assert_eq!((s.lost_at_least, s.lost_at_most), (300, 300 + 65_536));
        assert_eq!(s.exact(), None);
        assert_eq!(s.read_in_flight, 65_536);
        // The counters say what was counted; the loss's lower end is added to the drops.
        assert_eq!((s.bytes_in, s.bytes_written, s.dropped), (1000, 600, 100));
        // Only the low 32 bits are kept: a counter past 4 GiB compares all the same.
        let mut v = values(5 << 32 | 1000, 5 << 32, 0);
        v.r_at = 1000;
        v.r_len = 10;
        assert_eq!(loss(&v, None).lost_at_most, 1010);
    }

    #[test]
    fn a_write_in_flight_is_settled_from_the_active_file() {
        let mut v = values(1000, 600, 100);
        v.w_at = 600;
        v.w_len = 200;
        v.w_inode = 42;
        v.w_offset = 10_000;
        // The file is as the write found it: nothing landed.
        let s = loss(&v, Some((42, 10_000)));
        assert_eq!((s.exact(), s.write), (Some(300), WriteInFlight::Landed(0)));
        // Part of it landed.
        let s = loss(&v, Some((42, 10_150)));
        assert_eq!(
            (s.exact(), s.write),
            (Some(150), WriteInFlight::Landed(150))
        );
        assert_eq!(s.bytes_written, 750);
        // All of it (a size past the write is someone else's, not more of it).
        for size in [10_200, 99_999] {
            let s = loss(&v, Some((42, size)));
            assert_eq!(
                (s.exact(), s.write),
                (Some(100), WriteInFlight::Landed(200))
            );
        }
        // A file smaller than the offset (truncated since): nothing of it is there.
        let s = loss(&v, Some((42, 5)));
        assert_eq!((s.exact(), s.write), (Some(300), WriteInFlight::Landed(0)));
        // Another file at the path, or none: anything from none to all of it.
        for active in [Some((43, 10_200)), None] {
            let s = loss(&v, active);
            assert_eq!(s.write, WriteInFlight::Unknown(200));
            assert_eq!((s.lost_at_least, s.lost_at_most), (100, 300));
            assert_eq!(s.bytes_written, 800, "counted as landed: the lower end");
        }
    }

    #[test]
    fn a_read_and_a_write_in_flight_together() {
        let mut v = values(1000, 600, 100);
        (v.r_at, v.r_len) = (1000, 4096);
        (v.w_at, v.w_len, v.w_inode, v.w_offset) = (600, 200, 42, 0);
        let s = loss(&v, Some((42, 50)));
        assert_eq!((s.lost_at_least, s.lost_at_most), (250, 250 + 4096));
        let s = loss(&v, Some((41, 50)));
        assert_eq!((s.lost_at_least, s.lost_at_most), (100, 300 + 4096));
    }

    #[test]
    fn the_slot_s_stores_at_each_step_settle_to_the_truth() {
        let dir = tempfile::tempdir().unwrap();
        let (t, _) = tally_at(&dir.path().join("t.tally"));
        let log = dir.path().join("a.log");
        let slot = t.assign(&log, 9).unwrap();
        let lease = t.lookup(&log).unwrap();
        // Not started: never believed.
        assert_eq!(lease.values().owner, 9 | UNSTARTED);
        lease.start(100, 80, 20);
        let s = |active| loss(&lease.values(), active);
        assert_eq!(s(None).exact(), Some(0));
        // The sink: a read marked, then counted.
        lease.reading(4096);
        assert_eq!((s(None).lost_at_least, s(None).lost_at_most), (0, 4096));
        lease.took(1000);
        assert_eq!(s(None).exact(), Some(1000));
        lease.reading(4096);
        lease.took_nothing();
        assert_eq!(s(None).exact(), Some(1000));
        // The writer: a write of 600 at offset 80 of inode 5.
        lease.writing(5, 80, 600);
        assert_eq!(s(Some((5, 80))).exact(), Some(1000), "not landed yet");
        assert_eq!(
            s(Some((5, 380))).exact(),
            Some(700),
            "half landed, not counted"
        );
        lease.wrote(300);
        assert_eq!(s(Some((5, 380))).exact(), Some(700), "counted");
        lease.writing(5, 380, 300);
        lease.wrote_nothing();
        assert_eq!(
            s(Some((6, 0))).exact(),
            Some(700),
            "a failed write is no bracket"
        );
        // The sink drops what came back unwritten.
        lease.dropped(300);
        assert_eq!(s(None).exact(), Some(400));
        // The next process settles the slot, and gives it to the log again, empty and not
        // started.
        drop(lease);
        let (t, found) = tally_at(&dir.path().join("t.tally"));
        assert_eq!(found, Found::Kept);
        let settled = t.settle(&log, slot, 9).unwrap();
        assert_eq!(settled.exact(), Some(400));
        assert_eq!(
            (settled.bytes_in, settled.bytes_written, settled.dropped),
            (1100, 380, 320)
        );
        assert_eq!(
            t.settle(&log, slot, 9),
            Err("the record's slot is taken twice")
        );
        let v = t.lookup(&log).unwrap().values();
        assert_eq!(
            v,
            Values {
                owner: 9 | UNSTARTED,
                ..Values::default()
            }
        );
    }

    #[test]
    fn two_mappings_of_one_file_see_each_other_s_stores() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.tally");
        let (a, found) = tally_at(&path);
        assert!(matches!(found, Found::Made(_)), "no file yet: {found:?}");
        let (b, found) = tally_at(&path);
        assert_eq!(found, Found::Kept);
        a.slot(65_535).took(12_345);
        b.slot(3).dropped(7);
        assert_eq!(b.slot(65_535).values().read, 12_345);
        assert_eq!(a.slot(3).values().dropped, 7);
        // Sparse: only the touched pages hold blocks.
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), FILE_SIZE as u64);
        assert!(meta.blocks() * 512 < 64 * 1024, "{} blocks", meta.blocks());
    }

    #[test]
    fn a_file_that_is_not_a_tally_is_refused_and_made_anew() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.tally");
        // The wrong size.
        std::fs::write(&path, b"twelve bytes").unwrap();
        let (t, found) = tally_at(&path);
        assert!(
            matches!(&found, Found::Made(why) if why.contains("12 bytes")),
            "{found:?}"
        );
        assert_eq!(t.slot(0).values(), Values::default());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), FILE_SIZE as u64);
        assert_eq!(tally_at(&path).1, Found::Kept);
        // The right size, the wrong magic: emptied, its slots too.
        t.slot(1).took(5);
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(b"LOGDSTAT", 0).unwrap();
        let (u, found) = tally_at(&path);
        assert!(
            matches!(&found, Found::Made(why) if why.contains("not a tally")),
            "{found:?}"
        );
        assert_eq!(u.slot(1).values().read, 0);
        // Another layout version.
        f.write_all_at(&2u32.to_le_bytes(), 8).unwrap();
        assert!(matches!(tally_at(&path).1, Found::Made(why) if why.contains("version 2")));
        // Not a regular file: refused, left alone.
        let d = dir.path().join("d.tally");
        std::fs::create_dir(&d).unwrap();
        assert!(matches!(
            Tally::map(&d),
            Err(TallyError::NotAFile { .. }) | Err(TallyError::Open { .. })
        ));
        assert!(d.is_dir());
        let link = dir.path().join("l.tally");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(Tally::map(&link).is_err(), "never through a symlink");
    }

    #[test]
    fn slots_are_given_once_and_free_only_when_their_last_holder_goes() {
        let dir = tempfile::tempdir().unwrap();
        let (t, _) = tally_at(&dir.path().join("t.tally"));
        let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
        let sa = t.assign(&a, 1).unwrap();
        let sb = t.assign(&b, 2).unwrap();
        assert_ne!(sa, sb);
        assert!(t.is_bound(&a) && t.is_bound(&b));
        // A batch in flight keeps the slot after the log is unbound.
        let batch = t.lookup(&a).unwrap();
        let gen = generation();
        t.unbind(&a);
        assert!(generation() > gen, "a change the sinks see");
        assert!(!t.is_bound(&a) && t.lookup(&a).is_none());
        assert!(!t.take(sa), "still held by the batch");
        assert_eq!(t.slot(sa).values().owner, 1 | UNSTARTED);
        drop(batch);
        assert_eq!(t.slot(sa).values().owner, 0, "nobody's");
        // Free again, and taken again only after the others (the cursor goes on).
        let sc = t.assign(&a, 3).unwrap();
        assert!(sc != sa && sc != sb);
        assert!(t.take(sa), "free");
        t.release(sa);
        // A re-exec's adoption: the owner's, once.
        t.unbind(&b);
        t.slot(sb).reset(2);
        assert!(!t.adopt(&b, sb, 5), "another owner's");
        assert!(t.adopt(&b, sb, 2));
        assert!(
            !t.adopt(&dir.path().join("c.log"), sb, 2),
            "taken here already"
        );
        assert!(!t.adopt(&b, MAX_SLOTS as u32, 2));
        // Settling a slot of another owner, or one never started, is refused (and the slot
        // is the log's all the same, emptied).
        t.unbind(&b);
        assert_eq!(t.settle(&b, sb, 7), Err("the slot is another log's"));
        t.unbind(&b);
        t.slot(sb).reset(7);
        assert_eq!(t.settle(&b, sb, 7), Err("the log had not started counting"));
        assert!(t.is_bound(&b));
    }

    #[test]
    fn every_slot_can_be_given_and_then_none() {
        let dir = tempfile::tempdir().unwrap();
        let (t, _) = tally_at(&dir.path().join("t.tally"));
        let mut seen = vec![false; MAX_SLOTS];
        for i in 0..MAX_SLOTS {
            let s = t.take_free().unwrap();
            assert!(
                !std::mem::replace(&mut seen[s as usize], true),
                "slot {s} given twice ({i})"
            );
        }
        assert_eq!(t.take_free(), None);
        assert_eq!(t.assign(&dir.path().join("a.log"), 1), None);
    }
}
