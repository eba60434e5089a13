//! Writes the seed corpus in `fuzz/corpus/<target>/`: valid encodings drawn
//! from p2p-proto's proptest strategies (one of each variant first, then a
//! few more), plus truncated and mutated copies. The RNG seed is fixed, so
//! the output is the same on every run with the same `fuzz/Cargo.lock`.
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --features gen --example gen_corpus
//! ```
//!
//! An optional argument names another output directory. The files directly
//! in each target's directory are replaced; subdirectories are left alone, so
//! inputs kept by hand (fixed crashes) belong in `<target>/regressions/`.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::{fs, io};

use bytes::BytesMut;
use p2p_proto::strategies;
use p2p_proto::{
    ClientRequest, FromTracker, Hello, PROTOCOL_VERSION, PeerMsg, ReplMsg, Role, TrackerId, Wire,
    encode_msg,
};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// Largest frame the `frame` fuzz body accepts (`FrameDecoder::new(4096)`).
const FRAME_BODY_LEN_MAX: usize = 4096;
/// Draws per message target when looking for every variant.
const DRAWS: usize = 3000;
/// Mutated copies per message target.
const MUTANTS: usize = 6;

fn main() -> io::Result<()> {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));

    let mut client = runner(1);
    let msgs = pick(&mut client, strategies::client_request(), 24, |m| {
        variant(&m.req)
    });
    write_messages(&root, "client_msg", &msgs)?;

    let mut tracker = runner(2);
    let msgs = pick(&mut tracker, strategies::from_tracker(), 34, |m| match m {
        FromTracker::Response { outcome: Ok(r), .. } => format!("Ok-{}", variant(r)),
        FromTracker::Response {
            outcome: Err(e), ..
        } => format!("Err-{}", variant(e)),
        other => variant(other),
    });
    write_messages(&root, "tracker_msg", &msgs)?;

    let mut repl = runner(3);
    let msgs = pick(&mut repl, strategies::repl_msg(), 30, |m| match m {
        ReplMsg::Resubmit { op, .. } => format!("Resubmit-{}", variant(&op.kind)),
        other => variant(other),
    });
    write_messages(&root, "repl_msg", &msgs)?;

    let mut peer = runner(4);
    let msgs = pick(&mut peer, strategies::peer_msg(), 20, variant);
    write_messages(&root, "peer_msg", &msgs)?;

    write_hellos(&root)?;
    write_frames(&root, &mut runner(5))?;
    write_tracker_inputs(&root)?;
    write_share_tables(&root)?;
    write_web_requests(&root)?;
    Ok(())
}

/// The `web_request` target: requests the dashboard answers.
fn write_web_requests(root: &Path) -> io::Result<()> {
    let dir = clean_dir(root, "web_request")?;
    let samples = p2p_web::fuzzing::web_request_samples();
    for (i, s) in samples.iter().enumerate() {
        fs::write(dir.join(format!("request-{i}")), s)?;
    }
    println!("web_request: {} files", samples.len());
    Ok(())
}

/// The `share_table` target: a table body with a newline and a tab in a
/// path (the body fuzzing reaches past the checksum), the whole table,
/// and cuts of the body.
fn write_share_tables(root: &Path) -> io::Result<()> {
    let dir = clean_dir(root, "share_table")?;
    let body = p2p_state::fuzzing::share_table_sample();
    let whole = p2p_state::client::shares::seal(&body);
    fs::write(dir.join("table"), &whole)?;
    let mut n = 1;
    for cut in [body.len(), body.len() / 2, 4] {
        fs::write(dir.join(format!("body-{cut}")), &body[..cut])?;
        n += 1;
    }
    println!("share_table: {n} files");
    Ok(())
}

/// The `tracker_input` target: a valid session, and cuts of it.
fn write_tracker_inputs(root: &Path) -> io::Result<()> {
    let dir = clean_dir(root, "tracker_input")?;
    let sample = p2p_state::fuzzing::tracker_input_sample();
    let mut n = 0;
    for cut in [sample.len(), sample.len() / 2, sample.len() / 4, 3] {
        fs::write(dir.join(format!("session-{cut}")), &sample[..cut])?;
        n += 1;
    }
    println!("tracker_input: {n} files");
    Ok(())
}

