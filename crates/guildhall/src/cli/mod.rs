//! The operator CLI: log in to your PDS, publish service manifests, endorse other operators,
//! and search an AppView — from the terminal.
//!
//! Every command prints results on stdout and problems on stderr, and exits 0 when it worked,
//! 2 when the input must be fixed (a manifest, an argument) and 1 for anything else.
//!
//! Invariant: every line reaches the terminal through `output::say` or `output::warn`, which
//! escape control and bidi characters, so text from records and servers cannot move the cursor,
//! rewrite a line or reorder what is shown; `--json` output is escaped as JSON (`\uXXXX`).

mod auth;
mod credits;
mod error;
mod identity;
mod manifest;
mod output;
mod query;
mod secret;
mod session;
mod social;
mod xrpc;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use url::Url;

pub use error::CliError;
use identity::IdentityArgs;
use secret::Secret;

/// Shown under every operator command's `--help`.
const EXIT_CODES: &str = "Exit codes: 0 done; 2 invalid input (a manifest or an argument to \
fix; nothing was written); 1 any other failure (network, login, the server refused).";

/// Operator commands.
#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Log in to your PDS (found from your DID document) with an app password; the session is
    /// kept in your config directory (mode 0600) and refreshed automatically.
    #[command(after_help = EXIT_CODES)]
    Login(LoginArgs),
    /// Forget the stored session (and end it on the PDS).
    #[command(after_help = EXIT_CODES)]
    Logout,
    /// Show who you are logged in as, checking the session with the PDS.
    #[command(after_help = EXIT_CODES)]
    Whoami,
    /// Write a commented example service manifest (YAML) to start from.
    #[command(after_help = EXIT_CODES)]
    Init(InitArgs),
    /// Check a service manifest (.yaml, .json or .toml) and publish it to your repository;
    /// the same slug updates the listing.
    #[command(after_help = EXIT_CODES)]
    Publish(PublishArgs),
    /// Vouch for another operator, optionally for some capabilities or one exact service.
    #[command(after_help = EXIT_CODES)]
    Endorse(EndorseArgs),
    /// Withdraw one of your endorsements (deletes the record).
    #[command(after_help = EXIT_CODES)]
    Revoke(RevokeArgs),
    /// List the endorsements you have made, as your PDS holds them (with the URIs `revoke`
    /// takes).
    #[command(after_help = EXIT_CODES)]
    Endorsements(EndorsementsArgs),
    /// Your operator profile.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Search services on an AppView, ranked by trust from you (or --as).
    #[command(after_help = EXIT_CODES)]
    Search(SearchArgs),
    /// Show one service (at:// URI) or operator (DID or handle) from an AppView.
    #[command(after_help = EXIT_CODES)]
    Show(ShowArgs),
    /// Credits: grant them (instance operator, local), see your balance, send, list history.
    #[command(subcommand)]
    Credits(CreditsCommand),
}

/// `guildhall credits …`.
#[derive(Debug, Subcommand)]
pub enum CreditsCommand {
    /// Issue credits to a DID or handle from this instance's issuance account. The instance
    /// operator's local command: it writes to the database directly (--db), standing in for a
    /// real top-up rail. Repeating it with the same --id grants once.
    #[command(after_help = EXIT_CODES)]
    Grant(CreditsGrantArgs),
    /// Your balances on an AppView (service auth from your logged-in PDS session).
    #[command(after_help = EXIT_CODES)]
    Balance(CreditsBalanceArgs),
    /// Send credits to a DID or handle; repeating it with the same --id sends once.
    #[command(after_help = EXIT_CODES)]
    Send(CreditsSendArgs),
    /// Your transfers, newest first.
    #[command(after_help = EXIT_CODES)]
    History(CreditsHistoryArgs),
}

/// `guildhall credits grant`.
#[derive(Debug, Args)]
pub struct CreditsGrantArgs {
    /// Who receives the credits: a DID or a handle.
    pub subject: String,
    /// How much, as a decimal (e.g. 10 or 0.25; at most 9 digits after the point).
    pub amount: String,
    /// The currency code (e.g. USD).
    pub currency: String,
    /// A note kept with the transfer.
    #[arg(long)]
    pub memo: Option<String>,
    /// Idempotency id: the same id with the same parameters grants once (default: a fresh one,
    /// printed).
    #[arg(long)]
    pub id: Option<String>,
    /// The database the AppView serves: a SQLite file path or a postgres:// URL.
    #[arg(long, env = "GUILDHALL_DB", default_value = "./guildhall.db")]
    pub db: String,
    /// Print the grant as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub identity: IdentityArgs,
}

