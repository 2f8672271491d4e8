//! Changing the subscription of a running member, and pattern subscriptions (Java's
//! `subscribe` called again, and `subscribe(Pattern)`).

use super::*;

fn listed(name: &str, partitions: i32) -> ListedTopic {
    ListedTopic { name: name.into(), partitions: Some(partitions), internal: false }
}

fn internal(name: &str) -> ListedTopic {
    ListedTopic { name: name.into(), partitions: Some(50), internal: true }
}

fn topics(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn pattern(text: &str) -> TopicSubscription {
    TopicSubscription::Pattern(TopicPattern::new(text).expect("valid pattern"))
}

fn revokes(h: &Harness) -> Vec<(Vec<TopicPartition>, RejoinReason)> {
    h.events
        .iter()
        .filter_map(|e| match e {
            GroupEvent::RevokeRequested { partitions, reason, .. } => Some((partitions.clone(), reason.clone())),
            _ => None,
        })
        .collect()
}

impl Harness {
    /// A member of `config` subscribed with `subscription`, its coordinator found.
    fn subscribed(config: GroupConfig, subscription: TopicSubscription) -> Self {
        let base = Instant::now();
        let m = GroupMachine::with_subscription(config, subscription, base);
        let mut h = Harness { m, base, now: base, outbox: Vec::new(), events: Vec::new() };
        h.pump();
        h.found();
        h
    }

    /// Takes the pending topic listing and answers it with `listing`.
    fn list_topics(&mut self, listing: &[ListedTopic]) {
        let r = self.take("Metadata");
        assert_eq!(r.body, GroupRequest::ListTopics, "a pattern lists every topic");
        self.m.handle_topic_listing(self.now, r.id, listing.to_vec());
        self.pump();
    }

    /// Joins (two steps) and is assigned `partitions` of t in generation 1; returns the topics
    /// the JoinGroup named.
    fn join_as_follower(&mut self) -> Vec<String> {
        self.two_step_join("m-1");
        let (id, _, join) = self.take_join();
        self.respond_join(id, join_response(NONE, 1, "m-1", "m-0"));
        let (id, _, _) = self.take_sync();
        self.respond_sync(id, sync_ok(&[]));
        assert_eq!(self.m.state(), StateKind::Stable);
        join_subscription(&join).topics
    }

    /// Lets the metadata refresh timer fire.
    fn refresh_due(&mut self) {
        self.run_until(self.elapsed() + Duration::from_secs(300));
    }
}

#[test]
fn eager_member_changing_its_topics_revokes_everything_then_joins_with_the_new_topics() {
    let mut h = Harness::stable();
    h.m.subscribe(["u"], h.now);
    h.pump();
    assert_eq!(revokes(&h), vec![(tps(&[0, 1]), RejoinReason::SubscriptionChanged)]);
    assert_eq!(h.m.state(), StateKind::Revoking);
    assert_eq!(h.count("JoinGroup"), 0, "the revoke handler runs first");
    // Work done on t before the handler finished still commits with generation 1.
    let id = h.commit(vec![h.lease(0, 5)]);
    let (commit_id, _, request) = h.take_commit();
    assert_eq!(request.generation_id_or_member_epoch, 1);
    h.respond(commit_id, commit_response(&[(0, NONE)]));
    assert_eq!(h.completed(id).expect("answered")[0].outcome, committed(1, None));
    let late = h.lease(1, 9);
    h.m.revoke_done(h.now);
    h.pump();
    let (id, _, join) = h.take_join();
    assert_eq!(join_subscription(&join).topics, topics(&["u"]));
    h.respond_join(id, join_response(NONE, 2, "m-1", "m-0"));
    let (id, _, _) = h.take_sync();
    h.respond_sync(id, sync_ok(&[]));
    // A lease of the revoked topic is fenced locally, never sent.
    let id = h.commit(vec![late]);
    assert_eq!(h.count("OffsetCommit"), 0);
    let results = h.completed(id).expect("judged at once");
    assert!(matches!(results[0].outcome, CommitOutcome::Fenced { reason: FenceReason::NotOwned, .. }), "{results:?}");
    assert_eq!(h.m.snapshot(h.now).subscription, topics(&["u"]));
}

#[test]
fn the_same_subscription_again_changes_nothing() {
    let mut h = Harness::stable();
    h.m.subscribe(["t", "t"], h.now);
    h.pump();
    assert!(h.events.is_empty(), "{:?}", h.events);
    assert_eq!(h.m.state(), StateKind::Stable);
    assert!(h.outbox.is_empty());
}

#[test]
fn cooperative_member_revokes_only_the_topics_dropped_and_no_longer_claims_them() {
    let mut h = Harness::coop_stable();
    h.m.subscribe(["u"], h.now);
    h.pump();
    assert_eq!(revokes(&h), vec![(tps(&[0, 1]), RejoinReason::SubscriptionChanged)]);
    assert_eq!(h.m.state(), StateKind::Revoking, "the revoked partitions' handler runs first");
    h.m.revoke_done(h.now);
    h.pump();
    let (_, _, join) = h.take_join();
    let sub = join_subscription_for(&join, COOP);
    assert_eq!(sub.topics, topics(&["u"]));
    assert!(sub.owned_partitions.is_empty(), "revoked before the join: free to move at once");
    assert!(h.m.assignment().is_empty());
    assert_eq!(h.m.lease(&tp(0), 3), None);
}

#[test]
fn a_cooperative_rebalance_before_a_new_patterns_listing_gives_up_nothing() {
    let mut h = Harness::coop_stable();
    h.m.subscribe_to(pattern("t|u"), h.now);
    h.pump();
    h.heartbeat_answered(REBALANCE_IN_PROGRESS);
    assert!(revokes(&h).iter().all(|(partitions, _)| partitions.is_empty()), "{:?}", revokes(&h));
    let owned: Vec<TopicPartition> = h.m.assignment().into_iter().map(|o| o.partition).collect();
    assert_eq!(owned, tps(&[0, 1]));
}

#[test]
fn cooperative_member_adding_a_topic_keeps_its_partitions_and_rejoins_at_once() {
    let mut h = Harness::coop_stable();
    h.m.subscribe(["t", "u"], h.now);
    h.pump();
    assert_eq!(revokes(&h), vec![(vec![], RejoinReason::SubscriptionChanged)]);
    let (_, _, join) = h.take_join();
    let sub = join_subscription_for(&join, COOP);
    assert_eq!(sub.topics, topics(&["t", "u"]));
    assert_eq!(sub.owned_partitions, tps(&[0, 1]));
    assert_eq!(h.m.assignment().len(), 2);
}

#[test]
fn a_change_while_the_join_is_out_rejoins_once_that_generation_is_installed() {
    let mut h = Harness::new();
    h.found();
    h.two_step_join("m-1");
    let (id, _, join) = h.take_join();
    assert_eq!(join_subscription(&join).topics, topics(&["t"]));
    h.m.subscribe(["u"], h.now);
    h.pump();
    assert_eq!(h.count("JoinGroup"), 0, "one join at a time");
    h.respond_join(id, join_response(NONE, 1, "m-1", "m-0"));
    let (id, _, _) = h.take_sync();
    h.respond_sync(id, sync_ok(&[0]));
    assert_eq!(revokes(&h), vec![(tps(&[0]), RejoinReason::SubscriptionChanged)], "joined with t, subscribes u");
    h.m.revoke_done(h.now);
    h.pump();
    let (_, _, join) = h.take_join();
    assert_eq!(join_subscription(&join).topics, topics(&["u"]));
}

#[test]
fn a_pattern_lists_the_topics_before_joining_and_joins_with_the_full_matches() {
    let mut h = Harness::subscribed(config(), pattern("orders-[0-9]+|audit"));
    assert_eq!(h.count("JoinGroup"), 0, "no join before the pattern is matched");
    h.list_topics(&[
        listed("orders-1", 3),
        listed("orders-22", 1),
        listed("orders-x", 1),
        listed("xorders-1", 1),
        listed("audit-log", 1),
        listed("audit", 2),
    ]);
    let (_, _, join) = h.take_join();
    assert_eq!(join.member_id.as_str(), "");
    let snapshot = h.m.snapshot(h.now);
    assert_eq!(snapshot.subscription, topics(&["audit", "orders-1", "orders-22"]), "whole names only");
    assert_eq!(snapshot.pattern.as_deref(), Some("orders-[0-9]+|audit"));
}

#[test]
fn internal_topics_are_left_out_unless_exclude_internal_topics_is_off() {
    let listing = [listed("_schemas", 1), internal("__consumer_offsets")];
    let mut h = Harness::subscribed(config(), pattern("_.*"));
    h.list_topics(&listing);
    assert_eq!(h.join_as_follower(), topics(&["_schemas"]));
    let mut c = config();
    c.exclude_internal_topics = false;
    let mut h = Harness::subscribed(c, pattern("_.*"));
    h.list_topics(&listing);
    assert_eq!(h.join_as_follower(), topics(&["__consumer_offsets", "_schemas"]));
}

#[test]
fn a_pattern_that_matches_nothing_yet_joins_with_no_topics_and_picks_one_up_at_the_refresh() {
    let mut h = Harness::subscribed(config(), pattern("new-.*"));
    h.list_topics(&[listed("t", 4)]);
    assert_eq!(h.join_as_follower(), Vec::<String>::new());
    h.events.clear();
    h.refresh_due();
    h.list_topics(&[listed("t", 4), listed("new-1", 2)]);
    assert_eq!(revokes(&h), vec![(vec![], RejoinReason::SubscriptionChanged)]);
    h.m.revoke_done(h.now);
    h.pump();
    let (_, _, join) = h.take_join();
    assert_eq!(join_subscription(&join).topics, topics(&["new-1"]));
}

#[test]
fn the_refresh_runs_every_metadata_max_age_and_the_same_matches_change_nothing() {
    let mut h = Harness::subscribed(config(), pattern("t|u"));
    h.list_topics(&[listed("t", 4)]);
    h.join_as_follower();
    h.events.clear();
    h.outbox.clear();
    h.run_until(h.elapsed() + Duration::from_secs(299));
    assert_eq!(h.count("Metadata"), 0, "not before metadata.max.age.ms");
    h.run_until(h.elapsed() + Duration::from_secs(1));
    h.list_topics(&[listed("t", 4), listed("v", 1)]);
    assert!(revokes(&h).is_empty(), "same matches: no rejoin");
    assert_eq!(h.m.state(), StateKind::Stable);
    h.refresh_due();
    h.list_topics(&[listed("t", 4), listed("u", 1)]);
    assert_eq!(revokes(&h), vec![(vec![], RejoinReason::SubscriptionChanged)]);
}

#[test]
fn a_failed_listing_keeps_the_topics_matched_and_is_retried() {
    let mut h = Harness::subscribed(config(), pattern("t"));
    h.list_topics(&[listed("t", 4)]);
    h.join_as_follower();
    h.events.clear();
    h.refresh_due();
    let r = h.take("Metadata");
    h.m.handle_request_failed(h.now, r.id, RequestFailure::TimedOut);
    h.pump();
    assert!(revokes(&h).is_empty(), "no answer is not \"no topic matches\"");
    assert_eq!(h.m.state(), StateKind::Stable);
    assert_eq!(h.m.snapshot(h.now).subscription, topics(&["t"]));
    h.run_until(h.elapsed() + Duration::from_secs(1));
    h.list_topics(&[listed("t", 4)]);
    assert!(revokes(&h).is_empty());
}

#[test]
fn a_failed_first_listing_holds_the_join_until_a_listing_answers() {
    let mut h = Harness::subscribed(config(), pattern("t"));
    let r = h.take("Metadata");
    h.m.handle_request_failed(h.now, r.id, RequestFailure::Network("refused".into()));
    h.pump();
    assert_eq!(h.count("JoinGroup"), 0);
    assert_eq!(h.count("Metadata"), 0, "after a backoff");
    h.run_until(h.elapsed() + Duration::from_secs(1));
    h.list_topics(&[listed("t", 4)]);
    let (_, _, join) = h.take_join();
    assert!(join.member_id.is_empty());
}

#[test]
fn switching_to_a_pattern_waits_for_its_listing_before_rejoining() {
    let mut h = Harness::stable();
    h.m.subscribe_to(pattern("t|u"), h.now);
    h.pump();
    assert!(revokes(&h).is_empty(), "nothing known to rejoin with yet");
    h.list_topics(&[listed("t", 4), listed("u", 2)]);
    assert_eq!(revokes(&h), vec![(tps(&[0, 1]), RejoinReason::SubscriptionChanged)]);
}

#[test]
fn a_pattern_set_while_a_topics_refresh_is_out_is_listed_when_that_answer_comes() {
    let mut h = Harness::stable();
    h.refresh_due();
    let refresh = h.take("Metadata");
    assert!(matches!(refresh.body, GroupRequest::Metadata { .. }), "{:?}", refresh.body);
    h.m.subscribe_to(pattern("t|u"), h.now);
    h.pump();
    h.m.handle_metadata(h.now, refresh.id, std::collections::BTreeMap::from([("t".to_string(), 2)]));
    h.pump();
    h.list_topics(&[listed("t", 2), listed("u", 2)]);
    assert_eq!(revokes(&h), vec![(tps(&[0, 1]), RejoinReason::SubscriptionChanged)]);
}

#[test]
fn a_pattern_that_is_no_regular_expression_is_refused_with_its_reason() {
    let err = TopicPattern::new("orders-(").unwrap_err();
    assert!(matches!(&err, crate::config_error::ConfigError::InvalidPattern { pattern, .. } if pattern == "orders-("));
    assert!(TopicPattern::new("").is_err());
    assert!(TopicPattern::new("a)|(b").is_err(), "unbalanced groups cannot escape the anchors");
}

#[test]
fn patterns_take_java_classes_and_flags_and_match_whole_names_only() {
    let p = TopicPattern::new(r"(?i)orders-\d+").expect("valid pattern");
    assert!(p.matches("ORDERS-12") && p.matches("orders-1"));
    assert!(!p.matches("orders-1x") && !p.matches("xorders-1") && !p.matches("orders-"));
    let p = TopicPattern::new("a|b").expect("valid pattern");
    assert!(p.matches("a") && p.matches("b") && !p.matches("ab"), "alternatives are anchored as a whole");
}
