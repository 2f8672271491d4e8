//! A local nisshi broker (a Kafka-compatible broker from crates.io) for demos and tests.
//!
//! The binary is found through `KGROUP_NISSHI_BIN`, then in the cache directory
//! (`KGROUP_CACHE_DIR`, default `~/.cache/kgroup`), then installed there with
//! `cargo install nisshi --version 0.8.1 --locked --ignore-rust-version` with the default toolchain
//! (about 12 minutes on 2 cores, once; nisshi's only demand above stable is a dependency's
//! declared `rust-version`).
//! The broker always listens on 127.0.0.1 on a free port, keeps data in memory, and is killed
//! when the handle drops, or when this process dies (Linux `PR_SET_PDEATHSIG`).
//!
//! For TLS and SASL tests it can serve TLS only (`--cert`, `--key`) and require SCRAM
//! authentication (`--authentication`). nisshi keeps SCRAM users in its storage and its
//! `user create` command talks plaintext without logging in, so a broker with users runs on an
//! SQLite file: it is started once open to create them, then restarted with its final options.
//!
//! [`kafka36`] starts Apache Kafka 3.6 itself (from Maven Central, with `java`), the reference
//! broker, in the same way.

pub mod kafka36;

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::driver::connection::{Connection, ConnectionConfig};
use crate::driver::security::{SaslMechanism, Secret};

/// The nisshi release the project is tested against.
pub const NISSHI_VERSION: &str = "0.8.1";

/// Why the embedded broker could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbeddedError {
    /// nisshi is not installed and `cargo install` failed.
    #[error("installing nisshi {version} with `{command}` failed: {detail}")]
    Install {
        /// The nisshi version.
        version: &'static str,
        /// The install command run.
        command: String,
        /// Its output.
        detail: String,
    },
    /// The broker process could not be started.
    #[error("cannot start {binary}: {source}")]
    Spawn {
        /// The nisshi binary.
        binary: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The broker exited before it was ready.
    #[error("nisshi exited during start-up ({status}); its log ends with:\n{log_tail}")]
    Exited {
        /// Its exit status.
        status: String,
        /// The last lines of its log.
        log_tail: String,
    },
    /// The broker did not answer ApiVersions within `ready_timeout`.
    #[error("nisshi on {addr} did not answer ApiVersions within {after:?}; its log ends with:\n{log_tail}")]
    NotReady {
        /// The address it should listen on.
        addr: String,
        /// The time waited.
        after: Duration,
        /// The last lines of its log.
        log_tail: String,
    },
    /// A SCRAM user of the options could not be created.
    #[error("creating SCRAM user {user:?} failed: {detail}")]
    CreateUser {
        /// The user name.
        user: String,
        /// What went wrong.
        detail: String,
    },
    /// A [`ScramUser`] asked for a mechanism nisshi does not have.
    #[error("nisshi has no SASL mechanism {0:?}; it offers SCRAM-SHA-256 and SCRAM-SHA-512")]
    UnsupportedMechanism(&'static str),
    /// Files or processes around the broker (log directory, free port).
    #[error("I/O error around the embedded broker: {0}")]
    Io(#[from] io::Error),
}

/// Start-up options.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Kafka's `group.initial.rebalance.delay.ms` (nisshi default 3 s).
    pub initial_rebalance_delay: Duration,
    /// Port to bind; `None` picks a free one.
    pub port: Option<u16>,
    /// How long to wait for the broker to answer ApiVersions.
    pub ready_timeout: Duration,
    /// Serve TLS only, with this certificate chain and private key (PEM files).
    pub tls: Option<BrokerTls>,
    /// SCRAM users; when not empty, the broker requires authentication.
    pub scram_users: Vec<ScramUser>,
}

/// The broker's TLS identity.
#[derive(Debug, Clone)]
pub struct BrokerTls {
    /// The certificate chain (PEM).
    pub cert: PathBuf,
    /// The private key (PEM).
    pub key: PathBuf,
}

/// A SCRAM user the broker is started with.
#[derive(Debug, Clone)]
pub struct ScramUser {
    /// The user name.
    pub name: String,
    /// The password.
    pub password: Secret,
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    pub mechanism: SaslMechanism,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            initial_rebalance_delay: Duration::from_secs(3),
            port: None,
            ready_timeout: Duration::from_secs(60),
            tls: None,
            scram_users: Vec::new(),
        }
    }
}