/// A proptest runner with a fixed seed: the corpus is reproducible.
fn runner(seed: u8) -> TestRunner {
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]);
    TestRunner::new_with_rng(Config::default(), rng)
}

fn draw<S: Strategy>(runner: &mut TestRunner, s: &S) -> S::Value {
    s.new_tree(runner)
        .expect("strategy draws a value")
        .current()
}

/// The variant name of an enum value, from its `Debug` output.
fn variant<T: Debug>(v: &T) -> String {
    let s = format!("{v:?}");
    let end = s
        .find(|c: char| !c.is_alphanumeric() && c != '_')
        .unwrap_or(s.len());
    s[..end].to_string()
}

/// Up to `want` values, named `<kind>`: the first draw of every kind (in the
/// order they first appear), then further draws until `want` is reached.
fn pick<S: Strategy>(
    runner: &mut TestRunner,
    s: S,
    want: usize,
    kind: impl Fn(&S::Value) -> String,
) -> Vec<(String, S::Value)> {
    let mut seen = BTreeSet::new();
    let mut firsts = Vec::new();
    let mut rest = Vec::new();
    for _ in 0..DRAWS {
        let v = draw(runner, &s);
        let k = kind(&v);
        if seen.insert(k.clone()) {
            firsts.push((k, v));
        } else if rest.len() < want {
            rest.push((k, v));
        }
    }
    let fill = want.saturating_sub(firsts.len());
    firsts.extend(rest.into_iter().take(fill));
    firsts
}

/// Writes each message's payload, then `MUTANTS` damaged copies.
fn write_messages<M: Wire>(root: &Path, target: &str, msgs: &[(String, M)]) -> io::Result<()> {
    let dir = clean_dir(root, target)?;
    let encoded: Vec<Vec<u8>> = msgs.iter().map(|(_, m)| m.to_bytes().to_vec()).collect();
    for (i, ((kind, _), bytes)) in msgs.iter().zip(&encoded).enumerate() {
        fs::write(dir.join(format!("{i:02}-{kind}")), bytes)?;
    }
    for i in 0..MUTANTS.min(encoded.len()) {
        // Spread the damaged copies over the list, biggest messages included.
        let at = i * encoded.len() / MUTANTS;
        let (name, bytes) = mutate(i, &encoded[at]);
        fs::write(dir.join(format!("x{i}-{name}-of-{at:02}")), bytes)?;
    }
    println!(
        "{target}: {} valid, {} damaged",
        encoded.len(),
        MUTANTS.min(encoded.len())
    );
    Ok(())
}

/// One of six damages, chosen by `i`.
fn mutate(i: usize, b: &[u8]) -> (&'static str, Vec<u8>) {
    let mut v = b.to_vec();
    match i % 6 {
        0 => {
            v.truncate(v.len() / 2);
            ("half", v)
        }
        1 => {
            v.pop();
            ("short", v)
        }
        2 => {
            v.push(0);
            ("trailing", v)
        }
        3 => {
            v[0] = 0xee;
            ("tag", v)
        }
        4 => {
            let at = v.len() * 2 / 3;
            v[at] ^= 0xff;
            ("flip", v)
        }
        _ => {
            let at = v.len() / 3;
            v.splice(at..at, [0xff, 0xff, 0xff, 0xff]);
            ("insert", v)
        }
    }
}

/// Creates `root/target` and removes the files directly in it (the previous
/// generation). Subdirectories, such as `regressions/`, are kept.
fn clean_dir(root: &Path, target: &str) -> io::Result<PathBuf> {
    let dir = root.join(target);
    fs::create_dir_all(&dir)?;
    for entry in fs::read_dir(&dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(dir)
}

fn hello_bytes(version: u16, role: Role) -> Vec<u8> {
    Hello { version, role }.to_bytes().to_vec()
}

fn write_hellos(root: &Path) -> io::Result<()> {
    let dir = clean_dir(root, "hello")?;
    let v = PROTOCOL_VERSION;
    let mut files = vec![
        ("client", hello_bytes(v, Role::Client)),
        ("peer", hello_bytes(v, Role::Peer)),
        ("server", hello_bytes(v, Role::Server)),
        ("tracker-1", hello_bytes(v, Role::Tracker(TrackerId(1)))),
        ("tracker-2", hello_bytes(v, Role::Tracker(TrackerId(2)))),
        (
            "tracker-max",
            hello_bytes(v, Role::Tracker(TrackerId(u16::MAX))),
        ),
        ("version-next", hello_bytes(v + 1, Role::Client)),
        ("version-0", hello_bytes(0, Role::Peer)),
    ];
    let mut bad_magic = hello_bytes(v, Role::Client);
    bad_magic[..4].copy_from_slice(b"HTTP");
    files.push(("bad-magic", bad_magic));
    let mut role = hello_bytes(v, Role::Client);
    role[6] = 5;
    files.push(("unknown-role", role));
    let mut trailing = hello_bytes(v, Role::Server);
    trailing.push(0);
    files.push(("trailing", trailing));
    let mut short = hello_bytes(v, Role::Tracker(TrackerId(3)));
    short.pop();
    files.push(("tracker-short", short));
    files.push(("magic-only", b"P2PG".to_vec()));
    let n = files.len();
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes)?;
    }
    println!("hello: {n} files");
    Ok(())
}

