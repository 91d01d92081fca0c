//! Reading the small files gitlab-mailgate trusts (configuration, secrets,
//! signing keys, gitlab.yml, CA bundles): only regular files, only up to a
//! bound, and never blocking on what is not a file. Opening a FIFO or a
//! device without `O_NONBLOCK` can hang forever, and `--config /dev/zero`
//! would read without end; both must instead be a clear error at once.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// The configuration file: a commented one is a few KiB.
pub const CONFIG_MAX: u64 = 1024 * 1024;
/// GitLab's `gitlab.yml`: Omnibus writes about 60 KiB; 4 MiB leaves room
/// for any hand-written one, and refuses a runaway file before it costs
/// every pipe-mode delivery seconds and hundreds of MiB.
pub const GITLAB_YML_MAX: u64 = 4 * 1024 * 1024;
/// A secret or signing key file: 44 bytes of base64 or a PEM key.
pub const SECRET_MAX: u64 = 64 * 1024;
/// A bundle of CA certificates (Debian's is about 200 KiB).
pub const CA_MAX: u64 = 16 * 1024 * 1024;

/// What is wrong with a file, worded for the administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable(pub String);

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The file at `path`, when it is a regular file of at most `max` bytes;
/// also its mode bits.
pub fn read(path: &Path, max: u64) -> Result<(Vec<u8>, u32), Unreadable> {
    // O_NONBLOCK: opening a FIFO with no writer would otherwise wait for
    // one; on a regular file it changes nothing.
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| Unreadable(e.to_string()))?;
    let meta = file.metadata().map_err(|e| Unreadable(e.to_string()))?;
    if !meta.is_file() {
        return Err(Unreadable(
            "not a regular file (a FIFO, device or directory is never read)".into(),
        ));
    }
    if meta.len() > max {
        return Err(Unreadable(format!(
            "{} bytes, more than the {max} bytes such a file may have",
            meta.len()
        )));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    // The bound holds even if the file grows while it is read.
    file.take(max.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| Unreadable(e.to_string()))?;
    if data.len() as u64 > max {
        return Err(Unreadable(format!(
            "more than the {max} bytes such a file may have"
        )));
    }
    Ok((data, meta.mode()))
}

/// [`read`], as text.
pub fn read_text(path: &Path, max: u64) -> Result<String, Unreadable> {
    let (data, _) = read(path, max)?;
    String::from_utf8(data).map_err(|_| Unreadable("not UTF-8 text".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bounded_regular_files() {
        let dir = std::env::temp_dir().join(format!("mailgate-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let small = dir.join("small");
        std::fs::write(&small, b"abc").unwrap();
        assert_eq!(read(&small, 3).unwrap().0, b"abc");
        assert!(read(&small, 2)
            .unwrap_err()
            .0
            .contains("more than the 2 bytes"));
        assert!(read(Path::new("/dev/zero"), 10)
            .unwrap_err()
            .0
            .contains("not a regular file"));
        assert!(read(&dir, 10).unwrap_err().0.contains("not a regular file"));
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let start = std::time::Instant::now();
        assert!(read(&fifo, 10)
            .unwrap_err()
            .0
            .contains("not a regular file"));
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
