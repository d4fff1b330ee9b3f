//! String interning for the file path: every device, sensor, metric, unit and subject
//! name of a file is stored once and named by a small integer (a symbol), so rows are
//! compact and everything after parsing compares integers.
//!
//! Names of up to 24 bytes (all the fleet's ids) have an inline key. A row's fields are
//! found through a compact table per field (a 64-bit digest of the key -> symbol, 16
//! bytes a slot, so the busiest, device ids, stays in the CPU's cache), checked against
//! the symbol's key; exact tables behind it settle digest collisions. A field equal to
//! the previous row's costs no lookup at all. The tables hash with foldhash, seeded per
//! file, so a crafted file cannot aim collisions at them.

use std::collections::HashMap;

/// A name's number within one file.
pub type Sym = u32;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Strings seen in the file, stored once per kind of field. Names of up to 24 bytes
/// (all the ids of the fleet) have an inline key. A row's fields are found through a
/// compact table per field (a 64-bit digest of the key -> symbol, 16 bytes a slot, so
/// the busiest, device ids, stays in the CPU's cache), checked against the symbol's
/// key; the exact tables behind it settle digest collisions.
#[derive(Default)]
pub struct Interner {
    /// Per row field (device, sensor, metric, unit), then everything else.
    short: [FastMap<ShortKey, Sym>; FIELDS + 1],
    long: FastMap<Box<str>, Sym>,
    digests: [FastMap<u64, Sym>; FIELDS],
    names: Vec<Box<str>>,
    /// Each symbol's key (`ShortKey::LONG` for names too long for one).
    keys: Vec<ShortKey>,
    /// The last short string of each field and its symbol: files list many rows of
    /// one sensor, metric or unit in a row, and a match costs no hash lookup.
    last: [Option<(ShortKey, Sym)>; FIELDS],
}

/// Row fields interned through [`Interner::get_field`].
pub const FIELDS: usize = 4;

/// A string of up to 24 bytes as three words and its length. The words are read
/// straight from the string (overlapping loads: together they cover every byte), so
/// building a key stores nothing that a comparison must then reload.
#[derive(Clone, Copy, PartialEq, Eq)]
struct ShortKey {
    words: [u64; 3],
    len: u8,
}

impl ShortKey {
    /// Stands for names longer than a key holds (no key has this length).
    const LONG: ShortKey = ShortKey {
        words: [0; 3],
        len: u8::MAX,
    };

    /// Not unique (collisions are checked), just cheap and well spread by the table's hash.
    fn digest(&self) -> u64 {
        self.words[0]
            ^ self.words[1].rotate_left(21)
            ^ self.words[2].rotate_left(42)
            ^ u64::from(self.len)
    }

    #[inline]
    fn new(s: &str) -> Option<ShortKey> {
        let b = s.as_bytes();
        let n = b.len();
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let half = |at: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&b[at..at + 4]);
            u64::from(u32::from_le_bytes(w))
        };
        let words = match n {
            0 => [0; 3],
            1..=3 => [
                u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16,
                0,
                0,
            ],
            4..=7 => [half(0) | half(n - 4) << 32, 0, 0],
            8..=16 => [word(0), word(n - 8), 0],
            17..=24 => [word(0), word(8), word(n - 8)],
            _ => return None,
        };
        Some(ShortKey {
            words,
            len: n as u8,
        })
    }
}

impl std::hash::Hash for ShortKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.words[0] ^ u64::from(self.len).rotate_right(8));
        state.write_u64(self.words[1]);
        state.write_u64(self.words[2]);
    }
}

impl Interner {
    pub fn get(&mut self, s: &str) -> Sym {
        if let Some(key) = ShortKey::new(s) {
            return self.exact(FIELDS, key, s);
        }
        if let Some(&id) = self.long.get(s) {
            return id;
        }
        let id = self.names.len() as Sym;
        self.long.insert(s.into(), id);
        self.names.push(s.into());
        self.keys.push(ShortKey::LONG);
        id
    }

