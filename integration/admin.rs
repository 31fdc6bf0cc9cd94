//! End-to-end tests of the admin socket (issue #4): `logdctl ps` and `stats` on the real daemon.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::harness::*;
use logd_protocol::admin::AdminRequest;
use logd_protocol::codec::{encode_frame, MAX_REQUEST_FRAME};
use logd_protocol::{DomainId, Hello, OpenFlags, Request};

fn ps(d: &Daemon) -> serde_json::Value {
    serde_json::from_slice(&d.ctl_ok(&["ps", "--json"])).unwrap()
}

/// Acceptance 1: after exactly N bytes, `ps --json` shows bytes in = bytes written = N, and the
/// rotation count matches the files.
#[test]
fn ps_counts_every_byte_and_every_rotation() {
    let d = Daemon::with_config("max_size = \"8 KiB\"\nmax_backups = 32\n");
    let mut c = d.client();
    let (_, fd) = c
        .open_log(
            DomainId::from_name("qemu", "counted"),
            "counted.log",
            OpenFlags::default(),
        )
        .unwrap();
    let mut w = std::fs::File::from(fd);
    let data = numbered_lines(100_000 + 17);
    w.write_all(&data).unwrap();
    c.position("counted.log").unwrap(); // drained
    let v = ps(&d);
    let s = &v["domains"][0]["streams"][0];
    assert_eq!(v["domains"][0]["id"]["name"], "counted");
    assert_eq!(s["kind"], "stdio");
    assert_eq!(s["bytes_in"], data.len() as u64, "{s}");
    assert_eq!(s["bytes_written"], data.len() as u64, "{s}");
    let backups = (0..32)
        .filter(|i| d.log(&format!("counted.log.{i}")).exists())
        .count();
    assert!(backups > 5);
    assert_eq!(s["rotations"], backups as u64, "{s}");
    assert_eq!(
        s["file_size"],
        std::fs::metadata(d.log("counted.log")).unwrap().len()
    );
    assert_eq!(s["guest"], "connected");
    assert_eq!(s["dropped_disk"], 0);
    assert!(v["rss_kib"].as_u64().unwrap() > 0 && v["fds"].as_u64().unwrap() > 3);
    // The registry counts the snapshot request itself; the idle domain has nothing queued.
    assert_eq!(v["registry"]["depth"], 1);
    assert_eq!(v["registry"]["capacity"], 256);
    assert_eq!(v["domains"][0]["mailbox"]["depth"], 0);
    assert_eq!(v["domains"][0]["mailbox"]["capacity"], 16);

    // The table has the same stream, and `stats` the same numbers.
    let table = String::from_utf8(d.ctl_ok(&["ps"])).unwrap();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("counted") && l.contains("counted.log")),
        "{table}"
    );
    let st: serde_json::Value =
        serde_json::from_slice(&d.ctl_ok(&["stats", "counted", "--json"])).unwrap();
    assert_eq!(st["streams"][0]["bytes_written"], data.len() as u64);
    let out = d.ctl_run(&["stats", "nosuchdomain"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuchdomain"));

    // EOF: the domain goes away from the snapshot.
    drop(w);
    wait_for(
        Duration::from_secs(10),
        "the domain to leave the snapshot",
        || {
            ps(&d)["domains"]
                .as_array()
                .unwrap()
                .is_empty()
                .then_some(())
        },
    );
}

/// Console subscribers appear in `ps --json`, in connection order, with the writer marked.
#[test]
fn ps_lists_console_subscribers_with_the_writer() {
    let d = Daemon::start();
    let bound = String::from_utf8(d.ctl_ok(&[
        "console",
        "add",
        "--domain",
        "vm",
        "--name",
        "serial0",
        "--guest-connect",
        "g.sock",
        "--log",
        "c.log",
        "--tcp",
        "0",
        "--tcp-write",
    ]))
    .unwrap();
    let addr = bound.trim().to_owned();
    let subs: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    let v = wait_for(Duration::from_secs(10), "3 subscribers", || {
        let v = ps(&d);
        (v["domains"][0]["streams"][0]["subscribers"]
            .as_array()?
            .len()
            == 3)
            .then_some(v)
    });
    let s = &v["domains"][0]["streams"][0];
    assert_eq!(s["kind"]["console"]["name"], "serial0");
    assert_eq!(s["guest"], "waiting");
    let list = s["subscribers"].as_array().unwrap();
    let writers: Vec<bool> = list
        .iter()
        .map(|x| x["writer"].as_bool().unwrap())
        .collect();
    assert_eq!(writers, [true, false, false]);
    assert_eq!(list[0]["peer"], subs[0].local_addr().unwrap().to_string());
    assert_eq!(list[0]["queue_limit"], 1024 * 1024);
}

/// The main socket cannot reach admin operations; a bad admin request gets an error and the
/// daemon goes on.
#[test]
fn admin_requests_only_on_the_admin_socket() {
    let d = Daemon::start();
    let admin = logd::config::admin_socket_for(&d.socket);
    let exchange = |path: &std::path::Path, payload: Vec<u8>| -> Vec<u8> {
        let mut s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(&encode_frame(&Hello::current(), MAX_REQUEST_FRAME).unwrap())
            .unwrap();
        s.write_all(&payload).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        all
    };
    // An admin request on the main socket is not even decodable there.
    let snap = encode_frame(&AdminRequest::Snapshot, MAX_REQUEST_FRAME).unwrap();
    let answer = exchange(&d.socket, snap.clone());
    assert!(
        String::from_utf8_lossy(&answer).contains("malformed request"),
        "{answer:?}"
    );
    // A main-socket request on the admin socket, and garbage, get errors.
    let open = encode_frame(&Request::ListConsoles, MAX_REQUEST_FRAME).unwrap();
    let answer = exchange(&admin, open);
    assert!(
        String::from_utf8_lossy(&answer).contains("malformed admin request"),
        "{answer:?}"
    );
    let answer = exchange(&admin, vec![0, 0, 0, 2, 0xee, 0xee]);
    assert!(String::from_utf8_lossy(&answer).contains("malformed admin request"));
    // Still serving, on both sockets.
    let answer = exchange(&admin, snap);
    assert!(String::from_utf8_lossy(&answer).contains("logd "));
    d.ctl_ok(&["ps"]);
    d.ctl_ok(&["append", "--domain", "x", "--log", "x.log", "fine"]);
}

/// Acceptance 2: three subscribers listed with the right writer; `console kick` removes one and
/// closes its socket; `console grant` moves the lock, and the new holder's input reaches the
/// guest.
#[test]
fn kick_and_grant_act_on_subscribers() {
    let d = Daemon::start();
    let mut c = d.client();
    let spec = logd_protocol::ConsoleSpec {
        tcp: Some("0".into()),
        ..logd_protocol::ConsoleSpec::new(
            DomainId::from_name("qemu", "kg"),
            "serial0",
            logd_protocol::GuestSide::Fd,
            "kg.log",
        )
    };
    // The subscribers type over plain TCP: the console opts in.
    let (added, fd) = c
        .add_console_with(spec, vec![logd_protocol::ConsoleOption::TcpWrite])
        .unwrap();
    let mut guest = UnixStream::from(fd.unwrap());
    guest
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let addr = added.tcp.unwrap();
    let mut subs: Vec<std::net::TcpStream> = (0..3)
        .map(|_| {
            let s = std::net::TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            s
        })
        .collect();
    let list = wait_for(Duration::from_secs(10), "3 subscribers", || {
        let v = ps(&d);
        let l = v["domains"][0]["streams"][0]["subscribers"]
            .as_array()?
            .clone();
        (l.len() == 3).then_some(l)
    });
    let ids: Vec<u64> = list.iter().map(|s| s["id"].as_u64().unwrap()).collect();
    assert_eq!(
        list.iter().map(|s| s["writer"] == true).collect::<Vec<_>>(),
        [true, false, false]
    );

    // Kick the second: its socket is closed (after a goodbye line).
    d.ctl_ok(&["console", "kick", &ids[1].to_string()]);
    let mut rest = Vec::new();
    subs[1].read_to_end(&mut rest).unwrap();
    assert!(String::from_utf8_lossy(&rest).contains("disconnected by the operator 0:root"));
    let after = ps(&d);
    let left: Vec<u64> = after["domains"][0]["streams"][0]["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect();
    assert_eq!(left, [ids[0], ids[2]]);

    // Grant the lock to the third: its input reaches the guest, the first's no longer does.
    d.ctl_ok(&["console", "grant", &ids[2].to_string()]);
    subs[0].write_all(b"old holder\n").unwrap();
    subs[2].write_all(b"new holder\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&got).contains("new holder\n") {
        let n = guest.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        !String::from_utf8_lossy(&got).contains("old holder"),
        "{got:?}"
    );
    let v = ps(&d);
    let writers: Vec<(u64, bool)> = v["domains"][0]["streams"][0]["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_u64().unwrap(), s["writer"].as_bool().unwrap()))
        .collect();
    assert_eq!(writers, [(ids[2], true), (ids[0], false)]);

    // Unknown ids get an error naming them; the daemon goes on.
    let out = d.ctl_run(&["console", "kick", "999999"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("999999"));
    let out = d.ctl_run(&["console", "grant", "999999"]);
    assert!(!out.status.success());
    d.ctl_ok(&["ps"]);
}

/// `logdctl log-level` changes the daemon's filter while it runs; a bad level is refused.
#[test]
fn log_level_changes_at_run_time() {
    let d = Daemon::start(); // started with -v: debug
    d.ctl_ok(&["append", "--domain", "l", "--log", "l.log", "one"]);
    wait_for(Duration::from_secs(10), "a debug line", || {
        d.stderr().contains("request=\"AppendLog\"").then_some(())
    });
    d.ctl_ok(&["log-level", "warn"]);
    let before = d.stderr().matches("request=\"AppendLog\"").count();
    d.ctl_ok(&["append", "--domain", "l", "--log", "l.log", "two"]);
    d.ctl_ok(&["position", "--log", "l.log"]);
    assert_eq!(
        d.stderr().matches("request=\"AppendLog\"").count(),
        before,
        "debug lines at warn"
    );
    assert!(d.stderr().contains("log filter changed"));
    d.ctl_ok(&["log-level", "logd=debug"]);
    d.ctl_ok(&["append", "--domain", "l", "--log", "l.log", "three"]);
    wait_for(Duration::from_secs(10), "debug lines again", || {
        (d.stderr().matches("request=\"AppendLog\"").count() > before).then_some(())
    });
    let out = d.ctl_run(&["log-level", "loud=[["]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid log level"));
}

/// Acceptance 3: `events --json` sees, in order: open, a rotation, subscriber joined, subscriber
/// left, EOF.
#[test]
fn events_stream_lifecycle_in_order() {
    let d = Daemon::with_config("max_size = \"4 KiB\"\n");
    let (mut ev, lines) = event_stream(&d);
    let names = |lines: &Events| -> Vec<String> {
        lines
            .lock()
            .unwrap()
            .iter()
            .map(|v| v["event"].as_str().unwrap().to_owned())
            .collect()
    };
    let start = lines.lock().unwrap().len();

    let mut c = d.client();
    let (_, fd) = c
        .open_log(
            DomainId::from_name("qemu", "ev"),
            "ev.log",
            OpenFlags::default(),
        )
        .unwrap();
    let mut w = std::fs::File::from(fd);
    w.write_all(&numbered_lines(10_000)).unwrap(); // > 4 KiB: rotations
    c.position("ev.log").unwrap();
    let bound = String::from_utf8(d.ctl_ok(&[
        "console",
        "add",
        "--domain",
        "ev",
        "--name",
        "serial0",
        "--guest-connect",
        "g.sock",
        "--log",
        "evc.log",
        "--tcp",
        "0",
    ]))
    .unwrap();
    let sub = std::net::TcpStream::connect(bound.trim()).unwrap();
    wait_for(Duration::from_secs(10), "subscriber_joined", || {
        names(&lines)
            .iter()
            .any(|n| n == "subscriber_joined")
            .then_some(())
    });
    drop(sub);
    wait_for(Duration::from_secs(10), "subscriber_left", || {
        names(&lines)
            .iter()
            .any(|n| n == "subscriber_left")
            .then_some(())
    });
    drop(w);
    wait_for(Duration::from_secs(10), "log_closed", || {
        names(&lines)
            .iter()
            .any(|n| n == "log_closed")
            .then_some(())
    });
    let seen: Vec<String> = names(&lines)[start..].to_vec();
    let want = [
        "log_opened",
        "rotated",
        "subscriber_joined",
        "subscriber_left",
        "log_closed",
    ];
    let mut at = 0;
    for w in want {
        let i = seen[at..]
            .iter()
            .position(|n| n == w)
            .unwrap_or_else(|| panic!("{w} missing after {at} in {seen:?}"));
        at += i + 1;
    }
    let all = lines.lock().unwrap().clone();
    let opened = all.iter().find(|v| v["event"] == "log_opened").unwrap();
    assert_eq!(opened["domain"], "ev");
    assert!(opened["path"].as_str().unwrap().ends_with("ev.log"));
    assert!(opened["at_ms"].as_u64().unwrap() > 0);
    let _ = ev.kill();
    let _ = ev.wait();
}

/// Acceptance 5: `logdctl top` in a real terminal (tmux, 80×24): a domain's row appears, `q`
/// quits, and the terminal is restored.
#[test]
fn top_shows_domains_and_restores_the_terminal() {
    if require_tool("tmux").is_none() {
        return;
    }
    let d = Daemon::start();
    let mut c = d.client();
    let (_, fd) = c
        .open_log(
            DomainId::from_name("qemu", "topdomain"),
            "top.log",
            OpenFlags::default(),
        )
        .unwrap();
    let mut w = std::fs::File::from(fd);
    w.write_all(&numbered_lines(1 << 20)).unwrap();
    let top = format!("{LOGDCTL} --socket {} top", d.socket.display());
    let (term, rec) = Terminal::run_recorded("top", d.dir.path(), &top);
    let screen = term.wait_for("topdomain", Duration::from_secs(20));
    assert!(
        screen.contains("logd top") && screen.contains("DOMAIN"),
        "{screen}"
    );
    assert!(screen.lines().all(|l| l.chars().count() <= 80), "{screen}");
    term.keys(&["q"]);
    let (status, restored) = rec.wait(Duration::from_secs(20));
    assert_eq!(status, "exit=0");
    assert!(restored, "the terminal was not restored");
    assert!(
        !term.screen().contains("logd top"),
        "still on the alternate screen"
    );
}

/// `logdctl top`'s keys in a real terminal: the help line on the bottom row, `/` filters by
/// domain (Enter keeps the filter, Esc clears it), `s` cycles the sort column, `q` quits.
#[test]
fn top_sorts_and_filters_with_keys_named_on_its_help_line() {
    if require_tool("tmux").is_none() {
        return;
    }
    let d = Daemon::start();
    let mut c = d.client();
    let mut pipes = Vec::new();
    for (name, bytes) in [("topbusy", 1 << 20), ("topidle", 100)] {
        let (_, fd) = c
            .open_log(
                DomainId::from_name("qemu", name),
                &format!("{name}.log"),
                OpenFlags::default(),
            )
            .unwrap();
        let mut w = std::fs::File::from(fd);
        w.write_all(&numbered_lines(bytes)).unwrap();
        pipes.push(w);
    }
    let top = format!("{LOGDCTL} --socket {} top", d.socket.display());
    let (term, rec) = Terminal::run_recorded("topkeys", d.dir.path(), &top);
    let bottom = |screen: &str| screen.lines().nth(23).unwrap_or_default().to_owned();
    let screen = term.wait_for("topidle", Duration::from_secs(20));
    let screen = if screen.contains("topbusy") {
        screen
    } else {
        term.wait_for("topbusy", Duration::from_secs(20))
    };
    assert_eq!(
        bottom(&screen),
        "s sort (IN/s)  / filter  q quit",
        "{screen}"
    );
    term.keys(&["/"]);
    term.keys(&["-l", "idle"]);
    let screen = term.wait_for("filter by domain: idle_", Duration::from_secs(20));
    assert!(
        bottom(&screen).starts_with("filter by domain: idle_"),
        "{screen}"
    );
    term.keys(&["Enter"]);
    let screen = term.wait_for("filter [idle]", Duration::from_secs(20));
    assert!(
        screen.contains("topidle") && !screen.contains("topbusy"),
        "{screen}"
    );
    // Sorted by IN, the busy domain comes first once the filter is gone.
    term.keys(&["s"]);
    term.wait_for("s sort (IN)  / filter [idle]", Duration::from_secs(20));
    term.keys(&["/"]);
    term.keys(&["Escape"]);
    let screen = term.wait_for("s sort (IN)  / filter  q quit", Duration::from_secs(20));
    let (busy, idle) = (
        screen.find("topbusy").expect(&screen),
        screen.find("topidle").expect(&screen),
    );
    assert!(busy < idle, "{screen}");
    assert!(screen.lines().all(|l| l.chars().count() <= 80), "{screen}");
    term.keys(&["q"]);
    let (status, restored) = rec.wait(Duration::from_secs(20));
    assert_eq!(status, "exit=0");
    assert!(restored, "the terminal was not restored");
}

/// `ps` counts the daemon's fds as /proc shows them from outside: the fd its own count opens
/// (the listing of /proc/self/fd) is not one of them (issue 17).
#[test]
fn ps_counts_the_daemons_fds_exactly() {
    let d = Daemon::start();
    let mut admin =
        logd_protocol::client::AdminClient::connect(&d.dir.path().join("logd-admin.sock")).unwrap();
    // Served once: the connection's fd is in both counts from now on.
    admin.snapshot().unwrap();
    let mut last = (0, 0);
    let same = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        let outside = fd_count(d.pid()).unwrap() as u64;
        let inside = admin.snapshot().unwrap().fds;
        last = (inside, outside);
        (inside == outside).then_some(())
    });
    assert!(
        same.is_some(),
        "ps counts {} fds, /proc/{}/fd lists {}",
        last.0,
        d.pid(),
        last.1
    );
}

/// A daemon serving metrics on a free loopback port (8 KiB files), a client, and the write end
/// of one log, `LOG` of domain `NAME`, opened and not yet written.
fn metered_daemon(
    name: &str,
    log: &str,
) -> (Daemon, u16, logd_protocol::client::Client, std::fs::File) {
    let port = free_port();
    let d = Daemon::with_config(&format!(
        "metrics_listen = \"127.0.0.1:{port}\"\nmax_size = \"8 KiB\"\n"
    ));
    let mut c = d.client();
    let (_, fd) = c
        .open_log(DomainId::from_name("qemu", name), log, OpenFlags::default())
        .unwrap();
    (d, port, c, std::fs::File::from(fd))
}

/// Acceptance 6: the metrics endpoint serves text a Prometheus parser accepts, and its counters
/// match `ps --json`.
#[test]
fn metrics_match_ps_and_parse() {
    let (d, port, mut c, mut w) = metered_daemon("metered", "m.log");
    let data = numbered_lines(50_000);
    w.write_all(&data).unwrap();
    c.position("m.log").unwrap();
    let get = |path: &str| http_get(port, path);
    let reply = get("/metrics");
    assert!(reply.starts_with("HTTP/1.0 200 OK"), "{reply}");
    let body = reply.split("\r\n\r\n").nth(1).unwrap();
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text");
    let value = |name: &str| -> f64 {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("domain") == Some("metered"))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("{name} missing in {body}"))
    };
    let v = ps(&d);
    let s = &v["domains"][0]["streams"][0];
    assert_eq!(
        value("logd_stream_in_bytes_total"),
        s["bytes_in"].as_u64().unwrap() as f64
    );
    assert_eq!(value("logd_stream_written_bytes_total"), data.len() as f64);
    assert_eq!(
        value("logd_stream_rotations_total"),
        s["rotations"].as_u64().unwrap() as f64
    );
    assert_eq!(
        value("logd_stream_file_size_bytes"),
        s["file_size"].as_u64().unwrap() as f64
    );
    assert!(value("logd_stream_rotations_total") > 0.0);
    // The daemon's own: its build, and its start as `ps` gives it.
    let daemon = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .unwrap_or_else(|| panic!("{name} missing in {body}"))
    };
    let build = daemon("logd_build_info");
    assert_eq!(
        Some(format!("logd {}", build.labels.get("version").unwrap()).as_str()),
        v["version"].as_str()
    );
    assert_eq!(build.labels.get("build_id"), v["build_id"].as_str());
    assert_eq!(
        daemon("process_start_time_seconds").value,
        prometheus_parse::Value::Gauge(v["started_ms"].as_u64().unwrap() as f64 / 1000.0)
    );
    assert!(get("/nope").starts_with("HTTP/1.0 404"));
    // A removed domain's metrics go away.
    drop(w);
    wait_for(
        Duration::from_secs(10),
        "the domain's metrics to go",
        || (!get("/metrics").contains("metered")).then_some(()),
    );
}

