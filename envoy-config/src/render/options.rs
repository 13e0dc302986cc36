//! What the caller chooses ([`RenderOptions`]: ports, addresses, file
//! locations) and why resources that each parsed cannot render together
//! ([`RenderError`]).

/// Where the rendered Envoy listens and where it finds the services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    /// Listener address.
    pub listen_address: String,
    /// Cleartext listener port (when no `Listener` resource says).
    pub listen_port: u16,
    /// TLS listener port (when no `Listener` resource says and a `Host` has TLS).
    pub https_port: u16,
    /// Admin port (on 127.0.0.1).
    pub admin_port: u16,
    /// Trusted proxies in front (`x-forwarded-for` hops).
    pub xff_num_trusted_hops: u32,
    /// The gatehouse-jwt wasm file, as Envoy sees it.
    pub jwt_wasm: String,
    /// The gatehouse-router wasm file, as Envoy sees it.
    pub router_wasm: String,
    /// The gatehouse-session wasm file (the SSO fast path), as Envoy sees it.
    pub session_wasm: String,
    /// The Unix socket gatehouse-authz serves the fast path's feed on,
    /// as both Envoy and gatehouse-authz see it.
    pub feed_socket: String,
    /// Whether OAuth2 Filters may use the fast path at all (`fastPath`
    /// decides per Filter): off where gatehouse-authz cannot share a Unix
    /// socket with Envoy (another pod or host).
    pub fast_path: bool,
    /// gatehouse-authz's gRPC address (`host:port`).
    pub authz_address: String,
    /// gatehouse-ratelimit's gRPC address (`host:port`).
    pub ratelimit_address: String,
    /// Where Secrets are mounted: `<dir>/<secret name>/<key>`.
    pub secrets_dir: String,
    /// CA bundle that upstream TLS certificates (https services, JWKS) are checked against.
    pub ca_file: String,
    /// When set, Envoy calls gatehouse-authz and gatehouse-ratelimit over
    /// TLS, checking their certificates against this CA for the host part
    /// of their addresses.
    pub services_ca_file: Option<String>,
    /// When set (`ip:port`), Envoy resolves the services' host names with
    /// this DNS server instead of the system's.
    pub dns_resolver: Option<String>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            listen_address: "0.0.0.0".into(),
            listen_port: 8080,
            https_port: 8443,
            admin_port: 9901,
            xff_num_trusted_hops: 0,
            jwt_wasm: "/etc/gatehouse/wasm/gatehouse_jwt.wasm".into(),
            router_wasm: "/etc/gatehouse/wasm/gatehouse_router.wasm".into(),
            session_wasm: "/etc/gatehouse/wasm/gatehouse_session.wasm".into(),
            feed_socket: "/run/gatehouse/feed.sock".into(),
            fast_path: true,
            authz_address: "127.0.0.1:9191".into(),
            ratelimit_address: "127.0.0.1:8081".into(),
            secrets_dir: "/etc/gatehouse/secrets".into(),
            ca_file: "/etc/ssl/certs/ca-certificates.crt".into(),
            services_ca_file: None,
            dns_resolver: None,
        }
    }
}

/// Why resources that each parsed cannot render together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{document}: {path}: {message}")]
pub struct RenderError {
    /// `<Kind> <name>`.
    pub document: String,
    /// Field path in it.
    pub path: String,
    /// What is wrong and what to do.
    pub message: String,
}

pub(super) fn render_err(
    document: String,
    path: impl Into<String>,
    message: impl Into<String>,
) -> RenderError {
    RenderError {
        document,
        path: path.into(),
        message: message.into(),
    }
}
