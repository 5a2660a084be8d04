//! A news item, and the rules a new post must follow.
//!
//! The rules live here, once, so that every step (a form in 01, JSON in 02,
//! a WebSocket message in 04) rejects exactly the same input with exactly the
//! same words.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Deserialize;
use serde::Serialize;

/// Longest title, in characters (not bytes: "é" is one character, two bytes).
pub const TITLE_MAX: usize = 120;
/// Longest body, in characters.
pub const BODY_MAX: usize = 2000;

/// The most bytes one character of a post can take on its way here. The
/// largest characters (emoji, say) are 4 bytes of UTF-8. A form sends each
/// of those bytes as `%F0`: 12 bytes. A script's JSON may send the
/// character as a pair of escapes, `\uD83D\uDE00`: 12 bytes too. Nothing
/// else a valid post may hold takes more (a line break sent as `%0D%0A` is
/// 6 bytes, `\"` is 2).
const WIRE_BYTES_PER_CHAR: usize = 12;

/// The largest post a step reads, in bytes: a form's body, a script's
/// JSON, a WebSocket message. The largest valid post must fit, however it
/// is encoded:
///
/// ```text
///   (120 + 2,000 characters) × 12 bytes  = 25,440 bytes
/// + 1 KiB for the field names (`title=`, `"body":`), separators and a
///   WebSocket message's other fields (`type`, `ref`, `room`, ...)
///                                        = 26,464 bytes
/// rounded up to whole KiB, so that "larger than 26 KiB" is exact:
///                                 26 KiB = 26,624 bytes
/// ```
///
/// Anything larger cannot be a valid post, and is refused (`413`, or close
/// code `1009` on a socket) before it fills the server's memory.
pub const MAX_POST_BYTES: usize =
    ((TITLE_MAX + BODY_MAX) * WIRE_BYTES_PER_CHAR + 1024).div_ceil(1024) * 1024;

/// One item of the feed, as stored and as sent to browsers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewsItem {
    /// Strictly increasing. A client remembers the last id it has seen and
    /// asks for what came after it: the id doubles as a cursor.
    pub id: u64,
    pub title: String,
    pub body: String,
    /// When the feed accepted the item, sent as RFC 3339 (`2026-11-26T09:30:00Z`).
    #[serde(with = "rfc3339")]
    pub posted_at: SystemTime,
}

impl NewsItem {
    /// `2026-11-26T09:30:00Z`, for `<time datetime>` and JSON.
    pub fn iso_time(&self) -> String {
        humantime::format_rfc3339_seconds(self.posted_at).to_string()
    }

    /// `09:30 UTC`, what a person reads next to the title. The server cannot
    /// know the reader's time zone; pages with JavaScript may localize it.
    pub fn short_time(&self) -> String {
        let iso = self.iso_time();
        format!("{} UTC", &iso[11..16])
    }
}

/// The largest attachment a post may carry (step 05).
pub const ATTACHMENT_LIMIT: usize = 256 * 1024;

/// The image types a post may carry.
pub const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// Checks an announced attachment: one of [`IMAGE_TYPES`], 1 byte to 256
/// KiB. Returns the type as one of ours, or what is wrong.
pub fn check_attachment(mime: &str, size: usize) -> Result<&'static str, &'static str> {
    let Some(mime) = IMAGE_TYPES.into_iter().find(|known| *known == mime) else {
        return Err("Attachments must be PNG, JPEG, GIF or WebP images.");
    };
    if size == 0 || size > ATTACHMENT_LIMIT {
        return Err("Attachments must be between 1 byte and 256 KiB.");
    }
    Ok(mime)
}

/// Do the bytes start the way a file of this image type must? A post may
/// say `image/png`; the bytes must agree, or a browser could be handed
/// something else under an image's name.
pub fn looks_like(mime: &str, bytes: &[u8]) -> bool {
    match mime {
        "image/png" => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => bytes.starts_with(b"\xff\xd8\xff"),
        "image/gif" => bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a"),
        "image/webp" => bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP",
        _ => false,
    }
}

