//! Listening sockets for the LMTP server: the configured `IP:PORT` and
//! `unix:/path` entries, or the sockets systemd hands over by socket
//! activation (`LISTEN_FDS`, used instead of the configured ones), and the
//! readiness message to systemd (`NOTIFY_SOCKET`). Nothing here speaks LMTP.
//!
//! systemd may also pass the `[http]` socket (the packaged
//! gitlab-mailgate.socket holds 127.0.0.1:9725 beside the LMTP socket, so a
//! scrape or a readiness probe starts the server on a quiet host): the
//! socket named `http` (`FileDescriptorName=http`), or else the TCP socket
//! bound to `[http] listen`, is set apart for the HTTP listener and never
//! served as LMTP. One socket unit gives all its sockets one name, hence
//! the match by address.

use crate::log::Log;
use listenfd::ListenFd;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A listening socket.
pub enum Listener {
    /// `IP:PORT`.
    Tcp(TcpListener),
    /// `unix:/path`; `remove` is the socket file this process created and
    /// removes again on exit (`None` for an inherited socket).
    Unix {
        /// The socket.
        listener: UnixListener,
        /// The file to remove when done.
        remove: Option<PathBuf>,
    },
}

/// A listening socket and the name it is logged by.
pub struct Bound {
    /// The socket.
    pub listener: Listener,
    /// `127.0.0.1:2424`, `unix:/run/x.sock`, with ` (systemd)` if inherited.
    pub name: String,
}

/// An accepted connection.
pub enum Stream {
    /// Over TCP.
    Tcp(TcpStream),
    /// Over a unix socket.
    Unix(UnixStream),
}

impl Bound {
    /// Accepts one connection; returns it with a name for the peer.
    pub fn accept(&self) -> io::Result<(Stream, String)> {
        match &self.listener {
            Listener::Tcp(l) => l.accept().map(|(s, a)| (Stream::Tcp(s), a.to_string())),
            Listener::Unix { listener, .. } => listener
                .accept()
                .map(|(s, _)| (Stream::Unix(s), self.name.replace(" (systemd)", ""))),
        }
    }

    /// The file descriptor, for poll(2).
    pub fn fd(&self) -> RawFd {
        match &self.listener {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix { listener, .. } => listener.as_raw_fd(),
        }
    }

    /// Non-blocking accepts, so a connection that goes away between
    /// poll(2) and accept(2) cannot stall the accept loop.
    pub fn set_nonblocking(&self) -> io::Result<()> {
        match &self.listener {
            Listener::Tcp(l) => l.set_nonblocking(true),
            Listener::Unix { listener, .. } => listener.set_nonblocking(true),
        }
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        if let Listener::Unix {
            remove: Some(path), ..
        } = &self.listener
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Stream {
    /// Blocking mode with read and write timeouts (`None` = wait forever).
    pub fn configure(&self, read: Duration, write: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                // Replies are whole lines written at once; never hold one back
                // waiting for an ACK (Nagle) in this request/reply protocol.
                s.set_nodelay(true)?;
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(read))?;
                s.set_write_timeout(Some(write))
            }
            Stream::Unix(s) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(read))?;
                s.set_write_timeout(Some(write))
            }
        }
    }
}

