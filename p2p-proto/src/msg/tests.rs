//! Round trips, canonical encodings, limits and hostile input for every
//! message enum.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use crate::codec::{DecodeError, Wire};
use crate::frame::FrameDecoder;
use crate::limits::*;
use crate::strategies as s;
use crate::*;

fn round_trip<M: Wire + PartialEq + std::fmt::Debug>(m: &M) -> Result<(), TestCaseError> {
    let b = m.to_bytes();
    let back = M::from_bytes(b.clone()).map_err(|e| TestCaseError::fail(format!("{e}: {m:?}")))?;
    prop_assert_eq!(&back, m);
    prop_assert_eq!(back.to_bytes(), b.clone());
    // Every strict prefix is refused (never mistaken for a whole message).
    for cut in [0, b.len() / 2, b.len().saturating_sub(1)] {
        if cut < b.len() {
            prop_assert!(M::from_bytes(b.slice(..cut)).is_err());
        }
    }
    // A byte too many is refused.
    let mut longer = BytesMut::from(&b[..]);
    longer.put_u8(0);
    prop_assert!(M::from_bytes(longer.freeze()).is_err());
    Ok(())
}

fn no_panic_and_canonical<M: Wire + PartialEq + std::fmt::Debug>(
    data: &[u8],
) -> Result<(), TestCaseError> {
    if let Ok(m) = M::from_bytes(Bytes::copy_from_slice(data)) {
        prop_assert_eq!(&m.to_bytes()[..], data);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn client_request_round_trips(m in s::client_request()) { round_trip(&m)?; }
    #[test]
    fn from_tracker_round_trips(m in s::from_tracker()) { round_trip(&m)?; }
    #[test]
    fn repl_msg_round_trips(m in s::repl_msg()) { round_trip(&m)?; }
    #[test]
    fn peer_msg_round_trips(m in s::peer_msg()) { round_trip(&m)?; }
    #[test]
    fn op_round_trips(m in s::op()) { round_trip(&m)?; }

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        no_panic_and_canonical::<ClientRequest>(&data)?;
        no_panic_and_canonical::<FromTracker>(&data)?;
        no_panic_and_canonical::<ReplMsg>(&data)?;
        no_panic_and_canonical::<PeerMsg>(&data)?;
        no_panic_and_canonical::<Hello>(&data)?;
    }

    /// Mutating one byte of a valid message never panics and anything that
    /// still decodes is canonical.
    #[test]
    fn mutated_messages_never_panic(m in s::client_request(), at in any::<usize>(), x in any::<u8>()) {
        let mut b = m.to_bytes().to_vec();
        let i = at % b.len();
        b[i] ^= x;
        no_panic_and_canonical::<ClientRequest>(&b)?;
    }

    #[test]
    fn mutated_repl_messages_never_panic(m in s::repl_msg(), at in any::<usize>(), x in any::<u8>()) {
        let mut b = m.to_bytes().to_vec();
        let i = at % b.len();
        b[i] ^= x;
        no_panic_and_canonical::<ReplMsg>(&b)?;
    }

    /// A stream of framed messages cut at random points decodes to the same
    /// messages as the whole stream.
    #[test]
    fn chunked_feeding_equals_whole_feeding(
        msgs in proptest::collection::vec(s::peer_msg(), 1..8),
        step in 1usize..97,
    ) {
        let mut stream = BytesMut::new();
        for m in &msgs {
            encode_msg(m, &mut stream);
        }
        let mut dec = FrameDecoder::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for chunk in stream.chunks(step) {
            buf.extend_from_slice(chunk);
            while let Some(f) = dec.decode(&mut buf).unwrap() {
                got.push(PeerMsg::from_bytes(f).unwrap());
            }
        }
        prop_assert_eq!(got, msgs);
    }
}

#[test]
fn unknown_tags_are_typed_errors() {
    let b = Bytes::from_static(&[200]);
    assert!(matches!(
        PeerMsg::from_bytes(b.clone()),
        Err(DecodeError::UnknownTag { tag: 200, .. })
    ));
    assert!(matches!(
        ReplMsg::from_bytes(b.clone()),
        Err(DecodeError::UnknownTag { tag: 200, .. })
    ));
    assert!(matches!(
        FromTracker::from_bytes(b.clone()),
        Err(DecodeError::UnknownTag { tag: 200, .. })
    ));
    let mut w = BytesMut::new();
    w.put_slice(&[0; 16]);
    w.put_u64(1);
    w.put_u8(0);
    w.put_u8(99);
    assert!(matches!(
        ClientRequest::from_bytes(w.freeze()),
        Err(DecodeError::UnknownTag {
            what: "request",
            tag: 99
        })
    ));
}

