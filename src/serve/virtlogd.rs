//! The virtlogd socket: libvirt's virtlogd RPC, served so that libvirtd uses logd unchanged.
//!
//! The bytes are [`logd_protocol::virtlogd`]'s. The requests are the main socket's: each of the
//! four procedures is one of [`Shared`]'s log requests, on the same registry, so a log opened by
//! libvirtd is in the one path table (a path open through either socket is busy for both), and
//! shows in `ps`, `top`, `tail`, events and metrics like any other.
//!
//! A connection:
//! 1. is served only if the peer's uid is the daemon's (a root logd serves uid 0 only, as
//!    virtlogd does). Another peer's first call is answered with an `ACCESS_DENIED` error, then
//!    the connection is closed. `max_clients` and `max_clients_per_peer` apply as on the main
//!    socket, with the same answer.
//! 2. has no handshake and no keepalive: libvirtd connects, calls, and leaves. Nor is it timed
//!    out when idle: only the daemon's own uid may connect, and libvirtd holds a connection
//!    for as long as it starts a domain.
//! 3. is parked and carried by a re-exec between calls, like every other connection.
//!
//! Bad input costs only the connection that sent it. A length under the header's size closes
//! it. A message over [`MAX_CALL`], a wrong program or version, or a message that is not a call
//! gets an error reply (with the offending header's serial) and is closed. A call of an unknown
//! procedure, or whose arguments do not decode, gets an error reply, and the connection goes on:
//! its framing is intact.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use logd_protocol::virtlogd::{
    self as wire, Call, Header, LogPosition, Reply, VirError, XdrError, MAX_CALL,
};
use logd_protocol::{fdpass, DomainId, ErrorCode, Position, ReadFrom, Uuid, WireError};
use tokio::io::Interest;
use tokio::net::UnixStream;
use tracing::Instrument;

use crate::handover::reexec::Phase;
use crate::handover::state::ConnMode;
use crate::serve::shared::{park, write_frame, Shared, FRAME_TIMEOUT, WRITE_TIMEOUT};

/// How long a refused peer has to send the call its refusal answers.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// Serves a connection accepted on the virtlogd socket.
pub(crate) async fn accepted(
    stream: UnixStream,
    shared: Arc<Shared>,
    uid: Option<u32>,
    pid: Option<i32>,
) {
    let mut conn = Conn::new(stream, shared.clone(), BytesMut::new());
    if uid != Some(shared.daemon_uid) {
        let who = uid.map_or("?".to_string(), |u| u.to_string());
        tracing::warn!("refused a virtlogd client with another uid");
        conn.refuse(VirError::new(
            wire::ERR_ACCESS_DENIED,
            wire::FROM_RPC,
            format!(
                "access denied: uid {who} may not use logd's virtlogd socket (only uid {})",
                shared.daemon_uid
            ),
        ))
        .await;
        return;
    }
    let _admitted = match shared.admit(pid) {
        Ok(a) => a,
        Err(e) => {
            let e = VirError::new(wire::ERR_OPERATION_FAILED, wire::FROM_RPC, e.message);
            conn.refuse(e).await;
            return;
        }
    };
    tracing::debug!("virtlogd client connected");
    conn.run().await;
}

/// Serves a virtlogd connection a previous process carried over, with what it had received of
/// its next call.
pub(crate) async fn resume(stream: UnixStream, shared: Arc<Shared>, pending: BytesMut) {
    let _admitted = shared.readmit(stream.peer_cred().ok().and_then(|c| c.pid()));
    tracing::debug!("virtlogd connection carried over");
    Conn::new(stream, shared, pending).run().await;
}

/// Why a connection ends.
#[derive(Debug, thiserror::Error)]
enum End {
    #[error("peer closed the connection")]
    Closed,
    #[error("peer closed the connection in the middle of a message ({0} bytes pending)")]
    Truncated(usize),
    #[error("a message took longer than {FRAME_TIMEOUT:?} to arrive")]
    Timeout,
    #[error("{0}")]
    Refused(String),
    #[error("I/O error on the socket: {0}")]
    Io(#[from] std::io::Error),
}

struct Conn {
    stream: UnixStream,
    buf: BytesMut,
    shared: Arc<Shared>,
}

impl Conn {
    fn new(stream: UnixStream, shared: Arc<Shared>, buf: BytesMut) -> Conn {
        Conn {
            stream,
            buf,
            shared,
        }
    }

