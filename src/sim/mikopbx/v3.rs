//! The REST API v3 (2026.1): `/pbxcore/api/v3/employees`.

use super::*;

impl MikoPbxSim {
    /// The 404 of a release without v3 (2023.2, 2024.1): the route does not exist.
    pub(super) fn v3_gone(&self) -> Option<Response> {
        (!self.current().v3()).then(|| self.legacy_framework_error(StatusCode::NOT_FOUND, MSG_NOT_FOUND))
    }

    pub(super) fn v3_data(
        &self,
        headers: &HeaderMap,
        query: &str,
        body: &[u8],
    ) -> Result<Map<String, Value>, Box<Response>> {
        let ct = content_type(headers);
        let mut data = Map::new();
        if ct.starts_with("application/json") {
            if !body.iter().all(u8::is_ascii_whitespace) {
                match serde_json::from_slice::<Value>(body) {
                    Ok(Value::Object(m)) => data = m,
                    _ => {
                        let msg = "Invalid JSON in request body";
                        return Err(Box::new(self.v3_error(StatusCode::BAD_REQUEST, msg)));
                    }
                }
            }
        } else if ct.starts_with("application/x-www-form-urlencoded") {
            for (k, v) in crate::sim::form_pairs(body) {
                data.insert(k, Value::String(v));
            }
        }
        for (k, v) in crate::sim::form_pairs(query.as_bytes()) {
            data.insert(k, Value::String(v));
        }
        Ok(data)
    }

    pub(super) fn v3_record_json(&self, s: &Store, rec: &Record) -> Value {
        let rep = |v: &str| Value::String(s.represent_number(v));
        json!({
            "id": rec.user_id.map(|u| u.to_string()).unwrap_or_default(),
            "user_username": rec.user_username,
            "user_email": rec.user_email,
            "user_avatar": rec.user_avatar,
            "number": rec.number,
            "extensions_length": self.cfg.extension_length,
            "sip_secret": rec.sip_secret,
            "sip_enableRecording": !(rec.sip_enable_recording.is_empty() || rec.sip_enable_recording == "0"),
            "sip_dtmfmode": rec.sip_dtmfmode,
            "sip_transport": rec.sip_transport,
            "sip_manualattributes": rec.sip_manualattributes,
            "sip_networkfilterid": rec.sip_networkfilterid,
            "sip_networkfilterid_represent": if rec.sip_networkfilterid == "none" { "Any network".to_string() } else { format!("Network filter {}", rec.sip_networkfilterid) },
            "fwd_ringlength": rec.fwd_ringlength,
            "fwd_forwarding": rec.fwd_forwarding,
            "fwd_forwarding_represent": rep(&rec.fwd_forwarding),
            "fwd_forwardingonbusy": rec.fwd_onbusy,
            "fwd_forwardingonbusy_represent": rep(&rec.fwd_onbusy),
            "fwd_forwardingonunavailable": rec.fwd_onunavailable,
            "fwd_forwardingonunavailable_represent": rep(&rec.fwd_onunavailable),
            "mobile_number": rec.mobile_number(),
            "mobile_dialstring": rec.mobile_dialstring(),
        })
    }

