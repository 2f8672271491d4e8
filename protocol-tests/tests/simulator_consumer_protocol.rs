//! kgroup's KIP-848 member end to end through the scripted coordinator's model of Kafka 4.0 and
//! 4.4 (checked against the brokers by cases K01..K09), in the deterministic simulator: the seed
//! scenario's scale-out, and random interleavings of joins, leaves, crashes, slow members,
//! delayed, dropped and cut requests and coordinator failovers. The simulator checks its
//! invariants as it runs (an accepted commit comes from the member holding the partition, no
//! offset moves back, no epoch error reaches an application, records read again only when their
//! earlier reading's commit had not landed, ...); these tests add convergence and no loss.

use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use kgroup_protocol_tests::coordinator::{Fault, FaultAction, Kip848, Match};
use kgroup_protocol_tests::sim::{Sim, SimConfig, GROUP};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence, RngSeed, TestRunner};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn models() -> [(&'static str, Kip848); 2] {
    [("4.0", Kip848::kafka40()), ("4.4", Kip848::kafka44())]
}

#[test]
fn the_seed_scale_out_converges_at_every_size_without_loss_or_refused_commits() {
    for (name, kip848) in models() {
        let mut cfg = SimConfig::consumer_protocol(0x5eed, 72, kip848);
        cfg.log = std::env::var_os("SIM_LOG").is_some();
        let mut sim = Sim::new(cfg);
        sim.add_member();
        for members in 2..=30 {
            sim.add_member();
            let took = sim.run_until_converged(secs(120));
            assert!(
                took.is_some(),
                "Kafka {name}: no convergence at {members} members: {}\n{}",
                sim.convergence_problem().unwrap_or_default(),
                sim.describe_members()
            );
            sim.run_for(secs(5));
        }
        let total = sim.stats().clone();
        println!("Kafka {name}: {total:?}, lost {}", sim.lost_messages());
        assert_eq!(sim.lost_messages(), 0, "Kafka {name}");
        assert_eq!(total.duplicates, 0, "Kafka {name}");
        assert_eq!((total.fenced_by_broker, total.failed), (0, 0), "Kafka {name}: {total:?}");
        assert!(total.committed > 10_000, "Kafka {name}: {total:?}");
        assert!(total.revoke_window > 0, "Kafka {name}: partitions moved through revoke windows: {total:?}");
        assert_eq!(total.revoke_window_committed, total.revoke_window, "Kafka {name}: {total:?}");
        let accepted = sim.coordinator().accepted_commits();
        assert!(accepted.iter().all(|c| c.by_owner()), "Kafka {name}");
        for p in 0..72 {
            assert!(sim.coordinator().committed(GROUP, "t", p).is_some(), "Kafka {name}: t-{p} never committed");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Random interleavings

#[derive(Debug, Clone)]
enum Action {
    Join,
    Leave(u8),
    Crash(u8),
    Slow(u8, u32),
    /// The next `times` requests of the API are delayed by these milliseconds, dropped, or
    /// their connection cut after they are processed.
    Delay(ApiKey, u64, u32),
    Drop(ApiKey, u32),
    ProcessThenCut(ApiKey, u32),
    Failover(u64, u64),
    /// The member's next heartbeat is answered FENCED_MEMBER_EPOCH (without the broker
    /// processing it): it loses its partitions and rejoins with epoch 0, and the broker gives
    /// what it had to others.
    Fence(u8),
    /// The next `times` OffsetCommits are answered with this code, unprocessed.
    CommitError(i16, u32),
}

#[derive(Debug, Clone)]
struct Case {
    seed: u64,
    kafka44: bool,
    members: usize,
    partitions: i32,
    actions: Vec<(u64, Action)>,
}

fn api() -> impl Strategy<Value = ApiKey> {
    prop_oneof![Just(ApiKey::ConsumerGroupHeartbeat), Just(ApiKey::OffsetCommit), Just(ApiKey::OffsetFetch)]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => Just(Action::Join),
        1 => any::<u8>().prop_map(Action::Leave),
        1 => any::<u8>().prop_map(Action::Crash),
        1 => (any::<u8>(), 2u32..6).prop_map(|(m, f)| Action::Slow(m, f)),
        2 => (api(), 10u64..3000, 1u32..4).prop_map(|(a, d, n)| Action::Delay(a, d, n)),
        1 => (api(), 1u32..3).prop_map(|(a, n)| Action::Drop(a, n)),
        1 => (api(), 1u32..3).prop_map(|(a, n)| Action::ProcessThenCut(a, n)),
        1 => (0u64..2000, 0u64..3000).prop_map(|(u, l)| Action::Failover(u, l)),
        1 => any::<u8>().prop_map(Action::Fence),
        1 => (prop_oneof![Just(113i16), Just(110), Just(25), Just(14)], 1u32..3).prop_map(|(c, n)| Action::CommitError(c, n)),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (any::<u64>(), any::<bool>(), 1usize..5, 1i32..13, prop::collection::vec((0u64..8000, action()), 0..10))
        .prop_map(|(seed, kafka44, members, partitions, actions)| Case { seed, kafka44, members, partitions, actions })
}

fn run_case(case: &Case) -> Result<(), String> {
    let kip848 = if case.kafka44 { Kip848::kafka44() } else { Kip848::kafka40() };
    let mut cfg = SimConfig::consumer_protocol(case.seed, case.partitions, kip848);
    cfg.log = std::env::var_os("SIM_LOG").is_some();
    let mut sim = Sim::new(cfg);
    for _ in 0..case.members {
        sim.add_member();
    }
    for (after_ms, action) in &case.actions {
        sim.run_for(Duration::from_millis(*after_ms));
        let live = sim.live_members();
        let pick = |m: u8| (!live.is_empty()).then(|| live[m as usize % live.len()]);
        match action {
            Action::Join => {
                sim.add_member();
            }
            Action::Leave(m) => {
                if let Some(i) = pick(*m) {
                    sim.leave(i);
                }
            }
            Action::Crash(m) => {
                // Keep one member: a group of crashed members cannot converge.
                if live.len() > 1 {
                    if let Some(i) = pick(*m) {
                        sim.crash(i);
                    }
                }
            }
            Action::Slow(m, factor) => {
                if let Some(i) = pick(*m) {
                    sim.slow(i, *factor, Duration::from_millis(20));
                }
            }
            Action::Delay(api, d, n) => sim.inject(fault(*api, FaultAction::Delay(Duration::from_millis(*d)), *n)),
            Action::Drop(api, n) => sim.inject(fault(*api, FaultAction::Drop, *n)),
            Action::ProcessThenCut(api, n) => sim.inject(fault(*api, FaultAction::ProcessThenCut, *n)),
            Action::Failover(unowned, loading) => {
                sim.coordinator_failover(Duration::from_millis(*unowned), Duration::from_millis(*loading))
            }
            Action::Fence(m) => {
                if let Some(i) = pick(*m) {
                    let member = sim.machine(i).member_id().to_string();
                    let fenced = FaultAction::Error(110);
                    sim.inject(Fault {
                        matcher: Match::Member(member),
                        ..fault(ApiKey::ConsumerGroupHeartbeat, fenced, 1)
                    });
                }
            }
            Action::CommitError(code, n) => sim.inject(fault(ApiKey::OffsetCommit, FaultAction::Error(*code), *n)),
        }
    }
    if sim.active_members().is_empty() {
        sim.add_member();
    }
    sim.clear_faults();
    // Sessions of crashed members expire (45 s) and dropped requests time out (30 s) first.
    if sim.run_until_settled(secs(300), secs(2)).is_none() {
        return Err(format!(
            "no convergence: {}\n{}",
            sim.convergence_problem().unwrap_or_default(),
            sim.describe_members()
        ));
    }
    sim.run_for(secs(5));
    let lost = sim.lost_messages();
    if lost > 0 {
        return Err(format!("{lost} messages lost\n{}", sim.describe_members()));
    }
    Ok(())
}

fn fault(api: ApiKey, action: FaultAction, times: u32) -> Fault {
    Fault { api, matcher: Match::Any, action, remaining: Some(times) }
}

/// The same cases on every run (a fixed seed); `PROPTEST_RNG_SEED=random` explores.
#[test]
fn random_interleavings_on_the_consumer_protocol_keep_invariants_and_converge() {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(300);
    let seed = match std::env::var("PROPTEST_RNG_SEED").as_deref() {
        Ok("random") => RngSeed::Random,
        _ => RngSeed::Fixed(0x006b_3438_3438),
    };
    let config = ProptestConfig {
        cases,
        rng_seed: seed,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&case(), |case| {
        let outcome = std::panic::catch_unwind(|| run_case(&case));
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(TestCaseError::fail(e)),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Err(TestCaseError::fail(message))
            }
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Cases the property test found, kept by name.
#[test]
fn cases_the_property_test_found_stay_fixed() {
    let cases = [(
        "a member joining while the coordinator fails over",
        Case {
            seed: 0,
            kafka44: false,
            members: 1,
            partitions: 1,
            actions: vec![(0, Action::Failover(8, 0)), (0, Action::Join)],
        },
    )];
    for (name, case) in cases {
        if let Err(e) = run_case(&case) {
            panic!("{name}: {e}");
        }
    }
}
