//! A small JSON reader for the stand-in's flat records (one object of
//! scalars per line), so the tests need no JSON crate.

use std::collections::BTreeMap;

/// A JSON scalar.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// A string.
    Str(String),
    /// A number.
    Num(f64),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
}

/// Parses one flat JSON object of scalars (what `json.dumps` writes for a
/// dict of strings, numbers, booleans and None).
pub fn parse_flat_json(text: &str) -> Result<BTreeMap<String, Json>, String> {
    let mut p = JsonReader {
        s: text.trim().as_bytes(),
        i: 0,
    };
    let mut map = BTreeMap::new();
    p.expect(b'{')?;
    p.skip_ws();
    if p.peek() == Some(b'}') {
        return Ok(map);
    }
    loop {
        p.skip_ws();
        let key = p.string()?;
        p.skip_ws();
        p.expect(b':')?;
        p.skip_ws();
        let value = p.value()?;
        map.insert(key, value);
        p.skip_ws();
        match p.next() {
            Some(b',') => continue,
            Some(b'}') => return Ok(map),
            other => return Err(format!("expected , or }} at {}, got {other:?}", p.i)),
        }
    }
}

struct JsonReader<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonReader<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek();
        self.i += 1;
        b
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn expect(&mut self, want: u8) -> Result<(), String> {
        match self.next() {
            Some(b) if b == want => Ok(()),
            other => Err(format!(
                "expected {:?} at {}, got {other:?}",
                want as char, self.i
            )),
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        for (word, value) in [
            ("true", Json::Bool(true)),
            ("false", Json::Bool(false)),
            ("null", Json::Null),
        ] {
            if self.s[self.i..].starts_with(word.as_bytes()) {
                self.i += word.len();
                return Ok(value);
            }
        }
        if self.peek() == Some(b'"') {
            return self.string().map(Json::Str);
        }
        let start = self.i;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
        {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()
            .and_then(|n| n.parse().ok())
            .map(Json::Num)
            .ok_or_else(|| format!("bad value at {start}"))
    }

    fn hex4(&mut self) -> Result<u16, String> {
        let digits = self.s.get(self.i..self.i + 4).ok_or("short \\u escape")?;
        self.i += 4;
        std::str::from_utf8(digits)
            .ok()
            .and_then(|d| u16::from_str_radix(d, 16).ok())
            .ok_or_else(|| "bad \\u escape".to_string())
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.next().ok_or("unterminated string")? {
                b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                b'\\' => {
                    let c = match self.next().ok_or("unterminated escape")? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let mut units = vec![self.hex4()?];
                            if (0xd800..0xdc00).contains(&units[0])
                                && self.s[self.i..].starts_with(b"\\u")
                            {
                                self.i += 2;
                                units.push(self.hex4()?);
                            }
                            let text: String = char::decode_utf16(units)
                                .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                                .collect();
                            out.extend_from_slice(text.as_bytes());
                            continue;
                        }
                        other => return Err(format!("bad escape \\{}", other as char)),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                b => out.push(b),
            }
        }
    }
}