    /// `GetListAction`: employees with a SIP extension, ordered by `order_by` (`username`
    /// by default; `number` and `mobile` as integers), paged only when `limit` or
    /// `offset` is given (`limit` <= 0 is 50, capped at `v3_max_limit`).
    pub(super) fn v3_list(&self, query: &str) -> Response {
        let q: HashMap<String, String> = crate::sim::form_pairs(query.as_bytes()).into_iter().collect();
        let max_limit = self.current().v3_max_limit;
        let st = lock(&self.state);
        let s = &st.store;
        let search = q.get("search").map(|v| v.trim().to_lowercase()).unwrap_or_default();
        let all = s.all_records();
        let mut rows: Vec<&Record> =
            all.iter().filter(|r| r.id.is_some()).filter(|r| v3_search_matches(r, &search)).collect();
        let order = q.get("order_by").map(String::as_str).unwrap_or("username");
        let key = |r: &Record| -> (i64, String) {
            match order {
                "number" => (php_int(&r.number), String::new()),
                "mobile" => (php_int(r.mobile_number()), String::new()),
                "email" => (0, r.user_email.clone()),
                _ => (0, r.user_username.clone()),
            }
        };
        rows.sort_by(|a, b| key(a).cmp(&key(b)).then(a.user_id.cmp(&b.user_id)));
        if q.get("order_direction").is_some_and(|d| d.eq_ignore_ascii_case("desc")) {
            rows.reverse();
        }
        let total = rows.len();
        let page: Vec<&Record> = if q.contains_key("limit") || q.contains_key("offset") {
            let limit = q.get("limit").map(|l| php_int(l)).unwrap_or(0);
            let limit = if limit <= 0 {
                self.cfg.v3_default_limit
            } else {
                usize::try_from(limit).unwrap_or(usize::MAX)
            };
            let limit = limit.min(max_limit);
            let offset = q.get("offset").map(|o| php_int(o)).unwrap_or(0);
            let offset = usize::try_from(offset).unwrap_or(0);
            rows.into_iter().skip(offset).take(limit).collect()
        } else {
            rows
        };
        let items: Vec<Value> = page
            .iter()
            .map(|r| {
                let mobile =
                    if r.mobile_dialstring().is_empty() { r.mobile_number() } else { r.mobile_dialstring() };
                json!({
                    "id": r.user_id,
                    "number": r.number,
                    "user_username": r.user_username,
                    "user_email": r.user_email,
                    "mobile": mobile,
                    "avatar": if r.user_avatar.is_empty() { DEFAULT_AVATAR } else { r.user_avatar.as_str() },
                    "disabled": r.sip_disabled == "1",
                })
            })
            .collect();
        let data = json!({"data": items, "recordsTotal": total, "recordsFiltered": total});
        self.v3_reply(StatusCode::OK, "getList", Ok(data), vec![])
    }

    pub(super) fn v3_get(&self, id: &str) -> Response {
        let st = lock(&self.state);
        let rec = id.parse::<u64>().ok().and_then(|u| st.store.record_of_user(u));
        match rec {
            Some(rec) => {
                let data = self.v3_record_json(&st.store, &rec);
                self.v3_reply(StatusCode::OK, "getRecord", Ok(data), vec![])
            }
            None => {
                let (status, explicit) = self.v3_soft_not_found();
                self.v3_fail(
                    status,
                    "getRecord",
                    vec![format!("Employee with user_id {id} not found")],
                    explicit,
                )
            }
        }
    }

    /// GET's and DELETE's answer to an unknown id, as the dialect has it.
    pub(super) fn v3_soft_not_found(&self) -> (StatusCode, bool) {
        match self.current().v3_not_found {
            404 => (StatusCode::NOT_FOUND, true),
            _ => (StatusCode::UNPROCESSABLE_ENTITY, false),
        }
    }

    /// `POST /pbxcore/api/v3/extensions:available`: `Utils::ifNumberAvailable`.
    pub(super) fn v3_available(&self, data: &Map<String, Value>) -> Response {
        let number = data.get("number").map(value_to_form).unwrap_or_default();
        if number.is_empty() {
            return self.v3_fail(
                StatusCode::UNPROCESSABLE_ENTITY,
                "available",
                vec![MSG_EMPTY_NUMBER.into()],
                false,
            );
        }
        let integers = self.current().integers;
        let st = lock(&self.state);
        let data = available(&st.store, &number, integers);
        self.v3_reply(StatusCode::OK, "available", Ok(data), vec![])
    }

    pub(super) fn v3_get_default(&self) -> Response {
        let mut st = lock(&self.state);
        let Inner { store, rng, .. } = &mut *st;
        let rec = Record {
            number: store.next_free_number(&self.cfg),
            sip_secret: new_v3_secret(rng),
            sip_enable_recording: "1".into(),
            sip_dtmfmode: "auto".into(),
            sip_transport: "udp".into(),
            sip_networkfilterid: "none".into(),
            fwd_ringlength: 45,
            ..Record::default()
        };
        let data = self.v3_record_json(store, &rec);
        self.v3_reply(StatusCode::OK, "getDefault", Ok(data), vec![])
    }

