use super::table::{markdown_table, rows};
use super::*;

fn row(o: &Outcome) -> (u16, String, u8, &'static str) {
    let r = o.reply();
    (
        r.code,
        r.status().unwrap_or_default(),
        o.exit_code(),
        o.status_word(),
    )
}

fn answered(status: u16, retry_after: Option<u64>) -> Posting {
    Posting::classify(Posted::Answer {
        status,
        retry_after: retry_after.map(Duration::from_secs),
        gitlab_refusal: false,
    })
}

fn gitlabs_own_400() -> Posting {
    Posting::classify(Posted::Answer {
        status: 400,
        retry_after: None,
        gitlab_refusal: true,
    })
}

fn from_gitlab_status(status: u16) -> Outcome {
    answered(status, None).outcome
}

#[test]
fn the_outcome_table() {
    let t = Outcome::Temporary;
    let wire = |p| Posting::classify(p).outcome;
    let cases = [
        (
            wire(Posted::Unreachable("refused".into())),
            (451, "4.4.1", 75, "deferred"),
        ),
        (
            wire(Posted::Lost("timeout".into())),
            (451, "4.4.2", 75, "deferred"),
        ),
        (
            wire(Posted::Local("unreadable".into())),
            (451, "4.3.5", 75, "deferred"),
        ),
        (t(Temporary::BadCommandLine), (451, "4.3.5", 75, "deferred")),
        (from_gitlab_status(200), (250, "2.0.0", 0, "sent")),
        (gitlabs_own_400().outcome, (250, "2.0.0", 0, "rejected")),
        // A 400 that is not GitLab's (a proxy, http:// to an https port).
        (from_gitlab_status(400), (451, "4.3.0", 75, "deferred")),
        (from_gitlab_status(401), (451, "4.7.0", 75, "deferred")),
        (from_gitlab_status(403), (451, "4.7.0", 75, "deferred")),
        (from_gitlab_status(404), (451, "4.3.5", 75, "deferred")),
        (from_gitlab_status(500), (451, "4.3.0", 75, "deferred")),
        (from_gitlab_status(502), (451, "4.3.0", 75, "deferred")),
        (from_gitlab_status(302), (451, "4.3.0", 75, "deferred")),
        (t(Temporary::Deadline), (451, "4.4.7", 75, "deferred")),
        (Outcome::UnknownRecipient, (550, "5.1.1", 67, "bounced")),
        (Outcome::TooLarge, (552, "5.3.4", 69, "bounced")),
        (from_gitlab_status(429), (451, "4.4.5", 75, "deferred")),
        (
            answered(429, Some(9)).outcome,
            (451, "4.4.5", 75, "deferred"),
        ),
        (answered(503, None).outcome, (451, "4.3.0", 75, "deferred")),
        (t(Temporary::Loop), (451, "4.7.1", 75, "deferred")),
        (t(Temporary::NoSlot), (451, "4.3.2", 75, "deferred")),
        (t(Temporary::BreakerOpen(5)), (451, "4.3.0", 75, "deferred")),
        (
            Outcome::Discarded(Discard::NullSender),
            (550, "5.7.1", 0, "discarded"),
        ),
        (
            Outcome::Discarded(Discard::AutoSubmitted),
            (250, "2.0.0", 0, "discarded"),
        ),
    ];
    for (outcome, (code, enhanced, exit, word)) in cases {
        assert_eq!(
            row(&outcome),
            (code, enhanced.to_string(), exit, word),
            "{outcome:?}"
        );
    }
}