/// A post as a script sends it: `{"title": "...", "body": "..."}`. A
/// missing field counts as empty, so that validation explains what is
/// missing instead of a parser error.
///
/// Only a JSON object is a post. Left to itself, serde would also read a
/// struct from an array of its fields in order, so `["Hi", "there"]` would
/// be stored as a post: a shape no page sends, and one that changes
/// meaning the day a field is added. See the `Deserialize` below.
#[derive(Debug, Default)]
pub struct PostRequest {
    pub title: String,
    pub body: String,
}

/// What serde derives for a post, read only from an object (a map).
#[derive(Deserialize)]
struct PostFields {
    #[serde(default)]
    title: String,
    #[serde(default)]
    body: String,
}

impl<'de> Deserialize<'de> for PostRequest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(OnlyAnObject)
    }
}

/// Accepts an object and hands it to [`PostFields`]; refuses an array in
/// words (anything else gets serde's "invalid type: ..., expected" with
/// the same description).
struct OnlyAnObject;

impl<'de> serde::de::Visitor<'de> for OnlyAnObject {
    type Value = PostRequest;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(r#"a post: a JSON object such as {"title": "...", "body": "..."}"#)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<PostRequest, A::Error> {
        let fields = PostFields::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(PostRequest {
            title: fields.title,
            body: fields.body,
        })
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<PostRequest, A::Error> {
        Err(serde::de::Error::custom(
            r#"a post is a JSON object such as {"title": "...", "body": "..."}, not an array"#,
        ))
    }
}

/// A post that passed validation: trimmed, line endings normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPost {
    pub title: String,
    pub body: String,
}

/// What was wrong with a post, per field (`"title"`, `"body"`), in words a
/// person understands. Serializes as `{"title": "..."}`.
pub type FieldErrors = BTreeMap<&'static str, String>;

/// Checks a post the way every step does:
///
/// - the title: 1-120 characters after trimming, on one line (no control
///   characters), with something a reader can see (not only invisible
///   characters such as U+200B, the zero-width space: a post whose title
///   shows as nothing);
/// - the text: 0-2000 characters, no control characters but line breaks;
/// - neither may hold a character that changes the direction of the text
///   around it (U+202A to U+202E, U+2066 to U+2069): it can make a title or
///   a text read as something else than what it says.
///
/// Invisible characters *inside* visible text are fine, since languages
/// and emoji need them (the zero-width joiner that makes 👨‍👩‍👧 one
/// family, the non-joiner of Persian words, the marks U+200E and U+200F
/// that settle where a number goes in Hebrew or Arabic text). A text that is
/// only invisible characters shows as no text, which the rules allow.
///
/// Browsers send line breaks in a `<textarea>` as CRLF; they are stored as
/// LF.
pub fn validate(title: &str, body: &str) -> Result<NewPost, FieldErrors> {
    let title = title.trim();
    let body = body.replace("\r\n", "\n");
    let body = body.trim();
    let mut errors = FieldErrors::new();

    let title_len = title.chars().count();
    if title_len == 0 {
        errors.insert("title", "Please give your news a title.".into());
    } else if title_len > TITLE_MAX {
        errors.insert(
            "title",
            format!("The title is {title_len} characters long; the limit is {TITLE_MAX}."),
        );
    } else if title.chars().any(char::is_control) {
        errors.insert(
            "title",
            "The title must be one line of text, without tabs or line breaks.".into(),
        );
    } else if let Some(found) = first_direction_change(title) {
        errors.insert("title", format!("The title holds {found}"));
    } else if title.chars().all(is_invisible) {
        errors.insert(
            "title",
            "The title is only invisible characters; please give your news a title people can see."
                .into(),
        );
    }

    let body_len = body.chars().count();
    if body_len > BODY_MAX {
        errors.insert(
            "body",
            format!("The text is {body_len} characters long; the limit is {BODY_MAX}."),
        );
    } else if body.chars().any(|c| c.is_control() && c != '\n') {
        errors.insert(
            "body",
            "The text may contain line breaks, but no tabs or other control characters.".into(),
        );
    } else if let Some(found) = first_direction_change(body) {
        errors.insert("body", format!("The text holds {found}"));
    }

    if errors.is_empty() {
        Ok(NewPost {
            title: title.to_owned(),
            body: body.to_owned(),
        })
    } else {
        Err(errors)
    }
}