    async fn run(mut self) {
        let _live = self.shared.handoff.live();
        match self.calls().await {
            Ok(()) | Err(End::Closed) => tracing::debug!("virtlogd client left"),
            Err(e) => tracing::info!(cause = %e, "virtlogd connection closed"),
        }
    }

    /// Answers calls until the peer leaves or sends what ends the connection.
    async fn calls(&mut self) -> Result<(), End> {
        loop {
            let (header, body) = self.next_message().await?;
            if header.program != wire::PROGRAM || header.version != wire::PROGRAM_VERSION {
                let e = VirError::new(
                    wire::ERR_RPC,
                    wire::FROM_RPC,
                    format!(
                        "program mismatch: logd's virtlogd socket serves program {:#x} version \
                         {}, not {:#x} version {}",
                        wire::PROGRAM,
                        wire::PROGRAM_VERSION,
                        header.program,
                        header.version
                    ),
                );
                return Err(self.fail(&header, e).await);
            }
            if header.kind != wire::TYPE_CALL || header.status != wire::STATUS_OK {
                let e = VirError::new(
                    wire::ERR_RPC,
                    wire::FROM_RPC,
                    format!(
                        "unexpected message type {} status {}: logd's virtlogd socket takes \
                         calls (type 0, status 0) without fds",
                        header.kind, header.status
                    ),
                );
                return Err(self.fail(&header, e).await);
            }
            let call = match Call::decode(header.procedure, &body) {
                Ok(Some(call)) => call,
                Ok(None) => {
                    let e = VirError::new(
                        wire::ERR_RPC,
                        wire::FROM_RPC,
                        format!("unknown procedure: {}", header.procedure),
                    );
                    self.send(&e.encode(&header), None).await?;
                    continue;
                }
                Err(x) => {
                    let name = wire::procedure_name(header.procedure).unwrap_or("?");
                    let e = VirError::new(
                        wire::ERR_RPC,
                        wire::FROM_RPC,
                        format!("cannot decode the arguments of {name}: {x}"),
                    );
                    self.send(&e.encode(&header), None).await?;
                    continue;
                }
            };
            drop(body);
            let name = wire::procedure_name(header.procedure).unwrap_or("?");
            let span = tracing::debug_span!("call", procedure = name, serial = header.serial);
            match self.answer(call).instrument(span).await {
                Ok((reply, fd)) => {
                    let msg = reply.encode(&header);
                    drop(reply);
                    self.send(&msg, fd).await?;
                }
                Err(e) => {
                    tracing::debug!(code = e.code, message = %e.message, "call failed");
                    self.send(&e.encode(&header), None).await?;
                }
            }
        }
    }

    /// Carries out one call.
    async fn answer(&self, call: Call) -> Result<(Reply, Option<OwnedFd>), VirError> {
        let s = &self.shared;
        match call {
            Call::OpenLogFile {
                driver,
                dom,
                path,
                flags,
            } => {
                check_flags(flags, wire::OPEN_TRUNCATE)?;
                let domain = domain_id(driver, dom);
                let truncate = flags & wire::OPEN_TRUNCATE != 0;
                let (pos, fd) = s
                    .open_log(domain, &path, truncate)
                    .await
                    .map_err(|e| vir_error(e, &path))?;
                Ok((Reply::Opened(position(pos)), Some(fd)))
            }
            Call::GetLogFilePosition { path, flags } => {
                check_flags(flags, 0)?;
                let pos = s
                    .get_position(&path)
                    .await
                    .map_err(|e| vir_error(e, &path))?;
                Ok((Reply::Position(position(pos)), None))
            }
            Call::ReadLogFile {
                path,
                pos,
                maxlen,
                flags,
            } => {
                check_flags(flags, 0)?;
                check_maxlen(maxlen)?;
                let from = ReadFrom::Position(Position {
                    inode: pos.inode,
                    offset: pos.offset,
                    birth: 0,
                });
                // As virtlogd: a position in no file still there (rotated away, or never one,
                // like inode 0) reads from the oldest file's start.
                let read = match s.read_log(&path, from, maxlen).await {
                    Err(e) if e.code == ErrorCode::BadPosition => {
                        s.read_log(&path, ReadFrom::Start, maxlen).await
                    }
                    r => r,
                };
                let (outcome, _budget) = read.map_err(|e| vir_error(e, &path))?;
                Ok((Reply::Data(outcome.data), None))
            }
            Call::AppendLogFile {
                driver,
                dom,
                path,
                message,
                flags,
            } => {
                check_flags(flags, 0)?;
                let domain = domain_id(driver, dom);
                s.append_log(domain, &path, message)
                    .await
                    .map_err(|e| vir_error(e, &path))?;
                Ok((Reply::Appended(0), None))
            }
        }
    }

