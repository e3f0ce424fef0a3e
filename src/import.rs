//! `switchboard import`: brings an existing PBX under Git in one step. Lists the system's
//! accounts and writes one Employee manifest per account, and (with a state file) the
//! claims, so that a `plan` of the result shows no changes.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use kube::core::ObjectMeta;

use crate::{
    api::{AccountState, AccountStatus, Employee, EmployeeSpec, Membership, PhoneSystem},
    backends::{self, Backend, Credentials, http::Settings},
    plan::{Account, Owner},
    state::State,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Backend(#[from] backends::Error),
    #[error(transparent)]
    State(#[from] crate::state::Error),
    #[error("cannot write {path}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot encode a manifest: {0}")]
    Yaml(String),
}

/// What an import did.
#[derive(Debug, Default)]
pub struct Imported {
    pub written: Vec<PathBuf>,
    /// Accounts left out, with the reason (e.g. no e-mail, which an Employee requires).
    pub skipped: Vec<(String, String)>,
}

/// Imports the accounts of `system` into `out_dir`.
pub async fn run(
    system: &PhoneSystem,
    credentials: &Credentials,
    out_dir: &Path,
    state: Option<&State>,
) -> Result<Imported, Error> {
    let backend = backends::connect(&system.spec, credentials, Settings::default())?;
    let listing = backend.list().await?;
    let namespace =
        system.metadata.namespace.clone().unwrap_or_else(|| crate::manifests::DEFAULT_NAMESPACE.into());
    let name = system.metadata.name.clone().unwrap_or_default();
    std::fs::create_dir_all(out_dir).map_err(|source| Error::Write { path: out_dir.to_owned(), source })?;
    let mut taken = BTreeSet::new();
    let mut imported = Imported::default();
    for u in &listing.unreadable {
        let id = u.id.clone().unwrap_or_else(|| "(no id)".into());
        imported.skipped.push((id, format!("could not be read: {}", u.problem)));
    }
    let mut accounts = listing.accounts;
    accounts.sort_by(|a, b| a.extension.cmp(&b.extension));
    for account in &accounts {
        let spec = match employee_spec(account, &name) {
            Ok(spec) => spec,
            Err(why) => {
                imported.skipped.push((account.id.clone(), why));
                continue;
            }
        };
        let object_name = unique_slug(&spec, &mut taken);
        let employee = Employee {
            metadata: ObjectMeta {
                name: Some(object_name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            spec,
            status: None,
        };
        let yaml = serde_saphyr::to_string(&employee).map_err(|e| Error::Yaml(e.to_string()))?;
        let path = out_dir.join(format!("{object_name}.yaml"));
        std::fs::write(&path, yaml).map_err(|source| Error::Write { path: path.clone(), source })?;
        imported.written.push(path);
        if let Some(state) = state {
            let entry = AccountStatus {
                name: name.clone(),
                external_id: Some(account.id.clone()),
                extension: Some(account.extension.clone()),
                state: AccountState::InSync,
                message: Some("imported".into()),
                last_sync: None,
                password_fingerprint: None,
            };
            state.set(&Owner::new(namespace.clone(), object_name), &name, Some(entry))?;
        }
    }
    Ok(imported)
}

/// The Employee an account describes, declaring exactly what the account holds, so that
/// planning it back changes nothing.
fn employee_spec(account: &Account, system: &str) -> Result<EmployeeSpec, String> {
    let a = &account.attributes;
    let valid_extension =
        (2..=8).contains(&account.extension.len()) && account.extension.bytes().all(|b| b.is_ascii_digit());
    if !valid_extension {
        return Err(format!("extension {:?} is not 2–8 digits", account.extension));
    }
    let email = a
        .email
        .clone()
        .filter(|e| e.contains('@'))
        .ok_or("the account has no e-mail, which an Employee requires")?;
    let (given, family, display) = match (&a.given_name, &a.family_name, &a.display_name) {
        (Some(g), Some(f), _) if !g.trim().is_empty() && !f.trim().is_empty() => (g.clone(), f.clone(), None),
        (_, _, Some(d)) if !d.trim().is_empty() => {
            let (g, f) = match d.trim().split_once(char::is_whitespace) {
                Some((g, f)) => (g.to_owned(), f.trim().to_owned()),
                None => (d.trim().to_owned(), d.trim().to_owned()),
            };
            // Declared as is unless "given family" spells it exactly.
            let display = (format!("{g} {f}") != *d).then(|| d.clone());
            (g, f, display)
        }
        _ => return Err("the account has no name".into()),
    };
    let mobile = a.mobile.clone().filter(|m| {
        let digits = m.strip_prefix('+').unwrap_or(m);
        (2..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    });
    Ok(EmployeeSpec {
        given_name: given,
        family_name: family,
        display_name: display,
        login: a.login.clone().filter(|l| Some(l.as_str()) != email.split('@').next()),
        email,
        extension: account.extension.clone(),
        mobile,
        enabled: a.enabled.unwrap_or(true),
        password_secret_ref: None,
        phone_systems: vec![Membership { name: system.to_owned(), ..Membership::default() }],
        deletion_policy: Default::default(),
    })
}

/// A DNS-1123 name from the person's name (transliterated), unique in this import.
fn unique_slug(spec: &EmployeeSpec, taken: &mut BTreeSet<String>) -> String {
    let ascii = deunicode::deunicode(&spec.full_name()).to_lowercase();
    let mut slug = String::new();
    for c in ascii.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let mut slug: String = slug.trim_matches('-').chars().take(50).collect();
    slug = slug.trim_end_matches('-').to_owned();
    if slug.is_empty() {
        slug = format!("ext-{}", spec.extension);
    }
    let mut candidate = slug.clone();
    let mut n = 2;
    while !taken.insert(candidate.clone()) {
        candidate = format!("{slug}-{n}");
        n += 1;
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Attributes;

    fn account(display: &str, email: Option<&str>) -> Account {
        Account {
            id: "1".into(),
            extension: "201".into(),
            attributes: Attributes {
                display_name: Some(display.into()),
                email: email.map(Into::into),
                ..Attributes::default()
            },
            marker: None,
        }
    }

    #[test]
    fn names_round_trip_exactly() {
        let spec = employee_spec(&account("Иван Петренко", Some("i@x.io")), "pbx").unwrap();
        assert_eq!((spec.given_name.as_str(), spec.family_name.as_str()), ("Иван", "Петренко"));
        assert_eq!(spec.display_name, None);
        assert_eq!(spec.full_name(), "Иван Петренко");
        let spec = employee_spec(&account("王伟", Some("w@x.io")), "pbx").unwrap();
        assert_eq!(spec.full_name(), "王伟");
        let spec = employee_spec(&account("Jane  Doe", Some("j@x.io")), "pbx").unwrap();
        assert_eq!(spec.full_name(), "Jane  Doe");
    }

    #[test]
    fn an_account_without_email_is_skipped_with_the_reason() {
        let err = employee_spec(&account("Jane Doe", None), "pbx").unwrap_err();
        assert!(err.contains("e-mail"));
    }

    #[test]
    fn slugs_are_transliterated_and_unique() {
        let spec = employee_spec(&account("Иван Петренко", Some("i@x.io")), "pbx").unwrap();
        let mut taken = BTreeSet::new();
        assert_eq!(unique_slug(&spec, &mut taken), "ivan-petrenko");
        assert_eq!(unique_slug(&spec, &mut taken), "ivan-petrenko-2");
    }
}
