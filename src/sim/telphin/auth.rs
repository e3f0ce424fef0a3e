//! Tokens, the hourly quota and its headers, gzip: what every request passes through.

use super::*;

#[derive(Default)]
pub(super) struct Window {
    start: Option<Instant>,
    used: u64,
}

impl Window {
    /// Restarts the window when it has run out; returns the time left in it.
    pub(super) fn roll(&mut self, now: Instant, length: Duration) -> Duration {
        match self.start {
            Some(s) if now < s + length => s + length - now,
            _ => {
                self.start = None;
                self.used = 0;
                length
            }
        }
    }
}

pub(super) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, axum::Json(json!({"error": error, "error_description": description}))).into_response()
}

pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Authentication and the hourly quota for `/api`, rate headers on every answer.
pub(super) async fn guard(State(sim): Sim, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with(API) {
        let mut resp = next.run(req).await;
        sim.rate_headers(&mut lock(&sim.inner), resp.headers_mut());
        return resp;
    }
    let verdict = {
        let mut inner = lock(&sim.inner);
        let now = Instant::now();
        let valid = bearer(req.headers()).and_then(|t| inner.tokens.get(t)).is_some_and(|exp| *exp > now);
        if !valid {
            Err((StatusCode::UNAUTHORIZED, None, "Token is missing, expired or invalid"))
        } else {
            inner.quota.roll(now, sim.cfg.quota_window);
            if inner.quota.used >= sim.cfg.hourly_quota {
                Err((
                    StatusCode::TOO_MANY_REQUESTS,
                    Some("rate_limit_exceeded"),
                    "Hourly request limit exceeded, retry in the next hour",
                ))
            } else {
                inner.quota.start.get_or_insert(now);
                inner.quota.used += 1;
                Ok(())
            }
        }
    };
    let mut resp = match verdict {
        Ok(()) => next.run(req).await,
        Err((status, code, msg)) => {
            let mut r = ApiErr(status, code, msg.into()).into_response();
            if status == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            r
        }
    };
    sim.rate_headers(&mut lock(&sim.inner), resp.headers_mut());
    resp
}

pub(super) async fn token(State(sim): Sim, headers: HeaderMap, body: Bytes) -> Response {
    let mut inner = lock(&sim.inner);
    let now = Instant::now();
    inner.oauth.roll(now, Duration::from_secs(1));
    if inner.oauth.used >= sim.cfg.oauth_per_second {
        return named(
            "token",
            ApiErr(
                StatusCode::TOO_MANY_REQUESTS,
                Some("rate_limit_exceeded"),
                "Too many requests to /oauth".into(),
            ),
        );
    }
    inner.oauth.start.get_or_insert(now);
    inner.oauth.used += 1;
    if !content_type_is(&headers, "application/x-www-form-urlencoded") {
        return named(
            "token",
            oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Expected application/x-www-form-urlencoded",
            ),
        );
    }
    let form: BTreeMap<String, String> = crate::sim::form_pairs(&body).into_iter().collect();
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        None => {
            return named(
                "token",
                oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "grant_type is required"),
            );
        }
        Some(_) => {
            return named(
                "token",
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    "This application may only use client_credentials",
                ),
            );
        }
    }
    let id_ok = form.get("client_id") == Some(&sim.cfg.client_id);
    let secret_ok = form.get("client_secret") == Some(&sim.cfg.client_secret);
    if !id_ok || !secret_ok {
        return named(
            "token",
            oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Unknown client or wrong secret"),
        );
    }
    let token = sim.issue_token(&mut inner);
    named(
        "token",
        axum::Json(json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": sim.cfg.token_lifetime.as_secs(),
        })),
    )
}

impl TelphinSim {
    pub(super) fn issue_token(&self, inner: &mut Inner) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let now = Instant::now();
        inner.tokens.retain(|_, exp| *exp > now);
        let token: String =
            (0..TOKEN_LEN).map(|_| char::from(ALPHABET[inner.rng.random_range(0..ALPHABET.len())])).collect();
        inner.tokens.insert(token.clone(), now + self.cfg.token_lifetime);
        token
    }

    pub(super) fn rate_headers(&self, inner: &mut Inner, headers: &mut HeaderMap) {
        let left = inner.quota.roll(Instant::now(), self.cfg.quota_window);
        let remaining = self.cfg.hourly_quota.saturating_sub(inner.quota.used);
        let reset = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        headers.insert("x-ratelimit-limit", HeaderValue::from(self.cfg.hourly_quota));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
        headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
    }
}
