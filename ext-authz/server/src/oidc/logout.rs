//! Logging out, from the browser (RP-initiated or local) and from the IdP
//! (back-channel): the store and the answers; the rules are
//! `gatehouse_authz_core::oidc::{logout, backchannel}`'s.

use super::*;
use gatehouse_authz_core::oidc::backchannel::{self, LogoutTokenError};

impl OidcRuntime {
    /// POST only, and only from this site: a cross-site form cannot log
    /// anyone out.
    pub(super) async fn logout(&self, request: &HttpView<'_>) -> Verdict {
        if let Err(refused) = flow::logout::check(request) {
            return refused;
        }
        // Server-side revocation: with the Redis store, the session is gone
        // for every copy of the cookie.
        let now = now_secs();
        let session = match self.read_session(request.header("cookie")).await {
            Ok(Some((session, id))) => {
                // Every copy of the cookie, and its fast-path tickets, end.
                self.revoke(
                    gatehouse_authz_core::oidc::fast::handles(&self.ticket_purpose, &session),
                    now,
                )
                .await;
                if let (Some(store), Some(id)) = (&self.store, id)
                    && let Err(e) = store.delete(&id).await
                {
                    tracing::warn!(error = %e, "session store unreachable at logout");
                }
                Some(session)
            }
            Ok(None) | Err(_) => None,
        };
        let discovered = self.discovered.load();
        let end_session = discovered.as_ref().and_then(|d| d.end_session.as_deref());
        let location = flow::logout::location(
            &self.filter,
            end_session,
            session.as_ref().map(|s| s.id_token.as_str()),
        );
        flow::logout::logged_out(&location, flow::fast::clear_cookies(&self.filter))
    }

    /// OpenID Connect Back-Channel Logout: the IdP posts a signed logout
    /// token; every session of its `sid` (or, without one, its `sub`) ends.
    pub(super) async fn backchannel_logout(&self, request: &HttpView<'_>, now: u64) -> Verdict {
        let discovered = self.discovered.load_full();
        let verifier = discovered.as_ref().and_then(|d| d.logout_tokens.as_ref());
        let subject = match backchannel::check(request, verifier, now) {
            Ok(subject) => subject,
            Err(e) => {
                if let LogoutTokenError::Refused(cause) = &e {
                    tracing::info!(error = %cause, "logout token refused");
                }
                return e.answer();
            }
        };
        // The route leads here only with a store.
        let Some(store) = &self.store else {
            return LogoutTokenError::NoVerifier.answer();
        };
        // The fast path's tickets of those sessions end too.
        let handle = match (&subject.sid, &subject.sub) {
            (Some(sid), _) => Some(gatehouse_authz_core::oidc::fast::idp_session_handle(sid)),
            (None, Some(sub)) => Some(gatehouse_authz_core::oidc::fast::subject_handle(sub)),
            (None, None) => None,
        };
        if let Some(handle) = handle {
            self.revoke(vec![handle], now).await;
        }
        match store
            .end_all(subject.sid.as_deref(), subject.sub.as_deref())
            .await
        {
            Ok(n) => {
                tracing::info!(sessions = n, "back-channel logout");
                backchannel::ended()
            }
            Err(e) => {
                tracing::warn!(error = %e, "back-channel logout could not reach the session store");
                backchannel::store_unavailable()
            }
        }
    }
}
