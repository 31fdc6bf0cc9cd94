//! `reexec_log_gap_N` and `virtlogd_reexec_log_gap_N`: how long a steadily written log stops
//! growing when its daemon re-execs on SIGUSR1, measured the same way for logd and for
//! libvirt's virtlogd, from outside either: by the log file's size.
//!
//! The method, one code for both daemons ([`reexec_log_gap`]): N domains open (N − 1 idle, one
//! written), a writer thread puts a numbered 100-byte line into the written domain's pipe every
//! [`LINE_PERIOD`], and a [`SizeSampler`] stats its log by path every
//! [`SAMPLE_PERIOD`](super::sampler::SAMPLE_PERIOD). Then, [`SIGNALS_PER_RUN`] times, the daemon
//! gets a real `kill(pid, SIGUSR1)`; the window opens [`LEAD`] before it and closes once the
//! daemon serves again (a fresh connection answers the log's position after the exec) and the
//! log has grown steadily for [`STEADY_FOR`]. The longest time the file did not grow within the
//! window is the signal's gap. Afterwards the log must hold every line written, once and in
//! order.
//!
//! What a daemon must offer the method is a [`GapSubject`]: logd's is here, virtlogd's in
//! `crate::virtlogd::log_gap`.

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use logd::rotate::RotateConfig;
use logd_kit::Daemon;
use logd_protocol::client::Client;
use logd_protocol::{DomainId, OpenFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::sampler::{SizeSampler, Window};
use super::steady::SteadyWriter;
use crate::bench::Bench;
use crate::host::others_cpu_seconds_pid;
use crate::idle::IdleDomains;
use crate::report::{median, note};
use crate::{virtlogd, CALL_TIMEOUT, MIB};

/// The writer's line: 100 bytes, numbered, ending in '\n' …
pub(crate) const LINE_LEN: usize = 100;
/// … one every 0.2 ms (500 kB/s: a 64 KiB pipe holds 131 ms of it).
const LINE_PERIOD: Duration = Duration::from_micros(200);
/// Signals in each run, each after a quiet machine (at least half a second apart).
const SIGNALS_PER_RUN: usize = 3;
/// The window opens this long before the signal.
const LEAD: Duration = Duration::from_millis(20);
/// The window closes once the log has grown steadily this long after the daemon serves again …
const STEADY_FOR: Duration = Duration::from_millis(500);
/// … where steadily means without a pause of this or more.
const NOT_STEADY: Duration = Duration::from_millis(20);
/// How long the exec, the first answer after it, and steady growth may each take.
const EXEC_TIMEOUT: Duration = Duration::from_secs(60);
const STEADY_TIMEOUT: Duration = Duration::from_secs(20);
/// Both daemons rotate at 256 MiB here: the log must not rotate during a run (a run writes a few
/// MB), or a sample could see it shrink.
pub(crate) const GAP_ROTATE: RotateConfig = RotateConfig {
    max_size: 256 * MIB,
    max_backups: 3,
};
/// With --quick, virtlogd's scenarios for more domains than this are skipped (its 10,000 opens
/// take about 20 s).
const QUICK_VIRTLOGD_MAX: usize = 1000;

/// The daemon a log-gap scenario measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GapDaemon {
    /// logd, its domains opened on its own socket.
    Logd,
    /// libvirt's virtlogd, its domains opened through its RPC.
    Virtlogd,
}

impl GapDaemon {
    /// The scenario's name, which its figure's starts with.
    pub(crate) fn scenario(self, count: usize) -> String {
        match self {
            GapDaemon::Logd => format!("reexec_log_gap_{count}"),
            GapDaemon::Virtlogd => format!("virtlogd_reexec_log_gap_{count}"),
        }
    }

