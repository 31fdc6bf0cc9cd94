//! The persisted consoles file: the consoles added with `logdctl console add --persist`, which
//! logd creates again at its next start. This module reads and writes the file; the set it
//! holds, and when it is written, are [`crate::control::persisted`]'s.
//!
//! The file is the config file's `[[console]]` tables with the same keys
//! ([`ConsoleEntry::from_request`]), so an operator can move an entry into the config file
//! unchanged. logd writes it whole ([`store`]): to `PATH.tmp`, fsynced, renamed over `PATH`,
//! and the directory fsynced, so a crash or a power cut leaves the old file or the new one,
//! never a mix. It lives on persistent disk (`consoles_file`, `/var/lib/logd/consoles.toml` as
//! root).
//!
//! logd wrote it, so reading it is lenient where the config file is strict ([`load`]): a file
//! that is not TOML refuses itself only, and a table that does not read refuses itself only;
//! the caller logs either and goes on.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::console::ConsoleRequest;
use crate::host::consoles::{key_of, request_of, ConsoleEntry, EntryError, MAX_DECLARED};

/// The largest file read: 1024 tables of three 4 KiB paths and their keys fit with room.
pub(crate) const MAX_FILE_LEN: u64 = 16 << 20;

/// The first lines of the file, before its tables.
const HEADER: &str = "\
# Consoles added with `logdctl console add --persist`: logd creates them again at each start.
# Written by logd, whole, at each change: edit it only while logd is stopped. An entry moves
# into the config file's [[console]] tables unchanged (the config file's then wins, and logd
# drops the entry from here).
";

/// Why the file could not be read or written. Each names the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PersistError {
    #[error("cannot read persisted consoles file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("persisted consoles file {path} is larger than {MAX_FILE_LEN} bytes")]
    TooLarge { path: PathBuf },
    #[error("invalid persisted consoles file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("cannot encode the persisted consoles for {path}: {source}")]
    Encode {
        path: PathBuf,
        source: toml::ser::Error,
    },
    #[error("cannot create directory {dir} for persisted consoles file {path}: {source}")]
    CreateDir {
        dir: PathBuf,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write persisted consoles file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The file as TOML: its `[[console]]` tables, and nothing else.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    console: Vec<ConsoleEntry>,
}

/// What [`load`] found.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// The tables that read, in file order, at most [`MAX_DECLARED`].
    pub(crate) specs: Vec<ConsoleRequest>,
    /// The tables that did not, each with its number, its console and why.
    pub(crate) refused: Vec<EntryError>,
}

/// The default file: `/var/lib/logd/consoles.toml` as root; else
/// `$XDG_STATE_HOME/logd-consoles.toml` (or `~/.local/state/logd-consoles.toml`): beside the
/// log root, not in it, so that no log path can name it. None without a home directory.
pub fn default_path() -> Option<PathBuf> {
    if nix::unistd::geteuid().is_root() {
        return Some(PathBuf::from("/var/lib/logd/consoles.toml"));
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("logd-consoles.toml"));
    }
    let home = std::env::var_os("HOME").filter(|d| !d.is_empty())?;
    Some(PathBuf::from(home).join(".local/state/logd-consoles.toml"))
}

/// Reads the file. A missing file is an empty set.
pub(crate) fn load(path: &Path) -> Result<Loaded, PersistError> {
    let read = |source| PersistError::Read {
        path: path.to_owned(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::default()),
        Err(e) => return Err(read(e)),
    };
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_FILE_LEN + 1), &mut text)
        .map_err(read)?;
    if text.len() as u64 > MAX_FILE_LEN {
        return Err(PersistError::TooLarge {
            path: path.to_owned(),
        });
    }
    parse(&text).map_err(|source| PersistError::Parse {
        path: path.to_owned(),
        source: Box::new(source),
    })
}

