//! Consoles added at run time with `logdctl console add --persist` (issue 15 item 3): written to
//! the persisted consoles file before the answer, created again at a start after a stop or a
//! SIGKILL, carried by a re-exec, and gone for good after `logdctl console remove`. The kit gives
//! each daemon its own file (`Daemon::consoles_file`), never the host's.

use std::io::Write;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::harness::*;

const T: Duration = Duration::from_secs(30);

/// `logdctl console add` of `vm/NAME` in listen mode, on TCP port 0, with a UNIX subscriber
/// socket; `--persist` if asked. Returns the port it got.
fn add(d: &Daemon, name: &str, persist: bool) -> u16 {
    let (sock, log, sub) = (
        format!("vm/{name}.sock"),
        format!("vm/{name}.log"),
        format!("vm/{name}.sub"),
    );
    let mut args = vec![
        "console",
        "add",
        "--domain",
        "vm",
        "--name",
        name,
        "--guest-listen",
        &sock,
        "--log",
        &log,
        "--tcp",
        "0",
        "--unix",
        &sub,
    ];
    if persist {
        args.push("--persist");
    }
    port_of(&d.ctl_ok(&args))
}

fn names(d: &Daemon) -> Vec<String> {
    consoles(d)
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

fn persisted_text(d: &Daemon) -> String {
    std::fs::read_to_string(d.consoles_file()).unwrap_or_default()
}

/// A persisted console comes back after a stop and a start, on the same TCP port and UNIX
/// socket, and its log goes on (appended); a console added without `--persist` does not.
#[test]
fn a_persisted_console_comes_back_after_a_stop_and_a_start_and_a_plain_one_does_not() {
    let mut d = Daemon::start();
    let port = add(&d, "kept", true);
    add(&d, "plain", false);
    // On disk before the answer, as a `[[console]]` table with the port it got.
    let text = persisted_text(&d);
    assert!(
        text.contains("[[console]]") && text.contains(&format!("tcp = \"127.0.0.1:{port}\"")),
        "{text}"
    );
    assert!(!text.contains("plain"), "{text}");
    let mut g = guest(&d.log("vm/kept.sock"));
    g.write_all(b"line before the stop\n").unwrap();
    wait_logged(&d, "vm/kept.log", b"line before the stop\n");

    assert_eq!(d.signal_and_wait(Signal::SIGTERM), Some(0));
    d.start_again(Opts::default()).unwrap();
    assert_eq!(names(&d), ["kept"], "{}", d.stderr());
    let c = console(&d, "vm", "kept").unwrap();
    assert_eq!(c["tcp"], format!("127.0.0.1:{port}"));
    assert_eq!(c["unix"], d.log("vm/kept.sub").display().to_string());
    assert!(d.stderr().contains("start: persisted console created"));

    let (_sub, got) = subscriber(port);
    let mut g = guest(&d.log("vm/kept.sock"));
    g.write_all(b"line after the start\n").unwrap();
    wait_seen(&got, b"line after the start\n");
    wait_logged(&d, "vm/kept.log", b"line after the start\n");
    std::os::unix::net::UnixStream::connect(d.log("vm/kept.sub"))
        .expect("the subscribers' UNIX socket is back");
    let log = std::fs::read(d.log("vm/kept.log")).unwrap();
    assert!(
        log.starts_with(b"line before the stop\n"),
        "the log was not continued: {:?}",
        String::from_utf8_lossy(&log)
    );
    assert_eq!(count(&log, b"line before the stop\n"), 1);
}

/// `logdctl console remove` of a persisted console takes it out of the file before it answers:
/// it does not come back at the next start.
#[test]
fn a_removed_persisted_console_does_not_come_back() {
    let mut d = Daemon::start();
    add(&d, "gone", true);
    add(&d, "stays", true);
    d.ctl_ok(&["console", "remove", "--domain", "vm", "--name", "gone"]);
    let text = persisted_text(&d);
    assert!(!text.contains("gone") && text.contains("stays"), "{text}");

    assert_eq!(d.signal_and_wait(Signal::SIGTERM), Some(0));
    d.start_again(Opts::default()).unwrap();
    assert_eq!(names(&d), ["stays"], "{}", d.stderr());
}

/// A re-exec carries a persisted console as it is (its subscriber and guest stay connected, it
/// is not created twice); after a SIGKILL a start creates it again on the same port.
#[test]
fn a_persisted_console_survives_a_reexec_and_a_sigkill() {
    let mut d = Daemon::start();
    let port = add(&d, "s0", true);
    let (_sub, got) = subscriber(port);
    let mut g = guest(&d.log("vm/s0.sock"));
    g.write_all(b"before the re-exec\n").unwrap();
    wait_seen(&got, b"before the re-exec\n");

    let old = d.pid();
    d.signal(Signal::SIGUSR1);
    wait_for(T, "the new image to apply the persisted consoles", || {
        d.stderr()
            .contains("re-exec: persisted consoles applied")
            .then_some(())
    });
    assert_eq!(d.pid(), old, "a re-exec keeps the pid");
    let err = d.stderr();
    assert!(
        err.lines()
            .any(|l| l.contains("re-exec: persisted consoles applied")
                && l.contains("created=0")
                && l.contains("kept=1")),
        "{err}"
    );
    g.write_all(b"after the re-exec\n").unwrap();
    wait_seen(&got, b"after the re-exec\n");
    assert_eq!(
        notices_beyond_routine(&got.lock().unwrap()),
        Vec::<String>::new(),
        "told nothing"
    );

    d.signal(Signal::SIGKILL);
    d.child.take().unwrap().wait().unwrap();
    d.start_again(Opts::default()).unwrap();
    assert_eq!(
        console(&d, "vm", "s0").expect("back after the SIGKILL")["tcp"],
        format!("127.0.0.1:{port}")
    );
    let (_sub, got) = subscriber(port);
    let mut g = guest(&d.log("vm/s0.sock"));
    g.write_all(b"after the kill\n").unwrap();
    wait_seen(&got, b"after the kill\n");
    wait_logged(&d, "vm/s0.log", b"after the kill\n");
    let log = std::fs::read(d.log("vm/s0.log")).unwrap();
    assert!(log.starts_with(b"before the re-exec\n"), "{log:?}");
}

/// A file that cannot be written: the add fails naming it, and no console is left (the same
/// console can then be added without `--persist`: nothing of it was kept).
#[test]
fn an_add_that_cannot_be_persisted_names_the_file_and_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where the file's directory should be: not even root can write there.
    std::fs::write(dir.path().join("not-a-dir"), b"").unwrap();
    let file = dir.path().join("not-a-dir/consoles.toml");
    let d = Daemon::start_with(Opts {
        consoles_file: Some(file.clone()),
        ..Opts::default()
    });
    let out = d.ctl_run(&[
        "console",
        "add",
        "--domain",
        "vm",
        "--name",
        "s0",
        "--guest-listen",
        "vm/s0.sock",
        "--log",
        "vm/s0.log",
        "--tcp",
        "0",
        "--persist",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&file.display().to_string()) && err.contains("not added"),
        "{err}"
    );
    assert!(consoles(&d).is_empty(), "{}", d.stderr());
    assert!(!is_socket(&d.log("vm/s0.sock")), "its guest socket is left");
    add(&d, "s0", false);
}

