//! The rotating file's unit tests: names, rotation, cuts, refusals, reads, and a property test
//! that the files always hold the exact suffix of what was written.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use logd_protocol::{Position, ReadFrom};

use proptest::prelude::*;

use super::files::birth_of;
use super::names::{check_derived_names, fresh_name, NAME_MAX};
use super::*;
use crate::datapath::logdir::LogDir;

#[test]
fn family_base_strips_one_backup_or_temporary_suffix() {
    let base = |p: &str| family_base(Path::new(p)).map(|b| b.to_str().unwrap().to_owned());
    assert_eq!(base("/l/x.log.0").as_deref(), Some("/l/x.log"));
    assert_eq!(base("/l/x.log.123").as_deref(), Some("/l/x.log"));
    assert_eq!(base("/l/x.log.rotating").as_deref(), Some("/l/x.log"));
    assert_eq!(base("/l/x.log.0.1").as_deref(), Some("/l/x.log.0"));
    for not_derived in ["/l/x.log", "/l/x.log.0x", "/l/x.log.", "/l/.0", "/l/x", "/"] {
        assert_eq!(base(not_derived), None, "{not_derived}");
    }
}

#[test]
fn derived_names_must_fit_name_max() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = LogDir::open(tmp.path()).unwrap();
    let ok = OsString::from("a".repeat(NAME_MAX - ".rotating".len()));
    check_derived_names(&dir, &ok, 3).unwrap();
    let long = OsString::from("a".repeat(NAME_MAX - ".rotating".len() + 1));
    let e = check_derived_names(&dir, &long, 3).unwrap_err();
    assert!(matches!(e, RotateError::NameTooLong { len, .. } if len == NAME_MAX + 1));
    // With 10^9 backups, the oldest backup's name is the longest.
    let e = check_derived_names(&dir, &ok, 1_000_000_000).unwrap_err();
    assert!(e.to_string().contains(".999999999"), "{e}");
}

/// The temporary name's path, as a rotation makes it.
fn fresh_path(path: &Path) -> PathBuf {
    path.with_file_name(fresh_name(path.file_name().unwrap()))
}

fn cfg(max_size: u64, max_backups: u32) -> RotateConfig {
    RotateConfig {
        max_size,
        max_backups,
    }
}

fn log_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("a.log")
}

fn read_all(path: &Path) -> Vec<u8> {
    read_log(path, ReadFrom::Start, usize::MAX).unwrap().data
}

fn contents(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap()
}

fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

fn inode(path: &Path) -> u64 {
    fs::metadata(path).unwrap().ino()
}

fn birth(path: &Path) -> u64 {
    birth_of(&fs::metadata(path).unwrap())
}

/// Distinct, easily recognised bytes without newlines.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| b'a' + ((i + seed as usize) % 26) as u8)
        .collect()
}

#[test]
fn default_config_is_2mib_and_3_backups() {
    assert_eq!(RotateConfig::default(), cfg(2 * 1024 * 1024, 3));
}

#[test]
fn rotating_file_stays_small() {
    // 80 bytes, and 8 more for the resting flag (with its padding); an idle log holds one.
    assert!(std::mem::size_of::<RotatingFile>() <= 88);
}

#[test]
fn new_file_is_created_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let f = RotatingFile::open(&path, cfg(100, 2), false).unwrap();
    let meta = fs::metadata(&path).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 0);
    assert!(f.is_healthy());
    assert_eq!(f.size(), 0);
    assert_eq!(f.rotations(), 0);
    assert_eq!(f.path(), path);
    assert_eq!(f.config(), cfg(100, 2));
    assert_eq!(
        f.position(),
        Position {
            inode: meta.ino(),
            offset: 0,
            birth: birth_of(&meta)
        }
    );
}

#[test]
fn zero_max_size_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let err = RotatingFile::open(&path, cfg(0, 2), false).err().unwrap();
    assert!(matches!(err, RotateError::ZeroMaxSize { .. }), "{err}");
    assert!(err.to_string().contains("a.log"));
    assert!(!exists(&path));
}

#[test]
fn append_keeps_existing_content() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    fs::write(&path, b"old\n").unwrap();
    let mut f = RotatingFile::open(&path, cfg(100, 2), false).unwrap();
    assert_eq!(f.size(), 4);
    f.write(b"new").unwrap();
    f.write(b"").unwrap();
    f.write(b" more\n").unwrap();
    assert_eq!(contents(&path), b"old\nnew more\n");
    assert_eq!(f.size(), 13);
    assert_eq!(
        f.position(),
        Position {
            inode: inode(&path),
            offset: 13,
            birth: birth(&path)
        }
    );
    assert_eq!(f.rotations(), 0);
    assert!(!exists(&backup_path(&path, 0)));
}

