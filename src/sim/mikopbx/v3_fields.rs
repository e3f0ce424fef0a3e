//! v3 request fields: the sanitiser, the merge of PUT/PATCH, the validation rules.

use super::*;

// ---------------------------------------------------------------------------------------
// v3 field handling

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

/// Keep known fields, trim, strip non-digits from a pattern field that does not match,
/// truncate to the maximum length. Returns type errors for the schema stage.
pub(super) fn v3_sanitize(data: &Map<String, Value>) -> (V3Fields, Vec<String>) {
    let mut errors = Vec::new();
    let mut text = |key: &str, max: usize, pattern: Option<fn(&str) -> bool>| -> Option<String> {
        let v = data.get(key)?;
        let raw = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
            Value::Null => String::new(),
            _ => {
                errors.push(format!("Field '{key}' must be a string"));
                return None;
            }
        };
        let mut s = raw.trim().to_string();
        if let Some(p) = pattern
            && !s.is_empty()
            && !p(&s)
        {
            s = digits(&s);
        }
        Some(s.chars().take(max).collect())
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
            Some(|s| s == "none" || s.bytes().all(|b| b.is_ascii_digit())),
        ),
        fwd_forwarding: text("fwd_forwarding", 64, None),
        fwd_onbusy: text("fwd_forwardingonbusy", 64, None),
        fwd_onunavailable: text("fwd_forwardingonunavailable", 64, None),
        mobile_number: text("mobile_number", 50, Some(mobile_pattern)),
        mobile_dialstring: text("mobile_dialstring", 255, None),
        ..V3Fields::default()
    };
    if f.user_email.as_deref() == Some("_@_._") {
        f.user_email = Some(String::new());
    }
    if let Some(name) = &f.user_username {
        let lower = name.to_lowercase();
        if ["<script", "javascript:", "<?php"].iter().any(|d| lower.contains(d)) {
            errors.push("Dangerous content detected in fields: user_username".into());
        }
    }
    match data.get("sip_enableRecording") {
        None => {}
        Some(Value::Bool(b)) => f.sip_enable_recording = Some(*b),
        Some(v) => match value_to_form(v).trim() {
            "1" | "true" | "on" => f.sip_enable_recording = Some(true),
            "0" | "false" | "off" | "" => f.sip_enable_recording = Some(false),
            _ => errors.push("Field 'sip_enableRecording' must be a boolean".into()),
        },
    }
    match data.get("fwd_ringlength") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => f.fwd_ringlength = Some(i),
            None => errors.push("Field 'fwd_ringlength' must be an integer".into()),
        },
        Some(Value::String(s)) if s.trim().is_empty() => {}
        Some(Value::String(s)) => match s.trim().parse::<i64>() {
            Ok(i) => f.fwd_ringlength = Some(i),
            Err(_) => errors.push("Field 'fwd_ringlength' must be an integer".into()),
        },
        Some(_) => errors.push("Field 'fwd_ringlength' must be an integer".into()),
    }
    (f, errors)
}

pub(super) fn v3_effective(op: V3Op, sent: &V3Fields, current: Option<&Record>) -> V3Fields {
    let or = |v: &Option<String>, d: &str| Some(v.clone().unwrap_or_else(|| d.to_string()));
    match (op, current) {
        (V3Op::Patch, Some(cur)) => {
            let pick = |v: &Option<String>, c: &str| Some(v.clone().unwrap_or_else(|| c.to_string()));
            let mut f = V3Fields {
                number: pick(&sent.number, &cur.number),
                user_username: pick(&sent.user_username, &cur.user_username),
                user_email: pick(&sent.user_email, &cur.user_email),
                user_avatar: pick(&sent.user_avatar, &cur.user_avatar),
                sip_secret: sent.sip_secret.clone().filter(|s| !s.is_empty()),
                sip_dtmfmode: pick(&sent.sip_dtmfmode, &cur.sip_dtmfmode),
                sip_transport: pick(&sent.sip_transport, &cur.sip_transport),
                sip_manualattributes: pick(&sent.sip_manualattributes, &cur.sip_manualattributes),
                sip_enable_recording: sent
                    .sip_enable_recording
                    .or(Some(!(cur.sip_enable_recording.is_empty() || cur.sip_enable_recording == "0"))),
                sip_networkfilterid: pick(&sent.sip_networkfilterid, &cur.sip_networkfilterid),
                fwd_ringlength: sent.fwd_ringlength.or(Some(cur.fwd_ringlength)),
                fwd_forwarding: pick(&sent.fwd_forwarding, &cur.fwd_forwarding),
                fwd_onbusy: pick(&sent.fwd_onbusy, &cur.fwd_onbusy),
                fwd_onunavailable: pick(&sent.fwd_onunavailable, &cur.fwd_onunavailable),
                mobile_number: pick(&sent.mobile_number, cur.mobile_number()),
                mobile_dialstring: pick(&sent.mobile_dialstring, cur.mobile_dialstring()),
            };
            if sent.mobile_number.as_deref() == Some("") && sent.mobile_dialstring.is_none() {
                f.mobile_dialstring = Some(String::new());
            }
            if sent.fwd_forwarding.as_deref().is_some_and(|v| !v.is_empty()) && sent.fwd_ringlength.is_none()
            {
                f.fwd_ringlength = Some(45);
            }
            f
        }
        (V3Op::Put, cur) | (V3Op::Patch, cur) => {
            let mut f = sent.clone();
            if f.mobile_number.is_none() {
                f.mobile_number = Some(String::new());
            }
            if f.sip_secret.as_deref() == Some("") {
                f.sip_secret = None;
            }
            let forwarding = f
                .fwd_forwarding
                .clone()
                .or_else(|| cur.map(|c| c.fwd_forwarding.clone()))
                .unwrap_or_default();
            if f.fwd_ringlength.is_none() && forwarding.is_empty() {
                f.fwd_ringlength = Some(0);
            }
            f
        }
        (V3Op::Create, _) => V3Fields {
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

pub(super) fn email_valid(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !e.chars().any(char::is_whitespace)
}

/// Stand-in for PasswordService's dictionary + score rule: length and character classes,
/// zero for common passwords and single repeated characters, a penalty for runs like 1234.
pub(super) fn password_score(p: &str) -> u32 {
    let len = p.chars().count();
    if COMMON_PASSWORDS.contains(&p.to_lowercase().as_str()) {
        return 0;
    }
    let mut chars = p.chars();
    if let Some(first) = chars.next()
        && chars.all(|c| c == first)
    {
        return 0;
    }
    let mut score = 0u32;
    for (min, pts) in [(8, 25), (12, 15), (16, 10)] {
        if len >= min {
            score += pts;
        }
    }
    let classes = [
        p.chars().any(|c| c.is_lowercase()),
        p.chars().any(|c| c.is_uppercase()),
        p.chars().any(|c| c.is_ascii_digit()),
        p.chars().any(|c| !c.is_alphanumeric()),
    ];
    score += 10 * classes.iter().filter(|c| **c).count() as u32;
    let lower = p.to_lowercase();
    let runs = ["0123", "1234", "2345", "3456", "4567", "5678", "6789", "abcd", "qwer", "asdf"];
    if runs.iter().any(|r| lower.contains(r)) {
        score = score.saturating_sub(20);
    }
    score
}
