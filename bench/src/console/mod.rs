//! The console scenarios: a fake guest (this process, writing into its end of a `GuestSide::Fd`
//! console's socketpair) and TCP subscribers that read, count and spot-check its bytes:
//! `console_fanout_*` ([`fanout`]), `console_latency` ([`latency`]) and `console_stalled`
//! ([`stalled`]); and the limit `console_fanout_64` is compared to, the same subscribers fed by a
//! thread of this process with no daemon (`console_fanout_64_baseline`, [`baseline`]).

use std::io::{ErrorKind, Read};
use std::net::{SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use logd_kit::{stat_cpu_seconds, Daemon};
use logd_protocol::client::Client;
use logd_protocol::{ConsoleInfo, ConsoleOption, ConsoleSpec, DomainId, GuestSide, WritePolicy};

use crate::host::others_cpu_seconds;
use crate::report::note;
use crate::transfer::{text, write_chunks, Transfer};
use crate::{MIB, READ_BUF};

pub(crate) mod baseline;
pub(crate) mod fanout;
pub(crate) mod latency;
pub(crate) mod stalled;

/// The fake guest's write size, and the period of the text it writes.
pub(crate) const CONSOLE_CHUNK: usize = 64 * 1024;
/// Every bench console's name in its domain.
const CONSOLE_NAME: &str = "serial0";
/// Room for the 64 subscribers of `console_fanout_64` (logd's default is 32).
const CONSOLE_MAX_SUBSCRIBERS: u32 = 100;
/// The subscribers' queue limit in the console scenarios (`--console-queue-limit`). logd's
/// default, 1 MiB, is less than what one poll of a console can queue before it first writes to
/// a subscriber (16 reads from the guest of up to 256 KiB each), so at the default a guest
/// writing at full speed gets every subscriber disconnected as slow in the first poll, however
/// fast it reads. 16 MiB is above that burst, and still cuts off a subscriber that stalls.
pub(crate) const CONSOLE_QUEUE_LIMIT: u64 = 16 * MIB;
/// How long a subscriber waits for a byte before its run fails.
const SUBSCRIBER_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes of each read a subscriber compares with what the guest wrote there: a lost, doubled
/// or reordered piece shifts everything after it, so the start of each read is enough to see it.
const SPOT_CHECK: usize = 16;

/// A console added for the bench: the fake guest's end of its socketpair, and the TCP address
/// subscribers connect to.
pub(crate) struct FakeConsole {
    domain: String,
    /// The guest's end: the bench writes into it as a guest writes to its serial port.
    guest: UnixStream,
    tcp: String,
}

impl FakeConsole {
    /// Adds console [`CONSOLE_NAME`] to domain `domain`: log on (rotated as every scenario's),
    /// raw, read-only, no replay (subscribers get live bytes only), no notices (subscribers get
    /// the guest's bytes and nothing else: by default logd greets each one with a line).
    fn add(client: &mut Client, domain: &str, queue_limit: u64) -> Result<FakeConsole> {
        let spec = ConsoleSpec {
            tcp: Some("127.0.0.1:0".to_owned()),
            write: WritePolicy::None,
            replay: Some(0),
            max_subscribers: Some(CONSOLE_MAX_SUBSCRIBERS),
            queue_limit: Some(queue_limit),
            ..ConsoleSpec::new(
                DomainId::from_name("qemu", domain),
                CONSOLE_NAME,
                GuestSide::Fd,
                &format!("bench/{domain}.console.log"),
            )
        };
        let (added, fd) = client
            .add_console_with(spec, vec![ConsoleOption::NoNotices])
            .with_context(|| format!("adding a console to {domain}"))?;
        let fd = fd.context("logd returned no guest fd for a GuestSide::Fd console")?;
        let tcp = added.tcp.context("logd bound no TCP listener")?;
        Ok(FakeConsole {
            domain: domain.to_owned(),
            guest: UnixStream::from(fd),
            tcp,
        })
    }

    /// Connects a subscriber.
    fn subscribe(&self) -> Result<TcpStream> {
        let s = TcpStream::connect(&self.tcp)
            .with_context(|| format!("connecting to the console at {}", self.tcp))?;
        s.set_read_timeout(Some(SUBSCRIBER_TIMEOUT))
            .context("setting a subscriber's timeout")?;
        Ok(s)
    }

    /// Connects a subscriber that will never read, with a 4 KiB receive buffer (set before
    /// connecting, so that the window it offers is small from the start).
    fn subscribe_stalled(&self) -> Result<TcpStream> {
        use nix::sys::socket::{
            connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
        };
        let addr: SocketAddrV4 = self
            .tcp
            .parse()
            .with_context(|| format!("parsing the console's address {}", self.tcp))?;
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .context("creating the stalled subscriber's socket")?;
        setsockopt(&fd, sockopt::RcvBuf, &4096).context("setting SO_RCVBUF")?;
        connect(fd.as_raw_fd(), &SockaddrIn::from(addr))
            .with_context(|| format!("connecting to the console at {}", self.tcp))?;
        Ok(TcpStream::from(fd))
    }

    /// What logd says about this console.
    fn info(&self, client: &mut Client) -> Result<ConsoleInfo> {
        client
            .list_consoles()
            .context("listing the consoles")?
            .into_iter()
            .find(|c| c.domain.name == self.domain && c.name == CONSOLE_NAME)
            .with_context(|| format!("logd does not list the console of {}", self.domain))
    }

    /// Waits until logd has accepted `n` subscribers: until then a connected subscriber sits in
    /// the listen backlog, and would miss what the guest writes (there is no replay).
    fn wait_subscribers(&self, client: &mut Client, n: u32) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let have = self.info(client)?.subscribers;
            if have == n {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "logd has {have} subscribers on {} after 20 s, not {n}",
                self.domain
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One console transfer.
pub(crate) struct ConsoleTransfer {
    /// Until every subscriber had every byte; CPU is the daemon's.
    transfer: Transfer,
    /// How long the guest's writes took. They run ahead of the subscribers by what the
    /// socketpair, logd's queues and the TCP buffers hold.
    guest_seconds: f64,
    /// CPU time of this process (the guest and the subscribers) over the transfer.
    bench_cpu_seconds: f64,
    /// The daemon's peak VmRSS so far (VmHWM), in KiB: the subscribers' queues share the
    /// guest's chunks, so it grows with how far the slowest subscriber falls behind.
    daemon_peak_kib: u64,
    received: Vec<Received>,
}

impl ConsoleTransfer {
    fn progress(&self, name: &str, run: u32, runs: u32) {
        note(format!(
            "{name} run {run}/{runs}: the guest's writes took {:.2} s ({:.0} MB/s); the bench \
             (guest and {} subscriber(s)) used {:.2} CPU-s; logd's peak VmRSS so far {} MiB",
            self.guest_seconds,
            self.transfer.bytes as f64 / 1e6 / self.guest_seconds,
            self.received.len(),
            self.bench_cpu_seconds,
            self.daemon_peak_kib / 1024
        ));
    }

    /// Whether every subscriber got exactly the `want` bytes the guest wrote, and logd counted
    /// `bytes_in` guest bytes in all; notes each problem.
    fn check(&self, what: &str, want: u64, info: &ConsoleInfo, bytes_in: u64) -> bool {
        let mut ok = true;
        let subs = self.received.len();
        let cut: Vec<u64> = self
            .received
            .iter()
            .filter(|r| r.cut_off)
            .map(|r| r.bytes)
            .collect();
        if !cut.is_empty() {
            ok = false;
            note(format!(
                "{what}: logd closed {} of {subs} subscribers early, after {}–{} of {want} bytes \
                 (its slow_disconnects counter: {})",
                cut.len(),
                cut.iter().min().unwrap_or(&0),
                cut.iter().max().unwrap_or(&0),
                info.slow_disconnects
            ));
        }
        let wrong: Vec<(usize, u64)> = self
            .received
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.cut_off && r.bytes != want)
            .map(|(i, r)| (i, r.bytes))
            .collect();
        if let Some((i, got)) = wrong.first() {
            ok = false;
            note(format!(
                "{what}: {} of {subs} subscribers received a wrong count (subscriber {i}: {got} \
                 bytes of {want})",
                wrong.len()
            ));
        }
        let differ: Vec<(usize, u64)> = self
            .received
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.mismatch.filter(|_| !r.cut_off).map(|at| (i, at)))
            .collect();
        if let Some((i, at)) = differ.first() {
            ok = false;
            note(format!(
                "{what}: {} of {subs} subscribers received bytes that differ from the guest's \
                 (subscriber {i} from stream offset {at})",
                differ.len()
            ));
        }
        if info.bytes_in != bytes_in {
            ok = false;
            note(format!(
                "{what}: logd counted {} guest bytes in, the guest wrote {bytes_in}",
                info.bytes_in
            ));
        }
        ok
    }
}

/// What one reading subscriber received in a transfer.
struct Received {
    sock: TcpStream,
    bytes: u64,
    /// When it had every byte, or logd closed the connection.
    at: Instant,
    /// logd closed the connection before the end (it disconnects a subscriber that falls
    /// behind).
    cut_off: bool,
    /// The first stream offset where a read began with bytes other than the guest's.
    mismatch: Option<u64>,
}

/// A subscriber's thread: reads into a 64 KiB buffer and counts until it has `want` bytes or
/// logd closes; spot-checks each read against the guest's text. `from` is the stream offset
/// it starts at (what it received in earlier transfers).
fn receive(mut sock: TcpStream, from: u64, want: u64, pattern: &[u8]) -> Result<Received> {
    let mut buf = vec![0u8; READ_BUF];
    let (mut got, mut mismatch, mut cut_off) = (0u64, None, false);
    while got < want {
        let n = match sock.read(&mut buf) {
            Ok(0) => {
                cut_off = true;
                break;
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("a subscriber's read after {got} of {want} bytes"))
            }
        };
        if mismatch.is_none() {
            let at = from + got;
            let differs = buf[..n.min(SPOT_CHECK)]
                .iter()
                .enumerate()
                .any(|(i, &c)| c != pattern[((at + i as u64) % pattern.len() as u64) as usize]);
            if differs {
                mismatch = Some(at);
            }
        }
        got += n as u64;
    }
    Ok(Received {
        sock,
        bytes: got,
        at: Instant::now(),
        cut_off,
        mismatch,
    })
}

