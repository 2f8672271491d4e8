//! Transactional offsets (§6.6, §6.7) and the least of a transaction coordinator they need.
//!
//! TxnOffsetCommit is the group coordinator's side (GC 896-978): its offsets stay pending for
//! their producer until the transaction ends, so OffsetFetch with RequireStable answers
//! UNSTABLE_OFFSET_COMMIT for them and without it the previous offset (T51). The transaction
//! side is minimal: InitProducerId, AddOffsetsToTxn and EndTxn with producer id and epoch
//! checks; no timeouts, and the markers of EndTxn are applied at once (Kafka writes them
//! asynchronously, so a client polls until the offset is visible).

use std::time::Instant;

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, EndTxnRequest, EndTxnResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProducerId, ResponseKind, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};

use super::errors::*;
use super::group::Group;
use super::offsets::{commit_answer_topics, commit_topics, validate_offset_commit, StoredOffset};
use super::{GroupApi, ReplyTo, ScriptedCoordinator};

/// One transactional id's state.
#[derive(Debug)]
pub(crate) struct Transaction {
    producer_id: i64,
    epoch: i16,
    /// AddOffsetsToTxn was called in the ongoing transaction (the only way this model starts
    /// one): its end writes markers to `__consumer_offsets`, one partition here, so to every
    /// group.
    ongoing: bool,
}

impl ScriptedCoordinator {
    /// InitProducerId: a new producer id for a new transactional id (or none), else the epoch
    /// is bumped and an ongoing transaction aborted.
    pub(crate) fn handle_init_producer_id(&mut self, now: Instant, reply: ReplyTo, r: InitProducerIdRequest) {
        let (producer_id, epoch) = match r.transactional_id.as_ref().map(|id| id.to_string()) {
            Some(id) if self.transactions.contains_key(&id) => {
                self.end_transaction(&id, false);
                let txn = self.transactions.get_mut(&id).expect("checked above");
                txn.epoch = txn.epoch.wrapping_add(1);
                (txn.producer_id, txn.epoch)
            }
            id => {
                let producer_id = self.next_producer_id;
                self.next_producer_id += 1;
                if let Some(id) = id {
                    let txn = Transaction { producer_id, epoch: 0, ongoing: false };
                    self.transactions.insert(id, txn);
                }
                (producer_id, 0)
            }
        };
        let response =
            InitProducerIdResponse::default().with_producer_id(ProducerId(producer_id)).with_producer_epoch(epoch);
        self.emit(now, reply, ResponseKind::InitProducerId(response), None);
    }

    /// AddOffsetsToTxn: the group's offsets partition joins the transaction.
    pub(crate) fn handle_add_offsets_to_txn(&mut self, now: Instant, reply: ReplyTo, r: AddOffsetsToTxnRequest) {
        let id = r.transactional_id.to_string();
        let code = match self.check_producer(&id, r.producer_id.0, r.producer_epoch) {
            Some(error) => error,
            None => {
                self.transactions.get_mut(&id).expect("checked producer").ongoing = true;
                NONE
            }
        };
        let response = AddOffsetsToTxnResponse::default().with_error_code(code);
        self.emit(now, reply, ResponseKind::AddOffsetsToTxn(response), None);
    }

    /// EndTxn: commits or aborts the pending transactional offsets of the producer.
    pub(crate) fn handle_end_txn(&mut self, now: Instant, reply: ReplyTo, r: EndTxnRequest) {
        let id = r.transactional_id.to_string();
        let code = match self.check_producer(&id, r.producer_id.0, r.producer_epoch) {
            Some(error) => error,
            None if !self.transactions[&id].ongoing => INVALID_TXN_STATE,
            None => {
                self.end_transaction(&id, r.committed);
                NONE
            }
        };
        let response = EndTxnResponse::default().with_error_code(code);
        self.emit(now, reply, ResponseKind::EndTxn(response), None);
    }

    /// TxnOffsetCommit (KA topic checks, then GC 896-978): a missing group is created, a
    /// member-less generation -1 commit is accepted in any state, and the offsets stay pending
    /// until the producer's transaction ends.
    pub(crate) fn handle_txn_offset_commit(&mut self, now: Instant, reply: ReplyTo, r: TxnOffsetCommitRequest) {
        let group_id = r.group_id.to_string();
        let topics = commit_topics!(r.topics);
        let (mut codes, valid) = self.check_topics(&topics);
        if !valid.is_empty() {
            let outcome = match self.validate_group_status(&group_id, GroupApi::OffsetCommit) {
                Some(error) => vec![error; valid.len()],
                None => {
                    self.groups.entry(group_id.clone()).or_insert_with(|| Group::new(group_id.clone()));
                    let instance_id = r.group_instance_id.as_ref().map(|s| s.to_string());
                    let validation = self.groups.get(&group_id).and_then(|g| {
                        validate_offset_commit(g, r.generation_id, &r.member_id, instance_id.as_deref(), true)
                    });
                    match validation {
                        Some(error) => vec![error; valid.len()],
                        None => {
                            let (outcome, entries) = self.sized_entries(&topics, &valid);
                            // Appended now; visible once the transaction commits.
                            let appended = self.append_position();
                            let pending = self.txn_offsets.entry((group_id.clone(), r.producer_id.0)).or_default();
                            pending.extend(
                                entries.into_iter().map(|(key, entry)| (key, StoredOffset { entry, appended })),
                            );
                            outcome
                        }
                    }
                }
            };
            for ((t, p), code) in valid.iter().zip(outcome) {
                codes[*t][*p] = code;
            }
        }
        let response = TxnOffsetCommitResponse::default().with_topics(commit_answer_topics!(
            topics,
            codes,
            TxnOffsetCommitResponseTopic,
            TxnOffsetCommitResponsePartition
        ));
        self.emit(now, reply, ResponseKind::TxnOffsetCommit(response), None);
    }

    /// Is a transactional offset for this partition waiting for its transaction (GM 746-751)?
    pub(crate) fn has_pending_txn_offset(&self, group_id: &str, key: &(String, i32)) -> bool {
        self.txn_offsets.iter().any(|((group, _), offsets)| group == group_id && offsets.contains_key(key))
    }

    /// The transaction coordinator's checks: unknown id or producer id, then a stale epoch.
    fn check_producer(&self, id: &str, producer_id: i64, epoch: i16) -> Option<i16> {
        match self.transactions.get(id) {
            Some(txn) if txn.producer_id != producer_id => Some(INVALID_PRODUCER_ID_MAPPING),
            Some(txn) if txn.epoch != epoch => Some(PRODUCER_FENCED),
            Some(_) => None,
            None => Some(INVALID_PRODUCER_ID_MAPPING),
        }
    }

    /// Ends the ongoing transaction of `id`: the markers make its pending offsets visible
    /// (commit) or drop them (abort) in every group (`handleTxnCompletion`).
    fn end_transaction(&mut self, id: &str, commit: bool) {
        let Some(txn) = self.transactions.get_mut(id).filter(|t| t.ongoing) else { return };
        txn.ongoing = false;
        let producer_id = txn.producer_id;
        let keys: Vec<(String, i64)> = self.txn_offsets.keys().filter(|(_, p)| *p == producer_id).cloned().collect();
        for key in keys {
            let Some(offsets) = self.txn_offsets.remove(&key) else { continue };
            if commit {
                self.store_offsets(key.0, offsets);
            }
        }
    }
}
