//! Downloads on the client node: starting one once the tracker's metadata
//! and the destination file are in, feeding it, the download rate limit over
//! all downloads (granted round robin), ending it, and the `show_downloads`
//! lines.

use super::*;

impl ClientNode {
    /// The rate limits in force.
    pub fn rates(&self) -> Rates {
        Rates {
            up: self.seeder.get().upload_rate(),
            down: self.cfg.download.max_rate,
            up_per_peer: self.seeder.get().upload_rate_per_peer(),
            down_per_peer: self.cfg.download.max_rate_per_peer,
        }
    }

    /// Sets or lifts one rate limit (a fresh bucket, full).
    pub(super) fn set_rate(&mut self, now: Instant, limit: RateLimit, rate: Option<u64>) {
        match limit {
            RateLimit::Up => self.seeder.feed().set_upload_rate(now, rate),
            RateLimit::UpPerPeer => self.seeder.feed().set_upload_rate_per_peer(now, rate),
            RateLimit::Down | RateLimit::DownPerPeer => {
                let c = &mut self.cfg.download;
                if limit == RateLimit::Down {
                    c.max_rate = rate;
                    self.down = rate.map(|r| TokenBucket::new(now, r));
                } else {
                    c.max_rate_per_peer = rate;
                }
                let (all, per_peer) = (c.max_rate, c.max_rate_per_peer);
                for d in self.downloads.values_mut() {
                    if let DlState::Running(m) = &mut d.state {
                        m.feed().set_rates(now, all, per_peer);
                    }
                }
            }
        }
    }

    /// Under the download rate limit: while the bucket allows, grants one
    /// request at a time to the next download (round robin) that holds
    /// one back, taking the bytes it asked for. True if any was granted
    /// (their outputs are then to be drained).
    pub(super) fn grant_requests(&mut self, now: Instant) -> bool {
        let Some(bucket) = &mut self.down else {
            return false;
        };
        let mut any = false;
        while bucket.ready(now) {
            let wants = |(_, d): &(&DlId, &Dl)| d.wants_request();
            let next = self
                .downloads
                .range(self.grant_cursor.saturating_add(1)..)
                .find(wants)
                .or_else(|| self.downloads.iter().find(wants))
                .map(|(&dl, _)| dl);
            let Some(dl) = next else {
                break;
            };
            self.grant_cursor = dl;
            if let Some(Dl {
                state: DlState::Running(m),
                ..
            }) = self.downloads.get_mut(&dl)
            {
                let bytes = m.feed().allow_request(now);
                bucket.take(now, bytes);
                any = true;
            }
        }
        any
    }

    /// Every download ended (for `wait_downloads`); the failed ones
    /// listed by group and file.
    pub fn downloads_ended(&self) -> (bool, Vec<(GroupName, FileName)>) {
        let mut all = true;
        let mut failed = Vec::new();
        for d in self.downloads.values() {
            let mark = match &d.state {
                DlState::Meta | DlState::Opening(_) => DownloadMark::Downloading,
                DlState::Running(m) => DownloadMark::of(None, Some(m.get().state())),
                DlState::Ended(p, e) => DownloadMark::of(e.as_ref(), p.as_ref().map(|p| &p.state)),
            };
            match mark {
                DownloadMark::Downloading => all = false,
                DownloadMark::Failed => failed.push((d.group.clone(), d.file.clone())),
                DownloadMark::Complete => {}
            }
        }
        (all, failed)
    }

    pub fn download_lines(&self, now: Instant) -> Vec<DownloadLine> {
        self.downloads
            .iter()
            .map(|(&dl, d)| {
                let (progress, error) = match &d.state {
                    DlState::Meta | DlState::Opening(_) => (None, None),
                    DlState::Running(m) => (Some(m.get().progress(now)), None),
                    DlState::Ended(p, e) => (p.as_deref().cloned(), e.clone()),
                };
                DownloadLine {
                    dl,
                    group: d.group.clone(),
                    file: d.file.clone(),
                    progress,
                    error,
                }
            })
            .collect()
    }

    // ------------------------------------------------------------ inputs

    pub(super) fn on_dest_ready(&mut self, now: Instant, dl: DlId, have: PieceSet) {
        let Some(d) = self.downloads.get_mut(&dl) else {
            return;
        };
        let DlState::Opening(meta) = &d.state else {
            return;
        };
        let meta = meta.clone();
        let seed = self.seed ^ dl.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let m = Download::new(
            self.cfg.download.clone(),
            d.group.clone(),
            meta.clone(),
            have.clone(),
            seed,
            now,
        );
        d.state = DlState::Running(Box::new(Child::new(m)));
        let group = d.group.clone();
        let have = if have.len() == meta.piece_count() {
            have
        } else {
            PieceSet::empty(meta.piece_count())
        };
        let _ = self
            .seeder
            .feed()
            .add_share(now, ShareId::Download(dl), group, &meta, have);
    }

