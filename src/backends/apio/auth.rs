//! APIO core authentication: a machine-to-machine token, or a login whose short-lived
//! access token is renewed with the refresh token (and by a new login when that is
//! refused too). See `docs/compatibility.md`, "Netaxis APIO", for the sources.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use reqwest::{Client, RequestBuilder, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{
    super::{
        Error, Secret,
        common::{Answer, bearer_call},
        http::Retry,
    },
    Apio, error_message,
};

const LOGIN_PATH: &str = "/api/v01/auth/login";
const REFRESH_PATH: &str = "/api/v01/auth/access_token";
/// Renew an access token this long before it expires (the vendor UI uses 20 s), or at
/// half its life when it is shorter than twice that.
const RENEW_MARGIN: Duration = Duration::from_secs(20);

pub(super) enum Auth {
    /// Machine-to-machine token: immutable until regenerated, so a 401 is final.
    M2m(Secret),
    Login {
        username: Secret,
        password: Secret,
        session: Mutex<Option<Session>>,
    },
}

impl Auth {
    pub(super) fn login(username: Secret, password: Secret) -> Self {
        Auth::Login { username, password, session: Mutex::new(None) }
    }
}

pub(super) struct Session {
    access: Secret,
    /// When to renew proactively; `None`: the token's expiry is unknown (not a JWT).
    renew_at: Option<Instant>,
    /// The server refused `access` (401): renew before the next use.
    stale: bool,
    refresh: Option<Secret>,
    refresh_until: Option<Instant>,
}

#[derive(Deserialize)]
struct Tokens {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default, rename = "2fa_payload")]
    two_factor: Option<Value>,
}

impl Apio {
    // ---- authentication ----------------------------------------------------------

    /// The bearer token to use now: the M2M token, or a cached access token renewed
    /// (refresh, else login) when it is near expiry or was refused.
    async fn token(&self) -> Result<Secret, Error> {
        let session = match &self.auth {
            Auth::M2m(token) => return Ok(token.clone()),
            Auth::Login { session, .. } => session,
        };
        let mut slot = session.lock().await;
        let now = Instant::now();
        if let Some(s) = slot.as_ref()
            && !s.stale
            && s.renew_at.is_none_or(|at| now < at)
        {
            return Ok(s.access.clone());
        }
        let refresh =
            slot.take().and_then(|s| s.refresh.filter(|_| s.refresh_until.is_none_or(|until| now < until)));
        let fresh = match refresh {
            Some(refresh) => match self.refresh(&refresh).await {
                Ok(s) => s,
                // The refresh token is no longer good: log in again.
                Err(Error::Auth { .. }) => self.login().await?,
                Err(e) => return Err(e),
            },
            None => self.login().await?,
        };
        let access = fresh.access.clone();
        *slot = Some(fresh);
        Ok(access)
    }

    /// Marks `used` as refused, unless another request already replaced it.
    async fn refused(&self, used: &Secret) {
        if let Auth::Login { session, .. } = &self.auth
            && let Some(s) = session.lock().await.as_mut()
            && s.access == *used
        {
            s.stale = true;
        }
    }

    async fn login(&self) -> Result<Session, Error> {
        let Auth::Login { username, password, .. } = &self.auth else {
            return Err(self.http.auth("no username and password to log in with"));
        };
        let url = self.http.url(LOGIN_PATH);
        let body = json!({"username": username.expose(), "password": password.expose()});
        // Logging in twice is harmless: the request is as safe to repeat as a read.
        let reply = self.http.send(Retry::Idempotent, &[], |c| c.post(&url).json(&body)).await?;
        let answer = Answer { redactor: self.http.redactor().clone(), reply };
        self.session(answer, None, "login")
    }

    async fn refresh(&self, refresh: &Secret) -> Result<Session, Error> {
        let url = self.http.url(REFRESH_PATH);
        let reply = self
            .http
            .send(Retry::Idempotent, &[refresh], |c| c.get(&url).bearer_auth(refresh.expose()))
            .await?;
        let mut redactor = self.http.redactor().clone();
        redactor.extend([refresh]);
        self.session(Answer { reply, redactor }, Some(refresh), "token refresh")
    }

    /// Reads a login or refresh answer; a refresh answer may omit the refresh token
    /// (only a nearly expired one is replaced), so the old one is kept.
    fn session(&self, answer: Answer, old_refresh: Option<&Secret>, what: &str) -> Result<Session, Error> {
        let status = answer.reply.status;
        if matches!(status, StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            let message = answer.text(error_message(&answer.reply.body).as_deref());
            return Err(answer
                .scrub(self.http.auth(&format!("{what} refused (HTTP {}): {message}", status.as_u16()))));
        }
        if !status.is_success() {
            return Err(answer.unexpected(&self.http, error_message(&answer.reply.body).as_deref()));
        }
        let tokens: Tokens = answer.json(&self.http)?;
        let Some(access) = tokens.access_token.filter(|t| !t.is_empty()) else {
            let detail = if tokens.two_factor.is_some() {
                "the APIO user needs a second factor; use an M2M token (`token`) instead"
            } else {
                "the answer carries no access_token"
            };
            return Err(self.http.auth(&format!("{what}: {detail}")));
        };
        let refresh =
            tokens.refresh_token.filter(|t| !t.is_empty()).map(Secret::new).or_else(|| old_refresh.cloned());
        let now = Instant::now();
        Ok(Session {
            renew_at: jwt_lifetime(&access).map(|life| now + (life - RENEW_MARGIN.min(life / 2))),
            access: Secret::new(access),
            stale: false,
            refresh_until: refresh.as_ref().and_then(|r| jwt_lifetime(r.expose())).map(|life| now + life),
            refresh,
        })
    }

    /// Sends an authenticated request; on a 401 renews the token once and sends again
    /// (an M2M token cannot be renewed). `secrets` are values in the request (a
    /// password) to keep out of errors.
    pub(super) async fn call(
        &self,
        retry: Retry,
        secrets: &[&Secret],
        build: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Answer, Error> {
        let renewable = !matches!(self.auth, Auth::M2m(_));
        bearer_call(
            &self.http,
            retry,
            secrets,
            build,
            || self.token(),
            |used| async move {
                self.refused(&used).await;
                renewable
            },
            |answer| answer.text(error_message(&answer.reply.body).as_deref()),
        )
        .await
    }
}

/// How long a JWT has to live, from its own `iat` and `exp` (both the server's clock, so
/// a skewed local clock does not matter); `None` if it is not a JWT with `exp`.
fn jwt_lifetime(token: &str) -> Option<Duration> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_u64()?;
    let from = match claims.get("iat").and_then(Value::as_u64) {
        Some(iat) => iat,
        None => SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs(),
    };
    Some(Duration::from_secs(exp.saturating_sub(from)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_lifetime_uses_the_servers_own_clock() {
        let payload = URL_SAFE_NO_PAD.encode(r#"{"iat":1000,"exp":1300}"#);
        assert_eq!(jwt_lifetime(&format!("h.{payload}.s")), Some(Duration::from_secs(300)));
        assert_eq!(jwt_lifetime("opaque"), None);
    }
}
