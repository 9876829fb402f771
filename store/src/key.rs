//! Keys: `/`-separated names relative to the store's root (its directory or bucket prefix), in a
//! character set that means the same thing on every backend: no percent-encoding on S3, no
//! surprises on a file system (`..`, hidden names are fine but `.`/`..` segments are not), and no
//! `#`, which `object_store`'s directory backend reserves for its staging files (`key#1`).

use object_store::path::Path;

/// S3's limit on a key's length, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Why `key` cannot be a key, in words that follow "the key ...".
pub fn check(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("is empty".into());
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!("is longer than {MAX_KEY_BYTES} bytes"));
    }
    if let Some(c) = key
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "/._=+-".contains(c)))
    {
        return Err(format!(
            "has the character {c:?} (allowed: letters, digits, '/' and . _ = + -)"
        ));
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err("has an empty segment".into()),
            "." | ".." => return Err(format!("has a segment {segment:?}")),
            _ => {}
        }
    }
    Ok(())
}

/// The `object_store` path of a checked key.
pub(crate) fn path(key: &str) -> Result<Path, String> {
    check(key)?;
    Path::parse(key).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_keys_map_one_to_one() {
        for key in [
            "v3/model.bin",
            "runs/2026-11-09T10=00+01/record.json",
            "a",
            "x/.hidden",
        ] {
            assert_eq!(path(key).unwrap().as_ref(), key);
        }
    }

    #[test]
    fn bad_keys_say_why() {
        let long = "a".repeat(MAX_KEY_BYTES + 1);
        let cases = [
            ("", "is empty"),
            ("/v3/model.bin", "has an empty segment"),
            ("v3/", "has an empty segment"),
            ("v3//model.bin", "has an empty segment"),
            ("v3/../etc", r#"has a segment "..""#),
            ("./v3", r#"has a segment ".""#),
            (
                "v3/model.bin#1",
                "has the character '#' (allowed: letters, digits, '/' and . _ = + -)",
            ),
            (
                "v3 model",
                "has the character ' ' (allowed: letters, digits, '/' and . _ = + -)",
            ),
            (
                "modèle",
                "has the character 'è' (allowed: letters, digits, '/' and . _ = + -)",
            ),
            (long.as_str(), "is longer than 1024 bytes"),
        ];
        for (key, why) in cases {
            assert_eq!(check(key).unwrap_err(), why, "{key:?}");
        }
    }
}
