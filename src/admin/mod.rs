//! The commands an administrator runs, apart from the delivery path:
//! `setup` (from GitLab's gitlab.yml to a working Postfix route), `check`
//! (proves every link of that route) and `keygen` (ES256 signing keys),
//! with what they need: Postfix's configuration through `postconf`
//! (`postfix_conf`); file access as another user is `crate::access`,
//! which the configuration's `config_file` mode uses too. Nothing on the
//! delivery path imports from here.

pub mod check;
pub mod keygen;
pub(crate) mod postfix_conf;
pub mod setup;
