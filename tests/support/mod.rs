//! Support for the end-to-end tests: find the driver binaries, run them on a config, talk to
//! their admin endpoint, stop them. Everything is on loopback and bounded in time.
//!
//! ```ignore
//! mod support;
//! use support::{Burrow, DRIVERS};
//!
//! for driver in DRIVERS {
//!     let admin = support::free_port();
//!     let proxy = Burrow::start(driver, &config_text, admin);
//!     assert_eq!(proxy.stat("http.forward_proxy.downstream_cx_total"), 0);
//!     assert!(proxy.terminate().success());
//! }
//! ```

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Both drivers; every end-to-end test runs against each.
pub const DRIVERS: [&str; 2] = ["burrow-mio", "burrow-tokio"];

/// How long a proxy gets to answer `GET /ready` after starting.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// `--drain-time-s` given by [`Burrow::start`].
pub const DEFAULT_DRAIN_S: u64 = 2;
/// How long a process gets to exit beyond its drain time.
pub const EXIT_GRACE: Duration = Duration::from_secs(10);
/// Bound on one admin request.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The workspace root (where `configs/` is).
pub fn workspace_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The text of `configs/<name>`.
pub fn config(name: &str) -> String {
    let path = workspace_dir().join("configs").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The path of a driver binary (`burrow-mio` or `burrow-tokio`). `env!("CARGO_BIN_EXE_..")`
/// only works within the binaries' own package, so they are looked up beside this test
/// executable (`target/<profile>/deps/<test>` -> `target/<profile>/<binary>`). `cargo test`
/// does not build another package's binaries, so the first call in each test process runs
/// `cargo build` for them (quick when they are up to date), and no test runs a stale binary.
pub fn binary(name: &str) -> PathBuf {
    static BUILD: Once = Once::new();
    let dir = profile_dir();
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    BUILD.call_once(|| build_drivers(&dir));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// `target/<profile>`, from this test executable's own path.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test executable in a directory");
    if deps.file_name().is_some_and(|name| name == "deps") {
        deps.parent().expect("target/<profile>").to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

fn build_drivers(profile_dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(workspace_dir()).args(["build", "-p", "burrow-mio", "-p", "burrow-tokio"]);
    match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            command.arg("--release");
        }
        Some(profile) => {
            command.args(["--profile", profile]);
        }
    }
    if let Some(target) = profile_dir.parent() {
        command.env("CARGO_TARGET_DIR", target);
    }
    let status = command.status().expect("run cargo build");
    assert!(status.success(), "cargo build of the drivers failed: {status}");
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0").local_addr().unwrap().port()
}

/// A fresh file in the temp directory holding `text`.
pub fn temp_file(text: &str, extension: &str) -> PathBuf {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let name = format!(
        "burrow-test-{}-{}-{nanos}.{extension}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    );
    let path = std::env::temp_dir().join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

/// Runs `binary` (a name from [`DRIVERS`]) with `args` to completion (at most 30 s); returns its
/// status and its stderr followed by its stdout.
pub fn run(binary_name: &str, args: &[&str]) -> (ExitStatus, String) {
    let mut child = Command::new(binary(binary_name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {binary_name}: {e}"));
    let stdout = capture(child.stdout.take().unwrap());
    let stderr = capture(child.stderr.take().unwrap());
    let status = wait_timeout(&mut child, Duration::from_secs(30)).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{binary_name} {args:?} did not exit within 30 s; stderr:\n{}", stderr.text());
    });
    let output = format!("{}{}", stderr.wait_text(), stdout.wait_text());
    (status, output)
}

/// `binary --mode validate -c <config_text in a file>`: status and stderr+stdout.
pub fn validate(binary_name: &str, config_text: &str) -> (ExitStatus, String) {
    let path = temp_file(config_text, "yaml");
    let result = run(binary_name, &["--mode", "validate", "-c", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    result
}

/// A running proxy process on a config, removed (killed) when dropped.
pub struct Burrow {
    pub name: String,
    child: Child,
    config_path: PathBuf,
    stderr: Captured,
    admin: SocketAddr,
    drain: Duration,
    status: Option<ExitStatus>,
}

impl Burrow {
    /// Starts `binary` (a name from [`DRIVERS`]) on `config_text`, whose admin listener is on
    /// 127.0.0.1:`admin_port`, and waits until it is ready.
    pub fn start(binary_name: &str, config_text: &str, admin_port: u16) -> Burrow {
        Burrow::start_with_drain(binary_name, config_text, admin_port, DEFAULT_DRAIN_S)
    }

    /// [`Burrow::start`] with `--drain-time-s drain_s`.
    pub fn start_with_drain(binary_name: &str, config_text: &str, admin_port: u16, drain_s: u64) -> Burrow {
        let mut proxy = Burrow::spawn(binary_name, config_text, admin_port, drain_s);
        proxy.wait_ready();
        proxy
    }

    /// Starts the process without waiting for it to be ready (for configs meant to fail).
    /// `BURROW_TEST_LOG` overrides the log level (`-l warn`).
    pub fn spawn(binary_name: &str, config_text: &str, admin_port: u16, drain_s: u64) -> Burrow {
        let config_path = temp_file(config_text, "yaml");
        let level = std::env::var("BURROW_TEST_LOG").unwrap_or_else(|_| "warn".to_string());
        let drain = drain_s.to_string();
        let mut child = Command::new(binary(binary_name))
            .args(["-c", config_path.to_str().unwrap(), "--concurrency", "1", "-l", &level])
            .args(["--drain-time-s", &drain])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {binary_name}: {e}"));
        let stderr = capture(child.stderr.take().unwrap());
        Burrow {
            name: binary_name.to_string(),
            child,
            config_path,
            stderr,
            admin: SocketAddr::from((Ipv4Addr::LOCALHOST, admin_port)),
            drain: Duration::from_secs(drain_s),
            status: None,
        }
    }

    /// Polls `GET /ready` until it answers 200; fails the test (with the captured stderr) after
    /// [`READY_TIMEOUT`] or if the process exits.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.status = Some(status);
                panic!(
                    "{} exited before it was ready ({status}); stderr:\n{}",
                    self.name,
                    self.stderr.wait_text()
                );
            }
            if let Ok((200, _)) = http_get(self.admin, "/ready") {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} not ready on {} after {READY_TIMEOUT:?}; stderr:\n{}",
                    self.name,
                    self.admin,
                    self.stderr.text()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        match self.status {
            Some(_) => self.stderr.wait_text(),
            None => self.stderr.text(),
        }
    }

    /// `GET path` on the admin listener: status and body.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin, path).unwrap_or_else(|e| {
            panic!("{}: GET {path} on {} failed: {e}; stderr:\n{}", self.name, self.admin, self.stderr())
        })
    }

    /// `GET /stats` (Envoy's text form: `name: value` lines).
    pub fn stats(&self) -> String {
        let (status, body) = self.admin_get("/stats");
        assert_eq!(status, 200, "{}: GET /stats: {body}", self.name);
        body
    }

    /// One counter or gauge from `/stats`, if present.
    pub fn try_stat(&self, name: &str) -> Option<u64> {
        parse_stat(&self.stats(), name)
    }

    /// One counter or gauge from `/stats`; fails the test if it is missing.
    pub fn stat(&self, name: &str) -> u64 {
        let stats = self.stats();
        parse_stat(&stats, name).unwrap_or_else(|| panic!("{}: no stat {name} in:\n{stats}", self.name))
    }

    /// Polls a stat until `check` holds; fails the test after 10 s.
    pub fn wait_stat(&self, name: &str, check: impl Fn(u64) -> bool) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let value = self.try_stat(name);
            if let Some(value) = value.filter(|v| check(*v)) {
                return value;
            }
            if Instant::now() >= deadline {
                panic!("{}: {name} is {value:?} after 10 s; stats:\n{}", self.name, self.stats());
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM and waits for the exit (at most the drain time plus [`EXIT_GRACE`]).
    pub fn terminate(&mut self) -> ExitStatus {
        let timeout = self.drain + EXIT_GRACE;
        self.terminate_within(timeout)
    }

    /// Sends SIGTERM and waits at most `timeout` for the exit; fails the test otherwise.
    pub fn terminate_within(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        self.signal(libc::SIGTERM);
        self.wait_exit(timeout).unwrap_or_else(|| {
            panic!("{} did not exit within {timeout:?} of SIGTERM; stderr:\n{}", self.name, self.stderr())
        })
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({}, {signal}) failed", self.child.id());
    }

    /// Waits at most `timeout` for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = wait_timeout(&mut self.child, timeout);
        }
        self.status
    }
}

