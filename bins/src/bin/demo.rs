//! `demo`: a local swarm in one command. Two replicated trackers and four
//! clients on 127.0.0.1 (real sockets, one process): alice
//! makes a group, bob and carol join, a generated file is shared by alice
//! and bob, carol downloads it from both in parallel with live progress,
//! and the result is checked byte for byte. Then the tracker carol uses is
//! stopped and she carries on, still logged in, on the other one.
//!
//! `--size MIB` sets the file size (default 256), `--keep` keeps the
//! working directory (printed) instead of deleting it, `--runtime
//! std|smol` picks the driver (default std).

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use p2p_proto::limits::PIECE_LEN;
use p2p_proto::{FileName, GroupName, Password, Request, TrackerId, UserName};
use p2p_state::client::node::{Command, CommandOk};
use p2p_state::tracker::node::NodeConfig;
use p2p_state::tracker::state::TrackerConfig;
use runtime::Runtime;
use runtime_common::client::{self, ClientHandle, ClientOptions, WriteMode};
use runtime_common::tracker::TrackerOptions;
use runtime_common::{cli, present};

use bins::progress;
use bins::runtime;

#[derive(Parser)]
#[command(about = "Runs a local demo swarm: two trackers, four clients, one shared file")]
struct Args {
    /// Size of the generated file, in MiB.
    #[arg(long, default_value_t = 256)]
    size: u64,
    /// Keep the working directory afterwards.
    #[arg(long)]
    keep: bool,
    /// Which driver runs the trackers and clients.
    #[arg(long, value_enum, default_value = "std")]
    runtime: Runtime,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn step(what: &str) {
    println!("\n== {what}");
}

fn run(args: &Args) -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix("p2p-demo-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let root = dir.path().to_path_buf();
    println!(
        "working directory: {} ({:?} runtime)",
        root.display(),
        args.runtime
    );

    step("starting two trackers");
    let listeners: Vec<TcpListener> = (0..2)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let list: Vec<(TrackerId, SocketAddr)> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| (TrackerId(i as u16 + 1), *a))
        .collect();
    let mut trackers = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let id = TrackerId(i as u16 + 1);
        let node = NodeConfig::new(id, list.clone(), TrackerConfig::test());
        let opts = TrackerOptions {
            node,
            data_dir: root.join(format!("tracker-{}", i + 1)),
            listener,
            seed: None,
        };
        let sink = Box::new(move |e: &p2p_state::tracker::node::TrackerEvent| {
            if let p2p_state::tracker::node::TrackerEvent::ConnectedToTracker { tracker } = e {
                println!("tracker {id}: {}", present::connected_to_tracker(*tracker));
            }
        });
        let t = args.runtime.start_tracker(opts, sink);
        trackers.push(t.map_err(|e| e.to_string())?);
        println!("tracker {id} listening on {}", addrs[i]);
    }
    std::thread::sleep(Duration::from_millis(1500));

    step("four clients: alice, bob, carol, dave");
    let names = ["alice", "bob", "carol", "dave"];
    let mut clients = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let opts = ClientOptions {
            trackers: addrs.clone(),
            tracker_keys: Vec::new(),
            first: i % 2,
            listen: "127.0.0.1:0".parse().unwrap(),
            advertise_port: None,
            max_parallel: None,
            data_dir: root.join(format!("client-{name}")),
            write_mode: WriteMode::Auto,
            request_timeout: None,
            ping_interval: None,
            rates: Default::default(),
        };
        let c = args.runtime.start_client(opts).map_err(|e| e.to_string())?;
        println!(
            "{name}: seeder on {}, tracker {}",
            c.seeder_addr(),
            addrs[i % 2]
        );
        clients.push(c);
    }
    let (alice, bob, carol, dave) = (&clients[0], &clients[1], &clients[2], &clients[3]);
    for (c, name) in clients.iter().zip(names) {
        say(
            c,
            name,
            Request::CreateUser {
                user: u(name),
                password: pw(),
            },
        )?;
        say(
            c,
            name,
            Request::Login {
                user: u(name),
                password: pw(),
            },
        )?;
    }

    step("a group: alice owns it, bob and carol are accepted, dave is rejected");
    say(alice, "alice", Request::CreateGroup { group: g() })?;
    for (c, n) in [(bob, "bob"), (carol, "carol"), (dave, "dave")] {
        say(c, n, Request::JoinGroup { group: g() })?;
    }
    say(
        alice,
        "alice",
        Request::AcceptRequest {
            group: g(),
            user: u("bob"),
        },
    )?;
    say(
        alice,
        "alice",
        Request::AcceptRequest {
            group: g(),
            user: u("carol"),
        },
    )?;
    say(
        alice,
        "alice",
        Request::RejectRequest {
            group: g(),
            user: u("dave"),
        },
    )?;

    step(&format!("a {} MiB file shared by alice and bob", args.size));
    let path = root.join("demo.bin");
    let data_hash = generate(&path, args.size << 20).map_err(|e| e.to_string())?;
    for (c, n) in [(alice, "alice"), (bob, "bob")] {
        let t = Instant::now();
        let meta = client::hash_file(&path, PIECE_LEN).map_err(|e| e.to_string())?;
        let hashed = t.elapsed();
        let share = c.share_id(&path, &g());
        let ok = c
            .run(Command::Share {
                group: g(),
                meta,
                share,
            })
            .map_err(|e| e.to_string())?;
        let cmd = cli::CliCommand::Upload {
            group: g(),
            path: path.clone(),
        };
        println!(
            "{n}: {} (hashed in {:.2} s)",
            present::format_ok(&cmd, &ok),
            hashed.as_secs_f64()
        );
    }
    say(dave, "dave", Request::ListFiles { group: g() })?;

    step("carol downloads it from both");
    let dest = root.join("carol-demo.bin");
    let dest_id = carol.dest_id(&dest, false);
    let file = FileName::new("demo.bin").unwrap();
    let t = Instant::now();
    carol
        .run(Command::Download {
            group: g(),
            file,
            dest: dest_id,
            expected: None,
        })
        .map_err(|e| e.to_string())?;
    progress(carol, Duration::from_secs(600))?;
    let secs = t.elapsed().as_secs_f64();
    let got = hash_of(&dest).map_err(|e| e.to_string())?;
    let mib = args.size as f64;
    println!(
        "carol: {mib} MiB in {secs:.2} s ({:.0} MiB/s), file hash {} ({})",
        mib / secs,
        got,
        if got == data_hash {
            "byte-exact"
        } else {
            "MISMATCH"
        }
    );
    for (c, n) in [(alice, "alice"), (bob, "bob")] {
        let st = c.status().ok_or("client stopped")?;
        println!("{n} {}", present::served(st.served_pieces, st.served_bytes));
    }
    if got != data_hash {
        return Err("the downloaded file differs from the original".into());
    }

    step("carol's tracker stops; she carries on on the other, still logged in");
    let stopped = trackers.remove(0);
    let _ = stopped.shutdown();
    say(carol, "carol", Request::ListGroups)?;
    say(carol, "carol", Request::ListFiles { group: g() })?;

    step("done");
    for c in clients {
        c.stop();
    }
    for t in trackers {
        let _ = t.shutdown();
    }
    if args.keep {
        println!("kept {}", dir.keep().display());
    }
    Ok(())
}

