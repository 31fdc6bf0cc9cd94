//! Consoles declared in the config file (`[[console]]`, issue 15 item 3): created at start,
//! kept through a stop and start, a re-exec and a SIGKILL, changed by SIGHUP. The guest is a
//! plain UNIX socket (a connection to logd's guest socket in listen mode, a listener logd
//! connects to in connect mode); subscribers are TCP clients on loopback.

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::harness::*;

const T: Duration = Duration::from_secs(30);

/// A `[[console]]` table in listen mode, on a fixed TCP port, with a UNIX subscriber socket.
fn listen_table(domain: &str, name: &str, port: u16) -> String {
    format!(
        "[[console]]\ndomain = \"{domain}\"\nname = \"{name}\"\nguest_listen = \
         \"{domain}/{name}.sock\"\nlog = \"{domain}/{name}.log\"\ntcp = {port}\nunix = \
         \"{domain}/{name}.sub\"\n\n"
    )
}

/// The subscriber was told nothing by logd but its greeting and the guest's comings and goings:
/// the first to join holds the write lock without a notice, so one that was disconnected, moved
/// or demoted would have another `[logd: …]` line.
fn assert_told_nothing(got: &Arc<Mutex<Vec<u8>>>) {
    let got = got.lock().unwrap();
    assert_eq!(
        notices_beyond_routine(&got),
        Vec::<String>::new(),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}

/// Listen mode and connect mode: both exist once logd serves, show in `console list`, log and
/// fan out what their guest writes.
#[test]
fn declared_consoles_exist_at_start_in_listen_and_connect_mode() {
    let port = free_port();
    let qemu_dir = tempfile::tempdir().unwrap();
    // Connect mode: the test plays QEMU, listening (server=on); logd connects to it.
    let qemu_sock = qemu_dir.path().join("q.sock");
    let qemu = UnixListener::bind(&qemu_sock).unwrap();
    let config = format!(
        "allowed_dirs = [\"{}\"]\n\n{}[[console]]\ndomain = \"vm2\"\nname = \"serial0\"\n\
         guest_connect = \"{}\"\nlog = \"vm2/serial0.log\"\nwrite = \"none\"\n",
        qemu_dir.path().display(),
        listen_table("vm1", "serial0", port),
        qemu_sock.display()
    );
    let d = Daemon::with_config(&config);
    let list = consoles(&d);
    assert_eq!(list.len(), 2, "{list:?}");
    let c = console(&d, "vm1", "serial0").unwrap();
    assert_eq!(c["tcp"], format!("127.0.0.1:{port}"));
    assert_eq!(c["unix"], d.log("vm1/serial0.sub").display().to_string());
    assert_eq!(console(&d, "vm2", "serial0").unwrap()["write"], "None");

    let (_sub, got) = subscriber(port);
    let mut g = guest(&d.log("vm1/serial0.sock"));
    g.write_all(b"hello from the listen guest\n").unwrap();
    wait_seen(&got, b"hello from the listen guest\n");
    wait_logged(&d, "vm1/serial0.log", b"hello from the listen guest\n");
    // The UNIX subscriber socket works too.
    let mut u = UnixStream::connect(d.log("vm1/serial0.sub")).unwrap();
    u.set_read_timeout(Some(T)).unwrap();
    // The greeting, then the replay.
    let mut first = Vec::new();
    let want = b"]\r\nhello from the listen guest\n";
    while !first.ends_with(want) {
        let mut b = [0u8; 1];
        std::io::Read::read_exact(&mut u, &mut b).unwrap();
        first.push(b[0]);
    }
    assert!(
        first.starts_with(b"\r\n[logd: console vm1/serial0; "),
        "{first:?}"
    );

    let (mut q, _) = qemu.accept().unwrap();
    q.write_all(b"hello from the connect guest\n").unwrap();
    wait_logged(&d, "vm2/serial0.log", b"hello from the connect guest\n");
}

/// A stop removes the socket files; a start creates the console again on the same port, and
/// its log goes on (appended, not truncated).
#[test]
fn a_declared_console_survives_a_stop_and_a_start() {
    let port = free_port();
    let mut d = Daemon::with_config(&listen_table("vm", "s0", port));
    let (guest_sock, sub_sock) = (d.log("vm/s0.sock"), d.log("vm/s0.sub"));
    let (_sub, got) = subscriber(port);
    let mut g = guest(&guest_sock);
    g.write_all(b"line before the stop\n").unwrap();
    wait_seen(&got, b"line before the stop\n");

    assert_eq!(d.signal_and_wait(Signal::SIGTERM), Some(0));
    assert!(!guest_sock.exists(), "the guest socket file was left");
    assert!(!sub_sock.exists(), "the subscribers' socket file was left");
    wait_for(T, "the subscriber to be disconnected", || {
        contains(&got.lock().unwrap(), b"logd is stopping").then_some(())
    });

    d.start_again(Opts::default()).unwrap();
    assert!(console(&d, "vm", "s0").is_some());
    let (_sub2, got2) = subscriber(port);
    let mut g = guest(&guest_sock);
    g.write_all(b"line after the start\n").unwrap();
    wait_seen(&got2, b"line after the start\n");
    wait_logged(&d, "vm/s0.log", b"line after the start\n");
    let log = std::fs::read(d.log("vm/s0.log")).unwrap();
    assert!(
        log.starts_with(b"line before the stop\n"),
        "the log was not continued: {:?}",
        String::from_utf8_lossy(&log)
    );
    assert_eq!(count(&log, b"line before the stop\n"), 1);
}

/// A re-exec carries the console: it is not created a second time, and its subscriber and guest
/// stay connected.
#[test]
fn a_declared_console_survives_a_reexec_once_and_keeps_its_subscriber() {
    let port = free_port();
    let d = Daemon::with_config(&listen_table("vm", "s0", port));
    let (_sub, got) = subscriber(port);
    let mut g = guest(&d.log("vm/s0.sock"));
    g.write_all(b"before the re-exec\n").unwrap();
    wait_seen(&got, b"before the re-exec\n");

    let old = d.pid();
    d.signal(Signal::SIGUSR1);
    wait_for(T, "the new image to apply the file", || {
        d.stderr()
            .contains("re-exec: declared consoles applied")
            .then_some(())
    });
    assert_eq!(d.pid(), old, "a re-exec keeps the pid");
    let list = consoles(&d);
    assert_eq!(list.len(), 1, "{list:?}");
    let err = d.stderr();
    assert_eq!(
        count(err.as_bytes(), b"declared console created"),
        1,
        "{err}"
    );
    assert!(err.contains("kept=1"), "{err}");
    // The same guest connection and the same subscriber connection go on.
    g.write_all(b"after the re-exec\n").unwrap();
    wait_seen(&got, b"after the re-exec\n");
    assert_told_nothing(&got);
    wait_logged(&d, "vm/s0.log", b"after the re-exec\n");
}

/// After a SIGKILL the socket files are stale; a start replaces them (nobody listens) and the
/// console serves again on the same port, its log continued.
#[test]
fn a_declared_console_survives_a_sigkill_and_a_start() {
    let port = free_port();
    let mut d = Daemon::with_config(&listen_table("vm", "s0", port));
    let (guest_sock, sub_sock) = (d.log("vm/s0.sock"), d.log("vm/s0.sub"));
    let mut g = guest(&guest_sock);
    g.write_all(b"before the kill\n").unwrap();
    wait_logged(&d, "vm/s0.log", b"before the kill\n");
    d.signal(Signal::SIGKILL);
    let mut child = d.child.take().unwrap();
    child.wait().unwrap();
    assert!(
        is_socket(&guest_sock) && is_socket(&sub_sock),
        "no stale files to replace"
    );

    d.start_again(Opts::default()).unwrap();
    assert!(console(&d, "vm", "s0").is_some(), "{}", d.stderr());
    let (_sub, got) = subscriber(port);
    let mut g = guest(&guest_sock);
    g.write_all(b"after the kill\n").unwrap();
    wait_seen(&got, b"after the kill\n");
    UnixStream::connect(&sub_sock).expect("the subscribers' socket is live again");
    wait_logged(&d, "vm/s0.log", b"after the kill\n");
    let log = std::fs::read(d.log("vm/s0.log")).unwrap();
    assert!(log.starts_with(b"before the kill\n"), "{log:?}");
}

/// What is in the way of a console (a live socket, a symlink, a taken port) is never replaced:
/// that console is reported by name and the others serve. A SIGHUP retries it.
#[test]
fn a_declared_console_that_cannot_be_created_is_reported_and_the_others_serve() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name);
    // A live socket where the first console's guest socket goes.
    let live = UnixListener::bind(at("live.sock")).unwrap();
    // A symlink where the second one's subscriber socket goes.
    std::fs::write(at("victim"), b"keep").unwrap();
    std::os::unix::fs::symlink(at("victim"), at("link.sub")).unwrap();
    // A taken port for the third.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let good_port = free_port();
    let config = format!(
        "allowed_dirs = [\"{d}\"]\n\n\
         [[console]]\ndomain = \"vm\"\nname = \"live\"\nguest_listen = \"{d}/live.sock\"\n\
         log = \"vm/live.log\"\n\n\
         [[console]]\ndomain = \"vm\"\nname = \"link\"\nguest_listen = \"{d}/link.sock\"\n\
         log = \"vm/link.log\"\nunix = \"{d}/link.sub\"\n\n\
         [[console]]\ndomain = \"vm\"\nname = \"port\"\nguest_listen = \"{d}/port.sock\"\n\
         log = \"vm/port.log\"\ntcp = {taken_port}\n\n{good}",
        d = dir.path().display(),
        good = listen_table("vm", "good", good_port)
    );
    let d = Daemon::with_config(&config);
    let names: Vec<_> = consoles(&d).iter().map(|c| c["name"].clone()).collect();
    assert_eq!(names, ["good"], "{}", d.stderr());
    let err = d.stderr();
    for (label, why) in [
        ("vm/live", "another process is listening there"),
        ("vm/link", "symlink"),
        ("vm/port", "cannot listen for subscribers on TCP"),
    ] {
        assert!(
            err.lines().any(|l| l.contains("ERROR")
                && l.contains("declared console not created")
                && l.contains(label)
                && l.contains(why)),
            "no error naming {label} ({why}):\n{err}"
        );
    }
    // Nothing in the way was touched.
    assert_eq!(std::fs::read(at("victim")).unwrap(), b"keep");
    assert!(std::fs::symlink_metadata(at("link.sub"))
        .unwrap()
        .file_type()
        .is_symlink());
    UnixStream::connect(at("live.sock")).expect("the live socket is still its owner's");
    let _ = live.accept().unwrap();
    // The good one serves.
    let (_sub, got) = subscriber(good_port);
    guest(&d.log("vm/good.sock")).write_all(b"good\n").unwrap();
    wait_seen(&got, b"good\n");

    // Out of the way now: a SIGHUP creates them, with an error event for none of them.
    drop(live);
    std::fs::remove_file(at("link.sub")).unwrap();
    drop(taken);
    d.signal(Signal::SIGHUP);
    wait_for(T, "SIGHUP to create the three", || {
        (consoles(&d).len() == 4).then_some(())
    });
    assert!(console(&d, "vm", "port").unwrap()["tcp"] == format!("127.0.0.1:{taken_port}"));
    // The stale socket the live listener left is replaced.
    UnixStream::connect(at("live.sock")).expect("logd listens there now");
}

