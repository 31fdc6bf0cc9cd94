//! Crash survival: the stdio pipes and console sockets logd keeps in systemd's fd store, and
//! the record that says what each one is (docs/DECISIONS.md, "Crash survival").
//!
//! - A domain tells [`opened`] when a stdio log opens, with its pipe's read end, and
//!   [`console_added`] when a console is added, with its listeners and guest connection; a
//!   console tells [`console_guest`] when its guest comes or goes; the registry tells
//!   [`closed`] when a path (a log's, a console's) is released. None blocks: each marks the
//!   table and wakes the recorder's thread (`logd-fdstore`).
//! - The thread writes the record (`<socket>.fdstore`, [`Record`]) whole and renames it into
//!   place, then stores the new fds (`FDSTORE=1`); it removes the fds of closed logs
//!   (`FDSTOREREMOVE=1`) before it writes the record without them. So every stored fd has its
//!   entry on disk. It never runs on the byte path.
//! - The daemon samples the counters once a second ([`sample`]), while any pipe is stored.
//! - At a fresh start, [`recover`] gives each pipe systemd passed back its stream again.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use logd_protocol::{ConsoleProtocol, DomainId, Uuid, WritePolicy};
use serde::{Deserialize, Serialize};

use crate::datapath::rotate::RotateConfig;
use crate::datapath::tally;
use crate::host::fdstore::{self, ConsoleFd};

/// The record's first bytes.
pub(crate) const MAGIC: [u8; 8] = *b"LOGDFDST";
/// The record's format version: written, and read along with version 1 (pipes only, the one
/// logd released before consoles were stored). Version 2: pipes, consoles (with their access
/// and notice settings) and tally slots.
pub(crate) const VERSION: u32 = 2;
/// The largest record logd reads: 65,536 entries of a 4 KiB path each fit.
const MAX_RECORD: u64 = 320 << 20;
/// How long the recorder waits after a change for more before it writes: a burst of opens
/// costs one write, not one each.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// How long a stop waits for the recorder to remove the stored fds.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// One stored pipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// Its name in the store is `logd-pipe-ID` ([`fdstore::pipe_name`]).
    pub(crate) id: u64,
    pub(crate) domain: DomainId,
    /// The log's path, resolved (as a client's request leaves it).
    pub(crate) path: String,
    pub(crate) max_size: u64,
    pub(crate) max_backups: u32,
    /// The counters when last sampled.
    pub(crate) bytes_in: u64,
    pub(crate) bytes_written: u64,
    pub(crate) dropped_disk: u64,
}

impl Entry {
    pub(crate) fn rotate(&self) -> RotateConfig {
        RotateConfig {
            max_size: self.max_size,
            max_backups: self.max_backups,
        }
    }

    /// What logd held, read and not yet written, when the counters were last sampled: the
    /// estimate of what a crash lost.
    pub(crate) fn held(&self) -> u64 {
        self.bytes_in
            .saturating_sub(self.bytes_written)
            .saturating_sub(self.dropped_disk)
    }
}

/// How a stored console reaches its guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum StoredGuest {
    Listen(String),
    Connect(String),
    Fd,
}

/// One stored console: its settings (as `ConsoleConfig` holds them, paths resolved, the TCP
/// address as bound) and its log's counters. Its sockets are stored as `logd-con-ID-KIND`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConsoleEntry {
    pub(crate) id: u64,
    pub(crate) domain: DomainId,
    pub(crate) name: String,
    pub(crate) log: String,
    pub(crate) max_size: u64,
    pub(crate) max_backups: u32,
    pub(crate) guest: StoredGuest,
    pub(crate) tcp: Option<String>,
    pub(crate) unix: Option<String>,
    pub(crate) protocol: ConsoleProtocol,
    pub(crate) write: WritePolicy,
    pub(crate) replay: u64,
    pub(crate) max_subscribers: u64,
    pub(crate) queue_limit: u64,
    /// Who may watch and who may type, names resolved when the console was added: a console
    /// made again after a crash keeps them, without asking NSS again.
    pub(crate) access: crate::console::Access,
    /// What its subscribers are told, and whether its log is marked.
    pub(crate) notices: crate::console::Notices,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_written: u64,
    pub(crate) dropped_disk: u64,
}

