//! The store's writes: the legacy upsert, the v3 save, and drift made behind the API's back.

use super::*;

impl Store {
    /// Legacy `SaveRecord`: an upsert per row, every omitted field takes its default.
    pub(super) fn legacy_save(
        &mut self,
        form: &HashMap<String, String>,
        cfg: &MikoPbxConfig,
        release: Generation,
        rng: &mut StdRng,
    ) -> Result<u64, Vec<String>> {
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let raw_number = get("number");
        if raw_number.is_empty() || raw_number == "0" {
            return Err(vec![MSG_EMPTY_NUMBER.into()]);
        }
        let mut number = digits(raw_number);
        if number.is_empty() {
            number = self.next_free_number(cfg);
        }
        if number.is_empty() {
            return Err(vec![MSG_EMPTY_NUMBER.into()]);
        }
        let uid = get("user_id").parse::<u64>().ok().filter(|u| self.users.contains_key(u));
        let may_clash = self.may_clash(uid, &number, &digits(get("mobile_number")));
        self.all_or_nothing(may_clash, |st| st.legacy_save_rows(form, cfg, release, rng, number))
    }

    /// Runs `save`, which changes rows one after another and may be refused half-way
    /// (`may_fail`), so that a refusal changes nothing: on a copy of the store when it
    /// may fail, in place when it cannot (an O(N) copy per save made the simulator, not
    /// the client, the bottleneck at thousands of rows).
    fn all_or_nothing<T>(
        &mut self,
        may_fail: bool,
        save: impl FnOnce(&mut Self) -> Result<T, Vec<String>>,
    ) -> Result<T, Vec<String>> {
        if !may_fail {
            return save(self);
        }
        let mut copy = self.clone();
        let out = save(&mut copy)?;
        *self = copy;
        Ok(out)
    }

    /// Whether a save of employee `uid` (None: a new one) with `number` and `mobile` could
    /// be refused: either held by a row other than the employee's own. Conservative:
    /// `false` means it cannot be refused.
    fn may_clash(&self, uid: Option<u64>, number: &str, mobile: &str) -> bool {
        let own = |of: fn(&Self, u64) -> Option<u64>| uid.and_then(|u| of(self, u));
        self.ext_with_number(number, own(Self::sip_ext_of_user)).is_some()
            || (!mobile.is_empty()
                && (mobile == number
                    || self.ext_with_number(mobile, own(Self::mobile_ext_of_user)).is_some()))
    }

