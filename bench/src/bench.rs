//! The bench's state: its options, the fd limit, the figures so far, and how a run is measured
//! (on a quiet machine, and again when other work skewed it). Every scenario is given the
//! [`Bench`] and starts its daemons through it ([`Bench::daemon`]: a fresh `logd` with the
//! bench's config in a temporary directory).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use logd::rotate::RotateConfig;
use logd_kit::{Bins, Daemon, Opts};

use crate::host::{others_cpu_seconds_pid, raise_fd_limit};
use crate::report::{median, note};
use crate::transfer::Transfer;
use crate::{pick_scenarios, Args, MIB, ROTATE};

/// Fds logd holds per open domain with one log: the pipe's read end and the log file.
const DAEMON_FDS_PER_DOMAIN: u64 = 2;
/// Fds logd and this process use besides the domains (sockets, epoll, lock, stdio, …).
const FD_RESERVE: u64 = 64;

/// Before a measurement, wait until other work keeps fewer CPUs than this busy …
const QUIET_CPUS: f64 = 0.25;
/// … over this long …
const QUIET_SAMPLE: Duration = Duration::from_millis(500);
/// Other work (CPUs busy) above which a transfer's run is taken again.
const SKEWED: f64 = 0.2;
/// How many times a skewed run is taken again.
const SKEWED_RETRIES: u32 = 2;
/// … but no longer than this (resp. with --quick).
const QUIET_WAIT: Duration = Duration::from_secs(20);
const QUIET_WAIT_QUICK: Duration = Duration::from_secs(5);

/// Starts a `logd` (the bench's config with the rotation `rotate`, `RUST_LOG` unset) in a new
/// directory under `parent`; `with_virtlogd` also serves the virtlogd socket there. It is killed,
/// and the directory removed, when the [`Daemon`] is dropped.
fn spawn_daemon(
    bins: &Bins,
    parent: &Path,
    tag: &str,
    rotate: RotateConfig,
    with_virtlogd: bool,
    notify: Option<&Path>,
) -> Result<Daemon> {
    let mut config = format!("max_size = {}\nmax_backups = {}\n", { rotate.max_size }, {
        rotate.max_backups
    });
    // For profiling: LOGD_BENCH_RUST_LOG becomes the daemon's RUST_LOG (the re-exec
    // scenarios then print its timeline).
    let mut env: Vec<(String, String)> = std::env::var("LOGD_BENCH_RUST_LOG")
        .map(|v| ("RUST_LOG".to_owned(), v))
        .into_iter()
        .collect();
    if let Some(n) = notify {
        config.push_str("fd_store = true\n");
        env.push(("NOTIFY_SOCKET".to_owned(), n.display().to_string()));
    }
    Daemon::spawn(
        bins,
        Opts {
            config,
            quiet: true,
            env_remove: vec!["RUST_LOG".to_owned(), "NOTIFY_SOCKET".to_owned()],
            env,
            virtlogd_socket: with_virtlogd,
            parent: Some(parent.to_owned()),
            prefix: Some(format!("logd-bench-{tag}-")),
            ..Opts::default()
        },
    )
}

/// The pid of the process serving `daemon`.
pub(crate) fn pid_of(daemon: &Daemon) -> u32 {
    daemon.pid() as u32
}

/// Options, the fd limit, and the figures so far.
pub(crate) struct Bench {
    pub(crate) quick: bool,
    pub(crate) runs: u32,
    /// The `logd` under test (and the `logdctl` beside it, unused).
    bins: Bins,
    pub(crate) dir: PathBuf,
    /// The scenarios to run.
    pub(crate) scenarios: Vec<&'static str>,
    fd_limit: u64,
    /// The subscribers' queue limit on the bench's consoles.
    pub(crate) console_queue_limit: u64,
    /// With `--fd-store`: the notify socket the daemons send to (drained by a thread).
    notify: Option<PathBuf>,
    figures: Vec<Figure>,
}

/// Plays systemd's side of the notify socket for `--fd-store`: a socket at `path` whose
/// messages are read and dropped (the fds they carry are closed by the kernel, as a receive
/// without room for them does), so logd's sends never find it full.
fn drain_notify(path: &Path) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let sock = std::os::unix::net::UnixDatagram::bind(path)
        .with_context(|| format!("binding {}", path.display()))?;
    std::thread::Builder::new()
        .name("notify-drain".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            while sock.recv(&mut buf).is_ok() {}
        })
        .context("starting the notify socket's reader")?;
    Ok(())
}

