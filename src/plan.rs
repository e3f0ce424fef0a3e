//! The planner: what to do on one phone system to bring it in line with the Employees
//! that list it.
//!
//! Pure: no I/O, no clock, no Kubernetes. The controller and the CLI gather the inputs
//! (desired accounts from Employees, the accounts a backend listed, the claims recorded in
//! Employee statuses) and apply the [`Plan`] it returns; all the rules that keep accounts
//! safe live here, where they are tested with properties.
//!
//! The rules:
//! - An account is owned when a [`Claim`] names its id. Accounts nobody claims are never
//!   changed or deleted; one on an Employee's extension is adopted only with
//!   [`Adoption::Adopt`], or when it carries this Employee's ownership marker, or when this
//!   Employee has a pending create for that extension (the create reached the PBX but its
//!   result was lost).
//! - Deletes come only from a claim whose Employee no longer wants an account here
//!   (deleted with `deletionPolicy: Delete`, or the system dropped from its list). A
//!   claim that is only a recorded create covers the unowned account on its extension:
//!   the create may have made it before its answer was lost.
//! - A partial listing yields neither deletes nor creates: what is missing from it may
//!   well exist. A listing with records the backend could not read ([`Unreadable`]) is
//!   partial for deletes; it blocks the creates on those records' extensions (all creates
//!   when one has no readable extension), and an Employee whose claimed account is one of
//!   them waits instead of being planned again.
//! - Two Employees on one extension: the one that already owns the account keeps it,
//!   otherwise the older Employee (lower [`Desired::rank`]) gets it; the other is a
//!   conflict.
//! - Only fields an Employee declares and the backend can read back are compared.
//! - Nothing is planned that the backend cannot do or the policy forbids; what the backend
//!   cannot do becomes a [`Manual`] item for a person.
//! - The deletion guard is all or nothing: when more deletes are wanted than the guard
//!   allows, none are made and all are held. Deleting "up to the limit" would only slow a
//!   mass deletion down to the limit per resync.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

use serde::Serialize;

pub use crate::api::phone_system::{Adoption, Policy};

/// Identifies an Employee.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
}

impl Owner {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Owner { namespace: namespace.into(), name: name.into() }
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A field of the neutral account model.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Field {
    Extension,
    DisplayName,
    GivenName,
    FamilyName,
    Email,
    Mobile,
    Login,
    Enabled,
    Password,
    /// A backend-specific setting, by the key the backend uses in [`Attributes::settings`].
    Setting(String),
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Field::Extension => f.write_str("extension"),
            Field::DisplayName => f.write_str("displayName"),
            Field::GivenName => f.write_str("givenName"),
            Field::FamilyName => f.write_str("familyName"),
            Field::Email => f.write_str("email"),
            Field::Mobile => f.write_str("mobile"),
            Field::Login => f.write_str("login"),
            Field::Enabled => f.write_str("enabled"),
            Field::Password => f.write_str("password"),
            Field::Setting(key) => f.write_str(key),
        }
    }
}

/// The fields of an account, in neutral form. `None`: not declared (desired) or not known
/// (observed). Values are normalised by the backend (e.g. booleans as `true`/`false`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attributes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mobile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
}

impl Attributes {
    /// The value of `field` as text, for comparison and for people to read.
    pub fn get(&self, field: &Field) -> Option<String> {
        match field {
            Field::DisplayName => self.display_name.clone(),
            Field::GivenName => self.given_name.clone(),
            Field::FamilyName => self.family_name.clone(),
            Field::Email => self.email.clone(),
            Field::Mobile => self.mobile.clone(),
            Field::Login => self.login.clone(),
            Field::Enabled => self.enabled.map(|b| b.to_string()),
            Field::Setting(key) => self.settings.get(key).cloned(),
            Field::Extension | Field::Password => None,
        }
    }

    /// Every field that has a value, in a stable order.
    pub fn declared(&self) -> Vec<Field> {
        let mut fields = Vec::new();
        let simple = [
            (Field::DisplayName, self.display_name.is_some()),
            (Field::GivenName, self.given_name.is_some()),
            (Field::FamilyName, self.family_name.is_some()),
            (Field::Email, self.email.is_some()),
            (Field::Mobile, self.mobile.is_some()),
            (Field::Login, self.login.is_some()),
            (Field::Enabled, self.enabled.is_some()),
        ];
        fields.extend(simple.into_iter().filter(|(_, set)| *set).map(|(f, _)| f));
        fields.extend(self.settings.keys().map(|k| Field::Setting(k.clone())));
        fields
    }
}

