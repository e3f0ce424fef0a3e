//! One integration-test binary (each file in `tests/` would be a separate binary to link,
//! and linking is the slow part on two cores).

mod apiserver;
mod apiserver_apply;
mod apiserver_namespaces;
mod backend_apio;
mod backend_apio_dialects;
mod backend_mikopbx;
mod backend_ringostat;
mod backend_telphin;
mod backend_thulium;
mod bench;
mod chaos;
mod cli;
mod controller;
mod crds;
mod demo;
mod deploy;
mod events;
mod faults;
mod footprint;
mod gitops;
mod hostile;
mod kstatus;
mod late_secrets;
mod observe;
mod probe;
mod production;
mod release;
mod resync;
mod schema;
mod sim_apio;
mod sim_common;
mod sim_mikopbx;
mod sim_ringostat;
mod sim_telphin;
mod sim_thulium;
mod teardown;
mod tryit;

// Test support (the fake API server) in `tests/support/`; not every helper is used yet.
#[allow(dead_code)]
#[path = "../support/mod.rs"]
mod support;

/// An HTTP client for tests that call a simulator directly. reqwest is built without a
/// default TLS provider (switchboard chooses ring), so one must be installed before any
/// client is built, even for plain HTTP; a test run alone must not rely on another test
/// having done it first.
pub fn http() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}
