//! The command line's polish (issue 17, item 6), as an operator sees it: `logdctl tail -n`,
//! the message when no daemon answers, and logd's start-up errors said once.

use std::io::Read;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `logd` with `args`, in `dir`, on its own socket and log root there; its output.
fn logd_in(dir: &std::path::Path, config: &str, socket: &std::path::Path) -> std::process::Output {
    let conf = dir.join("start.toml");
    std::fs::write(&conf, config).unwrap();
    run_bounded(
        Command::new(LOGD)
            .arg("--config")
            .arg(&conf)
            .arg("--socket")
            .arg(socket)
            .arg("--log-root")
            .arg(dir)
            .arg("--consoles-file")
            .arg(dir.join("start-consoles.toml")),
        Duration::from_secs(30),
    )
}

/// The start-up failure is one line on stderr, `logd: …`, not that line and a tracing ERROR
/// with the same words.
fn assert_said_once(out: &std::process::Output, what: &str) {
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(
        err.matches(what).count(),
        1,
        "{what:?} not said once in:\n{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("logd: ") && l.contains(what)),
        "{err}"
    );
}

#[test]
fn start_up_errors_are_printed_once() {
    let d = Daemon::start();
    // A bad config file.
    let dir = tempfile::tempdir().unwrap();
    let out = logd_in(
        dir.path(),
        "max_size = \"lots\"\n",
        &dir.path().join("a.sock"),
    );
    assert_said_once(&out, "\"lots\" is not a size");
    // A socket another logd serves.
    let out = logd_in(dir.path(), "", &d.socket);
    assert_said_once(&out, "another logd is already listening");
}

