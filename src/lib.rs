//! switchboard: keeps the user accounts of phone systems in line with `Employee`
//! manifests. See `README.md` for what it does and `DESIGN` notes for how.

pub mod api;
pub mod backends;
pub mod bench;
pub mod cli;
pub mod controller;
pub mod demo;
pub mod engine;
pub mod manifests;
pub mod plan;
pub mod sim;
pub mod state;
