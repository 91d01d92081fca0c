//! What the GitLab stand-in recorded for the Postfix tests, over all of
//! its runs. The stand-in itself is `common::StandIn`, started on the
//! port the configuration names (`StandIn::builder().port(..)`): these tests
//! kill GitLab and bring it back on the same port (the LMTP server read the
//! URL once, at start). Each run records into its own directory, so a
//! restarted stand-in does not overwrite what the previous run received.

use crate::common::recorded_requests;
use std::fs;
use std::path::PathBuf;

/// How many established TCP connections (IPv4) go to port `port` on this
/// machine, from /proc/net/tcp: with a freshly started `serve` as the
/// stand-in's only client, the requests it has in flight.
pub fn connections_to(port: u16) -> usize {
    let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let want = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl, local_address, rem_address, st (01 = ESTABLISHED).
            fields.len() > 3 && fields[2].ends_with(&want) && fields[3] == "01"
        })
        .count()
}

/// One request the stand-in answered.
#[derive(Debug)]
pub struct Request {
    /// The mailbox in the URL.
    pub mailbox: String,
    /// The HTTP status answered (`200`, `500`, …).
    pub status: String,
    /// Whether PyJWT verified the token with that mailbox's secret.
    pub jwt_ok: bool,
    /// The body, when the stand-in accepted it (status 200).
    pub body: Option<Vec<u8>>,
}

/// Every request recorded under `outs` (one directory per stand-in run).
pub fn requests(outs: &[PathBuf]) -> Vec<Request> {
    let mut all = Vec::new();
    for out in outs {
        for r in recorded_requests(out) {
            let body = (r.status == "200")
                .then(|| fs::read(out.join(format!("{}-{}.eml", r.seq, r.mailbox))).ok())
                .flatten();
            all.push(Request {
                jwt_ok: r.jwt_ok,
                mailbox: r.mailbox,
                status: r.status,
                body,
            });
        }
    }
    all
}
