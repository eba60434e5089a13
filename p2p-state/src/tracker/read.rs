//! `read`: answers the requests that change nothing, from the state alone.
//!
//! Every read but `ping` needs a live session, on a connection with the key
//! that logged in. A group's members and files are for its members only
//! (`NotMember` otherwise, which tells the asker to ask the owner). `get_peers` lists the sources a downloader may use: users
//! other than the asker whose session is online with a registered seeder
//! address (full seeders and partial holders, with their pieces), each with
//! a ticket signed under that source's seeder key. A ticket names both
//! ends' TLS keys (the asker's session key as `downloader_key`, the
//! source's session key as `seeder_key`) and lives `ticket_ttl_ms`
//! (minutes: [`super::state::TICKET_LIFETIME_MS`] by default); a user who
//! logged out, expired or left the group gets none.
//! With more than `PEERS_PER_REPLY` sources, the reply is a window of them
//! (in name order, wrapping) that starts at `now` modulo their number, so
//! repeated asks spread downloaders over every source without randomness.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use p2p_proto::{
    ClientRequest, FileName, FileSummary, GroupName, GroupSummary, KeyId, Mac, Outcome, PeerInfo,
    PieceSet, Reply, Request, SeederKey, SessionToken, Ticket, TrackerError, UserName,
};

use super::check::bad;
use super::limits::PEERS_PER_REPLY;
use super::state::{SharedFile, TrackerConfig, TrackerState};
use crate::time::Instant;

/// A source a downloader can use right now.
struct Visible<'a> {
    user: &'a UserName,
    pieces: &'a PieceSet,
    addr: SocketAddr,
    key: &'a SeederKey,
    /// The source's TLS key (its session's).
    tls: KeyId,
}

impl TrackerState {
    /// Answers a read-only request. `Status` needs replication facts and is
    /// answered by the tracker machine; here it (and any write) is a
    /// `BadRequest`. `key` is the TLS key of the asking connection.
    pub(crate) fn read(
        &self,
        now: Instant,
        cfg: &TrackerConfig,
        req: &ClientRequest,
        key: KeyId,
    ) -> Outcome {
        use Request::*;
        match &req.req {
            Ping => return Ok(Reply::Pong),
            Status => return Err(bad("status is answered by the tracker, not its state")),
            r if r.is_write() => return Err(bad("a write cannot be answered as a read")),
            _ => {}
        }
        let (_, session) = self.request_session(now, cfg, req, key)?;
        let user = &session.user;
        match &req.req {
            Resume => Ok(Reply::Resumed { user: user.clone() }),
            ListGroups => Ok(Reply::Groups(self.list_groups(user))),
            ListRequests { group } => {
                let g = self.owned_group(user, group)?;
                Ok(Reply::Requests(g.pending_in_order()))
            }
            ListFiles { group } => self.list_files(user, group).map(Reply::Files),
            ListMembers { group } => {
                let g = self.member_group(user, group)?;
                Ok(Reply::Members(g.members_in_order()))
            }
            GetFile { group, file } => {
                let f = self.member_file(user, group, file)?;
                Ok(Reply::File(f.meta.clone()))
            }
            GetPeers { group, file } => {
                let expires_ms = now.as_millis().saturating_add(cfg.ticket_ttl_ms);
                self.get_peers(now, expires_ms, (user, session.key), group, file)
                    .map(Reply::Peers)
            }
            _ => Err(bad("not a read")),
        }
    }

    /// Every group, with whether `user` is a member or has asked to join.
    fn list_groups(&self, user: &UserName) -> Vec<GroupSummary> {
        self.groups
            .iter()
            .map(|(name, g)| GroupSummary {
                name: name.clone(),
                owner: g.owner.clone(),
                members: g.members.len() as u32,
                member: g.members.contains_key(user),
                pending: g.pending.contains_key(user),
            })
            .collect()
    }

    fn list_files(
        &self,
        user: &UserName,
        group: &GroupName,
    ) -> Result<Vec<FileSummary>, TrackerError> {
        let g = self.member_group(user, group)?;
        Ok(g.files.values().map(|f| self.summary(f)).collect())
    }

