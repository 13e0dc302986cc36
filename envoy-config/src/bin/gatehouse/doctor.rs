//! `gatehouse doctor <url>`: walks a request hop by hop, as the FAQ's "verify
//! each network hop" asks, and stops at the first broken one. The route and
//! filters come from the resources (`gatehouse_config::doctor`); the rest is
//! asked of the running parts: Envoy's admin for its clusters and their
//! endpoints' health, the side services' gRPC health checks, and a TCP
//! connection to each endpoint from this machine.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

use crate::http::resolve;

use gatehouse_config::doctor::{Action, Matched, Probe, route};
use gatehouse_config::{RenderOptions, Resources, render_bootstrap};
use serde_json::Value;

/// How long one check waits.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The request: `[http://]host[:port]/path?query`, with a method and headers.
pub struct Request {
    /// `GET` by default.
    pub method: String,
    /// `-H 'Name: value'`.
    pub headers: Vec<String>,
    /// The URL.
    pub url: String,
}

/// One hop's line: `ok` or `failed`, the hop, what was found, and for a
/// failure the next thing to check.
fn line(ok: bool, hop: &str, what: &str) {
    println!("{:<7} {hop:<9} {what}", if ok { "ok" } else { "failed" });
}

fn failed(hop: &str, what: &str, next: &str) -> ExitCode {
    line(
        false,
        hop,
        &format!("{what}\n                  next: {next}"),
    );
    ExitCode::FAILURE
}

/// Runs every hop; the exit status is 1 at the first broken one.
pub fn run(
    resources: &Resources,
    options: &RenderOptions,
    admin: &str,
    request: &Request,
) -> ExitCode {
    let (probe, port) = match parse(request, options.listen_port) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            return ExitCode::from(2);
        }
    };
    let bootstrap: Value = match render_bootstrap(resources, options)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_yaml_ng::from_str(&text).map_err(|e| e.to_string()))
    {
        Ok(b) => b,
        Err(e) => {
            return failed(
                "render",
                &e,
                "`gatehouse validate --report` names the document",
            );
        }
    };
    let matched = match route(&bootstrap, port, &probe) {
        Ok(m) => m,
        Err(e) => {
            return failed(
                "route",
                &e.to_string(),
                "`gatehouse routes` prints every route in the order Envoy tries them",
            );
        }
    };
    let cluster = match &matched.action {
        Action::Cluster(c) => c.clone(),
        Action::Direct(status) => {
            line(
                true,
                "route",
                &describe(&matched, &format!("answered by Envoy itself with {status}")),
            );
            return ExitCode::SUCCESS;
        }
        Action::Redirect => {
            line(true, "route", &describe(&matched, "redirected by Envoy"));
            return ExitCode::SUCCESS;
        }
    };
    line(
        true,
        "route",
        &describe(&matched, &format!("to cluster {cluster}")),
    );
    let names: Vec<String> = matched
        .filters
        .iter()
        .map(|f| {
            if f.calls.is_empty() {
                f.name.clone()
            } else {
                format!("{} (calls {})", f.name, f.calls.join(", "))
            }
        })
        .collect();
    line(
        true,
        "filters",
        &if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        },
    );

    let clusters = match admin_clusters(admin) {
        Ok(c) => c,
        Err(e) => {
            return failed(
                "envoy",
                &format!("Envoy's admin at {admin} does not answer: {e}"),
                "is Envoy running with this bootstrap? (--envoy-admin names its admin address)",
            );
        }
    };
    line(true, "envoy", &format!("admin at {admin} answers"));

    let services: Vec<&String> = matched.filters.iter().flat_map(|f| &f.calls).collect();
    for service in services {
        let hosts = match endpoints(&clusters, service) {
            Ok(h) if !h.is_empty() => h,
            Ok(_) => {
                return failed(
                    "service",
                    &format!("Envoy has no endpoint for {service}"),
                    "does the service's address resolve? (`gatehouse render --ratelimit/--authz` set it)",
                );
            }
            Err(e) => return failed("service", &e, "is Envoy running the rendered bootstrap?"),
        };
        for (addr, _) in &hosts {
            match grpc_health(addr) {
                Ok(()) => line(
                    true,
                    "service",
                    &format!("{service} at {addr} answers its gRPC health check: SERVING"),
                ),
                Err(e) => {
                    return failed(
                        "service",
                        &format!("{service} at {addr}: {e}"),
                        &format!(
                            "is {} running? its log and its /readyz say why not",
                            service_name(service)
                        ),
                    );
                }
            }
        }
    }

    let hosts = match endpoints(&clusters, &cluster) {
        Ok(h) => h,
        Err(e) => {
            return failed(
                "cluster",
                &e,
                "is Envoy running the rendered bootstrap? `gatehouse render` again and restart it",
            );
        }
    };
    if hosts.is_empty() {
        return failed(
            "cluster",
            &format!("cluster {cluster} has no endpoints"),
            "does the Mapping's service name resolve from Envoy (DNS), and is the service up?",
        );
    }
    let healthy: Vec<&(String, bool)> = hosts.iter().filter(|(_, ok)| *ok).collect();
    if healthy.is_empty() {
        let list: Vec<&str> = hosts.iter().map(|(a, _)| a.as_str()).collect();
        return failed(
            "health",
            &format!(
                "every endpoint of {cluster} fails its health check: {}",
                list.join(", ")
            ),
            "the Mapping's health_checks: does the path answer one of the expected statuses?",
        );
    }
    line(
        true,
        "health",
        &format!(
            "{} of {} endpoints of {cluster} healthy",
            healthy.len(),
            hosts.len()
        ),
    );
    let mut reachable = 0;
    for (addr, _) in &healthy {
        match connect(addr) {
            Ok(()) => {
                reachable += 1;
                line(true, "connect", &format!("{addr} accepts a TCP connection"));
            }
            Err(e) => line(false, "connect", &format!("{addr}: {e}")),
        }
    }
    if reachable == 0 {
        return failed(
            "connect",
            &format!("no endpoint of {cluster} accepts a connection from this machine"),
            "is the upstream listening on that address and port? (a firewall, a wrong port in the Mapping's service)",
        );
    }
    ExitCode::SUCCESS
}

