//! What a MikoPBX list row carries and what only a record holds, for resyncs that read a
//! record only when they must ([`crate::backends::resync`]; `docs/resync.md`).
//!
//! Every list (2023.2's admin page, 2024.1's admin table, v3's employee list) carries the
//! number, the name (`Users.username`), the e-mail (`Users.email`) and the SIP peer's
//! `disabled` [code: `AdminCabinet/Controllers/ExtensionsController.php::indexAction`,
//! 2023.2.206; `::getNewRecordsAction`, 2024.1.114; `PBXCoreREST/Lib/Employees/GetListAction.php`,
//! 2026.1.223]. The legacy lists carry the mobile as the record does (the mobile
//! extension's number, `ExternalExtensions.number`); v3's list shows the dial string
//! instead when there is one, which need not be the number the record holds, so on v3 the
//! mobile is read from the record. No list carries forwarding, ring length, recording or
//! DTMF mode.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::{
    FWD_FORWARDING, FWD_FORWARDING_ON_BUSY, FWD_FORWARDING_ON_UNAVAILABLE, FWD_RING_LENGTH, Generation,
    SETTINGS, SIP_DTMF_MODE, SIP_ENABLE_RECORDING,
};
use crate::{
    backends::{lenient, resync::Reading},
    plan::{Account, Attributes, Field},
};

/// The fields only a record holds, as remembered between passes: compact, since a client
/// keeps one per account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Detail {
    /// `fwd_forwarding`, `fwd_forwardingonbusy`, `fwd_forwardingonunavailable`.
    forwarding: [Box<str>; 3],
    ring_length: i64,
    recording: bool,
    dtmf_mode: Box<str>,
    /// v3 only: the record's `mobile_number` (its list shows the dial string).
    mobile: Option<Box<str>>,
    /// v3 only: a hash of the whole record, so a PATCH refused for it is not sent again
    /// until it changes.
    pub(super) fingerprint: u64,
    /// v3 only: why MikoPBX's own rule refuses the stored SIP password, if it does.
    pub(super) weak_secret: Option<Box<str>>,
}

const FORWARDING: [&str; 3] = [FWD_FORWARDING, FWD_FORWARDING_ON_BUSY, FWD_FORWARDING_ON_UNAVAILABLE];

impl Detail {
    /// Whether a write's answer is the whole record (as the server code answers it), so
    /// that its detail may stand for a read. An answer without these keys would be
    /// remembered as blank forwarding, recording and DTMF (and, on v3, no mobile), and
    /// every later pass would see a difference that is not there and write again.
    pub(super) fn answered(
        record: &serde_json::Map<String, serde_json::Value>,
        generation: Generation,
    ) -> bool {
        SETTINGS.iter().all(|key| record.contains_key(*key))
            && (generation == Generation::Legacy || record.contains_key("mobile_number"))
    }

    /// The record a create made: its answer when that is the whole record, otherwise
    /// what was sent with what the answer says (its `id`, at least) on top.
    pub(super) fn saved(
        sent: &serde_json::Map<String, serde_json::Value>,
        answer: serde_json::Map<String, serde_json::Value>,
        generation: Generation,
    ) -> serde_json::Map<String, serde_json::Value> {
        if Detail::answered(&answer, generation) {
            return answer;
        }
        let mut saved = sent.clone();
        saved.extend(answer);
        saved
    }

    /// The detail of an account read from its record ([`super::account_of`], which sets
    /// every setting).
    pub(super) fn of(account: &Account, generation: Generation) -> Detail {
        let setting = |key: &str| account.attributes.settings.get(key).map(String::as_str).unwrap_or("");
        Detail {
            forwarding: FORWARDING.map(|key| setting(key).into()),
            ring_length: setting(FWD_RING_LENGTH).parse().unwrap_or(0),
            recording: setting(SIP_ENABLE_RECORDING) == "true",
            dtmf_mode: setting(SIP_DTMF_MODE).into(),
            mobile: match generation {
                Generation::V3 => Some(account.attributes.mobile.as_deref().unwrap_or("").into()),
                Generation::Legacy => None,
            },
            fingerprint: 0,
            weak_secret: None,
        }
    }

    pub(super) fn ring_length(&self) -> i64 {
        self.ring_length
    }

    /// Puts the remembered fields into an account built from its list row.
    pub(super) fn fill(&self, account: &mut Account) {
        let settings = &mut account.attributes.settings;
        for (key, value) in FORWARDING.iter().zip(&self.forwarding) {
            settings.insert((*key).to_owned(), value.to_string());
        }
        settings.insert(FWD_RING_LENGTH.to_owned(), self.ring_length.to_string());
        settings.insert(SIP_ENABLE_RECORDING.to_owned(), self.recording.to_string());
        settings.insert(SIP_DTMF_MODE.to_owned(), self.dtmf_mode.to_string());
        if let Some(mobile) = &self.mobile {
            account.attributes.mobile = (!mobile.is_empty()).then(|| mobile.to_string());
        }
    }
}

