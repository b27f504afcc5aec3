//! Room tokens as the rooms API checks them: [`RoomTokenSecret::verify`], remembering the
//! tokens it already accepted.
//!
//! A room sends the same token with every ping, and checking it (an HMAC and a hex decode)
//! was ~3 % of the ping path's CPU (docs/benchmarks.md). A room's token never changes while
//! the secret does not, so a token once accepted for a room is that room's token: the next
//! message carrying the same text is accepted after a constant-time comparison with it;
//! anything else gets the full check. The answer is `verify`'s for every input; only
//! accepted tokens are kept, so a stranger sending wrong tokens fills nothing.

use std::hash::{Hash, Hasher};
use std::sync::RwLock;

use maestro_core::RoomTokenSecret;
use subtle::ConstantTimeEq;

/// Rooms whose accepted token is kept, at most. Past it the memory is dropped and refilled
/// (~200 bytes a room: a gateway serving 10 000 rooms keeps ~2 MB).
const REMEMBERED_ROOMS: usize = 100_000;

pub(crate) struct RoomTokens {
    secret: RoomTokenSecret,
    accepted: RwLock<hashbrown::HashMap<RoomKey, String>>,
}

impl RoomTokens {
    pub(crate) fn new(secret: RoomTokenSecret) -> Self {
        Self {
            secret,
            accepted: RwLock::default(),
        }
    }

    /// Whether `token` is the token of `room` of `scheduler`: [`RoomTokenSecret::verify`].
    pub(crate) fn verify(&self, scheduler: &str, room: &str, token: &str) -> bool {
        let probe = RoomProbe { scheduler, room };
        if let Ok(accepted) = self.accepted.read()
            && let Some(known) = accepted.get(&probe)
            && bool::from(known.as_bytes().ct_eq(token.as_bytes()))
        {
            return true;
        }
        // Not the spelling accepted last (another case of the same hex, or a wrong token):
        // the full check decides.
        if !self.secret.verify(scheduler, room, token) {
            return false;
        }
        if let Ok(mut accepted) = self.accepted.write() {
            if accepted.len() >= REMEMBERED_ROOMS {
                accepted.clear();
            }
            accepted.insert(probe.owned(), token.to_string());
        }
        true
    }
}

#[derive(PartialEq, Eq)]
struct RoomKey {
    scheduler: String,
    room: String,
}

impl Hash for RoomKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.scheduler.as_str(), self.room.as_str()).hash(state);
    }
}

/// A [`RoomKey`] borrowed from a request: finding a room's token allocates nothing.
struct RoomProbe<'a> {
    scheduler: &'a str,
    room: &'a str,
}

impl RoomProbe<'_> {
    fn owned(&self) -> RoomKey {
        RoomKey {
            scheduler: self.scheduler.to_string(),
            room: self.room.to_string(),
        }
    }
}

impl Hash for RoomProbe<'_> {
    // As `RoomKey` hashes, so both find the same entry.
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.scheduler, self.room).hash(state);
    }
}

impl hashbrown::Equivalent<RoomKey> for RoomProbe<'_> {
    fn equivalent(&self, key: &RoomKey) -> bool {
        self.scheduler == key.scheduler && self.room == key.room
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> (RoomTokenSecret, RoomTokens) {
        let secret = RoomTokenSecret::new("0123456789abcdef-test").unwrap();
        (secret.clone(), RoomTokens::new(secret))
    }

    #[test]
    fn answers_as_verify_does_before_and_after_a_token_is_remembered() {
        let (secret, tokens) = tokens();
        let good = secret.token("s", "r");
        let other = secret.token("s", "q");
        let cases = [
            ("s", "r", good.as_str()),
            ("s", "r", other.as_str()),
            ("s", "q", good.as_str()),
            ("s", "q", other.as_str()),
            ("s", "r", ""),
            ("s", "r", &good[..63]),
            ("s", "r", "not hex at all"),
            // Uppercase hex decodes to the same MAC: verify accepts it, so must we, also
            // once the lowercase spelling is remembered.
            ("s", "r", &good.to_uppercase()),
            ("s/r", "", good.as_str()),
        ];
        for round in 0..2 {
            for (scheduler, room, token) in cases {
                assert_eq!(
                    tokens.verify(scheduler, room, token),
                    secret.verify(scheduler, room, token),
                    "round {round}: {scheduler}/{room} with {token:?}"
                );
            }
        }
    }

    #[test]
    fn wrong_tokens_are_not_remembered_and_memory_stays_bounded() {
        let (secret, tokens) = tokens();
        for i in 0..50 {
            assert!(!tokens.verify("s", &format!("r{i}"), "00"));
        }
        assert!(tokens.accepted.read().unwrap().is_empty());
        for i in 0..(REMEMBERED_ROOMS + 10) {
            let room = format!("r{i}");
            assert!(tokens.verify("s", &room, &secret.token("s", &room)));
        }
        assert!(tokens.accepted.read().unwrap().len() <= REMEMBERED_ROOMS);
    }
}
