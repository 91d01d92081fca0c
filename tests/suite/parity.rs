//! Parity with GitLab's own key extraction, on GitLab's own test e-mails.
//!
//! `../shared/fixtures/gitlab-emails/MANIFEST.tsv` lists, for each of
//! GitLab's fixture e-mails, the address template and the key GitLab's
//! receiver finds in it. This test runs the library's header search on the
//! same bytes and compares. The fixtures are GitLab's and stay outside the
//! project (CI puts `shared/` beside the project root): when `../shared/`
//! is absent the test fails, saying so.
//!
//! The test passes no envelope recipient (`delivered_to` = ""), so the key
//! must come from the e-mail's own headers, as in GitLab's specs.

use gitlab_mailgate::address::Template;
use gitlab_mailgate::message::Headers;
use std::path::Path;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/gitlab-emails"
);

/// One manifest row, with the `?` marks of unconfirmed values removed.
struct Row {
    file: String,
    template: Option<String>,
    reply_host: String,
    /// `Some(None)`: GitLab finds no key; `None`: the manifest does not say.
    key: Option<Option<String>>,
    confirmed: bool,
}

/// A manifest value without its trailing `?` (which marks a value read off
/// the e-mail rather than confirmed by a GitLab spec).
fn unmarked(value: &str) -> (&str, bool) {
    match value.strip_suffix('?') {
        Some(v) => (v.trim(), false),
        None => (value.trim(), true),
    }
}

fn parse_manifest(text: &str) -> Vec<Row> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header line").split('\t').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("MANIFEST.tsv has no column {name}"))
    };
    let (c_file, c_tpl, c_host, c_key) = (
        col("file"),
        col("address_template"),
        col("reply_host"),
        col("key"),
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let cells: Vec<&str> = line.split('\t').collect();
            let cell = |i: usize| cells.get(i).copied().unwrap_or("");
            let (tpl, tpl_ok) = unmarked(cell(c_tpl));
            let (host, _) = unmarked(cell(c_host));
            let (key, key_ok) = unmarked(cell(c_key));
            Row {
                file: cell(c_file).to_string(),
                template: (!tpl.is_empty() && tpl != "-").then(|| tpl.to_string()),
                reply_host: if host.is_empty() || host == "-" {
                    "localhost".to_string()
                } else {
                    host.to_string()
                },
                key: if key.starts_with("NONE") {
                    Some(None)
                } else if key.is_empty() || key == "-" {
                    None
                } else {
                    Some(Some(key.to_string()))
                },
                confirmed: tpl_ok && key_ok,
            }
        })
        .collect()
}

#[test]
fn keys_match_gitlabs_receiver_on_gitlabs_fixtures() {
    let manifest = Path::new(FIXTURES).join("MANIFEST.tsv");
    let text = std::fs::read_to_string(&manifest).unwrap_or_else(|e| {
        panic!(
            "cannot read GitLab's fixtures ({}: {e}): this test needs `shared/` \
             beside the project root, as CI provides it",
            manifest.display()
        )
    });

    let show = |k: &Option<String>| k.clone().unwrap_or_else(|| "NONE".into());
    let mut failures = Vec::new();
    let mut compared = 0;
    println!("{:<72} {:<5} {:<10} key found", "file", "conf", "result");
    for row in parse_manifest(&text) {
        let Some(template) = &row.template else {
            println!(
                "{:<72} -     skipped    (no address template in the manifest)",
                row.file
            );
            continue;
        };
        let template = Template::parse(template)
            .unwrap_or_else(|e| panic!("{}: template {template:?}: {e}", row.file));
        let bytes = std::fs::read(Path::new(FIXTURES).join(&row.file))
            .unwrap_or_else(|e| panic!("{}: {e}", row.file));
        let found = Headers::parse(&bytes).gitlab_key(&template, &row.reply_host, "");
        let conf = if row.confirmed { "yes" } else { "?" };
        let result = match &row.key {
            None => "no-expect",
            Some(want) if *want == found => "same",
            Some(_) => "DIFFERENT",
        };
        println!("{:<72} {conf:<5} {result:<10} {}", row.file, show(&found));
        if let Some(want) = &row.key {
            compared += 1;
            if *want != found {
                failures.push(format!(
                    "{}: GitLab finds {}, we find {}",
                    row.file,
                    show(want),
                    show(&found)
                ));
            }
        }
    }
    assert!(compared > 0, "no manifest row was compared");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn manifest_values_are_read_as_documented() {
    let rows = parse_manifest(
        "file\tmailbox\taddress_template\treply_host\tkey\n\
         a.eml\tincoming_email\tin+%{key}@x.example\t-\tk1\n\
         b.eml\t?\tin+%{key}@x.example?\tgl.example?\tNONE (auto)?\n\
         c.eml\t?\t?\t-\tNONE?\n\
         d.eml\t?\tin+%{key}@x.example?\t-\t?\n",
    );
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0].template.as_deref(), Some("in+%{key}@x.example"));
    assert_eq!(rows[0].reply_host, "localhost");
    assert_eq!(rows[0].key, Some(Some("k1".into())));
    assert!(rows[0].confirmed);
    assert_eq!(rows[1].reply_host, "gl.example");
    assert_eq!(rows[1].key, Some(None));
    assert!(!rows[1].confirmed);
    assert_eq!(rows[2].template, None);
    assert_eq!(rows[3].key, None);
}
