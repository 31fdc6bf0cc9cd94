//! A map sized for ten thousand entries: a slab of entries with stable 4-byte ids, and a hash
//! index of those ids.
//!
//! The registry holds one entry per domain. In a `HashMap` each entry sits in a bucket, and a
//! table that has just doubled has up to half of its buckets empty, each as large as an entry:
//! with 10,000 domains that was about 150 bytes per domain for the domains and 80 for the open
//! paths. Here the index holds 4-byte ids (5 bytes a bucket with its control byte), the entries
//! sit densely in a vector, and the paths point at a domain by its id.

use std::hash::{BuildHasher, Hash, RandomState};

use hashbrown::HashTable;

/// An entry's id: stable while it is in the table, reused after it is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Id(u32);

/// The map.
pub struct Table<K, V> {
    slots: Vec<Option<(K, V)>>,
    /// Empty slots, filled before the vector grows.
    free: Vec<u32>,
    index: HashTable<u32>,
    hasher: RandomState,
}

impl<K: Hash + Eq, V> Default for Table<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Hash + Eq, V> Table<K, V> {
    pub fn new() -> Self {
        Table {
            slots: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            hasher: RandomState::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn key_at(slots: &[Option<(K, V)>], i: u32) -> &K {
        &slots[i as usize]
            .as_ref()
            .expect("indexed slots hold an entry")
            .0
    }

    /// The id of `key`'s entry.
    pub fn id(&self, key: &K) -> Option<Id> {
        let hash = self.hasher.hash_one(key);
        self.index
            .find(hash, |&i| Self::key_at(&self.slots, i) == key)
            .map(|&i| Id(i))
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.id(key).and_then(|id| self.by_id(id)).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let id = self.id(key)?;
        self.by_id_mut(id).map(|(_, v)| v)
    }

    pub fn by_id(&self, id: Id) -> Option<(&K, &V)> {
        self.slots.get(id.0 as usize)?.as_ref().map(|(k, v)| (k, v))
    }

    pub fn by_id_mut(&mut self, id: Id) -> Option<(&K, &mut V)> {
        self.slots
            .get_mut(id.0 as usize)?
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
                self.slots[i as usize] = Some((key, value));
                i
            }
            None => {
                let i = u32::try_from(self.slots.len()).expect("fewer than 2^32 entries");
                self.slots.push(Some((key, value)));
                i
            }
        };
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index
            .insert_unique(hash, i, |&j| hasher.hash_one(Self::key_at(slots, j)));
        Id(i)
    }

    /// Removes `key`'s entry.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        let found = self
            .index
            .find_entry(hash, |&i| Self::key_at(slots, i) == key)
            .ok()?;
        let (i, _) = found.remove();
        self.free.push(i);
        self.slots[i as usize].take().map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.slots.iter().flatten().map(|(k, v)| (k, v))
    }

    pub fn iter_with_ids(&self) -> impl Iterator<Item = (Id, &K, &V)> {
        self.slots
            .iter()
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