/// Where the ledger methods go and how the answer is printed.
#[derive(Debug, Clone, Args)]
pub struct LedgerArgs {
    /// The Guildhall AppView holding your credits.
    #[arg(
        long,
        env = "GUILDHALL_APPVIEW",
        default_value = "http://127.0.0.1:2470"
    )]
    pub appview: Url,
    /// The AppView's DID, the audience of your service-auth tokens (default: did:web of the
    /// --appview host). Name it only for an AppView reached under another name than its own.
    #[arg(long, env = "GUILDHALL_APPVIEW_DID")]
    pub appview_did: Option<String>,
    /// Print the AppView's JSON answer.
    #[arg(long)]
    pub json: bool,
}

/// `guildhall credits balance`.
#[derive(Debug, Args)]
pub struct CreditsBalanceArgs {
    /// Only this currency.
    #[arg(long)]
    pub currency: Option<String>,
    #[command(flatten)]
    pub ledger: LedgerArgs,
}

/// `guildhall credits send`.
#[derive(Debug, Args)]
pub struct CreditsSendArgs {
    /// Who receives the credits: a DID or a handle.
    pub to: String,
    /// How much, as a decimal (e.g. 2.5).
    pub amount: String,
    /// The currency code (e.g. USD).
    pub currency: String,
    /// Idempotency id: repeat a send with the same id and it moves credits once (default: a
    /// fresh one, printed).
    #[arg(long)]
    pub id: Option<String>,
    /// A note kept with the transfer.
    #[arg(long)]
    pub memo: Option<String>,
    #[command(flatten)]
    pub ledger: LedgerArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
}

/// `guildhall credits history`.
#[derive(Debug, Args)]
pub struct CreditsHistoryArgs {
    /// Most transfers (1 to 100).
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub limit: u32,
    /// Where the previous page ended (printed after it).
    #[arg(long)]
    pub cursor: Option<String>,
    #[command(flatten)]
    pub ledger: LedgerArgs,
}

/// `guildhall login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Your handle (alice.example.com) or DID.
    pub account: String,
    /// An app password (create one in your PDS account settings). Prompted for when absent.
    #[arg(long, env = "GUILDHALL_APP_PASSWORD", hide_env_values = true)]
    pub password: Option<Secret>,
    #[command(flatten)]
    pub identity: IdentityArgs,
}

/// `guildhall init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write the manifest.
    #[arg(default_value = "service.yaml")]
    pub path: PathBuf,
    /// Overwrite the file if it exists.
    #[arg(long)]
    pub force: bool,
}

/// `guildhall publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The manifest: .yaml/.yml, .json or .toml.
    pub manifest: PathBuf,
    /// Check only; write nothing (works without logging in).
    #[arg(long)]
    pub dry_run: bool,
    /// Print {"action", "uri", "cid"} as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `guildhall endorse`.
#[derive(Debug, Args)]
pub struct EndorseArgs {
    /// The operator you vouch for: a DID or a handle.
    pub subject: String,
    /// Limit the endorsement to a capability (repeat for several); none means everything the
    /// operator offers.
    #[arg(long = "capability", value_name = "ID")]
    pub capabilities: Vec<String>,
    /// Pin the endorsement to one service (at://…/dev.guildhall.service/<slug>) as it is now;
    /// it lapses when the operator changes that listing.
    #[arg(long, value_name = "AT-URI")]
    pub service: Option<String>,
    /// How strongly you vouch, 1 to 100 (unset reads as 50).
    #[arg(long, value_name = "N")]
    pub strength: Option<i64>,
    /// A short public note.
    #[arg(long)]
    pub comment: Option<String>,
    /// When the endorsement stops counting: a datetime (2027-01-01T00:00:00Z) or a duration
    /// from now (90d, 12h, 2w).
    #[arg(long, value_name = "WHEN")]
    pub expires: Option<String>,
    /// Print {"action", "uri", "cid"} as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub identity: IdentityArgs,
}

/// `guildhall revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The endorsement's at:// URI, as `endorse` printed it.
    pub uri: String,
}

/// `guildhall endorsements`.
#[derive(Debug, Args)]
pub struct EndorsementsArgs {
    /// Print the records as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `guildhall profile …`.
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Create or change your operator profile (fields not given are kept).
    #[command(after_help = EXIT_CODES)]
    Set(ProfileSetArgs),
}

