//! Recipient addresses: GitLab's address template and how a recipient
//! matches it.
//!
//! GitLab turns `incoming_email.address` (e.g. `incoming+%{key}@example.com`)
//! into a regex: the template escaped, the first `%{key}` replaced by `(.+)`,
//! anchored, optionally inside `<…>`. Because everything around `%{key}` is
//! literal, that regex matches exactly when the address starts with the part
//! before `%{key}` and ends with the part after it; [`Template::key_of`] does
//! that comparison without a regex.
//!
//! Two kinds of matching, on purpose:
//! - in headers ([`Template::key_of`]) everything is case-sensitive, the
//!   domain included, because GitLab's regex is (`mail_key.rb` in GitLab's
//!   `gitlab-email_handler` gem): the key we log must be the key GitLab finds;
//! - the envelope recipient ([`Template::match_recipient`]) compares the
//!   domain case-insensitively (RFC 5321 §2.4), and
//!   [`Template::delivered_to`] then spells the domain as the template does,
//!   so the `Delivered-To:` line we post still gives GitLab the key.
//!
//! Pure functions only.

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
    /// The domain, spelled as in the template.
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

/// What is wrong with a template without `%{key}`, in the words both
/// `setup` (for gitlab.yml's address) and `check` (for ours) use.
pub const NO_KEY: &str = "has no %{key}: GitLab then finds no key in the address; \
                          use e.g. \"incoming+%{key}@incoming.example.com\"";

/// The template as written in the configuration (`incoming+%{key}@…`).
impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.has_key {
            true => write!(f, "{}{KEY}{}@{}", self.prefix, self.suffix, self.domain),
            false => write!(f, "{}@{}", self.prefix, self.domain),
        }
    }
}

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
            domain: domain.to_string(),
        })
    }

    /// The address for `key` (`incoming+KEY@domain`); `None` when the
    /// template has no `%{key}`.
    pub fn with_key(&self, key: &str) -> Option<String> {
        self.has_key
            .then(|| format!("{}{key}{}@{}", self.prefix, self.suffix, self.domain))
    }

    /// The base address (`incoming@domain`): the template without its key.
    pub fn base(&self) -> String {
        format!("{}@{}", self.base_local, self.domain)
    }

    /// The domain of the template, spelled as written there.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The key in a header value, as GitLab's regex `\A<?TEMPLATE>?\z`
    /// captures it: an optional `<` before and `>` after (each on its own,
    /// as in the regex), and every character compared case-sensitively,
    /// the domain included.
    pub fn key_of<'a>(&self, address: &'a str) -> Option<&'a str> {
        let a = address.trim();
        let a = a.strip_prefix('<').unwrap_or(a);
        let a = a.strip_suffix('>').unwrap_or(a);
        self.key_in(a, str::eq)
    }

    /// The key in exactly `address` (no white space or brackets around it),
    /// with the domains compared by `same_domain`.
    fn key_in<'a>(
        &self,
        address: &'a str,
        same_domain: impl Fn(&str, &str) -> bool,
    ) -> Option<&'a str> {
        if !self.has_key {
            return None;
        }
        let (local, domain) = split_address(address)?;
        if !same_domain(domain, &self.domain) {
            return None;
        }
        let rest = local.strip_prefix(self.prefix.as_str())?;
        let key = rest.strip_suffix(self.suffix.as_str())?;
        (!key.is_empty()).then_some(key)
    }

    /// Matches an envelope recipient, exactly as given: by key
    /// (sub-addressing) or as the base address; the domain in any case
    /// (RFC 5321: domains are case-insensitive). Catch-all is the caller's
    /// policy, not the template's.
    pub fn match_recipient(&self, recipient: &str) -> Option<Match> {
        if let Some(key) = self.key_in(recipient, str::eq_ignore_ascii_case) {
            return Some(Match::Key(key.to_string()));
        }
        let (local, domain) = split_address(recipient)?;
        (local == self.base_local && domain.eq_ignore_ascii_case(&self.domain))
            .then_some(Match::Base)
    }

    /// True when `recipient` is in the template's domain (in any case).
    pub fn in_domain(&self, recipient: &str) -> bool {
        split_address(recipient).is_some_and(|(_, d)| d.eq_ignore_ascii_case(&self.domain))
    }

    /// The address for our `Delivered-To:` line: `recipient` with its
    /// domain spelled as in the template when it is the template's domain
    /// in another case. GitLab matches headers case-sensitively, so
    /// `incoming+KEY@IN.EXAMPLE.NET` would otherwise give GitLab no key
    /// although the envelope routed it to KEY. An address in another
    /// domain is returned as given.
    pub fn delivered_to(&self, recipient: &str) -> String {
        match split_address(recipient) {
            Some((local, domain)) if domain.eq_ignore_ascii_case(&self.domain) => {
                format!("{local}@{}", self.domain)
            }
            _ => recipient.to_string(),
        }
    }
}

/// Splits `local@domain` at the last `@`; both sides must be non-empty.
pub fn split_address(address: &str) -> Option<(&str, &str)> {
    let (local, domain) = address.rsplit_once('@')?;
    (!local.is_empty() && !domain.is_empty()).then_some((local, domain))
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
        // GitLab's regex is case-sensitive, the domain included.
        assert_eq!(tpl.key_of("incoming+x@INCOMING.Example.COM"), None);
        // `<?` and `>?` are independent in GitLab's regex.
        assert_eq!(tpl.key_of("<incoming+x@incoming.example.com"), Some("x"));
        assert_eq!(tpl.key_of("incoming+x@incoming.example.com>"), Some("x"));
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
    fn envelope_domains_match_in_any_case_and_are_respelled() {
        let tpl = t("incoming+%{key}@In.Example.net");
        assert_eq!(tpl.domain(), "In.Example.net");
        assert_eq!(
            tpl.match_recipient("incoming+k@IN.EXAMPLE.NET"),
            Some(Match::Key("k".into()))
        );
        // The local part stays case-sensitive, as in GitLab.
        assert_eq!(tpl.match_recipient("INCOMING+k@in.example.net"), None);
        assert_eq!(
            tpl.delivered_to("incoming+k@IN.EXAMPLE.NET"),
            "incoming+k@In.Example.net"
        );
        assert_eq!(
            tpl.key_of(&tpl.delivered_to("incoming+k@in.example.NET")),
            Some("k")
        );
        assert_eq!(tpl.delivered_to("x@other.example"), "x@other.example");
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
