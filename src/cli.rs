//! The command line, as clap definitions only; `main` turns it into calls.
//! Kept apart so the man page generator can read the same definitions.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Hands mail from Postfix straight to GitLab's incoming e-mail API.
#[derive(Debug, Parser)]
#[command(name = "gitlab-mailgate", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pipe mode: deliver the message on standard input to RECIPIENT(s);
    /// the exit status is a sysexits code for Postfix's pipe(8).
    Deliver {
        #[command(flatten)]
        config: ConfigArg,
        /// The envelope sender (Postfix: ${sender}), for the log.
        #[arg(long, value_name = "ADDR")]
        sender: Option<String>,
        /// Envelope recipients (Postfix: ${recipient}).
        #[arg(required = true, value_name = "RECIPIENT")]
        recipients: Vec<String>,
    },
    /// Run the LMTP server (RFC 2033) on the configured sockets.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Check the configuration, the secrets and keys, the clocks and the way to GitLab.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Make a new ES256 signing key for MAILBOX (mode 0640, group
    /// gitlab-mailgate when it exists) and print the public key and the
    /// GitLab settings that install it.
    Keygen {
        /// The GitLab mailbox the key signs for: incoming_email or service_desk_email.
        #[arg(value_enum, value_name = "MAILBOX")]
        mailbox: MailboxArg,
        /// Where to write the private key; an existing file is never
        /// overwritten. Default: /etc/gitlab-mailgate/MAILBOX_signing_key.pem.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// A GitLab mailbox name on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MailboxArg {
    /// GitLab's `incoming_email`.
    #[value(name = "incoming_email")]
    IncomingEmail,
    /// GitLab's `service_desk_email`.
    #[value(name = "service_desk_email")]
    ServiceDeskEmail,
}

impl From<MailboxArg> for crate::key::MailboxKind {
    fn from(arg: MailboxArg) -> Self {
        match arg {
            MailboxArg::IncomingEmail => crate::key::MailboxKind::Incoming,
            MailboxArg::ServiceDeskEmail => crate::key::MailboxKind::ServiceDesk,
        }
    }
}

/// The `--config` option shared by all subcommands.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Configuration file.
    #[arg(
        long = "config",
        value_name = "FILE",
        env = "GITLAB_MAILGATE_CONFIG",
        default_value = crate::config::DEFAULT_PATH
    )]
    pub path: PathBuf,
}