/// What a list row says of the fields lists carry. Read apart from the row's id and
/// number: a row whose name or e-mail cannot be read is still listed, and its record read.
#[derive(Deserialize)]
pub(super) struct Listed {
    /// `username` in the admin lists, `user_username` in v3's.
    #[serde(default, alias = "user_username", deserialize_with = "lenient::present")]
    username: Option<String>,
    #[serde(default, alias = "user_email", deserialize_with = "lenient::present")]
    email: Option<String>,
    #[serde(default, deserialize_with = "lenient::present")]
    mobile: Option<String>,
}

impl Listed {
    /// The row's fields, when it carries every one this generation takes from lists.
    pub(super) fn read(raw: &serde_json::value::RawValue, generation: Generation) -> Option<Listed> {
        let listed: Listed = lenient::read(raw).ok()?;
        let carried = listed.username.is_some()
            && listed.email.is_some()
            && (generation == Generation::V3 || listed.mobile.is_some());
        carried.then_some(listed)
    }

    /// The account as far as its list row tells: no settings (and, on v3, no mobile).
    pub(super) fn account(
        self,
        id: String,
        number: String,
        enabled: bool,
        generation: Generation,
    ) -> Account {
        let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
        Account {
            id,
            extension: number,
            attributes: Attributes {
                display_name: Some(self.username.unwrap_or_default()),
                email: non_empty(self.email),
                mobile: match generation {
                    Generation::Legacy => non_empty(self.mobile),
                    Generation::V3 => None,
                },
                enabled: Some(enabled),
                ..Attributes::default()
            },
            marker: None,
        }
    }
}

/// How much of each record a pass with these declared fields reads.
pub(super) fn reading(generation: Generation, declared: &BTreeSet<Field>) -> Reading {
    Reading::of(declared, |field| match field {
        Field::Setting(key) => SETTINGS.contains(&key.as_str()),
        Field::Mobile => generation == Generation::V3,
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{json, value::RawValue};

    use super::*;

    fn raw(v: serde_json::Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(&v).unwrap()
    }

    #[test]
    fn a_record_and_its_row_with_the_detail_make_the_same_account() {
        let record = json!({
            "id": "7", "number": "201", "user_username": "Anna Nowak", "user_email": "anna@example.com",
            "mobile_number": "48600111222", "fwd_forwarding": "48600111222", "fwd_forwardingonbusy": "",
            "fwd_forwardingonunavailable": "202", "fwd_ringlength": "30", "sip_enableRecording": "1",
            "sip_dtmfmode": "auto_info",
        });
        let serde_json::Value::Object(record) = record else { unreachable!() };
        let read = super::super::account_of("7".into(), &record, Some(true)).unwrap();
        for generation in [Generation::Legacy, Generation::V3] {
            let row = raw(json!({"id": 7, "number": "201", "username": "Anna Nowak",
                "email": "anna@example.com", "mobile": "48600111222", "disabled": "0"}));
            let listed = Listed::read(&row, generation).unwrap();
            let mut account = listed.account("7".into(), "201".into(), true, generation);
            Detail::of(&read, generation).fill(&mut account);
            assert_eq!(account, read, "{generation:?}");
        }
    }

    #[test]
    fn a_row_without_a_carried_field_is_not_enough() {
        let row = raw(json!({"id": 7, "number": "201", "username": "A", "email": null, "mobile": null}));
        assert!(Listed::read(&row, Generation::Legacy).is_some(), "null is an empty field");
        let row = raw(json!({"id": 7, "number": "201", "username": "A", "email": "a@b.c"}));
        assert!(Listed::read(&row, Generation::Legacy).is_none(), "no mobile in a legacy row");
        assert!(Listed::read(&row, Generation::V3).is_some(), "v3 reads the mobile from the record");
        let row =
            raw(json!({"id": 7, "number": "201", "username": {"x": 1}, "email": "a@b.c", "mobile": ""}));
        assert!(Listed::read(&row, Generation::Legacy).is_none());
    }

    #[test]
    fn only_fields_no_list_carries_need_records() {
        let declared = |fields: &[Field]| fields.iter().cloned().collect::<BTreeSet<Field>>();
        let plain = declared(&[Field::DisplayName, Field::Email, Field::Mobile, Field::Enabled]);
        assert_eq!(reading(Generation::Legacy, &plain), Reading::Never);
        assert_eq!(reading(Generation::V3, &plain), Reading::WhenStale, "v3 lists the dial string");
        let forwarding = declared(&[Field::Email, Field::Setting(FWD_FORWARDING.into())]);
        assert_eq!(reading(Generation::Legacy, &forwarding), Reading::WhenStale);
    }
}
