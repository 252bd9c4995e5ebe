//! Every upstream reply parser on arbitrary bytes; results are serialised, and a parsed status
//! re-serialised as a canonical reply must read back the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use smm_wire::response::{BalanceReply, StatusItem};
use smm_wire::upstream::{self, UpstreamStatus};
use smm_wire::StatusCodes;

fuzz_target!(|data: &[u8]| {
    let codes = StatusCodes::default();
    let show = |e: &upstream::ReplyError| {
        let _ = e.to_string();
    };

    match upstream::parse_services(data) {
        Ok(reply) => {
            for s in &reply.services {
                assert!(!s.rate.is_sign_negative() || s.rate.is_zero());
                assert!(s.min <= s.max);
                let _ = serde_json::to_string(s).expect("serialises");
            }
        }
        Err(e) => show(&e),
    }
    match upstream::parse_add(data) {
        Ok(id) => assert!(!id.as_str().is_empty() && id.as_str().trim_start_matches('0') != ""),
        Err(e) => show(&e),
    }
    match upstream::parse_status(data, &codes) {
        Ok(status) => round_trip(&status, &codes),
        Err(e) => show(&e),
    }
    match upstream::parse_status_many(data, &codes) {
        Ok(batch) => {
            for (_, item) in &batch {
                if let Ok(status) = item {
                    round_trip(status, &codes);
                }
            }
        }
        Err(e) => show(&e),
    }
    let _ = upstream::parse_refill(data).map_err(|e| show(&e));
    let _ = upstream::parse_refill_many(data).map_err(|e| show(&e));
    let _ = upstream::parse_refill_status(data).map_err(|e| show(&e));
    let _ = upstream::parse_refill_status_many(data).map_err(|e| show(&e));
    let _ = upstream::parse_cancel_many(data).map_err(|e| show(&e));
    let _ = upstream::parse_cancel(data).map_err(|e| show(&e));
    match upstream::parse_balance(data) {
        Ok(b) => {
            let reply = BalanceReply {
                balance: b.balance,
                currency: b.currency.unwrap_or_else(|| "USD".into()),
            };
            let text = serde_json::to_vec(&reply).expect("serialises");
            let back = upstream::parse_balance(&text).expect("own balance reply parses");
            assert_eq!(back.balance, b.balance);
        }
        Err(e) => show(&e),
    }
});

/// A parsed status, served downstream as a canonical reply, reads back the same.
fn round_trip(status: &UpstreamStatus, codes: &StatusCodes) {
    let _ = serde_json::to_string(status).expect("serialises");
    let Some(charge) = status.charge else {
        return;
    };
    let item = StatusItem {
        charge,
        start_count: status.start_count,
        status: status.status.clone(),
        remains: status.remains,
        currency: status.currency.clone().unwrap_or_else(|| "USD".into()),
        runs: status.runs,
        orders: None,
        posts: status.posts,
        expiry: status.expiry.clone(),
    };
    let text = serde_json::to_vec(&item).expect("serialises");
    let back = upstream::parse_status(&text, codes).expect("own status reply parses");
    assert_eq!(back.status.as_str(), status.status.as_str());
    assert_eq!(back.charge, Some(charge));
    assert_eq!(back.start_count, Some(status.start_count.unwrap_or(0)));
    assert_eq!(back.remains, Some(status.remains.unwrap_or(0)));
    assert_eq!(back.runs, status.runs);
    assert_eq!(back.posts, status.posts);
}