    fn summary(&self, f: &SharedFile) -> FileSummary {
        let visible = self.visible_sources(f, None);
        let seeders = visible.iter().filter(|v| v.pieces.is_full()).count() as u32;
        FileSummary {
            name: f.meta.name.clone(),
            size: f.meta.size,
            file_hash: f.meta.file_hash,
            seeders,
            partial: visible.len() as u32 - seeders,
        }
    }

    /// Sources of `f` that are online with an address, `except` left out.
    fn visible_sources<'a>(
        &'a self,
        f: &'a SharedFile,
        except: Option<&UserName>,
    ) -> Vec<Visible<'a>> {
        f.sources
            .iter()
            .filter(|(user, _)| Some(*user) != except)
            .filter_map(|(user, pieces)| {
                let (_, s) = self.user_session(user)?;
                Some(Visible {
                    user,
                    pieces,
                    addr: s.serving()?,
                    key: &s.seeder_key,
                    tls: s.key,
                })
            })
            .collect()
    }

    fn get_peers(
        &self,
        now: Instant,
        expires_ms: u64,
        (asker, asker_key): (&UserName, KeyId),
        group: &GroupName,
        file: &FileName,
    ) -> Result<Vec<PeerInfo>, TrackerError> {
        let f = self.member_file(asker, group, file)?;
        let visible = self.visible_sources(f, Some(asker));
        if visible.is_empty() {
            return Err(TrackerError::NoSeeders {
                group: group.clone(),
                file: file.clone(),
            });
        }
        let n = visible.len();
        let start = match n > PEERS_PER_REPLY {
            true => (now.as_millis() % n as u64) as usize,
            false => 0,
        };
        let peers = visible
            .iter()
            .cycle()
            .skip(start)
            .take(n.min(PEERS_PER_REPLY));
        Ok(peers
            .map(|v| Self::peer_info(f, expires_ms, (asker, asker_key), group, v))
            .collect())
    }

    /// One source as a downloader sees it, with a ticket for `asker`.
    fn peer_info(
        f: &SharedFile,
        expires_ms: u64,
        (asker, asker_key): (&UserName, KeyId),
        group: &GroupName,
        v: &Visible,
    ) -> PeerInfo {
        let mut t = Ticket {
            downloader: asker.clone(),
            group: group.clone(),
            file: f.meta.name.clone(),
            file_hash: f.meta.file_hash,
            seeder: v.user.clone(),
            downloader_key: asker_key,
            seeder_key: v.tls,
            expires_ms,
            mac: Mac::default(),
        };
        crate::ticket::sign(v.key, &mut t);
        PeerInfo {
            user: v.user.clone(),
            addr: v.addr,
            pieces: v.pieces.clone(),
            ticket: t,
        }
    }

    /// What a push to a downloader carries (`node/push.rs`): the sources
    /// of `file` visible now that the session `token` was not told of
    /// (`told`), at most `max`, each with a ticket for it as `get_peers`
    /// gives. `None` when nothing is to be pushed to it any more: the
    /// session is gone, its user is no longer a member, the file is gone,
    /// or the user holds the whole file itself.
    pub(crate) fn new_peers(
        &self,
        now: Instant,
        cfg: &TrackerConfig,
        token: &SessionToken,
        (group, file): (&GroupName, &FileName),
        told: &BTreeSet<UserName>,
        max: usize,
    ) -> Option<Vec<PeerInfo>> {
        let s = self.session(token)?;
        let f = self.member_file(&s.user, group, file).ok()?;
        if f.sources.get(&s.user).is_some_and(|p| p.is_full()) {
            return None;
        }
        let expires_ms = now.as_millis().saturating_add(cfg.ticket_ttl_ms);
        Some(
            self.visible_sources(f, Some(&s.user))
                .iter()
                .filter(|v| !told.contains(v.user))
                .take(max)
                .map(|v| Self::peer_info(f, expires_ms, (&s.user, s.key), group, v))
                .collect(),
        )
    }
}
