//! The `kgroup` command line (feature `cli`): `groups`, `describe GROUP [--json]` and
//! `member URL [--member LABEL] [--watch]`.
//!
//! The logic lives here rather than in the binary so that tests run the real commands
//! in-process and check their output and exit code; `src/bin/kgroup/main.rs` only gives it a
//! runtime, the process's arguments and streams. Exit codes: 0 success, 1 a runtime error
//! (broker, group, endpoint, properties file), 2 a usage error (as clap's). An error is one
//! line on the error stream, `kgroup: error: ...`.

mod http;
mod member;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use crate::admin::{Admin, GroupLag, MemberBytesError, MemberDescription};
use crate::group::TopicPartition;
use crate::{ClusterConfig, Error};

/// Where `-b` points when neither it, `bootstrap.servers` nor `KGROUP_BOOTSTRAP` is given.
const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

#[derive(Parser)]
#[command(name = "kgroup", version, about = "Kafka consumer groups seen from outside")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Lists the groups with their state, protocol and member count.
    Groups(#[command(flatten)] ConnectionArgs),
    /// Describes a group: its members, and per partition the committed offset, log end, lag
    /// and owner.
    Describe {
        /// The group id.
        group: String,
        /// Prints one JSON document instead of tables.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Reads a member's debug endpoint (`URL/snapshot` and `URL/events?format=ndjson`).
    Member {
        /// The endpoint, `http://HOST:PORT[/PATH]`.
        url: String,
        /// The member's label, on an endpoint that serves several (`URL/members` lists them).
        #[arg(long, value_name = "LABEL")]
        member: Option<String>,
        /// Redraws the screen until ctrl-c.
        #[arg(long)]
        watch: bool,
        /// Milliseconds between two screens with `--watch`.
        #[arg(long, value_name = "MS", default_value_t = 1000)]
        interval: u64,
        /// With `--watch`, stops after this many screens.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Milliseconds to wait for each answer of the endpoint.
        #[arg(long, value_name = "MS", default_value_t = 5000)]
        timeout: u64,
    },
}

/// How to reach the cluster, on every broker command.
#[derive(Args)]
struct ConnectionArgs {
    /// `HOST:PORT[,HOST:PORT...]`; default: `bootstrap.servers` of -F/-X, else
    /// $KGROUP_BOOTSTRAP, else 127.0.0.1:9092.
    #[arg(short = 'b', long = "bootstrap-server", value_name = "HOST:PORT")]
    bootstrap: Option<String>,
    /// A Java properties file of client settings (`security.protocol`, `sasl.*`, `ssl.*`,
    /// `client.id`, `bootstrap.servers`).
    #[arg(short = 'F', long = "config-file", value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// A client setting, after those of the file; repeatable.
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// Milliseconds the whole command may take (and each request within it).
    #[arg(long = "command-timeout", value_name = "MS", default_value_t = 30_000)]
    command_timeout: u64,
}

/// Why a command failed, and so its exit code.
enum Failure {
    /// Bad arguments: exit code 2.
    Usage(String),
    /// Anything else: exit code 1.
    Runtime(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Runtime(e.to_string())
    }
}

/// Runs the command line `args` (the program name first), writing results to `out` and the
/// one-line error to `err`; returns the exit code.
pub async fn run<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = write!(out, "{e}");
            return 0;
        }
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = write!(err, "{e}");
            return 2;
        }
        Err(e) => {
            // Clap's message up to its first blank line (then come tips and usage), on one line.
            let text = e.to_string();
            let message: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).collect();
            let message = one_line(&message.join(" "));
            let _ = writeln!(err, "kgroup: error: {} (see kgroup --help)", message.trim_start_matches("error: "));
            return 2;
        }
    };
    let result = match cli.command {
        Command::Groups(connection) => with_admin(&connection, |admin| groups(admin, out)).await,
        Command::Describe { group, json, connection } => {
            with_admin(&connection, |admin| describe(admin, &group, json, out)).await
        }
        Command::Member { url, member: label, watch, interval, count, timeout } => {
            let count = if watch { count } else { Some(1) };
            let timeout = Duration::from_millis(timeout);
            member(&url, label, Duration::from_millis(interval), count, timeout, out).await
        }
    };
    match result {
        Ok(()) => 0,
        Err(Failure::Usage(message)) => {
            let _ = writeln!(err, "kgroup: error: {}", one_line(&message));
            2
        }
        Err(Failure::Runtime(message)) => {
            let _ = writeln!(err, "kgroup: error: {}", one_line(&message));
            1
        }
    }
}

/// Connects as `args` say and runs `command`, all within `--command-timeout`.
async fn with_admin<'a, F, Fut>(args: &ConnectionArgs, command: F) -> Result<(), Failure>
where
    F: FnOnce(Admin) -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>> + 'a,
{
    let config = cluster_config(args)?;
    let limit = Duration::from_millis(args.command_timeout);
    let bootstrap = config.bootstrap.join(",");
    let run = async move { command(Admin::connect(config).await?).await };
    match tokio::time::timeout(limit, run).await {
        Ok(result) => result,
        Err(_) => Err(Failure::Runtime(format!("no answer from {bootstrap} within {limit:?} (--command-timeout)"))),
    }
}

