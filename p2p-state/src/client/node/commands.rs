//! The user's commands on the client node and the tracker session's answers
//! and events: what each command asks of the session, what a success
//! changes here (shares, downloads, the seeder address), pushed sources,
//! and re-announcing shares after a login or a failover.

use super::*;

impl ClientNode {
    pub(super) fn on_command(&mut self, now: Instant, tag: CommandTag, cmd: Command) {
        let req = match &cmd {
            Command::ShowDownloads => {
                let lines = self.download_lines(now);
                self.done(tag, Ok(CommandOk::Downloads(lines)));
                return;
            }
            Command::SetRate { limit, rate } => {
                self.set_rate(now, *limit, *rate);
                self.done(tag, Ok(CommandOk::Rates(self.rates())));
                return;
            }
            Command::ShowRates => {
                self.done(tag, Ok(CommandOk::Rates(self.rates())));
                return;
            }
            Command::Tracker(r) => r.clone(),
            Command::Share { group, meta, .. } => Request::UploadFile {
                group: group.clone(),
                meta: meta.clone(),
            },
            Command::Download {
                group,
                file,
                dest,
                expected,
            } => {
                let dl = self.next_dl;
                self.next_dl += 1;
                let d = Dl {
                    group: group.clone(),
                    file: file.clone(),
                    dest: *dest,
                    expected: *expected,
                    state: DlState::Meta,
                    peers: BTreeMap::new(),
                };
                self.downloads.insert(dl, d);
                let req = Request::GetFile {
                    group: group.clone(),
                    file: file.clone(),
                };
                self.internal_request(now, Internal::UserDownload { tag, dl }, req);
                return;
            }
        };
        self.internal_request(now, Internal::User { tag, cmd }, req);
    }

    /// Sends a request through the session, remembering what it is for.
    pub(super) fn internal_request(&mut self, now: Instant, what: Internal, req: Request) {
        let t = self.next_internal;
        self.next_internal += 1;
        self.internal.insert(t, what);
        self.session_input(now, SessionInput::Command { tag: t, req });
    }

    pub(super) fn session_input(&mut self, now: Instant, input: SessionInput) {
        self.session.feed().handle_input(now, input);
    }

    // ------------------------------------------------------------ session results

    pub(super) fn on_session_done(
        &mut self,
        now: Instant,
        t: CommandTag,
        result: Result<Reply, ClientError>,
    ) {
        let Some(what) = self.internal.remove(&t) else {
            return;
        };
        match what {
            Internal::User { tag, cmd } => {
                if let Ok(reply) = &result {
                    self.after_success(now, &cmd, reply);
                }
                self.done(tag, result.map(CommandOk::Reply));
            }
            Internal::UserDownload { tag, dl } => match result {
                Ok(Reply::File(meta)) => {
                    let Some(d) = self.downloads.get_mut(&dl) else {
                        return;
                    };
                    // The metadata of the file asked for (a hostile tracker
                    // cannot substitute another), checked before any I/O.
                    if let Err(error) = download::check_meta_for(&meta, &d.file, d.expected) {
                        let file = d.file.clone();
                        self.downloads.remove(&dl);
                        self.done(tag, Err(ClientError::BadMetadata { file, error }));
                        return;
                    }
                    d.state = DlState::Opening(meta.clone());
                    let dest = d.dest;
                    self.out.push_back(Output::OpenDest { dl, dest, meta });
                    self.done(tag, Ok(CommandOk::Started { dl }));
                }
                Ok(other) => {
                    self.downloads.remove(&dl);
                    let e = p2p_proto::TrackerError::BadRequest {
                        reason: Text::new(format!("unexpected reply {other:?}")),
                    };
                    self.done(tag, Err(ClientError::Tracker(e)));
                }
                Err(e) => {
                    self.downloads.remove(&dl);
                    self.done(tag, Err(e));
                }
            },
            Internal::GetPeers { dl } => {
                let input = match result {
                    Ok(Reply::Peers(peers)) => download::Input::Peers(peers),
                    Ok(_) => download::Input::Peers(Vec::new()),
                    Err(e) => download::Input::PeersUnavailable {
                        reason: Text::new(e.to_string()),
                    },
                };
                self.dl_input(now, dl, input);
            }
            Internal::RegisterSeeder => {
                let ev = match result {
                    Ok(Reply::SeederAt { addr }) => Ok(addr),
                    Ok(other) => Err(Text::new(format!("unexpected reply {other:?}"))),
                    Err(e) => Err(Text::new(e.to_string())),
                };
                self.out
                    .push_back(Output::Event(ClientEvent::SeederAddress(ev)));
            }
            Internal::Reannounce { group, file } => {
                // The session already retried what can pass on retrying
                // (`NotReady`, another tracker); what is left stays
                // refused until the user shares the file again.
                if let Err(e) = result {
                    let reason = Text::new(e.to_string());
                    self.out
                        .push_back(Output::Event(ClientEvent::ShareNotAnnounced {
                            group,
                            file,
                            reason,
                        }));
                }
            }
            Internal::HavePieces => {}
        }
    }