/// An account as a backend listed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// The backend's id for it (what update and delete take).
    pub id: String,
    /// Its internal number: the natural key.
    pub extension: String,
    pub attributes: Attributes,
    /// The Employee named in the account's ownership marker, on backends with a free field
    /// for one (Telphin `extra_params`). Recovers a claim lost with a status write; never a
    /// reason to delete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marker: Option<Owner>,
}

/// What one Employee wants on this system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Desired {
    pub owner: Owner,
    /// Seniority: lower wins a contested extension (creation time, then name).
    pub rank: i64,
    pub extension: String,
    pub attributes: Attributes,
    /// Fingerprint of the password to set; compared with the claim's, never the password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_fingerprint: Option<String>,
}

/// An Employee's recorded ownership of an account (from its status).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Claim {
    pub owner: Owner,
    /// `None`: a create was recorded as intended but its result never was.
    pub external_id: Option<String>,
    pub extension: Option<String>,
    pub password_fingerprint: Option<String>,
}

/// What a backend can do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    pub create: bool,
    pub update: bool,
    pub delete: bool,
    /// Fields `list` returns, so drift in them can be seen.
    pub readable: BTreeSet<Field>,
    /// Fields `update` can change (and `create` sets).
    pub writable: BTreeSet<Field>,
}

/// A record a backend listed but could not read: what little is known of it. It may be
/// anyone's account, so the planner neither deletes nor creates around it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unreadable {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
    /// What could not be read, naming the system's field (`number: invalid type: map`).
    pub problem: String,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("record")?;
        if let Some(id) = &self.id {
            write!(f, " {id}")?;
        }
        if let Some(extension) = &self.extension {
            write!(f, " (extension {extension})")?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// The accounts a backend listed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub accounts: Vec<Account>,
    /// `false` when some page failed or the backend says the list was cut short.
    pub complete: bool,
    /// Records listed but not readable.
    pub unreadable: Vec<Unreadable>,
}

impl Observed {
    /// Every account was seen and read: what is not listed does not exist.
    pub fn is_whole(&self) -> bool {
        self.complete && self.unreadable.is_empty()
    }

    /// Whether an account on `extension` may exist unseen: a create there could make a
    /// second one.
    pub fn may_hide(&self, extension: &str) -> bool {
        !self.complete
            || self.unreadable.iter().any(|u| u.extension.as_deref().is_none_or(|e| e == extension))
    }

    /// Whether the account `id` was listed but could not be read.
    pub fn unread(&self, id: &str) -> bool {
        self.unreadable.iter().any(|u| u.id.as_deref() == Some(id))
    }
}

/// The mass-deletion guard: the most deletes one plan may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guard {
    pub max_deletes: u32,
}

/// Everything the planner needs about one system.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// Shared, not copied, into the plan's actions: 10,000 creates would otherwise hold
    /// a second copy of every Desired.
    pub desired: &'a [Arc<Desired>],
    pub observed: &'a Observed,
    pub claims: &'a [Claim],
    pub capabilities: &'a Capabilities,
    pub policy: Policy,
    pub adoption: Adoption,
    pub guard: Guard,
}

/// One field that differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub field: Field,
    /// Values are never filled for [`Field::Password`].
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Create {
    pub desired: Arc<Desired>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Update {
    pub desired: Arc<Desired>,
    pub account: Account,
    pub changes: Vec<Change>,
}

/// Why an existing account becomes an Employee's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AdoptReason {
    /// `adoption: adopt` on the PhoneSystem.
    Policy,
    /// The account carries this Employee's ownership marker.
    Marker,
    /// This Employee's create was recorded as pending: it reached the PBX, the answer did
    /// not reach us.
    PendingCreate,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Adopt {
    pub desired: Arc<Desired>,
    pub account: Account,
    pub reason: AdoptReason,
    /// Changes to make after claiming (empty when the policy forbids updates).
    pub changes: Vec<Change>,
}

/// Why an owned account goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DeleteReason {
    /// The Employee no longer lists this system, or is being deleted with `Delete`.
    NotWanted,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delete {
    pub owner: Owner,
    pub account: Account,
    pub reason: DeleteReason,
}

/// Why a claim is dropped without touching the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ReleaseReason {
    /// The account is no longer on the system.
    Gone,
    /// Not wanted, but the policy keeps accounts (`upsert-only`, `create-only`).
    PolicyKeeps,
    /// Not wanted, only a create was ever recorded, and no account it could have made is
    /// on the system.
    PendingNotWanted,
    /// Another Employee's claim names the same account (a copied status).
    DuplicateClaim,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    pub owner: Owner,
    pub external_id: Option<String>,
    pub reason: ReleaseReason,
}