    /// The row writes of [`Store::legacy_save`], with `number` already settled.
    pub(super) fn legacy_save_rows(
        &mut self,
        form: &HashMap<String, String>,
        cfg: &MikoPbxConfig,
        release: Generation,
        rng: &mut StdRng,
        number: String,
    ) -> Result<u64, Vec<String>> {
        self.touched();
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let or_default = |k: &str, d: String| {
            let v = get(k);
            if v.is_empty() { d } else { v.to_string() }
        };
        let username = get("user_username").to_string();
        let fwd = |k: &str| legacy_fwd(get(k), release);
        let int_or = |k: &str, d: i64| {
            let v = get(k);
            if v.is_empty() { d } else { php_int(v) }
        };
        let st = self;
        let uid = match get("user_id").parse::<u64>() {
            Ok(u) if st.users.contains_key(&u) => u,
            _ => st.alloc_user(),
        };
        st.users.insert(
            uid,
            UserRow {
                username: username.clone(),
                email: get("user_email").to_string(),
                avatar: get("user_avatar").to_string(),
                language: cfg.language.clone(),
            },
        );

        let ext_id = match st.sip_ext_of_user(uid) {
            Some(id) => id,
            None => st.alloc_ext(),
        };
        if let Some(other) = st.ext_with_number(&number, Some(ext_id)) {
            return Err(vec![st.duplicate(other, None)]);
        }
        st.exts.insert(
            ext_id,
            ExtRow {
                number: number.clone(),
                kind: ExtKind::Sip,
                userid: Some(uid),
                callerid: username.clone(),
                show_in_phonebook: or_default("show_in_phonebook", "1".into()),
                public_access: or_default("public_access", "0".into()),
                is_general_user_number: "1".into(),
                app_type: String::new(),
            },
        );

        let sip_uniqid = or_default("sip_uniqid", new_uniqid("SIP-PHONE-", rng));
        let row = match st.sip_by_uniqid(&sip_uniqid) {
            Some(r) => r,
            None => st.alloc_row(),
        };
        let disabled = st.sips.get(&row).map(|s| s.disabled.clone()).unwrap_or_else(|| "0".into());
        let sip = SipRow {
            uniqid: sip_uniqid,
            extension: number.clone(),
            secret: or_default("sip_secret", new_legacy_secret(rng)),
            sip_type: or_default("sip_type", "peer".into()),
            qualify: or_default("sip_qualify", "1".into()),
            qualifyfreq: int_or("sip_qualifyfreq", 60),
            enable_recording: or_default("sip_enableRecording", "1".into()),
            dtmfmode: or_default("sip_dtmfmode", "auto".into()),
            transport: form
                .get("sip_transport")
                .cloned()
                .unwrap_or_else(|| legacy_transport_default(release).into()),
            networkfilterid: or_default("sip_networkfilterid", "none".into()),
            manualattributes: get("sip_manualattributes").to_string(),
            description: username.clone(),
            disabled,
        };
        st.sips.insert(row, sip);

        let row = match st.fwd_for(&number) {
            Some(r) => r,
            None => st.alloc_row(),
        };
        st.fwds.insert(
            row,
            FwdRow {
                extension: number.clone(),
                ringlength: int_or("fwd_ringlength", 45),
                forwarding: fwd("fwd_forwarding"),
                onbusy: fwd("fwd_forwardingonbusy"),
                onunavailable: fwd("fwd_forwardingonunavailable"),
            },
        );

        let mobile = digits(get("mobile_number"));
        if mobile.is_empty() {
            st.delete_mobile(uid);
        } else {
            let mext = match st.mobile_ext_of_user(uid) {
                Some(id) => id,
                None => st.alloc_ext(),
            };
            if let Some(other) = st.ext_with_number(&mobile, Some(mext)) {
                return Err(vec![st.duplicate(other, None)]);
            }
            st.exts.insert(
                mext,
                ExtRow {
                    number: mobile.clone(),
                    kind: ExtKind::External,
                    userid: Some(uid),
                    callerid: username.clone(),
                    show_in_phonebook: "1".into(),
                    public_access: "0".into(),
                    is_general_user_number: "1".into(),
                    app_type: String::new(),
                },
            );
            let uniqid = or_default("mobile_uniqid", new_uniqid("EXTERNAL-", rng));
            let row = match st.phone_by_uniqid(&uniqid) {
                Some(r) => r,
                None => st.alloc_row(),
            };
            st.phones.insert(
                row,
                PhoneRow {
                    uniqid,
                    extension: mobile.clone(),
                    dialstring: or_default("mobile_dialstring", mobile),
                    description: username,
                },
            );
        }
        Ok(ext_id)
    }

    /// v3 save of an effective record (create when `uid` is None).
    pub(super) fn v3_save(
        &mut self,
        uid: Option<u64>,
        f: &V3Fields,
        cfg: &MikoPbxConfig,
        language: Language,
        rng: &mut StdRng,
    ) -> Result<u64, Vec<String>> {
        self.touched();
        let number = f.number.as_deref().unwrap_or_default();
        let may_clash = self.may_clash(uid, number, f.mobile_number.as_deref().unwrap_or_default());
        self.all_or_nothing(may_clash, |st| st.v3_save_rows(uid, f, cfg, language, rng))
    }