#[test]
fn truncate_removes_file_and_backups() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    fs::write(&path, b"active").unwrap();
    for i in 0..5 {
        fs::write(backup_path(&path, i), b"backup").unwrap();
    }
    let other = dir.path().join("b.log");
    fs::write(&other, b"keep").unwrap();
    let mut f = RotatingFile::open(&path, cfg(100, 2), true).unwrap();
    assert_eq!(f.size(), 0);
    assert_eq!(contents(&path), b"");
    for i in 0..6 {
        assert!(!exists(&backup_path(&path, i)), "backup {i} survived");
    }
    assert_eq!(contents(&other), b"keep");
    f.write(b"x").unwrap();
    assert_eq!(read_all(&path), b"x");
}

#[test]
fn remove_all_tolerates_missing_files_and_reaches_max_backups() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    remove_all(&path, 3).unwrap();
    // A hole at index 1 does not stop removal below max_backups.
    fs::write(backup_path(&path, 0), b"0").unwrap();
    fs::write(backup_path(&path, 2), b"2").unwrap();
    remove_all(&path, 3).unwrap();
    assert!(!exists(&backup_path(&path, 0)));
    assert!(!exists(&backup_path(&path, 2)));
}

#[test]
fn zero_backups_keeps_only_the_active_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut f = RotatingFile::open(&path, cfg(10, 0), false).unwrap();
    f.write(b"0123456789").unwrap();
    assert_eq!(f.rotations(), 0);
    f.write(b"abc").unwrap();
    assert_eq!(f.rotations(), 1);
    assert_eq!(contents(&path), b"abc");
    assert!(!exists(&backup_path(&path, 0)));
    assert!(!exists(&fresh_path(&path)));
    assert_eq!(read_all(&path), b"abc");
}

#[test]
fn one_rotation_moves_active_to_backup_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut f = RotatingFile::open(&path, cfg(10, 2), false).unwrap();
    let first_inode = f.position().inode;
    f.write(b"0123456").unwrap();
    f.write(b"789ABCD").unwrap();
    assert_eq!(f.rotations(), 1);
    assert_eq!(contents(&backup_path(&path, 0)), b"0123456789");
    assert_eq!(contents(&path), b"ABCD");
    assert_eq!(inode(&backup_path(&path, 0)), first_inode);
    assert_ne!(f.position().inode, first_inode);
    assert_eq!(
        f.position(),
        Position {
            inode: inode(&path),
            offset: 4,
            birth: birth(&path)
        }
    );
    assert!(!exists(&backup_path(&path, 1)));
}

#[test]
fn exactly_full_file_rotates_on_the_next_write_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut f = RotatingFile::open(&path, cfg(10, 1), false).unwrap();
    f.write(b"0123456789").unwrap();
    assert_eq!(f.rotations(), 0);
    assert_eq!(f.size(), 10);
    f.write(b"").unwrap();
    assert_eq!(f.rotations(), 0);
    f.write(b"x").unwrap();
    assert_eq!(f.rotations(), 1);
    assert_eq!(contents(&backup_path(&path, 0)), b"0123456789");
    assert_eq!(contents(&path), b"x");
}

#[test]
fn rotation_when_appending_to_prefilled_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    fs::write(&path, b"0123456").unwrap();
    let mut f = RotatingFile::open(&path, cfg(10, 2), false).unwrap();
    assert_eq!(f.size(), 7);
    assert_eq!(f.rotations(), 0);
    f.write(b"789abc").unwrap();
    assert_eq!(f.rotations(), 1);
    assert_eq!(contents(&backup_path(&path, 0)), b"0123456789");
    assert_eq!(contents(&path), b"abc");
}

#[test]
fn many_rotations_keep_max_backups_full_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut f = RotatingFile::open(&path, cfg(100, 3), false).unwrap();
    let data = pattern(1050, 0);
    for chunk in data.chunks(33) {
        f.write(chunk).unwrap();
    }
    assert_eq!(f.rotations(), 10);
    for i in 0..3 {
        assert_eq!(fs::metadata(backup_path(&path, i)).unwrap().len(), 100);
    }
    assert!(!exists(&backup_path(&path, 3)));
    assert_eq!(contents(&path).len(), 50);
    assert_eq!(read_all(&path), &data[data.len() - 350..]);
    assert_eq!(contents(&backup_path(&path, 2)), &data[700..800]);
    assert_eq!(contents(&backup_path(&path, 0)), &data[900..1000]);
}

#[test]
fn single_chunk_larger_than_everything_keeps_its_suffix() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut f = RotatingFile::open(&path, cfg(10, 2), false).unwrap();
    let data = pattern(95, 3);
    f.write(&data).unwrap();
    assert_eq!(f.rotations(), 9);
    assert_eq!(contents(&path), &data[90..]);
    assert_eq!(contents(&backup_path(&path, 0)), &data[80..90]);
    assert_eq!(contents(&backup_path(&path, 1)), &data[70..80]);
    assert!(!exists(&backup_path(&path, 2)));
}

