//! The diagnostics page and the developer portal of `gatehouse diag`, as
//! pure functions: figures in, HTML out. Fetching the figures (Envoy's admin,
//! the services' `/metrics`, the API documents) is the binary's; here they
//! arrive as values or as the error that stopped them, and an error is shown
//! where the figures would have been.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

/// Text made safe inside HTML.
#[must_use]
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One sample of a Prometheus text exposition: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name.
    pub name: String,
    /// `{a="b",...}` as written, empty without labels.
    pub labels: String,
    /// The value.
    pub value: f64,
}

/// The samples of a Prometheus text page, histogram buckets, sums and counts
/// left out (a page shows counters and gauges).
#[must_use]
pub fn samples(page: &str) -> Vec<Sample> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let value: f64 = value.trim().parse().ok()?;
            let (name, labels) = match series.find('{') {
                Some(i) => (&series[..i], &series[i..]),
                None => (series, ""),
            };
            if ["_bucket", "_sum", "_count", "_created"]
                .iter()
                .any(|s| name.ends_with(s))
            {
                return None;
            }
            Some(Sample {
                name: name.to_owned(),
                labels: labels.to_owned(),
                value,
            })
        })
        .collect()
}

/// A route as the page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRow {
    /// The virtual host's domains.
    pub hosts: String,
    /// The route's name.
    pub name: String,
    /// What it matches (`prefix /api/`, `path /x`, `regex ...`).
    pub matches: String,
    /// Its cluster, or what it does instead.
    pub target: String,
    /// The cluster, when it has one.
    pub cluster: Option<String>,
}

