//! A local swarm for end-to-end tests: two trackers of the real binary on
//! free 127.0.0.1 ports, each with its own data directory (so its own key),
//! and clients started against them; which runtime each role runs on
//! ([`Mix`]), and `on_both_runtimes!`, which runs a test body once on each.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::Proc;

/// A 127.0.0.1 port free a moment ago, never one this test process was
/// given before (the listener is closed on return, so the kernel may hand
/// the same port to the next bind; two trackers then got one port).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if given.insert(port) {
            return port;
        }
    }
    panic!("no loopback port this process was not given before, in 1000 tries");
}

pub fn random_file(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(path, &data).unwrap();
    data
}

/// A driver, as the binaries' `--runtime` names it.
#[derive(Clone, Copy, Debug)]
pub enum Rt {
    Std,
    Smol,
}

impl Rt {
    pub fn arg(self) -> &'static str {
        match self {
            Rt::Std => "std",
            Rt::Smol => "smol",
        }
    }
}

/// Which runtime each role runs on.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    pub trackers: Rt,
    /// Clients that share files.
    pub seeders: Rt,
    /// Clients that download (and the others).
    pub leechers: Rt,
}

impl Mix {
    pub fn all(rt: Rt) -> Mix {
        Mix {
            trackers: rt,
            seeders: rt,
            leechers: rt,
        }
    }
}

/// Generates `std_runtime::name` and `smol_runtime::name` for each body.
#[macro_export]
macro_rules! on_both_runtimes {
    ($($name:ident),* $(,)?) => {
        mod std_runtime {
            $(#[test]
            fn $name() {
                super::$name(super::Mix::all(super::Rt::Std))
            })*
        }
        mod smol_runtime {
            $(#[test]
            fn $name() {
                super::$name(super::Mix::all(super::Rt::Smol))
            })*
        }
    };
}

/// Tracker number `n` of the tracker list `info` (a file in `dir`), on
/// runtime `rt` (`std` or `smol`), keeping its state (and its key) in
/// `data`. Its stdin is closed: end of input must not stop a tracker.
pub fn spawn_tracker(dir: &Path, info: &str, rt: &str, name: &str, n: usize, data: &Path) -> Proc {
    let args = [
        info,
        &n.to_string(),
        "--argon2",
        "test",
        "--data-dir",
        data.to_str().unwrap(),
        "--runtime",
        rt,
    ];
    let mut p = Proc::spawn(name, env!("CARGO_BIN_EXE_tracker"), &args, dir);
    drop(p.stdin.take());
    p
}

pub struct Swarm {
    pub dir: tempfile::TempDir,
    pub info: PathBuf,
    pub trackers: Vec<String>,
    pub mix: Mix,
    pub procs: Vec<Proc>,
}

impl Swarm {
    pub fn start(mix: Mix) -> Swarm {
        Swarm::start_after(mix, |_, _| ())
    }

    /// [`Swarm::start`], calling `before(dir, tracker addresses)` once the
    /// addresses are chosen and before any process starts (to start a
    /// capture of their traffic, say).
    pub fn start_after(mix: Mix, before: impl FnOnce(&Path, &[String])) -> Swarm {
        let dir = tempfile::tempdir().unwrap();
        let trackers: Vec<String> = (0..2)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        before(dir.path(), &trackers);
        let info = dir.path().join("tracker_info.txt");
        std::fs::write(&info, trackers.join("\n") + "\n").unwrap();
        let mut procs: Vec<Proc> = (1..=2)
            .map(|n| {
                let data = dir.path().join(format!("t{n}"));
                let (name, rt) = (format!("tracker{n}"), mix.trackers.arg());
                spawn_tracker(dir.path(), "tracker_info.txt", rt, &name, n, &data)
            })
            .collect();
        for p in &mut procs {
            p.expect("Connected to peer tracker", 20);
        }
        Swarm {
            dir,
            info,
            trackers,
            mix,
            procs,
        }
    }

    /// A client that shares files (on the seeders' runtime).
    pub fn seeder(&self, name: &str, tracker: usize) -> Proc {
        self.client(name, tracker, "127.0.0.1:0", self.mix.seeders)
    }

    /// A client that downloads (on the leechers' runtime).
    pub fn leecher(&self, name: &str, tracker: usize) -> Proc {
        self.client(name, tracker, "127.0.0.1:0", self.mix.leechers)
    }

    pub fn client(&self, name: &str, tracker: usize, listen: &str, rt: Rt) -> Proc {
        self.client_with(name, tracker, listen, rt, &[])
    }

    /// [`Swarm::client`] with `extra` arguments.
    pub fn client_with(
        &self,
        name: &str,
        tracker: usize,
        listen: &str,
        rt: Rt,
        extra: &[&str],
    ) -> Proc {
        self.client_env(name, tracker, listen, rt, extra, &[])
    }

    /// [`Swarm::client_with`] with `env` added to its environment.
    pub fn client_env(
        &self,
        name: &str,
        tracker: usize,
        listen: &str,
        rt: Rt,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Proc {
        let data = self.dir.path().join(format!("data-{name}"));
        let mut args = vec![
            self.trackers[tracker].as_str(),
            self.info.to_str().unwrap(),
            "--listen",
            listen,
            "--data-dir",
            data.to_str().unwrap(),
            "--runtime",
            rt.arg(),
        ];
        args.extend_from_slice(extra);
        Proc::spawn_env(
            name,
            env!("CARGO_BIN_EXE_client"),
            &args,
            self.dir.path(),
            env,
        )
    }
}
