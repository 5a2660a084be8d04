//! Secrets: making a random token, and comparing one without giving away
//! how much of a guess was right (step 05's admin namespace).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Instant;

/// 128 random bits in hex. They come from the standard library's hasher
/// keys, which the operating system's random source seeds: no extra crate
/// for one token at start-up.
pub fn random() -> String {
    let random = || RandomState::new().hash_one(Instant::now());
    format!("{:016x}{:016x}", random(), random())
}

/// Compares two tokens in constant time. A plain `==` stops at the first
/// differing byte, so its timing tells an attacker how many leading
/// characters were right; this looks at every byte whatever happens.
pub fn same(given: &str, expected: &str) -> bool {
    let (given, expected) = (given.as_bytes(), expected.as_bytes());
    let mut difference = given.len() ^ expected.len();
    for (i, &byte) in expected.iter().enumerate() {
        difference |= usize::from(byte ^ given.get(i).copied().unwrap_or(0));
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_and_differ() {
        let (a, b) = (random(), random());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn only_the_same_token_matches() {
        assert!(same("s3cret", "s3cret"));
        assert!(!same("s3cres", "s3cret"));
        assert!(!same("s3cre", "s3cret"));
        assert!(!same("s3cret!", "s3cret"));
        assert!(!same("", "s3cret"));
    }
}
