//! `gatehouse serve` (gatehouse-xds) as the control plane of four real
//! Envoys that share one listener port (three state-of-the-world, one
//! incremental), and a fifth of another Ambassador instance (its node
//! cluster) with resources of its own: each joins with the bootstrap
//! `gatehouse render --xds` writes; a change reaches all four
//! under load without a failed request; a change that does not render never
//! reaches them; a version the Envoys refuse (NACK) is recorded with Envoy's
//! message while they keep serving; a restarted Envoy gets the current
//! version.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use e2e::{Echo, Envoy, EnvoyBuilder, poll};

/// The default instance's listener, on `port`.
fn listener(port: u16) -> String {
    format!(
        "---\napiVersion: getambassador.io/v3alpha1\nkind: Listener\nmetadata: {{name: edge}}\nspec: {{port: {port}, protocol: HTTP, securityModel: XFP, hostBinding: {{namespace: {{from: ALL}}}}}}\n"
    )
}

fn mapping(name: &str, prefix: &str, port: u16) -> String {
    format!(
        "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {{name: {name}}}\nspec: {{prefix: {prefix}, service: '127.0.0.1:{port}'}}\n"
    )
}

/// The version of the listeners an Envoy accepted last (its LDS
/// `version_text`; the config dump keeps a listener's first version across
/// in-place updates).
async fn running(envoy: &Envoy, client: &reqwest::Client) -> anyhow::Result<String> {
    let text = client
        .get(envoy.admin_url("/stats?filter=^listener_manager.lds.version_text$"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .split_once(": ")
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
        .unwrap_or_default())
}

/// Waits until the routes `envoy` runs (its RDS configurations) hold
/// `needle`: a route a change added has reached its workers' view.
async fn until_routes_contain(
    envoy: &Envoy,
    client: &reqwest::Client,
    needle: &str,
) -> anyhow::Result<()> {
    let url = envoy.admin_url("/config_dump?resource=dynamic_route_configs");
    poll::until(
        &format!("Envoy's routes holding {needle}"),
        Duration::from_secs(20),
        || async {
            Ok(client
                .get(&url)
                .send()
                .await?
                .text()
                .await?
                .contains(needle)
                .then_some(()))
        },
    )
    .await
}

/// Envoy's config dump of `resource` (e.g. `dynamic_route_configs`).
async fn dump(envoy: &Envoy, client: &reqwest::Client, resource: &str) -> anyhow::Result<String> {
    Ok(client
        .get(envoy.admin_url(&format!("/config_dump?resource={resource}")))
        .send()
        .await?
        .text()
        .await?)
}

/// GETs `url` with `client` until stopped, counting the answers by status
/// (0: no answer).
struct Load {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<std::collections::BTreeMap<u16, u32>>,
}

impl Load {
    fn start(client: reqwest::Client, url: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
                while !stop.load(Ordering::Relaxed) {
                    let code = client
                        .get(&url)
                        .send()
                        .await
                        .map_or(0, |r| r.status().as_u16());
                    *statuses.entry(code).or_default() += 1;
                }
                statuses
            })
        };
        Self { stop, task }
    }

    /// Stops, and fails unless every answer was a 200.
    async fn only_200s(self, what: &str) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let statuses = self.task.await?;
        println!("load through {what}: {statuses:?}");
        assert_eq!(
            statuses.keys().copied().collect::<Vec<_>>(),
            [200],
            "non-2xx answers under load: {statuses:?}"
        );
        Ok(())
    }
}

