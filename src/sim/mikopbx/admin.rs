//! The admin cabinet's employee lists, the only places that map numbers to
//! `Extensions.id`: 2023.2's `extensions/index` (the whole list, rendered by the server;
//! as JSON to an XHR request) and 2024.1's DataTables endpoint `getNewRecords`.
//!
//! Both sit behind `SecurityPlugin::beforeDispatch`: a caller from 127.0.0.1 or with a
//! logged-in session passes; any other XHR request gets 403 "This user is not authorized".
//! To XHR requests the cabinet answers the action's view variables as JSON
//! (`BaseController::afterExecuteRoute`), so an action that does not exist answers HTTP
//! 200 `{"success": false, "message": "Page not found - 404"}` (`ErrorsController`).

use super::*;

/// What the cabinet says when a check stops the request before the action.
enum Gate {
    Pass,
    Stop(Response),
}

impl MikoPbxSim {
    fn admin_gate(&self, peer: IpAddr, headers: &HeaderMap, action: &str) -> Gate {
        let xhr = is_xhr(headers);
        if self.legacy_trusts(peer) {
            return Gate::Pass;
        }
        match self.session_role(headers) {
            None if xhr => Gate::Stop((StatusCode::FORBIDDEN, "This user is not authorized").into_response()),
            None => Gate::Stop(html(
                StatusCode::OK,
                "<html><body><form id=\"login-form\" action=\"/admin-cabinet/session/start\"></form></body></html>",
            )),
            Some(role) if !role.allows(action) => Gate::Stop(error_page(xhr, "Unauthorized - 401")),
            Some(_) => Gate::Pass,
        }
    }

    /// `POST /admin-cabinet/extensions/getNewRecords` (2024.1): one page of employees,
    /// `recordsFiltered` users in all. It orders by the expression the request names in
    /// `columns[order[0][column]][data]` (the admin UI sends `CAST(Extensions.number AS
    /// INTEGER)`); without `order` and `columns`, by that same cast. A name PHQL cannot
    /// resolve (an unqualified `number`, which two of the joined models have) makes the
    /// query throw, and the cabinet answers `show500`.
    pub(super) fn admin_get_new_records(
        &self,
        peer: IpAddr,
        headers: &HeaderMap,
        form: &HashMap<String, String>,
    ) -> Response {
        let mut resp = self.admin_get_new_records_inner(peer, headers, form);
        resp.extensions_mut().insert(OpName("getNewRecords"));
        resp
    }

    fn admin_get_new_records_inner(
        &self,
        peer: IpAddr,
        headers: &HeaderMap,
        form: &HashMap<String, String>,
    ) -> Response {
        if let Gate::Stop(resp) = self.admin_gate(peer, headers, "getNewRecords") {
            return resp;
        }
        let dialect = self.current();
        let xhr = is_xhr(headers);
        if dialect.generation == Generation::V2023_2 || dialect.generation == Generation::V2026_1 {
            // No such action in ExtensionsController.
            return error_page(xhr, MSG_PAGE_NOT_FOUND);
        }
        if !xhr {
            return html(StatusCode::OK, "<html><body><table id=\"extensions-table\"></table></body></html>");
        }
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let ordered =
            form.keys().any(|k| k.starts_with("order[")) && form.keys().any(|k| k.starts_with("columns["));
        let column = match ordered {
            true => get(&format!("columns[{}][data]", get("order[0][column]"))).to_owned(),
            false => "CAST(Extensions.number AS INTEGER)".to_owned(),
        };
        let Some(order) = TableOrder::parse(&column) else {
            return error_page(true, MSG_SERVER_ERROR);
        };
        let search = get("search[value]").to_lowercase();
        let st = lock(&self.state);
        let s = &st.store;
        let all = s.all_records();
        let mut rows: Vec<&Record> = all
            .iter()
            .filter(|r| r.id.is_some())
            .filter(|r| {
                search.is_empty()
                    || [&r.user_username, &r.number, &r.user_email]
                        .iter()
                        .any(|v| v.to_lowercase().contains(&search))
                    || r.mobile_number().contains(&search)
            })
            .collect();
        rows.sort_by_cached_key(|r| order.key(r));
        if get("order[0][dir]").eq_ignore_ascii_case("desc") {
            rows.reverse();
        }
        let filtered = rows.len() as u64;
        let start = usize::try_from(php_int(get("start"))).unwrap_or(0);
        let length = usize::try_from(php_int(get("length"))).ok().filter(|l| *l > 0).unwrap_or(usize::MAX);
        let int = |n: u64| dialect.integers.of(n);
        let data: Vec<Value> = rows
            .iter()
            .skip(start)
            .take(length)
            .map(|r| {
                let id = r.id.unwrap_or_default();
                let disabled = if r.sip_disabled == "1" { "1" } else { "0" };
                json!({
                    "id": int(id),
                    "username": r.user_username,
                    "number": r.number,
                    "mobile": if r.mobile_number().is_empty() { Value::Null } else { json!(r.mobile_number()) },
                    "user_id": int(r.user_id.unwrap_or_default()),
                    "disabled": disabled,
                    "email": r.user_email,
                    "type": "SIP",
                    "avatar": if r.user_avatar.is_empty() { DEFAULT_AVATAR } else { r.user_avatar.as_str() },
                    "DT_RowId": int(id),
                    "DT_RowClass": if disabled == "1" { "extension-row disabled" } else { "extension-row" },
                })
            })
            .collect();
        // `draw` is echoed as posted (a string); the count is what PDO gives.
        axum::Json(json!({"draw": get("draw"), "recordsFiltered": int(filtered), "data": data}))
            .into_response()
    }

