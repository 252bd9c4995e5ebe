//! Order checks against a local service, and the choice of routes for an order.

use smm_wire::{ErrorKind, OrderRequest};

use crate::catalog::{LocalService, Route};

/// Checks an order against the service before anything is charged:
///
/// 1. the service is disabled → `IncorrectServiceId`;
/// 2. the order's type is not the service's → `IncorrectServiceId`;
/// 3. drip-feed on a service without drip-feed → `DripFeedDisabled`;
/// 4. Subscriptions: the order's own `min` below the service's min → `QuantityBelowMin(min)`,
///    its `max` above the service's max → `QuantityAboveMax(max)`;
/// 5. other types with a quantity (per run for drip-feed, the line count for comment-like
///    types): below min → `QuantityBelowMin(min)`, above max → `QuantityAboveMax(max)`;
///    flat-priced types have no quantity check.
pub fn check_order(service: &LocalService, order: &OrderRequest) -> Result<(), ErrorKind> {
    if !service.enabled {
        return Err(ErrorKind::IncorrectServiceId);
    }
    if order.service_type() != service.service_type {
        return Err(ErrorKind::IncorrectServiceId);
    }
    match order {
        OrderRequest::Default {
            drip_feed: Some(_), ..
        } if !service.dripfeed => Err(ErrorKind::DripFeedDisabled),
        OrderRequest::Subscriptions { min, max, .. } => {
            if *min < service.min {
                Err(ErrorKind::QuantityBelowMin(service.min))
            } else if *max == 0 {
                // Nothing per post is an order for nothing, whatever the upstream's min says.
                Err(ErrorKind::QuantityBelowMin(service.min.max(1)))
            } else if *max > service.max {
                Err(ErrorKind::QuantityAboveMax(service.max))
            } else {
                Ok(())
            }
        }
        _ => match order.quantity() {
            // A quantity of 0 is an order for nothing, even where an upstream reports `min = 0`.
            Some(q) if q < service.min.max(1) => {
                Err(ErrorKind::QuantityBelowMin(service.min.max(1)))
            }
            Some(q) if q > service.max => Err(ErrorKind::QuantityAboveMax(service.max)),
            _ => Ok(()),
        },
    }
}

