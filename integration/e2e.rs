//! End-to-end tests of issue #2: the real `logd` and `logdctl` binaries, real pipes, real files,
//! real signals, and a real QEMU guest.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::*;
use logd_protocol::client::ClientError;
use logd_protocol::codec::{encode, encode_frame, MAX_REQUEST_FRAME};
use logd_protocol::{
    DomainId, ErrorCode, Hello, OpenFlags, ReadFrom, Request, Response, Uuid, MAX_RESPONSE_FRAME,
};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

fn domain(name: &str) -> DomainId {
    DomainId::from_name("qemu", name)
}

fn write_file(d: &Daemon, name: &str, data: &[u8]) -> std::path::PathBuf {
    let p = d.dir.path().join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// Acceptance 1: 10 MiB through `logdctl run` with max_size 64 KiB and 2 backups.
#[test]
fn run_caps_ten_mib_into_three_files_holding_the_exact_suffix() {
    let d = Daemon::with_config("max_size = \"64 KiB\"\nmax_backups = 2\n");
    let data = numbered_lines(10 * MIB);
    let src = write_file(&d, "src.bin", &data);
    let out = d.ctl_run(&[
        "run",
        "--domain",
        "vm1",
        "--log",
        "vm1/console.log",
        "--",
        "cat",
        src.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `position` drains the pipe, so every byte is on disk after it.
    d.ctl_ok(&["position", "--log", "vm1/console.log"]);
    let log = d.log("vm1/console.log");
    assert!(log.exists());
    assert!(log.with_extension("log.0").exists());
    assert!(log.with_extension("log.1").exists());
    assert!(!log.with_extension("log.2").exists());
    let all = read_rotated(&log, 5);
    assert!(all.len() <= 192 * KIB, "{} bytes on disk", all.len());
    assert!(all.len() > 128 * KIB, "only {} bytes kept", all.len());
    assert!(
        data.ends_with(&all),
        "the files are not the exact suffix of the stream"
    );
    for f in [
        log.clone(),
        log.with_extension("log.0"),
        log.with_extension("log.1"),
    ] {
        let m = std::fs::metadata(&f).unwrap();
        assert!(m.len() <= 64 * KIB as u64);
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777,
            0o600
        );
    }
}

/// `logdctl run` passes the command's exit status through, and reports a missing command.
#[test]
fn run_returns_the_command_status() {
    let d = Daemon::start();
    let out = d.ctl_run(&[
        "run",
        "--domain",
        "x",
        "--log",
        "x.log",
        "--",
        "sh",
        "-c",
        "echo hi; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    let out = d.ctl_run(&[
        "run",
        "--domain",
        "y",
        "--log",
        "y.log",
        "--",
        "/nonexistent/cmd",
    ]);
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/cmd"));
    d.ctl_ok(&["position", "--log", "x.log"]);
    assert_eq!(std::fs::read(d.log("x.log")).unwrap(), b"hi\n");
}

/// Acceptance 2: a real QEMU guest under `logdctl run -serial stdio` puts its banner in the log.
#[test]
fn qemu_guest_banner_reaches_the_log() {
    if require_tool("qemu-system-x86_64").is_none() {
        return;
    }
    let d = Daemon::start();
    let Some(img) = build_guest(d.dir.path()) else {
        return;
    };
    let mut args = vec![
        "run",
        "--domain",
        "guest1",
        "--log",
        "guest1/serial.log",
        "--",
    ];
    let qemu = qemu_args(&img, None);
    args.extend(qemu.iter().map(String::as_str));
    let mut child = d
        .ctl()
        .args(&args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let log = d.log("guest1/serial.log");
    wait_for(
        Duration::from_secs(60),
        "the guest banner in the log",
        || {
            let b = std::fs::read(&log).ok()?;
            String::from_utf8_lossy(&b)
                .contains("LOGD-GUEST READY")
                .then_some(())
        },
    );
    // Round trip through the guest: it echoes upper-cased into the same log, then exits (Ctrl-X).
    stdin.write_all(b"hello\x18").unwrap();
    drop(stdin);
    let st = wait_for(Duration::from_secs(60), "QEMU to exit", || {
        child.try_wait().unwrap()
    });
    assert_eq!(
        st.code(),
        Some(33),
        "isa-debug-exit status passes through logdctl run"
    );
    d.ctl_ok(&["position", "--log", "guest1/serial.log"]);
    let text = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
    assert!(text.contains("LOGD-GUEST READY\r\n"), "{text:?}");
    assert!(text.contains("HELLO"), "{text:?}");
}

/// Acceptance 3: `tail --bytes N` across rotated files returns exactly the last N bytes.
#[test]
fn tail_returns_exactly_the_last_bytes_across_rotation() {
    let d = Daemon::with_config("max_size = \"16 KiB\"\nmax_backups = 3\n");
    let data = numbered_lines(200 * KIB + 123);
    let src = write_file(&d, "src.bin", &data);
    cat_into_log(&d, "t", "t.log", &src);
    let kept = read_rotated(&d.log("t.log"), 3);
    assert!(kept.len() > 48 * KIB);
    for n in [
        1usize,
        100,
        5000,
        16 * KIB,
        16 * KIB + 1,
        40 * KIB,
        kept.len(),
    ] {
        let out = d.ctl_ok(&["tail", "--log", "t.log", "--bytes", &n.to_string()]);
        assert_eq!(out.len(), n, "tail --bytes {n}");
        assert!(data.ends_with(&out), "tail --bytes {n} is not the suffix");
    }
    // More than is kept: everything that is kept.
    let out = d.ctl_ok(&["tail", "--log", "t.log", "--bytes", "10M"]);
    assert_eq!(out, kept);
    // The default is 100 KiB.
    let out = d.ctl_ok(&["tail", "--log", "t.log"]);
    assert_eq!(out.len(), (100 * KIB).min(kept.len()));
    // `read` from the start gives everything kept; `read --from` a position continues exactly.
    let all = d.ctl_ok(&["read", "--log", "t.log"]);
    assert_eq!(all, kept);
}

/// Acceptance 4: `logdctl position` right after a write includes that write.
#[test]
fn position_includes_a_write_made_just_before() {
    let d = Daemon::start();
    let mut c = d.client();
    let (start, fd) = c
        .open_log(domain("p"), "p.log", OpenFlags::default())
        .unwrap();
    assert_eq!(start.offset, 0);
    let mut w = std::fs::File::from(fd);
    let mut total = 0u64;
    for size in [1usize, 100, 4096, 65536, 300_000, 7] {
        w.write_all(&vec![b'x'; size]).unwrap();
        total += size as u64;
        let out = String::from_utf8(d.ctl_ok(&["position", "--log", "p.log"])).unwrap();
        let (inode, offset) = out.trim().split_once(':').unwrap();
        assert_eq!(
            offset.parse::<u64>().unwrap(),
            total,
            "position after {total} bytes"
        );
        assert_eq!(inode.parse::<u64>().unwrap(), start.inode);
    }
    // A read from the position taken at open returns exactly what was written.
    let (data, next, gap) = c
        .read_log("p.log", ReadFrom::Position(start), 4 * MIB as u64)
        .unwrap();
    assert!(!gap);
    assert_eq!(data.len() as u64, total);
    assert_eq!(next.offset, total);
}

/// Acceptance 5: two domains writing at once each get exactly their own bytes.
#[test]
fn two_domains_writing_at_once_get_their_own_bytes() {
    let d = Daemon::with_config("max_size = \"8 MiB\"\n");
    let a: Vec<u8> = numbered_lines(3 * MIB)
        .iter()
        .map(|b| b.to_ascii_uppercase())
        .collect();
    let b = numbered_lines(3 * MIB + 17);
    let sa = write_file(&d, "a.bin", &a);
    let sb = write_file(&d, "b.bin", &b);
    let spawn = |name: &str, src: &std::path::Path| {
        d.ctl()
            .args([
                "run",
                "--domain",
                name,
                "--log",
                &format!("{name}.log"),
                "--",
                "cat",
            ])
            .arg(src)
            .spawn()
            .unwrap()
    };
    let mut ca = spawn("a", &sa);
    let mut cb = spawn("b", &sb);
    assert!(ca.wait().unwrap().success());
    assert!(cb.wait().unwrap().success());
    d.ctl_ok(&["position", "--log", "a.log"]);
    d.ctl_ok(&["position", "--log", "b.log"]);
    assert!(
        std::fs::read(d.log("a.log")).unwrap() == a,
        "domain a's log differs"
    );
    assert!(
        std::fs::read(d.log("b.log")).unwrap() == b,
        "domain b's log differs"
    );
}

/// Sends raw bytes, returns the first response frame the daemon answers with (or None on EOF).
fn raw_exchange(d: &Daemon, bytes: &[u8], close_write: bool) -> Option<Response> {
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(bytes).unwrap();
    if close_write {
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    read_response(&mut s)
}

fn read_response(s: &mut UnixStream) -> Option<Response> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let len = u32::from_be_bytes(len) as usize;
    assert!(len <= MAX_RESPONSE_FRAME);
    let mut payload = vec![0; len];
    s.read_exact(&mut payload).unwrap();
    Some(logd_protocol::codec::decode(&payload).unwrap())
}

fn hello_frame() -> Vec<u8> {
    encode_frame(&Hello::current(), MAX_REQUEST_FRAME).unwrap()
}

fn error_code(r: Option<Response>) -> ErrorCode {
    match r {
        Some(Response::Error(e)) => e.code,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// open -> write -> read still works (after each bad input).
fn assert_healthy(d: &mut Daemon, tag: &str) {
    d.assert_alive();
    let mut c = d.client();
    let path = format!("healthy-{tag}.log");
    let (start, fd) = c
        .open_log(
            domain(&format!("h-{tag}")),
            &path,
            OpenFlags { truncate: true },
        )
        .unwrap();
    let mut w = std::fs::File::from(fd);
    w.write_all(b"still fine\n").unwrap();
    drop(w);
    let (data, _, _) = c.read_log(&path, ReadFrom::Position(start), 1024).unwrap();
    assert_eq!(data, b"still fine\n", "after {tag}");
}

/// Acceptance 6: every bad input of section 8 gets its error; the daemon goes on.
#[test]
fn bad_input_gets_an_error_and_the_daemon_goes_on() {
    let mut d = Daemon::start();
    // An open log that must survive everything below.
    let mut keeper = d.client();
    let (_, keep_fd) = keeper
        .open_log(domain("keeper"), "keeper.log", OpenFlags::default())
        .unwrap();
    let mut keep_w = std::fs::File::from(keep_fd);
    keep_w.write_all(b"before\n").unwrap();

    // Garbage bytes (an HTTP request): the length prefix is absurd.
    let code = error_code(raw_exchange(&d, b"GET / HTTP/1.0\r\n\r\n", false));
    assert_eq!(code, ErrorCode::FrameTooLarge);
    assert_healthy(&mut d, "garbage");

    // An oversized length prefix.
    let code = error_code(raw_exchange(&d, &[0x7f, 0xff, 0xff, 0xff, 1, 2, 3], false));
    assert_eq!(code, ErrorCode::FrameTooLarge);
    assert_healthy(&mut d, "oversized");

    // A well-framed payload that is not a hello.
    let mut junk = vec![0, 0, 0, 8];
    junk.extend_from_slice(b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8");
    assert_eq!(
        error_code(raw_exchange(&d, &junk, false)),
        ErrorCode::Malformed
    );
    assert_healthy(&mut d, "junk-hello");

    // A truncated frame, then the client goes away.
    let f = hello_frame();
    match raw_exchange(&d, &f[..f.len() - 1], true) {
        None => {}
        Some(Response::Error(e)) => assert_eq!(e.code, ErrorCode::Malformed, "{}", e.message),
        Some(other) => panic!("a truncated hello was answered with {other:?}"),
    }
    assert_healthy(&mut d, "truncated");

    // A wrong version and a wrong magic.
    let bad = encode_frame(
        &Hello {
            magic: *b"LOGD",
            version: 99,
        },
        MAX_REQUEST_FRAME,
    )
    .unwrap();
    assert_eq!(
        error_code(raw_exchange(&d, &bad, false)),
        ErrorCode::UnsupportedVersion
    );
    let bad = encode_frame(
        &Hello {
            magic: *b"HTTP",
            version: 1,
        },
        MAX_REQUEST_FRAME,
    )
    .unwrap();
    assert_eq!(
        error_code(raw_exchange(&d, &bad, false)),
        ErrorCode::UnsupportedVersion
    );
    assert_healthy(&mut d, "version");

    // After a good handshake: a malformed request gets an error and the connection goes on.
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&hello_frame()).unwrap();
    assert!(matches!(read_response(&mut s), Some(Response::Welcome(_))));
    s.write_all(&[0, 0, 0, 3, 0xee, 0xee, 0xee]).unwrap();
    assert_eq!(error_code(read_response(&mut s)), ErrorCode::Malformed);
    let req = encode_frame(
        &Request::GetPosition {
            path: "keeper.log".into(),
        },
        MAX_REQUEST_FRAME,
    )
    .unwrap();
    s.write_all(&req).unwrap();
    assert!(matches!(read_response(&mut s), Some(Response::Position(_))));
    // A request cut off mid-frame by a vanishing client.
    s.write_all(&req[..req.len() - 2]).unwrap();
    drop(s);
    assert_healthy(&mut d, "mid-request");

    // A client that sends an OpenLog and vanishes without reading the reply (and its fd).
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.write_all(&hello_frame()).unwrap();
    let open = Request::OpenLog {
        domain: domain("ghost"),
        path: "ghost.log".into(),
        flags: OpenFlags::default(),
    };
    s.write_all(&encode_frame(&open, MAX_REQUEST_FRAME).unwrap())
        .unwrap();
    drop(s);
    // The pipe's write end died with the connection, so the log closes and can be opened again.
    wait_for(Duration::from_secs(10), "ghost.log to be released", || {
        let mut c = d.client();
        match c.open_log(domain("ghost"), "ghost.log", OpenFlags::default()) {
            Ok(_) => Some(()),
            Err(ClientError::Server(e)) if e.code == ErrorCode::Busy => None,
            Err(e) => panic!("unexpected: {e}"),
        }
    });
    assert_healthy(&mut d, "vanished");

    // A client that never reads its replies: it fills its socket, others are still served.
    let src = numbered_lines(4 * MIB);
    {
        let mut c = d.client();
        let (_, fd) = c
            .open_log(domain("big"), "big.log", OpenFlags::default())
            .unwrap();
        std::fs::File::from(fd).write_all(&src).unwrap();
    }
    let mut stuck = UnixStream::connect(&d.socket).unwrap();
    stuck.write_all(&hello_frame()).unwrap();
    let read = Request::ReadLog {
        path: "big.log".into(),
        from: ReadFrom::Start,
        max_len: 4 * MIB as u64,
    };
    let frame = encode_frame(&read, MAX_REQUEST_FRAME).unwrap();
    stuck.set_nonblocking(true).unwrap();
    for _ in 0..64 {
        let _ = stuck.write(&frame);
    }
    assert_healthy(&mut d, "never-reads");

    // Invalid domain fields and UUIDs.
    let mut c = d.client();
    let mut nil = domain("nil");
    nil.uuid = Uuid::nil();
    let expect = |r: Result<_, ClientError>, code: ErrorCode| match r {
        Err(ClientError::Server(e)) => assert_eq!(e.code, code, "{}", e.message),
        Err(e) => panic!("expected {code:?}, got {e}"),
        Ok(_) => panic!("expected {code:?}, got success"),
    };
    expect(
        c.open_log(nil, "n.log", OpenFlags::default()).map(|_| ()),
        ErrorCode::InvalidArgument,
    );
    expect(
        c.open_log(domain(""), "n.log", OpenFlags::default())
            .map(|_| ()),
        ErrorCode::InvalidArgument,
    );
    let out = d.ctl_run(&[
        "run",
        "--domain",
        "u",
        "--uuid",
        "not-a-uuid",
        "--log",
        "u.log",
        "--",
        "true",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid UUID"));
    assert_healthy(&mut d, "domain-fields");

    // Hostile paths.
    std::fs::create_dir(d.log("dir")).unwrap();
    std::os::unix::fs::symlink("/etc", d.log("etc-link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", d.log("pw-link")).unwrap();
    for p in [
        "../escape.log",
        "a/../../b.log",
        "/etc/passwd",
        "/tmp/x.log",
        "etc-link/x.log",
        "pw-link",
        "dir",
        "",
        "a\0b",
    ] {
        let r = c
            .open_log(domain("hostile"), p, OpenFlags::default())
            .map(|_| ());
        match r {
            Err(ClientError::Server(e)) => {
                assert_eq!(e.code, ErrorCode::PathRefused, "{p:?}: {}", e.message);
                if !p.is_empty() && !p.contains('\0') {
                    assert!(
                        e.message.contains(p.trim_start_matches("../"))
                            || e.message.contains("etc-link")
                            || e.message.contains(p),
                        "{p:?}: {}",
                        e.message
                    );
                }
            }
            other => panic!("{p:?} was not refused: {other:?}"),
        }
    }
    assert!(!std::fs::read_to_string("/etc/passwd").unwrap().is_empty());
    assert_healthy(&mut d, "paths");

    // A path already open.
    expect(
        c.open_log(domain("other"), "keeper.log", OpenFlags::default())
            .map(|_| ()),
        ErrorCode::Busy,
    );
    expect(
        c.open_log(domain("keeper"), "keeper.log", OpenFlags::default())
            .map(|_| ()),
        ErrorCode::Busy,
    );
    assert_healthy(&mut d, "busy");

    // Limits on sizes.
    expect(
        c.read_log("keeper.log", ReadFrom::Start, 64 * MIB as u64)
            .map(|_| ()),
        ErrorCode::InvalidArgument,
    );
    expect(
        c.append_log(domain("keeper"), "keeper.log", &vec![b'a'; 100 * KIB])
            .map(|_| ()),
        ErrorCode::InvalidArgument,
    );
    expect(
        c.read_log("missing.log", ReadFrom::Start, 10).map(|_| ()),
        ErrorCode::NotFound,
    );

    // The log opened first still has every byte written before, during and after all this.
    keep_w.write_all(b"after\n").unwrap();
    let (data, _, _) = keeper
        .read_log("keeper.log", ReadFrom::Start, 1024)
        .unwrap();
    assert_eq!(data, b"before\nafter\n");
    drop(stuck);
}

/// Acceptance 6, the last case: a directory the daemon cannot write gets an I/O error naming it.
#[test]
fn unwritable_directory_gets_a_clear_error() {
    let mut d = Daemon::start_with(Opts {
        as_uid: Some(65534),
        ..Opts::default()
    });
    let ro = d.log("readonly");
    std::fs::create_dir(&ro).unwrap(); // owned by root, mode 0755: the daemon (uid 65534) cannot write
    let mut c = d.client();
    match c.open_log(domain("ro"), "readonly/x.log", OpenFlags::default()) {
        Err(ClientError::Server(e)) => {
            assert_eq!(e.code, ErrorCode::Io, "{}", e.message);
            assert!(e.message.contains("readonly/x.log"), "{}", e.message);
        }
        other => panic!("expected an I/O error, got {:?}", other.map(|_| ())),
    }
    match c.append_log(domain("ro"), "readonly/y.log", b"m\n") {
        Err(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::Io, "{}", e.message),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert_healthy(&mut d, "unwritable");
}

/// Acceptance 7: a peer with another uid is refused, even one that can reach the socket file.
#[test]
fn a_peer_with_another_uid_is_refused() {
    if require_tool("setpriv").is_none() {
        return;
    }
    let d = Daemon::start();
    // CAP_DAC_OVERRIDE lets uid 65534 past the socket's mode 0600, so the daemon's own
    // SO_PEERCRED check is what must refuse it.
    let out = run_bounded(
        std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=+dac_override",
                "--ambient-caps=+dac_override",
                LOGDCTL,
                "--socket",
            ])
            .arg(&d.socket)
            .args([
                "append",
                "--domain",
                "intruder",
                "--log",
                "intruder.log",
                "hello",
            ]),
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "another uid was served");
    assert!(
        err.contains("permission denied") && err.contains("65534"),
        "{err}"
    );
    assert!(!d.log("intruder.log").exists());
    // Without the capability, the socket's mode already keeps it out.
    let out = run_bounded(
        std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                LOGDCTL,
                "--socket",
            ])
            .arg(&d.socket)
            .args(["position", "--log", "x.log"]),
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    // Root is still served.
    d.ctl_ok(&["append", "--domain", "root", "--log", "root.log", "hi"]);
}

/// Acceptance 8: SIGTERM while a writer is mid-stream loses none of the bytes already in the pipe.
#[test]
fn sigterm_mid_stream_keeps_every_byte_already_written() {
    let mut d = Daemon::with_config("max_size = \"64 MiB\"\n");
    let data = Arc::new(numbered_lines(64 * MIB));
    let mut c = d.client();
    let (_, fd) = c
        .open_log(domain("w"), "w.log", OpenFlags::default())
        .unwrap();
    drop(c);
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let data = data.clone();
        let written = written.clone();
        std::thread::spawn(move || {
            let mut w = std::fs::File::from(fd);
            for chunk in data.chunks(4096) {
                match w.write(chunk) {
                    Ok(n) => {
                        written.fetch_add(n as u64, Ordering::SeqCst);
                        if n < chunk.len() {
                            break;
                        }
                    }
                    Err(_) => break, // EPIPE once the daemon is gone
                }
                // Pacing only, so that the stream is still going at SIGTERM; the checks hold
                // for any amount written (at least `before`, at most `total`, a prefix).
                std::thread::sleep(Duration::from_micros(50));
            }
        })
    };
    wait_for(Duration::from_secs(30), "the writer to get going", || {
        (written.load(Ordering::SeqCst) > 2 * MIB as u64).then_some(())
    });
    let before = written.load(Ordering::SeqCst);
    let code = d.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(code, Some(0), "logd exits 0 on SIGTERM");
    writer.join().unwrap();
    let total = written.load(Ordering::SeqCst);
    let log = std::fs::read(d.log("w.log")).unwrap();
    assert!(
        log.len() as u64 >= before,
        "lost bytes: {} on disk, {before} written before SIGTERM",
        log.len()
    );
    assert!(log.len() as u64 <= total);
    assert!(
        log[..] == data[..log.len()],
        "the log is not the exact prefix of the stream"
    );
    assert!(d.stderr().contains("SIGTERM"));
}

/// AppendLog works with and without an open pipe, in order with the pipe's bytes.
#[test]
fn append_works_open_or_not_and_keeps_order() {
    let d = Daemon::start();
    d.ctl_ok(&["append", "--domain", "a", "--log", "a.log", "starting"]);
    let mut c = d.client();
    let (_, fd) = c
        .open_log(domain("a"), "a.log", OpenFlags::default())
        .unwrap();
    let mut w = std::fs::File::from(fd);
    w.write_all(b"from the guest\n").unwrap();
    d.ctl_ok(&["append", "--domain", "a", "--log", "a.log", "marker"]);
    w.write_all(b"more\n").unwrap();
    drop(w);
    d.ctl_ok(&["position", "--log", "a.log"]);
    d.ctl_ok(&["append", "--domain", "a", "--log", "a.log", "stopped"]);
    assert_eq!(
        std::fs::read_to_string(d.log("a.log")).unwrap(),
        "starting\nfrom the guest\nmarker\nmore\nstopped\n"
    );
    // --truncate starts afresh.
    let mut c = d.client();
    let (p, _fd) = c
        .open_log(domain("a"), "a.log", OpenFlags { truncate: true })
        .unwrap();
    assert_eq!(p.offset, 0);
}

/// A busy domain is not disturbed by many idle ones, and closing pipes removes domains.
#[test]
fn many_domains_open_and_close() {
    let d = Daemon::start();
    let mut c = d.client();
    let mut fds = Vec::new();
    for i in 0..200 {
        let (_, fd) = c
            .open_log(
                domain(&format!("idle{i}")),
                &format!("idle/{i}.log"),
                OpenFlags::default(),
            )
            .unwrap();
        fds.push(fd);
    }
    for (i, fd) in fds.into_iter().enumerate() {
        let mut w = std::fs::File::from(fd);
        writeln!(w, "domain {i}").unwrap();
    }
    for i in [0, 99, 199] {
        let out = d.ctl_ok(&["read", "--log", &format!("idle/{i}.log")]);
        assert_eq!(out, format!("domain {i}\n").as_bytes());
    }
    wait_for(Duration::from_secs(10), "domains to be removed", || {
        d.stderr()
            .matches("domain has no logs left")
            .count()
            .ge(&200)
            .then_some(())
    });
}

/// With no daemon running, a non-root user's logdctl starts one in user mode.
#[test]
fn logdctl_starts_a_user_daemon_when_none_answers() {
    if require_tool("setpriv").is_none() {
        return;
    }
    let home = tempfile::Builder::new()
        .prefix("logd-home-")
        .tempdir()
        .unwrap();
    std::process::Command::new("chown")
        .arg("65534:65534")
        .arg(home.path())
        .status()
        .unwrap();
    let runtime = home.path().join("run");
    let out = run_bounded(
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", LOGDCTL])
            .args([
                "run",
                "--domain",
                "first",
                "--log",
                "first.log",
                "--",
                "echo",
                "first run",
            ])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("HOME", home.path())
            .env("XDG_RUNTIME_DIR", &runtime),
        Duration::from_secs(30),
    );
    let pid_line = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{pid_line}");
    assert!(pid_line.contains("started logd"), "{pid_line}");
    let log = home.path().join(".local/state/logd/first.log");
    wait_for(Duration::from_secs(10), "the log", || {
        (std::fs::read(&log).ok()? == b"first run\n").then_some(())
    });
    // Stop the daemon it started.
    let pid: i32 = pid_line
        .split("pid ")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}

/// The bytes of the handshake are what docs/protocol.md says.
#[test]
fn handshake_bytes_match_the_documentation() {
    assert_eq!(encode(&Hello::current()).unwrap(), b"LOGD\x01");
    assert_eq!(hello_frame(), b"\x00\x00\x00\x05LOGD\x01");
}

/// Section 6: connections beyond `max_clients` are refused with an error, not left hanging.
#[test]
fn clients_beyond_max_clients_are_refused_with_an_error() {
    let mut d = Daemon::with_config("max_clients = 2\n");
    let c1 = d.client();
    let c2 = d.client();
    match logd_protocol::client::Client::connect(&d.socket) {
        Err(ClientError::Server(e)) => {
            assert_eq!(e.code, ErrorCode::TooManyClients, "{}", e.message)
        }
        Err(e) => panic!("expected TooManyClients, got {e}"),
        Ok(_) => panic!("a third client was served with max_clients = 2"),
    }
    let out = d.ctl_run(&["position", "--log", "x.log"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("too many clients"));
    drop(c1);
    // The slot frees as soon as a client leaves.
    wait_for(Duration::from_secs(10), "a free slot", || {
        logd_protocol::client::Client::connect(&d.socket).ok()
    });
    drop(c2);
    assert_healthy(&mut d, "max-clients");
}

/// Section 6: a bad config stops start-up with a message naming the key.
#[test]
fn bad_config_stops_startup_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key) in [
        ("max_sise = 5\n", "max_sise"),
        ("max_size = \"huge\"\n", "max_size"),
        ("max_backups = -1\n", "max_backups"),
        ("max_clients = 0\n", "max_clients"),
    ] {
        let cfg = dir.path().join("bad.toml");
        std::fs::write(&cfg, text).unwrap();
        let out = run_bounded(
            std::process::Command::new(LOGD)
                .arg("--config")
                .arg(&cfg)
                .arg("--socket")
                .arg(dir.path().join("s"))
                .arg("--log-root")
                .arg(dir.path().join("l")),
            Duration::from_secs(20),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}: {err}");
        assert!(err.contains(key), "{text}: {err}");
    }
    // A second daemon on a live socket is refused.
    let d = Daemon::start();
    let out = run_bounded(
        std::process::Command::new(LOGD)
            .arg("--socket")
            .arg(&d.socket)
            .arg("--log-root")
            .arg(&d.log_root)
            .arg("--consoles-file")
            .arg(d.consoles_file()),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already listening"));
}

/// Section 7: `tail --follow` keeps printing across rotations; `read --from` continues exactly.
#[test]
fn tail_follow_crosses_rotations() {
    let d = Daemon::with_config("max_size = \"8 KiB\"\nmax_backups = 2\n");
    let mut c = d.client();
    let (start, fd) = c
        .open_log(domain("f"), "f.log", OpenFlags::default())
        .unwrap();
    let mut w = std::fs::File::from(fd);
    let data = numbered_lines(64 * KIB);
    w.write_all(&data[..1000]).unwrap();
    d.ctl_ok(&["position", "--log", "f.log"]);
    let mut tail = d
        .ctl()
        .args(["tail", "--log", "f.log", "--bytes", "100", "--follow"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = tail.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    // Collects what the follower prints until it has printed `want` bytes in all.
    let mut got = Vec::new();
    let catch_up = |got: &mut Vec<u8>, want: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while got.len() < want {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(b) => got.extend(b),
                Err(_) => panic!(
                    "tail -f printed {} bytes in 30 s, not {want}: {:?}",
                    got.len(),
                    String::from_utf8_lossy(&got[got.len().saturating_sub(200)..])
                ),
            }
        }
    };
    // First the last 100 bytes, before anything more is written.
    catch_up(&mut got, 100);
    // Then more, in pieces, each once the follower has printed the one before: its position is
    // then in the file that the next piece's rotation (at 8 KiB and 16 KiB) renames away.
    for (i, chunk) in data[1000..20 * KIB].chunks(2000).enumerate() {
        w.write_all(chunk).unwrap();
        catch_up(&mut got, 100 + 2000 * i + chunk.len());
    }
    let _ = tail.kill();
    let _ = tail.wait();
    let want = 100 + (20 * KIB - 1000);
    assert!(
        got == data[900..20 * KIB],
        "tail -f output differs: got {} bytes, want {want}; first difference at {:?}; starts {:?}",
        got.len(),
        got.iter().zip(&data[900..]).position(|(a, b)| a != b),
        String::from_utf8_lossy(&got[..got.len().min(200)])
    );
    // Both rotations came while it followed.
    assert!(d.log("f.log.1").exists(), "the log did not rotate twice");
    // `read --from` a position taken earlier continues exactly (or reports the gap).
    let pos = String::from_utf8(d.ctl_ok(&["position", "--log", "f.log"])).unwrap();
    w.write_all(b"tail end\n").unwrap();
    let rest = d.ctl_ok(&["read", "--log", "f.log", "--from", pos.trim()]);
    assert_eq!(rest, b"tail end\n");
    w.write_all(&data[20 * KIB..]).unwrap(); // enough to rotate the first file away
    d.ctl_ok(&["position", "--log", "f.log"]);
    let out = d.ctl_run(&["read", "--log", "f.log", "--from", &start.exact()]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rotated away"),
        "start {start}; stderr {:?}; {} bytes out; files {:?}",
        String::from_utf8_lossy(&out.stderr),
        out.stdout.len(),
        std::fs::read_dir(&d.log_root)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name(),
                    std::os::unix::fs::MetadataExt::ino(&e.metadata().unwrap()),
                )
            })
            .collect::<Vec<_>>()
    );
}

/// Section 5: a full disk never closes the guest's pipe, and costs the log its oldest bytes,
/// not its newest.
#[test]
fn a_full_disk_never_closes_the_guest_pipe() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let mnt = tempfile::Builder::new()
        .prefix("logd-full-")
        .tempdir()
        .unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs"])
        .arg(mnt.path())
        .status()
        .unwrap();
    if !st.success() {
        if std::env::var("LOGD_REQUIRE_QEMU").as_deref() == Ok("1") {
            panic!("cannot mount a tmpfs for the full-disk test");
        }
        eprintln!("skipped: cannot mount a tmpfs");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _guard = Unmount(mnt.path().to_owned());
    let d = Daemon::with_config(&format!(
        "allowed_dirs = [\"{}\"]\nmax_size = \"1 MiB\"\nmax_backups = 1\n",
        mnt.path().display()
    ));
    let path = mnt.path().join("full.log");
    let path_s = path.to_str().unwrap();
    let mut c = d.client();
    let (_, fd) = c
        .open_log(domain("full"), path_s, OpenFlags::default())
        .unwrap();
    let mut w = std::fs::File::from(fd);
    // 1 MiB into a 256 KiB file system: the writer is never refused.
    let data = numbered_lines(MIB);
    for chunk in data.chunks(16 * KIB) {
        w.write_all(chunk).unwrap();
    }
    c.position(path_s).unwrap();
    // The log gave up its own oldest bytes for room (issue 12): what is on disk is the newest
    // bytes, within the file system, and the writer was never refused. (faults.rs has the disk
    // filled by others, where bytes are dropped and counted.)
    let kept = read_rotated(&path, 1);
    assert!(kept.len() <= 256 * KIB, "{}", kept.len());
    assert!(!kept.is_empty() && data.ends_with(&kept));
    w.write_all(b"still writable\n").unwrap();
    c.position(path_s).unwrap();
    assert!(std::fs::read(&path).unwrap().ends_with(b"still writable\n"));
}

/// `--idle-exit`: a session daemon stays while a log is open or a client is connected, and
/// exits (0) once it has had neither for the given time.
#[test]
fn idle_exit_waits_for_the_last_log_and_client() {
    let dir = tempfile::tempdir().unwrap();
    let idle_logd = |name: &str| {
        std::process::Command::new(LOGD)
            .arg("--socket")
            .arg(dir.path().join(name))
            .arg("--log-root")
            .arg(dir.path().join(format!("{name}-logs")))
            .arg("--consoles-file")
            .arg(dir.path().join(format!("{name}-consoles.toml")))
            .args(["--idle-exit", "1"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let socket = dir.path().join("s");
    let mut child = idle_logd("s");
    let mut c = wait_for(Duration::from_secs(20), "logd to start", || {
        logd_protocol::client::Client::connect(&socket).ok()
    });
    let (_, fd) = c
        .open_log(domain("idle"), "idle.log", OpenFlags::default())
        .unwrap();
    drop(c);
    // A log is open. Once logd is older than its idle time, a twin starts (the same daemon,
    // with nothing open); when the twin has exited for being idle, a whole idle time has passed
    // on the same clocks since logd's own idle check was due, and logd is still there.
    let pid = child.id() as i32;
    wait_for(
        Duration::from_secs(20),
        "logd to outlive its idle time",
        || (process_age(pid).unwrap() > Duration::from_secs(1)).then_some(()),
    );
    let mut twin = idle_logd("twin");
    let st = wait_for(Duration::from_secs(20), "the idle twin to exit", || {
        twin.try_wait().unwrap()
    });
    assert_eq!(st.code(), Some(0), "the twin's exit");
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited with a log open"
    );
    drop(fd);
    let st = wait_for(Duration::from_secs(20), "logd to exit when idle", || {
        child.try_wait().unwrap()
    });
    assert_eq!(st.code(), Some(0));
    assert!(!socket.exists(), "the socket file is removed at exit");
}

/// A guest that restarts at once reopens its log the moment its old pipe closed: the open is
/// not refused as busy even when logd has not yet seen the old pipe's EOF. A log whose writer
/// is still there stays busy.
#[test]
fn a_log_reopened_right_after_its_writer_left_is_not_busy() {
    const ALONE: &str = "LOGD_TEST_ALONE";
    if std::env::var_os(ALONE).is_none() {
        // The other tests of this binary start processes at any moment, and a child holds a
        // copy of every fd of this process from its fork to its exec: the writer that logd
        // must see leave would then still be there, for real (once in a few hundred runs, open
        // 192 of 200 was refused as busy). So the test runs alone, in a process of its own.
        let st = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "e2e::a_log_reopened_right_after_its_writer_left_is_not_busy",
                "--test-threads=1",
            ])
            .env(ALONE, "1")
            .status()
            .unwrap();
        assert!(st.success(), "the test, run alone: {st}");
        return;
    }
    let d = Daemon::start();
    let mut c = d.client();
    for i in 0..200 {
        let (_, fd) = c
            .open_log(domain("restarts"), "restarts.log", OpenFlags::default())
            .unwrap_or_else(|e| panic!("open {i}: {e}"));
        let mut w = std::fs::File::from(fd);
        writeln!(w, "boot {i}").unwrap();
        drop(w);
    }
    d.ctl_ok(&["position", "--log", "restarts.log"]);
    let log = std::fs::read_to_string(d.log("restarts.log")).unwrap();
    let want: String = (0..200).map(|i| format!("boot {i}\n")).collect();
    assert_eq!(log, want);
    // With a writer still holding the pipe, a second open is refused.
    let (_, fd) = c
        .open_log(domain("restarts"), "restarts.log", OpenFlags::default())
        .unwrap();
    let e = c
        .open_log(domain("restarts"), "restarts.log", OpenFlags::default())
        .unwrap_err();
    assert!(e.to_string().contains("already open"), "{e}");
    drop(fd);
}

/// Requests racing with a log's close (EOF, then the domain's removal) still get their answer.
#[test]
fn requests_racing_with_a_close_are_answered() {
    let d = Daemon::start();
    let mut c = d.client();
    for i in 0..300 {
        let path = format!("race/{}.log", i % 7);
        let (start, fd) = c
            .open_log(domain("race"), &path, OpenFlags { truncate: true })
            .unwrap();
        let mut w = std::fs::File::from(fd);
        writeln!(w, "round {i}").unwrap();
        drop(w);
        match i % 3 {
            0 => {
                let (data, _, _) = c.read_log(&path, ReadFrom::Position(start), 100).unwrap();
                assert_eq!(data, format!("round {i}\n").as_bytes());
            }
            1 => assert_eq!(
                c.position(&path).unwrap().offset,
                format!("round {i}\n").len() as u64
            ),
            _ => {
                c.append_log(domain("race"), &path, b"appended\n").unwrap();
            }
        }
    }
}

/// A pipe that has never carried a byte holds one page of ring (1 KiB less kernel memory than
/// the default with thousands of idle guests); its first data gives it the kernel's default,
/// and a burst larger than one page gets through whole.
#[test]
fn an_idle_pipe_is_one_page_until_its_first_byte() {
    use nix::fcntl::{fcntl, FcntlArg};
    let d = Daemon::start();
    let mut c = d.client();
    let (_, fd) = c
        .open_log(domain("pipes"), "pipes.log", OpenFlags::default())
        .unwrap();
    assert_eq!(fcntl(&fd, FcntlArg::F_GETPIPE_SZ).unwrap(), 4096);
    let mut w = std::fs::File::from(fd);
    w.write_all(b"first line\n").unwrap();
    let size = wait_for(
        Duration::from_secs(10),
        "the pipe to take the default size",
        || {
            let size = fcntl(&w, FcntlArg::F_GETPIPE_SZ).unwrap();
            (size >= 65536).then_some(size)
        },
    );
    assert_eq!(
        size, 65536,
        "the default, not more: the pipe was never full"
    );
    // A 48 KiB write (a blocking one, as a guest's) goes through and lands whole.
    let burst: Vec<u8> = (0..48 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    w.write_all(&burst).unwrap();
    drop(w);
    d.ctl_ok(&["position", "--log", "pipes.log"]);
    let log = std::fs::read(d.log("pipes.log")).unwrap();
    assert_eq!(&log[..11], b"first line\n");
    assert_eq!(&log[11..], &burst[..]);
}
