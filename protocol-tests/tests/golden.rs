//! Golden bytes (issue 6, item 4): for every version of every group API kgroup sends, the exact
//! request and response frames, written by hand from Apache Kafka 3.6.2's message schemas in
//! `fixtures/golden/<Api>.txt`, one annotated field a line. Requests come from the builders the
//! group machine sends with (`kgroup::group::build`) and must encode to the fixture byte for byte;
//! responses are decoded through kgroup's frame and response decoders and must give the expected
//! values. The fixtures are never produced by the encoder under test, so a bug in
//! `kafka-protocol` or in our use of it shows up here.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::PathBuf;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{decode_request_header_from_buffer, Request, StrBytes};
use kgroup::group::assignor::{decode_assignment, encode_assignment, Subscription};
use kgroup::group::{build, Generation, GenerationId, GroupConfig, MemberId, TopicPartition};
use kgroup::protocol::codec::{decode_response, encode_request};
use kgroup::protocol::frame::{decode_frame, DEFAULT_MAX_FRAME_SIZE};
use kgroup::protocol::versions::CLIENT_RANGES;

/// The header values `fixtures/request-headers.txt` is written for; the golden requests reuse
/// its header lines rather than repeat them.
const CORRELATION_ID: i32 = 0x0102_0304;
const CLIENT_ID: &str = "kgroup";

const GROUP: &str = "grp";
const MEMBER: &str = "m-1";
const INSTANCE: &str = "i-1";
const GENERATION: i32 = 7;
const THROTTLE_MS: i32 = 100;

/// The group APIs and how to check each; their versions come from `CLIENT_RANGES`, so a version
/// added there without fixtures fails [`every_group_api_version_matches_its_golden_bytes`].
const GROUP_APIS: &[(ApiKey, Checker)] = &[
    (ApiKey::FindCoordinator, check_version::<FindCoordinatorRequest>),
    (ApiKey::JoinGroup, check_version::<JoinGroupRequest>),
    (ApiKey::SyncGroup, check_version::<SyncGroupRequest>),
    (ApiKey::Heartbeat, check_version::<HeartbeatRequest>),
    (ApiKey::LeaveGroup, check_version::<LeaveGroupRequest>),
    (ApiKey::OffsetCommit, check_version::<OffsetCommitRequest>),
    (ApiKey::OffsetFetch, check_version::<OffsetFetchRequest>),
];

type Checker = fn(&Fixture, i16) -> Vec<String>;

#[test]
fn every_group_api_version_matches_its_golden_bytes() {
    let mut failures = Vec::new();
    for &(api, check) in GROUP_APIS {
        let (lo, hi) = CLIENT_RANGES
            .iter()
            .find(|&&(a, _, _)| a == api)
            .map(|&(_, lo, hi)| (lo, hi))
            .unwrap_or_else(|| panic!("{api:?} is missing from CLIENT_RANGES"));
        let fixture = Fixture::load(api).unwrap_or_else(|e| panic!("{e}"));
        for (&(direction, version), section) in &fixture.sections {
            if !(lo..=hi).contains(&version) {
                failures.push(format!("{}: {direction} v{version} is outside kgroup's {lo}..={hi}", section.at(0)));
            }
        }
        for version in lo..=hi {
            failures.extend(check(&fixture, version));
        }
    }
    assert!(failures.is_empty(), "{} golden mismatches:\n\n{}", failures.len(), failures.join("\n\n"));
}

// ---------------------------------------------------------------------------------------------
// What kgroup sends and what it must read back, per API.

