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

/// Authentication and the hourly quota for `/api`, rate headers on every answer, and the
/// dialect's answer shapes that hold for every route (error statuses, gzip).
pub(super) async fn guard(State(sim): Sim, req: Request, next: Next) -> Response {
    let dialect = sim.dialect_now();
    let gzip_asked = accepts_gzip(req.headers());
    let resp = if dialect.gzip == Gzip::Required && !gzip_asked {
        ApiErr(StatusCode::BAD_REQUEST, None, "Requests must send Accept-Encoding: gzip".into())
            .into_response()
    } else if req.uri().path().starts_with(API) {
        api_call(&sim, &dialect, req, next).await
    } else {
        next.run(req).await
    };
    let mut resp = dialect_errors(resp, &dialect).await;
    sim.rate_headers(&mut lock(&sim.inner), &dialect, resp.headers_mut());
    if dialect.gzip != Gzip::Off && gzip_asked {
        resp = gzipped(resp).await;
    }
    resp
}

async fn api_call(sim: &TelphinSim, dialect: &Dialect, req: Request, next: Next) -> Response {
    let verdict = {
        let mut inner = lock(&sim.inner);
        let now = Instant::now();
        let valid = bearer(req.headers()).and_then(|t| inner.tokens.get(t)).is_some_and(|exp| *exp > now);
        if !valid {
            Err((StatusCode::UNAUTHORIZED, None, "Token is missing, expired or invalid"))
        } else {
            inner.quota.roll(now, dialect.window());
            if inner.quota.used >= dialect.quota {
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
    match verdict {
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
    }
}

/// Statuses the simulator uses that the documented error table does not have.
const UNDOCUMENTED_STATUSES: &[&str] =
    &["already_exists", "extension_not_found", "invalid_parameter", "extension_has_users"];

/// Without `error_statuses`, a refusal says only its `message`, where the docs name no
/// status for it.
async fn dialect_errors(resp: Response, dialect: &Dialect) -> Response {
    if dialect.error_statuses || !resp.status().is_client_error() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    let stripped = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(mut m))
            if m.get("status")
                .and_then(Value::as_str)
                .is_some_and(|s| UNDOCUMENTED_STATUSES.contains(&s)) =>
        {
            m.remove("status");
            Some(Value::Object(m).to_string())
        }
        _ => None,
    };
    match stripped {
        Some(text) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, axum::body::Body::from(text))
        }
        None => Response::from_parts(parts, axum::body::Body::from(bytes)),
    }
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',').any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| p.trim().replace(' ', "") == "q=0");
            name.eq_ignore_ascii_case("gzip") && !refused
        })
    })
}

/// The answer compressed with gzip (an empty body stays empty: a 204 has none).
async fn gzipped(resp: Response) -> Response {
    use std::io::Write;
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    if bytes.is_empty() {
        return Response::from_parts(parts, axum::body::Body::empty());
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let compressed = encoder.write_all(&bytes).and_then(|()| encoder.finish());
    match compressed {
        Ok(out) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            parts.headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
            Response::from_parts(parts, axum::body::Body::from(out))
        }
        Err(_) => Response::from_parts(parts, axum::body::Body::from(bytes)),
    }
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

    pub(super) fn rate_headers(&self, inner: &mut Inner, dialect: &Dialect, headers: &mut HeaderMap) {
        let left = inner.quota.roll(Instant::now(), dialect.window());
        let remaining = dialect.quota.saturating_sub(inner.quota.used);
        let reset = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        headers.insert("x-ratelimit-limit", HeaderValue::from(dialect.quota));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
        headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
    }
}
