//! `kgroup member URL`: a member's debug endpoint (`/snapshot`, the `GroupSnapshot` as JSON, and
//! `/events?format=ndjson`, its recent `GroupEventRecord`s) as a screen of text. A server with
//! several members needs `?member=LABEL` on both (`--member`); its `/members` lists the labels.
//!
//! The JSON is read as untyped values: the debug types only serialize, and a field this version
//! does not know (or one missing from another version) must not stop the screen.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

use super::http::HttpUrl;
use super::printable;

/// Transitions shown, newest last.
const TRANSITIONS_SHOWN: usize = 10;

/// The member to read: an endpoint, and its label there when `--member` names one.
pub(super) struct Endpoint {
    url: HttpUrl,
    label: Option<String>,
}

impl Endpoint {
    pub(super) fn new(url: HttpUrl, label: Option<String>) -> Endpoint {
        Endpoint { url, label }
    }

    /// `path` (which may have a query) with `member=LABEL` when a label is chosen.
    fn path(&self, path: &str) -> String {
        match &self.label {
            None => path.to_owned(),
            Some(label) => {
                let separator = if path.contains('?') { '&' } else { '?' };
                format!("{path}{separator}member={}", percent_encode(label))
            }
        }
    }
}

/// One screen of the member behind `endpoint`: an error when the snapshot cannot be read; the
/// events are optional (shown as unavailable).
pub(super) async fn screen(endpoint: &Endpoint, timeout: Duration) -> Result<String, String> {
    let url = &endpoint.url;
    let path = endpoint.path("/snapshot");
    let body = match url.get(&path, timeout).await {
        Ok(body) => body,
        // The server's answer when it serves several members and none is chosen.
        Err(e) if e.status == Some(400) && endpoint.label.is_none() => {
            let labels = labels(url, timeout).await.map(|l| format!(" (labels: {})", l.join(", "))).unwrap_or_default();
            return Err(format!("{} serves several members: choose one with --member LABEL{labels}", url.join("")));
        }
        // An unknown label, or no debug endpoint at all: /members tells them apart.
        Err(e) if e.status == Some(404) => {
            let Some(label) = &endpoint.label else { return Err(e.message) };
            return Err(match labels(url, timeout).await {
                Some(labels) if !labels.contains(&printable(label)) => {
                    let labels = labels.join(", ");
                    format!("{} serves no member labelled {:?} (labels: {labels})", url.join(""), printable(label))
                }
                _ => e.message,
            });
        }
        Err(e) => return Err(e.message),
    };
    let snapshot: Value =
        serde_json::from_slice(&body).map_err(|e| format!("{} is not a snapshot (JSON: {e})", url.join(&path)))?;
    if !snapshot.is_object() {
        return Err(format!("{} is not a snapshot (not a JSON object)", url.join(&path)));
    }
    let events = url.get(&endpoint.path("/events?format=ndjson"), timeout).await.map_err(String::from).map(|body| {
        String::from_utf8_lossy(&body).lines().filter_map(|line| serde_json::from_str::<Value>(line).ok()).collect()
    });
    Ok(render(&snapshot, events))
}

/// The labels of `url/members` (printable); `None` when it does not answer with them.
async fn labels(url: &HttpUrl, timeout: Duration) -> Option<Vec<String>> {
    let body = url.get("/members", timeout).await.ok()?;
    let members: Value = serde_json::from_slice(&body).ok()?;
    let labels: Option<Vec<String>> = members.as_array()?.iter().map(|m| m["label"].as_str().map(printable)).collect();
    labels.filter(|l| !l.is_empty())
}

