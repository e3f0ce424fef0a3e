//! `PhoneSystem`: one PBX or cloud telephony account that switchboard keeps in line.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{BackendKind, Error};

/// The fields that belong to a whole phone system: where it is, how to log in, and how
/// carefully switchboard may change it.
///
/// Exactly one backend block (`mikopbx`, `thulium`, `apio`, `telphin`, `ringostat`) is set.
// kube-derive expands `printcolumn(...)` into repeated `type_` attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "switchboard.dev",
    version = "v1alpha1",
    kind = "PhoneSystem",
    namespaced,
    status = "PhoneSystemStatus",
    shortname = "pbx",
    category = "switchboard",
    doc = "A PBX or cloud telephony account whose user accounts switchboard manages.",
    printcolumn(name = "Type", type_ = "string", json_path = ".status.backend"),
    printcolumn(name = "Policy", type_ = "string", json_path = ".spec.policy"),
    printcolumn(name = "Declared", type_ = "integer", json_path = ".status.counts.declared"),
    printcolumn(name = "InSync", type_ = "integer", json_path = ".status.counts.inSync"),
    printcolumn(
        name = "Create",
        type_ = "integer",
        json_path = ".status.pendingChanges.create",
        description = "accounts the last pass would create but did not (policy: observe, suspend, quota)"
    ),
    printcolumn(
        name = "Update",
        type_ = "integer",
        json_path = ".status.pendingChanges.update",
        description = "accounts the last pass would update but did not"
    ),
    printcolumn(
        name = "Delete",
        type_ = "integer",
        json_path = ".status.pendingChanges.delete",
        description = "accounts the last pass would delete but did not"
    ),
    printcolumn(
        name = "Adopt",
        type_ = "integer",
        json_path = ".status.pendingChanges.adopt",
        description = "unowned accounts the last pass would take over but did not"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new(
    "[has(self.mikopbx), has(self.thulium), has(self.apio), has(self.telphin), has(self.ringostat)].filter(x, x).size() == 1"
).message("exactly one backend block must be set: mikopbx, thulium, apio, telphin or ringostat"))]
#[serde(rename_all = "camelCase")]
pub struct PhoneSystemSpec {
    /// A MikoPBX server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mikopbx: Option<MikoPbx>,
    /// A Thulium contact-center account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thulium: Option<Thulium>,
    /// A BroadWorks group, managed through Netaxis APIO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apio: Option<Apio>,
    /// A Telphin (Ringme APILink) client account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telphin: Option<Telphin>,
    /// A Ringostat project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ringostat: Option<Ringostat>,

    /// The Secret (in this namespace) that holds the credentials. Keys by backend:
    /// mikopbx `apiKey`, or `username` + `password`; thulium `username` + `password`;
    /// apio `token`, or `username` + `password`; telphin `clientId` + `clientSecret`;
    /// ringostat `authKey`. Only a MikoPBX reached on a loopback URL needs none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,

    /// What switchboard may do to accounts it owns: `sync` creates, updates and deletes;
    /// `upsert-only` never deletes; `create-only` never updates or deletes; `observe`
    /// lists and plans as `sync` would but writes nothing to the system, and counts what
    /// it would change in `status.pendingChanges` (an event per Employee says what).
    #[serde(default)]
    pub policy: Policy,

    /// What to do when an account switchboard does not own already has an Employee's
    /// extension: `adopt` takes it over (and updates it), `refuse` reports a conflict.
    #[serde(default)]
    pub adoption: Adoption,

    /// How often every account is listed and drift is corrected, as a Go duration
    /// (`30s`, `5m`, `1h`). Changes to Employees are applied at once regardless.
    #[serde(default = "default_resync_interval")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"), length(max = 32))]
    pub resync_interval: String,

    /// How long switchboard trusts what it read of a record on its own, on systems whose
    /// list lacks fields the Employees declare (MikoPBX: forwarding, recording, DTMF, and
    /// the mobile on v3; APIO: mobile, language, time zone). A resync reads a record again
    /// only when its list entry changed or its last read is older than this (each record
    /// between half of it and all of it), so an edit made by hand to those fields alone is
    /// corrected within it. `0s` reads them on every resync. A Go duration.
    #[serde(default = "default_detail_refresh_interval")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"), length(max = 32))]
    pub detail_refresh_interval: String,

