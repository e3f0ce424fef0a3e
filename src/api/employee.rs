//! `Employee`: one person, and the phone systems they belong on.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Digits only; 2 to 8 of them, the widest range any supported PBX accepts (MikoPBX).
/// Narrower backend rules (Ringostat: 2–5) are reported on the Employee's status.
pub const EXTENSION_PATTERN: &str = r"^[0-9]{2,8}$";
/// Any alphabet, but no control characters (they break CSV exports and SIP caller ids).
const NAME_PATTERN: &str = r"^[^\x00-\x1F\x7F]+$";
const EMAIL_PATTERN: &str = r"^[^@\s]+@[^@\s]+\.[^@\s]+$";
/// E.164: an optional `+`, then up to 15 digits, not starting with 0.
const MOBILE_PATTERN: &str = r"^\+?[1-9][0-9]{1,14}$";
const LOGIN_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$";

/// A person, and the phone systems they have an account on.
// kube-derive expands `printcolumn(...)` into repeated `type_` attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "switchboard.dev",
    version = "v1alpha1",
    kind = "Employee",
    namespaced,
    status = "EmployeeStatus",
    shortname = "emp",
    category = "switchboard",
    doc = "A person whose accounts switchboard keeps on the phone systems they belong on.",
    printcolumn(name = "Extension", type_ = "string", json_path = ".spec.extension"),
    printcolumn(name = "Systems", type_ = "string", json_path = ".status.syncedSystems"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct EmployeeSpec {
    /// Given (first) name, in any alphabet.
    #[schemars(regex(pattern = NAME_PATTERN), length(min = 1, max = 64))]
    pub given_name: String,
    /// Family (last) name, in any alphabet.
    #[schemars(regex(pattern = NAME_PATTERN), length(min = 1, max = 64))]
    pub family_name: String,
    /// The name phone systems with a single name field show. Defaults to
    /// "givenName familyName"; set it where a culture orders names differently.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = NAME_PATTERN), length(min = 1, max = 128))]
    pub display_name: Option<String>,
    /// E-mail address.
    #[schemars(regex(pattern = EMAIL_PATTERN), length(max = 254))]
    pub email: String,
    /// Internal number (2–8 digits). A phone system entry may override it.
    #[schemars(regex(pattern = EXTENSION_PATTERN))]
    pub extension: String,
    /// Mobile number in E.164 form (`+48600111222` or `48600111222`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = MOBILE_PATTERN))]
    pub mobile: Option<String>,
    /// Login name on systems that have one (Thulium, Telphin). Defaults to the part of
    /// `email` before the `@`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = LOGIN_PATTERN))]
    pub login: Option<String>,
    /// A disabled employee keeps their accounts, blocked where the system can block.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Where the account password is kept. Unset: switchboard generates one to each
    /// system's rules into the Secret `<name>-credentials`, owned by this Employee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// The phone systems (PhoneSystem names in this namespace) this person belongs on,
    /// each with optional settings for that system's type.
    #[serde(default)]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub phone_systems: Vec<Membership>,
    /// What happens to the accounts when this Employee is deleted: `Delete` removes them
    /// (where the system allows), `Orphan` leaves them on the systems, unmanaged.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn default_true() -> bool {
    true
}

/// A key of a Secret in the Employee's namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(regex(pattern = super::DNS_SUBDOMAIN), length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret.
    #[schemars(regex(pattern = r"^[-._a-zA-Z0-9]+$"), length(min = 1, max = 253))]
    pub key: String,
}

/// One phone system an Employee belongs on.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new(
    "[has(self.mikopbx), has(self.thulium), has(self.apio), has(self.telphin), has(self.ringostat)].filter(x, x).size() <= 1"
).message("at most one settings block (mikopbx, thulium, apio, telphin or ringostat) per phone system"))]
#[serde(rename_all = "camelCase")]
pub struct Membership {
    /// Name of the PhoneSystem (same namespace).
    #[schemars(regex(pattern = super::DNS_SUBDOMAIN), length(min = 1, max = 253))]
    pub name: String,
    /// The internal number on this system, when numbering differs between systems.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = EXTENSION_PATTERN))]
    pub extension: Option<String>,
    // The blocks are boxed: an entry holds one at most, and an operator or a bench holds
    // tens of thousands of entries (five unboxed blocks made an entry ~350 bytes).
    /// Settings for a MikoPBX system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mikopbx: Option<Box<MikoPbxSettings>>,
    /// Settings for a Thulium system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thulium: Option<Box<ThuliumSettings>>,
    /// Settings for an APIO (BroadWorks) system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apio: Option<Box<ApioSettings>>,
    /// Settings for a Telphin system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telphin: Option<Box<TelphinSettings>>,
    /// Settings for a Ringostat system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ringostat: Option<Box<RingostatSettings>>,
}

/// Forward targets are extensions or external numbers.
const FORWARD_PATTERN: &str = r"^\+?[0-9]{2,20}$";

/// MikoPBX call handling for this person.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MikoPbxSettings {
    /// Call forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarding: Option<Forwarding>,
    /// Record this person's calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<bool>,
    /// How the phone sends DTMF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtmf_mode: Option<DtmfMode>,
}

