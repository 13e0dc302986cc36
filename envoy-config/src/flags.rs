//! The command-line flags that choose how resources render, declared once
//! for `gatehouse` and `gatehouse serve` (gatehouse-xds), so both take the
//! same options with the same meaning and defaults.

use crate::{Instance, RenderOptions};

/// The rendering options, as `gatehouse` and `gatehouse serve` take them.
/// Global: `--help` names them once, and they may follow any command.
/// Defaults are [`RenderOptions::default`]'s.
#[derive(Debug, Clone, clap::Args)]
pub struct RenderFlags {
    /// Fill ${NAME} in the resource files (repeatable); one left unfilled outside a comment is an error
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = var, global = true)]
    pub vars: Vec<(String, String)>,
    /// The Ambassador instance id: resources whose spec.ambassador_id names another instance are skipped
    #[arg(long, value_name = "ID", global = true, env = "AMBASSADOR_ID", default_value_t = Instance::default().ambassador_id)]
    pub ambassador_id: String,
    /// The instance's namespace: a Mapping in another namespace sends `service: name` to `name.<its namespace>`
    #[arg(long, value_name = "NAME", global = true, env = "AMBASSADOR_NAMESPACE", default_value_t = Instance::default().namespace)]
    pub ambassador_namespace: String,
    /// The address Envoy's listeners bind
    #[arg(long, value_name = "IP", global = true, default_value_t = RenderOptions::default().listen_address)]
    pub listen_address: String,
    /// The cleartext listener when no Listener resource says
    #[arg(long, value_name = "N", global = true, default_value_t = RenderOptions::default().listen_port)]
    pub listen_port: u16,
    /// The TLS listener when no Listener resource says and a Host has a certificate
    #[arg(long, value_name = "N", global = true, default_value_t = RenderOptions::default().https_port)]
    pub https_port: u16,
    /// Envoy's admin, on 127.0.0.1
    #[arg(long, value_name = "N", global = true, default_value_t = RenderOptions::default().admin_port)]
    pub admin_port: u16,
    /// The gatehouse-jwt wasm file, as Envoy sees it
    #[arg(long, value_name = "PATH", global = true, default_value_t = RenderOptions::default().jwt_wasm)]
    pub jwt_wasm: String,
    /// The gatehouse-router wasm file, as Envoy sees it
    #[arg(long, value_name = "PATH", global = true, default_value_t = RenderOptions::default().router_wasm)]
    pub router_wasm: String,
    /// The gatehouse-session wasm file (the SSO fast path), as Envoy sees it
    #[arg(long, value_name = "PATH", global = true, default_value_t = RenderOptions::default().session_wasm)]
    pub session_wasm: String,
    /// The Unix socket gatehouse-authz serves the SSO fast path's keys on, as Envoy and gatehouse-authz see it
    #[arg(long, value_name = "PATH", global = true, default_value_t = RenderOptions::default().feed_socket)]
    pub feed_socket: String,
    /// Every OAuth2 Filter through ext_authz, as with fastPath: false (where gatehouse-authz runs in another pod or host than Envoy)
    #[arg(long, global = true)]
    pub no_fast_path: bool,
    /// gatehouse-authz's gRPC address
    #[arg(long, value_name = "HOST:PORT", global = true, default_value_t = RenderOptions::default().authz_address)]
    pub authz: String,
    /// gatehouse-ratelimit's gRPC address
    #[arg(long, value_name = "HOST:PORT", global = true, default_value_t = RenderOptions::default().ratelimit_address)]
    pub ratelimit: String,
    #[arg(
        long,
        value_name = "DIR",
        global = true,
        default_value_t = RenderOptions::default().secrets_dir,
        // `help` rather than a doc comment: rustdoc would read <DIR> as HTML.
        help = "Where Secrets are mounted: <DIR>/<secret name>/<key>"
    )]
    pub secrets_dir: String,
    /// The CAs that https:// services and JWKS URIs are checked against
    #[arg(long, value_name = "PATH", global = true, default_value_t = RenderOptions::default().ca_file)]
    pub ca_file: String,
    /// Call gatehouse-authz and gatehouse-ratelimit over TLS, their certificates checked against this CA [default: plain gRPC]
    #[arg(long, value_name = "PATH", global = true)]
    pub services_tls_ca: Option<String>,
    /// Resolve the services' host names with this DNS server [default: the system's]
    #[arg(long, value_name = "IP:PORT", global = true)]
    pub dns_resolver: Option<String>,
}

impl RenderFlags {
    /// The options these flags give.
    #[must_use]
    pub fn render_options(&self) -> RenderOptions {
        RenderOptions {
            listen_address: self.listen_address.clone(),
            listen_port: self.listen_port,
            https_port: self.https_port,
            admin_port: self.admin_port,
            jwt_wasm: self.jwt_wasm.clone(),
            router_wasm: self.router_wasm.clone(),
            session_wasm: self.session_wasm.clone(),
            feed_socket: self.feed_socket.clone(),
            fast_path: !self.no_fast_path,
            authz_address: self.authz.clone(),
            ratelimit_address: self.ratelimit.clone(),
            secrets_dir: self.secrets_dir.clone(),
            ca_file: self.ca_file.clone(),
            services_ca_file: self.services_tls_ca.clone(),
            dns_resolver: self.dns_resolver.clone(),
            ..RenderOptions::default()
        }
    }

    /// The Ambassador instance these flags name.
    #[must_use]
    pub fn instance(&self) -> Instance {
        Instance {
            ambassador_id: self.ambassador_id.clone(),
            namespace: self.ambassador_namespace.clone(),
        }
    }
}

/// `--set NAME=VALUE`.
///
/// # Errors
/// The text has no `=`.
pub fn var(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("{text:?}: write NAME=VALUE"))
}
