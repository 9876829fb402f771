//! The wire form of a user sketch, checked before it becomes one. `hyperloglogplus` trusts its
//! own state: a register count past its buffer indexes out of bounds, a varint that runs off the
//! end of the sparse list or a difference that overflows panics, a zero count below the true one
//! underflows. A sketch from the network is only let in when it holds what a sketch of this
//! build can hold.

use super::USER_SKETCH_PRECISION;
use serde::{Deserialize, Serialize};

/// The fields of `HyperLogLogPlus<String, StableHasher>` as serde writes them.
#[derive(Serialize, Deserialize)]
pub(super) struct Wire {
    builder: (),
    precision: u8,
    counts: (usize, usize, usize),
    tmpset: Vec<u32>,
    sparse: Sparse,
    registers: Option<Registers>,
    phantom: (),
}

#[derive(Serialize, Deserialize)]
struct Sparse {
    count: usize,
    last: u32,
    buf: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Registers {
    buf: Vec<u32>,
    count: usize,
    zeros: usize,
}

/// Registers of a sketch: 2^precision.
const REGISTERS: usize = 1 << USER_SKETCH_PRECISION;
/// The precision of the sparse form's hash codes.
const PRIME_PRECISION: u32 = 25;
/// Bits per register, and registers per 32-bit word.
const REGISTER_BITS: usize = 6;
const PER_WORD: usize = 32 / REGISTER_BITS;
/// Bytes of the registers, which is also the most the sparse list holds before the sketch turns
/// dense; the unsorted set is merged into the list at a hundredth of it.
const SPARSE_LIMIT: usize = 4 * REGISTERS / PER_WORD;
/// The largest leading-zero count a sparse hash code records (64 bits less the code's 25).
const MAX_SPARSE_ZEROS: u32 = 64 - PRIME_PRECISION + 1;

impl Wire {
    /// Why this is not a sketch of this build, if it is not.
    pub(super) fn check(&self) -> Result<(), String> {
        if self.precision != USER_SKETCH_PRECISION {
            return Err(format!(
                "precision {} (expected {USER_SKETCH_PRECISION})",
                self.precision
            ));
        }
        let counts = (REGISTERS, 1 << (PRIME_PRECISION - 1), SPARSE_LIMIT);
        if self.counts != counts {
            return Err(format!("counts {:?} (expected {counts:?})", self.counts));
        }
        if self.tmpset.len() * 100 > SPARSE_LIMIT {
            return Err(format!(
                "{} unmerged hash codes (at most {})",
                self.tmpset.len(),
                SPARSE_LIMIT / 100
            ));
        }
        self.tmpset.iter().try_for_each(|&code| check_code(code))?;
        self.check_sparse()?;
        match &self.registers {
            None => Ok(()),
            Some(registers) if !self.tmpset.is_empty() || self.sparse.count > 0 => Err(format!(
                "{} registers beside a sparse list",
                registers.count
            )),
            Some(registers) => registers.check(),
        }
    }

    /// The sparse list: ascending hash codes, difference- and varint-encoded.
    fn check_sparse(&self) -> Result<(), String> {
        let sparse = &self.sparse;
        if sparse.buf.len() > SPARSE_LIMIT {
            return Err(format!(
                "a sparse list of {} bytes (at most {SPARSE_LIMIT})",
                sparse.buf.len()
            ));
        }
        let (mut at, mut count, mut last) = (0, 0usize, 0u32);
        while at < sparse.buf.len() {
            let (difference, next) = varint(&sparse.buf, at)?;
            last = last
                .checked_add(difference)
                .ok_or_else(|| format!("sparse hash codes overflow at byte {at}"))?;
            check_code(last)?;
            (at, count) = (next, count + 1);
        }
        if (count, last) != (sparse.count, sparse.last) {
            return Err(format!(
                "a sparse list of {count} codes ending at {last} claims {} ending at {}",
                sparse.count, sparse.last
            ));
        }
        Ok(())
    }
}

impl Registers {
    fn check(&self) -> Result<(), String> {
        let words = REGISTERS.div_ceil(PER_WORD);
        if self.count != REGISTERS || self.buf.len() != words {
            return Err(format!(
                "{} registers in {} words (expected {REGISTERS} in {words})",
                self.count,
                self.buf.len()
            ));
        }
        let mask = (1 << REGISTER_BITS) - 1;
        let zeros = (0..REGISTERS)
            .filter(|i| (self.buf[i / PER_WORD] >> (i % PER_WORD * REGISTER_BITS)) & mask == 0)
            .count();
        if zeros != self.zeros {
            return Err(format!(
                "{} zero registers claimed, {zeros} found",
                self.zeros
            ));
        }
        Ok(())
    }
}

/// A hash code whose leading-zero count fits a register.
fn check_code(code: u32) -> Result<(), String> {
    let zeros = (code >> 1) & 0x3f;
    if code & 1 == 1 && zeros > MAX_SPARSE_ZEROS {
        return Err(format!("hash code {code:#x} records {zeros} leading zeros"));
    }
    Ok(())
}

/// The varint at `at` and where the next one starts: at most five bytes, within the buffer, and
/// within 32 bits.
fn varint(buf: &[u8], at: usize) -> Result<(u32, usize), String> {
    let mut value = 0u32;
    for i in 0..5 {
        let byte = *buf
            .get(at + i)
            .ok_or_else(|| format!("a varint at byte {at} runs past the end"))?;
        if i == 4 && byte > 0x0f {
            return Err(format!("a varint at byte {at} exceeds 32 bits"));
        }
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, at + i + 1));
        }
    }
    Err(format!("a varint at byte {at} exceeds 32 bits"))
}
