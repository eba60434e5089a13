//! proptest strategies for every message, for round-trip tests here and for
//! other crates' tests (feature `strategies`).

use bytes::Bytes;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::msg::Text;
use crate::msg::client::*;
use crate::msg::peer::*;
use crate::msg::repl::*;
use crate::types::*;

fn name_str(spaces: bool) -> impl Strategy<Value = String> {
    let re = if spaces {
        "[a-zA-Z0-9_é][a-zA-Z0-9_. é-]{0,20}[a-zA-Z0-9_]"
    } else {
        "[a-zA-Z0-9_é][a-zA-Z0-9_.é-]{0,20}"
    };
    re.prop_filter("valid name", |s| s != ".." && s != "." && s.len() <= 64)
}

pub fn user() -> impl Strategy<Value = UserName> {
    name_str(false).prop_map(|s| UserName::new(s).unwrap())
}
pub fn group() -> impl Strategy<Value = GroupName> {
    name_str(false).prop_map(|s| GroupName::new(s).unwrap())
}
pub fn file_name() -> impl Strategy<Value = FileName> {
    name_str(true).prop_map(|s| FileName::new(s).unwrap())
}
pub fn password() -> impl Strategy<Value = Password> {
    "[ -~]{1,40}".prop_map(|s| Password::new(s).unwrap())
}
pub fn text() -> impl Strategy<Value = Text> {
    ".{0,40}".prop_map(Text::new)
}
pub fn sha1() -> impl Strategy<Value = Sha1Hash> {
    any::<[u8; 20]>().prop_map(Sha1Hash)
}
pub fn addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, p)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), p)),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, p)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), p)),
    ]
}
pub fn log_pos() -> impl Strategy<Value = LogPos> {
    (any::<u64>(), any::<u64>()).prop_map(|(epoch, index)| LogPos { epoch, index })
}
pub fn piece_set() -> impl Strategy<Value = PieceSet> {
    (0u32..200).prop_flat_map(|len| {
        vec(any::<bool>(), len as usize).prop_map(move |bits| {
            let mut s = PieceSet::empty(len);
            for (i, b) in bits.into_iter().enumerate() {
                if b {
                    s.insert(i as u32);
                }
            }
            s
        })
    })
}
pub fn file_meta() -> impl Strategy<Value = FileMeta> {
    (file_name(), 10u32..=19, 0u64..40_000, sha1()).prop_flat_map(|(name, shift, size, fh)| {
        let piece_len = 1u32 << shift;
        let n = FileMeta::pieces_for(size, piece_len) as usize;
        vec(sha1(), n).prop_map(move |piece_hashes| FileMeta {
            name: name.clone(),
            size,
            piece_len,
            piece_hashes,
            file_hash: fh,
        })
    })
}
pub fn ticket() -> impl Strategy<Value = Ticket> {
    (
        user(),
        group(),
        file_name(),
        sha1(),
        user(),
        (any::<[u8; 32]>(), any::<[u8; 32]>()),
        any::<u64>(),
        any::<[u8; 32]>(),
    )
        .prop_map(
            |(downloader, group, file, file_hash, seeder, (dk, sk), expires_ms, mac)| Ticket {
                downloader,
                group,
                file,
                file_hash,
                seeder,
                downloader_key: KeyId(dk),
                seeder_key: KeyId(sk),
                expires_ms,
                mac: Mac(mac),
            },
        )
}
pub fn peer_info() -> impl Strategy<Value = PeerInfo> {
    (user(), addr(), piece_set(), ticket()).prop_map(|(user, addr, pieces, ticket)| PeerInfo {
        user,
        addr,
        pieces,
        ticket,
    })
}