/// The cluster settings of `-F`, `-X` and `-b`, each later one overriding the earlier.
fn cluster_config(args: &ConnectionArgs) -> Result<ClusterConfig, Failure> {
    let mut properties = match &args.config_file {
        Some(path) => crate::properties::read_file(path).map_err(|e| Failure::Runtime(e.to_string()))?,
        None => Vec::new(),
    };
    for setting in &args.settings {
        let (key, value) =
            setting.split_once('=').ok_or_else(|| Failure::Usage(format!("-X expects KEY=VALUE, got {setting:?}")))?;
        properties.push((key.trim().to_owned(), value.trim().to_owned()));
    }
    let configured = properties.iter().rev().find(|(k, _)| k == "bootstrap.servers").map(|(_, v)| v.clone());
    let bootstrap = args
        .bootstrap
        .clone()
        .or(configured)
        .or_else(|| std::env::var("KGROUP_BOOTSTRAP").ok().filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| DEFAULT_BOOTSTRAP.to_owned());
    properties.push(("bootstrap.servers".to_owned(), bootstrap));
    let mut config = ClusterConfig::from_properties(properties).map_err(|e| Failure::Runtime(e.to_string()))?;
    // One bound for the whole command: no request may outlast it, and retry loops give up
    // before it, so that their last error is what the command reports.
    let limit = Duration::from_millis(args.command_timeout);
    config.retry_timeout = limit * 3 / 4;
    config.connection.request_timeout = config.connection.request_timeout.min(limit);
    config.connection.connect_timeout = config.connection.connect_timeout.min(limit);
    Ok(config)
}

async fn groups(admin: Admin, out: &mut dyn Write) -> Result<(), Failure> {
    let mut rows = Vec::new();
    for listing in admin.list_groups().await? {
        let (state, protocol, members) = match admin.describe_group(&listing.group_id).await {
            Ok(d) => (d.state.to_string(), protocol_of(&d.protocol_type, &d.protocol), d.members.len().to_string()),
            // Gone between the listing and its description.
            Err(Error::UnknownGroup { .. }) => ("Dead".to_owned(), listing.protocol_type.clone(), "0".to_owned()),
            Err(e) => return Err(e.into()),
        };
        rows.push(vec![printable(&listing.group_id), state, printable(&protocol), members]);
    }
    write_out(out, &table(&["GROUP", "STATE", "PROTOCOL", "MEMBERS"], rows))
}

/// `consumer/range`, or the protocol type alone outside a generation.
fn protocol_of(protocol_type: &str, protocol: &str) -> String {
    match (protocol_type, protocol) {
        ("", "") => "-".to_owned(),
        (kind, "") => kind.to_owned(),
        (kind, protocol) => format!("{kind}/{protocol}"),
    }
}

async fn describe(admin: Admin, group: &str, as_json: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let lag = admin.describe_lag(group).await?;
    let text = if as_json { format!("{:#}\n", describe_json(&lag)) } else { describe_text(&lag) };
    write_out(out, &text)
}

fn describe_text(lag: &GroupLag) -> String {
    let d = &lag.description;
    let mut text = format!(
        "group        {}\nstate        {}\nprotocol     {}\ncoordinator  {}\n\n",
        printable(&d.group_id),
        d.state,
        printable(&protocol_of(&d.protocol_type, &d.protocol)),
        d.coordinator
    );
    let members = d.members.iter().map(|m| {
        vec![
            printable(&m.member_id),
            dash(&m.client_id),
            dash(&m.host),
            m.group_instance_id.as_deref().map_or("-".to_owned(), printable),
            match &m.assignment {
                Ok(partitions) => compact(partitions),
                Err(e) => printable(&format!("unreadable: {e}")),
            },
        ]
    });
    text += &table(&["MEMBER", "CLIENT-ID", "HOST", "INSTANCE", "ASSIGNED"], members.collect());
    let client_of = |member_id: &str| d.members.iter().find(|m| m.member_id == member_id).map(|m| &m.client_id);
    let or_dash = |v: Option<i64>| v.map_or("-".to_owned(), |v| v.to_string());
    let partitions = lag.partitions.iter().map(|p| {
        vec![
            printable(&p.partition.topic),
            p.partition.partition.to_string(),
            or_dash(p.committed),
            or_dash(p.log_end),
            or_dash(p.lag),
            match (&p.owner, p.owner.as_deref().and_then(client_of)) {
                (Some(owner), Some(client)) => printable(&format!("{owner} ({client})")),
                _ => "-".to_owned(),
            },
        ]
    });
    text += "\n";
    text += &table(&["TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG", "OWNER"], partitions.collect());
    if let Some(note) = details_note(lag) {
        text += &format!("\nnote: {note}\n");
    }
    text += &format!("\ntotal lag    {}\n", lag.total_lag());
    text
}

