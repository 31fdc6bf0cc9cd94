//! The virtlogd socket on the wire (issue 13): the real `logd` serving libvirt's virtlogd RPC,
//! driven by a client written here from libvirt's protocol description (`virnetprotocol.x`,
//! `log_protocol.x`), not from logd's own encoder: every byte below is laid out by hand.
//!
//! The end-to-end test with the real libvirtd and QEMU is `integration/libvirt.rs`.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

const PROGRAM: u32 = 0x8753_9319;
const OPEN: u32 = 1;
const GET_POSITION: u32 = 2;
const READ: u32 = 3;
const APPEND: u32 = 4;
/// libvirt's error numbers (virterror.h).
const ERR_SYSTEM_ERROR: u32 = 38;
const ERR_RPC: u32 = 39;
const ERR_ACCESS_DENIED: u32 = 88;

// ---------------------------------------------------------------------------------------------
// A client of virtlogd's RPC, by hand.

/// XDR: a string is its length, its bytes, then zeros to a multiple of 4.
fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
    out.resize(out.len().div_ceil(4) * 4, 0);
}

fn word(out: &mut Vec<u8>, w: u32) {
    out.extend_from_slice(&w.to_be_bytes());
}

fn hyper(out: &mut Vec<u8>, h: u64) {
    out.extend_from_slice(&h.to_be_bytes());
}

/// A whole message: the length (which counts itself), six header words, the body.
fn message(
    program: u32,
    version: u32,
    procedure: u32,
    kind: u32,
    serial: u32,
    body: &[u8],
) -> Vec<u8> {
    let mut m = Vec::new();
    word(&mut m, (28 + body.len()) as u32);
    for w in [program, version, procedure, kind, serial, 0] {
        word(&mut m, w);
    }
    m.extend_from_slice(body);
    m
}

fn call(procedure: u32, serial: u32, body: &[u8]) -> Vec<u8> {
    message(PROGRAM, 1, procedure, 0, serial, body)
}

const UUID: [u8; 16] = *b"\x11\x22\x33\x44\x55\x66\x47\x88\x99\xaa\xbb\xcc\xdd\xee\xff\x01";

fn open_args(path: &str, name: &str, flags: u32) -> Vec<u8> {
    let mut b = Vec::new();
    string(&mut b, b"qemu");
    b.extend_from_slice(&UUID);
    string(&mut b, name.as_bytes());
    string(&mut b, path.as_bytes());
    word(&mut b, flags);
    b
}

fn position_args(path: &str) -> Vec<u8> {
    let mut b = Vec::new();
    string(&mut b, path.as_bytes());
    word(&mut b, 0);
    b
}

fn read_args(path: &str, inode: u64, offset: u64, maxlen: u64) -> Vec<u8> {
    let mut b = Vec::new();
    string(&mut b, path.as_bytes());
    hyper(&mut b, inode);
    hyper(&mut b, offset);
    hyper(&mut b, maxlen);
    word(&mut b, 0);
    b
}

fn append_args(path: &str, name: &str, message: &str) -> Vec<u8> {
    let mut b = Vec::new();
    string(&mut b, b"qemu");
    b.extend_from_slice(&UUID);
    string(&mut b, name.as_bytes());
    string(&mut b, path.as_bytes());
    string(&mut b, message.as_bytes());
    word(&mut b, 0);
    b
}

/// A reply as it arrived.
#[derive(Debug)]
struct Msg {
    /// As the call's: a reply repeats the call's program and version.
    program: u32,
    procedure: u32,
    kind: u32,
    serial: u32,
    status: u32,
    body: Vec<u8>,
    fd: Option<OwnedFd>,
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap())
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().unwrap())
}

impl Msg {
    /// `pos` of an OPEN (after the fd count) or GET_POSITION reply.
    fn position(&self) -> (u64, u64) {
        assert_eq!(self.status, 0, "an error: {}", self.error().1);
        let b = if self.kind == 5 {
            &self.body[4..]
        } else {
            &self.body[..]
        };
        assert_eq!(b.len(), 16);
        (be64(b), be64(&b[8..]))
    }

