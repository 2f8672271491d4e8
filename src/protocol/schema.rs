//! The response schemas the bounds check walks ([`super::bounds`]): for every API whose answers
//! kgroup reads, and every version `kafka-protocol` 0.18 decodes, the fields in wire order with
//! the versions that carry them, their types, and their tags. Transcribed from Kafka's message
//! schemas (`clients/src/main/resources/common/message/*Response.json`) as `kafka-protocol` 0.18
//! generates its decoders from them, field for field; `bounds::tests` proves each one against
//! those decoders, version by version.
//!
//! Only what the walk needs is kept: whether a string, byte string or array may be null does not
//! change how many bytes it takes, and `records` travels as bytes.

use kafka_protocol::messages::ApiKey;

/// A field's wire type.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Type {
    /// A fixed number of bytes: int8 and bool 1, int16 and uint16 2, int32 4, int64 and float64 8,
    /// uuid 16.
    Fixed(u8),
    /// int16 length (uvarint length + 1 in flexible versions), then UTF-8.
    String,
    /// int32 length (uvarint length + 1 in flexible versions), then the bytes; also `records`.
    Bytes,
    /// int32 count (uvarint count + 1 in flexible versions), then the elements.
    Array(&'static Type),
    /// The fields in order, then (in flexible versions) the tagged fields.
    Struct(&'static [Field]),
    /// An int8 marker, then the struct if the marker is 1 (-1 is null): a nullable struct field.
    NullableStruct(&'static [Field]),
}

/// One field of a struct or message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub name: &'static str,
    /// The first and last version that carries the field.
    pub versions: (i16, i16),
    pub ty: Type,
    /// `Some(tag)` for a tagged field (KIP-482), which only flexible versions carry.
    pub tag: Option<u32>,
}

impl Field {
    const fn new(name: &'static str, first: i16, last: i16, ty: Type) -> Field {
        Field { name, versions: (first, last), ty, tag: None }
    }

    const fn tagged(tag: u32, name: &'static str, first: i16, last: i16, ty: Type) -> Field {
        Field { name, versions: (first, last), ty, tag: Some(tag) }
    }

    pub(crate) fn in_version(&self, version: i16) -> bool {
        (self.versions.0..=self.versions.1).contains(&version)
    }
}

/// One response body.
#[derive(Debug)]
pub(crate) struct Message {
    pub api: ApiKey,
    /// The first flexible version (KIP-482: compact lengths, tagged fields).
    pub flexible_from: i16,
    pub fields: &'static [Field],
}

/// The response schema of `api`, if kgroup reads that API.
pub(crate) fn response(api: ApiKey) -> Option<&'static Message> {
    RESPONSES.iter().copied().find(|m| m.api == api)
}

pub(crate) const RESPONSES: &[&Message] = &[
    &API_VERSIONS,
    &METADATA,
    &PRODUCE,
    &FETCH,
    &LIST_OFFSETS,
    &CREATE_TOPICS,
    &FIND_COORDINATOR,
    &JOIN_GROUP,
    &SYNC_GROUP,
    &HEARTBEAT,
    &LEAVE_GROUP,
    &OFFSET_COMMIT,
    &OFFSET_FETCH,
    &DESCRIBE_GROUPS,
    &SASL_HANDSHAKE,
    &SASL_AUTHENTICATE,
    // Read by the test suites through kgroup's connections.
    &LIST_GROUPS,
    &DELETE_RECORDS,
    &INIT_PRODUCER_ID,
    &ADD_OFFSETS_TO_TXN,
    &TXN_OFFSET_COMMIT,
    &END_TXN,
    // KIP-848's consumer group protocol, read by the Kafka 4 conformance cases.
    &CONSUMER_GROUP_HEARTBEAT,
];

const LATEST: i16 = i16::MAX;
const NEVER: i16 = i16::MAX;
const I8: Type = Type::Fixed(1);
const BOOL: Type = Type::Fixed(1);
const I16: Type = Type::Fixed(2);
const I32: Type = Type::Fixed(4);
const I64: Type = Type::Fixed(8);
const UUID: Type = Type::Fixed(16);
const STRING: Type = Type::String;
const BYTES: Type = Type::Bytes;

const fn array(of: &'static Type) -> Type {
    Type::Array(of)
}

