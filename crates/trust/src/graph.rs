//! The in-memory trust graph: interned DIDs, forward and reverse CSR adjacency, edge data in
//! struct-of-arrays, and a small overlay (additions + tombstones) for live changes.
//!
//! Base edges are numbered in forward-CSR order, so the forward side needs no edge-index
//! array: edge `e` goes from the author whose offset range holds `e` to `fwd_to[e]`.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::compact::{cid_digest, cid_from_digest, split_uri, tid_decode, tid_encode};
use crate::error::TrustError;
use crate::intern::Interner;
use crate::model::{BuildOptions, EdgeRef, Endorsement, GraphStats};
use crate::weight::{KAPPA_MATCH, KAPPA_UNSCOPED, base_weight, covering_prefixes, created_seconds};

/// "No node / no edge".
pub(crate) const NONE: u32 = u32::MAX;
/// Edge ids with this bit set index the overlay; others index the base arrays.
pub(crate) const OVERLAY_BIT: u32 = 1 << 31;
/// Set in `strength[e]` when edge `e` has an expiry or a pin (looked up in `conds`).
const COND_FLAG: u8 = 0x80;
/// `rkey[e]` for a record key that is not a TID (the string lives in `odd_rkeys`);
/// TIDs keep bit 63 clear, so they never collide with it.
const ODD_RKEY: u64 = u64::MAX;
/// `capset[e]` for a capability-set id that does not fit in 16 bits.
const WIDE_CAPSET: u16 = u16::MAX;

/// Fx-style hasher for `u32` keys: the maps on the query path are keyed by dense ids, and
/// SipHash would dominate their cost.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

pub(crate) type IdMap<V> = HashMap<u32, V, BuildHasherDefault<IdHasher>>;

/// Validity conditions of an edge beyond its weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cond {
    /// `i64::MAX` when the endorsement never expires.
    expires_at_us: i64,
    /// Service id and pinned-CID id, or `NONE`.
    pin_service: u32,
    pin_cid: u32,
}

/// An edge added after the build.
#[derive(Debug, Clone)]
struct OverlayEdge {
    from: u32,
    to: u32,
    strength: u8,
    created_at_us: i64,
    capset: u32,
    cond: Option<Cond>,
    uri: String,
    cid: String,
    live: bool,
}

/// Interned capability sets: set `s` is `items[off[s]..off[s + 1]]`, sorted. Set 0 is empty.
#[derive(Debug, Clone)]
struct CapSets {
    off: Vec<u32>,
    items: Vec<u32>,
    index: HashMap<Vec<u32>, u32>,
}

impl Default for CapSets {
    fn default() -> Self {
        let mut index = HashMap::new();
        index.insert(Vec::new(), 0);
        Self {
            off: vec![0, 0],
            items: Vec::new(),
            index,
        }
    }
}

impl CapSets {
    fn get(&self, s: u32) -> &[u32] {
        let s = s as usize;
        match (self.off.get(s), self.off.get(s + 1)) {
            (Some(&a), Some(&b)) => self.items.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }
    fn len(&self) -> usize {
        self.off.len() - 1
    }
    fn intern(&mut self, mut set: Vec<u32>) -> Option<u32> {
        set.sort_unstable();
        set.dedup();
        if let Some(&id) = self.index.get(&set) {
            return Some(id);
        }
        let id = u32::try_from(self.len()).ok()?;
        self.items.extend_from_slice(&set);
        self.off.push(u32::try_from(self.items.len()).ok()?);
        self.index.insert(set, id);
        Some(id)
    }
}

/// A trust graph over operator DIDs. Build it with [`TrustGraph::build`]; keep it current
/// with [`add`](TrustGraph::add), [`remove`](TrustGraph::remove) and
/// [`set_service_cid`](TrustGraph::set_service_cid); compact it with
/// [`rebuilt`](TrustGraph::rebuilt) once [`needs_rebuild`](TrustGraph::needs_rebuild) says so.
#[derive(Debug, Clone)]
pub struct TrustGraph {
    opts: BuildOptions,
    pub(crate) dids: Interner,
    caps: Interner,
    capsets: CapSets,
    collections: Interner,
    services: Interner,
    cids: Interner,
    /// Current CID id per service id, or `NONE`.
    current_cid: Vec<u32>,
    /// Capability set each service offers, per service id (0: none known).
    offered: Vec<u32>,

    /// Nodes covered by the base CSR (nodes interned later have no base edges).
    base_nodes: usize,
    fwd_off: Vec<u32>,
    fwd_to: Vec<u32>,
    rev_off: Vec<u32>,
    /// Authors of in-edges, grouped by subject, ascending. No edge-index array: the edge is
    /// found in the author's forward range (sorted by subject) only when the author matters.
    rev_from: Vec<u32>,

    strength: Vec<u8>,
    /// Whole seconds since the Unix epoch (weights decay by the second).
    created: Vec<u32>,
    /// Capability-set id; `WIDE_CAPSET` means "see `wide_capsets`".
    capset: Vec<u16>,
    wide_capsets: IdMap<u32>,
    /// Collection id of edges outside collection 0 (nearly every edge is in one collection).
    other_colls: IdMap<u16>,
    rkey: Vec<u64>,
    /// Record-CID digests; empty when `keep_cids` is off.
    cid: Vec<[u8; 32]>,
    conds: IdMap<Cond>,
    odd_rkeys: IdMap<Box<str>>,
    odd_cids: IdMap<Box<str>>,
    tomb: Vec<u64>,
    tomb_count: usize,

    overlay: Vec<OverlayEdge>,
    overlay_live: usize,
    ov_out: IdMap<Vec<u32>>,
    ov_in: IdMap<Vec<u32>>,
    ov_by_uri: HashMap<String, u32>,

    self_dropped: usize,

    /// Identity of this graph's node numbering: unique per build, kept by clones. Node ids
    /// only ever get appended, so a DID resolved against a graph with this identity keeps
    /// its id ([`crate::PreparedCandidates`] relies on it).
    pub(crate) numbering: u64,
}

/// Source of [`TrustGraph::numbering`] values.
static NUMBERINGS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// An endorsement after validation, with its strings resolved to ids.
struct Resolved<'a> {
    from: u32,
    to: u32,
    strength: u8,
    capset: u32,
    coll: u16,
    rkey: u64,
    odd_rkey: Option<&'a str>,
    cond: Option<Cond>,
}

fn cap_err(what: &'static str, limit: u64) -> TrustError {
    TrustError::Capacity { what, limit }
}

