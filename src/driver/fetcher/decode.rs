//! Turning one partition's `records` bytes into consumer records, without IO, in two steps:
//! [`WireRecords::scan`] when a fetch response arrives (batch headers only: where the next fetch
//! starts) and [`WireRecords::decode`] when records are handed out.
//!
//! Records are parsed in place: a [`ConsumerRecord`] points at its key, value and headers in its
//! batch's bytes, and the record count and every record's header count are checked against the
//! bytes before anything is reserved for them. `kafka-protocol` 0.18's `RecordBatchDecoder` did
//! the same work at about half the speed (a `Bytes` split and refcount per field, an intermediate
//! `Record` with an `IndexMap`, a second pass to check the counts it reserves straight from the
//! wire). Compressed records are expanded within a [`DecompressionBudget`] (see `decompress`),
//! and a panic inside a codec becomes an error. Control batches are skipped; under
//! `ReadCommitted` batches of aborted transactions are skipped (Java's `CompletedFetch`
//! algorithm: aborted transactions start at their first offset and end at their producer's abort
//! marker) and nothing at or past the last stable offset is read.

use std::collections::{HashSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Buf, Bytes};

use super::decompress::{decompress, Inflate};
use super::record::{BatchData, RecordParts, Span};
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
}

/// The bytes the compressed batches decoded in one hand-out may decompress to, together. Kafka
/// bounds a response's wire size (`fetch.max.bytes`), not what its batches expand to; one legal,
/// highly compressible batch would otherwise grow without limit in every consumer.
///
/// A batch that alone would pass the limit is refused with an error. A batch that would pass
/// only what the batches before it left waits in the buffer for the next hand-out, which starts
/// with a fresh budget.
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

/// Records decoded for the application, the partition's position after them, and the error
/// that stopped decoding early, if any (the records before it are good).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The records, in offset order.
    pub records: Vec<ConsumerRecord>,
    /// The offset after these records (and after control records or aborted transactions
    /// that follow them).
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

/// One partition's records from one fetch response, as they came on the wire: the complete
/// batches from the first one the fetch asked for, in an allocation of their own (not the
/// response's, which would live as long as its longest-kept partition). The prefetch buffer
/// holds these, and [`decode`](Self::decode) makes records of them when they are handed out,
/// so buffered data costs its wire size and a record lives only while the application holds it.
///
/// [`scan`](Self::scan) reads the batch headers only (where the next fetch starts, and framing
/// errors); CRCs, decompression and the records themselves are checked by `decode`.
#[derive(Debug, Clone)]
pub struct WireRecords {
    topic: Arc<str>,
    partition: i32,
    /// Complete v2 batches not decoded yet.
    rest: Bytes,
    /// Records below it are not delivered: the fetch offset, then past each batch decoded.
    position: i64,
    /// Past the last batch kept: where the next fetch starts.
    end: i64,
    /// Under read committed only.
    transactions: Option<Box<Transactions>>,
    /// What the batch headers say the kept batches hold.
    record_count: usize,
}

/// What read committed needs to skip aborted transactions, carried from one hand-out to the
/// next.
#[derive(Debug, Clone)]
struct Transactions {
    /// The response's last stable offset, when it gave one.
    stable_end: Option<i64>,
    /// Aborted transactions not reached yet, by first offset.
    aborted: VecDeque<(i64, i64)>,
    /// Producers whose aborted transaction is open at the position.
    aborted_producers: HashSet<i64>,
}

impl WireRecords {
    fn stable_end(&self) -> Option<i64> {
        self.transactions.as_ref().and_then(|t| t.stable_end)
    }
}

