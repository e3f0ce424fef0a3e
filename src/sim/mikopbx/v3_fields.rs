//! v3 request fields (2026.1.223): `PatchRecordAction::intelligentMerge`, the sanitiser
//! (`BaseActionHelper::sanitizeData` with `DataStructure`'s rules, then
//! `SystemSanitizer` for the forwarding targets), the defaults of a create, and the
//! validation rules (`SaveRecordAction::validateEmployeeData`, `PasswordService`).

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum V3Op {
    Create,
    Put,
    Patch,
}

/// v3 writable fields; `None` = not sent (or: keep).
#[derive(Clone, Debug, Default)]
pub(super) struct V3Fields {
    pub(super) number: Option<String>,
    pub(super) user_username: Option<String>,
    pub(super) user_email: Option<String>,
    pub(super) user_avatar: Option<String>,
    pub(super) sip_secret: Option<String>,
    pub(super) sip_dtmfmode: Option<String>,
    pub(super) sip_transport: Option<String>,
    pub(super) sip_manualattributes: Option<String>,
    pub(super) sip_enable_recording: Option<bool>,
    pub(super) sip_networkfilterid: Option<String>,
    pub(super) fwd_ringlength: Option<i64>,
    pub(super) fwd_forwarding: Option<String>,
    pub(super) fwd_onbusy: Option<String>,
    pub(super) fwd_onunavailable: Option<String>,
    pub(super) mobile_number: Option<String>,
    pub(super) mobile_dialstring: Option<String>,
}

