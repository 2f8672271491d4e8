//! The consumer session (`kgroup::consumer::session`, the code `GroupConsumer` runs) in the
//! simulator: ownership gaps, batches accumulated across reads, auto-commit and the max.poll
//! rejoin. Besides what each test asserts, the simulator checks on every step that no commit
//! crosses an ownership gap (a), no accepted commit moves a partition backwards (b) and no
//! record is read again behind a commit that landed (g).

use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use kgroup::group::{CommitFailure, CommitOutcome, StateKind};
use kgroup_protocol_tests::coordinator::{Fault, FaultAction, Match};
use kgroup_protocol_tests::sim::{RevokeStyle, Sim, SimConfig, Stats};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Grows the group from 2 to `members`, converging and processing 10 s at every size.
fn scale_out(cfg: SimConfig, members: usize) -> Sim {
    let mut sim = Sim::new(cfg);
    sim.grow_to(members, secs(10));
    sim
}

fn accumulating(seed: u64, assignor: &'static str) -> SimConfig {
    let mut cfg = SimConfig::realistic(seed, 72);
    cfg.reads_per_commit = 4;
    cfg.assignors = vec![assignor];
    cfg
}

fn assert_clean(sim: &Sim) -> Stats {
    let s = sim.stats().clone();
    assert_eq!(s.failed, 0, "{s:?}");
    assert_nothing_lost(sim)
}

/// No message lost, no commit refused by the broker or accepted from a non-owner.
fn assert_nothing_lost(sim: &Sim) -> Stats {
    let s = sim.stats().clone();
    assert_eq!(sim.lost_messages(), 0, "{s:?}");
    assert_eq!(s.fenced_by_broker, 0, "{s:?}");
    assert_eq!(sim.coordinator().accepted_commits().iter().filter(|c| !c.by_owner()).count(), 0);
    s
}

#[test]
fn batches_accumulated_across_reads_are_committed_before_the_member_rejoins() {
    for assignor in ["range", "cooperative-sticky"] {
        let sim = scale_out(accumulating(0xacc, assignor), 8);
        let s = assert_clean(&sim);
        println!("{assignor}: {s:?}");
        // The window waited for every lease the applications held: nothing fenced, nothing
        // read twice, and commits went out inside windows.
        assert_eq!(s.fenced, 0, "{assignor}: {s:?}");
        assert_eq!(s.duplicates, 0, "{assignor}: {s:?}");
        assert!(s.revoke_window > 0, "{assignor}: {s:?}");
        assert_eq!(s.revoke_window_committed, s.revoke_window, "{assignor}: {s:?}");
    }
}

#[test]
fn without_the_window_the_same_accumulated_batches_are_fenced_and_read_twice() {
    // The same run with a rebalance callback timeout of zero: the member rejoins while it
    // holds leases, their commits are fenced and the next owners read those batches again.
    // (What the window above prevents; also shows (g) accepts duplicates of fenced batches.)
    let mut cfg = accumulating(0xacc, "range");
    cfg.revoke_style = RevokeStyle::Immediate;
    let sim = scale_out(cfg, 8);
    let s = assert_clean(&sim);
    assert!(s.fenced > 0, "{s:?}");
    assert!(s.duplicates > 0, "{s:?}");
}

#[test]
fn auto_commit_scale_out_commits_stored_offsets_in_the_window_and_loses_nothing() {
    for assignor in ["range", "cooperative-sticky"] {
        let mut cfg = SimConfig::realistic(0xa70, 72);
        cfg.auto_commit = Some(secs(1));
        cfg.assignors = vec![assignor];
        let sim = scale_out(cfg, 6);
        let s = assert_clean(&sim);
        println!("{assignor}: {s:?}");
        assert!(s.committed > 100, "{assignor}: {s:?}");
        assert_eq!(s.duplicates, 0, "{assignor}: stored offsets are committed before the member rejoins: {s:?}");
        assert_eq!(s.fenced, 0, "{assignor}: {s:?}");
    }
}

