//! What the vendor UI reads besides users: gateways, languages, password rules.

use super::*;

pub(super) async fn gateways(State(sim): Sim, headers: HeaderMap) -> Response {
    if let Err(msg) = sim.authorize(&headers) {
        return named("gateways", auth_error(msg));
    }
    let list: Vec<Value> =
        sim.cfg.gateways.iter().map(|(name, prefix)| json!({"name": name, "prefix": prefix})).collect();
    named("gateways", axum::Json(json!({ "gateways": list })))
}

pub(super) async fn languages(State(sim): Sim, headers: HeaderMap) -> Response {
    if let Err(msg) = sim.authorize(&headers) {
        return named("languages", auth_error(msg));
    }
    let langs: Vec<Value> = sim
        .cfg
        .languages
        .iter()
        .map(|l| json!({"locale": if l == "English" { "en_US" } else { "" }, "name": l}))
        .collect();
    named(
        "languages",
        axum::Json(json!({"defaultLangue": sim.cfg.default_language, "availableLanguages": langs})),
    )
}

pub(super) async fn password_rules(
    State(sim): Sim,
    headers: HeaderMap,
    Path((tenant, group)): Path<(String, String)>,
) -> Response {
    if let Err(msg) = sim.authorize(&headers) {
        return named("passwordRules", auth_error(msg));
    }
    if let Err(e) = sim.group_exists(&tenant, &group) {
        return named("passwordRules", e);
    }
    let r = &sim.cfg.local_password_rule;
    named(
        "passwordRules",
        axum::Json(json!({
            "minLength": r.min_length,
            "minDigits": r.min_digits,
            "minUpperCaseLetters": r.min_uppercase,
            "minLowerCaseLetters": r.min_lowercase,
            "minNonAlphanumericCharacters": r.min_special,
        })),
    )
}