    /// The most requests per second switchboard sends to this system, and the burst above
    /// it. Unset: no limit beyond `maxConcurrency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,

    /// How many requests may be in flight to this system at once.
    #[serde(default = "default_max_concurrency")]
    #[schemars(range(min = 1, max = 64))]
    pub max_concurrency: u32,

    /// The mass-deletion guard: one sync deletes at most this many accounts. Past it,
    /// the rest wait until the limit is raised or the annotation
    /// `switchboard.dev/allow-deletions: "<n>"` allows them.
    #[serde(default = "default_max_deletions")]
    #[schemars(range(max = 100000))]
    pub max_deletions_per_sync: u32,

    /// Stop every write to this system (listing and status continue).
    #[serde(default)]
    pub suspend: bool,
}

fn default_resync_interval() -> String {
    "5m".to_owned()
}
fn default_detail_refresh_interval() -> String {
    "1h".to_owned()
}
fn default_max_concurrency() -> u32 {
    4
}
fn default_max_deletions() -> u32 {
    10
}

/// A URL of an HTTP API: `http://` or `https://`, no spaces.
const URL_PATTERN: &str = r"^https?://[^\s/?#]+(/[^\s]*)?$";

/// MikoPBX: REST API, either generation.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MikoPbx {
    /// Base URL of the PBX web interface, e.g. `https://pbx.example.com`.
    #[schemars(regex(pattern = URL_PATTERN), length(max = 2048))]
    pub url: String,
    /// Which REST API the PBX speaks: `legacy` for 2023.2 / 2024.1
    /// (`/pbxcore/api/extensions/*`), `v3` for 2026.1 and later (`/pbxcore/api/v3/employees`).
    #[serde(default)]
    pub api_generation: MikoPbxApiGeneration,
}

/// The two incompatible MikoPBX API lines.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum MikoPbxApiGeneration {
    /// 2023.2 / 2024.1: `/pbxcore/api/extensions/*`, admin session login.
    Legacy,
    /// 2026.1 and later: `/pbxcore/api/v3/employees`, Bearer API key or JWT.
    #[default]
    V3,
}

/// Thulium: REST API with HTTP Basic authentication.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Thulium {
    /// Base URL, e.g. `https://acme.thulium.com`.
    #[schemars(regex(pattern = URL_PATTERN), length(max = 2048))]
    pub url: String,
}

/// Netaxis APIO in front of BroadWorks: users of one group.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Apio {
    /// Base URL of the APIO gateway.
    #[schemars(regex(pattern = URL_PATTERN), length(max = 2048))]
    pub url: String,
    /// Path prefix of the provisioning API, from the gateway list
    /// (`GET /api/v01/apio/provisioning/gateways`); deployments differ. The default is the
    /// form APIO's docs give; older UIs used `/api/v01/apio/sync/api/v1`.
    #[serde(default = "default_apio_prefix")]
    #[schemars(regex(pattern = r"^(/[A-Za-z0-9._~-]+)*$"), length(max = 128))]
    pub path_prefix: String,
    /// BroadWorks tenant (service provider / enterprise) id.
    #[schemars(regex(pattern = r"^[^\s/]+$"), length(min = 1, max = 80))]
    pub tenant: String,
    /// BroadWorks group id inside the tenant.
    #[schemars(regex(pattern = r"^[^\s/]+$"), length(min = 1, max = 80))]
    pub group: String,
}

fn default_apio_prefix() -> String {
    "/api/v01/p1".to_owned()
}

/// Telphin (Ringme APILink): OAuth2 client credentials.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Telphin {
    /// Base URL, e.g. `https://apiproxy.telphin.ru`.
    #[schemars(regex(pattern = URL_PATTERN), length(max = 2048))]
    pub url: String,
    /// The client whose extensions are managed; `@me` is the application's own client.
    #[serde(default = "default_telphin_client")]
    #[schemars(regex(pattern = r"^(@me|[0-9]+)$"), length(max = 20))]
    pub client_id: String,
}

