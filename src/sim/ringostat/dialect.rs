//! The answers the Ringostat simulator can give where the public pages leave a choice
//! open (`docs/compatibility.md`, section Ringostat). The default is the most faithful
//! reading; every other value is a shape a real project may plausibly answer, so the
//! contract tests can prove the client survives each.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dialect {
    /// How the list's `result` holds the employees.
    pub result: ResultShape,
    /// How the list shows an employee's departments.
    pub departments: Departments,
    /// How the list writes `access`.
    pub access: Access,
    /// Whether the list shows `fio` (a public client types it as optional).
    pub fio: Fio,
    /// What the list answers when no employee matches.
    pub empty: Empty,
    /// The codes of the methods' own errors (none is published).
    pub error_codes: ErrorCodes,
    /// Where addStaff answers: the page's address line names `/a/v2`, its examples post
    /// to `/v2`.
    pub add_path: AddPath,
    /// Whether addStaff requires the `x-project-id` header (the page lists it; its
    /// examples omit it).
    pub project_header: ProjectHeader,
    /// Whether a second employee with the same full name is a clash (the help centre says
    /// names must be unique, on a page about the UI).
    pub fio_unique: bool,
}

impl Default for Dialect {
    fn default() -> Self {
        Dialect {
            result: ResultShape::Keyed,
            departments: Departments::Objects,
            access: Access::String,
            fio: Fio::Present,
            empty: Empty::Error,
            error_codes: ErrorCodes::Http,
            add_path: AddPath::Both,
            project_header: ProjectHeader::Optional,
            fio_unique: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultShape {
    /// An object keyed by staff id, as a public client reads it.
    Keyed,
    /// A JSON array, as the JSON-RPC example of another Ringostat method shows.
    Array,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Departments {
    /// `[{"id": 1, "name": "Main"}]`: the page says it returns department names and ids.
    Objects,
    /// `["Main"]`: names, as addStaff takes them.
    Names,
    /// `[1]`: ids only, as a public client types them.
    Ids,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// `"4"`: the table's code, typed string as the table says.
    String,
    /// `4`.
    Number,
    /// `"manager"`: the level's name, as the page's example sends a word (`"user"`).
    Word,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fio {
    Present,
    /// Left out of every list item.
    Absent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Empty {
    /// The error "User does not exist", as the page documents for no match, also for an
    /// empty project.
    Error,
    /// An empty result (`{}` or `[]`, by [`ResultShape`]) for an empty project; a filter
    /// that matches nobody still answers the error.
    Result,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCodes {
    /// 404 no match, 409 clash, 422 rule broken (HTTP's numbers).
    Http,
    /// -32000 for all of them (JSON-RPC's range for a server's own errors).
    Server,
    /// 0 for all of them (what a PHP exception without a code gives).
    Zero,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddPath {
    Both,
    /// Only `/a/v2`; `/v2` is 404.
    AV2,
    /// Only `/v2`; `/a/v2` is 404.
    V2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectHeader {
    /// Checked when present.
    Optional,
    /// A call without it is refused (code 403).
    Required,
}

impl ErrorCodes {
    /// The code for an error of `kind` (one of the simulator's own codes).
    pub fn code(self, own: i64) -> i64 {
        match self {
            ErrorCodes::Http => own,
            ErrorCodes::Server => -32000,
            ErrorCodes::Zero => 0,
        }
    }
}