/// Issue 17, item 4: a live scrape of a daemon with a rotating log and a console with a
/// subscriber passes Prometheus's lint, `promtool check metrics`, with nothing to say. Every
/// family has samples then (the lint skips a family without), so every name is linted.
#[test]
fn a_live_scrape_passes_promtool() {
    let Some(promtool) = require_tool("promtool") else {
        return;
    };
    let (d, port, mut c, mut w) = metered_daemon("linted", "linted.log");
    w.write_all(&numbered_lines(20_000)).unwrap();
    c.position("linted.log").unwrap();
    let spec = logd_protocol::ConsoleSpec {
        tcp: Some("0".into()),
        ..logd_protocol::ConsoleSpec::new(
            DomainId::from_name("qemu", "linted-console"),
            "serial0",
            logd_protocol::GuestSide::Fd,
            "linted-console.log",
        )
    };
    let (added, guest) = c.add_console(spec).unwrap();
    let mut guest = UnixStream::from(guest.unwrap());
    let mut sub = std::net::TcpStream::connect(added.tcp.unwrap()).unwrap();
    sub.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    guest.write_all(b"booted\r\n").unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("booted") {
        let mut buf = [0u8; 4096];
        let n = sub.read(&mut buf).expect("the subscriber reads the guest");
        assert!(
            n > 0,
            "the console closed: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }

    let reply = http_get(port, "/metrics");
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    for name in [
        "logd_stream_in_bytes_total",
        "logd_stream_written_bytes_total",
        "logd_stream_dropped_bytes_total",
        "logd_stream_rotations_total",
        "logd_stream_file_size_bytes",
        "logd_stream_guest_connected",
        "logd_console_subscribers",
        "logd_console_slow_disconnects_total",
        "logd_console_refused_total",
        "logd_domains",
        "logd_domain_actors",
        "logd_build_info",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_start_time_seconds",
    ] {
        assert!(
            body.lines().any(|l| l
                .strip_prefix(name)
                .is_some_and(|r| r.starts_with([' ', '{']))),
            "no sample of {name}:\n{body}"
        );
    }
    let scraped = d.dir.path().join("scrape.txt");
    std::fs::write(&scraped, body).unwrap();
    let lint = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&scraped).unwrap())
        .output()
        .unwrap();
    assert!(
        lint.status.success() && lint.stdout.is_empty() && lint.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}\non:\n{body}",
        lint.status,
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
}