#[test]
fn stale_backups_from_a_bigger_config_go_at_the_next_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    for i in 0..5 {
        fs::write(backup_path(&path, i), b"old").unwrap();
    }
    let mut f = RotatingFile::open(&path, cfg(4, 2), false).unwrap();
    f.write(b"abcdef").unwrap();
    assert_eq!(contents(&backup_path(&path, 0)), b"abcd");
    assert_eq!(contents(&backup_path(&path, 1)), b"old");
    for i in 2..6 {
        assert!(!exists(&backup_path(&path, i)), "stale backup {i} survived");
    }
}

#[test]
fn newline_cut_ends_the_file_after_the_last_newline_in_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut f = RotatingFile::open(&path, cfg(200, 2), false).unwrap();
    // Offsets 0..150, then a newline at 150 (inside [120, 200)) and one at 170 (the last).
    let mut first = pattern(150, 0);
    first.push(b'\n');
    first.extend(pattern(19, 1));
    first.push(b'\n');
    first.extend(pattern(29, 2)); // up to offset 199: 200 bytes, exactly full
    assert_eq!(first.len(), 200);
    let mut data = first.clone();
    data.extend(pattern(30, 3));
    f.write(&data).unwrap();
    assert_eq!(f.rotations(), 1);
    assert_eq!(contents(&backup_path(&path, 0)), &data[..171]);
    assert_eq!(contents(&path), &data[171..]);
    assert_eq!(read_all(&path), data);
}

#[test]
fn newline_before_the_window_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut f = RotatingFile::open(&path, cfg(200, 2), false).unwrap();
    let mut data = pattern(119, 0);
    data.push(b'\n'); // offset 119: just before the window [120, 200)
    data.extend(pattern(100, 1));
    f.write(&data).unwrap();
    assert_eq!(contents(&backup_path(&path, 0)), &data[..200]);
    assert_eq!(contents(&path), &data[200..]);
}

#[test]
fn newline_already_in_the_file_cuts_before_the_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut f = RotatingFile::open(&path, cfg(200, 2), false).unwrap();
    let mut line = pattern(179, 0);
    line.push(b'\n'); // ends at 180, inside the window
    f.write(&line).unwrap();
    let next = pattern(50, 1);
    f.write(&next).unwrap();
    assert_eq!(f.rotations(), 1);
    assert_eq!(contents(&backup_path(&path, 0)), line);
    assert_eq!(contents(&path), next);
}

#[test]
fn newline_found_in_the_tail_of_an_existing_file_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut line = pattern(179, 0);
    line.push(b'\n');
    fs::write(&path, &line).unwrap();
    let mut f = RotatingFile::open(&path, cfg(200, 2), false).unwrap();
    f.write(&pattern(50, 1)).unwrap();
    assert_eq!(contents(&backup_path(&path, 0)), line);
    assert_eq!(contents(&path), pattern(50, 1));
}

#[test]
fn file_already_too_large_is_rotated_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let big = pattern(150, 0);
    fs::write(&path, &big).unwrap();
    let mut f = RotatingFile::open(&path, cfg(100, 2), false).unwrap();
    assert_eq!(f.rotations(), 1);
    assert_eq!(f.size(), 0);
    assert_eq!(contents(&backup_path(&path, 0)), big);
    assert_eq!(contents(&path), b"");
    f.write(b"new").unwrap();
    let mut all = big.clone();
    all.extend_from_slice(b"new");
    assert_eq!(read_all(&path), all);
}

#[test]
fn symlink_at_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let target = dir.path().join("target");
    fs::write(&target, b"precious").unwrap();
    std::os::unix::fs::symlink(&target, &path).unwrap();
    let err = RotatingFile::open(&path, cfg(100, 2), false).err().unwrap();
    assert!(matches!(err, RotateError::NotRegular { .. }), "{err}");
    assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    assert_eq!(contents(&target), b"precious");

    // A dangling one must not create its target either.
    fs::remove_file(&path).unwrap();
    let nowhere = dir.path().join("nowhere");
    std::os::unix::fs::symlink(&nowhere, &path).unwrap();
    let err = RotatingFile::open(&path, cfg(100, 2), false).err().unwrap();
    assert!(matches!(err, RotateError::NotRegular { .. }), "{err}");
    assert!(!exists(&nowhere));

    let err = read_log(&path, ReadFrom::Start, 10).unwrap_err();
    assert!(matches!(err, RotateError::NotRegular { .. }), "{err}");
}

