//! APIO core authentication: login, refresh, and the bearer check every call makes.

use super::*;

impl ApioSim {
    fn issue_token(&self, inner: &mut Inner, kind: TokenKind) -> String {
        let lifetime = match kind {
            TokenKind::Access => self.cfg.access_token_lifetime,
            TokenKind::Refresh => self.cfg.refresh_token_lifetime,
        };
        let now = Instant::now();
        inner.tokens.retain(|_, t| t.expires > now);
        let mut jti = [0u8; 16];
        inner.rng.fill(&mut jti);
        let mut sig = [0u8; 32];
        inner.rng.fill(&mut sig);
        let iat = unix_now();
        let header = json!({"alg": "HS256", "typ": "JWT"});
        let payload = json!({
            "sub": self.cfg.username,
            "iat": iat,
            "exp": iat + lifetime.as_secs(),
            "jti": jti.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "type": match kind { TokenKind::Access => "access", TokenKind::Refresh => "refresh" },
        });
        let token = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            URL_SAFE_NO_PAD.encode(sig)
        );
        inner.tokens.insert(token.clone(), Token { kind, expires: now + lifetime });
        token
    }

    pub(super) fn authorize(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let Some(token) = bearer(headers) else {
            return Err("Missing Authorization: Bearer token");
        };
        if !self.cfg.m2m_token.is_empty() && token == self.cfg.m2m_token {
            return Ok(());
        }
        let inner = lock(&self.inner);
        match inner.tokens.get(token) {
            None => Err("Invalid token"),
            Some(t) if t.expires <= Instant::now() => Err("Token has expired"),
            Some(t) if t.kind == TokenKind::Refresh => {
                Err("A refresh token can only be used to get an access token")
            }
            Some(_) => Ok(()),
        }
    }
}

pub(super) async fn login(State(sim): Sim, headers: HeaderMap, body: Bytes) -> Response {
    let res = (|| {
        if !is_json(&headers) {
            return Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, "Expected application/json"));
        }
        let m = json_object(&body).map_err(|_| (StatusCode::BAD_REQUEST, "Invalid JSON body"))?;
        for (k, v) in &m {
            let max = match k.as_str() {
                "username" | "password" => LOGIN_FIELD_MAX,
                "proxy" => PROXY_MAX,
                _ => {
                    return Err((StatusCode::BAD_REQUEST, "Additional properties are not allowed"));
                }
            };
            match v.as_str() {
                Some(s) if s.chars().count() <= max => {}
                _ => return Err((StatusCode::BAD_REQUEST, "Invalid login field")),
            }
        }
        let user = m.get("username").and_then(Value::as_str);
        let pass = m.get("password").and_then(Value::as_str);
        let (Some(user), Some(pass)) = (user, pass) else {
            return Err((StatusCode::BAD_REQUEST, "username and password are required"));
        };
        if user != sim.cfg.username || pass != sim.cfg.password {
            return Err((StatusCode::UNAUTHORIZED, "Invalid username or password"));
        }
        Ok(())
    })();
    if let Err((status, msg)) = res {
        return named("login", (status, axum::Json(json!({"error": msg}))));
    }
    let mut inner = lock(&sim.inner);
    let access = sim.issue_token(&mut inner, TokenKind::Access);
    let refresh = sim.issue_token(&mut inner, TokenKind::Refresh);
    let mut out = json!({"access_token": access, "refresh_token": refresh});
    if !sim.cfg.m2m_token.is_empty() {
        out["token"] = json!(sim.cfg.m2m_token);
    }
    named("login", axum::Json(out))
}

pub(super) async fn refresh(State(sim): Sim, headers: HeaderMap) -> Response {
    let Some(token) = bearer(&headers) else {
        return named("refresh", auth_error("Missing Authorization: Bearer token"));
    };
    let mut inner = lock(&sim.inner);
    let now = Instant::now();
    let remaining = match inner.tokens.get(token) {
        Some(t) if t.kind == TokenKind::Refresh && t.expires > now => t.expires - now,
        Some(t) if t.kind == TokenKind::Refresh => {
            return named("refresh", auth_error("Refresh token has expired"));
        }
        _ => return named("refresh", auth_error("Invalid refresh token")),
    };
    let access = sim.issue_token(&mut inner, TokenKind::Access);
    let mut out = json!({ "access_token": access });
    if remaining < sim.cfg.refresh_renewal_window {
        out["refresh_token"] = json!(sim.issue_token(&mut inner, TokenKind::Refresh));
    }
    named("refresh", axum::Json(out))
}
