//! The `xds-scale` set: a fleet of simulated ADS clients (a tonic client per
//! node, each asking for clusters and listeners, then the endpoints and
//! routes they name, and acknowledging what it gets as Envoy does) on one gatehouse-xds,
//! for growing fleets. What it reports: how long after a change of the
//! resources every node holds the new version, and the server's CPU for that
//! change and its memory, per connected node. Measured, not targeted: the
//! growth curve is the result.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

use super::{Measured, env_number};
use crate::Settings;

const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";

/// The endpoints (EDS) and routes (RDS) that clusters and listeners name,
/// as Envoy asks for them.
fn named(response: &DiscoveryResponse) -> Option<(&'static str, Vec<String>)> {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::listener::v3::Listener;
    use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
    use prost::Message;
    let mut names = Vec::new();
    if response.type_url == CLUSTER {
        for any in &response.resources {
            let cluster = Cluster::decode(any.value.as_slice()).ok()?;
            names.extend(cluster.eds_cluster_config.map(|e| e.service_name));
        }
        return Some((ENDPOINT, names));
    }
    if response.type_url == LISTENER {
        for any in &response.resources {
            let listener = Listener::decode(any.value.as_slice()).ok()?;
            for filter in listener.filter_chains.iter().flat_map(|c| &c.filters) {
                if let Some(ConfigType::TypedConfig(config)) = &filter.config_type
                    && let Ok(hcm) = HttpConnectionManager::decode(config.value.as_slice())
                    && let Some(RouteSpecifier::Rds(rds)) = hcm.route_specifier
                {
                    names.push(rds.route_config_name);
                }
            }
        }
        return Some((ROUTE, names));
    }
    None
}

/// The resources served: `routes` Mappings, so a version has some weight.
fn resources(routes: usize, generation: usize) -> String {
    (0..routes)
        .map(|i| {
            format!(
                "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {{name: r{i}}}\nspec: {{prefix: /g{generation}/r{i}/, service: '127.0.0.1:{}'}}\n",
                9000 + i
            )
        })
        .collect()
}

/// The version each node holds for routes (the last type of a change).
type Held = Arc<Mutex<HashMap<usize, String>>>;

/// One simulated node: subscribes to clusters and listeners, then to the
/// endpoints and routes they name (again when the names change), ACKs
/// every response, and records the routes' version.
async fn node(address: String, id: usize, held: Held) -> Result<()> {
    let mut client = AggregatedDiscoveryServiceClient::connect(address).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let node = Node {
        id: format!("sim-{id}"),
        cluster: "default".into(),
        ..Node::default()
    };
    for type_url in [CLUSTER, LISTENER] {
        tx.send(DiscoveryRequest {
            node: Some(node.clone()),
            type_url: type_url.into(),
            ..DiscoveryRequest::default()
        })
        .await?;
    }
    let mut responses = client
        .stream_aggregated_resources(tokio_stream(rx))
        .await?
        .into_inner();
    // The names asked for, and the last nonce, of endpoints and routes.
    let mut asked: HashMap<&'static str, (Vec<String>, String)> = HashMap::new();
    while let Some(response) = responses.message().await? {
        if response.type_url == ROUTE {
            held.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(id, response.version_info.clone());
        }
        let follow = named(&response);
        let names = asked
            .get(response.type_url.as_str())
            .map(|(names, _)| names.clone())
            .unwrap_or_default();
        if let Some(entry) = [ENDPOINT, ROUTE]
            .iter()
            .find(|t| **t == response.type_url)
            .and_then(|t| asked.get_mut(t))
        {
            entry.1.clone_from(&response.nonce);
        }
        tx.send(DiscoveryRequest {
            version_info: response.version_info,
            type_url: response.type_url,
            response_nonce: response.nonce,
            resource_names: names,
            ..DiscoveryRequest::default()
        })
        .await?;
        if let Some((type_url, mut names)) = follow {
            names.sort();
            let (before, nonce) = asked.entry(type_url).or_default();
            if *before != names {
                before.clone_from(&names);
                tx.send(DiscoveryRequest {
                    type_url: type_url.into(),
                    response_nonce: nonce.clone(),
                    resource_names: names,
                    ..DiscoveryRequest::default()
                })
                .await?;
            }
        }
    }
    Ok(())
}

fn tokio_stream(
    rx: tokio::sync::mpsc::Receiver<DiscoveryRequest>,
) -> impl tonic::codegen::tokio_stream::Stream<Item = DiscoveryRequest> {
    struct Requests(tokio::sync::mpsc::Receiver<DiscoveryRequest>);
    impl tonic::codegen::tokio_stream::Stream for Requests {
        type Item = DiscoveryRequest;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<DiscoveryRequest>> {
            self.0.poll_recv(cx)
        }
    }
    Requests(rx)
}

