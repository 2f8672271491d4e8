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

/// A transactional record of `producer_id`.
pub(crate) fn txn(offset: i64, producer_id: i64, value: &str) -> Record {
    Record { transactional: true, producer_id, producer_epoch: 0, ..record(offset, value) }
}

/// A transaction marker: key (version 0, type 0 abort / 1 commit), value (version, epoch).
pub(crate) fn marker_record(offset: i64, producer_id: i64, commit: bool) -> Record {
    Record {
        control: true,
        key: Some(Bytes::from(vec![0, 0, 0, u8::from(commit)])),
        value: Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
        ..txn(offset, producer_id, "")
    }
}

/// A transaction marker alone in its (control) batch.
pub(crate) fn marker(offset: i64, producer_id: i64, commit: bool) -> Bytes {
    batch(&[marker_record(offset, producer_id, commit)], Compression::None)
}

pub(crate) fn concat(parts: &[Bytes]) -> Bytes {
    let mut buf = BytesMut::new();
    for p in parts {
        buf.extend_from_slice(p);
    }
    buf.freeze()
}

/// `batch` with its byte `at` flipped and its CRC left as it was.
pub(crate) fn tampered(batch: Bytes, at: usize) -> Bytes {
    let mut bytes = batch.to_vec();
    bytes[at] ^= 0xff;
    Bytes::from(bytes)
}
