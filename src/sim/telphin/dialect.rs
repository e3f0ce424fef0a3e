//! The dialects: where Telphin's public evidence allows more than one answer, each
//! reading the simulator can serve (`docs/compatibility.md`, section Telphin, says which
//! source leaves which choice open). The default is the most literal reading of the docs.

use serde::{Deserialize, Serialize};

/// What the simulator serves where the evidence is open. Set with `PUT /_sim/dialect` or
/// `switchboard sim --dialect telphin.KEY=VALUE`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Dialect {
    /// `per_page` on the two lists: documented only for call history.
    pub per_page: PerPage,
    /// What `extension/?name=` matches.
    pub name_filter: NameFilter,
    /// How a list answer holds its records.
    pub list_shape: ListShape,
    /// Whether refusals carry the statuses `already_exists` and `extension_not_found`
    /// (not in the documented error table): `false` answers a bare `{"message"}`.
    pub error_statuses: bool,
    /// How an `extra_params` nobody set reads back.
    pub unset_extra_params: UnsetExtra,
    /// Compression of answers (the docs ask clients to send `Accept-Encoding: gzip`).
    pub gzip: Gzip,
    /// Requests per window per client: the docs give no number (their example: 1,000).
    pub quota: u64,
    /// The quota's window, seconds (an hour on the real platform).
    pub quota_window_secs: u64,
}

impl Default for Dialect {
    fn default() -> Self {
        Dialect {
            per_page: PerPage::Honoured,
            name_filter: NameFilter::Exact,
            list_shape: ListShape::Bare,
            error_statuses: false,
            unset_extra_params: UnsetExtra::Null,
            gzip: Gzip::WhenAsked,
            quota: 1000,
            quota_window_secs: 3600,
        }
    }
}

impl Dialect {
    /// The quota's window.
    pub fn window(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.quota_window_secs.max(1))
    }
}

/// How `per_page` is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PerPage {
    /// Pages of the size asked (up to the maximum).
    Honoured,
    /// Pages of the server's own size, whatever is asked (one SDK sends `page` only).
    Ignored,
    /// At most [`CAP`] records a page, whatever is asked.
    Capped,
    /// `per_page` is an unknown parameter: 400.
    Refused,
}

/// The page size of [`PerPage::Capped`].
pub const CAP: usize = 20;

/// What the extension list's `name` filter matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NameFilter {
    /// The stored name only: `prefix*NNN`.
    Exact,
    /// Also the number relative to the client prefix: `NNN`.
    Relative,
}

/// The shape of a list answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListShape {
    /// A JSON array (what the SDKs read).
    Bare,
    /// `{"total_count": N, "result": [...]}` (what the admin search answers).
    Wrapped,
}

/// How an unset `extra_params` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnsetExtra {
    /// JSON `null`.
    Null,
    /// The string `"null"`.
    TextNull,
    /// The key is left out.
    Absent,
}

/// Compression of answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gzip {
    /// Never compressed.
    Off,
    /// Compressed when the request says `Accept-Encoding: gzip`.
    WhenAsked,
    /// A request without `Accept-Encoding: gzip` is refused (400), as the docs' "must"
    /// allows.
    Required,
}