impl WireRecords {
    /// Reads the batch headers of `data`, one partition's records in a fetch response, and
    /// keeps the complete batches the fetch asked for. Never panics; broken framing gives an
    /// error after the complete batches before it.
    pub fn scan(data: &[u8], fetch: &PartitionFetch<'_>) -> (WireRecords, Option<String>) {
        let read_committed = fetch.isolation == IsolationLevel::ReadCommitted;
        let stable_end = (read_committed && fetch.last_stable_offset >= 0).then_some(fetch.last_stable_offset);
        let mut aborted: Vec<(i64, i64)> = if read_committed { fetch.aborted_transactions.to_vec() } else { Vec::new() };
        aborted.sort_by_key(|&(_, first)| first);
        let (mut next, mut record_count, mut error) = (fetch.fetch_offset, 0usize, None);
        let (mut kept_from, mut kept_to) = (None, 0);
        let mut at = 0;
        let mut complete_batches = 0usize;
        while at < data.len() {
            let rest = &data[at..];
            let mut fail = |reason: String| error = Some(format!("record batch at offset {next}: {reason}"));
            if rest.len() < LOG_OVERHEAD {
                if complete_batches == 0 {
                    fail(format!("truncated: {} bytes, less than a batch header", rest.len()));
                }
                break;
            }
            let length = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
            let Ok(length) = usize::try_from(length) else {
                fail(format!("negative batch length {length}"));
                break;
            };
            let total = LOG_OVERHEAD.saturating_add(length);
            if rest.len() < total {
                // A fetch may end in the middle of a batch (it stops at max bytes); the next one
                // starts there. A first batch that is cut short is broken data.
                if complete_batches == 0 {
                    fail(format!("truncated: {} of {total} bytes", rest.len()));
                }
                break;
            }
            if total < BATCH_HEADER {
                let magic = rest.get(16).map_or(-1, |&m| m as i8);
                fail(if (0..2).contains(&magic) {
                    format!("message format v{magic} is not supported (record batch v2 only)")
                } else {
                    format!("batch of {total} bytes is shorter than its header")
                });
                break;
            }
            complete_batches += 1;
            let header = BatchHeader::parse(&rest[..total]);
            if header.magic != 2 {
                fail(format!("message format v{} is not supported (record batch v2 only)", header.magic));
                break;
            }
            let batch_at = at;
            at += total;
            if header.last_offset() < next {
                continue; // entirely below the fetch offset
            }
            if stable_end.is_some_and(|lso| header.base_offset >= lso) {
                break; // never past the last stable offset
            }
            kept_from.get_or_insert(batch_at);
            kept_to = at;
            record_count = record_count.saturating_add(header.record_count.max(0) as usize);
            // The batch's last offset survives compaction of its last records; moving past it
            // keeps the next fetch from returning the same batch.
            let end = header.last_offset().saturating_add(1);
            next = match stable_end {
                Some(lso) if end > lso => lso.max(next),
                _ => end,
            };
        }
        let rest = kept_from.map_or_else(Bytes::new, |from| Bytes::copy_from_slice(&data[from..kept_to]));
        let transactions = read_committed.then(|| {
            Box::new(Transactions { stable_end, aborted: aborted.into(), aborted_producers: HashSet::new() })
        });
        let records = WireRecords {
            topic: fetch.topic.clone(),
            partition: fetch.partition,
            rest,
            position: fetch.fetch_offset,
            end: next,
            transactions,
            record_count,
        };
        (records, error)
    }

    /// Nothing is left to decode.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The bytes held.
    pub fn wire_len(&self) -> usize {
        self.rest.len()
    }

    /// Where the next fetch starts: past every batch kept.
    pub fn end(&self) -> i64 {
        self.end
    }

    /// How many records the kept batches say they hold (control records and records below the
    /// fetch offset included).
    pub fn record_count(&self) -> usize {
        self.record_count
    }

