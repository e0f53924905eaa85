//! String interner backed by one byte arena and an open-addressing table of `u32` ids.
//!
//! A `HashMap<String, u32>` costs ~80 bytes per DID; this layout costs the string bytes plus
//! ~12 bytes, which is what keeps a million-node graph small.

/// Marks an empty slot in the open-addressing table.
const EMPTY: u32 = u32::MAX;

/// Interns strings to dense `u32` ids (0, 1, 2, ... in first-seen order).
#[derive(Debug, Clone, Default)]
pub(crate) struct Interner {
    /// All interned strings, back to back.
    arena: String,
    /// `ends[i]` is the end offset of string `i` in `arena` (its start is `ends[i - 1]` or 0).
    ends: Vec<u32>,
    /// Open-addressing table of ids; length is zero or a power of two, kept at most half full.
    slots: Vec<u32>,
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
        self.ends.len()
    }

    /// The string for `id`; empty for an id that was never issued.
    pub(crate) fn get(&self, id: u32) -> &str {
        let i = id as usize;
        let Some(&end) = self.ends.get(i) else {
            return "";
        };
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.arena.get(start as usize..end as usize).unwrap_or("")
    }

    /// The id of `s` if it was interned.
    pub(crate) fn lookup(&self, s: &str) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = (hash(s) as usize) & mask;
        loop {
            let id = self.slots[i];
            if id == EMPTY {
                return None;
            }
            if self.get(id) == s {
                return Some(id);
            }
            i = (i + 1) & mask;
        }
    }

    /// The id of `s`, interning it if new. `None` once `u32` ids are exhausted.
    pub(crate) fn intern(&mut self, s: &str) -> Option<u32> {
        if let Some(id) = self.lookup(s) {
            return Some(id);
        }
        let id = u32::try_from(self.ends.len())
            .ok()
            .filter(|&id| id != EMPTY)?;
        // Offsets are u32: the arena holds at most 4 GiB of strings.
        let end = u32::try_from(self.arena.len() + s.len()).ok()?;
        if (self.ends.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        self.arena.push_str(s);
        self.ends.push(end);
        self.place(id, s);
        Some(id)
    }

    fn place(&mut self, id: u32, s: &str) {
        let mask = self.slots.len() - 1;
        let mut i = (hash(s) as usize) & mask;
        while self.slots[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = id;
    }

    fn grow(&mut self) {
        let cap = (self.slots.len() * 2).max(16);
        self.slots = vec![EMPTY; cap];
        for id in 0..self.ends.len() {
            // Ids below `ends.len()` always fit in u32 (checked when issued).
            let id = id as u32;
            let mask = cap - 1;
            let mut i = (hash(self.get(id)) as usize) & mask;
            while self.slots[i] != EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = id;
        }
    }

    /// Heap bytes held (capacities, not lengths).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.arena.capacity() + self.ends.capacity() * 4 + self.slots.capacity() * 4
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        self.arena.shrink_to_fit();
        self.ends.shrink_to_fit();
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
    }
}