fn default_telphin_client() -> String {
    "@me".to_owned()
}

/// Ringostat: JSON-RPC API of one project.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Ringostat {
    /// Base URL, e.g. `https://api.ringostat.net`.
    #[schemars(regex(pattern = URL_PATTERN), length(max = 2048))]
    pub url: String,
    /// The Ringostat project id.
    #[schemars(regex(pattern = r"^[0-9]+$"), length(min = 1, max = 20))]
    pub project_id: String,
    /// The id of the Ringostat user recorded as the creator of new employees.
    #[schemars(regex(pattern = r"^[0-9]+$"), length(min = 1, max = 20))]
    pub creator_id: String,
}

/// A Secret in the same namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(regex(pattern = super::DNS_SUBDOMAIN), length(min = 1, max = 253))]
    pub name: String,
}

/// What switchboard may do to the accounts it owns (as external-dns `--policy`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Create, update and delete.
    #[default]
    Sync,
    /// Create and update, never delete.
    UpsertOnly,
    /// Create only: existing accounts are never changed or deleted.
    CreateOnly,
    /// Plan as `sync` would, write nothing: what would change is counted in the status and
    /// told per Employee (after Crossplane's Observe policy and external-dns `--dry-run`).
    /// Switching to `sync` then makes exactly that plan.
    Observe,
}

impl Policy {
    /// Whether accounts an Employee no longer wants are deleted.
    pub fn deletes(self) -> bool {
        // Observe plans what sync would do; it is the engine that holds the writes back.
        matches!(self, Policy::Sync | Policy::Observe)
    }

    /// Whether accounts that differ from their Employee are updated.
    pub fn updates(self) -> bool {
        self != Policy::CreateOnly
    }

    /// Whether a pass may write to the system at all.
    pub fn writes(self) -> bool {
        self != Policy::Observe
    }
}

/// What to do with an unowned account that already has an Employee's extension.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Adoption {
    /// Take the account over and bring it in line with the Employee.
    Adopt,
    /// Leave it alone and report a conflict on the Employee.
    #[default]
    Refuse,
}

/// A token bucket: `requestsPerSecond` sustained, `burst` at once.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Sustained requests per second.
    #[schemars(range(min = 1, max = 10000))]
    pub requests_per_second: u32,
    /// Requests allowed at once above the sustained rate; defaults to `requestsPerSecond`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub burst: Option<u32>,
}

/// What switchboard last saw and did on this system.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PhoneSystemStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the system is reachable and its credentials work. `Synced`: the last sync
    /// applied every planned change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Which backend block the spec uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendKind>,
    /// Account counts from the last sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<AccountCounts>,
    /// When the last sync finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// How long the last sync took, as a Go duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_duration: Option<String>,
    /// What the last pass planned but did not write: every planned change under
    /// `policy: observe` or `suspend: true` (so switching to `sync` makes exactly these),
    /// otherwise the writes held for the request quota. Zero when nothing waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_changes: Option<PendingChanges>,
    /// The request quota the system announces (Telphin's hourly quota), as last seen.
    /// Refreshed whenever the status is written, and when it moved by a tenth of its
    /// limit; a pass that finds it spent waits for `resetTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<RequestQuota>,
    /// Creates sent (or about to be) whose accounts no Employee's status claims yet: the
    /// intents that keep a create from being made twice when the operator stops between
    /// the create and the Employee's status write. Recorded in one write per pass before
    /// the creates go out; each is gone once its Employee's entry holds the account.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["employee"]))]
    pub pending_creates: Vec<PendingCreate>,
}

/// A create switchboard sent, or is about to send, for an Employee of this namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PendingCreate {
    /// The Employee's name.
    pub employee: String,
    /// The extension the account is created with: where the next pass looks for it.
    pub extension: String,
    /// The fingerprint of the Employee's own password the create carries, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_fingerprint: Option<String>,
}

