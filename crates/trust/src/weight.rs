//! Edge weights: strength × age decay × capability scope, and the capability match rule.
//!
//! Capability match: an endorsement capability `e` covers a queried capability `c` when
//! `e == c` or `c` starts with `e` followed by `.` (so `sms` covers `sms.send` and
//! `sms.send.us`, but `sms.send` does not cover `sms`, and `sms` does not cover `smsx`).
//! Comparison is byte-exact: capability ids are NSID-like and case-sensitive.

use crate::model::Endorsement;

/// κ when the endorsement names (or covers) the queried capability.
pub const KAPPA_MATCH: f64 = 1.0;
/// κ for an unscoped endorsement.
pub const KAPPA_UNSCOPED: f64 = 0.5;

/// Whether endorsement capability `endorsed` covers the queried capability `query`.
pub fn capability_covers(endorsed: &str, query: &str) -> bool {
    match query.strip_prefix(endorsed) {
        Some("") => true,
        Some(rest) => !endorsed.is_empty() && rest.starts_with('.'),
        None => false,
    }
}

/// The capability ids an endorsement must name to cover `query`: every `.`-prefix of it.
pub(crate) fn covering_prefixes(query: &str) -> impl Iterator<Item = &str> {
    query
        .match_indices('.')
        .map(move |(i, _)| &query[..i])
        .chain(std::iter::once(query))
}

/// The capabilities a query names: none (`None`, an empty slice), one (`Some(c)`), or
/// several (a slice or `Vec`). Several weigh each edge by its best match among them, so
/// their order never matters.
pub trait Capabilities {
    /// The named capabilities.
    fn list(&self) -> Vec<&str>;
}

impl Capabilities for Option<&str> {
    fn list(&self) -> Vec<&str> {
        self.iter().copied().collect()
    }
}

impl<S: AsRef<str>> Capabilities for &[S] {
    fn list(&self) -> Vec<&str> {
        self.iter().map(AsRef::as_ref).collect()
    }
}

impl<S: AsRef<str>, const N: usize> Capabilities for &[S; N] {
    fn list(&self) -> Vec<&str> {
        self.iter().map(AsRef::as_ref).collect()
    }
}

impl<S: AsRef<str>> Capabilities for &Vec<S> {
    fn list(&self) -> Vec<&str> {
        self.iter().map(AsRef::as_ref).collect()
    }
}

/// κ(scope, queried capabilities): the best of [`kappa`] over them (so independent of their
/// order); with none, 1.
pub fn kappa_best<S: AsRef<str>>(capabilities: &[S], queries: &[&str]) -> f64 {
    if queries.is_empty() {
        return KAPPA_MATCH;
    }
    queries
        .iter()
        .map(|q| kappa(capabilities, Some(q)))
        .fold(0.0, f64::max)
}

/// κ of the final edge of a path when the query names no capability, weighed against what
/// the candidate service offers: an unscoped endorsement counts fully (it vouches for the
/// operator), a scoped one fully if it covers one of `offered`, not at all otherwise.
pub fn kappa_offered<S: AsRef<str>, T: AsRef<str>>(capabilities: &[S], offered: &[T]) -> f64 {
    if capabilities.is_empty()
        || offered.iter().any(|o| {
            capabilities
                .iter()
                .any(|e| capability_covers(e.as_ref(), o.as_ref()))
        })
    {
        KAPPA_MATCH
    } else {
        0.0
    }
}

/// κ(scope, capability). With no queried capability every endorsement counts fully.
pub fn kappa<S: AsRef<str>>(capabilities: &[S], query: Option<&str>) -> f64 {
    let Some(q) = query else {
        return KAPPA_MATCH;
    };
    if capabilities.is_empty() {
        KAPPA_UNSCOPED
    } else if capabilities
        .iter()
        .any(|e| capability_covers(e.as_ref(), q))
    {
        KAPPA_MATCH
    } else {
        0.0
    }
}

/// Creation time in whole seconds since the Unix epoch, clamped to `u32` — the precision
/// the graph stores (4 bytes an edge instead of 8).
pub fn created_seconds(created_at_us: i64) -> u32 {
    created_at_us
        .div_euclid(1_000_000)
        .clamp(0, i64::from(u32::MAX)) as u32
}

/// How far past `now` a `createdAt` may lie and still count: clocks of honest writers drift
/// by seconds, not minutes.
pub const MAX_CLOCK_SKEW_S: i64 = 300;

/// strength/100 · 2^(−age/τ) · κ, with age in whole seconds (`now` floored to the second,
/// creation as [`created_seconds`]). A record dated more than [`MAX_CLOCK_SKEW_S`] after
/// `now` weighs zero until then: a future date would otherwise keep it brand new (undecayed)
/// until that date. Within the skew its age is clamped at zero. A non-positive τ disables
/// decay.
///
/// Why refusal and not decay from first-seen time: `createdAt` is the only time the record
/// itself carries; a first-seen time differs per instance, resets on a backfill or a fresh
/// index, and would make rankings depend on when this instance happened to look. Refusal
/// keeps the weight a function of the record and `now` alone, and makes a future date
/// strictly worse for its writer than an honest one.
pub fn base_weight(
    strength: u8,
    created_s: u32,
    now_us: i64,
    half_life_us: i64,
    kappa: f64,
) -> f64 {
    let age_s = now_us
        .div_euclid(1_000_000)
        .saturating_sub(i64::from(created_s));
    if age_s < -MAX_CLOCK_SKEW_S {
        return 0.0;
    }
    let decay = if half_life_us > 0 {
        let age_s = age_s.max(0);
        (-(age_s as f64 * 1e6) / half_life_us as f64).exp2()
    } else {
        1.0
    };
    f64::from(strength) / 100.0 * decay * kappa
}

