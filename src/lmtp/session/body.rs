//! The message part of a session: DATA bodies and BDAT chunks, handing a
//! complete message over for delivery, and refusing a message that is too
//! large (read to its end, then one reply per accepted recipient, in
//! order, RFC 2033 §4.2, as for a delivered one).

use super::*;

impl<R: Router> Session<R> {
    /// True while a message body (DATA, or a BDAT chunk) is being read:
    /// bytes arriving then are progress even though no reply is due yet.
    pub fn reading_message(&self) -> bool {
        matches!(
            self.state,
            State::Data(..) | State::Chunk(..) | State::Discard(..)
        )
    }

    /// Takes the outcome of the [`Action::Deliver`] just emitted, one per
    /// route in RCPT order, and answers each accepted recipient; then goes
    /// on with the input that came behind the message. An outcome missing
    /// from `outcomes` (a driver bug) is answered as a temporary failure,
    /// so the client keeps the message.
    pub fn delivered(&mut self, outcomes: &[Outcome]) -> Vec<Action> {
        let mut out = Out::default();
        let State::Delivering(accepted) = self.state else {
            out.push(Action::Log(
                "internal error: delivered() without a message".into(),
            ));
            return out.0;
        };
        if outcomes.len() != accepted {
            out.push(Action::Log(format!(
                "internal error: {} outcomes for {accepted} recipients",
                outcomes.len()
            )));
        }
        for reply in per_recipient(accepted, outcomes) {
            out.reply(&reply);
        }
        self.state = State::Commands(Phase::Idle(None));
        let pending = std::mem::take(&mut self.pending);
        self.run(&pending, &mut out);
        out.0
    }

    pub(super) fn data(&self, phase: Phase, out: &mut Out) -> State {
        match phase {
            Phase::Mail(envelope) if !envelope.routes.is_empty() => {
                out.reply(&Reply::plain(
                    START_INPUT,
                    "end data with <CR><LF>.<CR><LF>",
                ));
                State::Data(envelope, DataBody::new(self.limits.max_message_size))
            }
            phase => {
                out.reply(&bad_sequence(match phase {
                    Phase::Mail(_) => "no valid recipients",
                    Phase::Chunking(..) => "DATA after BDAT",
                    Phase::Start | Phase::Idle(_) => "need MAIL and RCPT before DATA",
                }));
                State::Commands(phase)
            }
        }
    }

    /// A BDAT command. Its chunk follows at once whatever the reply
    /// (RFC 3030 §2), so a refused chunk is still read, then answered.
    pub(super) fn bdat(&self, phase: Phase, size: usize, last: bool, out: &mut Out) -> State {
        match phase {
            Phase::Mail(envelope) if !envelope.routes.is_empty() => {
                self.chunk(envelope, 0, size, last, out)
            }
            Phase::Chunking(envelope, so_far) => self.chunk(envelope, so_far, size, last, out),
            phase => {
                let why = match phase {
                    Phase::Mail(_) => "no valid recipients",
                    _ => "need MAIL and RCPT before BDAT",
                };
                discard(size, vec![bad_sequence(why)], phase, out)
            }
        }
    }

    /// A chunk of `size` bytes for a message of `so_far` bytes: refused
    /// before a byte of it is appended when it would cross the limit.
    fn chunk(
        &self,
        envelope: Envelope,
        so_far: usize,
        size: usize,
        last: bool,
        out: &mut Out,
    ) -> State {
        if so_far.saturating_add(size) > self.limits.max_message_size {
            let replies = self.refuse_too_large(&envelope, out);
            // After the last chunk LMTP answers per recipient; a refused
            // middle chunk gets one reply and ends the transaction.
            let mut replies = replies;
            if !last {
                replies.truncate(1);
            }
            return discard(size, replies, Phase::Idle(None), out);
        }
        if size == 0 {
            return self.end_chunk(envelope, so_far, last, out);
        }
        State::Chunk(envelope, so_far, Chunk::new(size), last)
    }

    pub(super) fn end_chunk(
        &self,
        envelope: Envelope,
        size: usize,
        last: bool,
        out: &mut Out,
    ) -> State {
        if last {
            return deliver(envelope, size, out);
        }
        let text = format!("{size} octets received so far");
        out.reply(&Reply::new(OK, E_OK, "").with_text(text));
        State::Commands(Phase::Chunking(envelope, size))
    }

    pub(super) fn end_data(&self, envelope: Envelope, end: BodyEnd, out: &mut Out) -> State {
        match end {
            BodyEnd::Message(size) => deliver(envelope, size, out),
            BodyEnd::TooLarge => {
                for reply in self.refuse_too_large(&envelope, out) {
                    out.reply(&reply);
                }
                State::Commands(Phase::Idle(None))
            }
        }
    }

    /// Reports the refusal of an oversize message for each recipient and
    /// returns their replies (one per recipient; [`per_recipient`]).
    fn refuse_too_large(&self, envelope: &Envelope, out: &mut Out) -> Vec<Reply> {
        for route in &envelope.routes {
            out.push(Action::Decided(Decision::TooLarge {
                sender: envelope.sender.clone(),
                recipient: Some((route.recipient.clone(), route.mailbox.kind)),
                size: Size::Over(self.limits.max_message_size),
                queue_id: envelope.queue_id.clone(),
            }));
        }
        let outcomes = vec![Outcome::TooLarge; envelope.routes.len()];
        per_recipient(envelope.routes.len(), &outcomes)
    }
}

/// One reply per accepted recipient, in RCPT order (RFC 2033 §4.2): the
/// reply of its outcome, or a temporary failure where none was given.
fn per_recipient(accepted: usize, outcomes: &[Outcome]) -> Vec<Reply> {
    (0..accepted)
        .map(|i| match outcomes.get(i) {
            Some(outcome) => outcome.reply(),
            None => Reply::new(LOCAL_ERROR, E_SYSTEM, "internal error, try again later"),
        })
        .collect()
}

/// Hands the complete message over and waits for its outcomes.
fn deliver(envelope: Envelope, size: usize, out: &mut Out) -> State {
    let accepted = envelope.routes.len();
    out.push(Action::Deliver(Transaction {
        sender: envelope.sender,
        routes: envelope.routes,
        size,
        queue_id: envelope.queue_id,
    }));
    State::Delivering(accepted)
}

/// Swallows a BDAT chunk of `size` bytes, then answers `replies` and goes
/// on in `phase`.
pub(super) fn discard(size: usize, replies: Vec<Reply>, phase: Phase, out: &mut Out) -> State {
    if size == 0 {
        replies.iter().for_each(|r| out.reply(r));
        return State::Commands(phase);
    }
    State::Discard(Chunk::new(size), replies, phase)
}
