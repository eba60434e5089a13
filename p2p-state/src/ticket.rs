//! Tickets: the tracker's signed permission for one user to fetch one file
//! from one seeder until an expiry. HMAC-SHA256 under the seeder's key, so
//! the seeder checks a ticket offline, in constant time.

use hmac::{KeyInit, Mac as _};
use p2p_proto::{Mac, SeederKey, Ticket};

use crate::time::Instant;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Why a ticket was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("ticket does not verify under this seeder's key")]
    BadMac,
    #[error("ticket expired")]
    Expired,
}

fn mac_of(key: &SeederKey, t: &Ticket) -> HmacSha256 {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(&key.0).expect("HMAC takes any key length");
    m.update(&t.signed_bytes());
    m
}

/// Fills in `t.mac` under `key`.
pub fn sign(key: &SeederKey, t: &mut Ticket) {
    t.mac = Mac(mac_of(key, t).finalize().into_bytes().into());
}

/// Checks the MAC (constant time) and the expiry against `now` (ms since
/// the Unix epoch, as the drivers keep it).
pub fn verify(key: &SeederKey, t: &Ticket, now: Instant) -> Result<(), TicketError> {
    mac_of(key, t)
        .verify_slice(&t.mac.0)
        .map_err(|_| TicketError::BadMac)?;
    if now.as_millis() > t.expires_ms {
        return Err(TicketError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_proto::{FileName, GroupName, KeyId, Sha1Hash, UserName};

    fn ticket() -> Ticket {
        Ticket {
            downloader: UserName::new("bob").unwrap(),
            group: GroupName::new("g1").unwrap(),
            file: FileName::new("a.bin").unwrap(),
            file_hash: Sha1Hash([7; 20]),
            seeder: UserName::new("alice").unwrap(),
            downloader_key: KeyId([0x44; 32]),
            seeder_key: KeyId([0x53; 32]),
            expires_ms: 10_000,
            mac: Mac::default(),
        }
    }

    #[test]
    fn signed_ticket_verifies_until_expiry() {
        let key = SeederKey([1; 32]);
        let mut t = ticket();
        sign(&key, &mut t);
        assert_eq!(verify(&key, &t, Instant(10_000)), Ok(()));
        assert_eq!(verify(&key, &t, Instant(10_001)), Err(TicketError::Expired));
    }

    #[test]
    fn forged_or_altered_tickets_fail() {
        let key = SeederKey([1; 32]);
        let mut t = ticket();
        sign(&key, &mut t);
        assert_eq!(
            verify(&SeederKey([2; 32]), &t, Instant(0)),
            Err(TicketError::BadMac)
        );
        let mut other_file = t.clone();
        other_file.file = FileName::new("b.bin").unwrap();
        assert_eq!(
            verify(&key, &other_file, Instant(0)),
            Err(TicketError::BadMac)
        );
        let mut later = t.clone();
        later.expires_ms += 1;
        assert_eq!(verify(&key, &later, Instant(0)), Err(TicketError::BadMac));
        let mut unsigned = ticket();
        unsigned.mac = Mac::default();
        assert_eq!(
            verify(&key, &unsigned, Instant(0)),
            Err(TicketError::BadMac)
        );
    }
}
