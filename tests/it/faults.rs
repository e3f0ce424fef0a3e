//! What the backend fault tests share: the loop successive syncs run for one Employee
//! under faults, and a listing retried until it goes through.

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
