//! The kit that logd's integration tests and `logd-bench` share: a real `logd` in a temporary
//! directory, the real `logdctl`, bounded waits, and readings of a process from /proc.
//!
//! It knows no binary by itself ([`Bins`]): the integration tests pass
//! `env!("CARGO_BIN_EXE_logd")`, the bench the `logd` beside its own executable.
//!
//! Every daemon gets its own directory (socket, log root, config, persisted consoles file, its
//! stderr in `logd.stderr`), and is killed when its [`Daemon`] is dropped, so tests run in
//! parallel. No daemon of this kit ever uses the host's default files: a root logd's persisted
//! consoles file is `/var/lib/logd/consoles.toml`, and tests run as root.
//!
//! It also generates the binaries' manual pages and shell completions from their clap
//! definitions ([`man`], with the Markdown subset of [`roff`]), for the binaries' unit tests.
//!
//! Two kinds of helpers: those that return a `Result` (the bench reports a failed step and goes
//! on), and those that panic with what went wrong (a test fails). The panicking ones are the
//! tests' shorthands over the others.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use logd_protocol::client::Client;

pub use tempfile::TempDir;

pub mod man;
pub mod roff;

/// Whether a tool a test needs is on the PATH. When it is absent, the test prints
/// "skipped: TOOL not found" and passes, unless LOGD_REQUIRE_QEMU=1 (CI), where it fails.
/// (The integration harness has its own, the same.)
pub fn require_tool(tool: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("LOGD_REQUIRE_QEMU").as_deref() == Ok("1") {
            panic!("{tool} not found, and LOGD_REQUIRE_QEMU=1");
        }
        eprintln!("skipped: {tool} not found");
    }
    found
}

/// Where the binaries under test are.
#[derive(Clone, Debug)]
pub struct Bins {
    pub logd: PathBuf,
    pub logdctl: PathBuf,
}

impl Bins {
    /// `logd` and `logdctl` in the directory of `exe` (a binary built beside them).
    pub fn beside(exe: &Path) -> Bins {
        Bins {
            logd: exe.with_file_name("logd"),
            logdctl: exe.with_file_name("logdctl"),
        }
    }
}

/// A running daemon in its own temporary directory.
pub struct Daemon {
    pub dir: TempDir,
    pub socket: PathBuf,
    pub log_root: PathBuf,
    /// The virtlogd socket, when it serves one (`Opts::virtlogd_socket`).
    pub virtlogd_socket: Option<PathBuf>,
    pub child: Option<Child>,
    /// The uid the daemon runs as, when not this process's (`Opts::as_uid`).
    pub server_uid: Option<u32>,
    pub bins: Bins,
}

/// How to start a daemon.
#[derive(Default)]
pub struct Opts {
    /// The config file's text.
    pub config: String,
    /// Run the daemon under `setpriv` as this uid/gid.
    pub as_uid: Option<u32>,
    /// Extra environment for the daemon (e.g. RUST_LOG).
    pub env: Vec<(String, String)>,
    /// Variables taken out of the daemon's environment (before `env` is added).
    pub env_remove: Vec<String>,
    /// Run this binary instead of `Bins::logd` (a copy, for re-exec tests).
    pub binary: Option<PathBuf>,
    /// Without `-v`: the daemon logs at its default level (the bench).
    pub quiet: bool,
    /// Also serve the virtlogd protocol, on `virtlogd-sock` in the daemon's directory.
    pub virtlogd_socket: bool,
    /// Where the daemon's directory is made (default: the system's temporary directory).
    pub parent: Option<PathBuf>,
    /// The start of the directory's name (default `logd-e2e-`).
    pub prefix: Option<String>,
    /// The persisted consoles file (`--consoles-file`) [default: `consoles.toml` in the
    /// daemon's directory, [`Daemon::consoles_file`]].
    pub consoles_file: Option<PathBuf>,
}

/// A directory under `parent` whose name starts with `prefix`, removed with everything in it
/// when dropped.
pub fn temp_dir(parent: &Path, prefix: &str) -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(parent)
        .with_context(|| format!("creating a directory in {}", parent.display()))
}

impl Daemon {
    /// Starts `logd` (`bins.logd`, or `opts.binary`) in a new directory and waits (20 s at
    /// most) until it listens.
    pub fn spawn(bins: &Bins, opts: Opts) -> Result<Daemon> {
        let prefix = opts.prefix.as_deref().unwrap_or("logd-e2e-");
        let parent = opts.parent.clone().unwrap_or_else(std::env::temp_dir);
        let dir = temp_dir(&parent, prefix)?;
        let socket = dir.path().join("logd.sock");
        let log_root = dir.path().join("logs");
        std::fs::create_dir(&log_root).context("creating the log root")?;
        let config = dir.path().join("logd.toml");
        std::fs::write(&config, &opts.config).context("writing logd's config")?;
        if let Some(uid) = opts.as_uid {
            chown_r(dir.path(), uid)?;
        }
        let virtlogd_socket = opts
            .virtlogd_socket
            .then(|| dir.path().join("virtlogd-sock"));
        let mut d = Daemon {
            dir,
            socket,
            log_root,
            virtlogd_socket,
            child: None,
            server_uid: opts.as_uid,
            bins: bins.clone(),
        };
        d.start_process(&opts, &config)?;
        Ok(d)
    }

