//! One integration-test binary (each file in `tests/` would be a separate binary to link,
//! and linking is the slow part on two cores).

mod crds;
mod schema;
