//! [`KeyedMap`]: a node's few entries by string key (latest values, metrics, named sets), kept in
//! one sorted vector.
//!
//! Most report nodes have one to ten entries per map and there are tens of thousands of nodes in a
//! large window. A `BTreeMap` allocates a whole leaf (room for eleven entries) for each non-empty
//! map, which was most of the memory of a folded part and of a merged window; a sorted vector
//! holds just its entries, and is as quick to search at these sizes. Everything that adds many
//! entries at once (collecting, extending, merging two maps) sorts or merges in one pass, so a
//! map with an absurd number of entries still costs `n log n`, never the square of its size.

use std::cmp::Ordering;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::name::Name;

/// Merges `theirs` into `mine`, both sorted (`cmp` orders an item of `mine` against one of
/// `theirs`), in one pass: an item of `theirs` becomes `take(the item of mine it equals, if any,
/// it)`. The one sorted merge every sorted list of the collector uses.
pub fn merge_sorted<T, U>(
    mine: Vec<T>,
    theirs: impl IntoIterator<Item = U>,
    cmp: impl Fn(&T, &U) -> Ordering,
    mut take: impl FnMut(Option<T>, U) -> T,
) -> Vec<T> {
    let theirs = theirs.into_iter();
    let mut merged = Vec::with_capacity(mine.len() + theirs.size_hint().0);
    let mut mine = mine.into_iter().peekable();
    for item in theirs {
        while let Some(kept) = mine.next_if(|m| cmp(m, &item) == Ordering::Less) {
            merged.push(kept);
        }
        let same = mine.next_if(|m| cmp(m, &item) == Ordering::Equal);
        merged.push(take(same, item));
    }
    merged.extend(mine);
    merged
}

/// Where `key` is in `list` (sorted by their names), as a binary search says, trying the item at
/// `hint` first: keys looked up in order (as a probe sends a node's latest values and adjacency)
/// are each found where the one before ended, without a search.
pub fn find_from<V>(list: &[(Name, V)], key: &str, hint: usize) -> Result<usize, usize> {
    match list.get(hint) {
        Some((k, _)) if k.as_str() == key => Ok(hint),
        _ => list.binary_search_by(|(k, _)| k.as_str().cmp(key)),
    }
}

#[derive(Clone, PartialEq)]
pub struct KeyedMap<V>(Vec<(Name, V)>);

impl<V> Default for KeyedMap<V> {
    fn default() -> Self {
        KeyedMap(Vec::new())
    }
}

impl<V: fmt::Debug> fmt::Debug for KeyedMap<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

pub type Iter<'a, V> =
    std::iter::Map<std::slice::Iter<'a, (Name, V)>, fn(&'a (Name, V)) -> (&'a Name, &'a V)>;

