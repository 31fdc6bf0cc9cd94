use super::*;

/// A state with one of everything, the same every time.
fn sample() -> State {
    let fd = |raw| Fd {
        raw,
        dev: 2049,
        ino: 1000 + raw as u64,
    };
    let sink = |p: &str, f| SinkState {
        path: PathBuf::from(p),
        file: Some(fd(f)),
        max_size: 2 << 20,
        max_backups: 3,
        inode: 77,
        birth: 1_700_000_000_000_000_000,
        size: 1234,
        newline_end: 1200,
        rotations: 5,
        bytes_in: 10_000_000,
        bytes_written: 9_999_000,
        dropped_disk: 1000,
        last_error: Some((
            "cannot write to /l/a.log: No space left".into(),
            1_700_000_000_000,
        )),
    };
    let domain = DomainId {
        driver: "qemu".into(),
        uuid: Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0),
        name: "vm1".into(),
    };
    State {
        asked_mono_ns: 1,
        frozen_mono_ns: 2,
        started_ms: 1_700_000_000_000,
        uptime_ms: 60_000,
        reexecs: 4,
        lock: fd(3),
        main: ListenerState {
            fd: fd(4),
            path: "/run/logd/logd.sock".into(),
            owned: true,
        },
        admin: ListenerState {
            fd: fd(5),
            path: "/run/logd/logd-admin.sock".into(),
            owned: false,
        },
        metrics: Some(fd(6)),
        next_subscriber_id: 42,
        domains: vec![DomainState {
            driver: domain.driver.clone(),
            uuid: domain.uuid,
            name: domain.name.clone(),
            since_ms: 1_700_000_000_001,
            streams: vec![
                StreamState::Pipe(PipeState {
                    fd: fd(7),
                    pipe_size: 65536,
                    grow_refused: false,
                    pipe_grows: 2,
                    pipe_grow_refused: 0,
                    sink: sink("/l/a.log", 8),
                }),
                StreamState::Console(Box::new(ConsoleState {
                    name: "serial0".into(),
                    domain,
                    guest: GuestState::Listen {
                        path: "/l/serial0.sock".into(),
                        listener: fd(9),
                    },
                    guest_conn: Some(fd(10)),
                    tcp: Some(("127.0.0.1:0".into(), fd(11))),
                    unix: Some(("/l/serial0.sub".into(), fd(12))),
                    protocol: ConsoleProtocol::Telnet,
                    write: WritePolicy::Exclusive,
                    replay_limit: 16384,
                    max_subscribers: 32,
                    queue_limit: 1 << 20,
                    sink: sink("/l/console.log", 13),
                    input: b"ls\r".to_vec(),
                    replay: b"login: ".to_vec(),
                    subscribers: vec![SubscriberState {
                        id: 41,
                        peer: "127.0.0.1:5555".into(),
                        since_ms: 1_700_000_000_002,
                        tcp: true,
                        fd: fd(14),
                        protocol: ConsoleProtocol::Telnet,
                        decoder: telnet::Decoder::default(),
                        unsent: b"queued".to_vec(),
                        bytes_sent: 99,
                        told_read_only: true,
                        role: crate::console::Role::ReadWrite,
                        ext: vec![SubscriberExt::Owner(1000), SubscriberExt::Spy],
                    }],
                    slow_disconnects: 1,
                    refused: 2,
                    guest_connects: 3,
                    access: crate::console::Access {
                        tcp_write: true,
                        read_write: vec![crate::console::access::Principal {
                            written: "alice".into(),
                            group: false,
                            id: Some(1000),
                        }],
                        read_only: vec![crate::console::access::Principal {
                            written: "@100".into(),
                            group: true,
                            id: Some(100),
                        }],
                    },
                    notices: crate::console::Notices {
                        subscribers: false,
                        mark_log: true,
                    },
                    ext: vec![],
                })),
            ],
        }],
        connections: vec![ConnState {
            fd: fd(15),
            endpoint: ConnEndpoint::Admin,
            mode: ConnMode::AwaitingReexec,
            pending: vec![0, 0],
        }],
        virtlogd: Some(ListenerState {
            fd: fd(16),
            path: "/run/libvirt/virtlogd-sock".into(),
            owned: false,
        }),
        ext: vec![StateExt::ConsoleSocket(ListenerState {
            fd: fd(17),
            path: "/run/logd/logd-console.sock".into(),
            owned: true,
        })],
    }
}

const TOKEN: [u8; 16] = *b"0123456789abcdef";

#[test]
fn a_state_reads_back_in_its_writers_child() {
    let s = sample();
    let bytes = encode(&s, TOKEN).unwrap();
    let back = decode(&bytes, std::process::id(), TOKEN).unwrap();
    assert_eq!(back, s);
}

#[test]
fn a_state_from_another_process_or_reexec_is_refused() {
    let bytes = encode(&sample(), TOKEN).unwrap();
    let e = decode(&bytes, std::process::id() + 1, TOKEN).unwrap_err();
    assert!(matches!(e, StateError::WrongParent { .. }), "{e}");
    assert!(e.to_string().contains("not by this process's parent"));
    let e = decode(&bytes, std::process::id(), *b"fedcba9876543210").unwrap_err();
    assert!(matches!(e, StateError::BadToken), "{e}");
}

