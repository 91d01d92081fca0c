//! A configuration error, with the place it was found, and what a section
//! checker returns so that `config` can put the place on it.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// A configuration error, with the place it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file.
    pub file: PathBuf,
    /// 1-based line and column, when the error has a place in the file.
    pub at: Option<(usize, usize)>,
    /// What is wrong and what to change.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.file.display(), self.message)
            }
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// What a section checker found wrong: the message and, when it has one,
/// the byte span of the bad value in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Where in the file; `None`: the section as a whole.
    pub span: Option<Range<usize>>,
    /// What is wrong and what to change.
    pub message: String,
}

impl Invalid {
    /// A problem at `span`.
    pub fn at(span: Range<usize>, message: impl Into<String>) -> Invalid {
        Invalid {
            span: Some(span),
            message: message.into(),
        }
    }

    /// A problem without a single place.
    pub fn new(message: impl Into<String>) -> Invalid {
        Invalid {
            span: None,
            message: message.into(),
        }
    }
}
