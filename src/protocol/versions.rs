//! ApiVersions negotiation: per broker, `min(ours, broker's)` for every API we send.

use std::collections::BTreeMap;
use std::fmt;

use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

use super::ProtocolError;

/// The APIs this client sends and the version range it implements for each.
///
/// Floors follow what `kafka-protocol` can encode (OffsetCommit >= 2, OffsetFetch >= 1,
/// Fetch >= 4, Produce >= 3). Ceilings stop where the next version changes semantics we do not
/// implement: Fetch 13 and Produce 13 switch to topic ids (KIP-516), FindCoordinator 5 adds a
/// transaction error (KIP-890), OffsetCommit 10 names topics by id. OffsetCommit 9 carries the member
/// epoch of KIP-848's consumer protocol: only its members send it (a classic member stays at 8;
/// v9 is unstable in Kafka 3.6, which does not offer it).
pub const CLIENT_RANGES: &[(ApiKey, i16, i16)] = &[
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::DescribeGroups, 0, 5),
    // KIP-848's consumer group protocol; v1 lets the member choose its id (KIP-1082).
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    // `kgroup::admin`; v4 adds group states (KIP-518), v5 group types of the new protocol.
    (ApiKey::ListGroups, 0, 4),
    // v0 sent the SASL tokens as raw frames (before KIP-152); only the framed exchange is done.
    (ApiKey::SaslHandshake, 1, 1),
    // v1 adds session_lifetime_ms (KIP-368); v2 is flexible.
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// The version chosen for each API on one broker connection.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NegotiatedVersions {
    chosen: BTreeMap<i16, i16>,
}

impl NegotiatedVersions {
    /// Intersects our ranges with the broker's answer. APIs the broker lacks, or whose ranges do
    /// not overlap ours, are left out; asking for them gives [`ProtocolError::UnsupportedApi`].
    pub fn negotiate(response: &ApiVersionsResponse) -> Self {
        let broker: BTreeMap<i16, (i16, i16)> =
            response.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        let chosen = CLIENT_RANGES
            .iter()
            .filter_map(|&(api, our_min, our_max)| {
                let &(their_min, their_max) = broker.get(&(api as i16))?;
                let version = our_max.min(their_max);
                (version >= our_min.max(their_min)).then_some((api as i16, version))
            })
            .collect();
        NegotiatedVersions { chosen }
    }

    /// Our own maxima, for talking to a peer before (or without) negotiation.
    pub fn client_maxima() -> Self {
        let chosen = CLIENT_RANGES.iter().map(|&(api, _, max)| (api as i16, max)).collect();
        NegotiatedVersions { chosen }
    }

    /// The version to use for `api`.
    pub fn get(&self, api: ApiKey) -> Result<i16, ProtocolError> {
        self.chosen.get(&(api as i16)).copied().ok_or(ProtocolError::UnsupportedApi { api })
    }

    /// Lowers the version of `api` to at most `max` (for peers that misbehave above it).
    pub fn cap(&mut self, api: ApiKey, max: i16) {
        if let Some(v) = self.chosen.get_mut(&(api as i16)) {
            *v = (*v).min(max);
        }
    }

    /// `(api, version)` pairs, for logs and snapshots.
    pub fn iter(&self) -> impl Iterator<Item = (ApiKey, i16)> + '_ {
        self.chosen.iter().filter_map(|(&k, &v)| ApiKey::try_from(k).ok().map(|api| (api, v)))
    }
}

impl fmt::Debug for NegotiatedVersions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter().map(|(api, v)| (format!("{api:?}"), v))).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;

    fn broker(ranges: &[(ApiKey, i16, i16)]) -> ApiVersionsResponse {
        ApiVersionsResponse::default().with_api_keys(
            ranges
                .iter()
                .map(|&(k, min, max)| {
                    ApiVersion::default().with_api_key(k as i16).with_min_version(min).with_max_version(max)
                })
                .collect(),
        )
    }

    #[test]
    fn picks_the_lower_maximum_and_respects_floors() {
        let v = NegotiatedVersions::negotiate(&broker(&[
            (ApiKey::JoinGroup, 0, 9),
            (ApiKey::OffsetCommit, 0, 10), // Kafka 4.1+: v10 names topics by id
            (ApiKey::Fetch, 0, 16),
            (ApiKey::LeaveGroup, 0, 2),
            (ApiKey::OffsetFetch, 0, 0), // only ZooKeeper storage: below our floor
        ]));
        assert_eq!(v.get(ApiKey::JoinGroup), Ok(9));
        assert_eq!(v.get(ApiKey::OffsetCommit), Ok(9));
        assert_eq!(v.get(ApiKey::Fetch), Ok(12));
        assert_eq!(v.get(ApiKey::LeaveGroup), Ok(2));
        assert_eq!(v.get(ApiKey::OffsetFetch), Err(ProtocolError::UnsupportedApi { api: ApiKey::OffsetFetch }));
        assert!(v.get(ApiKey::Heartbeat).is_err());
    }

    #[test]
    fn cap_only_lowers() {
        let mut v = NegotiatedVersions::client_maxima();
        v.cap(ApiKey::JoinGroup, 5);
        v.cap(ApiKey::SyncGroup, 50);
        assert_eq!(v.get(ApiKey::JoinGroup), Ok(5));
        assert_eq!(v.get(ApiKey::SyncGroup), Ok(5));
    }
}
