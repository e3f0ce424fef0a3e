//! The client's internal numbers (`/extension/`).

use super::*;

impl TelphinSim {
    pub(super) fn create_extension(
        &self,
        inner: &mut Inner,
        client_id: u64,
        body: &Map<String, Value>,
    ) -> Result<u64, ApiErr> {
        if let Some(k) = body.keys().find(|k| !EXTENSION_CREATE_FIELDS.contains(&k.as_str())) {
            return Err(ApiErr::invalid(format!("Unknown field: {k}")));
        }
        let name = match body.get("name") {
            Some(Value::String(n)) => self.full_extension_name(n)?,
            _ => return Err(ApiErr::invalid("name is required")),
        };
        let taken =
            !inner.names.ids(&(client_id, name.clone()), || extension_names(&inner.extensions)).is_empty();
        if taken {
            return Err(ApiErr(
                StatusCode::BAD_REQUEST,
                Some("already_exists"),
                format!("Extension {name} already exists"),
            ));
        }
        let kind = body.get("type").cloned().unwrap_or(json!("phone"));
        Self::check_enum("type", &kind, EXTENSION_TYPES)?;
        let status = body.get("status").cloned().unwrap_or(json!("blocked"));
        Self::check_enum("status", &status, STATUSES)?;
        for k in ["label", "caller_id_name", "extra_params", "public_caller_id_number"] {
            if let Some(v) = body.get(k) {
                self.check_text(k, v)?;
            }
        }
        let id = inner.next_extension;
        inner.next_extension += 1;
        let field = |k: &str| body.get(k).cloned().unwrap_or(Value::Null);
        let ext = json!({
            "id": id,
            "client_id": client_id,
            "name": name,
            "type": kind,
            "status": status,
            "label": field("label"),
            "domain": self.cfg.domain,
            "create_date": format_datetime(unix_now()),
            "caller_id_name": field("caller_id_name"),
            "extra_params": field("extra_params"),
            "public_caller_id_number": field("public_caller_id_number"),
            "from_public_caller_id_number": false,
            "rfc_public_caller_id_number": Value::Null,
            "ani_rfc3325": false,
            "did_as_transfer_caller_id": Value::Null,
            "extension_group_id": Value::Null,
            "dial_rule_id": Value::Null,
            "dial_rule_limit": Value::Null,
            "message_did": Value::Null,
        });
        if let Value::Object(m) = ext {
            inner.extensions.insert(id, m);
            inner.names.added((client_id, name), id);
        }
        Ok(id)
    }

    pub(super) fn update_extension(
        &self,
        inner: &mut Inner,
        client_id: u64,
        id: u64,
        body: &Map<String, Value>,
    ) -> Result<Map<String, Value>, ApiErr> {
        let mut ext = match inner.extensions.get(&id) {
            Some(e) if e.get("client_id") == Some(&json!(client_id)) => e.clone(),
            _ => return Err(ApiErr::not_found()),
        };
        for (k, v) in body {
            match k.as_str() {
                "name" => {
                    let same =
                        v.as_str().and_then(|n| self.full_extension_name(n).ok()).map(Value::from).as_ref()
                            == ext.get("name");
                    if !same {
                        return Err(ApiErr::invalid(
                            "An extension cannot be renamed (delete and recreate it)",
                        ));
                    }
                }
                "type" => {
                    if Some(v) != ext.get("type") {
                        return Err(ApiErr::invalid("The type of an extension cannot be changed"));
                    }
                }
                "status" => {
                    Self::check_enum(k, v, STATUSES)?;
                    ext.insert(k.clone(), v.clone());
                }
                "label" | "caller_id_name" | "extra_params" | "public_caller_id_number" => {
                    self.check_text(k, v)?;
                    ext.insert(k.clone(), v.clone());
                }
                _ => return Err(ApiErr::invalid(format!("Unknown field: {k}"))),
            }
        }
        inner.extensions.insert(id, ext.clone());
        inner.names.drop_index();
        Ok(ext)
    }
}

pub(super) async fn get_client(State(sim): Sim, Path(cid): Path<String>) -> Response {
    match sim.resolve_client(&cid) {
        Ok(id) => named(
            "getClient",
            axum::Json(json!({
                "id": id,
                "prefix": sim.cfg.client_prefix,
                "extension_len": sim.cfg.extension_len,
                "domain": sim.cfg.domain,
                "status": "active",
            })),
        ),
        Err(e) => named("getClient", e),
    }
}