/// A domain's actor runs while the domain has a log, and stops with it: the registry holds only a
/// weak address, so nothing else keeps it alive, and nothing may keep it alive longer.
#[test]
fn domain_actors_stop_with_their_last_log() {
    let port = free_port();
    let d = Daemon::with_config(&format!("metrics_listen = \"127.0.0.1:{port}\"\n"));
    let gauges = || -> (f64, f64) {
        let all = http_get(port, "/metrics");
        let body = all.split("\r\n\r\n").nth(1).unwrap().to_owned();
        let scrape =
            prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
        let get = |name: &str| {
            scrape
                .samples
                .iter()
                .find(|s| s.metric == name)
                .map(|s| match s.value {
                    prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                    _ => f64::NAN,
                })
                .unwrap_or_else(|| panic!("{name} missing in {body}"))
        };
        (get("logd_domains"), get("logd_domain_actors"))
    };
    let mut c = d.client();
    let mut writers = Vec::new();
    for i in 0..40 {
        // Two logs for some domains: the actor stops with the last one.
        let dom = DomainId::from_name("qemu", &format!("actor-{}", i % 30));
        let (_, fd) = c
            .open_log(dom, &format!("actors/{i}.log"), OpenFlags::default())
            .unwrap();
        writers.push(std::fs::File::from(fd));
    }
    wait_for(Duration::from_secs(10), "30 domains, 30 actors", || {
        (gauges() == (30.0, 30.0)).then_some(())
    });
    // Closing the domains' first logs (0–29) leaves the ten with a second log (30–39).
    let rest = writers.split_off(30);
    drop(writers);
    wait_for(Duration::from_secs(10), "10 domains, 10 actors", || {
        (gauges() == (10.0, 10.0)).then_some(())
    });
    drop(rest);
    wait_for(Duration::from_secs(10), "no domain, no actor", || {
        (gauges() == (0.0, 0.0)).then_some(())
    });
}

