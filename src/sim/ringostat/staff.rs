//! The Ringostat simulator's staff, with the lookups its create checks make indexed: a
//! name, e-mail, internal number and SIP accounts checked against every employee per create was
//! 150 million comparisons at 10,000, the simulator's time rather than the client's.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::validate::Staff;

/// Every change goes through [`StaffTable::insert`] and [`StaffTable::remove`], so the
/// indexes cannot fall behind. Keys may repeat (names are unique only in one dialect),
/// so each key maps to the ids that hold it.
#[derive(Default)]
pub(super) struct StaffTable {
    by_id: BTreeMap<u64, Staff>,
    /// Names compare case-insensitively in any alphabet.
    by_name: HashMap<String, BTreeSet<u64>>,
    /// E-mails compare ASCII-case-insensitively.
    by_email: HashMap<String, BTreeSet<u64>>,
    by_extension: HashMap<String, BTreeSet<u64>>,
    /// The SIP accounts among the directions.
    by_sip: HashMap<String, BTreeSet<u64>>,
}

pub(super) fn name_key(fio: &str) -> String {
    fio.chars().flat_map(char::to_lowercase).collect()
}

fn held_by_another(index: &HashMap<String, BTreeSet<u64>>, key: &str, exclude: Option<u64>) -> bool {
    index.get(key).is_some_and(|ids| ids.iter().any(|id| Some(*id) != exclude))
}

fn unlink(index: &mut HashMap<String, BTreeSet<u64>>, key: String, id: u64) {
    if let Some(ids) = index.get_mut(&key) {
        ids.remove(&id);
        if ids.is_empty() {
            index.remove(&key);
        }
    }
}

impl StaffTable {
    pub(super) fn get(&self, staff_id: u64) -> Option<&Staff> {
        self.by_id.get(&staff_id)
    }

    /// In staff-id order.
    pub(super) fn values(&self) -> impl Iterator<Item = &Staff> {
        self.by_id.values()
    }

    /// Whether an employee other than `exclude` has this name (any case).
    pub(super) fn name_taken(&self, fio: &str, exclude: Option<u64>) -> bool {
        held_by_another(&self.by_name, &name_key(fio), exclude)
    }

    pub(super) fn email_taken(&self, email: &str, exclude: Option<u64>) -> bool {
        held_by_another(&self.by_email, &email.to_ascii_lowercase(), exclude)
    }

    pub(super) fn extension_taken(&self, extension: &str, exclude: Option<u64>) -> bool {
        held_by_another(&self.by_extension, extension, exclude)
    }

    pub(super) fn sip_taken(&self, login: &str, exclude: Option<u64>) -> bool {
        held_by_another(&self.by_sip, login, exclude)
    }

    /// Adds the employee, or replaces the one with its id.
    pub(super) fn insert(&mut self, staff: Staff) {
        let id = staff.staff_id;
        self.remove(id);
        self.by_name.entry(name_key(&staff.fio)).or_default().insert(id);
        self.by_email.entry(staff.email.to_ascii_lowercase()).or_default().insert(id);
        self.by_extension.entry(staff.extension.clone()).or_default().insert(id);
        for login in staff.sip_logins() {
            self.by_sip.entry(login.to_owned()).or_default().insert(id);
        }
        self.by_id.insert(id, staff);
    }

    pub(super) fn remove(&mut self, staff_id: u64) -> Option<Staff> {
        let staff = self.by_id.remove(&staff_id)?;
        unlink(&mut self.by_name, name_key(&staff.fio), staff_id);
        unlink(&mut self.by_email, staff.email.to_ascii_lowercase(), staff_id);
        unlink(&mut self.by_extension, staff.extension.clone(), staff_id);
        for login in staff.sip_logins() {
            unlink(&mut self.by_sip, login.to_owned(), staff_id);
        }
        Some(staff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staff(staff_id: u64, fio: &str, email: &str, extension: &str) -> Staff {
        Staff {
            staff_id,
            creator_id: "1".into(),
            access: "2".into(),
            fio: fio.into(),
            email: email.into(),
            extension: extension.into(),
            main: vec![],
            additional: vec![],
            departments: None,
            power_dialer: false,
        }
    }

    #[test]
    fn names_match_whatever_their_case_in_any_alphabet() {
        let mut table = StaffTable::default();
        table.insert(staff(1, "Иван Петренко", "ivan@example.com", "101"));
        table.insert(staff(2, "Ivan Petrenko", "IVAN.P@example.com", "102"));
        assert!(table.name_taken("иван ПЕТРЕНКО", None));
        assert!(table.name_taken("ivan PETRENKO", None));
        assert!(!table.name_taken("Иван Петренк", None));
        assert!(!table.name_taken("Ivan", None));
        assert!(!table.name_taken("Ivan Petrenko", Some(2)), "an employee does not clash with itself");
        assert!(table.email_taken("ivan.p@EXAMPLE.com", Some(1)));
    }

    #[test]
    fn a_replaced_or_removed_employee_frees_its_keys() {
        let mut table = StaffTable::default();
        table.insert(staff(1, "Anna", "anna@example.com", "101"));
        table.insert(staff(2, "Anna", "anna2@example.com", "102"));
        table.insert(staff(1, "Olga", "olga@example.com", "103"));
        assert!(!table.extension_taken("101", None));
        assert!(!table.email_taken("anna@example.com", None));
        assert!(table.name_taken("anna", None), "the other Anna keeps the name");
        assert_eq!(table.remove(2).map(|s| s.staff_id), Some(2));
        assert!(!table.name_taken("anna", None));
        assert_eq!(table.values().map(|s| s.staff_id).collect::<Vec<_>>(), vec![1]);
        assert_eq!(table.get(1).map(|s| s.fio.as_str()), Some("Olga"));
    }
}
