//! The relational store behind both generations: the tables and the joins that read them.

use super::*;
use crate::sim::table::{Indexed, Table};

// ---------------------------------------------------------------------------------------
// The store

#[derive(Clone, Debug)]
pub(super) struct UserRow {
    pub(super) username: String,
    pub(super) email: String,
    pub(super) avatar: String,
    // Written like the real row, never read back by any API.
    #[allow(dead_code)]
    pub(super) language: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ExtKind {
    Sip,
    External,
    /// A number that is no employee's: the system numbers (`hangup`, `busy`, ...) and
    /// applications (queues, IVR menus, conferences). `getRecord` of its id answers the
    /// blank template, as for an id that does not exist.
    Other,
}

#[derive(Clone, Debug)]
pub(super) struct ExtRow {
    pub(super) number: String,
    pub(super) kind: ExtKind,
    pub(super) userid: Option<u64>,
    pub(super) callerid: String,
    pub(super) show_in_phonebook: String,
    pub(super) public_access: String,
    pub(super) is_general_user_number: String,
    /// `Extensions.type` of an [`ExtKind::Other`] row (`SYSTEM`, `QUEUE`); "" otherwise.
    pub(super) app_type: String,
}

/// The system numbers a fresh MikoPBX holds before any employee (simulator choice of the
/// few that matter: they take the first `Extensions.id`s, so employees' ids never start
/// at 1).
const SYSTEM_NUMBERS: [&str; 4] = ["hangup", "busy", "did2user", "voicemail"];

#[derive(Clone, Debug)]
pub(super) struct SipRow {
    pub(super) uniqid: String,
    pub(super) extension: String,
    pub(super) secret: String,
    pub(super) sip_type: String,
    pub(super) qualify: String,
    pub(super) qualifyfreq: i64,
    pub(super) enable_recording: String,
    pub(super) dtmfmode: String,
    pub(super) transport: String,
    pub(super) networkfilterid: String,
    pub(super) manualattributes: String,
    // Written like the real row, never read back by any API.
    #[allow(dead_code)]
    pub(super) description: String,
    pub(super) disabled: String,
}

#[derive(Clone, Debug)]
pub(super) struct PhoneRow {
    pub(super) uniqid: String,
    pub(super) extension: String,
    pub(super) dialstring: String,
    // Written like the real row, never read back by any API.
    #[allow(dead_code)]
    pub(super) description: String,
}

#[derive(Clone, Debug, Default)]
pub(super) struct FwdRow {
    pub(super) extension: String,
    pub(super) ringlength: i64,
    pub(super) forwarding: String,
    pub(super) onbusy: String,
    pub(super) onunavailable: String,
}

#[derive(Clone, Debug, Default)]
pub(super) struct Store {
    pub(super) users: BTreeMap<u64, UserRow>,
    pub(super) exts: Table<ExtRow>,
    pub(super) sips: Table<SipRow>,
    pub(super) phones: Table<PhoneRow>,
    pub(super) fwds: Table<FwdRow>,
    pub(super) next_user: u64,
    pub(super) next_ext: u64,
    pub(super) next_row: u64,
    /// The joins of the admin table, kept while nothing changes (a listing reads every
    /// record right after the table: with them, each read no longer scans the tables).
    /// Every `&mut self` method that changes rows drops them first.
    pub(super) joins: std::sync::OnceLock<Arc<Joins>>,
}

impl Indexed for ExtRow {
    fn keys(&self) -> Vec<String> {
        let mut keys = vec![format!("number:{}", self.number)];
        match (self.userid, self.kind) {
            (Some(uid), ExtKind::Sip) if self.is_general_user_number == "1" => {
                keys.push(format!("sip:{uid}"))
            }
            (Some(uid), ExtKind::External) => keys.push(format!("mobile:{uid}")),
            _ => {}
        }
        keys
    }
}

impl Indexed for SipRow {
    fn keys(&self) -> Vec<String> {
        vec![format!("extension:{}", self.extension), format!("uniqid:{}", self.uniqid)]
    }
}

impl Indexed for PhoneRow {
    fn keys(&self) -> Vec<String> {
        vec![format!("extension:{}", self.extension), format!("uniqid:{}", self.uniqid)]
    }
}

impl Indexed for FwdRow {
    fn keys(&self) -> Vec<String> {
        vec![format!("extension:{}", self.extension)]
    }
}

/// One employee as the joins show it.
#[derive(Clone, Debug, Default)]
pub(super) struct Record {
    pub(super) id: Option<u64>,
    pub(super) user_id: Option<u64>,
    pub(super) number: String,
    pub(super) show_in_phonebook: String,
    pub(super) is_general_user_number: String,
    pub(super) public_access: String,
    pub(super) user_username: String,
    pub(super) user_email: String,
    pub(super) user_avatar: String,
    /// (uniqid, number, dialstring)
    pub(super) mobile: Option<(String, String, String)>,
    pub(super) sip_uniqid: String,
    pub(super) sip_secret: String,
    pub(super) sip_type: String,
    pub(super) sip_qualify: String,
    pub(super) sip_qualifyfreq: i64,
    pub(super) sip_enable_recording: String,
    pub(super) sip_dtmfmode: String,
    pub(super) sip_transport: String,
    pub(super) sip_networkfilterid: String,
    pub(super) sip_manualattributes: String,
    pub(super) sip_disabled: String,
    pub(super) fwd_ringlength: i64,
    pub(super) fwd_forwarding: String,
    pub(super) fwd_onbusy: String,
    pub(super) fwd_onunavailable: String,
}

impl Record {
    pub(super) fn legacy_json(&self, mobile_uniqid_fallback: &str) -> Map<String, Value> {
        let (m_uniqid, m_number, m_dial) = match &self.mobile {
            Some((u, n, d)) => (u.clone(), n.clone(), d.clone()),
            None => (mobile_uniqid_fallback.to_string(), String::new(), String::new()),
        };
        let mut m = Map::new();
        if let Some(id) = self.id {
            m.insert("id".into(), Value::String(id.to_string()));
        }
        let s = |v: &str| Value::String(v.to_string());
        m.insert("type".into(), s("SIP"));
        m.insert("show_in_phonebook".into(), s(&self.show_in_phonebook));
        m.insert("is_general_user_number".into(), s(&self.is_general_user_number));
        m.insert("public_access".into(), s(&self.public_access));
        m.insert("number".into(), s(&self.number));
        let uid = self.user_id.map(|u| u.to_string()).unwrap_or_default();
        m.insert("user_id".into(), Value::String(uid));
        m.insert("user_avatar".into(), s(&self.user_avatar));
        m.insert("user_username".into(), s(&self.user_username));
        m.insert("user_email".into(), s(&self.user_email));
        m.insert("mobile_uniqid".into(), Value::String(m_uniqid));
        m.insert("mobile_number".into(), Value::String(m_number));
        m.insert("mobile_dialstring".into(), Value::String(m_dial));
        m.insert("sip_uniqid".into(), s(&self.sip_uniqid));
        m.insert("sip_secret".into(), s(&self.sip_secret));
        m.insert("sip_type".into(), s(&self.sip_type));
        m.insert("sip_qualify".into(), s(&self.sip_qualify));
        m.insert("sip_qualifyfreq".into(), json!(self.sip_qualifyfreq));
        m.insert("sip_enableRecording".into(), s(&self.sip_enable_recording));
        m.insert("sip_dtmfmode".into(), s(&self.sip_dtmfmode));
        m.insert("sip_transport".into(), s(&self.sip_transport));
        m.insert("sip_networkfilterid".into(), s(&self.sip_networkfilterid));
        m.insert("sip_manualattributes".into(), s(&self.sip_manualattributes));
        m.insert("fwd_ringlength".into(), json!(self.fwd_ringlength));
        m.insert("fwd_forwarding".into(), s(&self.fwd_forwarding));
        m.insert("fwd_forwardingonbusy".into(), s(&self.fwd_onbusy));
        m.insert("fwd_forwardingonunavailable".into(), s(&self.fwd_onunavailable));
        m
    }

