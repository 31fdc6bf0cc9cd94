//! End-to-end tests of console roles (issue #16): who may type into a guest. The real logd and
//! logdctl, real QEMU booting the test guest, real `nc` run as uid 65534 (`nobody`) through
//! `setpriv`.
//!
//! A console is root access to its guest. Plain TCP subscribers are read-only unless the console
//! opts in (`--tcp-write`); UNIX subscribers are judged by `SO_PEERCRED` against the console's
//! lists (root and logd's own uid are always read-write; with no lists, anyone else is
//! refused).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

const BANNER: &[u8] = b"LOGD-GUEST READY\r\n";
const T: Duration = Duration::from_secs(60);
const NOBODY: u32 = 65534;

/// A daemon and the test guest's image, or None (skipped) without QEMU, nasm, nc or setpriv.
fn setup() -> Option<(Daemon, std::path::PathBuf)> {
    for tool in ["qemu-system-x86_64", "nc", "setpriv"] {
        require_tool(tool)?;
    }
    let d = Daemon::start();
    let img = build_guest(d.dir.path())?;
    Some((d, img))
}

/// `logdctl console add` of console `serial0` of domain `vm`, with its guest listening at
/// `NAME.sock`, its log `NAME.log`, a TCP port and a UNIX socket `NAME.sub`; returns the port.
fn add(d: &Daemon, name: &str, extra: &[&str]) -> u16 {
    add_to(d, "vm", name, extra)
}

/// [`add`] for a console of domain `domain`.
fn add_to(d: &Daemon, domain: &str, name: &str, extra: &[&str]) -> u16 {
    let sub = format!("{name}.sub");
    let mut a = vec!["--tcp", "0", "--unix", &sub];
    a.extend_from_slice(extra);
    port_of(&add_serial0(d, domain, name, &a))
}

/// QEMU booting the test guest on the console's guest socket; returns once the banner is logged.
fn boot(d: &Daemon, img: &Path, name: &str) -> Proc {
    boot_on(d, img, name)
}

/// `nc` run as uid 65534 (no groups) to the console's TCP port.
fn nc_tcp_as_nobody(port: u16) -> Proc {
    let mut c = Command::new("setpriv");
    c.args([
        format!("--reuid={NOBODY}"),
        format!("--regid={NOBODY}"),
        "--clear-groups".into(),
        "nc".into(),
        "127.0.0.1".into(),
        port.to_string(),
    ]);
    Proc::spawn("nc (tcp, nobody)", &mut c)
}

/// `nc -U` run as uid 65534 (no groups) to a UNIX socket, past file modes
/// (`CAP_DAC_OVERRIDE`): only logd's own check of the peer can stop it.
fn nc_unix_as_nobody(sub: &Path) -> Proc {
    let mut c = past_file_modes_as(NOBODY, "nc");
    c.arg("-U").arg(sub);
    Proc::spawn("nc (unix, nobody)", &mut c)
}

/// `nc -U` as root to a UNIX socket.
fn nc_unix(sub: &Path) -> Proc {
    Proc::spawn("nc (unix, root)", Command::new("nc").arg("-U").arg(sub))
}

/// What came first in `p`'s output: one of `whats`.
fn first_seen(p: &Proc, whats: &[&[u8]]) -> usize {
    wait_for(T, &format!("{} to see one of {whats:?}", p.name), || {
        whats.iter().position(|w| contains(&p.output(), w))
    })
}

/// The console's snapshot (`ps --json`).
fn console_snapshot(d: &Daemon) -> serde_json::Value {
    console_snapshot_of(d, "vm")
}

/// The console `serial0` of `domain` in `ps --json`.
fn console_snapshot_of(d: &Daemon, domain: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(&d.ctl_ok(&["ps", "--json"])).unwrap();
    v["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"]["name"] == domain)
        .expect("the domain in ps --json")["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"]["console"]["name"] == "serial0")
        .expect("console serial0 in ps --json")
        .clone()
}