/// Waits until every one of `count` nodes holds `version`.
async fn converged(held: &Held, count: usize, version: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = {
            let held = held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            held.len() == count && held.values().all(|v| v == version)
        };
        if done {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{count} nodes did not converge in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

async fn version(client: &reqwest::Client, status: &str) -> Result<String> {
    let s: serde_json::Value = client.get(status).send().await?.json().await?;
    Ok(s["versions"]["default"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// One fleet size: `(median ms to converge, CPU ms per change, RSS KiB,
/// RSS KiB with no node)`.
async fn fleet(size: usize, changes: usize, routes: usize) -> Result<(f64, f64, u64, u64)> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("edge.yaml");
    std::fs::write(&file, resources(routes, 0))?;
    let (ads, status_port) = (e2e::redis::free_port()?, e2e::redis::free_port()?);
    let mut command = std::process::Command::new(crate::sidecar::release_bin("gatehouse-xds")?);
    command
        .arg("-f")
        .arg(&file)
        .args(["--listen", &format!("127.0.0.1:{ads}")])
        .args(["--status", &format!("127.0.0.1:{status_port}")])
        .args(["--poll-ms", "20"])
        .env("RUST_LOG", "warn");
    let server = e2e::process::ChildProcess::spawn(
        "gatehouse-xds",
        &mut command,
        &dir.path().join("xds.log"),
    )?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    let status = format!("http://127.0.0.1:{status_port}/status");
    e2e::poll::until(
        "gatehouse-xds answers",
        e2e::poll::READY_DEADLINE,
        || async { Ok(version(&client, &status).await.ok()) },
    )
    .await?;
    let idle = rss_kib(server.pid())?;
    let held: Held = Arc::default();
    let address = format!("http://127.0.0.1:{ads}");
    let nodes: Vec<_> = (0..size)
        .map(|id| tokio::spawn(node(address.clone(), id, held.clone())))
        .collect();
    converged(&held, size, &version(&client, &status).await?).await?;
    let mut times = Vec::new();
    // CPU over all the changes: /proc counts in 10 ms ticks, too coarse for one.
    let cpu_before = crate::run::cpu_time(server.pid())?;
    for generation in 1..=changes {
        let old = version(&client, &status).await?;
        let start = Instant::now();
        std::fs::write(&file, resources(routes, generation))?;
        let next = e2e::poll::until("a new version", Duration::from_secs(10), || async {
            let v = version(&client, &status).await?;
            Ok((v != old).then_some(v))
        })
        .await?;
        converged(&held, size, &next).await?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    #[allow(clippy::cast_precision_loss)]
    let cpu_ms =
        (crate::run::cpu_time(server.pid())? - cpu_before).as_secs_f64() * 1000.0 / changes as f64;
    let rss = rss_kib(server.pid())?;
    for n in nodes {
        n.abort();
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], cpu_ms, rss, idle))
}

pub(super) async fn xds_scale(settings: &Settings) -> Result<Measured> {
    let sizes: Vec<usize> = std::env::var("BENCH_XDS_FLEET")
        .unwrap_or_else(|_| "10,100,500".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .context("BENCH_XDS_FLEET: whole numbers, comma-separated")
        })
        .collect::<Result<_>>()?;
    let routes = env_number("BENCH_XDS_ROUTES", 50)?;
    let changes = settings.repeats.max(3) * 4;
    let mut table = String::from(
        "| nodes | converge ms (median) | server CPU ms per change | CPU µs per node and change | server RSS MiB | RSS KiB per node |\n| ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for size in sizes {
        let (ms, cpu_ms, rss, idle) = fleet(size, changes, routes).await?;
        #[allow(clippy::cast_precision_loss)]
        let per_node_cpu = cpu_ms * 1000.0 / size as f64;
        #[allow(clippy::cast_precision_loss)]
        let per_node_rss = rss.saturating_sub(idle) as f64 / size as f64;
        #[allow(clippy::cast_precision_loss)]
        let rss_mib = rss as f64 / 1024.0;
        table.push_str(&format!(
            "| {size} | {ms:.1} | {cpu_ms:.1} | {per_node_cpu:.1} | {rss_mib:.1} | {per_node_rss:.1} |\n"
        ));
    }
    Ok((
        format!(
            "A fleet of simulated ADS clients (a tonic client per node, each asking for clusters and listeners, then for the endpoints and routes they name, and acknowledging every response, as Envoy does) on one release gatehouse-xds, {routes} Mappings served; {changes} changes of the resource file per fleet size, each timed from the write until every node holds the new routes' version (the last type of a change) (the server checks the file every 20 ms). Server CPU from /proc over all the changes, per change (ACKs included); memory is the server's RSS with the fleet connected, and per node the growth over the server without one. Measured, not targeted."
        ),
        table,
        "Targets: none; the growth with the fleet is the result.\n".to_owned(),
    ))
}
