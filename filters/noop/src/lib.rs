//! `gatehouse-noop`: a proxy-wasm HTTP filter that lets every request through
//! untouched. `make bench` loads it to measure what any wasm filter costs
//! before it does any work, the floor the JWT filter is held against.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NoopRoot) });
}}

#[derive(Debug)]
struct NoopRoot;

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(NoopRequest))
    }
}

#[derive(Debug)]
struct NoopRequest;

impl Context for NoopRequest {}

// Every callback keeps its default: continue.
impl HttpContext for NoopRequest {}
