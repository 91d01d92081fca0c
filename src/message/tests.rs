//! Tests of the header search, on the project's own e-mails in
//! `tests/emails/` (one per header GitLab reads, in GitLab's order) and on
//! small literals for the edge cases. Every e-mail is tried with LF line
//! endings (as pipe(8) passes them) and with CRLF (as LMTP carries them).

use super::*;

const KEY: &str = "59d8df8370b7e95c5a49fbf86aeb2c93";
const OTHER_KEY: &str = "0123456789abcdef0123456789abcdef";
const HOST: &str = "gitlab.example.com";

macro_rules! email {
    ($name:literal) => {
        include_bytes!(concat!("../../tests/emails/", $name, ".eml")).as_slice()
    };
}

fn template() -> Template {
    Template::parse("incoming+%{key}@incoming.example.com").unwrap()
}

fn crlf(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    for &b in message {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// The key found in `message` (LF and CRLF forms must agree), with
/// `delivered_to` as the envelope recipient the delivery prepends.
fn key_with(message: &[u8], delivered_to: &str) -> Option<String> {
    let lf = Headers::parse(message).gitlab_key(&template(), HOST, delivered_to);
    let crlf_message = crlf(message);
    let cr = Headers::parse(&crlf_message).gitlab_key(&template(), HOST, delivered_to);
    assert_eq!(lf, cr, "LF and CRLF forms disagree");
    lf
}

/// The key found from the headers alone (the recipient matches nothing).
fn key(message: &[u8]) -> Option<String> {
    key_with(message, "list@lists.example.org")
}

#[test]
fn one_email_per_header_in_gitlabs_order() {
    let cases: [(&str, &[u8]); 12] = [
        ("To", email!("key-in-to")),
        ("References", email!("key-in-references")),
        (
            "References, quoted and comma-joined",
            email!("key-in-references-quoted-comma"),
        ),
        ("Delivered-To", email!("key-in-delivered-to")),
        ("X-Delivered-To", email!("key-in-x-delivered-to")),
        ("Envelope-To", email!("key-in-envelope-to")),
        ("Envelope-To in <>", email!("key-in-envelope-to-angle")),
        ("X-Envelope-To", email!("key-in-x-envelope-to")),
        ("Received for <…>, folded", email!("key-in-received-for")),
        ("X-Original-To", email!("key-in-x-original-to")),
        ("X-Forwarded-To", email!("key-in-x-forwarded-to")),
        ("Cc, folded", email!("key-in-cc")),
    ];
    for (header, message) in cases {
        assert_eq!(key(message).as_deref(), Some(KEY), "key in {header}");
    }
}

#[test]
fn no_key_outside_the_headers_gitlab_reads() {
    // In-Reply-To is not read, References names another host, and the body
    // (after the empty line) is never searched.
    assert_eq!(key(email!("no-key")), None);
}

#[test]
fn earlier_headers_in_gitlabs_order_win() {
    let message = email!("to-beats-delivered-to");
    assert_eq!(key(message).as_deref(), Some(KEY));
    // Our own Delivered-To goes on top: it beats the message's Delivered-To...
    let ours = format!("incoming+{OTHER_KEY}@incoming.example.com");
    let with_ours =
        b"Delivered-To: incoming+ffffffffffffffffffffffffffffffff@incoming.example.com\n\
                      Subject: x\n\nbody\n";
    assert_eq!(key_with(with_ours, &ours).as_deref(), Some(OTHER_KEY));
    // ...but not To or References, which GitLab reads first.
    assert_eq!(key_with(message, &ours).as_deref(), Some(KEY));
    assert_eq!(
        key_with(email!("key-in-references"), &ours).as_deref(),
        Some(KEY)
    );
    // And it beats every header after Delivered-To.
    assert_eq!(
        key_with(email!("key-in-received-for"), &ours).as_deref(),
        Some(OTHER_KEY)
    );
}

#[test]
fn the_envelope_recipient_alone_gives_the_key() {
    let plain = b"From: a@example.org\nSubject: hi\n\nbody\n";
    let rcpt = format!("incoming+{KEY}@incoming.example.com");
    assert_eq!(key_with(plain, &rcpt).as_deref(), Some(KEY));
    assert_eq!(key(plain), None);
}

#[test]
fn repeated_headers_are_tried_in_order() {
    let message = format!(
        "X-Original-To: someone@example.org\n\
         X-Original-To: incoming+{KEY}@incoming.example.com\n\
         X-Original-To: incoming+{OTHER_KEY}@incoming.example.com\n\
         Received: from a.example by b.example with SMTP id AAA;\n\
         \tMon, 3 Jun 2024 10:00:00 +0000\n\
         Subject: x\n\nbody\n"
    );
    assert_eq!(key(message.as_bytes()).as_deref(), Some(KEY));

    let received = format!(
        "Received: from a.example by b.example with SMTP id AAA\n\
         \tfor <list@lists.example.org>; Mon, 3 Jun 2024 10:00:00 +0000\n\
         Received: from c.example by a.example with SMTP id BBB\n\
         \tfor <incoming+{KEY}@incoming.example.com>; Mon, 3 Jun 2024 09:59:00 +0000\n\
         \n"
    );
    assert_eq!(key(received.as_bytes()).as_deref(), Some(KEY));
}

#[test]
fn references_edge_cases() {
    let refs = |value: &str| {
        let message = format!("References: {value}\nSubject: x\n\n");
        key(message.as_bytes())
    };
    let reply = format!("<reply-{KEY}@{HOST}>");
    // One id alone is no key (the mail gem returns it without brackets),
    // with or without a trailing comma; two or more are searched in order.
    assert_eq!(refs(&reply), None);
    assert_eq!(refs(&format!("{reply},")), None);
    assert_eq!(refs(&format!("\"{reply}\"")), None);
    assert_eq!(refs(&format!("{reply} <a@b>")).as_deref(), Some(KEY));
    let other = format!("<reply-{OTHER_KEY}@{HOST}>");
    assert_eq!(
        refs(&format!("{other} {reply}")).as_deref(),
        Some(OTHER_KEY)
    );
    assert_eq!(refs(&format!("<a@b> {reply}")).as_deref(), Some(KEY));
    assert_eq!(refs(&format!("<a@b>,{reply}")).as_deref(), Some(KEY));
    assert_eq!(refs(&format!("\"<a@b>,{reply}\"")).as_deref(), Some(KEY));
    // The host is compared literally; an empty key is no key.
    assert_eq!(refs(&format!("<a@b> <reply-{KEY}@other.example>")), None);
    assert_eq!(
        refs(&format!("<a@b> <reply-{KEY}@{HOST}.evil.example>")),
        None
    );
    assert_eq!(
        refs(&format!("<a@b> <reply-{KEY}@GITLAB.example.com>")),
        None
    );
    assert_eq!(refs(&format!("<a@b> <reply-@{HOST}>")), None);
    assert_eq!(refs(&format!("<a@b> <note-{KEY}@{HOST}>")), None);
}

#[test]
fn received_for_needs_a_word_and_brackets() {
    assert_eq!(received_for("from x by y for <a@b>; date"), Some("a@b"));
    assert_eq!(received_for("from x\n\tby y\n\tfor <a@b>;"), Some("a@b"));
    assert_eq!(received_for("from formal.example by y; date"), None);
    assert_eq!(received_for("from x by y for a@b; date"), None);
    assert_eq!(received_for("from x (helo=before) by y;"), None);
    assert_eq!(
        received_for("from fortune.example by y for <first@b> for <second@b>"),
        Some("first@b")
    );
}

#[test]
fn addresses_in_to_and_cc_are_parsed_not_searched() {
    // A display name that looks like an address does not count.
    let message =
        format!("To: \"incoming+{KEY}@incoming.example.com\" <bob@example.org>\nSubject: x\n\n");
    assert_eq!(key(message.as_bytes()), None);
    // Groups and several addresses are walked.
    let message =
        format!("Cc: Team: bob@example.org, incoming+{KEY}@incoming.example.com;\nSubject: x\n\n");
    assert_eq!(key(message.as_bytes()).as_deref(), Some(KEY));
}

#[test]
fn rules_gitlab_showed_on_our_own_emails() {
    // References with one id: no key, also with a trailing comma.
    assert_eq!(key(email!("references-single-id")), None);
    assert_eq!(key(email!("references-single-id-comma")), None);
    // A To or Cc line that is no address list gives nothing from it...
    assert_eq!(key(email!("to-broken-list")), None);
    assert_eq!(key(email!("cc-broken-list")), None);
    // ...but a `;`-separated list is a list.
    assert_eq!(key(email!("to-semicolon-list")).as_deref(), Some(KEY));
    // Case-sensitive, the domain included...
    assert_eq!(key(email!("to-uppercase-domain")), None);
    // ...which is why our Delivered-To spells the domain as the template.
    let template = template();
    let ours = template.delivered_to(&format!("incoming+{KEY}@INCOMING.EXAMPLE.COM"));
    assert_eq!(ours, format!("incoming+{KEY}@incoming.example.com"));
    assert_eq!(
        key_with(email!("to-uppercase-domain"), &ours).as_deref(),
        Some(KEY)
    );
}

#[test]
fn a_broken_list_is_matched_as_one_raw_string() {
    let to = |value: &str| key(format!("To: {value}\nSubject: x\n\n").as_bytes());
    let addr = format!("incoming+{KEY}@incoming.example.com");
    // The whole line is one string: a lone unbalanced `<` still matches
    // GitLab's `\A<?…>?\z`, anything more does not.
    assert_eq!(to(&format!("<{addr}")).as_deref(), Some(KEY));
    assert_eq!(to(&format!("{addr}, <broken")), None);
    assert_eq!(to(&format!("{addr} <broken>")), None);
    assert_eq!(
        to(&format!("{addr}; bob@example.org")).as_deref(),
        Some(KEY)
    );
}

#[test]
fn queue_id_comes_from_postfixs_newest_received_header() {
    let h = Headers::parse(email!("key-in-received-for"));
    assert_eq!(h.queue_id().as_deref(), Some("4WbQ3k1Lz2z1xyZ"));
    // `id QUEUEID;` with the semicolon attached.
    let h = Headers::parse(email!("key-in-to"));
    assert_eq!(h.queue_id().as_deref(), Some("4WbQ2x0fJkz9sRt"));
    let crlf_message = crlf(email!("key-in-received-for"));
    assert_eq!(
        Headers::parse(&crlf_message).queue_id().as_deref(),
        Some("4WbQ3k1Lz2z1xyZ")
    );
    // No Received header, or no usable id in it.
    assert_eq!(Headers::parse(b"Subject: x\n\nbody\n").queue_id(), None);
    let odd = b"Received: from a by b with SMTP id <x@y>; date\n\n";
    assert_eq!(Headers::parse(odd).queue_id(), None);
    let none = b"Received: by 10.0.0.1 with HTTP; Mon, 3 Jun 2024 10:00:00 +0000\n\n";
    assert_eq!(Headers::parse(none).queue_id(), None);
}

#[test]
fn message_id_without_brackets() {
    let h = Headers::parse(email!("key-in-to"));
    assert_eq!(h.message_id(), Some("to-1@mail.example.org"));
    assert_eq!(Headers::parse(b"Subject: x\n\n").message_id(), None);
}

#[test]
fn header_section_stops_at_the_first_empty_line() {
    assert_eq!(
        header_section(b"A: 1\nB: 2\n\nbody\n\nmore"),
        b"A: 1\nB: 2\n"
    );
    assert_eq!(header_section(b"A: 1\r\n\r\nbody"), b"A: 1\r\n");
    assert_eq!(header_section(b"A: 1\nB: 2"), b"A: 1\nB: 2");
    assert_eq!(header_section(b"\nbody"), b"");
    assert_eq!(header_section(b""), b"");
    // A line of spaces is not the empty line.
    assert_eq!(header_section(b"A: 1\n \nB: 2\n\nx"), b"A: 1\n \nB: 2\n");
}

#[test]
fn junk_headers_never_panic() {
    for junk in [
        &b""[..],
        b"\n",
        b"no colon here\n\n",
        b"To:\n\n",
        b"To: <\n\n",
        b"References: <<<>>>\n\n",
        b"Received: for\n\n",
        b"Received: for <\n\n",
        b"Envelope-To: \xff\xfe\n\n",
        b"\x00\x01\x02: \x03\n\n",
    ] {
        let h = Headers::parse(junk);
        let _ = h.gitlab_key(&template(), HOST, "");
        let _ = h.queue_id();
        let _ = h.message_id();
    }
}
