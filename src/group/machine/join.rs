//! Joining a generation: JoinGroup (with KIP-394's two steps), leading the assignment with
//! fresh partition counts, SyncGroup, and installing the assignment.

use super::*;

impl GroupMachine {
    pub(super) fn send_join(&mut self, now: Instant) {
        let Some(version) = self.version(ApiKey::JoinGroup, now) else {
            return;
        };
        let State::AwaitingJoin { reason, .. } = self.state.clone() else {
            return;
        };
        // Eager protocols revoked everything before joining; cooperative ones (KIP-429) tell the
        // leader what the member still owns, so its assignor can keep it in place.
        let owned_partitions = self.held().map(|o| o.partitions.keys().cloned().collect()).unwrap_or_default();
        self.joined_with = self.subscription.topics().to_vec();
        let subscription = Subscription {
            topics: self.joined_with.clone(),
            owned_partitions,
            generation: self.ownership.as_ref().map(|o| o.generation.id).unwrap_or(GenerationId::NONE),
            rack: self.config.rack.clone(),
            user_data: None,
        }
        .encode();
        let request =
            build::join_group(&self.config, self.member_id.as_str(), &subscription, &reason.to_string(), version);
        self.counters.joins_sent += 1;
        self.join_attempts += 1;
        let id = self.send(GroupRequest::JoinGroup(request), version, self.config.join_timeout(), InFlight::Join);
        if let State::AwaitingJoin { join, .. } = &mut self.state {
            *join = Some(id);
        }
    }

    pub(super) fn on_join(&mut self, now: Instant, id: RequestId, r: JoinGroupResponse) {
        if !matches!(self.state, State::AwaitingJoin { join: Some(j), .. } if j == id) {
            tracing::debug!("JoinGroup answer for a join we no longer wait for");
            return;
        }
        let reason_of = |state: &State| match state {
            State::AwaitingJoin { reason, .. } => reason.clone(),
            _ => RejoinReason::Initial,
        };
        let code = r.error_code;
        match reactions::reaction(ApiKey::JoinGroup, code) {
            Reaction::Apply => self.joined(now, r, false),
            Reaction::AdoptMemberId => {
                // KIP-394: keep the id and send the second join at once; never repeat an
                // empty-id join (it would leave an orphan pending member, T14).
                self.member_id = MemberId::new(r.member_id.as_str());
                self.set_state(
                    State::AwaitingJoin { reason: RejoinReason::MemberIdRequired, join: None },
                    "member id assigned",
                    now,
                );
            }
            Reaction::ResetMemberId => {
                // Partitions still held through a cooperative rebalance belong to no member
                // id any more.
                if self.held().is_some() {
                    self.lose_ownership(&RejoinReason::UnknownMember, now);
                }
                self.member_id = MemberId::unknown();
                self.set_state(
                    State::AwaitingJoin { reason: RejoinReason::UnknownMember, join: None },
                    "member id unknown",
                    now,
                );
            }
            Reaction::Rejoin => {
                let reason = reason_of(&self.state);
                self.set_state(State::AwaitingJoin { reason, join: None }, "JoinGroup asked to rejoin", now);
            }
            Reaction::Backoff => {
                self.timers.set(TimerKind::Retry, now + self.config.backoff(self.join_attempts));
                let why = match code {
                    COORDINATOR_LOAD_IN_PROGRESS => "coordinator loading".to_owned(),
                    _ => format!("JoinGroup {}", KafkaCode(code)),
                };
                let reason = RejoinReason::Retry(why.clone());
                self.set_state(State::AwaitingJoin { reason, join: None }, &why, now);
            }
            Reaction::Rediscover => {
                self.coordinator_lost(&format!("JoinGroup: {}", KafkaCode(code)), now);
                let reason = reason_of(&self.state);
                self.set_state(State::AwaitingJoin { reason, join: None }, "coordinator moved", now);
            }
            // No row gives JoinGroup the last three (a test drives every row): stop rather
            // than guess.
            Reaction::Fatal | Reaction::ResetGeneration | Reaction::Report | Reaction::Ignore => {
                self.fail(self.rejected("JoinGroup", code), now)
            }
        }
    }

