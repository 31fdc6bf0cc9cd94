//! virtlogd's RPC, as libvirtd speaks it: libvirt's virNet framing, XDR bodies, and the four
//! procedures of program `0x87539319` version 1 (libvirt's `log_protocol.x`).
//!
//! logd serves this on its virtlogd socket so that libvirtd uses logd unchanged. Everything on
//! that wire is here: the numbers, the limits, the frame header, the calls and replies, and the
//! error body. `docs/protocol.md` ("The virtlogd socket") describes the same bytes in prose.
//!
//! A message is:
//! - a length word (big-endian `u32`) that counts itself;
//! - a [`Header`] of six `u32` words: program, version, procedure, type, serial, status;
//! - an XDR body (RFC 4506): big-endian, every item padded to 4 bytes, a string is its length
//!   word then its bytes, a uuid is `opaque[16]`, a `hyper` is 8 bytes.
//!
//! A reply that passes fds has the type [`TYPE_REPLY_WITH_FDS`], and its body starts with the
//! number of fds (one word). Each fd then follows the message as a 1-byte message of its own
//! carrying it with SCM_RIGHTS. An error reply has the status [`STATUS_ERROR`] and a
//! [`VirError`] body.
//!
//! Nothing here does I/O: the daemon frames and sends, a client encodes calls and decodes
//! replies, both with these functions.

/// virtlogd's program number.
pub const PROGRAM: u32 = 0x8753_9319;
/// The one version of the program.
pub const PROGRAM_VERSION: u32 = 1;

/// `DOMAIN_OPEN_LOG_FILE`: open a log, get the write end of its pipe.
pub const PROC_OPEN_LOG_FILE: u32 = 1;
/// `DOMAIN_GET_LOG_FILE_POSITION`: the end of a log, once its pipe is drained.
pub const PROC_GET_LOG_FILE_POSITION: u32 = 2;
/// `DOMAIN_READ_LOG_FILE`: read a log across its rotated files.
pub const PROC_READ_LOG_FILE: u32 = 3;
/// `DOMAIN_APPEND_LOG_FILE`: append a message to a log, open or not.
pub const PROC_APPEND_LOG_FILE: u32 = 4;

/// `OPEN_LOG_FILE`'s flag: remove the log's old contents and backups first.
pub const OPEN_TRUNCATE: u32 = 1;

/// Message types (`virNetMessageType`).
pub const TYPE_CALL: u32 = 0;
pub const TYPE_REPLY: u32 = 1;
pub const TYPE_MESSAGE: u32 = 2;
pub const TYPE_STREAM: u32 = 3;
pub const TYPE_CALL_WITH_FDS: u32 = 4;
pub const TYPE_REPLY_WITH_FDS: u32 = 5;

/// Message statuses (`virNetMessageStatus`).
pub const STATUS_OK: u32 = 0;
pub const STATUS_ERROR: u32 = 1;

/// Bytes in the length word.
pub const LEN_WORD: usize = 4;
/// Bytes in the header.
pub const HEADER_LEN: usize = 24;
/// libvirt's largest message, the length word not counted (`VIR_NET_MESSAGE_MAX`).
pub const LIBVIRT_MESSAGE_MAX: usize = 16 * 1024 * 1024;
/// The longest string of the log protocol (`VIR_LOG_MANAGER_PROTOCOL_STRING_MAX`), and the
/// most `READ_LOG_FILE` returns.
pub const STRING_MAX: usize = 4 * 1024 * 1024;
/// The largest call logd accepts, the length word not counted. libvirtd's calls are a few
/// hundred bytes (paths, a domain name, a one-line message); this is libvirt's legacy payload
/// limit (`VIR_NET_MESSAGE_LEGACY_PAYLOAD_MAX`), far below its 16 MiB, so a hostile length
/// costs little. A call over it is refused.
pub const MAX_CALL: usize = 256 * 1024;
/// The largest reply logd sends: a full read plus its header and length.
pub const MAX_REPLY: usize = STRING_MAX + 1024;

