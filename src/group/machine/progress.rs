//! What runs after every input: the coordinator lookup, JoinGroup, LeaveGroup, heartbeats and
//! the queues' requests, each sent through the coordinator connection's one gate, and the
//! answers of heartbeats, commits and lookups.

use super::*;

/// The newest OffsetCommit a classic member sends; v9 carries KIP-848's member epoch.
const CLASSIC_OFFSET_COMMIT_MAX: i16 = 8;

impl GroupMachine {
    /// Runs everything that can go now. Called after every input.
    pub(super) fn progress(&mut self, now: Instant) {
        // A backoff that ran out is no timer any more (poll_timeout must not stay in the past).
        if !self.timers.is_running(TimerKind::Retry, now) {
            self.timers.clear(TimerKind::Retry);
        }
        self.commits.end_expired_backoff(now);
        self.lookups.end_expired_backoff(now);
        if let State::Failed(error) = &self.state {
            // Commands given after the failure get its answer at once, and leave no timer.
            let error = error.clone();
            self.fail_queued(&error, now);
            return;
        }
        let leave_unsent = matches!(self.state, State::Leaving { request: None, .. });
        if matches!(self.coordinator, CoordinatorState::Unknown)
            && (self.needs_coordinator() || leave_unsent || !self.commits.is_empty() || !self.lookups.is_empty())
            && !self.timers.is_running(TimerKind::Retry, now)
        {
            let id = self.send(
                GroupRequest::FindCoordinator { group_id: self.config.group_id.clone() },
                0,
                self.config.request_timeout,
                InFlight::FindCoordinator,
            );
            self.counters.coordinator_lookups += 1;
            self.coordinator = CoordinatorState::Finding(id);
        }
        if let State::Revoking { handler_done: true, .. } = self.state {
            // Report answered commits (and send queued ones) first, so the join is judged on
            // what is really still outstanding.
            self.drive_commits(now);
            // Commits the broker told to wait for the next generation cannot hold the join.
            if !self.commits.holds_join() {
                self.leave_revoking(now);
            }
        }
        if let State::AwaitingJoin { join: None, .. } = self.state {
            // A pattern joins once it knows what it matches (Java's fresh metadata before a
            // join); under KIP-848 the broker matches it.
            if self.coordinator_ready()
                && !self.timers.is_running(TimerKind::Retry, now)
                && self.commits.in_flight().is_none()
            {
                if self.is_consumer_protocol() {
                    if !self.consumer_heartbeat_in_flight() {
                        self.send_consumer_join(now);
                    }
                } else if !self.subscription.awaits_listing() {
                    self.send_join(now);
                }
            }
        }
        if let State::Leaving { request: None, .. } = self.state {
            match self.coordinator {
                // LeaveGroup is best effort (Java sends it once): without a coordinator to tell,
                // the session timeout removes the member.
                CoordinatorState::Unknown => self.finish_leaving(now),
                CoordinatorState::Finding(_) => {}
                CoordinatorState::Known { .. } => {
                    if self.coordinator_ready() && self.commits.in_flight().is_none() {
                        if self.is_consumer_protocol() {
                            self.send_consumer_leave(now);
                        } else {
                            self.send_leave(now);
                        }
                    }
                }
            }
        }
        self.drive_topic_id_lookup(now);
        if self.is_consumer_protocol() {
            self.drive_consumer_heartbeat(now);
        } else {
            self.drive_heartbeat(now);
        }
        self.drive_metadata_refresh(now);
        self.drive_commits(now);
        self.drive_lookups(now);
    }

    pub(super) fn next_request_id(&mut self) -> RequestId {
        self.next_id += 1;
        RequestId(self.next_id)
    }

    pub(super) fn send(&mut self, body: GroupRequest, version: i16, timeout: Duration, kind: InFlight) -> RequestId {
        debug_assert!(
            matches!(kind, InFlight::FindCoordinator) || self.coordinator_ready(),
            "{} behind the member's own JoinGroup or SyncGroup",
            body.api_name()
        );
        let id = self.next_request_id();
        tracing::trace!(request = id.0, api = body.api_name(), version, "send");
        self.in_flight.insert(id, kind);
        self.outbox.push_back(OutgoingRequest { id, version, timeout, body });
        id
    }

