//! A message as received, kept so that memory does not grow with its size:
//! up to [`IN_MEMORY`] bytes in memory, above that in an unlinked
//! temporary file, with only its first [`IN_MEMORY`] bytes (the head, where
//! the headers are) in memory. Both front doors append what they receive
//! to a [`Writer`]; the delivery core reads the finished [`Message`]'s
//! [`head`](Message::head) for the headers and streams the whole from
//! [`reader`](Message::reader), once per post.
//!
//! Where the files live: `$TMPDIR` when set to an absolute path, else
//! `/var/tmp` (on disk, where `/tmp` is often RAM; under the shipped
//! systemd unit a private `/var/tmp` of the service, `PrivateTmp=yes`).
//! Each file is made with `O_TMPFILE` (mode 0600): it never has a name, so
//! no one else can open it, and the kernel frees it when its last
//! descriptor closes — after the delivery, or when the process dies in any
//! way (crash, `SIGKILL`, the OOM killer): nothing is left to clean up. On a
//! file system without `O_TMPFILE` a fresh name is created exclusively and
//! unlinked at once; only a crash between those two calls leaves a file
//! (`.gitlab-mailgate-*`; with `PrivateTmp=yes` systemd removes it with the
//! service's `/var/tmp`).
//!
//! This module does not decide limits: the front doors never append more
//! than `max_message_size` bytes.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// Messages up to this size stay in memory; larger ones go to a file and
/// keep this many bytes in memory as their head.
pub const IN_MEMORY: usize = 256 * 1024;

/// The directory used when `$TMPDIR` is not an absolute path.
const DEFAULT_DIR: &str = "/var/tmp";

/// Where temporary files are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// `$TMPDIR` when it is an absolute path, else `/var/tmp`.
    pub fn from_env() -> Spool {
        let dir = std::env::var_os("TMPDIR")
            .map(PathBuf::from)
            .filter(|d| d.is_absolute())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
        Spool { dir }
    }

    /// Temporary files in `dir`.
    #[cfg(test)]
    pub fn in_dir(dir: &Path) -> Spool {
        Spool {
            dir: dir.to_path_buf(),
        }
    }

    /// Makes (and at once drops) one temporary file, so that a directory
    /// that cannot take them is reported at start, not at the first large
    /// message.
    pub fn check(&self) -> Result<(), String> {
        self.file().map(drop)
    }

    /// A new, empty message.
    pub fn writer(&self) -> Writer {
        Writer {
            spool: self.clone(),
            head: Vec::new(),
            file: None,
            len: 0,
            error: None,
        }
    }

    /// A new unlinked file, readable and writable by this process only.
    fn file(&self) -> Result<File, String> {
        let unnamed = OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            // O_EXCL: the file can never be given a name (linkat) later.
            .custom_flags(libc::O_TMPFILE | libc::O_EXCL)
            .open(&self.dir);
        let file = match unnamed {
            Ok(file) => Ok(file),
            // The file system (or an old kernel) has no O_TMPFILE.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => {
                self.named_then_unlinked()
            }
            Err(e) => Err(e),
        };
        file.map_err(|e| format!("temporary file in {}: {e}", self.dir.display()))
    }

    /// A file created under a fresh name and unlinked at once.
    fn named_then_unlinked(&self) -> io::Result<File> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(".gitlab-mailgate-{}-{n}-{nanos}", std::process::id());
        let path = self.dir.join(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(file)
    }
}

/// A message being received: bytes are appended in order, then
/// [`finish`](Writer::finish)ed. Dropping it drops what it holds (the file
/// with it).
pub struct Writer {
    spool: Spool,
    /// The whole message while it is in memory; its first [`IN_MEMORY`]
    /// bytes once it is in `file`.
    head: Vec<u8>,
    /// The whole message, once it outgrew memory.
    file: Option<File>,
    len: usize,
    /// The first error making or writing the file; later bytes are only
    /// counted.
    error: Option<String>,
}