pub fn request() -> impl Strategy<Value = Request> {
    use Request::*;
    prop_oneof![
        (user(), password()).prop_map(|(user, password)| CreateUser { user, password }),
        (user(), password()).prop_map(|(user, password)| Login { user, password }),
        Just(Resume),
        Just(Logout),
        group().prop_map(|group| CreateGroup { group }),
        group().prop_map(|group| JoinGroup { group }),
        group().prop_map(|group| LeaveGroup { group }),
        Just(ListGroups),
        group().prop_map(|group| ListRequests { group }),
        (group(), user()).prop_map(|(group, user)| AcceptRequest { group, user }),
        (group(), user()).prop_map(|(group, user)| RejectRequest { group, user }),
        (group(), file_meta()).prop_map(|(group, meta)| UploadFile { group, meta }),
        group().prop_map(|group| ListFiles { group }),
        (group(), file_name()).prop_map(|(group, file)| GetFile { group, file }),
        (group(), file_name()).prop_map(|(group, file)| GetPeers { group, file }),
        (group(), file_name()).prop_map(|(group, file)| StopShare { group, file }),
        (group(), file_name(), piece_set()).prop_map(|(group, file, pieces)| HavePieces {
            group,
            file,
            pieces
        }),
        addr().prop_map(|addr| RegisterSeeder { addr }),
        Just(Ping),
        Just(Status),
        group().prop_map(|group| ListMembers { group }),
    ]
}

pub fn client_request() -> impl Strategy<Value = ClientRequest> {
    (
        any::<[u8; 16]>(),
        any::<u64>(),
        option::of(any::<[u8; 16]>()),
        request(),
    )
        .prop_map(|(c, id, s, req)| ClientRequest {
            client: ClientId(c),
            id: RequestId(id),
            session: s.map(SessionToken),
            req,
        })
}

pub fn tracker_status() -> impl Strategy<Value = TrackerStatus> {
    (
        any::<u16>(),
        any::<u64>(),
        option::of(any::<u16>()),
        log_pos(),
        any::<u64>(),
        sha1(),
        any::<bool>(),
    )
        .prop_map(
            |(id, epoch, p, last, applied, digest, in_sync)| TrackerStatus {
                id: TrackerId(id),
                epoch,
                primary: p.map(TrackerId),
                last,
                applied,
                digest,
                in_sync,
            },
        )
}

pub fn reply() -> impl Strategy<Value = Reply> {
    use Reply::*;
    let gs = (group(), user(), any::<u32>(), any::<bool>(), any::<bool>()).prop_map(
        |(name, owner, members, member, pending)| GroupSummary {
            name,
            owner,
            members,
            member,
            pending,
        },
    );
    let fs = (
        file_name(),
        any::<u64>(),
        sha1(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(name, size, file_hash, seeders, partial)| FileSummary {
            name,
            size,
            file_hash,
            seeders,
            partial,
        });
    prop_oneof![
        Just(Done),
        (user(), any::<[u8; 16]>(), any::<[u8; 32]>()).prop_map(|(user, t, k)| LoggedIn {
            user,
            token: SessionToken(t),
            seeder_key: SeederKey(k)
        }),
        user().prop_map(|user| Resumed { user }),
        vec(gs, 0..5).prop_map(Groups),
        vec(user(), 0..5).prop_map(Requests),
        vec(fs, 0..5).prop_map(Files),
        file_meta().prop_map(File),
        vec(peer_info(), 0..4).prop_map(Peers),
        Just(Pong),
        tracker_status().prop_map(Status),
        (option::of(user()), any::<bool>())
            .prop_map(|(new_owner, deleted)| Left { new_owner, deleted }),
        any::<bool>().prop_map(|new_file| Shared { new_file }),
        addr().prop_map(|addr| SeederAt { addr }),
        vec(user(), 0..5).prop_map(Members),
    ]
}

pub fn tracker_error() -> impl Strategy<Value = TrackerError> {
    use TrackerError::*;
    prop_oneof![
        user().prop_map(|user| UserExists { user }),
        user().prop_map(|user| UnknownUser { user }),
        Just(WrongUserOrPassword),
        Just(NotLoggedIn),
        user().prop_map(|user| AlreadyLoggedIn { user }),
        Just(SessionUnknown),
        group().prop_map(|group| GroupExists { group }),
        group().prop_map(|group| NoSuchGroup { group }),
        group().prop_map(|group| NotMember { group }),
        group().prop_map(|group| NotOwner { group }),
        group().prop_map(|group| AlreadyMember { group }),
        group().prop_map(|group| AlreadyRequested { group }),
        (group(), user()).prop_map(|(group, user)| NoSuchRequest { group, user }),
        (group(), file_name()).prop_map(|(group, file)| NoSuchFile { group, file }),
        (group(), file_name()).prop_map(|(group, file)| FileConflict { group, file }),
        (group(), file_name()).prop_map(|(group, file)| NotSharing { group, file }),
        (group(), file_name()).prop_map(|(group, file)| NoSeeders { group, file }),
        Just(NotReady),
        text().prop_map(|what| LimitReached { what }),
        text().prop_map(|reason| BadRequest { reason }),
        file_name().prop_map(|file| FileHashMismatch { file }),
        (user(), user()).prop_map(|(user, existing)| UserTooSimilar { user, existing }),
        (group(), group()).prop_map(|(group, existing)| GroupTooSimilar { group, existing }),
        (file_name(), file_name()).prop_map(|(file, existing)| FileTooSimilar { file, existing }),
        Just(SessionKeyMismatch),
        any::<u64>().prop_map(|retry_after_secs| LoginBackoff { retry_after_secs }),
    ]
}

pub fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![reply().prop_map(Ok), tracker_error().prop_map(Err)]
}

