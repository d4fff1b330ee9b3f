//! Byte intake: the raw object is counted and hashed (its content identity), gzip is
//! detected from the bytes and decoded member by member, and what comes out is bounded
//! in size and in compression ratio, so no input can run the function past its timeout
//! or fill its memory.

use std::io::{BufRead, Error, ErrorKind, Read};
use std::sync::{Arc, Mutex};

use flate2::bufread::GzDecoder;
use sha2::{Digest, Sha256};

/// How much decoded data one file may produce.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ByteLimits {
    /// Decoded bytes per file. At the file path's 60-140 MB/s this is 1-2.5 minutes of
    /// the function's 5: a larger file is split before upload (docs/file-ingestion.md).
    pub max_decoded_bytes: u64,
    /// Decoded bytes per compressed byte, checked once `ratio_after` bytes are decoded.
    /// Real CSV and NDJSON exports compress 5-30x; a gzip of newlines, 1,000x.
    pub max_ratio: u64,
    pub ratio_after: u64,
}

impl Default for ByteLimits {
    fn default() -> Self {
        ByteLimits {
            max_decoded_bytes: 8 << 30,
            max_ratio: 100,
            ratio_after: 64 << 20,
        }
    }
}

/// A limit the content broke: the file's fault, never worth a retry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ByteLimitExceeded {
    #[error("the file decodes to more than {max} bytes (split it into smaller files)")]
    TooLarge { max: u64 },
    #[error(
        "the file decompresses more than {max}x (a decompression bomb, or data too repetitive to be an export)"
    )]
    Ratio { max: u64 },
    #[error("bytes that are neither a gzip member nor zero padding follow the gzip data")]
    TrailingGarbage,
}

impl ByteLimitExceeded {
    /// The limit behind an I/O error, if it was one.
    pub fn of(e: &Error) -> Option<&ByteLimitExceeded> {
        e.get_ref().and_then(|inner| inner.downcast_ref())
    }

    fn into_io(self) -> Error {
        Error::new(ErrorKind::InvalidData, self)
    }
}

/// The raw bytes read so far: their count and SHA-256 (the content's identity), shared
/// by the reader that counts them and those that need the figures.
#[derive(Clone, Default)]
pub struct Tally(Arc<Mutex<(Sha256, u64)>>);

impl Tally {
    pub fn bytes(&self) -> u64 {
        self.0.lock().map_or(0, |t| t.1)
    }

    /// Bytes read and their SHA-256 (lowercase hex).
    pub fn finish(&self) -> (u64, String) {
        match self.0.lock() {
            Ok(t) => (t.1, hex::encode(t.0.clone().finalize())),
            Err(_) => (0, String::new()),
        }
    }
}

/// Counts and hashes the raw bytes as they are read (a lock per read of up to 256 KiB).
pub struct Hashed<R> {
    inner: R,
    tally: Tally,
}

impl<R: Read> Hashed<R> {
    pub fn new(inner: R) -> Hashed<R> {
        Hashed {
            inner,
            tally: Tally::default(),
        }
    }

    pub fn tally(&self) -> Tally {
        self.tally.clone()
    }
}

impl<R: Read> Read for Hashed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Ok(mut t) = self.tally.0.lock() {
            t.0.update(&buf[..n]);
            t.1 += n as u64;
        }
        Ok(n)
    }
}

/// Decoded bytes, bounded by [`ByteLimits`] against the raw bytes read.
pub struct Bounded<R> {
    inner: R,
    decoded: u64,
    raw: Tally,
    limits: ByteLimits,
}

impl<R: Read> Bounded<R> {
    pub fn new(inner: R, raw: Tally, limits: ByteLimits) -> Bounded<R> {
        Bounded {
            inner,
            decoded: 0,
            raw,
            limits,
        }
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.decoded += n as u64;
        let l = &self.limits;
        if self.decoded > l.max_decoded_bytes {
            return Err(ByteLimitExceeded::TooLarge {
                max: l.max_decoded_bytes,
            }
            .into_io());
        }
        if self.decoded > l.ratio_after && self.decoded / self.raw.bytes().max(1) > l.max_ratio {
            return Err(ByteLimitExceeded::Ratio { max: l.max_ratio }.into_io());
        }
        Ok(n)
    }
}