    /// A fresh daemon (rotating as [`GAP_ROTATE`]) with `count` domains open, the last one to be
    /// written: the daemon, and that domain's pipe.
    fn start(self, b: &Bench, name: &str, count: usize) -> Result<(Box<dyn GapSubject>, OwnedFd)> {
        match self {
            GapDaemon::Logd => {
                let (subject, pipe) = LogdSubject::start(b, name, count)?;
                Ok((Box::new(subject), pipe))
            }
            GapDaemon::Virtlogd => virtlogd::log_gap::start(b, name, count),
        }
    }
}

/// A daemon under the method, its domains open: what the method asks of it. Dropping it kills
/// the daemon.
pub(crate) trait GapSubject {
    /// `logd` or `virtlogd`, for the notes.
    fn who(&self) -> &'static str;
    /// The serving process, which SIGUSR1 goes to.
    fn pid(&self) -> u32;
    /// The written domain's log file.
    fn log(&self) -> &Path;
    /// On a fresh connection, the written log's end as the daemon reports it: it answers once
    /// it serves, and once it has drained the pipe into the file.
    fn position(&mut self) -> Result<u64>;
    /// A context line for a failed step, with what the daemon said last.
    fn failed(&self, what: &str) -> String;
}

/// logd with its domains open through its own protocol, as `reexec_blackout_N` opens them.
struct LogdSubject {
    daemon: Daemon,
    /// The connection the domains were opened on, kept for the scenario's length.
    _client: Client,
    _idle: IdleDomains,
    log: PathBuf,
}

/// The written domain's log, under logd's log root.
const LOGD_LOG: &str = "bench/writer.log";

impl LogdSubject {
    fn start(b: &Bench, name: &str, count: usize) -> Result<(LogdSubject, OwnedFd)> {
        let daemon = b.daemon_rotating(name, GAP_ROTATE)?;
        let mut client = daemon.try_client(CALL_TIMEOUT)?;
        let idle = IdleDomains::open(&mut client, count.saturating_sub(1))
            .with_context(|| daemon.failed(name))?;
        let (_, pipe) = client
            .open_log(
                DomainId::from_name("qemu", "bench-writer"),
                LOGD_LOG,
                OpenFlags::default(),
            )
            .with_context(|| daemon.failed(name))?;
        let log = daemon.log(LOGD_LOG);
        let subject = LogdSubject {
            daemon,
            _client: client,
            _idle: idle,
            log,
        };
        Ok((subject, pipe))
    }
}

impl GapSubject for LogdSubject {
    fn who(&self) -> &'static str {
        "logd"
    }

    fn pid(&self) -> u32 {
        self.daemon.pid() as u32
    }

    fn log(&self) -> &Path {
        &self.log
    }

    fn position(&mut self) -> Result<u64> {
        let sock = UnixStream::connect(&self.daemon.socket).context("connecting to logd")?;
        sock.set_read_timeout(Some(CALL_TIMEOUT))
            .and_then(|()| sock.set_write_timeout(Some(CALL_TIMEOUT)))
            .context("setting the connection's timeouts")?;
        let mut client = Client::handshake(sock).context("the handshake")?;
        Ok(client.position(LOGD_LOG)?.offset)
    }

    fn failed(&self, what: &str) -> String {
        self.daemon.failed(what)
    }
}

/// One signal's measurement.
struct SignalGap {
    window: Window,
    sent: Instant,
    /// When the exec was seen, and the first answer after it.
    exec_seen: Instant,
    serving: Instant,
    /// Whether the log grew steadily before the window closed (else it closed at the timeout).
    steady: bool,
    /// CPUs other work kept busy during the window.
    others_busy: f64,
}