pub fn from_tracker() -> impl Strategy<Value = FromTracker> {
    prop_oneof![
        (any::<u64>(), outcome()).prop_map(|(id, outcome)| FromTracker::Response {
            id: RequestId(id),
            outcome
        }),
        text().prop_map(|text| FromTracker::Notice { text }),
        text().prop_map(|reason| FromTracker::Fatal { reason }),
        (group(), file_name(), vec(peer_info(), 0..4))
            .prop_map(|(group, file, peers)| FromTracker::Peers { group, file, peers }),
    ]
}

/// Any op kind, a conflict record (of a plain op) now and then.
pub fn op_kind() -> impl Strategy<Value = OpKind> {
    prop_oneof![
        9 => plain_op_kind(),
        1 => (plain_op(), tracker_error()).prop_map(|(op, reason)| OpKind::RecordConflict {
            op: Box::new(op),
            reason
        }),
    ]
}

fn plain_op() -> impl Strategy<Value = Op> {
    op_with(plain_op_kind())
}

fn plain_op_kind() -> impl Strategy<Value = OpKind> {
    use OpKind::*;
    let tok = || any::<[u8; 16]>().prop_map(SessionToken);
    prop_oneof![
        Just(Noop),
        (user(), "[ -~]{0,100}").prop_map(|(user, hash)| CreateUser {
            user,
            password_hash: PasswordHash(hash)
        }),
        (
            user(),
            tok(),
            any::<[u8; 32]>(),
            any::<[u8; 16]>(),
            any::<[u8; 32]>()
        )
            .prop_map(|(user, token, k, c, key)| Login {
                user,
                token,
                seeder_key: SeederKey(k),
                client: ClientId(c),
                key: KeyId(key),
            }),
        tok().prop_map(|token| Logout { token }),
        tok().prop_map(|token| ExpireSession { token }),
        (tok(), any::<bool>()).prop_map(|(token, online)| SetOnline { token, online }),
        (tok(), addr()).prop_map(|(token, addr)| RegisterSeeder { token, addr }),
        (user(), group()).prop_map(|(owner, group)| CreateGroup { owner, group }),
        (user(), group()).prop_map(|(user, group)| RequestJoin { user, group }),
        (group(), user()).prop_map(|(group, user)| AcceptJoin { group, user }),
        (group(), user()).prop_map(|(group, user)| RejectJoin { group, user }),
        (user(), group()).prop_map(|(user, group)| LeaveGroup { user, group }),
        (user(), group(), file_meta()).prop_map(|(user, group, meta)| ShareFile {
            user,
            group,
            meta
        }),
        (user(), group(), file_name(), piece_set()).prop_map(|(user, group, file, pieces)| {
            HavePieces {
                user,
                group,
                file,
                pieces,
            }
        }),
        (user(), group(), file_name()).prop_map(|(user, group, file)| StopShare {
            user,
            group,
            file
        }),
    ]
}

pub fn op() -> impl Strategy<Value = Op> {
    op_with(op_kind())
}

