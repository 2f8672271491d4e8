//! SCRAM server messages (server-first, then server-final, split at the first NUL byte) fed to
//! the client as SASL authentication would: an error or the next message, never a panic or a
//! long PBKDF2 (the iteration count is capped at Kafka's 16384).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else { return };
    let messages: Vec<&[u8]> = data.splitn(2, |&b| b == 0).collect();
    kgroup::fuzzing::scram_client(selector & 1 == 1, &messages);
});
