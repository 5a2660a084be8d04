//! `application/x-www-form-urlencoded`: how a `<form>` sends its fields, in
//! a POST body or in the query string of a GET.
//!
//! `title=Hello+world&body=caf%C3%A9` means title "Hello world", body
//! "café": `+` is a space and `%XX` is one byte. The bytes must then be
//! UTF-8; a form that sends anything else gets an error, not a guess (a
//! lenient decoder would quietly store `�` in place of the bad bytes).

use std::fmt::Display;
use std::num::IntErrorKind;
use std::num::ParseIntError;
use std::str::FromStr;

use percent_encoding::percent_decode;

/// The fields of a form, in the order they were sent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fields(Vec<(String, String)>);

/// A form whose bytes are not UTF-8 once decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotUtf8;

impl std::fmt::Display for NotUtf8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the form data is not valid UTF-8 text")
    }
}

impl Fields {
    /// Decodes `a=1&b=2` (a body, or a query string without the `?`).
    pub fn parse(input: &[u8]) -> Result<Fields, NotUtf8> {
        let mut fields = Vec::new();
        for pair in input.split(|&byte| byte == b'&') {
            if pair.is_empty() {
                continue;
            }
            let (name, value) = match pair.iter().position(|&byte| byte == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &[][..]),
            };
            fields.push((decode(name)?, decode(value)?));
        }
        Ok(Fields(fields))
    }

    /// The fields of a URL's query string (`None` when it has none), with an
    /// error to show when it is not UTF-8.
    pub fn query(query: Option<&str>) -> Result<Fields, String> {
        Fields::parse(query.unwrap_or("").as_bytes())
            .map_err(|_| "The address is not valid UTF-8.".into())
    }

    /// The whole number sent as `name`: `None` when the field is absent or
    /// empty, an error that names the field when it is not a number, or is
    /// one too large to hold (`?since=99999999999999999999`).
    pub fn number<T: WholeNumber>(&self, name: &str) -> Result<Option<T>, String> {
        match self.get(name).filter(|text| !text.is_empty()) {
            None => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|error: ParseIntError| {
                if *error.kind() == IntErrorKind::PosOverflow {
                    format!("\u{201c}{name}\u{201d} is too large: at most {}.", T::MAX)
                } else {
                    format!(
                        "\u{201c}{name}\u{201d} must be a whole number, not \u{201c}{text}\u{201d}."
                    )
                }
            }),
        }
    }

    /// The first value sent for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
    }
}

/// The kinds of whole number a field can be read as, and the largest of
/// each, for the error that says a number is too large.
pub trait WholeNumber: FromStr<Err = ParseIntError> + Display {
    const MAX: Self;
}

impl WholeNumber for u16 {
    const MAX: Self = u16::MAX;
}

impl WholeNumber for u32 {
    const MAX: Self = u32::MAX;
}

impl WholeNumber for u64 {
    const MAX: Self = u64::MAX;
}

impl WholeNumber for usize {
    const MAX: Self = usize::MAX;
}

fn decode(raw: &[u8]) -> Result<String, NotUtf8> {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|&byte| if byte == b'+' { b' ' } else { byte })
        .collect();
    percent_decode(&spaced)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_percent_and_utf8() {
        let fields =
            Fields::parse(b"title=Hello+world&body=caf%C3%A9+%26+more&empty=&flag").unwrap();
        assert_eq!(fields.get("title"), Some("Hello world"));
        assert_eq!(fields.get("body"), Some("café & more"));
        assert_eq!(fields.get("empty"), Some(""));
        assert_eq!(fields.get("flag"), Some(""));
        assert_eq!(fields.get("missing"), None);
    }

    #[test]
    fn numbers_are_parsed_or_explained() {
        let fields = Fields::parse(b"since=41&empty=&bad=4x1&negative=-1").unwrap();
        assert_eq!(fields.number::<u64>("since"), Ok(Some(41)));
        assert_eq!(fields.number::<u64>("empty"), Ok(None));
        assert_eq!(fields.number::<u64>("missing"), Ok(None));
        assert_eq!(
            fields.number::<u64>("bad"),
            Err("“bad” must be a whole number, not “4x1”.".to_string())
        );
        assert!(fields.number::<u64>("negative").is_err());
    }

    #[test]
    fn a_number_too_large_is_said_to_be_too_large() {
        let fields =
            Fields::parse(b"since=99999999999999999999&max=18446744073709551615&refresh=4294967296&big=1e99&minus=-99999999999999999999")
                .unwrap();
        assert_eq!(
            fields.number::<u64>("since"),
            Err("“since” is too large: at most 18446744073709551615.".to_string())
        );
        assert_eq!(fields.number::<u64>("max"), Ok(Some(u64::MAX)));
        assert_eq!(
            fields.number::<u32>("refresh"),
            Err("“refresh” is too large: at most 4294967295.".to_string())
        );
        // Not whole numbers, however large they look.
        assert_eq!(
            fields.number::<u64>("big"),
            Err("“big” must be a whole number, not “1e99”.".to_string())
        );
        assert_eq!(
            fields.number::<u64>("minus"),
            Err("“minus” must be a whole number, not “-99999999999999999999”.".to_string())
        );
    }

    #[test]
    fn the_first_of_repeated_fields_wins() {
        let fields = Fields::parse(b"q=one&q=two").unwrap();
        assert_eq!(fields.get("q"), Some("one"));
    }

    #[test]
    fn invalid_utf8_is_an_error_not_a_replacement_character() {
        assert_eq!(Fields::parse(b"title=%FF%FE"), Err(NotUtf8));
        assert_eq!(Fields::parse(b"title=\xff"), Err(NotUtf8));
    }
}
