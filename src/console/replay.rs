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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Each chunk's bytes, oldest first.
    fn chunks(r: &Replay) -> Vec<&[u8]> {
        r.chunks().map(|c| &c[..]).collect()
    }

    #[test]
    fn a_new_ring_is_empty() {
        let r = Replay::new(8);
        assert_eq!(r.chunks().count(), 0);
        assert_eq!(r.to_vec(), b"");
        assert_eq!(r.len, 0);
    }

    #[test]
    fn a_ring_of_limit_zero_keeps_nothing() {
        let mut r = Replay::new(0);
        r.push(&Bytes::from_static(b"abc"));
        r.push(&Bytes::from(vec![b'x'; 100]));
        assert_eq!(r.chunks().count(), 0);
        assert_eq!(r.to_vec(), b"");
        assert_eq!(r.len, 0);
    }

    #[test]
    fn chunks_within_the_limit_are_kept_whole_and_shared() {
        let mut r = Replay::new(10);
        let a = Bytes::from(b"abc".to_vec());
        let b = Bytes::from(b"defg".to_vec());
        r.push(&a);
        r.push(&b);
        assert_eq!(chunks(&r), [&b"abc"[..], b"defg"]);
        assert_eq!(r.to_vec(), b"abcdefg");
        assert_eq!(r.len, 7);
        // The ring holds the chunks themselves, not copies.
        let held: Vec<_> = r.chunks().map(|c| c.as_ptr()).collect();
        assert_eq!(held, [a.as_ptr(), b.as_ptr()]);
    }

    #[test]
    fn filling_exactly_to_the_limit_drops_nothing_and_one_byte_more_drops_one() {
        let mut r = Replay::new(7);
        let a = Bytes::from(b"abc".to_vec());
        r.push(&a);
        r.push(&Bytes::from_static(b"defg"));
        assert_eq!(r.to_vec(), b"abcdefg");
        assert_eq!(r.chunks().count(), 2);
        r.push(&Bytes::from_static(b"h"));
        assert_eq!(chunks(&r), [&b"bc"[..], b"defg", b"h"]);
        assert_eq!(r.len, 7);
        // The oldest chunk is trimmed in place: still the same memory, one byte in.
        assert_eq!(r.chunks().next().unwrap().as_ptr(), a[1..].as_ptr());
    }

    #[test]
    fn wrapping_around_drops_whole_old_chunks_then_trims_the_oldest_left() {
        let mut r = Replay::new(5);
        for c in [&b"ab"[..], b"cd", b"ef"] {
            r.push(&Bytes::copy_from_slice(c));
        }
        assert_eq!(chunks(&r), [&b"b"[..], b"cd", b"ef"]);
        r.push(&Bytes::from_static(b"ghij"));
        assert_eq!(chunks(&r), [&b"f"[..], b"ghij"]);
        assert_eq!(r.to_vec(), b"fghij");
        assert_eq!(r.len, 5);
    }

    #[test]
    fn a_chunk_larger_than_the_limit_leaves_only_its_last_bytes() {
        let mut r = Replay::new(4);
        r.push(&Bytes::from_static(b"ab"));
        let big = Bytes::from(b"0123456789".to_vec());
        r.push(&big);
        assert_eq!(chunks(&r), [&b"6789"[..]]);
        assert_eq!(r.len, 4);
        assert_eq!(r.chunks().next().unwrap().as_ptr(), big[6..].as_ptr());
        // Exactly the limit in one chunk: kept whole.
        let four = Bytes::from(b"wxyz".to_vec());
        r.push(&four);
        assert_eq!(chunks(&r), [&b"wxyz"[..]]);
        assert_eq!(r.chunks().next().unwrap().as_ptr(), four.as_ptr());
    }

    proptest! {
        /// After every push, the ring holds exactly the last `min(limit, total)` bytes pushed, in
        /// non-empty chunks, whatever the sizes of the chunks against the limit.
        #[test]
        fn the_ring_always_holds_the_exact_suffix_of_the_output(
            limit in 1usize..64,
            sizes in prop::collection::vec(1usize..200, 1..60),
        ) {
            let mut r = Replay::new(limit);
            let mut all = Vec::new();
            for (i, n) in sizes.into_iter().enumerate() {
                let chunk: Vec<u8> = (0..n).map(|j| (i * 31 + j) as u8).collect();
                all.extend_from_slice(&chunk);
                r.push(&Bytes::from(chunk));
                let kept = all.len().min(limit);
                prop_assert_eq!(r.to_vec(), &all[all.len() - kept..]);
                prop_assert_eq!(r.len, kept);
                prop_assert!(r.chunks().all(|c| !c.is_empty()));
            }
        }
    }
}