fn u(s: &str) -> UserName {
    UserName::new(s).unwrap()
}
fn g() -> GroupName {
    GroupName::new("demo").unwrap()
}
fn pw() -> Password {
    Password::new("secret").unwrap()
}

/// Runs a tracker command and prints its result like the client does.
fn say(c: &ClientHandle, name: &str, req: Request) -> Result<(), String> {
    let cmd = cli::CliCommand::Tracker(req.clone());
    match c.run(Command::Tracker(req)) {
        Ok(ok) => {
            for line in present::format_ok(&cmd, &ok).lines() {
                println!("{name}: {line}");
            }
            Ok(())
        }
        Err(e) => {
            println!("{name}: error: {e}");
            Ok(())
        }
    }
}

/// Prints `show_downloads` in place until every download ended.
fn progress(c: &ClientHandle, max: Duration) -> Result<(), String> {
    let start = Instant::now();
    let mut shown = progress::Progress::new(progress::Out::Stdout);
    loop {
        if let Ok(CommandOk::Downloads(lines)) = c.run(Command::ShowDownloads) {
            shown.update(&lines);
        }
        let st = c.status().ok_or("client stopped")?;
        if st.downloads_ended {
            if let Ok(CommandOk::Downloads(lines)) = c.run(Command::ShowDownloads) {
                shown.update(&lines);
            }
            shown.finish();
            return match st.failed.is_empty() {
                true => Ok(()),
                false => Err(format!(
                    "download failed: {}",
                    present::download_names(&st.failed)
                )),
            };
        }
        if start.elapsed() > max {
            return Err("the download took too long".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Writes `len` pseudo-random bytes; returns their file hash (the root of
/// their piece hashes), computed from the bytes as they are generated.
fn generate(path: &Path, len: u64) -> std::io::Result<p2p_proto::Sha1Hash> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut pieces = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    // A whole number of pieces, so each piece is hashed from one buffer.
    let mut buf = vec![0u8; 2 * PIECE_LEN as usize];
    let mut left = len;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        let chunks = buf[..n].chunks(PIECE_LEN as usize);
        pieces.extend(chunks.map(p2p_state::hash::sha1));
        left -= n as u64;
    }
    f.flush()?;
    Ok(p2p_state::hash::file_root(len, PIECE_LEN, &pieces))
}

fn hash_of(path: &Path) -> std::io::Result<p2p_proto::Sha1Hash> {
    let meta = client::hash_file(path, PIECE_LEN)?;
    Ok(meta.file_hash)
}
