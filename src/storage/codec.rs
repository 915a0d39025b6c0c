//! Little-endian and varint primitives shared by the on-disk formats (`wal`, `chunk`, `segment`).
//! Reading is bounds-checked: a short or damaged buffer gives [`Truncated`], never a panic.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq, Clone, Copy)]
#[error("truncated or malformed data at byte {0}")]
pub struct Truncated(pub usize);

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub fn pos(&self) -> usize {
        self.pos
    }
    /// The bytes read since position `start`.
    pub fn since(&self, start: usize) -> &'a [u8] {
        &self.buf[start.min(self.pos)..self.pos]
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(Truncated(self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Truncated> {
        Ok(self
            .bytes(N)?
            .try_into()
            .expect("bug: slice length checked"))
    }
    pub fn u8(&mut self) -> Result<u8, Truncated> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u16(&mut self) -> Result<u16, Truncated> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, Truncated> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, Truncated> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64, Truncated> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub fn uvarint(&mut self) -> Result<u64, Truncated> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Truncated(self.pos))
    }
    pub fn ivarint(&mut self) -> Result<i64, Truncated> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
    /// A varint length followed by that many bytes.
    pub fn lp_bytes(&mut self) -> Result<&'a [u8], Truncated> {
        let n = self.uvarint()?;
        self.bytes(usize::try_from(n).map_err(|_| Truncated(self.pos))?)
    }
    pub fn lp_str(&mut self) -> Result<&'a str, Truncated> {
        let at = self.pos;
        std::str::from_utf8(self.lp_bytes()?).map_err(|_| Truncated(at))
    }
}

pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn put_ivarint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

pub fn put_lp_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uvarint(out, b.len() as u64);
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        let mut out = Vec::new();
        let vals = [0i64, 1, -1, 63, -64, 1 << 40, i64::MIN, i64::MAX];
        for v in vals {
            put_ivarint(&mut out, v);
            put_uvarint(&mut out, v as u64);
        }
        let mut r = Reader::new(&out);
        for v in vals {
            assert_eq!(r.ivarint().unwrap(), v);
            assert_eq!(r.uvarint().unwrap(), v as u64);
        }
        assert_eq!(r.remaining(), 0);
        assert!(r.u8().is_err());
    }

    #[test]
    fn lengths_past_the_end_are_errors() {
        let mut out = Vec::new();
        put_uvarint(&mut out, u64::MAX);
        assert!(Reader::new(&out).lp_bytes().is_err());
        assert!(Reader::new(&[0xff; 20]).uvarint().is_err());
    }
}