impl Drop for Burrow {
    fn drop(&mut self) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.config_path);
    }
}

/// `name: value` from Envoy's text stats.
pub fn parse_stat(stats: &str, name: &str) -> Option<u64> {
    stats.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim().parse().ok()).flatten()
    })
}

/// A minimal HTTP/1.1 GET over a fresh connection (`Connection: close`): status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, ADMIN_TIMEOUT)?;
    stream.set_read_timeout(Some(ADMIN_TIMEOUT))?;
    stream.set_write_timeout(Some(ADMIN_TIMEOUT))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    loop {
        let n = stream.read(&mut chunk)?;
        response.extend_from_slice(&chunk[..n]);
        let Some(end) = find(&response, b"\r\n\r\n") else {
            if n == 0 {
                return Err(invalid("connection closed before the response head"));
            }
            continue;
        };
        let head =
            std::str::from_utf8(&response[..end]).map_err(|_| invalid("response head is not UTF-8"))?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid("bad status line"))?;
        let length = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok()).flatten()
        });
        let body_start = end + 4;
        match length {
            Some(length) if response.len() >= body_start + length => {
                response.truncate(body_start + length);
            }
            _ if n == 0 => {}
            _ => continue,
        }
        let body = String::from_utf8_lossy(&response[body_start..]).into_owned();
        return Ok((status, body));
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// Polls `child` until it exits or `timeout` passes.
fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Output of a child process, collected by a thread.
struct Captured {
    text: Arc<Mutex<String>>,
    thread: Option<thread::JoinHandle<()>>,
}

fn capture(mut pipe: impl Read + Send + 'static) -> Captured {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    let thread = thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    Captured { text, thread: Some(thread) }
}

impl Captured {
    fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// All of it, once the process has exited (bounded: gives up after 5 s).
    fn wait_text(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.thread.as_ref().is_some_and(|t| !t.is_finished()) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        self.text()
    }
}

/// An echo target on loopback: echoes each connection until EOF, then half-closes back.
pub fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            thread::spawn(move || {
                stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                let _ = stream.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

/// A deterministic, non-repeating-looking payload.
pub fn payload(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// The lines of an access log file once there are `n` (the driver flushes at least every
/// second).
pub fn log_lines(path: &Path, n: usize) -> Vec<String> {
    for _ in 0..100 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n {
            return lines;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("fewer than {n} access log lines in {}", path.display());
}