/// The file's text read: each table into the request it stands for ([`request_of`]). A table that
/// does not read, repeats an earlier one's console, or comes after the [`MAX_DECLARED`]th is
/// refused on its own. Paths are not checked here: the path policy in force does that when the
/// console is created.
pub(crate) fn parse(text: &str) -> Result<Loaded, toml::de::Error> {
    let file: File = toml::from_str(text)?;
    let mut out = Loaded::default();
    let mut seen = HashSet::new();
    for (i, e) in file.console.into_iter().enumerate() {
        let number = i + 1;
        let label = e.label();
        let refuse = |key: &'static str, reason: String| EntryError {
            number,
            label: label.clone(),
            key,
            reason,
        };
        if out.specs.len() == MAX_DECLARED {
            out.refused.push(refuse(
                "console",
                format!("at most {MAX_DECLARED} consoles may be persisted"),
            ));
            break;
        }
        let req = match request_of(e) {
            Ok(s) => s,
            Err((key, reason)) => {
                out.refused.push(refuse(key, reason));
                continue;
            }
        };
        if !seen.insert(key_of(&req.spec.domain, &req.spec.name)) {
            out.refused.push(refuse(
                "name",
                "the same console as an earlier table".into(),
            ));
            continue;
        }
        out.specs.push(req);
    }
    Ok(out)
}

/// The file's text for `specs`.
pub(crate) fn render(specs: &[ConsoleRequest]) -> Result<String, toml::ser::Error> {
    let file = File {
        console: specs.iter().map(ConsoleEntry::from_request).collect(),
    };
    Ok(format!("{HEADER}\n{}", toml::to_string(&file)?))
}

/// Writes the file whole (see the module's doc). It blocks, on the disk: never call it on an
/// actor's thread.
pub(crate) fn store(path: &Path, specs: &[ConsoleRequest]) -> Result<(), PersistError> {
    let text = render(specs).map_err(|source| PersistError::Encode {
        path: path.to_owned(),
        source,
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| PersistError::CreateDir {
            dir: dir.to_owned(),
            path: path.to_owned(),
            source,
        })?;
    let tmp = tmp_path(path);
    let write = |at: &Path| {
        let at = at.to_owned();
        move |source| PersistError::Write { path: at, source }
    };
    // O_NOFOLLOW: a symlink planted at the temporary name is not written through.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(write(&tmp))?;
    f.write_all(text.as_bytes()).map_err(write(&tmp))?;
    f.sync_all().map_err(write(&tmp))?;
    drop(f);
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(write(path)(e));
    }
    // The rename is durable once the directory is.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(write(dir))?;
    Ok(())
}

