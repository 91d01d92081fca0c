//! The LMTP protocol (RFC 2033) as a sans-IO state machine: bytes from the
//! client go in, [`Action`]s come out (bytes to send, message bytes to
//! keep, a message to deliver, a line to log, close). No sockets, threads,
//! clocks or files live here; the socket driver in [`super::server`]
//! performs the actions in order.
//!
//! The message itself is not held here either: its bytes leave as
//! [`Action::Append`] as they arrive (dot-unstuffed, never beyond
//! `max_message_size`), and the driver keeps them where it likes — `serve`
//! in a `spool::Writer` that moves a large message to a temporary file,
//! the unit tests and the fuzz target in a `Vec`. Actions rather than a
//! sink object the session would write to: the session stays a pure
//! function of its input (no I/O error can reach it, nothing to mock), and
//! a failure to keep the bytes is the driver's to answer, as a deferral of
//! the delivery it asks for. [`Action::Deliver`] says how many bytes the
//! message has, so the driver can check it kept exactly those, and
//! [`Action::Abandon`] ends a message that will not be delivered (too
//! large, or reset part way).
//!
//! Command lines are framed here (bounded, see [`super::input`]) and parsed
//! by smtp-proto one whole line at a time, so a parse error can never leave
//! half a line behind. Bodies come in by DATA (dot-stuffed, ended only by a
//! strict `CRLF.CRLF`) or BDAT chunks (RFC 3030). After the message the
//! session waits in `Delivering` until the driver hands it one outcome per
//! accepted recipient ([`Session::delivered`]); it then answers once per
//! accepted recipient, in RCPT order (RFC 2033 §4.2), in one place that
//! refusals decided here (message too large) go through as well. Postfix's
//! XFORWARD names the queue id of the next transaction (see [`xforward`]).

use super::input::{BodyEnd, Chunk, DataBody, LineEvent, LineReader};
use crate::envelope::Route;
use crate::mailbox::MailboxKind;
use crate::observe::Size;
use crate::outcome::Outcome;
use crate::reply::*;
use command::{absurd_number, bad_sequence, not_implemented, not_lmtp, parse_error, verb};
use smtp_proto::{MailFrom, Request, MAIL_BODY_BINARYMIME};
use std::borrow::Cow;

/// Limits of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message accepted, in bytes (advertised as `SIZE`).
    pub max_message_size: usize,
    /// Accepted recipients per transaction; more get `452 4.5.3`.
    pub max_recipients: usize,
}

/// Something the driver must do; actions come in the order they must be
/// done in.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes to the client.
    Send(Vec<u8>),
    /// Append these bytes to the message being received (begun by the
    /// first of them after a [`Deliver`](Action::Deliver) or
    /// [`Abandon`](Action::Abandon)).
    Append(Vec<u8>),
    /// Drop the message appended so far: it will not be delivered.
    Abandon,
    /// Deliver the message appended so far (nothing appended: an empty
    /// one) to every route, then call [`Session::delivered`] with one
    /// outcome per route, in order.
    Deliver(Transaction),
    /// Log this line (a driver bug the session noticed).
    Log(String),
    /// Count a decision the session took by itself (for the metrics).
    Decided(Decision),
    /// Flush what was sent and close the connection.
    Close,
}

/// What the session decides without the delivery core; the driver
/// reports it to the core's observer, so the session keeps no state beyond
/// the connection. (Refusals at `RCPT` are the router's to report.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A recipient over `max_recipients` got `452 4.5.3`.
    RecipientLimit,
    /// A message over `max_message_size` was refused: at `MAIL SIZE=`
    /// (no recipient yet), or after it for each accepted recipient.
    TooLarge {
        /// The envelope sender.
        sender: String,
        /// The recipient and its mailbox.
        recipient: Option<(String, MailboxKind)>,
        /// How big it was.
        size: Size,
        /// Postfix's queue id (XFORWARD `IDENT`), if given.
        queue_id: Option<String>,
    },
}

/// The envelope of a complete message (its bytes were appended).
#[derive(Debug, PartialEq, Eq)]
pub struct Transaction {
    /// The envelope sender (`""` for `MAIL FROM:<>`).
    pub sender: String,
    /// The accepted recipients, in RCPT order (never empty).
    pub routes: Vec<Route>,
    /// The size of the message, exactly as sent, dot-unstuffed: the bytes
    /// appended since the last `Deliver` or `Abandon`.
    pub size: usize,
    /// Postfix's queue id, if it sent one (XFORWARD `IDENT`).
    pub queue_id: Option<String>,
}

/// The envelope of the transaction in progress.
struct Envelope {
    sender: String,
    routes: Vec<Route>,
    queue_id: Option<String>,
}

/// Where the session is while it reads commands.
enum Phase {
    /// Connected; LHLO not given yet.
    Start,
    /// LHLO given, no transaction; the queue id XFORWARD named for the
    /// next one, if any.
    Idle(Option<String>),
    /// MAIL given; RCPTs are being collected.
    Mail(Envelope),
    /// Between the BDAT chunks of a message (this many bytes so far).
    Chunking(Envelope, usize),
}