/// The service's routes in priority order whose provider `available` says is usable now (not
/// disabled, not cooling down, not out of funds: the caller decides). Empty when none is.
pub fn candidate_routes(service: &LocalService, available: impl Fn(&str) -> bool) -> Vec<&Route> {
    service
        .routes
        .iter()
        .filter(|route| available(&route.provider))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::ResolvedMarkup;
    use rust_decimal::Decimal;
    use smm_wire::ServiceType;
    use smm_wire::order::DripFeed;
    use smm_wire::upstream::UpstreamId;

    fn route(provider: &str) -> Route {
        Route {
            provider: provider.into(),
            upstream_service: UpstreamId::new("1").expect("id"),
            upstream_rate: Decimal::ONE,
            cost: Decimal::ONE,
            min: 10,
            max: 1000,
            refill: false,
            cancel: false,
            dripfeed: false,
        }
    }

    fn service(service_type: ServiceType) -> LocalService {
        LocalService {
            id: 1,
            name: "s".into(),
            category: "c".into(),
            service_type,
            rate: Decimal::TWO,
            min: 10,
            max: 1000,
            refill: false,
            cancel: false,
            dripfeed: false,
            desc: None,
            routes: vec![route("alpha"), route("beta"), route("gamma")],
            markup: ResolvedMarkup::default(),
            enabled: true,
            disabled_reason: None,
        }
    }

    fn default_order(quantity: u64, drip: bool) -> OrderRequest {
        OrderRequest::Default {
            link: "https://x.example/p".into(),
            quantity,
            drip_feed: drip.then_some(DripFeed {
                runs: 3,
                interval: 10,
            }),
        }
    }

    fn subscription(min: u64, max: u64) -> OrderRequest {
        OrderRequest::Subscriptions {
            username: "u".into(),
            min,
            max,
            delay: 0,
            posts: None,
            old_posts: None,
            expiry: None,
        }
    }

    fn comments(lines: usize) -> Vec<String> {
        (0..lines).map(|i| format!("comment {i}")).collect()
    }

    #[test]
    fn disabled_and_mismatched_services_are_unknown_ids() {
        let mut svc = service(ServiceType::Default);
        svc.enabled = false;
        assert_eq!(
            check_order(&svc, &default_order(100, false)),
            Err(ErrorKind::IncorrectServiceId)
        );
        let svc = service(ServiceType::Package);
        assert_eq!(
            check_order(&svc, &default_order(100, false)),
            Err(ErrorKind::IncorrectServiceId)
        );
    }

    #[test]
    fn quantity_bounds_are_inclusive() {
        let svc = service(ServiceType::Default);
        assert_eq!(
            check_order(&svc, &default_order(9, false)),
            Err(ErrorKind::QuantityBelowMin(10))
        );
        assert_eq!(check_order(&svc, &default_order(10, false)), Ok(()));
        assert_eq!(check_order(&svc, &default_order(1000, false)), Ok(()));
        assert_eq!(
            check_order(&svc, &default_order(1001, false)),
            Err(ErrorKind::QuantityAboveMax(1000))
        );
        assert_eq!(
            check_order(&svc, &default_order(0, false)),
            Err(ErrorKind::QuantityBelowMin(10))
        );
    }

    #[test]
    fn drip_feed_needs_the_service_to_allow_it_and_counts_per_run() {
        let mut svc = service(ServiceType::Default);
        assert_eq!(
            check_order(&svc, &default_order(100, true)),
            Err(ErrorKind::DripFeedDisabled)
        );
        svc.dripfeed = true;
        // 400 per run × 3 runs = 1200 in total, but the bound is per run.
        assert_eq!(check_order(&svc, &default_order(400, true)), Ok(()));
        assert_eq!(
            check_order(&svc, &default_order(1001, true)),
            Err(ErrorKind::QuantityAboveMax(1000))
        );
    }

    #[test]
    fn comment_types_count_lines() {
        let svc = service(ServiceType::CustomComments);
        let order = |n| OrderRequest::CustomComments {
            link: "https://x.example/p".into(),
            comments: comments(n),
        };
        assert_eq!(
            check_order(&svc, &order(9)),
            Err(ErrorKind::QuantityBelowMin(10))
        );
        assert_eq!(check_order(&svc, &order(10)), Ok(()));
        let svc = service(ServiceType::MentionsCustomList);
        let order = OrderRequest::MentionsCustomList {
            link: "https://x.example/p".into(),
            usernames: comments(2),
        };
        assert_eq!(
            check_order(&svc, &order),
            Err(ErrorKind::QuantityBelowMin(10))
        );
    }

    #[test]
    fn flat_types_have_no_quantity_check() {
        let svc = service(ServiceType::Package);
        let order = OrderRequest::Package {
            link: "https://x.example/p".into(),
        };
        assert_eq!(check_order(&svc, &order), Ok(()));
        let svc = service(ServiceType::CustomCommentsPackage);
        let order = OrderRequest::CustomCommentsPackage {
            link: "https://x.example/p".into(),
            comments: comments(5000),
        };
        assert_eq!(check_order(&svc, &order), Ok(()));
    }

    #[test]
    fn subscriptions_check_their_own_bounds() {
        let svc = service(ServiceType::Subscriptions);
        assert_eq!(check_order(&svc, &subscription(10, 1000)), Ok(()));
        assert_eq!(check_order(&svc, &subscription(50, 50)), Ok(()));
        assert_eq!(
            check_order(&svc, &subscription(5, 100)),
            Err(ErrorKind::QuantityBelowMin(10))
        );
        assert_eq!(
            check_order(&svc, &subscription(100, 2000)),
            Err(ErrorKind::QuantityAboveMax(1000))
        );
    }

    #[test]
    fn candidates_keep_priority_order_and_skip_unavailable_providers() {
        let svc = service(ServiceType::Default);
        let names = |routes: Vec<&Route>| -> Vec<String> {
            routes.iter().map(|r| r.provider.clone()).collect()
        };
        assert_eq!(
            names(candidate_routes(&svc, |_| true)),
            ["alpha", "beta", "gamma"]
        );
        assert_eq!(
            names(candidate_routes(&svc, |p| p != "alpha")),
            ["beta", "gamma"]
        );
        assert_eq!(names(candidate_routes(&svc, |p| p == "gamma")), ["gamma"]);
        assert!(candidate_routes(&svc, |_| false).is_empty());
    }
}
