//! Byte-level readers under the LMTP session: command lines with a hard
//! length limit, and DATA bodies with a size limit. They only frame bytes;
//! what a line or a body means is the session's business.
//!
//! Both readers take what they need from the front of a slice and say how
//! much they took, so pipelined bytes after a line or after the final dot
//! stay with the caller. Neither ever holds more than its limit (plus
//! [`DATA_STEP`] for a body), whatever the client sends.

use smtp_proto::request::receiver::DataReceiver;

/// Longest command line accepted, line ending included (smtp-proto uses
/// the same number, but only for lines that arrive in several reads).
pub const MAX_LINE: usize = 4096;

/// How many bytes of a body are handed to smtp-proto's receiver at once;
/// a body can pass the size limit by at most this much before it is
/// dropped, because the receiver itself never stops growing.
pub const DATA_STEP: usize = 64 * 1024;

/// A command line being put together from the input.
pub enum LineReader {
    /// Bytes of the current line so far (never more than [`MAX_LINE`]).
    Collecting(Vec<u8>),
    /// The current line was too long and has been answered: drop bytes up
    /// to and including its LF.
    Skipping,
}

/// What [`LineReader::ingest`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum LineEvent {
    /// A whole line, LF (and CR, if any) included.
    Line(Vec<u8>),
    /// The line is longer than [`MAX_LINE`]; reported once per line.
    TooLong,
}

impl Default for LineReader {
    fn default() -> Self {
        LineReader::Collecting(Vec::new())
    }
}

impl LineReader {
    /// Takes bytes from the front of `input`, at most up to the end of one
    /// line. Returns how many bytes were used (at least one unless `input`
    /// is empty) and the event, if any.
    pub fn ingest(&mut self, input: &[u8]) -> (usize, Option<LineEvent>) {
        let lf = input.iter().position(|&b| b == b'\n');
        let take = lf.map_or(input.len(), |i| i + 1);
        match self {
            LineReader::Skipping => {
                if lf.is_some() {
                    *self = LineReader::default();
                }
                (take, None)
            }
            LineReader::Collecting(buf) => {
                if buf.len() + take > MAX_LINE {
                    buf.clear();
                    if lf.is_none() {
                        *self = LineReader::Skipping;
                    }
                    return (take, Some(LineEvent::TooLong));
                }
                buf.extend_from_slice(&input[..take]);
                match lf {
                    Some(_) => (take, Some(LineEvent::Line(std::mem::take(buf)))),
                    None => (take, None),
                }
            }
        }
    }
}

/// How a DATA body ended.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyEnd {
    /// The message, dot-unstuffed, without the final `.CRLF`.
    Message(Vec<u8>),
    /// The message was larger than the limit; its bytes were dropped.
    TooLarge,
}

/// A DATA body being read, up to the `CRLF.CRLF` that ends it.
pub enum DataBody {
    /// Under the limit so far: keeping the bytes.
    Keeping {
        /// smtp-proto's un-stuffing receiver.
        receiver: DataReceiver,
        /// The message so far.
        message: Vec<u8>,
        /// The size limit.
        limit: usize,
    },
    /// Over the limit: reading to the final dot and keeping nothing.
    Dropping(Dropped),
}

/// What is left of a body that went over the limit: the receiver, and
/// the last [`TAIL`] bytes it produced, to tell a strict end by (see
/// [`strict_end`]).
pub struct Dropped {
    receiver: DataReceiver,
    tail: Vec<u8>,
}

/// Bytes kept of a dropped body: [`strict_end`] looks at two, and the
/// receiver may take back one (a CR it held) when the body ends.
const TAIL: usize = 3;

/// A receiver that is at the start of a line.
fn line_start_receiver() -> DataReceiver {
    let mut receiver = DataReceiver::new();
    // smtp-proto 0.2.5 does not treat the start of the body as the
    // start of a line: an empty message (`.CRLF` at once) would never
    // end and a leading `..x` would keep both dots. Showing it a CRLF
    // (into a scratch buffer) puts it at the start of a line.
    receiver.ingest(&mut b"\r\n".iter(), &mut Vec::new());
    receiver
}

