//! One integration-test binary (each file in `tests/` would be a separate binary to link,
//! and linking is the slow part on two cores).

mod apiserver;
mod backend_apio;
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
mod hostile;
mod production;
mod schema;
mod sim_apio;
mod sim_common;
mod sim_mikopbx;
mod sim_ringostat;
mod sim_telphin;
mod sim_thulium;

// Test support (the fake API server) in `tests/support/`; not every helper is used yet.
#[allow(dead_code)]
#[path = "../support/mod.rs"]
mod support;
