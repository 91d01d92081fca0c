//! The input generator for the fuzz entry points of
//! `gitlab_mailgate::fuzzing`, for toolchains without libFuzzer: random
//! bytes and random sequences of protocol and header tokens, mutated.
//! Dev-only: included by `examples/fuzz.rs` and the test suite's short
//! run (`#[path]`), never part of the shipped library.

use gitlab_mailgate::fuzzing::{header_key, lmtp_session, route_recipient};

/// A fuzz target: name, token dictionary, entry point.
pub struct Target {
    /// The name used on the command line and in `fuzz/`.
    pub name: &'static str,
    tokens: &'static [&'static str],
    entry: fn(&[u8]),
}

/// Every target.
pub const TARGETS: [Target; 3] = [
    Target {
        name: "route",
        tokens: ROUTE_TOKENS,
        entry: route_recipient,
    },
    Target {
        name: "header",
        tokens: HEADER_TOKENS,
        entry: header_key,
    },
    Target {
        name: "lmtp",
        tokens: LMTP_TOKENS,
        entry: lmtp_session,
    },
];

/// Runs `target` on `cases` generated inputs from `seed`. Returns the
/// first input that panicked, if any.
pub fn run(target: &Target, cases: u64, seed: u64) -> Result<(), Vec<u8>> {
    let mut rng = Rng(seed | 1);
    let mut input = Vec::new();
    for _ in 0..cases {
        generate(&mut rng, target.tokens, &mut input);
        if std::panic::catch_unwind(|| (target.entry)(&input)).is_err() {
            return Err(input);
        }
    }
    Ok(())
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const ROUTE_TOKENS: &[&str] = &[
    "incoming",
    "+",
    "-",
    "%{key}",
    "@",
    "in.example",
    "IN.EXAMPLE",
    "\n",
    "<",
    ">",
    "/",
    "..",
    "%",
    "\"",
    " ",
    "\r",
    "issue",
    "-issue-",
    "-merge-request",
    "unsubscribe",
    "42",
    "59d8df8370b7e95c5a49fbf86aeb2c93",
    "b7-0123456789abcdefghijklmno",
    "grp-proj",
    "\u{e9}",
    "\0",
];

const HEADER_TOKENS: &[&str] = &[
    "To: ",
    "Cc: ",
    "References: ",
    "Delivered-To: ",
    "Envelope-To: ",
    "X-Envelope-To: ",
    "Received: from x by y with LMTP id 4Abc; ",
    " for <",
    "Message-ID: <",
    "reply-",
    "@gitlab.example",
    "incoming+",
    "@in.example",
    ">",
    ",",
    "\"",
    "\r\n",
    "\n",
    "\r\n ",
    "\r\n\r\n",
    "=?utf-8?b?",
    "?=",
    "Subject: x",
    ":",
    "<>",
    "\u{fc}",
    "\0",
    "Content-Type: multipart/mixed; boundary=b\r\n",
    "--b\r\n",
];

const LMTP_TOKENS: &[&str] = &[
    // A whole transaction, so deliveries (and RFC 2033 §4.2) come often.
    "LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<incoming+k@in.example>\r\nRCPT TO:<x@y>\r\n\
     RCPT TO:<incoming+j@in.example>\r\nDATA\r\nx\r\n.\r\n",
    "LHLO x\r\n",
    "EHLO x\r\n",
    "HELO x\r\n",
    "MAIL FROM:<a@b>\r\n",
    "MAIL FROM:<>\r\n",
    "MAIL FROM:<a@b> SIZE=",
    "99999999999",
    "100",
    "RCPT TO:<incoming+59d8df8370b7e95c5a49fbf86aeb2c93@in.example>\r\n",
    "RCPT TO:<nobody@in.example>\r\n",
    "RCPT TO:<",
    "DATA\r\n",
    "BDAT ",
    " LAST",
    "\r\n",
    ".\r\n",
    "..x\r\n",
    "Subject: y\r\n\r\nbody\r\n",
    "RSET\r\n",
    "NOOP\r\n",
    "QUIT\r\n",
    "VRFY x\r\n",
    "AUTH PLAIN\r\n",
    "STARTTLS\r\n",
    "\n",
    "\r",
    "\0",
    "x",
    " ",
    ":",
    "<",
    ">",
];

fn generate(rng: &mut Rng, tokens: &[&str], out: &mut Vec<u8>) {
    out.clear();
    let len = rng.below(64);
    for _ in 0..len {
        match rng.below(10) {
            0 => out.push(rng.next() as u8),
            1 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = rng.next() as u8;
            }
            2 => {
                let n = rng.below(300);
                out.extend(std::iter::repeat_n(b'a' + (rng.below(3) as u8), n));
            }
            _ => out.extend_from_slice(tokens[rng.below(tokens.len())].as_bytes()),
        }
    }
}