impl ConsoleEntry {
    /// What the console's log held, read and not yet written, at the last sample.
    pub(crate) fn held(&self) -> u64 {
        self.bytes_in
            .saturating_sub(self.bytes_written)
            .saturating_sub(self.dropped_disk)
    }
}

/// A pipe's or console's slot in the tally (`<socket>.tally`, [`crate::datapath::tally`]),
/// where its counters outlive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SlotEntry {
    /// The pipe's or console's record id (the slot's owner).
    pub(crate) id: u64,
    pub(crate) slot: u32,
}

/// What the record holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) pipes: Vec<Entry>,
    pub(crate) consoles: Vec<ConsoleEntry>,
    /// Tally slots, by id (none in a version-1 record).
    pub(crate) slots: Vec<SlotEntry>,
}

impl Record {
    /// The slots, by id.
    pub(crate) fn slot_map(&self) -> HashMap<u64, u32> {
        self.slots.iter().map(|s| (s.id, s.slot)).collect()
    }
}

/// A console's identity: driver, domain UUID, console name.
type ConsoleKey = (String, Uuid, String);

fn console_key(domain: &DomainId, name: &str) -> ConsoleKey {
    (domain.driver.clone(), domain.uuid, name.to_owned())
}

#[derive(Serialize, Deserialize)]
struct Header {
    magic: [u8; 8],
    version: u32,
}

/// Why the record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("fd store record {path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("fd store record {path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("fd store record {path}: larger than {MAX_RECORD} bytes")]
    TooLarge { path: PathBuf },
    #[error("fd store record: not a record (magic {0:02x?})")]
    Magic([u8; 8]),
    #[error(
        "fd store record: format version {0} is not supported (this logd reads 1 to {VERSION})"
    )]
    Version(u32),
    #[error("fd store record: {0}")]
    Codec(#[from] logd_protocol::ProtocolError),
    #[error("fd store record: {0} bytes after the end")]
    Trailing(usize),
}

/// The record's bytes: a header (magic, version), then the pipes' entries, then the consoles'
/// (version 2), then the tally slots (version 3), each with the protocol crate's codec.
pub(crate) fn encode(record: &Record) -> Result<Vec<u8>, RecordError> {
    let mut out = logd_protocol::codec::encode_large(&Header {
        magic: MAGIC,
        version: VERSION,
    })?;
    out.extend(logd_protocol::codec::encode_large(&record.pipes)?);
    out.extend(logd_protocol::codec::encode_large(&record.consoles)?);
    out.extend(logd_protocol::codec::encode_large(&record.slots)?);
    Ok(out)
}

/// A record's bytes read back; refuses another format, a version other than 1 to [`VERSION`],
/// truncation and trailing bytes.
pub(crate) fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        let mut m = [0u8; 8];
        let n = bytes.len().min(8);
        m[..n].copy_from_slice(&bytes[..n]);
        return Err(RecordError::Magic(m));
    }
    let (h, used): (Header, usize) = logd_protocol::codec::decode_large(bytes)?;
    if !(1..=VERSION).contains(&h.version) {
        return Err(RecordError::Version(h.version));
    }
    let (pipes, n): (Vec<Entry>, usize) = logd_protocol::codec::decode_large(&bytes[used..])?;
    let rest = &bytes[used + n..];
    let (consoles, slots) = match h.version {
        1 => (Vec::new(), Vec::new()),
        _ => consoles_and_slots(rest)?,
    };
    if h.version == 1 && !rest.is_empty() {
        return Err(RecordError::Trailing(rest.len()));
    }
    Ok(Record {
        pipes,
        consoles,
        slots,
    })
}

/// What follows the pipes in a version-2 record: the consoles, then the slots, and nothing
/// after.
fn consoles_and_slots(bytes: &[u8]) -> Result<(Vec<ConsoleEntry>, Vec<SlotEntry>), RecordError> {
    let (cs, used): (Vec<ConsoleEntry>, usize) = logd_protocol::codec::decode_large(bytes)?;
    let (ss, n): (Vec<SlotEntry>, usize) = logd_protocol::codec::decode_large(&bytes[used..])?;
    if used + n != bytes.len() {
        return Err(RecordError::Trailing(bytes.len() - used - n));
    }
    Ok((cs, ss))
}