/// `PATTERN_EXTENSION_WITH_SYSTEM_LONG`: what a forwarding target may be as sent.
fn routing_pattern(s: &str) -> bool {
    ["hangup", "busy", "did2user", "voicemail"].contains(&s)
        || ((1..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
}

/// PATCH: the stored record (`GetRecordAction`'s data) with the request merged in, as
/// `intelligentMerge` does; the result is saved as a whole, and validated as a whole.
pub(super) fn v3_merge(existing: &Map<String, Value>, patch: &Map<String, Value>) -> Map<String, Value> {
    const CLEARABLE: [&str; 8] = [
        "user_email",
        "user_avatar",
        "mobile_number",
        "mobile_dialstring",
        "sip_manualattributes",
        "fwd_forwarding",
        "fwd_forwardingonbusy",
        "fwd_forwardingonunavailable",
    ];
    let empty = |v: &Value| match v {
        Value::Null => true,
        Value::String(s) => s.is_empty() || s == "0",
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(a) => a.is_empty(),
        Value::Object(_) => false,
    };
    let mut merged = existing.clone();
    for (key, value) in patch {
        if key == "id" || key.ends_with("_represent") {
            continue;
        }
        if key == "sip_secret" {
            // A password is only replaced by a non-empty one.
            if !empty(value) {
                merged.insert(key.clone(), value.clone());
            }
            continue;
        }
        if CLEARABLE.contains(&key.as_str()) {
            merged.insert(key.clone(), value.clone());
            let related = match key.as_str() {
                "mobile_number" => Some("mobile_dialstring"),
                "fwd_forwarding" => Some("fwd_ringlength"),
                _ => None,
            };
            if let Some(related) = related
                && empty(value)
                && !patch.contains_key(related)
            {
                merged.insert(related.to_owned(), json!(""));
            }
            continue;
        }
        if !value.is_null() {
            merged.insert(key.clone(), value.clone());
        }
    }
    if patch.get("fwd_forwarding").is_some_and(|v| !empty(v)) && !patch.contains_key("fwd_ringlength") {
        merged.insert("fwd_ringlength".into(), json!(45));
    }
    if patch.get("id").is_some() {
        merged.insert("id".into(), patch["id"].clone());
    }
    if merged.get("sip_transport").is_none_or(empty) {
        merged.insert("sip_transport".into(), json!("udp,tcp"));
    }
    merged
}

/// Keep known fields, trim, strip non-digits from a pattern field that does not match,
/// truncate to the maximum length; forwarding targets then keep at most 20 digits
/// (`SystemSanitizer`): `+48600999888` is stored as `48600999888`. Returns type errors
/// for the schema stage.
pub(super) fn v3_sanitize(data: &Map<String, Value>) -> (V3Fields, Vec<String>) {
    let mut errors = Vec::new();
    let mut text = |key: &str, max: usize, pattern: Option<fn(&str) -> bool>| -> Option<String> {
        let v = data.get(key)?;
        let raw = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => if *b { "1" } else { "" }.to_string(),
            // PHP's `isset`: a null field is not there.
            Value::Null => return None,
            _ => {
                errors.push(format!("Field '{key}' must be a string"));
                return None;
            }
        };
        let mut s = raw.trim().to_string();
        if let Some(p) = pattern
            && !p(&s)
        {
            s = digits(&s);
        }
        Some(s.chars().take(max).collect())
    };
    let routing = |v: Option<String>| {
        v.map(|s| match s.is_empty() || routing_pattern(&s) {
            true => s,
            false => digits(&s).chars().take(20).collect(),
        })
    };
    let mut f = V3Fields {
        number: text("number", 8, Some(number_pattern)),
        user_username: text("user_username", 100, None),
        user_email: text("user_email", 255, None),
        user_avatar: text("user_avatar", usize::MAX, None),
        sip_secret: text("sip_secret", 100, None),
        sip_dtmfmode: text("sip_dtmfmode", 64, None),
        sip_transport: text("sip_transport", 64, None),
        sip_manualattributes: text("sip_manualattributes", 1024, None),
        sip_networkfilterid: text(
            "sip_networkfilterid",
            64,
            Some(|s| s == "none" || (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))),
        ),
        fwd_forwarding: text("fwd_forwarding", 64, Some(routing_pattern)),
        fwd_onbusy: text("fwd_forwardingonbusy", 64, Some(routing_pattern)),
        fwd_onunavailable: text("fwd_forwardingonunavailable", 64, Some(routing_pattern)),
        mobile_number: text("mobile_number", 50, Some(mobile_pattern)),
        mobile_dialstring: text("mobile_dialstring", 255, None),
        ..V3Fields::default()
    };
    f.fwd_forwarding = routing(f.fwd_forwarding);
    f.fwd_onbusy = routing(f.fwd_onbusy);
    f.fwd_onunavailable = routing(f.fwd_onunavailable);
    if let Some(name) = &f.user_username {
        let lower = name.to_lowercase();
        if ["<script", "javascript:", "<?php"].iter().any(|d| lower.contains(d)) {
            errors.push("Dangerous content detected in fields: user_username".into());
        }
    }
    match data.get("sip_enableRecording") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => f.sip_enable_recording = Some(*b),
        Some(v) => match value_to_form(v).trim() {
            "1" | "true" | "on" | "yes" => f.sip_enable_recording = Some(true),
            "0" | "false" | "off" | "no" | "" => f.sip_enable_recording = Some(false),
            _ => errors.push("Field 'sip_enableRecording' must be a boolean".into()),
        },
    }
    match data.get("fwd_ringlength") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => f.fwd_ringlength = Some(i),
            None => errors.push("Field 'fwd_ringlength' must be an integer".into()),
        },
        Some(Value::String(s)) if s.trim().is_empty() => f.fwd_ringlength = Some(0),
        Some(Value::String(s)) => match s.trim().parse::<i64>() {
            Ok(i) => f.fwd_ringlength = Some(i),
            Err(_) => errors.push("Field 'fwd_ringlength' must be an integer".into()),
        },
        Some(_) => errors.push("Field 'fwd_ringlength' must be an integer".into()),
    }
    (f, errors)
}

/// The fields a save writes: a create gets the defaults; a PUT (and a PATCH, whose
/// merged record is saved like a PUT) writes what it holds, except that an absent mobile
/// deletes the mobile, and an absent ring length without forwarding is 0.
pub(super) fn v3_effective(op: V3Op, sent: &V3Fields) -> V3Fields {
    let or = |v: &Option<String>, d: &str| Some(v.clone().unwrap_or_else(|| d.to_string()));
    match op {
        V3Op::Put | V3Op::Patch => {
            let mut f = sent.clone();
            if f.mobile_number.is_none() {
                f.mobile_number = Some(String::new());
            }
            if f.sip_secret.as_deref() == Some("") {
                f.sip_secret = None;
            }
            if f.fwd_ringlength.is_none() && f.fwd_forwarding.as_deref().unwrap_or("").is_empty() {
                f.fwd_ringlength = Some(0);
            }
            f
        }
        V3Op::Create => V3Fields {
            number: sent.number.clone(),
            user_username: sent.user_username.clone(),
            user_email: or(&sent.user_email, ""),
            user_avatar: or(&sent.user_avatar, ""),
            sip_secret: sent.sip_secret.clone(),
            sip_dtmfmode: or(&sent.sip_dtmfmode, "auto"),
            sip_transport: or(&sent.sip_transport, "udp"),
            sip_manualattributes: or(&sent.sip_manualattributes, ""),
            sip_enable_recording: Some(sent.sip_enable_recording.unwrap_or(true)),
            sip_networkfilterid: or(&sent.sip_networkfilterid, "none"),
            fwd_ringlength: Some(sent.fwd_ringlength.unwrap_or(45)),
            fwd_forwarding: or(&sent.fwd_forwarding, ""),
            fwd_onbusy: or(&sent.fwd_onbusy, ""),
            fwd_onunavailable: or(&sent.fwd_onunavailable, ""),
            mobile_number: or(&sent.mobile_number, ""),
            mobile_dialstring: or(&sent.mobile_dialstring, ""),
        },
    }
}

