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
    /// In [`Mode::Xds`]: `gatehouse serve` (gatehouse-xds), from which Envoy
    /// takes its listeners and clusters and the two services their
    /// configurations.
    pub xds: Option<e2e::process::ChildProcess>,
    /// In [`Mode::Xds`]: the control plane's status page, e.g.
    /// `http://127.0.0.1:18001/status`.
    pub xds_status_url: Option<String>,
    _secrets: TempDir,
}

/// How Envoy and the services get their configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Rendered files, as `gatehouse render` writes them (`make run`).
    Files,
    /// From `gatehouse serve`: Envoy over ADS, the services from the files
    /// it writes for each version (`make run-xds`).
    Xds,
}

fn random_base64(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(buf))
}

/// The resources with the demo parts' addresses filled in.
fn resources(text: &str, vars: &[(String, String)]) -> Result<Resources> {
    let filled =
        gatehouse_config::substitute(text, vars).map_err(|e| anyhow!("{RESOURCES}: {e}"))?;
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
    start_in(Mode::Files, listen_port, admin_port, diag_port, quiet).await
}

/// [`start`], in `mode`.
///
/// # Errors
/// As [`start`].
pub async fn start_in(
    mode: Mode,
    listen_port: u16,
    admin_port: u16,
    diag_port: u16,
    quiet: bool,
) -> Result<Quickstart> {
    let parts = Parts::start().await?;
    let dir = parts.secrets.path();
    let options = RenderOptions {
        listen_address: "127.0.0.1".into(),
        listen_port,
        admin_port,
        jwt_wasm: wasm("gatehouse_jwt")?,
        router_wasm: wasm("gatehouse_router")?,
        session_wasm: wasm("gatehouse_session")?,
        // The fast path's keys travel over this socket only.
        feed_socket: dir.join("feed.sock").display().to_string(),
        secrets_dir: dir.display().to_string(),
        ..RenderOptions::default()
    };
    match mode {
        Mode::Files => start_files(parts, options, diag_port, quiet).await,
        Mode::Xds => start_xds(parts, options, diag_port, quiet).await,
    }
}

/// The demo parts both modes start first, and the secrets' directory.
struct Parts {
    demo: Echo,
    demo_v2: Echo,
    jwks: JwksServer,
    catalog: JwksServer,
    token: String,
    secrets: TempDir,
    client_secret: String,
}

impl Parts {
    async fn start() -> Result<Self> {
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
        Ok(Self {
            demo,
            demo_v2,
            jwks,
            catalog,
            token,
            secrets,
            client_secret,
        })
    }

