//! What GitLab's answers to `check`'s two probes say: a post with a
//! deliberately invalid token (its 401 proves the route and, with its
//! `Date`, the clock), and a post signed with our real credential of a
//! message GitLab drops unread (its 2xx proves GitLab accepts our token).
//! Part of `outcome`: the HTTP status of GitLab's answers is read here and
//! in the client only.

use super::*;

/// What GitLab's answer to a probe (a post with a deliberately invalid
/// token, which it answers 401) says, for `check` and for readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// GitLab (or something in its place) answered at all.
    pub answered: bool,
    /// The route to the API exists.
    pub route_exists: bool,
    /// `check`'s words for it, after the endpoint.
    pub text: String,
    /// What it means for readiness.
    pub readiness: Readiness,
}

impl Probe {
    /// Classifies the answer to a probe.
    pub fn classify(posted: Posted) -> Probe {
        let status = match posted {
            Posted::Answer { status: 401, .. } => {
                return Probe {
                    answered: true,
                    route_exists: true,
                    text: " answers 401 to an invalid token: the route exists".into(),
                    readiness: Readiness::Answering,
                }
            }
            Posted::Answer { status, .. } => status,
            Posted::Unreachable(e) | Posted::Lost(e) | Posted::Local(e) => {
                return Probe {
                    answered: false,
                    route_exists: false,
                    text: format!(": cannot reach GitLab: {e}"),
                    readiness: Readiness::Failing(format!(
                        "GitLab is failing: cannot reach GitLab: {e}"
                    )),
                }
            }
        };
        let text = match status {
            404 => " answers 404: check [gitlab] url, or GitLab is too old for this API".into(),
            s => format!(
                " answers {s} to an invalid token, expected 401: check [gitlab] url and proxies"
            ),
        };
        let readiness = match Posting::classify(Posted::Answer {
            status,
            retry_after: None,
            gitlab_refusal: false,
        })
        .readiness
        {
            Readiness::Failing(why) => Readiness::Failing(why),
            _ => Readiness::Answering,
        };
        Probe {
            answered: true,
            route_exists: false,
            text,
            readiness,
        }
    }
}

/// What GitLab's answer to the signed probe (an `Auto-Submitted` message
/// posted with our real token, see `admin::check`) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenProbe {
    /// GitLab took the token.
    pub accepted: bool,
    /// `check`'s words for it; `alg` names the token's algorithm.
    pub text: String,
}

impl TokenProbe {
    /// Classifies the answer to the signed probe of a token signed with `alg`.
    pub fn classify(posted: Posted, alg: &str) -> TokenProbe {
        let (accepted, text) = match posted {
            Posted::Answer { status, .. } if (200..300).contains(&status) => {
                (true, format!("GitLab accepts our token ({alg})"))
            }
            Posted::Answer {
                status: 401 | 403, ..
            } if alg == "HS256" => (
                false,
                "GitLab refuses our token: the secret differs from GitLab's (rotated?)".into(),
            ),
            Posted::Answer {
                status: 401 | 403, ..
            } => (
                false,
                "GitLab refuses our token: our public key is not among its public_key_files".into(),
            ),
            Posted::Answer { status, .. } => (
                false,
                format!("GitLab answers {status} to our token, expected 200"),
            ),
            Posted::Unreachable(e) | Posted::Lost(e) | Posted::Local(e) => {
                (false, format!("our token not tried: {e}"))
            }
        };
        TokenProbe { accepted, text }
    }
}

#[cfg(test)]
#[test]
fn a_refused_token_is_told_from_a_missing_route() {
    let answer = |status| Posted::Answer {
        status,
        retry_after: None,
        gitlab_refusal: false,
    };
    assert!(TokenProbe::classify(answer(200), "HS256").accepted);
    for status in [401, 403] {
        let refused = TokenProbe::classify(answer(status), "HS256");
        assert!(!refused.accepted && refused.text.contains("secret differs"));
        let refused = TokenProbe::classify(answer(status), "ES256");
        assert!(!refused.accepted && refused.text.contains("public_key_files"));
    }
    let other = TokenProbe::classify(answer(500), "HS256");
    assert!(!other.accepted && other.text.contains("500"));
    assert!(!TokenProbe::classify(Posted::Unreachable("down".into()), "HS256").accepted);
}
