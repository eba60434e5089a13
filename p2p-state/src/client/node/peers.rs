//! Peer connections on the client node: hellos, routing each frame to the
//! seeder (inbound) or to its download (outbound), and connections that
//! end or fail.

use super::*;

impl ClientNode {
    /// An outbound connection is up and proved `key`: the download
    /// decides whether it is the seeder the tracker vouched for, before a
    /// byte is sent (our hello goes out with its first message).
    pub(super) fn on_peer_connected(&mut self, now: Instant, conn: PeerConnId, key: KeyId) {
        if let Some(PeerConn::Out {
            dl,
            peer,
            stage: OutStage::Dialing,
        }) = self.conns.get(&conn).copied()
        {
            let stage = OutStage::Quiet;
            self.conns.insert(conn, PeerConn::Out { dl, peer, stage });
            self.dl_input(now, dl, download::Input::Connected { peer, key });
        }
    }

    pub(super) fn on_peer_frame(&mut self, now: Instant, conn: PeerConnId, payload: Bytes) {
        let Some(&state) = self.conns.get(&conn) else {
            return;
        };
        match state {
            PeerConn::InHello => match Hello::from_bytes(payload) {
                Ok(h) if h.role == Role::Peer => self.say_hello(conn),
                _ => self.seeder_conn_gone(now, conn),
            },
            PeerConn::Seeder => match (PeerMsg::from_bytes(payload), conn.inbound()) {
                (Ok(msg), Some(conn)) => self
                    .seeder
                    .feed()
                    .handle_input(now, seeder::Input::Msg { conn, msg }),
                _ => self.seeder_conn_gone(now, conn),
            },
            PeerConn::Out {
                dl,
                peer,
                stage: OutStage::Hello,
            } => match Hello::from_bytes(payload) {
                Ok(h) if h.role == Role::Server => {
                    let stage = OutStage::Open;
                    self.conns.insert(conn, PeerConn::Out { dl, peer, stage });
                }
                _ => self.on_peer_gone(now, conn, false),
            },
            PeerConn::Out {
                dl,
                peer,
                stage: OutStage::Open,
            } => match PeerMsg::from_bytes(payload) {
                Ok(msg) => self.dl_input(now, dl, download::Input::Msg { peer, msg }),
                Err(_) => self.on_peer_gone(now, conn, false),
            },
            // It spoke before we did (or before it was up): not a seeder.
            PeerConn::Out { .. } => self.on_peer_gone(now, conn, false),
        }
    }

    /// Our hello as a seeder on inbound `conn`, which then belongs to the
    /// seeder.
    pub(super) fn say_hello(&mut self, conn: PeerConnId) {
        self.out.push_back(Output::PeerSend {
            conn,
            msg: PeerOut::Hello(Hello::new(Role::Server)),
        });
        self.conns.insert(conn, PeerConn::Seeder);
    }

    pub(super) fn drop_peer(&mut self, conn: PeerConnId) {
        self.conns.remove(&conn);
        self.out.push_back(Output::PeerClose { conn });
    }

    pub(super) fn on_peer_gone(&mut self, now: Instant, conn: PeerConnId, connect_failed: bool) {
        let Some(state) = self.conns.remove(&conn) else {
            return;
        };
        // The driver releases its side (a reader that stopped on bad framing
        // leaves the socket open until then).
        self.out.push_back(Output::PeerClose { conn });
        match state {
            PeerConn::InHello | PeerConn::Seeder => {
                if let Some(conn) = conn.inbound() {
                    let closed = seeder::Input::Closed { conn };
                    self.seeder.feed().handle_input(now, closed);
                }
            }
            PeerConn::Out { dl, peer, stage } => {
                if let Some(d) = self.downloads.get_mut(&dl) {
                    d.peers.remove(&peer);
                }
                let input = match (stage, connect_failed) {
                    (OutStage::Dialing, _) => download::Input::ConnectFailed { peer },
                    _ => download::Input::Closed { peer },
                };
                self.dl_input(now, dl, input);
            }
        }
    }

    /// Inbound `conn` broke the protocol before the seeder could judge
    /// it (a bad hello or an undecodable message): the seeder forgets it
    /// and it is closed.
    fn seeder_conn_gone(&mut self, now: Instant, conn: PeerConnId) {
        if let Some(id) = conn.inbound() {
            let closed = seeder::Input::Closed { conn: id };
            self.seeder.feed().handle_input(now, closed);
        }
        self.drop_peer(conn);
    }

    /// The driver answered a `Serve` on inbound `conn`.
    pub(super) fn on_served(
        &mut self,
        now: Instant,
        conn: PeerConnId,
        index: u32,
        done: Result<(), ServeError>,
    ) {
        let Some(conn) = conn.inbound() else {
            debug_assert!(false, "a Serve answered for outbound {conn}");
            return;
        };
        let input = match done {
            Ok(()) => seeder::Input::Served { conn, index },
            Err(why) => seeder::Input::ServeFailed { conn, index, why },
        };
        self.seeder.feed().handle_input(now, input);
    }
}