/// The characters that change the direction of the text after them, up to
/// the end of the paragraph or their closing partner: the embeddings and
/// overrides (U+202A to U+202E) and isolates (U+2066 to U+2069) of Unicode's
/// bidirectional algorithm. Hebrew and Arabic rarely need them (a browser
/// lays out mixed text by itself), but a spoofer does: with a right-to-left
/// override, `invoice` U+202E `fdp.exe` shows as "invoiceexe.pdf". Returns
/// the character's name.
fn direction_change(c: char) -> Option<&'static str> {
    Some(match c {
        '\u{202A}' => "left-to-right embedding",
        '\u{202B}' => "right-to-left embedding",
        '\u{202C}' => "pop directional formatting",
        '\u{202D}' => "left-to-right override",
        '\u{202E}' => "right-to-left override",
        '\u{2066}' => "left-to-right isolate",
        '\u{2067}' => "right-to-left isolate",
        '\u{2068}' => "first strong isolate",
        '\u{2069}' => "pop directional isolate",
        _ => return None,
    })
}

/// The first direction change in `text`, said for a person: "a character
/// that changes the direction of text (U+202E, right-to-left override)...".
fn first_direction_change(text: &str) -> Option<String> {
    let (c, name) = text
        .chars()
        .find_map(|c| direction_change(c).map(|name| (c, name)))?;
    Some(format!(
        "a character that changes the direction of text (U+{:04X}, {name}), \
         which can make it read as something else; please remove it.",
        u32::from(c)
    ))
}

/// Does this character show nothing at all? Spaces; the characters Unicode
/// says to draw as nothing when a font has no use for them
/// (Default_Ignorable_Code_Point: the zero-width space U+200B and joiners,
/// the word joiner U+2060, the byte order mark U+FEFF, the soft hyphen,
/// variation selectors, Hangul fillers, tags...); and the blank Braille
/// pattern U+2800, a favourite for names that look empty.
fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'..='\u{1160}'
                | '\u{17B4}'..='\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFF8}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// `posted_at` as an RFC 3339 string in JSON, whole seconds, UTC.
mod rfc3339 {
    use std::time::SystemTime;

    use serde::Deserialize;
    use serde::Deserializer;
    use serde::Serializer;