/// ApiVersionsResponse v0-4.
const API_VERSIONS: Message = Message {
    api: ApiKey::ApiVersions,
    flexible_from: 3,
    fields: &[
        Field::new("error_code", 0, LATEST, I16),
        Field::new(
            "api_keys",
            0,
            LATEST,
            array(&Type::Struct(&[
                Field::new("api_key", 0, LATEST, I16),
                Field::new("min_version", 0, LATEST, I16),
                Field::new("max_version", 0, LATEST, I16),
            ])),
        ),
        Field::new("throttle_time_ms", 1, LATEST, I32),
        Field::tagged(
            0,
            "supported_features",
            0,
            LATEST,
            array(&Type::Struct(&[
                Field::new("name", 3, LATEST, STRING),
                Field::new("min_version", 3, LATEST, I16),
                Field::new("max_version", 3, LATEST, I16),
            ])),
        ),
        Field::tagged(1, "finalized_features_epoch", 0, LATEST, I64),
        Field::tagged(
            2,
            "finalized_features",
            0,
            LATEST,
            array(&Type::Struct(&[
                Field::new("name", 3, LATEST, STRING),
                Field::new("max_version_level", 3, LATEST, I16),
                Field::new("min_version_level", 3, LATEST, I16),
            ])),
        ),
        Field::tagged(3, "zk_migration_ready", 0, LATEST, BOOL),
    ],
};

/// MetadataResponse v0-13.
const METADATA: Message = Message {
    api: ApiKey::Metadata,
    flexible_from: 9,
    fields: &[
        Field::new("throttle_time_ms", 3, LATEST, I32),
        Field::new(
            "brokers",
            0,
            LATEST,
            array(&Type::Struct(&[
                Field::new("node_id", 0, LATEST, I32),
                Field::new("host", 0, LATEST, STRING),
                Field::new("port", 0, LATEST, I32),
                Field::new("rack", 1, LATEST, STRING),
            ])),
        ),
        Field::new("cluster_id", 2, LATEST, STRING),
        Field::new("controller_id", 1, LATEST, I32),
        Field::new(
            "topics",
            0,
            LATEST,
            array(&Type::Struct(&[
                Field::new("error_code", 0, LATEST, I16),
                Field::new("name", 0, LATEST, STRING),
                Field::new("topic_id", 10, LATEST, UUID),
                Field::new("is_internal", 1, LATEST, BOOL),
                Field::new(
                    "partitions",
                    0,
                    LATEST,
                    array(&Type::Struct(&[
                        Field::new("error_code", 0, LATEST, I16),
                        Field::new("partition_index", 0, LATEST, I32),
                        Field::new("leader_id", 0, LATEST, I32),
                        Field::new("leader_epoch", 7, LATEST, I32),
                        Field::new("replica_nodes", 0, LATEST, array(&I32)),
                        Field::new("isr_nodes", 0, LATEST, array(&I32)),
                        Field::new("offline_replicas", 5, LATEST, array(&I32)),
                    ])),
                ),
                Field::new("topic_authorized_operations", 8, LATEST, I32),
            ])),
        ),
        Field::new("cluster_authorized_operations", 8, 10, I32),
        Field::new("error_code", 13, LATEST, I16),
    ],
};

/// ProduceResponse v3-13.
const PRODUCE: Message = Message {
    api: ApiKey::Produce,
    flexible_from: 9,
    fields: &[
        Field::new(
            "responses",
            0,
            LATEST,
            array(&Type::Struct(&[
                Field::new("name", 0, 12, STRING),
                Field::new("topic_id", 13, LATEST, UUID),
                Field::new(
                    "partition_responses",
                    0,
                    LATEST,
                    array(&Type::Struct(&[
                        Field::new("index", 0, LATEST, I32),
                        Field::new("error_code", 0, LATEST, I16),
                        Field::new("base_offset", 0, LATEST, I64),
                        Field::new("log_append_time_ms", 0, LATEST, I64),
                        Field::new("log_start_offset", 5, LATEST, I64),
                        Field::new(
                            "record_errors",
                            8,
                            LATEST,
                            array(&Type::Struct(&[
                                Field::new("batch_index", 8, LATEST, I32),
                                Field::new("batch_index_error_message", 8, LATEST, STRING),
                            ])),
                        ),
                        Field::new("error_message", 8, LATEST, STRING),
                        Field::tagged(
                            0,
                            "current_leader",
                            10,
                            LATEST,
                            Type::Struct(&[
                                Field::new("leader_id", 10, LATEST, I32),
                                Field::new("leader_epoch", 10, LATEST, I32),
                            ]),
                        ),
                    ])),
                ),
            ])),
        ),
        Field::new("throttle_time_ms", 0, LATEST, I32),
        Field::tagged(
            0,
            "node_endpoints",
            10,
            LATEST,
            array(&Type::Struct(&[
                Field::new("node_id", 10, LATEST, I32),
                Field::new("host", 10, LATEST, STRING),
                Field::new("port", 10, LATEST, I32),
                Field::new("rack", 10, LATEST, STRING),
            ])),
        ),
    ],
};

