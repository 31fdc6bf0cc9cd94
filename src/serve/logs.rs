//! The log requests, whichever socket they come in on: logd's own `OpenLog`, `GetPosition`,
//! `ReadLog` and `AppendLog`, and the four virtlogd procedures that are the same requests.
//!
//! Each checks its fields ([`crate::serve::checks`]), resolves and checks its path, and sends
//! the registry its message: the same checks, the same messages and the same path table for
//! every socket.

use std::os::fd::OwnedFd;

use logd_protocol::{DomainId, ErrorCode, ReadFrom, WireError};
use tokio::sync::OwnedSemaphorePermit;

use crate::control::registry;
use crate::serve::checks::{check_append_len, check_domain, check_read_len, checked_path};
use crate::serve::shared::Shared;

/// The log requests, whichever socket they come in on (logd's own protocol or virtlogd's).
impl Shared {
    /// Opens a log: the position of its end and the write end of its pipe.
    pub(crate) async fn open_log(
        &self,
        domain: DomainId,
        path: &str,
        truncate: bool,
    ) -> Result<(logd_protocol::Position, OwnedFd), WireError> {
        check_domain(&domain)?;
        let path = checked_path(path, true).await?;
        registry::call(
            &self.registry,
            registry::Open {
                domain,
                path,
                truncate,
            },
        )
        .await
        .map_err(gone)?
        .map_err(|e| e.to_wire())
    }

    /// The end of a log, once every byte already in its pipe is on disk.
    pub(crate) async fn get_position(
        &self,
        path: &str,
    ) -> Result<logd_protocol::Position, WireError> {
        let path = checked_path(path, false).await?;
        registry::call(&self.registry, registry::GetPosition { path })
            .await
            .map_err(gone)?
            .map_err(|e| e.to_wire())
    }

    /// Reads a log across its rotated files. The permit holds the reply's share of the
    /// [`crate::serve::shared::ReplyBudget`] until the reply is written.
    pub(crate) async fn read_log(
        &self,
        path: &str,
        from: ReadFrom,
        max_len: u64,
    ) -> Result<(crate::datapath::rotate::ReadOutcome, OwnedSemaphorePermit), WireError> {
        check_read_len(max_len)?;
        let path = checked_path(path, false).await?;
        // Reserved before the read, held until the reply is written.
        let mut budget = self.replies.reserve(max_len).await?;
        let r = registry::call(
            &self.registry,
            registry::Read {
                path,
                from,
                max_len: max_len as usize,
            },
        )
        .await
        .map_err(gone)?
        .map_err(|e| e.to_wire())?;
        // Only what was read stays reserved.
        drop(budget.split(budget.num_permits().saturating_sub(r.data.len())));
        Ok((r, budget))
    }

    /// Appends a message to a log, open or not; lands after every byte already in its pipe.
    pub(crate) async fn append_log(
        &self,
        domain: DomainId,
        path: &str,
        message: Vec<u8>,
    ) -> Result<logd_protocol::Position, WireError> {
        check_domain(&domain)?;
        check_append_len(&message)?;
        let path = checked_path(path, true).await?;
        registry::call(
            &self.registry,
            registry::Append {
                domain,
                path,
                message,
            },
        )
        .await
        .map_err(gone)?
        .map_err(|e| e.to_wire())
    }
}

/// The error for a registry that no longer answers.
fn gone(_: actix::MailboxError) -> WireError {
    WireError::new(ErrorCode::Internal, "the registry is gone")
}