/// `reexec_log_gap_N` (logd) or `virtlogd_reexec_log_gap_N` (virtlogd): the method above, with
/// `count` domains (fewer if the fd limit says so), [`SIGNALS_PER_RUN`] signals per run. Figure:
/// `NAME_ms`, the median gap over every signal of every run. A log that does not hold every
/// line written fails logd's scenario; for virtlogd, whose behaviour is what is measured, a
/// note reports it.
pub(crate) fn reexec_log_gap(b: &mut Bench, daemon: GapDaemon, count: usize) -> Result<()> {
    let name = daemon.scenario(count);
    if daemon == GapDaemon::Virtlogd {
        if !virtlogd::log_gap::available(&name) {
            return Ok(());
        }
        if b.quick && count > QUICK_VIRTLOGD_MAX {
            note(format!(
                "{name}: skipped with --quick (virtlogd's {count} opens take about 20 s here)"
            ));
            return Ok(());
        }
    }
    if !exec_visible() {
        note(format!(
            "{name}: skipped: the bench tells a re-exec by the new stack's address in \
             /proc/PID/stat, and kernel.randomize_va_space is 0"
        ));
        return Ok(());
    }
    let n = b.domains_that_fit(count, &name);
    let (mut gaps, mut intervals) = (Vec::new(), Vec::new());
    let mut worst_interval = Duration::ZERO;
    for run in 1..=b.runs {
        let (mut subject, pipe) = daemon.start(b, &name, n)?;
        let who = subject.who();
        let sampler = SizeSampler::start(subject.log(), NOT_STEADY)?;
        let writer = SteadyWriter::start(pipe, LINE_PERIOD, Box::new(gap_line));
        for i in 1..=SIGNALS_PER_RUN {
            // At least half a second of steady writing before each signal.
            b.wait_for_quiet_pid(Some(subject.pid()))?;
            writer.reset_longest();
            let what = format!("{name} run {run}: signal {i}");
            let s = one_signal(&mut *subject, &sampler).with_context(|| subject.failed(&what))?;
            let w = &s.window;
            let since = |t: Instant| (t - s.sent).as_secs_f64() * 1000.0;
            let signed_since = |t: Instant| match t.checked_duration_since(s.sent) {
                Some(d) => d.as_secs_f64() * 1000.0,
                None => -(s.sent - t).as_secs_f64() * 1000.0,
            };
            note(format!(
                "{what}/{SIGNALS_PER_RUN}: the log stood still {:.1} ms (from {:+.1} ms after \
                 the signal); exec seen at {:.1} ms, {who} answered at {:.1} ms; window {:.0} ms, \
                 {} samples {:.0} µs apart on average, {:.0} µs at most; the writer's longest \
                 write {:.1} ms, its longest time from one write to the next {:.1} ms; other \
                 work kept {:.2} CPUs busy{}",
                w.longest_gap.as_secs_f64() * 1000.0,
                signed_since(w.gap_start),
                since(s.exec_seen),
                since(s.serving),
                (Instant::now() - w.opened).as_secs_f64() * 1000.0,
                w.samples,
                w.mean_interval().as_secs_f64() * 1e6,
                w.longest_interval.as_secs_f64() * 1e6,
                writer.longest().as_secs_f64() * 1000.0,
                writer.longest_pause().as_secs_f64() * 1000.0,
                s.others_busy,
                if s.steady {
                    String::new()
                } else {
                    format!(
                        "; the log did not grow steadily for {} ms within {} s: the window \
                         closed then",
                        STEADY_FOR.as_millis(),
                        STEADY_TIMEOUT.as_secs()
                    )
                }
            ));
            gaps.push(w.longest_gap.as_secs_f64() * 1000.0);
            intervals.push(w.mean_interval().as_secs_f64() * 1e6);
            worst_interval = worst_interval.max(w.longest_interval);
        }
        let written = writer.stop()?;
        sampler.stop()?;
        // The pipe is still open: virtlogd closes a log whose pipe's writer is gone.
        let end = subject
            .position()
            .with_context(|| subject.failed(&format!("{name}: the position at the end")))?;
        let log = subject.log().to_owned();
        let got = fs::read(&log).with_context(|| format!("reading {}", log.display()))?;
        drop(written.pipe);
        let mut problems = Vec::new();
        if let Some(why) = check_lines(&got, written.records) {
            problems.push(why);
        }
        if end != got.len() as u64 {
            problems.push(format!(
                "{who} places the log's end at {end}, the file has {} bytes",
                got.len()
            ));
        }
        match (problems.is_empty(), daemon) {
            (true, _) => note(format!(
                "{name} run {run}/{}: the log holds the {} lines written ({} bytes), in order",
                b.runs, written.records, written.bytes
            )),
            (false, GapDaemon::Logd) => bail!("{name} run {run}: {}", problems.join("; ")),
            (false, GapDaemon::Virtlogd) => note(format!(
                "{name} run {run}/{}: virtlogd did not keep every line: {}",
                b.runs,
                problems.join("; ")
            )),
        }
    }
    note(format!(
        "{name}: the sampler stat'ed the log every {:.0} µs (median of the windows' means), at \
         worst {:.0} µs apart: a gap is measured to within one interval",
        median(&intervals),
        worst_interval.as_secs_f64() * 1e6
    ));
    b.figure(&format!("{name}_ms"), median(&gaps), "ms");
    Ok(())
}

