//! State changes and what they take along: rejoins and the revoke window, losing the
//! partitions, the coordinator or every request in flight, leaving, and failing.

use super::*;

impl GroupMachine {
    pub(super) fn set_state(&mut self, next: State, reason: &str, now: Instant) {
        let from = self.state.kind();
        let to = next.kind();
        self.state = next;
        if from != to {
            tracing::info!(%from, %to, reason, "group state changed");
        } else {
            tracing::debug!(state = %to, reason, "group state refreshed");
        }
        let generation = self.current_generation().map(|g| g.id);
        self.last_transition = Some(Transition { from, to, reason: reason.to_owned(), at: now });
        self.events.push_back((now, GroupEvent::Transition { from, to, reason: reason.to_owned(), generation }));
    }

    pub(super) fn fail(&mut self, error: GroupError, now: Instant) {
        tracing::error!(%error, "group member stopped");
        self.set_state(State::Failed(error.clone()), &error.to_string(), now);
        self.fail_queued(&error, now);
        self.events.push_back((now, GroupEvent::Fatal(error)));
    }

    /// Answers every queued commit and offset lookup with the fatal `error`.
    pub(super) fn fail_queued(&mut self, error: &GroupError, now: Instant) {
        let completed = self.commits.fail_all(CommitFailure::Fatal(error.to_string()), &mut self.counters);
        self.report(completed, now);
        let ended = self.lookups.fail_all(&error.to_string());
        self.report(ended, now);
    }

    /// The fatal error of `api` answered with `code`; FENCED_INSTANCE_ID names the instance id
    /// another process took over (KIP-345).
    pub(super) fn rejected(&self, api: &'static str, code: i16) -> GroupError {
        match code {
            FENCED_INSTANCE_ID | UNRELEASED_INSTANCE_ID => {
                GroupError::FencedInstanceId { instance_id: self.config.group_instance_id.clone().unwrap_or_default() }
            }
            _ => GroupError::Rejected { api, code: KafkaCode(code), context: self.config.group_id.clone() },
        }
    }

    /// Gives up the coordinator and its connection (the driver closes it when it looks the
    /// coordinator up again, as Java's `markCoordinatorUnknown` disconnects). Every request
    /// still in flight went out on that connection: none of them is waited for (a parked
    /// JoinGroup would be, until the join timeout), each is handled as lost now, and their
    /// answers or failures, should any still come, are no longer tracked, so nothing of the old
    /// connection can touch the next one.
    pub(super) fn coordinator_lost(&mut self, reason: &str, now: Instant) {
        if let CoordinatorState::Known { node_id, .. } = self.coordinator {
            tracing::info!(node = node_id, reason, "coordinator lost; member id and generation kept");
            self.events.push_back((now, GroupEvent::Coordinator { node_id: None, reason: reason.to_owned() }));
            self.coordinator = CoordinatorState::Unknown;
            self.forget_acknowledged();
            self.timers.set(TimerKind::Retry, now + self.config.retry_backoff);
            let why = format!("given up with the coordinator connection ({reason})");
            for (id, kind) in std::mem::take(&mut self.in_flight) {
                self.request_lost(id, kind, &why, now);
            }
        }
    }

    /// What a coordinator request that will get no answer leaves to do.
    pub(super) fn request_lost(&mut self, id: RequestId, kind: InFlight, why: &str, now: Instant) {
        match kind {
            // Answered by `handle_coordinator_found` or failed, never given up.
            InFlight::FindCoordinator => {}
            InFlight::Join => {
                // The broker may still hold the join; a second one from the same member id
                // replaces it (GM 527-544), so joining again with the same id is safe.
                if let State::AwaitingJoin { join, .. } = &mut self.state {
                    if *join == Some(id) {
                        *join = None;
                    }
                }
            }
            InFlight::Sync { sent } => {
                if self.is_current(&sent) || matches!(self.state, State::AwaitingSync { sync, .. } if sync == id) {
                    self.rejoin(RejoinReason::Retry(why.to_owned()), now);
                }
            }
            InFlight::Heartbeat { .. } => {}
            InFlight::ConsumerHeartbeat(_) => {
                self.forget_acknowledged();
                if let State::AwaitingJoin { join, .. } = &mut self.state {
                    if *join == Some(id) {
                        *join = None;
                    }
                }
            }
            InFlight::Leave => self.finish_leaving(now),
            InFlight::Commit(commit) => self.commits.on_lost(now, commit, why, &self.config),
            InFlight::Fetch => {
                let delayed = self.lookups.on_lost(now, why, &self.config, &mut self.counters);
                self.report(delayed, now);
            }
        }
    }

    /// Rejoins when the topics a JoinGroup would name now differ from those the last one named
    /// (a pattern that was never listed names none yet: it waits for its listing).
    pub(super) fn rejoin_if_subscription_outdated(&mut self, now: Instant) {
        if !self.subscription.awaits_listing() && self.subscription.topics() != self.joined_with.as_slice() {
            self.request_rejoin(RejoinReason::SubscriptionChanged, now);
        }
    }

