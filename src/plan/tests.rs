use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn owner(name: &str) -> Owner {
    Owner::new("ns", name)
}

fn attrs(name: &str) -> Attributes {
    Attributes {
        display_name: Some(name.to_owned()),
        email: Some(format!("{name}@example.com")),
        ..Attributes::default()
    }
}

fn desired(name: &str, rank: i64, extension: &str) -> Desired {
    Desired {
        owner: owner(name),
        rank,
        extension: extension.to_owned(),
        attributes: attrs(name),
        password_fingerprint: None,
    }
}

fn account(id: &str, extension: &str, name: &str) -> Account {
    Account { id: id.to_owned(), extension: extension.to_owned(), attributes: attrs(name), marker: None }
}

fn claim(name: &str, id: &str) -> Claim {
    Claim {
        owner: owner(name),
        external_id: Some(id.to_owned()),
        extension: None,
        password_fingerprint: None,
    }
}

fn all_fields() -> BTreeSet<Field> {
    [
        Field::Extension,
        Field::DisplayName,
        Field::GivenName,
        Field::FamilyName,
        Field::Email,
        Field::Mobile,
        Field::Login,
        Field::Enabled,
        Field::Password,
        Field::Setting("fwd".into()),
    ]
    .into_iter()
    .collect()
}

fn full() -> Capabilities {
    Capabilities { create: true, update: true, delete: true, readable: all_fields(), writable: all_fields() }
}

/// Thulium and Ringostat: create and list only.
fn create_only_api() -> Capabilities {
    Capabilities { update: false, delete: false, ..full() }
}

#[derive(Debug, Clone)]
struct World {
    desired: Vec<Desired>,
    observed: Observed,
    claims: Vec<Claim>,
    capabilities: Capabilities,
    policy: Policy,
    adoption: Adoption,
    guard: Guard,
}

impl World {
    fn new(desired: Vec<Desired>, accounts: Vec<Account>, claims: Vec<Claim>) -> Self {
        World {
            desired,
            observed: Observed { accounts, complete: true, unreadable: Vec::new() },
            claims,
            capabilities: full(),
            policy: Policy::Sync,
            adoption: Adoption::Refuse,
            guard: Guard { max_deletes: 10 },
        }
    }

    fn plan(&self) -> Plan {
        let desired: Vec<Arc<Desired>> = self.desired.iter().cloned().map(Arc::new).collect();
        plan(Inputs {
            desired: &desired,
            observed: &self.observed,
            claims: &self.claims,
            capabilities: &self.capabilities,
            policy: self.policy,
            adoption: self.adoption,
            guard: self.guard,
        })
    }