/// The document of `describe --json`: strings as the broker sent them (JSON escapes them).
fn describe_json(lag: &GroupLag) -> Value {
    let d = &lag.description;
    let partition_json = |tp: &TopicPartition| json!({"topic": &*tp.topic, "partition": tp.partition});
    let error = |e: &MemberBytesError| Value::String(e.to_string());
    let member_json = |m: &MemberDescription| {
        let subscription = match &m.subscription {
            Ok(Some(s)) => json!(s.topics),
            Ok(None) => Value::Null,
            Err(e) => json!({ "error": error(e) }),
        };
        let assignment = match &m.assignment {
            Ok(partitions) => Value::Array(partitions.iter().map(partition_json).collect()),
            Err(e) => json!({ "error": error(e) }),
        };
        json!({
            "member_id": m.member_id,
            "group_instance_id": m.group_instance_id,
            "client_id": m.client_id,
            "host": m.host,
            "subscribed_topics": subscription,
            "assigned_partitions": assignment,
        })
    };
    json!({
        "group": d.group_id,
        "coordinator": d.coordinator,
        "state": d.state.as_str(),
        "protocol_type": d.protocol_type,
        "protocol": d.protocol,
        "members": d.members.iter().map(member_json).collect::<Vec<_>>(),
        "partitions": lag.partitions.iter().map(|p| json!({
            "topic": &*p.partition.topic,
            "partition": p.partition.partition,
            "committed_offset": p.committed,
            "log_end_offset": p.log_end,
            "lag": p.lag,
            "owner": p.owner,
        })).collect::<Vec<_>>(),
        "total_lag": lag.total_lag(),
        "notes": details_note(lag).into_iter().collect::<Vec<_>>(),
    })
}

/// Why members and owners show no details, when the coordinator sent none.
fn details_note(lag: &GroupLag) -> Option<String> {
    let d = &lag.description;
    d.lacks_member_details().then(|| {
        format!(
            "the coordinator (broker {}) describes this Stable group without its protocol or members' details (nisshi does not send them): owners are unknown",
            d.coordinator
        )
    })
}

/// `member URL`: one screen, or with `--watch` a screen every `interval` redrawn in place
/// until ctrl-c (or `count` screens). While watching, a failed read is shown on the screen and
/// the next one tries again.
async fn member(
    url: &str,
    label: Option<String>,
    interval: Duration,
    count: Option<u64>,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let endpoint = member::Endpoint::new(http::HttpUrl::parse(url).map_err(Failure::Usage)?, label);
    if count == Some(1) {
        let screen = member::screen(&endpoint, timeout).await.map_err(Failure::Runtime)?;
        return write_out(out, &screen);
    }
    let mut shown = 0u64;
    loop {
        let screen =
            member::screen(&endpoint, timeout).await.unwrap_or_else(|e| format!("kgroup: error: {}\n", one_line(&e)));
        // Clear the screen and home the cursor, then draw.
        write_out(out, &format!("\x1b[2J\x1b[H{screen}"))?;
        shown += 1;
        if count.is_some_and(|count| shown >= count) {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

fn write_out(out: &mut dyn Write, text: &str) -> Result<(), Failure> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Runtime(format!("cannot write the output: {e}")))
}

/// `t: 0,1,2; u: 3`.
fn compact(partitions: &[TopicPartition]) -> String {
    if partitions.is_empty() {
        return "-".to_owned();
    }
    let mut by_topic: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for tp in partitions {
        by_topic.entry(&tp.topic).or_default().push(tp.partition.to_string());
    }
    let topics: Vec<String> = by_topic.iter().map(|(t, p)| format!("{}: {}", printable(t), p.join(","))).collect();
    topics.join("; ")
}

/// Columns padded to their widest cell.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = header.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>();
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, &width)| format!("{cell:<width$}")).collect();
        text += cells.join("  ").trim_end();
        text += "\n";
    }
    text
}

/// A string from a broker or a member, safe for a terminal: control characters (escape
/// sequences, line breaks) are shown escaped.
fn printable(s: &str) -> String {
    if s.chars().any(char::is_control) {
        s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
    } else {
        s.to_owned()
    }
}

/// A string from a broker, `-` when empty (so that a table's columns stay readable).
fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        printable(s)
    }
}

/// An error message on one line.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_and_strings_are_made_printable() {
        let text = table(&["A", "BB"], vec![vec!["xyz".into(), "1".into()]]);
        assert_eq!(text, "A    BB\nxyz  1\n");
        assert_eq!(printable("g\u{1b}[2Jx\n"), "g\\u{1b}[2Jx\\n");
        assert_eq!(compact(&[TopicPartition::new("t", 1), TopicPartition::new("t", 0)]), "t: 1,0");
        assert_eq!(one_line("a\n  b"), "a b");
    }
}
