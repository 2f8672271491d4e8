//! The machine a benchmark ran on and how busy it was, for the results files.

use std::process::Command;

/// Date, cores, CPU model, kernel, rustc and librdkafka, then `extra` (the broker, ...), then
/// kgroup's commit.
pub fn machine(extra: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_else(|| "?".into());
    let (_, rdkafka_version) = rdkafka::util::get_rdkafka_version();
    let mut rows = vec![
        ("date", output("date", &["-u", "+%Y-%m-%d %H:%M UTC"])),
        ("cores", std::thread::available_parallelism().map_or("?".into(), |n| n.to_string())),
        ("CPU", cpu),
        ("kernel", output("uname", &["-sr"])),
        ("rustc", output("rustc", &["--version"])),
        ("librdkafka", format!("{rdkafka_version} (rdkafka 0.39, built from source)")),
    ];
    rows.extend(extra);
    rows.push(("kgroup", output("git", &["-C", env!("CARGO_MANIFEST_DIR"), "describe", "--always", "--dirty"])));
    rows
}

/// What `program args` prints on stdout, trimmed (`?` if it cannot run).
pub fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