    /// A faithful model of an applier and a backend: applies `plan` in the documented
    /// order, writing only what the backend can write and listing back only what it can
    /// read.
    fn apply(&mut self, plan: &Plan) {
        let caps = &self.capabilities;
        let mut accounts: BTreeMap<String, Account> =
            self.observed.accounts.drain(..).map(|a| (a.id.clone(), a)).collect();
        let mut claims: BTreeMap<Owner, Claim> =
            self.claims.drain(..).map(|c| (c.owner.clone(), c)).collect();
        for d in &plan.deletes {
            accounts.remove(&d.account.id);
            claims.remove(&d.owner);
        }
        for r in &plan.releases {
            if claims.get(&r.owner).is_some_and(|c| c.external_id == r.external_id) {
                claims.remove(&r.owner);
            }
        }
        let write = |account: &mut Account, desired: &Desired, changes: &[Change]| {
            for change in changes {
                let to = change.to.clone();
                let a = &mut account.attributes;
                match &change.field {
                    Field::Extension => account.extension = desired.extension.clone(),
                    Field::DisplayName => a.display_name = to,
                    Field::GivenName => a.given_name = to,
                    Field::FamilyName => a.family_name = to,
                    Field::Email => a.email = to,
                    Field::Mobile => a.mobile = to,
                    Field::Login => a.login = to,
                    Field::Enabled => a.enabled = to.map(|v| v == "true"),
                    Field::Setting(k) => {
                        match to {
                            Some(v) => a.settings.insert(k.clone(), v),
                            None => a.settings.remove(k),
                        };
                    }
                    Field::Password => {}
                }
            }
        };
        let fingerprint = |changes: &[Change], desired: &Desired, before: Option<String>| {
            if changes.iter().any(|c| c.field == Field::Password) {
                desired.password_fingerprint.clone()
            } else {
                before
            }
        };
        for u in &plan.updates {
            let account = accounts.get_mut(&u.account.id).unwrap();
            write(account, &u.desired, &u.changes);
            let c = claims.get_mut(&u.desired.owner).unwrap();
            c.password_fingerprint = fingerprint(&u.changes, &u.desired, c.password_fingerprint.clone());
        }
        for a in &plan.adoptions {
            let account = accounts.get_mut(&a.account.id).unwrap();
            write(account, &a.desired, &a.changes);
            let before = match a.reason {
                AdoptReason::PendingCreate => {
                    claims.get(&a.desired.owner).and_then(|c| c.password_fingerprint.clone())
                }
                _ => None,
            };
            claims.insert(
                a.desired.owner.clone(),
                Claim {
                    owner: a.desired.owner.clone(),
                    external_id: Some(a.account.id.clone()),
                    extension: Some(a.desired.extension.clone()),
                    password_fingerprint: fingerprint(&a.changes, &a.desired, before),
                },
            );
        }
        for (n, c) in plan.creates.iter().enumerate() {
            let id = format!("new-{}-{n}", accounts.len());
            let mut account = Account {
                id: id.clone(),
                extension: c.desired.extension.clone(),
                attributes: Attributes::default(),
                marker: None,
            };
            let changes: Vec<Change> = c
                .desired
                .attributes
                .declared()
                .into_iter()
                .filter(|f| caps.writable.contains(f))
                .map(|field| Change { to: c.desired.attributes.get(&field), from: None, field })
                .collect();
            write(&mut account, &c.desired, &changes);
            accounts.insert(id.clone(), account);
            claims.insert(
                c.desired.owner.clone(),
                Claim {
                    owner: c.desired.owner.clone(),
                    external_id: Some(id),
                    extension: Some(c.desired.extension.clone()),
                    password_fingerprint: c.desired.password_fingerprint.clone(),
                },
            );
        }
        // The backend lists back only what it can read.
        let readable = &caps.readable;
        self.observed.accounts = accounts
            .into_values()
            .map(|mut a| {
                let x = &mut a.attributes;
                let keep = |f: Field| readable.contains(&f);
                if !keep(Field::DisplayName) {
                    x.display_name = None;
                }
                if !keep(Field::Email) {
                    x.email = None;
                }
                if !keep(Field::Mobile) {
                    x.mobile = None;
                }
                x.settings.retain(|k, _| readable.contains(&Field::Setting(k.clone())));
                a
            })
            .collect();
        self.observed.complete = true;
        self.claims = claims.into_values().collect();
    }
}

#[test]
fn empty_system_gets_every_account_created() {
    let w = World::new(vec![desired("ann", 1, "201"), desired("bob", 2, "202")], vec![], vec![]);
    let p = w.plan();
    assert_eq!(p.creates.len(), 2);
    assert!(p.updates.is_empty() && p.deletes.is_empty() && p.conflicts.is_empty());
}

#[test]
fn owned_account_in_line_plans_nothing() {
    let w = World::new(
        vec![desired("ann", 1, "201")],
        vec![account("a1", "201", "ann")],
        vec![claim("ann", "a1")],
    );
    let p = w.plan();
    assert!(p.is_noop(), "{p:#?}");
    assert_eq!(p.in_sync, vec![(owner("ann"), "a1".to_owned())]);
}

#[test]
fn drift_in_a_declared_field_is_updated_and_only_that_field() {
    let mut acc = account("a1", "201", "ann");
    acc.attributes.email = Some("someone-else@example.com".into());
    acc.attributes.mobile = Some("48600111222".into()); // not declared: left as the PBX has it
    let w = World::new(vec![desired("ann", 1, "201")], vec![acc], vec![claim("ann", "a1")]);
    let p = w.plan();
    assert_eq!(p.updates.len(), 1);
    assert_eq!(
        p.updates[0].changes,
        vec![Change {
            field: Field::Email,
            from: Some("someone-else@example.com".into()),
            to: Some("ann@example.com".into())
        }]
    );
}