    pub(super) fn mobile_number(&self) -> &str {
        self.mobile.as_ref().map(|m| m.1.as_str()).unwrap_or("")
    }

    pub(super) fn mobile_dialstring(&self) -> &str {
        self.mobile.as_ref().map(|m| m.2.as_str()).unwrap_or("")
    }
}

/// How a record's rows are found: by scanning (one record), or through [`Joins`] (all).
pub(super) trait Find {
    fn sip_ext_of_user(&self, s: &Store, uid: u64) -> Option<u64>;
    fn mobile_ext_of_user(&self, s: &Store, uid: u64) -> Option<u64>;
    fn sip_for(&self, s: &Store, number: &str) -> Option<u64>;
    fn fwd_for(&self, s: &Store, number: &str) -> Option<u64>;
    fn phone_for(&self, s: &Store, number: &str) -> Option<u64>;
}

pub(super) struct Scan;

impl Find for Scan {
    fn sip_ext_of_user(&self, s: &Store, uid: u64) -> Option<u64> {
        s.sip_ext_of_user(uid)
    }
    fn mobile_ext_of_user(&self, s: &Store, uid: u64) -> Option<u64> {
        s.mobile_ext_of_user(uid)
    }
    fn sip_for(&self, s: &Store, number: &str) -> Option<u64> {
        s.sip_for(number)
    }
    fn fwd_for(&self, s: &Store, number: &str) -> Option<u64> {
        s.fwd_for(number)
    }
    fn phone_for(&self, s: &Store, number: &str) -> Option<u64> {
        s.phone_for(number)
    }
}

/// The scans of [`Scan`] done once, keeping the first match in id order as they do.
#[derive(Debug)]
pub(super) struct Joins {
    pub(super) sip_ext_of_user: HashMap<u64, u64>,
    pub(super) mobile_ext_of_user: HashMap<u64, u64>,
    pub(super) sip_for: HashMap<String, u64>,
    pub(super) fwd_for: HashMap<String, u64>,
    pub(super) phone_for: HashMap<String, u64>,
    /// Every record, built through these joins (each table page reads them all).
    pub(super) records: std::sync::OnceLock<Arc<Vec<Record>>>,
}

impl Joins {
    pub(super) fn new(s: &Store) -> Self {
        let mut j = Joins {
            sip_ext_of_user: HashMap::new(),
            mobile_ext_of_user: HashMap::new(),
            sip_for: HashMap::new(),
            fwd_for: HashMap::new(),
            phone_for: HashMap::new(),
            records: std::sync::OnceLock::new(),
        };
        for (id, e) in s.exts.iter() {
            let Some(uid) = e.userid else { continue };
            if e.kind == ExtKind::Sip && e.is_general_user_number == "1" {
                j.sip_ext_of_user.entry(uid).or_insert(*id);
            }
            if e.kind == ExtKind::External {
                j.mobile_ext_of_user.entry(uid).or_insert(*id);
            }
        }
        for (id, r) in s.sips.iter() {
            j.sip_for.entry(r.extension.clone()).or_insert(*id);
        }
        for (id, r) in s.fwds.iter() {
            j.fwd_for.entry(r.extension.clone()).or_insert(*id);
        }
        for (id, r) in s.phones.iter() {
            j.phone_for.entry(r.extension.clone()).or_insert(*id);
        }
        j
    }
}

impl Find for Joins {
    fn sip_ext_of_user(&self, _: &Store, uid: u64) -> Option<u64> {
        self.sip_ext_of_user.get(&uid).copied()
    }
    fn mobile_ext_of_user(&self, _: &Store, uid: u64) -> Option<u64> {
        self.mobile_ext_of_user.get(&uid).copied()
    }
    fn sip_for(&self, _: &Store, number: &str) -> Option<u64> {
        self.sip_for.get(number).copied()
    }
    fn fwd_for(&self, _: &Store, number: &str) -> Option<u64> {
        self.fwd_for.get(number).copied()
    }
    fn phone_for(&self, _: &Store, number: &str) -> Option<u64> {
        self.phone_for.get(number).copied()
    }
}

impl Store {
    pub(super) fn new(cfg: &MikoPbxConfig) -> Self {
        let mut store = Self {
            next_user: cfg.first_user_id,
            next_ext: cfg.first_extension_id,
            next_row: 1,
            ..Self::default()
        };
        for number in SYSTEM_NUMBERS {
            let id = store.alloc_ext();
            store.exts.insert(id, ExtRow::other(number, number, "SYSTEM", "0"));
        }
        store
    }

