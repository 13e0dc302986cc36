//! Errors of the configuration, at the bottom of the crate: both the
//! filter's configuration (`config`) and the policy compiler (`policy`) use
//! them, and neither has to import the other for it.

/// Why a filter configuration was refused. `Display` names the field path.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The bytes are not JSON of the expected shape (unknown field, wrong type).
    #[error("{path}: {message}")]
    Syntax {
        /// Field path where parsing stopped, `.` for the document itself.
        path: String,
        /// What serde found wrong there.
        message: String,
    },
    /// The JSON has the right shape but a value is not allowed.
    #[error("{path}: {message}")]
    Invalid {
        /// Field path of the offending value.
        path: String,
        /// What is wrong and what to write instead.
        message: String,
    },
}
