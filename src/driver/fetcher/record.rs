//! [`ConsumerRecord`]: one record, as offsets into its batch's bytes.
//!
//! A record keeps one reference-counted handle, to its batch's (decompressed) record bytes,
//! topic and partition, and the positions of its key, value and headers in those bytes: 56
//! bytes, whatever it carries. The accessors slice the bytes without copying; the bytes are
//! freed when the last record of the batch is dropped.

use std::fmt;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::TimestampType;

/// A record's batch: what its records share.
#[derive(Debug)]
pub(super) struct BatchData {
    pub(super) topic: Arc<str>,
    pub(super) partition: i32,
    pub(super) timestamp_type: TimestampType,
    /// The batch's records as on the wire (decompressed when the batch was compressed).
    pub(super) bytes: Bytes,
}

/// Where a field sits in its batch's bytes; a null field has length [`Span::NULL_LEN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) start: u32,
    pub(super) len: u32,
}

impl Span {
    const NULL_LEN: u32 = u32::MAX;
    pub(super) const NULL: Span = Span { start: 0, len: Self::NULL_LEN };
    pub(super) const EMPTY: Span = Span { start: 0, len: 0 };

    /// The span of `field`, a sub-slice of `data` (a batch is shorter than 2 GiB).
    pub(super) fn of(data: &[u8], field: &[u8]) -> Span {
        let start = field.as_ptr() as usize - data.as_ptr() as usize;
        Span { start: start as u32, len: field.len() as u32 }
    }

    pub(super) fn get(self, bytes: &[u8]) -> Option<&[u8]> {
        if self.len == Self::NULL_LEN {
            return None;
        }
        let start = self.start as usize;
        bytes.get(start..start + self.len as usize)
    }

    fn slice(self, bytes: &Bytes) -> Option<Bytes> {
        self.get(bytes).map(|field| bytes.slice_ref(field))
    }
}

/// One record as the application sees it. Cloning it is cheap (one reference count); the
/// key, value and header accessors return slices of the fetched bytes.
#[derive(Clone)]
pub struct ConsumerRecord {
    batch: Arc<BatchData>,
    offset: i64,
    timestamp: i64,
    key: Span,
    value: Span,
    /// The headers as on the wire: `header_count` times (key length, key, value length, value).
    headers: Span,
    header_count: u32,
}

/// What the decoder found for one record.
pub(super) struct RecordParts {
    pub(super) offset: i64,
    pub(super) timestamp: i64,
    pub(super) key: Span,
    pub(super) value: Span,
    pub(super) headers: Span,
    pub(super) header_count: u32,
}

impl ConsumerRecord {
    /// A record of `batch`, whose header names the decoder has checked are UTF-8.
    pub(super) fn decoded(batch: &Arc<BatchData>, parts: RecordParts) -> Self {
        let RecordParts { offset, timestamp, key, value, headers, header_count } = parts;
        ConsumerRecord { batch: batch.clone(), offset, timestamp, key, value, headers, header_count }
    }

    /// A record made by the application (in its own tests, say): a create-time timestamp of 0,
    /// no key, no headers; see the `with_*` methods.
    pub fn new(topic: &str, partition: i32, offset: i64, value: Option<&[u8]>) -> Self {
        Self::build(Arc::from(topic), partition, offset, (0, TimestampType::CreateTime), None, value, &[])
    }

    /// This record with another key.
    pub fn with_key(&self, key: Option<&[u8]>) -> Self {
        self.rebuild(key, self.value(), &self.header_list())
    }

    /// This record with another timestamp.
    pub fn with_timestamp(&self, timestamp: i64, timestamp_type: TimestampType) -> Self {
        let headers = self.header_list();
        Self::build(
            self.batch.topic.clone(),
            self.partition(),
            self.offset,
            (timestamp, timestamp_type),
            self.key(),
            self.value(),
            &headers,
        )
    }

    /// This record with one more header (after the others).
    pub fn with_header(&self, name: &str, value: Option<&[u8]>) -> Self {
        let mut headers = self.header_list();
        headers.push((name, value));
        self.rebuild(self.key(), self.value(), &headers)
    }

    fn header_list(&self) -> Vec<(&str, Option<&[u8]>)> {
        self.headers().collect()
    }