/// SIGHUP: a table added is created, one removed is removed (its log stays), one changed is
/// re-created (its subscribers are disconnected), one unchanged keeps its subscriber, and a
/// console added at run time is left alone. A bad file changes nothing.
#[test]
fn sighup_adds_removes_and_changes_declared_consoles_and_leaves_run_time_ones_alone() {
    let (p_same, p_gone, p_changed, p_changed2, p_new) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let before = format!(
        "{}{}{}",
        listen_table("vm", "same", p_same),
        listen_table("vm", "gone", p_gone),
        listen_table("vm", "changed", p_changed)
    );
    let d = Daemon::with_config(&before);
    d.ctl_ok(&[
        "console",
        "add",
        "--domain",
        "vm",
        "--name",
        "runtime",
        "--guest-listen",
        "vm/rt.sock",
        "--log",
        "vm/rt.log",
        "--tcp",
        "0",
    ]);
    assert_eq!(consoles(&d).len(), 4);
    let (_s1, same_got) = subscriber(p_same);
    let (_s2, changed_got) = subscriber(p_changed);
    let mut same_guest = guest(&d.log("vm/same.sock"));
    let mut gone_guest = guest(&d.log("vm/gone.sock"));
    gone_guest.write_all(b"gone's last words\n").unwrap();
    wait_logged(&d, "vm/gone.log", b"gone's last words\n");

    let after = format!(
        "{}{}{}",
        listen_table("vm", "same", p_same),
        listen_table("vm", "changed", p_changed2),
        listen_table("vm", "new", p_new)
    );
    std::fs::write(d.config_path(), &after).unwrap();
    d.signal(Signal::SIGHUP);
    wait_for(T, "SIGHUP to apply the file", || {
        d.stderr()
            .contains("SIGHUP: declared consoles applied")
            .then_some(())
    });
    let names: Vec<String> = consoles(&d)
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        ["changed", "new", "runtime", "same"],
        "{}",
        d.stderr()
    );
    assert!(
        d.stderr()
            .contains("created=1 recreated=1 removed=1 kept=1"),
        "{}",
        d.stderr()
    );
    // Removed: its log stays, its socket goes.
    assert!(contains(
        &std::fs::read(d.log("vm/gone.log")).unwrap(),
        b"gone's last words\n"
    ));
    assert!(!d.log("vm/gone.sock").exists());
    // Changed: on its new port; its subscriber was told and disconnected.
    let c = console(&d, "vm", "changed").unwrap();
    assert_eq!(c["tcp"], format!("127.0.0.1:{p_changed2}"));
    wait_seen(&changed_got, b"console changed removed");
    subscriber(p_changed2);
    // Unchanged: the same subscriber and guest go on.
    same_guest.write_all(b"still here\n").unwrap();
    wait_seen(&same_got, b"still here\n");
    assert_told_nothing(&same_got);
    subscriber(p_new);

    // A bad file: nothing changes.
    std::fs::write(
        d.config_path(),
        format!("{after}{}", listen_table("vm2", "bad", p_new)),
    )
    .unwrap();
    d.signal(Signal::SIGHUP);
    wait_for(T, "the bad file to be refused", || {
        d.stderr()
            .contains("configuration not reloaded")
            .then_some(())
    });
    let err = d.stderr();
    let line = err
        .lines()
        .find(|l| l.contains("configuration not reloaded"))
        .unwrap();
    assert!(
        line.contains(&d.config_path().display().to_string())
            && line.contains("[[console]] number 4")
            && line.contains("`tcp`"),
        "{line}"
    );
    assert_eq!(consoles(&d).len(), 4);
    same_guest.write_all(b"after the bad file\n").unwrap();
    wait_seen(&same_got, b"after the bad file\n");
}

