//! Integration tests of guildhall-lexicon: interop vectors, our three records, the official
//! validator's verdicts, and the catalog itself.

mod cases;
mod catalog;
mod endorsement;
mod interop;
mod official;
mod operator;
mod robust;
mod service;
mod syntax;
