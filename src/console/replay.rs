//! The replay ring: a console's most recent output, given to a new subscriber before the live
//! output. It holds the same shared chunks as everyone else (slices of them at its old end), at
//! most `limit` bytes.

use std::collections::VecDeque;

use bytes::{Buf, Bytes};

/// Recent output, for new subscribers.
pub(super) struct Replay {
    chunks: VecDeque<Bytes>,
    len: usize,
    limit: usize,
}

impl Replay {
    /// An empty ring that keeps at most `limit` bytes (0: nothing).
    pub(super) fn new(limit: usize) -> Replay {
        Replay {
            chunks: VecDeque::new(),
            len: 0,
            limit,
        }
    }

    /// Its chunks, oldest first.
    pub(super) fn chunks(&self) -> impl Iterator<Item = &Bytes> {
        self.chunks.iter()
    }

    /// Its bytes, oldest first, in one buffer (for a re-exec's state).
    pub(super) fn to_vec(&self) -> Vec<u8> {
        let mut all = Vec::with_capacity(self.len);
        for c in &self.chunks {
            all.extend_from_slice(c);
        }
        all
    }

    /// Keeps `chunk` (shared, not copied), dropping the oldest bytes beyond the limit.
    pub(super) fn push(&mut self, chunk: &Bytes) {
        if self.limit == 0 {
            return;
        }
        let chunk = if chunk.len() > self.limit {
            chunk.slice(chunk.len() - self.limit..)
        } else {
            chunk.clone()
        };
        self.len += chunk.len();
        self.chunks.push_back(chunk);
        while self.len > self.limit {
            let over = self.len - self.limit;
            let front = self.chunks.front_mut().expect("len > 0");
            if front.len() <= over {
                self.len -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(over);
                self.len -= over;
            }
        }
    }
}
