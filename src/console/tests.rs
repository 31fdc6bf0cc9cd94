//! The console's unit tests that need a whole console: a log in a temporary directory, the guest
//! on a socketpair, and subscribers on a UNIX socket, driven by polling the console as its
//! domain's task does.

use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;
use std::task::Poll;
use std::time::{Duration, Instant};

use logd_protocol::{ConsoleProtocol, DomainId, WritePolicy};

use super::*;
use crate::datapath::rotate::RotateConfig;

/// Runs `f` as a worker thread runs a domain: a current-thread runtime with a `LocalSet`.
fn on_a_worker(f: impl std::future::Future<Output = ()>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, f);
}

fn config(dir: &Path, max_subscribers: usize, queue_limit: usize) -> ConsoleConfig {
    ConsoleConfig {
        name: "serial0".to_owned(),
        domain: DomainId::from_name("test", "vm"),
        log: dir.join("console.log"),
        truncate: false,
        rotate: RotateConfig::default(),
        guest: GuestPlan::Fd,
        tcp: None,
        unix: Some(dir.join("console.sock")),
        protocol: ConsoleProtocol::Raw,
        // Shared: no write lock, so no notice when a subscriber leaves.
        write: WritePolicy::Shared,
        replay: 0,
        max_subscribers,
        queue_limit,
        access: Default::default(),
    }
}

/// Opens the console; returns it with the guest's end of its socketpair (non-blocking).
fn open(cfg: ConsoleConfig) -> (Console, StdUnixStream) {
    let (console, guest) = Console::open_with(cfg, Default::default()).unwrap();
    let guest = StdUnixStream::from(guest.expect("the guest's end of the socketpair"));
    guest.set_nonblocking(true).unwrap();
    (console, guest)
}

/// One turn of the console's task, then one of the event loop.
async fn turn(c: &mut Console) {
    poll_fn(|cx| {
        let _ = c.poll(cx);
        Poll::Ready(())
    })
    .await;
    tokio::task::yield_now().await;
}

/// Turns the console until `done` holds (at most 10 s).
async fn turn_until(c: &mut Console, mut done: impl FnMut(&mut Console) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(c) {
        assert!(Instant::now() < deadline, "the console never got there");
        turn(c).await;
    }
}

/// Reads what is there, without waiting.
fn read_now(s: &mut StdUnixStream, into: &mut Vec<u8>) {
    let mut buf = [0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Reads to EOF (at most 10 s).
fn read_to_end(mut s: StdUnixStream) -> Vec<u8> {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("EOF");
    all
}

#[test]
fn a_slow_subscriber_is_dropped_and_counted_once_while_a_reader_gets_every_byte() {
    on_a_worker(async {
        let dir = tempfile::tempdir().unwrap();
        // A queue of one read's worth: a subscriber whose socket takes nothing more is dropped
        // soon after its socket's buffer fills.
        let (mut c, mut guest) = open(config(dir.path(), 4, READ_CHUNK));
        let sock = dir.path().join("console.sock");
        let slow = StdUnixStream::connect(&sock).unwrap();
        turn_until(&mut c, |c| c.subs.len() == 1).await;
        let mut fast = StdUnixStream::connect(&sock).unwrap();
        fast.set_nonblocking(true).unwrap();
        turn_until(&mut c, |c| c.subs.len() == 2).await;
        let (slow_id, fast_id) = (c.subs[0].id, c.subs[1].id);

        // Letters only, so the goodbye line cannot be mistaken for output.
        let data: Vec<u8> = (0..1024 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
        let (mut sent, mut got) = (0, Vec::new());
        let deadline = Instant::now() + Duration::from_secs(20);
        while sent < data.len() || got.len() < data.len() {
            assert!(
                Instant::now() < deadline,
                "sent {sent}, the reader got {}",
                got.len()
            );
            // A little at a time, and only once the console has read the last piece, so that
            // one turn never hands the reader (which reads between turns) more than its socket
            // and its queue take.
            let read_by_console = c.info().bytes_in as usize;
            if sent == read_by_console {
                let end = data.len().min(sent + 16 * 1024);
                match guest.write(&data[sent..end]) {
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("guest write: {e}"),
                }
            }
            turn(&mut c).await;
            read_now(&mut fast, &mut got);
        }

        let first_difference = got.iter().zip(&data).position(|(a, b)| a != b);
        assert_eq!(
            (got.len(), first_difference),
            (data.len(), None),
            "the reader got every byte, in order"
        );
        assert_eq!(c.stats.slow_disconnects, 1);
        assert_eq!(c.info().slow_disconnects, 1);
        let snap = c.snapshot();
        assert_eq!(snap.slow_disconnects, 1);
        let ids: Vec<u64> = snap.subscribers.iter().map(|s| s.id).collect();
        assert_eq!(ids, [fast_id], "subscriber {slow_id} was dropped");
        assert_eq!(c.stats.refused, 0);

        // The slow one got a prefix of the output, then perhaps (what fitted of) its goodbye,
        // then EOF.
        let seen = read_to_end(slow);
        let output = seen.iter().take_while(|b| b.is_ascii_lowercase()).count();
        assert!(output < data.len());
        assert_eq!(seen[..output], data[..output]);
        let goodbye = format!(
            "\r\n[logd: disconnected: you fell more than {READ_CHUNK} bytes behind the console]\r\n"
        );
        assert!(
            goodbye.as_bytes().starts_with(&seen[output..]),
            "{:?}",
            String::from_utf8_lossy(&seen[output..])
        );
    });
}

#[test]
fn a_subscriber_past_max_subscribers_is_told_refused_and_counted() {
    on_a_worker(async {
        let dir = tempfile::tempdir().unwrap();
        let (mut c, _guest) = open(config(dir.path(), 1, DEFAULT_QUEUE_LIMIT));
        let sock = dir.path().join("console.sock");
        let _first = StdUnixStream::connect(&sock).unwrap();
        turn_until(&mut c, |c| c.subs.len() == 1).await;
        let second = StdUnixStream::connect(&sock).unwrap();
        turn_until(&mut c, |c| c.stats.refused == 1).await;
        assert_eq!(
            read_to_end(second),
            b"[logd: console serial0 is full (1 subscribers); try again later]\r\n"
        );
        assert_eq!(c.subs.len(), 1);
        assert_eq!(c.stats.refused, 1);
        assert_eq!(c.stats.slow_disconnects, 0);
    });
}
