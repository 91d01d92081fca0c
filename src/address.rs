//! Recipient addresses: GitLab's address template and how a recipient
//! matches it.
//!
//! GitLab turns `incoming_email.address` (e.g. `incoming+%{key}@example.com`)
//! into a regex: the template escaped, the first `%{key}` replaced by `(.+)`,
//! anchored, optionally inside `<…>`. Because everything around `%{key}` is
//! literal, that regex matches exactly when the address starts with the part
//! before `%{key}` and ends with the part after it; [`Template::key_of`] does
//! that comparison without a regex. Domains compare case-insensitively (DNS
//! does), local parts case-sensitively (GitLab does). Pure functions only.

use std::fmt;

/// A parsed `address` template such as `incoming+%{key}@example.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Local part before `%{key}` (or the whole local part when there is none).
    prefix: String,
    /// Local part after `%{key}`.
    suffix: String,
    /// Whether the template has a `%{key}` at all.
    has_key: bool,
    /// The local part with `%{key}` and one adjacent `+`/`-` removed:
    /// GitLab's "dedicated address" for the same mailbox.
    base_local: String,
    /// The domain, lowercased.
    domain: String,
}

/// Why a template is unusable. `Display` says what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// No `@`, or nothing on one side of it.
    NotAnAddress,
    /// More than one `%{key}`; GitLab would only replace the first.
    TwoKeys,
    /// `%{key}` is in the domain.
    KeyInDomain,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TemplateError::NotAnAddress => {
                "not an e-mail address: write it as GitLab's incoming_email.address, \
                 e.g. \"incoming+%{key}@incoming.example.com\""
            }
            TemplateError::TwoKeys => "more than one %{key}: use exactly one, in the local part",
            TemplateError::KeyInDomain => "%{key} must be in the local part, before the @",
        })
    }
}

impl std::error::Error for TemplateError {}

/// How a recipient matched a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// Sub-addressing: the key is in the address itself.
    Key(String),
    /// The template's base address (`incoming@…`): the key is in the headers.
    Base,
}

const KEY: &str = "%{key}";

impl Template {
    /// Parses an address template the way GitLab's configuration holds it.
    pub fn parse(template: &str) -> Result<Template, TemplateError> {
        let (local, domain) = split_address(template).ok_or(TemplateError::NotAnAddress)?;
        if domain.contains(KEY) {
            return Err(TemplateError::KeyInDomain);
        }
        let (prefix, suffix, has_key) = match local.split_once(KEY) {
            Some((_, after)) if after.contains(KEY) => return Err(TemplateError::TwoKeys),
            Some((before, after)) => (before, after, true),
            None => (local, "", false),
        };
        let base_local = if !has_key {
            local.to_string()
        } else if let Some(p) = prefix.strip_suffix(['+', '-']) {
            format!("{p}{suffix}")
        } else if let Some(s) = suffix.strip_prefix(['+', '-']) {
            format!("{prefix}{s}")
        } else {
            format!("{prefix}{suffix}")
        };
        Ok(Template {
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
            has_key,
            base_local,
            domain: domain.to_ascii_lowercase(),
        })
    }

    /// The domain of the template, lowercased.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The key in `address` as GitLab's regex would capture it, if the
    /// address matches the template. `<…>` around the address is allowed.
    pub fn key_of<'a>(&self, address: &'a str) -> Option<&'a str> {
        self.key_in(strip_angle_brackets(address.trim()))
    }

    /// The key in exactly `address`: no white space or brackets around it.
    fn key_in<'a>(&self, address: &'a str) -> Option<&'a str> {
        if !self.has_key {
            return None;
        }
        let (local, domain) = split_address(address)?;
        if !domain.eq_ignore_ascii_case(&self.domain) {
            return None;
        }
        let rest = local.strip_prefix(self.prefix.as_str())?;
        let key = rest.strip_suffix(self.suffix.as_str())?;
        (!key.is_empty()).then_some(key)
    }

    /// Matches an envelope recipient, exactly as given: by key
    /// (sub-addressing) or as the base address. Catch-all is the caller's
    /// policy, not the template's.
    pub fn match_recipient(&self, recipient: &str) -> Option<Match> {
        if let Some(key) = self.key_in(recipient) {
            return Some(Match::Key(key.to_string()));
        }
        let (local, domain) = split_address(recipient)?;
        (local == self.base_local && domain.eq_ignore_ascii_case(&self.domain))
            .then_some(Match::Base)
    }

    /// True when `recipient` is in the template's domain.
    pub fn in_domain(&self, recipient: &str) -> bool {
        split_address(recipient).is_some_and(|(_, d)| d.eq_ignore_ascii_case(&self.domain))
    }
}

