//! The legacy REST API (2023.2 / 2024.1): `/pbxcore/api/extensions/*`.

use super::*;

impl MikoPbxSim {
    pub(super) fn legacy(
        &self,
        method: &Method,
        action: &str,
        peer: IpAddr,
        headers: &HeaderMap,
        query: HashMap<String, String>,
        post: HashMap<String, String>,
    ) -> Response {
        let dialect = self.current();
        if !dialect.legacy() {
            // 2026.1 removed the legacy controllers: the route is unknown.
            return self.v3_error(StatusCode::NOT_FOUND, MSG_NOT_FOUND);
        }
        if let Some(resp) = self.legacy_auth(peer, headers, action) {
            return resp;
        }
        let release = dialect.legacy_release();
        let result = match (method.as_str(), action) {
            ("GET", "getRecord") => {
                Ok(self.legacy_get_record(query.get("id").map(String::as_str).unwrap_or(""), release))
            }
            ("GET", "getForSelect") => {
                Ok(self.legacy_get_for_select(query.get("type").map(String::as_str).unwrap_or("all")))
            }
            ("GET", "available") => {
                let number = query.get("number").map(String::as_str).unwrap_or("");
                self.legacy_available(number, dialect.integers)
            }
            ("POST", "saveRecord") => {
                let mut st = lock(&self.state);
                let Inner { store, rng, .. } = &mut *st;
                store
                    .legacy_save(&post, &self.cfg, release, rng)
                    .map(|ext_id| dialect.save_answer.trim(legacy_record_json(store, ext_id, rng)))
            }
            ("POST", "deleteRecord") => {
                self.legacy_delete(post.get("id").map(String::as_str).unwrap_or(""), release)
            }
            _ => Err(vec![format!(
                "Unknown action - {action} in MikoPBX\\PBXCoreREST\\Lib\\ExtensionsManagementProcessor"
            )]),
        };
        self.legacy_reply(action, release, result)
    }

    /// The record of the SIP extension of a user with this `Extensions.id`; for any other
    /// id (unknown, deleted, a mobile's, a queue's) a blank template without `id`.
    pub(super) fn legacy_get_record(&self, id: &str, release: Generation) -> Value {
        let mut st = lock(&self.state);
        let Inner { store, rng, .. } = &mut *st;
        if let Ok(ext_id) = id.parse::<u64>()
            && store.record_of_ext(ext_id).is_some()
        {
            return legacy_record_json(store, ext_id, rng);
        }
        let template = Record {
            number: store.next_free_number(&self.cfg),
            show_in_phonebook: "1".into(),
            is_general_user_number: "1".into(),
            public_access: "0".into(),
            sip_uniqid: new_uniqid("SIP-PHONE-", rng),
            sip_secret: new_legacy_secret(rng),
            sip_type: "peer".into(),
            sip_qualify: "1".into(),
            sip_qualifyfreq: 60,
            sip_enable_recording: "1".into(),
            sip_dtmfmode: "auto".into(),
            sip_transport: legacy_transport_default(release).into(),
            sip_networkfilterid: "none".into(),
            fwd_ringlength: 45,
            ..Record::default()
        };
        Value::Object(template.legacy_json(&new_uniqid("EXTERNAL-", rng)))
    }

    /// `Dropdowns::getForSelect`: the numbers shown in the phone book (`show_in_phonebook`
    /// "1"), by `type`: `internal` SIP only, `phones` SIP and mobiles, `routing` those and
    /// the applications, `all` everything but `did2user`. A user's number is typed `_USER`
    /// (`Text::underscore(strtoupper(' USER'))`), any other its `Extensions.type`.
    pub(super) fn legacy_get_for_select(&self, kind: &str) -> Value {
        let st = lock(&self.state);
        let s = &st.store;
        let wanted = |e: &ExtRow| match kind {
            "internal" => e.kind == ExtKind::Sip,
            "phones" => e.kind != ExtKind::Other,
            "routing" => true,
            _ => e.number != "did2user",
        };
        let mut items: Vec<(String, Value)> = s
            .exts
            .iter()
            .filter(|(_, e)| e.show_in_phonebook == "1" && wanted(e))
            .map(|(id, e)| {
                let kind = match (e.userid, e.kind) {
                    (Some(_), _) => "_USER",
                    (None, ExtKind::Other) => e.app_type.as_str(),
                    (None, ExtKind::Sip) => "SIP",
                    (None, ExtKind::External) => "EXTERNAL",
                };
                let represent = s.represent(*id);
                let sorter = format!("{kind}{}{}", strip_tags(&represent), e.number);
                let item = json!({
                    "name": represent,
                    "value": e.number,
                    "type": kind,
                    "typeLocalized": if kind == "_USER" { "Employees" } else { "Applications" },
                });
                (sorter, item)
            })
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        Value::Array(items.into_iter().map(|i| i.1).collect())
    }

