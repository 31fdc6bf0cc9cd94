//! Shipping logd's logs off the host with an existing engine (issue 17, item 5; docs/SHIPPING.md):
//! rsyslog's `imfile` follows a log that logd rotates by rename and forwards it over TCP to a
//! second rsyslog on 127.0.0.1, which writes what it receives to a file. Both rsyslogd run in
//! the foreground, from this test's temporary directory, with no system input (`imuxsock`,
//! `imklog`): nothing touches /dev/log, /var/log or the system's rsyslog.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;
use logd_protocol::{DomainId, OpenFlags};

/// How long each wait of this test may take (rsyslogd's start, a file opened, lines received).
const WAIT: Duration = Duration::from_secs(60);

/// One rsyslogd in the foreground (`-n`), with its own configuration, pid file, work directory
/// (state files) and internal log in `dir`. Killed and reaped when dropped, so a failing test
/// leaves no daemon behind.
struct Rsyslogd {
    child: Option<Child>,
    name: &'static str,
    dir: PathBuf,
}

impl Rsyslogd {
    /// Writes `conf` (after a header that sets the work directory and sends rsyslog's own
    /// messages to `internal.log`) and starts `rsyslogd -n -f CONF -i PIDFILE` on it.
    fn start(rsyslogd: &Path, parent: &Path, name: &'static str, conf: &str) -> Rsyslogd {
        let dir = parent.join(name);
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let header = format!(
            "# rsyslog's own messages go to a file here, never to the system's logger.\n\
             global(workDirectory=\"{work}\" processInternalMessages=\"on\" net.enableDNS=\"off\")\n\
             action(type=\"omfile\" file=\"{internal}\")\n",
            work = work.display(),
            internal = dir.join("internal.log").display(),
        );
        let conf_path = dir.join("rsyslog.conf");
        std::fs::write(&conf_path, header + conf).unwrap();
        let check = run_bounded(
            Command::new(rsyslogd).arg("-N1").arg("-f").arg(&conf_path),
            Duration::from_secs(20),
        );
        assert!(
            check.status.success(),
            "rsyslogd -N1 refuses {}: {}",
            conf_path.display(),
            String::from_utf8_lossy(&check.stderr)
        );
        let out = std::fs::File::create(dir.join("stderr")).unwrap();
        let child = Command::new(rsyslogd)
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start rsyslogd");
        Rsyslogd {
            child: Some(child),
            name,
            dir,
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Its stderr and internal log, to explain a failure.
    fn diagnostics(&self) -> String {
        format!(
            "{} stderr:\n{}\n{} internal.log:\n{}",
            self.name,
            last_lines(&self.dir.join("stderr"), 20),
            self.name,
            last_lines(&self.dir.join("internal.log"), 20)
        )
    }

    /// Whether it holds the file with this device and inode open.
    fn holds(&self, dev: u64, ino: u64) -> bool {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{}/fd", self.pid())) else {
            return false;
        };
        fds.flatten()
            .any(|fd| std::fs::metadata(fd.path()).is_ok_and(|m| m.dev() == dev && m.ino() == ino))
    }

    /// Stops it as an administrator would (SIGTERM: it finishes its queues and records its
    /// state), waiting a bounded time; killed if it does not exit.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let exited = poll(WAIT, Duration::from_millis(20), || {
            child.try_wait().ok().flatten()
        });
        if exited.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} did not stop on SIGTERM\n{}",
                self.name,
                self.diagnostics()
            );
        }
    }
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The receiver: `imtcp` on 127.0.0.1, on a port the kernel picks (written to `port_file`,
/// so no other test can take it first), each message's text (`%msg%`, which the RFC 5424
/// parser gives exactly as the sender read it, control characters unescaped) and a newline
/// appended to `out`.
fn receiver_conf(port_file: &Path, out: &Path) -> String {
    format!(
        r#"global(parser.escapeControlCharactersOnReceive="off")
module(load="imtcp")
template(name="line" type="string" string="%msg%\n")
input(type="imtcp" address="127.0.0.1" port="0" listenPortFileName="{port_file}"
      ruleset="store")
ruleset(name="store") {{
  action(type="omfile" file="{out}" template="line")
}}
"#,
        out = out.display(),
        port_file = port_file.display()
    )
}

/// The sender: `imfile` in inotify mode on logd's active file (by its name only: the backups
/// are the same bytes again), forwarded in RFC 5424 with octet-counted framing, so a line that
/// starts with digits is not taken for a frame length. This is the configuration docs/SHIPPING.md
/// shows.
fn sender_conf(log: &Path, port: u16) -> String {
    format!(
        r#"module(load="imfile" mode="inotify")
input(type="imfile" file="{log}" tag="logd"
      ruleset="ship"
      freshStartTail="off"
      reopenOnTruncate="on"
      readMode="0")
ruleset(name="ship") {{
  action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp"
         TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format"
         queue.type="LinkedList" action.resumeRetryCount="-1")
}}
"#,
        log = log.display()
    )
}

