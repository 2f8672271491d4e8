//! Support for the protocol conformance suite (`tests/conformance/main.rs`): the deviation table,
//! peer selection from the environment, and the case × peer matrix.
//!
//! A case renders what the broker answered as one line (the *observation*). A peer passes a
//! case when the observation equals the Kafka 3.6 expectation written in the case. A peer listed
//! in `deviations.tsv` for that case must instead answer exactly what the table says it answers
//! (so a deviation is asserted, never skipped); `n/a` in the answer column marks a case that
//! cannot run on that peer, with the reason in the last column.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

#[cfg(feature = "kafka36-container")]
pub mod container;
pub mod kafka36;

/// The environment variable naming an external Kafka 3.6 cluster.
pub const KAFKA36_ENV: &str = "KGROUP_KAFKA36_BOOTSTRAP";

/// The environment variable that runs only some peers (`kafka36` or `scripted,nisshi`, say);
/// the README's matrix is checked only when all of them run.
pub const PEERS_ENV: &str = "KGROUP_CONFORMANCE_PEERS";

/// The environment variable that runs only some cases (`T11,T47`); the README's matrix is
/// checked only when all of them run.
pub const CASES_ENV: &str = "KGROUP_CONFORMANCE_CASES";

/// Whether `case` runs in this environment.
pub fn case_selected(env: &HashMap<String, String>, case: &str) -> bool {
    env.get(CASES_ENV).filter(|s| !s.trim().is_empty()).is_none_or(|list| list.split(',').any(|c| c.trim() == case))
}

/// What the table says about one (peer, case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deviation {
    /// The peer answers this observation instead of Kafka's.
    Answers { answer: String, why: String },
    /// The case cannot run on this peer.
    NotApplicable { why: String },
}

/// `deviations.tsv`: `peer <TAB> case <TAB> answer <TAB> why`; `#` lines and blank lines are
/// ignored, the first non-comment line is the header.
#[derive(Debug, Default, Clone)]
pub struct DeviationTable {
    rows: BTreeMap<(String, String), Deviation>,
}

impl DeviationTable {
    pub fn parse(text: &str) -> Result<DeviationTable, String> {
        let mut rows = BTreeMap::new();
        let mut header_seen = false;
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() != 4 {
                return Err(format!("line {}: expected 4 tab-separated columns, got {}", n + 1, cols.len()));
            }
            if !header_seen {
                if cols != ["peer", "case", "answer", "why"] {
                    return Err(format!("line {}: header must be `peer case answer why`", n + 1));
                }
                header_seen = true;
                continue;
            }
            let (peer, case, answer, why) = (cols[0].trim(), cols[1].trim(), cols[2].trim(), cols[3].trim());
            if why.is_empty() {
                return Err(format!("line {}: {peer}/{case} has no reason", n + 1));
            }
            let deviation = if answer == "n/a" {
                Deviation::NotApplicable { why: why.to_owned() }
            } else {
                Deviation::Answers { answer: answer.to_owned(), why: why.to_owned() }
            };
            if rows.insert((peer.to_owned(), case.to_owned()), deviation).is_some() {
                return Err(format!("line {}: duplicate row for {peer}/{case}", n + 1));
            }
        }
        Ok(DeviationTable { rows })
    }

    pub fn get(&self, peer: &str, case: &str) -> Option<&Deviation> {
        self.rows.get(&(peer.to_owned(), case.to_owned()))
    }

    pub fn rows(&self) -> impl Iterator<Item = (&str, &str, &Deviation)> {
        self.rows.iter().map(|((p, c), d)| (p.as_str(), c.as_str(), d))
    }
}

/// Which peers a run uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerKind {
    /// The scripted coordinator over TCP.
    Scripted,
    /// An embedded nisshi 0.8.1.
    Nisshi,
    /// librdkafka's mock cluster.
    Mock,
    /// Apache Kafka 3.6: `None` starts it from its Maven jars (`kgroup::embedded::kafka36`, one
    /// node, or three for the cases that need a broker that is not the coordinator); `Some` is an
    /// external cluster at this bootstrap address, which runs only the cases that need no broker
    /// settings of their own.
    Kafka36(Option<String>),
}

