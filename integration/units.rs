//! The shipped systemd units (`dist/systemd/`), checked with the real tools: systemd-analyze
//! rates the service's exposure, and every system call the real `logd` makes (traced with
//! strace through opening and reading logs, a console with a guest, a subscriber and an attach,
//! a SIGHUP, a re-exec and a stop) is one that the unit's `SystemCallFilter=` lets through. A
//! call the filter would refuse would fail logd only under systemd, where no test runs.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

const T: Duration = Duration::from_secs(60);

fn unit(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dist/systemd")
        .join(name)
}

/// systemd-analyze's exposure of the service stays at "OK" (at most 3.0 of 10; 9.6 before the
/// hardening, docs/SYSTEMD.md).
#[test]
fn the_service_unit_is_hardened() {
    if require_tool("systemd-analyze").is_none() {
        return;
    }
    let out = run_bounded(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--threshold=30"])
            .arg(unit("logd.service")),
        T,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let overall = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no overall level: {text}"));
    assert!(
        out.status.success(),
        "exposure above 3.0: {overall}\n{text}"
    );
}

/// The groups of `systemd-analyze syscall-filter`, each as the names and groups it lists.
fn filter_groups() -> HashMap<String, Vec<String>> {
    let out = run_bounded(Command::new("systemd-analyze").arg("syscall-filter"), T);
    assert!(out.status.success());
    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
    let mut current = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(g) = line.strip_prefix('@') {
            current = Some(format!("@{}", g.trim()));
            groups.entry(current.clone().unwrap()).or_default();
        } else if let (Some(g), Some(item)) = (&current, line.strip_prefix("    ")) {
            let item = item.trim();
            if !item.is_empty() && !item.starts_with('#') {
                groups.get_mut(g).unwrap().push(item.to_owned());
            }
        }
    }
    groups
}

fn expand(item: &str, groups: &HashMap<String, Vec<String>>, out: &mut BTreeSet<String>) {
    match groups.get(item) {
        Some(members) => members.iter().for_each(|m| expand(m, groups, out)),
        None => {
            out.insert(item.to_owned());
        }
    }
}

/// The system calls the service's `SystemCallFilter=` lines allow (allow lists only: the unit
/// has no `~` list).
fn allowed_by_unit() -> BTreeSet<String> {
    let text = std::fs::read_to_string(unit("logd.service")).unwrap();
    let groups = filter_groups();
    let mut allowed = BTreeSet::new();
    let mut lines = 0;
    for l in text.lines() {
        if let Some(v) = l.strip_prefix("SystemCallFilter=") {
            assert!(!v.starts_with('~'), "a deny list: extend this test");
            lines += 1;
            for item in v.split_whitespace() {
                expand(item, &groups, &mut allowed);
            }
        }
    }
    assert!(lines > 0, "the unit has no SystemCallFilter=");
    allowed
}

/// The system calls in an strace `-f` log (`PID NAME(…`).
fn traced_calls(log: &str) -> BTreeSet<String> {
    log.lines()
        .filter_map(|l| {
            let rest = l.split_once(' ')?.1.trim_start();
            let name = rest.split_once('(')?.0;
            (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
                .then(|| name.to_owned())
        })
        .collect()
}

#[test]
fn logd_makes_only_the_system_calls_the_unit_allows() {
    for tool in ["strace", "systemd-analyze"] {
        if require_tool(tool).is_none() {
            return;
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("strace.log");
    // logd runs under strace (-f: its threads, its guardian and the re-exec'd image too).
    let wrapper = tmp.path().join("logd-traced");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec strace -f -qq -o {} {LOGD} \"$@\"\n",
            trace.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = Daemon::start_with(Opts {
        binary: Some(wrapper),
        ..Opts::default()
    });

    // Logs: written through a pipe, appended to, read, rotated.
    d.ctl_ok(&[
        "run",
        "--domain",
        "t",
        "--log",
        "t.log",
        "--",
        "sh",
        "-c",
        "seq 1 50000",
    ]);
    d.ctl_ok(&["append", "--domain", "t", "--log", "t.log", "appended"]);
    d.ctl_ok(&["read", "--log", "t.log", "--max", "4096"]);
    // A console: its guest, a TCP subscriber, an attach through the console socket.
    let port = port_of(&d.ctl_ok(&[
        "console",
        "add",
        "--domain",
        "t",
        "--name",
        "serial0",
        "--guest-listen",
        "c.sock",
        "--log",
        "c.log",
        "--tcp",
        "0",
    ]));
    let mut guest = wait_for(T, "the guest socket", || {
        std::os::unix::net::UnixStream::connect(d.log("c.sock")).ok()
    });
    let mut sub = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    sub.set_read_timeout(Some(T)).unwrap();
    let mut client =
        logd_protocol::client::Client::connect(&d.socket.with_file_name("logd-console.sock"))
            .unwrap();
    let (_, attached) = client.attach_console("t", "serial0", false, false).unwrap();
    let mut attached = std::os::unix::net::UnixStream::from(attached);
    attached.write_all(b"typed\n").unwrap();
    guest.write_all(b"from the guest\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !contains(&got, b"from the guest") {
        let n = sub.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    d.ctl_ok(&["ps", "--json"]);
    // SIGHUP (the config read again), then a re-exec, then a stop.
    let pid = nix::unistd::Pid::from_raw(d.pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    d.ctl_ok(&["reexec"]);
    d.ctl_ok(&[
        "append",
        "--domain",
        "t",
        "--log",
        "t.log",
        "after the re-exec",
    ]);
    let pid = nix::unistd::Pid::from_raw(d.pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    wait_for(T, "logd to stop", || {
        nix::sys::signal::kill(pid, None).is_err().then_some(())
    });
    // strace writes its last lines as its tracees end.
    std::thread::sleep(Duration::from_millis(300));

    let log = std::fs::read_to_string(&trace).unwrap();
    let used = traced_calls(&log);
    for must in ["execve", "memfd_create", "sendmsg", "accept4", "signalfd4"] {
        assert!(
            used.contains(must),
            "strace saw no {must}: the workload did not run? {used:?}"
        );
    }
    let allowed = allowed_by_unit();
    let refused: Vec<_> = used.difference(&allowed).collect();
    assert!(
        refused.is_empty(),
        "logd makes system calls the unit's SystemCallFilter= refuses: {refused:?}"
    );
}