#[test]
fn piece_data_over_the_limit_is_refused() {
    let mut w = BytesMut::new();
    w.put_u8(6);
    w.put_u32(0);
    w.put_u32(PIECE_LEN_MAX + 1);
    assert!(matches!(
        PeerMsg::from_bytes(w.freeze()),
        Err(DecodeError::TooLong {
            field: "piece data",
            ..
        })
    ));
}

#[test]
fn a_whole_piece_fits_one_frame() {
    let m = PeerMsg::Piece {
        index: 7,
        data: Bytes::from(vec![1u8; PIECE_LEN as usize]),
    };
    let mut out = BytesMut::new();
    encode_msg(&m, &mut out);
    let f = FrameDecoder::default().decode(&mut out).unwrap().unwrap();
    assert_eq!(PeerMsg::from_bytes(f).unwrap(), m);
}

/// A piece frame's head (from `piece_frame_head`) followed by its data is
/// the very frame the encoder writes for that message, and decodes back
/// to it.
#[test]
fn a_piece_frame_head_and_its_data_decode_as_the_encoded_message() {
    for (index, len) in [(0u32, 1usize), (9, 3), (u32::MAX, PIECE_LEN as usize)] {
        let data = Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        let m = PeerMsg::Piece {
            index,
            data: data.clone(),
        };
        let mut want = BytesMut::new();
        encode_msg(&m, &mut want);
        let mut got = BytesMut::from(&PeerMsg::piece_frame_head(index, len as u32)[..]);
        got.extend_from_slice(&data);
        assert_eq!(got, want, "piece {index} of {len} bytes");
        let f = FrameDecoder::default().decode(&mut got).unwrap().unwrap();
        assert_eq!(PeerMsg::from_bytes(f.clone()).unwrap(), m);
        assert_eq!(PeerMsg::split_piece(&f), Some((index, data)));
    }
}

/// The first byte of every peer message and reject reason, and a piece
/// frame's head: the wire format, pinned (encoder and decoder share one
/// tag table, so only a test can notice a change to it).
#[test]
fn peer_message_tags_are_pinned() {
    let t = ticket_for_tags();
    let msgs = [
        (PeerMsg::Open { ticket: t }, 1u8),
        (
            PeerMsg::Have {
                pieces: PieceSet::empty(3),
            },
            2,
        ),
        (PeerMsg::HavePiece { index: 1 }, 3),
        (PeerMsg::Request { index: 1 }, 4),
        (PeerMsg::Cancel { index: 1 }, 5),
        (
            PeerMsg::Piece {
                index: 1,
                data: Bytes::from_static(b"x"),
            },
            6,
        ),
        (
            PeerMsg::Reject {
                index: None,
                reason: RejectReason::Busy,
            },
            7,
        ),
        (
            PeerMsg::Fatal {
                reason: Text::new("x"),
            },
            8,
        ),
    ];
    for (m, tag) in msgs {
        assert_eq!(m.to_bytes()[0], tag, "{m:?}");
    }
    use RejectReason::*;
    let reasons = [
        (NoTicket, 1u8),
        (BadTicket, 2),
        (Expired, 3),
        (WrongParty, 4),
        (UnknownFile, 5),
        (NoSuchPiece { index: 9 }, 6),
        (Busy, 7),
        (WrongKey, 8),
    ];
    for (r, tag) in reasons {
        assert_eq!(r.to_bytes()[0], tag, "{r:?}");
    }
    let head = PeerMsg::piece_frame_head(0x0102_0304, 5);
    assert_eq!(head, [0, 0, 0, 14, 6, 1, 2, 3, 4, 0, 0, 0, 5]);
}

fn ticket_for_tags() -> Ticket {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    s::ticket().new_tree(&mut runner).unwrap().current()
}

#[test]
fn too_many_entries_are_refused_before_allocating() {
    let mut w = BytesMut::new();
    w.put_u8(3); // Append
    w.put_u64(1);
    w.put_slice(&[0; 16]);
    w.put_u32(APPEND_ENTRIES_MAX as u32 + 1);
    assert!(matches!(
        ReplMsg::from_bytes(w.freeze()),
        Err(DecodeError::TooLong {
            field: "entries",
            ..
        })
    ));
}

#[test]
fn a_huge_list_count_is_refused() {
    // Reply::Groups with a count of u32::MAX.
    let mut w = BytesMut::new();
    w.put_u8(1);
    w.put_u64(1);
    w.put_u8(0);
    w.put_u8(4);
    w.put_u32(u32::MAX);
    assert!(matches!(
        FromTracker::from_bytes(w.freeze()),
        Err(DecodeError::TooLong { .. })
    ));
}

