//! Byte-level readers under the LMTP session: command lines with a hard
//! length limit, DATA bodies with a size limit, and BDAT chunks. They only frame bytes;
//! what a line or a body means is the session's business.
//!
//! The readers take what they need from the front of a slice and say how
//! much they took, so pipelined bytes after a line, a chunk or the final
//! dot stay with the caller. None ever holds more than its limit, whatever
//! the client sends; message bytes are not held at all but handed on (a
//! DATA body's, dot-unstuffed, into the caller's buffer), never more than
//! the limit of one message.

/// Longest command line accepted, line ending included (smtp-proto uses
/// the same number, but only for lines that arrive in several reads).
pub const MAX_LINE: usize = 4096;

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

/// How a message body ended.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyEnd {
    /// The message is complete: this many bytes, dot-unstuffed, without
    /// the final `.CRLF`, were handed on.
    Message(usize),
    /// The message was larger than the limit; the bytes that would have
    /// crossed it and all after them were dropped.
    TooLarge,
}

/// Where a DATA body is with respect to lines. Only CR LF ends a line: a
/// bare LF or CR is content, so a dot after one is content too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// At the start of a line (the body's first byte, or after CR LF).
    LineStart,
    /// Inside a line; the last byte was not CR.
    Text,
    /// Inside a line, just after a CR.
    Cr,
    /// After a dot at the start of a line (held back: stuffing or the end).
    Dot,
    /// After a line-start dot and a CR (held back: the end if LF follows).
    DotCr,
}

/// A DATA body (RFC 5321 §4.5.2) being read up to the line that is
/// exactly `.` CR LF; a leading dot of any other line is removed. Nothing
/// else ends it: `CRLF.LF` or `CRLF.CR CR LF` is content, so no command
/// can be smuggled behind a lenient end of data.
pub struct DataBody {
    at: At,
    /// Bytes of the message handed on so far.
    kept: usize,
    /// True once the message went over the limit: only read to its end.
    dropping: bool,
    limit: usize,
}

impl DataBody {
    /// Starts a body that may be at most `limit` bytes long.
    pub fn new(limit: usize) -> DataBody {
        DataBody {
            at: At::LineStart,
            kept: 0,
            dropping: false,
            limit,
        }
    }

    /// How many bytes of the message were handed on (never more than the
    /// limit). Only the tests look inside a body being read.
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.kept
    }

    /// True once the body has gone over the limit and is only read to its end.
    #[cfg(test)]
    pub fn dropping(&self) -> bool {
        self.dropping
    }

    /// Takes bytes from the front of `input`, up to the end of the body at
    /// most, and appends the message bytes among them to `message`.
    /// Returns how many bytes were used and, once the final dot has been
    /// read, how the body ended.
    pub fn ingest(&mut self, input: &[u8], message: &mut Vec<u8>) -> (usize, Option<BodyEnd>) {
        let mut i = 0;
        while i < input.len() {
            if self.at == At::Text {
                // The common case: copy up to the next CR at once.
                let run = input[i..].iter().position(|&b| b == b'\r');
                let end = run.map_or(input.len(), |n| i + n);
                self.keep(&input[i..end], message);
                i = end;
                if i == input.len() {
                    break;
                }
            }
            let byte = input[i];
            i += 1;
            self.at = match (self.at, byte) {
                (At::LineStart, b'.') => At::Dot,
                (At::Dot, b'\r') => At::DotCr,
                (At::DotCr, b'\n') => {
                    let end = match self.dropping {
                        false => BodyEnd::Message(self.kept),
                        true => BodyEnd::TooLarge,
                    };
                    return (i, Some(end));
                }
                (At::DotCr, _) => {
                    // The held CR was content after all.
                    self.keep(b"\r", message);
                    self.next(byte, message)
                }
                _ => self.next(byte, message),
            };
        }
        (i, None)
    }

    /// Keeps `byte` as content; where it leaves the line.
    fn next(&mut self, byte: u8, message: &mut Vec<u8>) -> At {
        let was_cr = self.at == At::Cr || self.at == At::DotCr;
        self.keep(&[byte], message);
        match byte {
            b'\r' => At::Cr,
            b'\n' if was_cr => At::LineStart,
            _ => At::Text,
        }
    }

    /// Hands `bytes` on, unless they would take the message over the
    /// limit: then nothing more is.
    fn keep(&mut self, bytes: &[u8], message: &mut Vec<u8>) {
        if self.dropping {
            return;
        }
        if self.kept + bytes.len() > self.limit {
            self.dropping = true;
        } else {
            message.extend_from_slice(bytes);
            self.kept += bytes.len();
        }
    }
}

/// A BDAT chunk (RFC 3030) being read: exactly its announced size, kept
/// or, for a refused chunk, dropped.
pub struct Chunk {
    left: usize,
}

