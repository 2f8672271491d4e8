//! The Java reference client (kafka-clients 3.6.2) as a group member: the process of
//! `integration/kafka36/java/GroupMember.java` (compiled by
//! `kgroup::embedded::kafka36::java_peer_classpath`), its stdout lines read as they come; or,
//! for a Kafka 4 release, that release's own kafka-clients running
//! `integration/kafka4/java/GroupMember.java` (same arguments and lines, either group protocol).
//!
//! The member stops when its standard input closes, so it also stops when the test process
//! dies; it is killed when the handle drops, and a handle dropped by a failing test prints the
//! member's output.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use kgroup::embedded::kafka36::{java_peer_classpath_of, KafkaRelease};
use tokio::time::Instant;

use crate::recording_member::MemberView;

/// Stops the member on its own should nobody close its input.
const MAX_SECONDS: u32 = 600;
/// Lines of standard error kept for a failure report.
const STDERR_LINES: usize = 200;

/// One line of the member's output, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JavaEvent {
    Started,
    /// `onPartitionsAssigned`: every partition under an eager protocol, the added ones under a
    /// cooperative one.
    Assigned {
        generation: i32,
        member_id: String,
        partitions: BTreeSet<i32>,
    },
    Revoked {
        generation: i32,
        member_id: String,
        partitions: BTreeSet<i32>,
    },
    Lost {
        generation: i32,
        member_id: String,
        partitions: BTreeSet<i32>,
    },
    /// Records handed out: partition, first and last offset.
    Batch {
        generation: i32,
        ranges: Vec<(i32, i64, i64)>,
    },
    CommitOk {
        generation: i32,
        offsets: Vec<(i32, i64)>,
    },
    CommitFail {
        generation: i32,
        cause: String,
        offsets: Vec<(i32, i64)>,
    },
    Closed,
}

/// Parses `<ms> KIND ...` as `GroupMember.java` prints it.
pub fn parse_line(line: &str) -> Option<JavaEvent> {
    let mut words = line.split_whitespace();
    let _millis: u64 = words.next()?.parse().ok()?;
    let kind = words.next()?;
    let partitions = |list: &str| -> Option<BTreeSet<i32>> {
        if list == "-" {
            return Some(BTreeSet::new());
        }
        list.split(',').map(|p| p.parse().ok()).collect()
    };
    let offsets = |words: std::str::SplitWhitespace<'_>| -> Option<Vec<(i32, i64)>> {
        words
            .map(|w| {
                let (p, o) = w.split_once(':')?;
                Some((p.parse().ok()?, o.parse().ok()?))
            })
            .collect()
    };
    match kind {
        "STARTED" => Some(JavaEvent::Started),
        "CLOSED" => Some(JavaEvent::Closed),
        "ASSIGNED" | "REVOKED" | "LOST" => {
            let generation = words.next()?.parse().ok()?;
            let member_id = words.next()?.to_owned();
            let partitions = partitions(words.next()?)?;
            Some(match kind {
                "ASSIGNED" => JavaEvent::Assigned { generation, member_id, partitions },
                "REVOKED" => JavaEvent::Revoked { generation, member_id, partitions },
                _ => JavaEvent::Lost { generation, member_id, partitions },
            })
        }
        "BATCH" => {
            let generation = words.next()?.parse().ok()?;
            let ranges = words
                .map(|w| {
                    let (p, range) = w.split_once(':')?;
                    let (first, last) = range.split_once('-')?;
                    Some((p.parse().ok()?, first.parse().ok()?, last.parse().ok()?))
                })
                .collect::<Option<_>>()?;
            Some(JavaEvent::Batch { generation, ranges })
        }
        "COMMIT_OK" => {
            let generation = words.next()?.parse().ok()?;
            Some(JavaEvent::CommitOk { generation, offsets: offsets(words)? })
        }
        "COMMIT_FAIL" => {
            let generation = words.next()?.parse().ok()?;
            let cause = words.next()?.to_owned();
            Some(JavaEvent::CommitFail { generation, cause, offsets: offsets(words)? })
        }
        _ => None,
    }
}