    /// `counts_asked`: the partition counts this join's leader lacked were asked for already.
    fn joined(&mut self, now: Instant, r: JoinGroupResponse, counts_asked: bool) {
        if let Some(protocol_type) = &r.protocol_type {
            if protocol_type.as_str() != PROTOCOL_TYPE {
                return self.fail(
                    GroupError::InconsistentProtocol { expected: PROTOCOL_TYPE.into(), got: protocol_type.to_string() },
                    now,
                );
            }
        }
        let protocol = r.protocol_name.as_deref().unwrap_or_default().to_owned();
        let Some(assignor) = self.config.assignors.iter().find(|a| a.name() == protocol).cloned() else {
            let expected = self.config.assignors.iter().map(|a| a.name().to_owned()).collect::<Vec<_>>().join(",");
            return self.fail(GroupError::InconsistentProtocol { expected, got: protocol }, now);
        };
        let generation =
            Generation { id: GenerationId(r.generation_id), member_id: MemberId::new(r.member_id.as_str()) };
        self.member_id = generation.member_id.clone();
        self.join_attempts = 0;
        let leader = r.leader.as_str() == r.member_id.as_str();
        let assignments = if leader && !r.skip_assignment {
            let members: Vec<GroupMember> = r
                .members
                .iter()
                .map(|m| GroupMember {
                    member_id: m.member_id.to_string(),
                    group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
                    subscription: Subscription::decode(&m.metadata).unwrap_or_else(|e| {
                        tracing::warn!(member = %m.member_id, error = %e, "undecodable subscription; assigning nothing");
                        Subscription::default()
                    }),
                })
                .collect();
            let topics: BTreeSet<String> = members.iter().flat_map(|m| m.subscription.topics.iter().cloned()).collect();
            let unknown = self.partition_counts.unknown(&topics);
            if let (false, false, State::AwaitingJoin { join: Some(join), .. }) =
                (unknown.is_empty(), counts_asked, &self.state)
            {
                tracing::info!(topics = ?unknown, "leading the assignment: asking for partition counts first");
                self.leader_join = Some((*join, r));
                // The broker drops a member that neither syncs nor heartbeats within its session
                // timeout of the join: half of it is left for the SyncGroup.
                let timeout = self.config.request_timeout.min(self.config.session_timeout / 2);
                self.request_metadata(unknown, timeout);
                return;
            }
            tracing::info!(members = members.len(), protocol = %protocol, "leading the assignment");
            self.partition_counts.lead(assignor.as_ref(), &members, &topics)
        } else {
            self.partition_counts.follow();
            Vec::new()
        };
        let Some(version) = self.version(ApiKey::SyncGroup, now) else {
            // The coordinator was lost while this join was answered: join again (same member
            // id) once it is found, rather than wait for a join that is no longer in flight.
            if let State::AwaitingJoin { join, .. } = &mut self.state {
                *join = None;
            }
            return;
        };
        let request = build::sync_group(&self.config, &generation, &protocol, assignments, version);
        self.counters.syncs_sent += 1;
        let sync = self.send(
            GroupRequest::SyncGroup(request),
            version,
            self.config.join_timeout(),
            InFlight::Sync { sent: generation.clone() },
        );
        let reason = format!("joined generation {} as {}", generation.id, if leader { "leader" } else { "follower" });
        self.set_state(State::AwaitingSync { generation, leader, protocol, sync }, &reason, now);
    }