    pub(super) fn dl_input(&mut self, now: Instant, dl: DlId, input: download::Input) {
        if let Some(Dl {
            state: DlState::Running(m),
            ..
        }) = self.downloads.get_mut(&dl)
        {
            m.feed().handle_input(now, input);
        }
    }

    pub(super) fn on_finalized(&mut self, now: Instant, dl: DlId, error: Option<Text>) {
        let progress = match self.downloads.get(&dl).map(|d| &d.state) {
            Some(DlState::Running(m)) => Some(m.get().progress(now)),
            _ => None,
        };
        let result = match &error {
            None => Ok(()),
            Some(e) => Err(e.clone()),
        };
        self.end_download(now, dl, progress, error);
        if let Some(d) = self.downloads.get(&dl) {
            let ev = ClientEvent::DownloadFinished {
                dl,
                group: d.group.clone(),
                file: d.file.clone(),
                result,
            };
            self.out.push_back(Output::Event(ev));
        }
    }

    pub(super) fn end_download(
        &mut self,
        now: Instant,
        dl: DlId,
        progress: Option<Progress>,
        error: Option<Text>,
    ) {
        let Some(d) = self.downloads.get_mut(&dl) else {
            return;
        };
        let peers: Vec<PeerConnId> = d.peers.values().copied().collect();
        d.peers.clear();
        d.state = DlState::Ended(progress.map(Box::new), error.clone());
        for conn in peers {
            self.conns.remove(&conn);
            self.out.push_back(Output::PeerClose { conn });
        }
        if error.is_some() {
            let _ = self.seeder.feed().remove_share(now, ShareId::Download(dl));
        }
    }

    /// Executes one download's outputs; true if there were any (some become
    /// session requests, which the next pass of `pump` must send).
    pub(super) fn pump_download(&mut self, now: Instant, dl: DlId) -> bool {
        let mut any = false;
        loop {
            let Some(d) = self.downloads.get_mut(&dl) else {
                return any;
            };
            let DlState::Running(m) = &mut d.state else {
                return any;
            };
            let Some(o) = m.poll() else { return any };
            any = true;
            match o {
                download::Output::Connect { peer, addr } => {
                    let conn = PeerConnId::Outbound(self.next_conn);
                    self.next_conn += 1;
                    d.peers.insert(peer, conn);
                    let stage = OutStage::Dialing;
                    self.conns.insert(conn, PeerConn::Out { dl, peer, stage });
                    self.out.push_back(Output::PeerConnect { conn, addr });
                }
                download::Output::Send { peer, msg } => {
                    if let Some(&conn) = d.peers.get(&peer) {
                        let quiet = PeerConn::Out {
                            dl,
                            peer,
                            stage: OutStage::Quiet,
                        };
                        if self.conns.get(&conn) == Some(&quiet) {
                            let stage = OutStage::Hello;
                            self.conns.insert(conn, PeerConn::Out { dl, peer, stage });
                            self.out.push_back(Output::PeerSend {
                                conn,
                                msg: PeerOut::Hello(Hello::new(Role::Peer)),
                            });
                        }
                        self.out.push_back(Output::PeerSend {
                            conn,
                            msg: PeerOut::Msg(msg),
                        });
                    }
                }
                download::Output::Disconnect { peer, .. } => {
                    if let Some(conn) = d.peers.remove(&peer) {
                        self.conns.remove(&conn);
                        self.out.push_back(Output::PeerClose { conn });
                    }
                }
                download::Output::WritePiece {
                    index,
                    offset,
                    data,
                } => self.out.push_back(Output::WritePiece {
                    dl,
                    index,
                    offset,
                    data,
                }),
                download::Output::AnnounceHave { pieces } => {
                    let (group, file) = (d.group.clone(), d.file.clone());
                    self.announce_have(now, group, file, pieces);
                }
                download::Output::AskTrackerForPeers => {
                    let req = Request::GetPeers {
                        group: d.group.clone(),
                        file: d.file.clone(),
                    };
                    self.internal_request(now, Internal::GetPeers { dl }, req);
                }
                download::Output::Finished(Ok(())) => self.out.push_back(Output::Finalize { dl }),
                download::Output::Finished(Err(e)) => {
                    let progress = Some(m.get().progress(now));
                    let (group, file) = (d.group.clone(), d.file.clone());
                    let reason = Text::new(e.to_string());
                    self.end_download(now, dl, progress, Some(reason.clone()));
                    let ev = ClientEvent::DownloadFinished {
                        dl,
                        group,
                        file,
                        result: Err(reason),
                    };
                    self.out.push_back(Output::Event(ev));
                }
            }
        }
    }

    // ------------------------------------------------------------ peers
}