    /// The `${NAME}` values of `edge.yaml`, for an IdP at `idp` and an edge
    /// at `origin`.
    fn vars(&self, idp: &str, origin: &str) -> Vec<(String, String)> {
        [
            ("DEMO", self.demo.addr().to_string()),
            ("DEMO_V2", self.demo_v2.addr().to_string()),
            ("JWKS", format!("http://127.0.0.1:{}", self.jwks.port())),
            ("IDP", idp.to_owned()),
            ("ORIGIN", origin.to_owned()),
            ("CATALOG", format!("127.0.0.1:{}", self.catalog.port())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// The edge's processes, however they were configured.
struct Edge {
    envoy: Envoy,
    authz: AuthzService,
    ratelimit: RateLimitService,
    idp: Idp,
    /// `gatehouse serve` and its status page, in [`Mode::Xds`].
    xds: Option<(e2e::process::ChildProcess, String)>,
}

/// [`Mode::Files`]: the resources rendered here, and the files given to
/// each part.
async fn start_files(
    parts: Parts,
    mut options: RenderOptions,
    diag_port: u16,
    quiet: bool,
) -> Result<Quickstart> {
    let path = Quickstart::resources_path();
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    // The IdP must know the callback URL, which holds Envoy's port: start
    // with placeholders for the IdP and the origin (the bootstrap does not
    // depend on them), then give gatehouse-authz the real ones.
    let unknown = "http://127.0.0.1:9";
    let placeholder = resources(&text, &parts.vars(unknown, unknown))?;
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
    let mut idp = Idp::start(&idp_clients(&origin, &parts.client_secret), 3600).await?;
    idp.set_log_on_drop(!quiet);
    let vars = parts.vars(idp.issuer(), &origin);
    let real = resources(&text, &vars)?;
    let config = render(&real, &options)?.authz.unwrap_or_default();
    authz.write_file("authz.yaml", &config)?;
    let edge = Edge {
        envoy,
        authz,
        ratelimit,
        idp,
        xds: None,
    };
    finish(parts, edge, &vars, diag_port, quiet).await
}

/// Starts `gatehouse diag` on the resources (their `${NAME}`s from `vars`)
/// beside the edge, waits until all of it answers, and hands it over.
async fn finish(
    parts: Parts,
    edge: Edge,
    vars: &[(String, String)],
    diag_port: u16,
    quiet: bool,
) -> Result<Quickstart> {
    let Edge {
        envoy,
        authz,
        ratelimit,
        idp,
        xds,
    } = edge;
    let diag_port = port_or_free(diag_port)?;
    let diag_url = format!("http://127.0.0.1:{diag_port}");
    let admin = envoy.admin_url("");
    let origin = envoy.url("").trim_end_matches('/').to_owned();
    let mut command = std::process::Command::new(e2e::paths::service_bin("gatehouse")?);
    command
        .arg("diag")
        .arg("-f")
        .arg(Quickstart::resources_path());
    for (name, value) in vars {
        command.args(["--set", &format!("{name}={value}")]);
    }
    command
        .args(["--listen", &format!("127.0.0.1:{diag_port}")])
        .args(["--envoy-admin", admin.trim_start_matches("http://")])
        .args(["--envoy-url", &origin])
        .args(["--ratelimit-metrics", &ratelimit.http_url("/metrics")])
        .args(["--authz-metrics", &authz.http_url("/metrics")]);
    let mut diag = e2e::process::ChildProcess::spawn(
        "gatehouse diag",
        &mut command,
        &parts.secrets.path().join("diag.log"),
    )?;
    diag.set_log_on_drop(!quiet);

    // Ready when a browser asking for /app/ is sent to the IdP.
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    e2e::idp::until_sent_to_login(&client, &format!("{origin}/app/"), idp.issuer()).await?;
    e2e::poll::until_ok(
        "gatehouse diag answers",
        &client,
        &format!("{diag_url}/portal"),
    )
    .await?;
    let (xds, xds_status_url) = xds.unzip();
    Ok(Quickstart {
        envoy,
        authz,
        ratelimit,
        idp,
        jwks: parts.jwks,
        demo: parts.demo,
        demo_v2: parts.demo_v2,
        catalog: parts.catalog,
        diag,
        diag_url,
        token: parts.token,
        xds,
        xds_status_url,
        _secrets: parts.secrets,
    })
}

/// A port: `port`, or a free one when it is 0.
fn port_or_free(port: u16) -> Result<u16> {
    if port == 0 {
        e2e::redis::free_port()
    } else {
        Ok(port)
    }
}

/// The OIDC client the demo IdP registers, for an edge at `origin`.
fn idp_clients(origin: &str, client_secret: &str) -> serde_json::Value {
    serde_json::json!([{
        "client_id": CLIENT_ID,
        "client_secret": client_secret,
        "redirect_uris": [format!("{origin}{}sso/callback", gatehouse_config::OIDC_PATH_PREFIX)],
        "post_logout_redirect_uris": [format!("{origin}/")],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_basic"
    }])
}

/// [`Mode::Xds`]: `gatehouse serve` renders `edge.yaml` itself (the same
/// file, its `${NAME}`s given with `--set`), serves Envoy over ADS and
/// writes the two services' configurations, which they watch.
async fn start_xds(
    parts: Parts,
    options: RenderOptions,
    diag_port: u16,
    quiet: bool,
) -> Result<Quickstart> {
    // Envoy's port is in the IdP's callback URL, and the services' ports in
    // the rendered Envoy config: all are chosen before anything renders.
    let [free_listen, authz_port, ratelimit_port, ads, status] = e2e::redis::free_ports()?;
    let listen_port = if options.listen_port == 0 {
        free_listen
    } else {
        options.listen_port
    };
    let origin = format!("http://127.0.0.1:{listen_port}");
    let mut idp = Idp::start(&idp_clients(&origin, &parts.client_secret), 3600).await?;
    idp.set_log_on_drop(!quiet);
    let vars = parts.vars(idp.issuer(), &origin);
    let authz_addr = std::net::SocketAddr::from(([127, 0, 0, 1], authz_port));
    let services = parts.secrets.path().join("services");
    let mut command = std::process::Command::new(e2e::paths::service_bin("gatehouse-xds")?);
    command
        .arg("-f")
        .arg(Quickstart::resources_path())
        .args(["--listen", &format!("127.0.0.1:{ads}")])
        .args(["--status", &format!("127.0.0.1:{status}")])
        .arg("--services-out")
        .arg(&services)
        .args(["--listen-address", "127.0.0.1"])
        .args(["--listen-port", &listen_port.to_string()])
        .args(["--jwt-wasm", &options.jwt_wasm])
        .args(["--router-wasm", &options.router_wasm])
        .args(["--session-wasm", &options.session_wasm])
        .args(["--feed-socket", &options.feed_socket])
        .args(["--secrets-dir", &options.secrets_dir])
        .args(["--authz", &authz_addr.to_string()])
        .args(["--ratelimit", &format!("127.0.0.1:{ratelimit_port}")]);
    for (name, value) in &vars {
        command.args(["--set", &format!("{name}={value}")]);
    }
    let mut xds = e2e::process::ChildProcess::spawn(
        "gatehouse-xds",
        &mut command,
        &parts.secrets.path().join("xds.log"),
    )?;
    xds.set_log_on_drop(!quiet);
    let xds_status_url = format!("http://127.0.0.1:{status}/status");
    let client = reqwest::Client::builder().no_proxy().build()?;
    e2e::poll::until_ok("gatehouse-xds answers", &client, &xds_status_url).await?;
    // The default instance's files are written before the status page
    // listens.
    let instance = services.join("default");
    let authz = AuthzService::builder("")
        .config_file(&instance.join("authz.yaml"))
        .grpc_addr(authz_addr)
        .log_on_drop(!quiet)
        .start()
        .await?;
    let ratelimit = RateLimitService::builder()
        .env("RUNTIME_ROOT", services.display())
        .env("RUNTIME_SUBDIRECTORY", "default")
        .env("GRPC_PORT", ratelimit_port)
        .log_on_drop(!quiet)
        .start()
        .await?;
    let bootstrap = gatehouse_config::render_xds_bootstrap(
        &format!("127.0.0.1:{ads}"),
        "quickstart",
        "default",
        options.admin_port,
    );
    let envoy = EnvoyBuilder::from_text(&bootstrap, "the quickstart's xDS bootstrap")
        .log_on_drop(!quiet)
        .start()
        .await?;
    let edge = Edge {
        envoy,
        authz,
        ratelimit,
        idp,
        xds: Some((xds, xds_status_url)),
    };
    finish(parts, edge, &vars, diag_port, quiet).await
}

impl Quickstart {
    /// URL of `path` on the edge.
    pub fn url(&self, path: &str) -> String {
        self.envoy.url(path)
    }

    /// The pids of the processes the stack started (Envoy, the two
    /// services, the IdP, `gatehouse diag`, and `gatehouse serve` in
    /// [`Mode::Xds`]).
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![
            self.envoy.pid(),
            self.authz.pid(),
            self.ratelimit.pid(),
            self.idp.pid(),
            self.diag.pid(),
        ];
        pids.extend(self.xds.as_ref().map(e2e::process::ChildProcess::pid));
        pids
    }

    /// The resource file the stack renders.
    pub fn resources_path() -> PathBuf {
        e2e::paths::workspace_root().join(RESOURCES)
    }
}
