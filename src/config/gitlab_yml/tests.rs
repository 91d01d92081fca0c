use super::*;

const OMNIBUS: &str = include_str!("../../../tests/data/gitlab.yml");

fn omnibus(edit: impl Fn(String) -> String) -> Result<GitlabYml, String> {
    let text = OMNIBUS
        .replace("@GITLAB_URL@", "http://127.0.0.1:8181")
        .replace("@DOMAIN@", "in.example.net");
    GitlabYml::parse(Path::new(OMNIBUS_PATH), &edit(text))
}

#[test]
fn reads_omnibus_layout() {
    let yml = omnibus(|t| t).unwrap();
    assert_eq!(yml.host, "gitlab.example.com");
    assert_eq!(yml.external_url, "https://gitlab.example.com");
    let m = yml.mailbox(Kind::Incoming).unwrap();
    assert!(m.active());
    assert_eq!(m.address.as_deref(), Some("incoming+%{key}@in.example.net"));
    assert_eq!(m.gitlab_url.as_deref(), Some("http://127.0.0.1:8181"));
    // Omnibus's link in the Rails root points beside gitlab.yml.
    assert_eq!(
        m.secret_file,
        Path::new("/var/opt/gitlab/gitlab-rails/etc/gitlab_incoming_email_secret")
    );
    assert_eq!(m.refusal(), None);
    let sd = yml.mailbox(Kind::ServiceDesk).unwrap();
    assert_eq!(
        sd.secret_file,
        Path::new("/var/opt/gitlab/gitlab-rails/etc/gitlab_service_desk_email_secret")
    );
}

#[test]
fn source_install_paths_resolve_against_the_rails_root() {
    let text = "production:\n  gitlab:\n    host: git.example.org\n    port: 8080\n    relative_url_root: /gitlab\n  incoming_email:\n    enabled: yes\n    address: \"i+%{key}@x.example.org\"\n    delivery_method: webhook\n    public_key_files: [keys/a.pem, /etc/b.pem]\n";
    let yml = GitlabYml::parse(Path::new(SOURCE_PATH), text).unwrap();
    assert_eq!(yml.external_url, "http://git.example.org:8080/gitlab");
    let m = yml.mailbox(Kind::Incoming).unwrap();
    assert!(m.enabled, "YAML 1.1 yes is true for GitLab");
    assert_eq!(
        m.secret_file,
        Path::new("/home/git/gitlab/.gitlab_mailroom_secret")
    );
    assert_eq!(
        m.public_key_files,
        vec![
            PathBuf::from("/home/git/gitlab/keys/a.pem"),
            PathBuf::from("/etc/b.pem")
        ]
    );
    assert!(yml.mailbox(Kind::ServiceDesk).is_none());
}

#[test]
fn refuses_what_cannot_work_and_names_the_fix() {
    let sidekiq =
        omnibus(|t| t.replacen("delivery_method: webhook", "delivery_method: sidekiq", 1));
    let why = sidekiq.unwrap().mailboxes[0].refusal().unwrap();
    assert!(
        why.contains("\"webhook\"") && why.contains("incoming_email_delivery_method"),
        "{why}"
    );

    // GitLab's default delivery method is sidekiq.
    let absent = omnibus(|t| t.replacen("    delivery_method: webhook\n", "", 1));
    assert!(absent.unwrap().mailboxes[0]
        .refusal()
        .unwrap()
        .contains("sidekiq"));

    let keyless = omnibus(|t| t.replace("incoming+%{key}@", "incoming@"));
    let why = keyless.unwrap().mailboxes[0].refusal().unwrap();
    assert!(why.contains("no %{key}"), "{why}");

    let imap = omnibus(|t| t.replacen("host: \"\"", "host: \"imap.example.com\"", 1));
    let why = imap.unwrap().mailboxes[0].refusal().unwrap();
    assert!(
        why.contains("IMAP") && why.contains("mailroom['enable'] = false"),
        "{why}"
    );

    let graph = omnibus(|t| t.replacen("inbox_method: imap", "inbox_method: microsoft_graph", 1));
    assert!(graph.unwrap().mailboxes[0]
        .refusal()
        .unwrap()
        .contains("microsoft_graph"));
}

#[test]
fn disabled_or_addressless_mailboxes_are_inactive() {
    let off = omnibus(|t| {
        t.replacen(
            "enabled: true\n    address: \"incoming",
            "enabled: false\n    address: \"incoming",
            1,
        )
    });
    assert!(!off.unwrap().mailboxes[0].active());
    let empty = omnibus(|t| t.replace("\"incoming+%{key}@in.example.net\"", "\"\""));
    assert!(!empty.unwrap().mailboxes[0].active());
}

#[test]
fn says_what_is_wrong_with_a_file_that_is_not_gitlabs() {
    let err = GitlabYml::parse(Path::new("x.yml"), "development:\n  a: 1\n").unwrap_err();
    assert!(err.contains("production"), "{err}");
    let err = GitlabYml::parse(Path::new("x.yml"), "production: [\n").unwrap_err();
    assert!(err.contains("YAML"), "{err}");
}
