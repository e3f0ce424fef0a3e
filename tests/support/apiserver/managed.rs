//! Field ownership, as the real API server keeps it in `metadata.managedFields`
//! (structured-merge-diff, `sigs.k8s.io/structured-merge-diff/v6`: `typed/tofieldset.go`,
//! `typed/compare.go`, `merge/update.go`), reduced to what JSON objects and the schemas
//! of [`super::resources`] need:
//!
//! - A manager's field set is a set of paths; a path steps through struct fields
//!   (`f:name`), list-map items by their keys (`k:{"name":"x"}`) and set items
//!   (`v:"x"`). `fieldsV1` is the nested form of that set, with `.` marking a node
//!   that is itself a member.
//! - Apply: the applied configuration's set (scalars, atomic lists and maps, list-map
//!   items and their fields, granular map keys; not the struct nodes in between) is
//!   merged into the live object (structs and granular maps key by key, list maps item by
//!   item, sets by value, everything else replaced); what the manager applied last time
//!   and not now is pruned unless another manager owns it; a change to a field another
//!   manager owns is a 409 conflict naming the fields, unless `force`, which takes them
//!   over. Equal values become shared ownership, never a conflict.
//! - Update (create, `PUT`, merge and JSON patches): the writer takes every field it
//!   added or changed, silently, from whoever owned it; removed fields leave every set.
//! - Entries are per manager, operation (`Apply`/`Update`) and subresource; an entry
//!   whose set becomes empty is dropped. A request that changes neither the object nor
//!   any set is a no-op (no new `resourceVersion`).
//!
//! Not modelled: versions other than the stored one, `x-kubernetes-map-type: granular`
//! on untyped maps, duplicate list-map keys.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use serde_json::{Map, Value, json};

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Pe {
    Field(String),
    /// A list-map item: its key fields as canonical JSON (`{"name":"x"}`).
    Key(String),
    /// A set item: its value as canonical JSON.
    Value(String),
}

pub(crate) type Path = Vec<Pe>;
pub(crate) type FieldSet = BTreeSet<Path>;

impl Pe {
    fn encode(&self) -> String {
        match self {
            Pe::Field(name) => format!("f:{name}"),
            Pe::Key(key) => format!("k:{key}"),
            Pe::Value(value) => format!("v:{value}"),
        }
    }

    fn decode(text: &str) -> Option<Pe> {
        let (kind, rest) = text.split_at_checked(2)?;
        match kind {
            "f:" => Some(Pe::Field(rest.to_owned())),
            "k:" => Some(Pe::Key(rest.to_owned())),
            "v:" => Some(Pe::Value(rest.to_owned())),
            _ => None,
        }
    }
}

/// A path as the API server prints it in a conflict: `.status.phoneSystems[name="x"].state`.
pub(crate) fn display(path: &Path) -> String {
    let mut out = String::new();
    for pe in path {
        match pe {
            Pe::Field(name) => {
                out.push('.');
                out.push_str(name);
            }
            Pe::Key(key) => {
                let fields: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
                let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!("[{}]", parts.join(",")));
            }
            Pe::Value(value) => out.push_str(&format!("[={value}]")),
        }
    }
    out
}

/// How the schema treats a node: what structured-merge-diff's `schema.Atom` says.
#[derive(Clone, Debug)]
pub(crate) enum Shape {
    /// An object with known fields; others (and all of an untyped object) are `Untyped`.
    Struct(BTreeMap<String, Shape>),
    /// A granular map (`additionalProperties`, labels): every key is a member.
    Map(Box<Shape>),
    /// A list whose items are told apart by these fields.
    ListMap(Vec<String>, Box<Shape>),
    /// A list of unique scalars (`x-kubernetes-list-type: set`, finalizers).
    Set,
    /// Replaced whole: scalars, atomic lists and maps.
    Atomic,
    /// No schema: objects are granular maps, lists atomic.
    Untyped,
}

impl Shape {
    fn field(&self, name: &str) -> (Shape, bool) {
        match self {
            Shape::Struct(fields) => match fields.get(name) {
                Some(shape) => (shape.clone(), true),
                None => (Shape::Untyped, false),
            },
            Shape::Map(inner) => ((**inner).clone(), false),
            _ => (Shape::Untyped, false),
        }
    }

