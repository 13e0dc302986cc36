//! Announcing the bound addresses: a log line, and the `GATEHOUSE_READY_FILE`
//! that tests (and supervisors) read the ports back from after binding port 0.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The variable naming the ready file.
pub const READY_FILE_VAR: &str = "GATEHOUSE_READY_FILE";

/// The ready file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing GATEHOUSE_READY_FILE")]
pub struct ReadyFileError(#[source] std::io::Error);

/// The addresses a service listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listening {
    /// The gRPC port Envoy calls.
    pub grpc: SocketAddr,
    /// The HTTP side port (`/healthz`, `/readyz`, `/metrics`).
    pub http: SocketAddr,
    /// A debug port, for services that have one.
    pub debug: Option<SocketAddr>,
}

impl Listening {
    /// Logs the addresses (`listening`, with `grpc`, `http` and, when there
    /// is one, `debug`) and, when `GATEHOUSE_READY_FILE` is set, writes them
    /// there as JSON: `{"grpc": "...", "http": "..."[, "debug": "..."]}`.
    ///
    /// # Errors
    /// The file could not be written.
    pub fn announce(&self) -> Result<(), ReadyFileError> {
        let (grpc, http) = (self.grpc, self.http);
        match self.debug {
            Some(debug_addr) => tracing::info!(%grpc, %http, debug = %debug_addr, "listening"),
            None => tracing::info!(%grpc, %http, "listening"),
        }
        match std::env::var_os(READY_FILE_VAR) {
            Some(path) => self.write(Path::new(&path)),
            None => Ok(()),
        }
    }

    /// Writes the JSON to `path`: to a temporary file, then renamed, so a
    /// reader never sees half a file.
    ///
    /// # Errors
    /// The file could not be written.
    pub fn write(&self, path: &Path) -> Result<(), ReadyFileError> {
        let mut body = serde_json::json!({ "grpc": self.grpc, "http": self.http });
        if let (Some(debug), Some(object)) = (self.debug, body.as_object_mut()) {
            object.insert("debug".into(), serde_json::json!(debug));
        }
        let tmp = PathBuf::from(path).with_extension("tmp");
        std::fs::write(&tmp, body.to_string()).map_err(ReadyFileError)?;
        std::fs::rename(&tmp, path).map_err(ReadyFileError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_ready_file_holds_each_address() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ready.json");
        let mut listening = Listening {
            grpc: "127.0.0.1:9191".parse().unwrap(),
            http: "127.0.0.1:9192".parse().unwrap(),
            debug: None,
        };
        listening.write(&path).unwrap();
        assert_eq!(
            read(&path),
            serde_json::json!({ "grpc": "127.0.0.1:9191", "http": "127.0.0.1:9192" })
        );
        listening.debug = Some("127.0.0.1:6070".parse().unwrap());
        listening.write(&path).unwrap();
        assert_eq!(read(&path)["debug"], "127.0.0.1:6070");
        assert!(!path.with_extension("tmp").exists(), "renamed into place");
    }

    #[test]
    fn an_unwritable_ready_file_names_the_variable() {
        let listening = Listening {
            grpc: "127.0.0.1:1".parse().unwrap(),
            http: "127.0.0.1:2".parse().unwrap(),
            debug: None,
        };
        let err = listening
            .write(Path::new("/nonexistent/dir/ready.json"))
            .unwrap_err();
        assert_eq!(err.to_string(), "writing GATEHOUSE_READY_FILE");
    }
}