/// FetchResponse v4-18.
const FETCH: Message = Message {
    api: ApiKey::Fetch,
    flexible_from: 12,
    fields: &[
        Field::new("throttle_time_ms", 0, LATEST, I32),
        Field::new("error_code", 7, LATEST, I16),
        Field::new("session_id", 7, LATEST, I32),
        Field::new(
            "responses",
            0,
            LATEST,
            array(&Type::Struct(&[
                Field::new("topic", 0, 12, STRING),
                Field::new("topic_id", 13, LATEST, UUID),
                Field::new(
                    "partitions",
                    0,
                    LATEST,
                    array(&Type::Struct(&[
                        Field::new("partition_index", 0, LATEST, I32),
                        Field::new("error_code", 0, LATEST, I16),
                        Field::new("high_watermark", 0, LATEST, I64),
                        Field::new("last_stable_offset", 0, LATEST, I64),
                        Field::new("log_start_offset", 5, LATEST, I64),
                        Field::new(
                            "aborted_transactions",
                            0,
                            LATEST,
                            array(&Type::Struct(&[
                                Field::new("producer_id", 0, LATEST, I64),
                                Field::new("first_offset", 0, LATEST, I64),
                            ])),
                        ),
                        Field::new("preferred_read_replica", 11, LATEST, I32),
                        Field::new("records", 0, LATEST, BYTES),
                        Field::tagged(
                            0,
                            "diverging_epoch",
                            0,
                            LATEST,
                            Type::Struct(&[
                                Field::new("epoch", 12, LATEST, I32),
                                Field::new("end_offset", 12, LATEST, I64),
                            ]),
                        ),
                        Field::tagged(
                            1,
                            "current_leader",
                            0,
                            LATEST,
                            Type::Struct(&[
                                Field::new("leader_id", 12, LATEST, I32),
                                Field::new("leader_epoch", 12, LATEST, I32),
                            ]),
                        ),
                        Field::tagged(
                            2,
                            "snapshot_id",
                            0,
                            LATEST,
                            Type::Struct(&[
                                Field::new("end_offset", 0, LATEST, I64),
                                Field::new("epoch", 0, LATEST, I32),
                            ]),
                        ),
                    ])),
                ),
            ])),
        ),
        Field::tagged(
            0,
            "node_endpoints",
            16,
            LATEST,
            array(&Type::Struct(&[
                Field::new("node_id", 16, LATEST, I32),
                Field::new("host", 16, LATEST, STRING),
                Field::new("port", 16, LATEST, I32),
                Field::new("rack", 16, LATEST, STRING),
            ])),
        ),
    ],
};

/// ListOffsetsResponse v1-10.
const LIST_OFFSETS: Message = Message {
    api: ApiKey::ListOffsets,
    flexible_from: 6,
    fields: &[
        Field::new("throttle_time_ms", 2, LATEST, I32),
        Field::new(
            "topics",
            0,
            LATEST,
            array(&Type::Struct(&[
                Field::new("name", 0, LATEST, STRING),
                Field::new(
                    "partitions",
                    0,
                    LATEST,
                    array(&Type::Struct(&[
                        Field::new("partition_index", 0, LATEST, I32),
                        Field::new("error_code", 0, LATEST, I16),
                        Field::new("timestamp", 0, LATEST, I64),
                        Field::new("offset", 0, LATEST, I64),
                        Field::new("leader_epoch", 4, LATEST, I32),
                    ])),
                ),
            ])),
        ),
    ],
};