/// A `list_members` reply holds every member of the largest group, each
/// with the longest name, in one frame; one more member is refused
/// before anything is allocated.
#[test]
fn a_full_member_list_fits_and_one_more_is_refused() {
    let reply = |n: usize| {
        let name = |i: usize| UserName::new(format!("{i:0>width$}", width = NAME_LEN_MAX)).unwrap();
        FromTracker::Response {
            id: RequestId(1),
            outcome: Ok(Reply::Members((0..n).map(name).collect())),
        }
        .to_bytes()
    };
    let full = reply(MEMBERS_PER_REPLY_MAX);
    assert!(full.len() <= FRAME_LEN_MAX as usize);
    let back = FromTracker::from_bytes(full.clone()).unwrap();
    assert_eq!(back.to_bytes(), full);
    assert!(matches!(
        FromTracker::from_bytes(reply(MEMBERS_PER_REPLY_MAX + 1)),
        Err(DecodeError::TooLong {
            field: "members",
            ..
        })
    ));
}

#[test]
fn too_many_piece_hashes_are_refused() {
    let mut w = BytesMut::new();
    FileName::new("f").unwrap().encode(&mut w);
    w.put_u64(u64::MAX);
    w.put_u32(PIECE_LEN);
    w.put_u32(FILE_PIECES_MAX + 1);
    assert!(matches!(
        FileMeta::from_bytes(w.freeze()),
        Err(DecodeError::TooLong {
            field: "piece hashes",
            ..
        })
    ));
}

#[test]
fn over_long_strings_are_refused() {
    // A text field longer than TEXT_LEN_MAX.
    let mut w = BytesMut::new();
    w.put_u8(3); // FromTracker::Fatal
    w.put_u16(TEXT_LEN_MAX as u16 + 1);
    w.put_slice(&vec![b'a'; TEXT_LEN_MAX + 1]);
    assert!(matches!(
        FromTracker::from_bytes(w.freeze()),
        Err(DecodeError::TooLong { .. })
    ));
    // Text::new truncates at a character boundary instead.
    let t = Text::new("é".repeat(TEXT_LEN_MAX));
    assert!(t.as_str().len() <= TEXT_LEN_MAX);
}

#[test]
fn path_tricks_in_names_are_refused_on_the_wire() {
    let mut w = BytesMut::new();
    w.put_u8(1); // Open
    // downloader name "../x"
    w.put_u16(4);
    w.put_slice(b"../x");
    assert!(matches!(
        PeerMsg::from_bytes(w.freeze()),
        Err(DecodeError::BadName(_))
    ));
}

#[test]
fn every_frame_fits_the_default_limit() {
    // The largest metadata (max pieces) still fits one frame.
    let meta = FileMeta {
        name: FileName::new("x".repeat(NAME_LEN_MAX)).unwrap(),
        size: FILE_LEN_MAX,
        piece_len: PIECE_LEN,
        piece_hashes: vec![Sha1Hash::default(); FILE_PIECES_MAX as usize],
        file_hash: Sha1Hash::default(),
    };
    let req = ClientRequest {
        client: ClientId::default(),
        id: RequestId(1),
        session: Some(SessionToken::default()),
        req: Request::UploadFile {
            group: GroupName::new("g".repeat(NAME_LEN_MAX)).unwrap(),
            meta,
        },
    };
    assert!(req.to_bytes().len() <= FRAME_LEN_MAX as usize);
}

#[test]
fn tracker_errors_read_as_advice() {
    let e = TrackerError::NotMember {
        group: GroupName::new("g1").unwrap(),
    };
    assert_eq!(
        e.to_string(),
        "not a member of group g1 (ask the owner to accept your join request)"
    );
}

#[test]
fn a_conflict_record_inside_a_conflict_record_is_refused() {
    use crate::{Op, OpKind, TrackerError, Wire};
    let plain = Op {
        at_ms: 1,
        origin: None,
        kind: OpKind::Noop,
    };
    let once = OpKind::RecordConflict {
        op: Box::new(plain),
        reason: TrackerError::NotReady,
    };
    assert_eq!(OpKind::from_bytes(once.to_bytes()).unwrap(), once);
    let twice = OpKind::RecordConflict {
        op: Box::new(Op {
            at_ms: 2,
            origin: None,
            kind: once,
        }),
        reason: TrackerError::NotReady,
    };
    assert!(matches!(
        OpKind::from_bytes(twice.to_bytes()),
        Err(crate::DecodeError::Invalid { .. })
    ));
    // Deep nesting is refused at the second level, never recursed into.
    let mut deep = bytes::BytesMut::new();
    for _ in 0..100_000 {
        bytes::BufMut::put_u8(&mut deep, 16);
        bytes::BufMut::put_u64(&mut deep, 0);
        bytes::BufMut::put_u8(&mut deep, 0);
    }
    assert!(OpKind::from_bytes(deep.freeze()).is_err());
}