    /// A queue (or any number that is no employee) on `number`, as the admin UI makes one.
    pub(super) fn add_other(&mut self, number: &str, name: &str) -> Result<u64, String> {
        if let Some(other) = self.ext_with_number(number, None) {
            return Err(format!("{MSG_DUPLICATE_KEY}: {}", self.represent(other)));
        }
        self.touched();
        let id = self.alloc_ext();
        self.exts.insert(id, ExtRow::other(number, name, "QUEUE", "1"));
        Ok(id)
    }

    pub(super) fn alloc_user(&mut self) -> u64 {
        self.next_user += 1;
        self.next_user - 1
    }

    pub(super) fn alloc_ext(&mut self) -> u64 {
        self.next_ext += 1;
        self.next_ext - 1
    }

    pub(super) fn alloc_row(&mut self) -> u64 {
        self.next_row += 1;
        self.next_row - 1
    }

    pub(super) fn sip_ext_of_user(&self, uid: u64) -> Option<u64> {
        self.exts.find(&format!("sip:{uid}"))
    }

    pub(super) fn mobile_ext_of_user(&self, uid: u64) -> Option<u64> {
        self.exts.find(&format!("mobile:{uid}"))
    }

    pub(super) fn ext_with_number(&self, number: &str, except: Option<u64>) -> Option<u64> {
        self.exts.find_except(&format!("number:{number}"), except)
    }

