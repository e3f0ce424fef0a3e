//! Logging in: the admin session (`session/start`), the v3 JWTs, and who may call what.

use super::*;

impl MikoPbxSim {
    pub(super) fn check_login(&self, login: &str, password: &str) -> Option<Role> {
        if login == self.cfg.admin_login && password == self.cfg.admin_password {
            return Some(Role::Admin);
        }
        self.cfg
            .restricted_users
            .iter()
            .find(|u| u.login == login && u.password == password)
            .map(|u| Role::Restricted(u.allowed_actions.clone()))
    }

    /// The role of the logged-in session the request's `PHPSESSID` names, if any.
    pub(super) fn session_role(&self, headers: &HeaderMap) -> Option<Role> {
        let sid = cookie(headers, "PHPSESSID")?;
        let mut st = lock(&self.state);
        let now = Instant::now();
        let lifetime = self.cfg.session_lifetime;
        st.sessions.retain(|_, s| now.duration_since(s.last_used) < lifetime);
        let s = st.sessions.get_mut(&sid)?;
        s.last_used = now;
        s.role.clone()
    }

    /// Whether the legacy API and the admin cabinet trust this caller without a login:
    /// `$_SERVER['REMOTE_ADDR'] === '127.0.0.1'` in both 2023.2 and 2024.1 (not `::1`).
    pub(super) fn legacy_trusts(&self, peer: IpAddr) -> bool {
        self.cfg.trust_loopback && peer == IpAddr::V4(Ipv4Addr::LOCALHOST)
    }

    pub(super) fn legacy_auth(&self, peer: IpAddr, headers: &HeaderMap, action: &str) -> Option<Response> {
        if self.legacy_trusts(peer) {
            return None;
        }
        match self.session_role(headers) {
            None => Some(self.legacy_framework_error(StatusCode::UNAUTHORIZED, MSG_NOT_AUTHENTICATED)),
            Some(role) if !role.allows(action) => {
                Some(self.legacy_framework_error(StatusCode::FORBIDDEN, MSG_ROUTE_NOT_ALLOWED))
            }
            Some(_) => None,
        }
    }

