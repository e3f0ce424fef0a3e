//! The answer shapes and behaviours the APIO evidence leaves open, one setting each
//! (`switchboard sim --dialect apio.KEY=VALUE`, `PUT /_sim/dialect`). The default of each
//! is the most faithful reading of the evidence; `docs/compatibility.md` ("Netaxis APIO")
//! names the source behind every one.

use serde::{Deserialize, Serialize};

/// What the simulator serves where the vendor's documents, UIs and BroadWorks' own schema
/// allow more than one answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApioDialect {
    /// `GET users/{userId}` carries `userId`. BroadWorks' `UserGetResponse` has no such
    /// field (the id is the request's key), the APIO docs' example shows none, and the
    /// vendor UI takes the id from its URL: off.
    pub detail_user_id: bool,
    /// The group list: `{"users": [...]}` (docs, both vendor UIs) or a bare array.
    pub list_shape: ListShape,
    /// `responseSizeLimit`: honoured (OCI: "maximum number of rows to return"; the rest is
    /// cut without a word) or ignored (the whole list, whatever was asked).
    pub size_limit: SizeLimit,
    /// Where the list reads its search criteria and `responseSizeLimit`: a JSON body on
    /// the GET (the docs), the query string (the vendor UI, on `/search/users`), or both.
    pub criteria: Criteria,
    /// User ids in the list carry the AS system default domain
    /// (`DISPLAY_USER_ID_WITH_SYSTEM_DEFAULT_DOMAIN`, default true since APIO 1.10.3).
    /// Off: a user in the default domain is listed as `name`, not `name@domain`.
    pub list_user_id_domain: bool,
    /// User paths without the trailing slash (what the current UI calls for the list and
    /// a user's record): answered, or redirected (308) to the slash form as a framework
    /// with strict slashes does.
    pub no_slash: NoSlash,
    /// A password change on PUT: `password` (what the UI sends), `newPassword` with an
    /// optional `oldPassword` (the docs, BroadWorks `UserModifyRequest`), or both.
    pub password_change: PasswordChange,
    /// A body field the API does not know: refused (400) or silently dropped.
    pub unknown_fields: UnknownFields,
    /// The create answer: the user (the UI reads `userId` from it), the user without
    /// `userId`, or `{}`.
    pub create_answer: CreateAnswer,
    /// The status of a duplicate user id, extension or phone number: 409, or 400 (a
    /// BroadWorks `ErrorResponse` passed on as a bad request).
    pub duplicate_status: u16,
    /// `department` in answers: an object (docs' user and list examples) or its name as a
    /// string (`""` when none: the docs' trunk-user list example).
    pub department: Department,
}

impl Default for ApioDialect {
    fn default() -> Self {
        ApioDialect {
            detail_user_id: false,
            list_shape: ListShape::Users,
            size_limit: SizeLimit::Honoured,
            criteria: Criteria::Both,
            list_user_id_domain: true,
            no_slash: NoSlash::Answer,
            password_change: PasswordChange::Both,
            unknown_fields: UnknownFields::Reject,
            create_answer: CreateAnswer::User,
            duplicate_status: 409,
            department: Department::Object,
        }
    }
}

impl ApioDialect {
    /// Settings serde cannot check on its own.
    pub fn check(&self) -> Result<(), String> {
        match self.duplicate_status {
            400 | 409 => Ok(()),
            other => Err(format!("duplicate_status must be 400 or 409, not {other}")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListShape {
    Users,
    Bare,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SizeLimit {
    Honoured,
    Ignored,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Criteria {
    Both,
    Query,
    Body,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoSlash {
    Answer,
    Redirect,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordChange {
    Both,
    Password,
    OldNew,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownFields {
    Reject,
    Ignore,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreateAnswer {
    User,
    UserWithoutId,
    Empty,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Department {
    Object,
    Name,
}