    pub fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_seconds(*time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_normal_post_and_trims_it() {
        let post = validate("  Rust 2024 is out \n", "It brings\r\nnew things. ").unwrap();
        assert_eq!(post.title, "Rust 2024 is out");
        assert_eq!(post.body, "It brings\nnew things.");
    }

    #[test]
    fn an_empty_body_is_fine() {
        assert_eq!(validate("Short", "").unwrap().body, "");
    }

    #[test]
    fn a_missing_title_is_explained() {
        let errors = validate("   ", "body").unwrap_err();
        assert_eq!(errors["title"], "Please give your news a title.");
        assert!(!errors.contains_key("body"));
    }

    #[test]
    fn limits_count_characters_not_bytes() {
        // 120 two-byte characters: 240 bytes, still within the limit.
        assert!(validate(&"é".repeat(120), "").is_ok());
        let errors = validate(&"é".repeat(121), "").unwrap_err();
        assert_eq!(
            errors["title"],
            "The title is 121 characters long; the limit is 120."
        );
        assert!(validate("t", &"ü".repeat(2000)).is_ok());
        let errors = validate("t", &"ü".repeat(2001)).unwrap_err();
        assert_eq!(
            errors["body"],
            "The text is 2001 characters long; the limit is 2000."
        );
    }

    #[test]
    fn the_largest_valid_post_fits_however_it_is_encoded() {
        // What the steps' refusals say (`larger than 26 KiB`, close reasons).
        assert_eq!(MAX_POST_BYTES, 26 * 1024);
        let (title, body) = ("🦀".repeat(TITLE_MAX), "📰".repeat(BODY_MAX));
        assert!(validate(&title, &body).is_ok());
        let percent =
            |text: &str| -> String { text.bytes().map(|byte| format!("%{byte:02X}")).collect() };
        let form = format!("title={}&body={}", percent(&title), percent(&body));
        assert!(form.len() <= MAX_POST_BYTES, "{} bytes", form.len());
        // Step 05's post message at its longest, every character escaped.
        let escaped = |text: &str| -> String {
            text.encode_utf16()
                .map(|unit| format!("\\u{unit:04X}"))
                .collect()
        };
        let message = format!(
            r#"{{"type":"post","ref":4294967295,"room":"{}","title":"{}","body":"{}","attachment":{{"mime":"image/jpeg","size":262144}}}}"#,
            "r".repeat(32),
            escaped(&title),
            escaped(&body)
        );
        assert!(message.len() <= MAX_POST_BYTES, "{} bytes", message.len());
        let post: PostRequest = serde_json::from_str(&message).unwrap();
        assert_eq!((post.title, post.body), (title, body));
    }

    #[test]
    fn a_post_is_a_json_object_and_nothing_else() {
        let post: PostRequest = serde_json::from_str(r#"{"title":"t"}"#).unwrap();
        assert_eq!((post.title.as_str(), post.body.as_str()), ("t", ""));
        let post: PostRequest =
            serde_json::from_str(r#"{"body":"b","title":"t","extra":1}"#).unwrap();
        assert_eq!((post.title.as_str(), post.body.as_str()), ("t", "b"));

        let error = serde_json::from_str::<PostRequest>(r#"["t","b"]"#).unwrap_err();
        assert!(
            error.to_string().starts_with(
                r#"a post is a JSON object such as {"title": "...", "body": "..."}, not an array"#
            ),
            "{error}"
        );
        let error = serde_json::from_str::<PostRequest>(r#""t""#).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(r#"invalid type: string "t", expected a post: a JSON object such as"#),
            "{error}"
        );
        assert!(serde_json::from_str::<PostRequest>(r#"{"title":["t"]}"#).is_err());
        assert!(serde_json::from_str::<PostRequest>(r#"{"title":"a","title":"b"}"#).is_err());

        // Inside a socket message, next to other fields (steps 04 to 06).
        #[derive(Deserialize)]
        struct Message {
            #[serde(rename = "ref")]
            reference: u64,
            #[serde(flatten)]
            post: PostRequest,
        }
        let message: Message =
            serde_json::from_str(r#"{"ref":7,"title":"t","body":"b","type":"post"}"#).unwrap();
        assert_eq!(message.reference, 7);
        assert_eq!(
            (message.post.title, message.post.body),
            ("t".into(), "b".into())
        );
    }

    #[test]
    fn control_characters_are_refused_but_body_line_breaks_are_kept() {
        assert!(validate("a\u{7}b", "").unwrap_err().contains_key("title"));
        assert!(validate("a\nb", "").unwrap_err().contains_key("title"));
        assert!(validate("a", "tab\there").unwrap_err().contains_key("body"));
        assert!(validate("a", "nul\0").unwrap_err().contains_key("body"));
        assert_eq!(validate("a", "one\ntwo").unwrap().body, "one\ntwo");
    }

    #[test]
    fn a_title_must_show_something() {
        let invisible = [
            "\u{200B}",
            "\u{2060}\u{FEFF}",
            " \u{200B} \u{200C}\u{200D} ",
            "\u{00AD}",
            "\u{3164}\u{115F}",
            "\u{2800}\u{2800}",
            "\u{FE0F}",
            "\u{E0041}\u{E007F}",
        ];
        for title in invisible {
            let errors = validate(title, "").unwrap_err();
            assert_eq!(
                errors["title"],
                "The title is only invisible characters; please give your news a title people can see.",
                "{title:?}"
            );
        }
        // Inside visible text, the same characters are part of writing.
        for title in [
            "👨\u{200D}👩\u{200D}👧 family news",
            "می\u{200C}خواهم",
            "\u{FEFF}Hello",
            "soft\u{00AD}ware",
            "\u{05E9}\u{05DC}\u{05D5}\u{05DD} 2026\u{200F}",
        ] {
            assert!(validate(title, "").is_ok(), "{title:?}");
        }
        // The text may be empty, so it may be as good as empty too.
        assert_eq!(validate("t", "\u{200B}").unwrap().body, "\u{200B}");
    }

    #[test]
    fn direction_changes_are_refused_in_title_and_text() {
        let errors = validate("invoice\u{202E}fdp.exe", "").unwrap_err();
        assert_eq!(
            errors["title"],
            "The title holds a character that changes the direction of text \
             (U+202E, right-to-left override), which can make it read as \
             something else; please remove it."
        );
        let errors = validate("fine", "before \u{2067}after").unwrap_err();
        assert_eq!(
            errors["body"],
            "The text holds a character that changes the direction of text \
             (U+2067, right-to-left isolate), which can make it read as \
             something else; please remove it."
        );
        for c in ('\u{202A}'..='\u{202E}').chain('\u{2066}'..='\u{2069}') {
            let errors = validate(&format!("a{c}b"), &format!("c{c}d")).unwrap_err();
            let code = format!("(U+{:04X}, ", u32::from(c));
            assert!(errors["title"].contains(&code), "{}", errors["title"]);
            assert!(errors["body"].contains(&code), "{}", errors["body"]);
        }
        // Alone, it is reported as what it is rather than as invisible.
        let errors = validate("\u{202E}", "").unwrap_err();
        assert!(errors["title"].contains("U+202E"));
        // Mixed Hebrew and English needs none of them, and the marks that
        // only settle a neutral character's side are fine.
        assert!(validate("שלום world", "مرحبا 42\u{200E}!").is_ok());
    }

    #[test]
    fn both_fields_are_reported_at_once() {
        let errors = validate("", &"x".repeat(2001)).unwrap_err();
        assert_eq!(errors.len(), 2);
    }

    #[test]
    fn attachments_must_be_small_images_that_look_like_what_they_claim() {
        assert_eq!(check_attachment("image/png", 100), Ok("image/png"));
        assert!(check_attachment("image/svg+xml", 100).is_err());
        assert!(check_attachment("image/png", 0).is_err());
        assert!(check_attachment("image/png", ATTACHMENT_LIMIT + 1).is_err());
        assert!(looks_like("image/png", b"\x89PNG\r\n\x1a\nrest"));
        assert!(looks_like("image/gif", b"GIF89a..."));
        assert!(looks_like("image/webp", b"RIFF\0\0\0\0WEBPVP8 "));
        assert!(looks_like("image/jpeg", b"\xff\xd8\xff\xe0"));
        assert!(!looks_like("image/png", b"GIF89a..."));
        assert!(!looks_like("image/webp", b"RIFF\0\0\0\0WAVE"));
    }

    #[test]
    fn items_travel_as_json_with_an_rfc3339_time() {
        let item = NewsItem {
            id: 7,
            title: "t".into(),
            body: "b".into(),
            posted_at: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000),
        };
        let json = serde_json::to_string(&item).unwrap();
        assert_eq!(
            json,
            r#"{"id":7,"title":"t","body":"b","posted_at":"2026-11-18T11:06:40Z"}"#
        );
        assert_eq!(serde_json::from_str::<NewsItem>(&json).unwrap(), item);
        assert_eq!(item.short_time(), "11:06 UTC");
    }
}
