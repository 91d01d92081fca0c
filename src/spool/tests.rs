//! Spool tests: byte-exact round trips around the in-memory limit, the
//! head, and what the temporary file looks like from outside.

use super::*;
use std::os::unix::fs::MetadataExt;

/// Files made there have no name, so the shared directory stays clean.
fn dir() -> PathBuf {
    std::env::temp_dir()
}

/// A message of `len` bytes: header lines, then a body of varied bytes.
fn sample(len: usize) -> Vec<u8> {
    let mut m = b"Subject: spool\r\nTo: a@b.example\r\n\r\n".to_vec();
    m.extend((0..len as u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8));
    m.truncate(len);
    m
}

fn spooled(message: &[u8], piece: usize) -> Message {
    let mut w = Spool::in_dir(&dir()).writer();
    for chunk in message.chunks(piece.max(1)) {
        w.write(chunk);
    }
    assert_eq!(w.len(), message.len());
    w.finish().expect("spooled")
}

fn read_all(m: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    m.reader().read_to_end(&mut out).unwrap();
    out
}

#[test]
fn round_trips_byte_for_byte_in_memory_and_in_a_file() {
    for len in [
        0,
        1,
        IN_MEMORY - 1,
        IN_MEMORY,
        IN_MEMORY + 1,
        3 * IN_MEMORY + 7,
    ] {
        let message = sample(len);
        for piece in [1000, 65536, IN_MEMORY, len] {
            let m = spooled(&message, piece);
            assert_eq!(m.len(), len);
            assert_eq!(m.in_memory().is_some(), len <= IN_MEMORY, "len {len}");
            // Twice: every post reads from the start.
            assert!(read_all(&m) == message, "len {len}, pieces of {piece}");
            assert!(read_all(&m) == message, "len {len}, second read");
        }
    }
}

#[test]
fn the_head_does_not_depend_on_where_the_message_is() {
    let message = sample(2 * IN_MEMORY);
    let in_file = spooled(&message, 4096);
    let in_memory = Message::from(message.clone());
    assert!(in_file.in_memory().is_none());
    assert_eq!(in_file.head(), in_memory.head());
    // Cut after the last LF within the first IN_MEMORY bytes.
    let head = in_file.head();
    assert!(head.len() <= IN_MEMORY && head.ends_with(b"\n"));
    assert!(!message[head.len()..IN_MEMORY].contains(&b'\n'));
    // A small message is its own head.
    let small = sample(100);
    assert_eq!(Message::from(small.clone()).head(), &small[..]);
    // No LF at all: the first IN_MEMORY bytes.
    let flat = Message::from(vec![b'x'; IN_MEMORY + 10]);
    assert_eq!(flat.head().len(), IN_MEMORY);
}

#[test]
fn the_file_has_no_name_and_is_private() {
    let m = spooled(&sample(IN_MEMORY + 1), 65536);
    let Some(file) = &m.file else {
        panic!("not in a file");
    };
    let meta = file.metadata().unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(meta.nlink(), 0, "the file has a name");
    assert_eq!(meta.len(), (IN_MEMORY + 1) as u64);
    // The fallback for file systems without O_TMPFILE leaves no name either.
    let spool = Spool::in_dir(&dir());
    let file = spool.named_then_unlinked().unwrap();
    assert_eq!(file.metadata().unwrap().nlink(), 0);
    let ours = format!(".gitlab-mailgate-{}-", std::process::id());
    assert!(!std::fs::read_dir(dir()).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with(&ours)));
}

#[test]
fn a_directory_that_takes_no_files_is_an_error_not_a_lost_message() {
    let spool = Spool::in_dir(Path::new("/nonexistent/mailgate"));
    assert!(spool.check().is_err());
    let mut w = spool.writer();
    w.write(&sample(100));
    assert!(w.finish().is_ok(), "a small message needs no file");
    let mut w = spool.writer();
    w.write(&sample(IN_MEMORY));
    w.write(b"one more");
    w.write(b"and more");
    assert_eq!(w.len(), IN_MEMORY + 16);
    let e = w.finish().unwrap_err();
    assert!(e.contains("/nonexistent/mailgate"), "{e}");
}

#[test]
fn tmpdir_must_be_absolute() {
    assert!(Spool::from_env().dir.is_absolute());
}