/// The whole session state: reading commands, or some kind of body.
enum State {
    /// Reading command lines.
    Commands(Phase),
    /// Reading a DATA body.
    Data(Envelope, DataBody),
    /// Reading a BDAT chunk into the message, which has this many bytes
    /// before it (`true`: the last chunk).
    Chunk(Envelope, usize, Chunk, bool),
    /// Swallowing a refused BDAT chunk; then send the replies and go on
    /// in the phase given.
    Discard(Chunk, Vec<Reply>, Phase),
    /// The message is complete and being delivered to this many accepted
    /// recipients; input waits until [`Session::delivered`].
    Delivering(usize),
    /// QUIT answered: input is ignored.
    Closed,
}

/// One LMTP session. `R` decides at RCPT time whether a recipient (the
/// second argument) is accepted from the envelope sender (the first, `""`
/// for `MAIL FROM:<>`) in the transaction with Postfix's queue id (the
/// third, from XFORWARD); normally [`crate::deliver::Deliverer::route`].
pub struct Session<R: Router> {
    hostname: String,
    limits: Limits,
    router: R,
    line: LineReader,
    state: State,
    /// Input that arrived behind a complete message, kept until the
    /// message is delivered (at most one read of the driver's).
    pending: Vec<u8>,
}

/// The router's type: sender, recipient, queue id.
pub trait Router: Fn(&str, &str, Option<&str>) -> Result<Route, Outcome> {}

impl<F: Fn(&str, &str, Option<&str>) -> Result<Route, Outcome>> Router for F {}

/// Collects the actions of one [`Session::feed`], merging adjacent sends.
#[derive(Default)]
struct Out(Vec<Action>);

impl Out {
    fn raw(&mut self, bytes: &[u8]) {
        match self.0.last_mut() {
            Some(Action::Send(buf)) => buf.extend_from_slice(bytes),
            _ => self.0.push(Action::Send(bytes.to_vec())),
        }
    }

    /// Message bytes, merged into the append before them, if any.
    fn append(&mut self, mut bytes: Vec<u8>) {
        match self.0.last_mut() {
            _ if bytes.is_empty() => {}
            Some(Action::Append(buf)) => buf.append(&mut bytes),
            _ => self.0.push(Action::Append(bytes)),
        }
    }

    fn reply(&mut self, reply: &Reply) {
        let mut bytes = Vec::new();
        reply.write_to(&mut bytes);
        self.raw(&bytes);
    }

    fn push(&mut self, action: Action) {
        self.0.push(action);
    }
}

impl<R: Router> Session<R> {
    /// A new session for a client that just connected; `hostname` names
    /// this server in the greeting and the LHLO reply.
    pub fn new(hostname: &str, limits: Limits, router: R) -> Self {
        let hostname = hostname
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .collect::<String>();
        Session {
            hostname: if hostname.is_empty() {
                "localhost".into()
            } else {
                hostname
            },
            limits,
            router,
            line: LineReader::default(),
            state: State::Commands(Phase::Start),
            pending: Vec::new(),
        }
    }

    /// The greeting to send first: `220 <hostname> LMTP ...` (no enhanced
    /// code: RFC 2034 §3 leaves it off the greeting).
    pub fn greeting(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        Reply::plain(
            READY,
            format!("{} LMTP gitlab-mailgate ready", self.hostname),
        )
        .write_to(&mut bytes);
        bytes
    }

    /// True once LHLO was answered (the deadline for it is the driver's).
    pub fn greeted(&self) -> bool {
        !matches!(self.state, State::Commands(Phase::Start))
    }

    /// True from MAIL until the transaction is over (delivered, refused or
    /// reset), and while a body is being read: the client is in the middle
    /// of something, so a shutdown should let it finish.
    pub fn in_transaction(&self) -> bool {
        !matches!(
            self.state,
            State::Commands(Phase::Start | Phase::Idle(_)) | State::Closed
        )
    }

    /// Takes all of `input` (a partial line is kept for the next call) and
    /// returns what to do, in order. Input behind a complete message is
    /// kept until the message is [`delivered`](Self::delivered).
    pub fn feed(&mut self, input: &[u8]) -> Vec<Action> {
        let mut out = Out::default();
        self.run(input, &mut out);
        out.0
    }

    /// Feeds `input` through the readers until it is used up or a message
    /// is waiting for its outcomes (then the rest is kept in `pending`).
    fn run(&mut self, input: &[u8], out: &mut Out) {
        let mut rest = input;
        while !rest.is_empty() {
            if let State::Delivering(_) = self.state {
                self.pending.extend_from_slice(rest);
                return;
            }
            let state = std::mem::replace(&mut self.state, State::Closed);
            let held = holds_message(&state);
            let (used, next) = self.step(state, rest, out);
            // One place sees every way a message can end without being
            // delivered (too large, RSET or LHLO between chunks, QUIT).
            if held && !holds_message(&next) && !matches!(next, State::Delivering(_)) {
                out.push(Action::Abandon);
            }
            self.state = next;
            // Every reader takes at least one byte of non-empty input; stop
            // rather than spin should that ever not hold.
            if used == 0 {
                break;
            }
            rest = &rest[used.min(rest.len())..];
        }
    }

