//! Turning one partition's `records` bytes into consumer records, without IO.
//!
//! Batches are walked and their records parsed here, in place: keys and values are slices of the
//! fetched (or decompressed) bytes, each record goes straight into its `ConsumerRecord`, and the
//! record count and every record's header count are checked against the bytes before anything is
//! reserved for them. `kafka-protocol` 0.18's `RecordBatchDecoder` did the same work at about half
//! the speed (a `Bytes` split and refcount per field, an intermediate `Record` with an `IndexMap`,
//! a second pass to check the counts it reserves straight from the wire). Compressed records are
//! expanded within a [`DecompressionBudget`] (see `decompress`), and a panic inside a
//! codec becomes an error. Control batches are skipped; under `ReadCommitted` batches of aborted transactions are skipped
//! (Java's `CompletedFetch` algorithm: aborted transactions start at their first offset and end
//! at their producer's abort marker) and nothing at or past the last stable offset is read.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::decompress::{decompress, Inflate};
use super::{ConsumerRecord, IsolationLevel, TimestampType};

/// Base offset and batch length, in front of every batch.
const LOG_OVERHEAD: usize = 12;
/// A v2 batch header up to and including the record count.
const BATCH_HEADER: usize = 61;
/// The smallest record: length, attributes, timestamp delta, offset delta, key length, value
/// length and header count, one byte each.
pub const MIN_RECORD_SIZE: usize = 7;

const ATTR_TRANSACTIONAL: i16 = 1 << 4;
const ATTR_CONTROL: i16 = 1 << 5;
const ATTR_LOG_APPEND_TIME: i16 = 1 << 3;
const ATTR_COMPRESSION: i16 = 0x7;
/// Where the CRC sits in a batch, and where the bytes it covers (attributes on) start.
const CRC_AT: usize = 17;
const CRC_FROM: usize = 21;

/// What decoding needs to know about the fetch that returned the bytes.
#[derive(Debug, Clone)]
pub struct PartitionFetch<'a> {
    /// The topic, shared by the records made.
    pub topic: &'a Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The offset the fetch asked for: records below it are dropped.
    pub fetch_offset: i64,
    /// Whether records of aborted transactions are dropped.
    pub isolation: IsolationLevel,
    /// `(producer id, first offset)` of the aborted transactions the response lists.
    pub aborted_transactions: &'a [(i64, i64)],
    /// The response's last stable offset (`-1` when unknown).
    pub last_stable_offset: i64,
    /// What the response's compressed records may expand to, shared by its partitions.
    pub decompression: &'a DecompressionBudget,
}

/// The bytes the compressed batches of one fetch response may decompress to, together. Kafka
/// bounds a response's wire size (`fetch.max.bytes`), not what its batches expand to; one legal,
/// highly compressible batch would otherwise grow without limit in every consumer.
///
/// A batch that alone would pass the limit is refused with an error. A batch that would pass
/// only what the partitions before it left ends its partition's records for this response,
/// as a batch cut off by the fetch size does: the next fetch starts there with a fresh budget.
#[derive(Debug)]
pub struct DecompressionBudget {
    limit: usize,
    left: AtomicUsize,
}

impl DecompressionBudget {
    /// A budget of `limit` bytes (`fetch.max.bytes`).
    pub const fn new(limit: usize) -> Self {
        DecompressionBudget { limit, left: AtomicUsize::new(limit) }
    }

    /// Expands one batch's records within what is left.
    fn decompress(&self, codec: i16, data: &[u8]) -> Result<Bytes, BatchRefusal> {
        let left = self.left.load(Ordering::Relaxed);
        match decompress(codec, data, left) {
            Ok(bytes) => {
                self.left.fetch_sub(bytes.len(), Ordering::Relaxed);
                Ok(bytes)
            }
            Err(Inflate::OverLimit) if left < self.limit => Err(BatchRefusal::OverBudget),
            Err(Inflate::OverLimit) => Err(BatchRefusal::Invalid(format!(
                "its records decompress to more than {} bytes, the limit (fetch.max.bytes)",
                self.limit
            ))),
            Err(Inflate::Corrupt(reason)) => Err(BatchRefusal::Invalid(reason)),
        }
    }
}

/// Why one batch gave no records.
#[derive(Debug)]
enum BatchRefusal {
    /// Broken or hostile bytes: the partition reports an error at this batch.
    Invalid(String),
    /// It would pass what is left of the response's [`DecompressionBudget`].
    OverBudget,
}

/// The records of one partition, the offset to fetch next, and the error that stopped
/// decoding early, if any (the records before it are good).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The records, in offset order.
    pub records: Vec<ConsumerRecord>,
    /// Where the next fetch starts.
    pub next_offset: i64,
    /// Why decoding stopped early, if it did.
    pub error: Option<String>,
}