fn describe(m: &Matched, action: &str) -> String {
    format!(
        "listener {}, virtual host {}, route {} ({}): {action}",
        m.listener, m.virtual_host, m.route, m.because
    )
}

fn service_name(cluster: &str) -> &str {
    match cluster {
        "gatehouse_ratelimit" => "gatehouse-ratelimit",
        "gatehouse_authz" => "gatehouse-authz",
        other => other,
    }
}

/// The probe and the listener port a URL names.
fn parse(request: &Request, default_port: u16) -> Result<(Probe, u16), String> {
    let rest = request
        .url
        .strip_prefix("http://")
        .or_else(|| request.url.strip_prefix("https://"))
        .unwrap_or(&request.url);
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("{}: bad port {p:?}", request.url))?,
        ),
        None => (authority, default_port),
    };
    if host.is_empty() {
        return Err(format!("{}: no host", request.url));
    }
    let mut headers = Vec::new();
    let mut host_header = host.to_owned();
    for h in &request.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("-H {h:?}: write 'Name: value'"))?;
        let name = name.trim().to_ascii_lowercase();
        if name == "host" {
            host_header = value.trim().to_owned();
        } else {
            headers.push((name, value.trim().to_owned()));
        }
    }
    Ok((
        Probe {
            method: request.method.to_ascii_uppercase(),
            host: host_header,
            path: path.to_owned(),
            headers,
        },
        port,
    ))
}

/// `GET /clusters?format=json` of Envoy's admin.
fn admin_clusters(admin: &str) -> Result<Value, String> {
    let body = crate::http::get(admin, "/clusters?format=json", TIMEOUT)?;
    serde_json::from_str(&body).map_err(|e| format!("/clusters is not JSON: {e}"))
}

/// The endpoints Envoy has for `cluster`, each with whether it may take
/// requests (not failing an active health check, not EDS-unhealthy).
fn endpoints(clusters: &Value, cluster: &str) -> Result<Vec<(String, bool)>, String> {
    gatehouse_config::diag::cluster_figures(&Value::Null, clusters)
        .remove(cluster)
        .map(|f| f.endpoints)
        .ok_or_else(|| format!("Envoy has no cluster {cluster}"))
}