#[test]
fn directory_at_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    fs::create_dir(&path).unwrap();
    let err = RotatingFile::open(&path, cfg(100, 2), false).err().unwrap();
    assert!(
        matches!(
            err,
            RotateError::NotRegular {
                kind: "directory",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn fifo_at_path_is_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let (tx, rx) = mpsc::channel();
    let p = path.clone();
    std::thread::spawn(move || {
        let writer = RotatingFile::open(&p, cfg(100, 2), false).err();
        let reader = read_log(&p, ReadFrom::Start, 10).err();
        let _ = tx.send((writer, reader));
    });
    let (writer, reader) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("open hung on a FIFO");
    let writer = writer.expect("a FIFO was accepted");
    assert!(
        matches!(writer, RotateError::NotRegular { kind: "FIFO", .. }),
        "{writer}"
    );
    assert!(writer.to_string().contains("a.log"));
    let reader = reader.expect("a FIFO was read");
    assert!(
        matches!(reader, RotateError::NotRegular { kind: "FIFO", .. }),
        "{reader}"
    );
}

#[test]
fn failed_rotation_marks_unhealthy_counts_written_and_reopen_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut f = RotatingFile::open(&path, cfg(10, 1), false).unwrap();
    // A directory where the rotation creates the fresh file makes the rotation fail.
    fs::create_dir(fresh_path(&path)).unwrap();
    let failure = f.write(b"0123456789abc").unwrap_err();
    assert_eq!(failure.written, 10);
    assert!(
        matches!(failure.error, RotateError::Remove { .. }),
        "{failure}"
    );
    assert!(failure.to_string().contains("a.log.rotating"), "{failure}");
    assert!(!f.is_healthy());
    let closed = f.write(b"x").unwrap_err();
    assert_eq!(closed.written, 0);
    assert!(matches!(closed.error, RotateError::Closed { .. }));

    fs::remove_dir(fresh_path(&path)).unwrap();
    f.reopen().unwrap();
    assert!(f.is_healthy());
    assert_eq!(f.size(), 10);
    f.write(b"abc").unwrap();
    assert_eq!(read_all(&path), b"0123456789abc");
}

#[test]
fn read_missing_log_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let err = read_log(&path, ReadFrom::Start, 10).unwrap_err();
    assert!(matches!(err, RotateError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("a.log"));
}

#[test]
fn read_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut f = RotatingFile::open(&path, cfg(100, 2), false).unwrap();
    f.write(b"hello\nworld\n").unwrap();
    let out = read_log(&path, ReadFrom::Start, 1000).unwrap();
    assert_eq!(out.data, b"hello\nworld\n");
    assert_eq!(out.next, f.position());
    assert!(!out.gap);
    let out = read_log(
        &path,
        ReadFrom::Position(Position {
            offset: 6,
            ..f.position()
        }),
        1000,
    )
    .unwrap();
    assert_eq!(out.data, b"world\n");
    // Nothing new: empty, and `next` stays put.
    let out = read_log(&path, ReadFrom::Position(f.position()), 1000).unwrap();
    assert!(out.data.is_empty());
    assert_eq!(out.next, f.position());
    let out = read_log(&path, ReadFrom::Start, 0).unwrap();
    assert!(out.data.is_empty());
    assert_eq!(
        out.next,
        Position {
            offset: 0,
            ..f.position()
        }
    );
}

#[test]
fn end_position_is_the_size_of_the_active_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    assert!(matches!(
        end_position(&path),
        Err(RotateError::NotFound { .. })
    ));
    let mut f = RotatingFile::open(&path, cfg(10, 1), false).unwrap();
    f.write(b"0123456789abc").unwrap();
    assert_eq!(end_position(&path).unwrap(), f.position());
    drop(f);
    let out = read_log(&path, ReadFrom::Position(end_position(&path).unwrap()), 100).unwrap();
    assert!(out.data.is_empty());
}

#[test]
fn read_position_beyond_end_is_bad_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut f = RotatingFile::open(&path, cfg(100, 2), false).unwrap();
    f.write(b"abc").unwrap();
    let p = Position {
        offset: 4,
        ..f.position()
    };
    let err = read_log(&path, ReadFrom::Position(p), 10).unwrap_err();
    assert!(
        matches!(
            err,
            RotateError::BadPosition {
                offset: 4,
                len: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("a.log"));
}

#[test]
fn read_across_all_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut f = RotatingFile::open(&path, cfg(10, 3), false).unwrap();
    let data = pattern(35, 0);
    f.write(&data).unwrap();
    assert!(exists(&backup_path(&path, 2)));
    let out = read_log(&path, ReadFrom::Start, usize::MAX).unwrap();
    assert_eq!(out.data, data);
    assert!(!out.gap);
    assert_eq!(out.next, f.position());
}

