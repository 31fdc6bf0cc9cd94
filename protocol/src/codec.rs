//! Frames: a 4-byte big-endian payload length, then the payload.
//!
//! The payload is one message encoded by [`encode`] and read back by [`decode`]; those two
//! functions are the only code that knows the encoding (bincode 2, standard configuration:
//! little-endian, variable-length integers), so it can be swapped in one place.
//!
//! Limits are checked on the length prefix, before a single byte of payload is buffered, so a
//! hostile length costs the daemon nothing.

use bytes::{Buf, BytesMut};
use serde::{de::DeserializeOwned, Serialize};

/// Bytes in the length prefix.
pub const HEADER_LEN: usize = 4;
/// The most data one `ReadLog` returns.
pub const MAX_READ_LEN: u64 = 4 * 1024 * 1024;
/// The largest frame a client may send (requests are small; `AppendLog` carries at most 64 KiB).
pub const MAX_REQUEST_FRAME: usize = 128 * 1024;
/// The largest frame the daemon sends: a full `ReadLog` answer plus room for its fields.
pub const MAX_RESPONSE_FRAME: usize = MAX_READ_LEN as usize + 64 * 1024;
/// The largest frame on the admin socket (a snapshot of 10,000 domains fits with room).
pub const MAX_ADMIN_FRAME: usize = 64 * 1024 * 1024;
/// The most fds accepted with one frame; more is a protocol error (and they are closed).
pub const MAX_FDS_PER_FRAME: usize = 4;

/// What can go wrong with bytes on the wire.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("cannot encode message: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("malformed frame: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("malformed frame: {0} trailing bytes after the message")]
    TrailingBytes(usize),
    #[error("peer closed the connection in the middle of a frame ({0} bytes pending)")]
    Truncated(usize),
    #[error("peer sent {got} fds with a frame that carries {expected}")]
    UnexpectedFds { got: usize, expected: usize },
    #[error("peer sent more fds than the limit of {MAX_FDS_PER_FRAME} in one message")]
    TooManyFds,
    #[error("I/O error on the socket: {0}")]
    Io(#[from] std::io::Error),
}

fn config() -> impl bincode::config::Config {
    // The limit also bounds any length claimed inside a payload (a Vec of 2^60 elements); the
    // frame limits, checked before any payload is read, are the tighter ones.
    bincode::config::standard().with_limit::<MAX_ADMIN_FRAME>()
}

/// Encodes one message (payload only, no length prefix).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, ProtocolError> {
    Ok(bincode::serde::encode_to_vec(msg, config())?)
}

/// Decodes one message from a whole payload; bytes left over are an error.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ProtocolError> {
    let (msg, used) = bincode::serde::decode_from_slice(payload, config())?;
    if used != payload.len() {
        return Err(ProtocolError::TrailingBytes(payload.len() - used));
    }
    Ok(msg)
}

/// The largest blob [`encode_large`] and [`decode_large`] handle: the state one logd process
/// hands to the next at a re-exec (subscriber queues and replay rings included).
pub const MAX_LARGE: usize = 1 << 30;

fn large_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_LARGE>()
}

/// [`encode`] for a blob of up to [`MAX_LARGE`] bytes (not a frame: nothing on a socket).
pub fn encode_large<T: Serialize>(msg: &T) -> Result<Vec<u8>, ProtocolError> {
    let v = bincode::serde::encode_to_vec(msg, large_config())?;
    if v.len() > MAX_LARGE {
        return Err(ProtocolError::FrameTooLarge {
            len: v.len(),
            max: MAX_LARGE,
        });
    }
    Ok(v)
}

/// Decodes one value from the front of `bytes` (up to [`MAX_LARGE`]); returns it and the bytes
/// it used, so a header can be read before the body it announces.
pub fn decode_large<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), ProtocolError> {
    Ok(bincode::serde::decode_from_slice(bytes, large_config())?)
}

