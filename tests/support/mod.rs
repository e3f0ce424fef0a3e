//! Test-only support code shared by the integration tests.

pub mod apiserver;