    pub(super) fn v3_delete(&self, id: &str) -> Response {
        let mut st = lock(&self.state);
        let uid = id.parse::<u64>().ok().filter(|u| st.store.users.contains_key(u));
        let Some(uid) = uid else {
            let (status, explicit) = self.v3_soft_not_found();
            return self.v3_fail(status, "delete", vec![format!("Employee not found (ID: {id})")], explicit);
        };
        let refused = st.store.restrict_messages(uid);
        if !refused.is_empty() {
            return self.v3_fail(StatusCode::UNPROCESSABLE_ENTITY, "delete", refused, false);
        }
        st.store.delete_user(uid);
        self.v3_reply(StatusCode::OK, "delete", Ok(json!({"deleted_id": id})), vec![])
    }

    /// `SaveRecordAction::main`, reached by POST (create), PUT, and PATCH (whose request
    /// is first merged into the stored record: then the whole merged record is
    /// validated, the stored SIP password included, so a record whose stored password
    /// MikoPBX would refuse today takes no PATCH that does not bring a new one).
    pub(super) fn v3_write(&self, op: V3Op, id: Option<&str>, data: &Map<String, Value>) -> Response {
        let function = match op {
            V3Op::Create => "create",
            V3Op::Put => "update",
            V3Op::Patch => "patch",
        };
        let language = self.current().language;
        let mut st = lock(&self.state);
        let uid = match id {
            None => None,
            Some(id) => match id.parse::<u64>().ok().filter(|u| st.store.users.contains_key(u)) {
                Some(u) => Some(u),
                None => {
                    let msg = match op {
                        V3Op::Patch => format!("Employee not found for patch operation (ID: {id})"),
                        _ => "Employee not found".to_string(),
                    };
                    return self.v3_fail(StatusCode::NOT_FOUND, function, vec![msg], true);
                }
            },
        };
        let input = match (op, uid.and_then(|u| st.store.record_of_user(u))) {
            (V3Op::Patch, Some(current)) => {
                let Value::Object(stored) = self.v3_record_json(&st.store, &current) else {
                    return self.v3_error(StatusCode::INTERNAL_SERVER_ERROR, "no record");
                };
                let mut patch = data.clone();
                patch.insert("id".into(), json!(id.unwrap_or_default()));
                v3_merge(&stored, &patch)
            }
            _ => data.clone(),
        };
        let (sent, mut schema) = v3_sanitize(&input);

        // Required fields: keyed by field, untranslated.
        let mut required = Map::new();
        match sent.number.as_deref().unwrap_or("") {
            "" => {
                required.insert("number".into(), json!("ex_ValidateNumberIsEmpty"));
            }
            n if !n.bytes().all(|b| b.is_ascii_digit()) => {
                required.insert("number".into(), json!("ex_ValidateExtensionNumber"));
            }
            _ => {}
        }
        if sent.user_username.as_deref().unwrap_or("").is_empty() {
            required.insert("user_username".into(), json!("ex_ValidateUsernameEmpty"));
        }
        if op == V3Op::Create && sent.sip_secret.as_deref().unwrap_or("").is_empty() {
            required.insert("sip_secret".into(), json!("ex_ValidateSecretEmpty"));
        }
        if !required.is_empty() {
            return self.v3_reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                function,
                Err(Value::Object(required)),
                vec![],
            );
        }
        let eff = v3_effective(op, &sent);

