//! Which binary this process runs, and since when its line of re-execs has been serving.
//!
//! The binary's path is resolved once, at start-up: after a package upgrade `/proc/self/exe`
//! names the old, deleted file, while the path names the new one, which is what a re-exec must
//! run. The GNU build-id (read from the ELF notes of the running file) and the file's mtime tell
//! an operator which build is serving (`logdctl ps`).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use logd_protocol::admin::ReexecReport;

/// The running binary.
#[derive(Debug)]
pub struct Identity {
    pub exe: PathBuf,
    pub build_id: String,
    pub exe_mtime_ms: u64,
    /// The running file itself, opened at start-up (close-on-exec): a re-exec's guardian runs
    /// it through `/proc/self/fd/N`, so a binary replaced or removed on disk since does not
    /// matter.
    pub(crate) running: Option<std::fs::File>,
}

static IDENTITY: OnceLock<Identity> = OnceLock::new();

/// The running binary, as found at start-up (`exe` overrides the path a re-exec runs).
pub fn init(exe: Option<PathBuf>) -> &'static Identity {
    IDENTITY.get_or_init(|| {
        let running = Path::new("/proc/self/exe");
        // A guardian runs its binary by fd, and the file on disk may have been replaced since:
        // its path is then shown with " (deleted)", and the path itself names the new file.
        let exe = exe
            .or_else(|| std::env::current_exe().ok().map(strip_deleted))
            .unwrap_or_else(|| running.to_owned());
        let build_id = read_head(running, 64 * 1024)
            .and_then(|b| gnu_build_id(&b))
            .unwrap_or_default();
        let exe_mtime_ms = std::fs::metadata(running)
            .and_then(|m| m.modified())
            .map(crate::clock::unix_ms)
            .unwrap_or(0);
        Identity {
            exe,
            build_id,
            exe_mtime_ms,
            running: std::fs::File::open(running).ok(),
        }
    })
}

/// `/usr/bin/logd (deleted)` → `/usr/bin/logd`: the path of a file replaced since it started.
fn strip_deleted(p: PathBuf) -> PathBuf {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    match p.as_os_str().as_bytes().strip_suffix(b" (deleted)") {
        Some(path) => PathBuf::from(std::ffi::OsString::from_vec(path.to_vec())),
        None => p,
    }
}

/// The first `n` bytes of a file (the ELF notes lie near its start).
fn read_head(path: &Path, n: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(n)
        .read_to_end(&mut head)
        .ok()?;
    Some(head)
}

/// The running binary ([`init`] with defaults if nothing called it yet).
pub fn get() -> &'static Identity {
    init(None)
}

/// Where this process stands in its line of re-execs.
#[derive(Debug, Clone, Copy)]
pub struct Lineage {
    /// When the first process started, ms since the Unix epoch.
    pub started_ms: u64,
    /// Uptime of the line when this process took over.
    pub uptime_base_ms: u64,
    /// When this process took over (or started).
    pub since: std::time::Instant,
    pub reexecs: u32,
}

static LINEAGE: OnceLock<Lineage> = OnceLock::new();
static LAST_REEXEC: Mutex<Option<ReexecReport>> = Mutex::new(None);

/// Sets the lineage: a fresh start (None) or one carried over by a re-exec.
pub fn set_lineage(carried: Option<(u64, u64, u32)>) {
    let now_ms = crate::clock::now_unix_ms();
    let (started_ms, uptime_base_ms, reexecs) = carried.unwrap_or((now_ms, 0, 0));
    let _ = LINEAGE.set(Lineage {
        started_ms,
        uptime_base_ms,
        since: std::time::Instant::now(),
        reexecs,
    });
}

pub fn lineage() -> Lineage {
    *LINEAGE.get_or_init(|| Lineage {
        started_ms: crate::clock::now_unix_ms(),
        uptime_base_ms: 0,
        since: std::time::Instant::now(),
        reexecs: 0,
    })
}

/// Uptime of the daemon across re-execs, ms.
pub fn uptime_ms() -> u64 {
    let l = lineage();
    l.uptime_base_ms + l.since.elapsed().as_millis() as u64
}

/// Records how the last re-exec went.
pub fn set_last_reexec(r: ReexecReport) {
    *LAST_REEXEC.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
}

pub fn last_reexec() -> Option<ReexecReport> {
    LAST_REEXEC
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// The GNU build-id of an ELF file, in hex: the `NT_GNU_BUILD_ID` note of a `PT_NOTE` segment.
/// None for anything else (not ELF, 32-bit, big-endian, no note).
pub fn gnu_build_id(elf: &[u8]) -> Option<String> {
    const PT_NOTE: u32 = 4;
    const NT_GNU_BUILD_ID: u32 = 3;
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?));
    // 64-bit, little-endian ELF only (what logd runs on).
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = u16_at(0x36)? as usize;
    let phnum = u16_at(0x38)? as usize;
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(ph)? != PT_NOTE {
            continue;
        }
        let off = usize::try_from(u64_at(ph + 0x08)?).ok()?;
        let size = usize::try_from(u64_at(ph + 0x20)?).ok()?;
        let notes = elf.get(off..off.checked_add(size)?)?;
        let mut n = 0;
        while n + 12 <= notes.len() {
            let namesz = u32::from_le_bytes(notes[n..n + 4].try_into().ok()?) as usize;
            let descsz = u32::from_le_bytes(notes[n + 4..n + 8].try_into().ok()?) as usize;
            let ty = u32::from_le_bytes(notes[n + 8..n + 12].try_into().ok()?);
            let name_at = n + 12;
            let desc_at = name_at + namesz.div_ceil(4) * 4;
            let next = desc_at + descsz.div_ceil(4) * 4;
            if ty == NT_GNU_BUILD_ID && notes.get(name_at..name_at + namesz)? == b"GNU\0" {
                let id = notes.get(desc_at..desc_at + descsz)?;
                return Some(id.iter().map(|b| format!("{b:02x}")).collect());
            }
            n = next;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_replaced_binary_is_named_by_its_path() {
        assert_eq!(
            strip_deleted(PathBuf::from("/usr/bin/logd (deleted)")),
            PathBuf::from("/usr/bin/logd")
        );
        assert_eq!(
            strip_deleted(PathBuf::from("/usr/bin/logd")),
            PathBuf::from("/usr/bin/logd")
        );
    }

    use super::*;

    #[test]
    fn the_test_binary_has_a_build_id_and_garbage_has_none() {
        let me = read_head(Path::new("/proc/self/exe"), 64 * 1024).unwrap();
        let id = gnu_build_id(&me).expect("Debian's linker adds a build-id");
        assert!(
            id.len() >= 16 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "{id}"
        );
        assert_eq!(gnu_build_id(b"not an elf file at all"), None);
        assert_eq!(gnu_build_id(&me[..64]), None);
    }
}
