//! `console_fanout_K`: one guest's bytes to K subscribers, each reading on its own thread.

use anyhow::{Context, Result};
use logd_kit::Daemon;
use logd_protocol::client::Client;

use crate::bench::Bench;
use crate::console::{console_transfer, ConsoleTransfer, FakeConsole};
use crate::report::note;
use crate::CALL_TIMEOUT;

/// `console_fanout_K`: one fake guest writes `total` bytes to a console with its log on and `K`
/// subscribers, each reading everything on its own thread.
pub(crate) fn console_fanout(b: &mut Bench, subscribers: usize, total: u64) -> Result<()> {
    let name = format!("console_fanout_{subscribers}");
    let mut runs = Vec::new();
    for run in 1..=b.runs {
        let daemon = b.daemon(&name)?;
        let mut client = daemon.try_client(CALL_TIMEOUT)?;
        let (t, ok) = fanout_run(b, &daemon, &mut client, subscribers, total)
            .with_context(|| daemon.failed(&name))?;
        if ok {
            b.progress(&name, run, &t.transfer);
            t.progress(&name, run, b.runs);
            runs.push(t.transfer);
        } else {
            t.progress(&name, run, b.runs);
            note(format!(
                "{name} run {run}: not every subscriber got every byte; the run is left out"
            ));
        }
    }
    if runs.is_empty() {
        note(format!(
            "{name}: no run delivered every byte to every subscriber: no figures"
        ));
    } else {
        b.transfer_figures(&name, &runs);
    }
    Ok(())
}

/// One `console_fanout_K` run; false when not every subscriber got exactly the guest's bytes.
fn fanout_run(
    b: &Bench,
    daemon: &Daemon,
    client: &mut Client,
    subscribers: usize,
    total: u64,
) -> Result<(ConsoleTransfer, bool)> {
    let mut console = FakeConsole::add(client, "bench-fanout", b.console_queue_limit)?;
    let subs = (0..subscribers)
        .map(|_| Ok((console.subscribe()?, 0)))
        .collect::<Result<Vec<_>>>()?;
    console.wait_subscribers(client, subscribers as u32)?;
    b.wait_for_quiet(Some(daemon))?;
    let t = console_transfer(daemon, &mut console.guest, subs, total)?;
    let info = console.info(client)?;
    let ok = t.check(
        &format!("console_fanout_{subscribers}"),
        total,
        &info,
        total,
    );
    Ok((t, ok))
}
