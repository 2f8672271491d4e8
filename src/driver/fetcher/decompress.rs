//! Record-batch decompression with a bound on the output.
//!
//! A batch's compressed records may expand to anything: gzip, LZ4 and zstd streams as far as the
//! ratio allows, and snappy's xerial framing to whatever each block's header declares. Every
//! codec here stops (before allocating) as soon as the output would pass the limit it is given.

use std::io::Read;

use bytes::Bytes;

/// Why a batch's records were not decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Inflate {
    /// They would expand to more than the limit.
    OverLimit,
    /// The codec refused the bytes.
    Corrupt(String),
}

/// The codec of attribute bits 0-2 (1 gzip, 2 snappy, 3 lz4, 4 zstd), fed `data` and stopped
/// past `limit` bytes of output.
pub(crate) fn decompress(codec: i16, data: &[u8], limit: usize) -> Result<Bytes, Inflate> {
    match codec {
        1 => read_capped(&mut flate2::read::GzDecoder::new(data), limit, "gzip"),
        2 => snappy(data, limit),
        3 => lz4(data, limit),
        4 => read_capped(
            &mut zstd::stream::read::Decoder::with_buffer(data).map_err(|e| corrupt("zstd", e))?,
            limit,
            "zstd",
        ),
        other => Err(Inflate::Corrupt(format!("unknown compression codec {other}"))),
    }
}

fn corrupt(codec: &str, error: impl std::fmt::Display) -> Inflate {
    Inflate::Corrupt(format!("{codec}: {error}"))
}

/// Reads a decoder to its end, or one byte past `limit`.
fn read_capped(decoder: &mut impl Read, limit: usize, codec: &str) -> Result<Bytes, Inflate> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    decoder.take(cap).read_to_end(&mut out).map_err(|e| corrupt(codec, e))?;
    if out.len() > limit {
        return Err(Inflate::OverLimit);
    }
    Ok(Bytes::from(out))
}

/// An LZ4 frame; the decoder reads a frame cut short as a shorter output, so its end is checked.
fn lz4(data: &[u8], limit: usize) -> Result<Bytes, Inflate> {
    let mut decoder = lz4::Decoder::new(data).map_err(|e| corrupt("lz4", e))?;
    let out = read_capped(&mut decoder, limit, "lz4")?;
    decoder.finish().1.map_err(|_| corrupt("lz4", "the frame is cut short"))?;
    Ok(out)
}

/// xerial's stream header: its 8-byte magic, then version and compatible version (int32 each).
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER: usize = 16;

/// Snappy as Kafka's Java producer writes it (xerial framing: the header, then blocks of
/// `int32 length, raw snappy`), or one raw snappy block without the header, as xerial reads it.
/// Each block's declared size is checked against what is left of `limit` before room is made.
fn snappy(data: &[u8], limit: usize) -> Result<Bytes, Inflate> {
    let mut out = Vec::new();
    if !data.starts_with(XERIAL_MAGIC) {
        append_snappy_block(data, &mut out, limit)?;
        return Ok(Bytes::from(out));
    }
    let mut rest = data.get(XERIAL_HEADER..).ok_or_else(|| corrupt("snappy", "truncated xerial header"))?;
    while !rest.is_empty() {
        let (length, tail) =
            rest.split_first_chunk::<4>().ok_or_else(|| corrupt("snappy", "truncated block length"))?;
        let length = u32::from_be_bytes(*length) as usize;
        let block = tail.get(..length).ok_or_else(|| corrupt("snappy", "block longer than the data"))?;
        append_snappy_block(block, &mut out, limit)?;
        rest = &tail[length..];
    }
    Ok(Bytes::from(out))
}

fn append_snappy_block(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), Inflate> {
    let declared = snap::raw::decompress_len(block).map_err(|e| corrupt("snappy", e))?;
    let start = out.len();
    if declared > limit - start {
        return Err(Inflate::OverLimit);
    }
    out.resize(start + declared, 0);
    let written = snap::raw::Decoder::new().decompress(block, &mut out[start..]).map_err(|e| corrupt("snappy", e))?;
    out.truncate(start + written);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
    use kafka_protocol::records::Compression;

    const CODECS: [(Compression, i16); 4] =
        [(Compression::Gzip, 1), (Compression::Snappy, 2), (Compression::Lz4, 3), (Compression::Zstd, 4)];

    /// `plain` compressed by `kafka-protocol`'s compressors (snappy with xerial framing, as Java).
    fn compress(compression: Compression, plain: &[u8]) -> Bytes {
        let mut out = bytes::BytesMut::new();
        let fill = |buf: &mut bytes::BytesMut| {
            buf.extend_from_slice(plain);
            Ok(())
        };
        match compression {
            Compression::Gzip => Gzip::compress(&mut out, fill),
            Compression::Snappy => Snappy::compress(&mut out, fill),
            Compression::Lz4 => Lz4::compress(&mut out, fill),
            Compression::Zstd => Zstd::compress(&mut out, fill),
            Compression::None => fill(&mut out),
        }
        .expect("compresses");
        out.freeze()
    }

    #[test]
    fn every_codec_round_trips_up_to_the_limit_and_stops_past_it() {
        let plain: Vec<u8> = (0..100_000u32).map(|i| (i % 97) as u8).collect();
        for (compression, codec) in CODECS {
            let packed = compress(compression, &plain);
            assert_eq!(decompress(codec, &packed, plain.len()).as_deref(), Ok(&plain[..]), "{compression:?}");
            assert_eq!(decompress(codec, &packed, plain.len() - 1), Err(Inflate::OverLimit), "{compression:?}");
            let cut = decompress(codec, &packed[..packed.len() / 2], usize::MAX).map(|b| b.len());
            assert!(matches!(cut, Err(Inflate::Corrupt(_))), "{compression:?}: {cut:?}");
        }
    }

    /// A 4 GiB block declaration is refused before a byte is reserved for it, framed or raw.
    #[test]
    fn snappy_block_sizes_are_checked_before_room_is_made() {
        let declares_4_gib = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert_eq!(snappy(&declares_4_gib, 1 << 20), Err(Inflate::OverLimit));
        let mut framed = XERIAL_MAGIC.to_vec();
        framed.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        framed.extend_from_slice(&(declares_4_gib.len() as u32).to_be_bytes());
        framed.extend_from_slice(&declares_4_gib);
        assert_eq!(snappy(&framed, 1 << 20), Err(Inflate::OverLimit));
    }
}