    /// The config file the daemon reads (`--config`); a test may rewrite it, then send SIGHUP
    /// or [`Daemon::start_again`].
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("logd.toml")
    }

    /// The persisted consoles file a daemon of this kit uses unless `Opts::consoles_file` says
    /// otherwise: in its directory, never the host's.
    pub fn consoles_file(&self) -> PathBuf {
        self.dir.path().join("consoles.toml")
    }

    /// Starts logd again in the same directory, on the same socket, log root and config file,
    /// once the previous process is gone (a stop, or a SIGKILL: it is killed and reaped first if
    /// it is still this kit's child). Its stderr goes on in the same file.
    pub fn start_again(&mut self, opts: Opts) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let config = self.config_path();
        self.start_process(&opts, &config)
    }

    fn start_process(&mut self, opts: &Opts, config: &Path) -> Result<()> {
        let logd = opts.binary.as_ref().unwrap_or(&self.bins.logd);
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("logd.stderr"))
            .context("creating logd's stderr file")?;
        let mut cmd = match opts.as_uid {
            Some(uid) => {
                let mut c = Command::new("setpriv");
                c.args([
                    format!("--reuid={uid}"),
                    format!("--regid={uid}"),
                    "--clear-groups".into(),
                    logd.display().to_string(),
                ]);
                c
            }
            None => Command::new(logd),
        };
        if let Some(path) = &self.virtlogd_socket {
            cmd.arg("--virtlogd-socket").arg(path);
        }
        cmd.arg("--config")
            .arg(config)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--log-root")
            .arg(&self.log_root)
            .arg("--consoles-file")
            .arg(
                opts.consoles_file
                    .clone()
                    .unwrap_or_else(|| self.consoles_file()),
            );
        if !opts.quiet {
            cmd.arg("-v");
        }
        for k in &opts.env_remove {
            cmd.env_remove(k);
        }
        cmd.envs(opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        self.child = Some(
            cmd.spawn()
                .with_context(|| format!("starting {}", logd.display()))?,
        );
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(&self.socket).is_err() {
            let child = self.child.as_mut().expect("started");
            if let Some(st) = child.try_wait().context("waiting for logd")? {
                bail!("logd exited at start ({st}): {}", self.stderr());
            }
            if Instant::now() > deadline {
                bail!("logd did not listen within 20 s: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// What the daemon logged so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logd.stderr")).unwrap_or_default()
    }

    /// The last lines logd wrote to stderr, to explain a failure.
    pub fn stderr_tail(&self) -> String {
        last_lines(&self.dir.path().join("logd.stderr"), 5)
    }

    /// A context line for a failed step: the step, and what logd said last.
    pub fn failed(&self, what: &str) -> String {
        format!("{what} (logd's last words: {:?})", self.stderr_tail())
    }

    /// The serving process: the pid in `<socket>.lock` (it changes at each re-exec), or the
    /// process this kit started.
    pub fn pid(&self) -> i32 {
        let lock = PathBuf::from(format!("{}.lock", self.socket.display()));
        std::fs::read_to_string(lock)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| self.child.as_ref().map_or(0, |c| c.id() as i32))
    }

    /// Whether the serving process is not the one this kit started (a re-exec happened).
    fn serving_pid_is_not_our_child(&self, pid: i32) -> bool {
        self.child.as_ref().map(|c| c.id() as i32) != Some(pid)
    }

    /// Sends a signal to the serving process.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// A `logdctl` command aimed at this daemon.
    pub fn ctl(&self) -> Command {
        let mut c = Command::new(&self.bins.logdctl);
        c.arg("--socket").arg(&self.socket);
        c.env_remove("LOGD_SOCKET").env_remove("LOGD_AUTOSTART");
        c
    }

    /// Runs `logdctl ARGS` and returns its output, bounded in time.
    pub fn ctl_run(&self, args: &[&str]) -> Output {
        run_bounded(self.ctl().args(args), Duration::from_secs(60))
    }

    /// Runs `logdctl ARGS`, asserting success; returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.ctl_run(args);
        assert!(
            out.status.success(),
            "logdctl {args:?} failed ({}): {}\n--- logd:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.stderr()
        );
        out.stdout
    }

    /// A protocol client connected to this daemon, whose calls time out after `timeout`.
    pub fn try_client(&self, timeout: Duration) -> Result<Client> {
        let c = Client::connect_trusting(&self.socket, self.server_uid)
            .context("connecting to logd")?;
        c.set_timeout(Some(timeout))
            .context("setting the client's timeout")?;
        Ok(c)
    }

    /// A protocol client connected to this daemon (calls time out after 30 s).
    pub fn client(&self) -> Client {
        self.try_client(Duration::from_secs(30)).expect("connect")
    }

    /// Opens a log through the protocol; returns the write end of its pipe.
    pub fn open_pipe(&self, domain: &str, log: &str) -> std::fs::File {
        let (_, fd) = self
            .client()
            .open_log(
                logd_protocol::DomainId::from_name("qemu", domain),
                log,
                logd_protocol::OpenFlags::default(),
            )
            .expect("open the log");
        std::fs::File::from(fd)
    }

    /// Path of a log under the root.
    pub fn log(&self, rel: &str) -> PathBuf {
        self.log_root.join(rel)
    }

    /// Sends a signal and waits (bounded) for the daemon to exit; returns its exit code.
    pub fn signal_and_wait(&mut self, sig: nix::sys::signal::Signal) -> Option<i32> {
        let pid = self.pid();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
        if self.serving_pid_is_not_our_child(pid) {
            // A process of a re-exec: not our child, so no exit code; wait for it to go.
            wait_for(Duration::from_secs(30), "logd to exit", || {
                (!process_alive(pid)).then_some(())
            });
            return None;
        }
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return st.code();
            }
            assert!(Instant::now() < deadline, "logd did not exit after {sig}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Checks the daemon is still running.
    pub fn assert_alive(&mut self) {
        let pid = self.pid();
        if self.serving_pid_is_not_our_child(pid) {
            assert!(
                process_alive(pid),
                "logd (pid {pid}) died:\n{}",
                self.stderr()
            );
            return;
        }
        let st = self.child.as_mut().unwrap().try_wait().unwrap();
        assert!(st.is_none(), "logd died: {:?}\n{}", st, self.stderr());
    }

    /// User plus system CPU time of every thread of the daemon so far.
    pub fn cpu_seconds(&self) -> Result<f64> {
        stat_cpu_seconds(&format!("/proc/{}/stat", self.pid()))
    }

    pub fn rss_kib(&self) -> Result<u64> {
        status_kib(self.pid(), "VmRSS:")
    }

    /// The peak VmRSS since the daemon started.
    pub fn peak_rss_kib(&self) -> Result<u64> {
        status_kib(self.pid(), "VmHWM:")
    }

    /// See [`context_switches`].
    pub fn context_switches(&self) -> Result<u64> {
        context_switches(self.pid())
    }

    pub fn fd_count(&self) -> Result<usize> {
        fd_count(self.pid())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // After a re-exec the serving process is not our child.
        let pid = self.pid();
        if pid > 0 && self.serving_pid_is_not_our_child(pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- logd stderr:\n{}", self.stderr());
        }
    }
}