    pub(super) fn v3_auth(&self, peer: IpAddr, headers: &HeaderMap, action: &str) -> Option<Response> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_string());
        if let Some(token) = bearer {
            let role = {
                let mut st = lock(&self.state);
                let now = Instant::now();
                st.access.retain(|_, t| t.expires > now);
                st.access.get(&token).map(|t| t.role.clone())
            };
            let role = match role {
                Some(r) => r,
                None if !self.cfg.api_key.is_empty() && token == self.cfg.api_key => Role::Admin,
                None => {
                    return Some(self.v3_error(StatusCode::UNAUTHORIZED, MSG_NOT_AUTHENTICATED));
                }
            };
            if !role.allows(action) {
                return Some(self.v3_error(StatusCode::FORBIDDEN, MSG_V3_DENIED));
            }
            return None;
        }
        let loopback = peer == IpAddr::V4(Ipv4Addr::LOCALHOST) || peer == IpAddr::V6(Ipv6Addr::LOCALHOST);
        if self.cfg.trust_loopback && loopback {
            return None;
        }
        Some(self.v3_error(StatusCode::UNAUTHORIZED, MSG_NOT_AUTHENTICATED))
    }

    /// `SessionController::startAction`. 2023.2 only checks the login. 2024.1 first counts
    /// the attempt (every one, refused or not) and, once an address has used up
    /// `login_attempts` in the window, answers `success: true` with `reload` pointing at
    /// the login page and no logged-in session. Every answer starts a PHP session, so a
    /// refused or throttled caller gets a `PHPSESSID` too, one that is logged in to
    /// nothing. Messages are translated (`auth_WrongLoginPassword`,
    /// `auth_TooManyLoginAttempts`) and sent as flash messages `{"error": [...]}`.
    pub(super) fn session_start(
        &self,
        peer: IpAddr,
        headers: &HeaderMap,
        form: &HashMap<String, String>,
    ) -> Response {
        let dialect = self.current();
        let xhr = is_xhr(headers);
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let now = Instant::now();
        let throttling = dialect.legacy_release() != Generation::V2023_2;
        let window = self.cfg.login_attempts_window;
        enum Outcome {
            In(String),
            Refused(String),
            Throttled(String),
        }
        let outcome = {
            let mut st = lock(&self.state);
            let remain = if throttling {
                let counter = st.legacy_logins.entry(peer).or_insert((now, 0));
                if now.duration_since(counter.0) >= window {
                    *counter = (now, 0);
                }
                counter.1 += 1;
                self.cfg.login_attempts.saturating_sub(counter.1)
            } else {
                usize::MAX
            };
            let role = match remain {
                0 => None,
                _ => self.check_login(get("login"), get("password")),
            };
            let sid = random_token(&mut st.rng, 26);
            st.sessions.insert(sid.clone(), Session { role: role.clone(), last_used: now });
            match (remain, role) {
                (0, _) => Outcome::Throttled(sid),
                (_, Some(_)) => Outcome::In(sid),
                (_, None) => Outcome::Refused(sid),
            }
        };
        let language = dialect.language;
        let back = match get("backUri") {
            "" => "/admin-cabinet/extensions/index",
            b => b,
        };
        let (sid, body, page) = match &outcome {
            Outcome::In(sid) => (sid, json!({"success": true, "reload": back, "message": []}), None),
            Outcome::Throttled(sid) => {
                let message = text(language, "auth_TooManyLoginAttempts")
                    .replace("%interval%", &window.as_secs().to_string());
                let body = json!({"success": true, "reload": "/admin-cabinet/session/index",
                                  "message": {"error": [message.clone()]}});
                (sid, body, Some(message))
            }
            Outcome::Refused(sid) => {
                let message = if throttling {
                    let left = {
                        let st = lock(&self.state);
                        let used = st.legacy_logins.get(&peer).map_or(0, |c| c.1);
                        self.cfg.login_attempts.saturating_sub(used)
                    };
                    text(language, "auth_WrongLoginPassword").replace("%attempts%", &left.to_string())
                } else {
                    text(language, "auth_WrongLoginPassword_2023")
                };
                let body =
                    json!({"success": false, "reload": false, "message": {"error": [message.clone()]}});
                (sid, body, Some(message))
            }
        };
        let mut resp = match (xhr, page) {
            (true, _) => axum::Json(body).into_response(),
            (false, None) => (StatusCode::FOUND, [(header::LOCATION, back.to_string())]).into_response(),
            (false, Some(msg)) => html(
                StatusCode::OK,
                &format!(
                    "<html><body><form id=\"login-form\"><div class=\"ui error message\">{msg}</div></form></body></html>"
                ),
            ),
        };
        if let Ok(v) = HeaderValue::from_str(&format!("PHPSESSID={sid}; path=/; HttpOnly")) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
        resp.extensions_mut().insert(OpName("sessionStart"));
        resp
    }

    pub(super) fn v3_login(&self, peer: IpAddr, data: &Map<String, Value>) -> Response {
        let s = |k: &str| data.get(k).map(value_to_form).unwrap_or_default();
        let (login, password) = (s("login"), s("password"));
        if login.is_empty() || password.is_empty() {
            return self.v3_auth_fail(StatusCode::BAD_REQUEST, "login", "auth_LoginPasswordRequired");
        }
        let remember = matches!(s("rememberMe").as_str(), "1" | "true" | "on");
        let mut st = lock(&self.state);
        if throttled(&mut st.v3_failures, peer, &self.cfg) {
            drop(st);
            return self.v3_auth_fail(StatusCode::TOO_MANY_REQUESTS, "login", MSG_V3_THROTTLED);
        }
        let Some(role) = self.check_login(&login, &password) else {
            st.v3_failures.entry(peer).or_default().push(Instant::now());
            drop(st);
            return self.v3_auth_fail(StatusCode::UNAUTHORIZED, "login", MSG_V3_BAD_LOGIN);
        };
        st.v3_failures.remove(&peer);
        drop(st);
        self.issue_tokens(role, &login, remember, "login")
    }

    pub(super) fn issue_tokens(
        &self,
        role: Role,
        login: &str,
        remember: bool,
        function: &'static str,
    ) -> Response {
        let mut st = lock(&self.state);
        let now = Instant::now();
        let issued_at = unix_now();
        let lifetime = self.cfg.access_token_lifetime.as_secs();
        let role_name = match role {
            Role::Admin => "admins",
            Role::Restricted(_) => "restricted",
        };
        let mut sig = [0u8; 32];
        st.rng.fill(&mut sig[..]);
        let jwt = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"HS256"}"#),
            URL_SAFE_NO_PAD.encode(
                json!({"sub": login, "role": role_name, "iat": issued_at, "exp": issued_at + lifetime})
                    .to_string()
            ),
            URL_SAFE_NO_PAD.encode(sig)
        );
        let refresh = random_hex(&mut st.rng, 64);
        st.access
            .insert(jwt.clone(), Token { role: role.clone(), expires: now + self.cfg.access_token_lifetime });
        st.refresh.insert(
            refresh.clone(),
            RefreshToken { role, login: login.to_string(), expires: now + self.cfg.refresh_token_lifetime },
        );
        drop(st);
        let data = json!({"accessToken": jwt, "tokenType": "Bearer", "expiresIn": lifetime, "login": login});
        let mut resp = self.v3_auth_reply(function, data);
        let max_age = if remember {
            format!("; Max-Age={}", self.cfg.refresh_token_lifetime.as_secs())
        } else {
            String::new()
        };
        let c =
            format!("refreshToken={refresh}; Path=/pbxcore/api/v3/auth; HttpOnly; SameSite=Strict{max_age}");
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
        resp
    }

    pub(super) fn v3_auth_reply(&self, function: &'static str, data: Value) -> Response {
        let processor = format!("MikoPBX\\PBXCoreREST\\Lib\\Auth\\{}Action::main", capitalize(function));
        let body = self.payload(true, function, &processor, data, json!([]));
        send(StatusCode::OK, body, function)
    }

    pub(super) fn v3_auth_fail(&self, status: StatusCode, function: &'static str, msg: &str) -> Response {
        let processor = format!("MikoPBX\\PBXCoreREST\\Lib\\Auth\\{}Action::main", capitalize(function));
        let mut body = self.payload(false, function, &processor, json!([]), json!({"error": [msg]}));
        body.insert("httpCode".into(), json!(status.as_u16()));
        send(status, body, function)
    }

    pub(super) fn v3_refresh(&self, headers: &HeaderMap) -> Response {
        let token = cookie(headers, "refreshToken");
        let mut st = lock(&self.state);
        let now = Instant::now();
        st.refresh.retain(|_, t| t.expires > now);
        let found = token.and_then(|t| st.refresh.remove(&t));
        drop(st);
        match found {
            Some(rt) => self.issue_tokens(rt.role, &rt.login, true, "refresh"),
            None => {
                self.v3_auth_fail(StatusCode::UNAUTHORIZED, "refresh", "Invalid or expired refresh token")
            }
        }
    }

    pub(super) fn v3_logout(&self, headers: &HeaderMap) -> Response {
        let mut st = lock(&self.state);
        if let Some(t) = cookie(headers, "refreshToken") {
            st.refresh.remove(&t);
        }
        if let Some(b) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            st.access.remove(b.trim());
        }
        drop(st);
        self.v3_auth_reply("logout", json!({"success": true}))
    }
}