#[test]
fn garbage_truncation_and_unknown_versions_are_refused_with_a_clear_error() {
    let pid = std::process::id();
    assert!(matches!(
        decode(b"hello world", pid, TOKEN),
        Err(StateError::BadMagic)
    ));
    let bytes = encode(&sample(), TOKEN).unwrap();
    for cut in [10, bytes.len() / 2, bytes.len() - 1] {
        let e = decode(&bytes[..cut], pid, TOKEN).unwrap_err();
        assert!(matches!(e, StateError::Decode(_)), "cut at {cut}: {e}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        decode(&longer, pid, TOKEN),
        Err(StateError::Decode(_))
    ));
    // A state from a future logd: refused, naming the versions this one reads.
    let header = Header {
        magic: MAGIC,
        version: VERSION + 1,
        pid,
        token: TOKEN,
    };
    let mut future = codec::encode_large(&header).unwrap();
    future.extend_from_slice(&[1, 2, 3]);
    let e = decode(&future, pid, TOKEN).unwrap_err();
    assert!(matches!(e, StateError::Unsupported { found } if found == VERSION + 1));
    assert!(e.to_string().contains("reads versions 1 to"), "{e}");
}

/// The sample as a state of version 4 reads: no extensions.
fn sample_from_v4() -> State {
    let mut s = sample();
    s.ext.clear();
    for d in &mut s.domains {
        for st in &mut d.streams {
            if let StreamState::Console(c) = st {
                c.ext.clear();
                for sub in &mut c.subscribers {
                    sub.ext.clear();
                }
            }
        }
    }
    s
}

/// The sample as a state of version 3 reads: the consoles with the default notices.
fn sample_from_v3() -> State {
    let mut s = sample_from_v4();
    for d in &mut s.domains {
        for st in &mut d.streams {
            if let StreamState::Console(c) = st {
                c.notices = crate::console::Notices::default();
            }
        }
    }
    s
}

/// The sample as a state of version 2 reads: the console with the default access, its TCP
/// subscriber read-only.
fn sample_from_v2() -> State {
    let mut s = sample_from_v3();
    for d in &mut s.domains {
        for st in &mut d.streams {
            if let StreamState::Console(c) = st {
                c.access = crate::console::Access::default();
                for sub in &mut c.subscribers {
                    sub.role = crate::console::Role::ReadOnly;
                }
            }
        }
    }
    s
}

/// The sample as a state of version 1 reads: no virtlogd listener.
fn sample_from_v1() -> State {
    let mut s = sample_from_v2();
    s.virtlogd = None;
    s
}

/// The pinned body of an earlier version (written when it was current, from the sample of
/// then), read by `decode` as a successor reads it.
fn read_pinned(version: u32) -> State {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("integration/fixtures/state-v{version}.bin"));
    let body = std::fs::read(&path).expect("a pinned state fixture");
    let header = Header {
        magic: MAGIC,
        version,
        pid: std::process::id(),
        token: TOKEN,
    };
    let mut bytes = codec::encode_large(&header).unwrap();
    bytes.extend_from_slice(&body);
    decode(&bytes, std::process::id(), TOKEN).unwrap()
}

/// Checks (or, with LOGD_BLESS=1, writes) the pinned bytes of one format version.
fn pinned(version: u32, body: &[u8]) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("integration/fixtures/state-v{version}.bin"));
    if std::env::var_os("LOGD_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, body).unwrap();
    }
    let fixture = std::fs::read(&path).expect("a pinned state fixture");
    assert_eq!(
        fixture, body,
        "version {version}'s encoding changed: bump VERSION and keep a conversion"
    );
    fixture
}

/// The bytes of each format version are pinned: a change to a type that would make this
/// binary misread a state written by an earlier release fails here. (Bless the current
/// version's fixture with LOGD_BLESS=1 only when that version is new; an earlier version's
/// fixture is never written again.)
#[test]
fn the_current_version_is_pinned() {
    let fixture = pinned(VERSION, &codec::encode_large(&sample()).unwrap());
    let (state, used): (State, usize) = codec::decode_large(&fixture).unwrap();
    assert_eq!(used, fixture.len());
    assert_eq!(state, sample());
}

#[test]
fn every_earlier_version_still_reads() {
    assert_eq!(read_pinned(1), sample_from_v1());
    assert_eq!(read_pinned(2), sample_from_v2());
    assert_eq!(read_pinned(3), sample_from_v3());
    assert_eq!(read_pinned(4), sample_from_v4());
}

#[test]
fn carried_fds_lose_cloexec_and_come_back_once_and_only_as_themselves() {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut c = Carrier::out();
    let fa = c.fd(&a);
    let fb = c.fd(&b);
    assert_eq!(c.finish().unwrap(), 2);
    let flags = FdFlag::from_bits_truncate(fcntl(&a, FcntlArg::F_GETFD).unwrap());
    assert!(!flags.contains(FdFlag::FD_CLOEXEC));
    let mut back = Carrier::back();
    back.fd(&a);
    back.finish().unwrap();
    let flags = FdFlag::from_bits_truncate(fcntl(&a, FcntlArg::F_GETFD).unwrap());
    assert!(flags.contains(FdFlag::FD_CLOEXEC));

    let inherited = Inherited::up_to(1024);
    // The wrong file under a right number is refused and left open.
    let wrong = Fd {
        ino: fa.ino + 1,
        ..fa
    };
    assert!(matches!(
        inherited.take(&wrong),
        Err(StateError::FdMismatch { .. })
    ));
    assert!(fcntl(&a, FcntlArg::F_GETFD).is_ok());
    let inherited = Inherited::up_to(1024);
    let owned = inherited.take(&fb).unwrap();
    std::mem::forget(b); // `owned` is its owner now
    assert!(matches!(
        inherited.take(&fb),
        Err(StateError::FdTwice { .. })
    ));
    drop(owned);
    let _ = fa;
}
