//! Where a tracker listens: its `tracker_info.txt` line names the address
//! clients and peer trackers *dial*, which is not always an address of the
//! host (a tracker behind a 1:1 NAT or a load balancer). [`tracker_listen`]
//! picks the socket to bind.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

/// How the tracker's listening address was chosen (for the start-up log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenChoice {
    /// `--listen ADDR`, exactly.
    Explicit,
    /// The address in its `tracker_info.txt` line (an address of this host).
    Line,
    /// Every interface at the line's port: the line's address is not one
    /// of this host's (NAT), so it is reached through another.
    AllInterfaces,
}

/// Binds the tracker's listener.
///
/// - `listen` given (`--listen ADDR`): exactly that address, nothing else.
/// - otherwise the line's address when it is one of this host's, so two
///   trackers on one host with distinct addresses keep working and nothing
///   is exposed on interfaces the operator did not name;
/// - otherwise (the host has no such address: `EADDRNOTAVAIL`, the 1:1 NAT
///   case) every interface of the line's address family at the line's port.
///
/// `bind` is `TcpListener::bind` outside tests.
pub fn tracker_listen(
    line: SocketAddr,
    listen: Option<SocketAddr>,
    bind: impl Fn(SocketAddr) -> io::Result<TcpListener>,
) -> Result<(TcpListener, ListenChoice), String> {
    if let Some(addr) = listen {
        return bind(addr)
            .map(|l| (l, ListenChoice::Explicit))
            .map_err(|e| format!("cannot listen on {addr} (--listen): {e}"));
    }
    match bind(line) {
        Ok(l) => Ok((l, ListenChoice::Line)),
        Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {
            let any = all_interfaces(line);
            bind(any).map(|l| (l, ListenChoice::AllInterfaces)).map_err(|e2| {
                format!(
                    "cannot listen on {line} (not an address of this host: {e}) nor on {any}: {e2}; \
                     choose one with --listen ADDR"
                )
            })
        }
        Err(e) => Err(format!(
            "cannot listen on {line}: {e}; choose another address with --listen ADDR"
        )),
    }
}

/// The unspecified address of `line`'s family, at its port.
pub fn all_interfaces(line: SocketAddr) -> SocketAddr {
    let ip: IpAddr = match line {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    SocketAddr::new(ip, line.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A bind that refuses `refuse` with `kind` and otherwise binds a free
    /// loopback port, recording every address asked for.
    fn fake(
        refuse: SocketAddr,
        kind: io::ErrorKind,
        asked: &RefCell<Vec<SocketAddr>>,
    ) -> impl Fn(SocketAddr) -> io::Result<TcpListener> + '_ {
        move |a| {
            asked.borrow_mut().push(a);
            if a == refuse {
                Err(io::Error::from(kind))
            } else {
                TcpListener::bind("127.0.0.1:0")
            }
        }
    }

    const LINE: &str = "10.77.0.99:9901";

    #[test]
    fn a_line_address_of_another_host_listens_on_all_interfaces_at_its_port() {
        let line: SocketAddr = LINE.parse().unwrap();
        let asked = RefCell::new(vec![]);
        let (_, how) = tracker_listen(
            line,
            None,
            fake(line, io::ErrorKind::AddrNotAvailable, &asked),
        )
        .unwrap();
        assert_eq!(how, ListenChoice::AllInterfaces);
        assert_eq!(*asked.borrow(), vec![line, "0.0.0.0:9901".parse().unwrap()]);
    }

    #[test]
    fn a_local_line_address_is_kept() {
        let line: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let asked = RefCell::new(vec![]);
        let refuse = "192.0.2.1:1".parse().unwrap();
        let (l, how) = tracker_listen(
            line,
            None,
            fake(refuse, io::ErrorKind::AddrNotAvailable, &asked),
        )
        .unwrap();
        assert_eq!(how, ListenChoice::Line);
        assert!(l.local_addr().unwrap().ip().is_loopback());
        assert_eq!(*asked.borrow(), vec![line]);
    }

    #[test]
    fn explicit_listen_wins_and_is_never_widened() {
        let line: SocketAddr = LINE.parse().unwrap();
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let asked = RefCell::new(vec![]);
        let (_, how) = tracker_listen(
            line,
            Some(listen),
            fake(line, io::ErrorKind::AddrNotAvailable, &asked),
        )
        .unwrap();
        assert_eq!(how, ListenChoice::Explicit);
        assert_eq!(*asked.borrow(), vec![listen]);

        let asked = RefCell::new(vec![]);
        let e = tracker_listen(
            line,
            Some(listen),
            fake(listen, io::ErrorKind::AddrNotAvailable, &asked),
        )
        .unwrap_err();
        assert!(e.contains("--listen"), "{e}");
        assert_eq!(*asked.borrow(), vec![listen]);
    }

    #[test]
    fn a_port_in_use_is_an_error_not_a_wider_bind() {
        let line: SocketAddr = "127.0.0.1:9901".parse().unwrap();
        let asked = RefCell::new(vec![]);
        let e =
            tracker_listen(line, None, fake(line, io::ErrorKind::AddrInUse, &asked)).unwrap_err();
        assert!(e.contains("--listen ADDR"), "{e}");
        assert_eq!(*asked.borrow(), vec![line]);
    }

    #[test]
    fn ipv6_lines_widen_to_ipv6_any() {
        assert_eq!(
            all_interfaces("[2001:db8::1]:7".parse().unwrap()),
            "[::]:7".parse().unwrap()
        );
    }
}