/// libvirt's error levels (`virErrorLevel`).
pub const LEVEL_ERROR: i32 = 2;
/// libvirt's error domains (`virErrorDomain`) that logd reports from.
pub const FROM_RPC: i32 = 7;
pub const FROM_LOGGING: i32 = 63;
/// libvirt's error codes (`virErrorNumber`) that logd uses.
pub const ERR_INTERNAL_ERROR: i32 = 1;
pub const ERR_NO_SUPPORT: i32 = 3;
pub const ERR_INVALID_ARG: i32 = 8;
pub const ERR_OPERATION_FAILED: i32 = 9;
pub const ERR_SYSTEM_ERROR: i32 = 38;
pub const ERR_RPC: i32 = 39;
pub const ERR_OPERATION_INVALID: i32 = 55;
pub const ERR_ACCESS_DENIED: i32 = 88;

/// Why bytes could not be read as a message or a body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XdrError {
    #[error("message length {len} is shorter than the length word and header ({min} bytes)")]
    TooShort { len: u32, min: usize },
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("{what} is truncated: {need} bytes needed, {have} left")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("{what} of {len} bytes exceeds the limit of {max} bytes")]
    StringTooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what} is not UTF-8")]
    NotUtf8 { what: &'static str },
    #[error("{what} contains a NUL byte")]
    Nul { what: &'static str },
    #[error("{0} bytes left over after the arguments")]
    TrailingBytes(usize),
    #[error("bad optional marker {0} (must be 0 or 1)")]
    BadOptional(u32),
}

/// The six words after the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub program: u32,
    pub version: u32,
    pub procedure: u32,
    pub kind: u32,
    pub serial: u32,
    pub status: u32,
}

impl Header {
    /// Reads a header from the first [`HEADER_LEN`] bytes after the length word.
    pub fn decode(bytes: &[u8]) -> Result<Header, XdrError> {
        let mut r = Reader::new(bytes);
        Ok(Header {
            program: r.u32("header")?,
            version: r.u32("header")?,
            procedure: r.u32("header")?,
            kind: r.u32("header")?,
            serial: r.u32("header")?,
            status: r.u32("header")?,
        })
    }

    fn put(&self, w: &mut Writer) {
        for v in [
            self.program,
            self.version,
            self.procedure,
            self.kind,
            self.serial,
            self.status,
        ] {
            w.u32(v);
        }
    }

    /// The reply header to a call with this header.
    pub fn reply(&self, kind: u32, status: u32) -> Header {
        Header {
            kind,
            status,
            ..*self
        }
    }
}

/// Checks a length word: the whole message's size, itself included. Returns the bytes that
/// follow it (header and body), or why the message is refused.
pub fn message_len(word: [u8; 4], max: usize) -> Result<usize, XdrError> {
    let len = u32::from_be_bytes(word);
    if (len as usize) < LEN_WORD + HEADER_LEN {
        return Err(XdrError::TooShort {
            len,
            min: LEN_WORD + HEADER_LEN,
        });
    }
    let rest = len as usize - LEN_WORD;
    if rest > max {
        return Err(XdrError::TooLarge { len: rest, max });
    }
    Ok(rest)
}

/// A domain as the log protocol names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    pub uuid: [u8; 16],
    pub name: String,
}

/// A place in a log: the file's inode and an offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogPosition {
    pub inode: u64,
    pub offset: u64,
}

/// A call's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    OpenLogFile {
        driver: String,
        dom: Domain,
        path: String,
        flags: u32,
    },
    GetLogFilePosition {
        path: String,
        flags: u32,
    },
    ReadLogFile {
        path: String,
        pos: LogPosition,
        maxlen: u64,
        flags: u32,
    },
    AppendLogFile {
        driver: String,
        dom: Domain,
        path: String,
        message: Vec<u8>,
        flags: u32,
    },
}

/// Procedure names, for errors and traces.
pub fn procedure_name(procedure: u32) -> Option<&'static str> {
    Some(match procedure {
        PROC_OPEN_LOG_FILE => "DOMAIN_OPEN_LOG_FILE",
        PROC_GET_LOG_FILE_POSITION => "DOMAIN_GET_LOG_FILE_POSITION",
        PROC_READ_LOG_FILE => "DOMAIN_READ_LOG_FILE",
        PROC_APPEND_LOG_FILE => "DOMAIN_APPEND_LOG_FILE",
        _ => return None,
    })
}

