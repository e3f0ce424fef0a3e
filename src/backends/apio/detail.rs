//! What APIO's group list carries and what only a user's own record holds, for resyncs
//! that read a record only when they must ([`crate::backends::resync`];
//! `docs/resync.md`).
//!
//! The group list (`UserGetListInGroupRequest`) carries each user's id, first and last
//! name, extension and e-mail address [seed: `shared/seeds/002`, the list example;
//! oci: `UserGetListInGroupResponse`'s user table]. The mobile, the language and the time
//! zone are only in the user's record (`UserGetRequest`).

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{LANGUAGE, TIME_ZONE};
use crate::{
    backends::{lenient, resync::Reading},
    plan::{Account, Attributes, Desired, Field},
};

/// A list row: its extension, what else it shows of the fields lists carry (when it shows
/// them all), and its digest.
#[derive(Debug)]
pub(super) struct Row {
    pub(super) extension: Option<String>,
    pub(super) listed: Option<Listed>,
    pub(super) digest: u64,
}

/// The names and e-mail a list row shows.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Listed {
    #[serde(default, deserialize_with = "lenient::present")]
    first_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::present")]
    last_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::present")]
    email_address: Option<String>,
}

impl Listed {
    /// The row's names and e-mail, when it shows all three (a row that cannot be read
    /// so is still listed; its record is read).
    pub(super) fn read(raw: &RawValue) -> Option<Listed> {
        let listed: Listed = lenient::read(raw).ok()?;
        (listed.first_name.is_some() && listed.last_name.is_some() && listed.email_address.is_some())
            .then_some(listed)
    }

    /// The account as far as its list row tells: no mobile, language or time zone.
    pub(super) fn account(self, id: String, extension: String) -> Account {
        let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
        Account {
            id,
            extension,
            attributes: Attributes {
                given_name: non_empty(self.first_name),
                family_name: non_empty(self.last_name),
                email: non_empty(self.email_address),
                ..Attributes::default()
            },
            marker: None,
        }
    }
}

/// The fields only a user's record holds, as remembered between passes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Detail {
    mobile: Option<Box<str>>,
    language: Option<Box<str>>,
    time_zone: Option<Box<str>>,
}

impl Detail {
    /// The detail of an account read from its record.
    pub(super) fn of(account: &Account) -> Detail {
        let a = &account.attributes;
        let setting = |key: &str| a.settings.get(key).map(|v| v.as_str().into());
        Detail {
            mobile: a.mobile.as_deref().map(Into::into),
            language: setting(LANGUAGE),
            time_zone: setting(TIME_ZONE),
        }
    }

    /// The detail of an account just created: what the answer (or the lookup after it)
    /// shows, and where it shows nothing, what the create sent and the system took.
    pub(super) fn created(account: &Account, desired: &Desired) -> Detail {
        let sent = Detail::of(&Account {
            id: String::new(),
            extension: String::new(),
            attributes: desired.attributes.clone(),
            marker: None,
        });
        let shown = Detail::of(account);
        Detail {
            mobile: shown.mobile.or(sent.mobile),
            language: shown.language.or(sent.language),
            time_zone: shown.time_zone.or(sent.time_zone),
        }
    }

    /// Puts the remembered fields into an account built from its list row.
    pub(super) fn fill(&self, account: &mut Account) {
        let a = &mut account.attributes;
        a.mobile = self.mobile.as_deref().map(str::to_owned);
        for (key, value) in [(LANGUAGE, &self.language), (TIME_ZONE, &self.time_zone)] {
            if let Some(v) = value {
                a.settings.insert(key.to_owned(), v.to_string());
            }
        }
    }
}

/// How much of each record a pass with these declared fields reads.
pub(super) fn reading(declared: &BTreeSet<Field>) -> Reading {
    Reading::of(declared, |field| match field {
        Field::Mobile => true,
        Field::Setting(key) => key == LANGUAGE || key == TIME_ZONE,
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::backends::apio::listing::{UserRecord, account};

    fn raw(v: serde_json::Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(&v).unwrap()
    }

    #[test]
    fn a_record_and_its_row_with_the_detail_make_the_same_account() {
        let record = raw(json!({"firstName": "Tom", "lastName": "Smith", "extension": "1234",
            "emailAddress": "tom@example.com", "mobilePhoneNumber": "+3225126777", "language": "English",
            "timeZone": "Europe/Brussels"}));
        let record: UserRecord = lenient::read(&record).unwrap();
        let read = account("u1@example.com".into(), record, Some("1234"));
        let row = raw(json!({"userId": "u1@example.com", "firstName": "Tom", "lastName": "Smith",
            "extension": "1234", "emailAddress": "tom@example.com", "phoneNumber": "+3225126777",
            "inTrunkGroup": false}));
        let mut from_row = Listed::read(&row).unwrap().account("u1@example.com".into(), "1234".into());
        Detail::of(&read).fill(&mut from_row);
        assert_eq!(from_row, read);
    }

    #[test]
    fn rows_without_names_or_e_mail_are_not_enough() {
        assert!(Listed::read(&raw(json!({"userId": "u1", "firstName": "Tom", "lastName": "S"}))).is_none());
        assert!(
            Listed::read(&raw(json!({"firstName": "Tom", "lastName": "S", "emailAddress": null}))).is_some()
        );
    }

    #[test]
    fn only_mobile_language_and_time_zone_need_records() {
        let declared = |fields: &[Field]| fields.iter().cloned().collect::<BTreeSet<Field>>();
        assert_eq!(reading(&declared(&[Field::GivenName, Field::FamilyName, Field::Email])), Reading::Never);
        assert_eq!(reading(&declared(&[Field::Email, Field::Mobile])), Reading::WhenStale);
        assert_eq!(reading(&declared(&[Field::Setting(LANGUAGE.into())])), Reading::WhenStale);
    }
}