    /// `GET /admin-cabinet/extensions/index`. In 2023.2 `indexAction` selects every
    /// user's extensions (`Extensions.is_general_user_number = "1"`, joined to `Users`
    /// and `Sip`) into the view variable `extensions`, keyed by `Users.id`:
    /// `{userid, number, status, id, username, email, secret, mobile, avatar}`, `id` being
    /// the SIP extension's `Extensions.id`. The HTML page renders each as
    /// `<tr class="extension-row" id="{id}" data-value="{number}">`; an XHR request gets
    /// the variables as JSON. From 2024.1 on, `indexAction` is empty (the table loads
    /// through `getNewRecords`).
    pub(super) fn extensions_index(&self, peer: IpAddr, headers: &HeaderMap) -> Response {
        let mut resp = match self.admin_gate(peer, headers, "index") {
            Gate::Stop(resp) => resp,
            Gate::Pass => self.extensions_index_page(is_xhr(headers)),
        };
        resp.extensions_mut().insert(OpName("extensionsIndex"));
        resp
    }

    fn extensions_index_page(&self, xhr: bool) -> Response {
        let dialect = self.current();
        if dialect.generation != Generation::V2023_2 {
            return match xhr {
                true => axum::Json(json!({"success": true, "reload": false, "message": []})).into_response(),
                false => {
                    html(StatusCode::OK, "<html><body><div id=\"extensions-table\"></div></body></html>")
                }
            };
        }
        let int = |n: u64| dialect.integers.of(n);
        let st = lock(&self.state);
        let s = &st.store;
        // The query's order: by number (as text), each user's rows folded into one entry.
        let mut exts: Vec<(&u64, &ExtRow)> = s
            .exts
            .iter()
            .filter(|(_, e)| {
                e.is_general_user_number == "1" && e.userid.is_some_and(|u| s.users.contains_key(&u))
            })
            .collect();
        exts.sort_by(|a, b| a.1.number.cmp(&b.1.number));
        let mut table: Vec<(u64, Map<String, Value>)> = Vec::new();
        for (id, e) in exts {
            let Some(uid) = e.userid else { continue };
            let at = match table.iter().position(|(u, _)| *u == uid) {
                Some(at) => at,
                None => {
                    table.push((uid, Map::new()));
                    table.len() - 1
                }
            };
            let entry = &mut table[at].1;
            match e.kind {
                ExtKind::Sip => {
                    let user = s.users.get(&uid);
                    let sip = s.sip_for(&e.number).and_then(|r| s.sips.get(&r));
                    let disabled = sip.is_some_and(|p| p.disabled == "1");
                    entry.insert("userid".into(), int(uid));
                    entry.insert("number".into(), json!(e.number));
                    entry.insert("status".into(), json!(if disabled { "disabled" } else { "" }));
                    entry.insert("id".into(), int(*id));
                    entry.insert("username".into(), json!(user.map(|u| u.username.as_str()).unwrap_or("")));
                    entry.insert("email".into(), json!(user.map(|u| u.email.as_str()).unwrap_or("")));
                    entry.insert("secret".into(), json!(sip.map(|p| p.secret.as_str()).unwrap_or("")));
                    entry.entry("mobile").or_insert(json!(""));
                    let avatar = match user.map(|u| u.avatar.as_str()) {
                        Some(a) if !a.is_empty() => {
                            format!("/admin-cabinet/assets/img/cache/{}.jpg", sha1_hex(a.as_bytes()))
                        }
                        _ => "/admin-cabinet/assets/img/unknownPerson.jpg".to_owned(),
                    };
                    entry.insert("avatar".into(), json!(avatar));
                }
                ExtKind::External => {
                    entry.insert("mobile".into(), json!(e.number));
                }
                ExtKind::Other => {}
            }
        }
        if !xhr {
            let rows: String = table
                .iter()
                .filter_map(|(_, e)| {
                    let id = e.get("id")?;
                    let number = e.get("number")?.as_str()?;
                    Some(format!(
                        "<tr class=\"extension-row\" id=\"{}\" data-value=\"{number}\"></tr>",
                        crate::backends::lenient::scalar(id).unwrap_or_default()
                    ))
                })
                .collect();
            return html(
                StatusCode::OK,
                &format!("<html><body><table id=\"extensions-table\">{rows}</table></body></html>"),
            );
        }
        // PHP's `json_encode` of an array keyed by user id: an object, or `[]` when empty.
        let extensions = match table.is_empty() {
            true => json!([]),
            false => {
                Value::Object(table.into_iter().map(|(u, e)| (u.to_string(), Value::Object(e))).collect())
            }
        };
        axum::Json(json!({"extensions": extensions, "success": true, "reload": false, "message": [],
                          "lastSentryEventId": null}))
        .into_response()
    }
}

