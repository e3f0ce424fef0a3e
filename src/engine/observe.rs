//! `policy: observe`: what a pass that writes nothing tells each Employee about the plan
//! a `sync` would carry out.

use super::{Entries, Event, describe_changes};
use crate::{
    api::{AccountState, conditions::reason},
    plan::{self, Owner, Plan},
};

/// Under `policy: observe`: each Employee's entry says what a `sync` would do to its
/// account, and an event says so too when that is news (the entry's message changed), so
/// a resync of an unchanged plan posts nothing.
pub(super) fn tell(entries: &mut Entries<'_>, events: &mut Vec<Event>, plan: &Plan) {
    let name = entries.name;
    let mut would = |owner: &Owner, reason: &'static str, what: String| {
        let message = format!("{}: would {what} (policy: observe writes nothing)", reason::OBSERVING);
        let news = entries.previous.get(owner).and_then(|e| e.message.as_deref()) != Some(message.as_str());
        entries.set(owner, AccountState::Pending, Some(message), None, None);
        if news {
            events.push(Event {
                owner: Some(owner.clone()),
                reason,
                message: format!("would {what} on {name} (policy: observe)"),
                warning: false,
            });
        }
    };
    for c in &plan.creates {
        would(
            &c.desired.owner,
            "WouldCreate",
            format!("create an account on extension {}", c.desired.extension),
        );
    }
    for u in &plan.updates {
        let what = format!("update {} of account {}", describe_changes(&u.changes), u.account.id);
        would(&u.desired.owner, "WouldUpdate", what);
    }
    for a in &plan.adoptions {
        let why = match a.reason {
            plan::AdoptReason::Policy => "adoption: adopt",
            plan::AdoptReason::Marker => "it carries this Employee's ownership marker",
            plan::AdoptReason::PendingCreate => "this Employee's create made it",
        };
        let mut what = format!("take over account {} ({why})", a.account.id);
        if !a.changes.is_empty() {
            what.push_str(&format!(" and update {}", describe_changes(&a.changes)));
        }
        would(&a.desired.owner, "WouldAdopt", what);
    }
    for d in &plan.deletes {
        would(&d.owner, "WouldDelete", format!("delete account {}", d.account.id));
    }
}
