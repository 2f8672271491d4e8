//! The consumer protocol's subscription and assignment, as the leader reads every member's
//! JoinGroup metadata and every member its SyncGroup assignment: any bytes give a value or an
//! error, and a value encodes and decodes back to itself.
#![no_main]

use bytes::Bytes;
use kgroup::group::assignor::{decode_assignment, encode_assignment, Subscription};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(subscription) = Subscription::decode(&bytes) {
        let again = Subscription::decode(&subscription.encode()).expect("an encoded subscription decodes");
        assert_eq!(again.topics, subscription.topics);
        assert_eq!(again.user_data, subscription.user_data);
    }
    if let Ok(partitions) = decode_assignment(&bytes) {
        let again = decode_assignment(&encode_assignment(&partitions, None)).expect("an encoded assignment decodes");
        assert_eq!(again, partitions);
    }
});
