//! Client requests: reads served from this tracker's state (when it may
//! serve them), writes prepared and proposed on the primary or forwarded by
//! a backup, a login's or create_user's argon2 work handed to the driver
//! (fair across sources, failed logins backing off) and prepared again when
//! it is done, and answers to whoever waits (a local client, or a backup's
//! forwarded write).

use super::*;

impl Tracker {
    pub(super) fn on_request(&mut self, now: Instant, conn: ConnId, mut req: ClientRequest) {
        let Some(key) = self.conns.get(&conn).map(|c| c.key) else {
            return;
        };
        self.observe_seeder_ip(conn, &mut req);
        self.bind_session(now, conn, &req, key);
        let outcome = match &req.req {
            Request::Login { user, .. }
                if let Err(e) = self.logins.check(now, user, self.source(conn)) =>
            {
                Some(Err(e))
            }
            Request::Status => Some(Ok(Reply::Status(self.repl.get().status()))),
            Request::Resume => Some(self.resume(now, &req, key)),
            r if !r.is_write() => Some(match self.repl.get().can_serve_reads() {
                true => self
                    .repl
                    .get()
                    .state()
                    .read(now, &self.cfg.state, &req, key),
                false => Err(TrackerError::NotReady),
            }),
            _ => self.write(now, conn, req.clone(), key),
        };
        if let (Request::GetPeers { group, file }, Some(Ok(Reply::Peers(peers)))) =
            (&req.req, &outcome)
        {
            let listed = peers.iter().map(|p| p.user.clone());
            self.push
                .subscribe(now, conn, (group.clone(), file.clone()), listed);
        }
        if let Some(outcome) = outcome {
            self.respond(conn, &req, outcome);
        }
    }

    /// A seeder address is the IP this tracker sees the client's
    /// connection come from, with the port the client states: a client
    /// cannot name another host (issue 16 §10), and one that does not know
    /// its own address (NAT, a late network, an unspecified bind) is still
    /// reachable where its tracker connection came from. Done where the
    /// connection is seen, before a backup forwards the write.
    pub(super) fn observe_seeder_ip(&self, conn: ConnId, req: &mut ClientRequest) {
        if let Request::RegisterSeeder { addr } = &mut req.req
            && let Some(seen) = self.conns.get(&conn).and_then(|c| c.addr)
        {
            addr.set_ip(seen.ip().to_canonical());
        }
    }

    /// Resumes a session: only on a connection with the key that logged
    /// in, and only within the session's lifetimes.
    pub(super) fn resume(&self, now: Instant, req: &ClientRequest, key: KeyId) -> Outcome {
        if !self.repl.get().can_serve_reads() {
            return Err(TrackerError::NotReady);
        }
        let state = self.repl.get().state();
        let (_, s) = state.request_session(now, &self.cfg.state, req, key)?;
        Ok(Reply::Resumed {
            user: s.user.clone(),
        })
    }

    /// Takes a write: prepared and proposed here on the primary, forwarded
    /// from a backup. `Some` is an answer now; `None` waits for the log.
    pub(super) fn write(
        &mut self,
        now: Instant,
        conn: ConnId,
        req: ClientRequest,
        key: KeyId,
    ) -> Option<Outcome> {
        let tag = self.next_tag;
        match self.repl.get().role() {
            Role::Primary => {
                let waiter = Waiter::Local {
                    conn,
                    req: req.clone(),
                };
                self.prepare_step(now, waiter, req, key, None);
                None
            }
            Role::Backup => {
                self.next_tag += 1;
                if !self.repl.get().can_take_writes() {
                    return Some(Err(TrackerError::NotReady));
                }
                if matches!(req.req, Request::Login { .. } | Request::CreateUser { .. })
                    && let Some(source) = self.source(conn)
                {
                    let waiting = self.forwarded_passwords.values().filter(|s| **s == source);
                    if let Err(full) = forward_allowed(waiting.count()) {
                        return Some(Err(full.error()));
                    }
                    self.forwarded_passwords.insert(tag, source);
                }
                self.waiters.insert(
                    tag,
                    Waiter::Local {
                        conn,
                        req: req.clone(),
                    },
                );
                self.repl
                    .feed()
                    .handle_input(now, ReplInput::Forward { req, key, tag });
                None
            }
        }
    }