/// The weight of one endorsement, from its plain record: zero when it is a self-endorsement,
/// out of range, expired, or pinned to a service CID other than `current_service_cid`.
/// The graph computes the same number from its compact form; this is the reference.
pub fn endorsement_weight(
    e: &Endorsement,
    capability: Option<&str>,
    now_us: i64,
    half_life_us: i64,
    current_service_cid: Option<&str>,
) -> f64 {
    endorsement_weight_with(
        e,
        kappa(&e.capabilities, capability),
        now_us,
        half_life_us,
        current_service_cid,
    )
}

/// [`endorsement_weight`] with κ given (from [`kappa_best`] or [`kappa_offered`]).
pub fn endorsement_weight_with(
    e: &Endorsement,
    kappa: f64,
    now_us: i64,
    half_life_us: i64,
    current_service_cid: Option<&str>,
) -> f64 {
    if e.author == e.subject || !(1..=100).contains(&e.strength) {
        return 0.0;
    }
    if e.expires_at_us.is_some_and(|x| now_us >= x) {
        return 0.0;
    }
    if let Some((_, pinned_cid)) = &e.pinned
        && current_service_cid != Some(pinned_cid.as_str())
    {
        return 0.0;
    }
    base_weight(
        e.strength as u8,
        created_seconds(e.created_at_us),
        now_us,
        half_life_us,
        kappa,
    )
}

/// A weight in parts per million, rounded, clamped to `0..=1_000_000`.
pub fn to_ppm(w: f64) -> u32 {
    if w.is_nan() || w <= 0.0 {
        0
    } else {
        (w.min(1.0) * 1e6).round() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_rule() {
        assert!(capability_covers("sms.send", "sms.send"));
        assert!(capability_covers("sms", "sms.send"));
        assert!(capability_covers("sms", "sms.send.us"));
        assert!(!capability_covers("sms.send", "sms"));
        assert!(!capability_covers("sms", "smsx.send"));
        assert!(!capability_covers("sms.sen", "sms.send"));
        assert!(!capability_covers("", "sms"));
        assert_eq!(
            covering_prefixes("a.b.c").collect::<Vec<_>>(),
            ["a", "a.b", "a.b.c"]
        );
        assert_eq!(covering_prefixes("abc").collect::<Vec<_>>(), ["abc"]);
    }

    #[test]
    fn kappa_values() {
        let none: [&str; 0] = [];
        assert_eq!(kappa(&["sms"], Some("sms.send")), 1.0);
        assert_eq!(kappa(&none, Some("sms.send")), 0.5);
        assert_eq!(kappa(&["email"], Some("sms.send")), 0.0);
        assert_eq!(kappa(&["email"], None), 1.0);
        // Best match over several queried capabilities, in any order.
        assert_eq!(kappa_best(&["email"], &["sms.send", "email"]), 1.0);
        assert_eq!(kappa_best(&["email"], &["email", "sms.send"]), 1.0);
        assert_eq!(kappa_best(&none, &["email", "sms.send"]), 0.5);
        assert_eq!(kappa_best(&["x"], &["email", "sms.send"]), 0.0);
        assert_eq!(kappa_best(&["x"], &[]), 1.0);
        // Against what a service offers when nothing is queried.
        assert_eq!(kappa_offered(&["sms"], &["email", "sms.send"]), 1.0);
        assert_eq!(kappa_offered(&["sms"], &["email"]), 0.0);
        assert_eq!(kappa_offered(&none, &["email"]), 1.0);
    }

    #[test]
    fn decay_halves_per_half_life() {
        let t = YEAR;
        assert_eq!(base_weight(100, 0, 0, t, 1.0), 1.0);
        assert!((base_weight(100, 0, t, t, 1.0) - 0.5).abs() < 1e-12);
        assert!((base_weight(50, 0, 2 * t, t, 0.5) - 0.0625).abs() < 1e-12);
        // Within the clock skew a future date counts as new; beyond it, not at all, however
        // far: it must not stay undecayed until its date.
        let skew = MAX_CLOCK_SKEW_S as u32;
        assert_eq!(base_weight(80, 10, 0, t, 1.0), 0.8, "within the skew");
        assert_eq!(base_weight(80, skew, 0, t, 1.0), 0.8, "at the skew");
        assert_eq!(base_weight(80, skew + 1, 0, t, 1.0), 0.0, "past the skew");
        assert_eq!(base_weight(80, u32::MAX, 0, t, 1.0), 0.0, "far future");
        assert_eq!(
            base_weight(80, u32::MAX, 0, 0, 1.0),
            0.0,
            "even without decay"
        );
        assert_eq!(to_ppm(0.5), 500_000);
        assert_eq!(to_ppm(-1.0), 0);
        assert_eq!(to_ppm(2.0), 1_000_000);
    }

    const YEAR: i64 = crate::model::YEAR_US;
}
