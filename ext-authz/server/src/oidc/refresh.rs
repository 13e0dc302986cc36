//! Refreshing access tokens: single flight per refresh token. What an
//! answer means, and how long it is shared, is
//! `gatehouse_authz_core::oidc::refresh`'s.

use super::*;
use gatehouse_authz_core::oidc::refresh::{
    RefreshedTokens, TokenAnswer, flight_is_kept, refresh_outcome,
};

/// One refresh in flight (or just done) for one refresh token.
pub(super) struct Flight {
    outcome: Arc<tokio::sync::OnceCell<RefreshOutcome>>,
    started: Instant,
}

impl OidcRuntime {
    /// Refreshes `session` once per refresh token: the first request that
    /// needs it asks the IdP, the others wait for that answer and share it,
    /// and requests with the same old token within the reuse window get it
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
            // Done flights are kept for the reuse window; one whose every
            // waiter went away (requests cancelled) never completes and is
            // dropped after the HTTP client's timeout has surely passed.
            flights.retain(|_, f| flight_is_kept(f.started.elapsed(), f.outcome.initialized()));
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
    async fn refresh(&self, session: Session, now: u64, metrics: &Metrics) -> RefreshOutcome {
        let answer = self.ask_refresh(&session, now, metrics).await;
        refresh_outcome(session, answer, now)
    }

    /// The token endpoint's answer to `session`'s refresh token.
    async fn ask_refresh(
        &self,
        session: &Session,
        now: u64,
        metrics: &Metrics,
    ) -> TokenAnswer<RefreshedTokens> {
        let Some(discovered) = self.discovered.load_full() else {
            return TokenAnswer::Unreachable;
        };
        let Some(refresh) = session.refresh_token.clone().map(RefreshToken::new) else {
            return TokenAnswer::Refused;
        };
        let Ok(mut request) = discovered.client.exchange_refresh_token(&refresh) else {
            return TokenAnswer::Unreachable;
        };
        if let Some(assertion) = self.client_assertion(&discovered, now) {
            request = request
                .add_extra_param("client_assertion_type", ASSERTION_TYPE)
                .add_extra_param("client_assertion", assertion);
        }
        match request.request_async(&self.http).await {
            Ok(token) => {
                metrics.refreshes.inc();
                TokenAnswer::Tokens(RefreshedTokens {
                    access_token: token.access_token().secret().clone(),
                    expires_in: token.expires_in().map(|d| d.as_secs()),
                    refresh_token: token.refresh_token().map(|r| r.secret().clone()),
                })
            }
            Err(openidconnect::RequestTokenError::ServerResponse(e)) => {
                tracing::info!(error = %e.error(), "refresh refused, the session ends");
                TokenAnswer::Refused
            }
            Err(e) => {
                metrics.idp_errors.inc();
                tracing::warn!(error = %e, "refresh failed, the IdP did not answer");
                TokenAnswer::Unreachable
            }
        }
    }
}
