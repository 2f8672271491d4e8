//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`) into what the crate keeps
//! private.

use crate::driver::scram::{ScramClient, ScramHash};
use crate::driver::security::Secret;

/// The client nonce of [`scram_client`]: fixed, so a fuzzer can write a server nonce that
/// extends it and reach the proof and the server signature check.
pub const SCRAM_CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";

/// Feeds a SCRAM client (user `user`, password `pencil`) the server's messages in turn, as
/// SASL authentication does, until one is refused or the exchange is over.
pub fn scram_client(sha512: bool, server_messages: &[&[u8]]) {
    let hash = if sha512 { ScramHash::Sha512 } else { ScramHash::Sha256 };
    let (mut client, _) = ScramClient::start_with_nonce(hash, "user", &Secret::new("pencil"), SCRAM_CLIENT_NONCE);
    for message in server_messages {
        match client.respond(message) {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return,
        }
    }
}