/// Where calls go when this person does not take them.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Forwarding {
    /// Target when the call is not answered within `ringLength`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = FORWARD_PATTERN))]
    pub on_no_answer: Option<String>,
    /// Target when the line is busy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = FORWARD_PATTERN))]
    pub on_busy: Option<String>,
    /// Target when the phone is not registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = FORWARD_PATTERN))]
    pub on_unavailable: Option<String>,
    /// Seconds to ring before forwarding on no answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 3, max = 180))]
    pub ring_length: Option<u32>,
}

/// MikoPBX DTMF modes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DtmfMode {
    Auto,
    AutoInfo,
    Inband,
    Rfc4733,
    Info,
}

/// Thulium agent settings (set when the agent is created: Thulium's API cannot change
/// them later).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ThuliumSettings {
    /// Role ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub roles: Option<Vec<u32>>,
    /// Panel language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<ThuliumLanguage>,
    /// How outbound calls are placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_mode: Option<OutboundMode>,
    /// Caller id; Thulium's default is the initial and surname (`J.Kowalski`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = NAME_PATTERN), length(min = 1, max = 64))]
    pub caller_id: Option<String>,
}

/// Thulium panel languages.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ThuliumLanguage {
    Pl,
    En,
}

/// Thulium outbound modes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OutboundMode {
    Manual,
    Auto,
}

/// BroadWorks user settings.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ApioSettings {
    /// BroadWorks language name, e.g. `English`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_ ]+$"), length(min = 1, max = 40))]
    pub language: Option<String>,
    /// IANA time zone, e.g. `Europe/Brussels`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = super::TIME_ZONE_PATTERN), length(max = 64))]
    pub time_zone: Option<String>,
}

/// Telphin extension-level user settings.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TelphinSettings {
    /// `full` access, or `read_only` (no changes to settings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<TelphinAccess>,
    /// IANA time zone, e.g. `Europe/Moscow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = super::TIME_ZONE_PATTERN), length(max = 64))]
    pub time_zone: Option<String>,
}

/// Telphin access types.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TelphinAccess {
    Full,
    ReadOnly,
}

/// Ringostat employee settings (set at creation: Ringostat's API cannot change them).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RingostatSettings {
    /// Access level in the Ringostat project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_level: Option<RingostatAccess>,
    /// Department names (case-insensitive on Ringostat's side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub departments: Option<Vec<String>>,
    /// Access to the power dialer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_dialer: Option<bool>,
}

/// Ringostat access levels (1, 2 and 4 in its API).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RingostatAccess {
    Admin,
    Analyst,
    Manager,
}

/// What happens to an Employee's accounts when the Employee is deleted.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    /// Delete the accounts where the system allows it.
    #[default]
    Delete,
    /// Leave the accounts on the systems; switchboard stops managing them.
    Orphan,
}

/// What switchboard last did for this Employee.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EmployeeStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: every account matches the spec. `Synced`: the last sync of every system
    /// finished without error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// "in sync / declared", for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_systems: Option<String>,
    /// One entry per phone system this Employee has (or had) an account on. An entry
    /// with an `externalId` is switchboard's claim of that account.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub phone_systems: Vec<AccountStatus>,
}

/// The account of an Employee on one phone system.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccountStatus {
    /// The PhoneSystem's name.
    pub name: String,
    /// The account's id on the system. Its presence is switchboard's claim of ownership.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// The extension the account has (or, while `Pending`, is being created with).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
    /// Where the account stands.
    pub state: AccountState,
    /// What a person needs to know, e.g. the PBX's own validation message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When this entry last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<Time>,
    /// A fingerprint (salted hash) of the password last set on the account, so a changed
    /// Secret is noticed; passwords themselves cannot be read back from any system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_fingerprint: Option<String>,
}

/// Where one account stands.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountState {
    /// The account matches the spec.
    InSync,
    /// A change is planned or in flight (a create is recorded here before it is sent).
    Pending,
    /// The system refused or could not be reached; see the message.
    Failed,
    /// The extension is held by an account switchboard does not own, or by an older
    /// Employee.
    Conflict,
    /// The system's API cannot make the change (e.g. no update on Thulium); a person
    /// must make it by hand.
    ManualActionRequired,
    /// The PhoneSystem was deleted on its own (its namespace stays): the account is left
    /// on the system, still claimed here, and taken back if the PhoneSystem is created
    /// again.
    Released,
}

impl EmployeeSpec {
    /// The name for systems with a single name field.
    pub fn full_name(&self) -> String {
        match &self.display_name {
            Some(name) => name.clone(),
            None => format!("{} {}", self.given_name, self.family_name),
        }
    }

    /// The login for systems that need one.
    pub fn login(&self) -> &str {
        match &self.login {
            Some(login) => login,
            None => self.email.split('@').next().unwrap_or(&self.email),
        }
    }

    /// The membership entry for one phone system, if this Employee lists it.
    pub fn membership(&self, system: &str) -> Option<&Membership> {
        self.phone_systems.iter().find(|m| m.name == system)
    }

    /// The extension on one system: the membership's override, else the Employee's.
    pub fn extension_on<'a>(&'a self, membership: &'a Membership) -> &'a str {
        membership.extension.as_deref().unwrap_or(&self.extension)
    }
}