pub(super) fn extension_names(extensions: &BTreeMap<u64, Map<String, Value>>) -> Vec<((u64, String), u64)> {
    extensions
        .iter()
        .filter_map(|(id, e)| {
            let client = e.get("client_id")?.as_u64()?;
            Some(((client, e.get("name")?.as_str()?.to_owned()), *id))
        })
        .collect()
}

pub(super) async fn list_extensions(
    State(sim): Sim,
    Path(cid): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let res = (|| {
        let client = sim.resolve_client(&cid)?;
        let dialect = sim.dialect_now();
        let q = ListQuery::parse(q.as_deref(), EXTENSION_FILTERS, &sim.cfg, &dialect)?;
        let inner = lock(&sim.inner);
        // In the relative dialect a name filter may also be the number alone.
        let same_name = |e: &Map<String, Value>, k: &str, w: &str| {
            dialect.name_filter == NameFilter::Relative
                && k == "name"
                && !w.contains('*')
                && sim.full_extension_name(w).ok().map(Value::from).as_ref() == e.get("name")
        };
        let client = json!(client);
        let items = inner
            .extensions
            .values()
            .filter(|e| e.get("client_id") == Some(&client))
            .filter(|e| q.matches(e, |k, w| same_name(e, k, w)));
        Ok::<_, ApiErr>(q.answer(items, |e| Value::Object(e.clone()), dialect.list_shape))
    })();
    match res {
        Ok(v) => named("listExtensions", axum::Json(v)),
        Err(e) => named("listExtensions", e),
    }
}

pub(super) async fn create_extension(
    State(sim): Sim,
    Path(cid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let res = (|| {
        let client = sim.resolve_client(&cid)?;
        let m = json_body(&headers, &body)?;
        let mut inner = lock(&sim.inner);
        let id = sim.create_extension(&mut inner, client, &m)?;
        Ok::<_, ApiErr>(inner.extensions.get(&id).cloned().unwrap_or_default())
    })();
    match res {
        Ok(e) => named("createExtension", (StatusCode::CREATED, axum::Json(e))),
        Err(e) => named("createExtension", e),
    }
}

pub(super) fn own_extension(sim: &TelphinSim, cid: &str, eid: &str) -> Result<(u64, u64), ApiErr> {
    let client = sim.resolve_client(cid)?;
    let id = eid.parse::<u64>().map_err(|_| ApiErr::not_found())?;
    let inner = lock(&sim.inner);
    match inner.extensions.get(&id) {
        Some(e) if e.get("client_id") == Some(&json!(client)) => Ok((client, id)),
        _ => Err(ApiErr::not_found()),
    }
}

pub(super) async fn get_extension(State(sim): Sim, Path((cid, eid)): Path<(String, String)>) -> Response {
    let res = own_extension(&sim, &cid, &eid)
        .map(|(_, id)| lock(&sim.inner).extensions.get(&id).cloned().unwrap_or_default());
    match res {
        Ok(e) => named("getExtension", axum::Json(e)),
        Err(e) => named("getExtension", e),
    }
}

pub(super) async fn update_extension(
    State(sim): Sim,
    Path((cid, eid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let res = (|| {
        let (client, id) = own_extension(&sim, &cid, &eid)?;
        let m = json_body(&headers, &body)?;
        let mut inner = lock(&sim.inner);
        sim.update_extension(&mut inner, client, id, &m)
    })();
    match res {
        Ok(e) => named("updateExtension", axum::Json(e)),
        Err(e) => named("updateExtension", e),
    }
}

pub(super) async fn delete_extension(State(sim): Sim, Path((cid, eid)): Path<(String, String)>) -> Response {
    let res = (|| {
        let (_, id) = own_extension(&sim, &cid, &eid)?;
        let mut inner = lock(&sim.inner);
        let in_use = inner.users.values().any(|u| u.fields.get("extension_id") == Some(&json!(id)));
        if in_use {
            return Err(ApiErr(
                StatusCode::BAD_REQUEST,
                Some("extension_has_users"),
                format!("Extension {id} still has users; delete them first"),
            ));
        }
        inner.extensions.remove(&id);
        inner.names.drop_index();
        Ok(())
    })();
    match res {
        Ok(()) => named("deleteExtension", StatusCode::NO_CONTENT),
        Err(e) => named("deleteExtension", e),
    }
}