impl Call {
    /// Decodes the arguments of `procedure`. `Ok(None)`: a procedure this program lacks.
    pub fn decode(procedure: u32, body: &[u8]) -> Result<Option<Call>, XdrError> {
        let mut r = Reader::new(body);
        let call = match procedure {
            PROC_OPEN_LOG_FILE => Call::OpenLogFile {
                driver: r.string("driver")?,
                dom: r.domain()?,
                path: r.string("path")?,
                flags: r.u32("flags")?,
            },
            PROC_GET_LOG_FILE_POSITION => Call::GetLogFilePosition {
                path: r.string("path")?,
                flags: r.u32("flags")?,
            },
            PROC_READ_LOG_FILE => Call::ReadLogFile {
                path: r.string("path")?,
                pos: r.position()?,
                maxlen: r.u64("maxlen")?,
                flags: r.u32("flags")?,
            },
            PROC_APPEND_LOG_FILE => Call::AppendLogFile {
                driver: r.string("driver")?,
                dom: r.domain()?,
                path: r.string("path")?,
                message: r.bytes("message")?.to_vec(),
                flags: r.u32("flags")?,
            },
            _ => return Ok(None),
        };
        r.finish()?;
        Ok(Some(call))
    }

    pub fn procedure(&self) -> u32 {
        match self {
            Call::OpenLogFile { .. } => PROC_OPEN_LOG_FILE,
            Call::GetLogFilePosition { .. } => PROC_GET_LOG_FILE_POSITION,
            Call::ReadLogFile { .. } => PROC_READ_LOG_FILE,
            Call::AppendLogFile { .. } => PROC_APPEND_LOG_FILE,
        }
    }

    /// The whole call message, length word included.
    pub fn encode(&self, serial: u32) -> Vec<u8> {
        let mut w = Writer::message(Header {
            program: PROGRAM,
            version: PROGRAM_VERSION,
            procedure: self.procedure(),
            kind: TYPE_CALL,
            serial,
            status: STATUS_OK,
        });
        match self {
            Call::OpenLogFile {
                driver,
                dom,
                path,
                flags,
            } => {
                w.string(driver.as_bytes());
                w.domain(dom);
                w.string(path.as_bytes());
                w.u32(*flags);
            }
            Call::GetLogFilePosition { path, flags } => {
                w.string(path.as_bytes());
                w.u32(*flags);
            }
            Call::ReadLogFile {
                path,
                pos,
                maxlen,
                flags,
            } => {
                w.string(path.as_bytes());
                w.position(pos);
                w.u64(*maxlen);
                w.u32(*flags);
            }
            Call::AppendLogFile {
                driver,
                dom,
                path,
                message,
                flags,
            } => {
                w.string(driver.as_bytes());
                w.domain(dom);
                w.string(path.as_bytes());
                w.string(message);
                w.u32(*flags);
            }
        }
        w.finish()
    }
}

/// A successful reply's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `OPEN_LOG_FILE`: one fd follows the message.
    Opened(LogPosition),
    Position(LogPosition),
    Data(Vec<u8>),
    Appended(i32),
}

impl Reply {
    /// The whole reply message to the call `call`, length word included.
    pub fn encode(&self, call: &Header) -> Vec<u8> {
        let kind = match self {
            Reply::Opened(_) => TYPE_REPLY_WITH_FDS,
            _ => TYPE_REPLY,
        };
        let mut w = Writer::message(call.reply(kind, STATUS_OK));
        match self {
            Reply::Opened(pos) => {
                w.u32(1); // one fd
                w.position(pos);
            }
            Reply::Position(pos) => w.position(pos),
            Reply::Data(data) => w.string(data),
            Reply::Appended(n) => w.i32(*n),
        }
        w.finish()
    }

    /// Decodes a reply body of `procedure` (after the header; for a reply with fds, the fd
    /// count included). Returns the reply and, for `Opened`, the number of fds announced.
    pub fn decode(procedure: u32, body: &[u8]) -> Result<(Reply, u32), XdrError> {
        let mut r = Reader::new(body);
        let out = match procedure {
            PROC_OPEN_LOG_FILE => {
                let nfds = r.u32("fd count")?;
                (Reply::Opened(r.position()?), nfds)
            }
            PROC_GET_LOG_FILE_POSITION => (Reply::Position(r.position()?), 0),
            PROC_READ_LOG_FILE => (Reply::Data(r.bytes("data")?.to_vec()), 0),
            _ => (Reply::Appended(r.u32("ret")? as i32), 0),
        };
        r.finish()?;
        Ok(out)
    }
}

