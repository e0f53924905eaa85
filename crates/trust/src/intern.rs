//! String interner backed by one byte arena and an open-addressing table of `u32` ids.
//!
//! A `HashMap<String, u32>` costs ~80 bytes per DID; this layout costs the string bytes plus
//! ~12 bytes, which is what keeps a million-node graph small.

/// Marks an empty slot in the open-addressing table.
const EMPTY: u64 = u64::MAX;
/// Bytes before each string in the arena: its id (u32) and length (u16), little-endian.
const HEADER: usize = 6;

/// Interns strings to dense `u32` ids (0, 1, 2, ... in first-seen order).
///
/// Layout: one arena of `[id, len, bytes]` entries, `starts[id]` → entry offset, and an
/// open-addressing table of `(hash tag << 32) | entry offset`. A lookup touches one slot
/// (tags reject other keys without reading them) and one arena entry: two cache misses
/// where a table of bare ids needs three. That is most of the cost of resolving the
/// candidates' operator DIDs in a query.
#[derive(Debug, Clone, Default)]
pub(crate) struct Interner {
    arena: Vec<u8>,
    starts: Vec<u32>,
    /// Length zero or a power of two, kept at most 3/4 full.
    slots: Vec<u64>,
}

/// Word-at-a-time multiply-rotate hash with a murmur3 finaliser: fast on short keys, well
/// mixed in every bit, and deterministic (the crate promises identical output for identical
/// input, so no random seed).
fn hash(s: &str) -> u64 {
    let b = s.as_bytes();
    let mut h: u64 = 0x243f_6a88_85a3_08d3 ^ b.len() as u64;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
    let mut w = [0u8; 8];
    w[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

impl Interner {
    pub(crate) fn len(&self) -> usize {
        self.starts.len()
    }

    /// `(id, string)` of the entry at `off`.
    fn entry(&self, off: u32) -> Option<(u32, &str)> {
        let o = off as usize;
        let h = self.arena.get(o..o + HEADER)?;
        let id = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let len = usize::from(u16::from_le_bytes([h[4], h[5]]));
        let bytes = self.arena.get(o + HEADER..o + HEADER + len)?;
        Some((id, std::str::from_utf8(bytes).ok()?))
    }

    /// The string for `id`; empty for an id that was never issued.
    pub(crate) fn get(&self, id: u32) -> &str {
        self.starts
            .get(id as usize)
            .and_then(|&off| self.entry(off))
            .map_or("", |(_, s)| s)
    }

    /// The id of `s` if it was interned.
    pub(crate) fn lookup(&self, s: &str) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        self.lookup_hashed(s, hash(s))
    }

    /// [`Self::lookup`] of many strings. Each lookup costs two cache misses (a table slot,
    /// then an arena entry) that depend on each other; done one key at a time they are paid
    /// in sequence. Here the keys go through in stages — every first slot, then every arena
    /// entry those slots name, then the comparisons — so the loads of one stage are
    /// independent and the CPU overlaps their misses. Keys whose first slot holds another
    /// string finish with an ordinary probe.
    pub(crate) fn lookup_many<'k>(
        &self,
        keys: impl ExactSizeIterator<Item = &'k str>,
    ) -> Vec<Option<u32>> {
        let keys: Vec<&str> = keys.collect();
        if self.slots.is_empty() {
            return vec![None; keys.len()];
        }
        let mask = self.slots.len() - 1;
        let hashes: Vec<u64> = keys.iter().map(|k| hash(k)).collect();
        let firsts: Vec<u64> = hashes
            .iter()
            .map(|&h| {
                self.slots
                    .get((h as usize) & mask)
                    .copied()
                    .unwrap_or(EMPTY)
            })
            .collect();
        let entries: Vec<Option<(u32, &str)>> = hashes
            .iter()
            .zip(&firsts)
            .map(|(&h, &slot)| {
                (slot != EMPTY && slot >> 32 == h >> 32)
                    .then(|| self.entry(slot as u32))
                    .flatten()
            })
            .collect();
        keys.iter()
            .zip(hashes)
            .zip(firsts.into_iter().zip(entries))
            .map(|((&k, h), (slot, entry))| match entry {
                Some((id, t)) if t == k => Some(id),
                _ if slot == EMPTY => None,
                _ => self.lookup_hashed(k, h),
            })
            .collect()
    }

    fn lookup_hashed(&self, s: &str, h: u64) -> Option<u32> {
        let tag = h >> 32;
        let mask = self.slots.len() - 1;
        let mut i = (h as usize) & mask;
        loop {
            let slot = self.slots[i];
            if slot == EMPTY {
                return None;
            }
            if slot >> 32 == tag
                && let Some((id, t)) = self.entry(slot as u32)
                && t == s
            {
                return Some(id);
            }
            i = (i + 1) & mask;
        }
    }

    /// The id of `s`, interning it if new. `None` once ids or arena offsets (4 GiB) run
    /// out, or for a string longer than 65,535 bytes.
    pub(crate) fn intern(&mut self, s: &str) -> Option<u32> {
        if let Some(id) = self.lookup(s) {
            return Some(id);
        }
        let id = u32::try_from(self.starts.len())
            .ok()
            .filter(|&id| id != u32::MAX)?;
        let len = u16::try_from(s.len()).ok()?;
        let off = u32::try_from(self.arena.len()).ok()?;
        u32::try_from(self.arena.len() + HEADER + s.len())
            .ok()
            .filter(|&end| end != u32::MAX)?;
        if (self.starts.len() + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        self.arena.extend_from_slice(&id.to_le_bytes());
        self.arena.extend_from_slice(&len.to_le_bytes());
        self.arena.extend_from_slice(s.as_bytes());
        self.starts.push(off);
        self.place(s, off);
        Some(id)
    }

    fn place(&mut self, s: &str, off: u32) {
        let h = hash(s);
        let mask = self.slots.len() - 1;
        let mut i = (h as usize) & mask;
        while self.slots[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = (h >> 32) << 32 | u64::from(off);
    }

    fn grow(&mut self) {
        let cap = (self.slots.len() * 2).max(16);
        self.slots = vec![EMPTY; cap];
        for k in 0..self.starts.len() {
            let off = self.starts[k];
            let h = match self.entry(off) {
                Some((_, s)) => hash(s),
                None => continue,
            };
            let mask = cap - 1;
            let mut i = (h as usize) & mask;
            while self.slots[i] != EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = (h >> 32) << 32 | u64::from(off);
        }
    }

    /// Heap bytes held (capacities, not lengths).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.arena.capacity() + self.starts.capacity() * 4 + self.slots.capacity() * 8
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        self.arena.shrink_to_fit();
        self.starts.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_densely_and_round_trips() {
        let mut i = Interner::default();
        let words: Vec<String> = (0..1000).map(|n| format!("did:plc:{n:024}")).collect();
        for (n, w) in words.iter().enumerate() {
            assert_eq!(i.intern(w), Some(n as u32));
        }
        for (n, w) in words.iter().enumerate() {
            assert_eq!(i.intern(w), Some(n as u32), "re-interning is stable");
            assert_eq!(i.lookup(w), Some(n as u32));
            assert_eq!(i.get(n as u32), w);
        }
        assert_eq!(i.lookup("did:plc:absent"), None);
        assert_eq!(i.get(5000), "");
        assert_eq!(i.len(), 1000);
        assert_eq!(i.intern(""), Some(1000), "the empty string is a valid key");
        assert_eq!(i.get(1000), "");
        assert_eq!(i.lookup(""), Some(1000));
        let long = "x".repeat(70_000);
        assert_eq!(i.intern(&long), None, "longer than the 16-bit length field");
        assert_eq!(i.intern("é✓"), Some(1001), "non-ASCII round-trips");
        assert_eq!(i.get(1001), "é✓");
    }

    #[test]
    fn batched_lookup_equals_one_at_a_time() {
        let empty = Interner::default();
        assert_eq!(empty.lookup_many(["a", "b"].into_iter()), vec![None, None]);
        // Table sizes from nearly empty to 3/4 full, so many first slots hold other keys
        // and the probe fallback runs too.
        for n in [1usize, 7, 12, 100, 3_000, 12_288] {
            let mut i = Interner::default();
            for k in 0..n {
                i.intern(&format!("did:plc:{k:x}"));
            }
            let queries: Vec<String> = (0..2 * n + 5)
                .map(|k| format!("did:plc:{:x}", k * 3 % (2 * n + 5)))
                .collect();
            let want: Vec<Option<u32>> = queries.iter().map(|q| i.lookup(q)).collect();
            let got = i.lookup_many(queries.iter().map(String::as_str));
            assert_eq!(got, want, "n = {n}");
            assert!(got.iter().any(Option::is_none) && got.iter().any(Option::is_some));
        }
    }
}
