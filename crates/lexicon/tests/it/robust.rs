//! Hostile input: arbitrary data-model values spliced into valid records never panic the
//! validator, and whatever it accepts decodes into the typed records.

use std::collections::BTreeMap;

use guildhall_lexicon::{Catalog, json_to_ipld, parse_endorsement, parse_operator, parse_service};
use ipld_core::cid::Cid;
use ipld_core::ipld::Ipld;
use proptest::prelude::*;

use crate::cases::{self, CID, ENDORSEMENT, OPERATOR, SERVICE};

/// Field names worth hitting: our schemas' own plus data-model specials.
const KEYS: [&str; 24] = [
    "$type",
    "name",
    "capabilities",
    "operations",
    "endpoints",
    "pricing",
    "sla",
    "regions",
    "tags",
    "links",
    "dataHandling",
    "version",
    "createdAt",
    "id",
    "inputSchema",
    "model",
    "amount",
    "currency",
    "subject",
    "service",
    "strength",
    "expiresAt",
    "displayName",
    "contact",
];

fn leaf() -> impl Strategy<Value = Ipld> {
    let cid = Cid::try_from(CID).expect("test CID");
    prop_oneof![
        Just(Ipld::Null),
        any::<bool>().prop_map(Ipld::Bool),
        any::<i64>().prop_map(|n| Ipld::Integer(n.into())),
        Just(Ipld::Integer(i128::from(u64::MAX) + 1)),
        (-5i64..20_000).prop_map(|n| Ipld::Integer(n.into())),
        any::<f64>().prop_map(Ipld::Float),
        ".{0,70}".prop_map(Ipld::String),
        "[a-z]{1,8}(\\.[a-z0-9-]{1,8}){0,3}".prop_map(Ipld::String),
        "[0-9]{1,20}(\\.[0-9]{0,11})?".prop_map(Ipld::String),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(Ipld::Bytes),
        Just(Ipld::Link(cid)),
        Just(Ipld::String("2026-11-26T10:00:00Z".into())),
        Just(Ipld::String(cases::DID.into())),
    ]
}

fn value() -> impl Strategy<Value = Ipld> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Ipld::List),
            prop::collection::btree_map(
                prop::sample::select(KEYS.to_vec()).prop_map(str::to_owned),
                inner,
                0..6
            )
            .prop_map(Ipld::Map),
        ]
    })
}

fn base(nsid: &str) -> Ipld {
    let json = match nsid {
        SERVICE => cases::full_service(),
        ENDORSEMENT => cases::full_endorsement(),
        _ => cases::full_operator(),
    };
    json_to_ipld(&json).expect("example is data-model JSON")
}

/// Replaces or inserts `value` at `key`, one level below the top when `nested` picks a map.
fn splice(record: &mut Ipld, key: &str, nested: Option<usize>, value: Ipld) {
    let Ipld::Map(top) = record else { return };
    if let Some(i) = nested {
        let target = top.values_mut().filter_map(|v| match v {
            Ipld::Map(m) => Some(m),
            Ipld::List(l) => l.iter_mut().find_map(|x| match x {
                Ipld::Map(m) => Some(m),
                _ => None,
            }),
            _ => None,
        });
        if let Some(m) = target.into_iter().nth(i) {
            m.insert(key.to_owned(), value);
            return;
        }
    }
    top.insert(key.to_owned(), value);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn spliced_records_never_panic_and_accepted_ones_decode(
        nsid in prop::sample::select(vec![SERVICE, ENDORSEMENT, OPERATOR]),
        key in prop::sample::select(KEYS.to_vec()),
        nested in prop::option::of(0usize..6),
        v in value(),
    ) {
        let catalog = Catalog::guildhall().expect("embedded catalog");
        let mut record = base(nsid);
        splice(&mut record, key, nested, v);
        if catalog.validate_record(nsid, &record).is_ok() {
            let decoded = match nsid {
                SERVICE => parse_service(&record).map(drop),
                ENDORSEMENT => parse_endorsement(&record).map(drop),
                _ => parse_operator(&record).map(drop),
            };
            prop_assert!(decoded.is_ok(), "accepted but does not decode: {:?}", decoded);
        }
    }

    #[test]
    fn arbitrary_values_never_panic(v in value()) {
        let catalog = Catalog::guildhall().expect("embedded catalog");
        let mut m = BTreeMap::new();
        m.insert("$type".to_owned(), Ipld::String(SERVICE.into()));
        m.insert("x".to_owned(), v.clone());
        for nsid in [SERVICE, ENDORSEMENT, OPERATOR] {
            prop_assert!(catalog.validate_record(nsid, &v).is_err() || matches!(v, Ipld::Map(_)));
            let _ = catalog.validate_record(nsid, &Ipld::Map(m.clone()));
        }
    }
}
