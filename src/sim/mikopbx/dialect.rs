//! The dialect served (`/_sim/dialect`, `switchboard sim --dialect mikopbx.KEY=VALUE`):
//! which MikoPBX release the simulator is, the language of its admin UI, and the answer
//! shapes the server code leaves open. What each setting stands for, and the source that
//! backs it: `docs/compatibility.md`, section MikoPBX.

use serde::{Deserialize, Serialize};

/// The settings. The default serves every API over one store (no real release does;
/// it lets one simulator answer clients of either generation, as the demo and the bench
/// need); the other generations are the three releases as their code reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Dialect {
    pub generation: Generation,
    /// The admin UI's language: what MikoPBX translates its messages into.
    pub language: Language,
    /// How the admin lists (the 2024.1 table, the 2023.2 page) send integer columns:
    /// PHP's PDO gives strings before PHP 8.1 and integers from 8.1 on.
    pub integers: Integers,
    /// v3's answer to GET or DELETE of an unknown employee: 422 as the 2026.1 code reads
    /// (no `httpCode` is set), or 404 as its controller attributes document.
    pub v3_not_found: u16,
    /// The largest page v3 serves: 1000 as the code caps it; the OpenAPI attributes
    /// advertise 100.
    pub v3_max_limit: usize,
    /// What a save answers (legacy `saveRecord`, v3 POST and PATCH): the whole record,
    /// as the code reads, or only its `id` (a guess: a proxy or module that trims it).
    pub save_answer: SaveAnswer,
}

impl Default for Dialect {
    fn default() -> Self {
        Dialect {
            generation: Generation::All,
            language: Language::En,
            integers: Integers::Number,
            v3_not_found: 422,
            v3_max_limit: 1000,
            save_answer: SaveAnswer::Record,
        }
    }
}

impl Dialect {
    pub(super) fn check(&self) -> Result<(), String> {
        if ![404, 422].contains(&self.v3_not_found) {
            return Err(format!("v3_not_found must be 404 or 422 (got {})", self.v3_not_found));
        }
        if self.v3_max_limit == 0 {
            return Err("v3_max_limit must be at least 1".into());
        }
        Ok(())
    }

    /// Whether `/pbxcore/api/extensions/*` (the legacy API) exists.
    pub(super) fn legacy(&self) -> bool {
        self.generation != Generation::V2026_1
    }

    /// Whether `/pbxcore/api/v3/*` exists.
    pub(super) fn v3(&self) -> bool {
        matches!(self.generation, Generation::V2026_1 | Generation::All)
    }

    /// The legacy release the legacy API and the admin cabinet follow.
    pub(super) fn legacy_release(&self) -> Generation {
        match self.generation {
            Generation::V2023_2 => Generation::V2023_2,
            _ => Generation::V2024_1,
        }
    }
}

/// Which MikoPBX the simulator is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Generation {
    /// `2023.2.206`: the legacy API; the admin cabinet renders the employees (with their
    /// `Extensions.id`) in `extensions/index`; no login throttling; no v3.
    #[serde(rename = "2023.2")]
    V2023_2,
    /// `2024.1.114`: the legacy API; the admin cabinet's DataTables list `getNewRecords`;
    /// login throttling; no v3.
    #[serde(rename = "2024.1")]
    V2024_1,
    /// `2026.1.223`: v3 only (the legacy controllers are gone).
    #[serde(rename = "2026.1")]
    V2026_1,
    /// 2024.1's legacy API and 2026.1's v3 over one store.
    #[serde(rename = "all")]
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    En,
    Ru,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SaveAnswer {
    Record,
    Id,
}