impl PeerKind {
    /// The name used in `deviations.tsv` and the matrix.
    pub fn name(&self) -> &'static str {
        match self {
            PeerKind::Scripted => "scripted",
            PeerKind::Nisshi => "nisshi",
            PeerKind::Mock => "mock",
            PeerKind::Kafka36(_) => "kafka36",
        }
    }
}

/// The peers for an environment: the scripted coordinator, nisshi, the mock and Kafka 3.6, the
/// latter started by the suite unless `KGROUP_KAFKA36_BOOTSTRAP` names a cluster (non-blank);
/// `KGROUP_CONFORMANCE_PEERS` keeps only the peers it names.
pub fn select_peers(env: &HashMap<String, String>) -> Result<Vec<PeerKind>, String> {
    let external = env.get(KAFKA36_ENV).map(|s| s.trim()).filter(|s| !s.is_empty()).map(str::to_owned);
    let all = vec![PeerKind::Scripted, PeerKind::Nisshi, PeerKind::Mock, PeerKind::Kafka36(external)];
    let Some(wanted) = env.get(PEERS_ENV).filter(|s| !s.trim().is_empty()) else { return Ok(all) };
    let wanted: Vec<&str> = wanted.split(',').map(str::trim).collect();
    if let Some(unknown) = wanted.iter().find(|w| !all.iter().any(|p| p.name() == **w)) {
        return Err(format!("{PEERS_ENV}: unknown peer {unknown:?} (scripted, nisshi, mock, kafka36)"));
    }
    Ok(all.into_iter().filter(|p| wanted.contains(&p.name())).collect())
}

/// One cell of the matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Answered exactly the documented deviation.
    Deviation,
    NotApplicable,
    /// Anything else: the message says what was expected and what came.
    Fail(String),
}

impl Verdict {
    pub fn cell(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Deviation => "deviation",
            Verdict::NotApplicable => "n/a",
            Verdict::Fail(_) => "FAIL",
        }
    }
}

/// Judges an observation: Kafka's expectation unless the table lists a deviation for the peer.
/// A peer listed with a deviation that answers like Kafka fails too (the row is stale).
pub fn judge(table: &DeviationTable, peer: &str, case: &str, expected: &str, observed: &str) -> Verdict {
    match table.get(peer, case) {
        None if observed == expected => Verdict::Pass,
        None => Verdict::Fail(format!("expected (Kafka 3.6) `{expected}`\n    observed `{observed}`")),
        Some(Deviation::Answers { answer, .. }) if observed == answer => Verdict::Deviation,
        Some(Deviation::Answers { answer, .. }) => Verdict::Fail(format!(
            "expected (documented deviation) `{answer}`\n    Kafka 3.6 `{expected}`\n    observed `{observed}`"
        )),
        Some(Deviation::NotApplicable { .. }) => Verdict::Fail("listed as n/a but was run".to_owned()),
    }
}

/// The matrix as a Markdown table: one row per case, one column per peer.
pub fn render_matrix(cases: &[&str], peers: &[&str], cells: &HashMap<(String, String), Verdict>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| case | {} |", peers.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(peers.len()));
    for case in cases {
        let row: Vec<&str> =
            peers.iter().map(|p| cells.get(&(case.to_string(), p.to_string())).map_or("-", Verdict::cell)).collect();
        let _ = writeln!(out, "| {case} | {} |", row.join(" | "));
    }
    out
}

/// The README's matrix: the lines between `<!-- conformance-matrix -->` and
/// `<!-- /conformance-matrix -->`, so the suite can check the README shows what it found.
pub fn readme_matrix(readme: &str) -> Option<&str> {
    let start = readme.find(MATRIX_START)? + MATRIX_START.len();
    let len = readme[start..].find(MATRIX_END)?;
    Some(readme[start..start + len].trim_start_matches('\n'))
}

const MATRIX_START: &str = "<!-- conformance-matrix -->";
const MATRIX_END: &str = "<!-- /conformance-matrix -->";

