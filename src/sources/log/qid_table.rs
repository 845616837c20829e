//! The bounded per-message memory of the counters: queue id → flags.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};

/// Default bound on tracked queue ids (two generations together).
pub const DEFAULT_QID_CAPACITY: usize = 100_000;

/// A queue id stored inline (queue ids are at most 24 bytes, see
/// `queue_id::is_queue_id`), so tracking a message does not allocate.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct QidKey([u8; 24]);

impl Hash for QidKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        for word in self.0.chunks_exact(8) {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(word);
            state.write_u64(u64::from_le_bytes(bytes));
        }
    }
}

/// A fast hash for queue ids (and smtpd pids): three folded multiplies with a per-process
/// random seed. SipHash (std's default) cost a fifth of the parse time;
/// the seed keeps collisions from being precomputable by someone who can
/// write log lines.
#[derive(Clone)]
pub struct QidHashBuilder {
    seed: u64,
}

impl Default for QidHashBuilder {
    fn default() -> Self {
        QidHashBuilder {
            seed: std::collections::hash_map::RandomState::new().hash_one(0x5157_u64) | 1,
        }
    }
}

impl BuildHasher for QidHashBuilder {
    type Hasher = QidHasher;
    fn build_hasher(&self) -> QidHasher {
        QidHasher(self.seed)
    }
}

pub struct QidHasher(u64);

#[inline(always)]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

impl Hasher for QidHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    #[inline(always)]
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }

    #[inline(always)]
    fn write_u64(&mut self, x: u64) {
        self.0 = folded_multiply(self.0 ^ x, 0x5851_F42D_4C95_7F2D);
    }

    #[inline(always)]
    fn finish(&self) -> u64 {
        folded_multiply(self.0, 0x9E37_79B9_7F4A_7C15)
    }
}

impl QidKey {
    pub fn new(id: &[u8]) -> Option<QidKey> {
        if id.is_empty() || id.len() > 24 {
            return None;
        }
        let mut key = [0u8; 24];
        key[..id.len()].copy_from_slice(id);
        Some(QidKey(key))
    }

    pub fn as_bytes(&self) -> &[u8] {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(24);
        &self.0[..len]
    }
}

impl std::fmt::Debug for QidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", String::from_utf8_lossy(self.as_bytes()))
    }
}

impl Serialize for QidKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

impl<'de> Deserialize<'de> for QidKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<QidKey, D::Error> {
        let s = String::deserialize(d)?;
        QidKey::new(s.as_bytes()).ok_or_else(|| serde::de::Error::custom("invalid queue id"))
    }
}

type QidMap = HashMap<QidKey, u16, QidHashBuilder>;

/// Ids created since the last move to the generations, at most this many
/// (or a quarter of the capacity): a table this small (about 100 KiB)
/// stays in the CPU cache.
const NURSERY_LIMIT: usize = 1792;

/// Bounded map of queue id → flags.
///
/// A message's lines come close together: its id is created (smtpd
/// `client=`, pickup `uid=`), looked up a few times and removed within a
/// few lines. New ids go to a small *nursery* table that stays in the CPU
/// cache; inserting each new id into a table of 100 000 cost two cache
/// misses, a quarter of the parse time. Ids that outlive the nursery
/// (held, deferred, or never seen removed) move to two generations: a
/// looked-up id lives in the young one; when that is full, the old one is
/// dropped and the young one becomes old, so live messages survive while
/// forgotten ones age out. Each generation is allocated once at its full
/// size (growing a table briefly holds two copies). Serialized as the two
/// maps `young` (nursery included) and `old`, as earlier versions did, so
/// state files carry over.
#[derive(Debug, Clone)]
pub struct QidTable {
    capacity: usize,
    nursery_limit: usize,
    nursery: QidMap,
    young: QidMap,
    old: QidMap,
}

impl QidTable {
    /// `capacity` is clamped to 4..=[`DEFAULT_QID_CAPACITY`]: it also comes
    /// from saved state, which must not make the agent allocate at will.
    pub fn new(capacity: usize) -> QidTable {
        let capacity = capacity.clamp(4, DEFAULT_QID_CAPACITY);
        let nursery_limit = NURSERY_LIMIT.min(capacity / 4);
        let mut table = QidTable {
            capacity,
            nursery_limit,
            nursery: QidMap::default(),
            young: QidMap::default(),
            old: QidMap::default(),
        };
        table.nursery = table.new_map(2 * nursery_limit);
        table.young = table.new_map(table.generation_limit());
        table
    }

    /// Ids per generation: what the nursery leaves of the capacity, halved.
    fn generation_limit(&self) -> usize {
        (self.capacity - self.nursery_limit) / 2
    }

    fn new_map(&self, capacity: usize) -> QidMap {
        QidMap::with_capacity_and_hasher(capacity, self.nursery.hasher().clone())
    }

    pub fn len(&self) -> usize {
        self.nursery.len() + self.young.len() + self.old.len()
    }

    /// Flags of `key`, 0 if unknown.
    #[cfg(test)]
    pub fn get(&self, key: &QidKey) -> u16 {
        self.nursery
            .get(key)
            .or_else(|| self.young.get(key))
            .or_else(|| self.old.get(key))
            .copied()
            .unwrap_or(0)
    }

    /// Mutable flags of an id whose message was just created (its first
    /// log line): a copy of it in the generations can only be left over
    /// from an earlier message with the same id, so they are not searched.
    #[inline]
    pub(super) fn entry_new(&mut self, key: QidKey) -> &mut u16 {
        if self.nursery.len() >= self.nursery_limit {
            self.empty_nursery();
        }
        self.nursery.entry(key).or_insert(0)
    }

