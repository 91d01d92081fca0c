//! The command line: clap definitions, and their conversion into each
//! command's options. Kept apart so the man page generator can read the
//! same definitions; `main` only dispatches.

use crate::admin::check::RouteOptions;
use crate::admin::setup;
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
        /// The envelope sender (Postfix: --sender=${sender}).
        #[arg(long, value_name = "ADDR", allow_hyphen_values = true)]
        sender: Option<String>,
        /// Postfix's queue id, which then leads every log line of the run
        /// (Postfix: --queue-id=${queue_id}).
        #[arg(long, value_name = "ID", allow_hyphen_values = true)]
        queue_id: Option<String>,
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
        #[command(flatten)]
        postfix: PostfixArgs,
        /// Also send one message through Postfix to an address gitlab-mailgate
        /// refuses before GitLab sees it, and report where it ended.
        #[arg(long)]
        send_test: bool,
    },
    /// Configure gitlab-mailgate from GitLab's gitlab.yml, and with
    /// --postfix route the incoming domains to it; then run check.
    /// A second run changes nothing.
    Setup(SetupArgs),
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

/// Which Postfix `check` and `setup` look at.
#[derive(Debug, Args, Clone)]
pub struct PostfixArgs {
    /// Treat Postfix as part of the route: a domain it does not route to
    /// gitlab-mailgate fails the check (without it, a warning).
    #[arg(long)]
    pub postfix: bool,
    /// Postfix's configuration directory (postconf -c DIR), for a Postfix
    /// instance other than the system's; implies --postfix.
    #[arg(long, value_name = "DIR")]
    pub postfix_config: Option<PathBuf>,
}

/// `gitlab-mailgate setup`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub postfix: PostfixArgs,
    /// GitLab's gitlab.yml. Default: Omnibus's
    /// /var/opt/gitlab/gitlab-rails/etc/gitlab.yml, else a source
    /// installation's /home/git/gitlab/config/gitlab.yml.
    #[arg(long, value_name = "FILE")]
    pub gitlab_config: Option<PathBuf>,
    /// The incoming domain(s) Postfix routes to gitlab-mailgate.
    /// Default: the domains of the configured addresses.
    #[arg(long = "domain", value_name = "D")]
    pub domains: Vec<String>,
    /// Where Postfix delivers: the socket of gitlab-mailgate.socket
    /// (lmtp:unix:/run/gitlab-mailgate/lmtp.sock, the default) or
    /// lmtp:inet:HOST:PORT (then written as [lmtp] listen).
    #[arg(long, value_name = "TARGET", default_value = setup::DEFAULT_TARGET)]
    pub lmtp_target: String,
    /// Also refuse unknown recipients during the SMTP dialogue
    /// (reject_unverified_recipient for the incoming domains only).
    #[arg(long)]
    pub verify_recipients: bool,
    /// Replace an existing configuration file that differs.
    #[arg(long)]
    pub force: bool,
    /// Print what would change (the postconf commands, the configuration
    /// diff) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Put back what setup changed in Postfix (main.cf, master.cf, the
    /// tables it wrote) and systemd, as recorded in the state file;
    /// Postfix's files are then as before setup. The other options are
    /// ignored (except --dry-run and --state-file).
    #[arg(long)]
    pub undo: bool,
    /// Where setup records what it changed, for --undo. Default:
    /// /var/lib/gitlab-mailgate/setup-undo.toml for the system's Postfix,
    /// setup-undo-DIR.toml beside it for --postfix-config DIR.
    #[arg(long, value_name = "FILE")]
    pub state_file: Option<PathBuf>,
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

impl From<MailboxArg> for crate::mailbox::MailboxKind {
    fn from(arg: MailboxArg) -> Self {
        match arg {
            MailboxArg::IncomingEmail => crate::mailbox::MailboxKind::Incoming,
            MailboxArg::ServiceDeskEmail => crate::mailbox::MailboxKind::ServiceDesk,
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

impl PostfixArgs {
    /// `check`'s route options; `--postfix-config` implies `--postfix`.
    pub fn route(self, send_test: bool) -> RouteOptions {
        RouteOptions {
            required: self.postfix || self.postfix_config.is_some(),
            postfix_config: self.postfix_config,
            send_test,
        }
    }
}

impl SetupArgs {
    /// What `setup` is asked to do.
    pub fn options(self) -> setup::Options {
        let route = self.postfix.route(false);
        let state_file = self
            .state_file
            .unwrap_or_else(|| setup::state_file(route.postfix_config.as_deref()));
        setup::Options {
            config_path: self.config.path,
            route,
            gitlab_config: self.gitlab_config,
            domains: self.domains,
            lmtp_target: self.lmtp_target,
            verify_recipients: self.verify_recipients,
            force: self.force,
            dry_run: self.dry_run,
            undo: self.undo,
            state_file,
        }
    }
}