    /// Primary: a backup's forwarded write. A forwarded login is held to
    /// this tracker's backoff of its user name too (the backup has already
    /// held it to its own, and to its client's address): failures count
    /// here wherever they came in, so spreading guesses over the trackers
    /// gains nothing.
    pub(super) fn on_forwarded(
        &mut self,
        now: Instant,
        from: TrackerId,
        fwd: u64,
        req: ClientRequest,
        key: KeyId,
    ) {
        let login = match &req.req {
            Request::Login { user, .. } => Some(user.clone()),
            _ => None,
        };
        let waiter = Waiter::Remote { from, fwd, login };
        if let Err(e) = self.login_allowed(now, &waiter) {
            return self.answer(now, waiter, 0, Err(e));
        }
        self.prepare_step(now, waiter, req, key, None);
    }

    /// Primary: prepares a write and proposes it; a login or create_user
    /// first hands its argon2 work to the driver, and comes back here with
    /// the result in `done`.
    pub(super) fn prepare_step(
        &mut self,
        now: Instant,
        waiter: Waiter,
        req: ClientRequest,
        key: KeyId,
        done: Option<PasswordDone>,
    ) {
        if self.repl.get().role() != Role::Primary {
            // Stepped down while the password work ran: the client retries.
            return self.answer(now, waiter, 0, Err(TrackerError::NotReady));
        }
        let step = self.repl.get().state().prepare_step(
            now,
            &self.cfg.state,
            &mut self.rng,
            &req,
            key,
            done.as_ref(),
        );
        let applied = self.repl.get().applied();
        match step {
            Err(e) => self.answer(now, waiter, 0, Err(e)),
            Ok(Step::Ready(Prepared::Done(outcome))) => self.answer(now, waiter, applied, outcome),
            Ok(Step::Password(work)) => {
                let job = self.next_tag;
                let lane = self.lane(&waiter);
                match self.password_queue.push(lane, (job, work)) {
                    Err(full) => self.answer(now, waiter, 0, Err(full.error())),
                    Ok(()) => {
                        self.next_tag += 1;
                        self.password_jobs.insert(job, (waiter, req, key));
                        self.dispatch_passwords(now);
                    }
                }
            }
            Ok(Step::Ready(Prepared::Op(kind))) => {
                let tag = self.next_tag;
                self.next_tag += 1;
                let origin = Origin {
                    client: req.client,
                    key,
                    id: req.id,
                };
                self.waiters.insert(tag, waiter);
                // Not the primary any more: `Abandoned` answers the waiter.
                let input = ReplInput::Propose {
                    origin: Some(origin),
                    kind,
                    tag: Some(tag),
                };
                self.repl.feed().handle_input(now, input);
            }
        }
    }

    pub(super) fn on_password_done(&mut self, now: Instant, job: u64, done: PasswordDone) {
        if let Some((waiter, req, key)) = self.password_jobs.remove(&job) {
            self.passwords_running -= 1;
            self.prepare_step(now, waiter, req, key, Some(done));
        }
        self.dispatch_passwords(now);
    }

    /// Hands queued password work to the driver, round robin across
    /// sources, while fewer than [`PASSWORD_RUNNING_MAX`] run. A login
    /// whose name or address started backing off while it waited is
    /// answered now, without its password check.
    pub(super) fn dispatch_passwords(&mut self, now: Instant) {
        while self.passwords_running < PASSWORD_RUNNING_MAX {
            let Some((job, work)) = self.password_queue.pop() else {
                return;
            };
            let Some((waiter, req, key)) = self.password_jobs.remove(&job) else {
                continue;
            };
            // Nobody is waiting any more: no argon2 for a closed connection.
            if let Waiter::Local { conn, .. } = &waiter
                && !self.conns.contains_key(conn)
            {
                continue;
            }
            if let Err(e) = self.login_allowed(now, &waiter) {
                self.answer(now, waiter, 0, Err(e));
                continue;
            }
            self.password_jobs.insert(job, (waiter, req, key));
            self.passwords_running += 1;
            self.out.push_back(Output::Password { job, work });
        }
    }