    /// What a node of this shape holding `value` is, once untyped nodes are resolved.
    fn resolve(&self, value: Option<&Value>) -> Shape {
        match self {
            Shape::Untyped => match value {
                Some(Value::Object(_)) => Shape::Map(Box::new(Shape::Untyped)),
                _ => Shape::Atomic,
            },
            other => other.clone(),
        }
    }
}

/// The shape of `metadata` in every object (from `ObjectMeta`'s list and map markers).
pub(crate) fn object_meta() -> Shape {
    let map = || Shape::Map(Box::new(Shape::Atomic));
    Shape::Struct(BTreeMap::from([
        ("labels".into(), map()),
        ("annotations".into(), map()),
        ("finalizers".into(), Shape::Set),
        ("ownerReferences".into(), Shape::ListMap(vec!["uid".into()], Box::new(Shape::Untyped))),
        ("generateName".into(), Shape::Atomic),
    ]))
}

/// A root shape from a CRD's `openAPIV3Schema`, with `metadata` as every object has it.
pub(crate) fn from_openapi(schema: &Value) -> Shape {
    let mut root = shape_of(schema);
    if let Shape::Struct(fields) = &mut root {
        fields.insert("metadata".into(), object_meta());
        fields.insert("apiVersion".into(), Shape::Atomic);
        fields.insert("kind".into(), Shape::Atomic);
    }
    root
}

fn shape_of(schema: &Value) -> Shape {
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            if schema.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic") {
                return Shape::Atomic;
            }
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                return Shape::Struct(properties.iter().map(|(k, v)| (k.clone(), shape_of(v))).collect());
            }
            match schema.get("additionalProperties") {
                Some(inner @ Value::Object(_)) => Shape::Map(Box::new(shape_of(inner))),
                _ => Shape::Untyped,
            }
        }
        Some("array") => {
            let items = schema.get("items").map_or(Shape::Untyped, shape_of);
            match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("map") => {
                    let keys = schema
                        .get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|keys| keys.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                        .unwrap_or_default();
                    Shape::ListMap(keys, Box::new(items))
                }
                Some("set") => Shape::Set,
                _ => Shape::Atomic,
            }
        }
        None if schema.get("x-kubernetes-preserve-unknown-fields").is_some() => Shape::Untyped,
        _ => Shape::Atomic,
    }
}

fn canonical(value: &Value) -> String {
    // serde_json's maps are ordered by key: this is already canonical.
    value.to_string()
}

fn item_key(keys: &[String], item: &Value) -> Pe {
    let fields: Map<String, Value> =
        keys.iter().map(|k| (k.clone(), item.get(k).cloned().unwrap_or(Value::Null))).collect();
    Pe::Key(canonical(&Value::Object(fields)))
}

fn set_key(item: &Value) -> Pe {
    Pe::Value(canonical(item))
}

/// The fields an applied configuration sets (structured-merge-diff's `ToFieldSet`).
pub(crate) fn field_set(value: &Value, shape: &Shape) -> FieldSet {
    let mut out = FieldSet::new();
    walk_set(value, shape, &mut Vec::new(), &mut out);
    out
}

