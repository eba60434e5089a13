//! The download's identity decisions (issue 15): a connection that proves
//! another key than the one the tracker vouched for hears nothing; tickets
//! that live minutes are renewed on live connections before they expire,
//! so a download longer than a ticket's life completes.

use std::net::SocketAddr;

use p2p_proto::{KeyId, Mac, PeerInfo, PeerMsg, PieceSet, Ticket, UserName};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::harness::{self, Scenario, T0, World, make_file};
use super::*;
use crate::time::{Duration, Instant};

const VOUCHED: KeyId = KeyId([0x53; 32]);
const OTHER: KeyId = KeyId([0x52; 32]);

fn group() -> GroupName {
    GroupName::new("g").unwrap()
}

struct Rig {
    d: Download,
    now: Instant,
    meta: FileMeta,
}

impl Rig {
    fn new(cfg: DownloadConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (_, meta) = make_file(&mut rng, 4 * 1024, 1024);
        let d = Download::new(cfg, group(), meta.clone(), PieceSet::empty(4), 9, T0);
        let mut r = Rig { d, now: T0, meta };
        assert_eq!(r.drain(), vec![Output::AskTrackerForPeers]);
        r
    }

    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.d.poll_output()).collect()
    }

    fn input(&mut self, i: Input) -> Vec<Output> {
        self.d.handle_input(self.now, i);
        self.drain()
    }

    fn info(&self, seeder_key: KeyId, life: Duration) -> PeerInfo {
        let user = UserName::new("s").unwrap();
        PeerInfo {
            user: user.clone(),
            addr: SocketAddr::from(([10, 0, 0, 1], 7000)),
            pieces: PieceSet::full(4),
            ticket: Ticket {
                downloader: UserName::new("d").unwrap(),
                group: group(),
                file: self.meta.name.clone(),
                file_hash: self.meta.file_hash,
                seeder: user,
                downloader_key: harness::DOWNLOADER_KEY,
                seeder_key,
                expires_ms: (self.now + life).as_millis(),
                mac: Mac::default(),
            },
        }
    }

    fn listed(&mut self, seeder_key: KeyId, life: Duration) -> Vec<Output> {
        let info = self.info(seeder_key, life);
        self.input(Input::Peers(vec![info]))
    }
}

fn connect_of(out: &[Output]) -> Option<PeerId> {
    out.iter().find_map(|o| match o {
        Output::Connect { peer, .. } => Some(*peer),
        _ => None,
    })
}

#[test]
fn a_seeder_proving_another_key_is_dropped_before_anything_is_sent() {
    let mut r = Rig::new(DownloadConfig::default());
    let life = Duration::from_secs(300);
    let peer = connect_of(&r.listed(VOUCHED, life)).expect("dials the listed seeder");
    let out = r.input(Input::Connected { peer, key: OTHER });
    assert_eq!(
        out,
        vec![Output::Disconnect {
            peer,
            reason: DisconnectReason::WrongKey {
                vouched: VOUCHED,
                presented: OTHER
            }
        }],
        "no Open, no ticket: only the close"
    );
    assert_eq!(r.d.stats().wrong_keys, 1);
    let why = r.d.waiting_reason(r.now).expect("waiting").to_string();
    assert!(
        why.contains(&OTHER.to_string()) && why.contains("vouched"),
        "{why}"
    );
    // Listed again with the same vouched key: not dialed again.
    assert_eq!(connect_of(&r.listed(VOUCHED, life)), None);
    // The tracker now vouches for another key (the seeder's key changed).
    let again = connect_of(&r.listed(KeyId([0x54; 32]), life)).expect("dialed again");
    let out = r.input(Input::Connected {
        peer: again,
        key: KeyId([0x54; 32]),
    });
    assert!(matches!(
        &out[..],
        [Output::Send {
            msg: PeerMsg::Open { .. },
            ..
        }]
    ));
}