impl Bench {
    pub(crate) fn new(args: Args) -> Result<Bench> {
        let scenarios = pick_scenarios(args.only.as_deref())?;
        let mut bins = Bins::beside(&std::env::current_exe().context("finding this executable")?);
        if let Some(p) = args.logd {
            bins.logd = p;
        }
        let logd = &bins.logd;
        ensure!(
            logd.is_file(),
            "no logd at {} (build it: `cargo build --release --bins`, or pass --logd PATH)",
            logd.display()
        );
        let dir = args.dir.unwrap_or_else(std::env::temp_dir);
        ensure!(dir.is_dir(), "--dir {} is not a directory", dir.display());
        let fd_limit = raise_fd_limit()?;
        let runs = args.runs.unwrap_or(if args.quick { 1 } else { 3 });
        let notify = args
            .fd_store
            .then(|| dir.join(format!("logd-bench-notify-{}.sock", std::process::id())));
        if let Some(n) = &notify {
            drain_notify(n)?;
            note("fd_store = true: every log counts into its tally slot");
        }
        note(format!(
            "{} run(s) per scenario{}; logd: {}; temp dirs under {}; RLIMIT_NOFILE {fd_limit}",
            runs,
            if args.quick { ", quick sizes" } else { "" },
            logd.display(),
            dir.display()
        ));
        Ok(Bench {
            quick: args.quick,
            runs,
            bins,
            dir,
            scenarios,
            fd_limit,
            console_queue_limit: args.console_queue_limit,
            notify,
            figures: Vec::new(),
        })
    }

    /// Whether the scenario `name` is to run.
    pub(crate) fn selected(&self, name: &str) -> bool {
        self.scenarios.contains(&name)
    }

    /// A fresh logd with the bench's rotation ([`ROTATE`]), in its temporary directory.
    pub(crate) fn daemon(&self, tag: &str) -> Result<Daemon> {
        self.daemon_rotating(tag, ROTATE)
    }

    /// [`Bench::daemon`] with another rotation: a scenario that must see its log never rotate.
    pub(crate) fn daemon_rotating(&self, tag: &str, rotate: RotateConfig) -> Result<Daemon> {
        let notify = self.notify.as_deref();
        spawn_daemon(&self.bins, &self.dir, tag, rotate, false, notify)
    }

    /// A fresh logd that also serves the virtlogd socket, in its temporary directory.
    pub(crate) fn daemon_serving_virtlogd(&self, tag: &str) -> Result<Daemon> {
        let notify = self.notify.as_deref();
        spawn_daemon(&self.bins, &self.dir, tag, ROTATE, true, notify)
    }

    /// How many of `wanted` domains fit in the fd limit, with a note when that is fewer.
    pub(crate) fn domains_that_fit(&self, wanted: usize, scenario: &str) -> usize {
        let fit = (self.fd_limit.saturating_sub(FD_RESERVE) / DAEMON_FDS_PER_DOMAIN) as usize;
        if fit >= wanted {
            return wanted;
        }
        note(format!(
            "{scenario}: the RLIMIT_NOFILE hard limit ({}) is too low for {wanted} domains \
             (a daemon needs up to {DAEMON_FDS_PER_DOMAIN} fds each: the pipe and, for \
             virtlogd always and for logd while the log is written to, the file): using {fit} \
             domains instead",
            self.fd_limit
        ));
        fit.max(1)
    }

    /// Waits until other work keeps fewer than [`QUIET_CPUS`] busy for half a second (at most
    /// 20 s, 5 s with --quick), so that another job's burst does not land in a measurement.
    pub(crate) fn wait_for_quiet(&self, daemon: Option<&Daemon>) -> Result<()> {
        self.wait_for_quiet_pid(daemon.map(pid_of))
    }