/// Moves a file that did not read out of the way of the next write, as `PATH.bad` (replacing
/// an older one), so that what was in it is not lost. Returns the new name.
pub(crate) fn set_aside(path: &Path) -> Result<PathBuf, PersistError> {
    let bad = with_suffix(path, ".bad");
    match std::fs::rename(path, &bad) {
        Ok(()) => Ok(bad),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(bad),
        Err(source) => Err(PersistError::Write {
            path: path.to_owned(),
            source,
        }),
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    with_suffix(path, ".tmp")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use logd_protocol::{ConsoleProtocol, ConsoleSpec, DomainId, GuestSide, Uuid, WritePolicy};

    use crate::console::Access;

    use super::*;
    use crate::host::paths::PathPolicy;

    fn full() -> ConsoleRequest {
        let mut domain = DomainId::from_name("xen", "vm2");
        domain.uuid = Uuid::from_u128(0x6b1e6c3c_0a59_4c3e_9f4b_2f1a2b3c4d5e);
        let spec = ConsoleSpec {
            domain,
            name: "s1".into(),
            guest: GuestSide::Connect {
                path: "/srv/vm/q.sock".into(),
            },
            log: "/logs/vm2/s1.log".into(),
            truncate: false,
            tcp: Some("[::1]:4555".into()),
            unix: Some("/logs/vm2/s1.sub".into()),
            protocol: ConsoleProtocol::Telnet,
            write: WritePolicy::Shared,
            replay: Some(65536),
            max_subscribers: Some(4),
            queue_limit: Some(8192),
        };
        let access =
            Access::from_lists(true, &["alice".into(), "@wheel".into()], &["1000".into()]).unwrap();
        let notices = crate::console::Notices {
            subscribers: false,
            mark_log: true,
        };
        let tls = Some(crate::console::tls::TlsRequest {
            addr: "[::1]:4556".into(),
            dir: "/srv/vm/pki".into(),
            read_write: vec!["CN=alice,O=Example".into()],
            read_only: vec!["CN=bob".into(), "CN=carol".into()],
            anonymous: crate::console::tls::Anonymous::ReadOnly,
        });
        ConsoleRequest {
            spec,
            access,
            notices,
            tls,
        }
    }

    fn plain() -> ConsoleRequest {
        ConsoleRequest::plain(ConsoleSpec::new(
            DomainId::from_name("qemu", "vm1"),
            "serial0",
            GuestSide::Listen {
                path: "/logs/vm1/serial0.sock".into(),
            },
            "/logs/vm1/serial0.log",
        ))
    }

    #[test]
    fn the_file_reads_back_as_it_was_written() {
        let specs = vec![plain(), full()];
        let text = render(&specs).unwrap();
        let back = parse(&text).unwrap();
        assert!(back.refused.is_empty(), "{:?}", back.refused);
        assert_eq!(back.specs, specs);
        // The defaults are left out: an operator reads what was asked for.
        let first = text.split("[[console]]").nth(1).unwrap();
        for absent in [
            "driver",
            "uuid",
            "write",
            "telnet",
            "truncate",
            "tcp",
            "read_",
            "tcp_write",
            "notices",
            "mark_log",
            "tls",
        ] {
            assert!(!first.contains(absent), "{absent} in {first}");
        }
        // An empty set is a file that reads as one.
        assert!(parse(&render(&[]).unwrap()).unwrap().specs.is_empty());
    }

    #[test]
    fn an_entry_moves_into_the_config_file_unchanged() {
        let text = render(&[full()]).unwrap();
        let policy = PathPolicy::new("/logs".into(), vec!["/srv/vm".into()]);
        #[derive(Deserialize)]
        struct Config {
            console: Vec<ConsoleEntry>,
        }
        let c: Config = toml::from_str(&text).unwrap();
        let d = crate::host::consoles::check_all(c.console, &policy).unwrap();
        assert_eq!(d[0].request(), full());
        assert!(text.contains("tcp_write = true"), "{text}");
        assert!(text.contains("notices = false"), "{text}");
        assert!(text.contains("mark_log = true"), "{text}");
        assert!(text.contains(r#"tls = "[::1]:4556""#), "{text}");
        assert!(text.contains(r#"tls_dir = "/srv/vm/pki""#), "{text}");
        assert!(
            text.contains(r#"tls_read_write = ["CN=alice,O=Example"]"#),
            "{text}"
        );
        assert!(text.contains(r#"tls_anonymous = "read-only""#), "{text}");
        assert!(
            text.contains(r#"read_write = ["alice", "@wheel"]"#),
            "{text}"
        );
    }

    #[test]
    fn store_writes_the_file_whole_and_load_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/consoles.toml");
        assert!(load(&path).unwrap().specs.is_empty(), "missing: empty");
        store(&path, &[plain()]).unwrap();
        store(&path, &[plain(), full()]).unwrap();
        assert_eq!(load(&path).unwrap().specs, vec![plain(), full()]);
        assert!(!tmp_path(&path).exists(), "the temporary file was renamed");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        store(&path, &[]).unwrap();
        assert!(load(&path).unwrap().specs.is_empty());
    }

    #[test]
    fn a_write_that_cannot_be_done_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), b"").unwrap();
        let path = dir.path().join("file/consoles.toml");
        let e = store(&path, &[plain()]).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
    }

    #[test]
    fn a_bad_file_refuses_itself_and_a_bad_table_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("consoles.toml");
        std::fs::write(&path, b"this is not toml [[[").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        let bad = set_aside(&path).unwrap();
        assert!(!path.exists() && bad.exists());

        let good = render(&[plain()]).unwrap();
        let text = format!(
            "{good}\n[[console]]\ndomain = \"vm\"\nname = \"x\"\nlog = \"x.log\"\n\
             write = \"all\"\n\n{good}"
        );
        let l = parse(&text).unwrap();
        assert_eq!(l.specs, vec![plain()]);
        assert_eq!(l.refused.len(), 2, "{:?}", l.refused);
        assert_eq!((l.refused[0].number, l.refused[0].key), (2, "guest_listen"));
        assert_eq!((l.refused[1].number, l.refused[1].key), (3, "name"));
    }

    #[test]
    fn more_than_max_declared_tables_keep_the_first() {
        let specs: Vec<ConsoleRequest> = (0..=MAX_DECLARED)
            .map(|i| {
                let mut s = plain();
                s.spec.name = format!("s{i}");
                s
            })
            .collect();
        let l = parse(&render(&specs).unwrap()).unwrap();
        assert_eq!(l.specs.len(), MAX_DECLARED);
        assert_eq!(l.refused.len(), 1);
        assert!(l.refused[0].to_string().contains("at most 1024"));
    }
}