/// Whether the body the receiver just ended really ended with
/// `CRLF.CRLF`. smtp-proto 0.2.5 also ends it at `CRLF.` followed by
/// several CRs and an LF, which would let a client smuggle commands in a
/// message (SMTP smuggling). It drops the dot and the final CR LF, so after
/// a strict end the output ends with the CRLF before the dot (or is empty,
/// at the very start); after `CRLF.CR CR… LF` it ends with a CR.
fn strict_end(output: &[u8]) -> bool {
    output.is_empty() || output.ends_with(b"\r\n")
}

impl DataBody {
    /// Starts a body that may be at most `limit` bytes long.
    pub fn new(limit: usize) -> DataBody {
        DataBody::Keeping {
            receiver: line_start_receiver(),
            message: Vec::new(),
            limit,
        }
    }

    /// Takes bytes from the front of `input`, up to the end of the body at
    /// most. Returns how many bytes were used and, once the final dot has
    /// been read, how the body ended.
    pub fn ingest(&mut self, input: &[u8]) -> (usize, Option<BodyEnd>) {
        let mut used = 0;
        while used < input.len() {
            let step = &input[used..input.len().min(used + DATA_STEP)];
            match self {
                DataBody::Keeping {
                    receiver,
                    message,
                    limit,
                } => {
                    let (n, done) = consume(step, |it| receiver.ingest(it, message));
                    used += n;
                    if done && !strict_end(message) {
                        // Not the end: that line was `.CR…CR LF`, content.
                        // Give back the CR LF the receiver took, go on.
                        message.extend_from_slice(b"\r\n");
                        *receiver = line_start_receiver();
                    } else if done && message.len() > *limit {
                        return (used, Some(BodyEnd::TooLarge));
                    } else if done {
                        return (used, Some(BodyEnd::Message(std::mem::take(message))));
                    }
                    // The receiver holds the CR after a line-start dot until
                    // it knows whether the LF that ends the body follows: one
                    // byte of slack, or a message of exactly the limit
                    // would be dropped when it comes byte by byte.
                    if message.len() > limit.saturating_add(1) {
                        let tail = message[message.len().saturating_sub(TAIL)..].to_vec();
                        let receiver = std::mem::replace(receiver, DataReceiver::new());
                        *self = DataBody::Dropping(Dropped { receiver, tail });
                    }
                }
                DataBody::Dropping(Dropped { receiver, tail }) => {
                    let (n, done) = consume(step, |it| receiver.ingest(it, tail));
                    used += n;
                    if done && strict_end(tail) {
                        return (used, Some(BodyEnd::TooLarge));
                    }
                    if done {
                        *receiver = line_start_receiver();
                    }
                    let old = tail.len().saturating_sub(TAIL);
                    tail.drain(..old);
                    if done {
                        tail.extend_from_slice(b"\r\n");
                    }
                }
            }
        }
        (used, None)
    }
}