    /// [`Bench::wait_for_quiet`] for a daemon known by its pid.
    pub(crate) fn wait_for_quiet_pid(&self, daemon: Option<u32>) -> Result<()> {
        let max_wait = if self.quick {
            QUIET_WAIT_QUICK
        } else {
            QUIET_WAIT
        };
        let start = Instant::now();
        loop {
            let before = others_cpu_seconds_pid(daemon)?;
            std::thread::sleep(QUIET_SAMPLE);
            let busy = (others_cpu_seconds_pid(daemon)? - before) / QUIET_SAMPLE.as_secs_f64();
            let waited = start.elapsed();
            if busy < QUIET_CPUS {
                if waited > 2 * QUIET_SAMPLE {
                    note(format!(
                        "waited {:.0} s for other work to calm down",
                        waited.as_secs_f64()
                    ));
                }
                return Ok(());
            }
            if waited > max_wait {
                note(format!(
                    "other work still keeps {busy:.2} CPUs busy after {} s: measuring anyway",
                    max_wait.as_secs()
                ));
                return Ok(());
            }
        }
    }

    /// One run of a transfer: waits for a quiet machine, runs it, and prints its progress line.
    /// A run during which other work kept more than [`SKEWED`] CPUs busy is run again, at most
    /// [`SKEWED_RETRIES`] times (each try is printed), and the last try counts.
    pub(crate) fn measure(
        &self,
        daemon: Option<&Daemon>,
        name: &str,
        run: u32,
        transfer: impl FnMut() -> Result<Transfer>,
    ) -> Result<Transfer> {
        self.measure_pid(daemon.map(pid_of), name, run, transfer)
    }

    /// [`Bench::measure`] for a daemon known by its pid.
    pub(crate) fn measure_pid(
        &self,
        daemon: Option<u32>,
        name: &str,
        run: u32,
        mut transfer: impl FnMut() -> Result<Transfer>,
    ) -> Result<Transfer> {
        let mut tries = 0;
        loop {
            self.wait_for_quiet_pid(daemon)?;
            let t = transfer()?;
            self.progress(name, run, &t);
            if t.others_busy <= SKEWED || tries == SKEWED_RETRIES {
                return Ok(t);
            }
            tries += 1;
            note(format!(
                "{name} run {run}: other work kept {:.2} CPUs busy during it: measuring again",
                t.others_busy
            ));
        }
    }

    pub(crate) fn progress(&self, name: &str, run: u32, t: &Transfer) {
        let pipe = match t.pipe_size {
            Some(size) => format!("pipe {} KiB; ", size / 1024),
            None => String::new(),
        };
        note(format!(
            "{name} run {run}/{}: {} MiB in {:.2} s = {:.1} MB/s, {:.2} CPU-s ({:.3} CPU-s/GiB); \
             {pipe}other work kept {:.2} CPUs busy",
            self.runs,
            t.bytes / MIB,
            t.seconds,
            t.mb_per_s(),
            t.cpu_seconds,
            t.cpu_per_gib(),
            t.others_busy
        ));
    }

    /// `NAME_throughput` and `NAME_cpu`, medians over the runs.
    pub(crate) fn transfer_figures(&mut self, name: &str, runs: &[Transfer]) {
        let mbs: Vec<f64> = runs.iter().map(Transfer::mb_per_s).collect();
        let cpu: Vec<f64> = runs.iter().map(Transfer::cpu_per_gib).collect();
        self.figure(&format!("{name}_throughput"), median(&mbs), "MB/s");
        self.figure(&format!("{name}_cpu"), median(&cpu), "CPU-s/GiB");
    }

    /// Records a figure and prints it on stdout.
    pub(crate) fn figure(&mut self, name: &str, value: f64, unit: &'static str) {
        let f = Figure {
            name: name.to_owned(),
            value,
            unit,
        };
        println!("{f}");
        self.figures.push(f);
    }

    pub(crate) fn get(&self, name: &str) -> Option<f64> {
        self.figures
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value)
    }
}

/// One result: printed as `name: value unit`.
struct Figure {
    name: String,
    value: f64,
    unit: &'static str,
}

impl fmt::Display for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.value;
        let digits = match v.abs() {
            a if a >= 100.0 => 0,
            a if a >= 10.0 => 1,
            a if a >= 1.0 => 2,
            _ => 3,
        };
        write!(f, "{}: {v:.digits$} {}", self.name, self.unit)
    }
}

/// Lets the daemon finish what an answer set going (freeing, logging) before a memory reading.
pub(crate) fn settle() {
    std::thread::sleep(Duration::from_millis(200));
}