fn connect(addr: &str) -> Result<(), String> {
    TcpStream::connect_timeout(&resolve(addr)?, TIMEOUT)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// `grpc.health.v1.Health/Check` for the whole server, over plain HTTP/2:
/// Ok when it answers SERVING.
fn grpc_health(addr: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect_timeout(&resolve(addr)?, TIMEOUT)
        .map_err(|e| format!("refuses connections ({e})"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut out, 0x4, 0, 0, &[]); // SETTINGS
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/grpc.health.v1.Health/Check"),
        (":authority", addr),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        // HPACK: a literal field without indexing, name and value literal.
        block.push(0);
        for part in [name, value] {
            block.push(u8::try_from(part.len()).map_err(|_| "header too long")?);
            block.extend_from_slice(part.as_bytes());
        }
    }
    frame(&mut out, 0x1, 0x4, 1, &block); // HEADERS, END_HEADERS
    frame(&mut out, 0x0, 0x1, 1, &[0, 0, 0, 0, 0]); // DATA: an empty request, END_STREAM
    stream.write_all(&out).map_err(|e| e.to_string())?;
    loop {
        let mut head = [0_u8; 9];
        stream
            .read_exact(&mut head)
            .map_err(|e| format!("no answer to its health check ({e})"))?;
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let mut payload = vec![0_u8; len];
        stream.read_exact(&mut payload).map_err(|e| e.to_string())?;
        match kind {
            0x4 if flags & 0x1 == 0 => {
                let mut ack = Vec::new();
                frame(&mut ack, 0x4, 0x1, 0, &[]);
                stream.write_all(&ack).map_err(|e| e.to_string())?;
            }
            // DATA: a gRPC message, `status` is field 1.
            0x0 if payload.len() >= 5 => {
                return match payload[5..] {
                    [0x08, 1, ..] => Ok(()),
                    [0x08, 2, ..] => Err("answers its health check: NOT_SERVING".into()),
                    _ => Err("answers its health check: not SERVING".into()),
                };
            }
            // HEADERS ending the stream without a message: a gRPC error.
            0x1 if flags & 0x1 != 0 => {
                return Err("answers with a gRPC error instead of a health status".into());
            }
            0x3 => return Err("reset the health check".into()),
            0x7 => return Err("closed the connection (GOAWAY)".into()),
            _ => {}
        }
    }
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(0);
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(url: &str, headers: &[&str]) -> Request {
        Request {
            method: "get".into(),
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            url: url.into(),
        }
    }

    #[test]
    fn a_url_gives_the_host_port_and_path() {
        let (probe, port) =
            parse(&request("http://edge:8080/api/x?y=1", &["X-Beta: yes"]), 80).unwrap();
        assert_eq!(
            (probe.host.as_str(), port, probe.path.as_str()),
            ("edge", 8080, "/api/x?y=1")
        );
        assert_eq!(probe.method, "GET");
        assert_eq!(probe.headers, [("x-beta".to_owned(), "yes".to_owned())]);
        let (probe, port) = parse(&request("shop.example.com", &["Host: other"]), 8080).unwrap();
        assert_eq!(
            (probe.host.as_str(), port, probe.path.as_str()),
            ("other", 8080, "/")
        );
        assert!(parse(&request("http://edge:x/", &[]), 80).is_err());
        assert!(parse(&request("http://edge/", &["novalue"]), 80).is_err());
    }

    #[test]
    fn envoy_endpoints_failing_a_health_check_are_not_healthy() {
        let clusters = serde_json::json!({"cluster_statuses": [{
            "name": "api",
            "host_statuses": [
                {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 80}}, "health_status": {"eds_health_status": "HEALTHY"}},
                {"address": {"socket_address": {"address": "10.0.0.2", "port_value": 80}}, "health_status": {"failed_active_health_check": true, "eds_health_status": "HEALTHY"}}
            ]
        }]});
        assert_eq!(
            endpoints(&clusters, "api").unwrap(),
            [
                ("10.0.0.1:80".to_owned(), true),
                ("10.0.0.2:80".to_owned(), false)
            ]
        );
        assert!(endpoints(&clusters, "other").is_err());
    }
}
