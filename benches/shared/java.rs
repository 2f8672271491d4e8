//! The Java reference client's JVM, for the benches that run it.

use std::path::PathBuf;

/// `$JAVA_HOME/bin/java`, else `java` from `PATH`.
pub fn java_binary() -> PathBuf {
    std::env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin").join("java"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("java"))
}

/// The first line of `java -version`.
pub fn java_version() -> String {
    std::process::Command::new(java_binary())
        .arg("-version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stderr).lines().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}
