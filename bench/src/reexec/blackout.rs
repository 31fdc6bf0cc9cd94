//! `reexec_blackout_N`: re-execs asked for on the admin socket while one domain is written to
//! steadily and the others are idle.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use logd_kit::rotated_files;
use logd_protocol::client::AdminClient;
use logd_protocol::{DomainId, OpenFlags};

use super::steady::SteadyWriter;
use crate::bench::{settle, Bench};
use crate::idle::IdleDomains;
use crate::report::{median, note};
use crate::transfer::text;
use crate::{CALL_TIMEOUT, ROTATE};

/// Re-execs asked for in each run of a `reexec_blackout_*` scenario.
const REEXECS_PER_RUN: usize = 3;
/// The steady writer's record, and its period: 1 MB/s, so a 64 KiB pipe holds 64 ms of it.
const STEADY_RECORD: usize = 100;
const STEADY_PERIOD: Duration = Duration::from_micros(100);

/// `reexec_blackout_N`: `count` domains open (one written to steadily, the others idle), then
/// re-execs asked for on the admin socket. Figures: the blackout as the new process reports it
/// (from the freeze to every domain reading again), the same from the request, and the steady
/// writer's longest `write(2)` meanwhile (a stall would mean its pipe filled up).
pub(crate) fn reexec_blackout(b: &mut Bench, count: usize) -> Result<()> {
    let name = format!("reexec_blackout_{count}");
    let n = b.domains_that_fit(count, &name);
    let (mut blackout, mut total, mut stall) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=b.runs {
        let daemon = b.daemon(&name)?;
        let mut client = daemon.try_client(CALL_TIMEOUT)?;
        let _idle = IdleDomains::open(&mut client, n.saturating_sub(1))
            .with_context(|| daemon.failed(&name))?;
        let (_, fd) = client
            .open_log(
                DomainId::from_name("qemu", "bench-writer"),
                "bench/writer.log",
                OpenFlags::default(),
            )
            .with_context(|| daemon.failed(&name))?;
        settle();
        let record = text(STEADY_RECORD);
        let writer = SteadyWriter::start(
            fd,
            STEADY_PERIOD,
            Box::new(move |_, buf| buf.extend_from_slice(&record)),
        );
        let admin = logd::config::admin_socket_for(&daemon.socket);
        for i in 1..=REEXECS_PER_RUN {
            std::thread::sleep(Duration::from_millis(300));
            writer.reset_longest();
            let report = AdminClient::connect(&admin)
                .and_then(|mut c| c.reexec(None))
                .with_context(|| daemon.failed(&format!("{name}: re-exec {i}")))?;
            std::thread::sleep(Duration::from_millis(300));
            let longest = writer.longest();
            note(format!(
                "{name} run {run}/{} re-exec {i}: pid {} -> {}, {} domains and {} fds carried, \
                 blackout {:.2} ms, {:.2} ms from the request, writer's longest write {:.3} ms",
                b.runs,
                report.from_pid,
                report.to_pid,
                report.domains,
                report.fds,
                report.blackout_us as f64 / 1000.0,
                report.total_us as f64 / 1000.0,
                longest.as_secs_f64() * 1000.0
            ));
            ensure!(
                report.domains as usize == n,
                "{name}: {} domains carried, {n} open",
                report.domains
            );
            blackout.push(report.blackout_us as f64 / 1000.0);
            total.push(report.total_us as f64 / 1000.0);
            stall.push(longest.as_secs_f64() * 1000.0);
        }
        // Its pipe closes here.
        let written = writer.stop()?.bytes;
        if std::env::var_os("LOGD_BENCH_RUST_LOG").is_some() {
            let log = daemon.stderr();
            for l in log
                .lines()
                .filter(|l| l.contains("re-exec:") || l.contains("take-over:"))
            {
                note(l);
            }
        }
        // Nothing lost, nothing doubled: the log holds every byte written.
        client
            .position("bench/writer.log")
            .with_context(|| daemon.failed(&name))?;
        let on_disk = read_all_rotated(&daemon.dir.path().join("logs/bench/writer.log"))?;
        ensure!(
            on_disk == written,
            "{name}: the writer wrote {written} bytes, its log holds {on_disk}"
        );
    }
    b.figure(&format!("{name}_ms"), median(&blackout), "ms");
    b.figure(&format!("reexec_total_{count}_ms"), median(&total), "ms");
    let worst = stall.iter().copied().fold(0.0, f64::max);
    b.figure(&format!("reexec_writer_stall_{count}_ms"), worst, "ms");
    Ok(())
}

/// Bytes in a log and its backups.
fn read_all_rotated(path: &Path) -> Result<u64> {
    Ok(rotated_files(path, ROTATE.max_backups)
        .iter()
        .map(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum())
}