#[test]
fn no_daemon_names_the_socket_and_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("none.sock");
    let run = |args: &[&str]| {
        run_bounded(
            Command::new(LOGDCTL)
                .env_remove("LOGD_AUTOSTART")
                .env_remove("LOGD_ADMIN_SOCKET")
                .arg("--socket")
                .arg(&sock)
                .args(args),
            Duration::from_secs(30),
        )
    };
    let out = run(&["position", "--log", "x.log"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    let want = format!(
        "logdctl: no logd answers on {s} (No such file or directory); start one with \
         \"systemctl start logd\" or \"logd --socket {s}\", or pass --autostart\n",
        s = sock.display()
    );
    if logd::config::is_root() {
        assert_eq!(err, want);
    } else {
        assert_eq!(err, want.replace("\"systemctl start logd\" or ", ""));
    }
    // An admin command names the admin socket it tried, and the main socket to start.
    let out = run(&["ps"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    let admin = logd::config::admin_socket_for(&sock);
    assert!(
        err.contains(&format!("no logd answers on {} (", admin.display()))
            && err.contains(&format!("\"logd --socket {}\"", sock.display()))
            && !err.contains("--autostart"),
        "{err}"
    );
}

/// `tail -n` prints the last lines across rotated files, fewer if the log holds fewer, and
/// refuses `--bytes` with it.
#[test]
fn tail_n_prints_the_last_lines_across_rotations() {
    let d = Daemon::with_config("max_size = \"8 KiB\"\nmax_backups = 8\n");
    let mut all = numbered_lines(40 * 1024); // 40 KiB of lines: several files
    all.truncate(all.iter().rposition(|&b| b == b'\n').unwrap() + 1);
    let src = d.dir.path().join("src.txt");
    std::fs::write(&src, &all).unwrap();
    cat_into_log(&d, "t", "t.log", &src);
    assert!(d.log("t.log.2").exists(), "not rotated enough");
    let on_disk = read_rotated(&d.log("t.log"), 8);
    let lines: Vec<&[u8]> = on_disk.split_inclusive(|&b| b == b'\n').collect();
    for n in [1usize, 3, 200] {
        let got = d.ctl_ok(&["tail", "-n", &n.to_string(), "--log", "t.log"]);
        assert_eq!(got, lines[lines.len() - n..].concat(), "-n {n}");
    }
    // More lines than the log holds: all of it.
    let got = d.ctl_ok(&["tail", "--lines", "1000000", "--log", "t.log"]);
    assert_eq!(got, on_disk);
    // A last line without its newline counts, as in GNU tail.
    d.ctl_ok(&["append", "--domain", "t", "--log", "t.log", "-n", "partial"]);
    let got = d.ctl_ok(&["tail", "-n", "2", "--log", "t.log"]);
    assert_eq!(
        text(&got),
        format!("{}partial", text(lines[lines.len() - 1]))
    );
    let out = d.ctl_run(&["tail", "-n", "2", "--bytes", "10", "--log", "t.log"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot be used with"),
        "{}",
        text(&out.stderr)
    );
}

/// `tail -n N -f` prints the last lines, then what is written afterwards.
#[test]
fn tail_n_follow_goes_on_after_the_last_lines() {
    let d = Daemon::start();
    for l in ["one", "two", "three"] {
        d.ctl_ok(&["append", "--domain", "f", "--log", "f.log", l]);
    }
    let mut tail = KillOnDrop(
        d.ctl()
            .args(["tail", "-n", "2", "-f", "--log", "f.log"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut out = tail.0.stdout.take().unwrap();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut b = [0u8; 4096];
        while let Ok(n) = out.read(&mut b) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&b[..n]);
        }
    });
    wait_for(Duration::from_secs(20), "the last two lines", || {
        (got.lock().unwrap().as_slice() == b"two\nthree\n").then_some(())
    });
    d.ctl_ok(&["append", "--domain", "f", "--log", "f.log", "four"]);
    wait_for(Duration::from_secs(20), "the line written later", || {
        (got.lock().unwrap().as_slice() == b"two\nthree\nfour\n").then_some(())
    });
}

/// `events` in text starts each line with the time in RFC 3339 (UTC, milliseconds), near now;
/// `--json` keeps `at_ms`.
#[test]
fn events_show_human_times() {
    let d = Daemon::start();
    let mut ev = KillOnDrop(
        d.ctl()
            .arg("events")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = ev.0.stdout.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            sink.lock().unwrap().push(l);
        }
    });
    let line = wait_for(Duration::from_secs(20), "a domain_opened line", || {
        d.ctl_ok(&["append", "--domain", "ev", "--log", "ev.log", "x"]);
        let seen = lines.lock().unwrap();
        seen.iter().find(|l| l.contains(" domain_opened ")).cloned()
    });
    let (at, rest) = line.split_once(' ').unwrap();
    assert!(
        rest.starts_with("domain_opened ") && rest.contains("domain=ev"),
        "{line}"
    );
    // 2026-12-06T16:40:01.123Z, and the same instant as the clock now, within a minute.
    let b = at.as_bytes();
    assert_eq!(b.len(), 24, "{line}");
    for (i, c) in b.iter().enumerate() {
        let want_digit = !matches!(i, 4 | 7 | 10 | 13 | 16 | 19 | 23);
        assert_eq!(c.is_ascii_digit(), want_digit, "{line}");
    }
    assert_eq!(
        (b[4], b[10], b[19], b[23]),
        (b'-', b'T', b'.', b'Z'),
        "{line}"
    );
    let now = run_bounded(
        Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M"]),
        Duration::from_secs(10),
    );
    let now = text(&now.stdout);
    let then = run_bounded(
        Command::new("date").args(["-u", "-d", at, "+%s"]),
        Duration::from_secs(10),
    );
    assert!(then.status.success(), "date does not read {at}");
    let secs: i64 = text(&then.stdout).trim().parse().unwrap();
    let now_secs: i64 =
        text(&run_bounded(Command::new("date").arg("+%s"), Duration::from_secs(10)).stdout)
            .trim()
            .parse()
            .unwrap();
    assert!((now_secs - secs).abs() < 60, "{at} is not now ({now})");
}

/// `read --from` a position in none of the log's files fails, naming the position and the log;
/// one rotated away (its birth time older than the oldest file's) still reads with a gap.
#[test]
fn read_from_an_unknown_position_is_an_error() {
    let d = Daemon::with_config("max_size = \"4 KiB\"\nmax_backups = 1\n");
    d.ctl_ok(&["append", "--domain", "r", "--log", "r.log", "first"]);
    let early = text(&d.ctl_ok(&["position", "--log", "r.log", "--exact"]));
    let other = d.dir.path().join("other.txt");
    std::fs::write(&other, "x").unwrap();
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&other).unwrap());
    let bogus = format!("{ino}:0");
    let out = d.ctl_run(&["read", "--log", "r.log", "--from", &bogus]);
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "exit 0; stdout {:?}",
        text(&out.stdout)
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(err.contains(&bogus) && err.contains("r.log"), "{err}");
    // Rotated away: the first file is gone after two rotations.
    for i in 0..3 {
        let line = format!("{i}{}", "y".repeat(4000));
        d.ctl_ok(&["append", "--domain", "r", "--log", "r.log", &line]);
    }
    d.ctl_ok(&["position", "--log", "r.log"]);
    let out = d.ctl_run(&["read", "--log", "r.log", "--from", early.trim()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("rotated away"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).ends_with(&format!("2{}\n", "y".repeat(4000))));
}

