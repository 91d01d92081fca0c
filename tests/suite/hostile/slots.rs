//! Clients that connect and say nothing (issue 18): 64 of them, as many as
//! `max_connections`, must not lock out a real client, over TCP from the
//! same address as Postfix or over the unix socket; one TCP address holds
//! at most `max_connections_per_peer` slots even when all of them are in
//! transactions; and a client that never sends LHLO is closed after
//! `lhlo_timeout_secs`.

use crate::common::*;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

/// Silent connections opened, the default `max_connections`.
const SILENT: usize = 64;

/// Everything `stream` sends until it closes (bounded by [`WAIT`]).
fn all_of(mut stream: impl Read) -> String {
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn sixty_four_silent_tcp_connections_do_not_lock_out_a_client() {
    // The per-address cap is lifted: the slots go by eviction alone, as
    // when the silent ones come from Postfix's own address.
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |s| {
        s.extra = format!("max_connections = {SILENT}\nmax_connections_per_peer = {SILENT}\n")
    });
    let mut server = Server::start(&env);
    let silent: Vec<TcpStream> = (0..SILENT)
        .map(|_| TcpStream::connect(&server.addr).expect("connect"))
        .collect();
    assert!(
        server.wait_log("connect from", SILENT),
        "the {SILENT} silent connections were not all admitted:\n{}",
        server.log_text()
    );

    normal_delivery(&server, "after 64 silent connections");
    assert_eq!(standin.bodies().len(), 1);
    // The slot came from the silent connection idle longest: the first.
    let first = &silent[0];
    first.set_read_timeout(Some(WAIT)).unwrap();
    let text = all_of(first);
    assert!(
        text.contains("\r\n421 4.4.2 "),
        "first silent one: {text:?}"
    );
    server.assert_alive();
}

#[test]
fn sixty_four_silent_unix_socket_connections_do_not_lock_out_swaks() {
    let dir = temp_dir();
    let socket = dir.path().join("lmtp.sock");
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |s| {
        s.lmtp_listen = vec![format!("unix:{}", socket.display())];
        s.extra = format!("max_connections = {SILENT}\n");
    });
    let mut server = Server::start(&env);
    let _silent: Vec<UnixStream> = (0..SILENT)
        .map(|_| UnixStream::connect(&socket).expect("connect"))
        .collect();
    assert!(
        server.wait_log("connect from", SILENT),
        "the {SILENT} silent connections were not all admitted:\n{}",
        server.log_text()
    );
    let out = Command::new("swaks")
        .args(["--protocol", "LMTP", "--socket"])
        .arg(&socket)
        .args(["--from", "alice@example.org", "--to", INCOMING_RCPT])
        .args(["--timeout", "20"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run swaks (.ci/run installs it): {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("<-  250 2.0.0"), "swaks:\n{text}");
    assert_eq!(standin.bodies().len(), 1);
    server.assert_alive();
}

/// A TCP connection to `to` from the loopback address `from`.
fn connect_from(from: Ipv4Addr, to: &str) -> TcpStream {
    let to: SocketAddr = to.parse().expect("IPv4 address");
    let SocketAddr::V4(to) = to else {
        panic!("{to} is not IPv4")
    };
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a new socket, bound and connected with valid sockaddr_in
    // values of the given length; it is owned by the TcpStream made from it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let local = sockaddr(from, 0);
        let bound = libc::bind(fd, (&raw const local).cast(), len);
        assert_eq!(bound, 0, "bind {from}: {}", std::io::Error::last_os_error());
        let remote = sockaddr(*to.ip(), to.port());
        let done = libc::connect(fd, (&raw const remote).cast(), len);
        assert_eq!(done, 0, "connect {to}: {}", std::io::Error::last_os_error());
        stream
    }
}

/// An LMTP client from `from`, greeted, with a transaction open.
fn in_transaction(from: Ipv4Addr, server: &Server) -> Client {
    let mut c = Client::over_tcp(connect_from(from, &server.addr));
    c.hello();
    c.cmd("MAIL FROM:<alice@example.org>", 250, "2.1.0");
    c
}

#[test]
fn one_address_holds_at_most_its_share_of_slots() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |s| {
        s.extra = "max_connections = 8\nmax_connections_per_peer = 4\n".into()
    });
    let mut server = Server::start(&env);
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    let mut held: Vec<Client> = (0..4).map(|_| in_transaction(attacker, &server)).collect();
    // Its fifth is refused: all its slots are in transactions.
    let mut fifth = Client::over_tcp(connect_from(attacker, &server.addr));
    fifth.expect(421, "4.3.2");
    // Others still get in and deliver.
    let mut other = Client::over_tcp(connect_from(Ipv4Addr::LOCALHOST, &server.addr));
    other.hello();
    other.cmd("MAIL FROM:<alice@example.org>", 250, "2.1.0");
    other.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
    other.cmd("DATA", 354, "");
    other.send(&stuffed(&crlf_message("past the cap")));
    other.expect(250, "2.0.0");
    assert_eq!(standin.bodies().len(), 1);
    other.cmd("MAIL FROM:<alice@example.org>", 250, "2.1.0");
    // Every slot in a transaction: 421 4.3.2 for anyone.
    let third = Ipv4Addr::new(127, 0, 0, 3);
    held.extend((0..3).map(|_| in_transaction(third, &server)));
    let mut late = Client::over_tcp(connect_from(Ipv4Addr::new(127, 0, 0, 4), &server.addr));
    late.expect(421, "4.3.2");
    for c in &mut held {
        c.cmd("NOOP", 250, "2.0.0");
    }
    server.assert_alive();
}

#[test]
fn a_client_that_never_says_lhlo_is_closed() {
    let env = TestEnv::new(&Settings {
        extra: "lhlo_timeout_secs = 1\n".into(),
        ..Settings::default()
    });
    let mut server = Server::start(&env);
    let mut c = server.connect();
    c.expect(220, "");
    c.expect(421, "4.4.2");
    c.expect_closed();
    server.assert_alive();
}
