//! Request parameters, read the same way from every body a v2 client sends.
//!
//! Clients send the v2 parameters as an `application/x-www-form-urlencoded` body (with or without
//! `; charset=`), a `multipart/form-data` body, a query string, or a JSON object. Values may be
//! strings or numbers. All four end up as the same [`Params`], so the rest of the code never cares
//! how a request arrived.

use std::collections::BTreeMap;

mod multipart;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why a body could not be read as parameters. Downstream this is `Incorrect request`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error("the JSON body is not an object of scalar values: {0}")]
    Json(String),
    #[error("the multipart body is malformed: {0}")]
    Multipart(&'static str),
    #[error("the multipart content type has no boundary")]
    NoBoundary,
}

/// Parameter name → value. A name given twice keeps its last value (as PHP panels do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    map: BTreeMap<String, String>,
}

impl Params {
    pub fn new() -> Self {
        Self::default()
    }

    /// `a=1&b=2` form bodies and query strings. Percent-decoding and `+` as space; invalid
    /// UTF-8 after decoding is replaced (lossy), never an error. Names are kept as sent.
    pub fn from_urlencoded(input: &[u8]) -> Params {
        form_urlencoded::parse(input).into_owned().collect()
    }

    /// A JSON object. Strings stay as they are; numbers become their decimal text (`100`,
    /// `0.5`); booleans become `1`/`0`; `null` is treated as absent; an array of scalars becomes a
    /// comma list (`[1,2]` → `1,2`). Nested objects, or a body that is not an object, are errors.
    ///
    /// Numbers keep the text serde_json gives them: integers exactly, non-integers as the
    /// shortest text that round-trips through `f64` (`0.5`, `100.0`), which is what the typed
    /// readers ([`crate::OrderRequest::parse`]) expect. A leading UTF-8 BOM is ignored.
    pub fn from_json(input: &[u8]) -> Result<Params, ParamsError> {
        let input = input.strip_prefix(BOM).unwrap_or(input);
        let value: serde_json::Value =
            serde_json::from_slice(input).map_err(|e| ParamsError::Json(e.to_string()))?;
        let serde_json::Value::Object(object) = value else {
            return Err(ParamsError::Json(
                "the body is not a JSON object".to_owned(),
            ));
        };
        let mut params = Params::new();
        for (name, value) in object {
            let text = match value {
                serde_json::Value::Array(items) => {
                    let mut parts = Vec::with_capacity(items.len());
                    for item in items {
                        match json_scalar(item) {
                            Ok(Some(text)) => parts.push(text),
                            Ok(None) => {}
                            Err(()) => return Err(nested_error(&name)),
                        }
                    }
                    Some(parts.join(","))
                }
                other => json_scalar(other).map_err(|()| nested_error(&name))?,
            };
            if let Some(text) = text {
                params.insert(name, text);
            }
        }
        Ok(params)
    }

    /// A complete `multipart/form-data` body with the given boundary. File parts are read as text
    /// like any other part (lossy UTF-8). Handles `\r\n` line ends, quoted names, and a missing
    /// final `--`.
    ///
    /// Also tolerated: LF-only line ends, a preamble before the first delimiter, an epilogue after
    /// the last, a body that is only the closing delimiter (no parameters), and a last part with
    /// no closing delimiter at all (its value runs to the end, less one line break). A part
    /// without a `name` in its `Content-Disposition`, or whose headers never end, is an error.
    pub fn from_multipart(input: &[u8], boundary: &str) -> Result<Params, ParamsError> {
        multipart::parse(input, boundary)
    }

