//! Reading what the delivery path needs from a message's header section:
//! the key GitLab will use, the Message-ID, and Postfix's queue id.
//!
//! Only the header section is parsed (a 25 MB body is never walked). The
//! key lookup follows GitLab's `MailKey` (`gems/gitlab-email_handler/lib/
//! gitlab/email_handler/mail_key.rb`): the headers below, in this order,
//! repeated headers in the order they appear, first hit wins; every match
//! case-sensitive; `To`/`Cc` only as parsable address lists (see
//! `addresses`); `References` only when it holds two or more ids.

use crate::address::Template;
use mail_parser::{Message, MessageParser};

mod addresses;

/// The headers GitLab searches for a key, in its order.
const KEY_HEADERS: [&str; 10] = [
    "To",
    "References",
    "Delivered-To",
    "X-Delivered-To",
    "Envelope-To",
    "X-Envelope-To",
    "Received",
    "X-Original-To",
    "X-Forwarded-To",
    "Cc",
];

/// What the headers say, parsed once per message.
pub struct Headers<'a> {
    raw: &'a [u8],
    parsed: Option<Message<'a>>,
}

impl<'a> Headers<'a> {
    /// Parses the header section of `message` (everything before the first
    /// empty line; all of it when there is none).
    pub fn parse(message: &'a [u8]) -> Headers<'a> {
        let raw = header_section(message);
        Headers {
            raw,
            parsed: MessageParser::default().parse_headers(raw),
        }
    }

    /// The key GitLab will find for `template` in the bytes we post: the
    /// message with `Delivered-To: <delivered_to>` on top (pass exactly the
    /// address the post writes, [`crate::address::Template::delivered_to`]).
    /// `reply_host` is GitLab's host, for `References: <reply-KEY@host>`.
    pub fn gitlab_key(
        &self,
        template: &Template,
        reply_host: &str,
        delivered_to: &str,
    ) -> Option<String> {
        let msg = self.parsed.as_ref();
        for name in KEY_HEADERS {
            if name == "Delivered-To" {
                if let Some(k) = template.key_of(delivered_to) {
                    return Some(k.to_string());
                }
            }
            let Some(msg) = msg else { continue };
            for header in msg
                .headers()
                .iter()
                .filter(|h| h.name().eq_ignore_ascii_case(name))
            {
                let raw = &self.raw[header.offset_start() as usize..header.offset_end() as usize];
                let raw = String::from_utf8_lossy(raw);
                let found = match name {
                    "To" | "Cc" => to_or_cc_key(template, &raw),
                    "References" => references_key(&raw, reply_host),
                    "Received" => {
                        received_for(&raw).and_then(|a| template.key_of(a).map(str::to_string))
                    }
                    _ => template.key_of(raw.trim()).map(str::to_string),
                };
                if found.is_some() {
                    return found;
                }
            }
        }
        None
    }

    /// The raw values of every header named `name` (any case), in order,
    /// unfolded as parsed; for checks that compare values as GitLab does.
    pub fn values(&self, name: &str) -> Vec<String> {
        let Some(msg) = self.parsed.as_ref() else {
            return Vec::new();
        };
        msg.headers()
            .iter()
            .filter(|h| h.name().eq_ignore_ascii_case(name))
            .map(|h| {
                let raw = &self.raw[h.offset_start() as usize..h.offset_end() as usize];
                String::from_utf8_lossy(raw).into_owned()
            })
            .collect()
    }

    /// The Message-ID, without angle brackets.
    pub fn message_id(&self) -> Option<&str> {
        self.parsed.as_ref()?.message_id()
    }

    /// The queue id from the newest `Received:` header (`… with LMTP id
    /// 4Xyz…;`), which Postfix writes: it ties our log line to Postfix's.
    pub fn queue_id(&self) -> Option<String> {
        let msg = self.parsed.as_ref()?;
        let h = msg
            .headers()
            .iter()
            .find(|h| h.name().eq_ignore_ascii_case("Received"))?;
        let raw =
            String::from_utf8_lossy(&self.raw[h.offset_start() as usize..h.offset_end() as usize]);
        let mut words = raw.split_ascii_whitespace();
        words.find(|w| *w == "id")?;
        let id = words.next()?.trim_end_matches(';');
        (!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| id.to_string())
    }
}

/// The bytes before the first empty line, LF or CRLF.
pub fn header_section(message: &[u8]) -> &[u8] {
    let mut start = 0;
    while start < message.len() {
        let end = message[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |i| start + i + 1);
        let line = &message[start..end];
        if line == b"\n" || line == b"\r\n" {
            return &message[..start];
        }
        start = end;
    }
    message
}

/// The key in a `To`/`Cc` value: from its addresses when it parses as an
/// address list, else from the whole (unfolded) line as one string, as the
/// mail gem hands GitLab an unparsable field (so a broken list with one
/// good address in it gives nothing).
fn to_or_cc_key(template: &Template, raw: &str) -> Option<String> {
    let unfolded: String = raw.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    match addresses::address_list(&unfolded) {
        Some(list) => list
            .iter()
            .find_map(|a| template.key_of(a).map(str::to_string)),
        None => template.key_of(&unfolded).map(str::to_string),
    }
}

/// The key in a `References` value. The mail gem returns a lone message id
/// without its brackets, and GitLab's scan for `<…>` then finds nothing: so
/// only a header with two or more ids is searched, in order.
fn references_key(raw: &str, reply_host: &str) -> Option<String> {
    let ids: Vec<&str> = bracketed(raw).collect();
    if ids.len() < 2 {
        return None;
    }
    ids.iter()
        .find_map(|id| reply_key(id, reply_host).map(str::to_string))
}

/// Every `<…>` in a header value, brackets stripped.
fn bracketed(value: &str) -> impl Iterator<Item = &str> {
    value
        .split('<')
        .skip(1)
        .filter_map(|s| s.split_once('>').map(|(id, _)| id.trim()))
}

/// `reply-KEY@host` → `KEY`, GitLab's fallback Message-ID form.
fn reply_key<'v>(id: &'v str, host: &str) -> Option<&'v str> {
    let key = id
        .strip_prefix("reply-")?
        .strip_suffix(host)?
        .strip_suffix('@')?;
    (!key.is_empty()).then_some(key)
}

/// The address in the first `for <addr>` of a `Received:` value.
fn received_for(value: &str) -> Option<&str> {
    let mut rest = value;
    while let Some(i) = rest.find("for") {
        let before_ok = i == 0 || rest.as_bytes()[i - 1].is_ascii_whitespace();
        let after = &rest[i + 3..];
        let trimmed = after.trim_start();
        if before_ok && trimmed.len() < after.len() {
            if let Some(addr) = trimmed.strip_prefix('<').and_then(|s| s.split_once('>')) {
                return Some(addr.0);
            }
        }
        rest = after;
    }
    None
}

#[cfg(test)]
mod tests;
