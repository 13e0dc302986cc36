//! The quickstart stack, as `make run` starts it: the resources of
//! `deploy/quickstart/edge.yaml`, rendered by gatehouse-config, on stock
//! Envoy with the gatehouse-jwt and gatehouse-router filters;
//! gatehouse-authz for single sign-on; gatehouse-ratelimit on its memory
//! store; two demo upstreams that echo what they receive; a demo token
//! issuer (a JWKS server and a token signed with the test key); the demo
//! OpenID provider; a demo catalog API serving its OpenAPI document; and
//! `gatehouse diag`, the diagnostics page and developer portal.
//!
//! What lives here: the user-facing `quickstart` binary (`src/main.rs`) and
//! the wiring of its parts. What does not: starting and stopping each part
//! (Envoy, the services, the IdP, the upstreams as child processes), which is
//! the `e2e` harness's and shared with the tests; the demo token issuer's key
//! set and tokens (`e2e::demo`), which tests use too; the resources
//! themselves, in `edge.yaml` beside this crate. `e2e/tests/quickstart.rs`
//! runs the binary headless.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use base64::Engine;
use e2e::idp::Idp;
use e2e::jwks::JwksServer;
use e2e::{AuthzService, Echo, Envoy, EnvoyBuilder, RateLimitService};
use gatehouse_config::{RenderOptions, Resources, load, render};
use tempfile::TempDir;

/// The resource file, relative to the workspace.
pub const RESOURCES: &str = "deploy/quickstart/edge.yaml";

/// The demo catalog API's OpenAPI document, listed by the portal (the
/// compose stack serves the same file).
const CATALOG_API: &str = include_str!("../catalog/openapi.json");

/// The OIDC client the quickstart registers at the demo IdP.
const CLIENT_ID: &str = "gatehouse-quickstart";

/// A running quickstart stack. Everything stops when it drops, Envoy first.
#[derive(Debug)]
pub struct Quickstart {
    /// Envoy with the rendered bootstrap.
    pub envoy: Envoy,
    /// gatehouse-authz with the rendered authz.yaml.
    pub authz: AuthzService,
    /// gatehouse-ratelimit with the rendered ratelimit directory.
    pub ratelimit: RateLimitService,
    /// The demo OpenID provider.
    pub idp: Idp,
    /// The demo token issuer's keys.
    pub jwks: JwksServer,
    /// The demo upstream.
    pub demo: Echo,
    /// The canary demo upstream.
    pub demo_v2: Echo,
    /// The demo catalog API (its OpenAPI document).
    pub catalog: JwksServer,
    /// `gatehouse diag`: the diagnostics page and the developer portal.
    pub diag: e2e::process::ChildProcess,
    /// Where `gatehouse diag` serves, e.g. `http://127.0.0.1:8877`.
    pub diag_url: String,
    /// A demo API token (sub `demo-user`, valid for a day).
    pub token: String,
    _secrets: TempDir,
}

fn random_base64(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(buf))
}

/// The resources with the demo parts' addresses filled in.
fn resources(text: &str, vars: &[(&str, String)]) -> Result<Resources> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let filled =
        gatehouse_config::substitute(text, &vars).map_err(|e| anyhow!("{RESOURCES}: {e}"))?;
    let mut resources = Resources::default();
    load(&filled, RESOURCES, &mut resources)?;
    Ok(resources)
}

fn wasm(name: &str) -> Result<String> {
    Ok(e2e::paths::wasm_filter(name)?.display().to_string())
}