/// Interns `s`, naming `what` in the error.
fn interned(i: &mut Interner, s: &str, what: &'static str) -> Result<u32, TrustError> {
    if s.len() > usize::from(u16::MAX) {
        return Err(TrustError::TooLong { what, len: s.len() });
    }
    i.intern(s)
        .ok_or_else(|| cap_err(what, u64::from(u32::MAX)))
}

impl TrustGraph {
    fn empty(opts: &BuildOptions) -> Self {
        Self {
            opts: opts.clone(),
            dids: Interner::default(),
            caps: Interner::default(),
            capsets: CapSets::default(),
            collections: Interner::default(),
            services: Interner::default(),
            cids: Interner::default(),
            current_cid: Vec::new(),
            offered: Vec::new(),
            base_nodes: 0,
            fwd_off: vec![0],
            fwd_to: Vec::new(),
            rev_off: vec![0],
            rev_from: Vec::new(),
            strength: Vec::new(),
            created: Vec::new(),
            capset: Vec::new(),
            wide_capsets: IdMap::default(),
            other_colls: IdMap::default(),
            rkey: Vec::new(),
            cid: Vec::new(),
            conds: IdMap::default(),
            odd_rkeys: IdMap::default(),
            odd_cids: IdMap::default(),
            tomb: Vec::new(),
            tomb_count: 0,
            overlay: Vec::new(),
            overlay_live: 0,
            ov_out: IdMap::default(),
            ov_in: IdMap::default(),
            ov_by_uri: HashMap::new(),
            self_dropped: 0,
            numbering: NUMBERINGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Validates `e` and interns its strings. `Ok(None)` for a self-endorsement.
    fn resolve<'a>(&mut self, e: &'a Endorsement) -> Result<Option<Resolved<'a>>, TrustError> {
        let strength = u8::try_from(e.strength)
            .ok()
            .filter(|s| (1..=100).contains(s))
            .ok_or_else(|| TrustError::InvalidStrength {
                uri: e.uri.clone(),
                strength: e.strength,
            })?;
        let (collection, rkey_str) =
            split_uri(&e.uri, &e.author).ok_or_else(|| TrustError::BadUri {
                uri: e.uri.clone(),
                author: e.author.clone(),
            })?;
        if e.author == e.subject {
            return Ok(None);
        }
        let from = interned(&mut self.dids, &e.author, "DIDs")?;
        let to = interned(&mut self.dids, &e.subject, "DIDs")?;
        let coll = u16::try_from(interned(&mut self.collections, collection, "collections")?)
            .map_err(|_| cap_err("collections", u64::from(u16::MAX)))?;
        let mut ids = Vec::with_capacity(e.capabilities.len());
        for c in &e.capabilities {
            ids.push(interned(&mut self.caps, c, "capabilities")?);
        }
        let capset = self
            .capsets
            .intern(ids)
            .ok_or_else(|| cap_err("capability sets", u64::from(NONE)))?;
        let (rkey, odd_rkey) = match tid_decode(rkey_str) {
            Some(v) => (v, None),
            None => (ODD_RKEY, Some(rkey_str)),
        };
        let cond = if e.expires_at_us.is_some() || e.pinned.is_some() {
            let (pin_service, pin_cid) = match &e.pinned {
                Some((s, c)) => {
                    let s = interned(&mut self.services, s, "services")?;
                    let c = interned(&mut self.cids, c, "CIDs")?;
                    if self.current_cid.len() <= s as usize {
                        self.current_cid.resize(s as usize + 1, NONE);
                    }
                    (s, c)
                }
                None => (NONE, NONE),
            };
            Some(Cond {
                expires_at_us: e.expires_at_us.unwrap_or(i64::MAX),
                pin_service,
                pin_cid,
            })
        } else {
            None
        };
        Ok(Some(Resolved {
            from,
            to,
            strength,
            capset,
            coll,
            rkey,
            odd_rkey,
            cond,
        }))
    }

