//! The fetcher's bookkeeping without IO: positions, epochs, the buffer bound, pause, error
//! reactions, and turning a whole response into per-partition results.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::Decodable;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use tokio::time::Instant;

use super::decode::{DecompressionBudget, PartitionFetch, WireRecords};
use super::fixtures::{batch_of, concat, marker, tampered};
use super::session::{FetchSession, SessionPartition};
use super::task::{fetch_request, scan_response, SentFetch};
use super::*;

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("t", p)
}

static UNLIMITED: DecompressionBudget = DecompressionBudget::new(usize::MAX);

/// What the buffer holds for offsets `from..to` as one batch: its wire bytes.
fn wire_len(from: i64, to: i64) -> usize {
    batch_of(from, to, Compression::None).len()
}

/// `bytes` as fetched from `from` for partition `p` (read uncommitted).
fn fetched(p: i32, from: i64, bytes: &[u8], high_watermark: i64) -> PartitionResult {
    let topic: Arc<str> = Arc::from("t");
    let fetch = PartitionFetch {
        topic: &topic,
        partition: p,
        fetch_offset: from,
        isolation: IsolationLevel::ReadUncommitted,
        aborted_transactions: &[],
        last_stable_offset: -1,
    };
    let (wire, scan_error) = WireRecords::scan(bytes, &fetch);
    PartitionResult::Data { wire, scan_error, high_watermark, preferred_replica: None }
}

/// Records `from..to` of partition `p`, as one batch.
fn data(p: i32, from: i64, to: i64) -> PartitionResult {
    fetched(p, from, &batch_of(from, to, Compression::None), 1_000)
}

/// The next event, decoded whole.
fn pop(state: &mut State) -> Option<FetchEvent> {
    state.pop(usize::MAX, &UNLIMITED)
}

fn pop_records_of(state: &mut State, p: i32) -> Option<FetchedBatch> {
    state.pop_records_of(&tp(p), usize::MAX, &UNLIMITED)
}

fn assigned(parts: &[(i32, i64)]) -> State {
    let mut state = State::default();
    for &(p, offset) in parts {
        state.assign(tp(p), StartPosition::Offset(offset), OffsetReset::Earliest);
    }
    state
}

fn epoch(state: &State, p: i32) -> u64 {
    state.partitions[&tp(p)].epoch
}

/// Reactions at `now`: reset to earliest, retry at once, keep a read replica for a minute.
fn reactions(now: Instant) -> Reactions {
    Reactions { reset: OffsetReset::Earliest, retry_at: now, replica_until: now + Duration::from_secs(60) }
}

fn apply(state: &mut State, p: i32, fetched_under: u64, from: i64, result: PartitionResult) -> Applied {
    state.apply_fetch(&tp(p), fetched_under, from, result, reactions(Instant::now()))
}

/// Applies a result of a fetch sent under the partition's current epoch.
fn apply_now(state: &mut State, p: i32, from: i64, result: PartitionResult) -> Applied {
    let e = epoch(state, p);
    apply(state, p, e, from, result)
}

fn batch_offsets(event: Option<FetchEvent>) -> (i32, Vec<i64>) {
    match event {
        Some(FetchEvent::Records(b)) => (b.partition.partition, b.records.iter().map(ConsumerRecord::offset).collect()),
        other => panic!("expected records, got {other:?}"),
    }
}

fn position(state: &State, p: i32) -> Option<i64> {
    state.partitions.get(&tp(p)).and_then(Part::position)
}

