//! Idle domains and what they cost: opened one at a time ([`IdleDomains`]), with the transfer
//! beside them (`idle5000_one_stream_64k`, `idle10000_one_stream_64k`: open rates, idle CPU)
//! and the daemon's memory per idle domain (`rss_per_idle_domain_1000`, `_10000`).

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use logd_protocol::client::Client;
use logd_protocol::{DomainId, OpenFlags};

use crate::bench::{settle, Bench};
use crate::host::mem_available_kib;
use crate::report::{median, note};
use crate::slab::KernelMemory;
use crate::transfer::logd_transfer;
use crate::CALL_TIMEOUT;

/// `idleN_one_stream_64k`: `idle` idle domains (fewer if the fd limit says so), then the
/// `one_stream_64k` transfer. The opens go one at a time on one connection; `rates` names the
/// figures for opens/s over the first 100 and over the last 100. With `idle_cpu` (a figure's
/// name and a window), the daemon's CPU is sampled over that window once the opens are done and
/// the machine is quiet, with every domain idle: the figure is in CPU-s per s, and ought to be 0.
pub(crate) fn idle_then_stream(
    b: &mut Bench,
    idle: usize,
    total: u64,
    rates: [&str; 2],
    idle_cpu: Option<(&str, Duration)>,
) -> Result<()> {
    let name = format!("idle{idle}_one_stream_64k");
    let idle = b.domains_that_fit(idle, &name);
    let mut runs = Vec::new();
    let (mut first_100, mut last_100, mut idle_busy) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=b.runs {
        let daemon = b.daemon(&name)?;
        let mut client = daemon.try_client(CALL_TIMEOUT)?;
        b.wait_for_quiet(Some(&daemon))?;
        let domains = IdleDomains::open(&mut client, idle).with_context(|| daemon.failed(&name))?;
        let last = (idle.saturating_sub(99).max(1), idle);
        first_100.push(domains.open_rate(1, 100.min(idle)));
        last_100.push(domains.open_rate(last.0, last.1));
        if let Some((_, window)) = idle_cpu {
            // A rate over 100 opens takes in any preemption among them: the median single open
            // says whether the opens themselves got slower.
            let us = |from, to| domains.median_open(from, to).as_secs_f64() * 1e6;
            note(format!(
                "{name} run {run}/{}: {idle} domains opened in {:.1} s; the median open took \
                 {:.0} µs among opens 1–20 and {:.0} µs among opens {}–{}",
                b.runs,
                domains.elapsed().as_secs_f64(),
                us(1, 20.min(idle)),
                us(last.0, last.1),
                last.0,
                last.1
            ));
            settle();
            b.wait_for_quiet(Some(&daemon))?;
            let (cpu0, switches0) = (daemon.cpu_seconds()?, daemon.context_switches()?);
            let start = Instant::now();
            std::thread::sleep(window);
            let seconds = start.elapsed().as_secs_f64();
            let cpu = daemon.cpu_seconds()? - cpu0;
            let switches = daemon.context_switches()? - switches0;
            note(format!(
                "{name} run {run}/{}: with every domain idle for {seconds:.1} s, logd used \
                 {cpu:.2} CPU-s and its threads were switched in {switches} times",
                b.runs
            ));
            idle_busy.push(cpu / seconds);
        }
        let t = b.measure(Some(&daemon), &name, run, || {
            logd_transfer(&daemon, &mut client, 64 * 1024, total)
                .with_context(|| daemon.failed(&name))
        })?;
        runs.push(t);
    }
    b.transfer_figures(&name, &runs);
    b.figure(rates[0], median(&first_100), "opens/s");
    b.figure(rates[1], median(&last_100), "opens/s");
    if let Some((figure, _)) = idle_cpu {
        b.figure(figure, median(&idle_busy), "CPU-s/s");
    }
    Ok(())
}

