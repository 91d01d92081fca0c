//! SIGHUP to a running `serve` (issue 18): it must not end the server (its
//! default action would, in mid-delivery). It reloads the configuration:
//! a delivery in flight finishes with the configuration it started with,
//! the next connection uses the new one, and a broken file is logged with
//! its place while the one in force goes on serving.

use crate::common::*;

/// The incoming address of the reloaded configuration.
const NEW_TEMPLATE: &str = "newbox+%{key}@incoming.example.com";

fn new_rcpt() -> String {
    NEW_TEMPLATE.replace("%{key}", KEY)
}

fn hangup(server: &Server) {
    // SAFETY: kill(2) on the pid of our own child process.
    let sent = unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(sent, 0, "kill -HUP: {}", std::io::Error::last_os_error());
}

/// Delivers one message to `rcpt` on a new connection.
fn deliver_to(server: &Server, rcpt: &str, subject: &str) {
    let mut c = server.connect();
    c.hello();
    c.cmd("MAIL FROM:<alice@example.org>", 250, "2.1.0");
    c.cmd(&format!("RCPT TO:<{rcpt}>"), 250, "2.1.5");
    c.cmd("DATA", 354, "");
    c.send(&stuffed(&crlf_message(subject)));
    c.expect(250, "2.0.0");
    c.cmd("QUIT", 221, "2.0.0");
}

#[test]
fn sighup_reloads_while_a_delivery_is_in_flight_and_keeps_a_good_config() {
    let (env, mut standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let mut server = Server::start(&env);
    let settings = Settings {
        gitlab_url: standin.url(),
        ..Settings::default()
    };

    // A delivery in flight: GitLab takes 3 s to answer.
    standin.set_mode("slow:3000");
    let mut busy = server.connect();
    busy.hello();
    busy.cmd("MAIL FROM:<alice@example.org>", 250, "2.1.0");
    busy.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
    busy.cmd("DATA", 354, "");
    busy.send(&stuffed(&crlf_message("in flight during SIGHUP")));
    assert!(
        server.wait_log("from=<alice@example.org>", 1),
        "the message was not taken for delivery:\n{}",
        server.log_text()
    );
    let reloaded = env
        .config_text(&settings)
        .replace(INCOMING_TEMPLATE, NEW_TEMPLATE);
    write_file(&env.config, reloaded.as_bytes(), 0o644);
    hangup(&server);
    busy.expect(250, "2.0.0");
    assert!(
        server.wait_log("configuration reloaded", 1),
        "no reload logged:\n{}",
        server.log_text()
    );
    server.assert_alive();
    standin.set_mode("ok");

    // The connection opened before goes on with its configuration...
    busy.cmd("MAIL FROM:<alice@example.org>", 250, "2.1.0");
    busy.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 250, "2.1.5");
    busy.cmd("RSET", 250, "2.0.0");
    // ...a new one gets the new one.
    let mut c = server.connect();
    c.hello();
    c.cmd("MAIL FROM:<alice@example.org>", 250, "2.1.0");
    c.cmd(&format!("RCPT TO:<{INCOMING_RCPT}>"), 550, "5.1.1");
    c.cmd("QUIT", 221, "2.0.0");
    deliver_to(&server, &new_rcpt(), "after the reload");

    // A broken file: logged with its place, the one in force stays.
    let broken = format!("{reloaded}max_connections = \"many\"\n");
    let line = broken.lines().count();
    write_file(&env.config, broken.as_bytes(), 0o644);
    hangup(&server);
    assert!(
        server.wait_log("configuration not reloaded", 1),
        "no refusal logged:\n{}",
        server.log_text()
    );
    let place = format!("{}:{line}:", env.config.display());
    assert!(
        server.log_text().contains(&place),
        "the error does not name {place}:\n{}",
        server.log_text()
    );
    deliver_to(&server, &new_rcpt(), "after the broken reload");
    server.assert_alive();

    let bodies = standin.bodies();
    assert_eq!(bodies.len(), 3, "GitLab got {} messages", bodies.len());
    let busy_body = String::from_utf8_lossy(&bodies[0].bytes).into_owned();
    assert!(
        busy_body.starts_with(&format!("Delivered-To: {INCOMING_RCPT}\r\n")),
        "the delivery in flight used another configuration:\n{busy_body}"
    );
}

#[test]
fn sighup_makes_a_changed_listener_a_restart_notice() {
    let (env, standin) = TestEnv::with_standin(StandIn::builder(), |_| {});
    let mut server = Server::start(&env);
    let settings = Settings {
        gitlab_url: standin.url(),
        lmtp_listen: vec![format!("127.0.0.1:{}", unused_port())],
        ..Settings::default()
    };
    env.write_config(&settings);
    hangup(&server);
    assert!(
        server.wait_log(
            "[lmtp] listen changed: takes effect only after a restart",
            1
        ),
        "no restart notice:\n{}",
        server.log_text()
    );
    // Still on the old socket.
    normal_delivery(&server, "after a listener change");
    assert_eq!(standin.bodies().len(), 1);
    server.assert_alive();
}