#[test]
fn positions_follow_delivery_and_seek_drops_buffered_and_in_flight_data() {
    let mut state = assigned(&[(0, 10)]);
    assert_eq!(position(&state, 0), Some(10));
    let e0 = epoch(&state, 0);
    assert!(apply(&mut state, 0, e0, 10, data(0, 10, 15)).queued);
    assert_eq!((state.buffered, position(&state, 0)), (wire_len(10, 15), Some(10)), "position moves on delivery only");
    assert_eq!(state.partitions[&tp(0)].fetch_offset, 15);

    // A fetch from 15 is in flight when the application seeks.
    state.seek(&tp(0), StartPosition::Offset(100), OffsetReset::Earliest);
    assert_eq!((state.buffered, state.queue.len(), position(&state, 0)), (0, 0, Some(100)));
    assert!(!apply(&mut state, 0, e0, 15, data(0, 15, 20)).queued, "data of the old epoch is dropped");
    assert!(pop(&mut state).is_none());
    assert_eq!(position(&state, 0), Some(100));

    let e1 = epoch(&state, 0);
    assert_ne!(e0, e1);
    apply(&mut state, 0, e1, 100, data(0, 100, 103));
    assert_eq!(batch_offsets(pop(&mut state)), (0, vec![100, 101, 102]));
    assert_eq!((position(&state, 0), state.buffered), (Some(103), 0));
    // A fetch answer for an offset the partition is no longer at is dropped too.
    assert!(!apply(&mut state, 0, e1, 100, data(0, 100, 103)).queued);
}

#[test]
fn revoke_forgets_and_a_reassigned_partition_ignores_old_fetches() {
    let mut state = assigned(&[(0, 0), (1, 0)]);
    let e0 = epoch(&state, 0);
    apply(&mut state, 0, e0, 0, data(0, 0, 5));
    apply_now(&mut state, 1, 0, data(1, 0, 5));
    state.revoke(&tp(0));
    assert_eq!(state.buffered, wire_len(0, 5));
    assert_eq!(position(&state, 0), None);
    assert!(!apply(&mut state, 0, e0, 5, data(0, 5, 9)).queued, "revoked partitions take no data");
    state.assign(tp(0), StartPosition::Offset(0), OffsetReset::Earliest);
    assert!(!apply(&mut state, 0, e0, 0, data(0, 0, 5)).queued, "nor does the next assignment from the old fetch");
    assert_eq!(batch_offsets(pop(&mut state)).0, 1);
    assert!(pop(&mut state).is_none());
}

#[test]
fn paused_partitions_keep_their_data_but_deliver_nothing_and_do_not_fill_the_buffer() {
    let mut state = assigned(&[(0, 0), (1, 0)]);
    apply_now(&mut state, 0, 0, data(0, 0, 3));
    apply_now(&mut state, 1, 0, data(1, 0, 2));
    state.partitions.get_mut(&tp(0)).unwrap().paused = true;
    assert_eq!((state.buffered, state.deliverable_bytes()), (wire_len(0, 3) + wire_len(0, 2), wire_len(0, 2)));
    assert_eq!(batch_offsets(pop(&mut state)).0, 1);
    assert!(pop(&mut state).is_none());
    assert_eq!(state.deliverable_bytes(), 0);
    state.partitions.get_mut(&tp(0)).unwrap().paused = false;
    assert_eq!(batch_offsets(pop(&mut state)), (0, vec![0, 1, 2]));
    assert_eq!(state.buffered, 0);
}

#[test]
fn control_records_move_the_position_when_handed_out() {
    let mut state = assigned(&[(0, 15)]);
    let e = epoch(&state, 0);
    let markers = |from: i64, to: i64| {
        let batches: Vec<Bytes> = (from..to).map(|o| marker(o, 7, true)).collect();
        fetched(0, from, &concat(&batches), 40)
    };
    apply(&mut state, 0, e, 15, markers(15, 20));
    assert_eq!(state.partitions[&tp(0)].fetch_offset, 20, "the next fetch starts past them");
    assert!(pop(&mut state).is_none(), "no records");
    assert_eq!((position(&state, 0), state.buffered, state.queue.len()), (Some(20), 0, 0));
    apply(&mut state, 0, e, 20, data(0, 20, 25));
    apply(&mut state, 0, e, 25, markers(25, 30));
    assert_eq!(state.queue.len(), 2);
    assert_eq!(batch_offsets(pop(&mut state)).1.len(), 5);
    assert_eq!(position(&state, 0), Some(25));
    assert!(pop(&mut state).is_none());
    assert_eq!(position(&state, 0), Some(30), "past the markers once they are taken");
}