    /// From Stable: open the revoke window. Elsewhere: rejoin when possible.
    pub(super) fn request_rejoin(&mut self, reason: RejoinReason, now: Instant) {
        if self.is_consumer_protocol() {
            // KIP-848 has no join barrier: the next heartbeat, at once, tells the broker (a new
            // subscription) or learns the member's new epoch (a commit answered stale).
            tracing::debug!(%reason, "heartbeat at once");
            if self.is_heartbeating() {
                self.timers.set(TimerKind::Heartbeat, now);
            }
            return;
        }
        match self.state.clone() {
            State::Stable { generation, leader, protocol } => {
                // Cooperative (KIP-429): the member keeps its partitions, rejoins at once, and
                // gives up only what the new assignment leaves out; but the partitions of
                // topics it no longer subscribes to are revoked now (Java's cooperative
                // `onJoinPrepare`). The event tells the application a rebalance started.
                let cooperative = self.ownership.as_ref().is_some_and(|o| o.cooperative);
                let subscribed = self.subscription.topics();
                // A new pattern not listed yet matches nothing known: nothing is given up
                // until its listing says which topics it keeps.
                let listed = !self.subscription.awaits_listing();
                let unsubscribed: Vec<TopicPartition> = match &self.ownership {
                    Some(o) if cooperative && listed => {
                        o.partitions.keys().filter(|tp| !subscribed.iter().any(|t| **t == *tp.topic)).cloned().collect()
                    }
                    _ => Vec::new(),
                };
                let partitions: Vec<TopicPartition> = match &self.ownership {
                    Some(o) if !cooperative => o.partitions.keys().cloned().collect(),
                    _ => unsubscribed.clone(),
                };
                let handler_done = partitions.is_empty();
                self.events.push_back((
                    now,
                    GroupEvent::RevokeRequested { generation: generation.id, partitions, reason: reason.clone() },
                ));
                let text = reason.to_string();
                let revoking = (handler_done, unsubscribed);
                self.open_revoke_window((generation, leader, protocol), reason, revoking, &text, now);
            }
            State::AwaitingSync { .. } => self.rejoin(reason, now),
            _ => {}
        }
    }

    /// A rebalance starts for the member of `stable`'s generation: commits still go out with it
    /// until the revoke handler is done (or the revoke timeout passes), then JoinGroup.
    /// `unsubscribed`: cooperative partitions given up when the window closes.
    pub(super) fn open_revoke_window(
        &mut self,
        (generation, leader, protocol): (Generation, bool, String),
        reason: RejoinReason,
        (handler_done, unsubscribed): (bool, Vec<TopicPartition>),
        why: &str,
        now: Instant,
    ) {
        self.counters.rebalances += 1;
        self.rebalance_started = Some(now);
        let deadline = now + self.config.revoke_timeout;
        let state = State::Revoking { generation, leader, protocol, reason, deadline, handler_done, unsubscribed };
        self.set_state(state, why, now);
    }

    pub(super) fn leave_revoking(&mut self, now: Instant) {
        if self.is_consumer_protocol() {
            return self.close_consumer_revoke_window(now);
        }
        if let State::Revoking { reason, unsubscribed, .. } = self.state.clone() {
            if let Some(ownership) = &mut self.ownership {
                // From the second-round JoinGroup on, the new owner may take them over.
                ownership.released.clear();
                // Revoked: the JoinGroup does not claim them, so they can move at once, and
                // commits of them are fenced from now on.
                for tp in &unsubscribed {
                    ownership.partitions.remove(tp);
                }
            }
            self.set_state(State::AwaitingJoin { reason, join: None }, "revoke window done", now);
        }
    }

    /// Back to AwaitingJoin keeping member id and ownership (used for continuity).
    pub(super) fn rejoin(&mut self, reason: RejoinReason, now: Instant) {
        if matches!(self.state, State::Leaving { .. } | State::Left { .. } | State::Failed(_)) {
            return;
        }
        if self.rebalance_started.is_none() {
            self.counters.rebalances += 1;
            self.rebalance_started = Some(now);
        }
        let text = reason.to_string();
        self.set_state(State::AwaitingJoin { reason, join: None }, &text, now);
    }

    /// The group moved on without us: partitions are lost, the generation forgotten, and (for
    /// UNKNOWN_MEMBER_ID) the member id too.
    pub(super) fn reset(&mut self, reason: RejoinReason, now: Instant) {
        self.lose_ownership(&reason, now);
        self.forget_acknowledged();
        // A KIP-848 member keeps the id it chose (KIP-1082) and rejoins with epoch 0.
        if reason == RejoinReason::UnknownMember && !self.is_consumer_protocol() {
            self.member_id = MemberId::unknown();
        }
        self.rejoin(reason, now);
    }

    /// Drops the ownership, reporting its partitions lost.
    pub(super) fn lose_ownership(&mut self, reason: &RejoinReason, now: Instant) {
        if let Some(ownership) = self.ownership.take() {
            if !ownership.partitions.is_empty() {
                // The commit floors stay: should the member get a partition back with the same
                // `owned_since` (a coordinator that refused the generation it then hands out
                // again), a lease from before the loss can still not move its offset back.
                self.events.push_back((
                    now,
                    GroupEvent::Lost {
                        partitions: ownership.partitions.into_keys().collect(),
                        reason: reason.to_string(),
                    },
                ));
            }
        }
    }

    pub(super) fn finish_leaving(&mut self, now: Instant) {
        let reason = match &self.state {
            State::Leaving { reason, .. } | State::Left { reason } => reason.clone(),
            _ => return,
        };
        self.ownership = None;
        self.commits.clear_streaks();
        let keeps_id = self.config.group_instance_id.is_some() || self.is_consumer_protocol();
        self.member_id = if keeps_id { self.member_id.clone() } else { MemberId::unknown() };
        if !matches!(self.state, State::Left { .. }) {
            self.set_state(State::Left { reason: reason.clone() }, "left the group", now);
        }
        self.events.push_back((now, GroupEvent::Left { reason }));
    }
}
