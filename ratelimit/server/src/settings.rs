//! Settings from the environment, as envoyproxy/ratelimit reads them.
//!
//! Same variable names and defaults. As in the reference, a variable that is
//! set is parsed even when empty; a value that does not parse, or names
//! something we do not offer, stops startup with a message naming the variable.
//! Gatehouse's own settings start with `GATEHOUSE_`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gatehouse_ratelimit_core::{HeaderNames, LimiterSettings};

/// Why the environment was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{name}={value:?}: {problem}")]
pub struct SettingsError {
    /// The variable.
    pub name: String,
    /// Its value.
    pub value: String,
    /// What is wrong and what to write instead.
    pub problem: String,
}

/// Where counters live.
#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    /// In this process (`BACKEND_TYPE=memory`, Gatehouse's default).
    Memory,
    /// Redis (`BACKEND_TYPE=redis`, or `REDIS_URL` set).
    Redis(RedisSettings),
}

/// Redis topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisType {
    /// One node.
    Single,
    /// Redis Cluster; `REDIS_URL` lists seed nodes.
    Cluster,
    /// Sentinel; `REDIS_URL` is `master-name,host:port,...`.
    Sentinel,
}

/// How to reach Redis.
#[derive(Clone, PartialEq)]
pub struct RedisSettings {
    /// `tcp` or `unix`.
    pub socket_type: String,
    /// Address(es), reference format (no `redis://`).
    pub url: String,
    /// Topology.
    pub kind: RedisType,
    /// `pass` or `user:pass`; never logged.
    pub auth: String,
    /// TLS to Redis.
    pub tls: bool,
    /// Multiplexed connections to spread requests over.
    pub pool_size: usize,
    /// Dial timeout (`REDIS_TIMEOUT`).
    pub connect_timeout: Duration,
    /// Bound on one decision's wait for Redis, queue included
    /// (`GATEHOUSE_STORE_TIMEOUT`, 500ms: below the 1 s rate-limit timeout
    /// Gatehouse renders for Envoy, so the failure policy answers in time).
    pub op_timeout: Duration,
    /// Most decisions waiting for Redis or in flight; more are refused at
    /// once (`GATEHOUSE_STORE_MAX_PENDING`, 4096).
    pub max_pending: usize,
    /// Up to this many seconds added to each key's expiry, as the reference.
    pub expiration_jitter_max_seconds: u64,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("socket_type", &self.socket_type)
            .field("url", &self.url)
            .field("kind", &self.kind)
            .field(
                "auth",
                &if self.auth.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("tls", &self.tls)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("op_timeout", &self.op_timeout)
            .field("max_pending", &self.max_pending)
            .finish()
    }
}

/// What a failing store means for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Answer `UNAVAILABLE`, so Envoy's `failure_mode_deny` decides (default).
    Error,
    /// Answer OK: allow the request.
    Allow,
}

/// Where the YAML files are and how to watch them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeSettings {
    /// `RUNTIME_ROOT`.
    pub root: PathBuf,
    /// `RUNTIME_SUBDIRECTORY`.
    pub subdirectory: String,
    /// `RUNTIME_APPDIRECTORY`.
    pub appdirectory: String,
    /// `RUNTIME_IGNOREDOTFILES`.
    pub ignore_dotfiles: bool,
    /// `RUNTIME_WATCH_ROOT`.
    pub watch_root: bool,
    /// `MERGE_DOMAIN_CONFIG`.
    pub merge_domains: bool,
}

impl RuntimeSettings {
    /// Files in `root/config`, nothing else set: the layout unit tests use.
    #[cfg(test)]
    pub fn in_dir(root: &std::path::Path) -> Self {
        Self {
            root: root.to_path_buf(),
            subdirectory: String::new(),
            appdirectory: "config".into(),
            ignore_dotfiles: false,
            watch_root: false,
            merge_domains: false,
        }
    }

