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
        if let Some(resp) = self.legacy_auth(peer, headers, action) {
            return resp;
        }
        let result = match (method.as_str(), action) {
            ("GET", "getRecord") => {
                Ok(self.legacy_get_record(query.get("id").map(String::as_str).unwrap_or("")))
            }
            ("GET", "getForSelect") => {
                Ok(self.legacy_get_for_select(query.get("type").map(String::as_str).unwrap_or("all")))
            }
            ("GET", "available") => {
                self.legacy_available(query.get("number").map(String::as_str).unwrap_or(""))
            }
            ("POST", "saveRecord") => {
                let mut st = lock(&self.state);
                let Inner { store, rng, .. } = &mut *st;
                store.legacy_save(&post, &self.cfg, rng).map(|ext_id| legacy_record_json(store, ext_id, rng))
            }
            ("POST", "deleteRecord") => self.legacy_delete(post.get("id").map(String::as_str).unwrap_or("")),
            _ => Err(vec![format!(
                "Unknown action - {action} in MikoPBX\\PBXCoreREST\\Lib\\ExtensionsManagementProcessor"
            )]),
        };
        self.legacy_reply(action, result)
    }

    pub(super) fn legacy_get_record(&self, id: &str) -> Value {
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
            sip_transport: legacy_transport_default(self.cfg.legacy_release).into(),
            sip_networkfilterid: "none".into(),
            fwd_ringlength: 45,
            ..Record::default()
        };
        Value::Object(template.legacy_json(&new_uniqid("EXTERNAL-", rng)))
    }

    pub(super) fn legacy_get_for_select(&self, kind: &str) -> Value {
        let st = lock(&self.state);
        let s = &st.store;
        let mut items: Vec<(u8, String, Value)> = s
            .exts
            .iter()
            .filter(|(_, e)| e.show_in_phonebook == "1")
            .filter(|(_, e)| kind != "internal" || e.kind == ExtKind::Sip)
            .map(|(id, e)| {
                let item = json!({
                    "name": s.represent(*id),
                    "value": e.number,
                    "type": "_USER",
                    "typeLocalized": "Employees",
                });
                (u8::from(e.kind == ExtKind::External), e.number.clone(), item)
            })
            .collect();
        items.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        Value::Array(items.into_iter().map(|i| i.2).collect())
    }

    pub(super) fn legacy_available(&self, number: &str) -> Result<Value, Vec<String>> {
        if number.is_empty() {
            return Err(vec![MSG_EMPTY_NUMBER.into()]);
        }
        let st = lock(&self.state);
        let s = &st.store;
        Ok(match s.ext_with_number(number, None) {
            None => json!({"available": true}),
            Some(id) => {
                let uid = s.exts.get(&id).and_then(|e| e.userid).map(|u| u.to_string());
                json!({"available": false, "userId": uid, "represent": s.represent(id)})
            }
        })
    }

    pub(super) fn legacy_delete(&self, id: &str) -> Result<Value, Vec<String>> {
        if id.is_empty() {
            let msg = match self.cfg.legacy_release {
                LegacyRelease::V2023_2 => "empty ID in POST/GET data",
                LegacyRelease::V2024_1 => "Empty ID in POST/GET data",
            };
            return Err(vec![msg.into()]);
        }
        let mut st = lock(&self.state);
        let store = &mut st.store;
        let ext = id.parse::<u64>().ok().and_then(|i| store.exts.get(&i).map(|e| (i, e.userid)));
        match ext {
            None => Err(vec![format!("Extension with id {id} does not exist")]),
            Some((ext_id, None)) => {
                store.delete_ext(ext_id);
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
    // PHP fills $_POST only from form bodies.
    let post = if content_type(&headers).starts_with("application/x-www-form-urlencoded") {
        crate::sim::form_pairs(&body).into_iter().collect()
    } else {
        HashMap::new()
    };
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

pub(super) fn legacy_processor(release: LegacyRelease, action: &str) -> String {
    let class = match (release, action) {
        (LegacyRelease::V2023_2, "getRecord") => "GetRecord::main",
        (LegacyRelease::V2023_2, "saveRecord") => "SaveRecord::main",
        (LegacyRelease::V2023_2, "deleteRecord") => "DeleteRecord::main",
        (LegacyRelease::V2023_2, "getForSelect") => "Dropdowns::getForSelect",
        (LegacyRelease::V2023_2, "available") => "Utils::ifNumberAvailable",
        (LegacyRelease::V2024_1, "getRecord") => "GetRecordAction::main",
        (LegacyRelease::V2024_1, "saveRecord") => "SaveRecordAction::main",
        (LegacyRelease::V2024_1, "deleteRecord") => "DeleteRecordAction::main",
        (LegacyRelease::V2024_1, "getForSelect") => "DropdownsAction::main",
        (LegacyRelease::V2024_1, "available") => "AvailableAction::main",
        _ => return "MikoPBX\\PBXCoreREST\\Lib\\ExtensionsManagementProcessor::callBack".into(),
    };
    format!("{LEGACY_NS}{class}")
}

pub(super) fn legacy_transport_default(release: LegacyRelease) -> &'static str {
    match release {
        LegacyRelease::V2023_2 => " ",
        LegacyRelease::V2024_1 => "",
    }
}

/// 2023.2 strips every forwarding value to digits; 2024.1 keeps the routing keywords.
pub(super) fn legacy_fwd(value: &str, release: LegacyRelease) -> String {
    if release == LegacyRelease::V2024_1 && ["voicemail", "busy", "hangup"].contains(&value) {
        return value.to_string();
    }
    digits(value)
}
