//! A console across a re-exec: what it hands to the next process ([`Console::export`]), and how
//! that process takes it back on the inherited sockets ([`Console::restore`]).

use std::path::Path;
use std::time::Duration;

use bytes::BytesMut;

use super::guest::{GuestMode, GuestPlan};
use super::replay::Replay;
use super::subscriber::Subscriber;
use super::{Console, ConsoleConfig, ConsoleStats, Role};
use crate::datapath::budget::Yield;
use crate::datapath::rotate::RotateConfig;
use crate::datapath::sink::LogSink;
use crate::handover::state::Staleness;

impl Console {
    /// Describes the console for a re-exec (every socket and the file marked to be carried).
    /// The guest side is not drained first: the caller only waits until what logd has read is
    /// in the file, and what the guest has written since is the next process's to read.
    /// Subscribers already leaving are left behind (they close with this process), and so are
    /// UNIX subscribers still waiting for their uid's name (`peer`): they had not joined.
    pub(crate) fn export(
        &self,
        carrier: &mut crate::handover::state::Carrier,
    ) -> crate::handover::state::ConsoleState {
        use crate::handover::state::GuestState as G;
        let guest = match &self.mode {
            GuestMode::Listen { listener, path } => G::Listen {
                path: path.clone(),
                listener: carrier.fd(listener),
            },
            GuestMode::Connect { path, .. } => G::Connect { path: path.clone() },
            GuestMode::Fd => G::Fd,
        };
        let replay = self.replay.to_vec();
        crate::handover::state::ConsoleState {
            name: self.cfg.name.clone(),
            domain: self.cfg.domain.clone(),
            guest,
            guest_conn: self.guest.as_ref().map(|g| carrier.fd(g)),
            tcp: self
                .tcp
                .as_ref()
                .map(|l| (self.cfg.tcp.clone().unwrap_or_default(), carrier.fd(l))),
            unix: self
                .unix
                .as_ref()
                .map(|l| (self.cfg.unix.clone().unwrap_or_default(), carrier.fd(l))),
            protocol: self.cfg.protocol,
            write: self.cfg.write,
            replay_limit: self.cfg.replay,
            max_subscribers: self.cfg.max_subscribers,
            queue_limit: self.cfg.queue_limit,
            sink: self.sink.export(carrier),
            input: self.input.to_vec(),
            replay,
            subscribers: self
                .subs
                .iter()
                .filter(|s| s.leaving.is_none())
                .filter_map(|s| s.export(carrier))
                .collect(),
            slow_disconnects: self.stats.slow_disconnects,
            refused: self.stats.refused,
            guest_connects: self.stats.guest_connects,
            access: self.cfg.access.clone(),
            notices: self.cfg.notices,
            ext: self.tls_ext(carrier).into_iter().collect(),
        }
    }

    /// The console as a previous process left it, on its inherited sockets. Must run on the
    /// thread that will drive it.
    ///
    /// With [`Staleness::AfterGo`] (a guardian taking over from a new image that was told `Go`
    /// and died), that image may have written the carried input to the guest and part of each
    /// subscriber's queue to its socket already. Neither is sent again: a keystroke typed twice
    /// into a guest can do harm, and a subscriber is told its output has a seam instead. The
    /// input is dropped, and logged with its size; see [`Subscriber::restore`] for the queues.
    pub(crate) fn restore(
        st: &crate::handover::state::ConsoleState,
        path: std::sync::Arc<Path>,
        inherited: &crate::handover::state::Inherited,
        staleness: Staleness,
    ) -> Result<Console, crate::datapath::stream::RestoreError> {
        use crate::datapath::stream::RestoreError;
        use crate::handover::state::GuestState as G;
        let what = |w: &str| format!("console {} ({w})", st.name);
        let reg = |w: &str| {
            let what = what(w);
            move |source| RestoreError::Register { what, source }
        };
        let sink = LogSink::restore(&st.sink, path, inherited, staleness)?;
        use crate::handover::state::sockets;
        let (plan, mode) = match &st.guest {
            G::Listen { path, listener } => {
                let l = sockets::unix_listener(inherited.take(listener)?)
                    .map_err(reg("guest listener"))?;
                (
                    GuestPlan::Listen(path.clone()),
                    GuestMode::Listen {
                        listener: l,
                        path: path.clone(),
                    },
                )
            }
            G::Connect { path } => (
                GuestPlan::Connect(path.clone()),
                GuestMode::Connect {
                    path: path.clone(),
                    retry: Box::pin(tokio::time::sleep(Duration::ZERO)),
                },
            ),
            G::Fd => (GuestPlan::Fd, GuestMode::Fd),
        };
        let guest = match &st.guest_conn {
            Some(fd) => Some(sockets::unix_stream(inherited.take(fd)?).map_err(reg("guest"))?),
            None => None,
        };
        let tcp = match &st.tcp {
            Some((_, fd)) => {
                Some(sockets::tcp_listener(inherited.take(fd)?).map_err(reg("TCP listener"))?)
            }
            None => None,
        };
        let unix = match &st.unix {
            Some((_, fd)) => {
                Some(sockets::unix_listener(inherited.take(fd)?).map_err(reg("UNIX listener"))?)
            }
            None => None,
        };
        let (tls_config, tls) = match Console::restore_tls(st, inherited)? {
            Some((c, l)) => (Some(c), Some(l)),
            None => (None, None),
        };
        let subs = st
            .subscribers
            .iter()
            .map(|s| {
                Subscriber::restore(
                    s,
                    inherited,
                    st.queue_limit,
                    st.notices.subscribers,
                    staleness,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cfg = ConsoleConfig {
            name: st.name.clone(),
            domain: st.domain.clone(),
            log: st.sink.path.clone(),
            truncate: false,
            rotate: RotateConfig {
                max_size: st.sink.max_size,
                max_backups: st.sink.max_backups,
            },
            guest: plan,
            tcp: st.tcp.as_ref().map(|(a, _)| a.clone()),
            unix: st.unix.as_ref().map(|(p, _)| p.clone()),
            protocol: st.protocol,
            write: st.write,
            replay: st.replay_limit,
            max_subscribers: st.max_subscribers,
            queue_limit: st.queue_limit,
            access: st.access.clone(),
            notices: st.notices,
            tls: tls_config,
        };
        let replay = Replay::restored(cfg.replay, st.replay.clone());
        let span = tracing::info_span!("console", domain = %cfg.domain.name, console = %cfg.name);
        let input = match staleness {
            Staleness::AfterGo if !st.input.is_empty() => {
                span.in_scope(|| {
                    tracing::warn!(
                        bytes = st.input.len(),
                        "input typed before the re-exec is dropped, not sent to the guest: the \
                         failed new image may have sent it already"
                    )
                });
                BytesMut::new()
            }
            _ => BytesMut::from(&st.input[..]),
        };
        // The holder as the subscribers knew it (the first read-write one, in exclusive mode).
        let lock_holder = (st.write == logd_protocol::WritePolicy::Exclusive)
            .then(|| {
                subs.iter()
                    .find(|s| s.role == Role::ReadWrite)
                    .map(|s| s.id)
            })
            .flatten();
        Ok(Console {
            lock_holder,
            span,
            yielding: Yield::default(),
            cfg,
            sink,
            mode,
            guest,
            input,
            replay,
            tcp,
            unix,
            tls,
            subs,
            joining: Vec::new(),
            parting: Default::default(),
            at_line_start: true,
            stats: ConsoleStats {
                slow_disconnects: st.slow_disconnects,
                refused: st.refused,
                guest_connects: st.guest_connects,
            },
            on_guest: None,
        })
    }
}