#[test]
fn fields_the_backend_cannot_read_are_not_compared() {
    let mut acc = account("a1", "201", "ann");
    acc.attributes.email = None;
    let mut w = World::new(vec![desired("ann", 1, "201")], vec![acc], vec![claim("ann", "a1")]);
    w.capabilities.readable.remove(&Field::Email);
    assert!(w.plan().is_noop());
}

#[test]
fn unowned_account_on_the_extension_is_refused_by_default() {
    let w = World::new(vec![desired("ann", 1, "201")], vec![account("x9", "201", "stranger")], vec![]);
    let p = w.plan();
    assert!(p.is_noop());
    assert_eq!(p.conflicts[0].holder, Holder::Unmanaged { id: "x9".into() });
    assert_eq!(p.unmanaged, 1);
}

#[test]
fn unowned_account_is_adopted_and_updated_with_adoption_adopt() {
    let mut w = World::new(vec![desired("ann", 1, "201")], vec![account("x9", "201", "stranger")], vec![]);
    w.adoption = Adoption::Adopt;
    let p = w.plan();
    assert_eq!(p.adoptions.len(), 1);
    assert_eq!(p.adoptions[0].reason, AdoptReason::Policy);
    assert_eq!(p.adoptions[0].changes.len(), 2, "display name and email");
    assert_eq!(p.unmanaged, 0);
}

#[test]
fn a_pending_create_is_claimed_not_created_again() {
    let pending = Claim {
        owner: owner("ann"),
        external_id: None,
        extension: Some("201".into()),
        password_fingerprint: Some("fp1".into()),
    };
    let mut d = desired("ann", 1, "201");
    d.password_fingerprint = Some("fp1".into());
    let w = World::new(vec![d], vec![account("n1", "201", "ann")], vec![pending]);
    let p = w.plan();
    assert!(p.creates.is_empty());
    assert_eq!(p.adoptions.len(), 1);
    assert_eq!(p.adoptions[0].reason, AdoptReason::PendingCreate);
    assert!(p.adoptions[0].changes.is_empty(), "the create carried the password: {p:#?}");
}

#[test]
fn a_pending_create_that_never_arrived_is_sent_again() {
    let pending = Claim {
        owner: owner("ann"),
        external_id: None,
        extension: Some("201".into()),
        password_fingerprint: None,
    };
    let w = World::new(vec![desired("ann", 1, "201")], vec![], vec![pending]);
    assert_eq!(w.plan().creates.len(), 1);
}

#[test]
fn the_account_of_a_lost_create_goes_with_its_employee() {
    let pending = Claim {
        owner: owner("ann"),
        external_id: None,
        extension: Some("201".into()),
        password_fingerprint: None,
    };
    let w = World::new(vec![], vec![account("n1", "201", "ann")], vec![pending.clone()]);
    let p = w.plan();
    assert_eq!(p.deletes.len(), 1);
    assert_eq!(p.deletes[0].account.id, "n1");
    // Another Employee's marker on it says it is not ours.
    let mut theirs = account("n1", "201", "bob");
    theirs.marker = Some(owner("bob"));
    let w = World::new(vec![], vec![theirs], vec![pending.clone()]);
    let p = w.plan();
    assert!(p.deletes.is_empty());
    assert_eq!(p.releases[0].reason, ReleaseReason::PendingNotWanted);
    // Nothing on the extension: the create never happened.
    let w = World::new(vec![], vec![], vec![pending]);
    assert_eq!(w.plan().releases[0].reason, ReleaseReason::PendingNotWanted);
}

#[test]
fn an_ownership_marker_recovers_a_lost_claim() {
    let mut acc = account("t1", "201", "ann");
    acc.marker = Some(owner("ann"));
    let w = World::new(vec![desired("ann", 1, "201")], vec![acc], vec![]);
    let p = w.plan();
    assert_eq!(p.adoptions[0].reason, AdoptReason::Marker);
}