#[test]
fn read_with_byte_limit_continues_from_next_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut f = RotatingFile::open(&path, cfg(10, 3), false).unwrap();
    let data = pattern(35, 0);
    f.write(&data).unwrap();
    let first = read_log(&path, ReadFrom::Start, 7).unwrap();
    assert_eq!(first.data, &data[..7]);
    assert_eq!(
        first.next,
        Position {
            inode: inode(&backup_path(&path, 2)),
            offset: 7,
            birth: birth(&backup_path(&path, 2)),
        }
    );
    let mut got = first.data;
    let mut next = first.next;
    loop {
        let out = read_log(&path, ReadFrom::Position(next), 4).unwrap();
        assert!(!out.gap);
        if out.data.is_empty() {
            break;
        }
        got.extend(out.data);
        next = out.next;
    }
    assert_eq!(got, data);
    assert_eq!(next, f.position());
    // A read ending exactly at the end of a file moves on to the next one.
    let out = read_log(&path, ReadFrom::Start, 10).unwrap();
    assert_eq!(
        out.next,
        Position {
            inode: inode(&backup_path(&path, 1)),
            offset: 0,
            birth: birth(&backup_path(&path, 1)),
        }
    );
}

#[test]
fn a_position_on_a_deleted_file_is_a_gap_even_if_its_inode_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut f = RotatingFile::open(&path, cfg(10, 1), false).unwrap();
    let start = f.position();
    // Many rotations: the first file is deleted early, and file systems such as ext4 and
    // tmpfs readily give its inode number to one of the files created after it.
    for i in 0..20u8 {
        f.write(&pattern(10, i)).unwrap();
    }
    let out = read_log(&path, ReadFrom::Position(start), 100).unwrap();
    assert!(out.gap, "a position on a deleted file must report a gap");
    assert_eq!(out.data.len(), 20);
    // The short form (birth unknown) falls back to the inode alone, as virtlogd does: it reads
    // from the file that took the inode, if one did, and is refused otherwise (it cannot be told
    // from a position that never was in the log).
    let short = Position { birth: 0, ..start };
    match read_log(&path, ReadFrom::Position(short), 100) {
        Ok(_) => {}
        Err(e) => assert!(matches!(e, RotateError::UnknownPosition { .. }), "{e}"),
    }
}

/// A position in none of the log's files is refused, naming the position and the log, unless
/// its birth time says it was in a file older than the oldest one left (rotated away: a gap).
#[test]
fn a_position_in_no_file_of_the_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let other = dir.path().join("other.txt");
    fs::write(&other, b"not the log").unwrap();
    let mut f = RotatingFile::open(&path, cfg(10, 1), false).unwrap();
    f.write(&pattern(15, 0)).unwrap();
    if birth(&path) == 0 {
        eprintln!("skipped: the file system reports no birth times");
        return;
    }
    for p in [
        // Another file's inode and birth, newer than the log's oldest file.
        Position {
            inode: inode(&other),
            offset: 0,
            birth: birth(&other),
        },
        // The short form, with an inode that is not one of the log's files.
        Position {
            inode: inode(&other),
            offset: 3,
            birth: 0,
        },
    ] {
        let err = read_log(&path, ReadFrom::Position(p), 100).unwrap_err();
        assert!(
            matches!(err, RotateError::UnknownPosition { .. }),
            "{p:?}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&p.to_string()) && msg.contains(&path.display().to_string()),
            "{msg}"
        );
    }
    // A birth older than the oldest file: rotated away, read with a gap.
    let old = Position {
        inode: inode(&other),
        offset: 0,
        birth: birth(&backup_path(&path, 0)) - 1,
    };
    let out = read_log(&path, ReadFrom::Position(old), 100).unwrap();
    assert!(out.gap);
    assert_eq!(out.data, pattern(15, 0));
}

#[test]
fn read_from_a_position_inside_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut f = RotatingFile::open(&path, cfg(10, 3), false).unwrap();
    f.write(&pattern(4, 0)).unwrap();
    let p = f.position();
    let data = pattern(20, 1);
    f.write(&data).unwrap();
    assert_eq!(inode(&backup_path(&path, 1)), p.inode);
    let out = read_log(&path, ReadFrom::Position(p), usize::MAX).unwrap();
    assert_eq!(out.data, data);
    assert!(!out.gap);
    assert_eq!(out.next, f.position());
}

#[test]
fn read_from_a_position_rotated_away_reports_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut f = RotatingFile::open(&path, cfg(10, 1), false).unwrap();
    f.write(b"0123").unwrap();
    let p = f.position();
    let data = pattern(25, 0);
    f.write(&data).unwrap();
    let out = read_log(&path, ReadFrom::Position(p), usize::MAX).unwrap();
    assert!(out.gap);
    // 29 bytes written, the last 19 kept (a full PATH.0 and 9 in PATH).
    assert_eq!(out.data, &data[6..]);
    assert_eq!(out.next, f.position());

    // The same with no backups at all: the fresh file never reuses the old inode.
    let path = dir.path().join("b.log");
    let mut f = RotatingFile::open(&path, cfg(10, 0), false).unwrap();
    f.write(b"0123456789").unwrap();
    let p = f.position();
    f.write(b"ab").unwrap();
    let out = read_log(&path, ReadFrom::Position(p), usize::MAX).unwrap();
    assert!(out.gap);
    assert_eq!(out.data, b"ab");
}