/// What the member's events say it owned: per generation (as of its `Assigned` event), and now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JavaOwnership {
    pub by_generation: BTreeMap<i32, BTreeSet<i32>>,
    pub current: MemberView,
}

/// Folds the callbacks in order: revoked and lost partitions go, assigned ones come (all of them
/// under an eager protocol, which revoked everything first).
pub fn ownership(events: &[JavaEvent]) -> JavaOwnership {
    let mut ownership = JavaOwnership::default();
    for event in events {
        match event {
            JavaEvent::Assigned { generation, partitions, .. } => {
                ownership.current.partitions.extend(partitions);
                ownership.current.generation = Some(*generation);
                ownership.by_generation.insert(*generation, ownership.current.partitions.clone());
            }
            JavaEvent::Revoked { partitions, .. } | JavaEvent::Lost { partitions, .. } => {
                ownership.current.partitions.retain(|p| !partitions.contains(p));
            }
            JavaEvent::Closed => ownership.current = MemberView::default(),
            _ => {}
        }
    }
    ownership
}

#[derive(Default)]
struct Output {
    events: Vec<JavaEvent>,
    stdout: Vec<String>,
    stderr: VecDeque<String>,
}

fn lock(output: &Mutex<Output>) -> MutexGuard<'_, Output> {
    output.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running Java group member.
pub struct JavaMember {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    output: Arc<Mutex<Output>>,
    readers: Vec<JoinHandle<()>>,
}

impl JavaMember {
    /// Starts `GroupMember BOOTSTRAP GROUP TOPIC 0 MAX_SECONDS client.id=NAME properties...`
    /// (no simulated processing time).
    pub fn start(name: &str, bootstrap: &str, group: &str, topic: &str, properties: &[(&str, &str)]) -> JavaMember {
        Self::start_on(KafkaRelease::Kafka36, name, bootstrap, group, topic, properties)
    }

    /// [`start`](Self::start) with `release`'s kafka-clients (for Kafka 4, its member speaks
    /// the group protocol `group.protocol` names).
    pub fn start_on(
        release: KafkaRelease,
        name: &str,
        bootstrap: &str,
        group: &str,
        topic: &str,
        properties: &[(&str, &str)],
    ) -> JavaMember {
        let classpath = java_peer_classpath_of(release).unwrap_or_else(|e| panic!("Java group member: {e}"));
        let mut command = Command::new(java());
        // A small client JVM: C1 only and a serial collector start quickest on 2 cores.
        command
            .args(["-Xmx160m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", &classpath, "GroupMember"])
            .args([bootstrap, group, topic, "0", &MAX_SECONDS.to_string()])
            .arg(format!("client.id={name}"))
            .args(properties.iter().map(|(k, v)| format!("{k}={v}")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("starting java for {name}: {e}"));
        let output = Arc::new(Mutex::new(Output::default()));
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            let output = output.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let mut output = lock(&output);
                    if let Some(event) = parse_line(&line) {
                        output.events.push(event);
                    }
                    output.stdout.push(line);
                }
            }));
        }
        if let Some(stderr) = child.stderr.take() {
            let output = output.clone();
            readers.push(std::thread::spawn(move || read_stderr(stderr, &output)));
        }
        let stdin = child.stdin.take();
        JavaMember { name: name.to_owned(), child, stdin, output, readers }
    }

    /// The member's events so far.
    pub fn events(&self) -> Vec<JavaEvent> {
        lock(&self.output).events.clone()
    }

    pub fn ownership(&self) -> JavaOwnership {
        ownership(&lock(&self.output).events)
    }

    /// Its part of a group view: the generation of its last assignment and what it owns now.
    pub fn view(&self) -> (String, MemberView) {
        (self.name.clone(), self.ownership().current)
    }

    /// Closes its input, so it closes its consumer (LeaveGroup) and exits; killed if it has not
    /// within `limit`.
    pub async fn stop(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.stdin.take();
        let deadline = Instant::now() + limit;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        status
    }

    /// Everything it printed, for a failure report.
    pub fn output(&self) -> String {
        let output = lock(&self.output);
        format!(
            "---- {} stdout:\n{}\n---- {} stderr (last {STDERR_LINES} lines):\n{}",
            self.name,
            output.stdout.join("\n"),
            self.name,
            output.stderr.iter().cloned().collect::<Vec<_>>().join("\n")
        )
    }
}