#[test]
fn a_decode_error_stops_only_its_partition_after_its_good_records() {
    let mut state = assigned(&[(0, 0), (1, 0)]);
    let corrupt = tampered(batch_of(2, 4, Compression::None), 70);
    let bad = fetched(0, 0, &concat(&[batch_of(0, 2, Compression::None), corrupt]), 9);
    apply_now(&mut state, 0, 0, bad);
    apply_now(&mut state, 0, 4, data(0, 4, 6));
    apply_now(&mut state, 1, 0, data(1, 0, 4));
    assert_eq!(batch_offsets(pop(&mut state)), (0, vec![0, 1]));
    match pop(&mut state) {
        Some(FetchEvent::PartitionError {
            partition,
            error: Error::PartitionFetch { cause: FetchFailure::Undecodable(reason), .. },
        }) => {
            assert_eq!(partition, tp(0));
            assert!(reason.contains("CRC"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(batch_offsets(pop(&mut state)).0, 1, "nothing of t-0 after the bad batch");
    assert!(pop(&mut state).is_none());
    assert_eq!(state.partitions[&tp(0)].phase, Phase::Failed);
    assert_eq!((position(&state, 0), state.buffered), (Some(2), 0));
    assert_eq!(state.partitions[&tp(1)].phase, Phase::Fetch);
    // A seek restarts it.
    state.seek(&tp(0), StartPosition::Offset(5), OffsetReset::Earliest);
    assert_eq!((state.partitions[&tp(0)].phase, position(&state, 0)), (Phase::Fetch, Some(5)));
}

/// The buffer holds what came on the wire; records are made a hand-out at a time.
#[test]
fn records_are_made_when_handed_out_a_few_batches_at_a_time() {
    let mut state = assigned(&[(0, 0)]);
    let batches: Vec<Bytes> = (0..10).map(|b| batch_of(b * 10, b * 10 + 10, Compression::None)).collect();
    let all = concat(&batches);
    apply_now(&mut state, 0, 0, fetched(0, 0, &all, 100));
    assert_eq!((state.buffered, state.partitions[&tp(0)].fetch_offset), (all.len(), 100));
    let first = state.pop(15, &UNLIMITED);
    assert_eq!(batch_offsets(first).1, (0..20).collect::<Vec<_>>(), "whole batches, up to the one reaching 15");
    assert_eq!((position(&state, 0), state.buffered), (Some(20), all.len() - batches[0].len() - batches[1].len()));
    let rest = pop_records_of(&mut state, 0).expect("the rest");
    assert_eq!(rest.records.len(), 80);
    assert_eq!((position(&state, 0), state.buffered, state.queue.len()), (Some(100), 0, 0));
}

/// Compressed batches of one hand-out expand within `fetch.max.bytes`; the batch that would
/// pass it waits for the next hand-out.
#[test]
fn a_hand_out_decompresses_within_its_budget_and_leaves_the_rest_buffered() {
    let mut state = assigned(&[(0, 0)]);
    let batches: Vec<Bytes> = (0..3).map(|b| batch_of(b * 100, b * 100 + 100, Compression::Lz4)).collect();
    apply_now(&mut state, 0, 0, fetched(0, 0, &concat(&batches), 300));
    let one_batch = 100 * 16; // roughly what 100 small records take decompressed
    let budget = || DecompressionBudget::new(one_batch * 3 / 2);
    let mut handed = Vec::new();
    while let Some(event) = state.pop(usize::MAX, &budget()) {
        handed.push(batch_offsets(Some(event)).1.len());
    }
    assert_eq!(handed, vec![100, 100, 100], "one batch per hand-out");
    assert_eq!(position(&state, 0), Some(300));
}

#[test]
fn offset_out_of_range_resets_through_list_offsets_or_fails_under_none() {
    let mut state = assigned(&[(0, 50)]);
    let e = epoch(&state, 0);
    apply(&mut state, 0, e, 50, data(0, 50, 52));
    let oor = PartitionResult::Error { code: 1 };
    apply(&mut state, 0, e, 52, oor.clone());
    let part = &state.partitions[&tp(0)];
    assert_eq!((part.phase, part.position()), (Phase::Reset { timestamp: -2 }, None));
    assert_eq!(state.queue.len(), 0, "a reset drops buffered data like a seek");
    let reset_epoch = epoch(&state, 0);
    assert_ne!(reset_epoch, e);
    let later = Instant::now();
    assert!(!state.apply_reset(&tp(0), e, 0, 7, later).queued);
    assert_eq!(position(&state, 0), None, "an answer for an older epoch is ignored");
    state.apply_reset(&tp(0), reset_epoch, 0, 7, later);
    assert_eq!(position(&state, 0), Some(7));
    assert_eq!(state.partitions[&tp(0)].fetch_offset, 7);

    let mut state = assigned(&[(0, 50)]);
    let e = epoch(&state, 0);
    let applied = state.apply_fetch(&tp(0), e, 50, oor, Reactions { reset: OffsetReset::None, ..reactions(later) });
    assert!(applied.queued);
    match pop(&mut state) {
        Some(FetchEvent::PartitionError { error: Error::PartitionFetch { cause, .. }, .. }) => {
            assert_eq!(cause.code().map(|c| c.0), Some(1));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(state.partitions[&tp(0)].phase, Phase::Failed);

    // Assigning with Reset (or a negative offset) under `none` also reports an error.
    let mut state = State::default();
    state.assign(tp(3), StartPosition::Reset, OffsetReset::None);
    state.assign(tp(4), StartPosition::Offset(-1), OffsetReset::Latest);
    assert!(matches!(pop(&mut state), Some(FetchEvent::PartitionError { .. })));
    assert_eq!(state.partitions[&tp(4)].phase, Phase::Reset { timestamp: -1 });
}

#[test]
fn leadership_errors_refresh_metadata_transient_ones_retry_others_stop_the_partition() {
    let mut state = assigned(&[(0, 0), (1, 0), (2, 0), (3, 0)]);
    for (p, code) in [(0, 6), (1, 7), (2, 29), (3, 74)] {
        let e = epoch(&state, p);
        apply(&mut state, p, e, 0, PartitionResult::Error { code });
    }
    assert!(state.partitions[&tp(0)].stale, "NOT_LEADER_OR_FOLLOWER");
    assert!(state.partitions[&tp(1)].retry_at.is_some(), "REQUEST_TIMED_OUT");
    assert_eq!(state.partitions[&tp(2)].phase, Phase::Failed, "TOPIC_AUTHORIZATION_FAILED");
    assert!(state.partitions[&tp(3)].stale, "FENCED_LEADER_EPOCH");
    match pop(&mut state) {
        Some(FetchEvent::PartitionError { partition, error: Error::PartitionFetch { partition: stopped, cause } }) => {
            assert_eq!(stopped, partition);
            assert_eq!((partition, cause.code().map(|c| c.0)), (tp(2), Some(29)));
        }
        other => panic!("{other:?}"),
    }
    assert!(pop(&mut state).is_none());
}

#[test]
fn finishing_a_job_only_clears_its_own_partitions() {
    let mut state = assigned(&[(0, 0), (1, 0)]);
    state.partitions.get_mut(&tp(0)).unwrap().job = Some(1);
    state.partitions.get_mut(&tp(1)).unwrap().job = Some(2);
    state.finish_job(1, [tp(0), tp(1)]);
    assert_eq!((state.partitions[&tp(0)].job, state.partitions[&tp(1)].job), (None, Some(2)));
    // Re-assigning keeps the in-flight marker, so no second fetch of the partition starts.
    state.assign(tp(1), StartPosition::Offset(9), OffsetReset::Earliest);
    assert_eq!(state.partitions[&tp(1)].job, Some(2));
}

#[test]
fn a_garbage_partition_in_a_response_does_not_affect_the_others() {
    let mut state = assigned(&[(0, 0), (1, 0), (2, 3)]);
    let partition = |p: i32, records: Option<Bytes>| {
        PartitionData::default()
            .with_partition_index(p)
            .with_high_watermark(10)
            .with_last_stable_offset(10)
            .with_records(records)
    };
    let response = FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
        .with_topic(TopicName(StrBytes::from_static_str("t")))
        .with_partitions(vec![
            partition(0, Some(batch_of(0, 10, Compression::Lz4))),
            partition(1, Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0xde, 0xad]))),
            partition(2, Some(batch_of(0, 10, Compression::Lz4))),
            partition(9, None),
        ])]);
    let sent = SentFetch {
        session: FetchSession::default().build(BTreeMap::new(), true),
        partitions: [0, 1, 2]
            .into_iter()
            .map(|p| (tp(p), (epoch(&state, p), state.partitions[&tp(p)].fetch_offset)))
            .collect(),
    };
    let outcome = scan_response(response, &sent, IsolationLevel::ReadUncommitted);
    assert_eq!(outcome.partitions.len(), 4);
    for (tp, result) in outcome.partitions {
        if let Some(&(e, from)) = sent.partitions.get(&tp) {
            state.apply_fetch(&tp, e, from, result, reactions(Instant::now()));
        }
    }
    let mut seen: HashMap<i32, Vec<i64>> = HashMap::new();
    let mut errors = Vec::new();
    while let Some(event) = pop(&mut state) {
        match event {
            FetchEvent::Records(b) => {
                seen.entry(b.partition.partition).or_default().extend(b.records.iter().map(ConsumerRecord::offset))
            }
            FetchEvent::PartitionError { partition, .. } => errors.push(partition.partition),
        }
    }
    assert_eq!(seen[&0], (0..10).collect::<Vec<_>>());
    assert_eq!(seen[&2], (3..10).collect::<Vec<_>>(), "records below the fetch offset are dropped");
    assert_eq!(errors, vec![1]);
    assert_eq!(state.partitions[&tp(1)].phase, Phase::Failed);
    assert_eq!(position(&state, 0), Some(10));
}

#[test]
fn fetch_requests_encode_at_every_version_with_session_fields_from_v7() {
    let config = FetcherConfig { isolation: IsolationLevel::ReadCommitted, ..Default::default() };
    let mut session = FetchSession::default();
    let at = |o| SessionPartition { fetch_offset: o, leader_epoch: 3, max_bytes: 1024 };
    let first = session.build([(tp(0), at(0)), (tp(1), at(0))].into_iter().collect(), true);
    session.on_response(&first, 0, 12);
    let incremental = session.build([(tp(0), at(9))].into_iter().collect(), true);
    for version in 4..=12 {
        let request: FetchRequest = fetch_request(&config, version, &incremental, &incremental.send, 4096);
        crate::protocol::codec::encode_request(&request, version, 1, "kgroup")
            .unwrap_or_else(|e| panic!("v{version}: {e}"));
        assert_eq!((request.replica_id.0, request.isolation_level, request.max_bytes), (-1, 1, 4096));
        assert_eq!(request.max_wait_ms, 500);
        let p = &request.topics[0].partitions[0];
        assert_eq!((p.partition, p.fetch_offset, p.current_leader_epoch, p.partition_max_bytes), (0, 9, 3, 1024));
        if version >= 7 {
            assert_eq!((request.session_id, request.session_epoch), (12, 1));
            assert_eq!(request.forgotten_topics_data.len(), 1);
            assert_eq!(request.forgotten_topics_data[0].partitions, vec![1]);
        } else {
            assert!(request.forgotten_topics_data.is_empty());
            assert_eq!(request.session_epoch, -1);
        }
    }
}

#[test]
fn records_of_one_partition_are_taken_past_other_partitions_in_fetch_order() {
    let mut state = assigned(&[(0, 0), (1, 0)]);
    apply_now(&mut state, 0, 0, data(0, 0, 2));
    apply_now(&mut state, 1, 0, data(1, 0, 3));
    apply_now(&mut state, 0, 2, data(0, 2, 5));
    let first = pop_records_of(&mut state, 0).expect("first batch of t-0");
    let second = pop_records_of(&mut state, 0).expect("second batch of t-0, behind t-1's");
    let offsets = |b: &FetchedBatch| b.records.iter().map(ConsumerRecord::offset).collect::<Vec<_>>();
    assert_eq!((offsets(&first), offsets(&second)), (vec![0, 1], vec![2, 3, 4]));
    assert_eq!(position(&state, 0), Some(5));
    assert!(pop_records_of(&mut state, 0).is_none());
    assert_eq!(state.buffered, wire_len(0, 3), "only t-1's records left");
    state.partitions.get_mut(&tp(1)).unwrap().paused = true;
    assert!(pop_records_of(&mut state, 1).is_none(), "a paused partition gives nothing");
}

#[test]
fn records_of_a_partition_stop_at_its_error() {
    let mut state = assigned(&[(0, 0)]);
    let e = epoch(&state, 0);
    apply(&mut state, 0, e, 0, fetched(0, 0, &tampered(batch_of(0, 3, Compression::None), 70), 9));
    assert!(pop_records_of(&mut state, 0).is_none(), "the error is left for `next`");
    assert!(matches!(pop(&mut state), Some(FetchEvent::PartitionError { .. })));
}

/// A seek to either end is looked up as a reset is, whatever `auto.offset.reset` says.
#[test]
fn a_seek_to_the_log_start_or_end_is_looked_up_under_any_reset_policy() {
    let mut state = assigned(&[(0, 0), (1, 0)]);
    apply_now(&mut state, 0, 0, data(0, 0, 5));
    assert_eq!(state.partitions[&tp(0)].high_watermark, Some(1_000));
    state.seek(&tp(0), StartPosition::Earliest, OffsetReset::None);
    state.seek(&tp(1), StartPosition::Latest, OffsetReset::None);
    assert_eq!((state.buffered, position(&state, 0)), (0, None), "buffered data goes");
    assert_eq!(state.partitions[&tp(0)].phase, Phase::Reset { timestamp: -2 });
    assert_eq!(state.partitions[&tp(1)].phase, Phase::Reset { timestamp: -1 });
    assert!(pop(&mut state).is_none(), "no error under `none`");
    let e = epoch(&state, 0);
    state.apply_reset(&tp(0), e, 0, 3, Instant::now());
    assert_eq!(position(&state, 0), Some(3));
}

/// A fetch answer from the leader that names `node` to fetch from instead, with no records.
fn redirected(to: i64, node: i32) -> PartitionResult {
    match fetched(0, to, &[], 1_000) {
        PartitionResult::Data { wire, scan_error, high_watermark, .. } => {
            PartitionResult::Data { wire, scan_error, high_watermark, preferred_replica: Some(node) }
        }
        error => error,
    }
}

fn read_replica(state: &State, p: i32) -> Option<i32> {
    state.partitions[&tp(p)].read_replica.map(|r| r.node)
}

/// The node `plan` would fetch partition `p` from at `now`, with leader 1 and `known` brokers.
fn route(state: &mut State, p: i32, known: &[i32], now: Instant) -> Option<i32> {
    state.partitions.get_mut(&tp(p)).unwrap().fetch_node(1, |node| known.contains(&node), now)
}

#[test]
fn a_named_replica_serves_the_partition_until_it_expires_or_metadata_loses_it() {
    let mut state = assigned(&[(0, 10), (1, 10)]);
    let now = Instant::now();
    assert_eq!(route(&mut state, 0, &[1, 2, 3], now), Some(1), "the leader until it names a replica");
    assert!(!apply_now(&mut state, 0, 10, redirected(10, 3)).queued);
    assert_eq!((read_replica(&state, 0), position(&state, 0)), (Some(3), Some(10)));
    assert_eq!(route(&mut state, 0, &[1, 2, 3], now), Some(3));
    assert_eq!(route(&mut state, 1, &[1, 2, 3], now), Some(1), "only the partition it was named for");
    // Records from the replica keep it.
    apply_now(&mut state, 0, 10, data(0, 10, 12));
    assert_eq!((read_replica(&state, 0), route(&mut state, 0, &[1, 2, 3], now)), (Some(3), Some(3)));

    // metadata.max.age.ms later the leader is asked again.
    let expiry = Instant::now() + Duration::from_secs(61);
    assert_eq!(route(&mut state, 0, &[1, 2, 3], expiry), Some(1));
    assert_eq!(read_replica(&state, 0), None);
    assert!(!state.partitions[&tp(0)].stale);

    // A replica metadata does not know (its broker left the cluster, or is too new) is not
    // fetched from: metadata is refreshed, then the leader is asked again.
    apply_now(&mut state, 0, 12, redirected(12, 2));
    assert_eq!(route(&mut state, 0, &[1, 3], now), None);
    assert_eq!((read_replica(&state, 0), state.partitions[&tp(0)].stale), (None, true));
    state.partitions.get_mut(&tp(0)).unwrap().stale = false;
    assert_eq!(route(&mut state, 0, &[1, 2, 3], now), Some(1), "forgotten, not only skipped");
}

#[test]
fn errors_from_a_read_replica_send_the_partition_back_to_its_leader() {
    const OFFSET_OUT_OF_RANGE: i16 = 1;
    const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    const REPLICA_NOT_AVAILABLE: i16 = 9;
    const OFFSET_NOT_AVAILABLE: i16 = 78;
    // A lagging follower's OFFSET_OUT_OF_RANGE: back to the leader, no reset, nothing lost.
    let mut state = assigned(&[(0, 10)]);
    apply_now(&mut state, 0, 10, redirected(10, 2));
    apply_now(&mut state, 0, 10, data(0, 10, 20));
    let applied = apply_now(&mut state, 0, 20, PartitionResult::Error { code: OFFSET_OUT_OF_RANGE });
    assert!(!applied.queued);
    let part = &state.partitions[&tp(0)];
    assert_eq!((part.phase, part.fetch_offset, part.read_replica), (Phase::Fetch, 20, None));
    assert!(part.retry_at.is_some(), "after a backoff");
    assert_eq!(batch_offsets(pop(&mut state)), (0, (10..20).collect()), "the replica's records are kept");
    // The same error from the leader resets as always.
    apply_now(&mut state, 0, 20, PartitionResult::Error { code: OFFSET_OUT_OF_RANGE });
    assert_eq!(state.partitions[&tp(0)].phase, Phase::Reset { timestamp: -2 });

    // Errors a follower answers when it cannot serve the partition (yet): back to the leader,
    // with the reaction the code has anyway (a metadata refresh, a backoff).
    for (code, stale, retry) in
        [(NOT_LEADER_OR_FOLLOWER, true, false), (REPLICA_NOT_AVAILABLE, true, false), (OFFSET_NOT_AVAILABLE, false, true)]
    {
        let mut state = assigned(&[(0, 10)]);
        apply_now(&mut state, 0, 10, redirected(10, 2));
        apply_now(&mut state, 0, 10, PartitionResult::Error { code });
        let part = &state.partitions[&tp(0)];
        assert_eq!((part.read_replica, part.stale, part.retry_at.is_some()), (None, stale, retry), "code {code}");
        assert_eq!((part.phase, position(&state, 0)), (Phase::Fetch, Some(10)), "code {code}");
    }
}

#[test]
fn a_failed_fetch_sends_its_partitions_back_to_their_leaders() {
    let mut state = assigned(&[(0, 0), (1, 0), (2, 0)]);
    for p in 0..3 {
        apply_now(&mut state, p, 0, redirected(0, 2));
    }
    state.forget_read_replicas(&[tp(0), tp(1)]);
    assert_eq!((read_replica(&state, 0), read_replica(&state, 1), read_replica(&state, 2)), (None, None, Some(2)));
    // A seek keeps the replica: where the partition is read from does not depend on where.
    state.seek(&tp(2), StartPosition::Offset(5), OffsetReset::Earliest);
    assert_eq!(read_replica(&state, 2), Some(2));
    // A new assignment starts at the leader.
    state.assign(tp(2), StartPosition::Offset(0), OffsetReset::Earliest);
    assert_eq!(read_replica(&state, 2), None);
}

#[test]
fn fetch_requests_carry_the_rack_from_v11_and_answers_their_preferred_replica() {
    let session = FetchSession::default().build([(tp(0), SessionPartition { fetch_offset: 0, leader_epoch: 3, max_bytes: 1024 })].into_iter().collect(), true);
    let racked = FetcherConfig { rack: Some("eu-1a".into()), ..Default::default() };
    for version in 4..=12 {
        let request = fetch_request(&racked, version, &session, &session.send, 4096);
        let bytes = crate::protocol::codec::encode_request(&request, version, 1, "kgroup")
            .unwrap_or_else(|e| panic!("v{version}: {e}"));
        let expected = if version >= 11 { "eu-1a" } else { "" };
        assert_eq!(request.rack_id.as_str(), expected, "v{version}");
        let mut body = bytes.slice(4..);
        let header = kafka_protocol::messages::RequestHeader::decode(&mut body, ApiKey::Fetch.request_header_version(version)).unwrap();
        assert_eq!(header.request_api_version, version);
        let decoded = FetchRequest::decode(&mut body, version).unwrap();
        assert_eq!(decoded.rack_id.as_str(), expected, "v{version} on the wire");
    }
    let plain = fetch_request(&FetcherConfig::default(), 12, &session, &session.send, 4096);
    assert_eq!(plain.rack_id.as_str(), "", "no rack, none sent");

    let mut state = assigned(&[(0, 0), (1, 0)]);
    let partition = |p: i32, replica: i32| {
        PartitionData::default()
            .with_partition_index(p)
            .with_high_watermark(10)
            .with_last_stable_offset(10)
            .with_preferred_read_replica(BrokerId(replica))
            .with_records(Some(Bytes::new()))
    };
    let response = FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
        .with_topic(TopicName(StrBytes::from_static_str("t")))
        .with_partitions(vec![partition(0, 3), partition(1, -1)])]);
    let sent = SentFetch {
        session: FetchSession::default().build(BTreeMap::new(), true),
        partitions: [0, 1].into_iter().map(|p| (tp(p), (epoch(&state, p), 0))).collect(),
    };
    let outcome = scan_response(response, &sent, IsolationLevel::ReadUncommitted);
    for (tp, result) in outcome.partitions {
        let (e, from) = sent.partitions[&tp];
        state.apply_fetch(&tp, e, from, result, reactions(Instant::now()));
    }
    assert_eq!((read_replica(&state, 0), read_replica(&state, 1)), (Some(3), None), "-1: fetch from the leader");
}

/// A full buffer is fetched into again only once half of it has been handed out, not after
/// every poll that frees a little room.
#[test]
fn a_full_buffer_refills_from_half() {
    let mut state = assigned(&[(0, 0)]);
    let batches: Vec<Bytes> = (0..4).map(|b| batch_of(b * 10, b * 10 + 10, Compression::None)).collect();
    let bound: usize = batches.iter().map(Bytes::len).sum();
    assert_eq!(state.room(bound), bound, "empty");
    for (b, batch) in batches.iter().enumerate() {
        let from = b as i64 * 10;
        apply_now(&mut state, 0, from, fetched(0, from, batch, 40));
    }
    assert_eq!(state.room(bound), 0, "full");
    state.pop(1, &UNLIMITED).expect("one batch");
    assert_eq!(state.room(bound), 0, "a quarter handed out: still holding");
    state.pop(1, &UNLIMITED).expect("a second batch");
    assert!(state.buffered > bound / 2, "the later batches are a little larger");
    assert_eq!(state.room(bound), 0, "still above half: still holding");
    state.pop(1, &UNLIMITED).expect("a third batch");
    assert!(state.buffered <= bound / 2);
    assert_eq!(state.room(bound), bound - state.buffered, "half handed out: fetching again");
}