/// Starts the stack with Envoy on `listen_port`, its admin on `admin_port`
/// and `gatehouse diag` on `diag_port` (0 picks free ports); `quiet` keeps
/// the components' logs to their files when they stop.
///
/// # Errors
/// When a part does not start; the parts started so far are stopped.
pub async fn start(
    listen_port: u16,
    admin_port: u16,
    diag_port: u16,
    quiet: bool,
) -> Result<Quickstart> {
    let path = Quickstart::resources_path();
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let demo = Echo::start_named("demo").await?;
    let demo_v2 = Echo::start_named("demo-v2").await?;
    let jwks = JwksServer::start_down().await?;
    jwks.serve(&e2e::demo::jwks()?);
    let token = e2e::demo::token("demo-user")?;
    let catalog = JwksServer::start_down_at("/openapi.json").await?;
    catalog.serve(CATALOG_API);

    let secrets = tempfile::Builder::new()
        .prefix("gatehouse-quickstart-secrets-")
        .tempdir()?;
    let client_secret = random_base64(24)?;
    for (file, content) in [
        (
            "quickstart-oidc/oauth2-client-secret",
            client_secret.clone(),
        ),
        ("gatehouse-session-keys/keys", random_base64(32)?),
    ] {
        let path = secrets.path().join(file);
        std::fs::create_dir_all(path.parent().unwrap_or(secrets.path()))?;
        std::fs::write(path, format!("{content}\n"))?;
    }
    let vars = |idp: &str, origin: &str| {
        vec![
            ("DEMO", demo.addr().to_string()),
            ("DEMO_V2", demo_v2.addr().to_string()),
            ("JWKS", format!("http://127.0.0.1:{}", jwks.port())),
            ("IDP", idp.to_owned()),
            ("ORIGIN", origin.to_owned()),
            ("CATALOG", format!("127.0.0.1:{}", catalog.port())),
        ]
    };
    let mut options = RenderOptions {
        listen_address: "127.0.0.1".into(),
        listen_port,
        admin_port,
        jwt_wasm: wasm("gatehouse_jwt")?,
        router_wasm: wasm("gatehouse_router")?,
        session_wasm: wasm("gatehouse_session")?,
        // The fast path's keys travel over this socket only.
        feed_socket: secrets.path().join("feed.sock").display().to_string(),
        secrets_dir: secrets.path().display().to_string(),
        ..RenderOptions::default()
    };
    // The IdP must know the callback URL, which holds Envoy's port: start
    // with placeholders for the IdP and the origin (the bootstrap does not
    // depend on them), then give gatehouse-authz the real ones.
    let unknown = "http://127.0.0.1:9";
    let placeholder = resources(&text, &vars(unknown, unknown))?;
    let first = render(&placeholder, &options)?;
    let authz = AuthzService::builder(
        first
            .authz
            .as_deref()
            .ok_or_else(|| anyhow!("{RESOURCES} has no OAuth2 Filter"))?,
    )
    .log_on_drop(!quiet)
    .start()
    .await?;
    let mut limits = RateLimitService::builder().log_on_drop(!quiet);
    for (file, config) in &first.ratelimit {
        limits = limits.file(file, config);
    }
    let ratelimit = limits.start().await?;
    options.authz_address = authz.grpc_addr().to_string();
    options.ratelimit_address = ratelimit.grpc_addr().to_string();
    let envoy = EnvoyBuilder::from_text(
        &render(&placeholder, &options)?.envoy,
        "the rendered quickstart",
    )
    .log_on_drop(!quiet)
    .start()
    .await?;
    let origin = envoy.url("").trim_end_matches('/').to_owned();
    let mut idp = Idp::start(
        &serde_json::json!([{
            "client_id": CLIENT_ID,
            "client_secret": client_secret,
            "redirect_uris": [format!("{origin}{}sso/callback", gatehouse_config::OIDC_PATH_PREFIX)],
            "post_logout_redirect_uris": [format!("{origin}/")],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic"
        }]),
        3600,
    )
    .await?;
    idp.set_log_on_drop(!quiet);
    let real = resources(&text, &vars(idp.issuer(), &origin))?;
    let config = render(&real, &options)?.authz.unwrap_or_default();
    authz.write_file("authz.yaml", &config)?;

    // gatehouse diag reads the same resources, filled in.
    let filled_vars: Vec<(String, String)> = vars(idp.issuer(), &origin)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let filled = gatehouse_config::substitute(&text, &filled_vars)
        .map_err(|e| anyhow!("{RESOURCES}: {e}"))?;
    let edge_file = secrets.path().join("edge.yaml");
    std::fs::write(&edge_file, filled)?;
    let diag_port = if diag_port == 0 {
        e2e::redis::free_port()?
    } else {
        diag_port
    };
    let diag_url = format!("http://127.0.0.1:{diag_port}");
    let admin = envoy.admin_url("");
    let mut diag = e2e::process::ChildProcess::spawn(
        "gatehouse diag",
        std::process::Command::new(e2e::paths::service_bin("gatehouse")?)
            .arg("diag")
            .arg("-f")
            .arg(&edge_file)
            .args(["--listen", &format!("127.0.0.1:{diag_port}")])
            .args(["--envoy-admin", admin.trim_start_matches("http://")])
            .args(["--envoy-url", &origin])
            .args(["--ratelimit-metrics", &ratelimit.http_url("/metrics")])
            .args(["--authz-metrics", &authz.http_url("/metrics")]),
        &secrets.path().join("diag.log"),
    )?;
    diag.set_log_on_drop(!quiet);

    // Ready when a browser asking for /app/ is sent to the IdP.
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    e2e::idp::until_sent_to_login(&client, &format!("{origin}/app/"), idp.issuer()).await?;
    e2e::poll::until(
        "gatehouse diag answers",
        e2e::poll::READY_DEADLINE,
        || async {
            Ok(client
                .get(format!("{diag_url}/portal"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
                .then_some(()))
        },
    )
    .await?;
    Ok(Quickstart {
        envoy,
        authz,
        ratelimit,
        idp,
        jwks,
        demo,
        demo_v2,
        catalog,
        diag,
        diag_url,
        token,
        _secrets: secrets,
    })
}

impl Quickstart {
    /// URL of `path` on the edge.
    pub fn url(&self, path: &str) -> String {
        self.envoy.url(path)
    }

    /// The pids of the processes the stack started (Envoy, the two
    /// services, the IdP, `gatehouse diag`).
    pub fn pids(&self) -> Vec<u32> {
        vec![
            self.envoy.pid(),
            self.authz.pid(),
            self.ratelimit.pid(),
            self.idp.pid(),
            self.diag.pid(),
        ]
    }

    /// The resource file the stack renders.
    pub fn resources_path() -> PathBuf {
        e2e::paths::workspace_root().join(RESOURCES)
    }
}