/// One group API's representative request, built as the group machine (or, for FindCoordinator,
/// the cluster driver) builds it, and the values its golden response must decode to. The
/// builders are private to the machine, so these mirror their version gates field by field.
trait Golden: Request + Debug + PartialEq<Self> + Sized
where
    Self::Response: Debug + PartialEq,
{
    fn request(version: i16) -> Self;
    fn response(version: i16) -> Self::Response;
    /// Reads the consumer-protocol payloads inside a decoded response with kgroup's own decoders.
    fn check_payloads(_response: &Self::Response) -> Result<(), String> {
        Ok(())
    }
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

/// A static member of [`GROUP`] with the range assignor.
fn config() -> GroupConfig {
    let mut config = GroupConfig::new(GROUP);
    config.group_instance_id = Some(INSTANCE.into());
    config.session_timeout = Duration::from_secs(45);
    config.rebalance_timeout = Duration::from_secs(300);
    config
}

fn generation() -> Generation {
    Generation { id: GenerationId(GENERATION), member_id: MemberId::new(MEMBER) }
}

/// A subscription with every field of consumer protocol v3 set.
fn full_subscription() -> Subscription {
    Subscription {
        topics: vec!["a".into(), "b".into()],
        owned_partitions: vec![tp("a", 0), tp("a", 2)],
        generation: GenerationId(6),
        rack: Some("r1".into()),
        user_data: Some(Bytes::from_static(&[0xca, 0xfe])),
    }
}

/// What an old (consumer protocol v0) member's subscription in the fixture decodes to.
fn v0_subscription() -> Subscription {
    Subscription { topics: vec!["b".into()], generation: GenerationId::NONE, ..Subscription::default() }
}

fn leader_assignment() -> Bytes {
    encode_assignment(&[tp("a", 0), tp("a", 2)], Some(Bytes::from_static(&[0xbe, 0xef])))
}

impl Golden for FindCoordinatorRequest {
    fn request(version: i16) -> Self {
        if version >= 4 {
            Self::default().with_key_type(0).with_coordinator_keys(vec![s(GROUP)])
        } else {
            Self::default().with_key(s(GROUP))
        }
    }

    fn response(version: i16) -> FindCoordinatorResponse {
        use find_coordinator_response::Coordinator;
        let response =
            FindCoordinatorResponse::default().with_throttle_time_ms(if version >= 1 { THROTTLE_MS } else { 0 });
        if version >= 4 {
            response.with_coordinators(vec![
                Coordinator::default()
                    .with_key(s(GROUP))
                    .with_node_id(BrokerId(2))
                    .with_host(s("b2"))
                    .with_port(9092)
                    .with_error_message(None),
                Coordinator::default()
                    .with_key(s("g2"))
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(14)
                    .with_error_message(Some(s("loading"))),
            ])
        } else {
            // The error message (v1-3) is null on the wire; v0 lacks it and keeps the default.
            let message = if version >= 1 { None } else { FindCoordinatorResponse::default().error_message };
            response.with_error_message(message).with_node_id(BrokerId(2)).with_host(s("b2")).with_port(9092)
        }
    }
}

impl Golden for JoinGroupRequest {
    fn request(version: i16) -> Self {
        build::join_group(&config(), MEMBER, &full_subscription().encode(), "rejoin", version)
    }

    fn response(version: i16) -> JoinGroupResponse {
        use join_group_response::JoinGroupResponseMember;
        let instance = (version >= 5).then(|| s(INSTANCE));
        JoinGroupResponse::default()
            .with_throttle_time_ms(if version >= 2 { THROTTLE_MS } else { 0 })
            .with_generation_id(GENERATION)
            .with_protocol_type((version >= 7).then(|| s("consumer")))
            .with_protocol_name(Some(s("range")))
            .with_leader(s(MEMBER))
            .with_skip_assignment(version >= 9)
            .with_member_id(s(MEMBER))
            .with_members(vec![
                JoinGroupResponseMember::default()
                    .with_member_id(s(MEMBER))
                    .with_group_instance_id(instance)
                    .with_metadata(full_subscription().encode()),
                JoinGroupResponseMember::default().with_member_id(s("m-2")).with_metadata(v0_subscription_bytes()),
            ])
    }

    fn check_payloads(response: &JoinGroupResponse) -> Result<(), String> {
        let decoded: Vec<_> = response.members.iter().map(|m| Subscription::decode(&m.metadata)).collect();
        let expected = vec![Ok(full_subscription()), Ok(v0_subscription())];
        (decoded == expected).then_some(()).ok_or(format!("subscriptions: {decoded:?}, expected {expected:?}"))
    }
}

/// The v0 subscription as the fixture spells it: kgroup only writes v3, so this cannot come from
/// `Subscription::encode`; it is the fixture's own bytes, checked field by field there.
fn v0_subscription_bytes() -> Bytes {
    Bytes::from_static(&[0, 0, 0, 0, 0, 1, 0, 1, b'b', 0xff, 0xff, 0xff, 0xff])
}

impl Golden for SyncGroupRequest {
    fn request(version: i16) -> Self {
        let assignments =
            vec![(MEMBER.into(), leader_assignment()), ("m-2".into(), encode_assignment(&[tp("b", 1)], None))];
        build::sync_group(&config(), &generation(), "range", assignments, version)
    }

    fn response(version: i16) -> SyncGroupResponse {
        SyncGroupResponse::default()
            .with_throttle_time_ms(if version >= 1 { THROTTLE_MS } else { 0 })
            .with_protocol_type((version >= 5).then(|| s("consumer")))
            .with_protocol_name((version >= 5).then(|| s("range")))
            .with_assignment(leader_assignment())
    }

    fn check_payloads(response: &SyncGroupResponse) -> Result<(), String> {
        let decoded = decode_assignment(&response.assignment);
        let expected = Ok(vec![tp("a", 0), tp("a", 2)]);
        (decoded == expected).then_some(()).ok_or(format!("assignment: {decoded:?}, expected {expected:?}"))
    }
}

impl Golden for HeartbeatRequest {
    fn request(version: i16) -> Self {
        build::heartbeat(&config(), &generation(), version)
    }

    fn response(version: i16) -> HeartbeatResponse {
        HeartbeatResponse::default()
            .with_throttle_time_ms(if version >= 1 { THROTTLE_MS } else { 0 })
            .with_error_code(27)
    }
}

impl Golden for LeaveGroupRequest {
    fn request(version: i16) -> Self {
        build::leave_group(&config(), MEMBER, "bye", version)
    }

    fn response(version: i16) -> LeaveGroupResponse {
        use leave_group_response::MemberResponse;
        let response = LeaveGroupResponse::default().with_throttle_time_ms(if version >= 1 { THROTTLE_MS } else { 0 });
        if version >= 3 {
            response.with_members(vec![
                MemberResponse::default().with_member_id(s(MEMBER)).with_group_instance_id(None),
                MemberResponse::default()
                    .with_member_id(s("m-2"))
                    .with_group_instance_id(Some(s("i-2")))
                    .with_error_code(25),
            ])
        } else {
            response
        }
    }
}

/// Offset 2^32 + 5 exercises the high word of the int64.
const BIG_OFFSET: i64 = 0x1_0000_0005;

impl Golden for OffsetCommitRequest {
    fn request(version: i16) -> Self {
        let partitions = [tp("a", 0), tp("a", 2), tp("b", 1)];
        build::offset_commit(&config(), &generation(), partitions.iter().zip([BIG_OFFSET, 42, 7]), version)
    }

    fn response(version: i16) -> OffsetCommitResponse {
        use offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
        let partition =
            |index, code| OffsetCommitResponsePartition::default().with_partition_index(index).with_error_code(code);
        OffsetCommitResponse::default().with_throttle_time_ms(if version >= 3 { THROTTLE_MS } else { 0 }).with_topics(
            vec![
                OffsetCommitResponseTopic::default()
                    .with_name(TopicName(s("a")))
                    .with_partitions(vec![partition(0, 0), partition(2, 22)]),
                OffsetCommitResponseTopic::default()
                    .with_name(TopicName(s("b")))
                    .with_partitions(vec![partition(1, 27)]),
            ],
        )
    }
}

/// One committed offset in the OffsetFetch response: (partition, offset, leader epoch, metadata,
/// error code), per topic.
type FetchedOffset = (i32, i64, i32, Option<&'static str>, i16);
const FETCHED: &[(&str, &[FetchedOffset])] =
    &[("a", &[(0, BIG_OFFSET, 5, Some("m"), 0), (2, -1, -1, Some(""), 0)]), ("b", &[(1, 7, 3, None, 86)])];

/// [`FETCHED`] as one of the two topic/partition type pairs of OffsetFetch (v0-7 top-level, v8
/// per group): the same fields under different generated types.
macro_rules! fetched_topics {
    ($topic:ident, $partition:ident, $epoch:expr) => {
        FETCHED
            .iter()
            .map(|&(name, partitions)| {
                let partitions = partitions
                    .iter()
                    .map(|&(index, offset, leader_epoch, metadata, code)| {
                        $partition::default()
                            .with_partition_index(index)
                            .with_committed_offset(offset)
                            .with_committed_leader_epoch($epoch(leader_epoch))
                            .with_metadata(metadata.map(s))
                            .with_error_code(code)
                    })
                    .collect();
                $topic::default().with_name(TopicName(s(name))).with_partitions(partitions)
            })
            .collect()
    };
}

impl Golden for OffsetFetchRequest {
    fn request(version: i16) -> Self {
        build::offset_fetch(&config(), &[tp("a", 0), tp("a", 2), tp("b", 1)], version)
    }

    fn response(version: i16) -> OffsetFetchResponse {
        use offset_fetch_response::*;
        let response = OffsetFetchResponse::default().with_throttle_time_ms(if version >= 3 { THROTTLE_MS } else { 0 });
        if version >= 8 {
            let topics = fetched_topics!(OffsetFetchResponseTopics, OffsetFetchResponsePartitions, |e| e);
            let group = OffsetFetchResponseGroup::default().with_group_id(GroupId(s(GROUP))).with_topics(topics);
            return response.with_groups(vec![group]);
        }
        // A version without the leader epoch decodes it as the schema default, -1.
        response.with_topics(fetched_topics!(OffsetFetchResponseTopic, OffsetFetchResponsePartition, |e| {
            if version >= 5 {
                e
            } else {
                -1
            }
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// The checks.

/// Checks one version of one API: the request encodes to the fixture and decodes back (as a
/// broker would read it), and the response fixture decodes to the expected values.
fn check_version<R: Golden>(fixture: &Fixture, version: i16) -> Vec<String>
where
    R::Response: Debug + PartialEq,
{
    let api = fixture.api;
    let mut failures = Vec::new();
    let mut fail = |what: String| failures.push(format!("{api:?} v{version} {what}"));

    match fixture.sections.get(&(Direction::Request, version)) {
        None => fail(format!("request: no [request {version}] section in {}", fixture.file)),
        Some(section) => {
            let expected = R::request(version);
            match encode_request(&expected, version, CORRELATION_ID, CLIENT_ID) {
                Err(e) => fail(format!("request: kgroup cannot encode it: {e}")),
                Ok(encoded) => {
                    if let Some(diff) = section.diff(&encoded) {
                        fail(format!("request: encoder and fixture differ\n{diff}"));
                    }
                }
            }
            // The frame as a broker reads it: size, header, body.
            let mut body = Bytes::copy_from_slice(&section.bytes[4.min(section.bytes.len())..]);
            match decode_request_header_from_buffer(&mut body) {
                Err(e) => fail(format!("request: header does not decode: {e:#}")),
                Ok(_) => match R::decode(&mut body, version) {
                    Ok(decoded) if decoded == expected && body.is_empty() => {}
                    Ok(decoded) => fail(format!(
                        "request: the fixture decodes ({} bytes left over) to other values\n{}",
                        body.len(),
                        value_diff(&decoded, &expected)
                    )),
                    Err(e) => fail(format!("request: body does not decode: {e:#}")),
                },
            }
        }
    }

    match fixture.sections.get(&(Direction::Response, version)) {
        None => fail(format!("response: no [response {version}] section in {}", fixture.file)),
        Some(section) => {
            let mut buf = BytesMut::from(&section.bytes[..]);
            let decoded = decode_frame(&mut buf, DEFAULT_MAX_FRAME_SIZE)
                .map_err(|e| e.to_string())
                .and_then(|frame| frame.ok_or_else(|| "size prefix announces more bytes than the fixture has".into()))
                .and_then(|frame| decode_response::<R>(frame, version).map_err(|e| e.to_string()));
            let expected = R::response(version);
            match decoded {
                Err(e) => fail(format!("response: {e} ({})", section.at(0))),
                Ok(_) if !buf.is_empty() => fail(format!("response: {} bytes after the frame", buf.len())),
                Ok((header, _)) if header.correlation_id != CORRELATION_ID => {
                    fail(format!("response: correlation id {}", header.correlation_id))
                }
                Ok((_, body)) if body != expected => {
                    fail(format!("response: the fixture decodes to other values\n{}", value_diff(&body, &expected)))
                }
                Ok((_, body)) => {
                    if let Err(e) = R::check_payloads(&body) {
                        fail(format!("response: {e}"));
                    }
                }
            }
        }
    }
    failures
}

/// The decoded and the expected value side by side from their first differing `Debug` line, with
/// the line number and a little context, so the field stands out of a long message.
fn value_diff(decoded: &impl Debug, expected: &impl Debug) -> String {
    let (decoded, expected) = (format!("{decoded:#?}"), format!("{expected:#?}"));
    let (decoded, expected): (Vec<_>, Vec<_>) = (decoded.lines().collect(), expected.lines().collect());
    let first = decoded.iter().zip(&expected).position(|(d, e)| d != e).unwrap_or(decoded.len().min(expected.len()));
    let from = first.saturating_sub(3);
    let side = |lines: &[&str]| lines.iter().skip(from).take(first - from + 6).copied().collect::<Vec<_>>().join("\n");
    format!(
        "  first difference at Debug line {}\n  decoded:\n{}\n  expected:\n{}",
        first + 1,
        side(&decoded),
        side(&expected)
    )
}

// ---------------------------------------------------------------------------------------------
// The fixture format: `[request N]` / `[response N]` sections of `hex  # comment` lines; blanks
// and whitespace inside the hex are ignored; `@request-header` stands for the header line of
// `fixtures/request-headers.txt` for this API and version.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Direction {
    Request,
    Response,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Request => "request",
            Direction::Response => "response",
        })
    }
}

struct Fixture {
    api: ApiKey,
    file: String,
    sections: BTreeMap<(Direction, i16), Section>,
}

/// One frame's bytes, and for each fixture line the offset where its bytes start, so a
/// mismatch can name the field.
struct Section {
    bytes: Vec<u8>,
    lines: Vec<SourceLine>,
}

struct SourceLine {
    offset: usize,
    location: String,
    text: String,
}

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn hex_decode(hex: &str) -> Result<Vec<u8>, String> {
    if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("expected pairs of hex digits, found {hex:?}"));
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|e| e.to_string())).collect()
}