/// The fixed part of a v2 batch header.
#[derive(Debug, Clone, Copy)]
struct BatchHeader {
    base_offset: i64,
    magic: i8,
    attributes: i16,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    record_count: i32,
}

impl BatchHeader {
    fn parse(batch: &[u8]) -> Self {
        let i16_at = |at: usize| i16::from_be_bytes([batch[at], batch[at + 1]]);
        let i32_at = |at: usize| i32::from_be_bytes(batch[at..at + 4].try_into().unwrap_or_default());
        let i64_at = |at: usize| i64::from_be_bytes(batch[at..at + 8].try_into().unwrap_or_default());
        BatchHeader {
            base_offset: i64_at(0),
            magic: batch[16] as i8,
            attributes: i16_at(21),
            last_offset_delta: i32_at(23),
            base_timestamp: i64_at(27),
            max_timestamp: i64_at(35),
            producer_id: i64_at(43),
            record_count: i32_at(57),
        }
    }

    fn last_offset(&self) -> i64 {
        self.base_offset.saturating_add(i64::from(self.last_offset_delta))
    }

    fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    fn timestamp_type(&self) -> TimestampType {
        if self.attributes & ATTR_LOG_APPEND_TIME != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }
}

/// Decodes one partition's record data. Never panics; garbage gives an error with whatever
/// complete batches came before it.
pub fn decode_partition(data: Bytes, fetch: &PartitionFetch<'_>) -> Decoded {
    let read_committed = fetch.isolation == IsolationLevel::ReadCommitted;
    let stable_end = (read_committed && fetch.last_stable_offset >= 0).then_some(fetch.last_stable_offset);
    let mut aborted: Vec<(i64, i64)> = if read_committed { fetch.aborted_transactions.to_vec() } else { Vec::new() };
    aborted.sort_by_key(|&(_, first)| first);
    let mut aborted = aborted.into_iter().peekable();
    let mut aborted_producers: HashSet<i64> = HashSet::new();

    // One allocation for the whole fetch instead of a doubling per batch: the record vector is
    // about as large as the data (a 1 MiB fetch of 100-byte records makes 1 MiB of records).
    let mut out =
        Decoded { records: Vec::with_capacity(record_estimate(&data)), next_offset: fetch.fetch_offset, error: None };
    let mut rest = data;
    let mut complete_batches = 0usize;
    while !rest.is_empty() {
        let fail = |out: &mut Decoded, reason: String| {
            out.error = Some(format!("record batch at offset {}: {reason}", out.next_offset));
        };
        if rest.len() < LOG_OVERHEAD {
            if complete_batches == 0 {
                fail(&mut out, format!("truncated: {} bytes, less than a batch header", rest.len()));
            }
            break;
        }
        let length = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        let Ok(length) = usize::try_from(length) else {
            fail(&mut out, format!("negative batch length {length}"));
            break;
        };
        let total = LOG_OVERHEAD + length;
        if rest.len() < total {
            // A fetch may end in the middle of a batch (it stops at max bytes); the next one
            // starts there. A first batch that is cut short is broken data.
            if complete_batches == 0 {
                fail(&mut out, format!("truncated: {} of {total} bytes", rest.len()));
            }
            break;
        }
        if total < BATCH_HEADER {
            let magic = rest.get(16).map_or(-1, |&m| m as i8);
            let reason = if (0..2).contains(&magic) {
                format!("message format v{magic} is not supported (record batch v2 only)")
            } else {
                format!("batch of {total} bytes is shorter than its header")
            };
            fail(&mut out, reason);
            break;
        }
        let batch = rest.split_to(total);
        complete_batches += 1;
        let header = BatchHeader::parse(&batch);
        if header.magic != 2 {
            fail(&mut out, format!("message format v{} is not supported (record batch v2 only)", header.magic));
            break;
        }
        if header.last_offset() < out.next_offset {
            continue; // entirely below the fetch offset
        }
        if stable_end.is_some_and(|lso| header.base_offset >= lso) {
            break; // never past the last stable offset
        }
        if read_committed && header.producer_id >= 0 {
            while let Some((producer, _)) = aborted.next_if(|&(_, first)| first <= header.last_offset()) {
                aborted_producers.insert(producer);
            }
            if header.is_control() {
                let mut first_key = None;
                match decode_batch(batch.clone(), &header, fetch.decompression, |r| {
                    first_key.get_or_insert(r.key);
                }) {
                    Ok(()) => {}
                    Err(BatchRefusal::Invalid(reason)) => {
                        fail(&mut out, reason);
                        break;
                    }
                    Err(BatchRefusal::OverBudget) => break,
                }
                if first_key.flatten().is_some_and(|key| is_abort_marker(&key)) {
                    aborted_producers.remove(&header.producer_id);
                }
            } else if header.is_transactional() && aborted_producers.contains(&header.producer_id) {
                out.next_offset = header.last_offset().saturating_add(1);
                continue;
            }
        }
        if header.is_control() {
            out.next_offset = header.last_offset().saturating_add(1);
            continue;
        }
        // As Kafka's `DefaultRecordBatch`: under log append time every record reads the
        // broker's time, which the broker wrote into the batch's max timestamp.
        let timestamp_type = header.timestamp_type();
        let (from, before) = (out.next_offset, out.records.len());
        let decoded = decode_batch(batch, &header, fetch.decompression, |record| {
            if record.offset < from || stable_end.is_some_and(|lso| record.offset >= lso) {
                return;
            }
            out.records.push(ConsumerRecord {
                topic: fetch.topic.clone(),
                partition: fetch.partition,
                offset: record.offset,
                timestamp: match timestamp_type {
                    TimestampType::LogAppendTime => header.max_timestamp,
                    _ => record.timestamp,
                },
                timestamp_type,
                key: record.key,
                value: record.value,
                headers: record.headers,
            });
        });
        if let Err(refusal) = decoded {
            // Records of a batch that fails are not handed out: the batch is refused whole.
            out.records.truncate(before);
            if let BatchRefusal::Invalid(reason) = refusal {
                fail(&mut out, reason);
            }
            break;
        }
        // The batch's last offset survives compaction of its last records; moving past it keeps
        // the next fetch from returning the same batch.
        let end = header.last_offset().saturating_add(1);
        out.next_offset = match stable_end {
            Some(lso) if end > lso => lso.max(out.next_offset),
            _ => end,
        };
    }
    if let Some(last) = out.records.last() {
        out.next_offset = out.next_offset.max(last.offset.saturating_add(1));
    }
    out
}