#[test]
fn a_marker_never_causes_a_delete() {
    let mut acc = account("t1", "201", "ann");
    acc.marker = Some(owner("ann"));
    let w = World::new(vec![], vec![acc], vec![]);
    let p = w.plan();
    assert!(p.deletes.is_empty() && p.is_noop());
}

#[test]
fn the_older_employee_wins_a_contested_extension() {
    let w = World::new(vec![desired("young", 20, "201"), desired("old", 10, "201")], vec![], vec![]);
    let p = w.plan();
    assert_eq!(p.creates.len(), 1);
    assert_eq!(p.creates[0].desired.owner, owner("old"));
    assert_eq!(p.conflicts[0].owner, owner("young"));
    assert_eq!(p.conflicts[0].holder, Holder::Employee(owner("old")));
}

#[test]
fn an_owner_keeps_its_account_against_an_older_newcomer() {
    let w = World::new(
        vec![desired("young", 20, "201"), desired("old", 10, "201")],
        vec![account("a1", "201", "young")],
        vec![claim("young", "a1")],
    );
    let p = w.plan();
    assert!(p.is_noop(), "{p:#?}");
    assert_eq!(p.conflicts[0].owner, owner("old"));
    assert_eq!(p.conflicts[0].holder, Holder::Employee(owner("young")));
}

#[test]
fn an_unwanted_claim_is_deleted_under_sync() {
    let w = World::new(vec![], vec![account("a1", "201", "ann")], vec![claim("ann", "a1")]);
    let p = w.plan();
    assert_eq!(p.deletes.len(), 1);
    assert_eq!(p.deletes[0].account.id, "a1");
}

#[test]
fn upsert_only_releases_instead_of_deleting() {
    let mut w = World::new(vec![], vec![account("a1", "201", "ann")], vec![claim("ann", "a1")]);
    w.policy = Policy::UpsertOnly;
    let p = w.plan();
    assert!(p.deletes.is_empty());
    assert_eq!(p.releases[0].reason, ReleaseReason::PolicyKeeps);
}

#[test]
fn a_backend_without_delete_asks_a_person() {
    let mut w = World::new(vec![], vec![account("a1", "201", "ann")], vec![claim("ann", "a1")]);
    w.capabilities = create_only_api();
    let p = w.plan();
    assert!(p.deletes.is_empty() && p.releases.is_empty());
    assert_eq!(p.manual[0].kind, ManualKind::Delete);
}

#[test]
fn a_backend_without_update_asks_a_person() {
    let mut acc = account("a1", "201", "ann");
    acc.attributes.email = Some("old@example.com".into());
    let mut w = World::new(vec![desired("ann", 1, "201")], vec![acc], vec![claim("ann", "a1")]);
    w.capabilities = create_only_api();
    let p = w.plan();
    assert!(p.updates.is_empty());
    assert!(matches!(&p.manual[0].kind, ManualKind::Update { changes } if changes[0].field == Field::Email));
}

#[test]
fn create_only_keeps_drift() {
    let mut acc = account("a1", "201", "ann");
    acc.attributes.email = Some("old@example.com".into());
    let mut w = World::new(vec![desired("ann", 1, "201")], vec![acc], vec![claim("ann", "a1")]);
    w.policy = Policy::CreateOnly;
    let p = w.plan();
    assert!(p.is_noop());
    assert_eq!(p.kept[0].changes[0].field, Field::Email);
    assert!(p.in_sync.is_empty(), "drifted is not in sync");
}

#[test]
fn a_partial_list_neither_deletes_nor_creates() {
    let mut w = World::new(
        vec![desired("ann", 1, "201")],
        vec![account("b1", "202", "bob")],
        vec![claim("bob", "b1"), claim("cid", "gone")],
    );
    w.observed.complete = false;
    let p = w.plan();
    assert!(p.deletes.is_empty() && p.creates.is_empty() && p.releases.is_empty());
    assert_eq!(p.waits[0].owner, owner("ann"));
}

fn unreadable(id: Option<&str>, extension: Option<&str>) -> Unreadable {
    Unreadable {
        id: id.map(str::to_owned),
        extension: extension.map(str::to_owned),
        problem: "number: invalid type: map".into(),
    }
}

