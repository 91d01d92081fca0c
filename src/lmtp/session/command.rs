//! Command handling beyond the dispatch in the session: MAIL and RCPT,
//! the verb of a line, numbers smtp-proto cannot read, and the replies
//! for refused commands.

use super::*;
use smtp_proto::Error as ParseError;

/// The command word of `line`, upper-cased.
pub(super) fn verb(line: &[u8]) -> Vec<u8> {
    line.iter()
        .take_while(|b| !b.is_ascii_whitespace())
        .take(16)
        .map(u8::to_ascii_uppercase)
        .collect()
}

/// True when `marker` (upper case) is followed by a number larger than
/// any `usize`: smtp-proto 0.2.5 wraps such numbers around to small values
/// instead of saturating, which would let `BDAT 99999999999999999999999`
/// be read as a small chunk and put the session out of step.
pub(super) fn absurd_number(line: &[u8], marker: &[u8]) -> bool {
    let upper = line.to_ascii_uppercase();
    let Some(at) = upper.windows(marker.len()).position(|w| w == marker) else {
        return false;
    };
    let digits = upper[at + marker.len()..]
        .iter()
        .skip_while(|&&b| b == b'0')
        .take_while(|b| b.is_ascii_digit())
        .count();
    digits > usize::MAX.ilog10() as usize + 1
}

pub(super) fn bad_sequence(text: &'static str) -> Reply {
    Reply::new(BAD_SEQUENCE, E_INVALID_COMMAND, text)
}

pub(super) fn too_big(text: &'static str) -> Reply {
    Reply::new(EXCEEDED_STORAGE, E_TOO_BIG, text)
}

pub(super) fn not_lmtp() -> Reply {
    Reply::new(UNRECOGNIZED, E_INVALID_COMMAND, "this is LMTP: say LHLO")
}

pub(super) fn not_implemented() -> Reply {
    Reply::new(
        NOT_IMPLEMENTED,
        E_INVALID_COMMAND,
        "command not implemented",
    )
}

/// The reply to a line smtp-proto could not parse.
pub(super) fn parse_error(e: &ParseError) -> Reply {
    match e {
        ParseError::UnknownCommand => Reply::new(UNRECOGNIZED, E_SYNTAX, "unknown command"),
        ParseError::InvalidSenderAddress => Reply::new(
            BAD_ARGUMENTS,
            E_BAD_SENDER_SYNTAX,
            "bad sender address syntax",
        ),
        ParseError::InvalidRecipientAddress => Reply::new(
            BAD_ARGUMENTS,
            E_BAD_RCPT_SYNTAX,
            "bad recipient address syntax",
        ),
        ParseError::UnsupportedParameter { .. } => {
            Reply::new(PARAMS_NOT_RECOGNIZED, E_BAD_ARGS, "unsupported parameter")
        }
        ParseError::InvalidParameter { param } => Reply::new(BAD_ARGUMENTS, E_BAD_ARGS, "")
            .with_text(format!("invalid {param} parameter")),
        ParseError::SyntaxError { syntax } => {
            Reply::new(BAD_ARGUMENTS, E_BAD_ARGS, "").with_text(format!("syntax: {syntax}"))
        }
        ParseError::NeedsMoreData { .. }
        | ParseError::ResponseTooLong
        | ParseError::InvalidResponse { .. } => Reply::new(UNRECOGNIZED, E_SYNTAX, "syntax error"),
    }
}

impl<R: Router> Session<R> {
    /// The multi-line LHLO reply (RFC 2033 §4.1); no enhanced codes on it
    /// (RFC 2034 §3).
    pub(super) fn lhlo_reply(&self) -> Reply {
        let lines = [
            self.hostname.clone(),
            "PIPELINING".into(),
            format!("SIZE {}", self.limits.max_message_size),
            "8BITMIME".into(),
            "ENHANCEDSTATUSCODES".into(),
            "SMTPUTF8".into(),
            "CHUNKING".into(),
            xforward::ADVERTISED.into(),
        ];
        Reply::multiline(OK, &lines)
    }

    /// XFORWARD (see [`xforward`]): between transactions only; the queue
    /// id it names is the next transaction's.
    pub(super) fn xforward(&self, phase: Phase, line: &[u8], out: &mut Out) -> State {
        let ident = match phase {
            Phase::Idle(ident) => ident,
            Phase::Start => {
                out.reply(&bad_sequence("send LHLO first"));
                return State::Commands(phase);
            }
            phase @ (Phase::Mail(_) | Phase::Chunking(..)) => {
                out.reply(&bad_sequence("MAIL transaction in progress"));
                return State::Commands(phase);
            }
        };
        match xforward::parse(line) {
            Ok(named) => {
                out.reply(&Reply::new(OK, E_OK, "ok"));
                State::Commands(Phase::Idle(named.unwrap_or(ident)))
            }
            Err(reply) => {
                out.reply(&reply);
                State::Commands(Phase::Idle(ident))
            }
        }
    }

    pub(super) fn mail(&self, phase: Phase, from: MailFrom<Cow<'_, str>>, out: &mut Out) -> State {
        match phase {
            Phase::Idle(queue_id) if from.size > self.limits.max_message_size => {
                out.push(Action::Decided(Decision::TooLarge {
                    sender: from.address.into_owned(),
                    recipient: None,
                    size: Size::Announced(from.size),
                    queue_id: queue_id.clone(),
                }));
                out.reply(&too_big("message size exceeds the limit"));
                State::Commands(Phase::Idle(queue_id))
            }
            Phase::Idle(queue_id) if from.flags & MAIL_BODY_BINARYMIME != 0 => {
                out.reply(&Reply::new(
                    PARAMS_NOT_RECOGNIZED,
                    E_BAD_ARGS,
                    "BODY=BINARYMIME is not supported",
                ));
                State::Commands(Phase::Idle(queue_id))
            }
            Phase::Idle(queue_id) => {
                out.reply(&Reply::new(OK, E_SENDER_OK, "sender ok"));
                State::Commands(Phase::Mail(Envelope {
                    sender: from.address.into_owned(),
                    routes: Vec::new(),
                    queue_id,
                }))
            }
            Phase::Start => {
                out.reply(&bad_sequence("send LHLO first"));
                State::Commands(Phase::Start)
            }
            phase @ (Phase::Mail(_) | Phase::Chunking(..)) => {
                out.reply(&bad_sequence("nested MAIL command"));
                State::Commands(phase)
            }
        }
    }

    pub(super) fn rcpt(&self, phase: Phase, address: &str, out: &mut Out) -> State {
        match phase {
            Phase::Mail(mut envelope) => {
                if envelope.routes.len() >= self.limits.max_recipients {
                    out.push(Action::Decided(Decision::RecipientLimit));
                    out.reply(&Reply::new(
                        INSUFFICIENT_STORAGE,
                        E_TOO_MANY_RCPTS,
                        "too many recipients",
                    ));
                } else {
                    match (self.router)(&envelope.sender, address, envelope.queue_id.as_deref()) {
                        Ok(route) => {
                            envelope.routes.push(route);
                            out.reply(&Reply::new(OK, E_RCPT_OK, "recipient ok"));
                        }
                        Err(outcome) => out.reply(&outcome.reply()),
                    }
                }
                State::Commands(Phase::Mail(envelope))
            }
            phase @ (Phase::Start | Phase::Idle(_)) => {
                out.reply(&bad_sequence("need MAIL before RCPT"));
                State::Commands(phase)
            }
            phase @ Phase::Chunking(..) => {
                out.reply(&bad_sequence("RCPT after BDAT"));
                State::Commands(phase)
            }
        }
    }
}