/// A running broker; killed on drop.
#[derive(Debug)]
pub struct EmbeddedBroker {
    child: Option<Child>,
    port: u16,
    options: BrokerOptions,
    log_path: PathBuf,
    /// The SQLite file that holds the SCRAM users, when there are any.
    database: Option<PathBuf>,
}

/// How a broker process is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Plaintext and open, to create the SCRAM users.
    Setup,
    /// With the options asked for.
    Serve,
}

impl EmbeddedBroker {
    /// Starts a broker and waits until it answers ApiVersions.
    pub async fn start(options: BrokerOptions) -> Result<EmbeddedBroker, EmbeddedError> {
        let binary = nisshi_binary()?;
        let port = match options.port {
            Some(port) => port,
            None => free_port()?,
        };
        let log_dir = std::env::temp_dir().join("kgroup-nisshi");
        fs::create_dir_all(&log_dir)?;
        let log_path = log_dir.join(format!("broker-{port}-{}.log", std::process::id()));
        let database =
            (!options.scram_users.is_empty()).then(|| log_dir.join(format!("broker-{port}-{}.db", std::process::id())));
        let mut broker = EmbeddedBroker { child: None, port, options, log_path, database };
        if broker.database.is_some() {
            broker.spawn(&binary, Phase::Setup)?;
            broker.wait_ready(Phase::Setup).await?;
            let created = broker.create_users(&binary);
            broker.kill();
            created?;
        }
        broker.spawn(&binary, Phase::Serve)?;
        broker.wait_ready(Phase::Serve).await?;
        tracing::info!(bootstrap = %broker.bootstrap(), "embedded nisshi broker ready");
        Ok(broker)
    }

    /// `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the broker process (SIGKILL: no goodbye to clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port (in-memory storage starts empty; SCRAM
    /// users, kept in SQLite, remain).
    pub async fn restart(&mut self) -> Result<(), EmbeddedError> {
        self.kill();
        let binary = nisshi_binary()?;
        self.spawn(&binary, Phase::Serve)?;
        self.wait_ready(Phase::Serve).await
    }

