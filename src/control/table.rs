//! A map sized for ten thousand entries: a slab of entries with stable 4-byte ids, and a hash
//! index of those ids.
//!
//! The registry holds one entry per domain and one per open path. In a `HashMap` each entry
//! sits in a bucket, and a table that has just doubled has up to half of its buckets empty, each
//! as large as an entry; and each doubling leaves the old table behind as freed memory that the
//! allocator keeps. With 10,000 domains that was about 150 bytes per domain for the domains and
//! 80 for the open paths. Here the index holds 4-byte ids (5 bytes a bucket with its control
//! byte), and the entries sit densely in chunks of [`CHUNK`] that never move.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash, RandomState};

use hashbrown::HashTable;

/// An entry's id: stable while it is in the table, reused after it is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Id(u32);

/// Entries per chunk.
pub const CHUNK: usize = 256;

type Slot<K, V> = Option<(K, V)>;

/// The map.
pub struct Table<K, V> {
    /// Chunks of `CHUNK` slots; only the last one has room.
    chunks: Vec<Vec<Slot<K, V>>>,
    /// Empty slots, filled before a new chunk is made.
    free: Vec<u32>,
    index: HashTable<u32>,
    hasher: RandomState,
}

impl<K: Hash + Eq, V> Default for Table<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

fn locate(i: u32) -> (usize, usize) {
    (i as usize / CHUNK, i as usize % CHUNK)
}

impl<K: Hash + Eq, V> Table<K, V> {
    pub fn new() -> Self {
        Table {
            chunks: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            hasher: RandomState::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    fn key_at(chunks: &[Vec<Slot<K, V>>], i: u32) -> &K {
        let (c, j) = locate(i);
        &chunks[c][j]
            .as_ref()
            .expect("indexed slots hold an entry")
            .0
    }

    /// The id of `key`'s entry.
    pub fn id<Q>(&self, key: &Q) -> Option<Id>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        self.index
            .find(hash, |&i| Self::key_at(&self.chunks, i).borrow() == key)
            .map(|&i| Id(i))
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_key_value(key).map(|(_, v)| v)
    }

    pub fn get_key_value<Q>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.id(key).and_then(|id| self.by_id(id))
    }

    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let id = self.id(key)?;
        self.by_id_mut(id).map(|(_, v)| v)
    }

    pub fn by_id(&self, id: Id) -> Option<(&K, &V)> {
        let (c, j) = locate(id.0);
        self.chunks.get(c)?.get(j)?.as_ref().map(|(k, v)| (k, v))
    }

    pub fn by_id_mut(&mut self, id: Id) -> Option<(&K, &mut V)> {
        let (c, j) = locate(id.0);
        self.chunks
            .get_mut(c)?
            .get_mut(j)?
            .as_mut()
            .map(|(k, v)| (&*k, v))
    }

    /// Inserts an entry for a key that has none (the caller looked first); returns its id.
    ///
    /// # Panics
    /// If the table already holds 2^32 entries.
    pub fn insert(&mut self, key: K, value: V) -> Id {
        debug_assert!(self.id(&key).is_none(), "the key is new");
        let hash = self.hasher.hash_one(&key);
        let i = match self.free.pop() {
            Some(i) => {
                let (c, j) = locate(i);
                self.chunks[c][j] = Some((key, value));
                i
            }
            None => {
                if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
                    self.chunks.push(Vec::with_capacity(CHUNK));
                }
                let c = self.chunks.len() - 1;
                let chunk = &mut self.chunks[c];
                let i = u32::try_from(c * CHUNK + chunk.len()).expect("fewer than 2^32 entries");
                chunk.push(Some((key, value)));
                i
            }
        };
        let (chunks, hasher) = (&self.chunks, &self.hasher);
        self.index
            .insert_unique(hash, i, |&j| hasher.hash_one(Self::key_at(chunks, j)));
        Id(i)
    }

    /// Removes `key`'s entry.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        let chunks = &self.chunks;
        let found = self
            .index
            .find_entry(hash, |&i| Self::key_at(chunks, i).borrow() == key)
            .ok()?;
        let (i, _) = found.remove();
        self.free.push(i);
        let (c, j) = locate(i);
        self.chunks[c][j].take().map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.chunks.iter().flatten().flatten().map(|(k, v)| (k, v))
    }

    pub fn iter_with_ids(&self) -> impl Iterator<Item = (Id, &K, &V)> {
        self.chunks
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|(k, v)| (Id(i as u32), k, v)))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16, u32),
        Remove(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u16..64, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            (0u16..64).prop_map(Op::Remove),
        ]
    }

    #[test]
    fn ids_stay_put_across_chunks_and_freed_slots_are_reused() {
        let n = CHUNK as u32 * 4 + 7;
        let mut t: Table<String, u32> = Table::new();
        let ids: Vec<Id> = (0..n).map(|i| t.insert(i.to_string(), i)).collect();
        for i in (0..n).step_by(3) {
            assert_eq!(t.remove(i.to_string().as_str()), Some(i));
        }
        for i in 0..n {
            let found = t.get_key_value(i.to_string().as_str());
            if i % 3 == 0 {
                assert!(found.is_none());
            } else {
                assert_eq!(found, Some((&i.to_string(), &i)));
                assert_eq!(t.id(i.to_string().as_str()), Some(ids[i as usize]));
            }
        }
        let before = t.chunks.len();
        for i in (0..n).step_by(3) {
            t.insert(format!("again {i}"), i);
        }
        assert_eq!(
            t.chunks.len(),
            before,
            "freed slots are filled before a new chunk"
        );
        assert_eq!(t.len(), n as usize);
        assert_eq!(t.iter().count(), n as usize);
        assert!(t
            .iter_with_ids()
            .all(|(id, k, v)| t.by_id(id) == Some((k, v))));
    }

    proptest! {
        /// The table answers as a `HashMap` does, and an entry keeps its id until removed.
        #[test]
        fn behaves_as_a_hash_map(ops in proptest::collection::vec(op(), 0..400)) {
            let mut table = Table::new();
            let mut model: HashMap<u16, (u32, Id)> = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        if let Some(e) = table.get_mut(&k) {
                            *e = v;
                            model.get_mut(&k).expect("in the model").0 = v;
                        } else {
                            let id = table.insert(k, v);
                            model.insert(k, (v, id));
                        }
                    }
                    Op::Remove(k) => {
                        prop_assert_eq!(table.remove(&k), model.remove(&k).map(|(v, _)| v));
                    }
                }
                prop_assert_eq!(table.len(), model.len());
                for (k, (v, id)) in &model {
                    prop_assert_eq!(table.get(k), Some(v));
                    prop_assert_eq!(table.id(k), Some(*id));
                    prop_assert_eq!(table.by_id(*id), Some((k, v)));
                }
                prop_assert_eq!(table.iter().count(), model.len());
            }
        }
    }
}