#[test]
fn an_unreadable_record_blocks_creates_on_its_extension_only() {
    let mut w = World::new(vec![desired("ann", 1, "201"), desired("bob", 2, "202")], vec![], vec![]);
    w.observed.unreadable.push(unreadable(Some("x9"), Some("201")));
    let p = w.plan();
    assert_eq!(p.creates.len(), 1);
    assert_eq!(p.creates[0].desired.owner, owner("bob"));
    assert_eq!(p.waits, vec![Wait { owner: owner("ann"), reason: WaitReason::UnreadableRecord }]);
}

#[test]
fn an_unreadable_record_without_an_extension_blocks_every_create() {
    let mut w = World::new(vec![desired("ann", 1, "201"), desired("bob", 2, "202")], vec![], vec![]);
    w.observed.unreadable.push(unreadable(Some("x9"), None));
    let p = w.plan();
    assert!(p.creates.is_empty());
    assert_eq!(p.waits.len(), 2);
}

#[test]
fn an_unreadable_claimed_account_is_neither_created_again_nor_released() {
    // ann's account is listed but unreadable; cid let go of one that is not listed: with
    // an unreadable record around, "not listed" may be "not read", so neither is touched.
    let mut w =
        World::new(vec![desired("ann", 1, "201")], vec![], vec![claim("ann", "a1"), claim("cid", "c1")]);
    w.observed.unreadable.push(unreadable(Some("a1"), Some("209")));
    let p = w.plan();
    assert!(p.creates.is_empty() && p.deletes.is_empty() && p.releases.is_empty());
    assert_eq!(p.waits, vec![Wait { owner: owner("ann"), reason: WaitReason::UnreadableRecord }]);
}

#[test]
fn updates_go_on_beside_an_unreadable_record() {
    let mut w = World::new(
        vec![desired("ann", 1, "201")],
        vec![account("a1", "201", "old name")],
        vec![claim("ann", "a1")],
    );
    w.observed.unreadable.push(unreadable(None, None));
    assert_eq!(w.plan().updates.len(), 1);
}

#[test]
fn an_account_deleted_by_hand_is_created_again() {
    let w = World::new(vec![desired("ann", 1, "201")], vec![], vec![claim("ann", "gone")]);
    assert_eq!(w.plan().creates.len(), 1);
}

#[test]
fn a_gone_account_of_an_unwanted_claim_is_released() {
    let w = World::new(vec![], vec![], vec![claim("ann", "gone")]);
    assert_eq!(w.plan().releases[0].reason, ReleaseReason::Gone);
}

#[test]
fn the_guard_holds_every_delete_past_its_limit() {
    let accounts = (0..3).map(|i| account(&format!("a{i}"), &format!("20{i}"), "x")).collect();
    let claims = (0..3).map(|i| claim(&format!("e{i}"), &format!("a{i}"))).collect();
    let mut w = World::new(vec![], accounts, claims);
    w.guard = Guard { max_deletes: 2 };
    let p = w.plan();
    assert!(p.deletes.is_empty());
    assert_eq!(p.held_deletes.len(), 3);
    assert!(p.guard_tripped());
    w.guard = Guard { max_deletes: 3 };
    assert_eq!(w.plan().deletes.len(), 3);
}

#[test]
fn a_changed_password_is_pushed() {
    let mut d = desired("ann", 1, "201");
    d.password_fingerprint = Some("new".into());
    let mut c = claim("ann", "a1");
    c.password_fingerprint = Some("old".into());
    let w = World::new(vec![d], vec![account("a1", "201", "ann")], vec![c]);
    let p = w.plan();
    assert_eq!(p.updates[0].changes, vec![Change { field: Field::Password, from: None, to: None }]);
}

#[test]
fn moving_onto_a_taken_extension_is_a_conflict_and_other_changes_go_on() {
    let mut d = desired("ann", 1, "202");
    d.attributes.email = Some("ann@new.example.com".into());
    let w = World::new(
        vec![d],
        vec![account("a1", "201", "ann"), account("x9", "202", "stranger")],
        vec![claim("ann", "a1")],
    );
    let p = w.plan();
    assert_eq!(p.conflicts[0].holder, Holder::Unmanaged { id: "x9".into() });
    assert_eq!(p.updates[0].changes.len(), 1);
    assert_eq!(p.updates[0].changes[0].field, Field::Email);
}