/// `guildhall profile set`.
#[derive(Debug, Args)]
pub struct ProfileSetArgs {
    /// Your name as an operator (required the first time).
    #[arg(long)]
    pub display_name: Option<String>,
    /// Your website (http or https).
    #[arg(long)]
    pub website: Option<String>,
    /// A few words about you.
    #[arg(long)]
    pub description: Option<String>,
    /// How to reach you: an e-mail address or a URI.
    #[arg(long)]
    pub contact: Option<String>,
    /// Print {"action", "uri", "cid"} as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Where queries go.
#[derive(Debug, Clone, Args)]
pub struct AppViewArgs {
    /// The Guildhall AppView to ask.
    #[arg(
        long,
        env = "GUILDHALL_APPVIEW",
        default_value = "http://127.0.0.1:2470"
    )]
    pub appview: Url,
    /// Whose trust ranks the results: a DID or handle (default: you, when logged in).
    #[arg(long = "as", value_name = "DID")]
    pub viewer: Option<String>,
    /// Print the AppView's JSON answer instead of tables.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub identity: IdentityArgs,
}

/// `guildhall search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Free text over name, description and tags.
    pub text: Vec<String>,
    /// A capability every result must offer (repeat for several).
    #[arg(long = "capability", value_name = "ID")]
    pub capabilities: Vec<String>,
    /// Only services serving this region (ISO 3166-1 alpha-2, e.g. DE).
    #[arg(long)]
    pub region: Option<String>,
    /// Highest acceptable price (decimal, e.g. 0.01); needs --currency.
    #[arg(long, requires = "currency")]
    pub max_price: Option<String>,
    /// Currency of --max-price (e.g. USD).
    #[arg(long)]
    pub currency: Option<String>,
    /// Most results.
    #[arg(long, default_value_t = 25)]
    pub limit: u32,
    #[command(flatten)]
    pub appview: AppViewArgs,
}

/// `guildhall show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A service (at://did/dev.guildhall.service/slug) or an operator (DID or handle).
    pub target: String,
    #[command(flatten)]
    pub appview: AppViewArgs,
}

/// Runs an operator command and returns the process exit code.
pub async fn run(cmd: OperatorCommand) -> std::process::ExitCode {
    let result = match cmd {
        OperatorCommand::Login(a) => auth::login(a).await,
        OperatorCommand::Logout => auth::logout().await,
        OperatorCommand::Whoami => auth::whoami().await,
        OperatorCommand::Init(a) => social::init(&a),
        OperatorCommand::Publish(a) => social::publish(&a).await,
        OperatorCommand::Endorse(a) => social::endorse(a).await,
        OperatorCommand::Revoke(a) => social::revoke(&a).await,
        OperatorCommand::Endorsements(a) => social::endorsements(&a).await,
        OperatorCommand::Profile(ProfileCommand::Set(a)) => social::profile_set(a).await,
        OperatorCommand::Search(a) => query::search(a).await,
        OperatorCommand::Show(a) => query::show(a).await,
        OperatorCommand::Credits(CreditsCommand::Grant(a)) => credits::grant(a).await,
        OperatorCommand::Credits(CreditsCommand::Balance(a)) => credits::balance(a).await,
        OperatorCommand::Credits(CreditsCommand::Send(a)) => credits::send(a).await,
        OperatorCommand::Credits(CreditsCommand::History(a)) => credits::history(a).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            std::process::ExitCode::from(e.exit_code())
        }
    }
}

/// Prints an error to stderr (escaped: messages quote servers); a manifest's problems one per
/// line, path first.
fn report(e: &CliError) {
    if let CliError::InvalidRecord { issues, .. } = e {
        for i in issues {
            if i.path.is_empty() {
                output::warn(format!("  - {}", i.message));
            } else {
                output::warn(format!("  - {}: {}", i.path, i.message));
            }
        }
    }
    output::warn(format!("error: {e}"));
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: OperatorCommand,
    }

    #[test]
    fn a_parsed_login_does_not_debug_print_the_password() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from([
            "guildhall",
            "login",
            "alice.test",
            "--password",
            "abcd-efgh-ijkl-mnop",
        ])?;
        let shown = format!("{cli:?}");
        assert!(!shown.contains("abcd-efgh-ijkl-mnop"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
        let OperatorCommand::Login(args) = cli.cmd else {
            panic!("not a login: {shown}");
        };
        assert_eq!(
            args.password.as_ref().map(Secret::expose),
            Some("abcd-efgh-ijkl-mnop")
        );
        Ok(())
    }
}