/// Starts one subscriber's thread ([`receive`]) per socket, each reading from its stream offset
/// until it has `total` bytes, and spot-checking them against the guest's text.
fn start_readers(subs: Vec<(TcpStream, u64)>, total: u64) -> Vec<JoinHandle<Result<Received>>> {
    let pattern: Arc<[u8]> = text(CONSOLE_CHUNK).into();
    subs.into_iter()
        .map(|(sock, from)| {
            let pattern = Arc::clone(&pattern);
            std::thread::spawn(move || receive(sock, from, total, &pattern))
        })
        .collect()
}

/// Waits for every subscriber's thread: what each received, and when the last one was done.
fn join_readers(readers: Vec<JoinHandle<Result<Received>>>) -> Result<(Vec<Received>, Instant)> {
    let mut received = Vec::with_capacity(readers.len());
    for r in readers {
        received.push(
            r.join()
                .map_err(|_| anyhow!("a subscriber's thread panicked"))??,
        );
    }
    let end = received
        .iter()
        .map(|r| r.at)
        .max()
        .unwrap_or_else(Instant::now);
    Ok((received, end))
}

/// The guest writes `total` bytes in 64 KiB writes while each subscriber, on its own thread,
/// reads from its stream offset; done when every subscriber has every byte or was cut off.
pub(crate) fn console_transfer(
    daemon: &Daemon,
    guest: &mut UnixStream,
    subs: Vec<(TcpStream, u64)>,
    total: u64,
) -> Result<ConsoleTransfer> {
    let readers = start_readers(subs, total);
    let cpu0 = daemon.cpu_seconds()?;
    let bench0 = stat_cpu_seconds("/proc/self/stat")?;
    let others0 = others_cpu_seconds(Some(daemon))?;
    let start = Instant::now();
    write_chunks(guest, CONSOLE_CHUNK, total).context("writing into the console's guest side")?;
    let guest_seconds = start.elapsed().as_secs_f64();
    let (received, end) = join_readers(readers)?;
    let seconds = end.saturating_duration_since(start).as_secs_f64();
    let cpu_seconds = daemon.cpu_seconds()? - cpu0;
    let bench_cpu_seconds = stat_cpu_seconds("/proc/self/stat")? - bench0;
    let daemon_peak_kib = daemon.peak_rss_kib()?;
    let others_busy = (others_cpu_seconds(Some(daemon))? - others0) / start.elapsed().as_secs_f64();
    Ok(ConsoleTransfer {
        transfer: Transfer {
            bytes: total,
            seconds,
            cpu_seconds,
            others_busy,
            pipe_size: None,
        },
        guest_seconds,
        bench_cpu_seconds,
        daemon_peak_kib,
        received,
    })
}