impl Stream {
    /// The TCP peer's address (`None` over a unix socket).
    pub fn peer_ip(&self) -> Option<IpAddr> {
        match self {
            Stream::Tcp(s) => s.peer_addr().ok().map(|a| a.ip()),
            Stream::Unix(_) => None,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

/// The sockets `serve` listens on: LMTP's and, when systemd passed it,
/// the HTTP one.
pub struct Sockets {
    /// LMTP: systemd's when it passed some, else the configured ones.
    pub lmtp: Vec<Bound>,
    /// The `[http]` socket systemd passed, if any (see the module doc).
    pub http: Option<TcpListener>,
}

/// The sockets to serve: systemd's when it passed some, else the
/// configured `listen` entries (unix sockets get `socket_mode`). An
/// inherited socket for `http_listen` (or named `http`) goes to `http`;
/// when systemd passed only that one, LMTP binds the configured entries.
pub fn open(
    listen: &[String],
    socket_mode: u32,
    http_listen: Option<SocketAddr>,
) -> Result<Sockets, String> {
    let (lmtp, http) = inherited(http_listen)?;
    if !lmtp.is_empty() {
        return Ok(Sockets { lmtp, http });
    }
    let lmtp = listen
        .iter()
        .map(|e| bind(e, socket_mode))
        .collect::<Result<_, _>>()?;
    Ok(Sockets { lmtp, http })
}

fn bind(entry: &str, mode: u32) -> Result<Bound, String> {
    let fail = |e: io::Error| format!("cannot listen on {entry}: {e}");
    let Some(path) = entry.strip_prefix("unix:") else {
        let listener = TcpListener::bind(entry).map_err(fail)?;
        // The real address: the port may have been 0 (chosen by the system).
        let name = listener
            .local_addr()
            .map_or(entry.to_string(), |a| a.to_string());
        return Ok(Bound {
            listener: Listener::Tcp(listener),
            name,
        });
    };
    let path = Path::new(path);
    remove_stale(path).map_err(|e| format!("cannot listen on {entry}: {e}"))?;
    let listener = UnixListener::bind(path).map_err(fail)?;
    let bound = Bound {
        listener: Listener::Unix {
            listener,
            remove: Some(path.to_path_buf()),
        },
        name: entry.to_string(),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot chmod {entry} to {mode:o}: {e}"))?;
    Ok(bound)
}

/// Removes a socket file left by an earlier run; refuses to touch a file
/// that is no socket, or a socket another server still answers on.
fn remove_stale(path: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.to_string()),
        Ok(m) if !m.file_type().is_socket() => {
            Err("the file exists and is not a socket; remove it or change listen".into())
        }
        Ok(_) if UnixStream::connect(path).is_ok() => {
            Err("another server is listening there".into())
        }
        Ok(_) => std::fs::remove_file(path).map_err(|e| format!("removing the old socket: {e}")),
    }
}

/// The listening sockets passed by systemd (sd_listen_fds(3)), taken over
/// by the `listenfd` crate: it checks `LISTEN_PID`, checks each descriptor's
/// socket type, marks it close-on-exec and unsets the variables, so no
/// child sees them. We call it before any thread exists (unsetting
/// variables is only sound then). Returns LMTP's and the HTTP socket.
fn inherited(http_listen: Option<SocketAddr>) -> Result<(Vec<Bound>, Option<TcpListener>), String> {
    // Read before listenfd unsets LISTEN_PID; only meaningful when it
    // finds sockets for us, and then index for index (sd_listen_fds_with_names(3)).
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|v| v.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    let mut fds = ListenFd::from_env();
    let (mut lmtp, mut http) = (Vec::new(), None);
    for i in 0..fds.len() {
        let which = format!("socket {} passed by systemd", i + 1);
        let named_http = names.get(i).is_some_and(|n| n == "http");
        // listenfd leaves the descriptor in place when the type does not
        // fit, so the second try sees it too.
        if let Ok(Some(tcp)) = fds.take_tcp_listener(i) {
            let addr = tcp
                .local_addr()
                .map_err(|e| format!("{which}: {e} (check the .socket unit)"))?;
            if http.is_none() && (named_http || Some(addr) == http_listen) {
                http = Some(tcp);
            } else {
                lmtp.push(Bound {
                    listener: Listener::Tcp(tcp),
                    name: format!("{addr} (systemd)"),
                });
            }
        } else if named_http {
            return Err(format!(
                "{which} is named http but is no TCP socket (check the .socket unit)"
            ));
        } else {
            lmtp.push(adopt_unix(&mut fds, i, &which)?);
        }
    }
    Ok((lmtp, http))
}

/// Takes over the `i`th inherited socket, which must be a unix stream
/// socket (TCP ones were taken already).
fn adopt_unix(fds: &mut ListenFd, i: usize, which: &str) -> Result<Bound, String> {
    let unix = match fds.take_unix_listener(i) {
        Ok(Some(unix)) => unix,
        _ => {
            return Err(format!(
                "{which} is neither a TCP nor a unix stream socket (check the .socket unit)"
            ))
        }
    };
    let name = match unix
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf))
    {
        Some(p) => format!("unix:{} (systemd)", p.display()),
        None => "unix socket (systemd)".to_string(),
    };
    Ok(Bound {
        listener: Listener::Unix {
            listener: unix,
            remove: None,
        },
        name,
    })
}

/// Tells systemd about a state change (`READY=1`, `STOPPING=1`) when it
/// asked to be told (sd_notify(3)); does nothing otherwise.
pub fn notify(state: &str, log: &Log) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr;
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let addr = match path.as_bytes().strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(&path),
    };
    let sent = addr.and_then(|a| UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &a));
    if let Err(e) = sent {
        log.warn(&format!("cannot tell systemd {state}: {e}"));
    }
}