/// CreateTopicsResponse v2-7.
const CREATE_TOPICS: Message = Message {
    api: ApiKey::CreateTopics,
    flexible_from: 5,
    fields: &[
        Field::new("throttle_time_ms", 0, LATEST, I32),
        Field::new(
            "topics",
            0,
            LATEST,
            array(&Type::Struct(&[
                Field::new("name", 0, LATEST, STRING),
                Field::new("topic_id", 7, LATEST, UUID),
                Field::new("error_code", 0, LATEST, I16),
                Field::new("error_message", 0, LATEST, STRING),
                Field::new("num_partitions", 5, LATEST, I32),
                Field::new("replication_factor", 5, LATEST, I16),
                Field::new(
                    "configs",
                    5,
                    LATEST,
                    array(&Type::Struct(&[
                        Field::new("name", 5, LATEST, STRING),
                        Field::new("value", 5, LATEST, STRING),
                        Field::new("read_only", 5, LATEST, BOOL),
                        Field::new("config_source", 5, LATEST, I8),
                        Field::new("is_sensitive", 5, LATEST, BOOL),
                    ])),
                ),
                Field::tagged(0, "topic_config_error_code", 0, LATEST, I16),
            ])),
        ),
    ],
};

/// FindCoordinatorResponse v0-6.
const FIND_COORDINATOR: Message = Message {
    api: ApiKey::FindCoordinator,
    flexible_from: 3,
    fields: &[
        Field::new("throttle_time_ms", 1, LATEST, I32),
        Field::new("error_code", 0, 3, I16),
        Field::new("error_message", 1, 3, STRING),
        Field::new("node_id", 0, 3, I32),
        Field::new("host", 0, 3, STRING),
        Field::new("port", 0, 3, I32),
        Field::new(
            "coordinators",
            4,
            LATEST,
            array(&Type::Struct(&[
                Field::new("key", 4, LATEST, STRING),
                Field::new("node_id", 4, LATEST, I32),
                Field::new("host", 4, LATEST, STRING),
                Field::new("port", 4, LATEST, I32),
                Field::new("error_code", 4, LATEST, I16),
                Field::new("error_message", 4, LATEST, STRING),
            ])),
        ),
    ],
};

/// JoinGroupResponse v0-9.
const JOIN_GROUP: Message = Message {
    api: ApiKey::JoinGroup,
    flexible_from: 6,
    fields: &[
        Field::new("throttle_time_ms", 2, LATEST, I32),
        Field::new("error_code", 0, LATEST, I16),
        Field::new("generation_id", 0, LATEST, I32),
        Field::new("protocol_type", 7, LATEST, STRING),
        Field::new("protocol_name", 0, LATEST, STRING),
        Field::new("leader", 0, LATEST, STRING),
        Field::new("skip_assignment", 9, LATEST, BOOL),
        Field::new("member_id", 0, LATEST, STRING),
        Field::new(
            "members",
            0,
            LATEST,
            array(&Type::Struct(&[
                Field::new("member_id", 0, LATEST, STRING),
                Field::new("group_instance_id", 5, LATEST, STRING),
                Field::new("metadata", 0, LATEST, BYTES),
            ])),
        ),
    ],
};

/// SyncGroupResponse v0-5.
const SYNC_GROUP: Message = Message {
    api: ApiKey::SyncGroup,
    flexible_from: 4,
    fields: &[
        Field::new("throttle_time_ms", 1, LATEST, I32),
        Field::new("error_code", 0, LATEST, I16),
        Field::new("protocol_type", 5, LATEST, STRING),
        Field::new("protocol_name", 5, LATEST, STRING),
        Field::new("assignment", 0, LATEST, BYTES),
    ],
};

/// HeartbeatResponse v0-4.
const HEARTBEAT: Message = Message {
    api: ApiKey::Heartbeat,
    flexible_from: 4,
    fields: &[Field::new("throttle_time_ms", 1, LATEST, I32), Field::new("error_code", 0, LATEST, I16)],
};

/// LeaveGroupResponse v0-5.
const LEAVE_GROUP: Message = Message {
    api: ApiKey::LeaveGroup,
    flexible_from: 4,
    fields: &[
        Field::new("throttle_time_ms", 1, LATEST, I32),
        Field::new("error_code", 0, LATEST, I16),
        Field::new(
            "members",
            3,
            LATEST,
            array(&Type::Struct(&[
                Field::new("member_id", 3, LATEST, STRING),
                Field::new("group_instance_id", 3, LATEST, STRING),
                Field::new("error_code", 3, LATEST, I16),
            ])),
        ),
    ],
};

