//! Writes the man page gitlab-mailgate(8): `cargo run --example manpage -- OUT_DIR`
//! creates `OUT_DIR/gitlab-mailgate.8` (default OUT_DIR: `target/man`).
//!
//! The synopsis, commands and options come from the clap definitions in
//! `gitlab_mailgate::cli`, so they cannot drift from the program; the
//! sections on pipe mode, LMTP, exit status and files are written here,
//! those on metrics, logs and troubleshooting in `manpage/operations.rs`.
//! `packaging/build-deb.sh` runs this before `cargo deb`, which compresses
//! the page.

use clap::CommandFactory;
use clap_mangen::roff::{bold, italic, roman, Inline, Roff};
use clap_mangen::Man;
use gitlab_mailgate::cli::Cli;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[path = "manpage/operations.rs"]
mod operations;

fn main() -> ExitCode {
    let out_dir = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .unwrap_or_else(|| "target/man".into()),
    );
    match write_page(&out_dir) {
        Ok(path) => {
            println!("{}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("manpage: {}: {e}", out_dir.display());
            ExitCode::FAILURE
        }
    }
}

fn write_page(out_dir: &std::path::Path) -> std::io::Result<PathBuf> {
    let mut cmd = Cli::command();
    // Sets the subcommands' bin names, so their usage reads "gitlab-mailgate deliver ...".
    cmd.build();
    let man = Man::new(cmd.clone())
        .title("GITLAB-MAILGATE")
        .section("8")
        .manual("System Administration")
        .source(format!("gitlab-mailgate {}", env!("CARGO_PKG_VERSION")));

    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    let mut roff = Roff::new();
    // No hyphenation and no justification: paths and unit names stay whole
    // and readable.
    roff.control("nh", []);
    roff.control("ad", ["l"]);
    description(&mut roff);
    roff.to_writer(&mut page)?;
    man.render_options_section(&mut page)?;
    let mut roff = Roff::new();
    commands(&mut roff, &cmd);
    pipe_mode(&mut roff);
    lmtp(&mut roff);
    exit_status(&mut roff);
    outcomes(&mut roff);
    operations::http(&mut roff);
    operations::logs(&mut roff);
    operations::troubleshooting(&mut roff);
    operations::files(&mut roff);
    environment(&mut roff);
    see_also(&mut roff);
    roff.to_writer(&mut page)?;
    man.render_version_section(&mut page)?;

    std::fs::create_dir_all(out_dir)?;
    let path = out_dir.join(man.get_filename());
    std::fs::File::create(&path)?.write_all(&page)?;
    Ok(path)
}

fn section(roff: &mut Roff, name: &str) {
    roff.control("SH", [name]);
}

fn para(roff: &mut Roff, text: impl Into<Vec<Inline>>) {
    roff.control("PP", []);
    roff.text(text);
}

/// A tagged paragraph: `term` on its own line, `text` indented below.
fn item(roff: &mut Roff, term: impl Into<Vec<Inline>>, text: &str) {
    roff.control("TP", []);
    roff.text(term);
    roff.text([roman(text)]);
}

/// Lines shown as they are, indented, e.g. configuration examples.
fn example(roff: &mut Roff, lines: &[&str]) {
    roff.control("PP", []);
    roff.control("RS", ["4"]);
    roff.control("nf", []);
    for line in lines {
        roff.text([roman(*line)]);
    }
    roff.control("fi", []);
    roff.control("RE", []);
}

fn description(roff: &mut Roff) {
    section(roff, "DESCRIPTION");
    para(
        roff,
        [roman(
            "gitlab-mailgate is a Postfix delivery agent for GitLab's incoming e-mail \
             (replies by e-mail, new issues and merge requests by e-mail, Service Desk). \
             It takes the place of GitLab's mail_room: instead of GitLab polling an IMAP \
             mailbox, Postfix hands every message to gitlab-mailgate, which posts it at \
             once to GitLab's internal API (/api/v4/internal/mail_room/incoming_email or \
             \u{2026}/service_desk_email), authenticated by a token signed with the secret \
             GitLab shares for that mailbox (HS256) or with a private key whose public \
             half GitLab holds (ES256, see keygen).",
        )],
    );
    para(
        roff,
        [
            roman("There are two ways in, with the same delivery behind them: pipe mode ("),
            bold("deliver"),
            roman("), a command run by Postfix's pipe(8) for each message, and an LMTP server ("),
            bold("serve"),
            roman(
                ") that Postfix's lmtp(8) client connects to. Recipients are matched against \
             the address templates of the configuration; other recipients are refused, \
             so Postfix bounces them at once. No message is lost: anything but a \
             definitive answer from GitLab is a temporary failure, and Postfix tries \
             again later.",
            ),
        ],
    );
}