/// The header bytes for `api` at `version` from `request-headers.txt`.
fn request_header(api: ApiKey, version: i16) -> Result<Vec<u8>, String> {
    let path = fixtures_dir().join("request-headers.txt");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = format!("{api:?}");
    let line = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.len() == 3 && cols[0] == name && cols[1].parse() == Ok(version))
        .ok_or_else(|| format!("request-headers.txt has no line for {name} {version}"))?;
    hex_decode(line[2])
}

impl Fixture {
    fn load(api: ApiKey) -> Result<Fixture, String> {
        let file = format!("golden/{api:?}.txt");
        let path = fixtures_dir().join(&file);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut sections = BTreeMap::new();
        let mut current: Option<((Direction, i16), Section)> = None;
        for (index, raw) in text.lines().enumerate() {
            let location = format!("{file}:{}", index + 1);
            let bad = |what: String| format!("{location}: {what}");
            let (data, _comment) = raw.split_once('#').unwrap_or((raw, ""));
            let data = data.trim();
            if data.is_empty() {
                continue;
            }
            if let Some(header) = data.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                let (direction, version) = header.split_once(' ').ok_or_else(|| bad(format!("bad section {raw:?}")))?;
                let direction = match direction {
                    "request" => Direction::Request,
                    "response" => Direction::Response,
                    other => return Err(bad(format!("unknown direction {other:?}"))),
                };
                let version = version.parse().map_err(|_| bad(format!("bad version in {raw:?}")))?;
                if let Some((key, section)) = current.replace(((direction, version), Section::new())) {
                    sections.insert(key, section);
                }
                if sections.contains_key(&(direction, version)) {
                    return Err(bad(format!("second [{direction} {version}] section")));
                }
                continue;
            }
            let Some(((direction, version), section)) = current.as_mut() else {
                return Err(bad("bytes before the first section".into()));
            };
            let bytes = if data == "@request-header" {
                if *direction != Direction::Request {
                    return Err(bad("@request-header in a response".into()));
                }
                request_header(api, *version).map_err(bad)?
            } else {
                let hex: String = data.split_whitespace().collect();
                hex_decode(&hex).map_err(bad)?
            };
            section.lines.push(SourceLine { offset: section.bytes.len(), location, text: raw.trim().to_owned() });
            section.bytes.extend(bytes);
        }
        if let Some((key, section)) = current {
            sections.insert(key, section);
        }
        Ok(Fixture { api, file, sections })
    }
}