    /// Every extension row with this number.
    pub(super) fn exts_numbered<'a>(&'a self, number: &str) -> impl Iterator<Item = &'a ExtRow> + use<'a> {
        self.exts.all(&format!("number:{number}"))
    }

    pub(super) fn sip_for(&self, number: &str) -> Option<u64> {
        self.sips.find(&format!("extension:{number}"))
    }

    pub(super) fn sip_by_uniqid(&self, uniqid: &str) -> Option<u64> {
        self.sips.find(&format!("uniqid:{uniqid}"))
    }

    pub(super) fn phone_for(&self, number: &str) -> Option<u64> {
        self.phones.find(&format!("extension:{number}"))
    }

    pub(super) fn phone_by_uniqid(&self, uniqid: &str) -> Option<u64> {
        self.phones.find(&format!("uniqid:{uniqid}"))
    }

    pub(super) fn fwd_for(&self, number: &str) -> Option<u64> {
        self.fwds.find(&format!("extension:{number}"))
    }

    pub(super) fn represent(&self, ext_id: u64) -> String {
        let Some(e) = self.exts.get(&ext_id) else {
            return String::new();
        };
        let name = e
            .userid
            .and_then(|u| self.users.get(&u))
            .map(|u| u.username.as_str())
            .unwrap_or(e.callerid.as_str());
        let icon = match e.kind {
            ExtKind::Sip => "<i class=\"user outline icon\"></i>",
            ExtKind::External => {
                "<i class=\"user outline icon\"></i><i class=\"top right corner mobile icon\"></i>"
            }
            ExtKind::Other => "<i class=\"users icon\"></i>",
        };
        format!("<i class=\"icons\">{icon}</i> {name} <{}>", e.number)
    }

    pub(super) fn represent_number(&self, number: &str) -> String {
        match self.ext_with_number(number, None) {
            Some(id) if !number.is_empty() => self.represent(id),
            _ => number.to_string(),
        }
    }