    /// The row writes of [`Store::v3_save`].
    fn v3_save_rows(
        &mut self,
        uid: Option<u64>,
        f: &V3Fields,
        cfg: &MikoPbxConfig,
        language: Language,
        rng: &mut StdRng,
    ) -> Result<u64, Vec<String>> {
        let st = self;
        let uid = match uid {
            Some(u) => u,
            None => st.alloc_user(),
        };
        let user = st.users.entry(uid).or_insert_with(|| UserRow {
            username: String::new(),
            email: String::new(),
            avatar: String::new(),
            language: cfg.language.clone(),
        });
        if let Some(v) = &f.user_username {
            user.username = v.clone();
        }
        if let Some(v) = &f.user_email {
            user.email = v.clone();
        }
        if let Some(v) = &f.user_avatar {
            user.avatar = v.clone();
        }
        let username = user.username.clone();
        let number = f.number.clone().unwrap_or_default();

        let (ext_id, old_number) = match st.sip_ext_of_user(uid) {
            Some(id) => (id, st.exts.get(&id).map(|e| e.number.clone())),
            None => (st.alloc_ext(), None),
        };
        if let Some(other) = st.ext_with_number(&number, Some(ext_id)) {
            return Err(vec![format!(
                "Failed to save SIP extension: {}",
                st.duplicate(other, Some(language))
            )]);
        }
        if !st.exts.contains_key(&ext_id) {
            st.exts.insert(
                ext_id,
                ExtRow {
                    number: String::new(),
                    kind: ExtKind::Sip,
                    userid: Some(uid),
                    callerid: String::new(),
                    show_in_phonebook: "1".into(),
                    public_access: "1".into(),
                    is_general_user_number: "1".into(),
                    app_type: String::new(),
                },
            );
        }
        st.exts.update(&ext_id, |ext| {
            ext.number = number.clone();
            ext.callerid = username.clone();
        });

        let old = old_number.unwrap_or_else(|| number.clone());
        let row = match st.sip_for(&old) {
            Some(r) => r,
            None => {
                let r = st.alloc_row();
                st.sips.insert(
                    r,
                    SipRow {
                        uniqid: new_uniqid("SIP-PHONE-", rng),
                        extension: number.clone(),
                        secret: String::new(),
                        sip_type: "peer".into(),
                        qualify: "1".into(),
                        qualifyfreq: 60,
                        enable_recording: "1".into(),
                        dtmfmode: "auto".into(),
                        transport: "udp".into(),
                        networkfilterid: "none".into(),
                        manualattributes: String::new(),
                        description: String::new(),
                        disabled: "0".into(),
                    },
                );
                r
            }
        };
        if let Some(mut sip) = st.sips.get_mut(&row) {
            sip.extension = number.clone();
            sip.description = username.clone();
            set(&mut sip.secret, &f.sip_secret);
            set(&mut sip.dtmfmode, &f.sip_dtmfmode);
            set(&mut sip.transport, &f.sip_transport);
            set(&mut sip.manualattributes, &f.sip_manualattributes);
            set(&mut sip.networkfilterid, &f.sip_networkfilterid);
            if let Some(b) = f.sip_enable_recording {
                sip.enable_recording = if b { "1" } else { "0" }.into();
            }
        }

        let row = match st.fwd_for(&old) {
            Some(r) => r,
            None => {
                let r = st.alloc_row();
                st.fwds.insert(r, FwdRow::default());
                r
            }
        };
        if let Some(mut fwd) = st.fwds.get_mut(&row) {
            fwd.extension = number.clone();
            if let Some(r) = f.fwd_ringlength {
                fwd.ringlength = r;
            }
            set(&mut fwd.forwarding, &f.fwd_forwarding);
            set(&mut fwd.onbusy, &f.fwd_onbusy);
            set(&mut fwd.onunavailable, &f.fwd_onunavailable);
        }

        match f.mobile_number.as_deref() {
            None | Some("") => st.delete_mobile(uid),
            Some(mobile) => {
                let (mext, old_mobile) = match st.mobile_ext_of_user(uid) {
                    Some(id) => (id, st.exts.get(&id).map(|e| e.number.clone())),
                    None => (st.alloc_ext(), None),
                };
                if let Some(other) = st.ext_with_number(mobile, Some(mext)) {
                    return Err(vec![format!(
                        "Failed to save mobile extension: {}",
                        st.duplicate(other, Some(language))
                    )]);
                }
                st.exts.insert(
                    mext,
                    ExtRow {
                        number: mobile.to_string(),
                        kind: ExtKind::External,
                        userid: Some(uid),
                        callerid: username.clone(),
                        show_in_phonebook: "1".into(),
                        public_access: "0".into(),
                        is_general_user_number: "1".into(),
                        app_type: String::new(),
                    },
                );
                let found = old_mobile.and_then(|m| st.phone_for(&m));
                let row = match found {
                    Some(r) => r,
                    None => {
                        let r = st.alloc_row();
                        st.phones.insert(
                            r,
                            PhoneRow {
                                uniqid: new_uniqid("EXTERNAL-", rng),
                                extension: String::new(),
                                dialstring: String::new(),
                                description: String::new(),
                            },
                        );
                        r
                    }
                };
                if let Some(mut p) = st.phones.get_mut(&row) {
                    p.extension = mobile.to_string();
                    p.description = username;
                    set(&mut p.dialstring, &f.mobile_dialstring);
                }
            }
        }
        Ok(uid)
    }

