//! The sections of gitlab-mailgate(8) for running the server: the `[http]`
//! listener and its metrics, where the logs are, and what to do when
//! Postfix logs a deferral or systemd gave up; and the files it uses.
//! README.md says the same in its Monitoring and Troubleshooting sections.

use super::{example, item, para, section};
use clap_mangen::roff::{bold, roman, Roff};

pub fn http(roff: &mut Roff) {
    section(roff, "HTTP AND METRICS");
    para(
        roff,
        [roman(
            "With listen in section [http] (off by default; the package's \
             config.toml turns it on at 127.0.0.1:9725), serve answers HTTP on that TCP \
             address, without authentication: keep it on loopback or a trusted \
             network. check prints the listener it would open.",
        )],
    );
    example(roff, &["[http]", "listen = \"127.0.0.1:9725\""]);
    item(
        roff,
        [bold("GET /livez")],
        "200 while the accept loops run, 503 once shutdown began.",
    );
    item(
        roff,
        [bold("GET /readyz")],
        "200 when the LMTP listeners accept, every mailbox's secret or key loads and \
         GitLab is not known to be failing; else 503 with one line per reason.",
    );
    item(
        roff,
        [bold("GET /metrics")],
        "Prometheus text format, or OpenMetrics when asked for by Accept. The metrics, \
         prefix gitlab_mailgate_ (no label holds a recipient, key or sender):",
    );
    let metrics = [
        (
            "deliveries_total{mailbox,status,class}",
            "Recipients of messages taken over LMTP by final status: status=\"sent\", \
             \"bounced\", \"deferred\" (Postfix's words), \"discarded\" (not posted on \
             purpose by a guard), \"rejected\" (GitLab refused it as too large and \
             mailed the sender); class is the enhanced code's first digit.",
        ),
        (
            "rcpt_refused_total{reason}",
            "Recipients refused at LMTP RCPT or by the recipient lookup: unknown_address, invalid_key, limit.",
        ),
        (
            "guard_decisions_total{decision}",
            "Recipients the guards decided on without asking GitLab: null_sender, \
             auto_submitted, loop, no_slot, breaker_open.",
        ),
        (
            "same_post_total{mailbox}",
            "Recipients not posted again: an earlier recipient of the same message \
             had the same GitLab key.",
        ),
        (
            "gitlab_responses_total{mailbox,code}",
            "Answers from GitLab by HTTP status.",
        ),
        (
            "gitlab_transport_errors_total{mailbox,kind}",
            "Posts without an answer: unreachable, lost, local.",
        ),
        (
            "gitlab_request_duration_seconds{mailbox}",
            "Histogram of the time of one post to GitLab.",
        ),
        (
            "message_size_bytes",
            "Histogram of the size of messages handed to delivery.",
        ),
        (
            "lmtp_connections_open, lmtp_connections_total",
            "LMTP connections being served, and served since start.",
        ),
        ("posts_in_flight", "Posts to GitLab waiting for an answer."),
        (
            "last_success_timestamp_seconds{mailbox}",
            "Unix time of the last post GitLab accepted.",
        ),
        ("build_info{version}", "Always 1; the running version."),
    ];
    roff.control("RS", ["4"]);
    for (name, text) in metrics {
        item(roff, [bold(name)], text);
    }
    roff.control("RE", []);
}

pub fn logs(roff: &mut Roff) {
    section(roff, "LOGS");
    para(
        roff,
        [roman(
            "gitlab-mailgate logs to syslog, facility mail, identifier gitlab-mailgate, \
             one line per recipient in Postfix's name=value style. With Postfix's \
             lmtp_send_xforward_command = yes (setup sets it) every line of a message \
             starts with Postfix's queue id, the from= line and RCPT refusals \
             included. serve's first line names its version, its mailboxes and the \
             GitLab URL.",
        )],
    );
    item(
        roff,
        [bold("journalctl -t gitlab-mailgate")],
        "gitlab-mailgate's lines, serve and pipe mode. With rsyslog they are in \
         /var/log/mail.log too; a journald-only host (a stock Debian 12) has no \
         /var/log/mail.log.",
    );
    item(
        roff,
        [bold(
            "journalctl -u gitlab-mailgate.service -u gitlab-mailgate.socket",
        )],
        "systemd's own lines about the units: start failures, the start limit.",
    );
    item(
        roff,
        [bold(
            "journalctl -t postfix/smtpd -t postfix/qmgr -t postfix/lmtp",
        )],
        "Postfix's lines on a journald-only host; its maillog_file instead when set \
         (postconf maillog_file), /var/log/mail.log with rsyslog. check --send-test \
         reads them in that order: maillog_file, the journal, /var/log/mail.log.",
    );
}

