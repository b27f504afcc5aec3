//! Per-room tokens: `hex(HMAC-SHA256(secret, "{scheduler}/{room}"))`. The runtime hands a
//! room its token in the environment; the rooms API accepts a message for a room only with
//! that room's token, so one room cannot speak for another.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The server secret rooms' tokens are derived from. Debug output hides it.
///
/// Holds the HMAC already keyed: keying hashes the secret's inner and outer pads, half of
/// the work of checking a ping's token, so it is done once, not per message.
#[derive(Clone)]
pub struct RoomTokenSecret(HmacSha256);

impl std::fmt::Debug for RoomTokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoomTokenSecret(..)")
    }
}

/// Secrets shorter than this are refused: a token is only as strong as its key.
pub const MIN_SECRET_LEN: usize = 16;

impl RoomTokenSecret {
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Self, String> {
        let secret = secret.into();
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "room token secret must be at least {MIN_SECRET_LEN} bytes, got {}",
                secret.len()
            ));
        }
        // Any key length is valid for HMAC; the length check above is policy.
        let keyed = <HmacSha256 as KeyInit>::new_from_slice(&secret)
            .map_err(|_| "HMAC refused the key".to_string())?;
        Ok(Self(keyed))
    }

    fn mac(&self, scheduler: &str, room_id: &str) -> HmacSha256 {
        let mut mac = self.0.clone();
        mac.update(scheduler.as_bytes());
        mac.update(b"/");
        mac.update(room_id.as_bytes());
        mac
    }

    /// The token of one room.
    pub fn token(&self, scheduler: &str, room_id: &str) -> String {
        hex::encode(self.mac(scheduler, room_id).finalize().into_bytes())
    }

    /// Constant-time check that `token` is this room's token.
    pub fn verify(&self, scheduler: &str, room_id: &str, token: &str) -> bool {
        let mut bytes = [0u8; 32];
        match hex::decode_to_slice(token, &mut bytes) {
            Ok(()) => self.mac(scheduler, room_id).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> RoomTokenSecret {
        RoomTokenSecret::new("0123456789abcdef-test").unwrap()
    }

    #[test]
    fn a_token_opens_only_its_own_room() {
        let s = secret();
        let t = s.token("sched", "room-a");
        assert_eq!(t.len(), 64);
        assert!(s.verify("sched", "room-a", &t));
        assert!(!s.verify("sched", "room-b", &t));
        assert!(!s.verify("other", "room-a", &t));
        assert!(!s.verify("sched", "room-a", "not-hex"));
        assert!(!s.verify("sched", "room-a", ""));
        // The separator keeps "a/b"+"c" apart from "a"+"b/c".
        assert_ne!(s.token("a", "b-c"), s.token("a-b", "c"));
    }

    #[test]
    fn another_secret_gives_other_tokens() {
        let other = RoomTokenSecret::new("fedcba9876543210-other").unwrap();
        assert!(!other.verify("sched", "room-a", &secret().token("sched", "room-a")));
    }

    #[test]
    fn short_secrets_are_refused_and_never_printed() {
        assert!(RoomTokenSecret::new("short").is_err());
        assert_eq!(format!("{:?}", secret()), "RoomTokenSecret(..)");
    }
}
