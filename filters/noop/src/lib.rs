//! `gatehouse-noop`: a proxy-wasm HTTP filter that does no work on a
//! request. `make bench` loads it to measure what any wasm filter costs
//! before it does any work: the floor the JWT filter is held against.
//!
//! Given gatehouse-session's plugin configuration, it only adds the
//! configuration's `verified_header` (value `1`) to every request: the floor
//! of the SSO fast path, which no check can go below (the `sso` set). It
//! checks nothing, so it is a benchmark part and never a filter to deploy.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NoopRoot::default()) });
}}

#[derive(Debug, Default)]
struct NoopRoot {
    /// The header every request gets, if the configuration names one.
    mark: Option<Rc<str>>,
}

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        if config.is_empty() {
            return true;
        }
        match serde_json::from_slice::<serde_json::Value>(&config) {
            Ok(value) => {
                self.mark = value
                    .get("verified_header")
                    .and_then(serde_json::Value::as_str)
                    .map(Rc::from);
                true
            }
            Err(e) => {
                let _ = hostcalls::log(
                    LogLevel::Critical,
                    &format!("gatehouse-noop: the configuration is not JSON: {e}"),
                );
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(NoopRequest {
            mark: self.mark.clone(),
        }))
    }
}

#[derive(Debug)]
struct NoopRequest {
    mark: Option<Rc<str>>,
}

impl Context for NoopRequest {}

impl HttpContext for NoopRequest {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if let Some(mark) = &self.mark {
            let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, mark, "1");
        }
        Action::Continue
    }
}