/// A plain TCP subscriber is a reader: uid 65534's `nc`, the only subscriber, is told its input
/// is discarded, and its keys never reach the guest; root, on the UNIX socket, types.
#[test]
fn plain_tcp_is_read_only_by_default() {
    let Some((d, img)) = setup() else { return };
    let port = add(&d, "t", &[]);
    let _q = boot(&d, &img, "t");
    let mut intruder = nc_tcp_as_nobody(port);
    intruder.wait_for(BANNER, T);
    intruder.send(b"intruder\n");
    let seen = first_seen(&intruder, &[b"input is discarded", b"INTRUDER"]);
    assert_eq!(
        seen, 0,
        "a plain TCP subscriber of another uid typed into the guest"
    );
    let mut root = nc_unix(&d.log("t.sub"));
    root.wait_for(BANNER, T);
    root.send(b"root types\n");
    root.wait_for(b"ROOT TYPES\n", T);
    intruder.wait_for(b"ROOT TYPES\n", T);
    assert!(!contains(&read_rotated(&d.log("t.log"), 10), b"INTRUDER"));
}

/// Without lists, a UNIX subscriber that is neither root nor logd's uid is refused with a line
/// saying why, even past the socket's mode; the refusal is counted.
#[test]
fn a_unix_subscriber_of_another_uid_is_refused_without_lists() {
    let Some((d, img)) = setup() else { return };
    add(&d, "u", &[]);
    let _q = boot(&d, &img, "u");
    let sub = d.log("u.sub");
    let mode = std::fs::metadata(&sub).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "no lists: only logd's uid can connect");
    let mut intruder = nc_unix_as_nobody(&sub);
    intruder.send(b"intruder\n");
    let seen = first_seen(&intruder, &[b"refused", b"INTRUDER"]);
    assert_eq!(
        seen, 0,
        "a UNIX subscriber of another uid typed into the guest"
    );
    let out = String::from_utf8_lossy(&intruder.output()).into_owned();
    assert!(out.contains("uid 65534"), "{out}");
    assert!(!contains(&intruder.output(), BANNER), "{out}");
    let snap = console_snapshot(&d);
    assert_eq!(snap["refused"], 1, "{snap}");
    assert_eq!(snap["subscribers"].as_array().unwrap().len(), 0, "{snap}");
    assert!(d.stderr().contains("65534"), "the refusal is logged");
}

/// With `--tcp-write`, a plain TCP subscriber may type: uid 65534's `nc` holds the lock.
#[test]
fn tcp_write_lets_a_plain_tcp_subscriber_type() {
    let Some((d, img)) = setup() else { return };
    let port = add(&d, "w", &["--tcp-write"]);
    let _q = boot(&d, &img, "w");
    let mut typist = nc_tcp_as_nobody(port);
    typist.wait_for(BANNER, T);
    typist.send(b"over tcp\n");
    typist.wait_for(b"OVER TCP\n", T);
    let snap = console_snapshot(&d);
    let sub = &snap["subscribers"][0];
    assert_eq!(sub["role"], "read-write", "{snap}");
    assert_eq!(sub["writer"], true, "{snap}");
    assert!(
        sub["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{snap}"
    );
}

/// `--read-write 65534`: uid 65534 connects on the UNIX socket (mode 0666 now), holds the lock
/// and types; it shows as `65534:nobody`.
#[test]
fn a_uid_in_read_write_types_over_unix() {
    let Some((d, img)) = setup() else { return };
    add(&d, "rw", &["--read-write", "65534"]);
    let _q = boot(&d, &img, "rw");
    let sub = d.log("rw.sub");
    let mode = std::fs::metadata(&sub).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o666,
        "lists name other users: they must reach the socket"
    );
    let mut typist = nc_unix_as_nobody(&sub);
    typist.wait_for(BANNER, T);
    typist.send(b"as nobody\n");
    typist.wait_for(b"AS NOBODY\n", T);
    let snap = console_snapshot(&d);
    let s = &snap["subscribers"][0];
    assert_eq!(s["peer"], "65534:nobody", "{snap}");
    assert_eq!(s["role"], "read-write", "{snap}");
    assert_eq!(s["writer"], true, "{snap}");
}