impl Writer {
    /// Appends `bytes` to the message.
    pub fn write(&mut self, bytes: &[u8]) {
        let room = IN_MEMORY.saturating_sub(self.head.len());
        if self.file.is_none() && bytes.len() <= room {
            self.head.extend_from_slice(bytes);
            self.len += bytes.len();
            return;
        }
        // The head keeps the first IN_MEMORY bytes in either case.
        self.head.extend_from_slice(&bytes[..room.min(bytes.len())]);
        self.len += bytes.len();
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.spill(bytes) {
            self.file = None;
            self.error = Some(e);
        }
    }

    /// Writes `bytes` to the file, making it first (with the head in it)
    /// when the message is just outgrowing memory.
    fn spill(&mut self, bytes: &[u8]) -> Result<(), String> {
        let written = |e: io::Error| format!("writing a temporary file: {e}");
        if self.file.is_none() {
            let mut file = self.spool.file()?;
            // The head now holds the first bytes of `bytes` too: write
            // what was in memory before them, then all of them.
            let before = self.len - bytes.len();
            file.write_all(&self.head[..before]).map_err(written)?;
            self.file = Some(file);
        }
        if let Some(file) = &mut self.file {
            file.write_all(bytes).map_err(written)?;
        }
        Ok(())
    }

    /// Bytes appended so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The complete message, or why it could not be kept.
    pub fn finish(self) -> Result<Message, String> {
        if let Some(e) = self.error {
            return Err(e);
        }
        Ok(Message {
            head: self.head,
            file: self.file,
            len: self.len,
        })
    }
}

/// A complete message, in memory or in an unlinked file (freed on drop).
#[derive(Debug)]
pub struct Message {
    /// The whole message without `file`, else its first [`IN_MEMORY`] bytes.
    head: Vec<u8>,
    file: Option<File>,
    len: usize,
}

impl From<Vec<u8>> for Message {
    fn from(bytes: Vec<u8>) -> Message {
        Message {
            len: bytes.len(),
            head: bytes,
            file: None,
        }
    }
}

impl Message {
    /// The message's size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Where the headers are: the whole message when it is at most
    /// [`IN_MEMORY`] bytes, else its first [`IN_MEMORY`] bytes up to and
    /// including the last LF in them (so no header line is cut in two).
    /// The same for a message in memory and in a file, so what is found
    /// in the headers never depends on where the message is kept.
    pub fn head(&self) -> &[u8] {
        if self.len <= IN_MEMORY {
            return &self.head;
        }
        let head = &self.head[..IN_MEMORY];
        match head.iter().rposition(|&b| b == b'\n') {
            Some(lf) => &head[..=lf],
            None => head,
        }
    }

    /// The whole message when it is in memory.
    pub fn in_memory(&self) -> Option<&[u8]> {
        match self.file {
            None => Some(&self.head),
            Some(_) => None,
        }
    }

    /// Reads the whole message from its start; each call starts anew, so
    /// one message can be posted several times.
    pub fn reader(&self) -> Reader<'_> {
        match &self.file {
            None => Reader::Memory(&self.head),
            Some(file) => Reader::File {
                file,
                at: 0,
                len: self.len as u64,
            },
        }
    }
}

/// Reads a [`Message`] (see [`Message::reader`]).
pub enum Reader<'a> {
    /// The bytes not read yet.
    Memory(&'a [u8]),
    /// Positioned reads (`pread`), so readers share the file without
    /// moving a common offset.
    File {
        /// The message's file.
        file: &'a File,
        /// The next byte to read.
        at: u64,
        /// The message's length.
        len: u64,
    },
}

impl Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Reader::Memory(bytes) => bytes.read(buf),
            Reader::File { file, at, len } => {
                let left = usize::try_from(*len - *at).unwrap_or(usize::MAX);
                let want = buf.len().min(left);
                if want == 0 {
                    return Ok(0);
                }
                let n = file.read_at(&mut buf[..want], *at)?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "temporary file shorter than the message",
                    ));
                }
                *at += n as u64;
                Ok(n)
            }
        }
    }
}

#[cfg(test)]
mod tests;
