//! Static dispatch over the five backends: the engine and the controller hold one
//! `AnyBackend` per PhoneSystem, chosen by its backend block.

use std::collections::BTreeSet;

use super::{
    Backend, Credentials, Error, Listing, Probe, Quota, Secret, Write, apio::Apio, http::Settings,
    mikopbx::MikoPbxBackend, ringostat::Ringostat, telphin::Telphin, thulium::Thulium,
};
use crate::{
    api::{Backend as Block, BackendKind, EmployeeSpec, Membership, PhoneSystemSpec},
    plan::{Account, Attributes, Capabilities, Change, Desired, Field},
};

/// One of the five backends.
pub enum AnyBackend {
    MikoPbx(MikoPbxBackend),
    Thulium(Thulium),
    Apio(Apio),
    Telphin(Telphin),
    Ringostat(Ringostat),
}

/// The backend for a PhoneSystem's spec and the data of its credentials Secret.
pub fn connect(
    spec: &PhoneSystemSpec,
    credentials: &Credentials,
    settings: Settings,
) -> Result<AnyBackend, Error> {
    let block = spec.backend().map_err(|e| Error::Config(e.to_string()))?;
    let refresh = spec.detail_refresh_interval().map_err(|e| Error::Config(e.to_string()))?;
    Ok(match block {
        Block::MikoPbx(b) => {
            AnyBackend::MikoPbx(MikoPbxBackend::new(b, credentials, settings)?.with_detail_refresh(refresh))
        }
        Block::Thulium(b) => AnyBackend::Thulium(Thulium::new(b, credentials, settings)?),
        Block::Apio(b) => AnyBackend::Apio(Apio::new(b, credentials, settings)?.with_detail_refresh(refresh)),
        Block::Telphin(b) => AnyBackend::Telphin(Telphin::new(b, credentials, settings)?),
        Block::Ringostat(b) => AnyBackend::Ringostat(Ringostat::new(b, credentials, settings)?),
    })
}

/// Calls `$method` on whichever backend this is.
macro_rules! each {
    ($self:ident, $b:ident => $call:expr) => {
        match $self {
            AnyBackend::MikoPbx($b) => $call,
            AnyBackend::Thulium($b) => $call,
            AnyBackend::Apio($b) => $call,
            AnyBackend::Telphin($b) => $call,
            AnyBackend::Ringostat($b) => $call,
        }
    };
}

impl Backend for AnyBackend {
    fn kind(&self) -> BackendKind {
        each!(self, b => b.kind())
    }

    fn capabilities(&self) -> &Capabilities {
        each!(self, b => b.capabilities())
    }

    fn desired(&self, employee: &EmployeeSpec, membership: &Membership) -> Result<Attributes, Error> {
        each!(self, b => b.desired(employee, membership))
    }

    fn generate_password(&self) -> Secret {
        each!(self, b => b.generate_password())
    }

    async fn list(&self) -> Result<Listing, Error> {
        each!(self, b => b.list().await)
    }

    async fn list_for(&self, declared: &BTreeSet<Field>) -> Result<Listing, Error> {
        each!(self, b => b.list_for(declared).await)
    }

    async fn find(&self, extension: &str) -> Result<Option<Account>, Error> {
        each!(self, b => b.find(extension).await)
    }

    async fn create(&self, desired: &Desired, password: Option<&Secret>) -> Result<Account, Error> {
        each!(self, b => b.create(desired, password).await)
    }

    async fn create_unresolved(
        &self,
        desired: &Desired,
        password: Option<&Secret>,
    ) -> Result<Option<Account>, Error> {
        each!(self, b => b.create_unresolved(desired, password).await)
    }

    async fn update(
        &self,
        account: &Account,
        desired: &Desired,
        changes: &[Change],
        password: Option<&Secret>,
    ) -> Result<(), Error> {
        each!(self, b => b.update(account, desired, changes, password).await)
    }

    async fn delete(&self, account: &Account) -> Result<(), Error> {
        each!(self, b => b.delete(account).await)
    }

    fn quota(&self) -> Option<Quota> {
        each!(self, b => b.quota())
    }

    fn cost(&self, write: Write<'_>) -> u64 {
        each!(self, b => b.cost(write))
    }

    fn list_cost(&self) -> u64 {
        each!(self, b => b.list_cost())
    }

    async fn probe(&self) -> Result<Probe, Error> {
        each!(self, b => b.probe().await)
    }
}