    /// READ's data.
    fn data(&self) -> Vec<u8> {
        assert_eq!(self.status, 0, "an error: {}", self.error().1);
        let len = be32(&self.body) as usize;
        self.body[4..4 + len].to_vec()
    }

    /// An error reply's code and message (virNetMessageError: code, domain, message?, …).
    fn error(&self) -> (u32, String) {
        assert_eq!(self.status, 1, "not an error reply: {self:?}");
        let b = &self.body;
        assert_eq!(be32(&b[8..]), 1, "the message is present");
        let len = be32(&b[12..]) as usize;
        (
            be32(b),
            String::from_utf8_lossy(&b[16..16 + len]).into_owned(),
        )
    }
}

struct Client {
    s: UnixStream,
    serial: u32,
}

impl Client {
    fn connect(path: &Path) -> Client {
        let s = UnixStream::connect(path).expect("connect to the virtlogd socket");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client { s, serial: 0 }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("send");
    }

    /// One call, one reply (its serial checked).
    fn call(&mut self, procedure: u32, body: &[u8]) -> Msg {
        self.serial += 1;
        self.send(&call(procedure, self.serial, body));
        let m = self.recv().expect("a reply");
        assert_eq!(
            (m.program, m.serial, m.procedure),
            (PROGRAM, self.serial, procedure),
            "the reply answers the call"
        );
        m
    }

    /// The next message, or None if the daemon closed the connection.
    fn recv(&mut self) -> Option<Msg> {
        let mut len = [0u8; 4];
        if self.s.read_exact(&mut len).is_err() {
            return None;
        }
        let len = u32::from_be_bytes(len) as usize;
        assert!((28..=16 << 20).contains(&len), "reply length {len}");
        let mut rest = vec![0u8; len - 4];
        self.s.read_exact(&mut rest).expect("the whole reply");
        let w = |i: usize| be32(&rest[i * 4..]);
        let mut m = Msg {
            program: w(0),
            procedure: w(2),
            kind: w(3),
            serial: w(4),
            status: w(5),
            body: rest[24..].to_vec(),
            fd: None,
        };
        if m.kind == 5 {
            // REPLY_WITH_FDS: the count, then each fd on a 1-byte message of its own.
            assert_eq!(be32(&m.body), 1, "one fd announced");
            let mut byte = [0u8; 1];
            let mut fds = Vec::new();
            let n = logd_protocol::fdpass::recv_with_fds(self.s.as_fd(), &mut byte, &mut fds)
                .expect("the fd's message");
            assert_eq!((n, fds.len()), (1, 1), "one byte carrying one fd");
            m.fd = fds.pop();
        } else {
            assert_eq!(m.kind, 1, "a reply");
        }
        Some(m)
    }

    /// Whether the daemon has closed the connection (within a few seconds).
    fn closed(&mut self) -> bool {
        self.s
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b), Ok(0))
    }
}

/// A daemon serving the virtlogd socket in a directory of its own, removed after the daemon.
fn daemon() -> (Daemon, PathBuf, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("logd-virtlogd-")
        .tempdir()
        .unwrap();
    let sock = dir.path().join("virtlogd-sock");
    let d = Daemon::start_with(Opts {
        config: format!("virtlogd_socket = {:?}\n", sock.display().to_string()),
        ..Opts::default()
    });
    wait_for(Duration::from_secs(10), "the virtlogd socket", || {
        UnixStream::connect(&sock).ok()
    });
    (d, sock, dir)
}

fn ps(d: &Daemon) -> String {
    String::from_utf8(d.ctl_ok(&["ps", "--json"])).unwrap()
}

// ---------------------------------------------------------------------------------------------