/// One subsection per subcommand: usage line, description, options.
fn commands(roff: &mut Roff, cmd: &clap::Command) {
    section(roff, "COMMANDS");
    // clap's own `help` subcommand and `--help` options are left out: the
    // page is the help.
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        roff.control("SS", [sub.get_name()]);
        let usage = sub.clone().render_usage().to_string();
        let usage = usage.trim_start_matches("Usage:").trim();
        roff.text([bold(usage)]);
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            let about = about.to_string();
            let end = if about.ends_with('.') { "" } else { "." };
            para(roff, [roman(format!("{about}{end}"))]);
        }
        for arg in sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && a.get_id() != "help")
        {
            item(roff, arg_term(arg), &arg_text(arg));
        }
    }
}

fn arg_term(arg: &clap::Arg) -> Vec<Inline> {
    let value = arg
        .get_value_names()
        .and_then(|names| names.first())
        .map(|name| name.to_string())
        .unwrap_or_else(|| arg.get_id().to_string().to_uppercase());
    let mut term = Vec::new();
    if let Some(short) = arg.get_short() {
        term.push(bold(format!("-{short}")));
        term.push(roman(", "));
    }
    match arg.get_long() {
        Some(long) if arg.get_action().takes_values() => {
            term.push(bold(format!("--{long}")));
            term.push(roman(" "));
            term.push(italic(value));
        }
        Some(long) => term.push(bold(format!("--{long}"))),
        None => {
            term.push(italic(value));
            if arg.get_num_args().is_some_and(|n| n.max_values() > 1) {
                term.push(roman("\u{2026}"));
            }
        }
    }
    term
}

fn arg_text(arg: &clap::Arg) -> String {
    let mut text = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    if !text.is_empty() && !text.ends_with('.') {
        text.push('.');
    }
    if let Some(default) = arg.get_default_values().first() {
        text.push_str(&format!(" Default: {}.", default.to_string_lossy()));
    }
    if let Some(env) = arg.get_env() {
        text.push_str(&format!(
            " Environment variable: {}.",
            env.to_string_lossy()
        ));
    }
    text
}

fn pipe_mode(roff: &mut Roff) {
    section(roff, "PIPE MODE");
    para(
        roff,
        [roman(
            "Postfix's pipe(8) runs gitlab-mailgate deliver for each message, with the \
             message on standard input, as the user named by user= in master.cf:",
        )],
    );
    example(
        roff,
        &[
            "gitlab  unix  -  n  n  -  -  pipe flags=Rq user=gitlab-mailgate",
            "  argv=/usr/bin/gitlab-mailgate deliver",
            "  --config /etc/gitlab-mailgate/config.toml --queue-id=${queue_id}",
            "  --sender=${sender} -- ${recipient}",
        ],
    );
    para(
        roff,
        [roman(
            "The configuration and the secret files are read on every run, so changes \
             apply to the next message without a restart. For each recipient, a \
             Delivered-To: header naming it is put on top of the message before it goes \
             to GitLab. Do not give pipe the D flag: it would add a second Delivered-To.",
        )],
    );
    para(
        roff,
        [roman(
            "Set gitlab_destination_recipient_limit = 1 in main.cf. One exit status \
             stands for all recipients of a run: if one of them had to be deferred, \
             the whole run is deferred, and the others would reach GitLab twice.",
        )],
    );
    para(
        roff,
        [roman(
            "On failure the first line on standard output is an enhanced status code \
             and a reason, e.g. \"5.1.1 no such GitLab address\"; Postfix shows it in \
             its log and in bounce messages. When the run takes longer than \
             deliver_deadline_secs (section [limits]), the message is deferred: Postfix \
             would bounce it when its own command_time_limit ran out.",
        )],
    );
}

