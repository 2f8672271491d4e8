//! The group membership core: a sans-IO state machine for the classic consumer-group protocol.
//!
//! No tokio, no IO, no clock in this module (a test enforces it): every input carries `now`,
//! outputs are polled. The driver in [`crate::driver`] feeds it from the network; the simulator
//! in the test suite feeds it from a scripted coordinator in virtual time.

pub mod assignor;
pub mod build;
mod commit_queue;
pub mod config;
pub mod events;
mod lookup_queue;
pub mod machine;
mod ownership;
mod partition_counts;
mod reactions;
pub mod requests;
pub mod snapshot;
pub mod subscription;
#[cfg(test)]
mod tests;
mod timers;
pub mod types;

pub use config::{GroupConfig, GroupProtocol};
pub use events::{
    CommitFailure, CommitId, CommitOutcome, FenceReason, GroupError, GroupEvent, LeaveReason, OffsetLookupFailure,
    OwnedPartition, PartitionCommit, RejoinReason, StateKind,
};
pub use machine::GroupMachine;
pub use requests::{
    CoordinatorFound, GroupRequest, GroupResponse, ListedTopic, OutgoingRequest, RequestFailure, RequestId,
};
pub use snapshot::{GroupCounters, GroupSnapshot, OffsetLookupView};
pub use subscription::{TopicPattern, TopicSubscription};
pub use types::{Generation, GenerationId, Lease, MemberId, TopicPartition};

#[cfg(test)]
mod sans_io {
    use std::path::{Path, PathBuf};

    /// The `.rs` files under `dir`, unit tests left out: they need one clock read for the origin
    /// of virtual time.
    fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("readable source directory") {
            let path = entry.expect("dir entry").path();
            if path.file_stem().is_some_and(|n| n == "tests") {
                continue;
            }
            if path.is_dir() {
                sources(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }

    /// The core must stay free of tokio, IO and the clock: it is what makes the hard cases
    /// testable in virtual time.
    #[test]
    fn group_module_uses_no_tokio_io_or_clock() {
        let mut files = Vec::new();
        sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/group"), &mut files);
        let forbidden = ["tokio", "std::net", "std::io", "std::fs", "Instant::now", "SystemTime", "std::thread"];
        for path in &files {
            let text = std::fs::read_to_string(path).expect("readable source");
            // Code only: comments may say what the module avoids, and this file names the
            // forbidden words in its own check.
            let code: String = text
                .split("mod sans_io")
                .next()
                .unwrap_or("")
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for word in forbidden {
                assert!(!code.contains(word), "{} uses `{word}`", path.display());
            }
        }
        assert!(files.len() >= 14, "only {} files checked", files.len());
    }
}
