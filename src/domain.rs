//! The domain actor: one per guest, owning that guest's log streams.
//!
//! The registry creates a domain on one of the worker arbiters and routes every request about
//! the domain's logs to it. The domain drives its streams itself: each open stream has a pump
//! future spawned in the domain's own context, which moves bytes from the pipe to the file on
//! the domain's thread. No message is sent per chunk; messages are for control (open, position,
//! read, append, drain).
//!
//! When a stream reaches EOF the domain closes it and tells the registry, which stops the
//! domain once it has no streams and no requests in flight.

use std::path::PathBuf;
use std::pin::Pin;
use std::task::Poll;

use actix::prelude::*;
use logd_protocol::{Position, ReadFrom};

use crate::registry::{self, StreamClosed};
use crate::rotate::{self, ReadOutcome, RotateConfig, RotateError, RotatingFile};
use crate::stream::{LogStream, StreamError};

/// Why a domain request failed.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error(transparent)]
    File(#[from] RotateError),
}

/// A guest's actor.
pub struct Domain {
    name: Box<str>,
    /// Slots, so a stream keeps its index for its pump while others come and go.
    streams: Vec<Option<LogStream>>,
}

impl Domain {
    pub fn new(name: &str) -> Self {
        Domain {
            name: name.into(),
            streams: Vec::new(),
        }
    }

    fn find(&mut self, path: &std::path::Path) -> Option<&mut LogStream> {
        self.streams.iter_mut().flatten().find(|s| s.path() == path)
    }

    fn span(&self) -> tracing::Span {
        tracing::info_span!("domain", domain = %self.name)
    }
}

impl Actor for Domain {
    type Context = Context<Self>;
}

/// Drives one stream of a domain from inside the domain's context.
struct Pump {
    slot: usize,
}

impl ActorFuture<Domain> for Pump {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut Domain,
        _ctx: &mut Context<Domain>,
        task: &mut std::task::Context<'_>,
    ) -> Poll<()> {
        let slot = self.slot;
        let Some(stream) = act.streams.get_mut(slot).and_then(Option::as_mut) else {
            return Poll::Ready(());
        };
        match stream.poll_pump(task) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                let stream = act.streams[slot].take().expect("slot checked above");
                let stats = stream.stats();
                let _e = act.span().entered();
                tracing::info!(
                    path = %stream.path().display(),
                    bytes_in = stats.bytes_in,
                    bytes_written = stats.bytes_written,
                    dropped = stats.dropped_disk,
                    rotations = stream.rotations(),
                    "every writer closed the pipe; log closed"
                );
                let path = stream.path().to_owned();
                drop(stream);
                registry::notify(StreamClosed { path });
                Poll::Ready(())
            }
        }
    }
}

/// Open a stream: returns the position at open time and the pipe's write end.
#[derive(Message)]
#[rtype(result = "Result<(Position, std::os::fd::OwnedFd), DomainError>")]
pub struct OpenStream {
    pub path: PathBuf,
    pub rotate: RotateConfig,
    pub truncate: bool,
}

impl Handler<OpenStream> for Domain {
    type Result = Result<(Position, std::os::fd::OwnedFd), DomainError>;

    fn handle(&mut self, msg: OpenStream, ctx: &mut Context<Self>) -> Self::Result {
        let _e = self.span().entered();
        let (stream, w) = LogStream::open(&msg.path, msg.rotate, msg.truncate)?;
        let position = stream.position();
        let slot = match self.streams.iter().position(Option::is_none) {
            Some(i) => {
                self.streams[i] = Some(stream);
                i
            }
            None => {
                self.streams.push(Some(stream));
                self.streams.len() - 1
            }
        };
        ctx.spawn(Pump { slot });
        tracing::info!(path = %msg.path.display(), %position, truncate = msg.truncate, "log opened");
        Ok((position, w))
    }
}

/// The end of a log, after draining its pipe.
#[derive(Message)]
#[rtype(result = "Result<Position, DomainError>")]
pub struct GetPosition {
    pub path: PathBuf,
}

impl Handler<GetPosition> for Domain {
    type Result = Result<Position, DomainError>;

    fn handle(&mut self, msg: GetPosition, _: &mut Context<Self>) -> Self::Result {
        match self.find(&msg.path) {
            Some(s) => {
                s.drain();
                Ok(s.position())
            }
            None => Ok(rotate::end_position(&msg.path)?),
        }
    }
}

/// Read across a log's files, after draining its pipe (reads are serialized with rotation).
#[derive(Message)]
#[rtype(result = "Result<ReadOutcome, DomainError>")]
pub struct ReadLog {
    pub path: PathBuf,
    pub from: ReadFrom,
    pub max_len: usize,
}

impl Handler<ReadLog> for Domain {
    type Result = Result<ReadOutcome, DomainError>;

    fn handle(&mut self, msg: ReadLog, _: &mut Context<Self>) -> Self::Result {
        if let Some(s) = self.find(&msg.path) {
            s.drain();
        }
        Ok(rotate::read_log(&msg.path, msg.from, msg.max_len)?)
    }
}

/// Append a message to a log: through its stream if open, else straight to its files.
#[derive(Message)]
#[rtype(result = "Result<Position, DomainError>")]
pub struct AppendLog {
    pub path: PathBuf,
    pub rotate: RotateConfig,
    pub message: Vec<u8>,
}

impl Handler<AppendLog> for Domain {
    type Result = Result<Position, DomainError>;

    fn handle(&mut self, msg: AppendLog, _: &mut Context<Self>) -> Self::Result {
        if let Some(s) = self.find(&msg.path) {
            s.append(&msg.message);
            return Ok(s.position());
        }
        let mut f = RotatingFile::open(&msg.path, msg.rotate, false)?;
        f.write(&msg.message).map_err(|f| f.error)?;
        Ok(f.position())
    }
}

/// Empty every pipe into its file now (at shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

impl Handler<Drain> for Domain {
    type Result = ();

    fn handle(&mut self, _: Drain, _: &mut Context<Self>) {
        for s in self.streams.iter_mut().flatten() {
            s.drain();
        }
    }
}

/// Stop the actor (the registry sends it when the domain has nothing left).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for Domain {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