#[test]
fn the_four_procedures_serve_a_guests_log() {
    let (d, sock, _dir) = daemon();
    let path = d.log("vm-one.log").display().to_string();
    let mut c = Client::connect(&sock);

    // OPEN: a position and the pipe's write end.
    let opened = c.call(OPEN, &open_args(&path, "vm-one", 0));
    let (inode, offset) = opened.position();
    assert_eq!(inode, std::fs::metadata(&path).unwrap().ino());
    assert_eq!(offset, 0);
    let mut pipe = std::fs::File::from(opened.fd.expect("the pipe"));
    pipe.write_all(b"qemu says hello\n").unwrap();

    // GET_POSITION: only after the bytes already in the pipe are on disk.
    let (inode2, end) = c.call(GET_POSITION, &position_args(&path)).position();
    assert_eq!((inode2, end), (inode, 16));
    assert_eq!(std::fs::read(&path).unwrap(), b"qemu says hello\n");

    // READ from the open's position, as libvirtd does when QEMU fails to start.
    let data = c.call(READ, &read_args(&path, inode, 0, 128 * 1024)).data();
    assert_eq!(data, b"qemu says hello\n");
    // A position in no file (inode 0) reads from the oldest file's start, as virtlogd does.
    assert_eq!(c.call(READ, &read_args(&path, 0, 0, 5)).data(), b"qemu ");

    // APPEND, on a connection of its own as libvirtd does; after the pipe's bytes.
    pipe.write_all(b"second line\n").unwrap();
    let mut c2 = Client::connect(&sock);
    let appended = c2.call(
        APPEND,
        &append_args(&path, "vm-one", "shutting down, reason=destroyed\n"),
    );
    assert_eq!(appended.status, 0);
    assert_eq!(appended.body, [0, 0, 0, 0], "ret 0");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"qemu says hello\nsecond line\nshutting down, reason=destroyed\n"
    );

    // The log is logd's like any other: ps shows the domain's name and uuid.
    let listing = ps(&d);
    assert!(listing.contains("vm-one"), "{listing}");
    assert!(
        listing.contains("11223344-5566-4788-99aa-bbccddeeff01"),
        "{listing}"
    );

    // A path open already is busy, in virtlogd's words, through either socket.
    let busy = c.call(OPEN, &open_args(&path, "vm-one", 0));
    let (code, text) = busy.error();
    assert_eq!(code, ERR_SYSTEM_ERROR);
    assert_eq!(
        text,
        format!("Cannot open log file: '{path}': Device or resource busy")
    );
    let err = d
        .client()
        .open_log(
            logd_protocol::DomainId::from_name("qemu", "other"),
            &path,
            logd_protocol::OpenFlags::default(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("already open"), "{err}");
    // And a log opened through logd's own socket is busy for libvirtd.
    let _own = d.open_pipe("own", "own.log");
    let own = d.log("own.log").display().to_string();
    let (code, _) = c.call(OPEN, &open_args(&own, "vm-one", 0)).error();
    assert_eq!(code, ERR_SYSTEM_ERROR);

    // APPEND to a log with no pipe: the domain has stopped, its log stays.
    drop(pipe);
    wait_for(Duration::from_secs(10), "the stream to close", || {
        (!ps(&d).contains("vm-one.log")).then_some(())
    });
    let mut c3 = Client::connect(&sock);
    assert_eq!(
        c3.call(APPEND, &append_args(&path, "vm-one", "after the end\n"))
            .status,
        0
    );
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .ends_with("destroyed\nafter the end\n"));

    // OPEN with TRUNCATE (append='off') starts the log afresh.
    let reopened = c3.call(OPEN, &open_args(&path, "vm-one", 1));
    assert_eq!(reopened.position().1, 0);
    assert_eq!(std::fs::read(&path).unwrap(), b"");
    // Without it (append='on'), a second start appends.
    drop(reopened);
    wait_for(Duration::from_secs(10), "the stream to close", || {
        (!ps(&d).contains("vm-one.log")).then_some(())
    });
    std::fs::write(&path, b"kept\n").unwrap();
    let again = c3.call(OPEN, &open_args(&path, "vm-one", 0));
    assert_eq!(again.position().1, 5);
}

