//! Inbound connections to the seeder port: closed in time when silent
//! before their hello, and told why when refused before it.

use super::*;

/// A connection from 192.0.2.1 (key 0x61...) accepted as inbound `id`.
fn accept(n: &mut ClientNode, id: u64) {
    let input = Input::PeerAccepted {
        conn: PeerConnId::Inbound(ConnId(id)),
        peer: KeyId([0x61; 32]),
        addr: std::net::IpAddr::from([192, 0, 2, 1]),
    };
    n.handle_input(T0, input);
}

/// Issue 16 §6: a connection to the seeder port that never says hello is
/// counted by the seeder from accept (so the ticketless bounds hold it)
/// and closed when its time to show a ticket runs out.
#[test]
fn an_inbound_connection_silent_before_its_hello_is_closed_in_time() {
    use crate::seeder::OPEN_TIMEOUT;
    let mut n = idle_client();
    accept(&mut n, 1);
    assert!(drain(&mut n).is_empty());
    assert_eq!(n.seeder().connections(), 1);
    let before = T0 + crate::time::Duration(OPEN_TIMEOUT.as_millis() - 1);
    // (The session's own timers make outputs too: look at peers only.)
    let closes = |out: Vec<Output>| -> Vec<Output> {
        out.into_iter()
            .filter(|o| matches!(o, Output::PeerClose { .. }))
            .collect()
    };
    n.handle_timeout(before);
    assert!(closes(drain(&mut n)).is_empty(), "not before OPEN_TIMEOUT");
    n.handle_timeout(T0 + OPEN_TIMEOUT);
    let out = closes(drain(&mut n));
    assert_eq!(
        out,
        vec![Output::PeerClose {
            conn: PeerConnId::Inbound(ConnId(1))
        }]
    );
    assert_eq!(n.seeder().connections(), 0);
}

/// A connection refused at accept (here past the ticketless limit from
/// one address) hears our hello, then the refusal, then is closed: the
/// peer reads why.
#[test]
fn an_inbound_connection_refused_before_its_hello_hears_why() {
    use crate::client::node::PeerOut;
    use p2p_proto::{PeerMsg, RejectReason};
    let mut n = idle_client();
    accept(&mut n, 1);
    drain(&mut n);
    accept(&mut n, 2);
    let reject = PeerMsg::Reject {
        index: None,
        reason: RejectReason::Busy,
    };
    assert_eq!(
        drain(&mut n),
        vec![
            Output::PeerSend {
                conn: PeerConnId::Inbound(ConnId(2)),
                msg: PeerOut::Hello(Hello::new(Role::Server)),
            },
            Output::PeerSend {
                conn: PeerConnId::Inbound(ConnId(2)),
                msg: PeerOut::Msg(reject),
            },
            Output::PeerClose {
                conn: PeerConnId::Inbound(ConnId(2))
            },
        ]
    );
    // Its hello, arriving late, is ignored; the first one is still held.
    let payload = Hello::new(Role::Peer).to_bytes();
    n.handle_input(
        T0,
        Input::PeerFrame {
            conn: PeerConnId::Inbound(ConnId(2)),
            payload,
        },
    );
    assert!(drain(&mut n).is_empty());
    assert_eq!(n.seeder().connections(), 1);
}
