//! `console_stalled`: the guest's throughput with one reading subscriber, then with one more
//! that never reads (which logd must cut off).

use std::io::{ErrorKind, Read};
use std::time::Duration;

use anyhow::{Context, Result};
use logd_kit::Daemon;
use logd_protocol::client::Client;

use crate::bench::Bench;
use crate::console::{console_transfer, FakeConsole};
use crate::report::note;
use crate::transfer::Transfer;
use crate::{CALL_TIMEOUT, READ_BUF};

/// `console_stalled`: the guest's throughput with one reading subscriber, then with one more
/// that never reads.
pub(crate) fn console_stalled(b: &mut Bench, total: u64) -> Result<()> {
    let name = "console_stalled";
    let (mut none, mut one) = (Vec::new(), Vec::new());
    for run in 1..=b.runs {
        let daemon = b.daemon(name)?;
        let mut client = daemon.try_client(CALL_TIMEOUT)?;
        match stalled_run(b, &daemon, &mut client, total, run)
            .with_context(|| daemon.failed(name))?
        {
            Some((n, o)) => {
                none.push(n);
                one.push(o);
            }
            None => note(format!(
                "{name} run {run}: the reading subscriber did not get every byte; the run is left out"
            )),
        }
    }
    if none.is_empty() {
        note(format!(
            "{name}: no run delivered every byte to the reading subscriber: no figures"
        ));
        return Ok(());
    }
    b.transfer_figures("console_stalled_none", &none);
    b.transfer_figures("console_stalled_one", &one);
    if let (Some(n), Some(o)) = (
        b.get("console_stalled_none_throughput"),
        b.get("console_stalled_one_throughput"),
    ) {
        b.figure("console_stalled_vs_none", o / n * 100.0, "%");
    }
    Ok(())
}

/// One `console_stalled` run, on one console: the transfer with the reading subscriber only,
/// then with a stalled one too. Notes whether logd disconnected the stalled one. None when the
/// reading subscriber did not get every byte.
fn stalled_run(
    b: &Bench,
    daemon: &Daemon,
    client: &mut Client,
    total: u64,
    run: u32,
) -> Result<Option<(Transfer, Transfer)>> {
    let mut console = FakeConsole::add(client, "bench-stalled", b.console_queue_limit)?;
    let reader = console.subscribe()?;
    console.wait_subscribers(client, 1)?;
    b.wait_for_quiet(Some(daemon))?;
    let none = console_transfer(daemon, &mut console.guest, vec![(reader, 0)], total)?;
    let ok = none.check("console_stalled_none", total, &console.info(client)?, total);
    if ok {
        b.progress("console_stalled_none", run, &none.transfer);
    }
    none.progress("console_stalled_none", run, b.runs);
    if !ok {
        return Ok(None);
    }
    let reader = none.received[0]
        .sock
        .try_clone()
        .context("cloning the reading subscriber")?;

    let mut stuck = console.subscribe_stalled()?;
    console.wait_subscribers(client, 2)?;
    b.wait_for_quiet(Some(daemon))?;
    let one = console_transfer(daemon, &mut console.guest, vec![(reader, total)], total)?;
    let info = console.info(client)?;
    let ok = one.check("console_stalled_one", total, &info, 2 * total);
    if ok {
        b.progress("console_stalled_one", run, &one.transfer);
    }
    one.progress("console_stalled_one", run, b.runs);

    // The stalled subscriber must have been cut off: logd counts it, and its socket ends.
    stuck.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut drained = 0u64;
    let mut buf = vec![0u8; READ_BUF];
    let end = loop {
        match stuck.read(&mut buf) {
            Ok(0) => break "EOF".to_owned(),
            Ok(n) => drained += n as u64,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => break format!("no EOF within 10 s ({e})"),
        }
    };
    let cut = info.slow_disconnects == 1 && end == "EOF";
    note(format!(
        "console_stalled run {run}: {} (logd: slow_disconnects {}, {} subscriber(s) left; the \
         stalled socket then read {drained} bytes, then {end})",
        if cut {
            "the stalled subscriber was disconnected"
        } else {
            "THE STALLED SUBSCRIBER WAS NOT DISCONNECTED as expected"
        },
        info.slow_disconnects,
        info.subscribers
    ));
    Ok(ok.then_some((none.transfer, one.transfer)))
}
