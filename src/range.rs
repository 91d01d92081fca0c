//! Every number a configuration file gives has a documented range, checked
//! at load with one wording: the key, the value and the range. Beyond the
//! range, arithmetic on times and sizes could overflow (an admin's
//! "unlimited" `u64::MAX` wrapped to a zero-byte read; a huge timeout
//! panicked every delivery); within it, none can.

use std::fmt::Display;
use std::ops::RangeInclusive;

/// `value` when it is in `range`, else what to write instead.
pub fn check<T: PartialOrd + Display + Copy>(
    key: &str,
    value: T,
    range: RangeInclusive<T>,
) -> Result<T, String> {
    if range.contains(&value) {
        return Ok(value);
    }
    Err(format!(
        "{key} = {value} is out of range: use {} to {}",
        range.start(),
        range.end()
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn says_key_value_and_range() {
        assert_eq!(super::check("[lmtp] max_connections", 5u64, 1..=10), Ok(5));
        assert_eq!(
            super::check("[gitlab] timeout_secs", u64::MAX, 1..=600),
            Err(
                "[gitlab] timeout_secs = 18446744073709551615 is out of range: use 1 to 600".into()
            )
        );
    }
}
