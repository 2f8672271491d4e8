//! The bounds check every response body passes before `kafka-protocol` decodes it.
//!
//! `kafka-protocol` 0.18 reserves room for an array's elements from the count on the wire before
//! it reads one of them; a count of two billion makes the allocation fail, which aborts the
//! process (upstream pull requests 152, 161 and 200 are open). This walk goes through a body along
//! its [`schema`](super::schema) and checks every length and every array count against the bytes
//! left, recursing into each element, so a body that passes holds every element its decoder will
//! reserve for. It allocates nothing and takes time linear in the body: every element it walks
//! takes at least one byte. Bytes after the last field are left alone, as the decoder does.

use super::schema::{Field, Message, Type};

/// What makes a body fail the check, and in which field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub(crate) struct BoundsError {
    pub field: &'static str,
    pub problem: Problem,
}

/// What was wrong with the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum Problem {
    #[error("needs {needed} bytes, {left} left")]
    Truncated { needed: u64, left: usize },
    #[error("negative length {0}")]
    NegativeLength(i32),
    #[error("{count} elements of at least {min_size} bytes each cannot fit in the {left} bytes left")]
    CountPastTheBytes { count: u64, min_size: usize, left: usize },
    #[error("unsigned varint longer than 5 bytes")]
    LongVarint,
    #[error("tagged field {tag} is not in this version")]
    TagNotInVersion { tag: u32 },
    #[error("tagged field {tag} takes {used} of its {size} bytes")]
    TagSizeMismatch { tag: u32, size: usize, used: usize },
}

/// Checks `body`, a response body of `message` at `version` (without its header).
pub(crate) fn check(message: &Message, version: i16, body: &[u8]) -> Result<(), BoundsError> {
    let walk = Walk { version, flexible: version >= message.flexible_from };
    walk.fields(message.fields, &mut Cursor { rest: body, field: "body" })
}

struct Walk {
    version: i16,
    flexible: bool,
}

impl Walk {
    fn fields(&self, fields: &'static [Field], at: &mut Cursor<'_>) -> Result<(), BoundsError> {
        for field in fields.iter().filter(|f| f.tag.is_none() && f.in_version(self.version)) {
            at.field = field.name;
            self.value(&field.ty, at)?;
        }
        if self.flexible {
            self.tagged_fields(fields, at)?;
        }
        Ok(())
    }

    /// KIP-482's tagged section: a count, then `(tag, size, value)`. A known tag's value is
    /// walked within its size and must fill it: `kafka-protocol` reads a known tag's value from
    /// where it starts and ignores the size, so a size that disagrees would leave the two walks
    /// apart. Unknown tags are skipped by their size, as the decoder keeps them.
    fn tagged_fields(&self, fields: &'static [Field], at: &mut Cursor<'_>) -> Result<(), BoundsError> {
        at.field = "tagged fields";
        let count = at.uvarint()?;
        for _ in 0..count {
            let tag = at.uvarint()?;
            let size = at.uvarint()? as usize;
            let mut value = Cursor { rest: at.take(size as u64)?, field: "tagged field" };
            let Some(field) = fields.iter().find(|f| f.tag == Some(tag)) else { continue };
            value.field = field.name;
            if !field.in_version(self.version) {
                return Err(value.error(Problem::TagNotInVersion { tag }));
            }
            self.value(&field.ty, &mut value)?;
            if !value.rest.is_empty() {
                let used = size - value.rest.len();
                return Err(value.error(Problem::TagSizeMismatch { tag, size, used }));
            }
        }
        Ok(())
    }

    fn value(&self, ty: &'static Type, at: &mut Cursor<'_>) -> Result<(), BoundsError> {
        match ty {
            Type::Fixed(size) => at.take(u64::from(*size)).map(drop),
            Type::String => self.length(at, true).and_then(|n| at.take(n)).map(drop),
            Type::Bytes => self.length(at, false).and_then(|n| at.take(n)).map(drop),
            Type::Array(element) => {
                let count = self.length(at, false)?;
                let min_size = self.min_size(element).max(1);
                if count > (at.rest.len() / min_size) as u64 {
                    return Err(at.error(Problem::CountPastTheBytes { count, min_size, left: at.rest.len() }));
                }
                let field = at.field;
                for _ in 0..count {
                    self.value(element, at)?;
                    at.field = field;
                }
                Ok(())
            }
            Type::Struct(fields) => self.fields(fields, at),
            // The decoder reads the struct only after a marker of 1, anything else as null.
            Type::NullableStruct(fields) => match at.take(1)?[0] {
                1 => self.fields(fields, at),
                _ => Ok(()),
            },
        }
    }