/// Collects a child's stdout and stderr, each on a thread.
fn collect(child: &mut std::process::Child) -> [std::sync::Arc<std::sync::Mutex<Vec<u8>>>; 2] {
    let sinks = [
        std::sync::Arc::new(std::sync::Mutex::new(Vec::new())),
        std::sync::Arc::new(std::sync::Mutex::new(Vec::new())),
    ];
    let pipes: [Box<dyn std::io::Read + Send>; 2] = [
        Box::new(child.stdout.take().unwrap()),
        Box::new(child.stderr.take().unwrap()),
    ];
    for (mut pipe, sink) in pipes.into_iter().zip(sinks.clone()) {
        std::thread::spawn(move || {
            let mut b = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut b) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&b[..n]);
            }
        });
    }
    sinks
}

/// `tail -F` waits for a log that does not exist yet, says so on stderr, follows it once it
/// appears, and again after it was removed and came back; it polls, and burns no CPU waiting.
#[test]
fn tail_capital_f_waits_for_the_log_to_appear() {
    let d = Daemon::start();
    let mut tail = KillOnDrop(
        d.ctl()
            .args(["tail", "-F", "--log", "later.log"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let [out, err] = collect(&mut tail.0);
    let seen = |sink: &std::sync::Arc<std::sync::Mutex<Vec<u8>>>, what: &str| {
        wait_for(Duration::from_secs(20), what, || {
            text(&sink.lock().unwrap()).contains(what).then_some(())
        })
    };
    seen(
        &err,
        "logdctl: later.log does not exist yet; waiting for it to appear",
    );
    // Waiting a while costs next to no CPU (a poll every 200 ms, not a busy loop).
    std::thread::sleep(Duration::from_secs(2));
    let cpu = stat_cpu_seconds(&format!("/proc/{}/stat", tail.0.id())).unwrap();
    assert!(cpu < 0.5, "tail -F used {cpu} s of CPU in 2 s of waiting");
    assert!(tail.0.try_wait().unwrap().is_none(), "tail -F exited");
    d.ctl_ok(&["append", "--domain", "l", "--log", "later.log", "hello"]);
    seen(&out, "hello\n");
    seen(&err, "logdctl: later.log has appeared; following it");
    d.ctl_ok(&["append", "--domain", "l", "--log", "later.log", "more"]);
    seen(&out, "hello\nmore\n");
    std::fs::remove_file(d.log("later.log")).unwrap();
    seen(
        &err,
        "logdctl: later.log has become inaccessible; waiting for it to appear",
    );
    d.ctl_ok(&["append", "--domain", "l", "--log", "later.log", "again"]);
    seen(&out, "hello\nmore\nagain\n");
    assert_eq!(text(&out.lock().unwrap()), "hello\nmore\nagain\n");
    let err = text(&err.lock().unwrap());
    assert_eq!(err.matches("has appeared").count(), 2, "{err}");
}
