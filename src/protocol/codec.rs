//! Request and response headers around `kafka-protocol` message bodies.
//!
//! Header versions follow the API version (flexible versions use header v2 for requests and
//! v1 for responses, except ApiVersions responses which always use v0); `kafka-protocol`
//! knows the table, we only pick the right entry.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Message, Request, StrBytes};

use super::{bounds, schema, ProtocolError};

/// The key of a request type, as the enum.
pub fn api_key_of<R: Request>() -> ApiKey {
    // Every `Request` implementation in kafka-protocol carries a key from the ApiKey table.
    ApiKey::try_from(R::KEY).unwrap_or(ApiKey::ApiVersions)
}

/// Encodes `request` at `version` with its header, framed with the 4-byte size prefix.
pub fn encode_request<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &str,
) -> Result<Bytes, ProtocolError> {
    let api = api_key_of::<R>();
    check_version::<R>(api, version)?;
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_owned())));
    let encode_err = |e: &dyn std::fmt::Display| ProtocolError::Encode { api, version, detail: format!("{e:#}") };
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    header.encode(&mut buf, api.request_header_version(version)).map_err(|e| encode_err(&e))?;
    request.encode(&mut buf, version).map_err(|e| encode_err(&e))?;
    let size = i32::try_from(buf.len() - 4)
        .map_err(|_| ProtocolError::FrameTooLarge { size: buf.len() - 4, max: i32::MAX as usize })?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// The correlation id at the front of a response frame (every response header starts with it).
pub fn peek_correlation_id(frame: &[u8]) -> Option<i32> {
    frame.get(..4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Decodes a response frame (without its size prefix) to `R::Response` at `version`. The body
/// passes the bounds check (`protocol::bounds`) first; the header holds no array.
pub fn decode_response<R: Request>(frame: Bytes, version: i16) -> Result<(ResponseHeader, R::Response), ProtocolError> {
    let api = api_key_of::<R>();
    check_version::<R>(api, version)?;
    let mut body = frame;
    let header: ResponseHeader =
        guarded_decode(api, version, "response header", &mut body, api.response_header_version(version))?;
    let untouched = body.clone();
    let decoded = check_bounds(api, version, &body)
        .and_then(|()| guarded_decode(api, version, "response body", &mut body, version));
    match decoded {
        Ok(response) => Ok((header, response)),
        Err(e) => match leading_error_code(api, version, &untouched) {
            // Some brokers put nulls where the schema forbids them in error answers (librdkafka's
            // mock sends a null FindCoordinator host): the code still tells what happened.
            Some(code) if code != 0 => Err(ProtocolError::ErrorResponse { api, version, code, detail: e.to_string() }),
            _ => Err(e),
        },
    }
}

/// The bounds check of a response body, along its API's schema.
fn check_bounds(api: ApiKey, version: i16, body: &[u8]) -> Result<(), ProtocolError> {
    let schema = schema::response(api).ok_or_else(|| {
        ProtocolError::decode(api, version, "response body", "kgroup has no schema to check it against")
    })?;
    bounds::check(schema, version, body).map_err(|e| ProtocolError::decode(api, version, "response body", e))
}

/// The top-level error code of responses that start with one (after the throttle time from
/// the version that added it), read without decoding the rest.
fn leading_error_code(api: ApiKey, version: i16, body: &[u8]) -> Option<i16> {
    let throttle_from = match api {
        ApiKey::ApiVersions => i16::MAX,
        ApiKey::FindCoordinator | ApiKey::SyncGroup | ApiKey::Heartbeat | ApiKey::LeaveGroup => 1,
        ApiKey::JoinGroup => 2,
        _ => return None,
    };
    if api == ApiKey::FindCoordinator && version >= 4 {
        return None; // per-key errors inside an array
    }
    let at = if version >= throttle_from { 4 } else { 0 };
    body.get(at..at + 2).map(|b| i16::from_be_bytes([b[0], b[1]]))
}

/// Decodes with the crate's decoder, turning both its errors and any panic inside it into a
/// typed error: broker bytes must never bring the client down.
pub(crate) fn guarded_decode<T: Decodable>(
    api: ApiKey,
    version: i16,
    part: &'static str,
    body: &mut Bytes,
    decode_version: i16,
) -> Result<T, ProtocolError> {
    match catch_unwind(AssertUnwindSafe(|| T::decode(body, decode_version))) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(ProtocolError::decode(api, version, part, e)),
        Err(_) => Err(ProtocolError::decode(api, version, part, "decoder panicked on malformed bytes")),
    }
}

fn check_version<R: Message>(api: ApiKey, version: i16) -> Result<(), ProtocolError> {
    let range = R::VERSIONS;
    if version < range.min || version > range.max {
        return Err(ProtocolError::VersionOutOfRange { api, version, min: range.min, max: range.max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

    #[test]
    fn heartbeat_round_trip_through_headers() {
        let req =
            HeartbeatRequest::default().with_group_id(StrBytes::from_static_str("g").into()).with_generation_id(7);
        let framed = encode_request(&req, 4, 42, "c").unwrap();
        assert_eq!(&framed[..4], &((framed.len() - 4) as i32).to_be_bytes());
        // Response: correlation id, empty tagged fields (header v1), then the v4 body.
        let mut resp = BytesMut::new();
        resp.put_i32(42);
        resp.put_u8(0);
        HeartbeatResponse::default().with_error_code(27).encode(&mut resp, 4).unwrap();
        let (header, body) = decode_response::<HeartbeatRequest>(resp.freeze(), 4).unwrap();
        assert_eq!(header.correlation_id, 42);
        assert_eq!(body.error_code, 27);
    }

    /// librdkafka's mock answers FindCoordinator errors with a null host; the code survives.
    #[test]
    fn a_malformed_error_answer_keeps_its_code() {
        use kafka_protocol::messages::FindCoordinatorRequest;
        let mut frame = BytesMut::new();
        frame.put_i32(5); // correlation id (header v0 below v3)
        frame.put_i32(0); // throttle time
        frame.put_i16(15); // COORDINATOR_NOT_AVAILABLE
        frame.put_i16(-1); // error message: null
        frame.put_i32(-1); // node id
        frame.put_i16(-1); // host: null, which the schema forbids
        frame.put_i32(-1); // port
        let err = decode_response::<FindCoordinatorRequest>(frame.freeze(), 1).unwrap_err();
        assert!(matches!(err, ProtocolError::ErrorResponse { code: 15, version: 1, .. }), "{err}");
    }

    #[test]
    fn out_of_range_version_is_refused() {
        let err = encode_request(&HeartbeatRequest::default(), 9, 1, "c").unwrap_err();
        assert!(matches!(err, ProtocolError::VersionOutOfRange { version: 9, .. }), "{err}");
    }
}