impl Chunk {
    /// A chunk of `size` bytes.
    pub fn new(size: usize) -> Chunk {
        Chunk { left: size }
    }

    /// Takes the chunk's bytes from the front of `input`; returns them and
    /// whether the chunk is complete.
    pub fn ingest<'a>(&mut self, input: &'a [u8]) -> (&'a [u8], bool) {
        let n = self.left.min(input.len());
        self.left -= n;
        (&input[..n], self.left == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How a body ended, with the bytes handed on.
    #[derive(Debug, PartialEq, Eq)]
    enum End {
        Message(Vec<u8>),
        TooLarge,
    }

    fn body(chunks: &[&[u8]], limit: usize) -> (Option<End>, Vec<u8>) {
        let mut b = DataBody::new(limit);
        let (mut kept, mut rest) = (Vec::new(), Vec::new());
        for (i, c) in chunks.iter().enumerate() {
            let (used, end) = b.ingest(c, &mut kept);
            if let Some(end) = end {
                rest.extend_from_slice(&c[used..]);
                for c in &chunks[i + 1..] {
                    rest.extend_from_slice(c);
                }
                let end = match end {
                    BodyEnd::Message(n) => {
                        assert_eq!(n, kept.len());
                        End::Message(kept)
                    }
                    BodyEnd::TooLarge => End::TooLarge,
                };
                return (Some(end), rest);
            }
            assert_eq!(used, c.len());
        }
        (None, rest)
    }

    fn message(m: &[u8]) -> Option<End> {
        Some(End::Message(m.to_vec()))
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
        let big = vec![b'x'; 2 * 64 * 1024];
        let mut kept = Vec::new();
        for pieces in [
            vec![&b"\r\n.\r\r\nMAIL\r\n.\r\nNOOP"[..]],
            vec![b"\r\n.\r", b"\r", b"\nMAIL\r\n.", b"\r", b"\nNOOP"],
        ] {
            let mut b = DataBody::new(10);
            assert_eq!(b.ingest(&big, &mut kept), (big.len(), None));
            let mut chunks = vec![&big[..0]];
            chunks.extend(pieces);
            let (mut used, mut end) = (0, None);
            for c in &chunks {
                assert!(end.is_none());
                (used, end) = b.ingest(c, &mut kept);
            }
            assert_eq!(end, Some(BodyEnd::TooLarge));
            assert_eq!(&chunks.last().unwrap()[used..], b"NOOP");
        }
        // Split right after the dot's CR: still a strict end.
        let mut b = DataBody::new(10);
        b.ingest(&big, &mut kept);
        assert_eq!(b.ingest(b"\r\n.\r", &mut kept), (4, None));
        assert_eq!(b.ingest(b"\nX", &mut kept), (1, Some(BodyEnd::TooLarge)));
        // Of each body, only its first byte fit the limit.
        assert_eq!(kept, b"xxx");
    }

    #[test]
    fn oversize_is_read_to_the_end_and_dropped() {
        let big = vec![b'x'; 3 * 64 * 1024];
        let mut kept = Vec::new();
        let mut b = DataBody::new(10);
        assert_eq!(b.ingest(b"12345\r\n", &mut kept), (7, None));
        assert_eq!(b.ingest(&big, &mut kept), (big.len(), None));
        assert!(b.dropping());
        let end = b.ingest(b"\r\n.\r\nNOOP", &mut kept);
        assert_eq!(end, (5, Some(BodyEnd::TooLarge)));
        // What fit the limit was handed on (the byte at the start of a
        // line goes alone), nothing after it.
        assert_eq!(kept, b"12345\r\nx");
    }

    #[test]
    fn a_message_of_exactly_the_limit_is_kept_byte_by_byte() {
        let mut kept = Vec::new();
        let mut b = DataBody::new(4);
        for &byte in b"ab\r\n.\r" {
            assert_eq!(b.ingest(&[byte], &mut kept), (1, None));
        }
        assert_eq!(b.ingest(b"\n", &mut kept), (1, Some(BodyEnd::Message(4))));
        assert_eq!(kept, b"ab\r\n");
        let mut b = DataBody::new(3);
        let end = b.ingest(b"ab\r\n.\r\n", &mut Vec::new());
        assert_eq!(end, (7, Some(BodyEnd::TooLarge)));
    }

    #[test]
    fn chunks_take_exactly_their_size() {
        let mut c = Chunk::new(5);
        assert_eq!(c.ingest(b"abc"), (&b"abc"[..], false));
        assert_eq!(c.ingest(b"deQUIT"), (&b"de"[..], true));
        assert_eq!(Chunk::new(0).ingest(b"x"), (&b""[..], true));
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
