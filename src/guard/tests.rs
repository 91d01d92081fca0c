//! Tests of the guards as the delivery core uses them: screening, the
//! order of the checks in `admit`, and what GitLab's answers do to them.

use super::*;
use crate::gitlab::Posted;

fn settings() -> Settings {
    Settings {
        loop_limit: 2,
        max_in_flight: 2,
        slot_wait: Duration::from_millis(50),
        breaker_failures: 2,
        ..Settings::default()
    }
}

fn answer(status: u16, retry_after: Option<u64>) -> Posting {
    Posting::classify(Posted::Answer {
        status,
        retry_after: retry_after.map(Duration::from_secs),
        gitlab_refusal: false,
    })
}

fn guard() -> Guard {
    Guard::new(&settings(), Duration::from_secs(10)).with_loop_breaker()
}

#[test]
fn null_sender_refused_unless_accepted() {
    let g = guard();
    let refused = Err(Outcome::Discarded(Discard::NullSender));
    assert_eq!(g.screen_sender(Some("")), refused);
    assert_eq!(g.screen_sender(Some("MAILER-DAEMON")), refused);
    assert_eq!(g.screen_sender(Some("mailer-daemon@example.org")), Ok(()));
    assert_eq!(g.screen_sender(Some("alice@example.org")), Ok(()));
    assert_eq!(g.screen_sender(None), Ok(()));
    let accepting = Settings {
        null_sender: NullSender::Accept,
        ..settings()
    };
    let g = Guard::new(&accepting, Duration::from_secs(10));
    assert_eq!(g.screen_sender(Some("")), Ok(()));
}

#[test]
fn auto_submitted_as_gitlab_sees_it() {
    let auto = |headers: &str| {
        let message =
            format!("{headers}From: a@example.org\r\n\r\nbody\r\nAuto-Submitted: auto-replied\r\n");
        auto_submitted(&Headers::parse(message.as_bytes()))
    };
    assert!(auto("Auto-Submitted: auto-replied\r\n"));
    assert!(auto("auto-submitted: auto-generated\r\n"));
    assert!(auto(
        "Auto-Submitted: auto-replied; owner-email=\"x@y\"\r\n"
    ));
    assert!(auto("X-Autoreply: yes\r\n"));
    assert!(!auto("Auto-Submitted: no\r\n"));
    assert!(!auto("Auto-Submitted:  no \r\n"));
    assert!(!auto("X-Autoreply: no\r\n"));
    // Only the header section counts; bulk mail is legitimate.
    assert!(!auto(""));
    assert!(!auto("Precedence: bulk\r\n"));
    assert!(!auto("Precedence: list\r\nList-Id: <l.example.org>\r\n"));
}

#[test]
fn loop_breaker_counts_only_what_reached_gitlab() {
    let no_breaker = Settings {
        breaker_failures: 0,
        ..settings()
    };
    let g = Guard::new(&no_breaker, Duration::from_secs(10)).with_loop_breaker();
    for _ in 0..3 {
        let pass = g
            .admit("Bot@example.org", "key")
            .expect("failures do not count");
        g.finish(pass, &answer(500, None));
    }
    let g = guard();
    for _ in 0..2 {
        let pass = g.admit("Bot@example.org", "key").expect("admitted");
        g.finish(pass, &answer(200, None));
    }
    assert_eq!(
        g.admit("bot@EXAMPLE.org", "key").err(),
        Some(Outcome::Temporary(Temporary::Loop))
    );
    assert!(g.admit("bot@example.org", "other-key").is_ok());
    assert!(g.admit("alice@example.org", "key").is_ok());
}

#[test]
fn no_loop_breaker_without_memory() {
    let g = Guard::new(&settings(), Duration::from_secs(10));
    for _ in 0..5 {
        let pass = g.admit("bot@example.org", "key").expect("admitted");
        g.finish(pass, &answer(200, None));
    }
}

#[test]
fn slots_bound_concurrent_posts() {
    let g = guard();
    let a = g.admit("a@x", "1").unwrap();
    let _b = g.admit("b@x", "2").unwrap();
    assert_eq!(
        g.admit("c@x", "3").err(),
        Some(Outcome::Temporary(Temporary::NoSlot))
    );
    g.finish(a, &answer(200, None));
    assert!(g.admit("c@x", "3").is_ok());
}

#[test]
fn open_breaker_answers_at_once_and_retry_after_opens_it() {
    let g = guard();
    let pass = g.admit("a@x", "1").unwrap();
    g.finish(pass, &answer(429, Some(30)));
    // Even with every slot taken, the answer comes at once.
    let _held = g.slots.take(Duration::ZERO);
    let _held2 = g.slots.take(Duration::ZERO);
    let start = Instant::now();
    assert_eq!(
        g.admit("b@x", "2").err(),
        Some(Outcome::Temporary(Temporary::BreakerOpen(30)))
    );
    assert!(start.elapsed() < Duration::from_millis(40));
}

#[test]
fn concurrent_copies_of_a_loop_cannot_all_pass() {
    let g = Guard::new(
        &Settings {
            max_in_flight: 8,
            ..settings()
        },
        Duration::from_secs(10),
    )
    .with_loop_breaker();
    // Two posts under way, none finished yet: the third is over the limit.
    let a = g.admit("bot@x", "k").unwrap();
    let b = g.admit("bot@x", "k").unwrap();
    assert!(g.admit("bot@x", "k").is_err());
    // One of them fails: its count is taken back.
    g.finish(a, &answer(502, None));
    let c = g.admit("bot@x", "k").unwrap();
    g.finish(b, &answer(200, None));
    g.finish(c, &answer(200, None));
    assert!(g.admit("bot@x", "k").is_err());
}