    /// Reads the next whole message: its header and body. Parks the connection whenever a
    /// re-exec asks for it.
    async fn next_message(&mut self) -> Result<(Header, BytesMut), End> {
        loop {
            if self.shared.handoff.phase() == Phase::Freezing {
                park(&self.shared, &self.stream, &self.buf, ConnMode::Requests).await;
                continue;
            }
            let handoff = self.shared.handoff.clone();
            tokio::select! {
                r = self.read_message() => return r,
                _ = handoff.freezing() => {}
            }
        }
    }

    /// Reads one message. Waiting for its first byte is not bounded; once it has started, it
    /// must complete within [`FRAME_TIMEOUT`].
    async fn read_message(&mut self) -> Result<(Header, BytesMut), End> {
        loop {
            if self.buf.len() >= wire::LEN_WORD {
                let word = self.buf[..4].try_into().expect("4 bytes");
                match wire::message_len(word, MAX_CALL) {
                    Ok(rest) if self.buf.len() >= wire::LEN_WORD + rest => {
                        self.buf.advance(wire::LEN_WORD);
                        let mut body = self.buf.split_to(rest);
                        let header = Header::decode(&body).expect("the length covers a header");
                        body.advance(wire::HEADER_LEN);
                        return Ok((header, body));
                    }
                    Ok(rest) => self.buf.reserve(wire::LEN_WORD + rest - self.buf.len()),
                    Err(e @ XdrError::TooLarge { .. })
                        if self.buf.len() >= wire::LEN_WORD + wire::HEADER_LEN =>
                    {
                        let header =
                            Header::decode(&self.buf[wire::LEN_WORD..]).expect("a header's bytes");
                        let e = VirError::new(wire::ERR_RPC, wire::FROM_RPC, e.to_string());
                        return Err(self.fail(&header, e).await);
                    }
                    Err(XdrError::TooLarge { .. }) => {
                        // Read on for the header, to answer with its serial.
                        self.buf.reserve(wire::LEN_WORD + wire::HEADER_LEN);
                    }
                    Err(e) => return Err(End::Refused(e.to_string())),
                }
            } else {
                self.buf.reserve(4096);
            }
            let started = !self.buf.is_empty();
            let read = async {
                loop {
                    self.stream.readable().await?;
                    match self.stream.try_read_buf(&mut self.buf) {
                        Ok(n) => return Ok::<usize, std::io::Error>(n),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        Err(e) => return Err(e),
                    }
                }
            };
            let n = if started {
                tokio::time::timeout(FRAME_TIMEOUT, read)
                    .await
                    .map_err(|_| End::Timeout)??
            } else {
                read.await?
            };
            if n == 0 {
                return Err(if self.buf.is_empty() {
                    End::Closed
                } else {
                    End::Truncated(self.buf.len())
                });
            }
        }
    }

    /// Answers `header` with `e`; the connection then ends, for the reason returned.
    async fn fail(&mut self, header: &Header, e: VirError) -> End {
        tracing::warn!(
            program = header.program,
            procedure = header.procedure,
            message = %e.message,
            "bad message on the virtlogd socket; closing the connection"
        );
        match self.send(&e.encode(header), None).await {
            Ok(()) => End::Refused(e.message),
            Err(end) => end,
        }
    }

