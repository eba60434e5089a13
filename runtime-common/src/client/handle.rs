//! The handle a running client is driven through: [`ClientHandle`] (what
//! both runtimes return), [`Commander`] (its shareable half: commands,
//! [`Status`], [`Snapshot`] for the dashboard, ids for shares and
//! destinations).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};

use p2p_proto::GroupName;
use p2p_state::client::node::{self as cn, ClientEvent, Command, CommandOk};
use p2p_state::client::session::ClientError;
use p2p_state::seeder::ShareId;

use super::{HandleMsg, HandleParts, Paths};

/// What the CLI asks for between commands.
#[derive(Debug, Clone)]
pub struct Status {
    pub downloads_ended: bool,
    /// The failed downloads, by group and file.
    pub failed: Vec<(GroupName, p2p_proto::FileName)>,
    pub logged_in: bool,
    /// Pieces and bytes this client's seeder has served.
    pub served_pieces: u64,
    pub served_bytes: u64,
}

/// A share, as the dashboard lists it.
#[derive(Debug, Clone)]
pub struct ShareLine {
    pub group: GroupName,
    pub file: p2p_proto::FileName,
    pub size: u64,
    pub path: Option<PathBuf>,
    /// Pieces and bytes this share has served since it was added.
    pub served_pieces: u64,
    pub served_bytes: u64,
}

/// Everything the client knows locally, for the dashboard: who is
/// logged in where, the downloads (with piece maps and per-peer
/// figures), the shares and what the seeder served.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub user: Option<p2p_proto::UserName>,
    /// The tracker the session talks to, and every tracker it knows.
    pub tracker: SocketAddr,
    pub trackers: Vec<SocketAddr>,
    /// The session's connection to its tracker is up.
    pub tracker_up: bool,
    pub downloads: Vec<cn::DownloadLine>,
    /// Pieces and bytes each download's partial (or complete) file has
    /// served to other downloaders, by download id.
    pub download_served: BTreeMap<cn::DlId, p2p_state::seeder::Served>,
    pub shares: Vec<ShareLine>,
    pub served_pieces: u64,
    pub served_bytes: u64,
    /// Pieces and bytes served to each downloading user.
    pub served_by_user: Vec<(p2p_proto::UserName, u64, u64)>,
    /// The rate limits in force.
    pub rates: cn::Rates,
}

type SendFn = Arc<dyn Fn(HandleMsg) -> bool + Send + Sync>;
type Join = Box<dyn FnOnce() + Send>;

/// A running client.
pub struct ClientHandle {
    commander: Commander,
    seeder_addr: SocketAddr,
    join: Option<Join>,
    events: Option<Receiver<ClientEvent>>,
}

/// What runs commands on a client, from any thread (the REPL, the web
/// dashboard's connections, the watcher); cloned freely.
#[derive(Clone)]
pub struct Commander {
    send: SendFn,
    paths: Arc<Mutex<Paths>>,
}

impl Commander {
    /// A commander of no client (every call fails as if it had stopped),
    /// for tests.
    pub fn detached() -> Self {
        Commander {
            send: Arc::new(|_| false),
            paths: Arc::new(Mutex::new(Paths::new())),
        }
    }

    /// Runs a command and waits for its answer.
    pub fn run(&self, cmd: Command) -> Result<CommandOk, ClientError> {
        let (reply, rx) = mpsc::channel();
        if !(self.send)(HandleMsg::Cmd { cmd, reply }) {
            return Err(ClientError::Busy);
        }
        rx.recv().unwrap_or(Err(ClientError::Busy))
    }

    /// Registers a file to share: returns the id to put in `Command::Share`.
    pub fn share_id(&self, path: &Path, group: &GroupName) -> ShareId {
        let mut p = self.paths.lock().expect("paths");
        let id = p.next_id();
        p.shares.insert(id, (path.to_path_buf(), group.clone()));
        ShareId::Upload(id)
    }

    /// Registers a download destination: returns its id. An existing
    /// file at `path` is replaced only with `overwrite`.
    pub fn dest_id(&self, path: &Path, overwrite: bool) -> u64 {
        let mut p = self.paths.lock().expect("paths");
        let id = p.next_id();
        p.dests.insert(id, (path.to_path_buf(), overwrite));
        id
    }

    pub fn status(&self) -> Option<Status> {
        let (tx, rx) = mpsc::channel();
        if !(self.send)(HandleMsg::Query(tx)) {
            return None;
        }
        rx.recv().ok()
    }

    /// What the client knows locally (`None` once it stopped).
    pub fn snapshot(&self) -> Option<Snapshot> {
        let (tx, rx) = mpsc::channel();
        if !(self.send)(HandleMsg::Snapshot(tx)) {
            return None;
        }
        let mut s = *rx.recv().ok()?;
        s.shares
            .sort_by(|a, b| (&a.group, &a.file).cmp(&(&b.group, &b.file)));
        Some(s)
    }
}

impl ClientHandle {
    /// `send` queues a message for the machine loop (`false` once it has
    /// stopped); `join` waits for the loop to end.
    pub fn new(
        send: impl Fn(HandleMsg) -> bool + Send + Sync + 'static,
        join: impl FnOnce() + Send + 'static,
        parts: HandleParts,
    ) -> Self {
        ClientHandle {
            commander: Commander {
                send: Arc::new(send),
                paths: parts.paths,
            },
            seeder_addr: parts.seeder_addr,
            join: Some(Box::new(join)),
            events: Some(parts.events),
        }
    }

    pub fn seeder_addr(&self) -> SocketAddr {
        self.seeder_addr
    }

    /// Lines the user should see that no command asked for.
    pub fn take_events(&mut self) -> Receiver<ClientEvent> {
        self.events.take().expect("events taken once")
    }

    /// What runs commands on this client from other threads.
    pub fn commander(&self) -> Commander {
        self.commander.clone()
    }

    /// Runs a command and waits for its answer.
    pub fn run(&self, cmd: Command) -> Result<CommandOk, ClientError> {
        self.commander.run(cmd)
    }

    /// Registers a file to share: returns the id to put in `Command::Share`.
    pub fn share_id(&self, path: &Path, group: &GroupName) -> ShareId {
        self.commander.share_id(path, group)
    }

    /// Registers a download destination: returns its id. An existing
    /// file at `path` is replaced only with `overwrite`.
    pub fn dest_id(&self, path: &Path, overwrite: bool) -> u64 {
        self.commander.dest_id(path, overwrite)
    }

    pub fn status(&self) -> Option<Status> {
        self.commander.status()
    }

    /// Stops the machine loop (connections close with it) and waits.
    pub fn stop(mut self) {
        (self.commander.send)(HandleMsg::Stop);
        if let Some(j) = self.join.take() {
            j();
        }
    }
}