#[test]
fn read_last_n_across_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(&dir);
    let mut f = RotatingFile::open(&path, cfg(10, 3), false).unwrap();
    let data = pattern(45, 0);
    f.write(&data).unwrap();
    let kept = &data[data.len() - 35..];
    for n in [0u64, 1, 5, 10, 15, 34, 35, 36, 1000] {
        let out = read_log(&path, ReadFrom::Last(n), usize::MAX).unwrap();
        let n = n.min(35) as usize;
        assert_eq!(out.data, &kept[35 - n..], "Last({n})");
        assert!(!out.gap);
        assert_eq!(out.next, f.position());
    }
    let out = read_log(&path, ReadFrom::Last(12), 4).unwrap();
    assert_eq!(out.data, &kept[23..27]);
    let rest = read_log(&path, ReadFrom::Position(out.next), usize::MAX).unwrap();
    assert_eq!(rest.data, &kept[27..]);
}

/// One write of the property test: bytes biased towards newlines, or none at all.
fn write_strategy() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(prop_oneof![1 => Just(b'\n'), 6 => any::<u8>()], 0..700),
        any::<bool>(),
    )
        .prop_map(|(mut bytes, no_newlines)| {
            if no_newlines {
                bytes
                    .iter_mut()
                    .filter(|b| **b == b'\n')
                    .for_each(|b| *b = b'x');
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn rotated_files_are_always_the_exact_suffix_of_the_input(
        max_size in 1u64..300,
        max_backups in 0u32..4,
        writes in prop::collection::vec(write_strategy(), 0..60),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir);
        let mut f = RotatingFile::open(&path, cfg(max_size, max_backups), false).unwrap();
        let mut all = Vec::new();
        let window_start = max_size.saturating_sub(NEWLINE_WINDOW);
        for w in &writes {
            f.write(w).unwrap();
            all.extend_from_slice(w);

            let active = fs::metadata(&path).unwrap().len();
            prop_assert!(active <= max_size);
            prop_assert_eq!(f.position(), Position { inode: inode(&path), offset: active, birth: birth(&path) });
            let mut total = active;
            let backups = f.rotations().min(u64::from(max_backups)) as u32;
            for i in 0..backups {
                let len = fs::metadata(backup_path(&path, i)).unwrap().len();
                // Every cut lies beyond the newline window.
                prop_assert!(len > window_start && len <= max_size, "backup {} has {} bytes", i, len);
                total += len;
            }
            for i in backups..max_backups + 3 {
                prop_assert!(!exists(&backup_path(&path, i)), "unexpected backup {}", i);
            }
            prop_assert!(!exists(&fresh_path(&path)));
            prop_assert!(total <= max_size * (u64::from(max_backups) + 1));

            let read = read_all(&path);
            prop_assert_eq!(read.len() as u64, total);
            prop_assert!(all.ends_with(&read));
            prop_assert_eq!(read.is_empty(), all.is_empty());
        }

        // Reading in small steps from `next` gives the same bytes.
        let whole = read_all(&path);
        let mut got = Vec::new();
        let mut from = ReadFrom::Start;
        loop {
            let out = read_log(&path, from, 37).unwrap();
            prop_assert!(!out.gap);
            if out.data.is_empty() {
                break;
            }
            got.extend(out.data);
            from = ReadFrom::Position(out.next);
        }
        prop_assert_eq!(got, whole);
    }
}

/// A guardian that takes over after `Go` may hold a file the failed new image has rotated
/// away: [`RotatingFile::restore_after_go`] opens the log by its path again and reads from the
/// files what that image did (its rotations, the bytes it wrote), and writes only to the live
/// file. With fewer backups than rotations, the carried file is gone and the rotations are a
/// lower bound.
#[test]
fn restore_after_go_writes_the_live_file_and_counts_what_the_other_process_did() {
    // (backups, more bytes the other process writes, its rotations, found)
    for (backups, more, rotations, exact) in [
        (3, 0, 0, true),
        (3, 30, 0, true),
        (3, 150, 2, true),
        (1, 150, 2, false),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let path = log_path(&tmp);
        let mut f = RotatingFile::open(&path, cfg(100, backups), false).unwrap();
        f.write(&[b'x'; 60]).unwrap();
        let state = f.export(&mut crate::handover::state::Carrier::out());
        let carried = fs::File::open(&path).unwrap();
        // The other process (the new image) goes on with the same file, then dies.
        f.write(&vec![b'y'; more]).unwrap();
        drop(f);
        let before: Vec<_> = (0..backups)
            .map(|i| fs::read(backup_path(&path, i)).ok())
            .collect();

        let (mut g, caught) =
            RotatingFile::restore_after_go(&state, path.as_path().into(), Some(carried));
        let caught = caught.unwrap();
        let case = format!("{backups} backups, {more} more bytes: {caught:?}");
        assert_eq!(caught.rotations, rotations, "{case}");
        assert_eq!(caught.written, more as u64, "{case}");
        assert_eq!(caught.exact, exact, "{case}");
        assert_eq!(g.rotations(), rotations, "{case}");
        let live = fs::read(&path).unwrap();
        assert_eq!(g.size(), live.len() as u64, "{case}");
        g.write(b"z").unwrap();
        let mut expect = live;
        expect.push(b'z');
        assert_eq!(
            fs::read(&path).unwrap(),
            expect,
            "the live file grows: {case}"
        );
        let after: Vec<_> = (0..backups)
            .map(|i| fs::read(backup_path(&path, i)).ok())
            .collect();
        assert_eq!(before, after, "no backup is written: {case}");
    }
}

/// An outside truncation (logrotate's `copytruncate`) is noticed before the next write (the
/// disk writer resyncs before each batch): the file goes on at its new end, so the position
/// given out is the file's real size again and a reader can use it.
#[test]
fn an_outside_truncation_is_noticed_before_the_next_write() {
    let tmp = tempfile::tempdir().unwrap();
    let path = log_path(&tmp);
    let mut f = RotatingFile::open(&path, cfg(4096, 2), false).unwrap();
    f.write(b"first line\nsecond line\n").unwrap();
    assert_eq!(f.resync(), None, "nothing changed");
    truncate_from_outside(&path, 0);
    let change = f.resync().expect("the truncation is noticed");
    assert_eq!(
        change,
        OutsideChange {
            expected: 23,
            found: 0,
            replaced: false,
        }
    );
    assert!(change.is_truncation());
    assert_eq!(f.resync(), None, "noticed once");
    f.write(b"after\n").unwrap();
    assert_eq!(contents(&path), b"after\n", "O_APPEND: no hole");
    assert_eq!(
        f.position().offset,
        6,
        "the position is the file's real end"
    );
    // A position taken now reads what comes next.
    let pos = f.position();
    f.write(b"next\n").unwrap();
    let out = read_log(&path, ReadFrom::Position(pos), 100).unwrap();
    assert_eq!(out.data, b"next\n");
    assert!(!out.gap);
}

/// After an outside truncation the cap counts the file's real size: the next rotation comes
/// when the file is full, not early (the removed bytes still counted).
#[test]
fn an_outside_truncation_keeps_the_cap_on_the_real_size() {
    let tmp = tempfile::tempdir().unwrap();
    let path = log_path(&tmp);
    let mut f = RotatingFile::open(&path, cfg(100, 2), false).unwrap();
    f.write(&[b'a'; 90]).unwrap();
    truncate_from_outside(&path, 10);
    assert!(f.resync().unwrap().is_truncation());
    f.write(&[b'b'; 80]).unwrap();
    assert_eq!(f.rotations(), 0, "10 + 80 bytes fit in 100");
    assert_eq!(fs::metadata(&path).unwrap().len(), 90);
    f.write(&[b'c'; 20]).unwrap();
    assert_eq!(f.rotations(), 1);
    assert_eq!(fs::metadata(&path).unwrap().len(), 10);
    assert_eq!(f.position().offset, 10);
}

/// A file that grew behind logd's back (another process appended to it) is noticed too: the
/// position follows the file. It is no truncation.
#[test]
fn an_outside_append_moves_the_position_too() {
    use std::io::Write as _;
    let tmp = tempfile::tempdir().unwrap();
    let path = log_path(&tmp);
    let mut f = RotatingFile::open(&path, cfg(4096, 2), false).unwrap();
    f.write(b"ours\n").unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"theirs\n")
        .unwrap();
    let change = f.resync().unwrap();
    assert_eq!(
        change,
        OutsideChange {
            expected: 5,
            found: 12,
            replaced: false,
        }
    );
    assert!(!change.is_truncation());
    f.write(b"ours again\n").unwrap();
    assert_eq!(f.position().offset, fs::metadata(&path).unwrap().len());
}