impl<V> KeyedMap<V> {
    pub fn new() -> Self {
        KeyedMap(Vec::new())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.find(key).ok().map(|at| &self.0[at].1)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        let at = self.find(key).ok()?;
        Some(&mut self.0[at].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`, returning the value it had.
    pub fn insert(&mut self, key: impl Into<Name>, value: V) -> Option<V> {
        let key = key.into();
        match self.find(&key) {
            Ok(at) => Some(std::mem::replace(&mut self.0[at].1, value)),
            Err(at) => {
                self.0.insert(at, (key, value));
                None
            }
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<V> {
        let at = self.find(key).ok()?;
        Some(self.0.remove(at).1)
    }

    /// The value of `key`, made by `make` if it has none.
    pub fn get_or_insert_with(&mut self, key: &str, make: impl FnOnce() -> V) -> &mut V {
        let at = match self.find(key) {
            Ok(at) => at,
            Err(at) => {
                self.0.insert(at, (Name::new(key), make()));
                at
            }
        };
        &mut self.0[at].1
    }

    pub fn iter(&self) -> Iter<'_, V> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// The entries whose key starts with `prefix`, in key order: found by binary search, so a table
    /// of a node with many entries costs its own rows, not the whole map.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a Name, &'a V)> {
        let start = self.0.partition_point(|(k, _)| k.as_str() < prefix);
        self.0[start..]
            .iter()
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k, v))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&Name, &mut V)> {
        self.0.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &Name> {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.0.iter_mut().map(|(_, v)| v)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&Name, &mut V) -> bool) {
        self.0.retain_mut(|(k, v)| keep(k, v));
    }

    /// Entries sorted by key, one per key: of a key that came twice, the last.
    fn from_unsorted(mut entries: Vec<(Name, V)>) -> Self {
        if !entries.is_sorted_by(|a, b| a.0 < b.0) {
            entries.reverse();
            // Stable, on the reversed list: of equal keys the last that came is first.
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            entries.dedup_by(|a, b| a.0 == b.0);
        }
        KeyedMap(entries)
    }

    /// Merges `theirs` in, in one pass: a key both have through `combine`, one only `theirs` has
    /// made by `make`.
    pub fn merge_with(
        &mut self,
        theirs: &KeyedMap<V>,
        mut combine: impl FnMut(&mut V, &V),
        mut make: impl FnMut(&V) -> V,
    ) {
        // Mostly keys `mine` already has: combined in place.
        if theirs.0.iter().all(|(k, _)| self.contains_key(k)) {
            for (key, value) in &theirs.0 {
                if let Some(mine) = self.get_mut(key) {
                    combine(mine, value);
                }
            }
            return;
        }
        self.0 = merge_sorted(
            std::mem::take(&mut self.0),
            &theirs.0,
            |(k, _), (key, _)| k.cmp(key),
            |same, (key, value)| match same {
                Some((k, mut v)) => {
                    combine(&mut v, value);
                    (k, v)
                }
                None => (key.clone(), make(value)),
            },
        );
    }

    /// Folds entries in, in the order they came: a known key's through `update`, a new key's made
    /// by `make` (and the same new key again, through `update`). New keys are sorted and merged
    /// in at once.
    pub fn fold<K: AsRef<str> + Into<Name>, T>(
        &mut self,
        entries: impl IntoIterator<Item = (K, T)>,
        mut update: impl FnMut(&mut V, T),
        mut make: impl FnMut(T) -> V,
    ) {
        let mut fresh = Vec::new();
        let mut hint = 0;
        for (key, item) in entries {
            match find_from(&self.0, key.as_ref(), hint) {
                Ok(at) => {
                    update(&mut self.0[at].1, item);
                    hint = at + 1;
                }
                Err(_) => fresh.push((key, item)),
            }
        }
        if fresh.is_empty() {
            return;
        }
        // Stable: a key that came twice is taken in the order it came.
        fresh.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
        let mut made: Vec<(Name, V)> = Vec::with_capacity(fresh.len());
        for (key, item) in fresh {
            match made.last_mut() {
                Some((last, value)) if last == key.as_ref() => update(value, item),
                _ => made.push((key.into(), make(item))),
            }
        }
        // None of `made` is in `mine`.
        self.0 = merge_sorted(
            std::mem::take(&mut self.0),
            made,
            |(k, _), (key, _)| k.cmp(key),
            |_, entry| entry,
        );
    }

    /// Lets go of room left by entries removed.
    pub fn shrink(&mut self) {
        if self.0.capacity() > 2 * self.0.len() + 4 {
            self.0.shrink_to_fit();
        }
    }
}

/// A key's place in a map, as `BTreeMap::entry` gives it.
pub struct Entry<'a, V> {
    map: &'a mut KeyedMap<V>,
    key: Name,
}

impl<V> KeyedMap<V> {
    pub fn entry(&mut self, key: impl Into<Name>) -> Entry<'_, V> {
        Entry {
            map: self,
            key: key.into(),
        }
    }
}

impl<'a, V> Entry<'a, V> {
    pub fn or_insert_with(self, make: impl FnOnce() -> V) -> &'a mut V {
        let map = self.map;
        let at = match map.find(&self.key) {
            Ok(at) => at,
            Err(at) => {
                map.0.insert(at, (self.key, make()));
                at
            }
        };
        &mut map.0[at].1
    }

    pub fn or_insert(self, value: V) -> &'a mut V {
        self.or_insert_with(|| value)
    }

    pub fn or_default(self) -> &'a mut V
    where
        V: Default,
    {
        self.or_insert_with(V::default)
    }
}

impl<V> std::ops::Index<&str> for KeyedMap<V> {
    type Output = V;
    /// Panics if `key` is absent, as `BTreeMap`'s does.
    fn index(&self, key: &str) -> &V {
        self.get(key).expect("no entry found for key")
    }
}

impl<V> From<std::collections::BTreeMap<Name, V>> for KeyedMap<V> {
    fn from(map: std::collections::BTreeMap<Name, V>) -> Self {
        KeyedMap(map.into_iter().collect())
    }
}

impl<K: Into<Name>, V, const N: usize> From<[(K, V); N]> for KeyedMap<V> {
    fn from(entries: [(K, V); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl<K: Into<Name>, V> FromIterator<(K, V)> for KeyedMap<V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        KeyedMap::from_unsorted(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl<K: Into<Name>, V> Extend<(K, V)> for KeyedMap<V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, entries: I) {
        let mut all = std::mem::take(&mut self.0);
        all.extend(entries.into_iter().map(|(k, v)| (k.into(), v)));
        *self = KeyedMap::from_unsorted(all);
    }
}

impl<V> IntoIterator for KeyedMap<V> {
    type Item = (Name, V);
    type IntoIter = std::vec::IntoIter<(Name, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a, V> IntoIterator for &'a KeyedMap<V> {
    type Item = (&'a Name, &'a V);
    type IntoIter = Iter<'a, V>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<V: Serialize> Serialize for KeyedMap<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (k, v) in self {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for KeyedMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = KeyedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(1024));
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(KeyedMap::from_unsorted(entries))
            }
        }
        d.deserialize_map(MapVisitor(std::marker::PhantomData))
    }
}

/// A set of names in one sorted vector (a render node's edges), for the reason [`KeyedMap`]
/// is: most render nodes have no edge or one, and a `BTreeSet` allocates a leaf for eleven.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SortedSet(Vec<Name>);

impl SortedSet {
    pub fn new() -> Self {
        SortedSet(Vec::new())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0 = Vec::new();
    }

    fn find(&self, item: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|m| m.as_str().cmp(item))
    }

    pub fn contains(&self, item: &str) -> bool {
        self.find(item).is_ok()
    }

    /// False if it was there already.
    pub fn insert(&mut self, item: Name) -> bool {
        match self.find(&item) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, item);
                true
            }
        }
    }

    pub fn remove(&mut self, item: &str) -> bool {
        match self.find(item) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Name> {
        self.0.iter()
    }

    fn sorted(mut items: Vec<Name>) -> Self {
        if !items.is_sorted_by(|a, b| a < b) {
            items.sort_unstable();
            items.dedup();
        }
        SortedSet(items)
    }
}

impl FromIterator<Name> for SortedSet {
    fn from_iter<I: IntoIterator<Item = Name>>(items: I) -> Self {
        SortedSet::sorted(items.into_iter().collect())
    }
}

impl Extend<Name> for SortedSet {
    fn extend<I: IntoIterator<Item = Name>>(&mut self, items: I) {
        let mut all = std::mem::take(&mut self.0);
        let before = all.len();
        all.extend(items);
        if all.len() > before {
            *self = SortedSet::sorted(all);
        } else {
            self.0 = all;
        }
    }
}

impl<'a> IntoIterator for &'a SortedSet {
    type Item = &'a Name;
    type IntoIter = std::slice::Iter<'a, Name>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The same operations on a `KeyedMap` and a `BTreeMap` give the same map.
    #[test]
    fn behaves_as_a_btree_map() {
        let mut seed = 7u64;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) % n
        };
        for _ in 0..200 {
            let mut keyed = KeyedMap::new();
            let mut btree = BTreeMap::new();
            for step in 0..40 {
                let key = format!("k{}", next(12));
                match next(6) {
                    0 => assert_eq!(keyed.insert(key.clone(), step), btree.insert(key, step)),
                    1 => assert_eq!(keyed.remove(&key), btree.remove(&key)),
                    2 => {
                        let batch: Vec<(String, u64)> = (0..next(5))
                            .map(|i| (format!("k{}", next(12)), i))
                            .collect();
                        keyed.extend(batch.clone());
                        btree.extend(batch);
                    }
                    3 => {
                        let theirs: KeyedMap<u64> = (0..next(5))
                            .map(|i| (format!("k{}", next(12)), i))
                            .collect();
                        keyed.merge_with(&theirs, |m, t| *m += t, |t| t * 10);
                        for (k, t) in &theirs {
                            btree
                                .entry(k.to_string())
                                .and_modify(|m| *m += t)
                                .or_insert(t * 10);
                        }
                    }
                    4 => {
                        let mut batch: Vec<(String, u64)> = (0..next(5))
                            .map(|i| (format!("k{}", next(12)), i))
                            .collect();
                        // As probes send latest values: every key known, in order, and maybe
                        // some new ones among them.
                        if next(2) == 0 {
                            batch.extend(keyed.iter().map(|(k, _)| (k.to_string(), next(9))));
                            batch.sort_by(|a, b| a.0.cmp(&b.0));
                        }
                        keyed.fold(batch.clone(), |m, t| *m = *m * 2 + t, |t| t + 100);
                        for (k, t) in batch {
                            btree
                                .entry(k)
                                .and_modify(|m| *m = *m * 2 + t)
                                .or_insert(t + 100);
                        }
                    }
                    _ => {
                        *keyed.get_or_insert_with(&key, || 5) += 1;
                        *btree.entry(key).or_insert(5) += 1;
                    }
                }
                let as_btree: BTreeMap<String, u64> =
                    keyed.iter().map(|(k, v)| (k.to_string(), *v)).collect();
                assert_eq!(as_btree, btree);
                assert!(keyed.0.is_sorted_by(|a, b| a.0 < b.0));
            }
        }
    }

    #[test]
    fn sorted_set_behaves_as_a_btree_set() {
        let mut seed = 3u64;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) % n
        };
        let mut sorted = SortedSet::new();
        let mut btree = std::collections::BTreeSet::new();
        for _ in 0..2_000 {
            let item = Name::from(format!("e{}", next(20)));
            match next(4) {
                0 => assert_eq!(sorted.insert(item.clone()), btree.insert(item)),
                1 => assert_eq!(sorted.remove(&item), btree.remove(&item)),
                2 => {
                    let batch: Vec<Name> = (0..next(6))
                        .map(|_| Name::from(format!("e{}", next(20))))
                        .collect();
                    sorted.extend(batch.clone());
                    btree.extend(batch);
                }
                _ => assert_eq!(sorted.contains(&item), btree.contains(&item)),
            }
            assert!(sorted.iter().eq(btree.iter()));
            assert_eq!(sorted.len(), btree.len());
        }
    }

    #[test]
    fn decodes_and_encodes_as_a_map_the_last_of_a_repeated_key_winning() {
        let map: KeyedMap<u32> = serde_json::from_str(r#"{"b": 1, "a": 2, "b": 3}"#).unwrap();
        assert_eq!(serde_json::to_string(&map).unwrap(), r#"{"a":2,"b":3}"#);
    }
}