    /// `Utils::ifNumberAvailable`: whether any extension holds the number, and which user.
    pub(super) fn legacy_available(&self, number: &str, integers: Integers) -> Result<Value, Vec<String>> {
        if number.is_empty() {
            return Err(vec![MSG_EMPTY_NUMBER.into()]);
        }
        let st = lock(&self.state);
        let s = &st.store;
        Ok(available(s, number, integers))
    }

    pub(super) fn legacy_delete(&self, id: &str, release: Generation) -> Result<Value, Vec<String>> {
        if id.is_empty() {
            let msg = match release {
                Generation::V2023_2 => "empty ID in POST/GET data",
                _ => "Empty ID in POST/GET data",
            };
            return Err(vec![msg.into()]);
        }
        let mut st = lock(&self.state);
        let store = &mut st.store;
        let ext = id.parse::<u64>().ok().and_then(|i| store.exts.get(&i).map(|e| (i, e.userid)));
        match ext {
            None => Err(vec![format!("Extension with id {id} does not exist")]),
            Some((ext_id, None)) => {
                // `DeleteRecord` deletes the extension's forwarding rights and its user; an
                // extension of no user (a queue, a system number) keeps its row.
                store.touched();
                if let Some(number) = store.exts.get(&ext_id).map(|e| e.number.clone()) {
                    store.fwds.retain(|f| f.extension != number);
                }
                Ok(json!({"id": id}))
            }
            Some((_, Some(uid))) => {
                let refused = store.restrict_messages(uid);
                if !refused.is_empty() {
                    return Err(refused);
                }
                store.delete_user(uid);
                Ok(json!({"id": id}))
            }
        }
    }
}

/// The `data` of `ifNumberAvailable` (the same in the legacy API and v3's `:available`).
pub(super) fn available(s: &Store, number: &str, integers: Integers) -> Value {
    match s.ext_with_number(number, None) {
        None => json!({"available": true}),
        Some(id) => match s.exts.get(&id) {
            Some(e) if e.kind != ExtKind::Other => {
                let uid = e.userid.map(|u| integers.of(u)).unwrap_or(Value::Null);
                json!({"available": false, "userId": uid, "represent": s.represent(id)})
            }
            _ => json!({"available": false, "represent": "ex_ThisNumberIsNotFree"}),
        },
    }
}

pub(super) fn legacy_record_json(store: &Store, ext_id: u64, rng: &mut StdRng) -> Value {
    match store.record_of_ext(ext_id) {
        Some(r) => Value::Object(r.legacy_json(&new_uniqid("EXTERNAL-", rng))),
        None => Value::Null,
    }
}

pub(super) async fn legacy_get(
    State(sim): Sim,
    Path(action): Path<String>,
    Peer(ip): Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    sim.legacy(&Method::GET, &action, ip, &headers, query_map(&q), HashMap::new())
}

pub(super) async fn legacy_post(
    State(sim): Sim,
    Path(action): Path<String>,
    Peer(ip): Peer,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let post = post_form(&headers, &body);
    sim.legacy(&Method::POST, &action, ip, &headers, query_map(&q), post)
}

pub(super) async fn pbxcore_not_found(State(sim): Sim, uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/pbxcore/api/v3/") {
        sim.v3_error(StatusCode::NOT_FOUND, MSG_NOT_FOUND)
    } else {
        sim.legacy_framework_error(StatusCode::NOT_FOUND, MSG_NOT_FOUND)
    }
}

pub(super) fn legacy_op(action: &str) -> &'static str {
    match action {
        "getRecord" => "getRecord",
        "saveRecord" => "saveRecord",
        "deleteRecord" => "deleteRecord",
        "getForSelect" => "getForSelect",
        "available" => "available",
        _ => "unknownAction",
    }
}

pub(super) fn legacy_processor(release: Generation, action: &str) -> String {
    let old = release == Generation::V2023_2;
    let class = match (old, action) {
        (true, "getRecord") => "GetRecord::main",
        (true, "saveRecord") => "SaveRecord::main",
        (true, "deleteRecord") => "DeleteRecord::main",
        (true, "getForSelect") => "Dropdowns::getForSelect",
        (true, "available") => "Utils::ifNumberAvailable",
        (false, "getRecord") => "GetRecordAction::main",
        (false, "saveRecord") => "SaveRecordAction::main",
        (false, "deleteRecord") => "DeleteRecordAction::main",
        (false, "getForSelect") => "DropdownsAction::main",
        (false, "available") => "AvailableAction::main",
        _ => return "MikoPBX\\PBXCoreREST\\Lib\\ExtensionsManagementProcessor::callBack".into(),
    };
    format!("{LEGACY_NS}{class}")
}

pub(super) fn legacy_transport_default(release: Generation) -> &'static str {
    match release {
        Generation::V2023_2 => " ",
        _ => "",
    }
}

/// 2023.2 strips every forwarding value to digits; 2024.1 keeps the routing keywords.
pub(super) fn legacy_fwd(value: &str, release: Generation) -> String {
    if release != Generation::V2023_2 && ["voicemail", "busy", "hangup"].contains(&value) {
        return value.to_string();
    }
    digits(value)
}
