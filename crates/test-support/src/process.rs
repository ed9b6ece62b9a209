//! A test's server process: its stderr read line by line as it comes (JSON log lines), and a
//! bounded wait for a line, failing with the log when the process exits first.

use std::io::BufRead as _;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// What a process wrote on stderr so far.
#[derive(Default)]
pub struct Log {
    lines: Mutex<Vec<String>>,
    /// Stderr reached its end: every line the process wrote is in `lines`.
    ended: AtomicBool,
}

impl Log {
    /// Starts `command` (stdin and stdout closed, stderr read into the log); `what` names the
    /// program in the failure.
    pub fn spawn(command: &mut Command, what: &str) -> (Child, Arc<Log>) {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
        let log = Log::capture(child.stderr.take().unwrap());
        (child, log)
    }

    /// Reads `stderr` on a thread of its own, until its end.
    pub fn capture(stderr: ChildStderr) -> Arc<Log> {
        let log = Arc::new(Log::default());
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lines.lock().unwrap().push(line);
            }
            sink.ended.store(true, Ordering::Release);
        });
        log
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The lines so far that are JSON.
    pub fn json(&self) -> Vec<Value> {
        self.lines().iter().filter_map(|line| serde_json::from_str(line).ok()).collect()
    }

    /// Whether stderr has ended (the process has closed it, or exited).
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Waits (bounded by `within`) for the `skip`+1-th JSON line that `matches`; fails, showing
    /// the log, if `child` exits first or nothing comes in time. `what` names the line.
    pub async fn wait_for(
        &self,
        child: &mut Child,
        what: &str,
        within: Duration,
        skip: usize,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self.json().into_iter().filter(|line| matches(line)).nth(skip) {
                return line;
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Let the reader take the last lines, then look once more.
                while !self.ended() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                if let Some(line) = self.json().into_iter().filter(|line| matches(line)).nth(skip) {
                    return line;
                }
                panic!("the process exited ({status}) before logging {what}:\n{}", self.lines().join("\n"));
            }
            assert!(Instant::now() < deadline, "no {what} in the log:\n{}", self.lines().join("\n"));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
