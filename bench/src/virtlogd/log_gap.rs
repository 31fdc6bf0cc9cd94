//! virtlogd under the re-exec log-gap method (`crate::reexec::log_gap`): started as
//! `virtlogd_idle_10000` starts it, but rotating as [`GAP_ROTATE`] says, with its domains
//! opened through its RPC by the bench's client.
//!
//! virtlogd re-execs itself on SIGUSR1 as logd does, keeping its pid: it writes its state
//! (clients, log files, pipes) to `/run/virtlogd-restart-exec.json` when run as root, execs
//! `argv[0]` again, and the new image reads the file back.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::process::Virtlogd;
use super::rpc::RpcClient;
use super::{domain_name, log, uuid, Server};
use crate::bench::Bench;
use crate::idle::IdleDomains;
use crate::reexec::log_gap::{GapSubject, GAP_ROTATE};
use crate::CALL_TIMEOUT;

/// Whether virtlogd can run here; when it cannot, a note says why and `scenario` is skipped.
pub(crate) fn available(scenario: &str) -> bool {
    Server::Virtlogd.available(scenario)
}

/// A fresh virtlogd with `count` domains open through its RPC (the first `count` − 1 idle, as
/// in `virtlogd_idle_N`), and the last one's pipe, for the writer.
pub(crate) fn start(b: &Bench, name: &str, count: usize) -> Result<(Box<dyn GapSubject>, OwnedFd)> {
    let mut virtlogd = Virtlogd::spawn(&b.dir, name, GAP_ROTATE)?;
    let mut client = virtlogd.client()?;
    let logs = virtlogd.logs();
    let idle = IdleDomains::open_each(count.saturating_sub(1), |i| {
        let (_, fd) = client.open_log_file("qemu", &uuid(i), &domain_name(i), &log(&logs, i), 0)?;
        Ok(fd)
    })
    .with_context(|| virtlogd.failed(name))?;
    let written = logs.join("bench-writer.log");
    let (_, pipe) = client
        .open_log_file("qemu", &uuid(0), "bench-writer", &written, 0)
        .with_context(|| virtlogd.failed(name))?;
    let subject = VirtlogdSubject {
        virtlogd,
        _client: client,
        _idle: idle,
        log: written,
    };
    Ok((Box::new(subject), pipe))
}

/// virtlogd with its domains open.
struct VirtlogdSubject {
    virtlogd: Virtlogd,
    /// The connection the domains were opened on (virtlogd carries its clients over a re-exec).
    _client: RpcClient,
    _idle: IdleDomains,
    log: PathBuf,
}

impl GapSubject for VirtlogdSubject {
    fn who(&self) -> &'static str {
        "virtlogd"
    }

    fn pid(&self) -> u32 {
        self.virtlogd.pid()
    }

    fn log(&self) -> &Path {
        &self.log
    }

    fn position(&mut self) -> Result<u64> {
        let mut client = RpcClient::connect(self.virtlogd.socket(), "virtlogd", CALL_TIMEOUT)?;
        Ok(client.log_file_position(&self.log)?.offset)
    }

    fn failed(&self, what: &str) -> String {
        self.virtlogd.failed(what)
    }
}
