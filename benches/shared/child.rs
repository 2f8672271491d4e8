//! Measured child processes, shared by `benches/compare.rs` and `benches/scaling.rs`: a child
//! (this binary re-executed with `role ...`, or a JVM) prints one `RESULT key=value ...` line of
//! what it measured itself; the parent adds the CPU time `wait4` accounts for that one process.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::machine::loadavg;
use crate::scaleout::BoxError;

/// Upper bound on any one child; a child past it is killed and the run fails.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(600);

/// What a child measures itself, as `key=value` on its one line of stdout.
pub type Measured = BTreeMap<String, f64>;

/// One measured child run: what it measured itself and what the kernel accounted for it.
#[derive(Debug, Clone)]
pub struct ChildRun {
    pub measured: Measured,
    pub cpu: Duration,
    pub user: Duration,
    pub sys: Duration,
    /// The load average before and after.
    pub load: (String, String),
}

/// This binary as `role args...`: the child of a Rust role.
pub fn role_command(args: &[&str]) -> Result<Command, BoxError> {
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("role").args(args);
    Ok(command)
}

/// The child side of `role_command`: runs `role` when this process is one, printing its
/// `RESULT` line with its own peak RSS added; `Ok(false)` when it is the parent.
pub fn run_as_child(role: impl FnOnce(&[String]) -> Result<Measured, BoxError>) -> Result<bool, BoxError> {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; the harness's own children get `role`.
    if args.get(1).map(String::as_str) != Some("role") {
        return Ok(false);
    }
    let mut measured = role(&args[2..])?;
    measured.insert("vm_hwm_kib".into(), vm_hwm_kib()?);
    let line: Vec<String> = measured.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("RESULT {}", line.join(" "));
    Ok(true)
}

/// Kills and reaps the child unless it was reaped already, so no failure path leaves one behind.
struct ChildGuard {
    child: Child,
    reaped: bool,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `command` and waits for it (bounded), reading its CPU time from `wait4` (that process
/// alone: the broker and other children are not counted) and its `RESULT` line.
pub async fn run_child(mut command: Command) -> Result<ChildRun, BoxError> {
    let label = format!("{command:?}");
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    // A crashed harness leaves no consumer running.
    kgroup::embedded::die_with_parent(&mut command);
    let load_before = loadavg();
    let mut guard = ChildGuard { child: command.spawn()?, reaped: false };
    let pid = guard.child.id() as libc::pid_t;
    let (status, usage) = tokio::task::spawn_blocking(move || wait_bounded(pid, CHILD_TIMEOUT)).await??;
    guard.reaped = true;
    let load = (load_before, loadavg());
    let mut stdout = String::new();
    if let Some(mut out) = guard.child.stdout.take() {
        out.read_to_string(&mut stdout)?;
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("child {label} failed (wait status {status})").into());
    }
    let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")).ok_or("child printed no RESULT line")?;
    let measured = line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| Ok((k.to_string(), v.parse::<f64>()?)))
        .collect::<Result<Measured, BoxError>>()?;
    let (user, sys) = (duration(usage.ru_utime), duration(usage.ru_stime));
    Ok(ChildRun { measured, cpu: user + sys, user, sys, load })
}

fn duration(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

/// `wait4` on one pid, polled so the wait is bounded: past `timeout` the child is killed.
fn wait_bounded(pid: libc::pid_t, timeout: Duration) -> Result<(i32, libc::rusage), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain data, fully written by wait4 when it reaps the child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to locals; WNOHANG returns at once.
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if reaped == pid {
            return Ok((status, usage));
        }
        if reaped < 0 {
            return Err(format!("wait4({pid}): {}", std::io::Error::last_os_error()));
        }
        if Instant::now() > deadline {
            // SAFETY: the pid is our unreaped child, so it cannot have been reused.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return Err(format!("child {pid} still running after {timeout:?}; killed"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// CPU time (user + sys) of this whole process so far, every thread included.
pub fn process_cpu() -> Duration {
    // SAFETY: rusage is plain data, fully written by getrusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a local; RUSAGE_SELF cannot fail.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    duration(usage.ru_utime) + duration(usage.ru_stime)
}

/// A `Vm*` line of `/proc/self/status`, KiB.
pub fn proc_status_kib(field: &str) -> Result<f64, BoxError> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|l| l.strip_prefix(':')))
        .ok_or_else(|| format!("no {field} in /proc/self/status"))?;
    Ok(line.trim().trim_end_matches("kB").trim().parse()?)
}

/// This process's peak RSS (`VmHWM`). Read by the child itself: the peak `wait4` reports
/// includes the forked copy of the parent before `exec`, the harness's size rather than the
/// client's.
fn vm_hwm_kib() -> Result<f64, BoxError> {
    proc_status_kib("VmHWM")
}
