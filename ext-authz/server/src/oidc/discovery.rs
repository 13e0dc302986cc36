//! Discovery: reading the IdP's metadata at start and on a schedule, and
//! again when a login finds the IdP marked down. The schedule is
//! `gatehouse_authz_core::oidc::discovery`'s.

use super::*;

use gatehouse_authz_core::oidc::discovery::{
    FIRST_RETRY, REDISCOVERY_TIMEOUT, may_rediscover, next_retry, refresh_interval,
};

impl OidcRuntime {
    /// The client and helpers made from discovered `metadata`.
    pub(super) fn discovered_from(
        &self,
        metadata: ProviderMetadataWithLogout,
    ) -> Result<Discovered, String> {
        let end_session = metadata
            .additional_metadata()
            .end_session_endpoint
            .as_ref()
            .map(|u| u.url().to_string());
        let redirect =
            RedirectUrl::new(self.filter.callback_url.clone()).map_err(|e| e.to_string())?;
        let token_url = metadata
            .token_endpoint()
            .map(|u| u.url().to_string())
            .unwrap_or_default();
        let logout_tokens = serde_json::to_vec(metadata.jwks())
            .ok()
            .and_then(|jwks| flow::backchannel::verifier(&self.filter, &jwks));
        let secret = (!self.secret.is_empty()).then(|| ClientSecret::new(self.secret.clone()));
        let client = CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.filter.client_id.clone()),
            secret,
        )
        .set_redirect_uri(redirect)
        .set_auth_type(match self.filter.client_auth {
            ClientAuth::SecretBasic => AuthType::BasicAuth,
            // With a key, the body carries the client id and the assertion.
            ClientAuth::SecretPost | ClientAuth::PrivateKeyJwt { .. } => AuthType::RequestBody,
        });
        Ok(Discovered {
            metadata,
            client,
            end_session,
            token_url,
            logout_tokens,
        })
    }

    /// Reads discovery once. The issuer is compared exactly as configured
    /// (OpenID Connect Discovery §4.3), a trailing `/` included.
    pub(super) async fn discover(&self) -> Result<(), String> {
        let issuer = IssuerUrl::new(self.filter.issuer.clone()).map_err(|e| e.to_string())?;
        let metadata = ProviderMetadataWithLogout::discover_async(issuer, &self.http)
            .await
            .map_err(|e| format!("discovery failed: {e}"))?;
        self.discovered
            .store(Some(Arc::new(self.discovered_from(metadata)?)));
        Ok(())
    }

    /// Reads discovery now and then again every `discovery_refresh_secs`
    /// (sooner, with backoff, after a failure), keeping what it had when the
    /// IdP does not answer. A runtime that kept its predecessor's discovery
    /// (a reload) starts with the wait. Stops when the runtime is dropped.
    pub fn spawn_discovery(self: &Arc<Self>, metrics: Arc<Metrics>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        let first_wait = self
            .inherited
            .load(Ordering::Relaxed)
            .then(|| refresh_interval(&self.filter));
        tokio::spawn(async move {
            if let Some(wait) = first_wait {
                tokio::time::sleep(wait).await;
            }
            let mut retry = FIRST_RETRY;
            loop {
                let Some(rt) = weak.upgrade() else { return };
                let result = rt.discover().await;
                rt.idp_up.store(result.is_ok(), Ordering::Relaxed);
                let wait = match result {
                    Ok(()) => {
                        tracing::info!(issuer = %rt.filter.issuer, "openid provider discovered");
                        retry = FIRST_RETRY;
                        refresh_interval(&rt.filter)
                    }
                    Err(e) => {
                        metrics.idp_errors.inc();
                        tracing::warn!(issuer = %rt.filter.issuer, error = %e, retry_in = ?retry, "openid provider not reachable, keeping what was discovered before");
                        let wait = retry;
                        retry = next_retry(retry);
                        wait
                    }
                };
                drop(rt);
                tokio::time::sleep(wait).await;
            }
        });
    }

    /// What discovery found, for a new login. While the IdP is marked down,
    /// a login makes one rediscovery (single flight: the others wait for
    /// it; at most one a second, see [`may_rediscover`]), so logins work again
    /// as soon as the IdP is back instead of after the discovery backoff.
    pub(super) async fn discovered_for_login(&self, metrics: &Metrics) -> Option<Arc<Discovered>> {
        if self.idp_up.load(Ordering::Relaxed) {
            return self.discovered.load_full();
        }
        let mut last = self.rediscovered.lock().await;
        if self.idp_up.load(Ordering::Relaxed) {
            // Another login's rediscovery, finished while this one waited.
            return self.discovered.load_full();
        }
        if !may_rediscover(last.map(|t| t.elapsed())) {
            return None;
        }
        *last = Some(Instant::now());
        let result = tokio::time::timeout(REDISCOVERY_TIMEOUT, self.discover()).await;
        let ok = matches!(result, Ok(Ok(())));
        self.idp_up.store(ok, Ordering::Relaxed);
        if ok {
            tracing::info!(issuer = %self.filter.issuer, "openid provider back, found by a login");
            self.discovered.load_full()
        } else {
            metrics.idp_errors.inc();
            None
        }
    }
}