        // Schema checks (after the defaults).
        if let Some(n) = &eff.number
            && !number_pattern(n)
        {
            schema.push("Field 'number' does not match the required pattern ^[0-9]{2,8}$".into());
        }
        if let Some(v) = &eff.sip_dtmfmode
            && !["auto", "auto_info", "inband", "rfc4733", "info"].contains(&v.as_str())
        {
            schema.push("Field 'sip_dtmfmode' must be one of: auto, auto_info, inband, rfc4733, info".into());
        }
        if let Some(v) = &eff.sip_transport
            && !["udp", "tcp", "tls", "udp,tcp"].contains(&v.as_str())
        {
            schema.push("Field 'sip_transport' must be one of: udp, tcp, tls, udp,tcp".into());
        }
        if let Some(v) = &eff.sip_networkfilterid
            && !(v == "none" || (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())))
        {
            schema.push(
                "Field 'sip_networkfilterid' does not match the required pattern ^([0-9]+|none)$".into(),
            );
        }
        if let Some(r) = eff.fwd_ringlength {
            if r > 180 {
                schema.push(format!("Field 'fwd_ringlength' must be at most 180 (got {r})"));
            } else if r < 0 {
                schema.push(format!("Field 'fwd_ringlength' must be at least 0 (got {r})"));
            }
        }
        if !schema.is_empty() {
            return self.v3_fail(StatusCode::UNPROCESSABLE_ENTITY, function, schema, false);
        }

        // Business checks, translated, on the record as it would be saved.
        let t = |key: &str| text(language, key);
        let mut business = Vec::new();
        let s = &st.store;
        let number = eff.number.clone().unwrap_or_default();
        let held_by_other = |n: &str| s.exts_numbered(n).any(|e| e.userid.is_some() && e.userid != uid);
        if held_by_other(&number) {
            business.push(t("ex_ValidateNumberIsDouble"));
        }
        if let Some(secret) = eff.sip_secret.as_deref().filter(|s| !s.is_empty()) {
            business.extend(sip_password_messages(secret, language, self.cfg.v3_password_policy));
        }
        if let Some(email) = eff.user_email.as_deref().filter(|e| !e.is_empty())
            && !["_@_._", "@", "_@_", "___@___.___"].contains(&email)
            && !email_valid(email)
        {
            business.push(t("ex_ValidateEmailEmpty"));
        }
        if let Some(m) = eff.mobile_number.as_deref().filter(|m| !m.is_empty()) {
            if held_by_other(m) {
                business.push(t("ex_ValidateMobileNumberIsDouble"));
            }
            if !mobile_pattern(m) {
                business.push(t("ex_ValidateMobileIsNotCorrect"));
            }
        }
        let forwarding = eff.fwd_forwarding.clone().unwrap_or_default();
        let ring = eff.fwd_ringlength.unwrap_or(0);
        if !forwarding.is_empty() && !(3..=180).contains(&ring) {
            business.push(t("ex_ValidateRingingBeforeForwardOutOfRange").replace("{ruleValue}", "3-180"));
        }
        let targets = [&eff.fwd_forwarding, &eff.fwd_onbusy, &eff.fwd_onunavailable];
        if targets.iter().any(|t| t.as_deref().is_some_and(|t| !t.is_empty() && t == number)) {
            business.push(t("ex_ValidateForwardingToBeDifferent"));
        }
        if !business.is_empty() {
            return self.v3_fail(StatusCode::UNPROCESSABLE_ENTITY, function, business, false);
        }

        let Inner { store, rng, .. } = &mut *st;
        match store.v3_save(uid, &eff, &self.cfg, language, rng) {
            Err(errors) => self.v3_fail(StatusCode::UNPROCESSABLE_ENTITY, function, errors, false),
            Ok(uid) => {
                let data =
                    store.record_of_user(uid).map(|r| self.v3_record_json(store, &r)).unwrap_or(Value::Null);
                let data = self.current().save_answer.trim(data);
                if op == V3Op::Create {
                    let extra =
                        vec![("httpCode", json!(201)), ("reload", json!(format!("extensions/modify/{uid}")))];
                    self.v3_reply(StatusCode::CREATED, function, Ok(data), extra)
                } else {
                    self.v3_reply(StatusCode::OK, function, Ok(data), vec![])
                }
            }
        }
    }
}