/// `--read-only nobody`: uid 65534 watches but its keys never reach the guest; the lock skips
/// it for root, who connected later; `grant` to it is refused; `ps --json` shows both.
#[test]
fn a_read_only_subscriber_watches_and_the_lock_skips_it() {
    let Some((d, img)) = setup() else { return };
    add(&d, "ro", &["--read-only", "nobody"]);
    let _q = boot(&d, &img, "ro");
    let sub = d.log("ro.sub");
    let mut watcher = nc_unix_as_nobody(&sub);
    watcher.wait_for(BANNER, T);
    // Root joins after it, and still gets the lock.
    let mut root = nc_unix(&sub);
    root.wait_for(BANNER, T);
    let snap = wait_for(T, "two subscribers", || {
        let s = console_snapshot(&d);
        (s["subscribers"].as_array().unwrap().len() == 2).then_some(s)
    });
    let subs = snap["subscribers"].as_array().unwrap();
    assert_eq!(subs[0]["peer"], "65534:nobody", "{snap}");
    assert_eq!(subs[0]["role"], "read-only", "{snap}");
    assert_eq!(subs[0]["writer"], false, "{snap}");
    assert_eq!(subs[1]["peer"], "0:root", "{snap}");
    assert_eq!(subs[1]["role"], "read-write", "{snap}");
    assert_eq!(subs[1]["writer"], true, "{snap}");
    watcher.send(b"intruder\n");
    watcher.wait_for(b"read-only subscriber", T);
    root.send(b"root types\n");
    root.wait_for(b"ROOT TYPES\n", T);
    watcher.wait_for(b"ROOT TYPES\n", T);
    assert!(!contains(&read_rotated(&d.log("ro.log"), 10), b"INTRUDER"));
    // The operator cannot hand it the lock.
    let id = subs[0]["id"].as_u64().unwrap().to_string();
    let out = d.ctl_run(&["console", "grant", &id]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("read-only") && err.contains("65534:nobody"),
        "{err}"
    );
    // Root's can be granted (it holds it already: nothing moves).
    let root_id = subs[1]["id"].as_u64().unwrap().to_string();
    d.ctl_ok(&["console", "grant", &root_id]);
}

/// Two read-write subscribers of `exclusive` after a read-only one: the lock goes to the first
/// read-write one, and passes to the next read-write one when it leaves (never to the reader).
#[test]
fn the_write_lock_passes_from_writer_to_writer_over_a_reader() {
    let Some((d, img)) = setup() else { return };
    add(&d, "p", &["--read-only", "65534"]);
    let _q = boot(&d, &img, "p");
    let sub = d.log("p.sub");
    let watcher = nc_unix_as_nobody(&sub);
    watcher.wait_for(BANNER, T);
    let first = nc_unix(&sub);
    first.wait_for(BANNER, T);
    let mut second = nc_unix(&sub);
    second.wait_for(BANNER, T);
    drop(first);
    second.wait_for(b"you now hold the write lock", T);
    second.send(b"second\n");
    second.wait_for(b"SECOND\n", T);
    assert!(!contains(&watcher.output(), b"you now hold the write lock"));
}

/// A re-exec keeps a console's access settings and each subscriber's role and identity: the
/// read-only one still cannot type, root still can, a new uid-65534 subscriber is still
/// read-only.
#[test]
fn roles_survive_a_reexec() {
    let Some((d, img)) = setup() else { return };
    add(&d, "x", &["--read-only", "65534"]);
    let _q = boot(&d, &img, "x");
    let sub = d.log("x.sub");
    let mut watcher = nc_unix_as_nobody(&sub);
    watcher.wait_for(BANNER, T);
    let mut root = nc_unix(&sub);
    root.wait_for(BANNER, T);
    let before = wait_for(T, "two subscribers", || {
        let s = console_snapshot(&d);
        (s["subscribers"].as_array().unwrap().len() == 2).then_some(s)
    });
    d.ctl_ok(&["reexec"]);
    let after = console_snapshot(&d);
    for i in 0..2 {
        for key in ["id", "peer", "role", "writer"] {
            assert_eq!(
                after["subscribers"][i][key], before["subscribers"][i][key],
                "{key} of subscriber {i}: {after}"
            );
        }
    }
    watcher.send(b"intruder\n");
    watcher.wait_for(b"read-only subscriber", T);
    root.send(b"after the re-exec\n");
    root.wait_for(b"AFTER THE RE-EXEC\n", T);
    assert!(!contains(&read_rotated(&d.log("x.log"), 10), b"INTRUDER"));
    // The socket's mode and the lists came along: a new uid-65534 subscriber is read-only.
    let mode = std::fs::metadata(&sub).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666);
    let late = nc_unix_as_nobody(&sub);
    late.wait_for(BANNER, T);
    let s = wait_for(T, "three subscribers", || {
        let s = console_snapshot(&d);
        (s["subscribers"].as_array().unwrap().len() == 3).then_some(s)
    });
    assert_eq!(s["subscribers"][2]["role"], "read-only", "{s}");
}
