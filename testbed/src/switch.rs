//! The switch: ports joined by a learning Ethernet bridge, each port's
//! link shaped in both directions. Pure: frames and time go in, frames
//! due for a port come out.
//!
//! A frame from host A to host B crosses A's uplink (rate, queue, loss,
//! delay), reaches the switch, which learns A's MAC address on that port
//! and forwards by destination MAC (broadcast, multicast and unknown
//! destinations are flooded, so ARP works), then crosses B's downlink.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::{Duration, Instant};

use crate::link::{Fate, Link, LinkParams, Rng};

/// One port: the host's link in both directions.
#[derive(Debug)]
pub struct Port {
    pub name: String,
    /// Host to switch.
    pub up: Link,
    /// Switch to host.
    pub down: Link,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Hop {
    /// Leaves the uplink of `port` into the switch.
    AtSwitch(usize),
    /// Leaves the downlink of `port` into the host.
    AtHost(usize),
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    at: Instant,
    seq: u64,
    hop: Hop,
    frame: Vec<u8>,
}

/// The switch and every port's links.
#[derive(Debug)]
pub struct Switch {
    pub ports: Vec<Port>,
    macs: BTreeMap<[u8; 6], usize>,
    events: BinaryHeap<Reverse<Event>>,
    seq: u64,
    rng: Rng,
    /// Frames shorter than an Ethernet header (dropped).
    pub runts: u64,
    /// How late frames were handed out against their due time: whether
    /// the switch keeps up.
    pub lateness: Lateness,
}

/// How far behind its schedule the switch ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lateness {
    /// Frames handed to a host.
    pub frames: u64,
    /// Of those, handed out more than [`LATE`] after their due time.
    pub late: u64,
    /// The most any frame was late.
    pub max: Duration,
}

/// A frame handed out later than this counts as late (a tenth of the
/// smallest delay a scenario uses, and several 9000-byte frame times at
/// 100 Mbit/s).
pub const LATE: Duration = Duration::from_millis(2);

/// Ethernet header length (destination, source, type).
const ETH_HEADER: usize = 14;

impl Switch {
    pub fn new(ports: Vec<(String, LinkParams, LinkParams)>, seed: u64) -> Switch {
        Switch {
            ports: ports
                .into_iter()
                .map(|(name, up, down)| Port {
                    name,
                    up: Link::new(up),
                    down: Link::new(down),
                })
                .collect(),
            macs: BTreeMap::new(),
            events: BinaryHeap::new(),
            seq: 0,
            rng: Rng::new(seed),
            runts: 0,
            lateness: Lateness::default(),
        }
    }

    /// A port by name.
    pub fn port(&self, name: &str) -> Option<usize> {
        self.ports.iter().position(|p| p.name == name)
    }

    fn push(&mut self, at: Instant, hop: Hop, frame: Vec<u8>) {
        self.seq += 1;
        self.events.push(Reverse(Event {
            at,
            seq: self.seq,
            hop,
            frame,
        }));
    }

    /// A frame the host on `port` sent, read at `now`.
    pub fn handle_frame(&mut self, now: Instant, port: usize, frame: Vec<u8>) {
        if frame.len() < ETH_HEADER {
            self.runts += 1;
            return;
        }
        if let Fate::Arrives(at) = self.ports[port].up.offer(now, frame.len(), &mut self.rng) {
            self.push(at, Hop::AtSwitch(port), frame);
        }
    }

