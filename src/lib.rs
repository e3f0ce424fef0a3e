//! switchboard: keeps the user accounts of phone systems in line with `Employee`
//! manifests. See `README.md` for what it does and `DESIGN` notes for how.

pub mod api;
pub mod backends;
pub mod bench;
pub mod cli;
pub mod controller;
pub mod demo;
pub mod engine;
pub mod footprint;
pub mod import;
pub mod manifests;
pub mod plan;
pub mod probe;
pub mod rbac;
pub mod release;
pub mod sim;
pub mod state;
pub mod telemetry;
pub mod tryit;

/// An error and its sources, as one line: for messages that end up in a status or a
/// report rather than in an `anyhow` chain.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
