//! `gatehouse-jwt`: the proxy-wasm adapter of `gatehouse-jwt-core`.
//!
//! It reads the plugin configuration in `on_configure` (refusing the plugin when
//! it is invalid), and on every request gathers the headers, asks the core what
//! to do and applies it. No decision lives here that is not a translation.
//!
//! Host calls go through `proxy_wasm::hostcalls`, which return `Result`; the
//! SDK's trait conveniences unwrap inside and would trap on a failed call.

use std::rc::Rc;
use std::time::UNIX_EPOCH;

use gatehouse_jwt_core::{Decision, FilterConfig, RequestView};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, Status};

proxy_wasm::main! {{
    // Also installs a panic hook that logs the panic before the trap.
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(JwtRoot::default()) });
}}

#[derive(Debug, Default)]
struct JwtRoot {
    config: Rc<FilterConfig>,
}

impl Context for JwtRoot {}

impl RootContext for JwtRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(status) => {
                log(
                    LogLevel::Critical,
                    &format!("gatehouse-jwt: cannot read plugin configuration: {status:?}"),
                );
                return false;
            }
        };
        match FilterConfig::parse(&bytes) {
            Ok(config) => {
                self.config = Rc::new(config);
                true
            }
            Err(err) => {
                // Returning false makes Envoy refuse the plugin, so a bad config
                // never serves traffic with defaults.
                log(
                    LogLevel::Critical,
                    &format!("gatehouse-jwt: invalid configuration: {err}"),
                );
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(JwtRequest {
            config: Rc::clone(&self.config),
        }))
    }
}

#[derive(Debug)]
struct JwtRequest {
    config: Rc<FilterConfig>,
}

impl Context for JwtRequest {}

impl HttpContext for JwtRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match self.check() {
            Ok(action) => action,
            Err(status) => deny_on_host_error(status),
        }
    }
}

impl JwtRequest {
    /// The whole request path: gather, ask the core, apply.
    fn check(&self) -> Result<Action, Status> {
        let headers = self.strip_reserved_headers()?;
        let now = hostcalls::get_current_time()?
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let pseudo = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map_or("", |(_, v)| v.as_str())
        };
        let view = RequestView {
            path: pseudo(":path"),
            host: pseudo(":authority"),
            method: pseudo(":method"),
            headers: &headers,
        };
        match self.config.policy().decide(&view, now) {
            Decision::Continue { remove, set } => {
                for name in remove {
                    hostcalls::set_map_value(MapType::HttpRequestHeaders, &name, None)?;
                }
                for (name, value) in set {
                    hostcalls::set_map_value(MapType::HttpRequestHeaders, &name, Some(&value))?;
                }
                Ok(Action::Continue)
            }
            Decision::Deny {
                status,
                headers,
                body,
            } => {
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                hostcalls::send_http_response(u32::from(status), headers, Some(body.as_bytes()))?;
                Ok(Action::Pause)
            }
        }
    }

    /// Removes every client-sent header the stack reserves for verified data,
    /// and returns the others (values lossily decoded: tokens are ASCII).
    fn strip_reserved_headers(&self) -> Result<Vec<(String, String)>, Status> {
        let mut kept = Vec::new();
        for (name, value) in hostcalls::get_map_bytes(MapType::HttpRequestHeaders)? {
            if self.config.is_reserved_header(&name) {
                hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, &name, None)?;
            } else {
                kept.push((name, String::from_utf8_lossy(&value).into_owned()));
            }
        }
        Ok(kept)
    }
}

/// Fails closed: a request whose headers cannot be inspected is not forwarded.
fn deny_on_host_error(status: Status) -> Action {
    log(
        LogLevel::Error,
        &format!("gatehouse-jwt: host call failed: {status:?}"),
    );
    let body = br#"{"code":"filter_host_error"}"#;
    let headers = [("content-type", "application/json")];
    // If even the local reply fails there is nothing left to try: pausing still
    // keeps the request from going upstream unchecked.
    let _ = hostcalls::send_http_response(500, headers.to_vec(), Some(body));
    Action::Pause
}

fn log(level: LogLevel, message: &str) {
    // Logging is best effort: if the host cannot log there is nowhere to report it.
    let _ = hostcalls::log(level, message);
}
