//! A user sketch as it crosses the wire, checked before it becomes one.
//!
//! `hyperloglogplus` serialises its whole internal state (precision, sizes, a temporary set, a
//! varint-coded sparse list, packed registers) and deserialises it unchecked, while its merge and
//! count index and shift by those values: a forged sketch panics the operator's collector (a
//! register index out of range, a varint running off its buffer, a shift past 32 bits) or merges
//! into a wrong count. This module reads the same JSON into a mirror of that state, checks every
//! invariant the crate's own code keeps, and only then hands it over, so the wire format stays
//! the one predictors already send.

use serde::{Deserialize, Serialize};

use super::StableHasher;

/// Precisions the sketch crate has bias tables for.
const PRECISIONS: std::ops::RangeInclusive<u8> = 4..=18;
/// Precision of the sparse representation's hash codes (the crate's `PRIME_PRECISION`).
const SPARSE_PRECISION: u8 = 25;
/// Registers of 6 bits, five to a 32-bit word.
const REGISTERS_PER_WORD: usize = 5;

/// The serialised fields of `HyperLogLogPlus<String, StableHasher>`, in its order.
#[derive(Serialize, Deserialize)]
pub(super) struct SketchWire {
    builder: StableHasher,
    precision: u8,
    /// Registers, sparse registers, and the sparse list's byte limit.
    counts: (usize, usize, usize),
    tmpset: Vec<u32>,
    sparse: SparseWire,
    registers: Option<RegistersWire>,
    phantom: (),
}

