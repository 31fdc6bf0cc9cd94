//! A domain's part in a re-exec: [`Freeze`] describes its streams (their fds marked to be
//! carried), [`Domain::restore`] rebuilds them in the new process, and [`Thaw`] lets them go
//! on (see [`crate::handover`]).

use std::path::Path;
use std::sync::Arc;

use actix::prelude::*;

use super::{AdoptError, Domain, FreezeError, Settle, Stream};
use crate::console::Console;
use crate::control::fanin::Fanin;
use crate::datapath::stream::LogStream;

/// Freeze for a re-exec: stop reading, and describe every stream (its fds marked to be
/// carried) into `out`, filling in `state`. Until [`Thaw`], nothing is read or written: what
/// the sources write meanwhile waits in the kernel for whichever process goes on. Sent with
/// `do_send`: the answers are gathered by [`Fanin`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct Freeze {
    pub state: crate::handover::state::DomainState,
    pub out: Arc<Fanin<Result<crate::handover::state::DomainState, FreezeError>>>,
}

impl Handler<Freeze> for Domain {
    type Result = ();

    fn handle(&mut self, msg: Freeze, ctx: &mut Context<Self>) {
        let Freeze { mut state, out } = msg;
        // The pump stops now; what was read already must reach the files before the fds go.
        self.frozen = true;
        if self.streams.iter().all(|s| s.sink().is_flushed()) {
            // Nothing to wait for (an idle domain, most of them): described at once, with no
            // timer and no future to set up.
            out.push(self.freeze().map(|streams| {
                state.streams = streams;
                state
            }));
            return;
        }
        ctx.wait(
            Settle::new(None)
                .written()
                .map(move |settled, act: &mut Domain, _| {
                    let res = match settled {
                        Ok(()) => act.freeze(),
                        Err(source) => Err(FreezeError::Flush {
                            domain: act.name.to_string(),
                            source,
                        }),
                    };
                    out.push(res.map(|streams| {
                        state.streams = streams;
                        state
                    }));
                }),
        );
    }
}

impl Domain {
    fn freeze(&mut self) -> Result<Vec<crate::handover::state::StreamState>, FreezeError> {
        use crate::handover::state::{Carrier, StreamState};
        self.frozen = true;
        let mut carrier = Carrier::out();
        let mut out = Vec::with_capacity(self.streams.len());
        for s in &mut self.streams {
            // Every chunk logd has read is in its file (the caller waited), and what the
            // source wrote since stays in the kernel, for whichever process reads next.
            match s {
                Stream::Pipe(p) => out.push(StreamState::Pipe(p.export(&mut carrier))),
                Stream::Console(c) => {
                    // TLS sessions live in this process: their subscribers are told to
                    // reconnect, and closed.
                    c.part_tls();
                    out.push(StreamState::Console(Box::new(c.export(&mut carrier))))
                }
            }
        }
        carrier.finish().map_err(|source| FreezeError::Mark {
            domain: self.name.to_string(),
            source,
        })?;
        Ok(out)
    }

    /// Rebuilds the streams a previous process carried over (the domain stays frozen until
    /// [`Thaw`]). Runs on the domain's thread, so each fd registers with the loop that drives
    /// it. With [`Staleness::AfterGo`](crate::handover::state::Staleness), each log is opened
    /// again by its path, here: nothing else runs on this worker before the take-over is done.
    pub fn restore(
        &mut self,
        streams: &[crate::handover::state::StreamState],
        paths: Vec<Arc<Path>>,
        inherited: &crate::handover::state::Inherited,
        staleness: crate::handover::state::Staleness,
    ) -> Result<(), AdoptError> {
        use crate::handover::state::StreamState;
        // No span entered: a failure names the domain in its error, and 10,000 domains' spans
        // would cost their formatting in the blackout.
        for (st, path) in streams.iter().zip(paths) {
            let stream = match st {
                StreamState::Pipe(p) => LogStream::restore(p, path, inherited, staleness)
                    .map(Stream::Pipe)
                    .map_err(|source| AdoptError::Log {
                        domain: self.name.to_string(),
                        path: p.sink.path.clone(),
                        source: Box::new(source),
                    })?,
                StreamState::Console(c) => Console::restore(c, path, inherited, staleness)
                    .map(|c| Stream::Console(Box::new(c)))
                    .map_err(|source| AdoptError::Console {
                        domain: self.name.to_string(),
                        name: c.name.clone(),
                        source: Box::new(source),
                    })?,
            };
            self.insert(stream);
        }
        Ok(())
    }
}

/// What a domain's streams hold and have not delivered yet, and how often their logs rotated:
/// what the `killed-after-go` test fault waits on ([`crate::handover::successor`]) before it
/// kills a new image that runs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, MessageResponse)]
pub struct Backlog {
    /// Rotations of every log, as counted since each was opened (carried ones included).
    pub rotations: u64,
    /// Logs with bytes not yet in their file.
    pub unflushed: u64,
    /// Console input not yet written to the guest.
    pub input: u64,
    /// Console output queued for subscribers and not yet sent.
    pub queued: u64,
}

impl Backlog {
    /// Nothing waits to be delivered.
    pub fn is_clear(&self) -> bool {
        self.unflushed == 0 && self.input == 0 && self.queued == 0
    }

    pub fn add(&mut self, o: Backlog) {
        self.rotations += o.rotations;
        self.unflushed += o.unflushed;
        self.input += o.input;
        self.queued += o.queued;
    }
}

/// Ask a domain for its [`Backlog`].
#[derive(Message)]
#[rtype(result = "Backlog")]
pub struct GetBacklog;

impl Handler<GetBacklog> for Domain {
    type Result = Backlog;

    fn handle(&mut self, _: GetBacklog, _: &mut Context<Self>) -> Backlog {
        let mut b = Backlog::default();
        for s in &self.streams {
            let sink = s.sink();
            b.rotations += sink.rotations();
            b.unflushed += u64::from(!sink.is_flushed());
            if let Stream::Console(c) = s {
                let (input, queued) = c.undelivered();
                b.input += input as u64;
                b.queued += queued as u64;
            }
        }
        b
    }
}

/// Why frozen domains go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThawCause {
    /// The re-exec was abandoned: this process keeps the fds, which get close-on-exec again.
    Abandoned,
    /// This is the new process, which took the fds over and now starts reading them.
    TakenOver,
}

/// Go on after a freeze (or, in a new process, after [`Domain::restore`]). `done` is dropped
/// once handled.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Thaw {
    pub cause: ThawCause,
    /// Held, never read: dropping it tells the fan-in that this domain has thawed.
    #[allow(dead_code)]
    pub done: Arc<Fanin<()>>,
}

impl Handler<Thaw> for Domain {
    type Result = ();

    fn handle(&mut self, msg: Thaw, ctx: &mut Context<Self>) {
        if !self.frozen() {
            return;
        }
        if msg.cause == ThawCause::Abandoned {
            let mut back = crate::handover::state::Carrier::back();
            for s in self.streams.iter() {
                match s {
                    Stream::Pipe(p) => drop(p.export(&mut back)),
                    Stream::Console(c) => drop(c.export(&mut back)),
                }
            }
            if let Err(e) = back.finish() {
                tracing::warn!(domain = %self.name, cause = %e, "cannot set close-on-exec again");
            }
        }
        self.frozen = false;
        self.pump(ctx);
    }
}
