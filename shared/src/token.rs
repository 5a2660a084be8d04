//! Secrets: making a random token, checking that a given one is worth
//! having, and comparing one without giving away how much of a guess was
//! right (step 05's admin namespace).

use std::fmt::Write;

/// The shortest admin token a server accepts. An empty one would open the
/// admin namespace to anyone; a short one to anyone patient.
pub const MIN_LENGTH: usize = 16;

/// 128 random bits in hex, from the operating system's random source
/// (through `getrandom`, which tungstenite already uses for its masks).
pub fn random() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system gives random bytes");
    bytes
        .iter()
        .fold(String::with_capacity(32), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// The admin token to use: the one given (`--admin-token`,
/// `ADMIN_TOKEN`), if it is at least [`MIN_LENGTH`] characters, or a
/// random one when none is given. A token that is given but empty or
/// short is refused, with what to do instead: starting with it would
/// leave the admin namespace open.
pub fn admin(given: Option<&str>) -> Result<String, String> {
    match given {
        None => Ok(random()),
        Some(token) if token.chars().count() >= MIN_LENGTH => Ok(token.to_owned()),
        Some(token) => Err(format!(
            "the admin token must be at least {MIN_LENGTH} characters, and this one has {}; \
             give a longer one, or leave --admin-token (and ADMIN_TOKEN) out for a random one",
            token.chars().count()
        )),
    }
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
    fn an_admin_token_is_long_or_random() {
        assert_eq!(admin(None).unwrap().len(), 32);
        assert_eq!(admin(Some("sixteen-chars-ok")).unwrap(), "sixteen-chars-ok");
        for short in ["", " ", "s3cret", "fifteen-chars-x"] {
            let refusal = admin(Some(short)).unwrap_err();
            assert!(refusal.contains("at least 16 characters"), "{refusal}");
        }
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
