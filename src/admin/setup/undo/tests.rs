use super::*;

#[test]
fn finds_a_master_entry_with_its_continuation_lines() {
    let text =
        "# lmtp unix comment\nsmtp      inet  n       -       y       -       -       smtpd\n\
                lmtp      unix  -       -       y       -       -       lmtp\n  -o a=b\n\
                \t-o c=d\nanvil     unix  -       -       y       -       1       anvil\n";
    let (a, b) = entry_span(text, "lmtp/unix/chroot").unwrap();
    assert_eq!(
        &text[a..b],
        "lmtp      unix  -       -       y       -       -       lmtp\n  -o a=b\n\t-o c=d\n"
    );
    let (a, b) = entry_span(text, "anvil/unix/chroot").unwrap();
    assert!(text[a..b].starts_with("anvil") && b == text.len());
    assert_eq!(entry_span(text, "lmtp/inet/chroot"), None);
}

#[test]
fn one_record_per_postfix_instance() {
    assert_eq!(state_file(None), Path::new(STATE_FILE));
    assert_eq!(
        state_file(Some(Path::new("/etc/postfix-out"))),
        Path::new("/var/lib/gitlab-mailgate/setup-undo_etc_postfix-out.toml")
    );
}
