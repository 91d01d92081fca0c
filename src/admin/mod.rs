//! The commands an administrator runs, apart from the delivery path:
//! `setup` (from GitLab's gitlab.yml to a working Postfix route), `check`
//! (proves every link of that route) and `keygen` (ES256 signing keys),
//! with what they need: Postfix's configuration through `postconf`
//! (`postfix_conf`) and file access as another user (`access`). Nothing
//! on the delivery path imports from here.

pub(crate) mod access;
pub mod check;
pub mod keygen;
pub(crate) mod postfix_conf;
pub mod setup;
