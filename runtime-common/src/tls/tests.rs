//! Identities on disk, and a handshake plus traffic between two
//! identities in memory (the runtimes test the same over loopback).

use super::*;
use crate::conn::{Batch, ConnEvent, Deframer, WriterMsg, collect_batch};
use bytes::{Bytes, BytesMut};
use p2p_proto::FrameDecoder;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_new_identity_is_private_and_the_same_on_reload() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("node-data");
    let a = Identity::load_or_create(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700, "a new directory is 0700");
    assert_eq!(mode(&dir.join(IDENTITY_FILE)), 0o600);
    let b = Identity::load_or_create(&dir).unwrap();
    assert_eq!(a.key_id(), b.key_id(), "the same key after a restart");
    let other = Identity::load_or_create(&base.path().join("other")).unwrap();
    assert_ne!(a.key_id(), other.key_id(), "each node its own key");
    assert_eq!(a.key_id().to_string().len(), 64);
    let shown = format!("{a:?}");
    assert!(shown.contains(&a.key_id().to_string()) && shown.len() < 200);
}

#[test]
fn a_key_others_can_read_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    Identity::load_or_create(dir.path()).unwrap();
    let path = dir.path().join(IDENTITY_FILE);
    for m in [0o640, 0o604, 0o644, 0o660] {
        fs::set_permissions(&path, fs::Permissions::from_mode(m)).unwrap();
        let e = Identity::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(e, IdentityError::TooOpen { .. }), "{e}");
        assert!(
            e.to_string()
                .contains(&format!("chmod 600 {}", path.display())),
            "{e}"
        );
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
    Identity::load_or_create(dir.path()).expect("owner-only modes are fine");
}

#[test]
fn a_symlinked_or_broken_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("elsewhere.key");
    fs::write(&real, b"x").unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&real, dir.path().join(IDENTITY_FILE)).unwrap();
    let e = Identity::load_or_create(dir.path()).unwrap_err();
    assert!(matches!(e, IdentityError::NotAFile { .. }), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(IDENTITY_FILE);
    fs::write(&path, b"not a key").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let e = Identity::load_or_create(dir.path()).unwrap_err();
    assert!(matches!(e, IdentityError::BadKey { .. }), "{e}");
}

/// Moves bytes between two handshakes until both are done (also used
/// by `conn`'s tests).
pub(crate) fn handshake(client: &Tls, server: &Tls) -> (Arc<Session>, Arc<Session>) {
    let mut c = client.connect("127.0.0.1:1".parse().unwrap());
    let mut s = server.accept();
    for _ in 0..20 {
        let mut out = Vec::new();
        c.output(&mut out);
        s.input(&out).unwrap();
        out.clear();
        s.output(&mut out);
        c.input(&out).unwrap();
        if c.is_done() && s.is_done() {
            return (c.finish().unwrap(), s.finish().unwrap());
        }
    }
    panic!("the handshake did not finish in 20 rounds");
}

fn frame(payload: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    p2p_proto::encode_frame(payload, &mut b);
    b.freeze()
}

/// Seals everything in `batch` from `from`, and receives it at `to`.
fn carry(from: &Session, batch: &mut Batch, to: &Session, frames: &mut Deframer) -> Vec<ConnEvent> {
    let mut events = Vec::new();
    let early = to.take_early();
    to.receive(&early, frames, &mut events).unwrap();
    while !batch.is_empty() {
        let mut out = Vec::new();
        from.seal(batch, &mut out).unwrap();
        assert!(out.len() < TLS_WRITE_CHUNK_LEN + 64 * 1024, "bounded");
        // The socket splits it anywhere.
        for chunk in out.chunks(10_007) {
            let r = to.receive(chunk, frames, &mut events).unwrap();
            assert!(!r.stop);
        }
    }
    events
}

