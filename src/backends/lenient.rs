//! Tolerant reading of the systems' answers.
//!
//! The vendors' documents disagree with each other and with their own examples on the
//! shapes of answers (a bare array or `{count, result}`; ids as numbers or strings;
//! booleans as `true`, `1` or `"1"`). Backends read only the fields they use, with the
//! helpers here, so every plausible shape is accepted; and they read a list record by
//! record, so one record that cannot be read fails alone: it is reported as
//! [`Unreadable`] and the listing counts as partial around it, instead of the whole
//! listing failing (or, worse, the record being taken for absent).

use std::fmt;

use serde::{
    Deserialize, Deserializer,
    de::{self, DeserializeOwned, Visitor},
};
use serde_json::{Value, value::RawValue};

use super::Unreadable;

/// The records of a list answer, each still unparsed.
#[derive(Debug)]
pub struct Records<'a> {
    /// Each record, with its key where the list is an object keyed by id.
    pub items: Vec<(Option<String>, &'a RawValue)>,
    /// The shape the answer had, in words (`bare array`, `{result: [...]}`, `object keyed
    /// by id`): what `switchboard probe` reports.
    pub shape: String,
}

/// Splits a list answer into its records. Accepts a bare array; an object holding the
/// list under one of `wrappers` (nested wrappers followed: `{"data": {"data": [...]}}`);
/// an object keyed by id whose values are the records; `null` (under a wrapper or alone)
/// as no records. An error says what the answer was instead.
pub fn records<'a>(body: &'a [u8], wrappers: &[&str]) -> Result<Records<'a>, String> {
    let raw: &RawValue = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let mut path = Vec::new();
    let mut raw = raw;
    loop {
        match first_byte(raw) {
            b'[' => {
                let list: Vec<&RawValue> =
                    serde_json::from_str(raw.get()).map_err(|e| format!("{}: {e}", shape_of(&path)))?;
                let shape = if path.is_empty() { "bare array".to_owned() } else { shape_of(&path) };
                return Ok(Records { items: list.into_iter().map(|r| (None, r)).collect(), shape });
            }
            b'n' => return Ok(Records { items: Vec::new(), shape: format!("{} (null)", shape_of(&path)) }),
            b'{' => {
                let object: Vec<(String, &RawValue)> = object_entries(raw)?;
                if let Some((key, inner)) =
                    wrappers.iter().find_map(|w| object.iter().find(|(k, _)| k == w).map(|(k, v)| (k, *v)))
                {
                    path.push(key.clone());
                    raw = inner;
                    continue;
                }
                if !object.is_empty() && object.iter().all(|(_, v)| first_byte(v) == b'{') {
                    let shape = match path.is_empty() {
                        true => "object keyed by id".to_owned(),
                        false => format!("{} keyed by id", shape_of(&path)),
                    };
                    return Ok(Records {
                        items: object.into_iter().map(|(k, v)| (Some(k), v)).collect(),
                        shape,
                    });
                }
                if object.is_empty() && !path.is_empty() {
                    return Ok(Records {
                        items: Vec::new(),
                        shape: format!("{} (empty object)", shape_of(&path)),
                    });
                }
                let keys: Vec<&str> = object.iter().map(|(k, _)| k.as_str()).take(8).collect();
                return Err(format!("an object with keys {keys:?}, holding no list under {wrappers:?}"));
            }
            _ => return Err(format!("{}: neither a list nor an object", shape_of(&path))),
        }
    }
}

/// `{a: {b: [...]}}` for the path `[a, b]`.
fn shape_of(path: &[String]) -> String {
    if path.is_empty() {
        return "the answer".to_owned();
    }
    let mut out = String::from("[...]");
    for key in path.iter().rev() {
        out = format!("{{{key}: {out}}}");
    }
    out
}

fn first_byte(raw: &RawValue) -> u8 {
    raw.get().bytes().find(|b| !b.is_ascii_whitespace()).unwrap_or(b'n')
}

fn object_entries(raw: &RawValue) -> Result<Vec<(String, &RawValue)>, String> {
    struct Entries<'a>(Vec<(String, &'a RawValue)>);
    impl<'de> Deserialize<'de> for Entries<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Entries<'de>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                    let mut out = Vec::new();
                    while let Some((k, v)) = map.next_entry::<String, &'de RawValue>()? {
                        out.push((k, v));
                    }
                    Ok(Entries(out))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_str::<Entries>(raw.get()).map(|e| e.0).map_err(|e| format!("not an object: {e}"))
}

/// One record as `T`; the error names the field that failed (`number: invalid type: map`).
pub fn read<T: DeserializeOwned>(raw: &RawValue) -> Result<T, String> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde_json appends the position; a field name says more to a person.
        let inner = inner.split(" at line ").next().unwrap_or(&inner).to_owned();
        if path == "." { inner } else { format!("{path}: {inner}") }
    })
}

/// What can be made out of a record that [`read`] refused: its id and extension, where
/// they are plain values under one of the given keys, and the problem.
pub fn unreadable(
    raw: &RawValue,
    key: Option<&str>,
    ids: &[&str],
    extensions: &[&str],
    problem: String,
) -> Unreadable {
    let value: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
    let pick = |names: &[&str]| names.iter().find_map(|n| value.get(*n).and_then(scalar));
    Unreadable { id: pick(ids).or_else(|| key.map(str::to_owned)), extension: pick(extensions), problem }
}