    pub(super) fn on_sync(&mut self, now: Instant, id: RequestId, sent: Generation, r: SyncGroupResponse) {
        let State::AwaitingSync { generation, leader, protocol, sync } = self.state.clone() else {
            self.stale(now, "SyncGroup", sent);
            return;
        };
        if generation != sent || sync != id {
            self.stale(now, "SyncGroup", sent);
            return;
        }
        let code = r.error_code;
        match reactions::reaction(ApiKey::SyncGroup, code) {
            Reaction::Apply => {}
            Reaction::Rejoin => return self.rejoin(RejoinReason::RebalanceInProgress, now),
            Reaction::ResetGeneration => return self.reset(RejoinReason::IllegalGeneration, now),
            Reaction::ResetMemberId => return self.reset(RejoinReason::UnknownMember, now),
            Reaction::Rediscover => {
                self.coordinator_lost("SyncGroup: coordinator moved", now);
                return self.rejoin(RejoinReason::Retry("coordinator moved during SyncGroup".into()), now);
            }
            Reaction::Backoff => {
                self.timers.set(TimerKind::Retry, now + self.config.backoff(1));
                let name = KafkaCode(code).name().map_or_else(|| KafkaCode(code).to_string(), Into::into);
                let why = format!("SyncGroup {name}");
                return self.rejoin(RejoinReason::Retry(why), now);
            }
            // No row gives SyncGroup the last three (a test drives every row): stop rather
            // than guess.
            Reaction::Fatal | Reaction::AdoptMemberId | Reaction::Report | Reaction::Ignore => {
                return self.fail(self.rejected("SyncGroup", code), now)
            }
        }
        for (field, got) in [(PROTOCOL_TYPE, &r.protocol_type), (protocol.as_str(), &r.protocol_name)] {
            if let Some(got) = got {
                if got.as_str() != field {
                    return self
                        .fail(GroupError::InconsistentProtocol { expected: field.into(), got: got.to_string() }, now);
                }
            }
        }
        let partitions = match decode_assignment(&r.assignment) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable assignment; rejoining");
                self.timers.set(TimerKind::Retry, now + self.config.backoff(1));
                return self.rejoin(RejoinReason::Retry("undecodable assignment".into()), now);
            }
        };
        self.install_assignment(now, generation, leader, protocol, partitions);
    }

    fn install_assignment(
        &mut self,
        now: Instant,
        generation: Generation,
        leader: bool,
        protocol: String,
        partitions: Vec<TopicPartition>,
    ) {
        let cooperative = self.is_cooperative(Some(&protocol));
        let (ownership, change) =
            Ownership::assign(self.ownership.take(), generation.clone(), &partitions, cooperative);
        // A streak that broke drops its commit floor too; one a cooperative assignment released
        // keeps it through the revoke window, where its leases may still commit.
        let released = |tp: &&TopicPartition| ownership.released.contains_key(*tp);
        self.commits.end_streaks(change.revoked.iter().filter(|tp| !released(tp)));
        let continuing: BTreeMap<TopicPartition, GenerationId> =
            ownership.partitions.iter().chain(&ownership.released).map(|(tp, since)| (tp.clone(), *since)).collect();
        self.commits.keep_streaks(&continuing);
        let second_round = cooperative && !change.given_up.is_empty();
        let owned = ownership.owned_partitions();
        let assigned = format!("assigned {} partitions in generation {}", owned.len(), generation.id);
        self.ownership = Some(ownership);
        self.finish_rebalance(now);
        if second_round {
            // Revoke handlers run before the new assignment is announced (Java's order).
            self.events.push_back((
                now,
                GroupEvent::RevokeRequested {
                    generation: generation.id,
                    partitions: change.given_up,
                    reason: RejoinReason::PartitionsRevoked,
                },
            ));
        }
        self.events.push_back((
            now,
            GroupEvent::Assigned {
                generation: generation.clone(),
                partitions: owned,
                added: change.added,
                revoked: change.revoked,
            },
        ));
        self.timers.set(TimerKind::Session, now + self.config.session_timeout);
        self.timers.set(TimerKind::Heartbeat, now + self.config.heartbeat_interval);
        if second_round {
            // KIP-429's second round: what we gave up can go to its new owner only in a later
            // generation. Until we rejoin, this generation is still ours and the revoked
            // partitions belong to nobody in it, so a revoke window lets the work done on them
            // commit (the batch in progress, the revoke handler's commit) instead of being fenced.
            let reason = RejoinReason::PartitionsRevoked;
            let text = format!("{assigned}; {reason}");
            self.open_revoke_window((generation, leader, protocol), reason, (false, Vec::new()), &text, now);
        } else {
            self.set_state(State::Stable { generation, leader, protocol }, &assigned, now);
            // The subscription changed while this generation's JoinGroup was out.
            self.rejoin_if_subscription_outdated(now);
        }
    }

    /// A rebalance under way ended with an assignment: its duration goes to the counters.
    pub(super) fn finish_rebalance(&mut self, now: Instant) {
        if let Some(started) = self.rebalance_started.take() {
            let ms = now.saturating_duration_since(started).as_millis() as u64;
            self.counters.last_rebalance_ms = Some(ms);
            self.counters.max_rebalance_ms = self.counters.max_rebalance_ms.max(ms);
            self.counters.total_rebalance_ms += ms;
            self.counters.rebalances_completed += 1;
        }
    }

    /// Assigns with the JoinGroup answer held for partition counts, unless the member has
    /// moved on since (a rejoin, leaving).
    pub(super) fn resume_leader_join(&mut self, now: Instant) {
        if let Some((join, r)) = self.leader_join.take() {
            if matches!(self.state, State::AwaitingJoin { join: Some(j), .. } if j == join) {
                self.joined(now, r, true);
            }
        }
    }

    /// A member of a generation refreshes, every `metadata.max.age.ms`, the partition counts it
    /// assigns or would assign as leader: of every member's subscription when it led the last
    /// assignment, else of its own. A pattern subscription lists every topic instead (Java
    /// fetches metadata for all topics then), first before its first join, and
    /// again whenever the pattern changes.
    pub(super) fn drive_metadata_refresh(&mut self, now: Instant) {
        if !self.metadata_refresh_armed() {
            return;
        }
        let due = match self.timers.get(TimerKind::MetadataRefresh) {
            // A listing the member waits for goes at once (unless a failed one backs off).
            None if self.subscription.awaits_listing() => true,
            None => {
                self.timers.set(TimerKind::MetadataRefresh, now + self.config.metadata_max_age);
                false
            }
            Some(at) => at <= now,
        };
        if !due {
            return;
        }
        if self.subscription.pattern().is_some() {
            let id = self.next_request_id();
            self.partition_counts.ask_all(id);
            let timeout = self.config.request_timeout;
            self.outbox.push_back(OutgoingRequest { id, version: 0, timeout, body: GroupRequest::ListTopics });
        } else {
            let topics = self.partition_counts.refresh_topics(self.subscription.topics());
            self.request_metadata(topics, self.config.request_timeout);
        }
    }

    /// Whether the metadata refresh may run: nothing asked yet, and the member is in a
    /// generation, or its pattern waits for a listing while it is still a member.
    pub(super) fn metadata_refresh_armed(&self) -> bool {
        let member = !matches!(self.state, State::Leaving { .. } | State::Left { .. } | State::Failed(_));
        // Under KIP-848 the broker assigns and matches patterns: nothing to count or list.
        !self.is_consumer_protocol()
            && !self.partition_counts.is_asking()
            && (matches!(self.state, State::Stable { .. }) || (self.subscription.awaits_listing() && member))
    }

    fn request_metadata(&mut self, topics: Vec<String>, timeout: Duration) {
        let id = self.next_request_id();
        self.partition_counts.ask(id, topics.clone());
        self.outbox.push_back(OutgoingRequest { id, version: 0, timeout, body: GroupRequest::Metadata { topics } });
    }
}