    /// The fairness lane of a write's password work: the client's address
    /// here, or the backup that forwarded it.
    pub(super) fn lane(&self, waiter: &Waiter) -> Lane {
        match waiter {
            Waiter::Local { conn, .. } => self.source(*conn).map_or(Lane::Unknown, Lane::Addr),
            Waiter::Remote { from, .. } => Lane::Tracker(*from),
        }
    }

    /// The address a client connection came from.
    pub(super) fn source(&self, conn: ConnId) -> Option<std::net::IpAddr> {
        let addr = self.conns.get(&conn)?.addr?;
        Some(addr.ip().to_canonical())
    }

    /// The client address behind a write's waiter: known for a local
    /// client; a backup's forwarded write carries none (the backup holds
    /// its clients' addresses to their backoff itself).
    fn waiter_source(&self, waiter: &Waiter) -> Option<std::net::IpAddr> {
        match waiter {
            Waiter::Local { conn, .. } => self.source(*conn),
            Waiter::Remote { .. } => None,
        }
    }

    /// The user name of a login's waiter (`None`: not a login).
    fn login_user(waiter: &Waiter) -> Option<&p2p_proto::UserName> {
        match waiter {
            Waiter::Local { req, .. } => match &req.req {
                Request::Login { user, .. } => Some(user),
                _ => None,
            },
            Waiter::Remote { login, .. } => login.as_ref(),
        }
    }

    /// `Ok` unless the waiter's write is a login whose user name, or its
    /// client's address, is backing off after failed logins.
    pub(super) fn login_allowed(&self, now: Instant, waiter: &Waiter) -> Result<(), TrackerError> {
        match Self::login_user(waiter) {
            Some(user) => self.logins.check(now, user, self.waiter_source(waiter)),
            None => Ok(()),
        }
    }

    /// Counts a login's outcome towards (or clears) the backoff of its
    /// user name and, for a local client, its address.
    pub(super) fn note_login(&mut self, now: Instant, waiter: &Waiter, outcome: &Outcome) {
        let Some(user) = Self::login_user(waiter) else {
            return;
        };
        match outcome {
            Err(TrackerError::WrongUserOrPassword) => {
                let (user, source) = (user.clone(), self.waiter_source(waiter));
                self.logins.failed(now, &user, source);
            }
            Ok(Reply::LoggedIn { .. }) => {
                let user = user.clone();
                self.logins.succeeded(&user);
            }
            _ => {}
        }
    }

    /// Answers a write's waiter: the local client, or the forwarding backup.
    pub(super) fn answer(&mut self, now: Instant, waiter: Waiter, index: u64, outcome: Outcome) {
        self.note_login(now, &waiter, &outcome);
        match waiter {
            Waiter::Local { conn, req } => {
                self.track_login(conn, &outcome);
                self.respond(conn, &req, outcome);
            }
            Waiter::Remote { from, fwd, .. } => {
                let input = ReplInput::ReplyForward {
                    to: from,
                    fwd,
                    index,
                    outcome,
                };
                self.repl.feed().handle_input(now, input);
            }
        }
    }

    pub(super) fn on_applied(&mut self, now: Instant, tag: u64, index: u64, outcome: Outcome) {
        self.forwarded_passwords.remove(&tag);
        if let Some(waiter) = self.waiters.remove(&tag) {
            self.answer(now, waiter, index, outcome);
        }
    }

    /// A login on a connection binds its session; a logout unbinds it.
    pub(super) fn track_login(&mut self, conn: ConnId, outcome: &Outcome) {
        let Some(Conn {
            kind: ConnKind::Client { session },
            ..
        }) = self.conns.get_mut(&conn)
        else {
            return;
        };
        match outcome {
            Ok(Reply::LoggedIn { token, .. }) => *session = Some(*token),
            Ok(Reply::Done)
                if session.is_some_and(|t| self.repl.get().state().session(&t).is_none()) =>
            {
                *session = None
            }
            _ => {}
        }
    }

    pub(super) fn respond(&mut self, conn: ConnId, req: &ClientRequest, outcome: Outcome) {
        if self.conns.contains_key(&conn) {
            self.send(
                conn,
                Outgoing::Client(FromTracker::Response {
                    id: req.id,
                    outcome,
                }),
            );
        }
    }
}
