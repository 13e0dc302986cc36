//! The login callback: the browser comes back from the IdP with a code;
//! it is checked against the login cookie, used once, and exchanged.

use super::*;

impl OidcRuntime {
    /// Marks a login's `state` used: in Redis when sessions live there (so
    /// every replica knows), else in this process. `Err` when that cannot
    /// be known (Redis down): the callback is refused.
    pub(super) async fn first_use_of(
        &self,
        flow: &LoginFlow,
        now: u64,
    ) -> Result<StateUse, StoreDown> {
        let until = flow.started_at.saturating_add(LOGIN_FLOW_SECS);
        if let Some(store) = &self.store {
            let ttl = until.saturating_sub(now).max(1);
            return Ok(if store.first_use(&state_key(&flow.state), ttl).await? {
                StateUse::First
            } else {
                StateUse::Replayed
            });
        }
        // A poisoned lock only means a panic elsewhere: the set is intact.
        let mut used = self
            .shared
            .used_states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(used
            .get_or_insert_with(|| UsedStates::new(USED_STATES_CAPACITY))
            .first_use(&flow.state, until, now))
    }

    pub(super) async fn callback(
        &self,
        request: &HttpView<'_>,
        now: u64,
        metrics: &Metrics,
    ) -> Verdict {
        let login = self.login_cookie();
        // Every answer of the callback clears the login cookie: a flow is
        // used once.
        let clear = self.cookies().set_cookie(&login, "", Some(0));
        let query = request.path.split_once('?').map_or("", |(_, q)| q);
        let param = |name: &str| {
            query.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k == name).then(|| percent_decode(v))
            })
        };
        let flow = cookie(request.headers.get("cookie").map(String::as_str), &login)
            .and_then(|v| self.open::<LoginFlow>(&login, v))
            .filter(|f| now < f.started_at.saturating_add(LOGIN_FLOW_SECS));
        let Some(flow) = flow else {
            // No login of this browser is waiting: a replayed or forged
            // callback, or one that took too long.
            return page(
                400,
                "no_login_in_progress",
                "no sign-in is in progress in this browser: start again",
                vec![clear],
            );
        };
        let state_ok =
            param("state").is_some_and(|s| bool::from(s.as_bytes().ct_eq(flow.state.as_bytes())));
        if !state_ok {
            return page(
                400,
                "state_mismatch",
                "the sign-in answer does not belong to this browser",
                vec![clear],
            );
        }
        // Single use, decided before any IdP call: a copied login cookie
        // and callback URL cannot make the IdP work again and again.
        match self.first_use_of(&flow, now).await {
            Ok(StateUse::First) => {}
            Ok(StateUse::Replayed) => {
                tracing::debug!("login callback replayed, refused");
                return page(
                    400,
                    "login_already_used",
                    "this sign-in was already used: start again",
                    vec![clear],
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "session store unreachable at login");
                return page(
                    503,
                    "session_store_unavailable",
                    "sessions cannot be stored: try again shortly",
                    vec![clear],
                );
            }
        }
        if param("error").is_some() {
            return page(
                403,
                "login_refused",
                "the sign-in service refused the sign-in",
                vec![clear],
            );
        }
        let Some(code) = param("code") else {
            return page(
                400,
                "no_code",
                "the sign-in answer carries no code",
                vec![clear],
            );
        };
        let Some(discovered) = self.discovered.load_full() else {
            return page(
                503,
                "idp_unavailable",
                "the sign-in service is not reachable: try again shortly",
                vec![clear],
            );
        };
        let client = &discovered.client;
        let exchange = match client.exchange_code(AuthorizationCode::new(code)) {
            Ok(request) => {
                let request =
                    request.set_pkce_verifier(PkceCodeVerifier::new(flow.pkce_verifier.clone()));
                match self.client_assertion(&discovered, now) {
                    Some(assertion) => request
                        .add_extra_param("client_assertion_type", ASSERTION_TYPE)
                        .add_extra_param("client_assertion", assertion),
                    None => request,
                }
            }
            Err(_) => {
                return page(
                    503,
                    "idp_unavailable",
                    "the sign-in service has no token endpoint",
                    vec![clear],
                );
            }
        };
        let token = match exchange.request_async(&self.http).await {
            Ok(t) => t,
            Err(openidconnect::RequestTokenError::ServerResponse(e)) => {
                tracing::warn!(error = %e.error(), "code exchange refused");
                return page(
                    400,
                    "login_failed",
                    "the sign-in could not be completed: start again",
                    vec![clear],
                );
            }
            Err(e) => {
                metrics.idp_errors.inc();
                tracing::warn!(error = %e, "code exchange failed");
                return page(
                    503,
                    "idp_unavailable",
                    "the sign-in service is not reachable: try again shortly",
                    vec![clear],
                );
            }
        };
        let Some(id_token) = token.id_token() else {
            return page(
                400,
                "login_failed",
                "the sign-in service sent no ID token",
                vec![clear],
            );
        };
        let nonce = Nonce::new(flow.nonce.clone());
        let claims = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "id token refused");
                return page(
                    400,
                    "login_failed",
                    "the sign-in service's ID token is not valid",
                    vec![clear],
                );
            }
        };
        let payload = payload_of(id_token);
        if !self
            .filter
            .required_claims
            .iter()
            .all(|r| r.holds(&payload))
        {
            tracing::info!("login refused: the ID token lacks a required claim");
            return page(
                403,
                "claims_not_met",
                "your account does not meet this site's requirements",
                vec![clear],
            );
        }
        let session = Session {
            sub: claims.subject().to_string(),
            email: claims.email().map(|e| e.to_string()),
            groups: groups_of(id_token),
            id_token: id_token.to_string(),
            access_token: token.access_token().secret().clone(),
            access_expires_at: token.expires_in().map(|d| now.saturating_add(d.as_secs())),
            refresh_token: token.refresh_token().map(|r| r.secret().clone()),
            sid: sid_of(id_token),
            created_at: now,
            seen_at: now,
        };
        let set = match self.write_session(&session, None, now).await {
            Ok(set) => set,
            Err(WriteError::Random(_)) => return no_random(),
            Err(e) => {
                tracing::warn!(error = %e, "session store unreachable at login");
                return page(
                    503,
                    "session_store_unavailable",
                    "sessions cannot be stored: try again shortly",
                    vec![clear],
                );
            }
        };
        metrics.logins.inc();
        tracing::info!(filter_issuer = %self.filter.issuer, "signed in");
        // The flow was sealed by us, but a return target is checked twice.
        redirect(
            &safe_return_path(&flow.return_to),
            set.into_iter().chain([clear]).collect(),
        )
    }
}