    pub(super) fn version(&mut self, api: ApiKey, now: Instant) -> Option<i16> {
        let versions = self.versions()?;
        match versions.get(api) {
            Ok(v) => Some(v),
            Err(_) => {
                let name = match api {
                    ApiKey::JoinGroup => "JoinGroup",
                    ApiKey::SyncGroup => "SyncGroup",
                    ApiKey::Heartbeat => "Heartbeat",
                    ApiKey::LeaveGroup => "LeaveGroup",
                    ApiKey::OffsetCommit => "OffsetCommit",
                    ApiKey::ConsumerGroupHeartbeat => "ConsumerGroupHeartbeat (KIP-848: Kafka 4.0 or later)",
                    _ => "OffsetFetch",
                };
                self.fail(GroupError::UnsupportedApi { api: name }, now);
                None
            }
        }
    }

    fn drive_heartbeat(&mut self, now: Instant) {
        if !self.is_heartbeating() || self.timers.is_running(TimerKind::Heartbeat, now) {
            return;
        }
        if self.in_flight.values().any(|f| matches!(f, InFlight::Heartbeat { .. })) {
            return;
        }
        let Some(generation) = self.current_generation().cloned() else {
            return;
        };
        if !self.coordinator_ready() {
            return;
        }
        let Some(version) = self.version(ApiKey::Heartbeat, now) else {
            return;
        };
        let request = build::heartbeat(&self.config, &generation, version);
        self.counters.heartbeats_sent += 1;
        self.timers.set(TimerKind::Heartbeat, now + self.config.heartbeat_interval);
        self.send(
            GroupRequest::Heartbeat(request),
            version,
            self.config.request_timeout,
            InFlight::Heartbeat { sent: generation },
        );
    }

    pub(super) fn on_heartbeat(&mut self, now: Instant, sent: Generation, code: i16) {
        if !self.is_current(&sent) {
            // T32: an answer about a generation we already left behind changes nothing.
            self.stale(now, "Heartbeat", sent);
            return;
        }
        let reaction = reactions::reaction(ApiKey::Heartbeat, code);
        if matches!(reaction, Reaction::Apply | Reaction::Rejoin) {
            // Both count as a successful heartbeat: the broker re-armed our session (GC 866-885).
            self.timers.set(TimerKind::Session, now + self.config.session_timeout);
        }
        match reaction {
            Reaction::Apply => {}
            Reaction::Rejoin => {
                if matches!(self.state, State::Stable { .. }) {
                    self.request_rejoin(RejoinReason::RebalanceInProgress, now);
                }
            }
            Reaction::ResetGeneration => self.reset(RejoinReason::IllegalGeneration, now),
            Reaction::ResetMemberId => self.reset(RejoinReason::UnknownMember, now),
            Reaction::Rediscover => self.coordinator_lost("Heartbeat: coordinator moved", now),
            Reaction::Fatal => self.fail(self.rejected("Heartbeat", code), now),
            // No row gives Heartbeat AdoptMemberId, Report or Ignore (a test drives every row):
            // the next heartbeat will tell.
            Reaction::Backoff | Reaction::AdoptMemberId | Reaction::Report | Reaction::Ignore => {
                tracing::warn!(code = %KafkaCode(code), "heartbeat error; retrying");
                self.timers.set(TimerKind::Heartbeat, now + self.config.retry_backoff);
            }
        }
    }

    fn send_leave(&mut self, now: Instant) {
        let Some(version) = self.version(ApiKey::LeaveGroup, now) else {
            return;
        };
        let State::Leaving { reason, .. } = self.state.clone() else {
            return;
        };
        let request = build::leave_group(&self.config, self.member_id.as_str(), &reason.to_string(), version);
        let id = self.send(GroupRequest::LeaveGroup(request), version, self.config.request_timeout, InFlight::Leave);
        if let State::Leaving { request, .. } = &mut self.state {
            *request = Some(id);
        }
    }

    fn drive_commits(&mut self, now: Instant) {
        // Under KIP-848 a heartbeat's answer may move the member epoch: a commit waits for it.
        let ready = self.coordinator_ready() && !self.consumer_heartbeat_in_flight();
        let gate = self.state.commit_gate(self.ownership.as_ref());
        let (completed, send) = self.commits.drive(now, &gate, ready, &self.config, &mut self.counters);
        self.report(completed, now);
        if let Some(commit) = send {
            self.send_commit(now, commit);
        }
    }