/// OffsetCommitResponse v2-10.
const OFFSET_COMMIT: Message = Message {
    api: ApiKey::OffsetCommit,
    flexible_from: 8,
    fields: &[
        Field::new("throttle_time_ms", 3, LATEST, I32),
        Field::new(
            "topics",
            0,
            LATEST,
            array(&Type::Struct(&[
                Field::new("name", 0, 9, STRING),
                Field::new("topic_id", 10, LATEST, UUID),
                Field::new(
                    "partitions",
                    0,
                    LATEST,
                    array(&Type::Struct(&[
                        Field::new("partition_index", 0, LATEST, I32),
                        Field::new("error_code", 0, LATEST, I16),
                    ])),
                ),
            ])),
        ),
    ],
};

/// ConsumerGroupHeartbeatResponse v0-1 (KIP-848).
const CONSUMER_GROUP_HEARTBEAT: Message = Message {
    api: ApiKey::ConsumerGroupHeartbeat,
    flexible_from: 0,
    fields: &[
        Field::new("throttle_time_ms", 0, LATEST, I32),
        Field::new("error_code", 0, LATEST, I16),
        Field::new("error_message", 0, LATEST, STRING),
        Field::new("member_id", 0, LATEST, STRING),
        Field::new("member_epoch", 0, LATEST, I32),
        Field::new("heartbeat_interval_ms", 0, LATEST, I32),
        Field::new(
            "assignment",
            0,
            LATEST,
            Type::NullableStruct(&[Field::new(
                "topic_partitions",
                0,
                LATEST,
                array(&Type::Struct(&[
                    Field::new("topic_id", 0, LATEST, UUID),
                    Field::new("partitions", 0, LATEST, array(&I32)),
                ])),
            )]),
        ),
    ],
};

/// OffsetFetchResponse v1-10.
const OFFSET_FETCH: Message = Message {
    api: ApiKey::OffsetFetch,
    flexible_from: 6,
    fields: &[
        Field::new("throttle_time_ms", 3, LATEST, I32),
        Field::new(
            "topics",
            0,
            7,
            array(&Type::Struct(&[
                Field::new("name", 0, 7, STRING),
                Field::new(
                    "partitions",
                    0,
                    7,
                    array(&Type::Struct(&[
                        Field::new("partition_index", 0, 7, I32),
                        Field::new("committed_offset", 0, 7, I64),
                        Field::new("committed_leader_epoch", 5, 7, I32),
                        Field::new("metadata", 0, 7, STRING),
                        Field::new("error_code", 0, 7, I16),
                    ])),
                ),
            ])),
        ),
        Field::new("error_code", 2, 7, I16),
        Field::new(
            "groups",
            8,
            LATEST,
            array(&Type::Struct(&[
                Field::new("group_id", 8, LATEST, STRING),
                Field::new(
                    "topics",
                    8,
                    LATEST,
                    array(&Type::Struct(&[
                        Field::new("name", 8, 9, STRING),
                        Field::new("topic_id", 10, LATEST, UUID),
                        Field::new(
                            "partitions",
                            8,
                            LATEST,
                            array(&Type::Struct(&[
                                Field::new("partition_index", 8, LATEST, I32),
                                Field::new("committed_offset", 8, LATEST, I64),
                                Field::new("committed_leader_epoch", 8, LATEST, I32),
                                Field::new("metadata", 8, LATEST, STRING),
                                Field::new("error_code", 8, LATEST, I16),
                            ])),
                        ),
                    ])),
                ),
                Field::new("error_code", 8, LATEST, I16),
            ])),
        ),
    ],
};

/// DescribeGroupsResponse v0-6.
const DESCRIBE_GROUPS: Message = Message {
    api: ApiKey::DescribeGroups,
    flexible_from: 5,
    fields: &[
        Field::new("throttle_time_ms", 1, LATEST, I32),
        Field::new(
            "groups",
            0,
            LATEST,
            array(&Type::Struct(&[
                Field::new("error_code", 0, LATEST, I16),
                Field::new("error_message", 6, LATEST, STRING),
                Field::new("group_id", 0, LATEST, STRING),
                Field::new("group_state", 0, LATEST, STRING),
                Field::new("protocol_type", 0, LATEST, STRING),
                Field::new("protocol_data", 0, LATEST, STRING),
                Field::new(
                    "members",
                    0,
                    LATEST,
                    array(&Type::Struct(&[
                        Field::new("member_id", 0, LATEST, STRING),
                        Field::new("group_instance_id", 4, LATEST, STRING),
                        Field::new("client_id", 0, LATEST, STRING),
                        Field::new("client_host", 0, LATEST, STRING),
                        Field::new("member_metadata", 0, LATEST, BYTES),
                        Field::new("member_assignment", 0, LATEST, BYTES),
                    ])),
                ),
                Field::new("authorized_operations", 3, LATEST, I32),
            ])),
        ),
    ],
};