/// Who holds a contested extension.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Holder {
    /// An account no Employee owns.
    Unmanaged { id: String },
    /// Another Employee (owning it, or senior to this one).
    Employee(Owner),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conflict {
    pub owner: Owner,
    pub extension: String,
    pub holder: Holder,
}

/// What a person must do because the backend's API cannot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ManualKind {
    Create,
    Update { changes: Vec<Change> },
    Delete,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Manual {
    pub owner: Owner,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    pub kind: ManualKind,
}

/// Why a wanted account was neither created nor found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum WaitReason {
    /// The listing was partial: the account may exist in the part we did not see.
    IncompleteList,
    /// The account (claimed, or on the wanted extension) was listed but could not be
    /// read.
    UnreadableRecord,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Wait {
    pub owner: Owner,
    pub reason: WaitReason,
}

/// Differences the policy (`create-only`) keeps as they are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Kept {
    pub owner: Owner,
    pub account_id: String,
    pub changes: Vec<Change>,
}

/// What to do on one system. Empty ([`Plan::is_noop`]) when it is in line.
///
/// Apply in this order: deletes, releases, updates, adoptions, creates. An extension freed
/// by a delete or an update may be taken by a create of the same plan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub creates: Vec<Create>,
    pub updates: Vec<Update>,
    pub adoptions: Vec<Adopt>,
    pub deletes: Vec<Delete>,
    /// Deletes the guard holds back.
    pub held_deletes: Vec<Delete>,
    pub releases: Vec<Release>,
    pub conflicts: Vec<Conflict>,
    pub manual: Vec<Manual>,
    pub waits: Vec<Wait>,
    pub kept: Vec<Kept>,
    /// Employees whose account matches, with its id.
    pub in_sync: Vec<(Owner, String)>,
    /// Accounts on the system nobody owns (left alone).
    pub unmanaged: usize,
}

impl Plan {
    /// Nothing to write, to the system or to a claim.
    pub fn is_noop(&self) -> bool {
        self.creates.is_empty()
            && self.updates.is_empty()
            && self.adoptions.is_empty()
            && self.deletes.is_empty()
            && self.releases.is_empty()
    }

    /// Writes to the phone system this plan makes.
    pub fn system_writes(&self) -> usize {
        self.creates.len()
            + self.updates.len()
            + self.deletes.len()
            + self.adoptions.iter().filter(|a| !a.changes.is_empty()).count()
    }

    /// Whether the deletion guard held anything back.
    pub fn guard_tripped(&self) -> bool {
        !self.held_deletes.is_empty()
    }
}

/// Plans one system. See the module docs for the rules.
pub fn plan(inputs: Inputs<'_>) -> Plan {
    Planner::new(inputs).run()
}

struct Planner<'a> {
    inputs: Inputs<'a>,
    by_id: HashMap<&'a str, &'a Account>,
    /// Accounts by the extension they have now, each list sorted by id.
    by_extension: HashMap<&'a str, Vec<&'a Account>>,
    /// Accounts by the extension an update of this plan moves them to.
    moved_into: HashMap<String, Vec<&'a Account>>,
    /// Valid claims: account id -> claim.
    owned: HashMap<&'a str, &'a Claim>,
    /// Each owner's claim (one per owner and system).
    claim_of: HashMap<&'a Owner, &'a Claim>,
    /// Accounts this plan deletes: their extensions are free for others.
    deleted: BTreeSet<&'a str>,
    /// Where each owned account's extension will be once updates are applied.
    moved: HashMap<&'a str, String>,
    /// Extensions given to an Employee in this plan.
    reserved: HashMap<String, Owner>,
    /// Unowned accounts adopted in this plan.
    adopted: BTreeSet<&'a str>,
    plan: Plan,
}

