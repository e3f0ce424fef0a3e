//! Who the legacy API (2023.2 / 2024.1) takes the client for: a caller from 127.0.0.1 is
//! trusted by `/pbxcore` and the admin cabinet alike, any other needs the admin web
//! session (`POST /admin-cabinet/session/start`, cookie `PHPSESSID`; Redis-held, 3600 s
//! idle lifetime). `docs/compatibility.md`, MikoPBX, "Log in".
//!
//! 2024.1 counts every login attempt of an address, the successful ones too, 10 per
//! 5-minute window of the wall clock (`SessionController::countRemainAttempts`), and
//! answers a locked-out one `success: true` with `reload` pointing back at the login page
//! and no logged-in session. So the client logs in only when it must (never on a trusted
//! 127.0.0.1, once per session otherwise), checks that a login really gave it a session,
//! and after a lock-out sends no login until the window has turned.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::{Client, RequestBuilder, StatusCode, header};
use serde::Deserialize;
use serde_json::Value;

use super::{MikoPbxLegacy, error_messages};
use crate::backends::{
    Error, Secret,
    http::{Reply, Retry},
};

pub(super) const SESSION_START: &str = "/admin-cabinet/session/start";
pub(super) const SESSION_COOKIE: &str = "PHPSESSID";
/// Where the login is asked to send the browser: a logged-in answer echoes it as
/// `reload`; a locked-out one points at `session/index` instead.
const BACK_URI: &str = "/admin-cabinet/extensions/index";
/// 2024.1's login window (`LOGIN_ATTEMPTS_INTERVAL`).
const LOGIN_WINDOW: u64 = 300;
/// The admin UI answers JSON instead of HTML only to XHR requests.
pub(super) const XHR: (&str, &str) = ("X-Requested-With", "XMLHttpRequest");

/// Which part of the PBX a request goes to. Both trust 127.0.0.1; they differ in how they
/// refuse a caller without a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Area {
    /// `/pbxcore`: 401 (403 for a route the login's role may not call).
    Core,
    /// `/admin-cabinet`: 403 to XHR, a login page otherwise.
    Admin,
}

/// The session state of one client.
#[derive(Debug, Default)]
pub(super) struct SessionState {
    /// The `PHPSESSID` in use.
    cookie: Option<Secret>,
    /// The PBX refused a request without a session although the URL is 127.0.0.1 (it
    /// does not see this client as 127.0.0.1: a proxy or a port forward in between).
    needed: bool,
    /// No login before this: the PBX locked logins from this address out.
    locked_until: Option<Instant>,
}

impl MikoPbxLegacy {
    /// The session to send, logging in if one is needed and none is held. `None`: no
    /// session is needed (a trusted 127.0.0.1), or there is no login to make one with.
    async fn session(&self) -> Result<Option<Secret>, Error> {
        let Some((username, password)) = &self.login else {
            return Ok(None);
        };
        let mut held = self.session.lock().await;
        if self.trusted && !held.needed {
            return Ok(None);
        }
        if let Some(cookie) = &held.cookie {
            return Ok(Some(cookie.clone()));
        }
        if let Some(until) = held.locked_until {
            let now = Instant::now();
            if now < until {
                return Err(self.locked_out(until - now));
            }
            held.locked_until = None;
        }
        match self.log_in(username, password).await {
            Ok(cookie) => {
                held.cookie = Some(cookie.clone());
                Ok(Some(cookie))
            }
            Err(Login::LockedOut(wait)) => {
                held.locked_until = Some(Instant::now() + wait);
                Err(self.locked_out(wait))
            }
            Err(Login::Failed(e)) => Err(e),
        }
    }

    fn locked_out(&self, wait: Duration) -> Error {
        Error::Transient {
            system: self.http.system(),
            detail: format!(
                "the PBX refuses logins from this address for now (MikoPBX 2024.1 counts every login, \
                 successful ones too: 10 per {LOGIN_WINDOW} s); switchboard logs in again in {} s",
                wait.as_secs().max(1)
            ),
            retry_after: Some(wait),
        }
    }