    /// When the next frame is due somewhere.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.events.peek().map(|Reverse(e)| e.at)
    }

    /// Moves every frame due by `now`; frames that reach a host are
    /// appended to `out` as (port, frame), in order.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<(usize, Vec<u8>)>) {
        while self.events.peek().is_some_and(|Reverse(e)| e.at <= now) {
            let Some(Reverse(e)) = self.events.pop() else {
                break;
            };
            match e.hop {
                Hop::AtHost(port) => {
                    let late = now - e.at;
                    self.lateness.frames += 1;
                    if late > LATE {
                        self.lateness.late += 1;
                    }
                    self.lateness.max = self.lateness.max.max(late);
                    out.push((port, e.frame));
                }
                Hop::AtSwitch(from) => self.forward(e.at, from, e.frame),
            }
        }
    }

    /// The switch proper, at time `at` (when the frame left the uplink,
    /// even if we run late: delays stay exact).
    fn forward(&mut self, at: Instant, from: usize, frame: Vec<u8>) {
        let mut dst = [0u8; 6];
        let mut src = [0u8; 6];
        dst.copy_from_slice(&frame[0..6]);
        src.copy_from_slice(&frame[6..12]);
        if src[0] & 1 == 0 {
            self.macs.insert(src, from);
        }
        let unicast = dst[0] & 1 == 0;
        match self.macs.get(&dst).copied().filter(|_| unicast) {
            Some(to) if to == from => {}
            Some(to) => self.send_down(at, to, frame),
            None => {
                for to in (0..self.ports.len()).filter(|&p| p != from) {
                    self.send_down(at, to, frame.clone());
                }
            }
        }
    }

    fn send_down(&mut self, at: Instant, to: usize, frame: Vec<u8>) {
        if let Fate::Arrives(t) = self.ports[to].down.offer(at, frame.len(), &mut self.rng) {
            self.push(t, Hop::AtHost(to), frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(dst: [u8; 6], src: [u8; 6], len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[0..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f
    }

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const BCAST: [u8; 6] = [0xff; 6];

    fn three_ports(delay_ms: u64) -> Switch {
        let p = LinkParams {
            delay: Duration::from_millis(delay_ms),
            ..LinkParams::default()
        };
        Switch::new(
            ["a", "b", "c"]
                .iter()
                .map(|n| (n.to_string(), p, p))
                .collect(),
            1,
        )
    }

    fn drain(s: &mut Switch, now: Instant) -> Vec<(usize, Vec<u8>)> {
        let mut out = vec![];
        s.handle_timeout(now, &mut out);
        out
    }

    #[test]
    fn floods_unknown_then_forwards_learned_with_both_delays() {
        let t0 = Instant::now();
        let mut s = three_ports(10);
        // A broadcasts (an ARP request): everyone else gets it after
        // A's uplink delay plus their downlink delay.
        s.handle_frame(t0, 0, frame(BCAST, A, 60));
        assert!(drain(&mut s, t0 + Duration::from_millis(19)).is_empty());
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_millis(20)));
        let out = drain(&mut s, t0 + Duration::from_millis(20));
        let ports: Vec<usize> = out.iter().map(|(p, _)| *p).collect();
        assert_eq!(ports, vec![1, 2]);
        // B answers A: A is learned, so only port 0 gets it.
        s.handle_frame(t0, 1, frame(A, B, 60));
        let out = drain(&mut s, t0 + Duration::from_millis(40));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, 0);
        // Now B is learned too: A to B goes to port 1 only.
        s.handle_frame(t0, 0, frame(B, A, 60));
        let out = drain(&mut s, t0 + Duration::from_millis(60));
        assert_eq!(out.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![1]);
        // Handed out 40 ms after its due time (20 ms): late, and counted.
        assert_eq!(s.lateness.frames, 4);
        assert_eq!(s.lateness.late, 2);
        assert_eq!(s.lateness.max, Duration::from_millis(40));
    }

    #[test]
    fn blackholed_port_neither_sends_nor_receives() {
        let t0 = Instant::now();
        let mut s = three_ports(0);
        s.handle_frame(t0, 0, frame(BCAST, A, 60));
        s.handle_frame(t0, 1, frame(BCAST, B, 60));
        drain(&mut s, t0);
        s.ports[1].up.params.blackhole = true;
        s.ports[1].down.params.blackhole = true;
        s.handle_frame(t0, 0, frame(B, A, 60));
        s.handle_frame(t0, 1, frame(A, B, 60));
        assert!(drain(&mut s, t0 + Duration::from_secs(1)).is_empty());
        assert_eq!(s.ports[1].down.stats.blackholed, 1);
        assert_eq!(s.ports[1].up.stats.blackholed, 1);
    }

    #[test]
    fn runts_are_dropped() {
        let t0 = Instant::now();
        let mut s = three_ports(0);
        s.handle_frame(t0, 0, vec![0; 13]);
        assert!(drain(&mut s, t0).is_empty());
        assert_eq!(s.runts, 1);
    }
}
