//! SMTP/LMTP replies as values: a reply code, an enhanced status code and a
//! text meant for the remote side.
//!
//! Every code the program sends is named once here, next to the RFC that
//! defines it, so that handlers never spell out `b"250 ..."` themselves.
//! Writing a reply to the wire is [`Reply::write_to`]; nothing here does I/O.

use std::borrow::Cow;
use std::fmt;

/// The subject and detail of an RFC 3463 enhanced status code. Its class
/// (2, 4 or 5) is never stored: it is the first digit of the reply code it
/// goes with, so a 5xx reply with a 4.x.x code cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enhanced(pub u16, pub u16);

/// One reply: code, enhanced status and text for the remote side, with
/// extra lines before it for a multi-line reply (LHLO's extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code (RFC 5321 §4.2).
    pub code: u16,
    /// The enhanced status code (RFC 3463), sent after the reply code; none
    /// on the greeting, LHLO and 354 (RFC 2034 §3).
    pub enhanced: Option<Enhanced>,
    /// Text for the client (the last line's); never contains CR or LF.
    pub text: Cow<'static, str>,
    /// The lines before the last of a multi-line reply.
    pub lines: Vec<String>,
}

impl Reply {
    /// A reply with an enhanced status code and static text.
    pub const fn new(code: u16, enhanced: Enhanced, text: &'static str) -> Reply {
        Reply {
            code,
            enhanced: Some(enhanced),
            text: Cow::Borrowed(text),
            lines: Vec::new(),
        }
    }

    /// A reply without an enhanced status code.
    pub fn plain(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: None,
            text: Cow::Borrowed(""),
            lines: Vec::new(),
        }
        .with_text(text)
    }

    /// A multi-line reply without enhanced code: `code-line` for all but
    /// the last line, `code line` for the last.
    pub fn multiline(code: u16, lines: &[String]) -> Reply {
        let (last, rest) = lines.split_last().map_or(("", &[][..]), |(l, r)| (l, r));
        Reply {
            lines: rest.iter().map(|l| one_line(l)).collect(),
            ..Reply::plain(code, last)
        }
    }

    /// The same code with other text; CR and LF are replaced so the text
    /// cannot break the reply apart.
    pub fn with_text(&self, text: impl Into<String>) -> Reply {
        Reply {
            text: Cow::Owned(one_line(&text.into())),
            ..self.clone()
        }
    }

    /// The same reply with another enhanced status code.
    pub fn with_enhanced(&self, enhanced: Enhanced) -> Reply {
        Reply {
            enhanced: Some(enhanced),
            ..self.clone()
        }
    }

    /// The enhanced status code in full (`4.4.1`), its class taken from
    /// the reply code.
    pub fn status(&self) -> Option<String> {
        self.enhanced
            .map(|Enhanced(subject, detail)| format!("{}.{subject}.{detail}", self.code / 100))
    }

    /// Appends the reply, every line CRLF-terminated, to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        for line in &self.lines {
            out.extend_from_slice(format!("{}-{line}\r\n", self.code).as_bytes());
        }
        out.extend_from_slice(self.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// `text` with CR and LF made spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

impl fmt::Display for Reply {
    /// The last line, `250 2.0.0 text` (or `220 text`), without its ending.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status() {
            Some(status) => write!(f, "{} {status} {}", self.code, self.text),
            None => write!(f, "{} {}", self.code, self.text),
        }
    }
}

// RFC 3463 enhanced status codes, by section.
/// §3.1 X.0.0 other undefined status.
pub const E_OK: Enhanced = Enhanced(0, 0);
/// §3.2 X.1.0 other address status (used for MAIL FROM accepted).
pub const E_SENDER_OK: Enhanced = Enhanced(1, 0);
/// §3.2 X.1.5 destination address valid.
pub const E_RCPT_OK: Enhanced = Enhanced(1, 5);
/// §3.2 X.1.1 bad destination mailbox address.
pub const E_NO_MAILBOX: Enhanced = Enhanced(1, 1);
/// §3.2 X.1.3 bad destination mailbox address syntax.
pub const E_BAD_RCPT_SYNTAX: Enhanced = Enhanced(1, 3);
/// §3.2 X.1.7 bad sender's mailbox address syntax.
pub const E_BAD_SENDER_SYNTAX: Enhanced = Enhanced(1, 7);
/// §3.4 X.3.0 other or undefined mail system status.
pub const E_SYSTEM: Enhanced = Enhanced(3, 0);
/// §3.4 X.3.2 system not accepting network messages.
pub const E_SHUTTING_DOWN: Enhanced = Enhanced(3, 2);
/// §3.4 X.3.4 message too big for system.
pub const E_TOO_BIG: Enhanced = Enhanced(3, 4);
/// §3.4 X.3.5 system incorrectly configured.
pub const E_MISCONFIGURED: Enhanced = Enhanced(3, 5);
/// §3.5 X.4.1 no answer from host.
pub const E_NO_ANSWER: Enhanced = Enhanced(4, 1);
/// §3.5 X.4.2 bad connection.
pub const E_BAD_CONNECTION: Enhanced = Enhanced(4, 2);
/// §3.5 X.4.7 delivery time expired.
pub const E_EXPIRED: Enhanced = Enhanced(4, 7);
/// §3.5 X.4.5 mail system congestion (GitLab rate limiting us).
pub const E_CONGESTION: Enhanced = Enhanced(4, 5);
/// §3.6 X.5.1 invalid command.
pub const E_INVALID_COMMAND: Enhanced = Enhanced(5, 1);
/// §3.6 X.5.2 syntax error.
pub const E_SYNTAX: Enhanced = Enhanced(5, 2);
/// §3.6 X.5.3 too many recipients.
pub const E_TOO_MANY_RCPTS: Enhanced = Enhanced(5, 3);
/// §3.6 X.5.4 invalid command arguments.
pub const E_BAD_ARGS: Enhanced = Enhanced(5, 4);
/// §3.8 X.7.0 other or undefined security status.
pub const E_SECURITY: Enhanced = Enhanced(7, 0);
/// §3.8 X.7.1 delivery not authorized, message refused (policy: null
/// sender, mail loop).
pub const E_POLICY: Enhanced = Enhanced(7, 1);

