//! Kafka's 4-byte big-endian size framing.

use bytes::{Buf, Bytes, BytesMut};

use super::ProtocolError;

/// Kafka's own default for `socket.request.max.bytes` (100 MiB).
pub const DEFAULT_MAX_FRAME_SIZE: usize = 100 * 1024 * 1024;

/// Splits one complete frame off the front of `buf`, if it holds one.
///
/// The size prefix is checked against `max_frame_size` before any room is reserved, so a
/// hostile or garbled prefix cannot make us allocate.
pub fn decode_frame(buf: &mut BytesMut, max_frame_size: usize) -> Result<Option<Bytes>, ProtocolError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    let size = usize::try_from(size).map_err(|_| ProtocolError::NegativeFrameSize { size })?;
    if size > max_frame_size {
        return Err(ProtocolError::FrameTooLarge { size, max: max_frame_size });
    }
    if buf.len() < 4 + size {
        buf.reserve(4 + size - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(size).freeze()))
}

/// Prefixes `payload` with its size.
#[cfg(any(test, feature = "test-support"))]
pub fn encode_frame(payload: &[u8], max_frame_size: usize) -> Result<Bytes, ProtocolError> {
    use bytes::BufMut;
    if payload.len() > max_frame_size || i32::try_from(payload.len()).is_err() {
        return Err(ProtocolError::FrameTooLarge { size: payload.len(), max: max_frame_size });
    }
    let mut out = BytesMut::with_capacity(4 + payload.len());
    out.put_i32(payload.len() as i32);
    out.put_slice(payload);
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use bytes::BufMut;

    use super::*;

    #[test]
    fn waits_for_a_whole_frame() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 3, 1, 2][..]);
        assert_eq!(decode_frame(&mut buf, 16).unwrap(), None);
        buf.put_u8(3);
        assert_eq!(decode_frame(&mut buf, 16).unwrap(), Some(Bytes::from_static(&[1, 2, 3])));
        assert!(buf.is_empty());
    }

    #[test]
    fn refuses_oversized_and_negative_sizes_before_reserving() {
        let mut buf = BytesMut::from(&[0x7fu8, 0xff, 0xff, 0xff][..]);
        let cap = buf.capacity();
        assert_eq!(
            decode_frame(&mut buf, 1024),
            Err(ProtocolError::FrameTooLarge { size: i32::MAX as usize, max: 1024 })
        );
        assert_eq!(buf.capacity(), cap);
        let mut buf = BytesMut::from(&[0xffu8, 0xff, 0xff, 0xfe][..]);
        assert_eq!(decode_frame(&mut buf, 1024), Err(ProtocolError::NegativeFrameSize { size: -2 }));
    }

    #[test]
    fn encode_then_decode() {
        let framed = encode_frame(b"hello", 16).unwrap();
        let mut buf = BytesMut::from(&framed[..]);
        assert_eq!(decode_frame(&mut buf, 16).unwrap().as_deref(), Some(&b"hello"[..]));
        assert!(encode_frame(&[0; 17], 16).is_err());
    }
}
