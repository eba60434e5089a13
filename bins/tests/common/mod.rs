//! Helpers shared by the end-to-end tests in `bins/tests`: a child process
//! of ours (a tracker or a client binary) whose output lines are collected,
//! fed commands on stdin and killed when the test ends.
//!
//! Each test file includes it with `mod common;`; not every file uses every
//! helper.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every line read so far, stdout and stderr (stderr lines prefixed).
    pub seen: Vec<String>,
    pub name: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn spawn(name: &str, bin: &str, args: &[&str], dir: &Path) -> Proc {
        Proc::spawn_env(name, bin, args, dir, &[])
    }

    /// [`Proc::spawn`] with `env` added to its environment.
    pub fn spawn_env(
        name: &str,
        bin: &str,
        args: &[&str],
        dir: &Path,
        env: &[(&str, &str)],
    ) -> Proc {
        let mut child = Command::new(bin)
            .args(args)
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for (stream, tag) in [
            (Box::new(out) as Box<dyn std::io::Read + Send>, ""),
            (Box::new(err), "stderr: "),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(format!("{tag}{line}")).is_err() {
                        return;
                    }
                }
            });
        }
        let stdin = child.stdin.take();
        Proc {
            child,
            stdin,
            lines: rx,
            seen: vec![],
            name: name.into(),
        }
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to client");
        stdin.flush().unwrap();
    }

    /// Waits up to `secs` seconds for a line containing `want` (stdout or stderr).
    pub fn expect(&mut self, want: &str, secs: u64) -> String {
        self.expect_within(want, Duration::from_secs(secs))
    }

    /// Waits up to `limit` for a line containing `want` (stdout or stderr).
    pub fn expect_within(&mut self, want: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(want) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "{}: no line with {want:?} within {limit:?}; saw:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Like [`Proc::expect`], but a line already read (while waiting for
    /// another one: stdout and stderr arrive in either order) counts too.
    pub fn expect_seen(&mut self, want: &str, secs: u64) -> String {
        match self.seen.iter().find(|l| l.contains(want)) {
            Some(l) => l.clone(),
            None => self.expect(want, secs),
        }
    }

    /// Reads lines for `limit`, panicking if one contains `never`.
    pub fn never_within(&mut self, never: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    assert!(
                        !l.contains(never),
                        "{}: a line with {never:?} appeared: {l}; saw:\n{}",
                        self.name,
                        self.seen.join("\n")
                    );
                }
                Err(_) => return,
            }
        }
    }

    /// Every line printed so far (stderr lines prefixed), without waiting.
    pub fn lines_so_far(&mut self) -> String {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        self.seen.join("\n")
    }

    /// Sends a command and waits for the line that answers it.
    pub fn run(&mut self, line: &str, want: &str) -> String {
        self.send(line);
        self.expect(want, 30)
    }

    pub fn signal_term(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
    }
}

pub mod swarm;
#[allow(unused_imports)] // not every test file uses every helper
pub use swarm::{Mix, Rt, Swarm, free_port, random_file};

/// A TCP connection to `to` from the loopback address `src`.
pub fn connect_from(src: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketType, bind, connect, socket};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None)?;
    bind(&fd, &SocketAddr::from((src, 0)))?;
    connect(&fd, &to)?;
    Ok(TcpStream::from(fd))
}

/// A field of `/proc/<pid>/status` (`Threads`, `VmRSS` in KiB).
pub fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}
