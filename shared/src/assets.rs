//! The static files every step serves: the stylesheet, the network meter
//! and the wire view (the scripts every page loads, step 01's included),
//! and what renders news for the pages with a script of their own. They are compiled into the binary, so a step
//! is one file to run, and each carries an `ETag` so that a reload costs a
//! `304 Not Modified` instead of the whole file.

use hyper::HeaderMap;
use hyper::StatusCode;
use hyper::header;

use crate::http;
use crate::http::Response;

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// A fingerprint of the content: it changes exactly when the file does.
    /// A quoted hex string, `"1f0c..."`.
    etag: [u8; 18],
}

macro_rules! asset {
    ($path:literal, $file:literal, $content_type:literal) => {
        Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!($file),
            etag: const_etag(include_bytes!($file)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!(
        "/static/style.css",
        "../static/style.css",
        "text/css; charset=utf-8"
    ),
    asset!(
        "/static/meter.js",
        "../static/meter.js",
        "text/javascript; charset=utf-8"
    ),
    asset!(
        "/static/wire.js",
        "../static/wire.js",
        "text/javascript; charset=utf-8"
    ),
    asset!(
        "/static/news.js",
        "../static/news.js",
        "text/javascript; charset=utf-8"
    ),
];

/// The asset at `path`, or `None` when there is no such file.
pub fn get(path: &str, headers: &HeaderMap) -> Option<Response> {
    let asset = ASSETS.iter().find(|asset| asset.path == path)?;
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tag| tag.as_bytes() == asset.etag);
    let response = if unchanged {
        http::response(StatusCode::NOT_MODIFIED, asset.content_type, "")
    } else {
        http::response(StatusCode::OK, asset.content_type, asset.body)
    };
    // `no-cache` means "check with me before using your copy": with the
    // ETag, that check is a cheap 304, and an edited file shows at once.
    let response = http::with_header(response, header::CACHE_CONTROL, "no-cache");
    let etag = std::str::from_utf8(&asset.etag).expect("an ETag is hex digits");
    Some(http::with_header(response, header::ETAG, etag))
}

/// A quoted hex FNV-1a hash of the bytes, computed at compile time.
const fn const_etag(bytes: &[u8]) -> [u8; 18] {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    let digits = b"0123456789abcdef";
    let mut tag = [b'"'; 18];
    let mut j = 0;
    while j < 16 {
        tag[1 + j] = digits[((hash >> (60 - 4 * j)) & 0xf) as usize];
        j += 1;
    }
    tag
}
