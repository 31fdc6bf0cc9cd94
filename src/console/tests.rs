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
        // The stream is compared byte for byte.
        notices: Notices {
            subscribers: false,
            mark_log: false,
        },
        tls: None,
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

        // The slow one got a prefix of the output, then, once it read that, its last words
        // (why, and how much it missed: everything queued for it, and what came while it was
        // being let go), then EOF.
        let seen = read_to_eof_turning(&mut c, slow).await;
        let output = seen.iter().take_while(|b| b.is_ascii_lowercase()).count();
        assert!(output < data.len());
        assert_eq!(seen[..output], data[..output]);
        let words = String::from_utf8(seen[output..].to_vec()).unwrap();
        let head = format!(
            "\r\n[logd: disconnected: you fell more than {READ_CHUNK} bytes behind the console; "
        );
        let missed: usize = words
            .strip_prefix(&head)
            .and_then(|r| r.strip_suffix(" bytes queued for you were not sent]\r\n"))
            .unwrap_or_else(|| panic!("{words:?}"))
            .parse()
            .unwrap();
        // More than its limit was pushed to it and not sent; what it got and what it missed
        // are the output up to its cut, so no more than all of it.
        assert!(missed > READ_CHUNK, "{missed}");
        assert!(output + missed <= data.len(), "{output} + {missed}");
    });
}

/// Reads `s` to EOF, turning the console meanwhile (it writes a parting peer's last words as
/// its socket takes them). At most 10 s.
async fn read_to_eof_turning(c: &mut Console, mut s: StdUnixStream) -> Vec<u8> {
    s.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut all = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        assert!(Instant::now() < deadline, "no EOF; got {} bytes", all.len());
        match s.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => turn(c).await,
            Err(e) => panic!("read: {e}"),
        }
    }
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

/// Notices on, marks on: a subscriber is greeted, then given the replay from a line boundary,
/// then live output; when the guest goes it is told, and the log is marked (the replay ring is
/// not: a later subscriber's replay holds output only).
#[test]
fn notices_greet_replay_whole_lines_and_mark_the_guest_leaving() {
    on_a_worker(async {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), 4, DEFAULT_QUEUE_LIMIT);
        cfg.replay = 9;
        cfg.notices = Notices {
            subscribers: true,
            mark_log: true,
        };
        let (mut c, mut guest) = open(cfg);
        guest.write_all(b"first line\nsecond\nthird").unwrap();
        turn_until(&mut c, |c| c.info().bytes_in == 23).await;
        let sock = dir.path().join("console.sock");
        let mut sub = StdUnixStream::connect(&sock).unwrap();
        sub.set_nonblocking(true).unwrap();
        turn_until(&mut c, |c| c.subs.len() == 1).await;
        drop(guest);
        turn_until(&mut c, |c| c.guest.is_none()).await;
        let mut got = Vec::new();
        turn_until(&mut c, |_| {
            read_now(&mut sub, &mut got);
            got.ends_with(b"[logd: guest disconnected]\r\n")
        })
        .await;
        assert_eq!(
            String::from_utf8(got).unwrap(),
            "\r\n[logd: console vm/serial0; you are read-write; every read-write subscriber may \
             type (write policy shared); the guest is connected]\r\n\
             third\
             \r\n[logd: guest disconnected]\r\n"
        );
        c.drain();
        turn_until(&mut c, |c| c.sink().is_flushed()).await;
        let log = std::fs::read_to_string(dir.path().join("console.log")).unwrap();
        let (output, mark) = log.split_at(23);
        assert_eq!(output, "first line\nsecond\nthird");
        assert!(
            mark.starts_with("\r\n[-- logd: guest disconnected 2") && mark.ends_with("Z --]\r\n"),
            "{mark:?}"
        );
        assert_eq!(c.replay.to_vec(), b"ond\nthird", "no mark in the ring");
    });
}