/// The record's path: `<socket>.fdstore`, beside the socket (its directory is checked, mode
/// 0700).
pub(crate) fn record_path(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".fdstore");
    PathBuf::from(name)
}

/// The tally's path: `<socket>.tally`, beside the record.
pub(crate) fn tally_path(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".tally");
    PathBuf::from(name)
}

/// Reads the record (none yet: no entries).
pub(crate) fn load(path: &Path) -> Result<Record, RecordError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let read = |source| RecordError::Read {
        path: path.to_owned(),
        source,
    };
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Record::default()),
        Err(e) => return Err(read(e)),
    };
    let mut bytes = Vec::new();
    f.take(MAX_RECORD + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > MAX_RECORD {
        return Err(RecordError::TooLarge {
            path: path.to_owned(),
        });
    }
    decode(&bytes)
}

/// Writes the record whole beside its place and renames it there: a reader sees the old one or
/// the new one. No fsync: it lives in `/run` (tmpfs), whose content a crash of logd does not
/// touch and a reboot clears along with systemd's store.
fn write(path: &Path, record: &Record) -> Result<(), RecordError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let bytes = encode(record)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    res.map_err(|source| RecordError::Write {
        path: path.to_owned(),
        source,
    })
}

/// The table the recorder keeps, shared with the callers.
#[derive(Default)]
struct Table {
    entries: BTreeMap<u64, Entry>,
    consoles: BTreeMap<u64, ConsoleEntry>,
    /// Pipes and consoles by their log's path (a path has one owner).
    by_path: HashMap<String, u64>,
    console_by_key: HashMap<ConsoleKey, u64>,
    /// Tally slots of pipes and consoles, by id.
    slots: HashMap<u64, u32>,
    /// New fds, to store once the record names them (a copy of each, held briefly), by name.
    to_store: Vec<(String, OwnedFd)>,
    /// Names to remove from the store before the record drops them.
    to_remove: Vec<String>,
    next_id: u64,
    dirty: bool,
    stopping: bool,
}

struct Recorder {
    path: PathBuf,
    /// Newly opened logs are stored (`fd_store = true`); without it, only re-adopted pipes are
    /// kept track of, so their fds are removed when they close.
    store_new: bool,
    table: Mutex<Table>,
    wake: Condvar,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Held while a batch is taken from the table and carried out, so that batches reach the
    /// record and the store in the order they were taken (the thread's, and [`flush`]'s).
    io: Mutex<()>,
}

static RECORDER: OnceLock<Arc<Recorder>> = OnceLock::new();

/// The first id a recorder gives: past every id it knows, and past any id an earlier process
/// can have given (ids start from the wall clock in milliseconds, times 1024), so a name
/// still in systemd's store is never given again, even when the record was lost or unreadable.
fn first_id(known: impl Iterator<Item = u64>, now_ms: u64) -> u64 {
    let past = known.max().map_or(0, |m| m.saturating_add(1));
    past.max(now_ms.saturating_mul(1024))
}