/// Splits `local@domain` at the last `@`; both sides must be non-empty.
pub fn split_address(address: &str) -> Option<(&str, &str)> {
    let (local, domain) = address.rsplit_once('@')?;
    (!local.is_empty() && !domain.is_empty()).then_some((local, domain))
}

fn strip_angle_brackets(s: &str) -> &str {
    s.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Template {
        Template::parse(s).unwrap()
    }

    #[test]
    fn captures_the_key_like_gitlabs_regex() {
        let tpl = t("incoming+%{key}@incoming.example.com");
        assert_eq!(tpl.key_of("incoming+abc@incoming.example.com"), Some("abc"));
        assert_eq!(
            tpl.key_of("<incoming+a+b@incoming.example.com>"),
            Some("a+b")
        );
        assert_eq!(tpl.key_of("incoming+x@INCOMING.Example.COM"), Some("x"));
        assert_eq!(tpl.key_of("incoming+@incoming.example.com"), None);
        assert_eq!(tpl.key_of("Incoming+abc@incoming.example.com"), None);
        assert_eq!(tpl.key_of("incoming+abc@other.example.com"), None);
        assert_eq!(tpl.key_of("xincoming+abc@incoming.example.com"), None);
    }

    #[test]
    fn key_may_contain_at_signs_only_before_the_last_one() {
        let tpl = t("incoming+%{key}@d.example");
        assert_eq!(tpl.key_of("incoming+a@b@d.example"), Some("a@b"));
    }

    #[test]
    fn suffix_after_the_key_is_literal() {
        let tpl = t("gl-%{key}-in@d.example");
        assert_eq!(tpl.key_of("gl-k-in@d.example"), Some("k"));
        assert_eq!(tpl.key_of("gl-k-out@d.example"), None);
        assert_eq!(tpl.match_recipient("gl-in@d.example"), Some(Match::Base));
    }

    #[test]
    fn base_address_is_the_dedicated_address() {
        let tpl = t("incoming+%{key}@d.example");
        assert_eq!(tpl.match_recipient("incoming@D.example"), Some(Match::Base));
        assert_eq!(
            tpl.match_recipient("incoming+k@d.example"),
            Some(Match::Key("k".into()))
        );
        assert_eq!(tpl.match_recipient("other@d.example"), None);
        assert!(tpl.in_domain("other@D.EXAMPLE"));
        let dedicated = t("gitlab@d.example");
        assert_eq!(
            dedicated.match_recipient("gitlab@d.example"),
            Some(Match::Base)
        );
        assert_eq!(dedicated.key_of("gitlab@d.example"), None);
    }

    #[test]
    fn envelope_recipients_match_only_exactly() {
        let tpl = t("incoming+%{key}@d.example");
        assert_eq!(tpl.match_recipient("incoming+k@d.example\n"), None);
        assert_eq!(tpl.match_recipient(" incoming+k@d.example"), None);
        assert_eq!(tpl.match_recipient("<incoming+k@d.example>"), None);
        assert_eq!(tpl.key_of(" <incoming+k@d.example>\n"), Some("k"));
    }

    #[test]
    fn rejects_bad_templates() {
        assert_eq!(
            Template::parse("incoming"),
            Err(TemplateError::NotAnAddress)
        );
        assert_eq!(Template::parse("@d"), Err(TemplateError::NotAnAddress));
        assert_eq!(
            Template::parse("a+%{key}+%{key}@d"),
            Err(TemplateError::TwoKeys)
        );
        assert_eq!(
            Template::parse("a@%{key}.d"),
            Err(TemplateError::KeyInDomain)
        );
    }
}
