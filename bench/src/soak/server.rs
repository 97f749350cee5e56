//! The server under test, started by the soak itself: being its parent is
//! the only way to see its exit code and the moment it exits. Its stderr
//! (JSON logs) is read by a thread that keeps the warnings and errors and
//! writes everything to a log file.

use serde::Serialize;
use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the server's log said, in short.
#[derive(Debug, Default, Clone, Serialize)]
pub struct LogSummary {
    pub lines: u64,
    pub warnings: u64,
    pub errors: u64,
    /// Lines that are not JSON (a panic message, for one).
    pub unparsed: u64,
    /// ERROR lines of tower-http for a 503 answer: the upgrade refused
    /// after SIGTERM, which the soak asks for on purpose.
    pub refusals_503: u64,
    /// The first warnings, errors and unparsed lines, verbatim.
    pub notable: Vec<String>,
}

/// How and when the process ended.
#[derive(Debug, Clone)]
pub struct Exit {
    pub at: Instant,
    /// The exit code, or `None` when a signal killed it.
    pub code: Option<i32>,
    pub describe: String,
}

pub struct Server {
    pub pid: u32,
    exit: Arc<Mutex<Option<Exit>>>,
    log: Arc<Mutex<LogSummary>>,
    /// The stderr reader: it has seen the last line once it finished.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts `command` (program and arguments) with stderr captured into `log_file`.
    pub fn spawn(command: Vec<String>, log_file: &std::path::Path) -> std::io::Result<Server> {
        let (program, args) = command
            .split_first()
            .ok_or_else(|| std::io::Error::other("empty server command"))?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let pid = child.id();
        let log = Arc::new(Mutex::new(LogSummary::default()));
        let mut reader = None;
        if let Some(stderr) = child.stderr.take() {
            let log = Arc::clone(&log);
            let mut file = std::fs::File::create(log_file)?;
            reader = Some(std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let _ = writeln!(file, "{line}");
                    if let Ok(mut log) = log.lock() {
                        note(&mut log, &line);
                    }
                }
            }));
        }
        let exit = Arc::new(Mutex::new(None));
        {
            let exit = Arc::clone(&exit);
            std::thread::spawn(move || {
                let status = child.wait();
                let at = Instant::now();
                let (code, describe) = match status {
                    Ok(s) => (s.code(), s.to_string()),
                    Err(e) => (None, format!("wait failed: {e}")),
                };
                if let Ok(mut exit) = exit.lock() {
                    *exit = Some(Exit { at, code, describe });
                }
            });
        }
        Ok(Server {
            pid,
            exit,
            log,
            reader,
        })
    }

    pub fn exit(&self) -> Option<Exit> {
        self.exit.lock().ok().and_then(|e| e.clone())
    }

    /// The log so far; once the server has exited, all of it (the reader
    /// gets a second to take the last lines).
    pub async fn log(&self) -> LogSummary {
        if self.exit().is_some() {
            let until = Instant::now() + Duration::from_secs(1);
            while self.reader.as_ref().is_some_and(|r| !r.is_finished()) && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Sends SIGTERM; returns the moment just before it was sent.
    pub fn terminate(&self) -> std::io::Result<Instant> {
        let at = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()?;
        if !status.success() {
            return Err(std::io::Error::other(format!(
                "kill -TERM {}: {status}",
                self.pid
            )));
        }
        Ok(at)
    }

    /// Waits up to `limit` for the process to exit.
    pub async fn wait_exit(&self, limit: Duration) -> Option<Exit> {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if let Some(exit) = self.exit() {
                return Some(exit);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self.exit()
    }

    /// Waits until the server accepts connections on `addr`.
    pub async fn wait_listening(&self, addr: std::net::SocketAddr) -> std::io::Result<()> {
        for _ in 0..200 {
            if self.exit().is_some() {
                return Err(std::io::Error::other(
                    "the server exited at start; see its log",
                ));
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(std::io::Error::other(format!("nothing listens on {addr}")))
    }
}

impl Drop for Server {
    /// Never leaves a server behind: a soak that fails half-way kills it.
    fn drop(&mut self) {
        if self.exit().is_none() {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
    }
}

fn note(log: &mut LogSummary, line: &str) {
    log.lines += 1;
    let level = serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("level").and_then(|l| l.as_str()).map(str::to_owned));
    let notable = match level.as_deref() {
        Some("WARN") => {
            log.warnings += 1;
            true
        }
        Some("ERROR") if line.contains("Status code: 503") => {
            log.refusals_503 += 1;
            false
        }
        Some("ERROR") => {
            log.errors += 1;
            true
        }
        Some(_) => false,
        None => {
            log.unparsed += 1;
            true
        }
    };
    if notable && log.notable.len() < 20 {
        log.notable.push(line.chars().take(300).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_by_level() {
        let mut log = LogSummary::default();
        note(
            &mut log,
            r#"{"timestamp":"t","level":"INFO","message":"stopped"}"#,
        );
        note(
            &mut log,
            r#"{"timestamp":"t","level":"WARN","message":"shutdown deadline passed"}"#,
        );
        note(&mut log, "thread 'main' panicked at src/x.rs:1:1");
        note(
            &mut log,
            r#"{"level":"ERROR","message":"response failed","classification":"Status code: 503 Service Unavailable"}"#,
        );
        assert_eq!(
            (log.lines, log.warnings, log.errors, log.unparsed),
            (4, 1, 0, 1)
        );
        assert_eq!(log.refusals_503, 1);
        assert_eq!(log.notable.len(), 2);
    }
}
