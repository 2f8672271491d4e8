//! Criterion's estimates of `benches/micro.rs`, read back for the results tables.

use std::path::{Path, PathBuf};

/// One criterion benchmark read back from `target/criterion`.
pub struct Micro {
    pub id: String,
    /// Median time per iteration, nanoseconds.
    pub nanos: f64,
    pub bytes: Option<f64>,
}

/// Every benchmark that criterion has estimates for under `CRITERION_HOME` (or
/// `target/criterion`).
pub fn criterion_results() -> Vec<Micro> {
    let root = std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/criterion"));
    let mut found = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|n| n == "new") {
                found.extend(read_micro(&path));
            } else if path.is_dir() && path.file_name().is_some_and(|n| n != "base" && n != "change") {
                dirs.push(path);
            }
        }
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found
}

fn read_micro(dir: &Path) -> Option<Micro> {
    let read = |name: &str| -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(dir.join(name)).ok()?).ok()
    };
    let benchmark = read("benchmark.json")?;
    let estimates = read("estimates.json")?;
    Some(Micro {
        id: benchmark["full_id"].as_str()?.to_string(),
        nanos: estimates["median"]["point_estimate"].as_f64()?,
        bytes: benchmark["throughput"]["Bytes"].as_f64(),
    })
}