#[test]
fn two_identities_learn_each_others_key_and_frames_cross_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let a = Identity::load_or_create(&dir.path().join("a")).unwrap();
    let b = Identity::load_or_create(&dir.path().join("b")).unwrap();
    let (ca, sb) = handshake(&a.tls(), &b.tls());
    assert_eq!(ca.peer(), b.key_id(), "the client sees the server's key");
    assert_eq!(sb.peer(), a.key_id(), "the server sees the client's key");

    // Client to server: small frames and a 512 KiB piece from a file.
    let piece: Vec<u8> = (0..512 * 1024u32).map(|i| (i % 251) as u8).collect();
    let path = dir.path().join("share");
    fs::write(&path, [&b"xx"[..], &piece].concat()).unwrap();
    let range = crate::conn::FileRange {
        file: Arc::new(File::open(&path).unwrap()),
        offset: 2,
        len: piece.len(),
    };
    let head = Bytes::copy_from_slice(&p2p_proto::frame::frame_header(piece.len()));
    let mut q = vec![
        WriterMsg::Frame(head),
        WriterMsg::File(range),
        WriterMsg::Frame(frame(b"after")),
    ]
    .into_iter();
    let mut batch = Batch::default();
    collect_batch(WriterMsg::Frame(frame(b"hello")), || q.next(), &mut batch);
    batch.load_files().unwrap();
    let mut frames = Deframer::new(FrameDecoder::default());
    let got = carry(&ca, &mut batch, &sb, &mut frames);
    let want: Vec<ConnEvent> = [&b"hello"[..], &piece, b"after"]
        .iter()
        .map(|p| ConnEvent::Frame(Bytes::copy_from_slice(p)))
        .collect();
    assert!(got == want, "frames arrive whole and in order");

    // And back.
    let mut batch = Batch::default();
    let mut q = std::iter::empty();
    collect_batch(WriterMsg::Frame(frame(b"reply")), || q.next(), &mut batch);
    let mut frames = Deframer::new(FrameDecoder::default());
    let got = carry(&sb, &mut batch, &ca, &mut frames);
    assert_eq!(got, vec![ConnEvent::Frame(Bytes::from_static(b"reply"))]);

    // close_notify ends the reader's stream.
    let mut out = Vec::new();
    ca.close(&mut out);
    let mut events = Vec::new();
    let mut frames = Deframer::new(FrameDecoder::default());
    let r = sb.receive(&out, &mut frames, &mut events).unwrap();
    assert!(r.stop && events.is_empty());
}

#[test]
fn tampered_records_are_a_tls_error() {
    let dir = tempfile::tempdir().unwrap();
    let a = Identity::load_or_create(&dir.path().join("a")).unwrap();
    let b = Identity::load_or_create(&dir.path().join("b")).unwrap();
    let (ca, sb) = handshake(&a.tls(), &b.tls());
    let mut batch = Batch::default();
    let mut q = std::iter::empty();
    collect_batch(WriterMsg::Frame(frame(b"secret")), || q.next(), &mut batch);
    let mut out = Vec::new();
    ca.seal(&mut batch, &mut out).unwrap();
    assert!(
        !out.windows(6).any(|w| w == b"secret"),
        "no plaintext on the wire"
    );
    let last = out.len() - 1;
    out[last] ^= 1;
    let mut events = Vec::new();
    let mut frames = Deframer::new(FrameDecoder::default());
    assert!(sb.receive(&out, &mut frames, &mut events).is_err());
    assert!(events.is_empty());
}

#[test]
fn a_plaintext_peer_fails_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let a = Identity::load_or_create(dir.path()).unwrap();
    let mut s = a.tls().accept();
    // A pre-TLS client's first frame (a hello) is not a TLS record.
    assert!(s.input(&frame(b"\x01hello")).is_err());
}

/// Issue 16 §3: one address holds at most [`TLS_HANDSHAKES_PER_ADDR_MAX`]
/// handshake slots; one more from it is refused while another address
/// still gets one, and a slot frees when its handshake ends.
#[test]
fn one_address_holds_at_most_its_share_of_handshakes() {
    let slots = HandshakeSlots::default();
    let a: std::net::SocketAddr = "10.0.0.1:4000".parse().unwrap();
    let b: std::net::SocketAddr = "10.0.0.2:4000".parse().unwrap();
    let mut held: Vec<HandshakeSlot> = (0..TLS_HANDSHAKES_PER_ADDR_MAX)
        .map(|_| slots.take(a).expect("within the bound"))
        .collect();
    assert!(slots.take(a).is_none(), "one past the bound");
    let other = slots.take(b).expect("another address");
    assert_eq!(slots.running(), TLS_HANDSHAKES_PER_ADDR_MAX + 1);
    held.pop();
    assert!(slots.take(a).is_some(), "a slot freed");
    drop(other);
}