/// Runs a smtp-proto receiver over `input`; returns how many bytes it
/// took and whether it reached the end of what it was reading.
pub fn consume(
    input: &[u8],
    receive: impl FnOnce(&mut std::slice::Iter<'_, u8>) -> bool,
) -> (usize, bool) {
    let mut it = input.iter();
    let done = receive(&mut it);
    (input.len() - it.as_slice().len(), done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(chunks: &[&[u8]], limit: usize) -> (Option<BodyEnd>, Vec<u8>) {
        let mut b = DataBody::new(limit);
        let mut rest = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let (used, end) = b.ingest(c);
            if end.is_some() {
                rest.extend_from_slice(&c[used..]);
                for c in &chunks[i + 1..] {
                    rest.extend_from_slice(c);
                }
                return (end, rest);
            }
            assert_eq!(used, c.len());
        }
        (None, rest)
    }

    fn message(m: &[u8]) -> Option<BodyEnd> {
        Some(BodyEnd::Message(m.to_vec()))
    }

    #[test]
    fn first_line_is_a_line_start() {
        assert_eq!(body(&[b".\r\n"], 100), (message(b""), vec![]));
        assert_eq!(body(&[b"..x\r\n.\r\n"], 100), (message(b".x\r\n"), vec![]));
        assert_eq!(
            body(&[b".", b".", b"x\r\n.", b"\r\n"], 100).0,
            message(b".x\r\n")
        );
    }

    #[test]
    fn leaves_pipelined_bytes() {
        let (end, rest) = body(&[b"a\r\n..\r\n.\r\nQUIT\r\n"], 100);
        assert_eq!(end, message(b"a\r\n.\r\n"));
        assert_eq!(rest, b"QUIT\r\n");
    }

    #[test]
    fn bare_lf_dot_does_not_end_data() {
        // A dot at the start of a line is un-stuffed even when a bare LF
        // follows it, but only CRLF.CRLF ends the body.
        let (end, _) = body(&[b"a\n.\nb\r\n.\n\r\n.\r\n"], 100);
        assert_eq!(end, message(b"a\n.\nb\r\n\n\r\n"));
    }

    #[test]
    fn dot_then_several_crs_does_not_end_data() {
        // smtp-proto alone would end at `CRLF.CRCRLF` (SMTP smuggling).
        let (end, rest) = body(&[b"a\r\n.\r\r\nMAIL\r\n.\r\nNOOP"], 100);
        assert_eq!(end, message(b"a\r\n\r\r\nMAIL\r\n"));
        assert_eq!(rest, b"NOOP");
        let (end, _) = body(&[b".\r\r\r\n", b"x\r\n.", b"\r", b"\n"], 100);
        assert_eq!(end, message(b"\r\r\r\nx\r\n"));
    }

    #[test]
    fn a_dropped_body_ends_only_at_crlf_dot_crlf_too() {
        let big = vec![b'x'; 2 * DATA_STEP];
        for pieces in [
            vec![&b"\r\n.\r\r\nMAIL\r\n.\r\nNOOP"[..]],
            vec![b"\r\n.\r", b"\r", b"\nMAIL\r\n.", b"\r", b"\nNOOP"],
        ] {
            let mut b = DataBody::new(10);
            assert_eq!(b.ingest(&big), (big.len(), None));
            let mut chunks = vec![&big[..0]];
            chunks.extend(pieces);
            let (mut used, mut end) = (0, None);
            for c in &chunks {
                assert!(end.is_none());
                (used, end) = b.ingest(c);
            }
            assert_eq!(end, Some(BodyEnd::TooLarge));
            assert_eq!(&chunks.last().unwrap()[used..], b"NOOP");
        }
        // Split right after the dot's CR: still a strict end.
        let mut b = DataBody::new(10);
        b.ingest(&big);
        assert_eq!(b.ingest(b"\r\n.\r"), (4, None));
        assert_eq!(b.ingest(b"\nX"), (1, Some(BodyEnd::TooLarge)));
    }

    #[test]
    fn oversize_is_read_to_the_end_and_dropped() {
        let big = vec![b'x'; 3 * DATA_STEP];
        let mut b = DataBody::new(10);
        assert_eq!(b.ingest(&big), (big.len(), None));
        assert!(matches!(b, DataBody::Dropping(_)));
        assert_eq!(b.ingest(b"\r\n.\r\nNOOP"), (5, Some(BodyEnd::TooLarge)));
    }

    #[test]
    fn lines_are_bounded() {
        let mut r = LineReader::default();
        assert_eq!(
            r.ingest(b"NOOP\r\nQUIT"),
            (6, Some(LineEvent::Line(b"NOOP\r\n".to_vec())))
        );
        let long = vec![b'a'; MAX_LINE * 3];
        assert_eq!(r.ingest(&long), (long.len(), Some(LineEvent::TooLong)));
        assert_eq!(r.ingest(&long), (long.len(), None));
        assert_eq!(r.ingest(b"aa\nX\n"), (3, None));
        assert_eq!(
            r.ingest(b"X\n"),
            (2, Some(LineEvent::Line(b"X\n".to_vec())))
        );
        let exact = [vec![b'a'; MAX_LINE - 1], vec![b'\n']].concat();
        assert_eq!(r.ingest(&exact).1, Some(LineEvent::Line(exact.clone())));
    }
}