fn chown_r(dir: &Path, uid: u32) -> Result<()> {
    let st = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{uid}"))
        .arg(dir)
        .status()
        .context("running chown")?;
    if !st.success() {
        bail!("chown -R {uid} {} failed ({st})", dir.display());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Commands and waits

/// Runs a command with a deadline; kills it if it overruns (and fails the test).
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        out.read_to_end(&mut v).ok();
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        err.read_to_end(&mut v).ok();
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("command {cmd:?} ran over {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// Polls `f` every `every` until it returns Some, or gives up (None) after `limit`.
pub fn poll<T>(limit: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Polls `f` every 20 ms until it returns Some, or panics after `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    poll(limit, Duration::from_millis(20), f)
        .unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

/// A deterministic, non-repeating byte stream (numbered lines), so any suffix can be checked.
pub fn numbered_lines(total: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(total + 64);
    let mut i = 0u64;
    while v.len() < total {
        v.extend_from_slice(
            format!("{i:010} the quick brown fox jumps over the lazy dog\n").as_bytes(),
        );
        i += 1;
    }
    v.truncate(total);
    v
}

/// The last `n` lines of a text file (a daemon's stderr, to explain a failure); empty if it
/// cannot be read.
pub fn last_lines(path: &Path, n: usize) -> String {
    let all = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = all.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A log's files, oldest first: `path.{max_backups-1}` … `path.0`, then `path`.
pub fn rotated_files(path: &Path, max_backups: u32) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (0..max_backups)
        .rev()
        .map(|i| PathBuf::from(format!("{}.{i}", path.display())))
        .collect();
    files.push(path.to_owned());
    files
}

// ---------------------------------------------------------------------------------------------
// A process, from /proc

/// A process's state letter (`R`, `S`, `T`, `Z`, …) from `/proc/PID/stat`; None if it is gone.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the command name in parentheses.
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
}

/// Whether a process runs (a zombie does not).
pub fn process_alive(pid: i32) -> bool {
    proc_state(pid).is_some_and(|s| s != 'Z' && s != 'X')
}

/// Whether signal `signo` is pending for process `pid` (sent, not yet taken by any of its
/// threads: `ShdPnd` and `SigPnd` of `/proc/PID/status`); None if the process is gone. A signal
/// the process ignores is never pending: the kernel discards it when it is sent.
pub fn signal_pending(pid: i32, signo: i32) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let bit = 1u64.checked_shl(u32::try_from(signo - 1).ok()?)?;
    let pending = ["ShdPnd:", "SigPnd:"].iter().any(|key| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & bit != 0)
    });
    Some(pending)
}

/// How long process `pid` has existed, to the clock tick (`starttime` of `/proc/PID/stat`
/// against `/proc/uptime`).
pub fn process_age(pid: i32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // starttime is field 22; fields after the parenthesised command name start at field 3.
    let start_ticks: u64 = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(19))
        .and_then(|f| f.parse().ok())
        .with_context(|| format!("unexpected format of {path}"))?;
    let uptime = std::fs::read_to_string("/proc/uptime").context("reading /proc/uptime")?;
    let up: f64 = uptime
        .split_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .context("unexpected format of /proc/uptime")?;
    let age = up - start_ticks as f64 / clock_ticks()?;
    Ok(Duration::from_secs_f64(age.max(0.0)))
}

/// User plus system CPU seconds from a `/proc/.../stat` file.
pub fn stat_cpu_seconds(path: &str) -> Result<f64> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    // Fields after the parenthesised command name start at field 3 (state); utime and stime
    // are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("unexpected format of {path}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("unexpected format of {path}"))
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(total as f64 / clock_ticks()?)
}

/// Clock ticks per second: the unit of /proc's CPU times.
pub fn clock_ticks() -> Result<f64> {
    use nix::unistd::{sysconf, SysconfVar};
    match sysconf(SysconfVar::CLK_TCK).context("sysconf(CLK_TCK)")? {
        Some(t) if t > 0 => Ok(t as f64),
        _ => bail!("sysconf(CLK_TCK) gave no value"),
    }
}

/// A `Key:   123 kB` line of `/proc/PID/status` (`key` with its colon, e.g. `"VmRSS:"`).
pub fn status_kib(pid: impl std::fmt::Display, key: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    kib_field(&status, key).with_context(|| format!("no {key} in {path}"))
}

/// The number of a `Key:   123 kB` line.
pub fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The fds process `pid` holds.
pub fn fd_count(pid: impl std::fmt::Display) -> Result<usize> {
    let path = format!("/proc/{pid}/fd");
    Ok(std::fs::read_dir(&path)
        .with_context(|| format!("listing {path}"))?
        .count())
}

/// Context switches of every thread of process `pid` so far (voluntary and not): a process
/// that sleeps has no CPU to show, but a timer that wakes it shows here. Threads that end
/// while they are counted are left out.
pub fn context_switches(pid: impl std::fmt::Display) -> Result<u64> {
    let dir = format!("/proc/{pid}/task");
    let tasks = std::fs::read_dir(&dir).with_context(|| format!("listing {dir}"))?;
    Ok(tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .map(|status| {
            ["voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"]
                .iter()
                .filter_map(|key| kib_field(&status, key))
                .sum::<u64>()
        })
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::{SigSet, Signal};

    #[test]
    fn a_blocked_signal_is_pending_until_taken() {
        // Sent to this thread alone (raise), blocked, then taken with sigwait: nothing else of
        // the test process sees it.
        let tid = nix::unistd::gettid().as_raw();
        let mut usr2 = SigSet::empty();
        usr2.add(Signal::SIGUSR2);
        usr2.thread_block().unwrap();
        assert_eq!(signal_pending(tid, Signal::SIGUSR2 as i32), Some(false));
        nix::sys::signal::raise(Signal::SIGUSR2).unwrap();
        assert_eq!(signal_pending(tid, Signal::SIGUSR2 as i32), Some(true));
        assert_eq!(signal_pending(tid, Signal::SIGUSR1 as i32), Some(false));
        assert_eq!(usr2.wait().unwrap(), Signal::SIGUSR2);
        assert_eq!(signal_pending(tid, Signal::SIGUSR2 as i32), Some(false));
        usr2.thread_unblock().unwrap();
    }

    #[test]
    fn a_process_is_as_old_as_it_has_run() {
        let me = std::process::id() as i32;
        let age = process_age(me).unwrap();
        assert!(age < Duration::from_secs(3600), "{age:?}");
        assert!(process_age(me).unwrap() >= age);
        assert!(process_age(i32::MAX).is_err());
    }
}
