//! Traffic management through real Envoy with several instances of one
//! service: three upstreams on 127.0.0.2-4, one port, behind names a test
//! DNS server resolves to all three. Requests spread by policy, a hash keeps
//! a client on one instance, a failing instance is ejected, and a
//! health-checked one is taken out and comes back.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use e2e::dns::Dns;
use gatehouse_config::{RenderOptions, Resources, load, render};

/// One instance: answers its name, fails requests (500) or its health
/// check (503) when told to.
struct Instance {
    name: &'static str,
    failing: Arc<AtomicBool>,
    unhealthy: Arc<AtomicBool>,
    _task: tokio::task::JoinHandle<()>,
}

impl Instance {
    async fn start(name: &'static str, ip: Ipv4Addr, port: u16) -> Result<Self> {
        let failing = Arc::new(AtomicBool::new(false));
        let unhealthy = Arc::new(AtomicBool::new(false));
        let (f, u) = (failing.clone(), unhealthy.clone());
        let app = axum::Router::new()
            .route(
                "/healthz",
                axum::routing::get(move || {
                    let down = u.load(Ordering::SeqCst);
                    async move {
                        if down {
                            axum::http::StatusCode::SERVICE_UNAVAILABLE
                        } else {
                            axum::http::StatusCode::OK
                        }
                    }
                }),
            )
            .fallback(move || {
                let fail = f.load(Ordering::SeqCst);
                async move {
                    if fail {
                        (axum::http::StatusCode::INTERNAL_SERVER_ERROR, name)
                    } else {
                        (axum::http::StatusCode::OK, name)
                    }
                }
            });
        let listener = tokio::net::TcpListener::bind((ip, port)).await?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            name,
            failing,
            unhealthy,
            _task: task,
        })
    }
}

struct Pool {
    instances: Vec<Instance>,
    envoy: e2e::Envoy,
    _dns: Dns,
}

impl Pool {
    /// Which instance answered a GET of `path` (with `x-user: user`), and
    /// its status.
    async fn hit(&self, path: &str, user: Option<&str>) -> Result<(u16, String)> {
        let mut r = self.envoy.get(path);
        if let Some(u) = user {
            r = r.header("x-user", u);
        }
        let answer = r.send().await?;
        Ok((answer.status().as_u16(), answer.text().await?))
    }

    /// Until `path` has answered `n` requests in a row, each 200 and none
    /// from `instance`: `true` when it then avoids the instance.
    async fn until_avoided(&self, path: &str, instance: &str, n: usize) -> Result<()> {
        e2e::poll::until(
            &format!("{path} without {instance}"),
            e2e::poll::READY_DEADLINE,
            || async {
                for _ in 0..n {
                    let (status, who) = self.hit(path, None).await?;
                    if status != 200 || who == instance {
                        return Ok(None);
                    }
                }
                Ok(Some(()))
            },
        )
        .await
    }
}

