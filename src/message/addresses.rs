//! Reading a `To:` or `Cc:` value as an RFC 5322 address list, the way
//! GitLab's mail gem must be able to before it hands GitLab single
//! addresses.
//!
//! GitLab (`gems/gitlab-email_handler/lib/gitlab/email_handler/mail_key.rb`)
//! reads `To` and `Cc` through the mail gem's address parser. When a line
//! does not parse as a list, the gem gives the whole raw line instead, which
//! GitLab's anchored regex then never matches when it holds more than one
//! address: `incoming+KEY@host, <broken` gives no key at all. So a list is
//! only walked when all of it parses. Mailboxes (`addr`, `name <addr>`),
//! groups (`name: a, b;`), comments, quoted strings, domain literals and
//! empty elements are accepted; `,` and `;` both separate elements (the gem
//! takes `;` between addresses). Anything unbalanced or out of place makes
//! the whole line invalid.

/// One lexical token of an address list; comments and white space are
/// dropped while reading.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    /// A run of atom characters and dots (a dot-atom, or part of a phrase).
    Atom(&'a str),
    /// A quoted string, quotes included (kept as written in the address).
    Quoted(&'a str),
    /// `[…]`, brackets included.
    Literal(&'a str),
    /// One of `< > @ , ; :`.
    Special(u8),
}

/// The addresses in `value` (`local@domain`, or a lone local part), in
/// order; `None` when `value` is not a valid address list.
pub fn address_list(value: &str) -> Option<Vec<String>> {
    let tokens = tokenize(value)?;
    let mut p = Parser {
        tokens: &tokens,
        at: 0,
        out: Vec::new(),
    };
    p.list()?;
    Some(p.out)
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b) || b >= 0x80
}

fn tokenize(value: &str) -> Option<Vec<Token<'_>>> {
    let bytes = value.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'(' => i = skip_comment(bytes, i)?,
            b'"' => {
                let end = closing(bytes, i, b'"')?;
                tokens.push(Token::Quoted(&value[i..=end]));
                i = end + 1;
            }
            b'[' => {
                let end = closing(bytes, i, b']')?;
                tokens.push(Token::Literal(&value[i..=end]));
                i = end + 1;
            }
            b'<' | b'>' | b'@' | b',' | b';' | b':' => {
                tokens.push(Token::Special(b));
                i += 1;
            }
            _ if is_atext(b) => {
                let start = i;
                while i < bytes.len() && is_atext(bytes[i]) {
                    i += 1;
                }
                tokens.push(Token::Atom(&value[start..i]));
            }
            // `)`, `]`, `\` and control characters outside their places.
            _ => return None,
        }
    }
    Some(tokens)
}

/// The index of the `close` ending the quoted run opened at `open`
/// (backslash escapes honoured); `None` when it never ends.
fn closing(bytes: &[u8], open: usize, close: u8) -> Option<usize> {
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b if b == close => return Some(i),
            b'[' if close == b']' => return None,
            _ => i += 1,
        }
    }
    None
}

/// The index after the (possibly nested) comment opened at `open`.
fn skip_comment(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

struct Parser<'t, 'a> {
    tokens: &'t [Token<'a>],
    at: usize,
    out: Vec<String>,
}

impl<'t, 'a> Parser<'t, 'a> {
    fn peek(&self) -> Option<&'t Token<'a>> {
        self.tokens.get(self.at)
    }

    fn special(&self) -> Option<u8> {
        match self.peek() {
            Some(Token::Special(b)) => Some(*b),
            _ => None,
        }
    }

    /// `element *(("," / ";") element)`, elements may be empty.
    fn list(&mut self) -> Option<()> {
        loop {
            match self.special() {
                Some(b',' | b';') => self.at += 1,
                None if self.peek().is_none() => return Some(()),
                _ => self.element()?,
            }
        }
    }

    /// A mailbox or a group, up to (not including) the next separator.
    fn element(&mut self) -> Option<()> {
        let words = self.words();
        match self.special() {
            Some(b':') if !words.is_empty() => {
                self.at += 1;
                self.group_members()
            }
            _ => self.mailbox_after(words),
        }
    }

