//! The configuration file as written: one raw struct per section, each
//! defined beside its checker. `from_gitlab` fills it in from GitLab's
//! gitlab.yml before the sections are checked.

use super::gitlab::RawGitlab;
use super::http::RawHttp;
use super::limits::RawLimits;
use super::lmtp::RawLmtp;
use super::log::RawLog;
use super::lookup::RawLookup;
use super::mailboxes::RawMailbox;
use crate::guard::RawSettings as RawGuard;
use serde::Deserialize;

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) gitlab: RawGitlab,
    pub(super) incoming_email: Option<RawMailbox>,
    pub(super) service_desk_email: Option<RawMailbox>,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) lmtp: RawLmtp,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) http: RawHttp,
    #[serde(default)]
    pub(super) guard: RawGuard,
    #[serde(default)]
    pub(super) lookup: RawLookup,
}