pub(super) async fn session_start(
    State(sim): Sim,
    Peer(ip): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.session_start(ip, &headers, &post_form(&headers, &body))
}

pub(super) async fn v3_login(
    State(sim): Sim,
    Peer(ip): Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    if let Some(r) = sim.v3_gone() {
        return r;
    }
    match sim.v3_data(&headers, q.as_deref().unwrap_or(""), &body) {
        Ok(data) => sim.v3_login(ip, &data),
        Err(resp) => *resp,
    }
}

pub(super) async fn v3_refresh(State(sim): Sim, headers: HeaderMap) -> Response {
    if let Some(r) = sim.v3_gone() {
        return r;
    }
    sim.v3_refresh(&headers)
}

pub(super) async fn v3_logout(State(sim): Sim, headers: HeaderMap) -> Response {
    if let Some(r) = sim.v3_gone() {
        return r;
    }
    sim.v3_logout(&headers)
}

/// True when `ip` has used up its failed v3 logins within the window (`LoginAction`
/// counts failures only).
pub(super) fn throttled(
    failures: &mut HashMap<IpAddr, Vec<Instant>>,
    ip: IpAddr,
    cfg: &MikoPbxConfig,
) -> bool {
    let now = Instant::now();
    let list = failures.entry(ip).or_default();
    list.retain(|t| now.duration_since(*t) < cfg.login_attempts_window);
    list.len() >= cfg.login_attempts
}
