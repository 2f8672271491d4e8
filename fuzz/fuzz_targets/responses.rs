//! Every response decoder kgroup uses: the first byte picks the API, the second the version,
//! the rest is the frame after its size (header, then body), decoded by
//! `kgroup::protocol::codec::decode_response` as a connection does. Any bytes give a response or
//! an error; none may abort the process or allocate past the bytes they hold.
#![no_main]

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Message, Request};
use kgroup::protocol::codec::decode_response;
use libfuzzer_sys::fuzz_target;

fn decode<R: Request>(version: u8, frame: &[u8]) {
    let range = R::Response::VERSIONS;
    let span = (range.max - range.min + 1) as u8;
    let version = range.min + (version % span) as i16;
    let _ = decode_response::<R>(Bytes::copy_from_slice(frame), version);
}

fuzz_target!(|data: &[u8]| {
    let [api, version, frame @ ..] = data else { return };
    match api % 16 {
        0 => decode::<ApiVersionsRequest>(*version, frame),
        1 => decode::<MetadataRequest>(*version, frame),
        2 => decode::<ProduceRequest>(*version, frame),
        3 => decode::<FetchRequest>(*version, frame),
        4 => decode::<ListOffsetsRequest>(*version, frame),
        5 => decode::<CreateTopicsRequest>(*version, frame),
        6 => decode::<FindCoordinatorRequest>(*version, frame),
        7 => decode::<JoinGroupRequest>(*version, frame),
        8 => decode::<SyncGroupRequest>(*version, frame),
        9 => decode::<HeartbeatRequest>(*version, frame),
        10 => decode::<LeaveGroupRequest>(*version, frame),
        11 => decode::<OffsetCommitRequest>(*version, frame),
        12 => decode::<OffsetFetchRequest>(*version, frame),
        13 => decode::<DescribeGroupsRequest>(*version, frame),
        14 => decode::<SaslHandshakeRequest>(*version, frame),
        _ => decode::<SaslAuthenticateRequest>(*version, frame),
    }
});