fn op_with(kind: impl Strategy<Value = OpKind>) -> impl Strategy<Value = Op> {
    (
        any::<u64>(),
        option::of((any::<[u8; 16]>(), any::<[u8; 32]>(), any::<u64>())),
        kind,
    )
        .prop_map(|(at_ms, o, kind)| Op {
            at_ms,
            origin: o.map(|(c, key, id)| Origin {
                client: ClientId(c),
                key: KeyId(key),
                id: RequestId(id),
            }),
            kind,
        })
}

pub fn entry() -> impl Strategy<Value = Entry> {
    (log_pos(), op()).prop_map(|(pos, op)| Entry { pos, op })
}

fn epoch_start() -> impl Strategy<Value = EpochStart> {
    (any::<u64>(), any::<u64>()).prop_map(|(epoch, first_index)| EpochStart { epoch, first_index })
}

pub fn repl_msg() -> impl Strategy<Value = ReplMsg> {
    use ReplMsg::*;
    prop_oneof![
        (
            any::<u16>(),
            any::<u64>(),
            option::of(any::<u16>()),
            log_pos(),
            vec(epoch_start(), 0..4)
        )
            .prop_map(|(id, epoch, p, last, epoch_starts)| Join {
                id: TrackerId(id),
                epoch,
                primary: p.map(TrackerId),
                last,
                epoch_starts
            }),
        (any::<u64>(), any::<u16>(), log_pos(), any::<u64>()).prop_map(
            |(epoch, p, last, confirmed)| Heartbeat {
                epoch,
                primary: TrackerId(p),
                last,
                confirmed
            }
        ),
        (any::<u64>(), log_pos(), vec(entry(), 0..4), any::<u64>()).prop_map(
            |(epoch, prev, entries, confirmed)| Append {
                epoch,
                prev,
                entries,
                confirmed
            }
        ),
        (any::<u64>(), log_pos()).prop_map(|(epoch, last)| Ack { epoch, last }),
        (any::<u64>(), log_pos(), vec(epoch_start(), 0..4)).prop_map(
            |(epoch, last, epoch_starts)| Mismatch {
                epoch,
                last,
                epoch_starts
            }
        ),
        (
            any::<u64>(),
            log_pos(),
            any::<u64>(),
            any::<u64>(),
            vec(any::<u8>(), 0..100)
        )
            .prop_map(|(epoch, at, offset, total, data)| SnapshotChunk {
                epoch,
                at,
                offset,
                total,
                data: Bytes::from(data)
            }),
        (any::<u64>(), any::<[u8; 32]>(), client_request()).prop_map(|(fwd, key, req)| Forward {
            fwd,
            key: KeyId(key),
            req
        }),
        (any::<u64>(), any::<u64>(), outcome()).prop_map(|(fwd, index, outcome)| ForwardReply {
            fwd,
            index,
            outcome
        }),
        (any::<u64>(), op()).prop_map(|(fwd, op)| Resubmit { fwd, op }),
        any::<u64>().prop_map(|epoch| Alive { epoch }),
        text().prop_map(|reason| Fatal { reason }),
        (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(epoch, fork, snapshot)| CatchUp {
            epoch,
            fork,
            snapshot
        }),
    ]
}

pub fn reject_reason() -> impl Strategy<Value = RejectReason> {
    use RejectReason::*;
    prop_oneof![
        Just(NoTicket),
        Just(BadTicket),
        Just(Expired),
        Just(WrongParty),
        Just(UnknownFile),
        any::<u32>().prop_map(|index| NoSuchPiece { index }),
        Just(Busy),
        Just(WrongKey),
    ]
}

pub fn peer_msg() -> impl Strategy<Value = PeerMsg> {
    use PeerMsg::*;
    prop_oneof![
        ticket().prop_map(|ticket| Open { ticket }),
        piece_set().prop_map(|pieces| Have { pieces }),
        any::<u32>().prop_map(|index| HavePiece { index }),
        any::<u32>().prop_map(|index| Request { index }),
        any::<u32>().prop_map(|index| Cancel { index }),
        (any::<u32>(), vec(any::<u8>(), 0..2000)).prop_map(|(index, d)| Piece {
            index,
            data: Bytes::from(d)
        }),
        (option::of(any::<u32>()), reject_reason())
            .prop_map(|(index, reason)| Reject { index, reason }),
        text().prop_map(|reason| Fatal { reason }),
    ]
}