#[test]
fn an_extension_freed_by_a_move_is_taken_in_the_same_plan() {
    let w = World::new(
        vec![desired("ann", 1, "202"), desired("bob", 2, "201")],
        vec![account("a1", "201", "ann")],
        vec![claim("ann", "a1")],
    );
    let p = w.plan();
    assert_eq!(p.updates[0].changes[0].field, Field::Extension);
    assert_eq!(p.creates[0].desired.owner, owner("bob"));
    assert!(p.conflicts.is_empty());
}

#[test]
fn a_copied_claim_is_dropped() {
    let w = World::new(
        vec![desired("ann", 1, "201"), desired("bob", 2, "202")],
        vec![account("a1", "201", "ann")],
        vec![claim("ann", "a1"), claim("bob", "a1")],
    );
    let p = w.plan();
    assert_eq!(p.releases[0].owner, owner("bob"));
    assert_eq!(p.releases[0].reason, ReleaseReason::DuplicateClaim);
}

// ---- properties -------------------------------------------------------------------------

const EXTENSIONS: [&str; 4] = ["10", "11", "12", "13"];
const NAMES: [&str; 3] = ["Ann", "Bob", "Анна"];

fn arb_attributes() -> impl Strategy<Value = Attributes> {
    (
        proptest::option::of(proptest::sample::select(&NAMES[..])),
        proptest::option::of(proptest::sample::select(&["a@x.io", "b@x.io"][..])),
        proptest::option::of(proptest::sample::select(&["15", "30"][..])),
    )
        .prop_map(|(name, email, fwd)| Attributes {
            display_name: name.map(str::to_owned),
            email: email.map(str::to_owned),
            settings: fwd.map(|v| [("fwd".to_owned(), v.to_owned())].into()).unwrap_or_default(),
            ..Attributes::default()
        })
}

