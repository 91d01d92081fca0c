//! gitlab-mailgate: a Postfix delivery agent for GitLab's incoming e-mail.
//! See the README and gitlab-mailgate(8).

use clap::Parser;
use gitlab_mailgate::admin::{check, keygen, setup};
use gitlab_mailgate::cli::{Cli, Command};
use gitlab_mailgate::{lmtp, pipe};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Postfix bounces on clap's exit 2: a broken master.cf entry must defer.
        // Help, version or usage in pipe mode means master.cf passed
        // something clap took for an option (a recipient `-h@x`): exit 0
        // would lose the message, so every such path defers.
        Err(e) if is_pipe_mode() => return pipe::bad_command_line(&e),
        Err(e) => e.exit(),
    };
    match cli.command {
        Command::Deliver {
            config,
            sender,
            queue_id,
            recipients,
        } => pipe::run(
            &config.path,
            &pipe::Envelope {
                sender: sender.as_deref(),
                queue_id: queue_id.as_deref(),
                recipients: &recipients,
            },
        ),
        Command::Serve { config } => lmtp::server::run(&config.path),
        Command::Check {
            config,
            postfix,
            send_test,
        } => check::run(&config.path, &postfix.route(send_test)),
        Command::Setup(args) => setup::run(&args.options()),
        Command::Keygen { mailbox, out } => keygen::run(mailbox.into(), out.as_deref()),
    }
}

fn is_pipe_mode() -> bool {
    std::env::args_os().nth(1).is_some_and(|a| a == "deliver")
}
