//! `tracker <tracker_info.txt> <n>`: one tracker of the replicated group.
//! (The runtime arrives with the runtime-std issue; for now it parses its
//! arguments and says so.)

use clap::Parser;

#[derive(Parser)]
#[command(version, about = "A tracker of the p2p group file-sharing system")]
struct Args {
    /// File listing every tracker, one ip:port a line.
    tracker_info: std::path::PathBuf,
    /// Which line of tracker_info is this tracker (counted from 1).
    n: u16,
}

fn main() {
    let args = Args::parse();
    eprintln!(
        "error: tracker {} of {}: the tracker runtime is not built yet (see issue 6)",
        args.n,
        args.tracker_info.display()
    );
    std::process::exit(2);
}
