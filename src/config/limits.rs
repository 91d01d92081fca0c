//! The `[limits]` section's checker: the largest message, which both
//! front doors and the delivery core enforce, and pipe mode's deadline.

use super::error::Invalid;
use crate::range;
use serde::Deserialize;
use std::time::Duration;

/// `deliver_deadline_secs` when not set: well below Postfix's default
/// `command_time_limit` (1000 s), so we defer before Postfix bounces.
pub(super) const DEFAULT_DEADLINE: Duration = Duration::from_secs(120);

/// The largest `max_message_size`: 2 GiB ("unlimited" is not a size).
const MAX_MESSAGE_SIZE: usize = 2 << 30;

/// The section as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLimits {
    max_message_size: usize,
    deliver_deadline_secs: u64,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_message_size: 25 * 1024 * 1024,
            deliver_deadline_secs: DEFAULT_DEADLINE.as_secs(),
        }
    }
}

/// Checks the section: the size limit in bytes and the pipe deadline.
pub(super) fn check(raw: RawLimits) -> Result<(usize, Duration), Invalid> {
    let size = range::check(
        "[limits] max_message_size",
        raw.max_message_size,
        1..=MAX_MESSAGE_SIZE,
    );
    let secs = range::check(
        "[limits] deliver_deadline_secs",
        raw.deliver_deadline_secs,
        1..=900,
    );
    Ok((
        size.map_err(Invalid::new)?,
        Duration::from_secs(secs.map_err(Invalid::new)?),
    ))
}
