//! The error of loading a service's configuration: a file could not be read,
//! or what it holds is invalid.

use std::path::Path;

/// Why a configuration load failed. The message names the file (and, for
/// `Invalid`, whatever the service's parser names: document, field).
///
/// `E` is the service's own "invalid" error; `Display` passes it through
/// unchanged, so a message reads the same whichever service loads.
#[derive(Debug, thiserror::Error)]
pub enum LoadError<E> {
    /// A file or directory could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The path, as given.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The files were read, and do not make a valid configuration.
    #[error(transparent)]
    Invalid(E),
}

impl<E> LoadError<E> {
    /// Maps an I/O error on `path`:
    /// `std::fs::read(&path).map_err(LoadError::reading(&path))?`.
    pub fn reading(path: &Path) -> impl FnOnce(std::io::Error) -> Self + use<E> {
        let path = path.display().to_string();
        move |source| Self::Io { path, source }
    }

    /// An invalid configuration: `parse(text).map_err(LoadError::invalid)?`.
    pub fn invalid(error: impl Into<E>) -> Self {
        Self::Invalid(error.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("a.yaml: descriptors[0].key: descriptor has empty key")]
    struct Bad;

    #[test]
    fn messages_name_the_path_or_pass_the_cause_through() {
        let missing = std::fs::read("/nonexistent/gatehouse.yaml")
            .map_err(LoadError::<Bad>::reading(Path::new(
                "/nonexistent/gatehouse.yaml",
            )))
            .unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("reading /nonexistent/gatehouse.yaml: "),
            "{missing}"
        );
        assert_eq!(
            LoadError::<Bad>::invalid(Bad).to_string(),
            "a.yaml: descriptors[0].key: descriptor has empty key"
        );
    }
}