    /// Answers the peer's first call with `e` (within [`REFUSAL_WAIT`]), then closes.
    async fn refuse(&mut self, e: VirError) {
        let answered = tokio::time::timeout(REFUSAL_WAIT, async {
            let (header, _) = self.read_message().await?;
            self.send(&e.encode(&header), None).await
        })
        .await;
        if !matches!(answered, Ok(Ok(()))) {
            tracing::debug!("the refused peer sent no call to answer");
        }
    }

    /// Sends a message, then the fd if any, as its own 1-byte message carrying SCM_RIGHTS.
    async fn send(&mut self, msg: &[u8], fd: Option<OwnedFd>) -> Result<(), End> {
        let stream = &self.stream;
        let write = async {
            write_frame(stream, msg, None).await?;
            if let Some(fd) = &fd {
                stream
                    .async_io(Interest::WRITABLE, || {
                        fdpass::send_with_fds(stream.as_fd(), &[0], &[fd.as_fd()])
                            .map_err(std::io::Error::from)
                    })
                    .await?;
            }
            Ok::<(), std::io::Error>(())
        };
        tokio::time::timeout(WRITE_TIMEOUT, write)
            .await
            .map_err(|_| End::Timeout)??;
        Ok(())
    }
}

/// Flags other than `known` are refused, as virtlogd's `virCheckFlags` does.
fn check_flags(flags: u32, known: u32) -> Result<(), VirError> {
    if flags & !known == 0 {
        return Ok(());
    }
    Err(VirError::new(
        wire::ERR_INVALID_ARG,
        wire::FROM_LOGGING,
        format!("unsupported flags ({:#x})", flags & !known),
    ))
}

/// A read's `maxlen`: at most [`wire::STRING_MAX`], refused in virtlogd's words. (logd's own
/// bound, `MAX_READ_LEN`, is the same, so a read this lets through is never refused by it.)
fn check_maxlen(maxlen: u64) -> Result<(), VirError> {
    if maxlen > wire::STRING_MAX as u64 {
        return Err(VirError::new(
            wire::ERR_INTERNAL_ERROR,
            wire::FROM_LOGGING,
            format!(
                "internal error: Requested data len {maxlen} is larger than maximum {}",
                wire::STRING_MAX
            ),
        ));
    }
    Ok(())
}

fn domain_id(driver: String, dom: wire::Domain) -> DomainId {
    DomainId {
        driver,
        uuid: Uuid::from_bytes(dom.uuid),
        name: dom.name,
    }
}

fn position(p: Position) -> LogPosition {
    LogPosition {
        inode: p.inode,
        offset: p.offset,
    }
}

/// The libvirt error for a failed request. The text is logd's, and reaches `virsh` as it is;
/// a path that is open already is answered in virtlogd's words, as libvirt knows them.
fn vir_error(e: WireError, path: &str) -> VirError {
    use nix::errno::Errno;
    let system = |errno: Errno, message: String| VirError {
        int1: errno as i32,
        ..VirError::new(wire::ERR_SYSTEM_ERROR, wire::FROM_LOGGING, message)
    };
    match e.code {
        ErrorCode::Busy if e.message.contains("is already open") => system(
            Errno::EBUSY,
            format!("Cannot open log file: '{path}': {}", Errno::EBUSY.desc()),
        ),
        ErrorCode::Busy => system(Errno::EBUSY, e.message),
        ErrorCode::NotFound => system(Errno::ENOENT, e.message),
        ErrorCode::Io => VirError::new(wire::ERR_SYSTEM_ERROR, wire::FROM_LOGGING, e.message),
        ErrorCode::InvalidArgument | ErrorCode::BadPosition => {
            VirError::new(wire::ERR_INVALID_ARG, wire::FROM_LOGGING, e.message)
        }
        ErrorCode::PathRefused | ErrorCode::PermissionDenied => {
            VirError::new(wire::ERR_ACCESS_DENIED, wire::FROM_LOGGING, e.message)
        }
        ErrorCode::ShuttingDown | ErrorCode::TooManyClients | ErrorCode::TimedOut => {
            VirError::new(wire::ERR_OPERATION_FAILED, wire::FROM_LOGGING, e.message)
        }
        ErrorCode::Malformed
        | ErrorCode::FrameTooLarge
        | ErrorCode::UnsupportedVersion
        | ErrorCode::Internal => {
            VirError::new(wire::ERR_INTERNAL_ERROR, wire::FROM_LOGGING, e.message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::checks;

    #[test]
    fn known_flags_pass_and_any_other_bit_is_refused_as_virtlogd_does() {
        check_flags(0, 0).unwrap();
        check_flags(0, wire::OPEN_TRUNCATE).unwrap();
        check_flags(wire::OPEN_TRUNCATE, wire::OPEN_TRUNCATE).unwrap();
        // Truncation is for an open only.
        let e = check_flags(wire::OPEN_TRUNCATE, 0).unwrap_err();
        assert_eq!(
            (e.code, e.domain),
            (wire::ERR_INVALID_ARG, wire::FROM_LOGGING)
        );
        assert_eq!(e.message, "unsupported flags (0x1)");
        // Only the unknown bits are named.
        let e = check_flags(wire::OPEN_TRUNCATE | 0x6, wire::OPEN_TRUNCATE).unwrap_err();
        assert_eq!(e.message, "unsupported flags (0x6)");
        let e = check_flags(0x8000_0000, 0).unwrap_err();
        assert_eq!(e.message, "unsupported flags (0x80000000)");
    }

    #[test]
    fn a_read_of_up_to_string_max_passes_and_one_byte_more_is_refused_in_virtlogds_words() {
        check_maxlen(0).unwrap();
        check_maxlen(4 * 1024 * 1024).unwrap();
        let e = check_maxlen(4 * 1024 * 1024 + 1).unwrap_err();
        assert_eq!(
            (e.code, e.domain),
            (wire::ERR_INTERNAL_ERROR, wire::FROM_LOGGING)
        );
        assert_eq!(
            e.message,
            "internal error: Requested data len 4194305 is larger than maximum 4194304"
        );
    }

    #[test]
    fn a_read_virtlogd_lets_through_is_one_logd_serves() {
        // Else a read between the two bounds would get logd's error, not virtlogd's.
        let most = wire::STRING_MAX as u64;
        check_maxlen(most).unwrap();
        checks::check_read_len(most).unwrap();
        assert!(check_maxlen(most + 1).is_err());
    }

    #[test]
    fn libvirts_domain_goes_through_logds_domain_check_and_is_answered_invalid_arg() {
        let dom = |name: &str, uuid: [u8; 16]| wire::Domain {
            uuid,
            name: name.into(),
        };
        checks::check_domain(&domain_id("qemu".into(), dom("vm1", [1; 16]))).unwrap();
        for (driver, d, why) in [
            ("qemu", dom("", [1; 16]), "an empty name"),
            ("qemu", dom("vm1", [0; 16]), "the nil uuid"),
            ("", dom("vm1", [1; 16]), "an empty driver"),
            ("qemu", dom("vm\n1", [1; 16]), "a control character"),
            ("qemu", dom(&"v".repeat(257), [1; 16]), "a 257-byte name"),
        ] {
            let e = checks::check_domain(&domain_id(driver.into(), d)).expect_err(why);
            let v = vir_error(e, "/logs/x.log");
            assert_eq!(
                (v.code, v.domain),
                (wire::ERR_INVALID_ARG, wire::FROM_LOGGING),
                "{why}"
            );
        }
    }

    #[test]
    fn a_refused_path_is_answered_access_denied() {
        let e = WireError::new(
            ErrorCode::PathRefused,
            "path \"../x\" contains a `..` component",
        );
        let v = vir_error(e, "../x");
        assert_eq!(
            (v.code, v.domain),
            (wire::ERR_ACCESS_DENIED, wire::FROM_LOGGING)
        );
        assert!(v.message.contains("`..`"), "{}", v.message);
    }
}