/// What logrotate's `copytruncate` does to the active file behind logd's back, after its copy:
/// truncate it in place (to `len` bytes).
fn truncate_from_outside(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Whether this process holds `path` open (a link in /proc/self/fd names it).
fn held_open(path: &Path) -> bool {
    fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .any(|target| target == path)
}

/// A log rests from its open: its file exists (and the position names it) but is not held
/// open, until the first write opens it; `rest` closes it again and the next write opens it
/// once more, with nothing lost.
#[test]
fn a_log_holds_its_file_open_only_from_its_first_write_until_it_rests() {
    let tmp = tempfile::tempdir().unwrap();
    let path = log_path(&tmp);
    let mut f = RotatingFile::open(&path, cfg(4096, 2), false).unwrap();
    assert!(f.is_resting() && f.is_healthy());
    assert!(!held_open(&path), "a log never written holds no fd");
    assert_eq!(f.position().inode, inode(&path));
    assert_eq!(f.position().offset, 0);

    f.write(b"one\n").unwrap();
    assert!(!f.is_resting());
    assert!(held_open(&path));
    f.rest();
    assert!(f.is_resting() && f.is_healthy());
    assert!(!held_open(&path));
    assert_eq!(f.wake().unwrap(), None, "nothing changed meanwhile");
    assert!(held_open(&path));
    f.rest();
    f.write(b"two\n").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"one\ntwo\n");
    assert_eq!(f.position().offset, 8);
    assert_eq!(f.position().inode, inode(&path));
}