/// `rss_per_idle_domain_N`: the daemon's VmRSS before and after opening `count` idle domains;
/// for 10,000 also the kernel's slab memory ([`KernelMemory`]), which counts the kernel's side
/// (pipes, files, inodes, dentries, epoll items), and the machine's MemAvailable.
pub(crate) fn rss_per_idle_domain(b: &mut Bench, count: usize) -> Result<()> {
    let name = format!("rss_per_idle_domain_{count}");
    let n = b.domains_that_fit(count, &name);
    let with_kernel = count == 10_000;
    let (mut per_domain, mut baseline_rss, mut mem_per_domain, mut kernel_per_domain) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut pinned_per_domain = Vec::new();
    for run in 1..=b.runs {
        let daemon = b.daemon(&name)?;
        let mut client = daemon.try_client(CALL_TIMEOUT)?;
        if with_kernel {
            // The slab figure is machine-wide: no other work may be allocating meanwhile.
            b.wait_for_quiet(Some(&daemon))?;
        }
        settle();
        let rss0 = daemon.rss_kib()?;
        let mem0 = mem_available_kib()?;
        // Reclaimed first, so that both readings start from what cannot be reclaimed.
        let pinned0 = with_kernel.then(KernelMemory::read_pinned).transpose()?;
        let kernel0 = with_kernel.then(KernelMemory::read).transpose()?;
        let domains = IdleDomains::open(&mut client, n).with_context(|| daemon.failed(&name))?;
        settle();
        let rss1 = daemon.rss_kib()?;
        let mem1 = mem_available_kib()?;
        let kernel1 = with_kernel.then(KernelMemory::read).transpose()?;
        let pinned1 = with_kernel.then(KernelMemory::read_pinned).transpose()?;
        let fds = daemon.fd_count()?;
        let kib = (rss1 as f64 - rss0 as f64) / n as f64;
        note(format!(
            "{name} run {run}/{}: VmRSS {rss0} -> {rss1} KiB over {n} domains ({kib:.2} KiB each); \
             logd holds {fds} fds; opens took {:.1} s",
            b.runs,
            domains.elapsed().as_secs_f64()
        ));
        for (before, after, into, what) in [
            (&kernel0, &kernel1, &mut kernel_per_domain, ""),
            (
                &pinned0,
                &pinned1,
                &mut pinned_per_domain,
                "pinned (after reclaiming what can be): ",
            ),
        ] {
            if let (Some(k0), Some(k1)) = (before, after) {
                into.push(k1.per_domain_kib(k0, n));
                note(format!(
                    "{name} run {run}/{}: {what}{}",
                    b.runs,
                    k1.describe_delta(k0, n)
                ));
            }
        }
        if let Some(secs) = std::env::var("LOGD_BENCH_HOLD")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        {
            // For profiling: keep the daemon and its domains for this long.
            note(format!("{name}: holding pid {} for {secs} s", daemon.pid()));
            std::thread::sleep(Duration::from_secs(secs));
        }
        per_domain.push(kib);
        baseline_rss.push(rss0 as f64);
        mem_per_domain.push((mem0 as f64 - mem1 as f64) / n as f64);
    }
    b.figure(&name, median(&per_domain), "KiB");
    if b.get("rss_baseline").is_none() {
        b.figure("rss_baseline", median(&baseline_rss), "KiB");
    }
    if with_kernel {
        note("MemAvailable is machine-wide and noisy: other processes, page cache and slab reclaim move it");
        b.figure(
            "mem_available_per_idle_domain_10000",
            median(&mem_per_domain),
            "KiB",
        );
        let kernel = median(&kernel_per_domain);
        b.figure("kernel_per_idle_domain_10000", kernel, "KiB");
        b.figure(
            "host_per_idle_domain_10000",
            median(&per_domain) + kernel,
            "KiB",
        );
        let pinned = median(&pinned_per_domain);
        b.figure("kernel_pinned_per_idle_domain_10000", pinned, "KiB");
        b.figure(
            "host_pinned_per_idle_domain_10000",
            median(&per_domain) + pinned,
            "KiB",
        );
    }
    Ok(())
}

/// Idle domains: one log and one pipe each, write ends held open, nothing written.
pub(crate) struct IdleDomains {
    /// The write ends; dropping them closes the logs.
    pipes: Vec<OwnedFd>,
    /// When each open returned, from the start of the first.
    done_at: Vec<Duration>,
}

impl IdleDomains {
    pub(crate) fn open(client: &mut Client, count: usize) -> Result<IdleDomains> {
        IdleDomains::open_each(count, |i| {
            let domain = DomainId::from_name("qemu", &format!("idle-{i:05}"));
            let (_, fd) =
                client.open_log(domain, &format!("idle/{i:05}.log"), OpenFlags::default())?;
            Ok(fd)
        })
    }

    /// Opens domains 1 to `count` one at a time with `open`, which returns a domain's pipe.
    pub(crate) fn open_each(
        count: usize,
        mut open: impl FnMut(usize) -> Result<OwnedFd>,
    ) -> Result<IdleDomains> {
        let mut pipes = Vec::with_capacity(count);
        let mut done_at = Vec::with_capacity(count);
        let start = Instant::now();
        for i in 1..=count {
            let fd = open(i).with_context(|| format!("opening idle domain {i} of {count}"))?;
            pipes.push(fd);
            done_at.push(start.elapsed());
        }
        Ok(IdleDomains { pipes, done_at })
    }

    /// The pipe of domain `i` (1-based).
    pub(crate) fn pipe(&self, i: usize) -> &OwnedFd {
        &self.pipes[i - 1]
    }

    /// Opens per second over opens `first..=last` (1-based).
    pub(crate) fn open_rate(&self, first: usize, last: usize) -> f64 {
        let begin = match first {
            0 | 1 => Duration::ZERO,
            _ => self.done_at[first - 2],
        };
        let took = self.done_at[last - 1] - begin;
        (last + 1 - first) as f64 / took.as_secs_f64()
    }

    /// The median time one open took among opens `first..=last` (1-based).
    pub(crate) fn median_open(&self, first: usize, last: usize) -> Duration {
        let took: Vec<f64> = (first.max(1)..=last)
            .map(|i| {
                let begin = if i == 1 {
                    Duration::ZERO
                } else {
                    self.done_at[i - 2]
                };
                (self.done_at[i - 1] - begin).as_secs_f64()
            })
            .collect();
        Duration::from_secs_f64(median(&took))
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.done_at.last().copied().unwrap_or_default()
    }
}