    /// Chooses the reader by `Content-Type` (case-insensitive, parameters such as `charset`
    /// ignored): form → [`Params::from_urlencoded`], `multipart/form-data` →
    /// [`Params::from_multipart`] with its boundary, `application/json` or any `+json` →
    /// [`Params::from_json`]. With no or another content type: an empty or whitespace body is no
    /// parameters, a body starting with `{` (after whitespace) is JSON, anything else is read as
    /// urlencoded (old clients send forms without a content type).
    ///
    /// Whatever the content type, an empty or whitespace-only body is no parameters (clients
    /// send `GET` with a JSON content type and the parameters in the query).
    pub fn from_body(content_type: Option<&str>, body: &[u8]) -> Result<Params, ParamsError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Params::new());
        }
        let (mime, ct_params) = match content_type {
            Some(ct) => parse_content_type(ct),
            None => (String::new(), Vec::new()),
        };
        match mime.as_str() {
            "application/x-www-form-urlencoded" => Ok(Params::from_urlencoded(body)),
            "multipart/form-data" => {
                let boundary = ct_params
                    .iter()
                    .find(|(name, _)| name == "boundary")
                    .map(|(_, value)| value.as_str())
                    .filter(|b| !b.is_empty())
                    .ok_or(ParamsError::NoBoundary)?;
                Params::from_multipart(body, boundary)
            }
            m if m == "application/json" || m.ends_with("+json") => Params::from_json(body),
            _ => {
                let start = body.strip_prefix(BOM).unwrap_or(body);
                let first = start.iter().find(|b| !b.is_ascii_whitespace());
                if first == Some(&b'{') {
                    Params::from_json(body)
                } else {
                    Ok(Params::from_urlencoded(body))
                }
            }
        }
    }

    /// Query parameters overlaid by body parameters: the body wins on a clash, as PHP's
    /// `$_REQUEST` does with its default `GP` order.
    pub fn merged(query: Params, body: Params) -> Params {
        let mut map = query.map;
        map.extend(body.map);
        Params { map }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// The value with surrounding whitespace trimmed, `None` when absent or blank.
    pub fn get_trimmed(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.map.insert(name.into(), value.into());
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Params {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Params {
            map: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

/// A JSON scalar as parameter text; `Ok(None)` for `null`, `Err` for arrays and objects.
fn json_scalar(value: serde_json::Value) -> Result<Option<String>, ()> {
    match value {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s)),
        serde_json::Value::Number(n) => Ok(Some(n.to_string())),
        serde_json::Value::Bool(b) => Ok(Some(if b { "1" } else { "0" }.to_owned())),
        serde_json::Value::Array(_) | serde_json::Value::Object(_) => Err(()),
    }
}

fn nested_error(name: &str) -> ParamsError {
    let shown: String = name.chars().take(64).collect();
    ParamsError::Json(format!(
        "the value of {shown:?} is not a scalar or a list of scalars"
    ))
}

/// `type/subtype; name=value; name="quoted value"` → lower-cased `type/subtype` and the
/// parameters with lower-cased names.
fn parse_content_type(content_type: &str) -> (String, Vec<(String, String)>) {
    let (mime, rest) = content_type.split_once(';').unwrap_or((content_type, ""));
    (mime.trim().to_ascii_lowercase(), header_params(rest))
}

/// Parses `; a=b; c="d;e"` header parameters. Names are lower-cased; quoted values may escape
/// `"` and `\` with a backslash (any other backslash is kept, for Windows file names).
pub(crate) fn header_params(input: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ';' || c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return out;
        }
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && *c != ';') {
            name.push(c);
        }
        let name = name.trim().to_ascii_lowercase();
        let mut value = String::new();
        if chars.next_if_eq(&'=').is_some() {
            while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
            if chars.next_if_eq(&'"').is_some() {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next_if(|n| *n == '"' || *n == '\\') {
                            Some(escaped) => value.push(escaped),
                            None => value.push('\\'),
                        },
                        other => value.push(other),
                    }
                }
                // Anything between the closing quote and the next `;` is ignored.
                while chars.next_if(|c| *c != ';').is_some() {}
            } else {
                while let Some(c) = chars.next_if(|c| *c != ';') {
                    value.push(c);
                }
                value = value.trim().to_owned();
            }
        }
        if !name.is_empty() {
            out.push((name, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let (mime, params) =
            parse_content_type(" Multipart/Form-Data ; Boundary=\"x;\\\"y\\z\" ; charset=utf-8");
        assert_eq!(mime, "multipart/form-data");
        assert_eq!(
            params,
            vec![
                ("boundary".to_owned(), "x;\"y\\z".to_owned()),
                ("charset".to_owned(), "utf-8".to_owned()),
            ]
        );
        assert_eq!(parse_content_type("text/plain").1, vec![]);
        assert_eq!(
            header_params("; a ; =b; c=\"unterminated"),
            vec![
                ("a".to_owned(), String::new()),
                ("c".to_owned(), "unterminated".to_owned()),
            ]
        );
    }
}
