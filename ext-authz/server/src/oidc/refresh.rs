//! Refreshing access tokens: single flight per refresh token.

use super::*;

/// How long a refresh's outcome is reused for requests that carry the same
/// (old) refresh token: parallel requests of one page, and those that left
/// the browser before the new cookie came back, share one IdP call instead
/// of spending the refresh token again (rotating IdPs revoke a token spent
/// twice). Also the back-off after the IdP did not answer.
const REFRESH_REUSE: Duration = Duration::from_secs(15);

/// A refresh still not done after this long was abandoned.
const ABANDONED_FLIGHT: Duration = Duration::from_secs(60);

/// One refresh in flight (or just done) for one refresh token.
pub(super) struct Flight {
    outcome: Arc<tokio::sync::OnceCell<RefreshOutcome>>,
    started: Instant,
}

impl OidcRuntime {
    /// Refreshes `session` once per refresh token: the first request that
    /// needs it asks the IdP, the others wait for that answer and share it,
    /// and requests with the same old token within [`REFRESH_REUSE`] get it
    /// too (no second spend of a rotating refresh token, and a back-off
    /// after the IdP did not answer).
    pub(super) async fn refresh_once(
        &self,
        session: &Session,
        now: u64,
        metrics: &Metrics,
    ) -> RefreshOutcome {
        let Some(token) = session.refresh_token.as_deref() else {
            return RefreshOutcome::Refused;
        };
        let key = state_key(token);
        let cell = {
            let Ok(mut flights) = self.shared.flights.lock() else {
                return RefreshOutcome::Unreachable;
            };
            // Done flights are kept for REFRESH_REUSE; one whose every
            // waiter went away (requests cancelled) never completes and is
            // dropped after the HTTP client's timeout has surely passed.
            flights.retain(|_, f| {
                let age = f.started.elapsed();
                age < REFRESH_REUSE || (!f.outcome.initialized() && age < ABANDONED_FLIGHT)
            });
            flights
                .entry(key)
                .or_insert_with(|| Flight {
                    outcome: Arc::new(tokio::sync::OnceCell::new()),
                    started: Instant::now(),
                })
                .outcome
                .clone()
        };
        cell.get_or_init(|| self.refresh(session.clone(), now, metrics))
            .await
            .clone()
    }

    /// One refresh at the IdP.
    async fn refresh(&self, mut session: Session, now: u64, metrics: &Metrics) -> RefreshOutcome {
        let Some(discovered) = self.discovered.load_full() else {
            return RefreshOutcome::Unreachable;
        };
        let Some(refresh) = session.refresh_token.clone().map(RefreshToken::new) else {
            return RefreshOutcome::Refused;
        };
        let Ok(mut request) = discovered.client.exchange_refresh_token(&refresh) else {
            return RefreshOutcome::Unreachable;
        };
        if let Some(assertion) = self.client_assertion(&discovered, now) {
            request = request
                .add_extra_param("client_assertion_type", ASSERTION_TYPE)
                .add_extra_param("client_assertion", assertion);
        }
        match request.request_async(&self.http).await {
            Ok(token) => {
                metrics.refreshes.inc();
                session.access_token = token.access_token().secret().clone();
                session.access_expires_at =
                    token.expires_in().map(|d| now.saturating_add(d.as_secs()));
                if let Some(r) = token.refresh_token() {
                    session.refresh_token = Some(r.secret().clone());
                }
                // Reseal now: the answer carries the new cookie.
                session.seen_at = now.saturating_sub(60);
                RefreshOutcome::Refreshed(session)
            }
            Err(openidconnect::RequestTokenError::ServerResponse(e)) => {
                tracing::info!(error = %e.error(), "refresh refused, the session ends");
                RefreshOutcome::Refused
            }
            Err(e) => {
                metrics.idp_errors.inc();
                tracing::warn!(error = %e, "refresh failed, the IdP did not answer");
                RefreshOutcome::Unreachable
            }
        }
    }
}
