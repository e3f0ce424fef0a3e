//! What Telphin's refusals say, in every shape seen, and the error each becomes.

use super::*;

impl Telphin {
    pub(super) fn fail(&self, answer: &Answer, target: Target<'_>) -> Error {
        let status = answer.reply.status;
        let found = error_of(&answer.reply.body);
        let text = answer.text(found.message.as_deref());
        let code = found.code.as_deref();
        let err = match (status, code, target) {
            (StatusCode::CONFLICT, _, _) | (StatusCode::BAD_REQUEST, Some("already_exists"), _) => {
                self.http.conflict(&text)
            }
            (StatusCode::BAD_REQUEST, Some("extension_not_found"), _) => {
                self.http.validation(Some("extension_id"), &text)
            }
            (StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY, _, _) => {
                let field = found.field.as_deref().or_else(|| field_of(&text));
                self.http.validation(field, &text)
            }
            (StatusCode::FORBIDDEN, code, _) => {
                self.http.auth(&format!("HTTP 403 {}: {text}", code.unwrap_or("access_denied")))
            }
            (StatusCode::NOT_FOUND, Some("client_not_found"), _)
            | (StatusCode::NOT_FOUND, _, Target::Collection) => Error::Config(format!(
                "telphin: {} answered 404 ({text}): check url and clientId",
                self.client_path
            )),
            (StatusCode::NOT_FOUND, _, Target::Item(id)) => self.http.not_found(id),
            _ => return answer.unexpected(&self.http, Some(&text)),
        };
        answer.scrub(err)
    }
}

/// What an error answer says, in any of the shapes seen: `{"message", "status"}` (the
/// docs), `{"error", "error_description"}` (OAuth), `{"error": {"code", "message"}}` (the
/// older uapi, BrandyMint/telphin_api), a `message` keyed by field.
#[derive(Default)]
pub(super) struct ErrorBody {
    pub(super) message: Option<String>,
    pub(super) code: Option<String>,
    /// The field a message keyed by field names.
    pub(super) field: Option<String>,
}

pub(super) fn error_of(body: &[u8]) -> ErrorBody {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return ErrorBody::default();
    };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let mut out = ErrorBody { code: text(v.get("status")), ..ErrorBody::default() };
    match v.get("message") {
        Some(Value::String(m)) => out.message = Some(m.clone()),
        Some(Value::Object(fields)) => {
            out.field = fields.keys().next().cloned();
            out.message = Some(Value::Object(fields.clone()).to_string());
        }
        _ => {}
    }
    match v.get("error") {
        Some(Value::Object(e)) => {
            out.code = out.code.or_else(|| text(e.get("code")));
            out.message = out.message.or_else(|| text(e.get("message")));
        }
        Some(Value::String(e)) => {
            out.code = out.code.or_else(|| Some(e.clone()));
            let described = text(v.get("error_description")).map(|d| format!("{e}: {d}"));
            out.message = out.message.or(described).or_else(|| Some(e.clone()));
        }
        _ => {}
    }
    out
}

/// The Telphin field a validation message names (messages start with it). Informs the
/// error's `field` only; no decision rests on it.
pub(super) fn field_of(message: &str) -> Option<&'static str> {
    const FIELDS: &[&str] = &[
        "extension_id",
        "extra_params",
        "email_for_notify",
        "email_notify",
        "name",
        "login",
        "password",
        "email",
        "status",
        "access",
        "timezone",
        "comment",
    ];
    let first = message.split_whitespace().next()?.to_lowercase();
    FIELDS.iter().find(|f| **f == first).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_from_messages() {
        assert_eq!(field_of("login must be 3 to 64 characters"), Some("login"));
        assert_eq!(field_of("Login x already exists"), Some("login"));
        assert_eq!(field_of("Extension number must be 3 digits"), None);
    }

    #[test]
    fn every_error_shape_gives_its_message_and_code() {
        let e = error_of(br#"{"message": "Login taken", "status": "already_exists"}"#);
        assert_eq!((e.message.as_deref(), e.code.as_deref()), (Some("Login taken"), Some("already_exists")));
        let e = error_of(br#"{"error": "invalid_client", "error_description": "bad secret"}"#);
        assert_eq!(e.code.as_deref(), Some("invalid_client"));
        assert_eq!(e.message.as_deref(), Some("invalid_client: bad secret"));
        let e = error_of(br#"{"error": {"code": "extension_invalid", "message": "no such"}}"#);
        assert_eq!((e.message.as_deref(), e.code.as_deref()), (Some("no such"), Some("extension_invalid")));
        let e = error_of(br#"{"message": {"email": ["not an e-mail"]}}"#);
        assert_eq!(e.field.as_deref(), Some("email"));
        assert!(error_of(b"<html>").message.is_none());
    }
}
