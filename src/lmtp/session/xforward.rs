//! Postfix's XFORWARD command (XFORWARD_README): before `MAIL`, Postfix's
//! lmtp client (`lmtp_send_xforward_command = yes`) sends the attributes
//! of the message it is delivering, `IDENT` among them: its queue id. The
//! session keeps that one for the transaction, so every log line of it can
//! start with the queue id Postfix logs too; the other attributes are
//! checked and dropped (this server logs no client names or addresses).
//!
//! Postfix's rules, as its smtpd applies them: `XFORWARD name=value …`,
//! names case-insensitive from the advertised list, values xtext
//! (RFC 3461 §4), `[UNAVAILABLE]` for a value the client does not have;
//! a bad name or a missing `=` is `501 5.5.4`; in a transaction it is
//! `503 5.5.1`. Here values are bounded too (a line is already bounded by
//! the line reader), and the queue id is reduced to what a Postfix queue
//! id can hold before it reaches a log line.

use crate::reply::*;

/// The attributes advertised after `XFORWARD` in the LHLO reply.
pub(super) const ADVERTISED: &str = "XFORWARD NAME ADDR PROTO HELO IDENT SOURCE PORT";

/// Longest attribute value taken, decoded (Postfix's own are far
/// shorter: a host name is at most 255 bytes).
const MAX_VALUE: usize = 255;

/// Longest queue id kept for the logs (Postfix's long queue ids are
/// about 15 characters).
const MAX_IDENT: usize = 32;

/// What one XFORWARD line leaves for the transaction: `Some(id)` when it
/// named a queue id, `None` when it named none (the earlier one stays).
pub(super) fn parse(line: &[u8]) -> Result<Option<Option<String>>, Reply> {
    let syntax = || {
        Reply::new(BAD_ARGUMENTS, E_BAD_ARGS, "").with_text("syntax: XFORWARD attribute=value...")
    };
    let text = std::str::from_utf8(line).map_err(|_| syntax())?;
    let mut words = text.split_ascii_whitespace();
    words.next(); // the verb
    let mut ident = None;
    let mut any = false;
    for word in words {
        any = true;
        let (name, value) = word.split_once('=').ok_or_else(syntax)?;
        let name = name.to_ascii_uppercase();
        if !ADVERTISED.split(' ').skip(1).any(|n| n == name) {
            return Err(Reply::new(BAD_ARGUMENTS, E_BAD_ARGS, "")
                .with_text(format!("bad XFORWARD attribute name: {}", clean(&name))));
        }
        let value = xtext_decode(value).ok_or_else(|| {
            Reply::new(BAD_ARGUMENTS, E_BAD_ARGS, "")
                .with_text(format!("bad XFORWARD {name} value"))
        })?;
        if name == "IDENT" {
            ident = Some(match value.as_str() {
                "[UNAVAILABLE]" | "[TEMPUNAVAIL]" | "" => None,
                id => Some(clean(id)),
            });
        }
    }
    if !any {
        return Err(syntax());
    }
    Ok(ident)
}

/// A queue id fit for a log line: Postfix's are letters and digits; any
/// other character becomes `?`, and it is cut at [`MAX_IDENT`].
pub(super) fn clean(id: &str) -> String {
    id.chars()
        .take(MAX_IDENT)
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '?' })
        .collect()
}

/// xtext (RFC 3461 §4): `+XX` is the byte with hex code XX; `None` for a
/// malformed escape, a control byte, or a value over [`MAX_VALUE`].
fn xtext_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len().min(MAX_VALUE));
    let mut i = 0;
    while i < bytes.len() {
        let b = match bytes[i] {
            b'+' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                i += 2;
                u8::from_str_radix(hex, 16).ok()?
            }
            b => b,
        };
        if b.is_ascii_control() || out.len() >= MAX_VALUE {
            return None;
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<Option<Option<String>>, Reply>) -> String {
        r.err()
            .map(|r| format!("{} {}", r.code, r.status().unwrap_or_default()))
            .unwrap_or_default()
    }

    #[test]
    fn takes_postfix_lines_and_keeps_the_ident() {
        let a = b"XFORWARD NAME=localhost ADDR=127.0.0.1 PORT=41234 HELO=x.example\r\n";
        assert_eq!(parse(a), Ok(None));
        let b = b"xforward proto=ESMTP Ident=4Fq1Lz2nYHz9sVh SOURCE=LOCAL\r\n";
        assert_eq!(parse(b), Ok(Some(Some("4Fq1Lz2nYHz9sVh".into()))));
        assert_eq!(parse(b"XFORWARD IDENT=[UNAVAILABLE]"), Ok(Some(None)));
        assert_eq!(parse(b"XFORWARD NAME=+5BUNAVAILABLE+5D"), Ok(None));
    }

    #[test]
    fn refuses_what_postfix_refuses() {
        assert!(code(parse(b"XFORWARD\r\n")).starts_with("501 5.5.4"));
        assert!(code(parse(b"XFORWARD IDENT\r\n")).starts_with("501 5.5.4"));
        assert!(code(parse(b"XFORWARD USER=x\r\n")).starts_with("501 5.5.4"));
        assert!(code(parse(b"XFORWARD IDENT=a+2\r\n")).starts_with("501 5.5.4"));
        assert!(code(parse(b"XFORWARD IDENT=a+0Ab\r\n")).starts_with("501 5.5.4"));
    }

    #[test]
    fn values_are_bounded_and_the_ident_made_fit_for_logs() {
        let long = format!("XFORWARD NAME={}", "a".repeat(MAX_VALUE + 1));
        assert!(code(parse(long.as_bytes())).starts_with("501 5.5.4"));
        let ok = format!("XFORWARD NAME={}", "a".repeat(MAX_VALUE));
        assert_eq!(parse(ok.as_bytes()), Ok(None));
        let id = parse(b"XFORWARD IDENT=AB+3A+20x\xc3\xa9").unwrap();
        assert_eq!(id, Some(Some("AB??x?".into())));
        let id = parse(format!("XFORWARD IDENT={}", "Z".repeat(200)).as_bytes()).unwrap();
        assert_eq!(id, Some(Some("Z".repeat(MAX_IDENT))));
    }
}
