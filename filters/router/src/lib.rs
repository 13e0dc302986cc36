//! `gatehouse-router`: the proxy-wasm adapter of `gatehouse-router-core`.
//!
//! On each request it gathers the headers the rules read, asks the core for
//! the action, and applies it: the route header (the route table reads it
//! with `cluster_header`), other headers, a new `:path`. Envoy clears the
//! route cache when a wasm filter changes request headers, so the route
//! table matches again with the new values.
//!
//! Host calls go through `proxy_wasm::hostcalls`, which return `Result`.

use std::rc::Rc;

use gatehouse_router_core::{Request, RouterConfig};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, Status};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(RouterRoot::default()) });
}}

#[derive(Debug, Default)]
struct RouterRoot {
    config: Option<Rc<RouterConfig>>,
}

impl Context for RouterRoot {}

impl RootContext for RouterRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(b) => b.unwrap_or_default(),
            Err(status) => {
                log(
                    LogLevel::Critical,
                    &format!("gatehouse-router: cannot read plugin configuration: {status:?}"),
                );
                return false;
            }
        };
        match RouterConfig::parse(&bytes) {
            Ok(config) => {
                self.config = Some(Rc::new(config));
                true
            }
            Err(err) => {
                // Refusing the plugin keeps a bad config from serving traffic.
                log(
                    LogLevel::Critical,
                    &format!("gatehouse-router: invalid configuration: {err}"),
                );
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let config = self.config.clone()?;
        Some(Box::new(RouterRequest { config }))
    }
}

#[derive(Debug)]
struct RouterRequest {
    config: Rc<RouterConfig>,
}

impl Context for RouterRequest {}

impl HttpContext for RouterRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match self.route() {
            Ok(()) => Action::Continue,
            Err(status) => {
                // Fails closed: a request whose headers cannot be read is not
                // routed on a guess.
                log(
                    LogLevel::Error,
                    &format!("gatehouse-router: host call failed: {status:?}"),
                );
                let _ = hostcalls::send_http_response(
                    500,
                    vec![("content-type", "application/json")],
                    Some(br#"{"code":"filter_host_error"}"#),
                );
                Action::Pause
            }
        }
    }
}

impl RouterRequest {
    fn route(&self) -> Result<(), Status> {
        let mut headers = Vec::new();
        let (mut path, mut method) = (String::new(), String::new());
        let mut present = Vec::new();
        for (name, value) in hostcalls::get_map_bytes(MapType::HttpRequestHeaders)? {
            if name == self.config.route_header() {
                present.push(name.clone());
            }
            let wanted = match name.as_str() {
                ":path" | ":method" => true,
                n => self.config.reads_header(n),
            };
            if !wanted {
                continue;
            }
            let value = String::from_utf8(value)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            match name.as_str() {
                ":path" => path = value,
                ":method" => method = value,
                _ => headers.push((name, value)),
            }
        }
        let action = self.config.decide(&Request {
            path: &path,
            method: &method,
            headers: &headers,
        });
        // Removing a header that is not there still costs a host call and
        // a route-cache clear: only the route header is known to be there
        // or not; other removals are the configuration's own.
        for name in &action.remove {
            if name != self.config.route_header() || !present.is_empty() {
                hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None)?;
            }
        }
        for (name, value) in &action.set {
            hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))?;
        }
        if let Some(path) = &action.path {
            hostcalls::set_map_value(MapType::HttpRequestHeaders, ":path", Some(path))?;
        }
        Ok(())
    }
}

fn log(level: LogLevel, message: &str) {
    // Logging is best effort: if the host cannot log there is nowhere to report it.
    let _ = hostcalls::log(level, message);
}