    /// Direct row edits for `Simulator::tamper` (legacy field names).
    pub(super) fn tamper(&mut self, ext_id: u64, patch: &Map<String, Value>) -> Result<(), String> {
        self.touched();
        let rec =
            self.record_of_ext(ext_id).ok_or_else(|| format!("no employee with extension id {ext_id}"))?;
        let uid = rec.user_id.unwrap_or_default();
        let mut number = rec.number.clone();
        let sip_row = self.sip_for(&number);
        let fwd_row = self.fwd_for(&number);
        for (key, value) in patch {
            let v = value_to_form(value);
            match key.as_str() {
                "user_username" | "user_email" | "user_avatar" => {
                    if let Some(u) = self.users.get_mut(&uid) {
                        match key.as_str() {
                            "user_username" => u.username = v,
                            "user_email" => u.email = v,
                            _ => u.avatar = v,
                        }
                    }
                }
                "number" => {
                    if let Some(other) = self.ext_with_number(&v, Some(ext_id)) {
                        return Err(self.duplicate(other, None));
                    }
                    self.sips.update_where(|s| s.extension == number, |s| s.extension = v.clone());
                    self.fwds.update_where(|f| f.extension == number, |f| f.extension = v.clone());
                    if let Some(mut e) = self.exts.get_mut(&ext_id) {
                        e.number = v.clone();
                    }
                    number = v;
                }
                "show_in_phonebook" | "public_access" => {
                    if let Some(mut e) = self.exts.get_mut(&ext_id) {
                        if key == "show_in_phonebook" {
                            e.show_in_phonebook = v;
                        } else {
                            e.public_access = v;
                        }
                    }
                }
                k if k.starts_with("sip_") && k != "sip_uniqid" => {
                    let mut s = sip_row
                        .and_then(|r| self.sips.get_mut(&r))
                        .ok_or_else(|| format!("extension {ext_id} has no Sip row"))?;
                    match k {
                        "sip_secret" => s.secret = v,
                        "sip_type" => s.sip_type = v,
                        "sip_qualify" => s.qualify = v,
                        "sip_qualifyfreq" => s.qualifyfreq = php_int(&v),
                        "sip_enableRecording" => s.enable_recording = v,
                        "sip_dtmfmode" => s.dtmfmode = v,
                        "sip_transport" => s.transport = v,
                        "sip_networkfilterid" => s.networkfilterid = v,
                        "sip_manualattributes" => s.manualattributes = v,
                        "sip_disabled" => s.disabled = v,
                        _ => return Err(format!("unknown field {k}")),
                    }
                }
                k if k.starts_with("fwd_") => {
                    let row = match fwd_row {
                        Some(r) => r,
                        None => return Err(format!("extension {ext_id} has no forwarding row")),
                    };
                    let mut f = self
                        .fwds
                        .get_mut(&row)
                        .ok_or_else(|| format!("extension {ext_id} has no forwarding row"))?;
                    match k {
                        "fwd_ringlength" => f.ringlength = php_int(&v),
                        "fwd_forwarding" => f.forwarding = v,
                        "fwd_forwardingonbusy" => f.onbusy = v,
                        "fwd_forwardingonunavailable" => f.onunavailable = v,
                        _ => return Err(format!("unknown field {k}")),
                    }
                }
                "mobile_number" => {
                    if v.is_empty() {
                        self.delete_mobile(uid);
                        continue;
                    }
                    let mext = match self.mobile_ext_of_user(uid) {
                        Some(id) => id,
                        None => {
                            let id = self.alloc_ext();
                            self.exts.insert(
                                id,
                                ExtRow {
                                    number: String::new(),
                                    kind: ExtKind::External,
                                    userid: Some(uid),
                                    callerid: rec.user_username.clone(),
                                    show_in_phonebook: "1".into(),
                                    public_access: "0".into(),
                                    is_general_user_number: "1".into(),
                                    app_type: String::new(),
                                },
                            );
                            id
                        }
                    };
                    if let Some(other) = self.ext_with_number(&v, Some(mext)) {
                        return Err(self.duplicate(other, None));
                    }
                    let old = self.exts.get(&mext).map(|e| e.number.clone()).unwrap_or_default();
                    match self.phone_for(&old).filter(|_| !old.is_empty()) {
                        Some(r) => {
                            if let Some(mut p) = self.phones.get_mut(&r) {
                                p.extension = v.clone();
                            }
                        }
                        None => {
                            let r = self.alloc_row();
                            let uniqid = format!("EXTERNAL-{:08X}", self.next_row * 7919);
                            self.phones.insert(
                                r,
                                PhoneRow {
                                    uniqid,
                                    extension: v.clone(),
                                    dialstring: v.clone(),
                                    description: rec.user_username.clone(),
                                },
                            );
                        }
                    }
                    if let Some(mut e) = self.exts.get_mut(&mext) {
                        e.number = v;
                    }
                }
                "mobile_dialstring" => {
                    let mobile = self
                        .mobile_ext_of_user(uid)
                        .and_then(|m| self.exts.get(&m))
                        .map(|e| e.number.clone())
                        .ok_or_else(|| format!("extension {ext_id} has no mobile"))?;
                    let row =
                        self.phone_for(&mobile).ok_or_else(|| format!("extension {ext_id} has no mobile"))?;
                    if let Some(mut p) = self.phones.get_mut(&row) {
                        p.dialstring = v;
                    }
                }
                other => return Err(format!("field {other} cannot be tampered with")),
            }
        }
        Ok(())
    }
}

pub(super) fn set(target: &mut String, value: &Option<String>) {
    if let Some(v) = value {
        target.clone_from(v);
    }
}