    /// As `get`, for field `field` (0..4) of a row.
    #[inline]
    pub fn get_field(&mut self, field: usize, s: &str) -> Sym {
        let Some(key) = ShortKey::new(s) else {
            return self.get(s);
        };
        if let Some((last, sym)) = self.last[field]
            && last == key
        {
            return sym;
        }
        let digest = key.digest();
        let sym = match self.digests[field].get(&digest) {
            Some(&sym) if self.keys[sym as usize] == key => sym,
            Some(_) => self.exact(field, key, s),
            None => {
                let sym = self.exact(field, key, s);
                self.digests[field].insert(digest, sym);
                sym
            }
        };
        self.last[field] = Some((key, sym));
        sym
    }

    /// The symbol of a short string from the exact table of `field` (`FIELDS`: others).
    fn exact(&mut self, field: usize, key: ShortKey, s: &str) -> Sym {
        let next = self.names.len() as Sym;
        let sym = *self.short[field].entry(key).or_insert(next);
        if sym == next {
            self.names.push(s.into());
            self.keys.push(key);
        }
        sym
    }

    pub fn name(&self, id: Sym) -> &str {
        &self.names[id as usize]
    }

    /// How many names there are (symbols are below this).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_tell_every_byte_of_every_length_apart() {
        let alphabet = "abcdefghijklmnopqrstuvwxyz";
        for n in 0..=24 {
            let base = &alphabet[..n];
            let key = ShortKey::new(base).unwrap();
            let copy: String = base.chars().collect();
            assert!(ShortKey::new(&copy) == Some(key));
            for i in 0..n {
                let mut changed = base.as_bytes().to_vec();
                changed[i] = b'Z';
                let other = String::from_utf8(changed).unwrap();
                assert!(ShortKey::new(&other) != Some(key), "{base:?} vs {other:?}");
            }
            if n > 0 {
                assert!(ShortKey::new(&alphabet[..n - 1]) != Some(key));
            }
        }
        assert!(ShortKey::new(&alphabet[..25]).is_none());
    }

    #[test]
    fn a_digest_collision_still_gives_each_string_its_own_symbol() {
        let mut i = Interner::default();
        // Two different keys with one digest: the second must not take the first's symbol.
        let a = ShortKey::new("ab").unwrap();
        let mut forged = a;
        forged.words[0] ^= 1 << 40;
        forged.words[1] ^= 1u64 << 19; // rotate_left(21) moves it onto bit 40
        assert_eq!(a.digest(), forged.digest());
        let sa = i.get_field(0, "ab");
        let planted = i.names.len() as Sym;
        i.names.push("forged".into());
        i.keys.push(forged);
        i.digests[0].insert(ShortKey::new("cd").unwrap().digest(), planted);
        // "cd" finds the planted symbol under its digest, sees the key differ, and
        // falls back to the exact table.
        let sc = i.get_field(0, "cd");
        assert_ne!(sc, planted);
        assert_eq!(i.name(sc), "cd");
        assert_eq!(i.get_field(0, "ab"), sa);
        assert_eq!(i.get_field(1, "cd"), i.get_field(1, "cd"));
    }

    #[test]
    fn the_interner_returns_one_symbol_per_string_and_field() {
        let mut i = Interner::default();
        let long = "a-device-id-longer-than-twenty-four-bytes";
        let a = i.get_field(0, "dev-1");
        let b = i.get_field(0, long);
        assert_ne!(a, b);
        assert_eq!(i.get_field(1, "hr-0"), i.get_field(1, "hr-0"));
        assert_eq!(i.get_field(0, "dev-1"), a, "through the last-value cache");
        assert_eq!(i.get_field(0, long), b);
        i.get_field(0, "dev-2");
        assert_eq!(i.get_field(0, "dev-1"), a, "through the table");
        assert_eq!(i.get(long), i.get(long));
        assert_eq!((i.name(a), i.name(b)), ("dev-1", long));
        let subject = i.get("subj-1");
        assert_eq!(i.get("subj-1"), subject);
        assert_eq!(i.name(subject), "subj-1");
    }
}
