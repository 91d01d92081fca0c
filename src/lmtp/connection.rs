//! One LMTP connection of `serve`, from greeting to close: drives a
//! `Session` over the socket, keeps the message being received in a
//! `spool::Writer`, hands finished messages to the delivery core and
//! enforces the time limits (`clock`) and the slot (`slots`) it holds.
//! The accept loop, the slots' sharing and shutdown are `server`'s.

use super::clock::Clock;
use super::generation::Generation;
use super::listen::Stream;
use super::session::{Action, Decision, Limits, Session, Transaction};
use super::slots::{self, Held};
use crate::deliver::Deliverer;
use crate::log::Log;
use crate::outcome::Outcome;
use crate::reply::*;
use crate::spool::{Spool, Writer};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How often blocked reads look at the clock and the stop flag.
pub(super) const TICK: Duration = Duration::from_millis(200);
/// Bytes read from a client at once.
const READ_SIZE: usize = 64 * 1024;

/// What a connection shares with the server.
pub(super) struct Context<'a> {
    pub(super) log: &'a Log,
    /// This machine's name, for the greeting.
    pub(super) hostname: &'a str,
    /// Where large messages are kept while being received and posted.
    pub(super) spool: &'a Spool,
    /// Set when shutdown began.
    pub(super) stopping: &'a OnceLock<Instant>,
}

/// One connection, from greeting to close, under `generation`.
pub(super) fn serve(
    mut stream: Stream,
    peer: &str,
    ctx: &Context,
    generation: &Generation,
    held: &Held,
) {
    let _counted = generation.deliverer.observer().connection();
    ctx.log.info(&format!("connect from {peer}"));
    let messages = converse(&mut stream, peer, ctx, generation, held);
    ctx.log
        .info(&format!("disconnect from {peer} messages={messages}"));
}

/// Runs the session over `stream`; returns how many messages it took.
fn converse(
    stream: &mut Stream,
    peer: &str,
    ctx: &Context,
    generation: &Generation,
    held: &Held,
) -> usize {
    let deliverer = &generation.deliverer;
    let observer = deliverer.observer();
    let limits = Limits {
        max_message_size: generation.config.max_message_size,
        max_recipients: generation.config.lmtp.max_recipients,
    };
    let mut session = Session::new(ctx.hostname, limits, |sender, rcpt, queue_id| {
        deliverer.route(Some(sender), rcpt, queue_id)
    });
    let lmtp = &generation.config.lmtp;
    let clock = Clock::new(lmtp, Instant::now());
    let mut messages = 0;
    // The message being received, begun by its first bytes.
    let mut message: Option<Writer> = None;
    let mut out = session.greeting();
    if send(stream, &mut out).is_err() {
        return 0;
    }
    let mut buf = vec![0; READ_SIZE];
    let mut last_input = Instant::now();
    loop {
        let state = (session.greeted(), session.in_transaction());
        let expired = || clock.expired(state, last_input, Instant::now());
        if let Some((reply, why)) = must_close(ctx, held, lmtp.shutdown_grace, state.1, expired) {
            if !why.is_empty() {
                ctx.log
                    .info(&format!("{why}, closing the connection from {peer}"));
            }
            if held.evicted() {
                // Its slot is another's already: no waiting on this client.
                let _ = stream.configure(TICK, TICK);
            }
            let _ = send(stream, &mut line(&reply));
            return messages;
        }
        let n = match stream.read(&mut buf) {
            Ok(0) => {
                if session.in_transaction() {
                    ctx.log
                        .info(&format!("lost connection from {peer} in a transaction"));
                }
                return messages;
            }
            Ok(n) if held.busy() => n,
            Ok(_) => continue,
            Err(e) if is_tick(&e) => continue,
            Err(e) => {
                ctx.log.info(&format!("lost connection from {peer}: {e}"));
                return messages;
            }
        };
        let mut actions: VecDeque<Action> = session.feed(&buf[..n]).into();
        // The idle clock restarts on progress only: a command answered or
        // message bytes read. Bytes of a command line that never ends do
        // not count, or one byte a second would hold the connection forever.
        let progress = !actions.is_empty() || session.reading_message();
        while let Some(action) = actions.pop_front() {
            match action {
                Action::Send(bytes) => out.extend_from_slice(&bytes),
                Action::Append(bytes) => message
                    .get_or_insert_with(|| ctx.spool.writer())
                    .write(&bytes),
                Action::Abandon => message = None,
                Action::Log(text) => ctx.log.info(&text),
                Action::Decided(Decision::RecipientLimit) => observer.recipient_limit(),
                Action::Decided(Decision::TooLarge {
                    sender,
                    recipient,
                    size,
                    queue_id,
                }) => {
                    let to = recipient.as_ref().map(|(r, kind)| (r.as_str(), *kind));
                    observer.too_large(queue_id.as_deref(), &sender, to, size)
                }
                Action::Deliver(t) => {
                    // Replies so far go out before the (slow) delivery; a
                    // client that is gone by now gets nothing delivered,
                    // since it will send the message again anyway.
                    if send(stream, &mut out).is_err() {
                        return messages;
                    }
                    let kept = message.take().unwrap_or_else(|| ctx.spool.writer());
                    let outcomes = deliver(deliverer, &t, kept);
                    actions.extend(session.delivered(&outcomes));
                    messages += 1;
                }
                Action::Close => {
                    let _ = send(stream, &mut out);
                    return messages;
                }
            }
        }
        // Busy until the replies are out: a thread blocked writing to a
        // client that does not read keeps its slot, or evicting it would
        // free the slot but not the thread.
        if send(stream, &mut out).is_err() {
            return messages;
        }
        if progress {
            last_input = Instant::now();
        }
        if !session.in_transaction() {
            held.idle(last_input);
        }
    }
}