    pub(super) fn record(&self, uid: u64, ext_id: Option<u64>) -> Option<Record> {
        match self.joins.get() {
            Some(joins) => self.record_with(uid, ext_id, joins.as_ref()),
            None => self.record_with(uid, ext_id, &Scan),
        }
    }

    /// Rows are about to change: the kept joins no longer hold.
    pub(super) fn touched(&mut self) {
        self.joins = std::sync::OnceLock::new();
    }

    /// Every employee's record, as `record_of_user` gives them one by one, but joined
    /// through maps built once (one by one, each join scans a table: O(N²) for the list).
    pub(super) fn all_records(&self) -> Arc<Vec<Record>> {
        let joins = self.joins.get_or_init(|| Arc::new(Joins::new(self))).clone();
        joins
            .records
            .get_or_init(|| {
                Arc::new(
                    self.users
                        .keys()
                        .filter_map(|uid| {
                            self.record_with(*uid, joins.sip_ext_of_user(self, *uid), joins.as_ref())
                        })
                        .collect(),
                )
            })
            .clone()
    }

    pub(super) fn record_with(&self, uid: u64, ext_id: Option<u64>, find: &impl Find) -> Option<Record> {
        let user = self.users.get(&uid)?;
        let ext = ext_id.and_then(|id| self.exts.get(&id));
        let number = ext.map(|e| e.number.clone()).unwrap_or_default();
        let sip = ext.and_then(|_| find.sip_for(self, &number)).and_then(|r| self.sips.get(&r));
        let fwd = ext.and_then(|_| find.fwd_for(self, &number)).and_then(|r| self.fwds.get(&r));
        let mobile = find.mobile_ext_of_user(self, uid).and_then(|m| self.exts.get(&m)).map(|me| {
            let phone = find.phone_for(self, &me.number).and_then(|r| self.phones.get(&r));
            (
                phone.map(|p| p.uniqid.clone()).unwrap_or_default(),
                me.number.clone(),
                phone.map(|p| p.dialstring.clone()).unwrap_or_default(),
            )
        });
        let sv = |f: fn(&SipRow) -> &String| sip.map(|s| f(s).clone()).unwrap_or_default();
        let fv = |f: fn(&FwdRow) -> &String| fwd.map(|s| f(s).clone()).unwrap_or_default();
        Some(Record {
            id: ext.and(ext_id),
            user_id: Some(uid),
            number,
            show_in_phonebook: ext.map(|e| e.show_in_phonebook.clone()).unwrap_or_default(),
            is_general_user_number: ext.map(|e| e.is_general_user_number.clone()).unwrap_or_default(),
            public_access: ext.map(|e| e.public_access.clone()).unwrap_or_default(),
            user_username: user.username.clone(),
            user_email: user.email.clone(),
            user_avatar: user.avatar.clone(),
            mobile,
            sip_uniqid: sv(|s| &s.uniqid),
            sip_secret: sv(|s| &s.secret),
            sip_type: sv(|s| &s.sip_type),
            sip_qualify: sv(|s| &s.qualify),
            sip_qualifyfreq: sip.map(|s| s.qualifyfreq).unwrap_or(0),
            sip_enable_recording: sv(|s| &s.enable_recording),
            sip_dtmfmode: sv(|s| &s.dtmfmode),
            sip_transport: sv(|s| &s.transport),
            sip_networkfilterid: sv(|s| &s.networkfilterid),
            sip_manualattributes: sv(|s| &s.manualattributes),
            sip_disabled: sv(|s| &s.disabled),
            fwd_ringlength: fwd.map(|f| f.ringlength).unwrap_or(0),
            fwd_forwarding: fv(|f| &f.forwarding),
            fwd_onbusy: fv(|f| &f.onbusy),
            fwd_onunavailable: fv(|f| &f.onunavailable),
        })
    }

