//! The index of the book and of the backlogs: where each entry lives, found by its
//! name's hash.
//!
//! A book of a million fresh nodes inserts a million names nobody asked for before, and
//! each insertion lands on a random slot of a table far larger than the caches: the
//! cost of the pipeline is the cost of that cache miss. So this table is built to take
//! one miss per insertion and to let the book *prefetch* it for the records behind the
//! one at hand:
//!
//! - one array of 12-byte slots (32 bits of the name's hash, the entry's chunk and
//!   offset in the arena); a slot with hash 0 is empty, so stored hashes are never 0;
//! - open addressing with linear probing from the slot the hash's top bits pick
//!   (Fibonacci hashing), at most three quarters full: the slots probed for a name are
//!   neighbours, usually in the same cache line;
//! - removal shifts the following slots back (no tombstones), so lookups never slow
//!   down with churn;
//! - growing rehashes from the stored hashes alone, never reading the entries.
//!
//! The table knows nothing of names: [`Slots::find`] takes the hash and a predicate
//! that checks a candidate's entry.

/// Where an entry lives, with 32 bits of its name's hash (0: the slot is empty).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Slot {
    pub hash: u32,
    pub chunk: u32,
    pub offset: u32,
}

/// The fewest slots a non-empty table has.
const MIN_SLOTS: usize = 16;

/// Open-addressed slots; see the module docs.
#[derive(Debug, Clone, Default)]
pub(super) struct Slots {
    slots: Vec<Slot>,
    len: usize,
}

/// Where a lookup ended: at the slot of a match, or at the empty slot where it would go.
pub(super) enum Found {
    At(usize),
    Vacant(usize),
}

impl Slots {
    /// The hash a slot stores for `hash` (never 0, the empty mark).
    pub fn stored(hash: u64) -> u32 {
        (hash as u32).max(1)
    }

    /// The home slot of a stored hash.
    fn home(&self, hash: u32) -> usize {
        let bits = self.slots.len().trailing_zeros();
        (u64::from(hash).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
    }

    /// Starts loading the home slot of `hash` into the cache, so that a lookup of it
    /// soon after finds it there (nothing when the table is empty).
    pub fn prefetch(&self, hash: u32) {
        if !self.slots.is_empty() {
            crate::sys::prefetch(&self.slots[self.home(hash)]);
        }
    }

    /// Looks `hash` up; `is` checks whether a slot with that hash is the one sought.
    /// Makes room first, so a `Vacant` answer can be filled with [`insert_at`].
    ///
    /// [`insert_at`]: Slots::insert_at
    pub fn find_or_make_room(&mut self, hash: u32, is: impl Fn(&Slot) -> bool) -> Found {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        self.find_in(hash, is)
    }

    /// Looks `hash` up; `None` when no slot matches.
    pub fn find(&self, hash: u32, is: impl Fn(&Slot) -> bool) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        match self.find_in(hash, is) {
            Found::At(i) => Some(i),
            Found::Vacant(_) => None,
        }
    }

    fn find_in(&self, hash: u32, is: impl Fn(&Slot) -> bool) -> Found {
        let mask = self.slots.len() - 1;
        let mut i = self.home(hash);
        // The table is never full, so an empty slot ends every probe.
        loop {
            let slot = &self.slots[i];
            if slot.hash == 0 {
                return Found::Vacant(i);
            }
            if slot.hash == hash && is(slot) {
                return Found::At(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// Fills the vacant slot `i` (from [`find_or_make_room`](Slots::find_or_make_room)).
    pub fn insert_at(&mut self, i: usize, slot: Slot) {
        debug_assert!(slot.hash != 0 && self.slots[i].hash == 0);
        self.slots[i] = slot;
        self.len += 1;
    }

    /// The slot at `i`.
    pub fn get(&self, i: usize) -> &Slot {
        &self.slots[i]
    }

    /// The slot at `i`, to change where its entry lives.
    pub fn get_mut(&mut self, i: usize) -> &mut Slot {
        &mut self.slots[i]
    }

    /// Empties slot `i`, shifting back the slots whose probe passed through it.
    pub fn remove_at(&mut self, i: usize) -> Slot {
        let mask = self.slots.len() - 1;
        let removed = std::mem::take(&mut self.slots[i]);
        self.len -= 1;
        let mut hole = i;
        let mut j = (i + 1) & mask;
        while self.slots[j].hash != 0 {
            let home = self.home(self.slots[j].hash);
            // Slot j may move into the hole when its home is not in (hole, j].
            let distance_home_to_j = j.wrapping_sub(home) & mask;
            let distance_hole_to_j = j.wrapping_sub(hole) & mask;
            if distance_home_to_j >= distance_hole_to_j {
                self.slots[hole] = std::mem::take(&mut self.slots[j]);
                hole = j;
            }
            j = (j + 1) & mask;
        }
        removed
    }

    /// Doubles the table (or makes the first one), placing every slot anew.
    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(MIN_SLOTS);
        let mut slots = Vec::with_capacity(size);
        let _ = crate::sys::populate(&mut slots);
        slots.resize(size, Slot::default());
        let old = std::mem::replace(&mut self.slots, slots);
        let mask = size - 1;
        for slot in old.into_iter().filter(|s| s.hash != 0) {
            let mut i = self.home(slot.hash);
            while self.slots[i].hash != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = slot;
        }
    }

    /// Keeps only the slots `keep` approves; `keep` may change where a slot's entry
    /// lives, not its hash. In place: the walk starts just after an empty slot, so no
    /// run of slots wraps past its start, and the backward shifts of removals only move
    /// slots it has not visited yet.
    pub fn retain(&mut self, mut keep: impl FnMut(&mut Slot) -> bool) {
        let size = self.slots.len();
        // The table is never full: an empty table has no slots, any other an empty one.
        let Some(empty) = self.slots.iter().position(|s| s.hash == 0) else {
            return;
        };
        let mask = size - 1;
        let mut i = (empty + 1) & mask;
        let mut left = size;
        while left > 0 {
            let slot = &mut self.slots[i];
            if slot.hash != 0 {
                let hash = slot.hash;
                if !keep(slot) {
                    // A later slot of the run may move into `i`: look at `i` again.
                    self.remove_at(i);
                    continue;
                }
                debug_assert_eq!(self.slots[i].hash, hash, "retain changed a hash");
            }
            i = (i + 1) & mask;
            left -= 1;
        }
    }

    /// Every used slot, for changing where entries live.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.slots.iter_mut().filter(|s| s.hash != 0)
    }

    /// Every used slot.
    pub fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().filter(|s| s.hash != 0)
    }

    /// How many slots are used.
    pub fn len(&self) -> usize {
        self.len
    }

    /// How many slots the table has.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Empties the table, keeping it if it is small (a large one is given back: clearing
    /// it would cost as much as building it again).
    pub fn clear(&mut self) {
        if self.slots.len() > KEPT_ON_CLEAR {
            *self = Slots::default();
        } else if self.len > 0 {
            self.slots.fill(Slot::default());
            self.len = 0;
        }
    }
}

/// The most slots [`Slots::clear`] keeps.
const KEPT_ON_CLEAR: usize = 1 << 12;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// A table from keys to values through `Slots`, with tiny hashes that collide a lot.
    #[derive(Default)]
    struct Model {
        slots: Slots,
    }

