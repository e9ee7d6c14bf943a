//! Starting cortex programs as child processes and knowing when they are
//! ready: used by `cortex demo` and by the integration tests.
//!
//! A parent that passed port 0 learns the port from the child's
//! [`crate::announce`] lines. The child is killed when its [`Child`] is
//! dropped, so nothing is orphaned.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::announce::{LISTENING_PREFIX, METRICS_PREFIX};

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} exited before it was ready ({status}); its last output:\n{output}")]
    Exited {
        program: String,
        status: String,
        output: String,
    },
    #[error("{program} was not ready within {secs} s")]
    Timeout { program: String, secs: u64 },
}

/// A running child process; killed (and reaped) on drop.
#[derive(Debug)]
pub struct Child {
    pub name: String,
    pub process: std::process::Child,
    /// `http://ADDR` of the main listener.
    pub url: String,
    /// `http://ADDR` of the metrics listener, for programs that have one.
    pub metrics_url: Option<String>,
}

impl Child {
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    pub fn addr(&self) -> Option<SocketAddr> {
        self.url.trim_start_matches("http://").parse().ok()
    }

    /// Sends SIGKILL and waits for the process to go.
    pub fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }

    /// Asks the process to stop (SIGTERM on Unix), waits up to `grace`, then kills.
    pub fn stop(&mut self, grace: Duration) {
        #[cfg(unix)]
        {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.process.id().to_string())
                .status();
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.process.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = grace;
        self.kill();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Makes the child `command` starts die (SIGKILL) when the thread that
/// starts it ends — with the whole parent when that is killed, even by
/// SIGKILL, which runs no clean-up (Linux's `PR_SET_PDEATHSIG`; elsewhere
/// nothing). The starting thread must live as long as the child should:
/// not a pool thread that may retire while it runs.
pub fn die_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec only async-signal-safe calls are
        // made (getpid/getppid/prctl/_exit), touching no memory of the parent.
        let parent = std::process::id() as libc::pid_t;
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before the line above.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// Spawns `command` (stdout piped), waits until it prints its listening line,
/// and keeps forwarding its stdout to ours, prefixed with `name`, when `echo`.
pub fn spawn_server(
    name: &str,
    mut command: Command,
    timeout: Duration,
    echo: bool,
) -> Result<Child, LaunchError> {
    let program = format!("{name} ({:?})", command.get_program());
    command.stdout(Stdio::piped());
    let mut process = command.spawn().map_err(|source| LaunchError::Spawn {
        program: program.clone(),
        source,
    })?;
    let Some(stdout) = process.stdout.take() else {
        let _ = process.kill();
        return Err(LaunchError::Spawn {
            program,
            source: std::io::Error::other("stdout was not captured"),
        });
    };
    let (tx, rx) = mpsc::channel::<String>();
    let prefix = name.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if echo {
                println!("[{prefix}] {line}");
            }
            // The parent may stop listening once ready; keep draining.
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + timeout;
    let mut url = None;
    let mut metrics_url = None;
    let mut seen = Vec::new();
    let mut child = Child {
        name: name.to_string(),
        process,
        url: String::new(),
        metrics_url: None,
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(LaunchError::Timeout {
                program,
                secs: timeout.as_secs(),
            });
        }
        match rx.recv_timeout(left.min(Duration::from_millis(100))) {
            Ok(line) => {
                if let Some(addr) = line.strip_prefix(LISTENING_PREFIX) {
                    url = Some(format!("http://{}", addr.trim()));
                } else if let Some(addr) = line.strip_prefix(METRICS_PREFIX) {
                    metrics_url = Some(format!("http://{}", addr.trim()));
                }
                seen.push(line);
                if seen.len() > 50 {
                    seen.remove(0);
                }
                // Servers with a metrics listener announce it first, so the
                // main listener's line is the last one to wait for.
                if url.is_some() {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child
                    .process
                    .wait()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string());
                return Err(LaunchError::Exited {
                    program,
                    status,
                    output: seen.join("\n"),
                });
            }
        }
    }
    child.url = url.unwrap_or_default();
    child.metrics_url = metrics_url;
    Ok(child)
}

/// Polls `GET {url}{path}` until it answers 200 or the deadline passes.
pub fn wait_http_ok(url: &str, path: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if http_get_status(url, path) == Some(200) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// A minimal blocking HTTP/1.0 GET returning the status code; enough for
/// readiness checks without pulling an HTTP client into every caller.
pub fn http_get_status(url: &str, path: &str) -> Option<u16> {
    let addr: SocketAddr = url.trim_start_matches("http://").parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = [0u8; 32];
    let n = stream.read(&mut head).ok()?;
    let text = std::str::from_utf8(&head[..n]).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

/// Finds a sibling executable of the running one (e.g. `neuron` next to
/// `cortex`, or next to a test binary's `deps/` folder). `env_override`
/// names an environment variable that, when set, wins.
pub fn sibling_binary(name: &str, env_override: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env_override) {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let mut dir: Option<&Path> = exe.parent();
    for _ in 0..2 {
        let d = dir?;
        let candidate = d.join(&file);
        if candidate.is_file() {
            return Some(candidate);
        }
        dir = d.parent();
    }
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    /// The child dies with the thread that started it.
    #[test]
    fn a_child_dies_with_its_parent() {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut cmd = Command::new("sleep");
            cmd.arg("30");
            die_with_parent(&mut cmd);
            let child = cmd.spawn().expect("sleep starts");
            let _ = tx.send(child);
            // The thread ends here: the child gets SIGKILL.
        });
        let mut child = rx.recv().expect("the child was started");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "the child outlived its parent");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    }
}