#[test]
fn what_a_post_says_about_gitlab() {
    let v = |p: Posting| (p.verdict, p.retry_after, p.readiness, p.wire);
    let failing = |s: &str| Readiness::Failing(format!("GitLab is failing: {s}"));
    assert_eq!(
        v(answered(202, None)),
        (
            Verdict::Healthy,
            None,
            Readiness::Answering,
            Wire::Answered("202".into())
        )
    );
    assert_eq!(gitlabs_own_400().verdict, Verdict::Healthy);
    assert_eq!(gitlabs_own_400().readiness, Readiness::Answering);
    assert_eq!(answered(400, None).verdict, Verdict::Neutral);
    assert_eq!(answered(401, None).verdict, Verdict::Neutral);
    assert_eq!(answered(302, None).verdict, Verdict::Neutral);
    assert_eq!(answered(502, None).verdict, Verdict::Failing);
    let throttled = answered(503, Some(7));
    assert_eq!(throttled.verdict, Verdict::Failing);
    assert_eq!(throttled.retry_after, Some(Duration::from_secs(7)));
    assert_eq!(throttled.readiness, failing("GitLab answered 503"));
    // Retry-After counts only where HTTP gives it that meaning.
    assert_eq!(answered(500, Some(7)).retry_after, None);
    let local = Posting::classify(Posted::Local("secret".into()));
    assert_eq!(
        (local.verdict, local.readiness, local.wire),
        (
            Verdict::Neutral,
            Readiness::Unchanged,
            Wire::NoAnswer("local")
        )
    );
    let lost = Posting::classify(Posted::Lost("reset".into()));
    assert_eq!(lost.verdict, Verdict::Failing);
    assert_eq!(lost.wire, Wire::NoAnswer("lost"));
}

#[test]
fn probes() {
    let probe = |status| {
        Probe::classify(Posted::Answer {
            status,
            retry_after: None,
            gitlab_refusal: false,
        })
    };
    assert!(probe(401).route_exists);
    assert_eq!(probe(401).readiness, Readiness::Answering);
    assert!(!probe(404).route_exists && probe(404).text.contains("answers 404"));
    assert_eq!(probe(200).readiness, Readiness::Answering);
    assert!(matches!(probe(502).readiness, Readiness::Failing(_)));
    let gone = Probe::classify(Posted::Unreachable("refused".into()));
    assert_eq!(gone.text, ": cannot reach GitLab: refused");
}

#[test]
fn reply_class_agrees_with_exit_class() {
    for r in rows() {
        let o = &r.outcome;
        assert_eq!(
            o.reply().code / 100 == 4,
            o.exit_code() == EX_TEMPFAIL,
            "{o:?}"
        );
    }
}

#[test]
fn guard_decisions_are_named_once() {
    let named: Vec<_> = rows()
        .iter()
        .filter_map(|r| r.outcome.guard_decision())
        .collect();
    assert_eq!(named, GUARD_DECISIONS);
}

#[test]
fn dsn_is_enhanced_code_and_text() {
    assert_eq!(Outcome::Delivered.dsn(), None);
    assert_eq!(
        Outcome::Temporary(Temporary::BadCommandLine).dsn().unwrap(),
        "4.3.5 gitlab-mailgate: bad command line (see master.cf)"
    );
    assert_eq!(
        Outcome::UnknownRecipient.dsn().unwrap(),
        "5.1.1 no such GitLab address"
    );
    assert_eq!(Outcome::Discarded(Discard::AutoSubmitted).dsn(), None);
    assert_eq!(Outcome::Discarded(Discard::NullSender).dsn(), None);
}

#[test]
fn guard_texts_say_not_posted() {
    let t = |s| Outcome::Temporary(s).reply().text.into_owned();
    for text in [
        t(Temporary::Loop),
        t(Temporary::NoSlot),
        t(Temporary::BreakerOpen(3)),
    ] {
        assert!(text.contains("not posted to GitLab"), "{text}");
    }
}

#[test]
fn combine_prefers_temporary_then_permanent() {
    let temp = Outcome::Temporary(super::Temporary::Status(500));
    use Outcome::*;
    assert_eq!(
        Outcome::combine(&[Delivered, UnknownRecipient, temp.clone()]),
        temp
    );
    assert_eq!(Outcome::combine(&[Delivered, TooLarge]), TooLarge);
    assert_eq!(Outcome::combine(&[Delivered, Delivered]), Delivered);
    let discarded = Discarded(Discard::NullSender);
    assert_eq!(Outcome::combine(&[discarded.clone(), Delivered]), Delivered);
    assert_eq!(
        Outcome::combine(std::slice::from_ref(&discarded)),
        discarded
    );
    assert_eq!(
        Outcome::combine(&[discarded, UnknownRecipient]),
        UnknownRecipient
    );
}

#[test]
fn readme_shows_the_table_the_code_decides() {
    let readme = include_str!("../../README.md");
    assert!(
        readme.contains(&markdown_table()),
        "README.md's outcome table differs from the code; paste this:\n{}",
        markdown_table()
    );
}