    /// Builds a compacted graph from endorsements (any order; the result does not depend on
    /// it). Self-endorsements are dropped; a repeated URI or an invalid record is an error.
    pub fn build<I, E>(endorsements: I, opts: &BuildOptions) -> Result<Self, TrustError>
    where
        I: IntoIterator<Item = E>,
        E: Borrow<Endorsement>,
    {
        let mut g = Self::empty(opts);
        let mut from = Vec::new();
        let mut to = Vec::new();
        let mut strength = Vec::new();
        let mut created = Vec::new();
        let mut capset = Vec::new();
        let mut coll = Vec::new();
        let mut rkey = Vec::new();
        let mut cid = Vec::new();
        let mut conds: IdMap<Cond> = IdMap::default();
        let mut odd_rkeys: IdMap<Box<str>> = IdMap::default();
        let mut odd_cids: IdMap<Box<str>> = IdMap::default();
        for e in endorsements {
            let e = e.borrow();
            let Some(r) = g.resolve(e)? else {
                g.self_dropped += 1;
                continue;
            };
            let i = u32::try_from(from.len())
                .ok()
                .filter(|&i| i < OVERLAY_BIT)
                .ok_or_else(|| cap_err("edges", u64::from(OVERLAY_BIT)))?;
            from.push(r.from);
            to.push(r.to);
            strength.push(r.strength | if r.cond.is_some() { COND_FLAG } else { 0 });
            created.push(created_seconds(e.created_at_us));
            capset.push(r.capset);
            coll.push(r.coll);
            rkey.push(r.rkey);
            if let Some(s) = r.odd_rkey {
                odd_rkeys.insert(i, s.into());
            }
            if let Some(c) = r.cond {
                conds.insert(i, c);
            }
            if opts.keep_cids {
                match cid_digest(&e.cid) {
                    Some(d) => cid.push(d),
                    None => {
                        cid.push([0; 32]);
                        odd_cids.insert(i, e.cid.as_str().into());
                    }
                }
            }
        }
        let m = from.len();
        let n = g.dids.len();

        // Forward CSR by counting sort on the author.
        let mut fwd_off = vec![0u32; n + 1];
        for &f in &from {
            fwd_off[f as usize + 1] += 1;
        }
        for i in 0..n {
            fwd_off[i + 1] += fwd_off[i];
        }
        let mut cursor: Vec<u32> = fwd_off[..n].to_vec();
        let mut perm = vec![0u32; m];
        for (i, &f) in from.iter().enumerate() {
            let c = &mut cursor[f as usize];
            perm[*c as usize] = i as u32;
            *c += 1;
        }
        drop(cursor);
        drop(from);
        // Within each author: reject repeated record keys, then order by subject for locality.
        for a in 0..n {
            let range = &mut perm[fwd_off[a] as usize..fwd_off[a + 1] as usize];
            range.sort_unstable_by(|&x, &y| {
                (coll[x as usize], rkey[x as usize])
                    .cmp(&(coll[y as usize], rkey[y as usize]))
                    .then_with(|| odd_rkeys.get(&x).cmp(&odd_rkeys.get(&y)))
            });
            for w in range.windows(2) {
                let (x, y) = (w[0], w[1]);
                if coll[x as usize] == coll[y as usize]
                    && rkey[x as usize] == rkey[y as usize]
                    && odd_rkeys.get(&x) == odd_rkeys.get(&y)
                {
                    let author = g.dids.get(a as u32).to_owned();
                    let uri = uri_string(
                        &author,
                        g.collections.get(u32::from(coll[x as usize])),
                        rkey[x as usize],
                        odd_rkeys.get(&x).map(|s| &**s),
                    );
                    return Err(TrustError::DuplicateUri { uri });
                }
            }
            range.sort_unstable_by_key(|&x| (to[x as usize], x));
        }
        let mut inv = vec![0u32; m];
        for (p, &i) in perm.iter().enumerate() {
            inv[i as usize] = p as u32;
        }
        g.fwd_to = permute(&to, &perm);
        drop(to);
        g.strength = permute(&strength, &perm);
        drop(strength);
        g.created = permute(&created, &perm);
        drop(created);
        g.capset = perm
            .iter()
            .enumerate()
            .map(|(p, &i)| {
                let c = capset[i as usize];
                match u16::try_from(c) {
                    Ok(c) if c != WIDE_CAPSET => c,
                    _ => {
                        g.wide_capsets.insert(p as u32, c);
                        WIDE_CAPSET
                    }
                }
            })
            .collect();
        drop(capset);
        for (p, &i) in perm.iter().enumerate() {
            if coll[i as usize] != 0 {
                g.other_colls.insert(p as u32, coll[i as usize]);
            }
        }
        drop(coll);
        g.rkey = permute(&rkey, &perm);
        drop(rkey);
        if opts.keep_cids {
            g.cid = permute(&cid, &perm);
        }
        drop(cid);
        drop(perm);
        g.conds = remap(conds, &inv);
        g.odd_rkeys = remap(odd_rkeys, &inv);
        g.odd_cids = remap(odd_cids, &inv);
        drop(inv);

        // Reverse CSR by counting sort on the subject; sources come out ascending.
        let mut rev_off = vec![0u32; n + 1];
        for &t in &g.fwd_to {
            rev_off[t as usize + 1] += 1;
        }
        for i in 0..n {
            rev_off[i + 1] += rev_off[i];
        }
        let mut cursor: Vec<u32> = rev_off[..n].to_vec();
        let mut rev_from = vec![0u32; m];
        for a in 0..n {
            for e in fwd_off[a]..fwd_off[a + 1] {
                let c = &mut cursor[g.fwd_to[e as usize] as usize];
                rev_from[*c as usize] = a as u32;
                *c += 1;
            }
        }
        g.fwd_off = fwd_off;
        g.rev_off = rev_off;
        g.rev_from = rev_from;
        g.base_nodes = n;
        g.tomb = vec![0; m.div_ceil(64)];
        g.dids.shrink_to_fit();
        Ok(g)
    }

    // ----- live changes -------------------------------------------------------------------

    /// Adds (or, for a URI already present, replaces) one endorsement. Returns `false` for a
    /// self-endorsement, which never counts and is not stored.
    pub fn add(&mut self, e: &Endorsement) -> Result<bool, TrustError> {
        let Some(r) = self.resolve(e)? else {
            self.remove(&e.uri);
            return Ok(false);
        };
        self.remove(&e.uri);
        let idx = u32::try_from(self.overlay.len())
            .ok()
            .filter(|&i| i < OVERLAY_BIT)
            .ok_or_else(|| cap_err("overlay edges", u64::from(OVERLAY_BIT)))?;
        self.overlay.push(OverlayEdge {
            from: r.from,
            to: r.to,
            strength: r.strength,
            // Same precision as base edges, so a rebuild changes nothing.
            created_at_us: i64::from(created_seconds(e.created_at_us)) * 1_000_000,
            capset: r.capset,
            cond: r.cond,
            uri: e.uri.clone(),
            cid: e.cid.clone(),
            live: true,
        });
        self.overlay_live += 1;
        self.ov_out.entry(r.from).or_default().push(idx);
        self.ov_in.entry(r.to).or_default().push(idx);
        self.ov_by_uri.insert(e.uri.clone(), idx);
        Ok(true)
    }

    /// Removes the endorsement with this URI. Returns whether it was present.
    pub fn remove(&mut self, uri: &str) -> bool {
        if let Some(idx) = self.ov_by_uri.remove(uri) {
            let Some(o) = self.overlay.get_mut(idx as usize) else {
                return false;
            };
            o.live = false;
            let (from, to) = (o.from, o.to);
            self.overlay_live -= 1;
            if let Some(v) = self.ov_out.get_mut(&from) {
                v.retain(|&x| x != idx);
            }
            if let Some(v) = self.ov_in.get_mut(&to) {
                v.retain(|&x| x != idx);
            }
            return true;
        }
        match self.find_base(uri) {
            Some(e) if !self.is_tombstoned(e) => {
                self.tomb[e as usize / 64] |= 1 << (e % 64);
                self.tomb_count += 1;
                true
            }
            _ => false,
        }
    }

    /// Removes every live endorsement written by or naming `did`, and forgets the current
    /// version of its services (endorsements pinned to them lapse): what the store hides
    /// when an account stops being active (takedown, suspension, deactivation, deletion).
    /// Returns how many endorsements were removed. On reactivation the caller adds back what
    /// the store shows again ([`add`](TrustGraph::add),
    /// [`set_service_cid`](TrustGraph::set_service_cid)); no rebuild is needed either way.
    /// The cost is the node's degree plus one pass over the known service URIs.
    pub fn remove_operator(&mut self, did: &str) -> usize {
        self.remove_of(did, true)
    }

    /// Removes every live endorsement written by `did` (not those naming it) and forgets
    /// its services' versions and capabilities: what the store drops before a repo is
    /// written again from a full resync, whose records the caller then adds back. Costs
    /// the node's out-degree plus one pass over the known service URIs, not a rebuild.
    pub fn remove_repo(&mut self, did: &str) -> usize {
        self.remove_of(did, false)
    }