#[test]
fn a_live_connection_gets_a_fresh_ticket_before_its_own_expires() {
    // Requests never time out here: only the tracker deadline matters.
    let cfg = DownloadConfig {
        request_timeout_min: Duration::from_secs(3600),
        request_timeout_max: Duration::from_secs(3600),
        ..DownloadConfig::default()
    };
    let renew_before = cfg.ticket_renew_before;
    let mut r = Rig::new(cfg);
    let life = Duration::from_secs(300);
    let first_expiry = (r.now + life).as_millis();
    let peer = connect_of(&r.listed(VOUCHED, life)).unwrap();
    r.input(Input::Connected { peer, key: VOUCHED });
    let pieces = PieceSet::full(4);
    r.input(Input::Msg {
        peer,
        msg: PeerMsg::Have { pieces },
    });
    // The tracker is asked again before the ticket expires, at the
    // renewal time (not at the periodic refresh only).
    let (at, why) = r.d.poll_timeout().unwrap();
    let renew_at = Instant(first_expiry - renew_before.as_millis());
    assert!(at <= renew_at, "{at:?} {why:?}");
    let mut asked = false;
    for _ in 0..20 {
        let (t, _) = r.d.poll_timeout().unwrap();
        if t > Instant(first_expiry) {
            break;
        }
        r.now = t;
        r.d.handle_timeout(t);
        if r.drain().contains(&Output::AskTrackerForPeers) && r.now >= renew_at {
            asked = true;
            break;
        }
    }
    assert!(asked, "asked for a fresh ticket by {renew_at:?}");
    assert!(r.now.as_millis() < first_expiry);
    let out = r.listed(VOUCHED, life);
    let shown = out.iter().find_map(|o| match o {
        Output::Send {
            msg: PeerMsg::Open { ticket },
            ..
        } => Some(ticket.expires_ms),
        _ => None,
    });
    assert_eq!(shown, Some((r.now + life).as_millis()));
    assert_eq!(r.d.stats().tickets_renewed, 1);
    // The same ticket again is not shown twice.
    let out = r.listed(VOUCHED, Duration(life.0 - 1));
    assert!(!out.iter().any(|o| matches!(
        o,
        Output::Send {
            msg: PeerMsg::Open { .. },
            ..
        }
    )));
}

/// Tickets live 10 s; the download takes minutes. Renewed on the live
/// connections, it completes with no connection refused for an expired
/// ticket.
#[test]
fn a_download_longer_than_the_ticket_life_completes() {
    let mut sc = Scenario::new(21, 60 * 1024, 1024, 2);
    sc.ticket_ttl = Duration::from_secs(10);
    for s in &mut sc.seeders {
        s.bytes_per_ms = 1; // about a second a piece
    }
    let mut w = World::new(sc);
    let r = w.run(500_000).expect("finishes");
    assert_eq!(r, Ok(()));
    assert!(w.disk() == &w.file()[..]);
    assert!(
        w.now.saturating_since(T0) > Duration::from_secs(25),
        "{:?}",
        w.now
    );
    assert!(w.download.stats().tickets_renewed >= 4);
    let expired = |(_, why): &(PeerId, String)| why.contains("expired");
    assert!(
        !w.record.disconnects.iter().any(expired),
        "{:?}",
        w.record.disconnects
    );
}

/// Without renewals (a ticket shown once per connection), the seeders
/// refuse each connection when its ticket expires; the download fetches a
/// fresh ticket, dials again, and still completes.
#[test]
fn expired_tickets_are_refused_and_the_download_redials_with_fresh_ones() {
    let mut sc = Scenario::new(22, 40 * 1024, 1024, 1);
    sc.ticket_ttl = Duration::from_secs(10);
    sc.seeders[0].bytes_per_ms = 1;
    sc.cfg.ticket_renew_before = Duration(0);
    sc.cfg.peers_refresh_first = Duration::from_secs(3600);
    sc.cfg.peers_refresh = Duration::from_secs(3600);
    let mut w = World::new(sc);
    let r = w.run(500_000).expect("finishes");
    assert_eq!(r, Ok(()));
    assert!(w.disk() == &w.file()[..]);
    let expired = |(_, why): &(PeerId, String)| why.contains("expired");
    assert!(
        w.record.disconnects.iter().filter(|d| expired(d)).count() >= 2,
        "{:?}",
        w.record.disconnects
    );
}

/// A hijacked seeder address: the download never sends it a ticket, and
/// completes from the honest seeder.
#[test]
fn an_impostor_at_a_seeders_address_gets_nothing() {
    let mut sc = Scenario::new(23, 20 * 1024, 1024, 2);
    sc.seeders[0].faults.impostor = true;
    sc.seeders[0].bytes_per_ms = 50_000;
    let mut w = World::new(sc);
    let r = w.run(500_000).expect("finishes");
    assert_eq!(r, Ok(()));
    assert_eq!(w.seeder(0).stats().served.pieces, 0);
    assert_eq!(w.seeder(0).connections(), 0);
    assert!(w.download.stats().wrong_keys >= 1);
}
