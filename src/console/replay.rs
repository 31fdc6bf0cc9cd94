//! The replay ring: a console's most recent output, given to a new subscriber before the live
//! output. It holds the same shared chunks as everyone else (slices of them at its old end), at
//! most `limit` bytes.
//!
//! Once the ring has dropped old bytes (the last of them not a newline) its first line is a
//! fragment: a new subscriber is given the ring from just after its first newline ([`Replay::lines`]), so that the first line it
//! sees is whole. A ring without a newline is given whole (a fragment beats nothing).

use std::collections::VecDeque;

use bytes::{Buf, Bytes};

/// Recent output, for new subscribers.
pub(super) struct Replay {
    chunks: VecDeque<Bytes>,
    len: usize,
    limit: usize,
    /// Bytes were dropped from its old end, the last of them not a newline: its first line is
    /// a fragment.
    cut: bool,
}

impl Replay {
    /// An empty ring that keeps at most `limit` bytes (0: nothing).
    pub(super) fn new(limit: usize) -> Replay {
        Replay {
            chunks: VecDeque::new(),
            len: 0,
            limit,
            cut: false,
        }
    }

    /// A ring holding `bytes` (the oldest dropped beyond the limit), as a previous process
    /// left it. A full ring is taken to have been cut (the previous process may have dropped
    /// bytes; it does not say), so its first line is skipped as a fragment.
    pub(super) fn restored(limit: usize, bytes: Vec<u8>) -> Replay {
        let mut r = Replay::new(limit);
        if !bytes.is_empty() {
            r.push(&Bytes::from(bytes));
        }
        r.cut |= limit > 0 && r.len == limit;
        r
    }

