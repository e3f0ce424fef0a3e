//! What the backend fault and contract tests share: the loop successive syncs run for
//! one Employee under faults, a listing retried until it goes through, and one engine pass.

use switchboard::{
    backends::{Backend, Error, Secret, create_once},
    plan::{Account, Desired},
};

/// Failures a later sync recovers from: transient, or an answer that could not be read.
pub fn recoverable(e: &Error) -> bool {
    e.is_transient() || matches!(e, Error::Protocol { .. })
}

/// What successive syncs do for one Employee: look the extension up, create when it is
/// free, and start over after an unclear failure.
pub async fn converge<B: Backend>(b: &B, d: &Desired, password: &Secret) -> Account {
    for _ in 0..40 {
        match b.find(&d.extension).await {
            Ok(Some(account)) => return account,
            Ok(None) => {}
            Err(e) => {
                assert!(recoverable(&e), "{e}");
                continue;
            }
        }
        match create_once(b, d, Some(password)).await {
            Ok(account) => return account,
            Err(e) => assert!(recoverable(&e), "{e}"),
        }
    }
    panic!("no account for {} after 40 syncs", d.extension);
}

/// A complete listing, retried through recoverable failures.
pub async fn list_eventually<B: Backend>(b: &B) -> Vec<Account> {
    for _ in 0..40 {
        match b.list().await {
            Ok(listing) => {
                assert!(listing.complete);
                return listing.accounts;
            }
            Err(e) => assert!(recoverable(&e), "{e}"),
        }
    }
    panic!("the list never succeeded");
}

/// A vault without passwords: the backends generate them.
pub struct NoPasswords;

impl switchboard::engine::Vault for NoPasswords {
    fn password(&self, _owner: &switchboard::plan::Owner) -> Option<Secret> {
        None
    }
}

/// One engine pass over `people` on the PhoneSystem `name`, their statuses kept in
/// `state` and their passwords in `vault`, as a process would run it.
pub async fn engine_pass_with(
    backend: &impl Backend,
    name: &str,
    system: &switchboard::api::PhoneSystemSpec,
    people: &[(switchboard::plan::Owner, switchboard::api::EmployeeSpec)],
    state: &switchboard::state::State,
    vault: &impl switchboard::engine::Vault,
) -> Result<switchboard::engine::Report, switchboard::engine::Error> {
    use switchboard::engine::{self, EmployeeView, Options};
    let views: Vec<EmployeeView> = people
        .iter()
        .map(|(owner, e)| EmployeeView {
            owner: owner.clone(),
            spec: e,
            status: state.status(owner).map(std::borrow::Cow::Owned),
            rank: 0,
            deleting: false,
        })
        .collect();
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let options = Options { dry_run: false, allow_deletions: None, now, progress: None };
    let report = engine::sync(backend, name, system, &views, state, vault, &options).await?;
    state.record(name, &report).unwrap();
    Ok(report)
}

/// [`engine_pass_with`] without passwords, which must run.
pub async fn engine_pass(
    backend: &impl Backend,
    name: &str,
    system: &switchboard::api::PhoneSystemSpec,
    people: &[(switchboard::plan::Owner, switchboard::api::EmployeeSpec)],
    state: &switchboard::state::State,
) -> switchboard::engine::Report {
    engine_pass_with(backend, name, system, people, state, &NoPasswords).await.unwrap()
}