/// `text` for a query value: every byte but RFC 3986's unreserved characters as `%XX`.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The text of one screen.
pub(super) fn render(snapshot: &Value, events: Result<Vec<Value>, String>) -> String {
    let mut out = String::new();
    let text = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => printable(s),
        other => printable(&other.to_string()),
    };
    let generation = &snapshot["generation"];
    // KIP-848: the generation is the member epoch.
    let epoch = snapshot["group_protocol"] == "consumer";
    let generation_word = if epoch { "member epoch" } else { "generation" };
    let _ = writeln!(out, "group       {}", text(&snapshot["group_id"]));
    let _ = writeln!(out, "member id   {}", text(&snapshot["member_id"]));
    if !snapshot["group_instance_id"].is_null() {
        let _ = writeln!(out, "instance    {}", text(&snapshot["group_instance_id"]));
    }
    let _ = writeln!(out, "state       {}", text(&snapshot["state"]));
    let _ = writeln!(out, "{:<12}{}", if epoch { "epoch" } else { "generation" }, text(&generation["id"]));
    let leader = if snapshot["is_leader"].as_bool() == Some(true) { "yes" } else { "no" };
    let _ = writeln!(out, "leader      {leader}");
    let _ = writeln!(out, "protocol    {}", text(&snapshot["protocol"]));
    let _ = writeln!(out, "coordinator {}", text(&snapshot["coordinator"]));
    let topics = snapshot["subscription"].as_array().map(Vec::as_slice).unwrap_or_default();
    let topics: Vec<String> = topics.iter().map(text).collect();
    let _ = writeln!(out, "subscribed  {}", if topics.is_empty() { "-".to_owned() } else { topics.join(", ") });
    if let Some(pattern) = snapshot.get("pattern").filter(|v| !v.is_null()) {
        let _ = writeln!(out, "pattern     {}", text(pattern));
    }
    if let Some(rejoin) = snapshot.get("pending_rejoin").filter(|v| !v.is_null()) {
        let _ = writeln!(out, "rejoining   {}", text(rejoin));
    }

    let owned = snapshot["assignment"].as_array().map(Vec::as_slice).unwrap_or_default();
    let _ = writeln!(out, "\nowned partitions ({}):", owned.len());
    for owned in owned {
        let _ = writeln!(
            out,
            "  {:<40} owned since {generation_word} {}",
            partition(&owned["partition"]),
            text(&owned["owned_since"])
        );
    }
    for (title, key) in [("in-flight commits", "in_flight_commits"), ("deferred commits", "deferred_commits")] {
        let commits = snapshot[key].as_array().map(Vec::as_slice).unwrap_or_default();
        let _ = writeln!(out, "\n{title} ({}):", commits.len());
        for commit in commits {
            let stamped = match &commit["stamped_with"] {
                Value::Null => format!("stamped at the next {generation_word}"),
                g => format!("{generation_word} {}", text(g)),
            };
            let offsets: Vec<String> = commit["partitions"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|pair| format!("{}@{}", partition(&pair[0]), text(&pair[1])))
                .collect();
            let _ = writeln!(out, "  commit {} ({stamped}): {}", text(&commit["id"]), offsets.join(", "));
        }
    }

    let _ = writeln!(out, "\nlast transitions:");
    match events {
        Ok(events) => {
            let transitions: Vec<&Value> = events.iter().filter(|e| e["event"].get("Transition").is_some()).collect();
            if transitions.is_empty() {
                let _ = writeln!(out, "  none in the events ring");
            }
            for record in &transitions[transitions.len().saturating_sub(TRANSITIONS_SHOWN)..] {
                let t = &record["event"]["Transition"];
                let _ = writeln!(
                    out,
                    "  {}  {} -> {}  {generation_word} {}  {}",
                    clock(&record["at"]),
                    text(&t["from"]),
                    text(&t["to"]),
                    text(&t["generation"]),
                    text(&t["reason"])
                );
            }
        }
        Err(e) => {
            let _ = writeln!(out, "  unavailable: {}", printable(&e));
            if let Some(last) = snapshot.get("last_transition").filter(|v| !v.is_null()) {
                let _ = writeln!(
                    out,
                    "  last: {} -> {} ({} ms ago)  {}",
                    text(&last["from"]),
                    text(&last["to"]),
                    text(&last["ms_ago"]),
                    text(&last["reason"])
                );
            }
        }
    }
    out
}

/// `topic-partition` of a serialized `TopicPartition`.
fn partition(tp: &Value) -> String {
    match (tp["topic"].as_str(), tp["partition"].as_i64()) {
        (Some(topic), Some(p)) => printable(&format!("{topic}-{p}")),
        _ => printable(&tp.to_string()),
    }
}

/// `HH:MM:SS.mmm` UTC of a serialized `SystemTime`.
fn clock(at: &Value) -> String {
    let (Some(secs), Some(nanos)) = (at["secs_since_epoch"].as_u64(), at["nanos_since_epoch"].as_u64()) else {
        return "--:--:--.---".to_owned();
    };
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}.{:03}", day / 3600, day / 60 % 60, day % 60, nanos / 1_000_000)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_snapshot_and_its_transitions_render_and_missing_fields_do_not_stop_it() {
        let snapshot = json!({
            "group_id": "g", "member_id": "m-1", "state": "Stable", "is_leader": true,
            "generation": {"id": 3, "member_id": "m-1"}, "protocol": "range", "coordinator": 1,
            "assignment": [{"partition": {"topic": "t", "partition": 0}, "owned_since": 2}],
            "in_flight_commits": [{"id": 7, "stamped_with": 3, "partitions": [[{"topic": "t", "partition": 0}, 42]]}],
            "deferred_commits": [], "subscription": ["t", "u"], "pattern": "[tu]",
        });
        let events = vec![json!({"at": {"secs_since_epoch": 3661, "nanos_since_epoch": 5_000_000},
            "event": {"Transition": {"from": "AwaitingSync", "to": "Stable", "reason": "assigned", "generation": 3}}})];
        let text = render(&snapshot, Ok(events));
        for expected in [
            "member id   m-1",
            "generation  3",
            "subscribed  t, u",
            "pattern     [tu]",
            "t-0",
            "owned since generation 2",
            "commit 7 (generation 3): t-0@42",
            "01:01:01.005  AwaitingSync -> Stable  generation 3  assigned",
        ] {
            assert!(text.contains(expected), "{expected:?} in\n{text}");
        }
        let kip848 = json!({"group_protocol": "consumer", "generation": {"id": 9, "member_id": "m-1"},
            "assignment": [{"partition": {"topic": "t", "partition": 0}, "owned_since": 7}]});
        let text = render(&kip848, Ok(Vec::new()));
        for expected in ["epoch       9", "owned since member epoch 7"] {
            assert!(text.contains(expected), "{expected:?} in\n{text}");
        }
        let sparse = render(&json!({}), Err("GET x: 404".into()));
        assert!(sparse.contains("state       -") && sparse.contains("unavailable: GET x: 404"), "{sparse}");
        assert!(sparse.contains("subscribed  -") && !sparse.contains("pattern"), "{sparse}");
    }

    #[test]
    fn a_chosen_label_is_percent_encoded_into_both_queries() {
        let url = HttpUrl::parse("http://127.0.0.1:1").unwrap();
        let chosen = Endpoint::new(url.clone(), Some("member 1/ä&x=~".into()));
        assert_eq!(chosen.path("/snapshot"), "/snapshot?member=member%201%2F%C3%A4%26x%3D~");
        assert_eq!(chosen.path("/events?format=ndjson"), "/events?format=ndjson&member=member%201%2F%C3%A4%26x%3D~");
        assert_eq!(Endpoint::new(url, None).path("/snapshot"), "/snapshot");
    }
}
