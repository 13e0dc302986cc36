//! `gatehouse diag`: the diagnostics page and the developer portal, served
//! by the CLI that reads the resources. The route table and the Mappings'
//! `docs` come from the resources; the live figures from Envoy's admin and
//! the services' `/metrics`, asked at each refresh; API documents are
//! fetched through Envoy, as clients see them, and refreshed in the
//! background. The pages are rendered by `gatehouse_config::diag`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatehouse_config::diag::{self, Api, Live};
use gatehouse_config::{Mapping, RenderOptions, Resources, render_bootstrap};
use serde_json::Value;

use crate::http;

/// How long one fetch may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Where the figures come from.
pub struct Sources {
    /// Envoy's admin, `host:port`.
    pub admin: String,
    /// gatehouse-ratelimit's `/metrics` URL.
    pub ratelimit_metrics: Option<String>,
    /// gatehouse-authz's `/metrics` URL.
    pub authz_metrics: Option<String>,
    /// Envoy's listener, as clients reach it: API documents are fetched there.
    pub envoy_url: String,
    /// How often API documents are fetched again.
    pub refresh: Duration,
}

struct State {
    routes: Result<Vec<diag::RouteRow>, String>,
    sources: Sources,
    apis: Mutex<Vec<Api>>,
}

/// Serves the pages on `listen` until the process is stopped.
pub fn serve(
    resources: &Resources,
    options: &RenderOptions,
    listen: &str,
    sources: Sources,
) -> ExitCode {
    let routes = render_bootstrap(resources, options)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_yaml_ng::from_str::<Value>(&text).map_err(|e| e.to_string()))
        .map(|b| diag::routes(&b));
    let documented: Vec<Mapping> = resources
        .mappings
        .iter()
        .filter(|m| m.docs.as_ref().is_some_and(|d| !d.ignored))
        .cloned()
        .collect();
    let listener = match TcpListener::bind(listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("gatehouse: listening on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let address = listener
        .local_addr()
        .map_or_else(|_| listen.to_owned(), |a| a.to_string());
    let state = Arc::new(State {
        routes,
        sources,
        apis: Mutex::new(Vec::new()),
    });
    fetch_apis(&state, &documented);
    {
        let state = state.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(state.sources.refresh);
                fetch_apis(&state, &documented);
            }
        });
    }
    println!(
        "gatehouse diag: diagnostics on http://{address}/ and the API portal on http://{address}/portal"
    );
    for stream in listener.incoming().flatten() {
        let state = state.clone();
        std::thread::spawn(move || answer(stream, &state));
    }
    ExitCode::SUCCESS
}

/// Fetches every documented Mapping's API document through Envoy.
fn fetch_apis(state: &State, documented: &[Mapping]) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let apis = documented
        .iter()
        .filter_map(|m| {
            let docs = m.docs.as_ref()?;
            let source = match (&docs.url, &docs.path) {
                (Some(url), _) => url.clone(),
                (None, path) => format!(
                    "{}{}{}",
                    state.sources.envoy_url.trim_end_matches('/'),
                    m.prefix.trim_end_matches('/'),
                    path.as_deref().unwrap_or("/")
                ),
            };
            let timeout = docs.timeout_ms.map_or(TIMEOUT, Duration::from_millis);
            let document = http::get_url(&source, timeout)
                .map_err(|e| format!("fetching {source}: {e}"))
                .and_then(|text| diag::read_api(&text));
            Some(Api {
                name: docs.display_name.clone().unwrap_or_else(|| m.name.clone()),
                prefix: m.prefix.clone(),
                source,
                document,
                fetched_at: now,
            })
        })
        .collect();
    *state.apis.lock().unwrap_or_else(|e| e.into_inner()) = apis;
}

fn live(state: &State) -> Live {
    let admin = &state.sources.admin;
    let json = |path: &str| {
        http::get(admin, path, TIMEOUT)
            .and_then(|body| serde_json::from_str::<Value>(&body).map_err(|e| e.to_string()))
            .map_err(|e| format!("{admin}{path}: {e}"))
    };
    let envoy = json("/stats?format=json&filter=upstream_rq_")
        .and_then(|stats| json("/clusters?format=json").map(|c| diag::cluster_figures(&stats, &c)));
    let metrics = |url: &Option<String>| {
        url.as_ref().map(|u| {
            http::get_url(u, TIMEOUT)
                .map(|page| diag::samples(&page))
                .map_err(|e| format!("{u}: {e}"))
        })
    };
    Live {
        routes: state.routes.clone(),
        envoy,
        ratelimit: metrics(&state.sources.ratelimit_metrics),
        authz: metrics(&state.sources.authz_metrics),
    }
}

fn answer(mut stream: TcpStream, state: &State) {
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let mut head = Vec::new();
    let mut buf = [0_u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut parts = head.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let path = target.split('?').next().unwrap_or_default();
    let (status, body) = match (method, path) {
        ("GET", "/") => (
            "200 OK",
            diag::page(
                "Gatehouse diagnostics",
                &format!(
                    "<p>Live: refreshed every 2 s, last at <span id=updated>load</span>.</p><div id=live>{}</div>",
                    diag::live_html(&live(state))
                ),
                true,
            ),
        ),
        ("GET", "/live") => ("200 OK", diag::live_html(&live(state))),
        ("GET", "/portal") => {
            let apis = state.apis.lock().unwrap_or_else(|e| e.into_inner()).clone();
            (
                "200 OK",
                diag::page("API portal", &diag::portal_html(&apis), false),
            )
        }
        ("GET", _) => (
            "404 Not Found",
            diag::page("Not found", "<p>No such page.</p>", false),
        ),
        _ => ("405 Method Not Allowed", String::new()),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\
Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'\r\n\
Connection: close\r\n\r\n{body}",
        body.len()
    );
}