#[test]
fn a_read_over_4_mib_and_unknown_flags_are_refused_with_virtlogds_errors() {
    let (d, sock, _dir) = daemon();
    let path = d.log("vm-two.log").display().to_string();
    let mut c = Client::connect(&sock);
    let _open = c.call(OPEN, &open_args(&path, "vm-two", 0));
    let (_, text) = c.call(READ, &read_args(&path, 0, 0, (4 << 20) + 1)).error();
    assert_eq!(
        text,
        "internal error: Requested data len 4194305 is larger than maximum 4194304"
    );
    let mut args = position_args(&path);
    let n = args.len();
    args[n - 1] = 2;
    let (_, text) = c.call(GET_POSITION, &args).error();
    assert!(text.contains("unsupported flags (0x2)"), "{text}");
    // The connection goes on.
    assert_eq!(c.call(GET_POSITION, &position_args(&path)).status, 0);
}

#[test]
fn bad_input_gets_an_error_reply_or_a_closed_connection_and_everyone_else_goes_on() {
    let (d, sock, _dir) = daemon();
    let path = d.log("vm-three.log").display().to_string();
    // A guest logging throughout, and a libvirtd connection kept open.
    let mut keeper = Client::connect(&sock);
    let mut pipe = std::fs::File::from(
        keeper
            .call(OPEN, &open_args(&path, "vm-three", 0))
            .fd
            .unwrap(),
    );
    let mut written = 0usize;
    let mut line = |pipe: &mut std::fs::File| {
        pipe.write_all(b"still logging\n").unwrap();
        written += 14;
        written
    };
    line(&mut pipe);

    // Garbage: an ASCII line, read as a length far over the limit. Answered, then closed.
    let mut c = Client::connect(&sock);
    c.send(b"GET / HTTP/1.0\r\n\r\nHost: x\r\n\r\n1234567890");
    let m = c.recv().map(|m| m.status);
    assert!(m == Some(1) || m.is_none(), "{m:?}");
    assert!(c.closed(), "garbage closes the connection");

    // A length shorter than a header: closed.
    let mut c = Client::connect(&sock);
    c.send(&[0, 0, 0, 8, 1, 2, 3, 4]);
    assert!(c.closed());

    // A wrong program, then a wrong version: an error naming both, then closed.
    for (program, version) in [(0x2000_8086, 1), (PROGRAM, 2)] {
        let mut c = Client::connect(&sock);
        c.send(&message(
            program,
            version,
            GET_POSITION,
            0,
            7,
            &position_args(&path),
        ));
        let m = c.recv().expect("an error reply");
        let (code, text) = m.error();
        assert_eq!((code, m.serial), (ERR_RPC, 7));
        assert!(text.contains("program mismatch"), "{text}");
        assert!(
            text.contains(&format!("{program:#x} version {version}")),
            "{text}"
        );
        assert!(c.closed());
    }

    // An unknown procedure: an error, and the connection goes on.
    let mut c = Client::connect(&sock);
    let (code, text) = c.call(99, &[]).error();
    assert_eq!((code, text.as_str()), (ERR_RPC, "unknown procedure: 99"));
    assert_eq!(c.call(GET_POSITION, &position_args(&path)).status, 0);

    // A truncated XDR string (its length runs past the message): an error naming the field,
    // and the connection goes on (the framing is intact).
    let mut body = Vec::new();
    word(&mut body, 4000);
    body.extend_from_slice(b"/var/log/short");
    let (code, text) = c.call(GET_POSITION, &body).error();
    assert_eq!(code, ERR_RPC);
    assert!(
        text.contains("DOMAIN_GET_LOG_FILE_POSITION") && text.contains("path is truncated"),
        "{text}"
    );
    assert_eq!(c.call(GET_POSITION, &position_args(&path)).status, 0);

    // An oversized message (17 MiB, over libvirt's own 16 MiB): refused before its body is read.
    let mut c = Client::connect(&sock);
    let mut big = call(GET_POSITION, 5, &[]);
    big[..4].copy_from_slice(&((17u32 << 20) + 28).to_be_bytes());
    c.send(&big);
    let m = c.recv().expect("an error reply");
    let (code, text) = m.error();
    assert_eq!((code, m.serial), (ERR_RPC, 5));
    assert!(text.contains("exceeds the limit"), "{text}");
    assert!(c.closed());

    // A message that is not a call (a reply): an error, then closed.
    let mut c = Client::connect(&sock);
    c.send(&message(PROGRAM, 1, GET_POSITION, 1, 3, &[]));
    assert_eq!(c.recv().expect("an error reply").status, 1);
    assert!(c.closed());

    // A peer that leaves in the middle of a message.
    let mut c = Client::connect(&sock);
    c.send(&call(GET_POSITION, 1, &position_args(&path))[..20]);
    drop(c);

    // Through all of it: the guest's log, the kept connection and logd's own socket go on.
    let n = line(&mut pipe);
    let (_, end) = keeper.call(GET_POSITION, &position_args(&path)).position();
    assert_eq!(end as usize, n);
    assert_eq!(std::fs::read(&path).unwrap().len(), n);
    d.ctl_ok(&["ps"]);
    d.client().position(&path).expect("the main socket serves");
}