/// A request quota a system announces (`X-RateLimit-*`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RequestQuota {
    /// Requests allowed per window, when announced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Requests left in the window.
    pub remaining: u64,
    /// When the window starts again, when announced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_time: Option<Time>,
}

/// Changes a pass planned and did not make, by kind.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PendingChanges {
    /// Accounts to create.
    pub create: u32,
    /// Accounts to update.
    pub update: u32,
    /// Accounts to delete.
    pub delete: u32,
    /// Unowned accounts to take over (and update, where they differ).
    pub adopt: u32,
}

impl PendingChanges {
    pub fn total(&self) -> u32 {
        self.create.saturating_add(self.update).saturating_add(self.delete).saturating_add(self.adopt)
    }
}

impl std::fmt::Display for PendingChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} create, {} update, {} delete, {} adopt",
            self.create, self.update, self.delete, self.adopt
        )
    }
}

/// Account counts from one sync.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccountCounts {
    /// Employees that list this system.
    pub declared: u32,
    /// Accounts that match their Employee.
    pub in_sync: u32,
    /// Accounts waiting for a change (including deletions held by the guard).
    pub pending: u32,
    /// Employees whose account could not be brought in line.
    pub failed: u32,
    /// Accounts on the system that no Employee owns (left alone).
    pub unmanaged: u32,
}

impl PhoneSystemSpec {
    /// The one backend block, or an error naming the rule when there are none or several
    /// (the CRD's CEL rule rejects those at admission; this guards manifests read from
    /// files and clusters without the CRD's validation).
    pub fn backend(&self) -> Result<Backend<'_>, Error> {
        let mut found = Vec::with_capacity(1);
        if let Some(b) = &self.mikopbx {
            found.push(Backend::MikoPbx(b));
        }
        if let Some(b) = &self.thulium {
            found.push(Backend::Thulium(b));
        }
        if let Some(b) = &self.apio {
            found.push(Backend::Apio(b));
        }
        if let Some(b) = &self.telphin {
            found.push(Backend::Telphin(b));
        }
        if let Some(b) = &self.ringostat {
            found.push(Backend::Ringostat(b));
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            n => Err(Error::BackendBlocks { found: n }),
        }
    }

    /// `resyncInterval` parsed.
    pub fn resync_interval(&self) -> Result<std::time::Duration, Error> {
        parse_duration("spec.resyncInterval", &self.resync_interval)
    }

    /// `detailRefreshInterval` parsed.
    pub fn detail_refresh_interval(&self) -> Result<std::time::Duration, Error> {
        parse_duration("spec.detailRefreshInterval", &self.detail_refresh_interval)
    }
}

/// Parses a Go duration as Kubernetes writes them, naming the field on error.
pub(crate) fn parse_duration(field: &'static str, value: &str) -> Result<std::time::Duration, Error> {
    value
        .parse::<kube::core::Duration>()
        .ok()
        .map(std::time::Duration::from)
        .ok_or_else(|| Error::Duration { field, value: value.to_owned() })
}

/// The backend block of a `PhoneSystem`, borrowed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Backend<'a> {
    MikoPbx(&'a MikoPbx),
    Thulium(&'a Thulium),
    Apio(&'a Apio),
    Telphin(&'a Telphin),
    Ringostat(&'a Ringostat),
}

impl Backend<'_> {
    pub fn kind(&self) -> BackendKind {
        match self {
            Backend::MikoPbx(_) => BackendKind::Mikopbx,
            Backend::Thulium(_) => BackendKind::Thulium,
            Backend::Apio(_) => BackendKind::Apio,
            Backend::Telphin(_) => BackendKind::Telphin,
            Backend::Ringostat(_) => BackendKind::Ringostat,
        }
    }

    pub fn url(&self) -> &str {
        match self {
            Backend::MikoPbx(b) => &b.url,
            Backend::Thulium(b) => &b.url,
            Backend::Apio(b) => &b.url,
            Backend::Telphin(b) => &b.url,
            Backend::Ringostat(b) => &b.url,
        }
    }
}