/// Sorted hash codes, each stored as its difference to the previous one in LEB128.
#[derive(Serialize, Deserialize)]
struct SparseWire {
    count: usize,
    last: u32,
    buf: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct RegistersWire {
    buf: Vec<u32>,
    count: usize,
    zeros: usize,
}

impl SketchWire {
    /// Every invariant the sketch's merge and count rely on; the message says which failed.
    pub(super) fn check(&self) -> Result<(), String> {
        let p = self.precision;
        if !PRECISIONS.contains(&p) {
            return Err(format!("precision {p} is outside {PRECISIONS:?}"));
        }
        let registers = 1usize << p;
        let sparse_limit = 4 * registers / REGISTERS_PER_WORD;
        let expected = (registers, 1usize << (SPARSE_PRECISION - 1), sparse_limit);
        if self.counts != expected {
            return Err(format!(
                "sizes {:?} do not belong to precision {p} (expected {expected:?})",
                self.counts
            ));
        }
        match &self.registers {
            Some(r) => {
                // A sketch turns dense once and empties its sparse parts for good.
                if !self.tmpset.is_empty() || self.sparse.count != 0 || !self.sparse.buf.is_empty()
                {
                    return Err("a dense sketch still holds sparse hash codes".into());
                }
                r.check(p)
            }
            None => {
                // Inserting merges the temporary set into the list once it outgrows 1% of the
                // limit, and the list turns dense once it outgrows the limit.
                if self.tmpset.len() * 100 > sparse_limit {
                    return Err(format!(
                        "{} hash codes wait to be merged, at most {} can",
                        self.tmpset.len(),
                        sparse_limit / 100
                    ));
                }
                if self.sparse.buf.len() > sparse_limit {
                    return Err(format!(
                        "the sparse list has {} bytes, a sketch of precision {p} turns dense beyond {sparse_limit}",
                        self.sparse.buf.len()
                    ));
                }
                if let Some(bad) = self.tmpset.iter().find(|&&c| !valid_code(c, p)) {
                    return Err(format!("hash code {bad:#x} is not one precision {p} makes"));
                }
                self.sparse.check(p)
            }
        }
    }
}

impl SparseWire {
    fn check(&self, p: u8) -> Result<(), String> {
        let mut at = 0;
        let mut n = 0usize;
        let mut last: Option<u32> = None;
        while at < self.buf.len() {
            let (dif, next) = leb128(&self.buf, at)?;
            at = next;
            let code = match last {
                None => dif,
                Some(_) if dif == 0 => return Err("the sparse list repeats a hash code".into()),
                Some(prev) => prev
                    .checked_add(dif)
                    .ok_or("the sparse list's hash codes pass 2^32")?,
            };
            if !valid_code(code, p) {
                return Err(format!(
                    "hash code {code:#x} is not one precision {p} makes"
                ));
            }
            last = Some(code);
            n += 1;
        }
        if n != self.count || last.unwrap_or(0) != self.last {
            return Err(format!(
                "the sparse list holds {n} hash codes ending at {}, it says {} ending at {}",
                last.unwrap_or(0),
                self.count,
                self.last
            ));
        }
        Ok(())
    }
}

impl RegistersWire {
    fn check(&self, p: u8) -> Result<(), String> {
        let count = 1usize << p;
        let words = count.div_ceil(REGISTERS_PER_WORD);
        if self.count != count || self.buf.len() != words {
            return Err(format!(
                "{} registers in {} words, precision {p} has {count} in {words}",
                self.count,
                self.buf.len()
            ));
        }
        // A register holds 1 + the leading zeros of the hash's other 64 - p bits.
        let max = 64 - u32::from(p) + 1;
        let values = self
            .buf
            .iter()
            .flat_map(|w| (0..REGISTERS_PER_WORD).map(move |i| (w >> (6 * i)) & 0x3f))
            .take(count);
        let mut zeros = 0;
        for v in values {
            if v > max {
                return Err(format!("a register holds {v}, precision {p} allows {max}"));
            }
            zeros += usize::from(v == 0);
        }
        if zeros != self.zeros {
            return Err(format!(
                "{zeros} registers are zero, the sketch says {}",
                self.zeros
            ));
        }
        Ok(())
    }
}

/// Whether `code` is a sparse hash code that a sketch of precision `p` writes: the top 25 bits of
/// a hash, with the leading zeros of the rest appended (odd) when the bits between `p` and 25 are
/// all zero, and the 25 bits alone (even) otherwise.
fn valid_code(code: u32, p: u8) -> bool {
    let between = (1u32 << (SPARSE_PRECISION - p)) - 1;
    if code & 1 == 1 {
        let zeros = (code >> 1) & 0x3f;
        // 1 + the leading zeros of the 39 bits below the top 25.
        (code >> 7) & between == 0 && (1..=40).contains(&zeros)
    } else {
        code >> (SPARSE_PRECISION + 1) == 0 && (code >> 1) & between != 0
    }
}

/// The unsigned LEB128 number at `buf[at..]` that fits 32 bits, and where the next one starts.
fn leb128(buf: &[u8], at: usize) -> Result<(u32, usize), String> {
    let mut value = 0u32;
    for i in 0..5 {
        let byte = *buf
            .get(at + i)
            .ok_or_else(|| format!("the sparse list's number at byte {at} is cut off"))?;
        let bits = u32::from(byte & 0x7f);
        if i == 4 && bits > 0x0f {
            return Err(format!(
                "the sparse list's number at byte {at} passes 32 bits"
            ));
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, at + i + 1));
        }
    }
    Err(format!(
        "the sparse list's number at byte {at} is longer than 5 bytes"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb128_reads_what_the_sketch_writes_and_nothing_longer() {
        assert_eq!(leb128(&[0x05], 0), Ok((5, 1)));
        assert_eq!(leb128(&[0x00, 0x96, 0x01], 1), Ok((150, 3)));
        assert_eq!(
            leb128(&[0xff, 0xff, 0xff, 0xff, 0x0f], 0),
            Ok((u32::MAX, 5))
        );
        assert!(leb128(&[0xff, 0xff, 0xff, 0xff, 0x1f], 0).is_err());
        assert!(leb128(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], 0).is_err());
        assert!(leb128(&[0x80], 0).is_err());
    }
}