    /// Decodes whole batches, in order, until about `max_records` records are made (the batch
    /// that reaches it is finished), nothing is left, or the next compressed batch would pass
    /// `budget` (it stays for the next call). A batch that fails (CRC, record framing, a codec)
    /// gives an error after the records before it, and nothing after it is kept.
    pub fn decode(&mut self, max_records: usize, budget: &DecompressionBudget) -> Decoded {
        let mut out = Decoded {
            records: Vec::with_capacity(record_estimate(&self.rest, max_records.saturating_add(1))),
            next_offset: self.position,
            error: None,
        };
        while !self.rest.is_empty() && out.records.len() < max_records {
            let length = self.rest.get(8..12).map_or(-1, |b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            let total = usize::try_from(length).map_or(usize::MAX, |l| l.saturating_add(LOG_OVERHEAD));
            if total < BATCH_HEADER || total > self.rest.len() {
                // `scan` kept complete batches only.
                out.error = Some(format!("record batch at offset {}: broken framing", self.position));
                self.rest.clear();
                break;
            }
            let batch = self.rest.slice(..total);
            let header = BatchHeader::parse(&batch);
            match self.decode_batch(&batch, &header, budget, &mut out.records) {
                Ok(()) => {}
                Err(BatchRefusal::OverBudget) => break,
                Err(BatchRefusal::Invalid(reason)) => {
                    out.error = Some(format!("record batch at offset {}: {reason}", self.position));
                    self.rest.clear();
                    break;
                }
            }
            self.rest.advance(total);
            let end = header.last_offset().saturating_add(1);
            self.position = match self.stable_end() {
                Some(lso) if end > lso => lso.max(self.position),
                _ => end.max(self.position),
            };
        }
        if self.rest.is_empty() && out.error.is_none() {
            self.position = self.position.max(self.end);
        }
        if let Some(last) = out.records.last() {
            self.position = self.position.max(last.offset().saturating_add(1));
        }
        out.next_offset = self.position;
        out
    }

    /// The records of one batch the application gets, appended to `records`; a batch that
    /// fails adds none.
    fn decode_batch(
        &mut self,
        batch: &Bytes,
        header: &BatchHeader,
        budget: &DecompressionBudget,
        records: &mut Vec<ConsumerRecord>,
    ) -> Result<(), BatchRefusal> {
        let stable_end = self.stable_end();
        if header.last_offset() < self.position || stable_end.is_some_and(|lso| header.base_offset >= lso) {
            return Ok(());
        }
        if let Some(transactions) = self.transactions.as_mut().filter(|_| header.producer_id >= 0) {
            if transactions.skips(batch, header, budget)? {
                return Ok(());
            }
        }
        if header.is_control() {
            return Ok(());
        }
        let data = batch_records(batch, header, budget)?;
        let shared = Arc::new(BatchData {
            topic: self.topic.clone(),
            partition: self.partition,
            timestamp_type: header.timestamp_type(),
            bytes: data,
        });
        let (from, before) = (self.position, records.len());
        // As Kafka's `DefaultRecordBatch`: under log append time every record reads the
        // broker's time, which the broker wrote into the batch's max timestamp.
        let log_append_time = header.timestamp_type() == TimestampType::LogAppendTime;
        let parsed =
            parse_records(&shared.bytes, header.record_count, header.base_offset, header.base_timestamp, |mut record| {
                if record.offset < from || stable_end.is_some_and(|lso| record.offset >= lso) {
                    return;
                }
                if log_append_time {
                    record.timestamp = header.max_timestamp;
                }
                records.push(ConsumerRecord::decoded(&shared, record));
            });
        if let Err(reason) = parsed {
            // Records of a batch that fails are not handed out: the batch is refused whole.
            records.truncate(before);
            return Err(BatchRefusal::Invalid(reason));
        }
        Ok(())
    }
}

impl Transactions {
    /// Whether a batch of a transactional producer is skipped: a control batch (an abort
    /// marker closes its producer's aborted transaction), or a batch of an aborted transaction.
    fn skips(&mut self, batch: &Bytes, header: &BatchHeader, budget: &DecompressionBudget) -> Result<bool, BatchRefusal> {
        while let Some(&(producer, first)) = self.aborted.front() {
            if first > header.last_offset() {
                break;
            }
            self.aborted.pop_front();
            self.aborted_producers.insert(producer);
        }
        if header.is_control() {
            let data = batch_records(batch, header, budget)?;
            let mut first_key = None;
            parse_records(&data, header.record_count, header.base_offset, header.base_timestamp, |r| {
                first_key.get_or_insert(r.key);
            })
            .map_err(BatchRefusal::Invalid)?;
            if first_key.and_then(|span| span.get(&data)).is_some_and(is_abort_marker) {
                self.aborted_producers.remove(&header.producer_id);
            }
            return Ok(true);
        }
        Ok(header.is_transactional() && self.aborted_producers.contains(&header.producer_id))
    }
}

/// Scans and decodes one partition's record data whole, within one decompression `budget`
/// (the fuzz target and the decode benchmark; the consumer decodes a hand-out at a time).
#[cfg(any(test, feature = "test-support"))]
pub fn decode_partition(data: &[u8], fetch: &PartitionFetch<'_>, budget: &DecompressionBudget) -> Decoded {
    let (mut wire, scan_error) = WireRecords::scan(data, fetch);
    let mut decoded = wire.decode(usize::MAX, budget);
    if decoded.error.is_none() && wire.is_empty() {
        decoded.error = scan_error;
    }
    decoded
}

/// The records the batches in `data` say they hold, up to `limit` (the walk stops there, so a
/// hand-out reads only the headers it decodes), but no more than the bytes can hold
/// uncompressed, so a hostile count reserves nothing beyond the data's size.
fn record_estimate(data: &[u8], limit: usize) -> usize {
    let (mut rest, mut count) = (data, 0usize);
    while rest.len() >= BATCH_HEADER && count < limit {
        let length = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        count = count.saturating_add(i32::from_be_bytes([rest[57], rest[58], rest[59], rest[60]]).max(0) as usize);
        match usize::try_from(length).ok().and_then(|l| rest.get(LOG_OVERHEAD.saturating_add(l)..)) {
            Some(tail) => rest = tail,
            None => break,
        }
    }
    count.min(limit).min(data.len() / MIN_RECORD_SIZE)
}

/// A control record's key is `(version: i16, type: i16)`; type 0 ends a transaction by abort.
fn is_abort_marker(key: &[u8]) -> bool {
    key.len() >= 4 && i16::from_be_bytes([key[2], key[3]]) == 0
}

/// One complete batch's record bytes (base offset and length included in `batch`), after
/// checking its CRC and record count, decompressed within `budget`. A panic inside a codec
/// becomes an error.
fn batch_records(batch: &Bytes, header: &BatchHeader, budget: &DecompressionBudget) -> Result<Bytes, BatchRefusal> {
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
    match compression {
        0 => Ok(records),
        codec => catch_unwind(AssertUnwindSafe(|| budget.decompress(codec, &records)))
            .unwrap_or_else(|_| Err(invalid("the decompressor panicked on malformed bytes".to_owned()))),
    }
}

/// Parses `count` records of (decompressed) record data, checking that each record fits in the
/// data, each field in its record, and its header count in its bytes, header names UTF-8, so
/// the record's accessors never fail; nothing is allocated per record. Bytes after a record's
/// last header, and after the last record, are ignored, as Kafka's decoder ignores them.
fn parse_records(
    data: &[u8],
    count: i32,
    base_offset: i64,
    base_timestamp: i64,
    mut each: impl FnMut(RecordParts),
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
        let key = span_field(data, &mut record).map_err(|e| bad(&format!("key {e}")))?;
        let value = span_field(data, &mut record).map_err(|e| bad(&format!("value {e}")))?;
        let header_count = read_varint(&mut record).ok_or_else(|| bad("unreadable header count"))?;
        // Each header takes at least two bytes (key length, value length).
        if header_count < 0 || header_count as u64 > record.len() as u64 / 2 {
            return Err(bad(&format!("header count {header_count} does not fit in {} bytes", record.len())));
        }
        let headers_from = record;
        for _ in 0..header_count {
            let name = span_field(data, &mut record).map_err(|e| bad(&format!("header key {e}")))?;
            let name = name.get(data).ok_or_else(|| bad("null header key"))?;
            std::str::from_utf8(name).map_err(|_| bad("header key is not UTF-8"))?;
            span_field(data, &mut record).map_err(|e| bad(&format!("header value {e}")))?;
        }
        let headers = if header_count == 0 {
            Span::EMPTY
        } else {
            Span::of(data, &headers_from[..headers_from.len() - record.len()])
        };
        each(RecordParts {
            offset: base_offset.wrapping_add(i64::from(offset_delta)),
            timestamp: base_timestamp.wrapping_add(timestamp_delta),
            key,
            value,
            headers,
            header_count: header_count as u32,
        });
    }
    Ok(())
}