    /// Feeds the front of `input` to the reader of `state`; returns the
    /// bytes used and the next state.
    fn step(&mut self, state: State, input: &[u8], out: &mut Out) -> (usize, State) {
        match state {
            State::Closed => (input.len(), State::Closed),
            // `run` keeps input for later instead; never reached.
            State::Delivering(n) => (0, State::Delivering(n)),
            State::Data(envelope, mut body) => {
                let mut message = Vec::new();
                let (used, end) = body.ingest(input, &mut message);
                out.append(message);
                match end {
                    None => (used, State::Data(envelope, body)),
                    Some(end) => (used, self.end_data(envelope, end, out)),
                }
            }
            State::Chunk(envelope, size, mut chunk, last) => {
                let (bytes, done) = chunk.ingest(input);
                out.append(bytes.to_vec());
                let size = size + bytes.len();
                match done {
                    false => (bytes.len(), State::Chunk(envelope, size, chunk, last)),
                    true => (bytes.len(), self.end_chunk(envelope, size, last, out)),
                }
            }
            State::Discard(mut chunk, replies, phase) => match chunk.ingest(input) {
                (bytes, false) => (bytes.len(), State::Discard(chunk, replies, phase)),
                (bytes, true) => {
                    replies.iter().for_each(|r| out.reply(r));
                    (bytes.len(), State::Commands(phase))
                }
            },
            State::Commands(phase) => match self.line.ingest(input) {
                (used, None) => (used, State::Commands(phase)),
                (used, Some(LineEvent::TooLong)) => {
                    out.reply(&Reply::new(UNRECOGNIZED, E_SYNTAX, "line too long"));
                    (used, State::Commands(phase))
                }
                (used, Some(LineEvent::Line(line))) => (used, self.command(phase, &line, out)),
            },
        }
    }

    /// Answers one command line.
    fn command(&self, phase: Phase, line: &[u8], out: &mut Out) -> State {
        let same = |phase| State::Commands(phase);
        // No NUL, and no CR but the one before the LF: smtp-proto skips a
        // stray CR, so `RCPT TO:<a<CR>b@x>` would quietly become `ab@x`.
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.iter().any(|&b| b == 0 || b == b'\r') {
            let reply = Reply::new(UNRECOGNIZED, E_SYNTAX, "NUL or bare CR in command");
            out.reply(&reply);
            return same(phase);
        }
        match verb(line).as_slice() {
            b"EHLO" | b"HELO" => {
                out.reply(&not_lmtp());
                return same(phase);
            }
            b"XFORWARD" => return self.xforward(phase, line, out),
            b"AUTH" | b"STARTTLS" | b"EXPN" | b"ETRN" | b"ATRN" | b"BURL" | b"HELP" | b"TURN"
            | b"VERB" => {
                out.reply(&not_implemented());
                return same(phase);
            }
            _ => {}
        }
        let request = match Request::parse(&mut line.iter()) {
            Ok(request) => request,
            Err(e) => {
                out.reply(&parse_error(&e));
                return same(phase);
            }
        };
        let ok = |text| Reply::new(OK, E_OK, text);
        match request {
            Request::Lhlo { .. } => {
                out.reply(&self.lhlo_reply());
                same(Phase::Idle(None))
            }
            Request::Mail { mut from } => {
                if absurd_number(line, b" SIZE=") {
                    from.size = usize::MAX;
                }
                self.mail(phase, from, out)
            }
            Request::Rcpt { to } => self.rcpt(phase, &to.address, out),
            Request::Data => self.data(phase, out),
            Request::Bdat {
                chunk_size,
                is_last,
            } => {
                let size = match absurd_number(line, b"BDAT ") {
                    true => usize::MAX,
                    false => chunk_size,
                };
                self.bdat(phase, size, is_last, out)
            }
            Request::Rset => {
                out.reply(&ok("reset"));
                match phase {
                    Phase::Start => same(Phase::Start),
                    _ => same(Phase::Idle(None)),
                }
            }
            Request::Noop { .. } => {
                out.reply(&ok("ok"));
                same(phase)
            }
            Request::Vrfy { .. } => {
                out.reply(&Reply::new(
                    CANNOT_VRFY,
                    E_OK,
                    "cannot verify, but will take the message and try",
                ));
                same(phase)
            }
            Request::Quit => {
                out.reply(&Reply::new(CLOSING, E_OK, "bye"));
                out.push(Action::Close);
                State::Closed
            }
            Request::Ehlo { .. } | Request::Helo { .. } => {
                out.reply(&not_lmtp());
                same(phase)
            }
            Request::Auth { .. }
            | Request::StartTls
            | Request::Expn { .. }
            | Request::Help { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => {
                out.reply(&not_implemented());
                same(phase)
            }
        }
    }
}

/// True while part of a message has been appended (or may be next).
fn holds_message(state: &State) -> bool {
    matches!(
        state,
        State::Data(..) | State::Chunk(..) | State::Commands(Phase::Chunking(..))
    )
}

mod body;
mod command;
mod xforward;

#[cfg(test)]
mod tests;