/// The routes of every listener's inline route table in a rendered
/// bootstrap, in the order Envoy tries them.
#[must_use]
pub fn routes(bootstrap: &Value) -> Vec<RouteRow> {
    let mut rows = Vec::new();
    let managers = bootstrap["static_resources"]["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["filter_chains"].as_array().into_iter().flatten())
        .flat_map(|c| c["filters"].as_array().into_iter().flatten())
        .filter(|f| f["name"] == "envoy.filters.network.http_connection_manager");
    let mut seen = std::collections::BTreeSet::new();
    for manager in managers {
        let config = &manager["typed_config"]["route_config"];
        // TLS and cleartext chains share route tables: list each once.
        if !seen.insert(config["name"].to_string() + &config["virtual_hosts"].to_string()) {
            continue;
        }
        for vhost in config["virtual_hosts"].as_array().into_iter().flatten() {
            let hosts = vhost["domains"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ");
            for r in vhost["routes"].as_array().into_iter().flatten() {
                let m = &r["match"];
                let matches = ["prefix", "path", "path_separated_prefix"]
                    .iter()
                    .find_map(|k| m[*k].as_str().map(|v| format!("{k} {v}")))
                    .or_else(|| {
                        m["safe_regex"]["regex"]
                            .as_str()
                            .map(|v| format!("regex {v}"))
                    })
                    .unwrap_or_default();
                let cluster = r["route"]["cluster"].as_str().map(str::to_owned);
                let target = match (&cluster, r["direct_response"]["status"].as_u64()) {
                    (Some(c), _) => c.clone(),
                    (None, Some(status)) => format!("answers {status}"),
                    (None, None) if r.get("redirect").is_some() => "redirects".to_owned(),
                    _ => "weighted clusters".to_owned(),
                };
                rows.push(RouteRow {
                    hosts: hosts.clone(),
                    name: r["name"].as_str().unwrap_or_default().to_owned(),
                    matches,
                    target,
                    cluster,
                });
            }
        }
    }
    rows
}

/// A cluster's figures from Envoy's admin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterFigures {
    /// `upstream_rq_total`, `upstream_rq_2xx`, `_4xx`, `_5xx`.
    pub requests: [u64; 4],
    /// Each endpoint and whether it is healthy.
    pub endpoints: Vec<(String, bool)>,
}

/// Figures per cluster from `/stats?format=json` and `/clusters?format=json`.
#[must_use]
pub fn cluster_figures(stats: &Value, clusters: &Value) -> BTreeMap<String, ClusterFigures> {
    let mut out: BTreeMap<String, ClusterFigures> = BTreeMap::new();
    for stat in stats["stats"].as_array().into_iter().flatten() {
        let (Some(name), Some(value)) = (stat["name"].as_str(), stat["value"].as_u64()) else {
            continue;
        };
        let Some(rest) = name.strip_prefix("cluster.") else {
            continue;
        };
        for (i, suffix) in [
            ".upstream_rq_total",
            ".upstream_rq_2xx",
            ".upstream_rq_4xx",
            ".upstream_rq_5xx",
        ]
        .iter()
        .enumerate()
        {
            if let Some(cluster) = rest.strip_suffix(suffix) {
                out.entry(cluster.to_owned()).or_default().requests[i] = value;
            }
        }
    }
    for status in clusters["cluster_statuses"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(name) = status["name"].as_str() else {
            continue;
        };
        let entry = out.entry(name.to_owned()).or_default();
        for h in status["host_statuses"].as_array().into_iter().flatten() {
            let sa = &h["address"]["socket_address"];
            let addr = format!(
                "{}:{}",
                sa["address"].as_str().unwrap_or_default(),
                sa["port_value"].as_u64().unwrap_or_default()
            );
            let health = &h["health_status"];
            let failing = health
                .as_object()
                .into_iter()
                .flatten()
                .any(|(k, v)| k.starts_with("failed_") && v == true)
                || health["eds_health_status"]
                    .as_str()
                    .is_some_and(|s| s != "HEALTHY" && s != "UNKNOWN");
            entry.endpoints.push((addr, !failing));
        }
    }
    out
}

/// What the live part of the diagnostics page shows; each source is its
/// figures or the error that stopped them.
#[derive(Debug, Clone)]
pub struct Live {
    /// The routes, from the resources.
    pub routes: Result<Vec<RouteRow>, String>,
    /// Envoy's figures per cluster.
    pub envoy: Result<BTreeMap<String, ClusterFigures>, String>,
    /// gatehouse-ratelimit's `/metrics`, when configured.
    pub ratelimit: Option<Result<Vec<Sample>, String>>,
    /// gatehouse-authz's `/metrics`, when configured.
    pub authz: Option<Result<Vec<Sample>, String>>,
}

fn error_box(out: &mut String, what: &str, error: &str) {
    let _ = write!(
        out,
        "<p class=error role=alert>{}: {}</p>",
        escape(what),
        escape(error)
    );
}

/// The live part of the diagnostics page (replaced in place every few
/// seconds by the page's script).
#[must_use]
pub fn live_html(live: &Live) -> String {
    let mut out = String::new();
    out.push_str("<section id=routes><h2>Routes</h2>");
    match (&live.routes, &live.envoy) {
        (Err(e), _) => error_box(&mut out, "the resources do not render", e),
        (Ok(routes), envoy) => {
            if let Err(e) = envoy {
                error_box(&mut out, "Envoy's admin", e);
            }
            let figures = envoy.as_ref().ok();
            out.push_str("<table><thead><tr><th>host</th><th>route</th><th>matches</th><th>goes to</th><th>requests</th><th>2xx</th><th>4xx</th><th>5xx</th><th>endpoints</th></tr></thead><tbody>");
            for r in routes {
                let f = r
                    .cluster
                    .as_ref()
                    .and_then(|c| figures.and_then(|f| f.get(c)));
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td>",
                    escape(&r.hosts),
                    escape(&r.name),
                    escape(&r.matches),
                    escape(&r.target)
                );
                match f {
                    Some(f) => {
                        for n in f.requests {
                            let _ = write!(out, "<td class=num>{n}</td>");
                        }
                        out.push_str("<td>");
                        for (addr, healthy) in &f.endpoints {
                            let _ = write!(
                                out,
                                "<span class={}>{} {}</span> ",
                                if *healthy { "healthy" } else { "unhealthy" },
                                escape(addr),
                                if *healthy { "healthy" } else { "failing" }
                            );
                        }
                        if f.endpoints.is_empty() && r.cluster.is_some() {
                            out.push_str("<span class=unhealthy>no endpoints</span>");
                        }
                        out.push_str("</td>");
                    }
                    None => out.push_str("<td colspan=5></td>"),
                }
                out.push_str("</tr>");
            }
            out.push_str("</tbody></table>");
        }
    }
    out.push_str("</section>");
    for (id, title, source) in [
        ("ratelimit", "gatehouse-ratelimit", &live.ratelimit),
        ("authz", "gatehouse-authz", &live.authz),
    ] {
        let _ = write!(out, "<section id={id}><h2>{title}</h2>");
        match source {
            None => {
                let _ = write!(out, "<p>not configured (<code>--{id}-metrics</code>)</p>");
            }
            Some(Err(e)) => error_box(&mut out, &format!("{title}'s /metrics"), e),
            Some(Ok(samples)) => {
                out.push_str("<table><thead><tr><th>metric</th><th>labels</th><th>value</th></tr></thead><tbody>");
                for s in samples {
                    let _ = write!(
                        out,
                        "<tr><td>{}</td><td><code>{}</code></td><td class=num>{}</td></tr>",
                        escape(&s.name),
                        escape(&s.labels),
                        s.value
                    );
                }
                out.push_str("</tbody></table>");
            }
        }
        out.push_str("</section>");
    }
    out
}

