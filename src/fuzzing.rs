//! Entry points for fuzzing, shared by the cargo-fuzz targets in `fuzz/`,
//! the stable-toolchain driver (`examples/fuzz.rs`) and the short run in
//! the test suite. Each takes arbitrary bytes, must never panic, and checks
//! the invariants that hold for every input. The input generator and its
//! random numbers are not shipped: they live in `fuzz/generate.rs`.

use crate::address::Template;
use crate::deliver::route;
use crate::envelope::Route;
use crate::lmtp::session::{Action, Limits, Session};
use crate::mail_key as key;
use crate::mailbox::Mailbox;
use crate::mailbox::MailboxKind as Kind;
use crate::message::Headers;
use crate::outcome::{Outcome, Temporary};
use std::path::PathBuf;

/// Splits the input at the first LF: a template line and the rest.
fn two_parts(data: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(data);
    match text.split_once('\n') {
        Some((a, b)) => (a.to_string(), b.to_string()),
        None => ("incoming+%{key}@in.example".to_string(), text.into_owned()),
    }
}

/// Recipient matching and key shapes: a route is only ever found for an
/// address in the template's domain, and a captured key is part of it.
pub fn route_recipient(data: &[u8]) {
    let (template, recipient) = two_parts(data);
    let Ok(tpl) = Template::parse(&template) else {
        return;
    };
    if let Some(k) = tpl.key_of(&recipient) {
        assert!(recipient.contains(k));
        for kind in [Kind::Incoming, Kind::ServiceDesk] {
            if key::is_valid(kind, k) {
                assert!(!k.contains(['%', '"', '\n', '\r', ' ', '\0']) && !k.contains(".."));
            }
        }
    }
    let mailboxes = [Mailbox {
        kind: Kind::Incoming,
        template: tpl.clone(),
        credential: crate::jwt::Credential::Secret(PathBuf::new()),
        catch_all: data.first().is_some_and(|b| b & 1 == 1),
        strict_keys: true,
    }];
    if route(&mailboxes, &recipient).is_some() {
        assert!(tpl.in_domain(&recipient));
    }
}

/// Header key lookup on an arbitrary message: any key found matches the
/// template (or is a References reply key) and is part of the message.
pub fn header_key(data: &[u8]) {
    let tpl = Template::parse("incoming+%{key}@in.example").expect("valid template");
    let headers = Headers::parse(data);
    if let Some(k) = headers.gitlab_key(&tpl, "gitlab.example", "") {
        assert!(!k.is_empty());
    }
    let _ = headers.message_id();
    let _ = headers.queue_id();
}

/// The LMTP session on arbitrary client input, fed in uneven pieces:
/// every reply is well-formed, no transaction exceeds the limits, each
/// delivery is of exactly the bytes appended since the last delivery or
/// abandon (kept in a `Vec`, as `serve` keeps them in its spool), and
/// after each message, whatever outcomes the delivery had, the session
/// answers exactly once per accepted recipient, in RCPT order, with that
/// recipient's reply (RFC 2033 §4.2).
pub fn lmtp_session(data: &[u8]) {
    let limits = Limits {
        max_message_size: 200,
        max_recipients: 3,
    };
    let router = |_sender: &str, rcpt: &str, _queue_id: Option<&str>| {
        if rcpt.starts_with("incoming+") {
            Ok(Route::sample(rcpt))
        } else {
            Err(Outcome::UnknownRecipient)
        }
    };
    // The outcomes GitLab may give, picked by the input's own bytes.
    let kinds = [
        Outcome::Delivered,
        Outcome::RejectedByGitlab,
        Outcome::Temporary(Temporary::Status(502)),
        Outcome::Temporary(Temporary::NotAuthorized(401)),
    ];
    let mut session = Session::new("fuzz.example", limits, router);
    let mut message: Vec<u8> = Vec::new();
    let step = 1 + data.first().map_or(0, |b| *b as usize % 13);
    let mut pick = data.iter().cycle().skip(1);
    for chunk in data.chunks(step) {
        let mut actions = session.feed(chunk);
        while !actions.is_empty() {
            let mut next = Vec::new();
            for action in actions {
                match action {
                    Action::Send(bytes) => check_replies(&bytes),
                    Action::Append(bytes) => {
                        message.extend_from_slice(&bytes);
                        assert!(message.len() <= 200);
                    }
                    Action::Abandon => message.clear(),
                    Action::Deliver(t) => {
                        assert!(t.size == message.len() && t.size <= 200);
                        assert!(!t.routes.is_empty() && t.routes.len() <= 3);
                        message.clear();
                        let outcomes: Vec<Outcome> = (0..t.routes.len())
                            .map(|_| {
                                kinds[*pick.next().unwrap_or(&0) as usize % kinds.len()].clone()
                            })
                            .collect();
                        next = session.delivered(&outcomes);
                        let Some(Action::Send(bytes)) = next.first() else {
                            panic!("no replies after a delivery: {next:?}");
                        };
                        let mut expected = Vec::new();
                        outcomes
                            .iter()
                            .for_each(|o| o.reply().write_to(&mut expected));
                        assert!(
                            bytes.starts_with(&expected),
                            "replies {:?} for outcomes {outcomes:?}",
                            String::from_utf8_lossy(bytes)
                        );
                    }
                    Action::Log(_) | Action::Decided(_) | Action::Close => {}
                }
            }
            actions = next;
        }
    }
}

/// Every line sent is a complete reply line: three digits, CRLF.
fn check_replies(bytes: &[u8]) {
    assert!(bytes.ends_with(b"\r\n"));
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        assert!(line.len() >= 4 && line[..3].iter().all(u8::is_ascii_digit));
    }
}