impl<'a> Planner<'a> {
    fn new(inputs: Inputs<'a>) -> Self {
        let by_id = inputs.observed.accounts.iter().map(|a| (a.id.as_str(), a)).collect();
        let mut by_extension: HashMap<&str, Vec<&Account>> = HashMap::new();
        for account in &inputs.observed.accounts {
            by_extension.entry(account.extension.as_str()).or_default().push(account);
        }
        for list in by_extension.values_mut() {
            list.sort_by(|a, b| a.id.cmp(&b.id));
        }
        Planner {
            inputs,
            by_id,
            by_extension,
            moved_into: HashMap::new(),
            owned: HashMap::new(),
            claim_of: HashMap::new(),
            deleted: BTreeSet::new(),
            moved: HashMap::new(),
            reserved: HashMap::new(),
            adopted: BTreeSet::new(),
            plan: Plan::default(),
        }
    }

    /// Decides in an order that makes one plan enough: what leaves first (deletes,
    /// releases), then where owned accounts end up, then who gets the extensions left.
    /// The applier must keep that order too (see [`Plan`]).
    fn run(mut self) -> Plan {
        self.index_claims();
        let mut desired: Vec<&Arc<Desired>> = self.inputs.desired.iter().collect();
        desired.sort_by(|a, b| (a.rank, &a.owner).cmp(&(b.rank, &b.owner)));
        // An owner listed twice (should not happen: one entry per system) plans once.
        desired.dedup_by(|a, b| a.owner == b.owner);

        self.plan_unwanted(&desired);
        let (owned, unowned): (Vec<&Arc<Desired>>, Vec<&Arc<Desired>>) =
            desired.into_iter().partition(|d| self.owned_account(&d.owner).is_some());
        for d in owned {
            if let Some(account) = self.owned_account(&d.owner) {
                self.plan_owned(d, account);
            }
        }
        for d in unowned {
            if self.claimed_unreadable(&d.owner) {
                self.plan.waits.push(Wait { owner: d.owner.clone(), reason: WaitReason::UnreadableRecord });
                continue;
            }
            self.plan_unowned(d);
        }
        self.plan.unmanaged = self
            .inputs
            .observed
            .accounts
            .iter()
            .filter(|a| !self.owned.contains_key(a.id.as_str()) && !self.adopted.contains(a.id.as_str()))
            .count();
        self.plan
    }

    fn index_claims(&mut self) {
        let mut claims: Vec<&Claim> = self.inputs.claims.iter().collect();
        claims.sort_by(|a, b| a.owner.cmp(&b.owner));
        for claim in claims {
            if self.claim_of.contains_key(&claim.owner) {
                continue;
            }
            if let Some(id) = claim.external_id.as_deref()
                && self.by_id.contains_key(id)
            {
                if self.owned.contains_key(id) {
                    self.plan.releases.push(Release {
                        owner: claim.owner.clone(),
                        external_id: claim.external_id.clone(),
                        reason: ReleaseReason::DuplicateClaim,
                    });
                    continue;
                }
                self.owned.insert(id, claim);
            }
            self.claim_of.insert(&claim.owner, claim);
        }
    }

    /// The owner's claimed account is among the records that could not be read.
    fn claimed_unreadable(&self, owner: &Owner) -> bool {
        let id = self.claim_of.get(owner).and_then(|c| c.external_id.as_deref());
        id.is_some_and(|id| self.inputs.observed.unread(id))
    }

