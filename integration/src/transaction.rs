//! A transactional producer's offsets for a group, spoken on the wire (kgroup's producer has no
//! transactions): enough to leave offsets pending for a group (a consumer's OffsetFetch with
//! RequireStable then gets UNSTABLE_OFFSET_COMMIT) and to commit them. Its calls are not
//! cancel-safe: one dropped part-way can leave a transaction open, which Kafka aborts after its
//! 60 s timeout.

use std::fmt;
use std::time::Duration;

use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, EndTxnRequest, FindCoordinatorRequest, GroupId, InitProducerIdRequest, ProducerId,
    TopicName, TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;
use kgroup::driver::connection::Connection;

use crate::unique_name;

/// Bound on each request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Kafka aborts the transaction when it stays open longer.
const TRANSACTION_TIMEOUT_MS: i32 = 60_000;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// Why a step of the transaction failed.
#[derive(Debug)]
pub enum TransactionError {
    /// The broker answered `request` with this error code.
    Refused { request: &'static str, code: i16 },
    /// `request` got no usable answer.
    Unanswered { request: &'static str, error: kgroup::Error },
}

impl fmt::Display for TransactionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransactionError::Refused { request, code } => write!(f, "{request}: error code {code}"),
            TransactionError::Unanswered { request, error } => write!(f, "{request}: {error}"),
        }
    }
}

impl From<TransactionError> for String {
    fn from(error: TransactionError) -> String {
        error.to_string()
    }
}

/// An open transaction of a new transactional id, with offsets for one group.
pub struct OffsetTransaction {
    id: TransactionalId,
    producer_id: ProducerId,
    epoch: i16,
}

impl OffsetTransaction {
    /// FindCoordinator for a new transactional id, InitProducerId, then AddOffsetsToTxn for
    /// `group`, all on `conn` (the transaction coordinator, such as a single broker). On a fresh
    /// Kafka the first transactional FindCoordinator creates `__transaction_state`, and until
    /// its partition is loaded the coordinator answers COORDINATOR_NOT_AVAILABLE,
    /// NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS: retried, as every producer does, for up
    /// to 20 s.
    pub async fn begin(conn: &Connection, group: &str) -> Result<OffsetTransaction, TransactionError> {
        let id = TransactionalId(s(&unique_name("txn")));
        let find = FindCoordinatorRequest::default().with_key_type(1).with_coordinator_keys(vec![id.0.clone()]);
        let init = InitProducerIdRequest::default()
            .with_transactional_id(Some(id.clone()))
            .with_transaction_timeout_ms(TRANSACTION_TIMEOUT_MS);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let initialized = loop {
            let found = send("FindCoordinator", conn.send_at(&find, 4, REQUEST_TIMEOUT)).await?;
            let mut code = found.coordinators.first().map_or(-1, |k| k.error_code);
            if code == 0 {
                let answer = send("InitProducerId", conn.send_at(&init, 3, REQUEST_TIMEOUT)).await?;
                code = answer.error_code;
                if code == 0 {
                    break answer;
                }
            }
            if ![14, 15, 16].contains(&code) || tokio::time::Instant::now() > deadline {
                return Err(TransactionError::Refused { request: "InitProducerId", code });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let transaction =
            OffsetTransaction { id, producer_id: initialized.producer_id, epoch: initialized.producer_epoch };
        let add = AddOffsetsToTxnRequest::default()
            .with_transactional_id(transaction.id.clone())
            .with_producer_id(transaction.producer_id)
            .with_producer_epoch(transaction.epoch)
            .with_group_id(GroupId(s(group)));
        match send("AddOffsetsToTxn", conn.send_at(&add, 3, REQUEST_TIMEOUT)).await?.error_code {
            0 => Ok(transaction),
            code => Err(TransactionError::Refused { request: "AddOffsetsToTxn", code }),
        }
    }

    /// TxnOffsetCommit of `offset` (metadata "t") for partition 0 of `topic`, as a non-member
    /// (generation -1): the partition's error codes. The offset stays pending until the
    /// transaction ends.
    pub async fn commit_offset(
        &self,
        conn: &Connection,
        group: &str,
        topic: &str,
        offset: i64,
    ) -> Result<Vec<i16>, TransactionError> {
        let request = TxnOffsetCommitRequest::default()
            .with_transactional_id(self.id.clone())
            .with_group_id(GroupId(s(group)))
            .with_producer_id(self.producer_id)
            .with_producer_epoch(self.epoch)
            .with_generation_id(-1)
            .with_topics(vec![TxnOffsetCommitRequestTopic::default().with_name(TopicName(s(topic))).with_partitions(
                vec![TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)
                    .with_committed_metadata(Some(s("t")))],
            )]);
        let answer = send("TxnOffsetCommit", conn.send_at(&request, 3, REQUEST_TIMEOUT)).await?;
        Ok(answer.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect())
    }

    /// EndTxn committing the transaction: its error code. The markers that make the offsets
    /// stable are written after it returns.
    pub async fn commit(&self, conn: &Connection) -> Result<i16, TransactionError> {
        let request = EndTxnRequest::default()
            .with_transactional_id(self.id.clone())
            .with_producer_id(self.producer_id)
            .with_producer_epoch(self.epoch)
            .with_committed(true);
        Ok(send("EndTxn", conn.send_at(&request, 3, REQUEST_TIMEOUT)).await?.error_code)
    }
}

async fn send<T>(
    request: &'static str,
    answer: impl std::future::Future<Output = kgroup::Result<T>>,
) -> Result<T, TransactionError> {
    answer.await.map_err(|error| TransactionError::Unanswered { request, error })
}