    /// A refused request: the session it used is dropped (unless another request already
    /// replaced it), or, when it used none, sessions become needed.
    async fn refused(&self, used: Option<&Secret>) {
        let mut held = self.session.lock().await;
        match used {
            Some(used) if held.cookie.as_ref() == Some(used) => held.cookie = None,
            Some(_) => {}
            None => held.needed = true,
        }
    }

    async fn log_in(&self, username: &Secret, password: &Secret) -> Result<Secret, Login> {
        let url = self.http.url(SESSION_START);
        let reply = self
            .http
            .send(Retry::Idempotent, &[], |c| {
                c.post(&url).header(XHR.0, XHR.1).form(&[
                    ("login", username.expose()),
                    ("password", password.expose()),
                    ("backUri", BACK_URI),
                ])
            })
            .await
            .map_err(Login::Failed)?;
        if reply.status != StatusCode::OK {
            return Err(Login::Failed(self.http.protocol(&format!(
                "admin login answered HTTP {}: {}",
                reply.status.as_u16(),
                self.http.snippet(&reply.body)
            ))));
        }
        #[derive(Deserialize)]
        struct Answer {
            success: Value,
            #[serde(default)]
            reload: Value,
            #[serde(default)]
            message: Value,
        }
        let answer: Answer = self.http.json(&reply).map_err(Login::Failed)?;
        let why = || {
            let texts: Vec<String> = error_messages(&answer.message).into_iter().map(|(_, m)| m).collect();
            if texts.is_empty() { "no reason given".to_owned() } else { texts.join("; ") }
        };
        if !matches!(answer.success, Value::Bool(true)) {
            return Err(Login::Failed(self.http.auth(&format!("admin login refused: {}", why()))));
        }
        let cookie = reply
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .find_map(|pair| pair.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
            .filter(|v| !v.is_empty())
            .map(Secret::new);
        // `success: true` but sent back to the login page, or without a session: the
        // address is locked out (PHP starts a session, and so sets a cookie, even then;
        // the `reload` target is what tells).
        let back_to_login = answer.reload.as_str().is_some_and(|r| r.contains("session/index"));
        match cookie {
            Some(cookie) if !back_to_login => Ok(cookie),
            _ => {
                tracing::warn!(system = %self.http.system(), message = %why(), "the PBX locked logins out");
                Err(Login::LockedOut(until_next_window()))
            }
        }
    }

    /// Sends a request with the session when one is needed, logging in (again) once if
    /// the PBX refuses it: the session expired, or a 127.0.0.1 URL is not seen as one.
    pub(super) async fn call(
        &self,
        area: Area,
        retry: Retry,
        secrets: &[&Secret],
        build: impl Fn(&Client) -> RequestBuilder + Send + Sync,
    ) -> Result<Reply, Error> {
        let mut again = false;
        loop {
            let session = self.session().await?;
            let mut all = secrets.to_vec();
            all.extend(session.as_ref());
            let reply = self
                .http
                .send(retry, &all, |c| match &session {
                    Some(s) => build(c).header(header::COOKIE, format!("{SESSION_COOKIE}={}", s.expose())),
                    None => build(c),
                })
                .await?;
            let refused = match area {
                Area::Core => reply.status == StatusCode::UNAUTHORIZED,
                Area::Admin => {
                    matches!(reply.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
                        || reply.status.is_redirection()
                }
            };
            if refused && !again && self.login.is_some() {
                self.refused(session.as_ref()).await;
                again = true;
                continue;
            }
            return Ok(reply);
        }
    }
}

enum Login {
    LockedOut(Duration),
    Failed(Error),
}

/// Until the next 5-minute window of the wall clock (2024.1 keys its counter by
/// `floor(time() / 300) * 300`), plus a second for clocks a little apart.
fn until_next_window() -> Duration {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    Duration::from_secs(LOGIN_WINDOW - now % LOGIN_WINDOW + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_out_lasts_at_most_one_window() {
        let wait = until_next_window();
        assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_secs(LOGIN_WINDOW + 1), "{wait:?}");
    }
}