fn lmtp(roff: &mut Roff) {
    section(roff, "LMTP");
    para(
        roff,
        [roman(
            "gitlab-mailgate serve is an LMTP server (RFC 2033). It listens on each \
             entry of listen in section [lmtp] (IP:PORT or unix:/PATH), or, when \
             systemd passes it sockets (LISTEN_FDS, e.g. from gitlab-mailgate.socket), \
             on those instead. When started by systemd with Type=notify it reports \
             readiness once it listens.",
        )],
    );
    para(
        roff,
        [roman(
            "RCPT TO is answered 550 5.1.1 for addresses that are not GitLab's. So that \
             Postfix refuses them during the SMTP dialogue instead of bouncing them to a \
             possibly forged sender, serve also answers a socketmap lookup (listen in \
             section [lookup], e.g. 127.0.0.1:2425) for Postfix's relay_recipient_maps = \
             socketmap:inet:127.0.0.1:2425:gitlab, which setup --postfix sets: OK for an \
             address it would take, NOTFOUND otherwise; while serve is down Postfix \
             answers 451 4.3.0. After \
             the message there is one reply per accepted recipient, in order: 250 when \
             GitLab took it, 451 4.x.x to try again later, 552 5.3.4 when the message is \
             too large.",
        )],
    );
    para(
        roff,
        [roman(
            "On SIGTERM the server stops accepting connections, lets deliveries in \
             progress finish for up to shutdown_grace_secs and exits. On SIGHUP \
             (systemctl reload) it re-reads the configuration and the secrets: open \
             connections finish with the configuration they began with, new ones use \
             the new one; a file with an error is logged and the old one kept; changed \
             listeners need a restart.",
        )],
    );
    para(
        roff,
        [roman(
            "LHLO must come within lhlo_timeout_secs of connecting; a connection \
             without progress is closed with 421 4.4.2 after \
             between_messages_timeout_secs outside a transaction, idle_timeout_secs in \
             one. When all max_connections are taken, a new client gets the slot of \
             the connection idle longest outside a transaction (answered 421 4.4.2); \
             only when every one is in a transaction is it answered 421 4.3.2. One TCP \
             address holds at most max_connections_per_peer.",
        )],
    );
    para(roff, [roman("Postfix transport table entries:")]);
    example(
        roff,
        &[
            "incoming.example.com  lmtp:unix:/run/gitlab-mailgate/lmtp.sock",
            "incoming.example.com  lmtp:inet:127.0.0.1:2424",
        ],
    );
    para(
        roff,
        [roman(
            "Debian's master.cf runs Postfix's lmtp client chrooted in /var/spool/postfix, \
             where /run/gitlab-mailgate does not exist. Turn the chroot off for it \
             (postconf -F 'lmtp/unix/chroot = n'), or use TCP.",
        )],
    );
}

fn exit_status(roff: &mut Roff) {
    section(roff, "EXIT STATUS");
    para(
        roff,
        [roman(
            "In pipe mode the exit status tells Postfix what happened; it is always one \
             of these:",
        )],
    );
    item(
        roff,
        [bold("0")],
        "Delivered: GitLab accepted the message. Postfix logs status=sent.",
    );
    item(
        roff,
        [bold("67"), roman(" (EX_NOUSER)")],
        "The recipient is not a GitLab address of the configuration, or its key fits \
         none of GitLab's key shapes. Postfix bounces the message with 5.1.1.",
    );
    item(
        roff,
        [bold("69"), roman(" (EX_UNAVAILABLE)")],
        "The message is larger than max_message_size, or GitLab refused it as too \
         large. Postfix bounces it (5.3.4).",
    );
    item(
        roff,
        [bold("75"), roman(" (EX_TEMPFAIL)")],
        "Try again later: GitLab was unreachable, answered with an error or refused the \
         token, the configuration or a secret file could not be used, the deadline \
         passed, or the command line in master.cf is wrong. Postfix defers the message \
         and retries until maximal_queue_lifetime.",
    );
    para(
        roff,
        [roman(
            "With several recipients in one run, a temporary failure of any of them \
             wins, then a permanent one. The check, serve and keygen commands exit 0 on \
             success and non-zero when a check failed, the server could not run or the \
             key could not be written.",
        )],
    );
}

/// The outcome table, row by row from the code (the README shows the same
/// rows), so the page cannot drift from what the program does.
fn outcomes(roff: &mut Roff) {
    section(roff, "OUTCOMES");
    para(
        roff,
        [roman(
            "What each answer from GitLab, or each local result, becomes: the LMTP \
             reply, the pipe-mode exit status with the DSN line written first, and what \
             Postfix then does.",
        )],
    );
    for row in gitlab_mailgate::outcome::table::rows() {
        let text = format!(
            "LMTP {}; pipe exit {}; Postfix: {}.",
            row.lmtp(),
            row.pipe(),
            row.postfix()
        );
        item(
            roff,
            [bold(row.situation.replace('`', ""))],
            &text.replace('`', ""),
        );
    }
}

fn environment(roff: &mut Roff) {
    section(roff, "ENVIRONMENT");
    item(
        roff,
        [bold("GITLAB_MAILGATE_CONFIG")],
        "The configuration file when --config is not given.",
    );
    item(
        roff,
        [bold("LISTEN_FDS"), roman(", "), bold("LISTEN_PID")],
        "Sockets passed by systemd socket activation; serve listens on them instead \
         of the configured ones.",
    );
    item(
        roff,
        [bold("NOTIFY_SOCKET")],
        "Where serve reports readiness to systemd.",
    );
}

fn see_also(roff: &mut Roff) {
    section(roff, "SEE ALSO");
    roff.text([roman(
        "postconf(5), master(5), transport(5), pipe(8), lmtp(8), systemd.socket(5), \
         /usr/share/doc/gitlab-mailgate/",
    )]);
}