    /// [`remove_operator`](Self::remove_operator) (`incoming`) or
    /// [`remove_repo`](Self::remove_repo).
    fn remove_of(&mut self, did: &str, incoming: bool) -> usize {
        let prefix = format!("at://{did}/");
        for s in 0..self.services.len() {
            if self.services.get(s as u32).starts_with(&prefix) {
                if let Some(c) = self.current_cid.get_mut(s) {
                    *c = NONE;
                }
                if let Some(o) = self.offered.get_mut(s) {
                    *o = 0;
                }
            }
        }
        let Some(n) = self.node(did) else {
            return 0;
        };
        let mut base = Vec::new();
        let mut overlay = Vec::new();
        let mut sort = |e: u32| {
            if e & OVERLAY_BIT != 0 {
                overlay.push(e & !OVERLAY_BIT);
            } else {
                base.push(e);
            }
        };
        // Self-endorsements are never stored, so no edge is met from both sides.
        self.for_each_out(n, |_, e| sort(e));
        if incoming {
            self.for_each_in(n, |_| true, |_, e| sort(e));
        }
        let mut removed = 0;
        for e in base {
            if !self.is_tombstoned(e) {
                self.tomb[e as usize / 64] |= 1 << (e % 64);
                self.tomb_count += 1;
                removed += 1;
            }
        }
        let uris: Vec<String> = overlay
            .iter()
            .filter_map(|&i| self.overlay.get(i as usize))
            .filter(|o| o.live)
            .map(|o| o.uri.clone())
            .collect();
        for uri in uris {
            removed += usize::from(self.remove(&uri));
        }
        removed
    }

    /// Records `cid` as the current version of the service at `uri`; endorsements pinned to
    /// another version of it stop counting (and count again if this CID returns).
    pub fn set_service_cid(&mut self, uri: &str, cid: &str) -> Result<(), TrustError> {
        let s = interned(&mut self.services, uri, "services")?;
        let c = interned(&mut self.cids, cid, "CIDs")?;
        if self.current_cid.len() <= s as usize {
            self.current_cid.resize(s as usize + 1, NONE);
        }
        self.current_cid[s as usize] = c;
        Ok(())
    }

    /// Records the capabilities the service at `uri` offers. A query that names no
    /// capability weighs the final endorsement of a path to this service against them (see
    /// [`weight::kappa_offered`](crate::weight::kappa_offered)); a service with none known
    /// is weighed as before, every endorsement counting fully.
    pub fn set_service_capabilities<S: AsRef<str>>(
        &mut self,
        uri: &str,
        capabilities: &[S],
    ) -> Result<(), TrustError> {
        let s = interned(&mut self.services, uri, "services")?;
        let mut ids = Vec::with_capacity(capabilities.len());
        for c in capabilities {
            ids.push(interned(&mut self.caps, c.as_ref(), "capabilities")?);
        }
        let set = self
            .capsets
            .intern(ids)
            .ok_or_else(|| cap_err("capability sets", u64::from(NONE)))?;
        if self.offered.len() <= s as usize {
            self.offered.resize(s as usize + 1, 0);
        }
        self.offered[s as usize] = set;
        Ok(())
    }

    /// The capability set the service at `uri` offers (0: none known).
    pub(crate) fn offered_by(&self, uri: &str) -> u32 {
        self.services
            .lookup(uri)
            .and_then(|s| self.offered.get(s as usize))
            .copied()
            .unwrap_or(0)
    }

    /// Forgets the service's current version and capabilities (e.g. the service record was
    /// deleted): every endorsement pinned to it lapses.
    pub fn clear_service(&mut self, uri: &str) {
        if let Some(s) = self.services.lookup(uri) {
            if let Some(c) = self.current_cid.get_mut(s as usize) {
                *c = NONE;
            }
            if let Some(o) = self.offered.get_mut(s as usize) {
                *o = 0;
            }
        }
    }

    /// Whether churn since the build has passed `BuildOptions::rebuild_churn_ppm`.
    pub fn needs_rebuild(&self) -> bool {
        let churn = (self.tomb_count + self.overlay_live) as u128 * 1_000_000;
        churn > self.base_edges().max(1) as u128 * u128::from(self.opts.rebuild_churn_ppm)
    }

    /// A compacted copy: every live edge in the base arrays, no overlay, no tombstones.
    pub fn rebuilt(&self) -> Result<Self, TrustError> {
        let mut g = Self::build(self.live_endorsements(), &self.opts)?;
        for (s, &c) in self.current_cid.iter().enumerate() {
            if c != NONE {
                g.set_service_cid(self.services.get(s as u32), self.cids.get(c))?;
            }
        }
        for (s, &o) in self.offered.iter().enumerate() {
            if o != 0 {
                let caps: Vec<&str> = self
                    .capsets
                    .get(o)
                    .iter()
                    .map(|&c| self.caps.get(c))
                    .collect();
                g.set_service_capabilities(self.services.get(s as u32), &caps)?;
            }
        }
        Ok(g)
    }