/// Kafka's name for an error code (the ones the group APIs use), or the number.
pub fn error_name(code: i16) -> String {
    let name = match code {
        0 => "NONE",
        -1 => "UNKNOWN_SERVER_ERROR",
        3 => "UNKNOWN_TOPIC_OR_PARTITION",
        7 => "REQUEST_TIMED_OUT",
        12 => "OFFSET_METADATA_TOO_LARGE",
        14 => "COORDINATOR_LOAD_IN_PROGRESS",
        15 => "COORDINATOR_NOT_AVAILABLE",
        16 => "NOT_COORDINATOR",
        22 => "ILLEGAL_GENERATION",
        23 => "INCONSISTENT_GROUP_PROTOCOL",
        24 => "INVALID_GROUP_ID",
        25 => "UNKNOWN_MEMBER_ID",
        26 => "INVALID_SESSION_TIMEOUT",
        27 => "REBALANCE_IN_PROGRESS",
        28 => "INVALID_COMMIT_OFFSET_SIZE",
        35 => "UNSUPPORTED_VERSION",
        42 => "INVALID_REQUEST",
        53 => "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
        68 => "NON_EMPTY_GROUP",
        69 => "GROUP_ID_NOT_FOUND",
        79 => "MEMBER_ID_REQUIRED",
        81 => "GROUP_MAX_SIZE_REACHED",
        82 => "FENCED_INSTANCE_ID",
        88 => "UNSTABLE_OFFSET_COMMIT",
        other => return format!("ERR{other}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_parses_and_judges() {
        let table = DeviationTable::parse(
            "# comment\npeer\tcase\tanswer\twhy\nnisshi\tT07\tNONE\tno minimum\nmock\tT04\tn/a\tno v4 join\n",
        )
        .unwrap();
        assert_eq!(judge(&table, "scripted", "T07", "X", "X"), Verdict::Pass);
        assert!(matches!(judge(&table, "scripted", "T07", "X", "Y"), Verdict::Fail(_)));
        assert_eq!(judge(&table, "nisshi", "T07", "X", "NONE"), Verdict::Deviation);
        // A deviation row whose peer now answers like Kafka is stale: it fails.
        assert!(matches!(judge(&table, "nisshi", "T07", "X", "X"), Verdict::Fail(_)));
        assert_eq!(table.get("mock", "T04"), Some(&Deviation::NotApplicable { why: "no v4 join".into() }));
        assert!(DeviationTable::parse("peer\tcase\tanswer\twhy\na\tb\tc\t\n").is_err());
    }

    #[test]
    fn readme_matrix_is_the_block_between_the_markers() {
        let readme = "intro\n<!-- conformance-matrix -->\n| case |\n|---|\n<!-- /conformance-matrix -->\nrest";
        assert_eq!(readme_matrix(readme), Some("| case |\n|---|\n"));
        assert_eq!(readme_matrix("no markers"), None);
    }

    #[test]
    fn peers_follow_the_environment_map() {
        let mut env = HashMap::new();
        let launched = vec![PeerKind::Scripted, PeerKind::Nisshi, PeerKind::Mock, PeerKind::Kafka36(None)];
        assert_eq!(select_peers(&env), Ok(launched.clone()));
        env.insert(KAFKA36_ENV.to_owned(), "  ".to_owned());
        assert_eq!(select_peers(&env), Ok(launched));
        env.insert(KAFKA36_ENV.to_owned(), "127.0.0.1:9092".to_owned());
        let external = PeerKind::Kafka36(Some("127.0.0.1:9092".into()));
        assert_eq!(select_peers(&env).unwrap().last(), Some(&external));
        env.insert(PEERS_ENV.to_owned(), "kafka36, scripted".to_owned());
        assert_eq!(select_peers(&env), Ok(vec![PeerKind::Scripted, external]));
        env.insert(PEERS_ENV.to_owned(), "kafka".to_owned());
        assert!(select_peers(&env).unwrap_err().contains("\"kafka\""));
        assert!(case_selected(&env, "T11"));
        env.insert(CASES_ENV.to_owned(), "T11, T47".to_owned());
        assert!(case_selected(&env, "T47") && !case_selected(&env, "T12"));
    }
}