/// The default instance's version once it is not `old`.
async fn next_version(client: &reqwest::Client, url: &str, old: &str) -> anyhow::Result<String> {
    poll::until("a new version", Duration::from_secs(20), || async {
        let v = status(client, url).await?["versions"]["default"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Ok((v != old).then_some(v))
    })
    .await
}

async fn status(client: &reqwest::Client, url: &str) -> anyhow::Result<serde_json::Value> {
    Ok(client.get(url).send().await?.json().await?)
}

/// `gatehouse serve` on the resources in `dir` (its log beside them), with
/// `args`, once its status page answers; and an HTTP client that opens a
/// connection per request (a kept-alive one would stay on the filter chain
/// it began on, which Envoy drains after an update).
async fn serve(
    dir: &std::path::Path,
    ads: u16,
    status_port: u16,
    args: &[String],
) -> anyhow::Result<(e2e::process::ChildProcess, reqwest::Client, String)> {
    let xds = e2e::process::ChildProcess::spawn(
        "gatehouse-xds",
        std::process::Command::new(e2e::paths::service_bin("gatehouse-xds")?)
            .arg("-f")
            .arg(dir)
            .args(["--listen", &format!("127.0.0.1:{ads}")])
            .args(["--status", &format!("127.0.0.1:{status_port}")])
            .args(["--listen-address", "127.0.0.1"])
            .args(["--poll-ms", "200"])
            .args(args),
        &dir.join("xds.log"),
    )?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()?;
    let status_url = format!("http://127.0.0.1:{status_port}/status");
    poll::until("gatehouse-xds answers", poll::READY_DEADLINE, || async {
        Ok(status(&client, &status_url).await.ok())
    })
    .await?;
    Ok((xds, client, status_url))
}

async fn start_envoy(ads: u16, node: &str) -> anyhow::Result<Envoy> {
    start_envoy_of(ads, node, "default").await
}

/// An Envoy of Ambassador instance `instance` (its node cluster).
async fn start_envoy_of(ads: u16, node: &str, instance: &str) -> anyhow::Result<Envoy> {
    let bootstrap =
        gatehouse_config::render_xds_bootstrap(&format!("127.0.0.1:{ads}"), node, instance, 0);
    EnvoyBuilder::from_text(&bootstrap, node).start().await
}

#[tokio::test]
async fn three_envoys_follow_the_control_plane_and_keep_serving_through_bad_changes()
-> anyhow::Result<()> {
    let echo = Echo::start().await?;
    let dir = tempfile::tempdir()?;
    let edge = dir.path().join("edge.yaml");
    let (ads, status_port, listen, internal_port) = (
        e2e::redis::free_port()?,
        e2e::redis::free_port()?,
        e2e::redis::free_port()?,
        e2e::redis::free_port()?,
    );
    std::fs::write(
        &edge,
        listener(listen) + &mapping("app", "/app/", echo.port()),
    )?;
    // Another instance's resources: its own listener and route.
    std::fs::write(
        dir.path().join("internal.yaml"),
        format!(
            "apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata: {{name: internal}}
spec: {{ambassador_id: [internal], port: {internal_port}, protocol: HTTP, securityModel: XFP, hostBinding: {{namespace: {{from: ALL}}}}}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: internal}}
spec: {{ambassador_id: [internal], prefix: /internal/, service: '127.0.0.1:{echo}'}}
",
            echo = echo.port()
        ),
    )?;
    let (_xds, client, status_url) = serve(dir.path(), ads, status_port, &[]).await?;

    let mut envoys = Vec::new();
    for i in 1..=3 {
        envoys.push(start_envoy(ads, &format!("edge-{i}")).await?);
    }
    // A fourth of the same instance on the incremental variant (delta ADS).
    let delta = gatehouse_config::render_xds_bootstrap_of(
        &format!("127.0.0.1:{ads}"),
        "edge-delta",
        "default",
        0,
        true,
    );
    envoys.insert(
        0,
        EnvoyBuilder::from_text(&delta, "edge-delta")
            .start()
            .await?,
    );
    let first = status(&client, &status_url).await?["versions"]["default"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for envoy in &envoys {
        assert_eq!(running(envoy, &client).await?, first);
    }
    // The other instance's Envoy gets its own resources, and only those.
    let internal = start_envoy_of(ads, "internal-1", "internal").await?;
    let versions = status(&client, &status_url).await?["versions"].clone();
    assert_eq!(
        running(&internal, &client).await?,
        versions["internal"].as_str().unwrap_or_default()
    );
    assert_ne!(versions["internal"], versions["default"]);
    let code = |port: u16, path: &'static str| {
        let request = client.get(format!("http://127.0.0.1:{port}{path}")).send();
        async move { anyhow::Ok(request.await?.status().as_u16()) }
    };
    assert_eq!(code(internal_port, "/internal/x").await?, 200);
    assert_eq!(code(internal_port, "/app/x").await?, 404);
    assert_eq!(code(listen, "/internal/x").await?, 404);

    // Load on the shared port from here on: a new connection per request,
    // so the kernel spreads it over the four Envoys.
    let edge_url = format!("http://127.0.0.1:{listen}/app/x");
    let load = Load::start(
        reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()?,
        edge_url,
    );

    // A change reaches all four.
    std::fs::write(
        &edge,
        listener(listen)
            + &mapping("app", "/app/", echo.port())
            + &mapping("new", "/new/", echo.port()),
    )?;
    let second = next_version(&client, &status_url, &first).await?;
    for envoy in &envoys {
        poll::until(
            "the Envoy runs the new version",
            Duration::from_secs(20),
            || async { Ok((running(envoy, &client).await? == second).then_some(())) },
        )
        .await?;
        until_routes_contain(envoy, &client, "/new/").await?;
    }
    let new_url = format!("http://127.0.0.1:{listen}/new/x");
    assert_eq!(client.get(&new_url).send().await?.status(), 200);

    // A change that does not render is refused before any Envoy sees it.
    std::fs::write(
        &edge,
        mapping("app", "/app/", echo.port()).replace("prefix", "prefx"),
    )?;
    let refused = poll::until("the change refused", Duration::from_secs(20), || async {
        let s = status(&client, &status_url).await?;
        Ok(s["refused"]["default"].as_str().map(str::to_owned))
    })
    .await?;
    assert!(refused.contains("prefx"), "{refused}");
    let metrics = client
        .get(format!("http://127.0.0.1:{status_port}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("gatehouse_xds_refused_changes_total 1"),
        "{metrics}"
    );
    for envoy in &envoys {
        assert_eq!(running(envoy, &client).await?, second);
    }
    assert_eq!(client.get(&new_url).send().await?.status(), 200);

    // A version the Envoys refuse: a filter whose wasm file is not there.
    // Each NACKs with Envoy's message, is reported, and keeps serving.
    std::fs::write(
        &edge,
        listener(listen)
            + &mapping("app", "/app/", echo.port())
            + &mapping("new", "/new/", echo.port())
            + "---
apiVersion: getambassador.io/v3alpha1
kind: Filter
metadata: {name: jwt}
spec:
  JWT:
    jwksURI: http://127.0.0.1:9/jwks.json
    issuer: https://issuer.example
    validAlgorithms: [RS256]
---
apiVersion: getambassador.io/v3alpha1
kind: FilterPolicy
metadata: {name: edge}
spec:
  rules:
  - path: /new/*
    filters: [{name: jwt}]
",
    )?;
    let nacks = poll::until("four NACKs", Duration::from_secs(30), || async {
        let s = status(&client, &status_url).await?;
        let nacks: Vec<String> = s["nodes"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, n)| n["nacked"][2].as_str().map(str::to_owned))
            .collect();
        Ok((nacks.len() == 4).then_some(nacks))
    })
    .await?;
    println!("Envoy's NACK: {}", nacks[0]);
    assert!(!nacks[0].is_empty());
    for envoy in &envoys {
        assert_eq!(
            running(envoy, &client).await?,
            second,
            "kept the last good version"
        );
    }
    assert_eq!(client.get(&new_url).send().await?.status(), 200);

    // The resources fixed: the same edge is the same version again.
    std::fs::write(
        &edge,
        listener(listen)
            + &mapping("app", "/app/", echo.port())
            + &mapping("new", "/new/", echo.port()),
    )?;
    poll::until(
        "the good version again",
        Duration::from_secs(20),
        || async {
            let v = status(&client, &status_url).await?["versions"]["default"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            Ok((v == second).then_some(()))
        },
    )
    .await?;

    load.only_200s("every change").await?;

    // Without load (a stopping Envoy resets what its socket had queued):
    // a restarted Envoy gets the current version.
    envoys.pop();
    envoys.push(start_envoy(ads, "edge-3").await?);
    let restarted = envoys.last().ok_or_else(|| anyhow::anyhow!("no Envoy"))?;
    assert_eq!(running(restarted, &client).await?, second);

    Ok(())
}

/// A route with a limit of `rate` a minute for each client address.
fn limited(port: u16, rate: u32) -> String {
    format!(
        "---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: limited}}
spec:
  prefix: /limited/
  service: '127.0.0.1:{port}'
  labels:
    ambassador:
    - per_client:
      - remote_address: {{key: remote_address}}
---
apiVersion: getambassador.io/v3alpha1
kind: RateLimit
metadata: {{name: limited}}
spec:
  domain: ambassador
  limits:
  - pattern: [{{remote_address: '*'}}]
    rate: {rate}
    unit: minute
"
    )
}

/// One change to the resources (a new limited route, then a lower limit)
/// reaches Envoy and gatehouse-ratelimit together: the service reads the
/// files `gatehouse serve --services-out` writes for each version.
#[tokio::test]
async fn one_change_reaches_envoy_and_the_rate_limit_service_together() -> anyhow::Result<()> {
    let echo = Echo::start().await?;
    let dir = tempfile::tempdir()?;
    let resources = dir.path().join("resources");
    std::fs::create_dir(&resources)?;
    let services = dir.path().join("services");
    let edge = resources.join("edge.yaml");
    let [ads, status_port, listen, rls] = e2e::redis::free_ports()?;
    std::fs::write(
        &edge,
        listener(listen) + &mapping("app", "/app/", echo.port()),
    )?;
    let (_xds, client, status_url) = serve(
        &resources,
        ads,
        status_port,
        &[
            "--ratelimit".into(),
            format!("127.0.0.1:{rls}"),
            "--services-out".into(),
            services.display().to_string(),
        ],
    )
    .await?;
    // No RateLimit yet: the service starts on an empty directory the server
    // made for the instance.
    assert!(services.join("default/config").is_dir());
    let ratelimit = e2e::RateLimitService::builder()
        .env("RUNTIME_ROOT", services.display())
        .env("RUNTIME_SUBDIRECTORY", "default")
        .env("GRPC_PORT", rls)
        .start()
        .await?;
    let envoy = start_envoy(ads, "edge-1").await?;
    let url = |path: &str| format!("http://127.0.0.1:{listen}{path}");
    assert_eq!(client.get(url("/app/")).send().await?.status(), 200);
    assert_eq!(client.get(url("/limited/")).send().await?.status(), 404);

    // The change: a route and its limit, three a minute.
    std::fs::write(
        &edge,
        listener(listen) + &mapping("app", "/app/", echo.port()) + &limited(echo.port(), 3),
    )?;
    let first = running(&envoy, &client).await?;
    let second = next_version(&client, &status_url, &first).await?;
    poll::until("Envoy runs it", Duration::from_secs(20), || async {
        Ok((running(&envoy, &client).await? == second).then_some(()))
    })
    .await?;
    until_routes_contain(&envoy, &client, "/limited/").await?;
    ratelimit
        .until_rlconfig_contains("requests_per_unit=3")
        .await?;
    ratelimit
        .fresh_window("ambassador", &[("remote_address", "127.0.0.1")])
        .await?;
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(client.get(url("/limited/")).send().await?.status().as_u16());
    }
    assert_eq!(codes, [200, 200, 200, 429], "three a minute");

    // A lower limit alone is a new version too, and the service follows.
    std::fs::write(
        &edge,
        listener(listen) + &mapping("app", "/app/", echo.port()) + &limited(echo.port(), 1),
    )?;
    let third = next_version(&client, &status_url, &second).await?;
    ratelimit
        .until_rlconfig_contains("requests_per_unit=1")
        .await?;
    poll::until("Envoy runs it", Duration::from_secs(20), || async {
        Ok((running(&envoy, &client).await? == third).then_some(()))
    })
    .await?;
    // The refused change never reaches the service: its limit stays.
    std::fs::write(
        &edge,
        listener(listen)
            + &mapping("app", "/app/", echo.port())
            + &limited(echo.port(), 1).replace("rate: 1", "rate: lots"),
    )?;
    poll::until("the change refused", Duration::from_secs(20), || async {
        let s = status(&client, &status_url).await?;
        Ok(s["refused"]["default"].as_str().map(str::to_owned))
    })
    .await?;
    assert!(ratelimit.rlconfig().await?.contains("requests_per_unit=1"));
    assert_eq!(
        status(&client, &status_url).await?["versions"]["default"],
        third.as_str()
    );
    Ok(())
}

/// Routes travel apart from their listener (RDS) and endpoints apart from
/// their cluster (EDS), on both variants: a change to routes alone leaves
/// the listener as it was, so a kept-alive connection sees the new route
/// on the connection it has; and a route moved to a new upstream finds the
/// new cluster with its endpoints already there, with no failed request
/// under load.
#[tokio::test]
async fn routes_change_in_place_and_a_new_cluster_is_ready_before_its_route() -> anyhow::Result<()>
{
    let (one, two) = (
        Echo::start_named("one").await?,
        Echo::start_named("two").await?,
    );
    let dir = tempfile::tempdir()?;
    let resources = dir.path().join("resources");
    std::fs::create_dir(&resources)?;
    let edge = resources.join("edge.yaml");
    let [ads, status_port, listen] = e2e::redis::free_ports()?;
    std::fs::write(
        &edge,
        listener(listen) + &mapping("app", "/app/", one.port()),
    )?;
    let (_xds, client, status_url) = serve(&resources, ads, status_port, &[]).await?;
    let sotw = start_envoy(ads, "edge-sotw").await?;
    let delta = EnvoyBuilder::from_text(
        &gatehouse_config::render_xds_bootstrap_of(
            &format!("127.0.0.1:{ads}"),
            "edge-delta",
            "default",
            0,
            true,
        ),
        "edge-delta",
    )
    .start()
    .await?;
    let envoys = [&sotw, &delta];
    for envoy in envoys {
        let routes = dump(envoy, &client, "dynamic_route_configs").await?;
        assert!(
            routes.contains("/app/"),
            "the routes came over RDS: {routes}"
        );
        let clusters = dump(envoy, &client, "dynamic_active_clusters").await?;
        assert!(clusters.contains("\"EDS\""), "an EDS cluster: {clusters}");
    }
    // Kept-alive connections: one client per Envoy would need a port each;
    // these share one, so every pooled connection lands on one of them.
    let kept = reqwest::Client::builder().no_proxy().build()?;
    let url = |path: &str| format!("http://127.0.0.1:{listen}{path}");
    let echoed =
        |r: reqwest::Response| async move { anyhow::Ok(r.json::<e2e::Echoed>().await?.upstream) };
    assert_eq!(echoed(kept.get(url("/app/")).send().await?).await?, "one");

    // Load from here on, on kept-alive connections.
    let load = Load::start(kept.clone(), url("/app/"));

    // 1. Routes alone: a new route to the same upstream.
    std::fs::write(
        &edge,
        listener(listen)
            + &mapping("app", "/app/", one.port())
            + &mapping("new", "/new/", one.port()),
    )?;
    for envoy in envoys {
        until_routes_contain(envoy, &client, "/new/").await?;
    }
    assert_eq!(
        kept.get(url("/new/")).send().await?.status(),
        200,
        "a kept-alive connection sees the new route"
    );
    for envoy in envoys {
        assert_eq!(
            envoy.stat("listener_manager.listener_modified").await?,
            0,
            "the listener was not replaced"
        );
    }

    // 2. The route moved to another upstream: a new cluster, whose
    // endpoints arrive before the route that sends to it.
    std::fs::write(
        &edge,
        listener(listen)
            + &mapping("app", "/app/", two.port())
            + &mapping("new", "/new/", one.port()),
    )?;
    let cluster = format!("127_0_0_1_{}", two.port());
    for envoy in envoys {
        until_routes_contain(envoy, &client, &cluster).await?;
    }
    poll::until(
        "answers from the new upstream",
        Duration::from_secs(20),
        || async {
            Ok((echoed(kept.get(url("/app/")).send().await?).await? == "two").then_some(()))
        },
    )
    .await?;
    load.only_200s("both changes").await?;
    let s = status(&client, &status_url).await?;
    for node in ["edge-sotw", "edge-delta"] {
        assert!(s["nodes"][node]["nacked"].is_null(), "{s}");
    }
    Ok(())
}