/// Starts the recorder with the entries already in the store (re-adopted after a crash, or
/// carried by a re-exec). Does nothing without `NOTIFY_SOCKET`, or when there is nothing to
/// store and nothing stored.
pub(crate) fn start(socket: &Path, store_new: bool, record: Record) {
    if !fdstore::available()
        || (!store_new && record.pipes.is_empty() && record.consoles.is_empty())
    {
        return;
    }
    let ids = record.pipes.iter().map(|e| e.id);
    let ids = ids.chain(record.consoles.iter().map(|c| c.id));
    let mut table = Table {
        next_id: first_id(ids, crate::clock::now_unix_ms()),
        dirty: true,
        ..Table::default()
    };
    table.slots = bind_slots(socket, &record);
    for e in record.pipes {
        table.by_path.insert(e.path.clone(), e.id);
        table.entries.insert(e.id, e);
    }
    for c in record.consoles {
        table.by_path.insert(c.log.clone(), c.id);
        table
            .console_by_key
            .insert(console_key(&c.domain, &c.name), c.id);
        table.consoles.insert(c.id, c);
    }
    let rec = Arc::new(Recorder {
        path: record_path(socket),
        store_new,
        table: Mutex::new(table),
        wake: Condvar::new(),
        thread: Mutex::new(None),
        io: Mutex::new(()),
    });
    if RECORDER.set(rec.clone()).is_err() {
        return;
    }
    let r = rec.clone();
    match std::thread::Builder::new()
        .name("logd-fdstore".into())
        .spawn(move || r.run())
    {
        Ok(h) => *lock(&rec.thread) = Some(h),
        Err(e) => {
            tracing::error!(cause = %e, "cannot start the fd store's recorder; no pipe will be stored")
        }
    }
    tracing::info!(record = %rec.path.display(), store_new, "keeping log pipes in systemd's fd store");
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Maps the tally and binds each pipe's and console's slot to its log: the one the record
/// names if this process has it already (re-adopted after a crash, `control::recover`) or the
/// previous image left it to the same owner (a re-exec: its sink goes on counting there), else
/// a fresh one. Returns the slots, by id.
fn bind_slots(socket: &Path, record: &Record) -> HashMap<u64, u32> {
    let tally = match tally::open(&tally_path(socket)) {
        Ok((t, _)) => t,
        Err(e) => {
            tracing::warn!(cause = %e, "no tally: a crash's loss will be estimated from the last sample");
            return HashMap::new();
        }
    };
    let named = record.slot_map();
    let logs = record.pipes.iter().map(|e| (e.id, e.path.as_str()));
    let logs = logs.chain(record.consoles.iter().map(|c| (c.id, c.log.as_str())));
    let mut slots = HashMap::new();
    for (id, path) in logs {
        let path = Path::new(path);
        let kept = named.get(&id).copied().filter(|&s| {
            // Bound by the recovery, to the slot the record names, or kept from the last image.
            tally.is_bound(path) || tally.adopt(path, s, id)
        });
        if let Some(s) = kept.or_else(|| tally.assign(path, id)) {
            slots.insert(id, s);
        }
    }
    slots
}

/// Starts the recorder at a re-exec's take-over: the carried pipes are in the store already,
/// and the record names them.
pub(crate) fn start_from_record(socket: &Path, store_new: bool) {
    let record = load(&record_path(socket)).unwrap_or_else(|e| {
        tracing::warn!(cause = %e, "the carried pipes' fd store record is unreadable; it is written anew");
        Record::default()
    });
    start(socket, store_new, record);
}

/// Whether newly opened logs are stored (`fd_store = true`, under systemd).
pub(crate) fn storing() -> bool {
    RECORDER.get().is_some_and(|r| r.store_new)
}

/// A stdio log opened: its pipe's read end is to be stored under a new name.
pub(crate) fn opened(domain: &DomainId, path: &Path, rotate: RotateConfig, pipe: BorrowedFd<'_>) {
    let Some(rec) = RECORDER.get().filter(|r| r.store_new) else {
        return;
    };
    let Some(path) = path.to_str() else {
        return; // clients name paths in UTF-8: never
    };
    let copy = match pipe.try_clone_to_owned() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(path, cause = %e, "cannot copy a pipe for systemd's fd store; it will not survive a crash");
            return;
        }
    };
    let mut t = lock(&rec.table);
    if t.stopping {
        return;
    }
    if let Some(old) = t.by_path.remove(path) {
        t.forget(old);
    }
    let id = t.next_id;
    t.next_id += 1;
    t.entries.insert(
        id,
        Entry {
            id,
            domain: domain.clone(),
            path: path.to_owned(),
            max_size: rotate.max_size,
            max_backups: rotate.max_backups,
            bytes_in: 0,
            bytes_written: 0,
            dropped_disk: 0,
        },
    );
    t.by_path.insert(path.to_owned(), id);
    // Bound before the stream's first read (the domain adds it to the pump after this).
    if let Some(slot) = tally::get().and_then(|tally| tally.assign(Path::new(path), id)) {
        t.slots.insert(id, slot);
    }
    t.to_store.push((fdstore::pipe_name(id), copy));
    t.dirty = true;
    rec.wake.notify_one();
}