    /// Group members up to `;` (or the end): mailboxes separated by `,`.
    fn group_members(&mut self) -> Option<()> {
        loop {
            match self.special() {
                Some(b';') => {
                    self.at += 1;
                    return Some(());
                }
                Some(b',') => self.at += 1,
                None if self.peek().is_none() => return Some(()),
                _ => {
                    let words = self.words();
                    self.mailbox_after(words)?;
                }
            }
        }
    }

    /// Atoms and quoted strings at the cursor.
    fn words(&mut self) -> Vec<&'a str> {
        let mut words = Vec::new();
        while let Some(Token::Atom(w) | Token::Quoted(w)) = self.tokens.get(self.at) {
            words.push(*w);
            self.at += 1;
        }
        words
    }

    /// The rest of a mailbox whose leading `words` were read: `<addr>`
    /// (words are a display name), `@domain` (words are the local part) or
    /// nothing (a lone local part); then a separator or the end.
    fn mailbox_after(&mut self, words: Vec<&'a str>) -> Option<()> {
        match self.special() {
            Some(b'<') => {
                self.at += 1;
                if self.special() == Some(b'>') {
                    // `<>`: a valid, empty address.
                    self.at += 1;
                } else {
                    let local = self.words();
                    let address = self.addr_spec(&local)?;
                    (self.special() == Some(b'>')).then_some(())?;
                    self.at += 1;
                    self.out.push(address);
                }
            }
            Some(b'@') => {
                let address = self.addr_spec(&words)?;
                self.out.push(address);
            }
            _ => {
                (words.len() == 1).then_some(())?;
                self.out.push(words[0].to_string());
            }
        }
        match self.special() {
            Some(b',' | b';') => Some(()),
            None if self.peek().is_none() => Some(()),
            _ => None,
        }
    }

    /// `local "@" domain` with the local part's `words` already read.
    fn addr_spec(&mut self, words: &[&str]) -> Option<String> {
        let local = dotted(words)?;
        (self.special() == Some(b'@')).then_some(())?;
        self.at += 1;
        let domain = match self.peek()? {
            Token::Atom(d) | Token::Literal(d) => *d,
            _ => return None,
        };
        self.at += 1;
        Some(format!("{local}@{domain}"))
    }
}

/// Words of a local part joined: consecutive words must meet at a dot
/// (`"a".b`), otherwise it is not one local part.
fn dotted(words: &[&str]) -> Option<String> {
    let (first, rest) = words.split_first()?;
    let mut out = first.to_string();
    for w in rest {
        if !(out.ends_with('.') || w.starts_with('.')) {
            return None;
        }
        out.push_str(w);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::address_list;

    fn list(v: &str) -> Option<Vec<String>> {
        address_list(v)
    }

    #[test]
    fn valid_lists_give_their_addresses_in_order() {
        assert_eq!(list("a@b.example").unwrap(), ["a@b.example"]);
        assert_eq!(
            list("\"Doe, J\" <j@d.example>, k@e.example (home)").unwrap(),
            ["j@d.example", "k@e.example"]
        );
        assert_eq!(
            list("a@b.example; c@d.example").unwrap(),
            ["a@b.example", "c@d.example"]
        );
        assert_eq!(
            list("Team: a@b.example, Bob <c@d.example>;, e@f.example").unwrap(),
            ["a@b.example", "c@d.example", "e@f.example"]
        );
        assert_eq!(
            list("undisclosed-recipients:;").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(list("a@b.example,,c@d.example,").unwrap().len(), 2);
        assert_eq!(
            list("\"x y\"@[192.0.2.1]").unwrap(),
            ["\"x y\"@[192.0.2.1]"]
        );
        assert_eq!(list("bob").unwrap(), ["bob"]);
        assert_eq!(list("<>").unwrap(), Vec::<String>::new());
        assert_eq!(
            list("=?utf-8?q?J=C3=B6rg?= <j@d.example>").unwrap(),
            ["j@d.example"]
        );
        assert_eq!(list("").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn broken_lists_are_not_lists() {
        for v in [
            "a@b.example, <broken",
            "a@b.example, broken>",
            "a@b.example, \"unterminated",
            "a@b.example (unclosed",
            "a@b.example)",
            "a@b.example <c@d.example>",
            "two words@b.example",
            "a@@b.example",
            "a@",
            "<a@b.example",
            "<a@b.example> trailing",
            "a@b.example\u{1}",
            "a\\b@c.example",
        ] {
            assert_eq!(list(v), None, "{v:?}");
        }
    }
}