async fn pool() -> Result<Pool> {
    let ips = [2, 3, 4].map(|last| Ipv4Addr::new(127, 0, 0, last));
    // One port on the three addresses: the first bind picks it.
    let probe = std::net::TcpListener::bind((ips[0], 0))?;
    let port = probe.local_addr()?.port();
    drop(probe);
    let mut instances = Vec::new();
    for (name, ip) in ["a", "b", "c"].into_iter().zip(ips) {
        instances.push(Instance::start(name, ip, port).await?);
    }
    let dns = Dns::start(ips.to_vec()).await?;
    let mapping = |name: &str, extra: &str| {
        format!(
            "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {{name: {name}}}\nspec: {{prefix: /{name}/, service: '{name}.pool.test:{port}', rewrite: '', {extra}}}\n"
        )
    };
    let text = [
        mapping("spread", "load_balancer: {policy: round_robin}"),
        mapping(
            "sticky",
            "load_balancer: {policy: ring_hash, header: x-user}",
        ),
        mapping(
            "checked",
            "health_checks: [{interval: 100ms, timeout: 1s, unhealthy_threshold: 1, healthy_threshold: 1, health_check: {http: {path: /healthz}}}]",
        ),
        mapping(
            "ejecting",
            "outlier_detection: {consecutive_5xx: 2, interval_ms: 100, base_ejection_time_ms: 60000, max_ejection_percent: 50}",
        ),
    ]
    .concat();
    let mut resources = Resources::default();
    load(&text, "traffic.yaml", &mut resources)?;
    let options = RenderOptions {
        listen_address: "127.0.0.1".into(),
        listen_port: 0,
        admin_port: 0,
        dns_resolver: Some(dns.address()),
        session_wasm: e2e::paths::wasm_filter("gatehouse_session")?
            .display()
            .to_string(),
        feed_socket: e2e::paths::feed_socket(),
        ..RenderOptions::default()
    };
    let envoy = e2e::EnvoyBuilder::from_text(&render(&resources, &options)?.envoy, "traffic")
        .start()
        .await?;
    let pool = Pool {
        instances,
        envoy,
        _dns: dns,
    };
    // Ready when DNS has given every cluster its three hosts: each path
    // reaches each instance.
    for path in ["/spread/x", "/checked/x", "/ejecting/x"] {
        for instance in ["a", "b", "c"] {
            e2e::poll::until(
                &format!("{path} reaching {instance}"),
                e2e::poll::READY_DEADLINE,
                || async {
                    for _ in 0..12 {
                        if pool.hit(path, None).await?.1 == instance {
                            return Ok(Some(()));
                        }
                    }
                    Ok(None)
                },
            )
            .await?;
        }
    }
    Ok(pool)
}

#[tokio::test]
async fn several_instances_are_balanced_hashed_ejected_and_health_checked() -> Result<()> {
    let pool = pool().await?;

    // Round robin: 30 requests, ten to each.
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..30 {
        let (status, who) = pool.hit("/spread/x", None).await?;
        assert_eq!(status, 200);
        *counts.entry(who).or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|n| *n >= 5), "{counts:?}");

    // Ring hash on x-user: each user stays on one instance; twenty users
    // land on more than one (all on one has odds 3 * 3^-20).
    let mut homes = BTreeMap::new();
    for user in (0..20).map(|i| format!("user-{i}")) {
        let (_, first) = pool.hit("/sticky/x", Some(&user)).await?;
        for _ in 0..5 {
            assert_eq!(
                pool.hit("/sticky/x", Some(&user)).await?.1,
                first,
                "{user} moved"
            );
        }
        homes.insert(user, first);
    }
    let used: std::collections::BTreeSet<&String> = homes.values().collect();
    assert!(used.len() > 1, "{homes:?}");

    // Active health check: c fails it, gets nothing, passes, gets traffic.
    let c = &pool.instances[2];
    c.unhealthy.store(true, Ordering::SeqCst);
    pool.until_avoided("/checked/x", c.name, 30).await?;
    c.unhealthy.store(false, Ordering::SeqCst);
    e2e::poll::until("c back in /checked/", e2e::poll::READY_DEADLINE, || async {
        for _ in 0..12 {
            if pool.hit("/checked/x", None).await?.1 == "c" {
                return Ok(Some(()));
            }
        }
        Ok(None)
    })
    .await?;

    // Outlier detection: b answers 500, is ejected, and the rest serve.
    let b = &pool.instances[1];
    b.failing.store(true, Ordering::SeqCst);
    pool.until_avoided("/ejecting/x", b.name, 30).await?;
    // Round robin has no such ejection: b's failures still show there.
    let mut failed = 0;
    for _ in 0..9 {
        if pool.hit("/spread/x", None).await?.0 == 500 {
            failed += 1;
        }
    }
    assert!(failed >= 1, "the unejected cluster still reaches b");
    b.failing.store(false, Ordering::SeqCst);
    Ok(())
}