impl Section {
    fn new() -> Self {
        Section { bytes: Vec::new(), lines: Vec::new() }
    }

    /// The fixture line holding byte `offset` (the last line when past the end).
    fn line_at(&self, offset: usize) -> Option<&SourceLine> {
        self.lines.iter().take_while(|l| l.offset <= offset).last()
    }

    fn at(&self, offset: usize) -> String {
        self.line_at(offset).map_or_else(|| "empty section".into(), |l| l.location.clone())
    }

    /// Where `actual` first departs from the fixture: the offset, the fixture line (field) and
    /// both sides' bytes from the start of that field.
    fn diff(&self, actual: &[u8]) -> Option<String> {
        let expected = &self.bytes[..];
        let first = expected
            .iter()
            .zip(actual)
            .position(|(a, b)| a != b)
            .or_else(|| (expected.len() != actual.len()).then_some(expected.len().min(actual.len())))?;
        let line = self.line_at(first)?;
        let next = self.lines.iter().find(|l| l.offset > line.offset).map_or(expected.len(), |l| l.offset);
        let show = |bytes: &[u8], from: usize, to: usize| -> String {
            let to = to.min(bytes.len());
            bytes
                .get(from..to)
                .map_or(String::new(), |b| b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" "))
        };
        Some(format!(
            "  first difference at byte {first} (fixture {} bytes, encoded {} bytes)\n  field: {}  {}\n  fixture: {}\n  encoded: {}",
            expected.len(),
            actual.len(),
            line.location,
            line.text,
            show(expected, line.offset, next),
            show(actual, line.offset, next.max(first + 1) + 8),
        ))
    }
}
