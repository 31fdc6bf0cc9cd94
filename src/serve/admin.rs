//! The admin socket's requests that one response answers: a snapshot of the daemon or of one
//! domain, a log level, an operator's kick or grant of a console subscriber.
//!
//! `Events` and `Reexec` hold their connection (a stream of events; a wait that a re-exec parks
//! and carries), so `server` serves them in its connection loop.

use logd_protocol::admin::{AdminRequest, AdminResponse};
use logd_protocol::{ErrorCode, WireError};

use crate::control::registry;
use crate::serve::shared::Shared;

/// Answers `req`, which is neither `Events` nor `Reexec`.
/// `operator` is who asks (`UID:NAME`): a kick or a grant names it to the subscribers.
pub(crate) async fn answer(shared: &Shared, req: AdminRequest, operator: &str) -> AdminResponse {
    let reg = &shared.registry;
    let only = match &req {
        AdminRequest::Events | AdminRequest::Reexec { .. } => {
            unreachable!("handled by the caller")
        }
        AdminRequest::Snapshot | AdminRequest::SnapshotV2 => None,
        AdminRequest::DomainSnapshot { name } | AdminRequest::DomainSnapshotV2 { name } => {
            Some(name.clone())
        }
        AdminRequest::SetLogLevel { filter } => {
            return match crate::host::logging::set_filter(filter) {
                Ok(()) => AdminResponse::Done,
                Err(e) => {
                    AdminResponse::Error(WireError::new(ErrorCode::InvalidArgument, e.to_string()))
                }
            };
        }
        AdminRequest::Kick { subscriber } | AdminRequest::Grant { subscriber } => {
            let kick = matches!(req, AdminRequest::Kick { .. });
            tracing::info!(
                subscriber,
                kick,
                operator,
                "operator action on a subscriber"
            );
            return match registry::call(
                reg,
                registry::Subscriber {
                    kick,
                    id: *subscriber,
                    by: operator.to_owned(),
                },
            )
            .await
            {
                Ok(Ok(())) => AdminResponse::Done,
                Ok(Err(e)) => AdminResponse::Error(e),
                Err(_) => AdminResponse::Error(WireError::new(
                    ErrorCode::Internal,
                    "the registry is gone",
                )),
            };
        }
    };
    let snap = match registry::call(reg, registry::Snapshot { only: only.clone() }).await {
        Ok(s) => s,
        Err(_) => {
            return AdminResponse::Error(WireError::new(
                ErrorCode::Internal,
                "the registry is gone",
            ))
        }
    };
    // The first requests are answered in the first layout, for the `logdctl`s that ask them.
    let v2 = matches!(
        req,
        AdminRequest::SnapshotV2 | AdminRequest::DomainSnapshotV2 { .. }
    );
    match only {
        None if v2 => AdminResponse::SnapshotV2(snap),
        None => AdminResponse::Snapshot(snap.into()),
        Some(name) => match snap.domains.into_iter().next() {
            Some(d) if v2 => AdminResponse::DomainV2(d),
            Some(d) => AdminResponse::Domain(d.into()),
            None => AdminResponse::Error(WireError::new(
                ErrorCode::NotFound,
                format!("no domain named {name:?}"),
            )),
        },
    }
}
