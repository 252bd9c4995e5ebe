//! Integration tests of smm-wire, in one binary (one link step on a 2-core CI).

mod errors;
mod fixtures;
mod orders;
mod params;
mod props;
mod request;
mod upstream;

/// A fixture from `tests/fixtures`, by file stem.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// A fixture as a JSON value.
pub fn fixture_json(name: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture(name)).expect("fixture is JSON")
}

/// `value` serialised and read back as a JSON value.
pub fn to_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("serialises")
}

pub fn dec(text: &str) -> rust_decimal::Decimal {
    text.parse().expect("decimal literal")
}

pub fn id(text: &str) -> smm_wire::UpstreamId {
    smm_wire::UpstreamId::new(text).expect("valid id")
}
