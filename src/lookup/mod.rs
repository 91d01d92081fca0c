//! The recipient lookup of `serve`: Postfix asks it at `RCPT` time
//! whether an address of GitLab's domains is one gitlab-mailgate would
//! take, so an unknown address or a key GitLab cannot act on is refused
//! in the SMTP dialogue (`550 5.1.1`) and nothing is queued. Without it,
//! Postfix accepts any address of a `relay_domains` domain, gitlab-mailgate
//! refuses it at LMTP `RCPT`, and Postfix mails a non-delivery notice to
//! the (often forged) sender: backscatter, which gets an MX blocklisted
//! (issue 19).
//!
//! The answer is the delivery core's own routing decision
//! (`Deliverer::look_up`: the one `Deliverer::route` makes for LMTP at
//! `RCPT`, without a sender, logged as a lookup), for the
//! configuration in force (a SIGHUP reload applies to the next request).
//!
//! Why a socketmap table (`socketmap_table(5)`) in `relay_recipient_maps`,
//! and not a policy service (`check_policy_service`): it is the place
//! Postfix itself checks relay recipients (`smtpd_reject_unlisted_recipient`,
//! on by default), so `setup` sets one parameter and need not order
//! anything among the admin's `smtpd_recipient_restrictions`; it is
//! synchronous (no probe message, no verify cache as with
//! `reject_unverified_recipient`); and Postfix sends socketmap (a pattern
//! table) the full address only, never the address without its
//! `+extension` or `@domain`, so a bad key cannot pass as its base
//! address. It only gets the recipient, not the sender: the null sender is
//! still refused at LMTP `RCPT` (that needs no notice: Postfix sends none
//! for a message from `<>`). Postfix folds the lookup key to lower case;
//! GitLab's keys and the usual templates are lower case. What it costs:
//! `relay_recipient_maps` applies to every relay domain (see the README).
//!
//! Over TCP on loopback (`socketmap:inet:127.0.0.1:2425:gitlab`), not a
//! unix socket: Debian runs smtpd chrooted in `/var/spool/postfix`, where
//! a socket in `/run` does not exist, while a TCP connect works in the
//! chroot. If `serve` is down, the lookup fails and smtpd answers
//! `451 4.3.0`: the sender retries, no mail is lost.
//!
//! Bounds (`event_loop`): `max_connections` open (the idle longest gives
//! way to a new one), one request of at most 4 KiB at a time each, a
//! request whole and answered within 2 s, one thread for all of it.

mod event_loop;
pub(crate) mod socketmap;

use crate::log::Log;
use std::net::{SocketAddr, TcpListener};

/// The address `setup --postfix` gives the listener (LMTP's 2424, plus one).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:2425";
/// The table name Postfix asks for (`socketmap:inet:HOST:PORT:gitlab`).
pub const TABLE: &str = "gitlab";

/// The `[lookup]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Where to answer; `None`: no lookup listener.
    pub listen: Option<SocketAddr>,
    /// Connections open at once.
    pub max_connections: usize,
}

/// The line `check` prints about the listener.
pub fn describe(settings: &Settings) -> String {
    match settings.listen {
        Some(addr) => format!(
            "recipient lookup on {addr}: relay_recipient_maps = socketmap:inet:{addr}:{TABLE}"
        ),
        None => "recipient lookup off ([lookup] listen not set)".into(),
    }
}

/// The Postfix table that asks the listener on `addr`.
pub fn postfix_table(addr: &str) -> String {
    format!("socketmap:inet:{addr}:{TABLE}")
}

/// Binds the configured address and starts the loop's thread; `Ok(None)`
/// when the lookup is off. `route(address)` is the routing decision:
/// `Some(mailbox name)` for an address gitlab-mailgate takes.
pub fn start(
    settings: &Settings,
    route: impl Fn(&str) -> Option<String> + Send + 'static,
    log: &Log,
) -> Result<Option<SocketAddr>, String> {
    let Some(addr) = settings.listen else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr).map_err(|e| format!("[lookup] listen {addr}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("[lookup] listen {addr}: {e}"))?;
    let bound = listener.local_addr().unwrap_or(addr);
    let max_open = settings.max_connections;
    let thread_log = log.clone();
    std::thread::Builder::new()
        .name("lookup".into())
        .spawn(move || {
            let answer =
                |payload: &[u8]| socketmap::answer(payload, TABLE, |key| Ok(route(key))).encode();
            event_loop::run(&listener, max_open, answer, &thread_log)
        })
        .map_err(|e| format!("cannot start the lookup thread: {e}"))?;
    log.info(&format!(
        "recipient lookup on {bound}: {}",
        postfix_table(&bound.to_string())
    ));
    Ok(Some(bound))
}