fn walk_set(value: &Value, shape: &Shape, path: &mut Path, out: &mut FieldSet) {
    match (shape.resolve(Some(value)), value) {
        (Shape::Struct(_) | Shape::Map(_), Value::Object(map)) => {
            for (k, v) in map {
                let (child, known) = shape.field(k);
                path.push(Pe::Field(k.clone()));
                walk_set(v, &child, path, out);
                let empty = v.is_null() || v.as_object().is_some_and(Map::is_empty);
                if empty || !known {
                    out.insert(path.clone());
                }
                path.pop();
            }
        }
        (Shape::ListMap(keys, item), Value::Array(items)) => {
            for v in items {
                path.push(item_key(&keys, v));
                walk_set(v, &item, path, out);
                out.insert(path.clone());
                path.pop();
            }
        }
        (Shape::Set, Value::Array(items)) => {
            for v in items {
                path.push(set_key(v));
                out.insert(path.clone());
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

/// What changed between two objects (structured-merge-diff's `Compare`).
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    pub(crate) fn is_same(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }
}

pub(crate) fn compare(old: &Value, new: &Value, shape: &Shape) -> Comparison {
    let mut out = Comparison::default();
    walk_compare(Some(old), Some(new), shape, &mut Vec::new(), &mut out);
    out
}

fn is_empty_container(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

fn walk_compare(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    shape: &Shape,
    path: &mut Path,
    out: &mut Comparison,
) {
    let resolved = shape.resolve(rhs.or(lhs));
    let granular = matches!(
        (&resolved, rhs.or(lhs)),
        (Shape::Struct(_) | Shape::Map(_), Some(Value::Object(_)))
            | (Shape::ListMap(..) | Shape::Set, Some(Value::Array(_)))
    );
    let same_kind = match (lhs, rhs) {
        (Some(a), Some(b)) => std::mem::discriminant(a) == std::mem::discriminant(b),
        _ => true,
    };
    if !granular || !same_kind || (is_empty_container(lhs) && is_empty_container(rhs)) {
        match (lhs, rhs) {
            (None, Some(_)) => {
                out.added.insert(path.clone());
            }
            (Some(_), None) => {
                out.removed.insert(path.clone());
            }
            (Some(a), Some(b)) if a != b => {
                out.modified.insert(path.clone());
            }
            _ => {}
        }
        return;
    }
    match resolved {
        Shape::Struct(_) | Shape::Map(_) => {
            let empty = Map::new();
            let l = lhs.and_then(Value::as_object).unwrap_or(&empty);
            let r = rhs.and_then(Value::as_object).unwrap_or(&empty);
            let keys: BTreeSet<&String> = l.keys().chain(r.keys()).collect();
            for k in keys {
                let (child, _) = shape.field(k);
                path.push(Pe::Field(k.clone()));
                walk_compare(l.get(k), r.get(k), &child, path, out);
                path.pop();
            }
        }
        Shape::ListMap(keys, item) => {
            let index = |v: Option<&Value>| -> BTreeMap<Pe, Value> {
                v.and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|i| (item_key(&keys, i), i.clone()))
                    .collect()
            };
            let (l, r) = (index(lhs), index(rhs));
            let pes: BTreeSet<&Pe> = l.keys().chain(r.keys()).collect();
            for pe in pes {
                path.push(pe.clone());
                walk_compare(l.get(pe), r.get(pe), &item, path, out);
                path.pop();
            }
        }
        Shape::Set => {
            let index = |v: Option<&Value>| -> BTreeSet<Pe> {
                v.and_then(Value::as_array).into_iter().flatten().map(set_key).collect()
            };
            let (l, r) = (index(lhs), index(rhs));
            for pe in l.symmetric_difference(&r) {
                path.push(pe.clone());
                if r.contains(pe) {
                    out.added.insert(path.clone());
                } else {
                    out.removed.insert(path.clone());
                }
                path.pop();
            }
        }
        Shape::Atomic | Shape::Untyped => unreachable!("resolved shapes that are granular"),
    }
    match (lhs, rhs) {
        (None, Some(_)) => {
            out.added.insert(path.clone());
        }
        (Some(_), None) => {
            out.removed.insert(path.clone());
        }
        _ => {}
    }
}

/// Merges an applied configuration into the live object (structured-merge-diff's
/// `Merge`): list-map items by key, set items by value, granular nodes key by key.
pub(crate) fn merge(live: &mut Value, config: &Value, shape: &Shape) {
    match (shape.resolve(Some(config)), &mut *live, config) {
        (Shape::Struct(_) | Shape::Map(_), Value::Object(live_map), Value::Object(config_map)) => {
            for (k, v) in config_map {
                if v.is_null() {
                    live_map.remove(k);
                    continue;
                }
                let (child, _) = shape.field(k);
                match live_map.get_mut(k) {
                    Some(existing) => merge(existing, v, &child),
                    None => {
                        live_map.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Shape::ListMap(keys, item), Value::Array(live_items), Value::Array(config_items)) => {
            for v in config_items {
                let pe = item_key(&keys, v);
                match live_items.iter_mut().find(|i| item_key(&keys, i) == pe) {
                    Some(existing) => merge(existing, v, &item),
                    None => live_items.push(v.clone()),
                }
            }
        }
        (Shape::Set, Value::Array(live_items), Value::Array(config_items)) => {
            for v in config_items {
                if !live_items.contains(v) {
                    live_items.push(v.clone());
                }
            }
        }
        _ => *live = config.clone(),
    }
}

/// Removes what `manager` applied last time and no longer does, unless a manager still
/// owns it (structured-merge-diff's `prune`: an item goes whole unless something in it
/// is still owned; what it held that nobody owned goes with it).
pub(crate) fn prune(merged: &mut Value, last: &FieldSet, kept: &FieldSet, shape: &Shape) {
    let mut candidates: Vec<&Path> = last.iter().filter(|p| !kept.contains(*p)).collect();
    candidates.sort_by_key(|p| p.len());
    for path in candidates {
        let owned_below = kept.iter().any(|k| k.len() > path.len() && k.starts_with(path));
        if !owned_below {
            remove_at(merged, path, shape);
        }
    }
}

fn remove_at(doc: &mut Value, path: &[Pe], shape: &Shape) {
    let Some((first, rest)) = path.split_first() else { return };
    let resolved = shape.resolve(Some(doc));
    match (first, doc) {
        (Pe::Field(name), Value::Object(map)) => {
            if rest.is_empty() {
                map.remove(name);
            } else if let Some(child) = map.get_mut(name) {
                remove_at(child, rest, &shape.field(name).0);
            }
        }
        (pe @ Pe::Key(_), Value::Array(items)) => {
            let Shape::ListMap(keys, item) = resolved else { return };
            let Some(i) = items.iter().position(|v| item_key(&keys, v) == *pe) else { return };
            if rest.is_empty() {
                items.remove(i);
            } else {
                remove_at(&mut items[i], rest, &item);
            }
        }
        (pe @ Pe::Value(_), Value::Array(items)) if rest.is_empty() => {
            items.retain(|v| set_key(v) != *pe);
        }
        _ => {}
    }
}

/// Who owns what of one object: its `managedFields`, decoded.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Managers(pub Vec<Entry>);

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: &'static str,
    /// `""` or `"status"`.
    pub subresource: String,
    pub api_version: String,
    pub time: Option<Value>,
    pub set: FieldSet,
}

impl Managers {
    pub(crate) fn of(obj: &Value) -> Managers {
        let entries = obj.pointer("/metadata/managedFields").and_then(Value::as_array);
        Managers(
            entries
                .into_iter()
                .flatten()
                .filter_map(|e| {
                    Some(Entry {
                        manager: e.get("manager")?.as_str()?.to_owned(),
                        operation: match e.get("operation")?.as_str()? {
                            "Apply" => "Apply",
                            _ => "Update",
                        },
                        subresource: e.get("subresource").and_then(Value::as_str).unwrap_or("").to_owned(),
                        api_version: e.get("apiVersion").and_then(Value::as_str).unwrap_or("").to_owned(),
                        time: e.get("time").cloned(),
                        set: decode_fields(e.get("fieldsV1").unwrap_or(&Value::Null)),
                    })
                })
                .collect(),
        )
    }

    pub(crate) fn to_value(&self) -> Value {
        Value::Array(
            self.0
                .iter()
                .map(|e| {
                    let mut entry = json!({
                        "manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                        "fieldsType": "FieldsV1", "fieldsV1": encode_fields(&e.set),
                    });
                    if let Some(time) = &e.time {
                        entry["time"] = time.clone();
                    }
                    if !e.subresource.is_empty() {
                        entry["subresource"] = json!(e.subresource);
                    }
                    entry
                })
                .collect(),
        )
    }

    fn position(&self, manager: &str, operation: &str, subresource: &str) -> Option<usize> {
        self.0
            .iter()
            .position(|e| e.manager == manager && e.operation == operation && e.subresource == subresource)
    }

    /// The set `manager` last applied through `subresource`.
    pub(crate) fn applied(&self, manager: &str, subresource: &str) -> FieldSet {
        self.position(manager, "Apply", subresource).map(|i| self.0[i].set.clone()).unwrap_or_default()
    }

    /// Everything any manager owns, with `manager`'s applied set replaced by `set`.
    pub(crate) fn owned_with(&self, manager: &str, subresource: &str, set: &FieldSet) -> FieldSet {
        let mut all = set.clone();
        for e in &self.0 {
            if !(e.manager == manager && e.operation == "Apply" && e.subresource == subresource) {
                all.extend(e.set.iter().cloned());
            }
        }
        all
    }
}

/// Who writes, and how.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    pub manager: String,
    pub subresource: &'static str,
    pub op: Op,
}

#[derive(Clone, Debug)]
pub(crate) enum Op {
    Update,
    Apply { set: FieldSet, force: bool },
}

/// The conflicts of an apply without `force`: `(manager, path)`.
#[derive(Debug)]
pub(crate) struct Conflicts(pub Vec<(String, Path)>);

/// The managers of `new`, written by `writer` over `old`, given what changed (`cmp`).
/// Sets only `time` of the writer's entry, and only when the object or its set changed.
pub(crate) fn update(
    old: &Managers,
    cmp: &Comparison,
    writer: &Writer,
    api_version: &str,
) -> Result<Managers, Conflicts> {
    let mut managers = old.clone();
    let operation = match writer.op {
        Op::Apply { .. } => "Apply",
        Op::Update => "Update",
    };
    let own = managers.position(&writer.manager, operation, writer.subresource);
    let changed: FieldSet = cmp.modified.union(&cmp.added).cloned().collect();
    if let Op::Apply { force: false, .. } = writer.op {
        let conflicts: Vec<(String, Path)> = managers
            .0
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != own)
            .flat_map(|(_, e)| e.set.intersection(&changed).map(|p| (e.manager.clone(), p.clone())))
            .collect();
        if !conflicts.is_empty() {
            return Err(Conflicts(conflicts));
        }
    }
    for (i, e) in managers.0.iter_mut().enumerate() {
        if Some(i) != own {
            e.set.retain(|p| !changed.contains(p) && !cmp.removed.contains(p));
        }
    }
    let set = match &writer.op {
        Op::Apply { set, .. } => set.clone(),
        Op::Update => {
            let before = own.map(|i| managers.0[i].set.clone()).unwrap_or_default();
            before.difference(&cmp.removed).cloned().chain(changed.iter().cloned()).collect()
        }
    };
    let time = (!cmp.is_same() || own.is_none_or(|i| managers.0[i].set != set))
        .then(|| serde_json::to_value(Time(Timestamp::now())).unwrap_or(Value::Null));
    match own {
        Some(i) => {
            let entry = &mut managers.0[i];
            entry.set = set;
            if time.is_some() {
                entry.time = time;
                entry.api_version = api_version.to_owned();
            }
        }
        None => managers.0.push(Entry {
            manager: writer.manager.clone(),
            operation,
            subresource: writer.subresource.to_owned(),
            api_version: api_version.to_owned(),
            time,
            set,
        }),
    }
    managers.0.retain(|e| !e.set.is_empty());
    Ok(managers)
}

/// `fieldsV1`: the nested form of a set.
pub(crate) fn encode_fields(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for pe in path {
            node = node
                .entry(pe.encode())
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("fieldsV1 nodes are objects");
        }
        // A member with children says so with `.`; a leaf member is an empty object.
        node.entry(".").or_insert_with(|| Value::Object(Map::new()));
    }
    // Leaves keep no `.`: it marks membership only where there are children too.
    fn tidy(node: &mut Map<String, Value>) {
        for child in node.values_mut() {
            if let Value::Object(map) = child {
                tidy(map);
                if map.len() == 1 && map.contains_key(".") {
                    map.clear();
                }
            }
        }
    }
    tidy(&mut root);
    Value::Object(root)
}

pub(crate) fn decode_fields(fields: &Value) -> FieldSet {
    fn walk(node: &Map<String, Value>, path: &mut Path, out: &mut FieldSet) {
        for (key, child) in node {
            if key == "." {
                out.insert(path.clone());
                continue;
            }
            let Some(pe) = Pe::decode(key) else { continue };
            path.push(pe);
            match child.as_object() {
                Some(map) if !map.is_empty() => walk(map, path, out),
                _ => {
                    out.insert(path.clone());
                }
            }
            path.pop();
        }
    }
    let mut out = FieldSet::new();
    if let Some(map) = fields.as_object() {
        walk(map, &mut Vec::new(), &mut out);
    }
    out
}

/// The part of an object that field ownership covers through `subresource`: never the
/// identity and bookkeeping of `metadata`; through `/status` only `status`; through the
/// main resource of a kind with a status subresource everything but `status`.
pub(crate) fn scoped(obj: &Value, status_subresource: bool, subresource: &str) -> Value {
    let mut out = obj.clone();
    let Some(map) = out.as_object_mut() else { return out };
    map.remove("apiVersion");
    map.remove("kind");
    if subresource == "status" {
        map.retain(|k, _| k == "status");
        return out;
    }
    if status_subresource {
        map.remove("status");
    }
    if let Some(Value::Object(meta)) = map.get_mut("metadata") {
        for field in [
            "name",
            "namespace",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(field);
        }
        if meta.is_empty() {
            map.remove("metadata");
        }
    }
    out
}
