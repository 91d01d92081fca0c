//! The LMTP protocol session.