    /// The directory whose files (recursively) make the configuration:
    /// `RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/RUNTIME_APPDIRECTORY`.
    pub fn config_dir(&self) -> PathBuf {
        self.root.join(&self.subdirectory).join(&self.appdirectory)
    }
}

/// Every setting of the service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// gRPC listen address (`GRPC_HOST`:`GRPC_PORT`).
    pub grpc_addr: SocketAddr,
    /// HTTP listen address (`HOST`:`PORT`): `/json`, `/healthcheck`, `/healthz`, `/readyz`, `/metrics`.
    pub http_addr: SocketAddr,
    /// Debug listen address (`DEBUG_HOST`:`DEBUG_PORT`): `/rlconfig`, `/metrics`.
    pub debug_addr: SocketAddr,
    /// Config files.
    pub runtime: RuntimeSettings,
    /// Counter store.
    pub backend: Backend,
    /// Limiter behaviour.
    pub limiter: LimiterSettings,
    /// Store failure policy.
    pub failure_policy: FailurePolicy,
    /// Most counters the memory store holds (`GATEHOUSE_MEMORY_MAX_KEYS`).
    pub memory_max_keys: usize,
    /// Most distinct request-valued `descriptor` labels per metric
    /// (`GATEHOUSE_METRIC_MAX_VALUE_LABELS`); more share one `overflow` label.
    pub metric_max_value_labels: usize,
    /// `LOG_LEVEL` as a tracing filter.
    pub log_level: String,
    /// `LOG_FORMAT=json`.
    pub log_json: bool,
    /// `USE_STATSD` (accepted; metrics are served as Prometheus text instead).
    pub use_statsd: bool,
}

type Env = BTreeMap<String, String>;

struct Reader<'a> {
    env: &'a Env,
}

impl Reader<'_> {
    fn raw(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str)
    }

    fn error(&self, name: &str, problem: impl Into<String>) -> SettingsError {
        SettingsError {
            name: name.to_owned(),
            value: self.raw(name).unwrap_or_default().to_owned(),
            problem: problem.into(),
        }
    }

    fn string(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or(default).to_owned()
    }

    fn bool(&self, name: &str, default: bool) -> Result<bool, SettingsError> {
        match self.raw(name) {
            None => Ok(default),
            // Go's strconv.ParseBool, which the reference uses.
            Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
            Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
            Some(_) => Err(self.error(name, "not a boolean: use true or false")),
        }
    }

    fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, SettingsError> {
        match self.raw(name) {
            None => Ok(default),
            Some(v) => v
                .replace('_', "")
                .parse()
                .map_err(|_| self.error(name, "not a valid number")),
        }
    }

    fn duration(&self, name: &str, default: Duration) -> Result<Duration, SettingsError> {
        match self.raw(name) {
            None => Ok(default),
            Some(v) => parse_go_duration(v)
                .ok_or_else(|| self.error(name, "not a duration: write e.g. 500ms, 10s or 1m30s")),
        }
    }

    fn port(
        &self,
        host_var: &str,
        port_var: &str,
        default_port: u16,
    ) -> Result<SocketAddr, SettingsError> {
        let host = self.string(host_var, "0.0.0.0");
        let port: u16 = self.number(port_var, default_port)?;
        let ip: std::net::IpAddr = host.trim_matches(['[', ']']).parse().map_err(|_| {
            self.error(host_var, "not an IP address: use e.g. 0.0.0.0 or 127.0.0.1")
        })?;
        Ok(SocketAddr::new(ip, port))
    }

    /// Known variables whose features Gatehouse does not offer: refuse any
    /// value but the reference's default, so nobody believes they are on.
    fn unsupported(
        &self,
        name: &str,
        allowed: &[&str],
        instead: &str,
    ) -> Result<(), SettingsError> {
        match self.raw(name) {
            Some(v) if !allowed.contains(&v) => Err(self.error(
                name,
                format!("not supported by gatehouse-ratelimit: {instead}"),
            )),
            _ => Ok(()),
        }
    }
}