/// A console was added: its settings are recorded and its sockets (`fds`: its listeners, and
/// the guest's connection if there is one) are to be stored. `entry.id` is given here.
pub(crate) fn console_added(mut entry: ConsoleEntry, fds: &[(ConsoleFd, BorrowedFd<'_>)]) {
    let Some(rec) = RECORDER.get().filter(|r| r.store_new) else {
        return;
    };
    let mut copies = Vec::with_capacity(fds.len());
    for (kind, fd) in fds {
        match fd.try_clone_to_owned() {
            Ok(c) => copies.push((*kind, c)),
            Err(e) => {
                tracing::warn!(console = %entry.name, cause = %e, "cannot copy a console's socket for systemd's fd store; the console will not survive a crash");
                return;
            }
        }
    }
    let mut t = lock(&rec.table);
    if t.stopping {
        return;
    }
    let key = console_key(&entry.domain, &entry.name);
    if let Some(old) = t.console_by_key.get(&key).copied() {
        t.forget(old);
    }
    if let Some(old) = t.by_path.get(&entry.log).copied() {
        t.forget(old);
    }
    let id = t.next_id;
    t.next_id += 1;
    entry.id = id;
    t.by_path.insert(entry.log.clone(), id);
    t.console_by_key.insert(key, id);
    if let Some(slot) = tally::get().and_then(|tally| tally.assign(Path::new(&entry.log), id)) {
        t.slots.insert(id, slot);
    }
    t.consoles.insert(id, entry);
    for (kind, fd) in copies {
        t.to_store.push((fdstore::console_name(id, kind), fd));
    }
    t.dirty = true;
    rec.wake.notify_one();
}

/// A stored console's guest connected (`Some`, its connection) or left (`None`): the stored
/// connection is replaced or removed.
pub(crate) fn console_guest(domain: &DomainId, name: &str, guest: Option<BorrowedFd<'_>>) {
    let Some(rec) = RECORDER.get() else { return };
    let copy = match guest.map(|g| g.try_clone_to_owned()).transpose() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(console = name, cause = %e, "cannot copy a guest's connection for systemd's fd store; it will not survive a crash");
            None
        }
    };
    let mut t = lock(&rec.table);
    if t.stopping {
        return;
    }
    let Some(id) = t.console_by_key.get(&console_key(domain, name)).copied() else {
        return;
    };
    let stored = fdstore::console_name(id, ConsoleFd::Guest);
    t.to_store.retain(|(n, _)| *n != stored);
    // The old connection leaves the store before the new one enters it (in one batch, the
    // removes go first).
    t.to_remove.push(stored.clone());
    if let Some(fd) = copy {
        t.to_store.push((stored, fd));
    }
    t.dirty = true;
    rec.wake.notify_one();
}

/// A log's path was released: its pipe, if stored, leaves the store.
pub(crate) fn closed(path: &Path) {
    let Some(rec) = RECORDER.get() else { return };
    let Some(path) = path.to_str() else { return };
    let mut t = lock(&rec.table);
    if let Some(id) = t.by_path.remove(path) {
        t.forget(id);
        rec.wake.notify_one();
    }
}

impl Table {
    /// Drops a pipe's or a console's entry: its fds leave the store (or are never stored).
    fn forget(&mut self, id: u64) {
        let (names, log): (Vec<String>, String) = if let Some(e) = self.entries.remove(&id) {
            (vec![fdstore::pipe_name(id)], e.path)
        } else if let Some(c) = self.consoles.remove(&id) {
            self.console_by_key.remove(&console_key(&c.domain, &c.name));
            let names = ConsoleFd::ALL
                .iter()
                .map(|k| fdstore::console_name(id, *k))
                .collect();
            (names, c.log)
        } else {
            return;
        };
        if self.slots.remove(&id).is_some() {
            if let Some(tally) = tally::get() {
                tally.unbind(Path::new(&log));
            }
        }
        for name in names {
            let before = self.to_store.len();
            self.to_store.retain(|(n, _)| *n != name);
            if self.to_store.len() == before {
                self.to_remove.push(name);
            }
        }
        self.dirty = true;
    }

    fn record(&self) -> Record {
        let mut slots: Vec<SlotEntry> = (self.slots.iter())
            .map(|(&id, &slot)| SlotEntry { id, slot })
            .collect();
        slots.sort_by_key(|s| s.id);
        Record {
            pipes: self.entries.values().cloned().collect(),
            consoles: self.consoles.values().cloned().collect(),
            slots,
        }
    }