/// Draws values whose encoding fits one frame of the `frame` fuzz body.
fn small<S: Strategy>(runner: &mut TestRunner, s: &S, n: usize) -> Vec<S::Value>
where
    S::Value: Wire,
{
    let mut out = Vec::new();
    while out.len() < n {
        let v = draw(runner, s);
        if v.to_bytes().len() <= FRAME_BODY_LEN_MAX {
            out.push(v);
        }
    }
    out
}

/// A hello then `msgs`, each as one frame.
fn stream<M: Wire>(role: Role, msgs: &[M]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_msg(&Hello::new(role), &mut out);
    for m in msgs {
        encode_msg(m, &mut out);
    }
    out.to_vec()
}

fn raw_frame(len: u32, body: &[u8]) -> Vec<u8> {
    let mut v = len.to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// Inputs for the `frame` body: one chunk-size byte, then a byte stream.
fn write_frames(root: &Path, runner: &mut TestRunner) -> io::Result<()> {
    let dir = clean_dir(root, "frame")?;
    let client: Vec<ClientRequest> = small(runner, &strategies::client_request(), 4);
    let tracker: Vec<FromTracker> = small(runner, &strategies::from_tracker(), 4);
    let repl: Vec<ReplMsg> = small(runner, &strategies::repl_msg(), 4);
    let peer: Vec<PeerMsg> = small(runner, &strategies::peer_msg(), 4);
    let streams = [
        ("client", stream(Role::Client, &client)),
        ("tracker", stream(Role::Server, &tracker)),
        ("repl", stream(Role::Tracker(TrackerId(2)), &repl)),
        ("peer", stream(Role::Peer, &peer)),
    ];

    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    // Chunk sizes 1, 4, 18, 64 (the body uses `byte % 64 + 1`).
    for ((name, s), step) in streams.iter().zip([0u8, 3, 17, 63]) {
        let mut v = vec![step];
        v.extend_from_slice(s);
        files.push((format!("{name}-step{}", step as usize % 64 + 1), v));
    }
    let whole = &streams[0].1;
    let mut cut = vec![7u8];
    cut.extend_from_slice(&whole[..whole.len() - 3]);
    files.push(("client-truncated".into(), cut));

    let at_max = vec![0xab; FRAME_BODY_LEN_MAX];
    let special: [(&str, u8, Vec<u8>); 9] = [
        ("empty-stream", 5, Vec::new()),
        ("header-only-part", 0, vec![0, 0]),
        ("len-at-limit", 63, raw_frame(4096, &at_max)),
        ("len-over-limit", 63, raw_frame(4097, &at_max)),
        ("len-max-u32", 1, raw_frame(u32::MAX, b"x")),
        ("len-zero", 2, raw_frame(0, b"after")),
        (
            "one-byte-frames",
            0,
            [raw_frame(1, b"a"), raw_frame(1, b"b")].concat(),
        ),
        (
            "frame-then-zero",
            9,
            [raw_frame(3, b"abc"), raw_frame(0, b"")].concat(),
        ),
        (
            "frame-then-partial",
            30,
            [raw_frame(2, b"ok"), raw_frame(9, b"1234")].concat(),
        ),
    ];
    for (name, step, bytes) in special {
        let mut v = vec![step];
        v.extend_from_slice(&bytes);
        files.push((name.into(), v));
    }
    let n = files.len();
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes)?;
    }
    println!("frame: {n} files");
    Ok(())
}
