//! The commit queue on its own: the gate the machine hands it decides what is sent, fenced or
//! kept, and the queue returns what to send and what to report.

use std::collections::BTreeMap;

use super::*;
use crate::group::commit_queue::{CommitQueue, Gate};
use crate::group::reactions::Standing;

#[test]
fn the_gate_decides_what_the_queue_sends_fences_or_keeps() {
    let now = Harness::new().base;
    let config = config();
    let mut counters = GroupCounters::default();
    let lease = |partition, member: &str| Lease {
        partition: tp(partition),
        next_offset: 10,
        generation: gen(1, member),
        owned_since: GenerationId(1),
    };
    let mut queue = CommitQueue::default();
    queue.push(CommitId(1), vec![lease(0, "m-1"), lease(1, "m-1"), lease(2, "m-0")], now + config.commit_timeout);
    // Between generations every lease waits.
    let (completed, send) = queue.drive(now, &Gate::Closed, true, &config, &mut counters);
    assert!(completed.is_empty() && send.is_none());
    // A member of generation 2 that owns t-0 since generation 1: its lease goes re-stamped, the
    // others are fenced locally.
    let generation = gen(2, "m-1");
    let owned = BTreeMap::from([(tp(0), GenerationId(1))]);
    let gate = Gate::Open { generation: &generation, owned: Some(&owned), released: None };
    let (completed, send) = queue.drive(now, &gate, true, &config, &mut counters);
    assert!(completed.is_empty(), "the commit waits for its answer");
    let send = send.expect("an OffsetCommit to send");
    assert_eq!(send.generation, generation);
    assert_eq!(send.leases, vec![(lease(0, "m-1"), Some(GenerationId(1)))]);
    queue.sent(RequestId(7));
    let reactions = queue.on_response(now, send, &commit_body(&[(0, NONE)]), Standing::Current, &config, &mut counters);
    assert!(reactions.is_empty(), "{reactions:?}");
    let (completed, send) = queue.drive(now, &gate, true, &config, &mut counters);
    assert!(send.is_none());
    let fenced = |reason| CommitOutcome::Fenced {
        lease_generation: GenerationId(1),
        current_generation: Some(GenerationId(2)),
        reason,
    };
    let results = vec![
        result(1, 10, fenced(FenceReason::NotOwned)),
        result(2, 10, fenced(FenceReason::OtherMember)),
        result(0, 10, committed(2, Some(1))),
    ];
    assert_eq!(completed, vec![GroupEvent::CommitCompleted { id: CommitId(1), results }]);
    assert_eq!((counters.partitions_committed, counters.partitions_fenced_locally), (1, 2));
}

fn commit_body(codes: &[(i32, i16)]) -> OffsetCommitResponse {
    let GroupResponse::OffsetCommit(body) = commit_response(codes) else { unreachable!() };
    body
}
