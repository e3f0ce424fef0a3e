//! The answers both API generations share: the envelope, `meta`, the `E-Tag` header.

use super::*;

impl MikoPbxSim {
    pub(super) fn payload(
        &self,
        result: bool,
        function: &str,
        processor: &str,
        data: Value,
        errors: Value,
    ) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("result".into(), Value::Bool(result));
        m.insert("data".into(), data);
        m.insert("messages".into(), errors);
        m.insert("function".into(), Value::String(function.into()));
        m.insert("processor".into(), Value::String(processor.into()));
        m.insert("pid".into(), json!(self.cfg.pid));
        m
    }

    pub(super) fn legacy_reply(
        &self,
        action: &str,
        release: Generation,
        result: Result<Value, Vec<String>>,
    ) -> Response {
        let processor = legacy_processor(release, action);
        let mut body = match result {
            Ok(data) => self.payload(true, action, &processor, data, json!([])),
            Err(errors) => self.payload(false, action, &processor, json!([]), json!({"error": errors})),
        };
        body.insert("jsonapi".into(), json!({"version": "1.0"}));
        send(StatusCode::OK, body, legacy_op(action))
    }

    pub(super) fn legacy_framework_error(&self, status: StatusCode, message: &str) -> Response {
        let mut body = Map::new();
        body.insert("jsonapi".into(), json!({"version": "1.0"}));
        body.insert("errors".into(), json!([message]));
        send(status, body, "framework")
    }

    pub(super) fn v3_error(&self, status: StatusCode, message: &str) -> Response {
        let body = self.payload(false, "", "", json!([]), json!({"error": [message]}));
        send(status, body, "framework")
    }

    pub(super) fn v3_reply(
        &self,
        status: StatusCode,
        function: &'static str,
        result: Result<Value, Value>,
        extra: Vec<(&'static str, Value)>,
    ) -> Response {
        let processor = format!("{V3_NS}{}::main", v3_action_class(function));
        let mut body = match result {
            Ok(data) => self.payload(true, function, &processor, data, json!([])),
            Err(messages) => self.payload(false, function, &processor, json!([]), json!({"error": messages})),
        };
        for (k, v) in extra {
            body.insert(k.into(), v);
        }
        send(status, body, function)
    }

    pub(super) fn v3_fail(
        &self,
        status: StatusCode,
        function: &'static str,
        errors: Vec<String>,
        explicit: bool,
    ) -> Response {
        let extra = if explicit { vec![("httpCode", json!(status.as_u16()))] } else { vec![] };
        self.v3_reply(status, function, Err(json!(errors)), extra)
    }
}

// ---------------------------------------------------------------------------------------
// Helpers

/// Adds `meta` (timestamp, hash), serialises, sets the `E-Tag` header and the stats name.
pub(super) fn send(status: StatusCode, mut body: Map<String, Value>, op: &'static str) -> Response {
    let timestamp = rfc3339_utc(unix_now());
    let hash = sha1_hex(timestamp.as_bytes());
    body.insert("meta".into(), json!({"timestamp": timestamp, "hash": hash}));
    let text = Value::Object(body).to_string();
    let etag = sha1_hex(text.as_bytes());
    let mut resp =
        (status, [(header::CONTENT_TYPE, "application/json; charset=UTF-8")], text).into_response();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(HeaderName::from_static("e-tag"), v);
    }
    resp.extensions_mut().insert(OpName(op));
    resp
}

pub(super) fn html(status: StatusCode, body: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=UTF-8")], body.to_string()).into_response()
}