    /// Every name the record gives an fd (some may not be stored: a console without a guest).
    fn names(&self) -> Vec<String> {
        let pipes = self.entries.keys().map(|id| fdstore::pipe_name(*id));
        let consoles = self.consoles.keys().flat_map(|id| {
            ConsoleFd::ALL
                .iter()
                .map(move |k| fdstore::console_name(*id, *k))
        });
        pipes.chain(consoles).collect()
    }
}

/// Whether the recorder runs (this logd stores pipes, or keeps track of stored ones).
pub(crate) fn active() -> bool {
    RECORDER.get().is_some()
}

/// Whether any pipe or console is stored (so the counters are worth sampling).
pub(crate) fn any() -> bool {
    RECORDER.get().is_some_and(|r| {
        let t = lock(&r.table);
        !t.entries.is_empty() || !t.consoles.is_empty()
    })
}

/// The counters of the open logs (stdio and consoles), by path: `(bytes_in, bytes_written,
/// dropped_disk)`.
pub(crate) fn sample(counters: impl IntoIterator<Item = (String, [u64; 3])>) {
    let Some(rec) = RECORDER.get() else { return };
    let mut t = lock(&rec.table);
    let mut changed = false;
    for (path, [i, w, d]) in counters {
        let Some(&id) = t.by_path.get(&path) else {
            continue;
        };
        let now = if let Some(e) = t.entries.get_mut(&id) {
            Some((&mut e.bytes_in, &mut e.bytes_written, &mut e.dropped_disk))
        } else {
            t.consoles
                .get_mut(&id)
                .map(|c| (&mut c.bytes_in, &mut c.bytes_written, &mut c.dropped_disk))
        };
        if let Some((bi, bw, bd)) = now {
            if (*bi, *bw, *bd) != (i, w, d) {
                (*bi, *bw, *bd) = (i, w, d);
                changed = true;
            }
        }
    }
    if changed {
        t.dirty = true;
        rec.wake.notify_one();
    }
}

/// A clean stop: every stored fd leaves the store and the record is removed, so the guests see
/// their pipes close as after any stop. Waits (bounded) for the recorder to finish.
pub(crate) fn stop() {
    let Some(rec) = RECORDER.get() else { return };
    {
        let mut t = lock(&rec.table);
        t.stopping = true;
        rec.wake.notify_one();
    }
    let Some(h) = lock(&rec.thread).take() else {
        return;
    };
    let deadline = std::time::Instant::now() + STOP_WAIT;
    while !h.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if h.is_finished() {
        let _ = h.join();
    } else {
        tracing::warn!("the fd store's recorder did not finish in time; stored pipes may stay until systemd sees their writers go");
    }
}

impl Recorder {
    /// The recorder's thread.
    fn run(&self) {
        loop {
            {
                let mut t = lock(&self.table);
                while !t.dirty && !t.stopping {
                    t = self
                        .wake
                        .wait(t)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                if !t.stopping {
                    // More changes may be on the way: one write for the burst.
                    drop(t);
                    std::thread::sleep(DEBOUNCE);
                }
            }
            if self.carry_out() {
                return;
            }
        }
    }

    /// Takes what the table holds for the store and the record and carries it out now; true
    /// once the recorder has stopped (everything removed).
    fn carry_out(&self) -> bool {
        let _io = lock(&self.io);
        let (stores, removes, record, names) = {
            let mut t = lock(&self.table);
            t.dirty = false;
            (
                std::mem::take(&mut t.to_store),
                std::mem::take(&mut t.to_remove),
                t.record(),
                t.stopping.then(|| t.names()),
            )
        };
        for name in removes {
            fdstore::remove(&name);
        }
        if let Some(names) = names {
            for name in &names {
                fdstore::remove(name);
            }
            drop(stores);
            if let Err(e) = std::fs::remove_file(&self.path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.path.display(), cause = %e, "cannot remove the fd store record");
                }
            }
            // The tally goes with it: nothing is left to count.
            tally::remove_file();
            tracing::info!(
                pipes = record.pipes.len(),
                consoles = record.consoles.len(),
                "pipes and consoles removed from systemd's fd store"
            );
            return true;
        }
        // The record first: a stored fd always has its entry.
        if let Err(e) = write(&self.path, &record) {
            tracing::warn!(cause = %e, not_stored = stores.len(), "cannot write the fd store record; new fds are not stored");
            return false;
        }
        for (name, fd) in stores {
            if let Err(e) = fdstore::store(&name, fd.as_fd()) {
                tracing::warn!(cause = %e, "an fd was not stored; it will not survive a crash");
            }
        }
        false
    }
}