impl SaveAnswer {
    /// A saved record as this dialect answers it.
    pub(super) fn trim(self, record: serde_json::Value) -> serde_json::Value {
        match (self, &record) {
            (SaveAnswer::Id, serde_json::Value::Object(m)) => {
                serde_json::json!({"id": m.get("id").cloned().unwrap_or_default()})
            }
            _ => record,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Integers {
    String,
    Number,
}

impl Integers {
    /// An integer column as PDO would hand it to `json_encode`.
    pub(super) fn of(self, n: u64) -> serde_json::Value {
        match self {
            Integers::String => serde_json::Value::String(n.to_string()),
            Integers::Number => serde_json::Value::from(n),
        }
    }
}

/// The translated messages the simulator sends, by the key MikoPBX looks them up with
/// (`src/Common/Messages/{en,ru}` at the tag named); `%name%` and `{name}` are filled in by
/// the caller. A key without a translation comes back as the key itself, as Phalcon's
/// translator does (the legacy duplicate `mo_ThisNumberNotUniqueForExtensionsModels`
/// has none in 2023.2 and 2024.1).
pub(super) fn text(language: Language, key: &str) -> String {
    let (en, ru) = match key {
        // 2023.2.206 `en.php` / `ru.php`
        "auth_WrongLoginPassword_2023" => ("Authorization error", "Ошибка авторизации"),
        // 2024.1.114
        "auth_WrongLoginPassword" => (
            "Authorization failed, you have %attempts% attempts left",
            "Ошибка авторизации, у вас осталось %attempts% попыток",
        ),
        "auth_TooManyLoginAttempts" => (
            "Too many login attempts. Your IP address is blocked for %interval% seconds.",
            "Слишком много попыток авторизации. Ваш IP адрес заблокирован на %interval% секунд.",
        ),
        // 2026.1.223 `en/Extensions.php`, `en/Common.php`, `en/*` of PasswordService
        "ex_ValidateNumberIsDouble" => ("Extension already occupied", "Внутренний номер уже занят"),
        "ex_ValidateMobileNumberIsDouble" => (
            "The mobile number is already used by another employee",
            "Мобильный номер уже используется другим сотрудником",
        ),
        "ex_ValidatePasswordTooWeak" => (
            "Password is too weak for security requirements",
            "Пароль слишком слабый для требований безопасности",
        ),
        "ex_ValidateSecretWeak" => {
            ("SIP password must be longer than 4 characters", "SIP пароль должен быть длиннее 4 символов")
        }
        "ex_ValidateEmailEmpty" => {
            ("Likely the email address is invalid", "Возможно, адрес электронной почты указан неверно")
        }
        "ex_ValidateMobileIsNotCorrect" => (
            "Check the correctness of entering the mobile number",
            "Проверьте правильность ввода мобильного номера",
        ),
        "ex_ValidateRingingBeforeForwardOutOfRange" => (
            "In the routing settings, the time before forwarding is specified incorrectly. Choose a value between {ruleValue}.",
            "В настройках маршрутизации неверно указано время до переадресации. Выберите значение между {ruleValue}.",
        ),
        "ex_ValidateForwardingToBeDifferent" => (
            "You cannot set up forwarding to your own number",
            "Нельзя настроить переадресацию на собственный номер",
        ),
        "mo_ThisNumberNotUniqueForExtensionsModels_2026" => (
            "Specified number is already used for - %record%",
            "Указанный номер уже используется для - %record%",
        ),
        "psw_PasswordTooShort" => (
            "Password is too short (minimum %min% characters)",
            "Пароль слишком короткий (минимум %min% символов)",
        ),
        "psw_PasswordTooLong" => (
            "Password is too long (maximum %max% characters)",
            "Пароль слишком длинный (максимум %max% символов)",
        ),
        "psw_PasswordIsDefault" => ("Default password is being used", "Используется пароль по умолчанию"),
        "psw_PasswordTooCommon" => (
            "This password is too common and easily guessable.",
            "Этот пароль слишком распространенный и легко угадываемый.",
        ),
        "psw_PasswordSecurityRequiresFair" => (
            "For security, password must have at least fair strength",
            "Для обеспечения безопасности пароль должен иметь хотя бы среднюю надежность",
        ),
        other => return other.to_owned(),
    };
    match language {
        Language::En => en,
        Language::Ru => ru,
    }
    .to_owned()
}