#[test]
fn a_peer_of_another_uid_is_refused_in_a_clear_error() {
    if require_tool("setpriv").is_none() || require_tool("python3").is_none() {
        return;
    }
    let (d, sock, _dir) = daemon();
    let path = d.log("vm-four.log").display().to_string();
    // uid 65534 gets past the socket's file mode (CAP_DAC_OVERRIDE), not past logd's check. The
    // client sends one GET_POSITION call, laid out by hand, and prints the reply in hex.
    let script = "import socket,struct,sys\n\
s=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n\
p=sys.argv[2].encode()\npad=(4-len(p)%4)%4\n\
body=struct.pack('>I',len(p))+p+b'\\0'*pad+struct.pack('>I',0)\n\
hdr=struct.pack('>IIIIII',0x87539319,1,2,0,1,0)\n\
s.sendall(struct.pack('>I',4+len(hdr)+len(body))+hdr+body)\n\
d=b''\nwhile True:\n  b=s.recv(65536)\n  if not b: break\n  d+=b\n\
sys.stdout.write(d.hex())\n";
    let out = run_bounded(
        past_file_modes_as(65534, "python3")
            .args(["-c", script])
            .arg(&sock)
            .arg(&path),
        Duration::from_secs(30),
    );
    let hex = String::from_utf8(out.stdout).unwrap();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    assert!(
        bytes.len() > 28,
        "a reply, then EOF: {hex:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = Msg {
        program: be32(&bytes[4..]),
        procedure: be32(&bytes[12..]),
        kind: be32(&bytes[16..]),
        serial: be32(&bytes[20..]),
        status: be32(&bytes[24..]),
        body: bytes[28..].to_vec(),
        fd: None,
    };
    assert_eq!((m.kind, m.serial), (1, 1));
    let (code, text) = m.error();
    assert_eq!(code, ERR_ACCESS_DENIED);
    assert!(
        text.contains("uid 65534") && text.contains("only uid 0"),
        "{text}"
    );
    assert!(d
        .stderr()
        .contains("refused a virtlogd client with another uid"));
    // Root goes on being served.
    let mut c = Client::connect(&sock);
    assert_eq!(c.call(OPEN, &open_args(&path, "vm-four", 0)).status, 0);
}