/// One SIGUSR1, measured: opens the window, sends the signal [`LEAD`] later, waits for the exec,
/// for an answer and for steady growth, and closes the window.
fn one_signal(subject: &mut dyn GapSubject, sampler: &SizeSampler) -> Result<SignalGap> {
    let pid = subject.pid();
    let others0 = others_cpu_seconds_pid(Some(pid))?;
    sampler.open_window();
    let opened = Instant::now();
    std::thread::sleep(LEAD);
    let before = stack_start(pid)?;
    let sent = Instant::now();
    kill(Pid::from_raw(pid as i32), Signal::SIGUSR1).context("sending SIGUSR1")?;
    // The exec: the same pid (both daemons keep it), a new stack.
    loop {
        if subject.pid() != pid || stack_start(pid).is_ok_and(|s| s != before) {
            break;
        }
        ensure!(
            sent.elapsed() < EXEC_TIMEOUT,
            "no exec within {} s of SIGUSR1",
            EXEC_TIMEOUT.as_secs()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let exec_seen = Instant::now();
    subject
        .position()
        .context("the first answer after the exec")?;
    let serving = Instant::now();
    let steady = loop {
        if sampler.steady(serving, STEADY_FOR) {
            break true;
        }
        if serving.elapsed() > STEADY_TIMEOUT {
            break false;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let window = sampler.close_window()?;
    // Per-process CPU times and /proc/stat's ticks disagree by a few ticks: no less than 0.
    let others_busy = ((others_cpu_seconds_pid(Some(subject.pid()))? - others0)
        / opened.elapsed().as_secs_f64())
    .max(0.0);
    Ok(SignalGap {
        window,
        sent,
        exec_seen,
        serving,
        steady,
        others_busy,
    })
}

/// Whether an exec shows in `/proc/PID/stat`'s stack address: only with ASLR.
fn exec_visible() -> bool {
    fs::read_to_string("/proc/sys/kernel/randomize_va_space").map_or(true, |v| v.trim() != "0")
}

/// The address of the stack's start (`startstack`, field 28 of `/proc/PID/stat`): a new one at
/// each exec, under ASLR.
fn stack_start(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the parenthesised command name start at field 3.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(25))
        .and_then(|f| f.parse().ok())
        .with_context(|| format!("unexpected format of {path}"))
}

/// What follows the number in each of the writer's lines.
const LINE_MARK: &[u8] = b" logd-bench reexec_log_gap ";

/// The writer's `i`-th line (from 0): its number (12 digits), [`LINE_MARK`], padding, '\n';
/// [`LINE_LEN`] bytes.
fn gap_line(i: u64, buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.extend_from_slice(format!("{i:012}").as_bytes());
    buf.extend_from_slice(LINE_MARK);
    buf.resize(start + LINE_LEN - 1, b'.');
    buf.push(b'\n');
}

/// The numbers of the lines (whole or not) that start in `log` from `from` on, in order.
fn line_numbers(log: &[u8], from: usize) -> impl Iterator<Item = u64> + '_ {
    let mut at = from;
    std::iter::from_fn(move || loop {
        let p = at
            + log
                .get(at..)?
                .windows(LINE_MARK.len())
                .position(|w| w == LINE_MARK)?;
        at = p + LINE_MARK.len();
        let digits = log.get(p.checked_sub(12)?..p)?;
        if let Some(n) = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
        {
            return Some(n);
        }
    })
}

/// Why `log` is not exactly lines 0 to `records` − 1 of [`gap_line`], or None if it is.
fn check_lines(log: &[u8], records: u64) -> Option<String> {
    let wrote = records * LINE_LEN as u64;
    let mut line = Vec::with_capacity(LINE_LEN);
    for i in 0..records {
        line.clear();
        gap_line(i, &mut line);
        let at = i as usize * LINE_LEN;
        let got = log.get(at..).unwrap_or_default();
        if got.starts_with(&line) {
            continue;
        }
        let differ = at + got.iter().zip(&line).take_while(|(a, b)| a == b).count();
        let mut why = format!(
            "the writer wrote {records} lines ({wrote} bytes), the log holds {} bytes; they \
             differ from byte {differ} (line {i})",
            log.len()
        );
        // The first line after the difference that is not (the start of) line i.
        match line_numbers(log, at).find(|&n| n != i) {
            Some(n) if n > i => why.push_str(&format!(
                ", where line {n} follows: {} lines ({} bytes) missing",
                n - i,
                (n - i) * LINE_LEN as u64
            )),
            Some(n) => why.push_str(&format!(", where line {n} follows again")),
            None if log.len() <= differ => why.push_str(": the log ends there"),
            None => {}
        }
        return Some(why);
    }
    (log.len() as u64 > wrote).then(|| {
        format!(
            "the log holds {} bytes more than the {records} lines written",
            log.len() as u64 - wrote
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(range: std::ops::Range<u64>) -> Vec<u8> {
        let mut v = Vec::new();
        for i in range {
            gap_line(i, &mut v);
        }
        v
    }

    #[test]
    fn a_line_is_100_bytes_numbered_and_ends_in_a_newline() {
        let v = lines(0..2);
        assert_eq!(v.len(), 2 * LINE_LEN);
        assert!(v.starts_with(b"000000000000 logd-bench"));
        assert_eq!(v[LINE_LEN - 1], b'\n');
        assert_eq!(line_numbers(&v, 0).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(v.iter().filter(|&&c| c == b'\n').count(), 2);
    }

    #[test]
    fn the_check_passes_only_every_line_once_in_order() {
        assert_eq!(check_lines(&lines(0..50), 50), None);
        assert_eq!(check_lines(b"", 0), None);

        let mut lost = lines(0..10);
        lost.extend(lines(14..50));
        let why = check_lines(&lost, 50).unwrap();
        assert!(why.contains("line 10"), "{why}");
        assert!(why.contains("4 lines (400 bytes) missing"), "{why}");

        // Part of a line lost.
        let mut partial = lines(0..10);
        partial.extend(&lines(10..11)[..40]);
        partial.extend(lines(13..50));
        let why = check_lines(&partial, 50).unwrap();
        assert!(why.contains("differ from byte 1040 (line 10)"), "{why}");
        assert!(why.contains("line 13 follows: 3 lines"), "{why}");

        let why = check_lines(&lines(0..49), 50).unwrap();
        assert!(why.contains("the log ends there"), "{why}");

        let mut doubled = lines(0..10);
        doubled.extend(lines(8..50));
        let why = check_lines(&doubled, 50).unwrap();
        assert!(why.contains("line 8 follows again"), "{why}");

        let mut more = lines(0..50);
        more.extend(b"x\n");
        let why = check_lines(&more, 50).unwrap();
        assert!(why.contains("2 bytes more"), "{why}");
    }
}