    fn send_commit(&mut self, now: Instant, commit: SentCommit) {
        let Some(negotiated) = self.version(ApiKey::OffsetCommit, now) else {
            return;
        };
        let version = match self.is_consumer_protocol() {
            // Before v9 a consumer-protocol member's commit is refused (UNSUPPORTED_VERSION).
            true if negotiated < 9 => {
                let api = "OffsetCommit v9 (member epochs, KIP-848)";
                return self.fail(GroupError::UnsupportedApi { api }, now);
            }
            true => negotiated,
            // A classic member commits as before KIP-848: v9 says nothing more for it (and is
            // unstable in Kafka 3.6).
            false => negotiated.min(CLASSIC_OFFSET_COMMIT_MAX),
        };
        let offsets = commit.leases.iter().map(|(lease, _)| (&lease.partition, lease.next_offset));
        let request = build::offset_commit(&self.config, &commit.generation, offsets, version);
        self.counters.commits_sent += 1;
        tracing::debug!(partitions = commit.leases.len(), generation = commit.generation.id.0, "sending OffsetCommit");
        let id = self.send(
            GroupRequest::OffsetCommit(request),
            version,
            self.config.request_timeout,
            InFlight::Commit(commit),
        );
        self.commits.sent(id);
    }

    pub(super) fn on_commit(&mut self, now: Instant, commit: SentCommit, r: OffsetCommitResponse) {
        let standing = match &self.state {
            State::Manual { .. } => Standing::Unmanaged,
            _ if self.is_current(&commit.generation) => Standing::Current,
            _ => Standing::MovedOn,
        };
        let reactions = self.commits.on_response(now, commit, &r, standing, &self.config, &mut self.counters);
        for reaction in reactions {
            match reaction {
                CommitReaction::Fail(code) => return self.fail(self.rejected("OffsetCommit", code), now),
                CommitReaction::CoordinatorLost => self.coordinator_lost("OffsetCommit: coordinator moved", now),
                CommitReaction::Reset(reason) => self.reset(reason, now),
                CommitReaction::Rejoin(reason) => self.request_rejoin(reason, now),
            }
        }
    }

    /// Reports what the queues finished.
    pub(super) fn report(&mut self, events: impl IntoIterator<Item = GroupEvent>, now: Instant) {
        self.events.extend(events.into_iter().map(|event| (now, event)));
    }

    fn drive_lookups(&mut self, now: Instant) {
        let committing = self.committing_partitions();
        let (ended, ask) = self.lookups.drive(now, self.coordinator_ready(), |tp| committing.contains(tp));
        self.report(ended, now);
        let Some(partitions) = ask else {
            return;
        };
        let Some(version) = self.version(ApiKey::OffsetFetch, now) else {
            return;
        };
        let request = build::offset_fetch(&self.config, &partitions, version);
        let id = self.send(GroupRequest::OffsetFetch(request), version, self.config.request_timeout, InFlight::Fetch);
        self.lookups.sent(id);
    }

    /// The partitions this member has a commit of queued or in flight: a lookup of one waits
    /// for that commit's answer, so the member reads its own writes (a partition it gets back
    /// after losing it would otherwise start behind what it just committed, and read it again).
    fn committing_partitions(&self) -> BTreeSet<TopicPartition> {
        let in_flight = self.in_flight.values().flat_map(|request| match request {
            InFlight::Commit(commit) => commit.leases.iter().map(|(lease, _)| &lease.partition).collect(),
            _ => Vec::new(),
        });
        in_flight.chain(self.commits.queued_partitions()).cloned().collect()
    }

    pub(super) fn on_lookup(&mut self, now: Instant, r: OffsetFetchResponse) {
        for reaction in self.lookups.on_response(now, &r, &self.config, &mut self.counters) {
            match reaction {
                LookupReaction::Report(event) => self.events.push_back((now, event)),
                LookupReaction::CoordinatorLost(reason) => self.coordinator_lost(&reason, now),
                LookupReaction::Fail(code) => self.fail(self.rejected("OffsetFetch", code), now),
            }
        }
    }
}