    /// What a new subscriber is given: the chunks, oldest first, starting at a line boundary.
    /// Unless the ring was cut mid-line, its start is a boundary already (the console's first
    /// output, or just after a newline it dropped); else it starts after its first `\n` (none:
    /// the ring whole).
    pub(super) fn lines(&self) -> impl Iterator<Item = Bytes> + '_ {
        let mut skip = 0;
        if self.cut {
            let mut seen = 0;
            for c in &self.chunks {
                if let Some(i) = c.iter().position(|&b| b == b'\n') {
                    skip = seen + i + 1;
                    break;
                }
                seen += c.len();
            }
        }
        self.chunks.iter().filter_map(move |c| {
            if skip >= c.len() {
                skip -= c.len();
                return None;
            }
            let out = c.slice(skip..);
            skip = 0;
            Some(out)
        })
    }

    /// The last `n` lines of what a new subscriber is given (a last line without its newline
    /// counts as one).
    pub(super) fn last_lines(&self, n: usize) -> Vec<u8> {
        let all: Vec<u8> = self.lines().flat_map(|c| c.to_vec()).collect();
        if n == 0 {
            return Vec::new();
        }
        let body = all.strip_suffix(b"\n").unwrap_or(&all);
        let start = body
            .iter()
            .enumerate()
            .rev()
            .filter(|&(_, &b)| b == b'\n')
            .nth(n - 1)
            .map_or(0, |(i, _)| i + 1);
        all[start..].to_vec()
    }

    /// Its chunks, oldest first.
    #[cfg(test)]
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
        // The newest byte dropped says whether the ring starts a line: the head of a chunk
        // larger than the limit is newer than every chunk held.
        let head_dropped = (chunk.len() > self.limit).then(|| chunk[chunk.len() - self.limit - 1]);
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
            self.cut = front[front.len().min(over) - 1] != b'\n';
            if front.len() <= over {
                self.len -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(over);
                self.len -= over;
            }
        }
        if let Some(b) = head_dropped {
            self.cut = b != b'\n';
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
    fn last_lines_counts_whole_lines_from_the_end_and_a_partial_last_one() {
        let mut r = Replay::new(1024);
        r.push(&Bytes::from_static(b"one\ntwo\nthree\n"));
        assert_eq!(r.last_lines(0), b"");
        assert_eq!(r.last_lines(1), b"three\n");
        assert_eq!(r.last_lines(2), b"two\nthree\n");
        assert_eq!(r.last_lines(9), b"one\ntwo\nthree\n");
        r.push(&Bytes::from_static(b"login: "));
        assert_eq!(r.last_lines(1), b"login: ");
        assert_eq!(r.last_lines(2), b"three\nlogin: ");
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

    /// What a new subscriber is given, in one buffer.
    fn given(r: &Replay) -> Vec<u8> {
        r.lines().flat_map(|c| c.to_vec()).collect()
    }

    #[test]
    fn a_ring_never_cut_is_given_whole_even_mid_line() {
        let mut r = Replay::new(64);
        r.push(&Bytes::from_static(b"boot"));
        r.push(&Bytes::from_static(b"ing\nlogin: "));
        // Its start is the console's first byte: a line boundary already.
        assert_eq!(given(&r), b"booting\nlogin: ");
    }

    #[test]
    fn a_cut_ring_is_given_from_after_its_first_newline() {
        let mut r = Replay::new(9);
        r.push(&Bytes::from_static(b"0123\nab\ncd"));
        assert_eq!(r.to_vec(), b"123\nab\ncd");
        assert_eq!(given(&r), b"ab\ncd");
        // The newline in a later chunk than the first: whole chunks skipped, one sliced.
        let mut r = Replay::new(8);
        for c in [&b"xxxx"[..], b"yy", b"y\nz", b"zz"] {
            r.push(&Bytes::copy_from_slice(c));
        }
        assert_eq!(r.to_vec(), b"xyyy\nzzz");
        assert_eq!(given(&r), b"zzz");
        let first = r.lines().next().unwrap();
        assert_eq!(&first[..], b"z", "a slice of the chunk, not a copy");
    }

    #[test]
    fn a_ring_cut_just_after_a_newline_is_given_whole() {
        let mut r = Replay::new(6);
        r.push(&Bytes::from_static(b"ab\ncd"));
        r.push(&Bytes::from_static(b"\nef"));
        assert_eq!(given(&r), b"cd\nef", "chunk dropped in part, at a newline");
        let mut r = Replay::new(3);
        r.push(&Bytes::from_static(b"ab\n"));
        r.push(&Bytes::from_static(b"cde"));
        assert_eq!(given(&r), b"cde", "a whole chunk dropped, ending a line");
        let mut r = Replay::new(3);
        r.push(&Bytes::from_static(b"ab\ncde"));
        assert_eq!(
            given(&r),
            b"cde",
            "a chunk over the limit, cut at a newline"
        );
    }

    #[test]
    fn a_cut_ring_ending_in_its_only_newline_gives_nothing_and_one_without_any_gives_all() {
        let mut r = Replay::new(4);
        r.push(&Bytes::from_static(b"abcdef\n"));
        assert_eq!(given(&r), b"");
        let mut r = Replay::new(4);
        r.push(&Bytes::from_static(b"abcdefgh"));
        assert_eq!(given(&r), b"efgh", "no newline: as before");
    }

    #[test]
    fn a_restored_ring_that_is_full_counts_as_cut() {
        let r = Replay::restored(6, b"ab\ncde".to_vec());
        assert_eq!(given(&r), b"cde", "7 bytes into 6: cut");
        let r = Replay::restored(6, b"bb\ncde".to_vec());
        assert_eq!(given(&r), b"cde", "full: may have been cut");
        let r = Replay::restored(8, b"b\ncde".to_vec());
        assert_eq!(given(&r), b"b\ncde");
        let r = Replay::restored(0, b"abc".to_vec());
        assert_eq!(given(&r), b"");
    }

    proptest! {
        /// What a new subscriber is given is a suffix of the output that starts at a line
        /// boundary: the output's start, or just after a newline; and it is the longest such
        /// suffix within the ring, unless the ring holds no newline (then the ring whole).
        #[test]
        fn a_new_subscriber_is_given_whole_lines(
            limit in 1usize..64,
            chunks in prop::collection::vec(prop::collection::vec(
                prop::sample::select(&b"ab\n"[..]), 1..40), 1..30),
        ) {
            let mut r = Replay::new(limit);
            let mut all = Vec::new();
            for c in chunks {
                all.extend_from_slice(&c);
                r.push(&Bytes::from(c));
                let ring = r.to_vec();
                let got = given(&r);
                prop_assert!(all.ends_with(&got));
                prop_assert!(r.lines().all(|c| !c.is_empty()));
                let start = all.len() - got.len();
                if ring.len() == all.len() || all[all.len() - ring.len() - 1] == b'\n' {
                    prop_assert_eq!(&got, &ring, "never cut, or cut after a newline: whole");
                } else if let Some(i) = ring.iter().position(|&b| b == b'\n') {
                    prop_assert_eq!(all[start - 1], b'\n');
                    prop_assert_eq!(&got[..], &ring[i + 1..]);
                } else {
                    prop_assert_eq!(&got, &ring);
                }
            }
        }


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
