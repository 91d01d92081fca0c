//! Reading one SMTP or LMTP reply from a server `check` talks to (the
//! LHLO probe, the send test), bounded so a broken peer cannot hold it.

use std::io::{BufRead, Read};

/// One SMTP/LMTP reply (bounded: 50 lines of 1 KiB), its lines without
/// line endings.
pub(super) fn reply_lines(reader: &mut impl BufRead) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    for _ in 0..50 {
        let mut line = String::new();
        reader
            .by_ref()
            .take(1024)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if line.is_empty() {
            return Err(format!("connection closed after {lines:?}"));
        }
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line.trim_end().to_string());
        if last {
            return Ok(lines);
        }
    }
    Err("reply too long".into())
}