const STYLE: &str = "body{font:15px/1.4 system-ui,sans-serif;margin:1.5em;color:#1b1f23;max-width:1200px}\
nav a{margin-right:1em}h2{margin-top:1.5em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25em .5em;border-bottom:1px solid #eee;vertical-align:top}\
td.num{text-align:right;font-variant-numeric:tabular-nums}code{font-size:13px}\
.healthy{color:#116329}.unhealthy{color:#b00020;font-weight:600}\
.error{background:#fde7e9;border:1px solid #b00020;padding:.5em;color:#b00020}\
.op{font-weight:600;display:inline-block;min-width:4em}";

/// A whole page: the navigation, `body`, and for the diagnostics page the
/// script that swaps the live part every two seconds (no reload).
#[must_use]
pub fn page(title: &str, body: &str, live: bool) -> String {
    let script = if live {
        "<script>setInterval(async()=>{try{const r=await fetch('/live',{cache:'no-store'});\
if(r.ok){document.getElementById('live').innerHTML=await r.text();\
document.getElementById('updated').textContent=new Date().toLocaleTimeString()}}catch(e){\
document.getElementById('updated').textContent='the page lost gatehouse diag: '+e}},2000)</script>"
    } else {
        ""
    };
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
<title>{title}</title><style>{STYLE}</style></head><body><h1>{title}</h1>\
<nav><a href=\"/\">Diagnostics</a><a href=\"/portal\">API portal</a></nav>{body}{script}</body></html>",
        title = escape(title)
    )
}

/// One API in the portal: its name, where its document comes from, and the
/// document's operations or why it could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Api {
    /// `docs.display_name`, else the Mapping's name.
    pub name: String,
    /// The route it is served under.
    pub prefix: String,
    /// Where the document was fetched.
    pub source: String,
    /// The operations, or the fetch's error.
    pub document: Result<ApiDocument, String>,
    /// When it was last fetched (Unix seconds).
    pub fetched_at: u64,
}

/// What the portal shows of an OpenAPI document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiDocument {
    /// `info.title` and `info.version`.
    pub title: String,
    /// `info.description`.
    pub description: String,
    /// `(METHOD, path, summary)` in the document's order.
    pub operations: Vec<(String, String, String)>,
}

/// An OpenAPI (3.x) or Swagger (2.0) document, JSON or YAML, read for the
/// portal.
///
/// # Errors
/// Text that is neither, or a document without `paths`.
pub fn read_api(text: &str) -> Result<ApiDocument, String> {
    let doc: Value = serde_json::from_str(text)
        .or_else(|_| serde_yaml_ng::from_str(text))
        .map_err(|e| format!("not JSON or YAML: {e}"))?;
    if doc.get("openapi").is_none() && doc.get("swagger").is_none() {
        return Err("not an OpenAPI document (no `openapi` or `swagger` field)".into());
    }
    let paths = doc["paths"]
        .as_object()
        .ok_or("the document has no `paths`")?;
    let mut operations = Vec::new();
    for (path, item) in paths {
        for method in [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ] {
            if let Some(op) = item.get(method) {
                let summary = op["summary"]
                    .as_str()
                    .or_else(|| op["operationId"].as_str())
                    .unwrap_or_default();
                operations.push((
                    method.to_ascii_uppercase(),
                    path.clone(),
                    summary.to_owned(),
                ));
            }
        }
    }
    let info = &doc["info"];
    Ok(ApiDocument {
        title: format!(
            "{} {}",
            info["title"].as_str().unwrap_or_default(),
            info["version"].as_str().unwrap_or_default()
        )
        .trim()
        .to_owned(),
        description: info["description"].as_str().unwrap_or_default().to_owned(),
        operations,
    })
}