    fn rebuild(&self, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, Option<&[u8]>)]) -> Self {
        let time = (self.timestamp, self.timestamp_type());
        Self::build(self.batch.topic.clone(), self.partition(), self.offset, time, key, value, headers)
    }

    /// Lays key, value and headers out as the wire does and points at them.
    fn build(
        topic: Arc<str>,
        partition: i32,
        offset: i64,
        (timestamp, timestamp_type): (i64, TimestampType),
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) -> Self {
        let mut buf = BytesMut::new();
        let put = |buf: &mut BytesMut, field: Option<&[u8]>| match field {
            None => Span::NULL,
            Some(field) => {
                let start = buf.len() as u32;
                buf.put_slice(field);
                Span { start, len: field.len() as u32 }
            }
        };
        let key = put(&mut buf, key);
        let value = put(&mut buf, value);
        let headers_start = buf.len() as u32;
        for (name, value) in headers {
            put_varint(&mut buf, name.len() as i64);
            buf.put_slice(name.as_bytes());
            match value {
                None => put_varint(&mut buf, -1),
                Some(value) => {
                    put_varint(&mut buf, value.len() as i64);
                    buf.put_slice(value);
                }
            }
        }
        let headers_span = Span { start: headers_start, len: buf.len() as u32 - headers_start };
        let batch = Arc::new(BatchData { topic, partition, timestamp_type, bytes: buf.freeze() });
        let parts = RecordParts {
            offset,
            timestamp,
            key,
            value,
            headers: headers_span,
            header_count: headers.len() as u32,
        };
        Self::decoded(&batch, parts)
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.batch.topic
    }

    /// The partition.
    pub fn partition(&self) -> i32 {
        self.batch.partition
    }

    /// The record's offset in its partition.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// Milliseconds since the epoch: create time, or log append time when the topic says so
    /// ([`timestamp_type`](Self::timestamp_type)).
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// What [`timestamp`](Self::timestamp) is.
    pub fn timestamp_type(&self) -> TimestampType {
        self.batch.timestamp_type
    }

    /// The key (`None`: null).
    pub fn key(&self) -> Option<&[u8]> {
        self.key.get(&self.batch.bytes)
    }

    /// The value (`None`: null, a tombstone).
    pub fn value(&self) -> Option<&[u8]> {
        self.value.get(&self.batch.bytes)
    }

    /// The key as shared bytes, to keep beyond the record without copying.
    pub fn key_bytes(&self) -> Option<Bytes> {
        self.key.slice(&self.batch.bytes)
    }

    /// The value as shared bytes, to keep beyond the record without copying.
    pub fn value_bytes(&self) -> Option<Bytes> {
        self.value.slice(&self.batch.bytes)
    }

    /// The headers, in order, as `(name, value)`; a header value may be null.
    pub fn headers(&self) -> Headers<'_> {
        let bytes = self.headers.get(&self.batch.bytes).unwrap_or_default();
        Headers { rest: bytes, left: self.header_count }
    }
}

impl PartialEq for ConsumerRecord {
    fn eq(&self, other: &Self) -> bool {
        self.topic() == other.topic()
            && self.partition() == other.partition()
            && self.offset == other.offset
            && self.timestamp == other.timestamp
            && self.timestamp_type() == other.timestamp_type()
            && self.key() == other.key()
            && self.value() == other.value()
            && self.headers().eq(other.headers())
    }
}

impl Eq for ConsumerRecord {}

impl fmt::Debug for ConsumerRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerRecord")
            .field("topic", &self.topic())
            .field("partition", &self.partition())
            .field("offset", &self.offset)
            .field("timestamp", &self.timestamp)
            .field("timestamp_type", &self.timestamp_type())
            .field("key", &self.key().map(Bytes::copy_from_slice))
            .field("value", &self.value().map(Bytes::copy_from_slice))
            .field("headers", &self.headers().collect::<Vec<_>>())
            .finish()
    }
}

/// A record's headers, read from its bytes as they are iterated.
#[derive(Debug, Clone)]
pub struct Headers<'a> {
    rest: &'a [u8],
    left: u32,
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a str, Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The decoder checked every header of the record, so none of this fails.
        let name = read_field(&mut self.rest)?.and_then(|name| std::str::from_utf8(name).ok())?;
        let value = read_field(&mut self.rest)?;
        Some((name, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}

/// A varint-length-prefixed nullable field.
fn read_field<'a>(rest: &mut &'a [u8]) -> Option<Option<&'a [u8]>> {
    let length = super::decode::read_varint(rest)?;
    if length < 0 {
        return Some(None);
    }
    let length = usize::try_from(length).ok()?;
    let field = rest.get(..length)?;
    *rest = &rest[length..];
    Some(Some(field))
}

/// A zig-zag varint, as Kafka's record fields are written.
pub(super) fn put_varint(buf: &mut BytesMut, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        buf.put_u8((zigzag as u8 & 0x7f) | 0x80);
        zigzag >>= 7;
    }
    buf.put_u8(zigzag as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_a_few_words() {
        assert_eq!(std::mem::size_of::<ConsumerRecord>(), 56);
    }

    #[test]
    fn a_made_record_reads_back_what_it_was_given() {
        let record = ConsumerRecord::new("t", 3, 42, Some(b"value"))
            .with_key(Some(b"key"))
            .with_header("a", Some(b"1"))
            .with_header("b", None)
            .with_timestamp(7, TimestampType::LogAppendTime);
        assert_eq!((record.topic(), record.partition(), record.offset()), ("t", 3, 42));
        assert_eq!((record.timestamp(), record.timestamp_type()), (7, TimestampType::LogAppendTime));
        assert_eq!(record.key(), Some(&b"key"[..]));
        assert_eq!(record.value(), Some(&b"value"[..]));
        assert_eq!(record.value_bytes().as_deref(), Some(&b"value"[..]));
        assert_eq!(record.headers().collect::<Vec<_>>(), vec![("a", Some(&b"1"[..])), ("b", None)]);
        let tombstone = ConsumerRecord::new("t", 0, 0, None);
        assert_eq!((tombstone.key(), tombstone.value(), tombstone.headers().count()), (None, None, 0));
        assert_ne!(record, record.with_header("c", Some(b"")));
        assert_eq!(record, record.clone());
    }
}
