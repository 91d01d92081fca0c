//! The recipient lookup half of `check --postfix`: Postfix asks
//! `serve`'s lookup (`crate::lookup`) through `relay_recipient_maps`, and
//! the lookup answers `OK` for an address gitlab-mailgate takes and
//! `NOTFOUND` for one it refuses. Asked over the same socketmap protocol
//! Postfix speaks, with a deadline.

use super::report::Report;
use crate::admin::postfix_conf::{list, Postfix};
use crate::config::Config;
use crate::lookup::socketmap::{self, Parsed};
use crate::lookup::{postfix_table, TABLE};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The key of the address that must be refused: no GitLab handler takes it.
const UNKNOWN_KEY: &str = "gitlab-mailgate-route-test";
/// A reply key's shape (32 hex digits): one GitLab would act on.
const KNOWN_KEY: &str = "0123456789abcdef0123456789abcdef";
/// Connect, send and answer, each.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Checks that Postfix asks the lookup and that it answers as routing does.
pub(super) fn check(report: &mut Report, config: &Config, pf: &Postfix) {
    let Some(addr) = config.lookup.listen else {
        return report.warn(
            "no recipient lookup ([lookup] listen not set): Postfix takes any address of \
             the incoming domains and mails a bounce for an unknown one (backscatter); \
             gitlab-mailgate setup --postfix sets it up",
        );
    };
    let table = postfix_table(&addr.to_string());
    let used = match pf.get("relay_recipient_maps") {
        Ok(maps) if list(&maps).contains(&table) => {
            report.ok(format_args!("Postfix's relay_recipient_maps asks {table}"));
            true
        }
        Ok(_) => {
            report.warn(format_args!(
                "Postfix's relay_recipient_maps does not list {table}: unknown addresses \
                 are accepted and bounced (gitlab-mailgate setup --postfix adds it)"
            ));
            false
        }
        Err(e) => {
            report.warn(e);
            false
        }
    };
    let routes = |a: &String| crate::deliver::route(&config.mailboxes, a).is_some();
    let mailboxes = config.mailboxes.iter();
    let known = mailboxes
        .clone()
        .find_map(|m| m.template.with_key(KNOWN_KEY).filter(routes));
    let unknown = mailboxes
        .filter_map(|m| m.template.with_key(UNKNOWN_KEY))
        .find(|a| !routes(a));
    for (address, want) in [(known, "OK"), (unknown, "NOTFOUND")] {
        let Some(address) = address else { continue };
        match ask(addr, &address) {
            Ok(reply) if reply.split(' ').next() == Some(want) => report.ok(format_args!(
                "recipient lookup on {addr} answers {address}: {reply}"
            )),
            Ok(reply) => report.fail(format_args!(
                "recipient lookup on {addr} answers {address}: {reply}, not {want}"
            )),
            // Only Postfix asking it makes a silent lookup a failure (a
            // check before the service is started is no failure).
            Err(e) if used => {
                return report.fail(format_args!(
                    "recipient lookup on {addr}: {e} (is gitlab-mailgate serve running? \
                     Until it answers, Postfix defers mail for GitLab with 451 4.3.0)"
                ))
            }
            Err(e) => {
                return report.warn(format_args!(
                    "recipient lookup on {addr}: {e} (is gitlab-mailgate serve running?)"
                ))
            }
        }
    }
}

/// Asks the lookup at `addr` about `address`; the reply's text.
fn ask(addr: SocketAddr, address: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let request = format!("{TABLE} {address}");
    let netstring = format!("{}:{request},", request.len());
    stream
        .write_all(netstring.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        match socketmap::parse(&buf) {
            Parsed::Request { payload, .. } => {
                return Ok(String::from_utf8_lossy(payload).into_owned())
            }
            Parsed::Malformed(why) => return Err(format!("bad reply: {why}")),
            Parsed::Incomplete => {}
        }
        match stream.read(&mut chunk).map_err(|e| e.to_string())? {
            0 => return Err("closed without an answer".into()),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
