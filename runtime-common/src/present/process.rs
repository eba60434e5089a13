//! What the client and tracker processes print of their own, outside any
//! command's answer: the key fingerprint, the client's start lines, its
//! hints and password prompts, and `serve`'s lines.

use std::net::SocketAddr;

use p2p_proto::{KeyId, UserName};

use super::units::bytes;

/// The process's key fingerprint, printed at start.
pub fn fingerprint(key: &KeyId) -> String {
    format!("fingerprint: {key}")
}

/// The interactive client's greeting.
pub fn client_banner(seeder: SocketAddr) -> String {
    format!("p2p-share client; seeder listening on {seeder}; type help for commands")
}

/// Where the dashboard is (its URL carries the token).
pub fn web_dashboard(url: &str) -> String {
    format!("web dashboard: {url}")
}

/// The dashboard was asked to listen beyond loopback.
pub fn web_beyond_host(addr: SocketAddr) -> String {
    format!(
        "warning: the web dashboard listens on {addr}, beyond this host: anyone who can reach it \
         and learns the token controls this client (plain HTTP)"
    )
}

/// Ctrl-C at the prompt.
pub const INTERRUPTED: &str = "(type exit to leave)";

/// The prompt for a password typed without echo.
pub fn password_prompt(user: &UserName) -> String {
    format!("password for {user}: ")
}

/// `create_user` asks for the new password twice.
pub const PASSWORD_AGAIN: &str = "the same password again: ";

/// The two passwords of `create_user` differ.
pub const PASSWORDS_DIFFER: &str =
    "the two passwords differ; nothing was sent (run create_user again)";

/// `serve` started.
pub const SERVING: &str = "serving until interrupted";

/// What this client's seeder served.
pub fn served(pieces: u64, bytes_served: u64) -> String {
    format!("served {pieces} pieces ({})", bytes(bytes_served))
}

/// The template of the bar `upload_file` shows while it hashes a large
/// file (indicatif's syntax).
pub const HASH_BAR_TEMPLATE: &str = "hashing {bar:40} {bytes}/{total_bytes} {bytes_per_sec}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_lines() {
        let a: SocketAddr = "10.0.0.1:7000".parse().unwrap();
        assert_eq!(
            client_banner(a),
            "p2p-share client; seeder listening on 10.0.0.1:7000; type help for commands"
        );
        assert_eq!(
            web_beyond_host(a),
            "warning: the web dashboard listens on 10.0.0.1:7000, beyond this host: anyone who \
             can reach it and learns the token controls this client (plain HTTP)"
        );
        assert_eq!(served(3, 1536), "served 3 pieces (1.5 KiB)");
        let u = UserName::new("al").unwrap();
        assert_eq!(password_prompt(&u), "password for al: ");
    }
}
