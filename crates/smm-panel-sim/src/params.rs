//! Request parameters: query string merged with a form or JSON body (body wins), PHP style.

use std::collections::BTreeMap;

pub(crate) type Params = BTreeMap<String, String>;

/// Collects the parameters of one request. The body is read only when its `Content-Type` says
/// form (`application/x-www-form-urlencoded`, any parameters) or JSON (`application/json`), as a
/// PHP panel reading `$_POST`/`php://input` would; other bodies are ignored.
pub(crate) fn collect(query: Option<&str>, content_type: Option<&str>, body: &[u8]) -> Params {
    let mut params = Params::new();
    if let Some(q) = query {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            params.insert(k.into_owned(), v.into_owned());
        }
    }
    if body.is_empty() {
        return params;
    }
    match body_kind(content_type) {
        BodyKind::Form => {
            for (k, v) in form_urlencoded::parse(body) {
                params.insert(k.into_owned(), v.into_owned());
            }
        }
        BodyKind::Json => {
            if let Ok(serde_json::Value::Object(map)) =
                serde_json::from_slice::<serde_json::Value>(body)
            {
                for (k, v) in map {
                    if let Some(s) = json_scalar(&v) {
                        params.insert(k, s);
                    }
                }
            }
        }
        BodyKind::Other => {}
    }
    params
}

enum BodyKind {
    Form,
    Json,
    Other,
}

fn body_kind(content_type: Option<&str>) -> BodyKind {
    let Some(ct) = content_type else {
        return BodyKind::Other;
    };
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        BodyKind::Form
    } else if mime.eq_ignore_ascii_case("application/json")
        || (mime.len() > 5
            && mime
                .get(mime.len() - 5..)
                .is_some_and(|s| s.eq_ignore_ascii_case("+json")))
    {
        BodyKind::Json
    } else {
        BodyKind::Other
    }
}

/// A JSON value as the string PHP would see: strings as is, numbers in their JSON text,
/// booleans `1`/`0`, arrays of scalars joined with commas; null and objects are dropped.
fn json_scalar(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_owned()),
        Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .filter(|i| !i.is_array() && !i.is_object())
                .filter_map(json_scalar)
                .collect();
            Some(parts.join(","))
        }
        Value::Null | Value::Object(_) => None,
    }
}

/// A non-blank parameter, trimmed.
pub(crate) fn text<'a>(p: &'a Params, name: &str) -> Option<&'a str> {
    p.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
}

/// An unsigned integer parameter (digits only, surrounding blanks allowed).
pub(crate) fn uint(p: &Params, name: &str) -> Option<u64> {
    text(p, name).and_then(parse_uint)
}

pub(crate) fn parse_uint(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Number of non-blank lines of a list parameter (`\n` or `\r\n` separated).
pub(crate) fn lines(p: &Params, name: &str) -> u64 {
    p.get(name)
        .map(|s| s.lines().filter(|l| !l.trim().is_empty()).count() as u64)
        .unwrap_or(0)
}

/// Comma-separated id list: trimmed, blanks dropped.
pub(crate) fn csv(s: &str) -> Vec<&str> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_wins_over_query() {
        let p = collect(
            Some("key=q&action=balance&x=1"),
            Some("application/x-www-form-urlencoded; charset=UTF-8"),
            b"key=b&y=a+b%2Bc",
        );
        assert_eq!(p["key"], "b");
        assert_eq!(p["x"], "1");
        assert_eq!(p["y"], "a b+c");
    }

    #[test]
    fn json_values() {
        let p = collect(
            None,
            Some("application/json"),
            br#"{"key":"k","service":1,"rate":0.5,"orders":[1,"2"],"x":null,"b":true}"#,
        );
        assert_eq!(p["service"], "1");
        assert_eq!(p["rate"], "0.5");
        assert_eq!(p["orders"], "1,2");
        assert_eq!(p["b"], "1");
        assert!(!p.contains_key("x"));
    }

    #[test]
    fn other_bodies_ignored() {
        assert!(collect(None, None, b"key=a").is_empty());
        assert!(collect(None, Some("text/plain"), b"key=a").is_empty());
        assert!(collect(None, Some("application/json"), b"{not json").is_empty());
    }

    #[test]
    fn packed_round_trip() {
        let mut p = Params::new();
        p.insert("key".into(), "k".into());
        p.insert("link".into(), "https://é/\u{0}x".into());
        p.insert("empty".into(), String::new());
        let packed = Packed::new(&p, &[]);
        assert_eq!(packed.to_map(), p);
        assert_eq!(packed.get("link"), Some("https://é/\u{0}x"));
        assert_eq!(packed.get("empty"), Some(""));
        let skipped = Packed::new(&p, &["key"]);
        assert_eq!(skipped.get("key"), None);
        assert_eq!(skipped.to_map().len(), 2);
        assert!(Packed::default().to_map().is_empty());
    }

    #[test]
    fn counting_lines() {
        let mut p = Params::new();
        p.insert("c".into(), "a\r\nb\n\n  \nc\r\n".into());
        assert_eq!(lines(&p, "c"), 3);
        assert_eq!(parse_uint(" 12 "), Some(12));
        assert_eq!(parse_uint("-1"), None);
        assert_eq!(parse_uint("1.0"), None);
        assert_eq!(parse_uint("99999999999999999999999"), None);
    }
}

/// Parameters packed into two allocations (for the request log and stored orders, which can
/// hold millions of entries): all keys and values concatenated, plus their byte lengths.
#[derive(Debug, Clone, Default)]
pub(crate) struct Packed {
    buf: Box<str>,
    lens: Box<[u32]>,
}

impl Packed {
    /// Packs every parameter except those named in `skip`.
    pub(crate) fn new(p: &Params, skip: &[&str]) -> Packed {
        let kept = || p.iter().filter(|(k, _)| !skip.contains(&k.as_str()));
        let mut buf = String::with_capacity(kept().map(|(k, v)| k.len() + v.len()).sum());
        let mut lens = Vec::with_capacity(p.len() * 2);
        for (k, v) in kept() {
            // Request bodies are capped far below 4 GiB, so lengths fit; saturate anyway.
            lens.push(u32::try_from(k.len()).unwrap_or(u32::MAX));
            lens.push(u32::try_from(v.len()).unwrap_or(u32::MAX));
            buf.push_str(k);
            buf.push_str(v);
        }
        Packed {
            buf: buf.into_boxed_str(),
            lens: lens.into_boxed_slice(),
        }
    }

    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut pos = 0usize;
        self.lens.chunks_exact(2).filter_map(move |kv| {
            let (kl, vl) = (kv[0] as usize, kv[1] as usize);
            let k = self.buf.get(pos..pos + kl)?;
            let v = self.buf.get(pos + kl..pos + kl + vl)?;
            pos += kl + vl;
            Some((k, v))
        })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    pub(crate) fn to_map(&self) -> Params {
        self.pairs()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}
