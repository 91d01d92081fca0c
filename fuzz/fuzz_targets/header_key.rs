//! cargo-fuzz target; the entry point lives in `gitlab_mailgate::fuzzing`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gitlab_mailgate::fuzzing::header_key(data));
