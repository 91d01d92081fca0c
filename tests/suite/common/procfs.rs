//! What a process listens on, read from `/proc`: its socket file
//! descriptors matched against the kernel's TCP, TCP6 and unix socket
//! tables. Linux only, like the rest of the tests.

use std::collections::BTreeSet;

/// The listening TCP (`IP:PORT`, `[IPv6]:PORT`) and unix (`unix:PATH`)
/// sockets of process `pid`.
pub fn listening_sockets(pid: u32) -> BTreeSet<String> {
    let inodes: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut found = BTreeSet::new();
    for (table, v6) in [("tcp", false), ("tcp6", true)] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                found.insert(proc_net_address(f[1], v6));
            }
        }
    }
    let unix = std::fs::read_to_string(format!("/proc/{pid}/net/unix")).unwrap_or_default();
    for line in unix.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // Num RefCount Protocol Flags Type St Inode Path; flag 0x10000 = listening.
        let listening = f
            .get(3)
            .and_then(|x| u32::from_str_radix(x, 16).ok())
            .is_some_and(|flags| flags & 0x10000 != 0);
        if listening && f.get(6).is_some_and(|i| inodes.contains(*i)) {
            found.insert(format!("unix:{}", f.get(7).unwrap_or(&"")));
        }
    }
    found
}

/// `0100007F:0978` (or the IPv6 form) as `127.0.0.1:2424`.
fn proc_net_address(hex: &str, v6: bool) -> String {
    let (ip, port) = hex.split_once(':').expect("IP:PORT");
    let port = u16::from_str_radix(port, 16).expect("port");
    // The kernel prints each 32-bit word in host (little-endian) order.
    let bytes: Vec<u8> = (0..ip.len() / 8)
        .flat_map(|w| {
            let word = u32::from_str_radix(&ip[w * 8..w * 8 + 8], 16).expect("hex");
            word.to_le_bytes()
        })
        .collect();
    if v6 {
        let a: [u8; 16] = bytes.try_into().expect("16 bytes");
        format!("[{}]:{port}", std::net::Ipv6Addr::from(a))
    } else {
        let a: [u8; 4] = bytes.try_into().expect("4 bytes");
        format!("{}:{port}", std::net::Ipv4Addr::from(a))
    }
}

/// Raises this process's soft limit on open files towards `want` (never
/// lowers it: the tests are threads of one process); returns the limit now
/// in force.
pub fn raise_fd_limit(want: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < want {
            limit.rlim_cur = want.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        }
    }
    limit.rlim_cur
}
