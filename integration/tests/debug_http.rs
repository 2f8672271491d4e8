//! The debug server (`kgroup::debug_http`, feature `debug-http`) in front of real members on a
//! real broker: `/snapshot`, `/members` and `/events` against the members' own answers, live
//! events over SSE across a rebalance, metrics, 404/405, a reader that never reads, and the page itself
//! in a headless Chromium (Debian's `chromium` package) while the group grows.
//!
//! Everything talks to 127.0.0.1 over plain HTTP/1.1 written by hand, so the tests also pin the
//! wire format that other tools (the `kgroup member` CLI, `curl`) read.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use kgroup::debug_http::DebugServer;
use kgroup::driver::group::{GroupHandle, RevokeMode};
use kgroup::group::{GroupConfig, GroupSnapshot, StateKind, TopicPartition};
use kgroup::Cluster;
use kgroup_integration::{init_tracing, unique_name, TestBroker};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

/// Any single HTTP exchange, and any wait for the group, is bounded by this.
const BOUND: Duration = Duration::from_secs(60);

async fn setup(partitions: i32) -> (TestBroker, Cluster, String) {
    init_tracing();
    let broker = TestBroker::start().await;
    let cluster = broker.cluster().await;
    let topic = unique_name("debug-http");
    cluster.create_topic(&topic, partitions, 1).await.expect("create topic");
    (broker, cluster, topic)
}

/// A member whose revoke windows close by themselves, so nothing has to poll it.
async fn member(cluster: &Cluster, group: &str, topic: &str) -> GroupHandle {
    let mut config = GroupConfig::new(group);
    config.session_timeout = Duration::from_secs(10);
    config.heartbeat_interval = Duration::from_millis(300);
    config.rebalance_timeout = Duration::from_secs(30);
    config.revoke_timeout = Duration::from_secs(10);
    GroupHandle::start(cluster.clone(), config, vec![topic.to_owned()], RevokeMode::Automatic).await.expect("member")
}