/// A resting file's size is kept: a rotation due at the next write still happens at the
/// right place, and what another process did meanwhile shows when it wakes.
#[test]
fn a_resting_file_removed_or_truncated_outside_is_noticed_when_it_wakes() {
    let tmp = tempfile::tempdir().unwrap();
    let path = log_path(&tmp);
    let mut f = RotatingFile::open(&path, cfg(4096, 2), false).unwrap();
    f.write(b"0123456789\n").unwrap();
    f.rest();
    truncate_from_outside(&path, 4);
    assert_eq!(
        f.wake().unwrap(),
        Some(OutsideChange {
            expected: 11,
            found: 4,
            replaced: false,
        })
    );
    f.rest();
    let old = (inode(&path), birth(&path));
    fs::remove_file(&path).unwrap();
    // Before this change, logd went on writing into the removed file, which nobody could read.
    let change = f.wake().unwrap().unwrap();
    assert!(change.replaced && !change.is_truncation(), "{change:?}");
    assert_eq!((change.expected, change.found), (4, 0));
    f.write(b"after\n").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"after\n");
    // ext4 may hand the removed file's inode number to the new one: the birth tells them apart.
    assert_ne!((f.position().inode, f.position().birth), old);
    assert_eq!(f.position().inode, inode(&path));
}

/// A log carried across a re-exec while resting has no handle in the state: the new image
/// rests it too, and a guardian that takes over after `Go` finds where it went by its inode.
#[test]
fn a_resting_log_is_carried_without_a_handle_and_found_again_after_go() {
    let tmp = tempfile::tempdir().unwrap();
    let path = log_path(&tmp);
    let mut f = RotatingFile::open(&path, cfg(100, 3), false).unwrap();
    f.write(&[b'x'; 60]).unwrap();
    f.rest();
    let state = f.export(&mut crate::handover::state::Carrier::out());
    assert!(state.file.is_none());

    let mut carried = RotatingFile::restore(&state, path.as_path().into(), None);
    assert!(carried.is_resting() && carried.is_healthy());
    carried.write(b"y").unwrap();
    assert_eq!(fs::read(&path).unwrap().len(), 61);
    drop(carried);

    // The new image wrote 150 more bytes (two rotations), then died after `Go`.
    let mut other = RotatingFile::restore(&state, path.as_path().into(), None);
    other.write(&[b'z'; 150]).unwrap();
    drop(other);
    let (g, caught) = RotatingFile::restore_after_go(&state, path.as_path().into(), None);
    let caught = caught.unwrap();
    assert_eq!(caught.rotations, 2, "{caught:?}");
    assert_eq!(caught.written, 151, "{caught:?}");
    assert!(caught.exact);
    assert_eq!(g.size(), fs::metadata(&path).unwrap().len());
}

/// A state that names no file (no handle, inode 0) gives nothing to compare with: the guardian
/// opens the log by its path and claims no rotation, rather than "rotated out".
#[test]
fn a_state_naming_no_file_is_opened_by_path_with_nothing_caught_up() {
    let tmp = tempfile::tempdir().unwrap();
    let path = log_path(&tmp);
    let mut f = RotatingFile::open(&path, cfg(100, 3), false).unwrap();
    f.write(b"kept\n").unwrap();
    let mut state = f.export(&mut crate::handover::state::Carrier::out());
    drop(f);
    state.file = None;
    state.inode = 0;
    let (g, caught) = RotatingFile::restore_after_go(&state, path.as_path().into(), None);
    assert_eq!(
        caught.unwrap(),
        CaughtUp {
            rotations: 0,
            written: 0,
            exact: false,
        }
    );
    assert_eq!(g.rotations(), 0);
    assert_eq!(g.size(), 5);
}
