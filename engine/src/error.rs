//! The one error type commands return: a message for the operator and an exit code.

use std::fmt;

/// A command failed; the message says what failed and, where it can, what to do.
#[derive(Debug)]
pub struct Failure {
    /// One line, no trailing newline.
    pub message: String,
    /// Process exit code.
    pub code: i32,
}

impl Failure {
    /// A failure of the input or the environment (exit code 1).
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            code: 1,
        }
    }

    /// A failure naming a file.
    pub fn at(path: &std::path::Path, message: impl fmt::Display) -> Self {
        Failure::new(format!("{}: {message}", path.display()))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What commands return.
pub type Result<T> = std::result::Result<T, Failure>;