    /// Every live endorsement, reconstructed (base first, then overlay). The CID is empty when
    /// the graph does not keep CIDs.
    pub fn live_endorsements(&self) -> impl Iterator<Item = Endorsement> + '_ {
        let base = (0..self.base_nodes).flat_map(move |a| {
            (self.fwd_off[a]..self.fwd_off[a + 1])
                .filter(move |&e| !self.is_tombstoned(e))
                .map(move |e| self.endorsement(e))
        });
        let over = self
            .overlay
            .iter()
            .enumerate()
            .filter(|(_, o)| o.live)
            .map(|(i, _)| self.endorsement(i as u32 | OVERLAY_BIT));
        base.chain(over)
    }

    fn endorsement(&self, e: u32) -> Endorsement {
        let r = self.edge_ref(e);
        let cond = self.cond(e);
        Endorsement {
            uri: r.uri,
            cid: r.cid.unwrap_or_default(),
            author: r.from,
            subject: r.to,
            capabilities: r.capabilities,
            strength: i64::from(self.strength_of(e)),
            created_at_us: r.created_at_us,
            expires_at_us: cond.map(|c| c.expires_at_us).filter(|&x| x != i64::MAX),
            pinned: cond.filter(|c| c.pin_service != NONE).map(|c| {
                (
                    self.services.get(c.pin_service).to_owned(),
                    self.cids.get(c.pin_cid).to_owned(),
                )
            }),
        }
    }

    /// Size, churn and approximate heap use.
    pub fn stats(&self) -> GraphStats {
        GraphStats {
            nodes: self.dids.len(),
            base_edges: self.base_edges(),
            tombstoned: self.tomb_count,
            overlay_edges: self.overlay_live,
            self_endorsements_dropped: self.self_dropped,
            heap_bytes: self.memory_breakdown().iter().map(|(_, b)| b).sum(),
        }
    }

    /// Approximate heap bytes by part (capacities; hash maps at their load factor).
    pub fn memory_breakdown(&self) -> Vec<(&'static str, usize)> {
        fn vb<T>(v: &Vec<T>) -> usize {
            v.capacity() * std::mem::size_of::<T>()
        }
        // Hash-map entries: key + value + one control byte, at hashbrown's 7/8 load.
        fn mb<V>(m: &IdMap<V>) -> usize {
            m.capacity() * (4 + std::mem::size_of::<V>() + 1) * 8 / 7
        }
        let strings = |m: &IdMap<Box<str>>| m.values().map(|s| s.len()).sum::<usize>();
        vec![
            ("DID interner", self.dids.heap_bytes()),
            (
                "CSR offsets (fwd + rev)",
                vb(&self.fwd_off) + vb(&self.rev_off),
            ),
            (
                "CSR targets + reverse sources",
                vb(&self.fwd_to) + vb(&self.rev_from),
            ),
            (
                "edge strength, created, capability set",
                vb(&self.strength) + vb(&self.created) + vb(&self.capset) + mb(&self.wide_capsets),
            ),
            ("edge expiry/pin conditions", mb(&self.conds)),
            (
                "record keys (TIDs, other rkeys, collections)",
                vb(&self.rkey)
                    + mb(&self.odd_rkeys)
                    + strings(&self.odd_rkeys)
                    + mb(&self.other_colls),
            ),
            (
                "record CIDs",
                vb(&self.cid) + mb(&self.odd_cids) + strings(&self.odd_cids),
            ),
            (
                "capabilities, collections, sets",
                self.caps.heap_bytes()
                    + self.collections.heap_bytes()
                    + vb(&self.capsets.off)
                    + vb(&self.capsets.items),
            ),
            (
                "services and their CIDs",
                self.services.heap_bytes()
                    + self.cids.heap_bytes()
                    + vb(&self.current_cid)
                    + vb(&self.offered),
            ),
            (
                "overlay and tombstones",
                vb(&self.tomb)
                    + self
                        .overlay
                        .iter()
                        .map(|o| std::mem::size_of::<OverlayEdge>() + o.uri.len() * 2 + o.cid.len())
                        .sum::<usize>(),
            ),
        ]
    }

    // ----- accessors used by the ranker ---------------------------------------------------

    pub(crate) fn base_edges(&self) -> usize {
        self.fwd_to.len()
    }

    /// Stored in-edges of `node` (live or not).
    pub(crate) fn in_degree(&self, node: u32) -> usize {
        let n = node as usize;
        let base = if n < self.base_nodes {
            (self.rev_off[n + 1] - self.rev_off[n]) as usize
        } else {
            0
        };
        base + self.ov_in.get(&node).map_or(0, Vec::len)
    }

    /// Stored out-edges of `node` (live or not).
    pub(crate) fn out_degree(&self, node: u32) -> usize {
        let n = node as usize;
        let base = if n < self.base_nodes {
            (self.fwd_off[n + 1] - self.fwd_off[n]) as usize
        } else {
            0
        };
        base + self.ov_out.get(&node).map_or(0, Vec::len)
    }

    pub(crate) fn node_count(&self) -> usize {
        self.dids.len()
    }

    pub(crate) fn node(&self, did: &str) -> Option<u32> {
        self.dids.lookup(did)
    }

    /// [`Self::node`] of many DIDs, with their cache misses overlapped.
    pub(crate) fn nodes<'d>(
        &self,
        dids: impl ExactSizeIterator<Item = &'d str>,
    ) -> Vec<Option<u32>> {
        self.dids.lookup_many(dids)
    }

    pub(crate) fn did(&self, node: u32) -> &str {
        self.dids.get(node)
    }

    fn is_tombstoned(&self, e: u32) -> bool {
        self.tomb
            .get(e as usize / 64)
            .is_some_and(|w| w & (1 << (e % 64)) != 0)
    }

    /// Calls `f(subject, edge)` for every stored out-edge of `node` (base then overlay).
    #[inline]
    pub(crate) fn for_each_out(&self, node: u32, mut f: impl FnMut(u32, u32)) {
        let n = node as usize;
        if n < self.base_nodes {
            for e in self.fwd_off[n]..self.fwd_off[n + 1] {
                f(self.fwd_to[e as usize], e);
            }
        }
        if let Some(v) = self.ov_out.get(&node) {
            for &i in v {
                if let Some(o) = self.overlay.get(i as usize) {
                    f(o.to, i | OVERLAY_BIT);
                }
            }
        }
    }

    /// For every distinct author `u` of a stored in-edge of `node` with `accept(u)` true,
    /// calls `f(u, edge)` for each of its edges to `node` (base then overlay). `accept` runs
    /// first so that the common case, an endorser the query does not care about, costs one
    /// sequential read and no edge lookup.
    #[inline]
    pub(crate) fn for_each_in(
        &self,
        node: u32,
        mut accept: impl FnMut(u32) -> bool,
        mut f: impl FnMut(u32, u32),
    ) {
        let n = node as usize;
        if n < self.base_nodes {
            let mut prev = NONE;
            for &u in &self.rev_from[self.rev_off[n] as usize..self.rev_off[n + 1] as usize] {
                if u == prev {
                    continue;
                }
                prev = u;
                if accept(u) {
                    self.for_each_base_edge(u, node, |e| f(u, e));
                }
            }
        }
        if let Some(v) = self.ov_in.get(&node) {
            for &i in v {
                if let Some(o) = self.overlay.get(i as usize)
                    && accept(o.from)
                {
                    f(o.from, i | OVERLAY_BIT);
                }
            }
        }
    }

    /// Calls `f(edge)` for each base edge `u → v`: a binary search in `u`'s forward range,
    /// which is sorted by subject.
    fn for_each_base_edge(&self, u: u32, v: u32, mut f: impl FnMut(u32)) {
        let a = u as usize;
        if a >= self.base_nodes {
            return;
        }
        let (lo, hi) = (self.fwd_off[a] as usize, self.fwd_off[a + 1] as usize);
        let range = &self.fwd_to[lo..hi];
        let start = range.partition_point(|&t| t < v);
        for (k, &t) in range[start..].iter().enumerate() {
            if t != v {
                break;
            }
            f((lo + start + k) as u32);
        }
    }

    /// The author of edge `e`.
    pub(crate) fn author_of(&self, e: u32) -> u32 {
        if e & OVERLAY_BIT != 0 {
            return self
                .overlay
                .get((e & !OVERLAY_BIT) as usize)
                .map_or(NONE, |o| o.from);
        }
        // The author is the node whose forward range holds e.
        let p = self.fwd_off.partition_point(|&o| o <= e);
        p.checked_sub(1).map_or(NONE, |a| a as u32)
    }

    pub(crate) fn subject_of(&self, e: u32) -> u32 {
        if e & OVERLAY_BIT != 0 {
            return self
                .overlay
                .get((e & !OVERLAY_BIT) as usize)
                .map_or(NONE, |o| o.to);
        }
        self.fwd_to.get(e as usize).copied().unwrap_or(NONE)
    }

    fn strength_of(&self, e: u32) -> u8 {
        if e & OVERLAY_BIT != 0 {
            return self
                .overlay
                .get((e & !OVERLAY_BIT) as usize)
                .map_or(0, |o| o.strength);
        }
        self.strength.get(e as usize).map_or(0, |s| s & !COND_FLAG)
    }

    fn cond(&self, e: u32) -> Option<Cond> {
        if e & OVERLAY_BIT != 0 {
            return self
                .overlay
                .get((e & !OVERLAY_BIT) as usize)
                .and_then(|o| o.cond);
        }
        self.conds.get(&e).copied()
    }

    fn coll_of(&self, e: u32) -> u16 {
        self.other_colls.get(&e).copied().unwrap_or(0)
    }

    fn capset_of(&self, e: u32) -> u32 {
        match self.capset.get(e as usize) {
            Some(&WIDE_CAPSET) => self.wide_capsets.get(&e).copied().unwrap_or(0),
            Some(&c) => u32::from(c),
            None => 0,
        }
    }

    /// The record URI of edge `e`.
    pub(crate) fn edge_uri(&self, e: u32) -> String {
        if e & OVERLAY_BIT != 0 {
            return self
                .overlay
                .get((e & !OVERLAY_BIT) as usize)
                .map(|o| o.uri.clone())
                .unwrap_or_default();
        }
        let i = e as usize;
        let Some(&rkey) = self.rkey.get(i) else {
            return String::new();
        };
        let coll = self.coll_of(e);
        uri_string(
            self.did(self.author_of(e)),
            self.collections.get(u32::from(coll)),
            rkey,
            self.odd_rkeys.get(&e).map(|s| &**s),
        )
    }

    /// The explaining form of edge `e`.
    pub(crate) fn edge_ref(&self, e: u32) -> EdgeRef {
        let (cid, capset, created) = if e & OVERLAY_BIT != 0 {
            match self.overlay.get((e & !OVERLAY_BIT) as usize) {
                Some(o) => (
                    self.opts.keep_cids.then(|| o.cid.clone()),
                    o.capset,
                    o.created_at_us,
                ),
                None => (None, 0, 0),
            }
        } else {
            let i = e as usize;
            let cid = if self.opts.keep_cids {
                match self.odd_cids.get(&e) {
                    Some(s) => Some(s.to_string()),
                    None => self.cid.get(i).map(cid_from_digest),
                }
            } else {
                None
            };
            (
                cid,
                self.capset_of(e),
                self.created.get(i).map_or(0, |&c| i64::from(c) * 1_000_000),
            )
        };
        // Sorted by string: capability ids depend on input order, the output must not.
        let mut capabilities: Vec<String> = self
            .capsets
            .get(capset)
            .iter()
            .map(|&c| self.caps.get(c).to_owned())
            .collect();
        capabilities.sort_unstable();
        EdgeRef {
            uri: self.edge_uri(e),
            cid,
            from: self.did(self.author_of(e)).to_owned(),
            to: self.did(self.subject_of(e)).to_owned(),
            capabilities,
            created_at_us: created,
        }
    }

    /// The base edge with this URI, by scanning its author's out-edges.
    fn find_base(&self, uri: &str) -> Option<u32> {
        let authority = uri.strip_prefix("at://")?.split('/').next()?;
        let a = self.node(authority)? as usize;
        if a >= self.base_nodes {
            return None;
        }
        let (collection, rkey_str) = split_uri(uri, authority)?;
        let coll = u16::try_from(self.collections.lookup(collection)?).ok()?;
        let rkey = tid_decode(rkey_str).unwrap_or(ODD_RKEY);
        (self.fwd_off[a]..self.fwd_off[a + 1]).find(|&e| {
            let i = e as usize;
            self.coll_of(e) == coll
                && self.rkey[i] == rkey
                && (rkey != ODD_RKEY || self.odd_rkeys.get(&e).is_some_and(|s| &**s == rkey_str))
        })
    }

    /// Per-query weight context: κ is the best match among `queries` (1 for every edge when
    /// there are none).
    pub(crate) fn weigher(&self, queries: &[&str], now_us: i64, half_life_us: i64) -> Weigher<'_> {
        let mut cover: Vec<u32> = queries
            .iter()
            .flat_map(|q| covering_prefixes(q))
            .filter_map(|p| self.caps.lookup(p))
            .collect();
        cover.sort_unstable();
        cover.dedup();
        Weigher {
            g: self,
            any_capability: queries.is_empty(),
            unscoped: KAPPA_UNSCOPED,
            cover,
            kappa_memo: vec![0; self.capsets.len()],
            now_us,
            half_life_us,
        }
    }

    /// The weight context of a path's final edge into a service offering capability set
    /// `offered`, for a query that names none: an unscoped endorsement counts fully, a
    /// scoped one if it covers one of the offered capabilities.
    pub(crate) fn offered_weigher(
        &self,
        offered: u32,
        now_us: i64,
        half_life_us: i64,
    ) -> Weigher<'_> {
        let names: Vec<&str> = self
            .capsets
            .get(offered)
            .iter()
            .map(|&c| self.caps.get(c))
            .collect();
        let mut w = self.weigher(&names, now_us, half_life_us);
        w.unscoped = KAPPA_MATCH;
        w
    }
}