/// SaslHandshakeResponse v0-1.
const SASL_HANDSHAKE: Message = Message {
    api: ApiKey::SaslHandshake,
    flexible_from: NEVER,
    fields: &[Field::new("error_code", 0, LATEST, I16), Field::new("mechanisms", 0, LATEST, array(&STRING))],
};

/// SaslAuthenticateResponse v0-2.
const SASL_AUTHENTICATE: Message = Message {
    api: ApiKey::SaslAuthenticate,
    flexible_from: 2,
    fields: &[
        Field::new("error_code", 0, LATEST, I16),
        Field::new("error_message", 0, LATEST, STRING),
        Field::new("auth_bytes", 0, LATEST, BYTES),
        Field::new("session_lifetime_ms", 1, LATEST, I64),
    ],
};

/// ListGroupsResponse v0-5.
const LIST_GROUPS: Message = Message {
    api: ApiKey::ListGroups,
    flexible_from: 3,
    fields: &[
        Field::new("throttle_time_ms", 1, LATEST, I32),
        Field::new("error_code", 0, LATEST, I16),
        Field::new(
            "groups",
            0,
            LATEST,
            array(&Type::Struct(&[
                Field::new("group_id", 0, LATEST, STRING),
                Field::new("protocol_type", 0, LATEST, STRING),
                Field::new("group_state", 4, LATEST, STRING),
                Field::new("group_type", 5, LATEST, STRING),
            ])),
        ),
    ],
};

/// DeleteRecordsResponse v0-2.
const DELETE_RECORDS: Message = Message {
    api: ApiKey::DeleteRecords,
    flexible_from: 2,
    fields: &[
        Field::new("throttle_time_ms", 0, LATEST, I32),
        Field::new(
            "topics",
            0,
            LATEST,
            array(&Type::Struct(&[
                Field::new("name", 0, LATEST, STRING),
                Field::new(
                    "partitions",
                    0,
                    LATEST,
                    array(&Type::Struct(&[
                        Field::new("partition_index", 0, LATEST, I32),
                        Field::new("low_watermark", 0, LATEST, I64),
                        Field::new("error_code", 0, LATEST, I16),
                    ])),
                ),
            ])),
        ),
    ],
};

/// InitProducerIdResponse v0-6.
const INIT_PRODUCER_ID: Message = Message {
    api: ApiKey::InitProducerId,
    flexible_from: 2,
    fields: &[
        Field::new("throttle_time_ms", 0, LATEST, I32),
        Field::new("error_code", 0, LATEST, I16),
        Field::new("producer_id", 0, LATEST, I64),
        Field::new("producer_epoch", 0, LATEST, I16),
        Field::new("ongoing_txn_producer_id", 6, LATEST, I64),
        Field::new("ongoing_txn_producer_epoch", 6, LATEST, I16),
    ],
};

/// AddOffsetsToTxnResponse v0-4.
const ADD_OFFSETS_TO_TXN: Message = Message {
    api: ApiKey::AddOffsetsToTxn,
    flexible_from: 3,
    fields: &[Field::new("throttle_time_ms", 0, LATEST, I32), Field::new("error_code", 0, LATEST, I16)],
};

/// TxnOffsetCommitResponse v0-5.
const TXN_OFFSET_COMMIT: Message = Message {
    api: ApiKey::TxnOffsetCommit,
    flexible_from: 3,
    fields: &[
        Field::new("throttle_time_ms", 0, LATEST, I32),
        Field::new(
            "topics",
            0,
            LATEST,
            array(&Type::Struct(&[
                Field::new("name", 0, LATEST, STRING),
                Field::new(
                    "partitions",
                    0,
                    LATEST,
                    array(&Type::Struct(&[
                        Field::new("partition_index", 0, LATEST, I32),
                        Field::new("error_code", 0, LATEST, I16),
                    ])),
                ),
            ])),
        ),
    ],
};

/// EndTxnResponse v0-5.
const END_TXN: Message = Message {
    api: ApiKey::EndTxn,
    flexible_from: 3,
    fields: &[
        Field::new("throttle_time_ms", 0, LATEST, I32),
        Field::new("error_code", 0, LATEST, I16),
        Field::new("producer_id", 5, LATEST, I64),
        Field::new("producer_epoch", 5, LATEST, I16),
    ],
};