    /// A length or count: int16 (strings) or int32, `-1` for null; in flexible versions an
    /// unsigned varint holding the length plus one, `0` for null. Null reads as zero.
    fn length(&self, at: &mut Cursor<'_>, int16: bool) -> Result<u64, BoundsError> {
        if self.flexible {
            return Ok(u64::from(at.uvarint()?.saturating_sub(1)));
        }
        let length = if int16 { i32::from(at.i16()?) } else { at.i32()? };
        match length {
            -1 => Ok(0),
            n => u64::try_from(n).map_err(|_| at.error(Problem::NegativeLength(n))),
        }
    }

    /// The fewest bytes a value of `ty` takes in this version.
    fn min_size(&self, ty: &'static Type) -> usize {
        match ty {
            Type::Fixed(size) => usize::from(*size),
            Type::String | Type::Bytes | Type::Array(_) if self.flexible => 1,
            Type::String => 2,
            Type::Bytes | Type::Array(_) => 4,
            Type::Struct(fields) => {
                let untagged: usize = fields
                    .iter()
                    .filter(|f| f.tag.is_none() && f.in_version(self.version))
                    .map(|f| self.min_size(&f.ty))
                    .sum();
                untagged + usize::from(self.flexible)
            }
            // The null marker alone.
            Type::NullableStruct(_) => 1,
        }
    }
}

/// The bytes not walked yet, and the field being walked (for errors).
struct Cursor<'a> {
    rest: &'a [u8],
    field: &'static str,
}

impl<'a> Cursor<'a> {
    fn error(&self, problem: Problem) -> BoundsError {
        BoundsError { field: self.field, problem }
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], BoundsError> {
        let left = self.rest.len();
        match usize::try_from(n) {
            Ok(n) if n <= left => {
                let (taken, rest) = self.rest.split_at(n);
                self.rest = rest;
                Ok(taken)
            }
            _ => Err(self.error(Problem::Truncated { needed: n, left })),
        }
    }