// RFC 5321 §4.2.3 reply codes (RFC 2033 reuses them for LMTP).
/// 220 service ready (the greeting; RFC 2034 §3: no enhanced code on it).
pub const READY: u16 = 220;
/// 221 service closing transmission channel.
pub const CLOSING: u16 = 221;
/// 250 requested action okay, completed.
pub const OK: u16 = 250;
/// 252 cannot VRFY user, but will accept message.
pub const CANNOT_VRFY: u16 = 252;
/// 354 start mail input.
pub const START_INPUT: u16 = 354;
/// 421 service not available, closing transmission channel.
pub const NOT_AVAILABLE: u16 = 421;
/// 451 requested action aborted: local error in processing.
pub const LOCAL_ERROR: u16 = 451;
/// 452 requested action not taken: insufficient system storage (RFC 5321
/// §4.5.3.1.10 also uses it for too many recipients).
pub const INSUFFICIENT_STORAGE: u16 = 452;
/// 500 syntax error, command unrecognized (also: line too long).
pub const UNRECOGNIZED: u16 = 500;
/// 501 syntax error in parameters or arguments.
pub const BAD_ARGUMENTS: u16 = 501;
/// 502 command not implemented.
pub const NOT_IMPLEMENTED: u16 = 502;
/// 503 bad sequence of commands.
pub const BAD_SEQUENCE: u16 = 503;
/// 550 requested action not taken: mailbox unavailable.
pub const MAILBOX_UNAVAILABLE: u16 = 550;
/// 552 requested mail action aborted: exceeded storage allocation.
pub const EXCEEDED_STORAGE: u16 = 552;
/// 555 MAIL FROM/RCPT TO parameters not recognized or not implemented.
pub const PARAMS_NOT_RECOGNIZED: u16 = 555;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_code_enhanced_and_text() {
        let mut out = Vec::new();
        Reply::new(OK, E_OK, "ok").write_to(&mut out);
        assert_eq!(out, b"250 2.0.0 ok\r\n");
    }

    #[test]
    fn the_class_comes_from_the_reply_code() {
        assert_eq!(
            Reply::new(LOCAL_ERROR, E_SYSTEM, "x").to_string(),
            "451 4.3.0 x"
        );
        assert_eq!(
            Reply::new(EXCEEDED_STORAGE, E_TOO_BIG, "x").to_string(),
            "552 5.3.4 x"
        );
        assert_eq!(
            Reply::new(OK, E_RCPT_OK, "x").status().as_deref(),
            Some("2.1.5")
        );
    }

    #[test]
    fn replies_without_enhanced_code() {
        assert_eq!(Reply::plain(READY, "mx ready").to_string(), "220 mx ready");
        assert_eq!(Reply::plain(START_INPUT, "go").status(), None);
        let mut out = Vec::new();
        Reply::multiline(OK, &["mx".into(), "PIPELINING".into(), "SIZE 10".into()])
            .write_to(&mut out);
        assert_eq!(out, b"250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n");
    }

    #[test]
    fn text_cannot_inject_lines() {
        let r = Reply::new(LOCAL_ERROR, E_SYSTEM, "").with_text("a\r\n250 b");
        assert_eq!(r.to_string(), "451 4.3.0 a  250 b");
        let r = Reply::multiline(OK, &["a\r\n250 b".into(), "c".into()]);
        let mut out = Vec::new();
        r.write_to(&mut out);
        assert_eq!(out, b"250-a  250 b\r\n250 c\r\n");
    }
}