/// Computes edge weights for one query, memoising κ per capability set.
pub(crate) struct Weigher<'g> {
    g: &'g TrustGraph,
    any_capability: bool,
    /// κ of an unscoped endorsement.
    unscoped: f64,
    /// Capability ids that cover one of the queried capabilities.
    cover: Vec<u32>,
    /// 0 unknown, 1 κ=0, 2 unscoped, 3 match.
    kappa_memo: Vec<u8>,
    now_us: i64,
    half_life_us: i64,
}

impl Weigher<'_> {
    fn kappa(&mut self, capset: u32) -> f64 {
        if self.any_capability {
            return KAPPA_MATCH;
        }
        let Some(slot) = self.kappa_memo.get_mut(capset as usize) else {
            return 0.0;
        };
        if *slot == 0 {
            let set = self.g.capsets.get(capset);
            *slot = if set.is_empty() {
                2
            } else if set.iter().any(|c| self.cover.contains(c)) {
                3
            } else {
                1
            };
        }
        match *slot {
            3 => KAPPA_MATCH,
            2 => self.unscoped,
            _ => 0.0,
        }
    }

    fn cond_ok(&self, c: &Cond) -> bool {
        if self.now_us >= c.expires_at_us {
            return false;
        }
        c.pin_service == NONE || self.g.current_cid.get(c.pin_service as usize) == Some(&c.pin_cid)
    }

    /// The weight of edge `e` for this query: zero if it is deleted, expired, lapsed or out
    /// of scope.
    #[inline]
    pub(crate) fn weight(&mut self, e: u32) -> f64 {
        let g = self.g;
        let (strength, created, capset) = if e & OVERLAY_BIT != 0 {
            let Some(o) = g.overlay.get((e & !OVERLAY_BIT) as usize) else {
                return 0.0;
            };
            if !o.live || o.cond.is_some_and(|c| !self.cond_ok(&c)) {
                return 0.0;
            }
            (o.strength, created_seconds(o.created_at_us), o.capset)
        } else {
            let i = e as usize;
            if g.tomb_count > 0 && g.is_tombstoned(e) {
                return 0.0;
            }
            let s = g.strength[i];
            if s & COND_FLAG != 0 && g.conds.get(&e).is_some_and(|c| !self.cond_ok(c)) {
                return 0.0;
            }
            let c = g.capset[i];
            let capset = if c == WIDE_CAPSET {
                g.capset_of(e)
            } else {
                u32::from(c)
            };
            (s & !COND_FLAG, g.created[i], capset)
        };
        let k = self.kappa(capset);
        if k == 0.0 {
            return 0.0;
        }
        base_weight(strength, created, self.now_us, self.half_life_us, k)
    }
}

