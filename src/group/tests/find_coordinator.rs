//! FindCoordinator.

use super::*;

#[test]
fn find_coordinator_is_the_first_request_and_found_leads_to_join() {
    let mut h = Harness::new();
    assert_eq!(h.apis(), vec!["FindCoordinator"]);
    let r = h.take("FindCoordinator");
    assert_eq!(r.body, GroupRequest::FindCoordinator { group_id: "g".into() });
    h.m.handle_coordinator_found(h.now, r.id, CoordinatorFound { node_id: 1, versions: kafka36_versions() });
    h.pump();
    assert_eq!(h.coordinator_events(), vec![Some(1)]);
    let (_, version, join) = h.take_join();
    assert_eq!(version, 9);
    assert_eq!(join.group_id.0.as_str(), "g");
    assert_eq!(join.member_id.as_str(), "");
    assert_eq!(join.protocol_type.as_str(), "consumer");
    assert_eq!(join.session_timeout_ms, 45_000);
    assert_eq!(join.rebalance_timeout_ms, 300_000);
    assert_eq!(join.group_instance_id, None);
    assert_eq!(join_subscription(&join).topics, vec!["t".to_string()]);
    assert_eq!(join_subscription(&join).generation, GenerationId::NONE);
    assert_eq!(h.m.snapshot(h.now).coordinator, Some(1));
}
