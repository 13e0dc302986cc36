//! Sessions at rest: sealed in the cookie, or in Redis under the random id
//! the cookie holds.

use super::*;

/// Why a session could not be saved.
#[derive(Debug, thiserror::Error)]
pub(super) enum WriteError {
    #[error(transparent)]
    Store(#[from] StoreDown),
    /// The stored session was deleted meanwhile (a logout): not written back.
    #[error("the session was ended meanwhile")]
    Ended,
    #[error(transparent)]
    Random(#[from] NoRandom),
}

impl OidcRuntime {
    /// The session a request's cookie names: sealed in the cookie itself,
    /// or in Redis under the id the cookie holds (`Some(id)` then).
    pub(super) async fn read_session(
        &self,
        cookie_header: Option<&str>,
    ) -> Result<Option<(Session, Option<String>)>, StoreDown> {
        let Some(value) = cookie(cookie_header, &self.filter.cookie_name) else {
            return Ok(None);
        };
        let Some(store) = &self.store else {
            return Ok(self
                .open::<Session>(&self.filter.cookie_name, value)
                .map(|s| (s, None)));
        };
        let Some(reference) = self.open::<SessionRef>(&self.filter.cookie_name, value) else {
            return Ok(None);
        };
        let stored = store.get(&reference.id).await?;
        Ok(stored
            .and_then(|sealed| self.open::<Session>(STORED_SESSION, &sealed))
            .map(|s| (s, Some(reference.id))))
    }

    /// Saves a session: a new cookie when the cookie holds it (or holds a
    /// new Redis id); nothing to set when only the Redis entry changed. An
    /// existing Redis entry is only overwritten while it exists (`SET XX`):
    /// a logout meanwhile wins.
    pub(super) async fn write_session(
        &self,
        session: &Session,
        id: Option<String>,
        now: u64,
    ) -> Result<Option<String>, WriteError> {
        let Some(store) = &self.store else {
            return Ok(Some(self.session_cookie(session)?));
        };
        let ttl = access::stored_ttl(&self.filter, session, now);
        let sealed = self.seal(STORED_SESSION, session)?;
        if let Some(id) = id {
            return if store.update(&id, &sealed, ttl).await? {
                Ok(None)
            } else {
                Err(WriteError::Ended)
            };
        }
        let id: String = self
            .random_bytes::<32>()?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        store
            .create(&id, &sealed, ttl, session.sid.as_deref(), &session.sub)
            .await?;
        let reference = self.seal(&self.filter.cookie_name, &SessionRef { id })?;
        Ok(Some(flow::cookie_attributes(&self.filter).set_cookie(
            &self.filter.cookie_name,
            &reference,
            Some(self.filter.absolute_timeout_secs),
        )))
    }

    fn session_cookie(&self, session: &Session) -> Result<String, NoRandom> {
        let sealed = self.seal(&self.filter.cookie_name, session)?;
        Ok(flow::cookie_attributes(&self.filter).set_cookie(
            &self.filter.cookie_name,
            &sealed,
            Some(self.filter.absolute_timeout_secs),
        ))
    }
}
