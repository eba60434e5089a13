//! `testbed-switch [--mtu N] [--seed N] PORT...`: the test bed's network.
//!
//! Creates one TAP device per PORT (`NAME[:KEY=VALUE,...]`, see
//! `spec.rs`), joins them with a learning Ethernet switch and applies, per
//! port and direction, a rate, a queue bound, a one-way delay, random loss
//! and a black hole. The caller moves each TAP into a host's network
//! namespace (`ip link set NAME netns HOST`) once the switch printed
//! `ready`; the TAPs are not persistent, so they vanish when the switch
//! exits, whatever namespace they are in.
//!
//! Commands on stdin, one a line: `set NAME KEY=VALUE ...` (answers
//! `ok`), `stats` (one line per port), `quit`. End of input quits too, so
//! a driver that dies takes the switch with it.
//!
//! The kernel has no `netem` on the machines this runs on, so delay and
//! loss are done here in user space. One thread reads each TAP; one
//! thread owns the [`Switch`] and writes frames out when they are due.

mod link;
mod spec;
mod switch;

use std::io::{BufRead, Read, Write};
use std::process::ExitCode;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Instant;

use switch::Switch;

enum Msg {
    Frame(usize, Vec<u8>),
    ReadFailed(usize, std::io::Error),
    Line(String),
    Eof,
}

struct Args {
    mtu: u16,
    seed: u64,
    ports: Vec<String>,
}

const USAGE: &str = "usage: testbed-switch [--mtu N] [--seed N] NAME[:KEY=VALUE,...]...\n\
keys: rate=BITS/S (100m), delay=MS, loss=PERCENT, queue=MS, blackhole=on|off; prefix up. or down. for one direction";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        mtu: 9000,
        seed: 1,
        ports: vec![],
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--mtu" => {
                args.mtu = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&m| (576..=65000).contains(&m))
                    .ok_or("--mtu takes a number from 576 to 65000")?
            }
            "--seed" => {
                args.seed = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--seed takes a number")?
            }
            "-h" | "--help" => return Err(USAGE.into()),
            _ => args.ports.push(a),
        }
    }
    if args.ports.len() < 2 {
        return Err(format!("give at least two ports\n{USAGE}"));
    }
    Ok(args)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("testbed-switch: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let specs = args
        .ports
        .iter()
        .map(|p| spec::parse_port(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut sw = Switch::new(specs, args.seed);
    let (tx, rx) = mpsc::channel();
    let mut writers = Vec::new();
    for (i, port) in sw.ports.iter().enumerate() {
        let mut cfg = tun::Configuration::default();
        cfg.tun_name(&port.name)
            .layer(tun::Layer::L2)
            .mtu(args.mtu)
            .up();
        let dev = tun::create(&cfg).map_err(|e| {
            format!(
                "cannot create TAP device {}: {e} (needs root and /dev/net/tun; \
                 is a device of that name left over? `ip link del {}`)",
                port.name, port.name
            )
        })?;
        let (mut reader, writer) = dev.split();
        writers.push(writer);
        let tx = tx.clone();
        let buf_len = usize::from(args.mtu) + 64;
        std::thread::Builder::new()
            .name(format!("read-{}", port.name))
            .spawn(move || {
                let mut buf = vec![0u8; buf_len];
                loop {
                    match reader.read(&mut buf) {
                        Ok(n) => {
                            if tx.send(Msg::Frame(i, buf[..n].to_vec())).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Msg::ReadFailed(i, e));
                            return;
                        }
                    }
                }
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?;
    }
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(l) => {
                    if tx.send(Msg::Line(l)).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = tx.send(Msg::Eof);
    });
    let names: Vec<&str> = sw.ports.iter().map(|p| p.name.as_str()).collect();
    say(&format!("ready {}", names.join(" ")));

    let mut out = Vec::new();
    let mut write_errors = vec![0u64; writers.len()];
    loop {
        let msg = match sw.poll_timeout() {
            Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => Some(Msg::Eof),
            },
            None => Some(rx.recv().unwrap_or(Msg::Eof)),
        };
        let now = Instant::now();
        match msg {
            None => {}
            Some(Msg::Frame(port, frame)) => sw.handle_frame(now, port, frame),
            Some(Msg::ReadFailed(port, e)) => {
                return Err(format!("reading TAP {}: {e}", sw.ports[port].name));
            }
            Some(Msg::Line(l)) => match command(&mut sw, &l, &write_errors) {
                Ok(Flow::Continue) => {}
                Ok(Flow::Quit) => break,
                Err(e) => say(&format!("error: {e}")),
            },
            Some(Msg::Eof) => break,
        }
        sw.handle_timeout(now, &mut out);
        for (port, frame) in out.drain(..) {
            // A host whose interface is down or whose queue is full
            // drops the frame, as a NIC would.
            if writers[port].write(&frame).is_err() {
                write_errors[port] += 1;
            }
        }
    }
    print_stats(&sw, &write_errors);
    Ok(())
}

enum Flow {
    Continue,
    Quit,
}

fn say(line: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

fn command(sw: &mut Switch, line: &str, write_errors: &[u64]) -> Result<Flow, String> {
    let mut words = line.split_whitespace();
    match words.next() {
        None => Ok(Flow::Continue),
        Some("quit") => Ok(Flow::Quit),
        Some("stats") => {
            print_stats(sw, write_errors);
            Ok(Flow::Continue)
        }
        Some("set") => {
            let name = words.next().ok_or("set NAME KEY=VALUE ...")?;
            let i = sw.port(name).ok_or_else(|| format!("no port {name:?}"))?;
            let p = &mut sw.ports[i];
            let (mut up, mut down) = (p.up.params, p.down.params);
            for kv in words {
                spec::apply(kv, &mut up, &mut down)?;
            }
            (p.up.params, p.down.params) = (up, down);
            say(&format!("ok {line}"));
            Ok(Flow::Continue)
        }
        Some(other) => Err(format!("unknown command {other:?} (set, stats, quit)")),
    }
}

fn print_stats(sw: &Switch, write_errors: &[u64]) {
    let l = sw.lateness;
    say(&format!(
        "switch frames={} late={} max_late_us={} runts={}",
        l.frames,
        l.late,
        l.max.as_micros(),
        sw.runts
    ));
    for (p, we) in sw.ports.iter().zip(write_errors) {
        let (u, d) = (p.up.stats, p.down.stats);
        say(&format!(
            "stats {} up frames={} bytes={} lost={} queue_full={} blackholed={} \
             down frames={} bytes={} lost={} queue_full={} blackholed={} write_errors={we}",
            p.name,
            u.frames,
            u.bytes,
            u.lost,
            u.queue_full,
            u.blackholed,
            d.frames,
            d.bytes,
            d.lost,
            d.queue_full,
            d.blackholed
        ));
    }
}
