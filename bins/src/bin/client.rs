//! `client <tracker ip:port> <tracker_info.txt>`: a user's client.
//! (The runtime arrives with the runtime-std issue; for now it parses its
//! arguments and says so.)

use clap::Parser;

#[derive(Parser)]
#[command(version, about = "A client of the p2p group file-sharing system")]
struct Args {
    /// The tracker to talk to first, ip:port.
    tracker: std::net::SocketAddr,
    /// File listing every tracker, one ip:port a line (for failover).
    tracker_info: std::path::PathBuf,
}

fn main() {
    let args = Args::parse();
    eprintln!(
        "error: client for {} ({}): the client runtime is not built yet (see issue 6)",
        args.tracker,
        args.tracker_info.display()
    );
    std::process::exit(2);
}
