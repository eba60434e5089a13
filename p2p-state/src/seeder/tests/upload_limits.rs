//! Upload rate limits, total and per connection: they hold over simulated
//! time and can be lifted or set at run time.

use super::*;

/// Serves `conns` connections that always have pieces requested, answering
/// every read at once, for `span`: the bytes sent and the machine.
fn serve_flat_out(r: &mut Rig, conns: usize, span: Duration) -> u64 {
    let end = r.now + span;
    let open: Vec<ConnId> = (0..conns).map(|n| r.open_as(&nth_user(n))).collect();
    let mut sent = 0u64;
    let mut out = Vec::new();
    for &c in &open {
        for i in [0, 1, 2, 3] {
            out.extend(r.msg(c, PeerMsg::Request { index: i }));
        }
    }
    loop {
        let mut more = Vec::new();
        for o in out.drain(..) {
            if let Output::Serve {
                conn, index, len, ..
            } = o
            {
                sent += u64::from(len);
                more.extend(r.input(Input::Served { conn, index }));
                // Ask for it again: demand never ends.
                more.extend(r.msg(conn, PeerMsg::Request { index }));
            }
        }
        if more.is_empty() {
            let Some((at, _)) = r.s.poll_timeout().filter(|(at, _)| *at < end) else {
                return sent;
            };
            more = r.advance(at.saturating_since(r.now).as_millis());
        }
        out = more;
    }
}

/// Issue 16 §6: an upload limit of R holds over 20 s of simulated time
/// within one second's burst plus one piece per connection; without a
/// limit the same peers take far more.
#[test]
fn the_upload_rate_limit_holds_over_time() {
    const RATE: u64 = 20_000;
    let span = Duration::from_secs(20);
    let mut r = Rig::with(SeederConfig {
        upload_rate: Some(RATE),
        ..SeederConfig::default()
    });
    let sent = serve_flat_out(&mut r, 3, span);
    let ideal = RATE * 20;
    let slack = RATE * crate::rate::RATE_BURST.as_millis() / 1000 + 3 * 1024;
    assert!(
        sent + 1024 >= ideal && sent <= ideal + slack,
        "{sent} bytes in 20 s at {RATE} B/s (ideal {ideal}, slack {slack})"
    );
}

/// Issue 16 §6: a per-connection upload limit of R holds for each of
/// three connections (together about 3R) within one burst and one piece
/// each; under a global limit of R as well, the global one rules.
#[test]
fn the_per_peer_upload_rate_limit_holds_for_each_connection() {
    const RATE: u64 = 10_000;
    let span = Duration::from_secs(20);
    let burst = RATE * crate::rate::RATE_BURST.as_millis() / 1000;
    let mut r = Rig::with(SeederConfig {
        upload_rate_per_peer: Some(RATE),
        ..SeederConfig::default()
    });
    let sent = serve_flat_out(&mut r, 3, span);
    let ideal = 3 * RATE * 20;
    let slack = 3 * (burst + 1024);
    assert!(
        sent + 3 * 1024 >= ideal && sent <= ideal + slack,
        "{sent} bytes in 20 s at 3 x {RATE} B/s (ideal {ideal}, slack {slack})"
    );
    for c in r.s.conns.values() {
        let got = c.served.bytes;
        assert!(got <= RATE * 20 + burst + 1024, "one connection got {got}");
    }
    let mut r = Rig::with(SeederConfig {
        upload_rate: Some(RATE),
        upload_rate_per_peer: Some(RATE),
        ..SeederConfig::default()
    });
    let sent = serve_flat_out(&mut r, 3, span);
    assert!(sent <= RATE * 20 + burst + 3 * 1024, "{sent}");
}

/// A seeder under `cfg` (one piece's worth of rate a second) lets one of
/// three requests through and holds the rest for its rate timer; `lift`
/// turns the limit off at run time, and the held reads start at once.
fn held_then_lifted(cfg: SeederConfig, lift: impl FnOnce(&mut Seeder, Instant)) -> Rig {
    let mut r = Rig::with(cfg);
    let c = r.open();
    let mut out = Vec::new();
    for i in [0, 1, 2] {
        out.extend(r.msg(c, PeerMsg::Request { index: i }));
    }
    assert_eq!(reads(&out), vec![0], "one piece's worth allowed now");
    assert_eq!(r.s.poll_timeout().map(|t| t.1), Some(Timer::Rate));
    lift(&mut r.s, r.now);
    let out: Vec<Output> = std::iter::from_fn(|| r.s.poll_output()).collect();
    assert_eq!(reads(&out), vec![1, 2], "lifted: the held reads start");
    r
}

#[test]
fn the_per_peer_upload_rate_limit_can_be_lifted_at_run_time() {
    let cfg = SeederConfig {
        upload_rate_per_peer: Some(1024),
        ..SeederConfig::default()
    };
    let r = held_then_lifted(cfg, |s, now| s.set_upload_rate_per_peer(now, None));
    assert_eq!(r.s.upload_rate_per_peer(), None);
}

#[test]
fn the_upload_rate_limit_can_be_lifted_and_set_at_run_time() {
    let cfg = SeederConfig {
        upload_rate: Some(1024),
        ..SeederConfig::default()
    };
    let mut r = held_then_lifted(cfg, |s, now| s.set_upload_rate(now, None));
    assert_eq!(r.s.upload_rate(), None);
    r.s.set_upload_rate(r.now, Some(1));
    assert_eq!(r.s.upload_rate(), Some(1));
}