/// Go's `time.ParseDuration`: a sequence of decimal numbers with units
/// (ns, us, µs, ms, s, m, h), optionally signed; "0" alone is allowed.
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let text = text.strip_prefix('+').unwrap_or(text);
    if text.is_empty() || text.starts_with('-') {
        return None;
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_end == 0 {
            return None;
        }
        let value: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_end..];
    }
    Some(Duration::from_secs_f64(total))
}

impl Settings {
    /// Settings from the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Settings from given variables (tests use this).
    pub fn from_vars(env: &Env) -> Result<Self, SettingsError> {
        let r = Reader { env };
        let backend_type = r.raw("BACKEND_TYPE").map(str::to_ascii_lowercase);
        // Gatehouse runs on memory unless Redis is asked for, by BACKEND_TYPE
        // or by a REDIS_URL (a reference deployment always sets one).
        let use_redis = match backend_type.as_deref() {
            Some("redis") => true,
            Some("memory") => false,
            Some("") | None => r.raw("REDIS_URL").is_some(),
            Some("memcache") => {
                return Err(r.error(
                    "BACKEND_TYPE",
                    "memcache is not supported: use redis or memory",
                ));
            }
            Some(_) => return Err(r.error("BACKEND_TYPE", "unknown backend: use memory or redis")),
        };
        let backend = if use_redis {
            let kind = match r
                .string("REDIS_TYPE", "SINGLE")
                .to_ascii_lowercase()
                .as_str()
            {
                "single" => RedisType::Single,
                "cluster" => RedisType::Cluster,
                "sentinel" => RedisType::Sentinel,
                _ => {
                    return Err(r.error(
                        "REDIS_TYPE",
                        "unknown Redis type: use SINGLE, CLUSTER or SENTINEL",
                    ));
                }
            };
            let socket_type = r.string("REDIS_SOCKET_TYPE", "unix").to_ascii_lowercase();
            if socket_type != "tcp" && socket_type != "unix" {
                return Err(r.error("REDIS_SOCKET_TYPE", "use tcp or unix"));
            }
            let url = r.string("REDIS_URL", "/var/run/nutcracker/ratelimit.sock");
            if kind == RedisType::Sentinel && url.split(',').count() < 2 {
                return Err(r.error(
                    "REDIS_URL",
                    "sentinel wants master-name,host:port[,host:port...]",
                ));
            }
            let pool_size: usize = r.number("REDIS_POOL_SIZE", 10)?;
            if pool_size == 0 {
                return Err(r.error("REDIS_POOL_SIZE", "must be at least 1"));
            }
            let op_timeout = r.duration("GATEHOUSE_STORE_TIMEOUT", Duration::from_millis(500))?;
            if op_timeout.is_zero() {
                return Err(r.error(
                    "GATEHOUSE_STORE_TIMEOUT",
                    "must be more than 0: keep it below Envoy's rate-limit timeout, e.g. 500ms",
                ));
            }
            let max_pending: usize = r.number("GATEHOUSE_STORE_MAX_PENDING", 4096)?;
            if max_pending == 0 {
                return Err(r.error("GATEHOUSE_STORE_MAX_PENDING", "must be at least 1"));
            }
            Backend::Redis(RedisSettings {
                socket_type,
                url,
                kind,
                auth: r.string("REDIS_AUTH", ""),
                tls: r.bool("REDIS_TLS", false)?,
                pool_size,
                connect_timeout: r.duration("REDIS_TIMEOUT", Duration::from_secs(10))?,
                op_timeout,
                max_pending,
                expiration_jitter_max_seconds: r.number("EXPIRATION_JITTER_MAX_SECONDS", 300)?,
            })
        } else {
            Backend::Memory
        };

        let failure_policy = match r.string("GATEHOUSE_STORE_FAILURE", "error").as_str() {
            "error" => FailurePolicy::Error,
            "allow" => FailurePolicy::Allow,
            _ => {
                return Err(r.error(
                    "GATEHOUSE_STORE_FAILURE",
                    "use error (Envoy's failure_mode_deny decides) or allow",
                ));
            }
        };

        let memory_max_keys: usize = r.number(
            "GATEHOUSE_MEMORY_MAX_KEYS",
            gatehouse_ratelimit_core::DEFAULT_MAX_KEYS,
        )?;
        if memory_max_keys == 0 {
            return Err(r.error("GATEHOUSE_MEMORY_MAX_KEYS", "must be at least 1"));
        }
        let metric_max_value_labels: usize = r.number("GATEHOUSE_METRIC_MAX_VALUE_LABELS", 1000)?;

        let near_limit_ratio: f64 = r.number("NEAR_LIMIT_RATIO", 0.8)?;
        if !(0.0..=1.0).contains(&near_limit_ratio) {
            return Err(r.error("NEAR_LIMIT_RATIO", "must be between 0 and 1"));
        }
        let local_cache_bytes: usize = r.number("LOCAL_CACHE_SIZE_IN_BYTES", 0)?;
        let response_headers =
            r.bool("LIMIT_RESPONSE_HEADERS_ENABLED", false)?
                .then(|| HeaderNames {
                    limit: r.string("LIMIT_LIMIT_HEADER", "RateLimit-Limit"),
                    remaining: r.string("LIMIT_REMAINING_HEADER", "RateLimit-Remaining"),
                    reset: r.string("LIMIT_RESET_HEADER", "RateLimit-Reset"),
                });
        let limiter = LimiterSettings {
            key_prefix: r.string("CACHE_KEY_PREFIX", ""),
            near_limit_ratio,
            shadow_mode: r.bool("SHADOW_MODE", false)?,
            quota_mode: r.bool("QUOTA_MODE", false)?,
            response_headers,
            retry_after: r.bool("GATEHOUSE_RETRY_AFTER", true)?,
            // About 64 bytes per cached key, key text included.
            local_cache_entries: local_cache_bytes / 64,
        };

        let log_level = match r.string("LOG_LEVEL", "WARN").to_ascii_lowercase().as_str() {
            "panic" | "fatal" | "error" => "error",
            "warn" | "warning" => "warn",
            "info" => "info",
            "debug" => "debug",
            "trace" => "trace",
            _ => return Err(r.error("LOG_LEVEL", "use error, warn, info, debug or trace")),
        }
        .to_owned();
        let log_json = match r.string("LOG_FORMAT", "text").to_ascii_lowercase().as_str() {
            "json" => true,
            "text" => false,
            _ => return Err(r.error("LOG_FORMAT", "use text or json")),
        };

        r.unsupported(
            "CONFIG_TYPE",
            &["FILE", "file"],
            "only FILE configuration is offered",
        )?;
        r.unsupported(
            "STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT",
            &["false", "0", "f", "F", "FALSE", "False"],
            "over-limit hits are always counted",
        )?;
        r.unsupported(
            "REDIS_PERSECOND",
            &["false", "0", "f", "F", "FALSE", "False"],
            "use one Redis (or a cluster) for every unit",
        )?;
        r.unsupported(
            "GRPC_SERVER_USE_TLS",
            &["false", "0", "f", "F", "FALSE", "False"],
            "terminate TLS in front of the service (e.g. an Envoy sidecar)",
        )?;
        r.unsupported("GRPC_UDS", &[""], "listen on GRPC_HOST:GRPC_PORT")?;

        Ok(Self {
            grpc_addr: r.port("GRPC_HOST", "GRPC_PORT", 8081)?,
            http_addr: r.port("HOST", "PORT", 8080)?,
            debug_addr: r.port("DEBUG_HOST", "DEBUG_PORT", 6070)?,
            runtime: RuntimeSettings {
                root: PathBuf::from(r.string("RUNTIME_ROOT", "/srv/runtime_data/current")),
                subdirectory: r.string("RUNTIME_SUBDIRECTORY", ""),
                appdirectory: r.string("RUNTIME_APPDIRECTORY", "config"),
                ignore_dotfiles: r.bool("RUNTIME_IGNOREDOTFILES", false)?,
                watch_root: r.bool("RUNTIME_WATCH_ROOT", true)?,
                merge_domains: r.bool("MERGE_DOMAIN_CONFIG", false)?,
            },
            backend,
            limiter,
            failure_policy,
            memory_max_keys,
            metric_max_value_labels,
            log_level,
            log_json,
            use_statsd: r.bool("USE_STATSD", true)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_match_the_reference() {
        let s = Settings::from_vars(&env(&[])).unwrap();
        assert_eq!(s.grpc_addr.to_string(), "0.0.0.0:8081");
        assert_eq!(s.http_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(s.debug_addr.to_string(), "0.0.0.0:6070");
        assert_eq!(
            s.runtime.config_dir(),
            PathBuf::from("/srv/runtime_data/current/config")
        );
        assert_eq!(s.backend, Backend::Memory);
        assert_eq!(s.limiter.near_limit_ratio, 0.8);
        assert!(s.limiter.response_headers.is_none());
        assert_eq!(
            (s.memory_max_keys, s.metric_max_value_labels),
            (1_000_000, 1000)
        );
        assert_eq!(s.log_level, "warn");
    }

    #[test]
    fn redis_url_selects_redis_with_reference_defaults() {
        let s = Settings::from_vars(&env(&[
            ("REDIS_URL", "127.0.0.1:6379"),
            ("REDIS_SOCKET_TYPE", "tcp"),
        ]))
        .unwrap();
        let Backend::Redis(redis) = s.backend else {
            panic!("redis expected")
        };
        assert_eq!(
            (redis.kind, redis.pool_size, redis.url.as_str()),
            (RedisType::Single, 10, "127.0.0.1:6379")
        );
        assert_eq!(
            (redis.op_timeout, redis.max_pending),
            (Duration::from_millis(500), 4096)
        );
    }

    #[test]
    fn malformed_values_name_the_variable() {
        for (name, value) in [
            ("PORT", "http"),
            ("PORT", ""),
            ("SHADOW_MODE", "yes"),
            ("BACKEND_TYPE", "etcd"),
            ("REDIS_TYPE", "ring"),
            ("NEAR_LIMIT_RATIO", "2"),
            ("LOG_LEVEL", "loud"),
            ("REDIS_TIMEOUT", "10"),
            ("CONFIG_TYPE", "GRPC_XDS_SOTW"),
            ("GATEHOUSE_MEMORY_MAX_KEYS", "0"),
            ("GATEHOUSE_METRIC_MAX_VALUE_LABELS", "many"),
            ("GATEHOUSE_STORE_MAX_PENDING", "0"),
            ("GATEHOUSE_STORE_TIMEOUT", "0"),
        ] {
            let mut vars = env(&[(name, value)]);
            if name.starts_with("REDIS") || name.starts_with("GATEHOUSE_STORE") {
                vars.insert("BACKEND_TYPE".into(), "redis".into());
            }
            let err = Settings::from_vars(&vars).unwrap_err();
            assert_eq!(err.name, name, "{err}");
            assert!(
                err.to_string().starts_with(&format!("{name}={value:?}: ")),
                "{err}"
            );
        }
    }

    #[test]
    fn header_names_are_renameable() {
        let s = Settings::from_vars(&env(&[
            ("LIMIT_RESPONSE_HEADERS_ENABLED", "true"),
            ("LIMIT_REMAINING_HEADER", "X-Left"),
        ]))
        .unwrap();
        let names = s.limiter.response_headers.unwrap();
        assert_eq!(
            (names.limit.as_str(), names.remaining.as_str()),
            ("RateLimit-Limit", "X-Left")
        );
    }

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("150ms"), Some(Duration::from_millis(150)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("s"), None);
    }

    #[test]
    fn redis_auth_never_shows_in_debug() {
        let s = Settings::from_vars(&env(&[
            ("BACKEND_TYPE", "redis"),
            ("REDIS_AUTH", "hunter2"),
        ]))
        .unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
