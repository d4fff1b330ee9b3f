//! Keyed hashes (HMAC-SHA256): references that mean nothing outside the system. An
//! object key of a vendor file carries a legacy patient key; a hash of it without a
//! key could be reversed by trying every patient key, so lake file names, staging and
//! report prefixes and log fields use a keyed hash instead. The key lives in the stack's
//! secret store.

use hmac::{KeyInit, Mac};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The key of the stack's keyed references.
#[derive(Clone)]
pub struct NamingKey(Vec<u8>);

impl std::fmt::Debug for NamingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NamingKey(..)")
    }
}

impl NamingKey {
    pub fn new(key: impl Into<Vec<u8>>) -> NamingKey {
        NamingKey(key.into())
    }

    /// 16 hex digits (64 bits) of HMAC-SHA256(key, text): short enough for a file name,
    /// long enough that names of different sources do not collide.
    pub fn reference(&self, text: &str) -> String {
        hex::encode(&self.mac(text)[..8])
    }

    /// 32 hex digits (128 bits) of HMAC-SHA256(key, text): a pseudonym (with a
    /// partner's key: stable for that partner, unlinkable across partners; ENISA's
    /// recommended keyed hash, never a plain one).
    pub fn pseudonym(&self, text: &str) -> String {
        hex::encode(&self.mac(text)[..16])
    }

    /// A keyed hash for many short inputs under one context (the key's pads computed
    /// once): ids a partner sees, which no one without the key can recompute.
    pub fn ids(&self, context: &str) -> KeyedIds {
        // HMAC takes keys of any length: this cannot fail.
        let mut mac = match HmacSha256::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => <HmacSha256 as KeyInit>::new(&Default::default()),
        };
        mac.update(context.as_bytes());
        mac.update(&[0]);
        KeyedIds(mac)
    }

    fn mac(&self, text: &str) -> [u8; 32] {
        // HMAC takes keys of any length: this cannot fail.
        let mut mac = match HmacSha256::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => return [0; 32],
        };
        mac.update(text.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// HMAC-SHA256 under a key and a context, ready for one input after another.
#[derive(Clone)]
pub struct KeyedIds(HmacSha256);

impl KeyedIds {
    /// 32 hex digits (128 bits) of HMAC(key, context || 0 || bytes).
    pub fn id(&self, bytes: &[u8]) -> String {
        hex::encode(self.bytes16(bytes))
    }

    /// The first 16 bytes of HMAC(key, context || 0 || bytes): a derived key.
    pub fn bytes16(&self, bytes: &[u8]) -> [u8; 16] {
        let mut mac = self.0.clone();
        mac.update(bytes);
        let mut out = [0u8; 16];
        out.copy_from_slice(&mac.finalize().into_bytes()[..16]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_stable_per_key_and_unlinkable_across_keys() {
        let a = NamingKey::new(b"stack-a".to_vec());
        let b = NamingKey::new(b"stack-b".to_vec());
        let key = "staging/seed/P1.20201012.heart_rate.csv";
        assert_eq!(a.reference(key), a.reference(key));
        assert_eq!(a.reference(key).len(), 16);
        assert_ne!(a.reference(key), b.reference(key));
        assert!(!a.reference(key).contains("P1"));
        let ids = a.ids("observation");
        assert_eq!(ids.id(b"r1"), ids.id(b"r1"));
        assert_ne!(ids.id(b"r1"), b.ids("observation").id(b"r1"));
        assert_ne!(ids.id(b"r1"), a.ids("file").id(b"r1"));
        // RFC 4231 test case 2, truncated: the crate's HMAC is the standard one.
        assert_eq!(
            NamingKey::new(b"Jefe".to_vec()).reference("what do ya want for nothing?"),
            "5bdcc146bf60754e"
        );
    }
}