    fn owned_account(&self, owner: &Owner) -> Option<&'a Account> {
        let id = self.claim_of.get(owner)?.external_id.as_deref()?;
        let claim = self.owned.get(id)?;
        if claim.owner == *owner { self.by_id.get(id).copied() } else { None }
    }

    /// The extension an account will have once this plan is applied; `None` once deleted.
    fn extension_after(&self, account: &'a Account) -> Option<&str> {
        if self.deleted.contains(account.id.as_str()) {
            return None;
        }
        Some(self.moved.get(account.id.as_str()).map_or(account.extension.as_str(), String::as_str))
    }

    /// Accounts that will hold `extension`, other than `except`.
    fn holders(&self, extension: &str, except: Option<&str>) -> Vec<&'a Account> {
        let now = self.by_extension.get(extension).into_iter().flatten();
        let arriving = self.moved_into.get(extension).into_iter().flatten();
        now.chain(arriving)
            .copied()
            .filter(|a| Some(a.id.as_str()) != except && self.extension_after(a) == Some(extension))
            .collect()
    }

    fn holder_of(&self, account: &Account) -> Holder {
        match self.owned.get(account.id.as_str()) {
            Some(claim) => Holder::Employee(claim.owner.clone()),
            None => Holder::Unmanaged { id: account.id.clone() },
        }
    }

    /// Claims whose Employee no longer wants an account here.
    fn plan_unwanted(&mut self, desired: &[&Arc<Desired>]) {
        let wanted: BTreeSet<&Owner> = desired.iter().map(|d| &d.owner).collect();
        let mut unwanted: Vec<&'a Claim> =
            self.claim_of.values().copied().filter(|c| !wanted.contains(&c.owner)).collect();
        unwanted.sort_by(|a, b| a.owner.cmp(&b.owner));
        let complete = self.inputs.observed.is_whole();
        let mut deletes = Vec::new();
        for claim in unwanted {
            let release = |reason| Release {
                owner: claim.owner.clone(),
                external_id: claim.external_id.clone(),
                reason,
            };
            let account = match claim.external_id.as_deref() {
                Some(id) => self.by_id.get(id).copied(),
                // Only a create was recorded: the account it may have made before its
                // answer was lost is the unowned one on that extension, unless another
                // Employee's marker says otherwise.
                None => {
                    claim.extension.as_deref().and_then(|ext| self.by_extension.get(ext)).and_then(|list| {
                        list.iter().copied().find(|a| {
                            !self.owned.contains_key(a.id.as_str())
                                && a.marker.as_ref().is_none_or(|m| *m == claim.owner)
                        })
                    })
                }
            };
            let Some(account) = account else {
                if complete {
                    let reason = if claim.external_id.is_some() {
                        ReleaseReason::Gone
                    } else {
                        ReleaseReason::PendingNotWanted
                    };
                    self.plan.releases.push(release(reason));
                }
                continue;
            };
            let id = account.id.as_str();
            // Ours from here on: no one else adopts it in this plan.
            self.owned.insert(id, claim);
            if !self.inputs.policy.deletes() {
                // Released now, so the account is free for adoption in this same plan.
                self.plan.releases.push(release(ReleaseReason::PolicyKeeps));
                self.owned.remove(id);
            } else if !self.inputs.capabilities.delete {
                self.plan.manual.push(Manual {
                    owner: claim.owner.clone(),
                    account_id: Some(id.to_owned()),
                    kind: ManualKind::Delete,
                });
            } else if complete {
                deletes.push(Delete {
                    owner: claim.owner.clone(),
                    account: account.clone(),
                    reason: DeleteReason::NotWanted,
                });
            }
        }
        let limit = usize::try_from(self.inputs.guard.max_deletes).unwrap_or(usize::MAX);
        if deletes.len() > limit {
            self.plan.held_deletes = deletes;
        } else {
            for delete in &deletes {
                if let Some(account) = self.by_id.get(delete.account.id.as_str()) {
                    self.deleted.insert(account.id.as_str());
                }
            }
            self.plan.deletes = deletes;
        }
    }

    fn wants_updates(&self) -> bool {
        self.inputs.policy.updates()
    }

    /// Fields that differ between `d` and `account`, among those the backend can read.
    fn diff(&self, d: &Desired, account: &Account, claim: Option<&Claim>) -> Vec<Change> {
        let readable = &self.inputs.capabilities.readable;
        let mut changes = Vec::new();
        if d.extension != account.extension && readable.contains(&Field::Extension) {
            changes.push(Change {
                field: Field::Extension,
                from: Some(account.extension.clone()),
                to: Some(d.extension.clone()),
            });
        }
        changes.extend(d.attributes.declared().into_iter().filter(|f| readable.contains(f)).filter_map(
            |field| {
                let to = d.attributes.get(&field);
                let from = account.attributes.get(&field);
                (from != to).then_some(Change { field, from, to })
            },
        ));
        let applied = claim.and_then(|c| c.password_fingerprint.as_deref());
        if d.password_fingerprint.is_some() && d.password_fingerprint.as_deref() != applied {
            changes.push(Change { field: Field::Password, from: None, to: None });
        }
        changes
    }

    /// Splits changes into what the backend can write now, what a person must do, and what
    /// the policy keeps.
    fn route_changes(&mut self, d: &Desired, account: &Account, changes: Vec<Change>) -> Vec<Change> {
        if changes.is_empty() {
            return changes;
        }
        if !self.wants_updates() {
            self.plan.kept.push(Kept { owner: d.owner.clone(), account_id: account.id.clone(), changes });
            return Vec::new();
        }
        let caps = self.inputs.capabilities;
        let (doable, manual): (Vec<Change>, Vec<Change>) =
            changes.into_iter().partition(|c| caps.update && caps.writable.contains(&c.field));
        if !manual.is_empty() {
            self.plan.manual.push(Manual {
                owner: d.owner.clone(),
                account_id: Some(account.id.clone()),
                kind: ManualKind::Update { changes: manual },
            });
        }
        doable
    }

    fn plan_owned(&mut self, d: &Arc<Desired>, account: &'a Account) {
        let claim = self.claim_of.get(&d.owner).copied();
        let mut changes = self.diff(d, account, claim);
        let mut conflicted = false;
        if changes.iter().any(|c| c.field == Field::Extension) {
            // Moving onto an extension another account holds (even one that is moving away
            // itself) would collide on the PBX: stay put and say so.
            let holder = match self.reserved.get(&d.extension) {
                Some(other) => Some(Holder::Employee(other.clone())),
                None => self.holders(&d.extension, Some(&account.id)).first().map(|a| self.holder_of(a)),
            };
            if let Some(holder) = holder {
                changes.retain(|c| c.field != Field::Extension);
                self.conflict(d, holder);
                conflicted = true;
            }
        }
        if changes.is_empty() && !conflicted {
            self.reserved.insert(account.extension.clone(), d.owner.clone());
            self.plan.in_sync.push((d.owner.clone(), account.id.clone()));
            return;
        }
        let changes = self.route_changes(d, account, changes);
        let moves = changes.iter().any(|c| c.field == Field::Extension);
        if moves {
            self.moved.insert(account.id.as_str(), d.extension.clone());
            self.moved_into.entry(d.extension.clone()).or_default().push(account);
            self.reserved.insert(d.extension.clone(), d.owner.clone());
        } else {
            self.reserved.insert(account.extension.clone(), d.owner.clone());
        }
        if !changes.is_empty() {
            self.plan.updates.push(Update { desired: Arc::clone(d), account: account.clone(), changes });
        }
    }

    fn plan_unowned(&mut self, d: &Arc<Desired>) {
        if let Some(other) = self.reserved.get(&d.extension) {
            let holder = Holder::Employee(other.clone());
            return self.conflict(d, holder);
        }
        let candidate =
            self.holders(&d.extension, None).into_iter().find(|a| !self.adopted.contains(a.id.as_str()));
        let Some(account) = candidate else {
            return self.plan_create(d);
        };
        if self.owned.contains_key(account.id.as_str()) {
            let holder = self.holder_of(account);
            return self.conflict(d, holder);
        }
        let claim = self.claim_of.get(&d.owner).copied();
        let pending = claim
            .is_some_and(|c| c.external_id.is_none() && c.extension.as_deref() == Some(d.extension.as_str()));
        let reason = if account.marker.as_ref() == Some(&d.owner) {
            AdoptReason::Marker
        } else if pending {
            AdoptReason::PendingCreate
        } else if self.inputs.adoption == Adoption::Adopt {
            AdoptReason::Policy
        } else {
            return self.conflict(d, Holder::Unmanaged { id: account.id.clone() });
        };
        self.reserved.insert(d.extension.clone(), d.owner.clone());
        self.adopted.insert(account.id.as_str());
        // A pending create sent the password with it; an adopted account's is unknown.
        let applied = match reason {
            AdoptReason::PendingCreate => claim,
            AdoptReason::Policy | AdoptReason::Marker => None,
        };
        let changes = self.diff(d, account, applied);
        let changes = self.route_changes(d, account, changes);
        self.plan.adoptions.push(Adopt { desired: Arc::clone(d), account: account.clone(), reason, changes });
    }

    fn plan_create(&mut self, d: &Arc<Desired>) {
        let observed = self.inputs.observed;
        if observed.may_hide(&d.extension) {
            let reason =
                if observed.complete { WaitReason::UnreadableRecord } else { WaitReason::IncompleteList };
            self.plan.waits.push(Wait { owner: d.owner.clone(), reason });
            return;
        }
        self.reserved.insert(d.extension.clone(), d.owner.clone());
        if self.inputs.capabilities.create {
            self.plan.creates.push(Create { desired: Arc::clone(d) });
        } else {
            self.plan.manual.push(Manual {
                owner: d.owner.clone(),
                account_id: None,
                kind: ManualKind::Create,
            });
        }
    }

    fn conflict(&mut self, d: &Desired, holder: Holder) {
        self.plan.conflicts.push(Conflict { owner: d.owner.clone(), extension: d.extension.clone(), holder });
    }
}

#[cfg(test)]
mod tests;
