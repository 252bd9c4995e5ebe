//! Downstream request parsing on arbitrary input.
//!
//! Input: a content-type line (empty line = no content type), then the body. Everything the
//! gateway does with a request body runs on it, and every result is serialised.

#![no_main]

use libfuzzer_sys::fuzz_target;
use smm_wire::request::Credentials;
use smm_wire::response::{ErrorReply, MultiCancelReply, MultiRefillStatusReply};
use smm_wire::{Action, ApiRequest, ErrorKind, IdList, OrderRequest, Params, ServiceType, Target};

fuzz_target!(|data: &[u8]| {
    let (first_line, body) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let content_type = String::from_utf8_lossy(first_line);
    let content_type = Some(content_type.as_ref()).filter(|ct| !ct.trim().is_empty());

    // The individual readers, too.
    let _ = Params::from_urlencoded(body);
    let _ = Params::from_json(body);
    if let Some(ct) = content_type {
        let _ = Params::from_multipart(body, ct);
    }
    let text = String::from_utf8_lossy(body);
    if let Ok(ids) = IdList::parse(&text, ErrorKind::IncorrectOrderId) {
        assert!(!ids.is_empty() && ids.len() <= smm_wire::MAX_IDS);
        assert!(ids.as_slice().iter().all(|id| *id >= 1));
    }
    let _ = ErrorKind::from_upstream(&text);
    let _ = ServiceType::parse(&text);

    let params = match Params::from_body(content_type, body) {
        Ok(params) => params,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    for (name, value) in params.iter() {
        assert_eq!(params.get(name), Some(value));
    }
    match Credentials::parse(&params) {
        Ok(c) => assert!(!c.key.is_empty()),
        Err(kind) => reply(&kind),
    }
    for action in Action::ALL {
        match ApiRequest::parse(action, &params) {
            Ok(request) => answer(&request),
            Err(kind) => reply(&kind),
        }
    }
    let mut types = ServiceType::KNOWN.to_vec();
    types.push(ServiceType::Other("Custom Data".into()));
    for ty in &types {
        match OrderRequest::parse(ty, &params) {
            Ok(order) => {
                assert_eq!(&order.service_type(), ty);
                let _ = serde_json::to_string(&order).expect("order serialises");
                let _ = order.billing();
                let _ = order.quantity();
                let _ = order.link();
                for (name, _) in order.upstream_params() {
                    assert!(!["key", "action", "service"].contains(&name));
                }
            }
            Err(kind) => reply(&kind),
        }
    }
});

fn reply(kind: &ErrorKind) {
    let text = serde_json::to_string(&ErrorReply(kind.clone())).expect("error serialises");
    assert!(text.starts_with("{\"error\":"));
    assert!(!kind.to_string().is_empty());
}

/// Builds an all-error batch reply for the ids a request names, and serialises it.
fn answer(request: &ApiRequest) {
    let ids = |target: &Target| -> Vec<u64> {
        match target {
            Target::One(id) => vec![*id],
            Target::Many(list) => list.as_slice().to_vec(),
        }
    };
    match request {
        ApiRequest::Cancel(t) | ApiRequest::Status(t) | ApiRequest::Refill(t) => {
            let reply = MultiCancelReply(
                ids(t)
                    .into_iter()
                    .map(|id| (id, Err(ErrorKind::IncorrectOrderId)))
                    .collect(),
            );
            let _ = serde_json::to_string(&reply).expect("serialises");
        }
        ApiRequest::RefillStatus(t) => {
            let reply = MultiRefillStatusReply(
                ids(t)
                    .into_iter()
                    .map(|id| (id, Err(ErrorKind::RefillNotFound)))
                    .collect(),
            );
            let _ = serde_json::to_string(&reply).expect("serialises");
        }
        ApiRequest::Add { service, idempotency_key } => {
            assert!(*service >= 1);
            if let Some(key) = idempotency_key {
                assert!(!key.is_empty() && key.len() <= 128);
            }
        }
        ApiRequest::Services | ApiRequest::Balance => {}
    }
}
