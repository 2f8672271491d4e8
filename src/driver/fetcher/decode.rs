//! Turning one partition's `records` bytes into consumer records, without IO.
//!
//! Batches are walked here (the decoder's `RecordSet` does not say where a batch ends, which
//! the position needs after control batches and compacted tails); each batch is decoded by
//! `kafka-protocol` behind a guard: its record count and every record's header count are checked
//! against the bytes before the decoder allocates for them (0.18 reserves `record_count`
//! entries straight from the wire), and a panic inside the decoder becomes an error. Control
//! batches are skipped; under `ReadCommitted` batches of aborted transactions are skipped
//! (Java's `CompletedFetch` algorithm: aborted transactions start at their first offset and end
//! at their producer's abort marker) and nothing at or past the last stable offset is read.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder};

use super::{ConsumerRecord, IsolationLevel};

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

/// What decoding needs to know about the fetch that returned the bytes.
#[derive(Debug, Clone)]
pub struct PartitionFetch<'a> {
    pub topic: &'a Arc<str>,
    pub partition: i32,
    /// The offset the fetch asked for: records below it are dropped.
    pub fetch_offset: i64,
    pub isolation: IsolationLevel,
    /// `(producer id, first offset)` of the aborted transactions the response lists.
    pub aborted_transactions: &'a [(i64, i64)],
    /// The response's last stable offset (`-1` when unknown).
    pub last_stable_offset: i64,
}

/// The records of one partition, the offset to fetch next, and the error that stopped
/// decoding early, if any (the records before it are good).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub records: Vec<ConsumerRecord>,
    pub next_offset: i64,
    pub error: Option<String>,
}

/// The fixed part of a v2 batch header.
#[derive(Debug, Clone, Copy)]
struct BatchHeader {
    base_offset: i64,
    magic: i8,
    attributes: i16,
    last_offset_delta: i32,
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

    let mut out = Decoded { records: Vec::new(), next_offset: fetch.fetch_offset, error: None };
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
                match decode_batch(batch.clone(), &header) {
                    Ok(records) if records.first().is_some_and(is_abort_marker) => {
                        aborted_producers.remove(&header.producer_id);
                    }
                    Ok(_) => {}
                    Err(reason) => {
                        fail(&mut out, reason);
                        break;
                    }
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
        let records = match decode_batch(batch, &header) {
            Ok(records) => records,
            Err(reason) => {
                fail(&mut out, reason);
                break;
            }
        };
        let log_append_time = header.attributes & ATTR_LOG_APPEND_TIME != 0;
        for record in records {
            if record.offset < out.next_offset {
                continue;
            }
            if stable_end.is_some_and(|lso| record.offset >= lso) {
                break;
            }
            out.records.push(ConsumerRecord {
                topic: fetch.topic.clone(),
                partition: fetch.partition,
                offset: record.offset,
                timestamp: if log_append_time { header.max_timestamp } else { record.timestamp },
                key: record.key,
                value: record.value,
                headers: record.headers.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            });
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

/// A control record's key is `(version: i16, type: i16)`; type 0 ends a transaction by abort.
fn is_abort_marker(record: &Record) -> bool {
    record.key.as_ref().is_some_and(|k| k.len() >= 4 && i16::from_be_bytes([k[2], k[3]]) == 0)
}

/// Decodes one complete batch (base offset and length included) with the upstream decoder,
/// after checking the counts it allocates for, and with any panic turned into an error.
fn decode_batch(batch: Bytes, header: &BatchHeader) -> Result<Vec<Record>, String> {
    let record_count = header.record_count;
    if record_count < 0 {
        return Err(format!("negative record count {record_count}"));
    }
    let compression = header.attributes & ATTR_COMPRESSION;
    // Uncompressed records are right there: a count they cannot hold is refused before the
    // decoder even checks the CRC.
    if compression == 0 && (record_count as usize).saturating_mul(MIN_RECORD_SIZE) > batch.len() - BATCH_HEADER {
        return Err(format!(
            "record count {record_count} does not fit in {} bytes of records",
            batch.len() - BATCH_HEADER
        ));
    }
    let mut buf = batch;
    let decompress = |records: &mut Bytes, compression: Compression| {
        let raw = match compression {
            Compression::None => std::mem::take(records),
            Compression::Gzip => <Gzip as Decompressor<Bytes>>::decompress(records, |d| Ok(std::mem::take(d)))?,
            Compression::Snappy => <Snappy as Decompressor<Bytes>>::decompress(records, |d| Ok(std::mem::take(d)))?,
            Compression::Lz4 => <Lz4 as Decompressor<Bytes>>::decompress(records, |d| Ok(std::mem::take(d)))?,
            Compression::Zstd => <Zstd as Decompressor<Bytes>>::decompress(records, |d| Ok(std::mem::take(d)))?,
        };
        check_records(&raw, record_count).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        Ok(raw)
    };
    match catch_unwind(AssertUnwindSafe(|| {
        RecordBatchDecoder::decode_with_custom_compression(&mut buf, Some(decompress))
    })) {
        Ok(Ok(set)) => Ok(set.records),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err("the record decoder panicked on malformed bytes".to_owned()),
    }
}

/// Walks `count` records of (decompressed) record data, checking each record fits and that its
/// header count fits in its bytes, so the decoder's allocations stay proportional to the data.
pub fn check_records(data: &[u8], count: i32) -> Result<(), String> {
    let count = usize::try_from(count).map_err(|_| format!("negative record count {count}"))?;
    if count.saturating_mul(MIN_RECORD_SIZE) > data.len() {
        return Err(format!("record count {count} does not fit in {} bytes of records", data.len()));
    }
    let mut rest = data;
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
        read_varint(&mut record).ok_or_else(|| bad("unreadable timestamp delta"))?;
        read_varint(&mut record).ok_or_else(|| bad("unreadable offset delta"))?;
        for field in ["key", "value"] {
            let len = read_varint(&mut record).ok_or_else(|| bad(&format!("unreadable {field} length")))?;
            if len >= 0 {
                record = record.get(len as usize..).ok_or_else(|| bad(&format!("{field} longer than the record")))?;
            } else if len < -1 {
                return Err(bad(&format!("{field} length {len}")));
            }
        }
        let headers = read_varint(&mut record).ok_or_else(|| bad("unreadable header count"))?;
        // Each header takes at least two bytes (key length, value length).
        if headers < 0 || headers as u64 > record.len() as u64 / 2 {
            return Err(bad(&format!("header count {headers} does not fit in {} bytes", record.len())));
        }
    }
    Ok(())
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
        }
    }

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
        assert!(check_records(&records, 1).unwrap_err().contains("header count"));
        let mut b = batch(&[record(0, "v")], Compression::None).to_vec();
        b.truncate(BATCH_HEADER);
        b.extend_from_slice(&records);
        let length = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&length.to_be_bytes());
        resign(&mut b);
        let d = decode_partition(Bytes::from(b), &f);
        assert!(d.error.as_deref().unwrap().contains("header count"), "{:?}", d.error);
    }

    #[test]
    fn log_append_time_uses_the_batch_timestamp() {
        let topic: Arc<str> = Arc::from("t");
        let mut b = batch(&[record(0, "a"), record(1, "b")], Compression::None).to_vec();
        b[22] |= ATTR_LOG_APPEND_TIME as u8;
        resign(&mut b);
        let d = decode_partition(Bytes::from(b), &fetch(&topic, 0, IsolationLevel::ReadUncommitted, &[], -1));
        assert_eq!(d.records.iter().map(|r| r.timestamp).collect::<Vec<_>>(), vec![1_001, 1_001]);
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