fn arb_fields() -> impl Strategy<Value = BTreeSet<Field>> {
    proptest::sample::subsequence(
        vec![
            Field::Extension,
            Field::DisplayName,
            Field::Email,
            Field::Password,
            Field::Setting("fwd".into()),
        ],
        0..=5,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn arb_world() -> impl Strategy<Value = World> {
    let desired = proptest::collection::vec(
        (
            0usize..6,
            -5i64..5,
            proptest::sample::select(&EXTENSIONS[..]),
            arb_attributes(),
            proptest::option::of(0u8..2),
        ),
        0..6,
    );
    let accounts = proptest::collection::vec(
        (proptest::sample::select(&EXTENSIONS[..]), arb_attributes(), proptest::option::of(0usize..6)),
        0..6,
    );
    let claims = proptest::collection::vec(
        (
            0usize..6,
            proptest::option::of(0usize..8),
            proptest::sample::select(&EXTENSIONS[..]),
            proptest::option::of(0u8..2),
        ),
        0..6,
    );
    let caps = (any::<bool>(), any::<bool>(), any::<bool>(), arb_fields(), arb_fields());
    let knobs = (
        proptest::sample::select(
            &[Policy::Sync, Policy::UpsertOnly, Policy::CreateOnly, Policy::Observe][..],
        ),
        proptest::sample::select(&[Adoption::Adopt, Adoption::Refuse][..]),
        0u32..4,
        proptest::bool::weighted(0.8),
    );
    (desired, accounts, claims, caps, knobs).prop_map(|(desired, accounts, claims, caps, knobs)| {
        let name = |i: usize| format!("e{i}");
        // One entry per Employee and system, as the CRDs' list-map keys guarantee.
        let mut seen = BTreeSet::new();
        let desired = desired
            .into_iter()
            .filter(|(who, ..)| seen.insert(*who))
            .map(|(who, rank, ext, attributes, pw)| Desired {
                owner: owner(&name(who)),
                rank,
                extension: ext.to_owned(),
                attributes,
                password_fingerprint: pw.map(|p| format!("fp{p}")),
            })
            .collect();
        let accounts = accounts
            .into_iter()
            .enumerate()
            .map(|(i, (ext, attributes, marker))| Account {
                id: format!("a{i}"),
                extension: ext.to_owned(),
                attributes,
                marker: marker.map(|m| owner(&name(m))),
            })
            .collect();
        let mut seen = BTreeSet::new();
        let claims = claims
            .into_iter()
            .filter(|(who, ..)| seen.insert(*who))
            .map(|(who, id, ext, pw)| Claim {
                owner: owner(&name(who)),
                external_id: id.map(|i| format!("a{i}")),
                extension: Some(ext.to_owned()),
                password_fingerprint: pw.map(|p| format!("fp{p}")),
            })
            .collect();
        let (create, update, delete, readable, writable) = caps;
        let (policy, adoption, max_deletes, complete) = knobs;
        World {
            desired,
            observed: Observed { accounts, complete, unreadable: Vec::new() },
            claims,
            capabilities: Capabilities { create, update, delete, readable, writable },
            policy,
            adoption,
            guard: Guard { max_deletes },
        }
    })
}

/// The Employee that owns `id` per the claims (first in owner order, as the planner reads).
fn claimant(w: &World, id: &str) -> Option<Owner> {
    let mut owners: Vec<&Owner> =
        w.claims.iter().filter(|c| c.external_id.as_deref() == Some(id)).map(|c| &c.owner).collect();
    owners.sort();
    owners.first().map(|o| (*o).clone())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Applying a plan and planning again gives an empty plan. The one exception is by
    /// design: a move onto an extension that another account is leaving in the same plan
    /// is a conflict for one pass (updates run concurrently, so it could collide on the
    /// PBX), and goes through on the next; a chain of such moves takes a pass per link.
    #[test]
    fn a_plan_applied_leaves_nothing_to_do(mut w in arb_world()) {
        let first = w.plan();
        let complete = w.observed.complete;
        w.apply(&first);
        let second = w.plan();
        let moves_waited = !first.conflicts.is_empty();
        if complete && !moves_waited {
            prop_assert!(second.is_noop(), "first: {first:#?}\nsecond: {second:#?}");
        } else if !moves_waited {
            // What a partial list hid may be created now, but nothing else changes.
            prop_assert!(second.updates.is_empty() || !first.waits.is_empty());
        }
        let mut next = second;
        for _ in 0..=w.desired.len() {
            if next.is_noop() {
                break;
            }
            w.apply(&next);
            next = w.plan();
        }
        prop_assert!(next.is_noop(), "still work after a pass per Employee: {next:#?}");
    }

    /// Nothing unowned is changed or deleted unless adoption (policy, marker, pending
    /// create) says so; deletes touch only claimed accounts of Employees that let go.
    #[test]
    fn unowned_accounts_are_never_touched(w in arb_world()) {
        let p = w.plan();
        let wanted: BTreeSet<&Owner> = w.desired.iter().map(|d| &d.owner).collect();
        for u in &p.updates {
            prop_assert_eq!(claimant(&w, &u.account.id), Some(u.desired.owner.clone()));
        }
        for d in p.deletes.iter().chain(&p.held_deletes) {
            // Claimed by id, or the account a recorded create of that owner may have made.
            let pending = claimant(&w, &d.account.id).is_none()
                && w.claims.iter().any(|c| c.owner == d.owner
                    && c.external_id.is_none()
                    && c.extension.as_deref() == Some(d.account.extension.as_str()));
            prop_assert!(claimant(&w, &d.account.id) == Some(d.owner.clone()) || pending);
            prop_assert!(!wanted.contains(&d.owner));
        }
        for a in &p.adoptions {
            // Unclaimed, or released by this same plan (upsert-only lets go of it first).
            let released = p.releases.iter().any(|r| r.external_id.as_deref() == Some(a.account.id.as_str()));
            prop_assert!(claimant(&w, &a.account.id).is_none() || released);
            match a.reason {
                AdoptReason::Policy => prop_assert_eq!(w.adoption, Adoption::Adopt),
                AdoptReason::Marker => prop_assert_eq!(a.account.marker.as_ref(), Some(&a.desired.owner)),
                AdoptReason::PendingCreate => prop_assert!(w.claims.iter().any(|c| c.owner == a.desired.owner
                    && c.external_id.is_none()
                    && c.extension.as_deref() == Some(a.desired.extension.as_str()))),
            }
        }
    }

    /// Deletes never exceed the guard; a partial list never yields a delete or a create.
    #[test]
    fn guard_and_partial_lists_hold(w in arb_world()) {
        let p = w.plan();
        prop_assert!(p.deletes.len() <= w.guard.max_deletes as usize);
        if !w.observed.complete {
            prop_assert!(p.deletes.is_empty());
            prop_assert!(p.creates.is_empty());
        }
    }

    /// A record that could not be read stops every delete and release, and every create
    /// that could land on its extension; nothing else changes for it.
    #[test]
    fn unreadable_records_block_deletes_and_creates_near_them(
        mut w in arb_world(),
        hidden in proptest::collection::vec(
            (proptest::option::of(0usize..8), proptest::option::of(proptest::sample::select(&EXTENSIONS[..]))),
            1..3,
        ),
    ) {
        w.observed.unreadable = hidden
            .iter()
            .map(|(id, ext)| unreadable(id.map(|i| format!("a{i}")).as_deref(), *ext))
            .collect();
        let p = w.plan();
        prop_assert!(p.deletes.is_empty() && p.held_deletes.is_empty());
        prop_assert!(p.releases.iter().all(|r| r.reason != ReleaseReason::Gone
            && r.reason != ReleaseReason::PendingNotWanted));
        for c in &p.creates {
            prop_assert!(w.observed.complete);
            prop_assert!(hidden.iter().all(|(_, ext)| ext.is_some_and(|e| e != c.desired.extension)));
        }
    }

    /// `observe` plans exactly what `sync` would: switching from one to the other makes
    /// the plan an observing pass reported. (The engine, not the planner, holds back its
    /// writes.)
    #[test]
    fn observe_plans_what_sync_would(mut w in arb_world()) {
        w.policy = Policy::Observe;
        let observed = w.plan();
        w.policy = Policy::Sync;
        prop_assert_eq!(observed, w.plan());
    }

    /// Nothing is planned that the backend cannot do or the policy forbids.
    #[test]
    fn capabilities_and_policy_are_honoured(w in arb_world()) {
        let p = w.plan();
        let caps = &w.capabilities;
        if !caps.create { prop_assert!(p.creates.is_empty()); }
        if !caps.delete { prop_assert!(p.deletes.is_empty() && p.held_deletes.is_empty()); }
        let writes = p.updates.iter().flat_map(|u| &u.changes).chain(p.adoptions.iter().flat_map(|a| &a.changes));
        for change in writes {
            prop_assert!(caps.update, "update planned without the capability");
            prop_assert!(caps.writable.contains(&change.field), "unwritable {:?}", change.field);
            prop_assert!(caps.readable.contains(&change.field) || change.field == Field::Password);
        }
        match w.policy {
            Policy::Sync | Policy::Observe => {}
            Policy::UpsertOnly => prop_assert!(p.deletes.is_empty() && p.held_deletes.is_empty()),
            Policy::CreateOnly => {
                prop_assert!(p.deletes.is_empty() && p.held_deletes.is_empty() && p.updates.is_empty());
                prop_assert!(p.adoptions.iter().all(|a| a.changes.is_empty()));
            }
        }
    }

    /// What switchboard creates or moves never lands on a taken extension, and no
    /// Employee ends up owning two accounts. (Two pre-existing accounts may already share
    /// an extension: garbage on the PBX is not ours to fix.)
    #[test]
    fn no_double_bookings(mut w in arb_world()) {
        let p = w.plan();
        w.apply(&p);
        let landed = p.creates.iter().map(|c| &c.desired.extension).chain(
            p.updates.iter().filter(|u| u.changes.iter().any(|c| c.field == Field::Extension)).map(|u| &u.desired.extension),
        );
        for extension in landed {
            let holders = w.observed.accounts.iter().filter(|a| &a.extension == extension).count();
            prop_assert_eq!(holders, 1, "collision on {}", extension);
        }
        let mut owners: Vec<&Owner> = w.claims.iter().map(|c| &c.owner).collect();
        let n = owners.len();
        owners.dedup();
        prop_assert_eq!(n, owners.len());
    }
}