/// Re-keys a side table from input order to CSR order.
fn remap<V>(map: IdMap<V>, inv: &[u32]) -> IdMap<V> {
    map.into_iter().map(|(k, v)| (inv[k as usize], v)).collect()
}

fn permute<T: Copy>(v: &[T], perm: &[u32]) -> Vec<T> {
    perm.iter().map(|&i| v[i as usize]).collect()
}

fn uri_string(author: &str, collection: &str, rkey: u64, odd: Option<&str>) -> String {
    let r = match odd {
        Some(s) => s.to_owned(),
        None => tid_encode(rkey),
    };
    format!("at://{author}/{collection}/{r}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(author: &str, rkey: &str, subject: &str, caps: &[&str]) -> Endorsement {
        Endorsement {
            uri: format!("at://{author}/dev.guildhall.endorsement/{rkey}"),
            cid: "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq".into(),
            author: author.into(),
            subject: subject.into(),
            capabilities: caps.iter().map(|s| s.to_string()).collect(),
            strength: 70,
            created_at_us: 1_700_000_000_000_000,
            expires_at_us: None,
            pinned: None,
        }
    }

    fn sorted(mut v: Vec<Endorsement>) -> Vec<Endorsement> {
        v.sort_by(|a, b| a.uri.cmp(&b.uri));
        v
    }

    #[test]
    fn build_round_trips_every_field() {
        let mut odd = e("did:plc:b", "self", "did:plc:a", &[]);
        odd.cid = "bafkreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq".into();
        odd.expires_at_us = Some(5);
        odd.pinned = Some((
            "at://did:plc:a/dev.guildhall.service/x".into(),
            "bafyx".into(),
        ));
        let input = vec![
            e(
                "did:plc:a",
                "3jzfcijpj2z2a",
                "did:plc:b",
                &["sms.send", "sms"],
            ),
            e("did:plc:a", "3jzfcijpj2z2b", "did:plc:c", &[]),
            odd,
            e("did:plc:c", "3jzfcijpj2z2c", "did:plc:a", &["email"]),
        ];
        let g = TrustGraph::build(&input, &BuildOptions::default());
        assert!(g.is_ok(), "{g:?}");
        let Ok(g) = g else { return };
        let mut want = input.clone();
        // Capability sets are stored sorted and deduplicated.
        want[0].capabilities = vec!["sms".into(), "sms.send".into()];
        assert_eq!(sorted(g.live_endorsements().collect()), sorted(want));
        let s = g.stats();
        assert_eq!(
            (s.nodes, s.base_edges, s.tombstoned, s.overlay_edges),
            (3, 4, 0, 0)
        );
        assert!(s.heap_bytes > 0);
    }

    #[test]
    fn build_rejects_bad_input_and_drops_self() {
        let dup = vec![
            e("did:plc:a", "3jzfcijpj2z2a", "did:plc:b", &[]),
            e("did:plc:a", "3jzfcijpj2z2a", "did:plc:c", &[]),
        ];
        assert!(matches!(
            TrustGraph::build(&dup, &BuildOptions::default()),
            Err(TrustError::DuplicateUri { .. })
        ));
        let dup_odd = vec![
            e("did:plc:a", "x", "did:plc:b", &[]),
            e("did:plc:a", "x", "did:plc:c", &[]),
        ];
        assert!(matches!(
            TrustGraph::build(&dup_odd, &BuildOptions::default()),
            Err(TrustError::DuplicateUri { .. })
        ));
        let not_dup = vec![
            e("did:plc:a", "x", "did:plc:b", &[]),
            e("did:plc:b", "x", "did:plc:c", &[]),
        ];
        assert!(TrustGraph::build(&not_dup, &BuildOptions::default()).is_ok());
        let mut weak = e("did:plc:a", "x", "did:plc:b", &[]);
        weak.strength = 0;
        assert!(matches!(
            TrustGraph::build([&weak], &BuildOptions::default()),
            Err(TrustError::InvalidStrength { .. })
        ));
        let mut foreign = e("did:plc:a", "x", "did:plc:b", &[]);
        foreign.author = "did:plc:z".into();
        assert!(matches!(
            TrustGraph::build([&foreign], &BuildOptions::default()),
            Err(TrustError::BadUri { .. })
        ));
        let long = e(
            "did:plc:a",
            "x",
            &format!("did:web:{}", "a".repeat(70_000)),
            &[],
        );
        assert!(matches!(
            TrustGraph::build([&long], &BuildOptions::default()),
            Err(TrustError::TooLong { what: "DIDs", .. })
        ));
        let selfe = e("did:plc:a", "x", "did:plc:a", &[]);
        let g = TrustGraph::build([&selfe], &BuildOptions::default());
        assert_eq!(
            g.map(|g| (g.stats().base_edges, g.stats().self_endorsements_dropped)),
            Ok((0, 1))
        );
    }

    #[test]
    fn overlay_add_replace_remove_and_churn() {
        let base: Vec<_> = (0..40)
            .map(|i| e("did:plc:a", &format!("x{i}"), &format!("did:plc:s{i}"), &[]))
            .collect();
        let Ok(mut g) = TrustGraph::build(&base, &BuildOptions::default()) else {
            panic!("build")
        };
        assert!(!g.needs_rebuild());
        assert!(g.remove("at://did:plc:a/dev.guildhall.endorsement/x3"));
        assert!(
            !g.remove("at://did:plc:a/dev.guildhall.endorsement/x3"),
            "already gone"
        );
        assert!(!g.remove("at://did:plc:q/dev.guildhall.endorsement/x3"));
        assert!(!g.needs_rebuild(), "1/40 is not past 5%");
        let mut upd = e("did:plc:a", "x4", "did:plc:new", &["sms"]);
        assert_eq!(g.add(&upd), Ok(true));
        upd.strength = 9;
        assert_eq!(g.add(&upd), Ok(true), "replacing an overlay edge");
        assert!(
            g.needs_rebuild(),
            "2 tombstones + 1 overlay edge of 40 is past 5%"
        );
        assert_eq!(g.add(&e("did:plc:n", "x", "did:plc:n", &[])), Ok(false));
        let s = g.stats();
        assert_eq!((s.tombstoned, s.overlay_edges), (2, 1));
        let live: Vec<_> = g.live_endorsements().collect();
        assert_eq!(live.len(), 39);
        assert!(live.contains(&upd));
        let Ok(r) = g.rebuilt() else {
            panic!("rebuild")
        };
        assert!(!r.needs_rebuild());
        assert_eq!(sorted(r.live_endorsements().collect()), sorted(live));
    }

    #[test]
    fn removing_an_operator_equals_building_without_it() {
        use crate::model::{CandidateProvider, RankOptions};
        let mut list = Vec::new();
        for (i, (a, b)) in [
            ("v", "x"),
            ("x", "y"),
            ("y", "z"),
            ("v", "w"),
            ("w", "z"),
            ("z", "v"),
            ("x", "z"),
            ("w", "y"),
        ]
        .iter()
        .enumerate()
        {
            list.push(e(
                &format!("did:plc:{a}"),
                &format!("3jzfcijpj2z{}", (b'a' + i as u8) as char),
                &format!("did:plc:{b}"),
                &[],
            ));
        }
        // v → y pinned to x's service: it counts only while x's service is current.
        let svc = "at://did:plc:x/dev.guildhall.service/s";
        let mut pinned = e("did:plc:v", "3jzfcijpj2zz", "did:plc:y", &[]);
        pinned.strength = 100;
        pinned.pinned = Some((svc.into(), "bafy-c1".into()));
        list.push(pinned);
        // Half in the base arrays, half in the overlay, one overlay edge replaced.
        let Ok(mut g) = TrustGraph::build(&list[..4], &BuildOptions::default()) else {
            panic!("build")
        };
        for x in &list[4..] {
            assert_eq!(g.add(x), Ok(true));
        }
        assert_eq!(g.set_service_cid(svc, "bafy-c1"), Ok(()));
        let mut replaced = list[6].clone();
        replaced.strength = 20;
        assert_eq!(g.add(&replaced), Ok(true));
        list[6] = replaced;
        let cands: Vec<CandidateProvider> = ["x", "y", "z", "w"]
            .iter()
            .map(|n| CandidateProvider {
                operator: format!("did:plc:{n}"),
                service: format!("s-{n}"),
                quality_ppm: 0,
            })
            .collect();
        let opts = RankOptions::default();
        let now = 1_700_000_000_000_000;
        let ranked = |g: &TrustGraph| g.rank(Some("did:plc:v"), None, &cands, now, &opts);
        let full = ranked(&g);

        // x wrote 2 and received 1 of the live edges.
        assert_eq!(g.remove_operator("did:plc:x"), 3);
        assert_eq!(g.remove_operator("did:plc:x"), 0, "already gone");
        assert_eq!(g.remove_operator("did:plc:nobody"), 0);
        let touches = |x: &Endorsement| x.author == "did:plc:x" || x.subject == "did:plc:x";
        let without: Vec<Endorsement> = list.iter().filter(|x| !touches(x)).cloned().collect();
        let Ok(fresh) = TrustGraph::build(&without, &BuildOptions::default()) else {
            panic!("build")
        };
        assert_eq!(ranked(&g), ranked(&fresh));
        assert_eq!(sorted(g.live_endorsements().collect()), sorted(without));
        assert_ne!(ranked(&g), full, "x mattered to the ranking");

        // Reactivation: the same endorsements and service come back, and so does the ranking.
        for x in list.iter().filter(|x| touches(x)) {
            assert_eq!(g.add(x), Ok(true));
        }
        assert_eq!(g.set_service_cid(svc, "bafy-c1"), Ok(()));
        assert_eq!(ranked(&g), full);
        assert_eq!(sorted(g.live_endorsements().collect()), sorted(list));
    }

    #[test]
    fn without_cids_paths_carry_none() {
        let opts = BuildOptions {
            keep_cids: false,
            ..BuildOptions::default()
        };
        let Ok(g) = TrustGraph::build([e("did:plc:a", "3jzfcijpj2z2a", "did:plc:b", &[])], &opts)
        else {
            panic!()
        };
        let r = g.edge_ref(0);
        assert_eq!(r.cid, None);
        assert_eq!(
            r.uri,
            "at://did:plc:a/dev.guildhall.endorsement/3jzfcijpj2z2a"
        );
    }
}
