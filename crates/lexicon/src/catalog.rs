//! A set of parsed lexicon documents, addressable by fully qualified definition name.

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use guildhall_proto::syntax;

use crate::schema::{self, Def, Field, ObjectSchema};
use crate::{LexiconError, ValidationIssue};

/// Guildhall's own documents and the protocol definitions they reference, embedded at build time.
const GUILDHALL_DOCUMENTS: [&str; 15] = [
    include_str!("../../../lexicons/dev/guildhall/service.json"),
    include_str!("../../../lexicons/dev/guildhall/endorsement.json"),
    include_str!("../../../lexicons/dev/guildhall/operator.json"),
    include_str!("../../../lexicons/dev/guildhall/defs.json"),
    include_str!("../../../lexicons/dev/guildhall/searchServices.json"),
    include_str!("../../../lexicons/dev/guildhall/getService.json"),
    include_str!("../../../lexicons/dev/guildhall/getOperator.json"),
    include_str!("../../../lexicons/dev/guildhall/getTrustPath.json"),
    include_str!("../../../lexicons/dev/guildhall/listEndorsements.json"),
    include_str!("../../../lexicons/dev/guildhall/listCapabilities.json"),
    include_str!("../../../lexicons/dev/guildhall/ledger/defs.json"),
    include_str!("../../../lexicons/dev/guildhall/ledger/getBalance.json"),
    include_str!("../../../lexicons/dev/guildhall/ledger/listTransfers.json"),
    include_str!("../../../lexicons/dev/guildhall/ledger/transfer.json"),
    include_str!("../external/com.atproto.repo.strongRef.json"),
];

/// Lexicon documents ready for validating records.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Key: `nsid#name`.
    pub(crate) defs: HashMap<String, Def>,
    ids: BTreeSet<String>,
}

impl Catalog {
    /// The Guildhall lexicons (plus `com.atproto.repo.strongRef`), parsed once per process.
    ///
    /// Errors only if an embedded document is broken, which the crate's tests rule out.
    pub fn guildhall() -> Result<&'static Catalog, LexiconError> {
        static CATALOG: OnceLock<Result<Catalog, LexiconError>> = OnceLock::new();
        CATALOG
            .get_or_init(|| Catalog::from_documents(GUILDHALL_DOCUMENTS))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The raw JSON of the embedded documents, e.g. for publishing them as
    /// `com.atproto.lexicon.schema` records.
    pub fn guildhall_documents() -> &'static [&'static str] {
        &GUILDHALL_DOCUMENTS
    }

    /// Parses documents given as JSON text. Each must be a valid lexicon and ids must be unique;
    /// references to documents outside the set are allowed and fail only when validation meets them.
    pub fn from_documents<'a, I>(documents: I) -> Result<Catalog, LexiconError>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let mut catalog = Catalog {
            defs: HashMap::new(),
            ids: BTreeSet::new(),
        };
        for text in documents {
            let doc = schema::parse_document(text)?;
            if !catalog.ids.insert(doc.id.clone()) {
                return Err(LexiconError::Duplicate(doc.id));
            }
            for (name, def) in doc.defs {
                catalog.defs.insert(format!("{}#{name}", doc.id), def);
            }
        }
        Ok(catalog)
    }

    /// Checks one document without adding it anywhere.
    pub fn check_document(text: &str) -> Result<(), LexiconError> {
        schema::parse_document(text).map(|_| ())
    }

    /// Checks one document given as a JSON value.
    pub fn check_document_value(value: &serde_json::Value) -> Result<(), LexiconError> {
        schema::parse_document_value(value).map(|_| ())
    }

    /// The document ids held.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.ids.iter().map(String::as_str)
    }

    /// References (`nsid#name`) that point outside the catalog; empty for a self-contained set.
    pub fn unresolved_refs(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for def in self.defs.values() {
            match def {
                Def::Record { record, .. } => self.collect_unresolved_object(record, &mut out),
                Def::Field(f) => self.collect_unresolved(f, &mut out),
                Def::Endpoint { schemas } => {
                    for f in schemas {
                        self.collect_unresolved(f, &mut out);
                    }
                }
                Def::Token => {}
            }
        }
        out
    }

    fn collect_unresolved_object(&self, o: &ObjectSchema, out: &mut BTreeSet<String>) {
        for f in o.properties.values() {
            self.collect_unresolved(f, out);
        }
    }

    fn collect_unresolved(&self, f: &Field, out: &mut BTreeSet<String>) {
        match f {
            Field::Ref(r) if !self.defs.contains_key(r) => {
                out.insert(r.clone());
            }
            Field::Union { refs, .. } => {
                out.extend(refs.iter().filter(|r| !self.defs.contains_key(*r)).cloned());
            }
            Field::Array { items, .. } => self.collect_unresolved(items, out),
            Field::Object(o) => self.collect_unresolved_object(o, out),
            _ => {}
        }
    }

    /// Whether `nsid` names a record type here.
    pub fn is_record_type(&self, nsid: &str) -> bool {
        matches!(
            self.defs.get(&format!("{nsid}#main")),
            Some(Def::Record { .. })
        )
    }

    /// Checks a record key against the record type's key rule (`tid`, `nsid`, `any`,
    /// `literal:<value>`), e.g. that an operator profile lives at `self`.
    pub fn validate_record_key(&self, nsid: &str, rkey: &str) -> Result<(), ValidationIssue> {
        let issue = |message: String| ValidationIssue {
            path: String::new(),
            message,
        };
        let Some(Def::Record { key, .. }) = self.defs.get(&format!("{nsid}#main")) else {
            return Err(issue(format!(
                "{nsid} is not a record type in this catalog"
            )));
        };
        syntax::RecordKey::parse(rkey).map_err(|e| issue(format!("record key {rkey:?}: {e}")))?;
        let ok = match key.as_deref() {
            Some("tid") => syntax::Tid::parse(rkey).is_ok(),
            Some("nsid") => syntax::Nsid::parse(rkey).is_ok(),
            Some(k) => k.strip_prefix("literal:").is_none_or(|lit| lit == rkey),
            None => true,
        };
        if ok {
            Ok(())
        } else {
            Err(issue(format!(
                "record key {rkey:?} does not satisfy {nsid}'s key rule {:?}",
                key.as_deref().unwrap_or_default()
            )))
        }
    }
}