/// Carries out, now, what the recorder would after its debounce: a re-exec calls it once the
/// domains are frozen, so the record and the store are whole before the exec ends the thread.
pub(crate) fn flush() {
    if let Some(r) = RECORDER.get() {
        if lock(&r.table).stopping {
            return;
        }
        r.carry_out();
    }
}

/// The most one log can lose in a crash: what it holds between the pipe and the disk, one batch
/// being written and one filling.
pub(crate) const LOSS_BOUND: u64 = 2 * crate::datapath::sink::PENDING_LIMIT as u64;

#[cfg(test)]
mod tests {

    #[test]
    fn a_flush_writes_the_record_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let r = Recorder {
            path: dir.path().join("logd.sock.fdstore"),
            store_new: true,
            table: Mutex::new(Table::default()),
            wake: Condvar::new(),
            thread: Mutex::new(None),
            io: Mutex::new(()),
        };
        {
            let mut t = lock(&r.table);
            t.entries.insert(7, entry(7, "/a"));
            t.dirty = true;
        }
        assert!(!r.carry_out(), "not stopping");
        let back = load(&r.path).expect("the record is there").pipes;
        assert_eq!(back.iter().map(|e| e.id).collect::<Vec<_>>(), vec![7]);
        assert!(!lock(&r.table).dirty);
    }
    #[test]
    fn ids_never_start_again_below_an_earlier_process_s() {
        // A lost record: ids start from the clock, above any a process that started earlier
        // could have given out (at most 1024 opens per millisecond).
        let earlier = first_id(std::iter::empty(), 1_000);
        assert_eq!(earlier, 1_024_000);
        assert!(first_id(std::iter::empty(), 1_001) > earlier + 1023);
        // Known ids are never reused, even past the clock's base.
        assert_eq!(first_id([5, 9_000_000].into_iter(), 1), 9_000_001);
        assert_eq!(first_id([5].into_iter(), 1_000), 1_024_000);
        assert_eq!(first_id([u64::MAX].into_iter(), 0), u64::MAX);
    }

    use super::*;

    fn entry(id: u64, path: &str) -> Entry {
        Entry {
            id,
            domain: DomainId::from_name("qemu", "vm1"),
            path: path.into(),
            max_size: 1 << 20,
            max_backups: 3,
            bytes_in: 1000 + id,
            bytes_written: 900,
            dropped_disk: 7,
        }
    }

    fn console(id: u64, name: &str, log: &str) -> ConsoleEntry {
        ConsoleEntry {
            id,
            domain: DomainId::from_name("qemu", "vm1"),
            name: name.into(),
            log: log.into(),
            max_size: 1 << 20,
            max_backups: 3,
            guest: StoredGuest::Listen("/run/vm1.sock".into()),
            tcp: Some("127.0.0.1:4555".into()),
            unix: None,
            protocol: ConsoleProtocol::Telnet,
            write: WritePolicy::Shared,
            replay: 16384,
            max_subscribers: 32,
            queue_limit: 1 << 20,
            access: crate::console::Access {
                tcp_write: true,
                read_write: vec![],
                read_only: vec![crate::console::access::Principal {
                    written: "@users".into(),
                    group: true,
                    id: Some(100),
                }],
            },
            notices: crate::console::Notices {
                subscribers: false,
                mark_log: true,
            },
            bytes_in: 50,
            bytes_written: 40,
            dropped_disk: 0,
        }
    }

    fn pipes(entries: Vec<Entry>) -> Record {
        Record {
            pipes: entries,
            ..Record::default()
        }
    }

    #[test]
    fn a_record_round_trips_and_starts_with_its_magic_and_version() {
        let record = Record {
            pipes: vec![entry(0, "/l/a.log"), entry(41, "/l/dir/b.log")],
            consoles: vec![console(42, "serial0", "/l/c.log")],
            slots: vec![SlotEntry { id: 0, slot: 7 }, SlotEntry { id: 42, slot: 0 }],
        };
        let bytes = encode(&record).unwrap();
        assert_eq!(&bytes[..8], b"LOGDFDST");
        assert_eq!(bytes[8], VERSION as u8);
        assert_eq!(decode(&bytes).unwrap(), record);
        assert_eq!(
            decode(&encode(&Record::default()).unwrap()).unwrap(),
            Record::default()
        );
        assert_eq!(record.pipes[1].held(), 1041 - 900 - 7);
        assert_eq!(record.consoles[0].held(), 10);
    }

    #[test]
    fn a_version_1_record_is_read_as_pipes_only() {
        // What a logd that stored only pipes wrote: the header, then the pipes.
        let entries = vec![entry(3, "/l/a.log")];
        let mut bytes = logd_protocol::codec::encode_large(&Header {
            magic: MAGIC,
            version: 1,
        })
        .unwrap();
        bytes.extend(logd_protocol::codec::encode_large(&entries).unwrap());
        assert_eq!(decode(&bytes).unwrap(), pipes(entries));
    }

    #[test]
    fn a_version_1_record_with_bytes_after_its_pipes_is_refused() {
        let mut bytes = logd_protocol::codec::encode_large(&Header {
            magic: MAGIC,
            version: 1,
        })
        .unwrap();
        bytes.extend(logd_protocol::codec::encode_large(&vec![entry(3, "/l/a.log")]).unwrap());
        bytes.push(0);
        assert!(matches!(decode(&bytes), Err(RecordError::Trailing(1))));
    }

    #[test]
    fn a_bad_record_is_refused() {
        let bytes = encode(&pipes(vec![entry(1, "/l/a.log")])).unwrap();
        assert!(matches!(
            decode(b"LOGDSTAT...."),
            Err(RecordError::Magic(_))
        ));
        assert!(matches!(decode(b""), Err(RecordError::Magic(_))));
        assert!(decode(&bytes[..bytes.len() - 1]).is_err(), "truncated");
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(decode(&long), Err(RecordError::Trailing(1))));
        let mut newer = bytes.clone();
        newer[8] = VERSION as u8 + 1;
        assert!(matches!(decode(&newer), Err(RecordError::Version(v)) if v == VERSION + 1));
    }

    #[test]
    fn a_record_is_written_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = record_path(&dir.path().join("logd.sock"));
        assert_eq!(
            load(&path).unwrap(),
            Record::default(),
            "no record yet: nothing stored"
        );
        let record = pipes(vec![entry(3, "/l/a.log")]);
        write(&path, &record).unwrap();
        assert_eq!(load(&path).unwrap(), record);
        assert!(!dir.path().join("logd.sock.fdstore.tmp").exists());
        std::fs::write(&path, b"garbage!").unwrap();
        assert!(load(&path).is_err());
    }

    #[test]
    fn forgetting_an_fd_not_yet_stored_never_stores_it() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        let mut t = Table::default();
        t.entries.insert(1, entry(1, "/a"));
        t.entries.insert(2, entry(2, "/b"));
        t.to_store.push((fdstore::pipe_name(1), r));
        t.forget(1);
        t.forget(2);
        assert!(t.to_store.is_empty());
        assert_eq!(
            t.to_remove,
            vec![fdstore::pipe_name(2)],
            "only the stored one is removed from the store"
        );
        assert!(t.entries.is_empty());
    }

    #[test]
    fn forgetting_a_console_removes_every_socket_it_may_have_stored() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        let mut t = Table::default();
        let c = console(5, "serial0", "/l/c.log");
        t.console_by_key.insert(console_key(&c.domain, &c.name), 5);
        t.consoles.insert(5, c);
        t.to_store
            .push((fdstore::console_name(5, ConsoleFd::Tcp), r));
        t.forget(5);
        assert!(t.to_store.is_empty(), "never stored");
        let mut removed = t.to_remove.clone();
        removed.sort();
        assert_eq!(
            removed,
            vec![
                "logd-con-5-guest".to_owned(),
                "logd-con-5-listen".to_owned(),
                "logd-con-5-unix".to_owned()
            ]
        );
        assert!(t.consoles.is_empty() && t.console_by_key.is_empty());
        assert_eq!(t.names(), Vec::<String>::new());
    }
}