pub(super) async fn v3_method_not_allowed() -> Response {
    let body = json!({"result": false, "messages": {"error": ["Method not allowed"]}});
    let mut resp = (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response();
    resp.extensions_mut().insert(OpName("methodNotAllowed"));
    resp
}

pub(super) async fn v3_list_handler(
    State(sim): Sim,
    Peer(ip): Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    if let Some(r) = sim.v3_gone() {
        return r;
    }
    if let Some(r) = sim.v3_auth(ip, &headers, "getList") {
        return r;
    }
    sim.v3_list(q.as_deref().unwrap_or(""))
}

pub(super) async fn v3_get_default_handler(State(sim): Sim, Peer(ip): Peer, headers: HeaderMap) -> Response {
    if let Some(r) = sim.v3_gone() {
        return r;
    }
    if let Some(r) = sim.v3_auth(ip, &headers, "getDefault") {
        return r;
    }
    sim.v3_get_default()
}

pub(super) async fn v3_create_handler(
    State(sim): Sim,
    Peer(ip): Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    if let Some(r) = sim.v3_gone() {
        return r;
    }
    if let Some(r) = sim.v3_auth(ip, &headers, "create") {
        return r;
    }
    let data = match sim.v3_data(&headers, q.as_deref().unwrap_or(""), &body) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    // A POST that carries an id is a save of that record, not a create.
    match data.get("id").map(value_to_form).filter(|i| !i.is_empty()) {
        Some(id) => sim.v3_write(V3Op::Put, Some(&id), &data),
        None => sim.v3_write(V3Op::Create, None, &data),
    }
}

pub(super) async fn v3_get_handler(
    State(sim): Sim,
    Path(id): Path<String>,
    Peer(ip): Peer,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = sim.v3_gone() {
        return r;
    }
    if !is_digits(&id) {
        return sim.v3_error(StatusCode::NOT_FOUND, MSG_NOT_FOUND);
    }
    if let Some(r) = sim.v3_auth(ip, &headers, "getRecord") {
        return r;
    }
    sim.v3_get(&id)
}

pub(super) async fn v3_put_handler(
    State(sim): Sim,
    Path(id): Path<String>,
    Peer(ip): Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    v3_update(sim, id, ip, headers, q, body, V3Op::Put, "update")
}

pub(super) async fn v3_patch_handler(
    State(sim): Sim,
    Path(id): Path<String>,
    Peer(ip): Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    v3_update(sim, id, ip, headers, q, body, V3Op::Patch, "patch")
}

#[allow(clippy::too_many_arguments)]
pub(super) fn v3_update(
    sim: Arc<MikoPbxSim>,
    id: String,
    ip: IpAddr,
    headers: HeaderMap,
    q: Option<String>,
    body: Bytes,
    op: V3Op,
    action: &str,
) -> Response {
    if let Some(r) = sim.v3_gone() {
        return r;
    }
    if !is_digits(&id) {
        return sim.v3_error(StatusCode::NOT_FOUND, MSG_NOT_FOUND);
    }
    if let Some(r) = sim.v3_auth(ip, &headers, action) {
        return r;
    }
    match sim.v3_data(&headers, q.as_deref().unwrap_or(""), &body) {
        Ok(data) => sim.v3_write(op, Some(&id), &data),
        Err(r) => *r,
    }
}

pub(super) async fn v3_delete_handler(
    State(sim): Sim,
    Path(id): Path<String>,
    Peer(ip): Peer,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = sim.v3_gone() {
        return r;
    }
    if !is_digits(&id) {
        return sim.v3_error(StatusCode::NOT_FOUND, MSG_NOT_FOUND);
    }
    if let Some(r) = sim.v3_auth(ip, &headers, "delete") {
        return r;
    }
    sim.v3_delete(&id)
}

pub(super) async fn v3_available_handler(
    State(sim): Sim,
    Peer(ip): Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    if let Some(r) = sim.v3_gone() {
        return r;
    }
    if let Some(r) = sim.v3_auth(ip, &headers, "available") {
        return r;
    }
    match sim.v3_data(&headers, q.as_deref().unwrap_or(""), &body) {
        Ok(data) => sim.v3_available(&data),
        Err(r) => *r,
    }
}

pub(super) fn v3_action_class(function: &str) -> &'static str {
    match function {
        "getList" => "GetListAction",
        "getRecord" => "GetRecordAction",
        "getDefault" => "GetDefaultAction",
        "create" => "SaveRecordAction",
        "update" => "UpdateRecordAction",
        "patch" => "PatchRecordAction",
        "delete" => "DeleteRecordAction",
        "available" => "AvailableAction",
        _ => "UnknownAction",
    }
}