/// Encodes one message as a whole frame (length prefix and payload), refusing to build a frame
/// larger than `max`.
pub fn encode_frame<T: Serialize>(msg: &T, max: usize) -> Result<Vec<u8>, ProtocolError> {
    let mut frame = vec![0u8; HEADER_LEN];
    bincode::serde::encode_into_std_write(msg, &mut frame, config())?;
    let len = frame.len() - HEADER_LEN;
    if len > max {
        return Err(ProtocolError::FrameTooLarge { len, max });
    }
    frame[..HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(frame)
}

/// Splits one complete frame's payload off the front of `buf`, if a whole frame is there.
///
/// Returns `Ok(None)` when more bytes are needed. The length prefix is checked against `max`
/// as soon as its 4 bytes are in, so an oversized frame is refused before it is buffered.
pub fn split_frame(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, ProtocolError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > max {
        return Err(ProtocolError::FrameTooLarge { len, max });
    }
    if buf.len() < HEADER_LEN + len {
        // Reserve what the frame still needs; bounded by `max` above.
        buf.reserve(HEADER_LEN + len - buf.len());
        return Ok(None);
    }
    buf.advance(HEADER_LEN);
    Ok(Some(buf.split_to(len)))
}

/// [`split_frame`] then [`decode`].
pub fn decode_frame<T: DeserializeOwned>(
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<T>, ProtocolError> {
    match split_frame(buf, max)? {
        Some(payload) => decode(&payload).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::*;
    use proptest::prelude::*;

    fn sample_requests() -> Vec<Request> {
        let domain = DomainId::from_name("qemu", "vm1");
        vec![
            Request::OpenLog {
                domain: domain.clone(),
                path: "vm1/console.log".into(),
                flags: OpenFlags { truncate: true },
            },
            Request::GetPosition { path: "a".into() },
            Request::ReadLog {
                path: "a".into(),
                from: ReadFrom::Position(Position {
                    inode: 1,
                    offset: 2,
                    birth: 0,
                }),
                max_len: 10,
            },
            Request::AppendLog {
                domain,
                path: "a".into(),
                message: b"hello\n".to_vec(),
            },
        ]
    }

    #[test]
    fn requests_round_trip_through_frames() {
        for req in sample_requests() {
            let frame = encode_frame(&req, MAX_REQUEST_FRAME).unwrap();
            let mut buf = BytesMut::from(&frame[..]);
            let back: Request = decode_frame(&mut buf, MAX_REQUEST_FRAME).unwrap().unwrap();
            assert_eq!(back, req);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn hello_layout_is_fixed() {
        // The handshake's bytes must never change: 4 magic bytes, then the version as a varint.
        let bytes = encode(&Hello::current()).unwrap();
        assert_eq!(bytes, vec![b'L', b'O', b'G', b'D', PROTOCOL_VERSION as u8]);
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let frame = encode_frame(&Request::GetPosition { path: "x".into() }, 1024).unwrap();
        for cut in 0..frame.len() {
            let mut buf = BytesMut::from(&frame[..cut]);
            assert!(decode_frame::<Request>(&mut buf, 1024).unwrap().is_none());
        }
    }

    #[test]
    fn oversized_length_is_refused_before_buffering() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            split_frame(&mut buf, MAX_REQUEST_FRAME),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
        assert!(buf.capacity() < 1024 * 1024);
    }

    #[test]
    fn trailing_bytes_are_malformed() {
        let mut payload = encode(&Request::GetPosition { path: "x".into() }).unwrap();
        payload.push(0);
        assert!(matches!(
            decode::<Request>(&payload),
            Err(ProtocolError::TrailingBytes(1))
        ));
    }

    #[test]
    fn encode_frame_respects_limit() {
        let req = Request::AppendLog {
            domain: DomainId::from_name("qemu", "x"),
            path: "a".into(),
            message: vec![0; 2000],
        };
        assert!(matches!(
            encode_frame(&req, 1000),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut buf = BytesMut::from(&bytes[..]);
            let _ = decode_frame::<Request>(&mut buf, MAX_REQUEST_FRAME);
            let _ = decode::<Response>(&bytes);
        }

        #[test]
        fn log_data_round_trips(data in proptest::collection::vec(any::<u8>(), 0..4096), inode: u64, offset: u64, gap: bool) {
            let resp = Response::LogData { data, next: Position { inode, offset, birth: inode ^ offset }, gap };
            let frame = encode_frame(&resp, MAX_RESPONSE_FRAME).unwrap();
            let mut buf = BytesMut::from(&frame[..]);
            let back: Response = decode_frame(&mut buf, MAX_RESPONSE_FRAME).unwrap().unwrap();
            prop_assert_eq!(back, resp);
        }
    }
}

#[cfg(test)]
mod documented_examples {
    //! The examples in docs/protocol.md, byte for byte.
    use super::*;
    use crate::message::*;

    #[test]
    fn get_position_request() {
        let f = encode_frame(
            &Request::GetPosition {
                path: "vm1.log".into(),
            },
            MAX_REQUEST_FRAME,
        )
        .unwrap();
        assert_eq!(f, b"\x00\x00\x00\x09\x01\x07vm1.log");
    }

    #[test]
    fn position_response() {
        let f = encode_frame(
            &Response::Position(Position {
                inode: 300,
                offset: 5,
                birth: 7,
            }),
            MAX_RESPONSE_FRAME,
        )
        .unwrap();
        assert_eq!(f, b"\x00\x00\x00\x06\x02\xfb\x2c\x01\x05\x07");
    }

    #[test]
    fn error_response() {
        let e = Response::Error(WireError::new(ErrorCode::Busy, "busy"));
        let f = encode_frame(&e, MAX_RESPONSE_FRAME).unwrap();
        assert_eq!(f, b"\x00\x00\x00\x07\x04\x07\x04busy");
    }

    #[test]
    fn open_log_request() {
        let req = Request::OpenLog {
            domain: DomainId {
                driver: "qemu".into(),
                uuid: Uuid::from_u128(1),
                name: "vm".into(),
            },
            path: "a".into(),
            flags: OpenFlags { truncate: true },
        };
        let f = encode_frame(&req, MAX_REQUEST_FRAME).unwrap();
        let mut want = b"\x00\x00\x00\x1d\x00\x04qemu\x10".to_vec();
        want.extend_from_slice(&[0; 15]);
        want.extend_from_slice(b"\x01\x02vm\x01a\x01");
        assert_eq!(f, want);
    }

    #[test]
    fn add_console_persistent_request_is_add_console_under_index_7() {
        let spec = ConsoleSpec::new(
            DomainId {
                driver: "qemu".into(),
                uuid: Uuid::from_u128(1),
                name: "vm".into(),
            },
            "s0",
            GuestSide::Listen { path: "s".into() },
            "l",
        );
        let plain = encode_frame(&Request::AddConsole(spec.clone()), MAX_REQUEST_FRAME).unwrap();
        let kept = encode_frame(&Request::AddConsolePersistent(spec), MAX_REQUEST_FRAME).unwrap();
        let mut want = b"\x00\x00\x00\x2a\x07\x04qemu\x10".to_vec();
        want.extend_from_slice(&[0; 15]);
        want.extend_from_slice(b"\x01\x02vm\x02s0\x00\x01s\x01l\x00\x00\x00\x00\x00\x00\x00\x00");
        assert_eq!(kept, want);
        assert_eq!(plain[4], 0x04);
        assert_eq!(
            plain[5..],
            kept[5..],
            "the same fields after the variant index"
        );
    }

    #[test]
    fn add_console_with_request_is_the_spec_then_the_options_under_index_8() {
        let spec = ConsoleSpec::new(
            DomainId {
                driver: "qemu".into(),
                uuid: Uuid::from_u128(1),
                name: "vm".into(),
            },
            "s0",
            GuestSide::Listen { path: "s".into() },
            "l",
        );
        let plain = encode_frame(&Request::AddConsole(spec.clone()), MAX_REQUEST_FRAME).unwrap();
        let req = Request::AddConsoleWith {
            spec,
            options: vec![
                ConsoleOption::TcpWrite,
                ConsoleOption::ReadWrite(vec!["alice".into(), "@wheel".into()]),
                ConsoleOption::Persist,
            ],
        };
        let f = encode_frame(&req, MAX_REQUEST_FRAME).unwrap();
        let mut want = b"\x00\x00\x00\x3c\x08\x04qemu\x10".to_vec();
        want.extend_from_slice(&[0; 15]);
        want.extend_from_slice(b"\x01\x02vm\x02s0\x00\x01s\x01l\x00\x00\x00\x00\x00\x00\x00\x00");
        want.extend_from_slice(b"\x03\x01\x02\x02\x05alice\x06@wheel\x00");
        assert_eq!(f, want);
        assert_eq!(plain[5..], f[5..plain.len()], "the spec as AddConsole's");
        let notices_spec = || {
            ConsoleSpec::new(
                DomainId {
                    driver: "qemu".into(),
                    uuid: Uuid::from_u128(1),
                    name: "vm".into(),
                },
                "s0",
                GuestSide::Listen { path: "s".into() },
                "l",
            )
        };
        // The notice options: variants 4 and 5, no payload.
        let notices = Request::AddConsoleWith {
            spec: notices_spec(),
            options: vec![ConsoleOption::NoNotices, ConsoleOption::MarkLog],
        };
        let n = encode_frame(&notices, MAX_REQUEST_FRAME).unwrap();
        assert_eq!(n[5..plain.len()], plain[5..]);
        assert_eq!(n[plain.len()..], [2, 4, 5]);
        // The TLS options: variants 6 to 10, each with its string or list.
        let tls = Request::AddConsoleWith {
            spec: notices_spec(),
            options: vec![
                ConsoleOption::Tls("4556".into()),
                ConsoleOption::TlsDir("pki".into()),
                ConsoleOption::TlsReadWrite(vec!["CN=a".into()]),
                ConsoleOption::TlsReadOnly(vec![]),
                ConsoleOption::TlsAnonymous("read-only".into()),
            ],
        };
        let t = encode_frame(&tls, MAX_REQUEST_FRAME).unwrap();
        assert_eq!(
            t[plain.len()..],
            *b"\x05\x06\x044556\x07\x03pki\x08\x01\x04CN=a\x09\x00\x0a\x09read-only"
        );
        // An option this crate does not know (a later variant) does not decode.
        let mut future = f[4..].to_vec();
        *future.last_mut().unwrap() = 11;
        assert!(decode::<Request>(&future).is_err());
    }

    #[test]
    fn reexec_requests() {
        use crate::admin::AdminRequest;
        let f = encode_frame(&AdminRequest::Reexec { binary: None }, MAX_REQUEST_FRAME).unwrap();
        assert_eq!(f, b"\x00\x00\x00\x02\x06\x00");
        let f = encode_frame(
            &AdminRequest::Reexec {
                binary: Some("/usr/bin/logd".into()),
            },
            MAX_REQUEST_FRAME,
        )
        .unwrap();
        assert_eq!(f, b"\x00\x00\x00\x10\x06\x01\x0d/usr/bin/logd");
    }

    #[test]
    fn reexeced_response() {
        use crate::admin::{AdminResponse, ReexecReport};
        let r = AdminResponse::Reexeced(ReexecReport {
            at_ms: 1795985682597,
            from_pid: 1234,
            to_pid: 1300,
            error: None,
            blackout_us: 4100,
            total_us: 9000,
            domains: 3,
            fds: 12,
        });
        let f = encode_frame(&r, MAX_ADMIN_FRAME).unwrap();
        assert_eq!(
            f,
            b"\x00\x00\x00\x19\x05\xfd\xa5\xb0\x16\x29\xa2\x01\x00\x00\xfb\xd2\x04\xfb\x14\x05\x00\xfb\x04\x10\xfb\x28\x23\x03\x0c"
        );
    }
}