/// A member's JoinGroup is lost: the rebalance completes without it (the others take its
/// partitions and commit them), its join times out and is answered UNKNOWN_MEMBER_ID, and it
/// comes back in a later generation, getting partitions again in a new ownership streak.
fn miss_a_generation(cfg: SimConfig) -> Sim {
    let mut sim = Sim::new(cfg);
    sim.add_member();
    sim.add_member();
    sim.converge(secs(120));
    sim.run_for(secs(5));
    let member_id = sim.generation_of(1).expect("a member of the group").member_id.to_string();
    sim.inject(Fault::new(ApiKey::JoinGroup, FaultAction::Drop).matching(Match::Member(member_id)).once());
    sim.add_member();
    sim.run_for(secs(45));
    sim.converge(secs(120));
    sim.run_for(secs(10));
    sim
}

fn gap_config(seed: u64, assignor: &'static str) -> SimConfig {
    let mut cfg = SimConfig::realistic(seed, 12);
    cfg.trace = true;
    cfg.rebalance_timeout = secs(6);
    cfg.revoke_timeout = secs(3);
    cfg.initial_rebalance_delay = Duration::ZERO;
    cfg.assignors = vec![assignor];
    cfg
}

#[test]
fn a_member_that_misses_a_generation_starts_again_from_the_committed_offsets() {
    for assignor in ["range", "cooperative-sticky"] {
        for reads in [1, 3] {
            let mut cfg = gap_config(0x9a9, assignor);
            cfg.reads_per_commit = reads;
            let sim = miss_a_generation(cfg);
            let s = assert_nothing_lost(&sim);
            println!("{assignor}, {reads} reads per commit: {s:?}");
            assert!(sim.coordinator_generation() >= 3, "{assignor}");
            if assignor == "range" {
                assert!(s.ownership_gaps > 0, "the member got partitions back in a new streak: {s:?}");
            } else {
                assert!(s.lost_events + s.left_events + s.ownership_gaps > 0, "{assignor}: {s:?}");
            }
            // What the slow member processed while it was out of the group is never committed:
            // fenced, or refused because the member was gone.
            for o in sim.outcomes().iter().filter(|o| !o.outcome.outcome.is_committed()) {
                assert!(
                    matches!(
                        o.outcome.outcome,
                        CommitOutcome::Fenced { .. } | CommitOutcome::Failed { reason: CommitFailure::MemberGone }
                    ),
                    "{assignor}: {o:?}"
                );
            }
        }
    }
}

#[test]
fn unknown_member_id_during_a_join_starts_a_new_streak() {
    for assignor in ["range", "cooperative-sticky"] {
        let mut sim = Sim::new(gap_config(0x25, assignor));
        sim.add_member();
        sim.add_member();
        sim.converge(secs(120));
        sim.run_for(secs(5));
        // The next JoinGroup of every member is answered UNKNOWN_MEMBER_ID: each starts over
        // with a new member id while the others may already be in the next generation.
        sim.inject(Fault::new(ApiKey::JoinGroup, FaultAction::Error(25)).times(2));
        sim.add_member();
        sim.converge(secs(120));
        sim.run_for(secs(10));
        let s = assert_clean(&sim);
        println!("{assignor}: {s:?}");
        assert!(sim.coordinator_generation() >= 2, "{assignor}");
    }
}

#[test]
fn max_poll_rejoin_with_auto_commit_loses_nothing_and_never_moves_a_commit_back() {
    let mut cfg = SimConfig::realistic(0x3a9, 6);
    cfg.rebalance_timeout = secs(20);
    cfg.revoke_timeout = secs(10);
    cfg.auto_commit = Some(secs(1));
    let mut sim = Sim::new(cfg);
    sim.add_member();
    sim.add_member();
    sim.converge(secs(120));
    sim.run_for(secs(5));
    // m01's next batch takes 25 s, past max.poll.interval.ms (20 s): it leaves, m00 takes over.
    sim.slow(1, 250, Duration::ZERO);
    let left = sim.run_until(secs(30), |s| s.machine(1).state() == StateKind::Left);
    assert!(left.is_some(), "{}", sim.describe_members());
    sim.slow(1, 1, Duration::ZERO);
    sim.run_for(secs(8));
    sim.converge(secs(120));
    sim.run_for(secs(10));
    let s = assert_clean(&sim);
    // The slow batch was stored after the member left: never committed, read again by m00.
    assert!(s.duplicates <= 1000, "{s:?}");
    assert_eq!(sim.live_members(), vec![0, 1]);
}