/// Delivers the message the session just completed, kept in `kept`; a
/// message that could not be kept, or not exactly as the session counted
/// it, is deferred.
fn deliver(deliverer: &Deliverer, t: &Transaction, kept: Writer) -> Vec<Outcome> {
    let queue_id = t.queue_id.as_deref();
    deliverer
        .observer()
        .message(queue_id, &t.sender, t.size, t.routes.len());
    match kept.finish() {
        Ok(m) if m.len() == t.size => {
            deliverer.deliver(&t.sender, queue_id, &m, &t.routes, Instant::now())
        }
        Ok(m) => {
            let why = format!("internal error: {} bytes kept of {}", m.len(), t.size);
            deliverer.not_stored(queue_id, &t.routes, &why)
        }
        Err(e) => deliverer.not_stored(queue_id, &t.routes, &e),
    }
}

/// The reply to close with now and why (for the log), if any: shutdown
/// (at once outside a transaction, else after `grace`), the slot
/// given to another client, or a time limit `expired`.
fn must_close(
    ctx: &Context,
    held: &Held,
    grace: Duration,
    in_transaction: bool,
    expired: impl FnOnce() -> Option<&'static str>,
) -> Option<(Reply, &'static str)> {
    if let Some(since) = ctx.stopping.get() {
        if !in_transaction || since.elapsed() >= grace {
            let reply = Reply::new(NOT_AVAILABLE, E_SHUTTING_DOWN, "shutting down");
            return Some((reply, ""));
        }
    }
    // Checked before any input is handled ([`Held::busy`]), so a
    // connection that lost its slot never starts a transaction.
    if held.evicted() {
        return Some((slots::EVICTED, "slot needed by a new client"));
    }
    let why = expired()?;
    Some((Reply::new(NOT_AVAILABLE, E_BAD_CONNECTION, why), why))
}

/// A read that timed out only so the loop can look at the clock.
fn is_tick(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

pub(super) fn line(reply: &Reply) -> Vec<u8> {
    let mut bytes = Vec::new();
    reply.write_to(&mut bytes);
    bytes
}

/// Writes and empties `out`.
pub(super) fn send(stream: &mut Stream, out: &mut Vec<u8>) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let result = stream.write_all(out).and_then(|_| stream.flush());
    out.clear();
    result
}
