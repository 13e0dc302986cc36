//! The login callback: the browser comes back from the IdP with a code;
//! it is checked against the login cookie, used once, and exchanged. The
//! checks and their order are `gatehouse_authz_core::oidc::callback`'s;
//! here the login cookie, the used-state record and the IdP.

use super::*;
use gatehouse_authz_core::oidc::callback::{self, CallbackError, CallbackParams, LoginTokens};

impl OidcRuntime {
    /// Marks a login's `state` used: in Redis when sessions live there (so
    /// every replica knows), else in this process. `Err` when that cannot
    /// be known (Redis down): the callback is refused.
    pub(super) async fn first_use_of(
        &self,
        pending: &callback::PendingCallback,
        now: u64,
    ) -> Result<StateUse, StoreDown> {
        if let Some(store) = &self.store {
            let ttl = pending.used_ttl(now);
            return Ok(
                if store.first_use(&state_key(pending.state()), ttl).await? {
                    StateUse::First
                } else {
                    StateUse::Replayed
                },
            );
        }
        // A poisoned lock only means a panic elsewhere: the set is intact.
        let mut used = self
            .shared
            .used_states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(used
            .get_or_insert_with(|| UsedStates::new(USED_STATES_CAPACITY))
            .first_use(pending.state(), pending.used_until(), now))
    }

    pub(super) async fn callback(
        &self,
        request: &HttpView<'_>,
        now: u64,
        metrics: &Metrics,
    ) -> Verdict {
        // Every answer of the callback clears the login cookie: a flow is
        // used once.
        let clear = flow::clear_login_cookie(&self.filter);
        match self.sign_in(request, now, metrics).await {
            Ok((login, set)) => {
                metrics.logins.inc();
                tracing::info!(filter_issuer = %self.filter.issuer, "signed in");
                callback::signed_in(&login, set, clear)
            }
            Err(SignInError::Refused(e)) => e.page(clear),
            Err(SignInError::Random) => no_random(),
        }
    }

    /// The callback's steps: the login it finishes and the session cookie
    /// to set (none when only the store changed).
    async fn sign_in(
        &self,
        request: &HttpView<'_>,
        now: u64,
        metrics: &Metrics,
    ) -> Result<(LoginFlow, Option<String>), SignInError> {
        let name = flow::login_cookie_name(&self.filter);
        let login =
            cookie(request.header("cookie"), &name).and_then(|v| self.open::<LoginFlow>(&name, v));
        let pending = callback::begin(login, CallbackParams::parse(request.path), now)?;
        // Single use, decided before any IdP call: a copied login cookie
        // and callback URL cannot make the IdP work again and again.
        let used = match self.first_use_of(&pending, now).await {
            Ok(used) => {
                if used == StateUse::Replayed {
                    tracing::debug!("login callback replayed, refused");
                }
                Some(used)
            }
            Err(e) => {
                tracing::warn!(error = %e, "session store unreachable at login");
                None
            }
        };
        let exchange = pending.after_first_use(used)?;
        let tokens = self
            .exchange(
                &exchange,
                self.filter.callback_url_for(request.host),
                now,
                metrics,
            )
            .await?;
        let session =
            callback::session_from_login(&self.filter, tokens, now).inspect_err(|_| {
                tracing::info!("login refused: the ID token lacks a required claim")
            })?;
        let set = match self.write_session(&session, None, now).await {
            Ok(set) => set,
            Err(WriteError::Random(_)) => return Err(SignInError::Random),
            Err(e) => {
                tracing::warn!(error = %e, "session store unreachable at login");
                return Err(CallbackError::StoreUnavailable.into());
            }
        };
        Ok((exchange.flow, set))
    }

    /// Exchanges the code at the IdP (with the PKCE verifier, and a client
    /// assertion when the filter signs one) and verifies the ID token
    /// against the flow's nonce.
    async fn exchange(
        &self,
        exchange: &callback::Exchange,
        redirect: &str,
        now: u64,
        metrics: &Metrics,
    ) -> Result<LoginTokens, CallbackError> {
        let Some(discovered) = self.discovered.load_full() else {
            return Err(CallbackError::IdpUnavailable);
        };
        let client = &discovered.client;
        let request = client
            .exchange_code(AuthorizationCode::new(exchange.code.clone()))
            .map_err(|_| CallbackError::NoTokenEndpoint)?
            .set_pkce_verifier(PkceCodeVerifier::new(exchange.flow.pkce_verifier.clone()));
        // The redirect URI the login was sent with: the origin's own.
        let other = (redirect != self.filter.callback_url)
            .then(|| RedirectUrl::new(redirect.to_owned()))
            .transpose()
            .map_err(|_| CallbackError::NoTokenEndpoint)?;
        let request = match &other {
            Some(url) => request.set_redirect_uri(std::borrow::Cow::Borrowed(url)),
            None => request,
        };
        let request = match self.client_assertion(&discovered, now) {
            Some(assertion) => request
                .add_extra_param("client_assertion_type", ASSERTION_TYPE)
                .add_extra_param("client_assertion", assertion),
            None => request,
        };
        let token = match request.request_async(&self.http).await {
            Ok(t) => t,
            Err(openidconnect::RequestTokenError::ServerResponse(e)) => {
                tracing::warn!(error = %e.error(), "code exchange refused");
                return Err(CallbackError::ExchangeRefused);
            }
            Err(e) => {
                metrics.idp_errors.inc();
                tracing::warn!(error = %e, "code exchange failed");
                return Err(CallbackError::IdpUnavailable);
            }
        };
        let id_token = token.id_token().ok_or(CallbackError::NoIdToken)?;
        let nonce = Nonce::new(exchange.flow.nonce.clone());
        let claims = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "id token refused");
                return Err(CallbackError::IdTokenInvalid);
            }
        };
        Ok(LoginTokens {
            id_token: id_token.to_string(),
            sub: claims.subject().to_string(),
            email: claims.email().map(|e| e.to_string()),
            access_token: token.access_token().secret().clone(),
            expires_in: token.expires_in().map(|d| d.as_secs()),
            refresh_token: token.refresh_token().map(|r| r.secret().clone()),
        })
    }
}

/// Why a sign-in ended without a session: a refusal with its page, or the
/// OS random source (nothing sealed, no page).
enum SignInError {
    Refused(CallbackError),
    Random,
}

impl From<CallbackError> for SignInError {
    fn from(e: CallbackError) -> Self {
        Self::Refused(e)
    }
}