/// The sort of the admin table, from the expression the request names.
enum TableOrder {
    Number,
    Mobile,
    Username,
    Email,
}

impl TableOrder {
    fn parse(column: &str) -> Option<TableOrder> {
        let c = column.trim();
        match c {
            "CAST(Extensions.number AS INTEGER)" | "Extensions.number" => Some(TableOrder::Number),
            "CAST(ExternalExtensions.number AS INTEGER)" | "ExternalExtensions.number" => {
                Some(TableOrder::Mobile)
            }
            "Users.username" | "username" => Some(TableOrder::Username),
            "Users.email" | "email" => Some(TableOrder::Email),
            _ => None,
        }
    }

    /// The sort key: numeric casts sort as integers (a text that is no number as 0, as
    /// SQLite's CAST does), names as text.
    fn key(&self, r: &Record) -> (i64, String) {
        match self {
            TableOrder::Number => (php_int(&r.number), String::new()),
            TableOrder::Mobile => (php_int(r.mobile_number()), String::new()),
            TableOrder::Username => (0, r.user_username.clone()),
            TableOrder::Email => (0, r.user_email.clone()),
        }
    }
}

/// `ErrorsController::show404` / `show401` / `show500`: HTTP 200 either way; the message
/// as JSON to XHR, a page otherwise.
fn error_page(xhr: bool, message: &str) -> Response {
    match xhr {
        true => axum::Json(json!({"success": false, "reload": false, "message": message})).into_response(),
        false => html(StatusCode::OK, &format!("<html><body><h1>{message}</h1></body></html>")),
    }
}

pub(super) async fn get_new_records(
    State(sim): Sim,
    Peer(ip): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.admin_get_new_records(ip, &headers, &post_form(&headers, &body))
}

pub(super) async fn extensions_index(State(sim): Sim, Peer(ip): Peer, headers: HeaderMap) -> Response {
    sim.extensions_index(ip, &headers)
}

pub(super) async fn admin_not_found(headers: HeaderMap) -> Response {
    error_page(is_xhr(&headers), MSG_PAGE_NOT_FOUND)
}
