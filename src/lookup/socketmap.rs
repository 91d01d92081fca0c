//! The socketmap protocol (Postfix `socketmap_table(5)`), sans-IO: finds
//! one request in the bytes a client has sent, and writes one reply.
//!
//! A request is a netstring `LEN:name key,`; the reply a netstring
//! `OK value`, `NOTFOUND `, `TEMP reason` or `PERM reason`. Nothing here
//! reads a socket or decides an address: the driver (`event_loop`) feeds
//! bytes, and the caller's `route` decides.

/// Largest request payload (`name key`) read. Postfix's own limit on an
/// address is far below it (SMTP paths are at most 256 octets, RFC 5321
/// §4.5.3.1.3); a longer length prefix is refused before any more is read.
pub const MAX_REQUEST: usize = 4096;
/// Digits a length prefix may have: enough for [`MAX_REQUEST`].
const MAX_DIGITS: usize = 4;

/// What the buffered bytes hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Not a whole request yet (and not malformed so far).
    Incomplete,
    /// One whole request: its payload and how many bytes it took.
    Request { payload: &'a [u8], used: usize },
    /// Not a netstring, or longer than [`MAX_REQUEST`]: the stream cannot
    /// be resynchronised, so the connection is closed.
    Malformed(&'static str),
}

/// The reply to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Found; the value (never empty).
    Ok(String),
    /// Not in the table.
    NotFound,
    /// Try again later (Postfix: 451 4.3.0 at RCPT).
    Temp(String),
    /// A request we cannot answer (Postfix also treats it as an error).
    Perm(String),
}

impl Answer {
    /// The reply as a netstring.
    pub fn encode(&self) -> Vec<u8> {
        let text = match self {
            Answer::Ok(value) => format!("OK {value}"),
            Answer::NotFound => "NOTFOUND ".to_string(),
            Answer::Temp(why) => format!("TEMP {why}"),
            Answer::Perm(why) => format!("PERM {why}"),
        };
        let mut out = format!("{}:", text.len()).into_bytes();
        out.extend_from_slice(text.as_bytes());
        out.push(b',');
        out
    }
}

/// Looks for the first request in `buf`.
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > MAX_DIGITS {
        return Parsed::Malformed("request too long");
    }
    let Some(&next) = buf.get(digits) else {
        return Parsed::Incomplete;
    };
    if digits == 0 || next != b':' {
        return Parsed::Malformed("not a netstring");
    }
    if digits > 1 && buf[0] == b'0' {
        return Parsed::Malformed("not a netstring");
    }
    // At most MAX_DIGITS digits: no overflow.
    let len = buf[..digits]
        .iter()
        .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
    if len > MAX_REQUEST {
        return Parsed::Malformed("request too long");
    }
    let start = digits + 1;
    match buf.get(start + len) {
        None => Parsed::Incomplete,
        Some(b',') => Parsed::Request {
            payload: &buf[start..start + len],
            used: start + len + 1,
        },
        Some(_) => Parsed::Malformed("not a netstring"),
    }
}

/// The answer to `payload` (`name key`) for the table called `table`:
/// `route(key)` says whether the key is GitLab's (`Some(value)`), not
/// (`None`), or cannot be told now (`Err(reason)`).
pub fn answer(
    payload: &[u8],
    table: &str,
    route: impl FnOnce(&str) -> Result<Option<String>, String>,
) -> Answer {
    let Ok(text) = std::str::from_utf8(payload) else {
        return Answer::Perm("request is not UTF-8".into());
    };
    let Some((name, key)) = text.split_once(' ') else {
        return Answer::Perm("request is not \"name key\"".into());
    };
    if name != table {
        return Answer::Perm(format!("no table {:?} here: use {table}", clip(name)));
    }
    match route(key) {
        Ok(Some(value)) => Answer::Ok(value),
        Ok(None) => Answer::NotFound,
        Err(why) => Answer::Temp(why),
    }
}

/// At most 64 characters of `s`, for a reply that quotes it.
fn clip(s: &str) -> &str {
    s.char_indices().nth(64).map_or(s, |(i, _)| &s[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(key: &str) -> Result<Option<String>, String> {
        match key {
            "incoming+ok@in.example" => Ok(Some("incoming_email".into())),
            "busy@in.example" => Err("not now".into()),
            _ => Ok(None),
        }
    }

    /// `text` as a netstring.
    fn ns(text: &[u8]) -> Vec<u8> {
        let mut out = format!("{}:", text.len()).into_bytes();
        out.extend_from_slice(text);
        out.push(b',');
        out
    }

    fn reply_to(payload: &[u8]) -> String {
        let request = ns(payload);
        match parse(&request) {
            Parsed::Request { payload, used } => {
                assert_eq!(used, request.len());
                String::from_utf8(answer(payload, "gitlab", route).encode()).unwrap()
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn answers_found_not_found_and_errors() {
        assert_eq!(
            reply_to(b"gitlab incoming+ok@in.example"),
            "17:OK incoming_email,"
        );
        assert_eq!(reply_to(b"gitlab nobody@in.example"), "9:NOTFOUND ,");
        assert_eq!(reply_to(b"gitlab busy@in.example"), "12:TEMP not now,");
        let other = reply_to(b"other nobody@in.example");
        assert!(other.contains(":PERM no table \"other\""), "{other}");
        assert!(reply_to(b"gitlab").contains(":PERM request is not"));
        assert!(reply_to(b"gitlab \xff").contains(":PERM request is not UTF-8"));
    }

    #[test]
    fn waits_for_the_whole_netstring() {
        let whole = ns(b"gitlab nobody@in.example");
        for cut in 0..whole.len() {
            assert_eq!(parse(&whole[..cut]), Parsed::Incomplete, "{cut}");
        }
        let mut two = whole.clone();
        two.extend_from_slice(b"3:a b,");
        assert_eq!(
            parse(&two),
            Parsed::Request {
                payload: b"gitlab nobody@in.example",
                used: whole.len()
            }
        );
    }

    #[test]
    fn refuses_what_is_no_netstring_or_too_long() {
        for bad in [
            &b"x"[..],
            b":gitlab a,",
            b"3;abc,",
            b"3:abcX",
            b"03:abc,",
            b"4097:",
            b"99999",
            b"123456789:",
        ] {
            assert!(matches!(parse(bad), Parsed::Malformed(_)), "{bad:?}");
        }
        assert_eq!(parse(b"4096:"), Parsed::Incomplete);
        assert_eq!(
            parse(b"0:,"),
            Parsed::Request {
                payload: b"",
                used: 3
            }
        );
    }
}