/// Tracing has a span per domain, so the daemon's log can be filtered by domain with RUST_LOG.
#[test]
fn rust_log_filters_by_domain() {
    let d = Daemon::start_with(Opts {
        env: vec![("RUST_LOG".into(), "logd[domain{domain=alpha}]=info".into())],
        ..Opts::default()
    });
    let mut c = d.client();
    let (_, a) = c
        .open_log(
            DomainId::from_name("qemu", "alpha"),
            "alpha.log",
            OpenFlags::default(),
        )
        .unwrap();
    let (_, b) = c
        .open_log(
            DomainId::from_name("qemu", "beta"),
            "beta.log",
            OpenFlags::default(),
        )
        .unwrap();
    drop((a, b));
    // Each domain logs its lines (stderr is written at once) before it tells the registry that
    // its log closed, and the registry forgets a domain only then: once `ps` shows neither
    // domain, every line either could write is in the file.
    wait_for(Duration::from_secs(10), "both domains to be gone", || {
        ps(&d)["domains"]
            .as_array()
            .is_some_and(|v| v.is_empty())
            .then_some(())
    });
    let log = d.stderr();
    assert!(
        log.contains("log opened") && log.contains("domain=alpha"),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("log closed") && l.contains("alpha.log")),
        "alpha's close is missing: {log}"
    );
    assert!(
        !log.contains("beta.log"),
        "beta's lines passed a filter for alpha: {log}"
    );
}
