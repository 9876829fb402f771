//! A SHA-256 digest as the operator records it: 64 lowercase hex digits.

use std::fmt;
use std::str::FromStr;

use sha2::Digest;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256([u8; 32]);

impl Sha256 {
    pub fn of(bytes: &[u8]) -> Self {
        Self(sha2::Sha256::digest(bytes).into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

impl FromStr for Sha256 {
    type Err = String;

    /// Upper-case digits are accepted (as `sha256sum -c` does); anything else is refused.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 64 {
            return Err(format!(
                "{text:?} is not a sha256 digest: {} characters, expected 64 hex digits",
                text.len()
            ));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out)
            .map_err(|e| format!("{text:?} is not a sha256 digest: {e}"))?;
        Ok(Self(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_known_input() {
        // `printf abc | sha256sum`
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(Sha256::of(b"abc").to_string(), abc);
        assert_eq!(abc.parse::<Sha256>().unwrap(), Sha256::of(b"abc"));
        assert_eq!(
            abc.to_uppercase().parse::<Sha256>().unwrap(),
            Sha256::of(b"abc")
        );
    }

    #[test]
    fn malformed_digests_say_why() {
        assert_eq!(
            "abc".parse::<Sha256>().unwrap_err(),
            r#""abc" is not a sha256 digest: 3 characters, expected 64 hex digits"#
        );
        let z = "z".repeat(64);
        assert_eq!(
            z.parse::<Sha256>().unwrap_err(),
            format!("{z:?} is not a sha256 digest: Invalid character 'z' at position 0")
        );
    }
}
