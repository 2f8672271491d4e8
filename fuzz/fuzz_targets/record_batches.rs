//! The fetcher's record-batch decoder with every codec, scanning as a fetch response arrives and
//! decoding a few records per hand-out, every record's key, value and headers read. The first
//! byte picks what the rest is:
//! - raw partition data, decoded as it came;
//! - a compressed payload under a batch header the target writes (a valid CRC, so the bytes
//!   reach the decompressor: gzip, snappy, LZ4, zstd);
//! - plain record data the target compresses itself and wraps the same way, so the records
//!   parser sees what each codec gives back.
//!
//! The decompression budget is 1 MiB: whatever the bytes claim, the run's `-rss_limit_mb` holds.
#![no_main]

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
use kgroup::driver::fetcher::decode::{DecompressionBudget, PartitionFetch, WireRecords};
use kgroup::driver::fetcher::IsolationLevel;
use libfuzzer_sys::fuzz_target;

const BUDGET: usize = 1 << 20;

/// A v2 batch at offset 0 around `records`, with its CRC.
fn batch(codec: u8, record_count: i32, records: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i64(0); // base offset
    b.put_i32((49 + records.len()) as i32); // length: from the leader epoch on
    b.put_i32(0); // partition leader epoch
    b.put_i8(2); // magic
    b.put_u32(0); // CRC, below
    b.put_i16(i16::from(codec)); // attributes: the codec
    b.put_i32(record_count.max(1) - 1); // last offset delta
    b.put_i64(1_000); // base timestamp
    b.put_i64(1_000); // max timestamp
    b.put_i64(-1); // producer id
    b.put_i16(-1); // producer epoch
    b.put_i32(-1); // base sequence
    b.put_i32(record_count);
    b.extend_from_slice(records);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

fn compress(codec: u8, plain: &[u8]) -> Option<Bytes> {
    let mut out = BytesMut::new();
    let fill = |buf: &mut BytesMut| {
        buf.extend_from_slice(plain);
        Ok(())
    };
    let done = match codec {
        1 => Gzip::compress(&mut out, fill),
        2 => Snappy::compress(&mut out, fill),
        3 => Lz4::compress(&mut out, fill),
        4 => Zstd::compress(&mut out, fill),
        _ => fill(&mut out),
    };
    done.ok().map(|()| out.freeze())
}

fuzz_target!(|data: &[u8]| {
    let [mode, codec, count_hi, count_lo, rest @ ..] = data else { return };
    let codec = codec % 5;
    let record_count = i32::from(u16::from_be_bytes([*count_hi, *count_lo]));
    let data = match mode % 3 {
        0 => Bytes::copy_from_slice(&data[1..]),
        1 => batch(codec, record_count, rest),
        _ => match compress(codec, rest) {
            Some(packed) => batch(codec, record_count, &packed),
            None => return,
        },
    };
    let topic: Arc<str> = Arc::from("t");
    let isolation = if mode & 0x80 == 0 { IsolationLevel::ReadUncommitted } else { IsolationLevel::ReadCommitted };
    let fetch = PartitionFetch {
        topic: &topic,
        partition: 0,
        fetch_offset: 0,
        isolation,
        aborted_transactions: &[(-1, 0)],
        last_stable_offset: -1,
    };
    // Hand-outs of a few records at a time, as the consumer decodes them, every field read.
    let (mut wire, _) = WireRecords::scan(&data, &fetch);
    let max_records = usize::from(*count_lo % 8) + 1;
    while !wire.is_empty() {
        let decoded = wire.decode(max_records, &DecompressionBudget::new(BUDGET));
        for record in &decoded.records {
            std::hint::black_box((record.key(), record.value(), record.headers().count()));
        }
    }
});
