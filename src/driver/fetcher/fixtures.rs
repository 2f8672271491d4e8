//! Record batches for the fetcher's tests.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

/// A plain (non-transactional) record with key `k{offset}`.
pub(crate) fn record(offset: i64, value: &str) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: offset as i32,
        timestamp: 1_000 + offset,
        key: Some(Bytes::from(format!("k{offset}"))),
        value: Some(Bytes::from(value.to_owned())),
        headers: IndexMap::new(),
    }
}

/// `records` encoded as one record batch v2.
pub(crate) fn batch(records: &[Record], compression: Compression) -> Bytes {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, records, &RecordEncodeOptions { version: 2, compression })
        .expect("test records encode");
    buf.freeze()
}

/// Offsets `from..to` with values `v{offset}`, as one batch.
pub(crate) fn batch_of(from: i64, to: i64, compression: Compression) -> Bytes {
    batch(&(from..to).map(|o| record(o, &format!("v{o}"))).collect::<Vec<_>>(), compression)
}
