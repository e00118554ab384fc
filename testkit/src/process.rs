use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A service binary run by a test; killed when dropped, so a failing test leaves nothing running.
pub struct Service {
    pub name: String,
    child: Child,
}

impl Service {
    pub fn start(name: &str, mut command: Command) -> Self {
        let child = command
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Self {
            name: name.to_owned(),
            child,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `KILL`, ...).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }

    /// The exit status, if the process ended within `deadline`.
    pub fn wait_for_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if start.elapsed() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The path of a binary of another workspace package, built first if needed (cargo only provides
/// `CARGO_BIN_EXE_*` for the tested package's own binaries). Builds in the test's own target dir
/// and profile, so it is a no-op when `cargo test --workspace` already built it.
pub fn workspace_binary(package: &str, binary: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // Test binaries live in <target>/<profile>/deps/.
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("<target>/<profile>/deps");
    let target_dir = profile_dir.parent().expect("<target>");
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build
        .args(["build", "--quiet", "--package", package, "--bin", binary])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(crate::repo_root());
    if profile_dir.file_name().is_some_and(|name| name == "release") {
        build.arg("--release");
    }
    let status = build.status().unwrap_or_else(|e| panic!("cargo build {binary}: {e}"));
    assert!(status.success(), "cargo build -p {package} --bin {binary} failed");
    profile_dir.join(binary)
}

/// Runs a command with `text` on its stdin.
pub trait StdinText {
    fn stdin_text(&mut self, text: &str) -> std::process::Output;
}

impl StdinText for Command {
    fn stdin_text(&mut self, text: &str) -> std::process::Output {
        use std::io::Write;
        let mut child = self
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }
}