/// Waits until every member is Stable in one generation, the partitions covered exactly once.
async fn stable(members: &[&GroupHandle], partitions: i32) -> Vec<GroupSnapshot> {
    timeout(BOUND, async {
        loop {
            let mut snapshots = Vec::new();
            for m in members {
                snapshots.push(m.group_state().await.expect("snapshot"));
            }
            let generations: BTreeSet<_> = snapshots.iter().map(|s| s.generation.as_ref().map(|g| g.id)).collect();
            let mut owned: Vec<i32> =
                snapshots.iter().flat_map(|s| s.assignment.iter().map(|p| p.partition.partition)).collect();
            owned.sort();
            if snapshots.iter().all(|s| s.state == StateKind::Stable)
                && generations.len() == 1
                && owned == (0..partitions).collect::<Vec<_>>()
            {
                return snapshots;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the group becomes stable in time")
}

fn generation(snapshot: &GroupSnapshot) -> i32 {
    snapshot.generation.as_ref().expect("a generation").id.0
}

/// An HTTP answer: status, head (lower-cased) and body.
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("JSON body ({e}): {}", self.text()))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on its own connection (`Connection: close`), read to the end.
async fn request(addr: SocketAddr, method: &str, target: &str) -> Answer {
    timeout(BOUND, async {
        let mut stream = TcpStream::connect(addr).await.expect("connect to the debug server");
        let head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.expect("send request");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read answer");
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head");
        let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
        Answer { status, head, body: raw[split + 4..].to_vec() }
    })
    .await
    .unwrap_or_else(|_| panic!("{method} {target} answered in time"))
}

async fn get(addr: SocketAddr, target: &str) -> Answer {
    request(addr, "GET", target).await
}

/// An SSE connection read line by line (the body is chunked: an event is one chunk, so its
/// `data:` line is never split by chunk headers).
struct EventStream {
    stream: TcpStream,
    buffered: Vec<u8>,
}

impl EventStream {
    async fn open(addr: SocketAddr, target: &str, receive_buffer: Option<u32>) -> EventStream {
        let socket = TcpSocket::new_v4().expect("socket");
        if let Some(size) = receive_buffer {
            socket.set_recv_buffer_size(size).expect("receive buffer size");
        }
        let mut stream = timeout(BOUND, socket.connect(addr)).await.expect("connect in time").expect("connect");
        let head = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
        stream.write_all(head.as_bytes()).await.expect("send request");
        EventStream { stream, buffered: Vec::new() }
    }

    /// The next line, within `BOUND`.
    async fn line(&mut self) -> String {
        timeout(BOUND, async {
            loop {
                if let Some(end) = self.buffered.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = self.buffered.drain(..=end).collect();
                    return String::from_utf8_lossy(&line).trim_end().to_owned();
                }
                let mut chunk = [0u8; 16 * 1024];
                let n = self.stream.read(&mut chunk).await.expect("read the event stream");
                assert!(n > 0, "the event stream ended");
                self.buffered.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("a line of the event stream in time")
    }

    /// Reads events until `wanted` accepts one; returns it and whether a `dropped` event came
    /// before it.
    async fn until(&mut self, wanted: impl Fn(&Value) -> bool) -> (Value, bool) {
        let mut dropped = false;
        loop {
            let line = self.line().await;
            dropped |= line == "event: dropped";
            if let Some(data) = line.strip_prefix("data: ") {
                let event: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("event JSON ({e}): {data}"));
                if wanted(&event) {
                    return (event, dropped);
                }
            }
        }
    }
}

/// Whether `event` is `member`'s assignment of `generation`.
fn is_assigned(event: &Value, member: &str, generation: i32) -> bool {
    event["member"] == member && event["event"]["Assigned"]["generation"]["id"] == generation
}

/// A served snapshot agrees with the member's own in what identifies its membership.
fn assert_same_member(served: &Value, own: &GroupSnapshot) {
    assert_eq!(served["member_id"], own.member_id.as_str());
    assert_eq!(served["generation"]["id"], generation(own));
    assert_eq!(served["state"], own.state.to_string());
    let served_assignment: Vec<(i64, i64)> = served["assignment"]
        .as_array()
        .expect("an assignment")
        .iter()
        .map(|p| (p["partition"]["partition"].as_i64().expect("partition"), p["owned_since"].as_i64().expect("since")))
        .collect();
    let own_assignment: Vec<(i64, i64)> =
        own.assignment.iter().map(|p| (i64::from(p.partition.partition), i64::from(p.owned_since.0))).collect();
    assert_eq!(served_assignment, own_assignment);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_snapshots_members_and_events_across_a_rebalance() {
    let (_broker, cluster, topic) = setup(4).await;
    let group = unique_name("debug-http-group");
    let a = member(&cluster, &group, &topic).await;
    let server = a.serve_debug("127.0.0.1:0").await.expect("serve");
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback());
    stable(&[&a], 4).await;

    // A single member is `/snapshot` without a label.
    let own = a.group_state().await.expect("snapshot");
    let served = get(addr, "/snapshot").await;
    assert_eq!(served.status, 200, "{}", served.text());
    assert!(served.head.contains("content-type: application/json"));
    assert_same_member(&served.json(), &own);

    // Live: listening before B joins, the stream shows A's assignment of the new generation.
    let mut live = EventStream::open(addr, "/events", None).await;
    assert_eq!(live.line().await, "HTTP/1.1 200 OK");
    let b = member(&cluster, &group, &topic).await;
    server.add_member("b", &b.observer()).expect("a new label");
    assert!(server.add_member("b", &b.observer()).is_err(), "labels are unique");
    let snapshots = stable(&[&a, &b], 4).await;
    let current = generation(&snapshots[0]);
    assert!(current > generation(&own));
    live.until(|e| is_assigned(e, "member", current)).await;

    // Two members: `/snapshot` needs a label; each agrees with its member.
    assert_eq!(get(addr, "/snapshot").await.status, 400);
    for (label, snapshot) in [("member", &snapshots[0]), ("b", &snapshots[1])] {
        let served = get(addr, &format!("/snapshot?member={label}")).await;
        assert_eq!(served.status, 200, "{}", served.text());
        assert_same_member(&served.json(), snapshot);
    }
    let members = get(addr, "/members").await.json();
    let members = members.as_array().expect("an array");
    assert_eq!(members.iter().map(|m| m["label"].as_str().expect("label")).collect::<Vec<_>>(), ["member", "b"]);
    for (served, own) in members.iter().zip(&snapshots) {
        assert_same_member(&served["snapshot"], own);
    }

    // The recent events, as newline-delimited JSON: A's assignment of the current generation
    // is there, and `?member=` keeps to one member.
    let recent = get(addr, "/events?format=ndjson").await;
    assert_eq!(recent.status, 200);
    assert!(recent.head.contains("content-type: application/x-ndjson"));
    let lines: Vec<Value> =
        recent.text().lines().map(|l| serde_json::from_str(l).expect("one JSON event per line")).collect();
    assert!(lines.iter().any(|e| is_assigned(e, "member", current)), "{}", recent.text());
    assert!(lines.iter().all(|e| e["at"]["secs_since_epoch"].is_u64()));
    let only_b = get(addr, "/events?format=ndjson&member=b").await.text();
    assert!(only_b.lines().all(|l| serde_json::from_str::<Value>(l).expect("JSON")["member"] == "b"));

    // Metrics: both members, told apart by their label, each stable in the current generation
    // after its rebalances; the same text as each member's own registry gives.
    let metrics = get(addr, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.head.contains("content-type: text/plain; version=0.0.4"));
    let text = metrics.text();
    for label in ["member", "b"] {
        let stable = format!("client_id=\"kgroup\",member=\"{label}\",state=\"stable\"}} 1\n");
        assert!(text.contains(&stable), "no {stable:?} in:\n{text}");
    }
    let rebalances = format!("kgroup_rebalances_total{{group=\"{group}\",client_id=\"kgroup\",member=\"member\"}} ");
    assert!(text.contains(&rebalances), "B's join rebalanced A:\n{text}");
    assert!(a
        .metrics()
        .render_prometheus()
        .contains(&format!("kgroup_rebalances_total{{group=\"{group}\",client_id=\"kgroup\"}} ")));

    // What is not served.
    for (method, target, status) in [
        ("GET", "/nope", 404),
        ("GET", "/snapshot?member=nobody", 404),
        ("GET", "/events?format=xml", 400),
        ("POST", "/snapshot", 405),
        ("DELETE", "/", 405),
    ] {
        let answer = request(addr, method, target).await;
        assert_eq!(answer.status, status, "{method} {target}: {}", answer.text());
    }

    // The page is one self-contained document.
    let page = get(addr, "/").await;
    assert!(page.head.contains("content-type: text/html"));
    assert!(!page.text().contains("src=\"http") && !page.text().contains("href=\"http"), "no external assets");

    server.shutdown().await;
    assert!(TcpStream::connect(addr).await.is_err(), "nothing listens after shutdown");
    drop(live);
    for m in [a, b] {
        m.leave("test done").await.expect("leave");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_never_reads_holds_neither_the_member_nor_other_readers() {
    const PARTITIONS: i32 = 64;
    // With 64 partitions an event is about 9 KB: these fill the stalled socket (its sender's
    // buffer is at most 4 MB by default) and its queue, then overflow the live stream.
    const COMMITS: i64 = 2500;
    let (_broker, cluster, topic) = setup(PARTITIONS).await;
    let a = member(&cluster, &unique_name("debug-http-slow"), &topic).await;
    let server = a.serve_debug("127.0.0.1:0").await.expect("serve");
    let addr = server.local_addr();
    stable(&[&a], PARTITIONS).await;

    let mut stalled = EventStream::open(addr, "/events", Some(4096)).await;
    let mut leases = Vec::new();
    for p in 0..PARTITIONS {
        leases.push(a.lease(TopicPartition::new(&topic, p), 0).await.expect("lease").expect("owned"));
    }
    timeout(Duration::from_secs(300), async {
        for offset in 1..=COMMITS {
            let results = a.commit(leases.iter().map(|l| l.at_offset(offset)).collect()).await.expect("commit");
            assert!(results.iter().all(|r| r.outcome.is_committed()), "commit {offset}: {results:?}");
        }
    })
    .await
    .expect("the member keeps committing while a reader stalls");
    // Other readers are served meanwhile.
    assert_eq!(get(addr, "/snapshot").await.status, 200);

    // The stalled reader, reading at last, is told what it missed.
    let last = a.group_state().await.expect("snapshot").counters.commits_sent;
    let (_, dropped) =
        stalled.until(|e| e["event"]["CommitCompleted"]["results"][0]["offset"].as_i64() == Some(COMMITS)).await;
    assert!(dropped, "a `dropped` event before the last of {last} commits");
    server.shutdown().await;
    a.leave("test done").await.expect("leave");
}

// ---- the page in a real browser ----

const CHROMIUM: &str = "/usr/bin/chromium";

/// A headless Chromium driven over its DevTools pipe (`--remote-debugging-pipe`: JSON messages
/// ended by NUL, commands on its fd 3, answers on its fd 4). Its whole process group is killed
/// when this drops, also when the test fails; its profile directory is removed.
struct Browser {
    child: tokio::process::Child,
    profile: PathBuf,
    commands: std::fs::File,
    answers: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
    next_id: u64,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // The browser leads its own process group (zygote, renderers): end all of it.
            unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A pipe's two ends, numbered 10 or above and close-on-exec, so that moving them to fds 3
/// and 4 in the child cannot overwrite one with the other.
fn pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0, "pipe");
    let high = |fd| {
        let moved = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
        assert!(moved >= 10, "fcntl");
        unsafe { libc::close(fd) };
        unsafe { std::os::fd::OwnedFd::from_raw_fd(moved) }
    };
    (high(fds[0]), high(fds[1]))
}

impl Browser {
    async fn launch() -> Browser {
        use std::os::fd::AsRawFd;
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: install Debian's `chromium` package (apt-get install -y chromium) to run the debug page test"
        );
        let profile = Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique_name("chromium-profile"));
        let (command_read, command_write) = pipe();
        let (answer_read, answer_write) = pipe();
        let (to_3, to_4) = (command_read.as_raw_fd(), answer_write.as_raw_fd());
        let mut command = tokio::process::Command::new(CHROMIUM);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-crash-reporter",
                "--remote-debugging-pipe",
                "--window-size=1400,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        // Only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if libc::dup2(to_3, 3) < 0 || libc::dup2(to_4, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        };
        let child = command.spawn().expect("start chromium");
        drop((command_read, answer_write));
        let (tx, answers) = tokio::sync::mpsc::unbounded_channel();
        // Ends at end of file, when the browser is gone.
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut reader = std::io::BufReader::new(std::fs::File::from(answer_read));
            loop {
                let mut message = Vec::new();
                match reader.read_until(0, &mut message) {
                    Ok(n) if n > 0 && message.ends_with(&[0]) => {
                        message.pop();
                        if tx.send(message).is_err() {
                            return;
                        }
                    }
                    _ => return,
                }
            }
        });
        Browser { child, profile, commands: std::fs::File::from(command_write), answers, next_id: 0 }
    }

    /// Sends a DevTools command (to the page's session, if given) and returns its result.
    async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        use std::io::Write;
        self.next_id += 1;
        let id = self.next_id;
        let mut message = serde_json::json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = session.into();
        }
        let mut bytes = message.to_string().into_bytes();
        bytes.push(0);
        // A few hundred bytes into a pipe the browser reads: does not block for long.
        self.commands.write_all(&bytes).expect("write to the DevTools pipe");
        timeout(BOUND, async {
            loop {
                let answer = self.answers.recv().await.expect("the browser is running");
                let answer: Value = serde_json::from_slice(&answer).expect("DevTools JSON");
                if answer["id"] == id {
                    assert!(answer["error"].is_null(), "{method}: {answer}");
                    return answer["result"].clone();
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{method} answered in time"))
    }

    /// Opens `url` in a new page; returns the page's session.
    async fn open(&mut self, url: &str) -> String {
        let target = self.call(None, "Target.createTarget", serde_json::json!({ "url": url })).await;
        let attached = self
            .call(None, "Target.attachToTarget", serde_json::json!({ "targetId": target["targetId"], "flatten": true }))
            .await;
        attached["sessionId"].as_str().expect("a session").to_owned()
    }

    /// The page's DOM as it is now; empty while the page is still loading (the evaluation then
    /// runs in the blank document, or its context goes away with the navigation).
    async fn dom(&mut self, session: &str) -> String {
        let params = serde_json::json!({ "expression": "document.documentElement.outerHTML", "returnByValue": true });
        let result = self.call(Some(session), "Runtime.evaluate", params).await;
        result["result"]["value"].as_str().unwrap_or_default().to_owned()
    }

    /// Reads the page until `done` accepts what it shows (bounded), and returns that.
    async fn until(&mut self, session: &str, done: impl Fn(&Shown) -> bool) -> (String, Shown) {
        for _ in 0..600 {
            let dom = self.dom(session).await;
            let page = shown(&dom);
            if done(&page) {
                return (dom, page);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the page did not show what was expected in time")
    }

    async fn screenshot(&mut self, session: &str, path: &Path) {
        use base64::Engine;
        let shot = self.call(Some(session), "Page.captureScreenshot", serde_json::json!({ "format": "png" })).await;
        let png =
            base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().expect("data")).expect("base64");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(path, png).expect("write the screenshot");
    }
}

/// Where the page's screenshots are kept: `target/debug-page/`.
fn artifacts() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("debug-page");
    std::fs::create_dir_all(&dir).expect("artifact directory");
    dir
}

/// The attributes of every start tag of `html` that begins with `prefix` (such as
/// `<tr data-member=`), in document order. The DOM dump quotes every value with `"` and escapes
/// `"` inside it.
fn tags(html: &str, prefix: &str) -> Vec<BTreeMap<String, String>> {
    html.match_indices(prefix)
        .map(|(start, _)| {
            let tag = &html[start..start + html[start..].find('>').expect("a closed tag")];
            let mut attributes = BTreeMap::new();
            let mut rest = tag.split_once(' ').map_or("", |(_, r)| r);
            while let Some((name, after)) = rest.split_once("=\"") {
                let (value, tail) = after.split_once('"').expect("a quoted value");
                attributes.insert(name.trim().to_owned(), value.replace("&amp;", "&"));
                rest = tail;
            }
            attributes
        })
        .collect()
}

/// What the page shows: per member label its (state, generation), the owner of each
/// partition, the attributes of each generation's row, and the (member, generation) of each
/// assignment in the timeline.
struct Shown {
    members: BTreeMap<String, (String, String)>,
    owners: BTreeMap<i32, String>,
    overview: BTreeMap<String, String>,
    generations: BTreeMap<String, BTreeMap<String, String>>,
    assigned: BTreeSet<(String, String)>,
}

fn shown(dom: &str) -> Shown {
    let members = tags(dom, "<tr data-member=")
        .into_iter()
        .map(|t| (t["data-member"].clone(), (t["data-state"].clone(), t["data-generation"].clone())))
        .collect();
    let owners = tags(dom, "<div class=\"cell")
        .into_iter()
        .filter(|t| !t["data-owner"].is_empty())
        .map(|t| (t["data-partition"].parse().expect("a partition number"), t["data-owner"].clone()))
        .collect();
    // Empty while the page is still loading.
    let overview = tags(dom, "<div id=\"overview\"").into_iter().next().unwrap_or_default();
    let generations =
        tags(dom, "<li data-generation=").into_iter().map(|t| (t["data-generation"].clone(), t)).collect();
    let assigned = tags(dom, "<li data-kind=\"Assigned\"")
        .into_iter()
        .map(|t| (t["data-member"].clone(), t["data-generation"].clone()))
        .collect();
    Shown { members, owners, overview, generations, assigned }
}

/// The partitions added and revoked by the members' assignments of one generation.
struct Assigned {
    added: usize,
    revoked: usize,
}

/// The `Assigned` events of `generation` in the server's recent events, summed over the three
/// members (waiting until the server has each member's: it copies them from the members
/// asynchronously).
async fn assigned_in(addr: SocketAddr, generation: i32) -> Assigned {
    timeout(BOUND, async {
        loop {
            let events = get(addr, "/events?format=ndjson").await.text();
            let events: Vec<Value> = events.lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
            let of_generation: Vec<&Value> = events
                .iter()
                .filter(|e| e["event"]["Assigned"]["generation"]["id"].as_i64() == Some(generation.into()))
                .collect();
            let members: BTreeSet<&str> = of_generation.iter().filter_map(|e| e["member"].as_str()).collect();
            if members.len() == 3 {
                let count = |key: &str| {
                    of_generation.iter().map(|e| e["event"]["Assigned"][key].as_array().map_or(0, Vec::len)).sum()
                };
                return Assigned { added: count("added"), revoked: count("revoked") };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("every member's assignment among the server's events")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_group_as_it_grows() {
    const PARTITIONS: i32 = 6;
    let (_broker, cluster, topic) = setup(PARTITIONS).await;
    let group = unique_name("debug-page");
    let server = DebugServer::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/", server.local_addr());
    let mut members = Vec::new();
    for label in ["a", "b"] {
        let m = member(&cluster, &group, &topic).await;
        server.add_member(label, &m.observer()).expect("label");
        members.push(m);
    }
    let before = stable(&members.iter().collect::<Vec<_>>(), PARTITIONS).await;
    let mut browser = Browser::launch().await;
    let page = browser.open(&url).await;
    browser.until(&page, |p| p.members.len() == 2).await;

    // A third member joins with the page open: it follows the rebalance live.
    let c = member(&cluster, &group, &topic).await;
    server.add_member("c", &c.observer()).expect("label");
    members.push(c);
    let snapshots = stable(&members.iter().collect::<Vec<_>>(), PARTITIONS).await;
    let current = generation(&snapshots[0]).to_string();
    assert!(generation(&snapshots[0]) > generation(&before[0]));
    let assigned = assigned_in(server.local_addr(), generation(&snapshots[0])).await;

    // Once the group is stable nothing changes: when every row shows the generation and the
    // timeline every member's assignment in it, the page must show exactly what `/members`
    // says, and the generation's counts of those assignments.
    let (dom, shown) = browser
        .until(&page, |p| {
            p.members.len() == 3
                && p.members.values().all(|m| *m == ("Stable".to_owned(), current.clone()))
                && ["a", "b", "c"].iter().all(|label| p.assigned.contains(&((*label).to_owned(), current.clone())))
        })
        .await;
    let after = get(server.local_addr(), "/members").await.json();
    assert_eq!(shown.overview["data-generation"], current, "{:?}", shown.overview);
    assert_eq!(shown.overview["data-state"], "Stable");
    let mut owners = BTreeMap::new();
    for served in after.as_array().expect("members") {
        let label = served["label"].as_str().expect("label");
        assert_eq!(
            served["snapshot"]["generation"]["id"].to_string(),
            current,
            "no rebalance after the group was stable"
        );
        for p in served["snapshot"]["assignment"].as_array().expect("assignment") {
            owners.insert(p["partition"]["partition"].as_i64().expect("partition") as i32, label.to_owned());
        }
    }
    assert_eq!(shown.owners, owners, "partition owners on the page against /members");
    // The live parts: the new generation's assignments came over the event stream.
    assert!(
        dom.contains(&format!("<li data-generation=\"{current}\" data-members=\"3\"")),
        "the generation timeline shows {current} with three members"
    );
    let row = &shown.generations[&current];
    assert_eq!(row.get("data-added"), Some(&assigned.added.to_string()), "generation {current}: {row:?}");
    assert_eq!(row.get("data-revoked"), Some(&assigned.revoked.to_string()), "generation {current}: {row:?}");
    let row_start = dom.find(&format!("<li data-generation=\"{current}\"")).expect("the generation's row");
    let row_text = &dom[row_start..row_start + dom[row_start..].find("</li>").expect("the row's end")];
    let summary = format!("3 members, +{} −{} · ", assigned.added, assigned.revoked);
    assert!(row_text.contains(&summary), "{summary:?} (with the first assignment's time) in {row_text}");
    assert!(dom.contains("data-connection=\"live\""), "the event stream is connected");

    browser.screenshot(&page, &artifacts().join("group-of-three.png")).await;
    drop(browser);
    server.shutdown().await;
    for m in members {
        m.leave("test done").await.expect("leave");
    }
}