    /// Local side effects of a user command the tracker accepted.
    pub(super) fn after_success(&mut self, now: Instant, cmd: &Command, reply: &Reply) {
        match (cmd, reply) {
            (Command::Share { group, meta, share }, Reply::Shared { .. }) => {
                let full = PieceSet::full(meta.piece_count());
                if self
                    .seeder
                    .feed()
                    .add_share(now, *share, group.clone(), meta, full)
                    .is_ok()
                {
                    self.shares.insert(*share, (group.clone(), meta.clone()));
                }
            }
            (Command::Tracker(Request::StopShare { group, file }), _) => {
                let gone: Vec<ShareId> = self
                    .shares
                    .iter()
                    .filter(|(_, (g, m))| g == group && m.name == *file)
                    .map(|(&id, _)| id)
                    .collect();
                for id in gone {
                    self.shares.remove(&id);
                    let _ = self.seeder.feed().remove_share(now, id);
                }
            }
            (Command::Tracker(Request::LeaveGroup { group }), _) => {
                let gone: Vec<ShareId> = self
                    .shares
                    .iter()
                    .filter(|(_, (g, _))| g == group)
                    .map(|(&id, _)| id)
                    .collect();
                for id in gone {
                    self.shares.remove(&id);
                    let _ = self.seeder.feed().remove_share(now, id);
                }
            }
            _ => {}
        }
    }

    /// After login or a resume on another tracker: tell the tracker where
    /// our seeder listens and what we share.
    pub(super) fn on_session_event(&mut self, now: Instant, e: SessionEvent) {
        if let SessionEvent::Peers { group, file, peers } = e {
            return self.on_pushed_peers(now, &group, &file, peers);
        }
        match &e {
            SessionEvent::LoggedIn { user, seeder_key } => {
                self.seeder
                    .feed()
                    .set_identity(now, user.clone(), *seeder_key);
                self.reannounce(now);
            }
            SessionEvent::Resumed { .. } => self.reannounce(now),
            SessionEvent::LoggedOut | SessionEvent::SessionLost => {
                self.seeder.feed().clear_identity(now)
            }
            _ => {}
        }
        self.out.push_back(Output::Event(ClientEvent::Session(e)));
    }

    /// The tracker pushed new sources of a file: every running download
    /// of it learns them (and connects as it sees fit); nothing else does.
    pub(super) fn on_pushed_peers(
        &mut self,
        now: Instant,
        group: &GroupName,
        file: &FileName,
        peers: Vec<p2p_proto::PeerInfo>,
    ) {
        let dls: Vec<DlId> = self
            .downloads
            .iter()
            .filter(|(_, d)| &d.group == group && &d.file == file)
            .filter(|(_, d)| matches!(d.state, DlState::Running(_)))
            .map(|(&id, _)| id)
            .collect();
        for dl in dls {
            self.dl_input(now, dl, download::Input::PeersPushed(peers.clone()));
        }
    }

    pub(super) fn reannounce(&mut self, now: Instant) {
        if let Some(addr) = self.cfg.seeder_addr {
            self.internal_request(
                now,
                Internal::RegisterSeeder,
                Request::RegisterSeeder { addr },
            );
        }
        let shares: Vec<(GroupName, FileMeta)> = self.shares.values().cloned().collect();
        for (group, meta) in shares {
            let what = Internal::Reannounce {
                group: group.clone(),
                file: meta.name.clone(),
            };
            self.internal_request(now, what, Request::UploadFile { group, meta });
        }
        let partial: Vec<(GroupName, FileName, PieceSet)> = self
            .downloads
            .values()
            .filter_map(|d| match &d.state {
                DlState::Running(m) if !m.get().pieces_done().is_empty() => Some((
                    d.group.clone(),
                    d.file.clone(),
                    m.get().pieces_done().clone(),
                )),
                _ => None,
            })
            .collect();
        for (group, file, pieces) in partial {
            self.announce_have(now, group, file, pieces);
        }
    }

    // ------------------------------------------------------------ downloads

    /// Tells the tracker which pieces of `file` this client holds now (a
    /// download's progress, so other downloaders can find it).
    pub(super) fn announce_have(
        &mut self,
        now: Instant,
        group: GroupName,
        file: FileName,
        pieces: PieceSet,
    ) {
        let req = Request::HavePieces {
            group,
            file,
            pieces,
        };
        self.internal_request(now, Internal::HavePieces, req);
    }
}