/// `$JAVA_HOME/bin/java` when it exists, else `java` from `PATH` (as the broker launcher does).
pub fn java() -> std::path::PathBuf {
    std::env::var_os("JAVA_HOME")
        .map(|home| std::path::PathBuf::from(home).join("bin").join("java"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| "java".into())
}

fn read_stderr(stderr: impl Read, output: &Mutex<Output>) {
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        let mut output = lock(output);
        if output.stderr.len() == STDERR_LINES {
            output.stderr.pop_front();
        }
        output.stderr.push_back(line);
    }
}

impl Drop for JavaMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.output());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(partitions: &[i32]) -> BTreeSet<i32> {
        partitions.iter().copied().collect()
    }

    #[test]
    fn every_line_kind_parses() {
        let lines = [
            ("1 STARTED j1", Some(JavaEvent::Started)),
            (
                "2 ASSIGNED 3 j1-abc 0,1,2",
                Some(JavaEvent::Assigned { generation: 3, member_id: "j1-abc".into(), partitions: set(&[0, 1, 2]) }),
            ),
            (
                "3 REVOKED 3 j1-abc -",
                Some(JavaEvent::Revoked { generation: 3, member_id: "j1-abc".into(), partitions: set(&[]) }),
            ),
            (
                "4 LOST -1 j1-abc 4",
                Some(JavaEvent::Lost { generation: -1, member_id: "j1-abc".into(), partitions: set(&[4]) }),
            ),
            ("5 BATCH 3 0:10-19 2:0-4", Some(JavaEvent::Batch { generation: 3, ranges: vec![(0, 10, 19), (2, 0, 4)] })),
            ("6 COMMIT_OK 3 0:20 2:5", Some(JavaEvent::CommitOk { generation: 3, offsets: vec![(0, 20), (2, 5)] })),
            (
                "7 COMMIT_FAIL 3 ILLEGAL_GENERATION 0:20",
                Some(JavaEvent::CommitFail {
                    generation: 3,
                    cause: "ILLEGAL_GENERATION".into(),
                    offsets: vec![(0, 20)],
                }),
            ),
            ("8 CLOSED", Some(JavaEvent::Closed)),
            ("log4j:WARN No appenders could be found", None),
            ("9 ASSIGNED x j1 0", None),
        ];
        for (line, expected) in lines {
            assert_eq!(parse_line(line), expected, "{line}");
        }
    }

    #[test]
    fn ownership_follows_eager_and_cooperative_callbacks() {
        let parse = |lines: &[&str]| lines.iter().filter_map(|l| parse_line(l)).collect::<Vec<_>>();
        // Eager: everything revoked, then the whole new assignment.
        let eager = ownership(&parse(&["1 ASSIGNED 1 m 0,1,2,3", "2 REVOKED 1 m 0,1,2,3", "3 ASSIGNED 2 m 0,1"]));
        assert_eq!(eager.current, MemberView { generation: Some(2), partitions: set(&[0, 1]) });
        assert_eq!(eager.by_generation[&1], set(&[0, 1, 2, 3]));
        // Cooperative: only what moves is revoked, only what comes is assigned.
        let cooperative =
            ownership(&parse(&["1 ASSIGNED 1 m 0,1,2,3", "2 REVOKED 2 m 2,3", "3 ASSIGNED 2 m -", "4 ASSIGNED 3 m 4"]));
        assert_eq!(cooperative.current, MemberView { generation: Some(3), partitions: set(&[0, 1, 4]) });
        assert_eq!(cooperative.by_generation[&2], set(&[0, 1]));
        let closed = ownership(&parse(&["1 ASSIGNED 1 m 0", "2 CLOSED"]));
        assert_eq!(closed.current, MemberView::default());
    }
}