/// The records the batches in `data` say they hold, but no more than the bytes can hold
/// uncompressed, so a hostile count reserves nothing beyond the data's size.
fn record_estimate(data: &[u8]) -> usize {
    let (mut rest, mut count) = (data, 0usize);
    while rest.len() >= BATCH_HEADER {
        let length = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        count = count.saturating_add(i32::from_be_bytes([rest[57], rest[58], rest[59], rest[60]]).max(0) as usize);
        match usize::try_from(length).ok().and_then(|l| rest.get(LOG_OVERHEAD.saturating_add(l)..)) {
            Some(tail) => rest = tail,
            None => break,
        }
    }
    count.min(data.len() / MIN_RECORD_SIZE)
}

/// A control record's key is `(version: i16, type: i16)`; type 0 ends a transaction by abort.
fn is_abort_marker(key: &[u8]) -> bool {
    key.len() >= 4 && i16::from_be_bytes([key[2], key[3]]) == 0
}

/// One record as it sits in its batch: key and value are slices of the batch's bytes.
#[derive(Debug)]
pub struct RawRecord {
    /// The record's offset.
    pub offset: i64,
    /// Create time (base timestamp plus delta); the caller applies log append time.
    pub timestamp: i64,
    /// The key (`None`: null).
    pub key: Option<Bytes>,
    /// The value (`None`: null).
    pub value: Option<Bytes>,
    /// The headers, in order.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Decodes one complete batch (base offset and length included): checks its CRC and record
/// count, decompresses its records within `budget` and hands each to `each`, in order. A panic
/// inside a codec becomes an error.
fn decode_batch(
    batch: Bytes,
    header: &BatchHeader,
    budget: &DecompressionBudget,
    each: impl FnMut(RawRecord),
) -> Result<(), BatchRefusal> {
    let invalid = BatchRefusal::Invalid;
    let record_count = header.record_count;
    if record_count < 0 {
        return Err(invalid(format!("negative record count {record_count}")));
    }
    let compression = header.attributes & ATTR_COMPRESSION;
    // Uncompressed records are right there: a count they cannot hold is refused before the CRC
    // is even computed.
    if compression == 0 && (record_count as usize).saturating_mul(MIN_RECORD_SIZE) > batch.len() - BATCH_HEADER {
        return Err(invalid(format!(
            "record count {record_count} does not fit in {} bytes of records",
            batch.len() - BATCH_HEADER
        )));
    }
    let stored = u32::from_be_bytes([batch[CRC_AT], batch[CRC_AT + 1], batch[CRC_AT + 2], batch[CRC_AT + 3]]);
    let computed = crc32c::crc32c(&batch[CRC_FROM..]);
    if stored != computed {
        return Err(invalid(format!("CRC mismatch: the batch says {stored:#010x}, its bytes give {computed:#010x}")));
    }
    let records = batch.slice(BATCH_HEADER..);
    let decompressed = match compression {
        0 => records,
        codec => catch_unwind(AssertUnwindSafe(|| budget.decompress(codec, &records)))
            .unwrap_or_else(|_| Err(invalid("the decompressor panicked on malformed bytes".to_owned())))?,
    };
    parse_records(&decompressed, record_count, header.base_offset, header.base_timestamp, each).map_err(invalid)
}

/// Parses `count` records of (decompressed) record data, checking that each record fits in the
/// data, each field in its record, and its header count in its bytes before anything is
/// reserved for the headers, so allocations stay proportional to the data. Bytes after a
/// record's last header, and after the last record, are ignored, as Kafka's decoder ignores them.
pub fn parse_records(
    data: &Bytes,
    count: i32,
    base_offset: i64,
    base_timestamp: i64,
    mut each: impl FnMut(RawRecord),
) -> Result<(), String> {
    let count = usize::try_from(count).map_err(|_| format!("negative record count {count}"))?;
    if count.saturating_mul(MIN_RECORD_SIZE) > data.len() {
        return Err(format!("record count {count} does not fit in {} bytes of records", data.len()));
    }
    let mut rest: &[u8] = data;
    for index in 0..count {
        let bad = |what: &str| format!("record {index} of {count}: {what}");
        let length = read_varint(&mut rest).ok_or_else(|| bad("unreadable length"))?;
        let length = usize::try_from(length).map_err(|_| bad("negative length"))?;
        if length > rest.len() {
            return Err(bad("longer than the data"));
        }
        let (mut record, tail) = rest.split_at(length);
        rest = tail;
        record = record.get(1..).ok_or_else(|| bad("empty"))?; // attributes
        let timestamp_delta = read_varint(&mut record).ok_or_else(|| bad("unreadable timestamp delta"))?;
        let offset_delta = read_varint(&mut record)
            .and_then(|d| i32::try_from(d).ok())
            .ok_or_else(|| bad("unreadable offset delta"))?;
        let key = slice_field(data, &mut record).map_err(|e| bad(&format!("key {e}")))?;
        let value = slice_field(data, &mut record).map_err(|e| bad(&format!("value {e}")))?;
        let header_count = read_varint(&mut record).ok_or_else(|| bad("unreadable header count"))?;
        // Each header takes at least two bytes (key length, value length).
        if header_count < 0 || header_count as u64 > record.len() as u64 / 2 {
            return Err(bad(&format!("header count {header_count} does not fit in {} bytes", record.len())));
        }
        let mut headers = Vec::with_capacity(header_count as usize);
        for _ in 0..header_count {
            let name = slice_field(data, &mut record)
                .map_err(|e| bad(&format!("header key {e}")))?
                .ok_or_else(|| bad("null header key"))?;
            let name = String::from_utf8(name.to_vec()).map_err(|_| bad("header key is not UTF-8"))?;
            let value = slice_field(data, &mut record).map_err(|e| bad(&format!("header value {e}")))?;
            headers.push((name, value));
        }
        each(RawRecord {
            offset: base_offset.wrapping_add(i64::from(offset_delta)),
            timestamp: base_timestamp.wrapping_add(timestamp_delta),
            key,
            value,
            headers,
        });
    }
    Ok(())
}

/// A length-prefixed nullable field of `field`, a sub-slice of `data`: a slice of `data` (no
/// copy), `None` for length -1.
fn slice_field(data: &Bytes, field: &mut &[u8]) -> Result<Option<Bytes>, String> {
    let length = read_varint(field).ok_or("length unreadable")?;
    if length == -1 {
        return Ok(None);
    }
    let length = usize::try_from(length).map_err(|_| format!("length {length}"))?;
    if length > field.len() {
        return Err("longer than the record".into());
    }
    let start = field.as_ptr() as usize - data.as_ptr() as usize;
    *field = &field[length..];
    Ok(Some(data.slice(start..start + length)))
}

/// A zig-zag varint of up to 10 bytes.
fn read_varint(buf: &mut &[u8]) -> Option<i64> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::fetcher::fixtures::{batch, record};
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{Compression, Record};