/// The members of a gzip file, one after another (as `gzip -d` reads them), and the
/// zero padding some tools write after the last one (which `gzip -d` also accepts).
pub struct GzMembers<R: BufRead> {
    member: Option<GzDecoder<R>>,
}

impl<R: BufRead> GzMembers<R> {
    pub fn new(inner: R) -> GzMembers<R> {
        GzMembers {
            member: Some(GzDecoder::new(inner)),
        }
    }

    /// After a member: another member, zero padding to the end, or garbage.
    fn next_member(&mut self, mut inner: R) -> std::io::Result<bool> {
        loop {
            let head = inner.fill_buf()?;
            if head.is_empty() {
                return Ok(false);
            }
            if head[0] == 0 {
                let zeros = head.iter().take_while(|b| **b == 0).count();
                inner.consume(zeros);
                continue;
            }
            if head[0] == 0x1f {
                // Another member (a bad header in it is corrupt compression).
                self.member = Some(GzDecoder::new(inner));
                return Ok(true);
            }
            return Err(ByteLimitExceeded::TrailingGarbage.into_io());
        }
    }
}

impl<R: BufRead> Read for GzMembers<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let Some(member) = self.member.as_mut() else {
                return Ok(0);
            };
            let n = member.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            let Some(done) = self.member.take() else {
                return Ok(0);
            };
            if !self.next_member(done.into_inner())? {
                return Ok(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn gunzip(file: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        GzMembers::new(std::io::BufReader::with_capacity(7, file)).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn members_are_read_in_turn_and_zero_padding_after_them_is_accepted() {
        let mut file = gzip(b"a,b\n");
        file.extend(gzip(b"c,d\n"));
        assert_eq!(gunzip(&file).unwrap(), b"a,b\nc,d\n");
        file.extend([0u8; 700]);
        assert_eq!(gunzip(&file).unwrap(), b"a,b\nc,d\n");
    }

    #[test]
    fn garbage_after_the_gzip_data_is_an_error_not_a_silent_end() {
        let mut file = gzip(b"a,b\n");
        file.extend(b"\0\0junk");
        let err = gunzip(&file).unwrap_err();
        assert_eq!(
            ByteLimitExceeded::of(&err),
            Some(&ByteLimitExceeded::TrailingGarbage)
        );
    }

    #[test]
    fn a_decompression_bomb_stops_at_the_ratio_limit() {
        let bomb = gzip(&vec![b'\n'; 8 << 20]);
        let hashed = Hashed::new(bomb.as_slice());
        let raw = hashed.tally();
        let limits = ByteLimits {
            max_decoded_bytes: 1 << 40,
            max_ratio: 100,
            ratio_after: 1 << 20,
        };
        let mut r = Bounded::new(GzMembers::new(std::io::BufReader::new(hashed)), raw, limits);
        let err = std::io::copy(&mut r, &mut std::io::sink()).unwrap_err();
        assert_eq!(
            ByteLimitExceeded::of(&err),
            Some(&ByteLimitExceeded::Ratio { max: 100 })
        );
    }

    #[test]
    fn decoded_bytes_are_bounded_for_plain_files_too() {
        let data = vec![b'x'; 4096];
        let hashed = Hashed::new(data.as_slice());
        let raw = hashed.tally();
        let limits = ByteLimits {
            max_decoded_bytes: 1000,
            ..ByteLimits::default()
        };
        let err = std::io::copy(&mut Bounded::new(hashed, raw, limits), &mut std::io::sink())
            .unwrap_err();
        assert_eq!(
            ByteLimitExceeded::of(&err),
            Some(&ByteLimitExceeded::TooLarge { max: 1000 })
        );
    }

    #[test]
    fn the_hash_and_count_cover_every_raw_byte() {
        let mut h = Hashed::new(&b"abc"[..]);
        std::io::copy(&mut h, &mut std::io::sink()).unwrap();
        assert_eq!(
            h.tally().finish(),
            (
                3,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into()
            )
        );
    }
}