/// A garbage file does not stop logd: it logs the error naming the file and serves. The file is
/// kept (set aside as `.bad` at the next write), not overwritten.
#[test]
fn a_garbage_persisted_file_is_logged_and_logd_serves() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("consoles.toml");
    std::fs::write(&file, b"[[console]\nthis is not TOML").unwrap();
    let d = Daemon::start_with(Opts {
        consoles_file: Some(file.clone()),
        ..Opts::default()
    });
    // Logged as logd starts, perhaps after it is ready: waited for, not read at once.
    wait_for(
        Duration::from_secs(20),
        "the invalid file logged at ERROR",
        || {
            d.stderr()
                .lines()
                .any(|l| {
                    l.contains("ERROR")
                        && l.contains("invalid persisted consoles file")
                        && l.contains(&file.display().to_string())
                })
                .then_some(())
        },
    );
    assert!(consoles(&d).is_empty());
    add(&d, "s0", true);
    assert_eq!(
        std::fs::read(dir.path().join("consoles.toml.bad")).unwrap(),
        b"[[console]\nthis is not TOML"
    );
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains("name = \"s0\""));
}

/// A console both persisted and in the config file is the config file's: the persisted entry
/// is dropped with a warning, and the config file's settings are used.
#[test]
fn the_config_file_wins_over_a_persisted_console() {
    let mut d = Daemon::start();
    add(&d, "s0", true);
    assert_eq!(d.signal_and_wait(Signal::SIGTERM), Some(0));
    let port = free_port();
    std::fs::write(
        d.config_path(),
        format!(
            "[[console]]\ndomain = \"vm\"\nname = \"s0\"\nguest_listen = \"vm/s0.sock\"\n\
             log = \"vm/s0.log\"\ntcp = {port}\n"
        ),
    )
    .unwrap();
    d.start_again(Opts::default()).unwrap();
    assert_eq!(
        console(&d, "vm", "s0").unwrap()["tcp"],
        format!("127.0.0.1:{port}")
    );
    let err = d.stderr();
    assert!(
        err.lines().any(|l| l.contains("WARN")
            && l.contains("vm/s0")
            && l.contains("both in the config file and persisted")),
        "{err}"
    );
    assert!(!persisted_text(&d).contains("s0"), "{}", persisted_text(&d));
}