    /// Mutable flags of `key`, inserting it (an id found in the old
    /// generation moves to the young one).
    #[inline]
    pub(super) fn entry(&mut self, key: QidKey) -> &mut u16 {
        if self.nursery.len() >= self.nursery_limit {
            self.empty_nursery();
        }
        let limit = self.generation_limit();
        match self.nursery.entry(key) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                if let Some(flags) = self.old.remove(&key) {
                    insert_young(&mut self.young, &mut self.old, limit, key, flags);
                }
                match self.young.get_mut(&key) {
                    Some(flags) => flags,
                    None => v.insert(0),
                }
            }
        }
    }

    pub(super) fn remove(&mut self, key: &QidKey) {
        // A leftover copy in a generation ages out by itself.
        if self.nursery.remove(key).is_none() && self.young.remove(key).is_none() {
            self.old.remove(key);
        }
    }

    /// Move the nursery's ids into the young generation, all together: if
    /// they do not all fit, the young generation becomes old first. (Moving
    /// them one by one would split them between the generations in hash
    /// order, and which ids age out first would differ from run to run.)
    #[cold]
    fn empty_nursery(&mut self) {
        let fresh = self.new_map(2 * self.nursery_limit);
        let nursery = std::mem::replace(&mut self.nursery, fresh);
        let limit = self.generation_limit();
        if self.young.len() + nursery.len() > limit {
            let young = self.new_map(limit);
            self.old = std::mem::replace(&mut self.young, young);
        }
        for (key, flags) in nursery {
            self.old.remove(&key);
            self.young.insert(key, flags);
        }
    }
}

/// Insert into the young generation; when it is full, it becomes the old
/// one (the old one is dropped) and a new young one starts.
fn insert_young(young: &mut QidMap, old: &mut QidMap, limit: usize, key: QidKey, flags: u16) {
    if young.len() >= limit && !young.contains_key(&key) {
        let fresh = QidMap::with_capacity_and_hasher(limit, young.hasher().clone());
        *old = std::mem::replace(young, fresh);
    }
    young.insert(key, flags);
}

/// One generation of a [`QidTable`] serialized as a map: the young one
/// with the nursery (which wins over a leftover copy), the old one without
/// the ids the others hold.
struct GenerationMap<'a> {
    table: &'a QidTable,
    young: bool,
}

impl Serialize for GenerationMap<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.table;
        let flags = |(key, flags): (&QidKey, &u16)| (*key, *flags);
        if self.young {
            s.collect_map(
                t.young
                    .iter()
                    .filter(|(key, _)| !t.nursery.contains_key(key))
                    .chain(&t.nursery)
                    .map(flags),
            )
        } else {
            s.collect_map(
                t.old
                    .iter()
                    .filter(|(key, _)| !t.nursery.contains_key(key) && !t.young.contains_key(key))
                    .map(flags),
            )
        }
    }
}

#[derive(Serialize)]
struct QidTableOut<'a> {
    capacity: usize,
    young: GenerationMap<'a>,
    old: GenerationMap<'a>,
}

#[derive(Deserialize)]
struct QidTableIn {
    capacity: usize,
    young: HashMap<QidKey, u16>,
    old: HashMap<QidKey, u16>,
}

impl Serialize for QidTable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        QidTableOut {
            capacity: self.capacity,
            young: GenerationMap {
                table: self,
                young: true,
            },
            old: GenerationMap {
                table: self,
                young: false,
            },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for QidTable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<QidTable, D::Error> {
        let saved = QidTableIn::deserialize(d)?;
        let mut table = QidTable::new(saved.capacity);
        // Within the bound (the saved young map includes the nursery); a
        // hand-edited file may hold more.
        let limit = table.generation_limit();
        table.old.extend(saved.old.into_iter().take(limit));
        table
            .young
            .extend(saved.young.into_iter().take(limit + table.nursery_limit));
        table.old.retain(|key, _| !table.young.contains_key(key));
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qid_table_round_trips_in_the_saved_format() {
        let mut table = QidTable::new(40);
        let ids: Vec<QidKey> = (0..30u32)
            .map(|i| QidKey::new(format!("4F3A21C{i:03X}").as_bytes()).unwrap())
            .collect();
        for (i, key) in ids.iter().enumerate() {
            *table.entry_new(*key) |= 1 << (i % 8);
        }
        table.remove(&ids[29]);
        // Nursery limit 10, main table 30 with generations of 15: the
        // oldest ids were dropped, the newest are in the nursery.
        let json = serde_json::to_value(&table).unwrap();
        assert_eq!(json["capacity"], 40);
        let young = json["young"].as_object().unwrap();
        let old = json["old"].as_object().unwrap();
        assert!(young.contains_key("4F3A21C01C") && !young.contains_key("4F3A21C01D"));
        assert!(table.len() <= 40);
        assert_eq!(young.len() + old.len(), table.len());
        let restored: QidTable = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(restored.len(), table.len());
        for key in &ids {
            assert_eq!(restored.get(key), table.get(key), "{key:?}");
        }
        // A saved capacity is bounded (it sizes an allocation).
        let huge: QidTable = serde_json::from_value(
            serde_json::json!({"capacity": 1u64 << 60, "young": {}, "old": {}}),
        )
        .unwrap();
        assert_eq!(huge.capacity, DEFAULT_QID_CAPACITY);
        // The format of earlier versions (two maps) loads as it is.
        let saved = serde_json::json!({
            "capacity": 100,
            "young": {"4F3A21C0D3": 5},
            "old": {"4F3A21C0D1": 1}
        });
        let old_format: QidTable = serde_json::from_value(saved.clone()).unwrap();
        assert_eq!(old_format.get(&QidKey::new(b"4F3A21C0D1").unwrap()), 1);
        assert_eq!(serde_json::to_value(&old_format).unwrap(), saved);
    }
}