    impl Model {
        fn hash(key: u32) -> u32 {
            Slots::stored(u64::from(key % 7))
        }

        fn insert(&mut self, key: u32, value: u32) {
            let hash = Self::hash(key);
            match self.slots.find_or_make_room(hash, |s| s.chunk == key) {
                Found::At(i) => self.slots.get_mut(i).offset = value,
                Found::Vacant(i) => self.slots.insert_at(
                    i,
                    Slot {
                        hash,
                        chunk: key,
                        offset: value,
                    },
                ),
            }
        }

        fn remove(&mut self, key: u32) -> bool {
            match self.slots.find(Self::hash(key), |s| s.chunk == key) {
                Some(i) => {
                    self.slots.remove_at(i);
                    true
                }
                None => false,
            }
        }

        fn get(&self, key: u32) -> Option<u32> {
            let i = self.slots.find(Self::hash(key), |s| s.chunk == key)?;
            Some(self.slots.slots[i].offset)
        }
    }

    #[test]
    fn a_cleared_table_is_empty_and_fills_again_small_or_large() {
        for n in [10u32, 10_000] {
            let mut table = Model::default();
            for key in 0..n {
                table.insert(key, key);
            }
            table.slots.clear();
            assert_eq!(table.slots.len(), 0);
            assert_eq!(table.get(3), None);
            assert!(
                table.slots.capacity() <= KEPT_ON_CLEAR,
                "a large table is given back"
            );
            table.insert(3, 30);
            assert_eq!(table.get(3), Some(30));
            assert_eq!(table.slots.iter().count(), 1);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Inserts, removals and retains, with heavy collisions and wrap-around, agree
        /// with a BTreeMap.
        #[test]
        fn slots_agree_with_a_map(
            ops in prop::collection::vec((0u8..7, 0u32..200, any::<u32>()), 0..600),
        ) {
            let mut table = Model::default();
            let mut map = BTreeMap::new();
            for (op, key, value) in ops {
                match op {
                    0..=3 => {
                        table.insert(key, value);
                        map.insert(key, value);
                    }
                    4 | 5 => prop_assert_eq!(table.remove(key), map.remove(&key).is_some()),
                    // Drops a third of the keys and changes the values of the rest.
                    _ => {
                        let drop = key % 3;
                        table.slots.retain(|s| {
                            s.offset = s.offset.wrapping_add(1);
                            s.chunk % 3 != drop
                        });
                        map.retain(|k, v| {
                            *v = v.wrapping_add(1);
                            k % 3 != drop
                        });
                    }
                }
                prop_assert_eq!(table.slots.len(), map.len());
            }
            for key in 0..200 {
                prop_assert_eq!(table.get(key), map.get(&key).copied());
            }
            table.slots.retain(|s| s.chunk % 2 == 0);
            map.retain(|k, _| k % 2 == 0);
            for key in 0..200 {
                prop_assert_eq!(table.get(key), map.get(&key).copied());
            }
            prop_assert_eq!(table.slots.iter().count(), map.len());
        }
    }
}