    fn spawn(&mut self, binary: &Path, phase: Phase) -> Result<(), EmbeddedError> {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = File::create(&self.log_path)?;
        let mut command = Command::new(binary);
        // nisshi reads `sqlite://PATH` relative to its working directory (a leading `/` is
        // dropped), so it runs in the database's directory and gets the bare file name.
        let storage = match self.database.as_deref().and_then(|p| Some((p.parent()?, p.file_name()?))) {
            Some((dir, file)) => {
                command.current_dir(dir);
                format!("sqlite://{}", file.to_string_lossy())
            }
            None => "memory://nisshi/".to_owned(),
        };
        command
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", &storage]);
        if phase == Phase::Serve {
            if let Some(tls) = &self.options.tls {
                command.arg("--cert").arg(&tls.cert).arg("--key").arg(&tls.key);
            }
            if self.database.is_some() {
                command.arg("--authentication");
            }
        }
        command
            .arg("--group-initial-rebalance-delay")
            .arg(format!("{}ms", self.options.initial_rebalance_delay.as_millis()))
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("STORAGE_ENGINE")
            .env("RUST_LOG", std::env::var("KGROUP_NISSHI_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        die_with_parent(&mut command);
        let child = command.spawn().map_err(|source| EmbeddedError::Spawn { binary: binary.to_owned(), source })?;
        self.child = Some(child);
        Ok(())
    }

    /// `nisshi user create` for each SCRAM user, against the open setup broker.
    fn create_users(&self, binary: &Path) -> Result<(), EmbeddedError> {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        for user in &self.options.scram_users {
            let mechanism = match user.mechanism {
                SaslMechanism::ScramSha256 => "scram256",
                SaslMechanism::ScramSha512 => "scram512",
                other => return Err(EmbeddedError::UnsupportedMechanism(other.name())),
            };
            let failed = |detail: String| EmbeddedError::CreateUser { user: user.name.clone(), detail };
            let output = Command::new(binary)
                .args(["user", "create", "--broker", &url, "--mechanism", mechanism, &user.name])
                .arg(user.password.expose())
                .stdin(Stdio::null())
                .output()
                .map_err(|e| failed(e.to_string()))?;
            if !output.status.success() {
                return Err(failed(String::from_utf8_lossy(&output.stderr).into_owned()));
            }
        }
        Ok(())
    }

    /// Ready when it answers ApiVersions (allowed before authentication); a TLS-only
    /// listener, which a plaintext probe cannot talk to, is ready when it accepts connections.
    async fn wait_ready(&mut self, phase: Phase) -> Result<(), EmbeddedError> {
        let tls = phase == Phase::Serve && self.options.tls.is_some();
        let config = Arc::new(ConnectionConfig {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            ..Default::default()
        });
        let deadline = tokio::time::Instant::now() + self.options.ready_timeout;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Err(EmbeddedError::Exited { status: status.to_string(), log_tail: self.log_tail() });
            }
            let ready = if tls {
                tokio::net::TcpStream::connect(self.bootstrap()).await.is_ok()
            } else {
                Connection::open(&self.bootstrap(), config.clone()).await.is_ok()
            };
            if ready {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                self.kill();
                return Err(EmbeddedError::NotReady {
                    addr: self.bootstrap(),
                    after: self.options.ready_timeout,
                    log_tail: self.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines the broker logged.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log_path) {
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_file(&self.log_path);
        if let Some(database) = &self.database {
            let _ = fs::remove_file(database);
        }
    }
}

/// Kills the child when the thread that spawned it exits (Linux `PR_SET_PDEATHSIG`): spawn from
/// a long-lived thread (a runtime worker), never from a short-lived blocking-pool thread. The
/// harnesses use it for the client processes they start.
#[cfg(target_os = "linux")]
pub fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub fn die_with_parent(_command: &mut Command) {}

/// Where [`free_port`] starts looking when the kernel's ephemeral range cannot be read.
const FIRST_LISTEN_PORT: u16 = 10_000;

/// A loopback port nothing listens on, chosen below the kernel's ephemeral range: a port from
/// that range can become the source port of an outgoing connection (three Kafka nodes and their
/// clients open many) between this check and the broker's bind, seconds later for a JVM. Ports
/// rotate from a per-process offset, so parallel tests and processes rarely try the same one;
/// a start that still finds its port taken is retried by the caller.
fn free_port() -> io::Result<u16> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let below = ephemeral_range_start().unwrap_or(0);
    if below > FIRST_LISTEN_PORT + 1_000 {
        let span = u32::from(below - FIRST_LISTEN_PORT);
        let offset = std::process::id().wrapping_mul(7_919) % span;
        for _ in 0..span.min(1_000) {
            let step = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let port = FIRST_LISTEN_PORT + ((offset + step) % span) as u16;
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The first port of the kernel's ephemeral range (Linux `ip_local_port_range`).
fn ephemeral_range_start() -> Option<u16> {
    let range = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_whitespace().next()?.parse().ok()
}

/// The cache directory for the broker binary.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KGROUP_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("kgroup")
}

/// Finds the nisshi binary, installing it into the cache directory when missing.
pub fn nisshi_binary() -> Result<PathBuf, EmbeddedError> {
    if let Some(path) = std::env::var_os("KGROUP_NISSHI_BIN") {
        return Ok(PathBuf::from(path));
    }
    let root = cache_dir().join(format!("nisshi-{NISSHI_VERSION}"));
    let binary = root.join("bin").join("nisshi");
    if binary.exists() {
        return Ok(binary);
    }
    fs::create_dir_all(&root)?;
    // One installer at a time: parallel tests wait for the first one's build.
    let lock = File::create(root.join(".install.lock"))?;
    let _guard = FileLock::exclusive(&lock)?;
    if binary.exists() {
        return Ok(binary);
    }
    let args = ["install", "nisshi", "--version", NISSHI_VERSION, "--locked", "--ignore-rust-version", "--root"];
    let command = format!("cargo {} {}", args.join(" "), root.display());
    eprintln!("kgroup: installing nisshi {NISSHI_VERSION} (about 12 minutes, once): {command}");
    let output = Command::new("cargo")
        .args(args)
        .arg(&root)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO_TARGET_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| EmbeddedError::Install {
            version: NISSHI_VERSION,
            command: command.clone(),
            detail: e.to_string(),
        })?;
    if !output.status.success() || !binary.exists() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        return Err(EmbeddedError::Install {
            version: NISSHI_VERSION,
            command,
            detail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(binary)
}

struct FileLock<'a>(&'a File);

impl<'a> FileLock<'a> {
    fn exclusive(file: &'a File) -> io::Result<Self> {
        file.lock()?;
        Ok(FileLock(file))
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_outside_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port().unwrap()).collect();
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        if let Some(start) = ephemeral_range_start().filter(|&start| start > FIRST_LISTEN_PORT + 1_000) {
            assert!(ports.iter().all(|&p| (FIRST_LISTEN_PORT..start).contains(&p)), "{ports:?} vs {start}");
        }
    }
}