/// The lines of `path` (none if it does not exist yet).
/// The lines of `path`, each without its `\n` only (a `\r` before it stays).
fn lines_of(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    lines.pop(); // after the last newline: empty, or a line still being written
    lines
}

/// Line `i` of the test's log, without its newline: numbered, with a tab, and ending in `\r`
/// as a console's lines do, so the pipeline must carry control characters exactly.
fn line(i: u64) -> String {
    format!("{i:08} logd\tto rsyslog over tcp\r")
}

/// Issue 17, item 5: across 100 rotations, rsyslog ships every line of a log exactly once, in
/// order. logd writes the log (numbered lines through its pipe, 4 KiB files); `imfile` follows
/// the active file through each rename; `omfwd` sends over TCP to a receiving rsyslog that
/// writes a file. The writer keeps to the one condition docs/SHIPPING.md states for no loss:
/// a new active file is not filled before the shipper has opened it (the test checks the
/// sender's fds), and otherwise goes as fast as logd takes the lines.
#[test]
fn rsyslog_ships_every_line_once_across_100_rotations() {
    // Debian installs it in /usr/sbin, which a user's PATH may lack.
    let sbin = Path::new("/usr/sbin/rsyslogd");
    let Some(rsyslogd) = sbin
        .is_file()
        .then(|| sbin.to_path_buf())
        .or_else(|| require_tool("rsyslogd"))
    else {
        return;
    };
    let _heavy = cpu_heavy(); // timing-sensitive: not beside the tests that load both cores
    let started = Instant::now();
    let d = Daemon::with_config("max_size = \"4 KiB\"\nmax_backups = 4\n");
    let log = d.log("ship.log");
    let received = d.dir.path().join("received.log");

    let port_file = d.dir.path().join("receiver.port");
    let mut receiver = Rsyslogd::start(
        &rsyslogd,
        d.dir.path(),
        "receiver",
        &receiver_conf(&port_file, &received),
    );
    let port: u16 = poll(WAIT, Duration::from_millis(20), || {
        std::fs::read_to_string(&port_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    })
    .unwrap_or_else(|| panic!("the receiver does not listen\n{}", receiver.diagnostics()));

    let mut c = d.client();
    let (_, fd) = c
        .open_log(
            DomainId::from_name("qemu", "ship"),
            "ship.log",
            OpenFlags::default(),
        )
        .unwrap();
    let mut pipe = std::fs::File::from(fd);
    let mut sender = Rsyslogd::start(&rsyslogd, d.dir.path(), "sender", &sender_conf(&log, port));
    let dev = std::fs::metadata(&log).unwrap().dev();
    let opened = |sender: &Rsyslogd, ino: u64| {
        poll(WAIT, Duration::from_millis(5), || {
            sender.holds(dev, ino).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "the sender did not open the active file (inode {ino})\n{}",
                sender.diagnostics()
            )
        })
    };

    // Numbered lines, in batches of about 1 KiB (a quarter of a file): after each, logd's
    // position says which file is active, and a new one is not written past a batch until the
    // sender has it open.
    let mut next = 0u64;
    // A batch is less than a file, so no rotation goes unseen.
    let mut inode = std::fs::metadata(&log).unwrap().ino();
    let mut seen = 0;
    opened(&sender, inode);
    while seen < 100 {
        let mut batch = Vec::with_capacity(1100);
        while batch.len() < 1000 {
            writeln!(batch, "{}", line(next)).unwrap();
            next += 1;
        }
        pipe.write_all(&batch).unwrap();
        let now = c.position("ship.log").unwrap().inode;
        if now != inode {
            inode = now;
            seen += 1;
            opened(&sender, inode);
        }
    }
    let wrote = started.elapsed();
    let total = next as usize;
    let rotated = rotations(&d);
    assert_eq!(rotated, seen, "rotations in `ps` and new files seen");

    // Everything arrives; then both stop (the sender first, so its queue drains), and the file
    // is read once nothing can be added to it.
    poll(WAIT, Duration::from_millis(50), || {
        (lines_of(&received).len() >= total).then_some(())
    });
    sender.stop();
    receiver.stop();
    let got = lines_of(&received);
    let want: Vec<String> = (0..next).map(line).collect();
    if got != want {
        let received: std::collections::HashSet<&String> = got.iter().collect();
        let missing = want.iter().filter(|l| !received.contains(l)).count();
        let first_diff = got.iter().zip(&want).position(|(a, b)| a != b);
        panic!(
            "the receiver has {} lines, want {total} ({missing} missing); first difference at \
             line {first_diff:?}: {:?}\n{}\n{}",
            got.len(),
            first_diff.and_then(|i| got.get(i)),
            sender.diagnostics(),
            receiver.diagnostics()
        );
    }
    eprintln!(
        "shipped {total} lines across {rotated} rotations: written in {:.1} s, all received \
         and both rsyslogd stopped after {:.1} s",
        wrote.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// The log's rotations, as `logdctl ps --json` reports them.
fn rotations(d: &Daemon) -> u64 {
    let ps: serde_json::Value = serde_json::from_slice(&d.ctl_ok(&["ps", "--json"])).unwrap();
    ps["domains"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|dom| dom["id"]["name"] == "ship")
        .flat_map(|dom| dom["streams"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s["rotations"].as_u64())
        .sum()
}

/// logrotate's `copytruncate` on a log logd writes (docs/SHIPPING.md, "logrotate"): the active
/// file is copied, then truncated in place behind logd's back. logd notices it at its next
/// write and goes on at the file's new end: the position it gives is the file's real size (a
/// reader can use it), the truncation is a `warn` naming the path, a `file_changed_outside`
/// event and the log's last error in `ps`.
#[test]
fn an_outside_truncation_is_reported_and_positions_stay_valid() {
    let d = Daemon::with_config("max_size = \"64 KiB\"\nmax_backups = 2\n");
    let (events, seen) = event_stream(&d);
    let mut c = d.client();
    let (_, fd) = c
        .open_log(
            DomainId::from_name("qemu", "rot"),
            "rot.log",
            OpenFlags::default(),
        )
        .unwrap();
    let mut pipe = std::fs::File::from(fd);
    let before = numbered_lines(1000);
    pipe.write_all(&before).unwrap();
    assert_eq!(c.position("rot.log").unwrap().offset, 1000);

    // copytruncate: copy, then truncate in place.
    let log = d.log("rot.log");
    std::fs::copy(&log, d.dir.path().join("rot.log.copy")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();

    pipe.write_all(b"after the truncation\n").unwrap();
    let pos = c.position("rot.log").unwrap();
    assert_eq!(std::fs::read(&log).unwrap(), b"after the truncation\n");
    assert_eq!(
        pos.offset, 21,
        "the position is the file's real end, not what logd had written before the truncation"
    );
    // A reader from that position gets exactly what comes next.
    pipe.write_all(b"and more\n").unwrap();
    let (data, next, gap) = c
        .read_log("rot.log", logd_protocol::ReadFrom::Position(pos), 1 << 20)
        .unwrap();
    assert_eq!((data.as_slice(), gap), (&b"and more\n"[..], false));
    assert_eq!(next.offset, 30);

    // Reported: an event, the log's last error, a warning naming the path.
    let event = first_event(events, &seen, "file_changed_outside");
    assert_eq!(event["path"], log.display().to_string(), "{event}");
    assert_eq!(
        (&event["expected"], &event["found"], &event["truncations"]),
        (&1000.into(), &0.into(), &1.into()),
        "{event}"
    );
    let ps: serde_json::Value = serde_json::from_slice(&d.ctl_ok(&["ps", "--json"])).unwrap();
    let stream = ps["domains"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|dom| dom["id"]["name"] == "rot")
        .map(|dom| &dom["streams"][0])
        .unwrap_or_else(|| panic!("no domain rot in {ps}"));
    let last_error = stream["last_error"]["message"].as_str().unwrap_or_default();
    assert!(
        last_error.contains("truncated by another process from 1000 to 0 bytes"),
        "{stream}"
    );
    assert_eq!(stream["file_size"], 30, "{stream}");
    wait_for(WAIT, "the warning in logd's log", || {
        let err = d.stderr();
        err.lines()
            .any(|l| {
                l.contains("WARN")
                    && l.contains("truncated by another process")
                    && l.contains(&log.display().to_string())
            })
            .then_some(())
    });
}

/// The first event of `kind` the stream has seen (waiting for it); the stream then ends.
fn first_event(mut events: Child, seen: &Events, kind: &str) -> serde_json::Value {
    let event = wait_for(WAIT, &format!("the {kind} event"), || {
        seen.lock()
            .unwrap()
            .iter()
            .find(|e| e["event"] == kind)
            .cloned()
    });
    let _ = events.kill();
    let _ = events.wait();
    event
}

/// Whether process `pid` holds `path` open (a link in /proc/PID/fd names it).
fn holds_open(pid: i32, path: &Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .any(|target| target == path)
}

/// A log holds its file open only while it is written to (docs/DECISIONS.md, "Idle logs hold
/// no file open"): created and closed at its open, opened by its first byte, closed again
/// once idle for `log_idle_close`. A file removed meanwhile (by a careless cleanup) is made
/// again at the next byte and reported, where logd used to go on writing into the removed file,
/// which nobody could read.
#[test]
fn a_log_holds_its_file_only_while_written_and_a_file_removed_meanwhile_comes_back() {
    let d = Daemon::with_config("log_idle_close = 1\n");
    let pid = d.pid();
    let (events, seen) = event_stream(&d);
    let mut c = d.client();
    let (opened, fd) = c
        .open_log(
            DomainId::from_name("qemu", "rest"),
            "rest.log",
            OpenFlags::default(),
        )
        .unwrap();
    let log = d.log("rest.log");
    assert_eq!(opened.inode, std::fs::metadata(&log).unwrap().ino());
    assert!(!holds_open(pid, &log), "a log never written holds no fd");

    let mut pipe = std::fs::File::from(fd);
    pipe.write_all(b"one\n").unwrap();
    assert_eq!(c.position("rest.log").unwrap().offset, 4);
    assert!(holds_open(pid, &log), "written: its file is open");
    wait_for(WAIT, "the idle log to close its file", || {
        (!holds_open(pid, &log)).then_some(())
    });

    std::fs::remove_file(&log).unwrap();
    pipe.write_all(b"two\n").unwrap();
    let pos = c.position("rest.log").unwrap();
    assert_eq!(std::fs::read(&log).unwrap(), b"two\n", "made again");
    assert_eq!(pos.offset, 4);
    assert_eq!(pos.inode, std::fs::metadata(&log).unwrap().ino());
    let event = first_event(events, &seen, "file_changed_outside");
    assert_eq!(
        (&event["expected"], &event["found"], &event["truncations"]),
        (&4.into(), &0.into(), &0.into()),
        "{event}"
    );
    let ps: serde_json::Value = serde_json::from_slice(&d.ctl_ok(&["ps", "--json"])).unwrap();
    let text = ps.to_string();
    assert!(
        text.contains("was removed or replaced by another process while the log was idle"),
        "{text}"
    );
}
