//! What `setup` would change in a configuration file, shown as settings
//! (`- gitlab.url = "…"`, `+ gitlab.config_file = "…"`), not as lines: the
//! admin sees the settings that change, not the comments around them.

use std::collections::BTreeMap;

/// The settings that differ from `old` to `new`, each `- key = value`
/// (gone or changed from) or `+ key = value` (new or changed to), ordered
/// by key; empty when both set the same. A text that is not valid TOML
/// counts as having no settings.
pub fn settings(old: &str, new: &str) -> Vec<String> {
    let (a, b) = (flatten(old), flatten(new));
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut out = Vec::new();
    for key in keys {
        let (was, now) = (a.get(key), b.get(key));
        if was == now {
            continue;
        }
        if let Some(v) = was {
            out.push(format!("- {key} = {v}"));
        }
        if let Some(v) = now {
            out.push(format!("+ {key} = {v}"));
        }
    }
    out
}

/// Every setting of `text` as dotted key → value in TOML notation.
fn flatten(text: &str) -> BTreeMap<String, String> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                toml::Value::Table(t) => walk(&path, t, out),
                v => {
                    out.insert(path, v.to_string());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Ok(table) = text.parse::<toml::Table>() {
        walk("", &table, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn shows_settings_not_comments() {
        let old = "# a comment\n[gitlab]\nurl = \"a\"\n# more\n[http]\nlisten = \"x\"\n";
        assert!(super::settings(old, old).is_empty());
        let new = "[gitlab]\nconfig_file = \"/g\"\n[http]\nlisten = \"x\"\n";
        assert_eq!(
            super::settings(old, new),
            ["+ gitlab.config_file = \"/g\"", "- gitlab.url = \"a\""]
        );
        assert_eq!(
            super::settings("", "[a]\nb = [\"c\"]\n"),
            ["+ a.b = [\"c\"]"]
        );
    }
}