/// libvirt's `virNetMessageError`: what an error reply carries. libvirt shows `message` to the
/// user as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirError {
    pub code: i32,
    pub domain: i32,
    pub message: String,
    pub level: i32,
    pub str1: Option<String>,
    pub int1: i32,
    pub int2: i32,
}

impl VirError {
    /// An error of `code` from `domain`, with `message` (its `str1` too, as libvirt sets it).
    pub fn new(code: i32, domain: i32, message: impl Into<String>) -> VirError {
        let message = message.into();
        VirError {
            code,
            domain,
            str1: Some(message.clone()),
            message,
            level: LEVEL_ERROR,
            int1: -1,
            int2: -1,
        }
    }

    /// The whole error reply to the call with header `call`, length word included.
    pub fn encode(&self, call: &Header) -> Vec<u8> {
        let mut w = Writer::message(call.reply(TYPE_REPLY, STATUS_ERROR));
        w.i32(self.code);
        w.i32(self.domain);
        w.optional_string(Some(&self.message));
        w.i32(self.level);
        w.u32(0); // dom: none
        w.optional_string(self.str1.as_deref());
        w.optional_string(None);
        w.optional_string(None);
        w.i32(self.int1);
        w.i32(self.int2);
        w.u32(0); // net: none
        w.finish()
    }

    /// Decodes an error body (after the header).
    pub fn decode(body: &[u8]) -> Result<VirError, XdrError> {
        let mut r = Reader::new(body);
        let code = r.u32("code")? as i32;
        let domain = r.u32("domain")? as i32;
        let message = r.optional_string("message")?.unwrap_or_default();
        let level = r.u32("level")? as i32;
        if r.optional("dom")? {
            r.string("dom.name")?;
            r.take("dom.uuid", 16)?;
            r.u32("dom.id")?;
        }
        let str1 = r.optional_string("str1")?;
        r.optional_string("str2")?;
        r.optional_string("str3")?;
        let int1 = r.u32("int1")? as i32;
        let int2 = r.u32("int2")? as i32;
        if r.optional("net")? {
            r.string("net.name")?;
            r.take("net.uuid", 16)?;
        }
        r.finish()?;
        Ok(VirError {
            code,
            domain,
            message,
            level,
            str1,
            int1,
            int2,
        })
    }
}