/// A bad table stops the start, with the file, the table and the key named.
#[test]
fn a_bad_console_table_stops_the_start_naming_the_file_the_console_and_the_key() {
    for (table, want) in [
        (
            "[[console]]\ndomain = \"vm\"\nname = \"s0\"\nlog = \"s0.log\"\nguest_fd = true\n",
            vec![
                "[[console]] number 1",
                "\"s0\"",
                "`guest_fd`",
                "guest_listen",
            ],
        ),
        (
            "[[console]]\ndomain = \"vm\"\nname = \"s0\"\nlog = \"../s0.log\"\n\
             guest_listen = \"s.sock\"\n",
            vec!["[[console]] number 1", "`log`", ".."],
        ),
        (
            &format!(
                "{}{}",
                listen_table("vm", "a", 4000),
                listen_table("vm", "a", 4001)
            ),
            vec!["[[console]] number 2", "`name`", "number 1"],
        ),
    ] {
        let e = Daemon::spawn(
            &bins(),
            Opts {
                config: table.to_owned(),
                ..Opts::default()
            },
        )
        .err()
        .unwrap_or_else(|| panic!("logd started with {table:?}"));
        let e = format!("{e:#}");
        assert!(e.contains("exited at start"), "{e}");
        assert!(e.contains("logd.toml"), "the file is not named: {e}");
        for w in want {
            assert!(e.contains(w), "{w:?} not in {e}");
        }
    }
}