    fn txn(offset: i64, producer_id: i64, value: &str) -> Record {
        Record { transactional: true, producer_id, producer_epoch: 0, ..record(offset, value) }
    }

    /// A transaction marker: key (version 0, type 0 abort / 1 commit), value (version, epoch).
    fn marker(offset: i64, producer_id: i64, commit: bool) -> Record {
        Record {
            control: true,
            key: Some(Bytes::from(vec![0, 0, 0, u8::from(commit)])),
            value: Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
            ..txn(offset, producer_id, "")
        }
    }

    fn concat(parts: &[Bytes]) -> Bytes {
        let mut buf = BytesMut::new();
        for p in parts {
            buf.extend_from_slice(p);
        }
        buf.freeze()
    }

    fn fetch<'a>(
        topic: &'a Arc<str>,
        fetch_offset: i64,
        isolation: IsolationLevel,
        aborted: &'a [(i64, i64)],
        lso: i64,
    ) -> PartitionFetch<'a> {
        PartitionFetch {
            topic,
            partition: 3,
            fetch_offset,
            isolation,
            aborted_transactions: aborted,
            last_stable_offset: lso,
            decompression: &UNLIMITED,
        }
    }

    static UNLIMITED: DecompressionBudget = DecompressionBudget::new(usize::MAX);

    fn offsets(d: &Decoded) -> Vec<i64> {
        d.records.iter().map(|r| r.offset).collect()
    }

    fn values(d: &Decoded) -> Vec<String> {
        d.records.iter().map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap()).collect()
    }

    /// crc32c (Castagnoli), to re-sign batches after tampering with their header.
    fn crc32c(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
            }
        }
        !crc
    }

    fn resign(batch: &mut [u8]) {
        let crc = crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn every_codec_decodes_and_keeps_fields() {
        let topic: Arc<str> = Arc::from("t");
        for compression in
            [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd]
        {
            let mut records: Vec<Record> = (0..50).map(|o| record(o, &format!("v{o}"))).collect();
            records[7].headers.insert(StrBytes::from_static_str("h"), Some(Bytes::from_static(b"x")));
            records[8].key = None;
            records[9].value = None;
            let d = decode_partition(
                batch(&records, compression),
                &fetch(&topic, 0, IsolationLevel::ReadUncommitted, &[], -1),
            );
            assert_eq!(d.error, None, "{compression:?}");
            assert_eq!(offsets(&d), (0..50).collect::<Vec<_>>());
            assert_eq!(d.next_offset, 50);
            let r = &d.records[7];
            assert_eq!((r.partition, &*r.topic, r.timestamp), (3, "t", 1_007));
            assert_eq!(r.headers, vec![("h".to_owned(), Some(Bytes::from_static(b"x")))]);
            assert_eq!(d.records[8].key, None);
            assert_eq!(d.records[9].value, None);
        }
    }

    #[test]
    fn records_below_the_fetch_offset_are_dropped() {
        let topic: Arc<str> = Arc::from("t");
        let data = concat(&[
            batch(&(0..10).map(|o| record(o, "a")).collect::<Vec<_>>(), Compression::Zstd),
            batch(&(10..20).map(|o| record(o, "b")).collect::<Vec<_>>(), Compression::Lz4),
        ]);
        let d = decode_partition(data.clone(), &fetch(&topic, 6, IsolationLevel::ReadUncommitted, &[], -1));
        assert_eq!(offsets(&d), (6..20).collect::<Vec<_>>());
        assert_eq!(d.next_offset, 20);
        let d = decode_partition(data, &fetch(&topic, 15, IsolationLevel::ReadUncommitted, &[], -1));
        assert_eq!(offsets(&d), (15..20).collect::<Vec<_>>());
    }

    /// Offsets: 0-1 committed plain records; 2-3 producer 7's transaction, aborted at 4;
    /// 5-6 producer 8's transaction, committed at 7; 8 a plain record; 9 producer 7 again
    /// (a new transaction, committed at 10); 11-12 producer 9's open transaction (past the LSO).
    fn transactional_log() -> Bytes {
        concat(&[
            batch(&[record(0, "plain-0"), record(1, "plain-1")], Compression::None),
            batch(&[txn(2, 7, "aborted-2"), txn(3, 7, "aborted-3")], Compression::Gzip),
            batch(&[marker(4, 7, false)], Compression::None),
            batch(&[txn(5, 8, "committed-5"), txn(6, 8, "committed-6")], Compression::None),
            batch(&[marker(7, 8, true)], Compression::None),
            batch(&[record(8, "plain-8")], Compression::Snappy),
            batch(&[txn(9, 7, "committed-9")], Compression::None),
            batch(&[marker(10, 7, true)], Compression::None),
            batch(&[txn(11, 9, "open-11"), txn(12, 9, "open-12")], Compression::None),
        ])
    }

    #[test]
    fn read_committed_skips_aborted_transactions_and_control_records() {
        let topic: Arc<str> = Arc::from("t");
        let aborted = [(7, 2)];
        let d = decode_partition(transactional_log(), &fetch(&topic, 0, IsolationLevel::ReadCommitted, &aborted, 11));
        assert_eq!(d.error, None);
        assert_eq!(values(&d), vec!["plain-0", "plain-1", "committed-5", "committed-6", "plain-8", "committed-9"]);
        assert_eq!(d.next_offset, 11, "up to the last stable offset, past the commit marker");
    }

    #[test]
    fn read_uncommitted_returns_every_data_record_but_no_control_record() {
        let topic: Arc<str> = Arc::from("t");
        let d =
            decode_partition(transactional_log(), &fetch(&topic, 0, IsolationLevel::ReadUncommitted, &[(7, 2)], -1));
        assert_eq!(offsets(&d), vec![0, 1, 2, 3, 5, 6, 8, 9, 11, 12]);
        assert_eq!(d.next_offset, 13);
    }

    #[test]
    fn read_committed_never_reads_past_the_last_stable_offset() {
        let topic: Arc<str> = Arc::from("t");
        let d = decode_partition(transactional_log(), &fetch(&topic, 0, IsolationLevel::ReadCommitted, &[(7, 2)], 6));
        assert_eq!(offsets(&d), vec![0, 1, 5]);
        assert_eq!(d.next_offset, 6);
        // Starting inside the aborted transaction: nothing of it, and the position moves on.
        let d = decode_partition(transactional_log(), &fetch(&topic, 3, IsolationLevel::ReadCommitted, &[(7, 2)], 5));
        assert!(d.records.is_empty());
        assert_eq!(d.next_offset, 5);
    }

    #[test]
    fn an_abort_marker_ends_only_its_producers_aborted_transaction() {
        let topic: Arc<str> = Arc::from("t");
        // Producer 7 aborts twice; its committed transaction in between is kept.
        let data = concat(&[
            batch(&[txn(0, 7, "a0")], Compression::None),
            batch(&[marker(1, 7, false)], Compression::None),
            batch(&[txn(2, 7, "c2")], Compression::None),
            batch(&[marker(3, 7, true)], Compression::None),
            batch(&[txn(4, 7, "a4")], Compression::Zstd),
            batch(&[txn(5, 5, "c5")], Compression::None),
            batch(&[marker(6, 7, false)], Compression::None),
            batch(&[marker(7, 5, true)], Compression::None),
        ]);
        let aborted = [(7, 4), (7, 0)];
        let d = decode_partition(data, &fetch(&topic, 0, IsolationLevel::ReadCommitted, &aborted, 8));
        assert_eq!(values(&d), vec!["c2", "c5"]);
        assert_eq!(d.next_offset, 8);
    }

    #[test]
    fn only_control_batches_still_move_the_position() {
        let topic: Arc<str> = Arc::from("t");
        let data = concat(&[batch(&[marker(4, 7, true)], Compression::None)]);
        for isolation in [IsolationLevel::ReadCommitted, IsolationLevel::ReadUncommitted] {
            let d = decode_partition(data.clone(), &fetch(&topic, 4, isolation, &[], 5));
            assert!(d.records.is_empty());
            assert_eq!((d.next_offset, d.error.as_deref()), (5, None));
        }
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        let topic: Arc<str> = Arc::from("t");
        let good = batch(&(0..5).map(|o| record(o, "x")).collect::<Vec<_>>(), Compression::None);
        let f = fetch(&topic, 0, IsolationLevel::ReadUncommitted, &[], -1);
        let cases: Vec<(&str, Bytes)> = vec![
            ("short", Bytes::from_static(&[1, 2, 3])),
            ("truncated first batch", good.slice(..good.len() - 3)),
            ("random bytes", Bytes::from((0..300u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<_>>())),
            ("negative length", Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0])),
            ("bad crc", {
                let mut b = good.to_vec();
                let last = b.len() - 1;
                b[last] ^= 0xff;
                Bytes::from(b)
            }),
            ("message format v1", {
                let mut b = good.to_vec();
                b[16] = 1;
                Bytes::from(b)
            }),
            ("bad compression", {
                let mut b = good.to_vec();
                b[22] |= 0x07;
                resign(&mut b);
                Bytes::from(b)
            }),
        ];
        for (name, data) in cases {
            let d = decode_partition(data, &f);
            assert!(d.error.is_some(), "{name}: {d:?}");
            assert_eq!(d.next_offset, 0, "{name}");
            assert!(d.records.is_empty(), "{name}");
        }
        // Every prefix and every single-byte corruption: never a panic.
        for cut in 0..good.len() {
            let _ = decode_partition(good.slice(..cut), &f);
        }
        for at in 0..good.len() {
            let mut b = good.to_vec();
            b[at] = b[at].wrapping_add(0x55);
            if at >= 21 {
                resign(&mut b);
            }
            let _ = decode_partition(Bytes::from(b), &f);
        }
    }

    #[test]
    fn good_batches_before_garbage_are_kept() {
        let topic: Arc<str> = Arc::from("t");
        let first = batch(&(0..5).map(|o| record(o, "x")).collect::<Vec<_>>(), Compression::None);
        let mut second = batch(&(5..9).map(|o| record(o, "y")).collect::<Vec<_>>(), Compression::Zstd).to_vec();
        let last = second.len() - 1;
        second[last] ^= 0x5a;
        let d = decode_partition(
            concat(&[first.clone(), Bytes::from(second)]),
            &fetch(&topic, 0, IsolationLevel::ReadUncommitted, &[], -1),
        );
        assert_eq!(offsets(&d), (0..5).collect::<Vec<_>>());
        assert_eq!(d.next_offset, 5);
        assert!(d.error.as_deref().unwrap().contains("offset 5"), "{:?}", d.error);
        // A trailing batch cut short by the fetch's byte limit is not an error.
        let third = batch(&(5..9).map(|o| record(o, "y")).collect::<Vec<_>>(), Compression::None);
        let d = decode_partition(
            concat(&[first, third.slice(..20)]),
            &fetch(&topic, 0, IsolationLevel::ReadUncommitted, &[], -1),
        );
        assert_eq!((offsets(&d).len(), d.next_offset, d.error), (5, 5, None));
    }

    /// A hostile record count (or header count) with a valid CRC must be refused before the
    /// decoder reserves memory for it.
    #[test]
    fn hostile_counts_are_refused_before_allocation() {
        let topic: Arc<str> = Arc::from("t");
        let f = fetch(&topic, 0, IsolationLevel::ReadUncommitted, &[], -1);
        for compression in [Compression::None, Compression::Zstd, Compression::Gzip] {
            let mut b = batch(&(0..3).map(|o| record(o, "z")).collect::<Vec<_>>(), compression).to_vec();
            b[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
            resign(&mut b);
            let d = decode_partition(Bytes::from(b), &f);
            assert!(d.error.as_deref().unwrap().contains("does not fit"), "{compression:?}: {:?}", d.error);
        }
        // One record whose header count claims two billion headers.
        let mut records = BytesMut::new();
        let body: &[u8] = &[0, 0, 0, 2, b'k', 2, b'v'];
        let headers = [0xfe, 0xff, 0xff, 0xff, 0x0f]; // zig-zag i32::MAX - ish
        records.put_u8(((body.len() + headers.len()) * 2) as u8);
        records.extend_from_slice(body);
        records.extend_from_slice(&headers);
        let records = records.freeze();
        assert!(parse_records(&records, 1, 0, 0, |_| {}).unwrap_err().contains("header count"));
        let mut b = batch(&[record(0, "v")], Compression::None).to_vec();
        b.truncate(BATCH_HEADER);
        b.extend_from_slice(&records);
        let length = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&length.to_be_bytes());
        resign(&mut b);
        let d = decode_partition(Bytes::from(b), &f);
        assert!(d.error.as_deref().unwrap().contains("header count"), "{:?}", d.error);
    }

    /// 8 MiB of zeros in one record packs into a few KiB with every codec; with a 1 MiB limit
    /// the batch is a partition error, and nothing near its size is allocated.
    #[test]
    fn a_decompression_bomb_is_a_partition_error() {
        let topic: Arc<str> = Arc::from("t");
        let bomb = Record { value: Some(Bytes::from(vec![0u8; 8 << 20])), ..record(0, "") };
        for compression in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let data = batch(&[record(0, "a"), bomb.clone()], compression);
            assert!(data.len() < 1 << 20, "{compression:?}: {} bytes", data.len());
            let budget = DecompressionBudget::new(1 << 20);
            let d = decode_partition(
                data,
                &PartitionFetch {
                    decompression: &budget,
                    ..fetch(&topic, 0, IsolationLevel::ReadUncommitted, &[], -1)
                },
            );
            assert!(d.records.is_empty(), "{compression:?}");
            let error = d.error.unwrap_or_else(|| panic!("{compression:?}: decoded"));
            assert!(error.contains("decompress to more than 1048576 bytes"), "{compression:?}: {error}");
        }
    }

    /// The partitions of one response share the budget: one that would pass what the others left
    /// stops at that batch without an error, and the next fetch (a fresh budget) reads it.
    #[test]
    fn partitions_share_one_decompression_budget() {
        let topic: Arc<str> = Arc::from("t");
        let big = |offset| Record { value: Some(Bytes::from(vec![7u8; 600 << 10])), ..record(offset, "") };
        let data = concat(&[batch(&[record(0, "a")], Compression::None), batch(&[big(1)], Compression::Zstd)]);
        let budget = DecompressionBudget::new(1 << 20);
        let partition = |budget| PartitionFetch {
            decompression: budget,
            ..fetch(&topic, 0, IsolationLevel::ReadUncommitted, &[], -1)
        };
        let first = decode_partition(data.clone(), &partition(&budget));
        assert_eq!((offsets(&first), first.next_offset, first.error), (vec![0, 1], 2, None));
        let second = decode_partition(data.clone(), &partition(&budget));
        assert_eq!((offsets(&second), second.next_offset, second.error), (vec![0], 1, None));
        let next_response = DecompressionBudget::new(1 << 20);
        let third = decode_partition(
            data.slice(second_batch_start(&data)..),
            &PartitionFetch { fetch_offset: 1, ..partition(&next_response) },
        );
        assert_eq!((offsets(&third), third.error), (vec![1], None));
    }

    fn second_batch_start(data: &[u8]) -> usize {
        LOG_OVERHEAD + i32::from_be_bytes([data[8], data[9], data[10], data[11]]) as usize
    }

    #[test]
    fn log_append_time_uses_the_batch_timestamp() {
        let topic: Arc<str> = Arc::from("t");
        let mut b = batch(&[record(0, "a"), record(1, "b")], Compression::None).to_vec();
        b[22] |= ATTR_LOG_APPEND_TIME as u8;
        resign(&mut b);
        let d = decode_partition(Bytes::from(b), &fetch(&topic, 0, IsolationLevel::ReadUncommitted, &[], -1));
        let stamps: Vec<(i64, TimestampType)> = d.records.iter().map(|r| (r.timestamp, r.timestamp_type)).collect();
        assert_eq!(stamps, vec![(1_001, TimestampType::LogAppendTime); 2]);
    }

    #[test]
    fn create_time_is_each_records_own() {
        let topic: Arc<str> = Arc::from("t");
        let second = Record { timestamp: 1_000_000, ..record(1, "b") };
        let d = decode_partition(
            batch(&[record(0, "a"), second], Compression::Zstd),
            &fetch(&topic, 0, IsolationLevel::ReadUncommitted, &[], -1),
        );
        let stamps: Vec<(i64, TimestampType)> = d.records.iter().map(|r| (r.timestamp, r.timestamp_type)).collect();
        assert_eq!(stamps, vec![(1_000, TimestampType::CreateTime), (1_000_000, TimestampType::CreateTime)]);
    }

    /// The in-place parser against `kafka-protocol`'s own decoder: every field of every record,
    /// for random records under every codec (duplicate header keys excepted: the upstream
    /// decoder collapses them into a map, Kafka keeps them all, as this parser does).
    #[test]
    fn parses_what_kafka_protocol_decodes() {
        use kafka_protocol::records::RecordBatchDecoder;
        use proptest::prelude::*;
        let field = || proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40));
        let one = (field(), field(), proptest::collection::btree_map("[a-z]{0,6}", field(), 0..3), any::<i32>());
        let codecs = prop_oneof![
            Just(Compression::None),
            Just(Compression::Gzip),
            Just(Compression::Snappy),
            Just(Compression::Lz4),
            Just(Compression::Zstd)
        ];
        let strategy = (proptest::collection::vec(one, 1..20), codecs, 0i64..1 << 40);
        proptest!(ProptestConfig::with_cases(200), |((fields, compression, base) in strategy)| {
            let records: Vec<Record> = fields
                .into_iter()
                .enumerate()
                .map(|(i, (key, value, headers, ts))| Record {
                    key: key.map(Bytes::from),
                    value: value.map(Bytes::from),
                    headers: headers.into_iter().map(|(k, v)| (StrBytes::from_string(k), v.map(Bytes::from))).collect(),
                    timestamp: 1_700_000_000_000 + i64::from(ts),
                    ..record(base + 2 * i as i64, "")
                })
                .collect();
            let data = batch(&records, compression);
            let expected = RecordBatchDecoder::decode(&mut data.clone()).unwrap().records;
            let topic: Arc<str> = Arc::from("t");
            let d = decode_partition(data, &fetch(&topic, 0, IsolationLevel::ReadUncommitted, &[], -1));
            prop_assert_eq!(&d.error, &None);
            prop_assert_eq!(d.records.len(), expected.len());
            for (got, want) in d.records.iter().zip(&expected) {
                prop_assert_eq!((got.offset, got.timestamp), (want.offset, want.timestamp));
                prop_assert_eq!((&got.key, &got.value), (&want.key, &want.value));
                let headers: Vec<(String, Option<Bytes>)> =
                    want.headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
                prop_assert_eq!(&got.headers, &headers);
            }
        });
    }

    #[test]
    fn duplicate_header_keys_are_all_kept() {
        let mut records = BytesMut::new();
        // length, attributes, timestamp delta, offset delta, key -1, value -1, 2 headers "h"=a, "h"=b
        let body: &[u8] = &[0, 0, 0, 1, 1, 4, 2, b'h', 2, b'a', 2, b'h', 2, b'b'];
        records.put_u8((body.len() * 2) as u8);
        records.extend_from_slice(body);
        let mut got = Vec::new();
        parse_records(&records.freeze(), 1, 10, 0, |r| got.push(r)).unwrap();
        assert_eq!(got[0].offset, 10);
        assert_eq!(
            got[0].headers,
            vec![("h".to_owned(), Some(Bytes::from_static(b"a"))), ("h".to_owned(), Some(Bytes::from_static(b"b")))]
        );
    }

    #[test]
    fn varints_round_trip() {
        for v in [0i64, 1, -1, 63, -64, 64, 300, -300, i32::MAX as i64, i32::MIN as i64, i64::MAX, i64::MIN] {
            let mut buf = Vec::new();
            let mut z = ((v << 1) ^ (v >> 63)) as u64;
            loop {
                let byte = (z & 0x7f) as u8;
                z >>= 7;
                if z == 0 {
                    buf.push(byte);
                    break;
                }
                buf.push(byte | 0x80);
            }
            let mut s = &buf[..];
            assert_eq!(read_varint(&mut s), Some(v));
            assert!(s.is_empty());
        }
        assert_eq!(read_varint(&mut &[0x80u8; 11][..]), None);
    }
}