/// Reads XDR items from a body, checking every length against what is left.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn take(&mut self, what: &'static str, n: usize) -> Result<&'a [u8], XdrError> {
        if self.buf.len() < n {
            return Err(XdrError::Truncated {
                what,
                need: n,
                have: self.buf.len(),
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, XdrError> {
        let b = self.take(what, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, XdrError> {
        Ok(((self.u32(what)? as u64) << 32) | self.u32(what)? as u64)
    }

    /// A variable-length opaque or string: its length, its bytes, padding to 4.
    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], XdrError> {
        let len = self.u32(what)? as usize;
        if len > STRING_MAX {
            return Err(XdrError::StringTooLong {
                what,
                len,
                max: STRING_MAX,
            });
        }
        let padded = len.div_ceil(4) * 4;
        if self.buf.len() < padded {
            return Err(XdrError::Truncated {
                what,
                need: padded,
                have: self.buf.len(),
            });
        }
        let data = &self.take(what, padded)?[..len];
        Ok(data)
    }

    fn string(&mut self, what: &'static str) -> Result<String, XdrError> {
        let b = self.bytes(what)?;
        if b.contains(&0) {
            return Err(XdrError::Nul { what });
        }
        String::from_utf8(b.to_vec()).map_err(|_| XdrError::NotUtf8 { what })
    }

    fn optional(&mut self, what: &'static str) -> Result<bool, XdrError> {
        match self.u32(what)? {
            0 => Ok(false),
            1 => Ok(true),
            n => Err(XdrError::BadOptional(n)),
        }
    }

    fn optional_string(&mut self, what: &'static str) -> Result<Option<String>, XdrError> {
        if self.optional(what)? {
            // Error texts may be any bytes: shown, not parsed.
            let b = self.bytes(what)?;
            Ok(Some(String::from_utf8_lossy(b).into_owned()))
        } else {
            Ok(None)
        }
    }

    fn domain(&mut self) -> Result<Domain, XdrError> {
        let uuid = self.take("dom.uuid", 16)?.try_into().expect("16 bytes");
        Ok(Domain {
            uuid,
            name: self.string("dom.name")?,
        })
    }

    fn position(&mut self) -> Result<LogPosition, XdrError> {
        Ok(LogPosition {
            inode: self.u64("pos.inode")?,
            offset: self.u64("pos.offset")?,
        })
    }

    fn finish(self) -> Result<(), XdrError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(XdrError::TrailingBytes(self.buf.len()))
        }
    }
}

/// Writes a message: the length word (filled in by `finish`), the header, XDR items.
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn message(header: Header) -> Writer {
        let mut w = Writer {
            buf: Vec::with_capacity(64),
        };
        w.u32(0);
        header.put(&mut w);
        w
    }

    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn string(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.buf.extend_from_slice(b);
        let pad = b.len().div_ceil(4) * 4 - b.len();
        self.buf.extend_from_slice(&[0; 3][..pad]);
    }

    fn optional_string(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.u32(1);
                self.string(s.as_bytes());
            }
            None => self.u32(0),
        }
    }

    fn domain(&mut self, d: &Domain) {
        self.buf.extend_from_slice(&d.uuid);
        self.string(d.name.as_bytes());
    }

    fn position(&mut self, p: &LogPosition) {
        self.u64(p.inode);
        self.u64(p.offset);
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&len.to_be_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split(msg: &[u8]) -> (Header, &[u8]) {
        let rest = message_len(msg[..4].try_into().unwrap(), usize::MAX).unwrap();
        assert_eq!(rest, msg.len() - 4);
        (Header::decode(&msg[4..28]).unwrap(), &msg[28..])
    }

    /// Bytes written out by hand from log_protocol.x, not by the encoder.
    #[test]
    fn an_open_call_has_the_documented_bytes() {
        let call = Call::OpenLogFile {
            driver: "qemu".into(),
            dom: Domain {
                uuid: [0xab; 16],
                name: "vm1".into(),
            },
            path: "/var/log/x.log".into(),
            flags: OPEN_TRUNCATE,
        };
        let msg = call.encode(7);
        let mut want = Vec::new();
        for w in [0u32, PROGRAM, 1, 1, 0, 7, 0] {
            want.extend_from_slice(&w.to_be_bytes());
        }
        want.extend_from_slice(&[0, 0, 0, 4, b'q', b'e', b'm', b'u']);
        want.extend_from_slice(&[0xab; 16]);
        want.extend_from_slice(&[0, 0, 0, 3, b'v', b'm', b'1', 0]);
        want.extend_from_slice(&[0, 0, 0, 14]);
        want.extend_from_slice(b"/var/log/x.log\0\0");
        want.extend_from_slice(&[0, 0, 0, 1]);
        let len = want.len() as u32;
        want[..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(msg, want);
        let (h, body) = split(&msg);
        assert_eq!(Call::decode(h.procedure, body).unwrap(), Some(call));
    }

    #[test]
    fn an_open_reply_announces_one_fd() {
        let call = Header {
            program: PROGRAM,
            version: 1,
            procedure: PROC_OPEN_LOG_FILE,
            kind: TYPE_CALL,
            serial: 9,
            status: 0,
        };
        let pos = LogPosition {
            inode: 1 << 40,
            offset: 5,
        };
        let msg = Reply::Opened(pos).encode(&call);
        assert_eq!(msg.len(), 4 + 24 + 4 + 16);
        let (h, body) = split(&msg);
        assert_eq!((h.kind, h.serial, h.status), (TYPE_REPLY_WITH_FDS, 9, 0));
        assert_eq!(&body[..4], &[0, 0, 0, 1]);
        assert_eq!(
            Reply::decode(PROC_OPEN_LOG_FILE, body).unwrap(),
            (Reply::Opened(pos), 1)
        );
    }

    #[test]
    fn an_error_reply_round_trips_with_libvirts_layout() {
        let call = Header {
            program: PROGRAM,
            version: 1,
            procedure: 77,
            kind: TYPE_CALL,
            serial: 3,
            status: 0,
        };
        let e = VirError::new(ERR_RPC, FROM_RPC, "unknown procedure: 77");
        let msg = e.encode(&call);
        let (h, body) = split(&msg);
        assert_eq!(
            (h.kind, h.status, h.procedure),
            (TYPE_REPLY, STATUS_ERROR, 77)
        );
        // code, domain, then the optional message: marker 1, length 21.
        assert_eq!(
            &body[..16],
            &[0, 0, 0, 39, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 21]
        );
        assert_eq!(VirError::decode(body).unwrap(), e);
    }

    #[test]
    fn length_words_are_checked_before_anything_is_read() {
        assert!(matches!(
            message_len(27u32.to_be_bytes(), MAX_CALL),
            Err(XdrError::TooShort { .. })
        ));
        assert_eq!(message_len(28u32.to_be_bytes(), MAX_CALL), Ok(24));
        assert!(matches!(
            message_len(u32::MAX.to_be_bytes(), MAX_CALL),
            Err(XdrError::TooLarge { .. })
        ));
    }

    #[test]
    fn bad_bodies_are_refused_with_the_field_named() {
        // A string whose length runs past the body.
        let mut body = vec![0, 0, 0, 200];
        body.extend_from_slice(b"abc");
        let e = Call::decode(PROC_GET_LOG_FILE_POSITION, &body).unwrap_err();
        assert_eq!(e.to_string(), "path is truncated: 200 bytes needed, 3 left");
        // A string over the protocol's maximum.
        let body = (STRING_MAX as u32 + 1).to_be_bytes();
        assert!(matches!(
            Call::decode(PROC_GET_LOG_FILE_POSITION, &body),
            Err(XdrError::StringTooLong { what: "path", .. })
        ));
        // Bytes after the last argument.
        let mut body = vec![0, 0, 0, 1, b'x', 0, 0, 0, 0, 0, 0, 0];
        body.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(
            Call::decode(PROC_GET_LOG_FILE_POSITION, &body),
            Err(XdrError::TrailingBytes(4))
        );
        // Not UTF-8, and NUL.
        let body = [0, 0, 0, 1, 0xff, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            Call::decode(PROC_GET_LOG_FILE_POSITION, &body),
            Err(XdrError::NotUtf8 { .. })
        ));
        let body = [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            Call::decode(PROC_GET_LOG_FILE_POSITION, &body),
            Err(XdrError::Nul { .. })
        ));
        // A procedure the program lacks.
        assert_eq!(Call::decode(99, &[]), Ok(None));
    }

    fn text() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9/._ -]{0,40}"
    }

    proptest! {
        #[test]
        fn calls_round_trip(
            driver in text(), name in text(), path in text(), uuid in any::<[u8; 16]>(),
            message in proptest::collection::vec(any::<u8>(), 0..64),
            inode in any::<u64>(), offset in any::<u64>(), maxlen in any::<u64>(),
            flags in any::<u32>(), serial in any::<u32>(),
        ) {
            let dom = Domain { uuid, name };
            let calls = [
                Call::OpenLogFile { driver: driver.clone(), dom: dom.clone(), path: path.clone(), flags },
                Call::GetLogFilePosition { path: path.clone(), flags },
                Call::ReadLogFile { path: path.clone(), pos: LogPosition { inode, offset }, maxlen, flags },
                Call::AppendLogFile { driver, dom, path, message, flags },
            ];
            for call in calls {
                let msg = call.encode(serial);
                prop_assert_eq!(msg.len() % 4, 0);
                let (h, body) = split(&msg);
                prop_assert_eq!(h.serial, serial);
                prop_assert_eq!(Call::decode(h.procedure, body).unwrap(), Some(call.clone()));
                // Every cut of the body is an error, never a panic or a wrong call.
                for cut in 0..body.len() {
                    prop_assert!(Call::decode(h.procedure, &body[..cut]).is_err());
                }
            }
        }

        #[test]
        fn garbage_never_panics(procedure in 0u32..6, body in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = Call::decode(procedure, &body);
            let _ = VirError::decode(&body);
            let _ = Reply::decode(procedure, &body);
        }
    }
}