/// The portal's body: every API with its operations, or its error.
#[must_use]
pub fn portal_html(apis: &[Api]) -> String {
    let mut out = String::new();
    if apis.is_empty() {
        out.push_str("<p>No Mapping has <code>docs</code>: add <code>docs: {path: /openapi.json}</code> to a Mapping to list its API here.</p>");
    }
    for api in apis {
        let _ = write!(
            out,
            "<section class=api><h2>{}</h2><p>under <code>{}</code>, from <code>{}</code></p>",
            escape(&api.name),
            escape(&api.prefix),
            escape(&api.source)
        );
        match &api.document {
            Err(e) => error_box(&mut out, "the API document could not be read", e),
            Ok(doc) => {
                let _ = write!(out, "<p><strong>{}</strong></p>", escape(&doc.title));
                if !doc.description.is_empty() {
                    let _ = write!(out, "<p>{}</p>", escape(&doc.description));
                }
                out.push_str(
                    "<table><thead><tr><th>operation</th><th>summary</th></tr></thead><tbody>",
                );
                for (method, path, summary) in &doc.operations {
                    let _ = write!(
                        out,
                        "<tr><td><span class=op>{}</span> <code>{}</code></td><td>{}</td></tr>",
                        escape(method),
                        escape(path),
                        escape(summary)
                    );
                }
                out.push_str("</tbody></table>");
            }
        }
        out.push_str("</section>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_outside_cannot_become_markup() {
        assert_eq!(
            escape("<script>alert('x')</script> & \""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;"
        );
        let html = portal_html(&[Api {
            name: "<b>x</b>".into(),
            prefix: "/a/".into(),
            source: "http://e/a/openapi".into(),
            document: Err("<img src=x onerror=alert(1)>".into()),
            fetched_at: 0,
        }]);
        assert!(!html.contains("<img") && !html.contains("<b>x"), "{html}");
        assert!(html.contains("role=alert"));
    }

    #[test]
    fn prometheus_pages_give_counters_and_gauges() {
        let page = "# HELP x_total X\n# TYPE x_total counter\nx_total{code=\"OK\"} 3\ny 1.5\nz_bucket{le=\"1\"} 2\nz_sum 4\nz_count 2\n";
        assert_eq!(
            samples(page),
            [
                Sample {
                    name: "x_total".into(),
                    labels: "{code=\"OK\"}".into(),
                    value: 3.0
                },
                Sample {
                    name: "y".into(),
                    labels: String::new(),
                    value: 1.5
                }
            ]
        );
    }

    #[test]
    fn openapi_documents_give_their_operations_in_json_or_yaml() {
        let yaml = "openapi: 3.0.0\ninfo: {title: Pets, version: '1.0'}\npaths:\n  /pets:\n    get: {summary: List pets}\n    post: {operationId: addPet}\n";
        let doc = read_api(yaml).expect("yaml");
        assert_eq!(doc.title, "Pets 1.0");
        assert_eq!(
            doc.operations,
            [
                ("GET".into(), "/pets".into(), "List pets".into()),
                ("POST".into(), "/pets".into(), "addPet".into())
            ]
        );
        assert!(read_api("{\"swagger\": \"2.0\", \"paths\": {}}").is_ok());
        assert!(read_api("{\"hello\": 1}").is_err());
        assert!(read_api("<html>").is_err());
    }

    #[test]
    fn envoy_figures_join_requests_and_endpoint_health() {
        let stats = serde_json::json!({"stats": [
            {"name": "cluster.api.upstream_rq_total", "value": 7},
            {"name": "cluster.api.upstream_rq_5xx", "value": 2},
            {"name": "http.ingress.rq_total", "value": 9}
        ]});
        let clusters = serde_json::json!({"cluster_statuses": [{"name": "api", "host_statuses": [
            {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 80}}, "health_status": {"failed_active_health_check": true}}
        ]}]});
        let figures = cluster_figures(&stats, &clusters);
        assert_eq!(figures["api"].requests, [7, 0, 0, 2]);
        assert_eq!(
            figures["api"].endpoints,
            [("10.0.0.1:80".to_owned(), false)]
        );
        let html = live_html(&Live {
            routes: Ok(vec![RouteRow {
                hosts: "*".into(),
                name: "api".into(),
                matches: "prefix /api/".into(),
                target: "api".into(),
                cluster: Some("api".into()),
            }]),
            envoy: Ok(figures),
            ratelimit: Some(Err("connection refused".into())),
            authz: None,
        });
        assert!(html.contains("10.0.0.1:80 failing"), "{html}");
        assert!(
            html.contains("gatehouse-ratelimit&#39;s /metrics: connection refused"),
            "{html}"
        );
    }
}