#[test]
fn the_virtlogd_socket_its_connections_and_its_logs_survive_a_reexec() {
    let (mut d, sock, _dir) = daemon();
    let path = d.log("vm-five.log").display().to_string();
    let mut c = Client::connect(&sock);
    let mut pipe = std::fs::File::from(c.call(OPEN, &open_args(&path, "vm-five", 0)).fd.unwrap());
    pipe.write_all(b"before\n").unwrap();
    // Half a call waits in the socket across the re-exec: the new process answers it.
    let half = call(GET_POSITION, 2, &position_args(&path));
    c.send(&half[..10]);
    let old = d.pid();
    d.ctl_ok(&["reexec"]);
    assert_eq!(d.pid(), old, "a re-exec keeps the pid");
    pipe.write_all(b"after\n").unwrap();
    c.send(&half[10..]);
    c.serial = 1;
    let m = c.recv().expect("the new process answers");
    assert_eq!(m.serial, 2);
    assert_eq!(m.position().1, 13);
    // The listener was carried: new connections work, and the path is still busy.
    let mut c2 = Client::connect(&sock);
    assert_eq!(c2.call(OPEN, &open_args(&path, "vm-five", 0)).status, 1);
    assert_eq!(std::fs::read(&path).unwrap(), b"before\nafter\n");
    d.assert_alive();
}

/// systemd hands the socket over by its unit's name, `virtlogd.socket` (what libvirt's own
/// `virtlogd.socket` unit passes): logd serves virtlogd's RPC on it with no option, leaves the
/// file alone (it is systemd's), and carries it across a re-exec.
#[test]
fn the_virtlogd_socket_comes_from_systemd_by_its_unit_name() {
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().unwrap();
    let main_path = dir.path().join("logd.sock");
    let vl_path = dir.path().join("virtlogd-sock");
    let vl_admin_path = dir.path().join("virtlogd-admin-sock");
    let listeners = [&main_path, &vl_path, &vl_admin_path]
        .map(|p| std::os::unix::net::UnixListener::bind(p).unwrap());
    let vl_ino = std::fs::metadata(&vl_path).unwrap().ino();
    let raw = listeners.each_ref().map(|l| l.as_raw_fd());
    let logs = dir.path().join("logs");
    let stderr_path = dir.path().join("stderr");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "LISTEN_PID=$$ LISTEN_FDS=3 LISTEN_FDNAMES=main:virtlogd.socket:virtlogd-admin.socket \
             exec {LOGD} --socket {} --log-root {}",
            main_path.display(),
            logs.display()
        ))
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    pass_fds_from_3(&mut cmd, raw);
    let mut child = cmd.spawn().unwrap();
    drop(listeners);
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let mut c = wait_for(Duration::from_secs(20), "logd on systemd's sockets", || {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("logd exited ({st}): {}", stderr());
        }
        UnixStream::connect(&vl_path).ok().map(|s| {
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            Client { s, serial: 0 }
        })
    });
    let path = logs.join("sd.log").display().to_string();
    let opened = c.call(OPEN, &open_args(&path, "sd", 0));
    let mut pipe = std::fs::File::from(opened.fd.expect("the pipe"));
    pipe.write_all(b"through systemd's socket\n").unwrap();
    assert!(
        stderr().contains("ignoring virtlogd-admin.socket"),
        "{}",
        stderr()
    );
    // A re-exec carries it.
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1).unwrap();
    wait_for(
        Duration::from_secs(20),
        "the new image to take over",
        || stderr().contains("took over (re-exec 1)").then_some(()),
    );
    let mut c2 = Client::connect(&vl_path);
    let (_, end) = c2.call(GET_POSITION, &position_args(&path)).position();
    assert_eq!(end, 25);
    // The file is systemd's: logd never replaced it, and leaves it at exit.
    assert_eq!(std::fs::metadata(&vl_path).unwrap().ino(), vl_ino);
    let new_pid: i32 = std::fs::read_to_string(dir.path().join("logd.sock.lock"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(new_pid, pid.as_raw(), "a re-exec keeps the pid");
    drop(pipe);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(new_pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_for(Duration::from_secs(20), "logd to stop", || {
        (!process_alive(new_pid)).then_some(())
    });
    assert!(vl_path.exists(), "systemd's socket file stays");
}