    fn i16(&mut self) -> Result<i16, BoundsError> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, BoundsError> {
        self.take(4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An unsigned varint of at most 5 bytes (a `u32`, as Kafka's `ByteUtils.readUnsignedVarint`).
    fn uvarint(&mut self) -> Result<u32, BoundsError> {
        let mut value = 0u32;
        for i in 0..5 {
            let byte = self.take(1)?[0];
            value |= u32::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.error(Problem::LongVarint))
    }
}

/// Runs `body` in a child process of this test binary when it is not that child already,
/// so that an abort fails the test named `test` instead of ending the whole run.
#[cfg(test)]
pub(crate) fn in_a_child_process(test: &str, body: impl FnOnce()) {
    const CHILD: &str = "KGROUP_TEST_CHILD";
    let test = test.strip_prefix("kgroup::").unwrap_or(test);
    if std::env::var(CHILD).as_deref() == Ok(test) {
        body();
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let output = std::process::Command::new(exe)
        .args([test, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD, test)
        .output()
        .expect("the test binary runs");
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains("1 passed"),
        "{test} in a child process: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, Bytes, BytesMut};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Decodable, Encodable, Message as _, Request};

    use super::*;
    use crate::protocol::codec::decode_response;
    use crate::protocol::schema::{self, RESPONSES};

    /// A body of `message` at `version` with every field present: two elements in every array,
    /// every tagged field of the version, non-default values throughout (so a re-encoding
    /// writes every tagged field back). Records where each array count was written: its offset
    /// and whether it is an unsigned varint.
    struct Sample {
        version: i16,
        flexible: bool,
        bytes: BytesMut,
        counts: Vec<(usize, bool)>,
    }

    impl Sample {
        fn of(message: &Message, version: i16) -> Sample {
            let flexible = version >= message.flexible_from;
            let mut sample = Sample { version, flexible, bytes: BytesMut::new(), counts: Vec::new() };
            sample.fields(message.fields);
            sample
        }

        fn fields(&mut self, fields: &'static [Field]) {
            let version = self.version;
            for field in fields.iter().filter(|f| f.tag.is_none() && f.in_version(version)) {
                self.value(&field.ty);
            }
            if self.flexible {
                let tagged: Vec<&Field> =
                    fields.iter().filter(|f| f.tag.is_some() && f.in_version(self.version)).collect();
                self.uvarint(tagged.len() as u32);
                for field in tagged {
                    let mut value =
                        Sample { version: self.version, flexible: true, bytes: BytesMut::new(), counts: Vec::new() };
                    value.value(&field.ty);
                    self.uvarint(field.tag.unwrap_or_default());
                    self.uvarint(value.bytes.len() as u32);
                    let at = self.bytes.len();
                    self.counts.extend(value.counts.iter().map(|&(offset, varint)| (at + offset, varint)));
                    self.bytes.extend_from_slice(&value.bytes);
                }
            }
        }

        fn value(&mut self, ty: &'static Type) {
            match ty {
                // 1 is `true` for a bool and not the default of any fixed-size field here.
                Type::Fixed(1) => self.bytes.put_u8(1),
                Type::Fixed(size) => (0..*size).for_each(|_| self.bytes.put_u8(7)),
                Type::String | Type::Bytes => {
                    self.length(1, matches!(ty, Type::String));
                    self.bytes.put_u8(b's');
                }
                Type::Array(element) => {
                    self.counts.push((self.bytes.len(), self.flexible));
                    self.length(2, false);
                    self.value(element);
                    self.value(element);
                }
                Type::Struct(fields) => self.fields(fields),
                Type::NullableStruct(fields) => {
                    self.bytes.put_u8(1);
                    self.fields(fields);
                }
            }
        }

        fn length(&mut self, n: u32, int16: bool) {
            match (self.flexible, int16) {
                (true, _) => self.uvarint(n + 1),
                (false, true) => self.bytes.put_i16(n as i16),
                (false, false) => self.bytes.put_i32(n as i32),
            }
        }

        fn uvarint(&mut self, mut n: u32) {
            while n >= 0x80 {
                self.bytes.put_u8((n as u8) | 0x80);
                n >>= 7;
            }
            self.bytes.put_u8(n as u8);
        }
    }

    /// What the tests need of each API's `kafka-protocol` types, with the API's own request and
    /// response types filled in by [`for_each_api`].
    trait Api {
        fn versions(&self) -> (i16, i16);
        /// Decodes `body` with `kafka-protocol` and encodes the result again.
        fn round_trip(&self, body: &[u8], version: i16) -> Result<Bytes, String>;
        /// `decode_response` on a frame of `body` behind a response header.
        fn decode_frame(&self, body: &[u8], version: i16) -> Result<(), ProtocolErrorText>;
    }

    type ProtocolErrorText = String;

    struct Typed<R>(std::marker::PhantomData<R>);

    impl<R: Request + 'static> Api for Typed<R>
    where
        R::Response: Decodable + Encodable,
    {
        fn versions(&self) -> (i16, i16) {
            (R::Response::VERSIONS.min, R::Response::VERSIONS.max)
        }

        fn round_trip(&self, body: &[u8], version: i16) -> Result<Bytes, String> {
            let decoded =
                R::Response::decode(&mut Bytes::copy_from_slice(body), version).map_err(|e| format!("{e:#}"))?;
            let mut out = BytesMut::new();
            decoded.encode(&mut out, version).map_err(|e| format!("{e:#}"))?;
            Ok(out.freeze())
        }

        fn decode_frame(&self, body: &[u8], version: i16) -> Result<(), ProtocolErrorText> {
            let api = crate::protocol::codec::api_key_of::<R>();
            let mut frame = BytesMut::new();
            frame.put_i32(1);
            if api.response_header_version(version) >= 1 {
                frame.put_u8(0);
            }
            frame.extend_from_slice(body);
            decode_response::<R>(frame.freeze(), version).map(drop).map_err(|e| e.to_string())
        }
    }

    fn typed<R: Request + 'static>() -> Box<dyn Api>
    where
        R::Response: Decodable + Encodable,
    {
        Box::new(Typed::<R>(std::marker::PhantomData))
    }

    /// Every schema with the `kafka-protocol` types of its API.
    fn for_each_api(mut each: impl FnMut(&'static Message, &dyn Api)) {
        for &message in RESPONSES {
            let api: Box<dyn Api> = match message.api {
                ApiKey::ApiVersions => typed::<ApiVersionsRequest>(),
                ApiKey::Metadata => typed::<MetadataRequest>(),
                ApiKey::Produce => typed::<ProduceRequest>(),
                ApiKey::Fetch => typed::<FetchRequest>(),
                ApiKey::ListOffsets => typed::<ListOffsetsRequest>(),
                ApiKey::CreateTopics => typed::<CreateTopicsRequest>(),
                ApiKey::FindCoordinator => typed::<FindCoordinatorRequest>(),
                ApiKey::JoinGroup => typed::<JoinGroupRequest>(),
                ApiKey::SyncGroup => typed::<SyncGroupRequest>(),
                ApiKey::Heartbeat => typed::<HeartbeatRequest>(),
                ApiKey::LeaveGroup => typed::<LeaveGroupRequest>(),
                ApiKey::OffsetCommit => typed::<OffsetCommitRequest>(),
                ApiKey::OffsetFetch => typed::<OffsetFetchRequest>(),
                ApiKey::DescribeGroups => typed::<DescribeGroupsRequest>(),
                ApiKey::SaslHandshake => typed::<SaslHandshakeRequest>(),
                ApiKey::SaslAuthenticate => typed::<SaslAuthenticateRequest>(),
                ApiKey::ListGroups => typed::<ListGroupsRequest>(),
                ApiKey::DeleteRecords => typed::<DeleteRecordsRequest>(),
                ApiKey::InitProducerId => typed::<InitProducerIdRequest>(),
                ApiKey::AddOffsetsToTxn => typed::<AddOffsetsToTxnRequest>(),
                ApiKey::TxnOffsetCommit => typed::<TxnOffsetCommitRequest>(),
                ApiKey::EndTxn => typed::<EndTxnRequest>(),
                ApiKey::ConsumerGroupHeartbeat => typed::<ConsumerGroupHeartbeatRequest>(),
                other => panic!("{other:?} has a schema but no types here"),
            };
            each(message, &*api);
        }
    }

    /// The schema walks the bytes `kafka-protocol` reads: a body with every field and tagged
    /// field of the version decodes, encodes back to the same bytes, and passes the check.
    #[test]
    fn every_schema_matches_kafka_protocols_decoder_in_every_version() {
        let mut failures = Vec::new();
        for_each_api(|message, api| {
            let (first, last) = api.versions();
            for version in first..=last {
                let sample = Sample::of(message, version);
                let what = format!("{:?} v{version}", message.api);
                match api.round_trip(&sample.bytes, version) {
                    Ok(again) if again == sample.bytes => {}
                    Ok(again) => {
                        failures.push(format!("{what}: re-encoded as {again:02x?}, sample {:02x?}", &sample.bytes[..]))
                    }
                    Err(e) => failures.push(format!("{what}: kafka-protocol refused the sample: {e}")),
                }
                if let Err(e) = check(message, version, &sample.bytes) {
                    failures.push(format!("{what}: the check refused the sample: {e}"));
                }
            }
        });
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// An array whose elements could take no bytes would let a count pass on no bytes at all.
    #[test]
    fn every_array_element_takes_bytes() {
        fn visit(fields: &'static [Field], walk: &Walk, path: &str) {
            for field in fields.iter().filter(|f| f.in_version(walk.version) && (walk.flexible || f.tag.is_none())) {
                let path = format!("{path}.{}", field.name);
                let mut ty = &field.ty;
                while let Type::Array(element) = ty {
                    assert!(walk.min_size(element) > 0, "{path} v{}", walk.version);
                    ty = element;
                }
                if let Type::Struct(inner) | Type::NullableStruct(inner) = ty {
                    visit(inner, walk, &path);
                }
            }
        }
        for message in RESPONSES {
            for version in 0..=20 {
                let walk = Walk { version, flexible: version >= message.flexible_from };
                visit(message.fields, &walk, &format!("{:?}", message.api));
            }
        }
    }

    /// Item 9 of issue 13: a count of two billion in any array of any response kgroup reads, in
    /// any version, is an error from `decode_response`; before the check, `kafka-protocol`
    /// reserved room for the count and the failed allocation aborted the process.
    #[test]
    fn a_huge_array_count_anywhere_is_an_error_not_an_abort() {
        in_a_child_process(concat!(module_path!(), "::a_huge_array_count_anywhere_is_an_error_not_an_abort"), || {
            let mut cases = 0;
            for_each_api(|message, api| {
                let (first, last) = api.versions();
                for version in first..=last {
                    let sample = Sample::of(message, version);
                    for &(offset, varint) in &sample.counts {
                        let mut body = sample.bytes[..offset].to_vec();
                        if varint {
                            body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
                            body.extend_from_slice(&sample.bytes[offset + 1..]);
                        } else {
                            body.extend_from_slice(&i32::MAX.to_be_bytes());
                            body.extend_from_slice(&sample.bytes[offset + 4..]);
                        }
                        let result = api.decode_frame(&body, version);
                        assert!(result.is_err(), "{:?} v{version}, count at {offset}: decoded", message.api);
                        cases += 1;
                    }
                }
            });
            assert!(cases > 500, "{cases}");
        });
    }

    #[test]
    fn errors_name_the_field_and_the_numbers() {
        let schema = schema::response(ApiKey::JoinGroup).unwrap();
        // v0: error code, generation, protocol name "", leader "", member id "", members: 1000.
        let body = [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0xe8];
        assert_eq!(
            check(schema, 0, &body),
            Err(BoundsError {
                field: "members",
                problem: Problem::CountPastTheBytes { count: 1000, min_size: 6, left: 0 }
            })
        );
        assert_eq!(
            check(schema, 0, &body[..5]),
            Err(BoundsError { field: "generation_id", problem: Problem::Truncated { needed: 4, left: 3 } })
        );
    }
}