pub(super) fn v3_search_matches(r: &Record, search: &str) -> bool {
    if search.is_empty() {
        return true;
    }
    if let Some(id) = search.strip_prefix("id:") {
        return r.user_id.map(|u| u.to_string()).as_deref() == Some(id.trim());
    }
    if let Some(e) = search.strip_prefix("email:") {
        return r.user_email.to_lowercase().contains(e.trim());
    }
    if let Some(n) = search.strip_prefix("number:") {
        return r.number == n.trim();
    }
    if let Some(m) = search.strip_prefix("mobile:") {
        return r.mobile_dialstring().contains(m.trim());
    }
    let index =
        format!("{} {} {} {}", r.user_username, r.number, r.mobile_number(), r.user_email).to_lowercase();
    r.user_username.to_lowercase().contains(search) || index.contains(search)
}

pub(super) fn number_pattern(s: &str) -> bool {
    (2..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

pub(super) fn mobile_pattern(s: &str) -> bool {
    let d = s.strip_prefix('+').unwrap_or(s);
    (2..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
}

/// A practical stand-in for PHP's `FILTER_VALIDATE_EMAIL`.
pub(super) fn email_valid(e: &str) -> bool {
    crate::sim::is_valid_email(e)
}

/// `PasswordService::validate($secret, CONTEXT_SIP, ['minLength' => 5])` as
/// `validateEmployeeData` reports it, in `language`: the messages of a password MikoPBX
/// refuses (none for one it takes). The service's messages are mapped by their English
/// text (`too short`, `security requirements`), as the PHP does, so in another language
/// they pass through untranslated-to-SIP.
pub(super) fn sip_password_messages(p: &str, language: Language, policy: bool) -> Vec<String> {
    let len = p.len();
    let mut messages = Vec::new();
    let mut valid = true;
    if len < 5 {
        valid = false;
        messages.push(text(language, "psw_PasswordTooShort").replace("%min%", "5"));
    } else if policy && len > 64 {
        valid = false;
        messages.push(text(language, "psw_PasswordTooLong").replace("%max%", "64"));
    }
    if policy {
        if ["admin", "password", "1234", "12345", "secret"].contains(&p.to_lowercase().as_str()) {
            valid = false;
            messages.push(text(language, "psw_PasswordIsDefault"));
        }
        if valid && COMMON_PASSWORDS.contains(&p) {
            valid = false;
            messages.push(text(language, "psw_PasswordTooCommon"));
        }
        if password_score(p) < 60 {
            valid = false;
            messages.push(text(language, "psw_PasswordSecurityRequiresFair"));
        }
    }
    if valid {
        return Vec::new();
    }
    messages
        .into_iter()
        .map(|m| {
            if m.contains("too short") {
                text(language, "ex_ValidateSecretWeak")
            } else if m.contains("security requirements") {
                text(language, "ex_ValidatePasswordTooWeak")
            } else {
                m
            }
        })
        .collect()
}

/// `PasswordService::calculateScore` (2026.1.223), as written.
pub(super) fn password_score(p: &str) -> u32 {
    let bytes = p.as_bytes();
    let length = bytes.len() as i64;
    if length == 0 {
        return 0;
    }
    let mut score: i64 = match length {
        16.. => 30,
        12..=15 => 20,
        8..=11 => 10,
        n => n,
    };
    let lower = bytes.iter().any(u8::is_ascii_lowercase);
    let upper = bytes.iter().any(u8::is_ascii_uppercase);
    let digit = bytes.iter().any(u8::is_ascii_digit);
    let special = bytes.iter().any(|b| !b.is_ascii_alphanumeric());
    let diversity = [lower, upper, digit, special].iter().filter(|c| **c).count();
    score += 10 * diversity as i64;
    let unique = bytes.iter().collect::<std::collections::HashSet<_>>().len() as f64;
    score += match unique / length as f64 {
        r if r > 0.7 => 20,
        r if r > 0.5 => 15,
        r if r > 0.3 => 10,
        _ => 5,
    };
    if diversity >= 3 && length >= 12 {
        score += 10;
    }
    let mut penalties = 0;
    if bytes.windows(3).any(|w| w[0] == w[1] && w[1] == w[2]) {
        penalties += 10;
    }
    let lowered = p.to_ascii_lowercase();
    let patterns = [
        "qwerty", "asdfgh", "zxcvbn", "12345", "23456", "34567", "45678", "56789", "abcde", "bcdef", "cdefg",
        "defgh",
    ];
    if patterns.iter().any(|pat| {
        let reversed: String = pat.chars().rev().collect();
        lowered.contains(pat) || lowered.contains(&reversed)
    }) {
        penalties += 10;
    }
    if bytes.iter().all(u8::is_ascii_alphabetic) && length < 10 {
        penalties += 15;
    }
    (score - penalties).clamp(0, 100) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_rule() {
        assert!(password_score("Vq7#pL2m!xR9zT4w") >= 60);
        // The shape of the legacy template's secrets (the seed's `Nk9oOFI2ZXdDMEU9`).
        assert!(password_score("Nk9oOFI2ZXdDMEU9") >= 60);
        assert!(password_score("password") < 60);
        assert!(password_score("abcdefgh12") < 60);
        assert!(password_score("aaaaaaaaaaaaaaaaaaaa") < 60);
        assert!(sip_password_messages("Vq7#pL2m!xR9zT4w", Language::En, true).is_empty());
        let weak = sip_password_messages("1234", Language::En, true);
        assert!(weak.contains(&text(Language::En, "ex_ValidateSecretWeak")), "{weak:?}");
        let ru = sip_password_messages("weakpass", Language::Ru, true);
        assert!(!ru.is_empty() && ru.iter().all(|m| !m.is_ascii()), "{ru:?}");
    }

    #[test]
    fn patterns() {
        assert!(number_pattern("201"));
        assert!(!number_pattern("1"));
        assert!(!number_pattern("123456789"));
        assert!(mobile_pattern("+79991234567"));
        assert!(!mobile_pattern("0123"));
    }

    #[test]
    fn sanitizer_truncates_and_strips() {
        let data = json!({"number": "123456789", "mobile_number": "+7 (999) 123-45-67", "user_username": "  Ann  ",
                          "fwd_forwarding": "+48600999888", "fwd_forwardingonbusy": "voicemail"});
        let (f, errors) = v3_sanitize(data.as_object().unwrap_or(&Map::new()));
        assert!(errors.is_empty());
        assert_eq!(f.number.as_deref(), Some("12345678"));
        assert_eq!(f.mobile_number.as_deref(), Some("79991234567"));
        assert_eq!(f.user_username.as_deref(), Some("Ann"));
        assert_eq!(f.fwd_forwarding.as_deref(), Some("48600999888"));
        assert_eq!(f.fwd_onbusy.as_deref(), Some("voicemail"));
    }

    #[test]
    fn a_patch_is_merged_into_the_stored_record() {
        let stored = json!({"id": "7", "number": "201", "sip_secret": "weak", "user_email": "a@b.cd",
                            "mobile_number": "4860", "mobile_dialstring": "4860", "fwd_forwarding": "",
                            "fwd_ringlength": 30, "sip_transport": ""});
        let patch = json!({"id": "7", "user_email": "new@b.cd", "sip_secret": "", "mobile_number": "",
                           "fwd_forwarding": "202"});
        let merged = v3_merge(stored.as_object().unwrap(), patch.as_object().unwrap());
        assert_eq!(merged["sip_secret"], "weak", "an empty password keeps the stored one");
        assert_eq!(merged["user_email"], "new@b.cd");
        assert_eq!(merged["mobile_dialstring"], "", "clearing the mobile clears its dial string");
        assert_eq!(merged["fwd_ringlength"], 45, "forwarding without a ring length gets 45");
        assert_eq!(merged["sip_transport"], "udp,tcp");
    }
}
