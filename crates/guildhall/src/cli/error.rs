//! The operator CLI's one error type and its mapping onto exit codes (0 ok, 2 invalid input,
//! 1 anything else).

use std::path::PathBuf;

use guildhall_lexicon::ValidationIssue;

/// Exit code for input the user must fix (bad manifest, bad arguments).
pub const EXIT_INVALID: u8 = 2;
/// Exit code for every other failure (network, authentication, the server said no).
pub const EXIT_FAILURE: u8 = 1;

/// Why an operator command failed, worded for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An argument does not parse (a DID, an AT-URI, a duration…).
    #[error("{0}")]
    InvalidArgument(String),
    /// The manifest cannot be read as YAML, JSON or TOML.
    #[error("{path}: {message}")]
    ManifestSyntax { path: PathBuf, message: String },
    /// A record does not satisfy its lexicon; every problem is listed.
    #[error("{} problem{} in {what}; nothing was written", .issues.len(), if .issues.len() == 1 { "" } else { "s" })]
    InvalidRecord {
        what: String,
        issues: Vec<ValidationIssue>,
    },
    /// No stored session.
    #[error("not logged in: run `guildhall login <handle>` first")]
    NotLoggedIn,
    /// The stored session can no longer be refreshed.
    #[error("your session has expired ({0}): run `guildhall login` again")]
    SessionExpired(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A host could not be reached or answered something unreadable.
    #[error("cannot reach {host}: {message}")]
    Network { host: String, message: String },
    /// An XRPC server answered with an error.
    #[error("{host} refused {method}: {name}{}", if .message.is_empty() { String::new() } else { format!(": {}", .message) })]
    Xrpc {
        host: String,
        method: String,
        status: u16,
        /// The XRPC error name, e.g. `AuthenticationRequired` or `InvalidRecord`.
        name: String,
        message: String,
    },
    /// Login failed for a reason the user can fix.
    #[error("{0}")]
    Login(String),
    /// An identity could not be resolved.
    #[error("cannot resolve {subject}: {message}")]
    Identity { subject: String, message: String },
    /// Something that should exist does not (a record, an indexed service).
    #[error("{0}")]
    NotFound(String),
    /// A server answered successfully but without what the protocol promises.
    #[error("{host} answered unexpectedly: {message}")]
    UnexpectedAnswer { host: String, message: String },
    /// The stored session or the config directory cannot be used.
    #[error("{0}")]
    Session(String),
    /// The embedded lexicons are broken (a build problem, not the user's).
    #[error("the built-in lexicons are broken: {0}")]
    Lexicon(#[from] guildhall_lexicon::LexiconError),
    /// A secret would travel where it could be read: plain http off loopback.
    #[error("refusing {0}")]
    Insecure(String),
    /// A failure on this machine: the terminal, the HTTP stack.
    #[error("{0}")]
    Local(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::InvalidArgument(_)
            | CliError::ManifestSyntax { .. }
            | CliError::InvalidRecord { .. } => EXIT_INVALID,
            _ => EXIT_FAILURE,
        }
    }

    /// Shorthand for an [`CliError::InvalidArgument`].
    pub fn arg(message: impl Into<String>) -> Self {
        CliError::InvalidArgument(message.into())
    }

    /// The XRPC error name, if the server gave one.
    pub fn xrpc_name(&self) -> Option<&str> {
        match self {
            CliError::Xrpc { name, .. } => Some(name),
            _ => None,
        }
    }
}