/// A string or a number as text; anything else is `None`.
pub fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `deserialize_with` for `Option<String>` fields that systems send as a string or a
/// number (ids, extensions); `null` is `None`. Booleans, lists and objects are errors.
pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_any(TextVisitor)
}

/// `deserialize_with` (with `#[serde(default)]`) for a field whose presence matters: a
/// string or a number as text, `null` as `Some("")` (present, empty), absent as `None`.
pub fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Some(d.deserialize_any(TextVisitor)?.unwrap_or_default()))
}

/// `deserialize_with` for a required `String` sent as a string or a number.
pub fn text_required<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_any(TextVisitor)?.ok_or_else(|| de::Error::custom("is null"))
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or a number")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        if v.fract() == 0.0 && v.abs() < 1e15 { Ok(Some(format!("{v:.0}"))) } else { Ok(Some(v.to_string())) }
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

/// `deserialize_with` for `Option<bool>` fields that systems send as `true`/`false`,
/// `1`/`0`, `"1"`/`"0"` or `"true"`/`"false"`; `null` and `""` are `None`. Other values
/// are errors, so a value we do not understand is reported rather than guessed.
pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<bool>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a boolean, 0/1, or \"true\"/\"false\"")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            match v {
                0 => Ok(Some(false)),
                1 => Ok(Some(true)),
                _ => Err(E::custom(format!("{v} is not a boolean"))),
            }
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            self.visit_u64(u64::try_from(v).map_err(|_| E::custom(format!("{v} is not a boolean")))?)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" => Ok(Some(true)),
                "0" | "false" => Ok(Some(false)),
                "" => Ok(None),
                _ => Err(E::custom(format!("{v:?} is not a boolean"))),
            }
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Item {
        #[serde(deserialize_with = "text_required")]
        id: String,
        #[serde(default, deserialize_with = "text")]
        number: Option<String>,
        #[serde(default, deserialize_with = "flag")]
        active: Option<bool>,
    }

    fn shapes(body: &str, wrappers: &[&str]) -> (usize, String) {
        let r = records(body.as_bytes(), wrappers).unwrap();
        (r.items.len(), r.shape)
    }

    #[test]
    fn every_list_shape_gives_its_records() {
        assert_eq!(shapes(r#"[{"id":1},{"id":2}]"#, &["result"]), (2, "bare array".into()));
        assert_eq!(
            shapes(r#"{"count":2,"result":[{"id":1},{"id":2}]}"#, &["result"]),
            (2, "{result: [...]}".into())
        );
        assert_eq!(
            shapes(r#"{"data":{"data":[{"id":1}],"recordsTotal":1}}"#, &["data"]),
            (1, "{data: {data: [...]}}".into())
        );
        assert_eq!(
            shapes(r#"{"result":{"7":{"id":7},"9":{"id":9}}}"#, &["result"]),
            (2, "{result: [...]} keyed by id".into())
        );
        assert_eq!(shapes(r#"{"result":null}"#, &["result"]).0, 0);
        assert_eq!(shapes(r#"{"result":{}}"#, &["result"]).0, 0);
        assert_eq!(shapes("[]", &[]).0, 0);
    }

    #[test]
    fn an_answer_without_a_list_is_an_error_naming_what_it_was() {
        let err = records(br#"{"error":"denied"}"#, &["result"]).unwrap_err();
        assert!(err.contains("error"), "{err}");
        assert!(records(b"<html>", &["result"]).is_err());
        assert!(records(br#""text""#, &["result"]).is_err());
    }

    #[test]
    fn ids_and_flags_in_every_plausible_form() {
        let body = r#"[{"id":7,"number":201,"active":1},{"id":"8","number":"202","active":"false"},
                       {"id":9.0,"number":null,"active":true}]"#;
        let items: Vec<Item> =
            records(body.as_bytes(), &[]).unwrap().items.iter().map(|(_, r)| read(r).unwrap()).collect();
        assert_eq!(items[0].id, "7");
        assert_eq!(items[0].number.as_deref(), Some("201"));
        assert_eq!(items[0].active, Some(true));
        assert_eq!(items[1].active, Some(false));
        assert_eq!(items[2].id, "9");
        assert_eq!(items[2].number, None);
    }

    #[test]
    fn a_bad_record_fails_alone_and_names_its_field() {
        let body = r#"[{"id":1,"number":"201"},{"id":2,"number":{"x":1}},{"id":3,"active":"maybe"}]"#;
        let list = records(body.as_bytes(), &[]).unwrap();
        let results: Vec<Result<Item, String>> = list.items.iter().map(|(_, r)| read(r)).collect();
        assert!(results[0].is_ok());
        let err = results[1].as_ref().unwrap_err();
        assert!(err.starts_with("number: "), "{err}");
        assert!(results[2].as_ref().unwrap_err().starts_with("active: "));
        let u = unreadable(list.items[1].1, None, &["id"], &["number"], err.clone());
        assert_eq!(u.id.as_deref(), Some("2"));
        assert_eq!(u.extension, None);
    }
}
