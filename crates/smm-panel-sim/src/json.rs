//! A tiny ordered JSON value, so replies keep the field order of the panel docs.

use std::borrow::Cow;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

pub(crate) type Key = Cow<'static, str>;

/// Ordered JSON value (objects keep insertion order).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum J {
    Null,
    Bool(bool),
    UInt(u64),
    Float(f64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(Key, J)>),
}

impl J {
    pub(crate) fn s(v: impl Into<String>) -> J {
        J::Str(v.into())
    }

    pub(crate) fn obj<const N: usize>(fields: [(&'static str, J); N]) -> J {
        J::Obj(
            fields
                .into_iter()
                .map(|(k, v)| (Cow::Borrowed(k), v))
                .collect(),
        )
    }

    pub(crate) fn error(text: impl Into<String>) -> J {
        J::obj([("error", J::s(text))])
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        // Serialising this type cannot fail (no maps with non-string keys, no I/O).
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }
}

impl Serialize for J {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            J::Null => s.serialize_unit(),
            J::Bool(b) => s.serialize_bool(*b),
            J::UInt(n) => s.serialize_u64(*n),
            J::Float(f) if f.is_finite() => s.serialize_f64(*f),
            J::Float(_) => s.serialize_unit(),
            J::Str(v) => s.serialize_str(v),
            J::Arr(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(i)?;
                }
                seq.end()
            }
            J::Obj(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k.as_ref(), v)?;
                }
                map.end()
            }
        }
    }
}

/// Cuts a serialised JSON reply short so it is never valid JSON: drops the last two bytes
/// (compact JSON always ends with a closing bracket), e.g. `{"order":123}` → `{"order":12`.
pub(crate) fn garble(body: &[u8]) -> Vec<u8> {
    let mut cut = body.len().saturating_sub(2).max(1).min(body.len());
    // Stay on a UTF-8 character boundary.
    while cut > 1 && cut < body.len() && (body[cut] & 0b1100_0000) == 0b1000_0000 {
        cut -= 1;
    }
    body.get(..cut).unwrap_or(body).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_field_order() {
        let v = J::obj([
            ("charge", J::s("1.00000")),
            ("status", J::s("Pending")),
            ("a", J::UInt(1)),
        ]);
        assert_eq!(
            String::from_utf8(v.to_bytes()).unwrap(),
            r#"{"charge":"1.00000","status":"Pending","a":1}"#
        );
    }

    #[test]
    fn garbled_is_never_valid_json() {
        for body in [
            r#"{"order":123}"#,
            r#"{"order":1}"#,
            r#"[]"#,
            r#"{"balance":"1.00000","currency":"USD"}"#,
            r#"[{"service":1,"name":"é"}]"#,
            r#"{"name":"éé"}"#,
        ] {
            let g = garble(body.as_bytes());
            assert!(g.len() < body.len());
            assert!(
                serde_json::from_slice::<serde_json::Value>(&g).is_err(),
                "{body}"
            );
        }
        assert_eq!(garble(br#"{"order":123}"#), br#"{"order":12"#.to_vec());
    }
}