/// A length-prefixed nullable field of `field`, a sub-slice of `data`: where it sits in
/// `data`, [`Span::NULL`] for length -1.
fn span_field(data: &[u8], field: &mut &[u8]) -> Result<Span, String> {
    let length = read_varint(field).ok_or("length unreadable")?;
    if length == -1 {
        return Ok(Span::NULL);
    }
    let length = usize::try_from(length).map_err(|_| format!("length {length}"))?;
    if length > field.len() {
        return Err("longer than the record".into());
    }
    let span = Span::of(data, &field[..length]);
    *field = &field[length..];
    Ok(span)
}

/// A zig-zag varint of up to 10 bytes.
pub(super) fn read_varint(buf: &mut &[u8]) -> Option<i64> {
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
    use crate::driver::fetcher::fixtures::{batch, concat, marker, record, txn};
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{Compression, Record};

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

    static UNLIMITED: DecompressionBudget = DecompressionBudget::new(usize::MAX);

    /// Scans and decodes `data` whole.
    fn decode_partition(data: Bytes, fetch: &PartitionFetch<'_>) -> Decoded {
        super::decode_partition(&data, fetch, &UNLIMITED)
    }

    fn offsets(d: &Decoded) -> Vec<i64> {
        d.records.iter().map(ConsumerRecord::offset).collect()
    }

    fn values(d: &Decoded) -> Vec<String> {
        d.records.iter().map(|r| String::from_utf8(r.value().unwrap().to_vec()).unwrap()).collect()
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
            assert_eq!((r.partition(), r.topic(), r.timestamp()), (3, "t", 1_007));
            assert_eq!(r.headers().collect::<Vec<_>>(), vec![("h", Some(&b"x"[..]))]);
            assert_eq!((r.key(), r.value()), (Some(&b"k7"[..]), Some(&b"v7"[..])));
            assert_eq!(d.records[8].key(), None);
            assert_eq!(d.records[9].value(), None);
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
            marker(4, 7, false),
            batch(&[txn(5, 8, "committed-5"), txn(6, 8, "committed-6")], Compression::None),
            marker(7, 8, true),
            batch(&[record(8, "plain-8")], Compression::Snappy),
            batch(&[txn(9, 7, "committed-9")], Compression::None),
            marker(10, 7, true),
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

    /// A hand-out decodes a few batches; the aborted-transaction state goes on with the next.
    #[test]
    fn read_committed_state_carries_across_hand_outs() {
        let topic: Arc<str> = Arc::from("t");
        let aborted = [(7, 2)];
        let (mut wire, error) =
            WireRecords::scan(&transactional_log(), &fetch(&topic, 0, IsolationLevel::ReadCommitted, &aborted, 11));
        assert_eq!((error, wire.end()), (None, 11));
        let mut values = Vec::new();
        let mut positions = Vec::new();
        while !wire.is_empty() {
            let d = wire.decode(1, &UNLIMITED);
            assert_eq!(d.error, None);
            values.extend(d.records.iter().map(|r| String::from_utf8_lossy(r.value().unwrap()).into_owned()));
            positions.push(d.next_offset);
        }
        assert_eq!(values, vec!["plain-0", "plain-1", "committed-5", "committed-6", "plain-8", "committed-9"]);
        assert_eq!(positions, vec![2, 7, 9, 10, 11], "each hand-out ends with the batch that reaches the limit");
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
            marker(1, 7, false),
            batch(&[txn(2, 7, "c2")], Compression::None),
            marker(3, 7, true),
            batch(&[txn(4, 7, "a4")], Compression::Zstd),
            batch(&[txn(5, 5, "c5")], Compression::None),
            marker(6, 7, false),
            marker(7, 5, true),
        ]);
        let aborted = [(7, 4), (7, 0)];
        let d = decode_partition(data, &fetch(&topic, 0, IsolationLevel::ReadCommitted, &aborted, 8));
        assert_eq!(values(&d), vec!["c2", "c5"]);
        assert_eq!(d.next_offset, 8);
    }

    #[test]
    fn only_control_batches_still_move_the_position() {
        let topic: Arc<str> = Arc::from("t");
        let data = concat(&[marker(4, 7, true)]);
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
            let d = super::decode_partition(&data, &fetch(&topic, 0, IsolationLevel::ReadUncommitted, &[], -1), &budget);
            assert!(d.records.is_empty(), "{compression:?}");
            let error = d.error.unwrap_or_else(|| panic!("{compression:?}: decoded"));
            assert!(error.contains("decompress to more than 1048576 bytes"), "{compression:?}: {error}");
        }
    }

    /// The batches of one hand-out share the budget: one that would pass what the others left
    /// stays, without an error, for the next hand-out (a fresh budget).
    #[test]
    fn a_hand_out_shares_one_decompression_budget() {
        let topic: Arc<str> = Arc::from("t");
        let big = |offset| Record { value: Some(Bytes::from(vec![7u8; 600 << 10])), ..record(offset, "") };
        let data = concat(&[
            batch(&[record(0, "a")], Compression::None),
            batch(&[big(1)], Compression::Zstd),
            batch(&[big(2)], Compression::Zstd),
        ]);
        let (mut wire, _) = WireRecords::scan(&data, &fetch(&topic, 0, IsolationLevel::ReadUncommitted, &[], -1));
        let first = wire.decode(usize::MAX, &DecompressionBudget::new(1 << 20));
        assert_eq!((offsets(&first), first.next_offset, first.error), (vec![0, 1], 2, None));
        assert!(!wire.is_empty());
        let second = wire.decode(usize::MAX, &DecompressionBudget::new(1 << 20));
        assert_eq!((offsets(&second), second.next_offset, second.error), (vec![2], 3, None));
        assert!(wire.is_empty());
    }

    #[test]
    fn log_append_time_uses_the_batch_timestamp() {
        let topic: Arc<str> = Arc::from("t");
        let mut b = batch(&[record(0, "a"), record(1, "b")], Compression::None).to_vec();
        b[22] |= ATTR_LOG_APPEND_TIME as u8;
        resign(&mut b);
        let d = decode_partition(Bytes::from(b), &fetch(&topic, 0, IsolationLevel::ReadUncommitted, &[], -1));
        let stamps: Vec<(i64, TimestampType)> = d.records.iter().map(|r| (r.timestamp(), r.timestamp_type())).collect();
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
        let stamps: Vec<(i64, TimestampType)> = d.records.iter().map(|r| (r.timestamp(), r.timestamp_type())).collect();
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
                prop_assert_eq!((got.offset(), got.timestamp()), (want.offset, want.timestamp));
                prop_assert_eq!((got.key(), got.value()), (want.key.as_deref(), want.value.as_deref()));
                let headers: Vec<(&str, Option<&[u8]>)> =
                    want.headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
                prop_assert_eq!(got.headers().collect::<Vec<_>>(), headers);
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
        let records = records.freeze();
        let batch = Arc::new(BatchData {
            topic: Arc::from("t"),
            partition: 0,
            timestamp_type: TimestampType::CreateTime,
            bytes: records.clone(),
        });
        let mut got = Vec::new();
        parse_records(&records, 1, 10, 0, |r| got.push(ConsumerRecord::decoded(&batch, r))).unwrap();
        assert_eq!(got[0].offset(), 10);
        assert_eq!(got[0].headers().collect::<Vec<_>>(), vec![("h", Some(&b"a"[..])), ("h", Some(&b"b"[..]))]);
    }

    #[test]
    fn varints_round_trip() {
        for v in [0i64, 1, -1, 63, -64, 64, 300, -300, i32::MAX as i64, i32::MIN as i64, i64::MAX, i64::MIN] {
            let mut buf = bytes::BytesMut::new();
            super::super::record::put_varint(&mut buf, v);
            let mut s = &buf[..];
            assert_eq!(read_varint(&mut s), Some(v));
            assert!(s.is_empty());
        }
        assert_eq!(read_varint(&mut &[0x80u8; 11][..]), None);
    }
}
