//! SMTP/LMTP replies as values: a reply code, an enhanced status code and a
//! text meant for the remote side.
//!
//! Every code the program sends is named once here, next to the RFC that
//! defines it, so that handlers never spell out `b"250 ..."` themselves.
//! Writing a reply to the wire is [`Reply::write_to`]; nothing here does I/O.

use std::borrow::Cow;
use std::fmt;

/// An RFC 3463 enhanced status code `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enhanced(pub u8, pub u16, pub u16);

impl fmt::Display for Enhanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One reply: code, enhanced status and human-readable text (one line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code (RFC 5321 §4.2).
    pub code: u16,
    /// The enhanced status code (RFC 3463), sent after the reply code.
    pub enhanced: Enhanced,
    /// Text for the client; never contains CR or LF.
    pub text: Cow<'static, str>,
}

impl Reply {
    /// A reply with static text.
    pub const fn new(code: u16, enhanced: Enhanced, text: &'static str) -> Reply {
        Reply {
            code,
            enhanced,
            text: Cow::Borrowed(text),
        }
    }

    /// The same code with other text; CR and LF are replaced so the text
    /// cannot break the reply apart.
    pub fn with_text(&self, text: impl Into<String>) -> Reply {
        let text: String = text
            .into()
            .chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
            .collect();
        Reply {
            text: Cow::Owned(text),
            ..self.clone()
        }
    }

    /// True for 4xx replies: the client keeps the message and tries again.
    pub fn is_temporary(&self) -> bool {
        self.code / 100 == 4
    }

    /// True for 5xx replies: the client gives up on it.
    pub fn is_permanent(&self) -> bool {
        self.code / 100 == 5
    }

    /// Appends the reply, CRLF-terminated, to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

impl fmt::Display for Reply {
    /// `250 2.0.0 text`, without the line ending.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.code, self.enhanced, self.text)
    }
}

// RFC 3463 enhanced status codes, by section.
/// §3.1 X.0.0 other undefined status.
pub const E_OK: Enhanced = Enhanced(2, 0, 0);
/// §3.2 X.1.0 other address status (used for MAIL FROM accepted).
pub const E_SENDER_OK: Enhanced = Enhanced(2, 1, 0);
/// §3.2 X.1.5 destination address valid.
pub const E_RCPT_OK: Enhanced = Enhanced(2, 1, 5);
/// §3.2 X.1.1 bad destination mailbox address.
pub const E_NO_MAILBOX: Enhanced = Enhanced(5, 1, 1);
/// §3.2 X.1.3 bad destination mailbox address syntax.
pub const E_BAD_RCPT_SYNTAX: Enhanced = Enhanced(5, 1, 3);
/// §3.2 X.1.7 bad sender's mailbox address syntax.
pub const E_BAD_SENDER_SYNTAX: Enhanced = Enhanced(5, 1, 7);
/// §3.4 X.3.0 other or undefined mail system status.
pub const E_SYSTEM: Enhanced = Enhanced(4, 3, 0);
/// §3.4 X.3.2 system not accepting network messages.
pub const E_SHUTTING_DOWN: Enhanced = Enhanced(4, 3, 2);
/// §3.4 X.3.4 message too big for system.
pub const E_TOO_BIG: Enhanced = Enhanced(5, 3, 4);
/// §3.4 X.3.5 system incorrectly configured.
pub const E_MISCONFIGURED: Enhanced = Enhanced(4, 3, 5);
/// §3.5 X.4.1 no answer from host.
pub const E_NO_ANSWER: Enhanced = Enhanced(4, 4, 1);
/// §3.5 X.4.2 bad connection.
pub const E_BAD_CONNECTION: Enhanced = Enhanced(4, 4, 2);
/// §3.5 X.4.7 delivery time expired.
pub const E_EXPIRED: Enhanced = Enhanced(4, 4, 7);
/// §3.6 X.5.1 invalid command.
pub const E_INVALID_COMMAND: Enhanced = Enhanced(5, 5, 1);
/// §3.6 X.5.2 syntax error.
pub const E_SYNTAX: Enhanced = Enhanced(5, 5, 2);
/// §3.6 X.5.3 too many recipients.
pub const E_TOO_MANY_RCPTS: Enhanced = Enhanced(4, 5, 3);
/// §3.6 X.5.4 invalid command arguments.
pub const E_BAD_ARGS: Enhanced = Enhanced(5, 5, 4);
/// §3.6 X.6.0 other or undefined media error (bad message content).
pub const E_MEDIA: Enhanced = Enhanced(5, 6, 0);
/// §3.8 X.7.0 other or undefined security status.
pub const E_SECURITY: Enhanced = Enhanced(4, 7, 0);

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
/// 554 transaction failed.
pub const TRANSACTION_FAILED: u16 = 554;
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
    fn text_cannot_inject_lines() {
        let r = Reply::new(LOCAL_ERROR, E_SYSTEM, "").with_text("a\r\n250 b");
        assert_eq!(r.to_string(), "451 4.3.0 a  250 b");
        assert!(r.is_temporary() && !r.is_permanent());
    }
}