pub fn troubleshooting(roff: &mut Roff) {
    section(roff, "TROUBLESHOOTING");
    para(
        roff,
        [roman(
            "Postfix logs the reply of each attempt (status=deferred (... said: 451 \
             4.7.0 ...)); gitlab-mailgate logs the same status with the same queue id. \
             Deferred mail stays in Postfix's queue: after the fix, postqueue -f.",
        )],
    );
    let rows = [
        (
            "451 4.7.0 (GitLab refused the token)",
            "GitLab answered 401 or 403: the secret file is not GitLab's, or (ES256) our \
             public key is not in the mailbox's public_key_files, or the clocks differ. \
             Copy GitLab's secret again (setup does), run gitlab-mailgate check, then \
             systemctl reload gitlab-mailgate.",
        ),
        (
            "451 4.4.1 (cannot reach GitLab)",
            "Nothing answered at [gitlab] url: GitLab down, wrong URL, DNS, firewall, \
             TLS (ca_file). gitlab-mailgate check says which.",
        ),
        (
            "451 4.3.0 (circuit breaker open)",
            "GitLab failed several times in a row or asked to wait (Retry-After); \
             gitlab-mailgate stops posting for a cool-down (log: GitLab circuit breaker \
             open). Look at GitLab; the breaker closes when a probe succeeds, or at \
             once on systemctl reload gitlab-mailgate.",
        ),
        (
            "451 4.7.1 (loop breaker)",
            "One sender posts to one GitLab key more often than [guard] allows, \
             usually two auto-responders answering each other. Stop the loop at its \
             source; a reload forgets the counts.",
        ),
        (
            "Start request repeated too quickly",
            "serve failed to start 5 times within 120 s (a broken configuration or \
             secret) and systemd left gitlab-mailgate.socket failed \
             (service-start-limit-hit); Postfix defers meanwhile. Fix the configuration \
             (gitlab-mailgate check), then systemctl reset-failed \
             gitlab-mailgate.service gitlab-mailgate.socket and systemctl start \
             gitlab-mailgate.socket gitlab-mailgate.service.",
        ),
    ];
    for (term, text) in rows {
        item(roff, [bold(term)], text);
    }
}

pub fn files(roff: &mut Roff) {
    section(roff, "FILES");
    let entries = [
        (
            "/etc/gitlab-mailgate/config.toml",
            "The configuration (TOML), read by default; the packaged file explains every \
             setting.",
        ),
        (
            "/etc/gitlab-mailgate/incoming_email_secret",
            "GitLab's secret file for incoming_email (and service_desk_email_secret for \
             Service Desk): base64 of 32 bytes, owned root:gitlab-mailgate, mode 0640.",
        ),
        (
            "/etc/gitlab-mailgate/incoming_email_signing_key.pem",
            "An ES256 signing key (signing_key_file), as gitlab-mailgate keygen writes it: \
             PKCS#8 PEM, EC P-256, owned root:gitlab-mailgate, mode 0640. GitLab holds \
             its public key in the mailbox's public_key_files.",
        ),
        (
            "/etc/gitlab-mailgate/NAME.toml",
            "The configuration of the systemd instance gitlab-mailgate@NAME.service.",
        ),
        (
            "/run/gitlab-mailgate/lmtp.sock",
            "The LMTP socket of gitlab-mailgate.socket, group postfix, mode 0660.",
        ),
        (
            "/run/gitlab-mailgate/server/",
            "Where gitlab-mailgate.service may create unix sockets of its own ([lmtp] \
             listen = [\"unix:/run/gitlab-mailgate/server/lmtp.sock\"]).",
        ),
        (
            "/usr/lib/systemd/system/gitlab-mailgate.service",
            "The LMTP server under systemd, with gitlab-mailgate.socket, and the \
             templates gitlab-mailgate@.service and gitlab-mailgate@.socket. None is \
             enabled by the package.",
        ),
        (
            "/usr/share/doc/gitlab-mailgate/postfix/",
            "Postfix configuration to copy: main.cf and master.cf lines, transport \
             tables.",
        ),
        (
            "/var/log/mail.log",
            "Log lines (syslog facility mail), next to Postfix's and with its queue id, \
             where rsyslog runs. A journald-only host (a stock Debian 12) has no such \
             file: journalctl -t gitlab-mailgate, and for Postfix journalctl -t \
             postfix/smtpd -t postfix/qmgr -t postfix/lmtp or its maillog_file (see LOGS).",
        ),
    ];
    for (path, text) in entries {
        item(roff, [bold(path)], text);
    }
}