    pub(super) fn record_of_user(&self, uid: u64) -> Option<Record> {
        self.record(uid, self.sip_ext_of_user(uid))
    }

    /// The employee whose SIP extension has this `Extensions.id`.
    pub(super) fn record_of_ext(&self, ext_id: u64) -> Option<Record> {
        let e = self.exts.get(&ext_id)?;
        if e.kind != ExtKind::Sip {
            return None;
        }
        self.record(e.userid?, Some(ext_id))
    }

    pub(super) fn next_free_number(&self, cfg: &MikoPbxConfig) -> String {
        let len = cfg.extension_length.min(18);
        let max_allowed = 10u64.pow(len) - 1;
        let highest = self
            .exts
            .values()
            .filter(|e| e.kind == ExtKind::Sip && e.number.len() <= len as usize)
            .filter_map(|e| e.number.parse::<u64>().ok())
            .max();
        let start =
            highest.map(|h| h + 1).unwrap_or(cfg.first_internal_number).max(cfg.first_internal_number);
        let free = |n: &u64| self.ext_with_number(&n.to_string(), None).is_none();
        (start..=max_allowed)
            .find(free)
            .or_else(|| (cfg.first_internal_number..start.min(max_allowed + 1)).find(free))
            .map(|n| n.to_string())
            .unwrap_or_default()
    }

    pub(super) fn delete_ext(&mut self, ext_id: u64) {
        self.touched();
        if let Some(e) = self.exts.remove(&ext_id) {
            self.sips.retain(|s| s.extension != e.number);
            self.phones.retain(|p| p.extension != e.number);
        }
    }

    pub(super) fn delete_mobile(&mut self, uid: u64) {
        self.touched();
        while let Some(id) = self.mobile_ext_of_user(uid) {
            self.delete_ext(id);
        }
    }

    pub(super) fn numbers_of_user(&self, uid: u64) -> Vec<String> {
        self.exts.values().filter(|e| e.userid == Some(uid)).map(|e| e.number.clone()).collect()
    }

    /// Forwarding rows of OTHER extensions that point at this user's numbers (the
    /// restrict relations that make a delete fail).
    pub(super) fn restrict_messages(&self, uid: u64) -> Vec<String> {
        let own = self.numbers_of_user(uid);
        let mut out = Vec::new();
        for f in self.fwds.values() {
            if own.contains(&f.extension) {
                continue;
            }
            for target in [&f.forwarding, &f.onbusy, &f.onunavailable] {
                if !target.is_empty() && own.contains(target) {
                    out.push(format!("{MSG_RESTRICT}{}", self.represent_number(&f.extension)));
                    break;
                }
            }
        }
        out
    }

    pub(super) fn delete_user(&mut self, uid: u64) {
        self.touched();
        let own = self.numbers_of_user(uid);
        self.fwds.retain(|f| !own.contains(&f.extension));
        let ids: Vec<u64> =
            self.exts.iter().filter(|(_, e)| e.userid == Some(uid)).map(|(id, _)| *id).collect();
        for id in ids {
            self.delete_ext(id);
        }
        self.users.remove(&uid);
    }

    /// The model's message for a number `other` already holds: the bare key in the
    /// legacy releases (they have no text for it), 2026.1's translation otherwise.
    pub(super) fn duplicate(&self, other: u64, translated: Option<Language>) -> String {
        match translated {
            None => MSG_DUPLICATE_KEY.to_owned(),
            Some(language) => text(language, "mo_ThisNumberNotUniqueForExtensionsModels_2026")
                .replace("%record%", &self.represent(other)),
        }
    }
}

impl ExtRow {
    fn other(number: &str, name: &str, app_type: &str, show_in_phonebook: &str) -> Self {
        ExtRow {
            number: number.to_owned(),
            kind: ExtKind::Other,
            userid: None,
            callerid: name.to_owned(),
            show_in_phonebook: show_in_phonebook.to_owned(),
            public_access: "0".into(),
            is_general_user_number: "0".into(),
            app_type: app_type.to_owned(),
        }
    }
}
