//! Files a step carries over from the step before it, unchanged: byte for
//! byte the same, so that `diff -ruN` between the two steps shows nothing
//! for them ("skip these, you read them in 04"), and so that a fix made in
//! one copy is made in every copy.

use std::path::Path;

/// (earlier step, later step, files the later one carries over).
const CARRIED_OVER: &[(&str, &str, &[&str])] = &[
    (
        "04-websocket",
        "05-rooms",
        &["src/handshake.rs", "src/socket.rs", "src/echo.rs"],
    ),
    (
        "05-rooms",
        "06-redis",
        &[
            "src/handshake.rs",
            "src/socket.rs",
            "src/echo.rs",
            // The protocol did not change, only where the rooms live: the
            // page and the client library are step 05's.
            "templates/index.html",
            "templates/admin.html",
            "static/rooms.js",
        ],
    ),
];

#[test]
fn carried_over_files_are_the_previous_steps_byte_for_byte() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut differ = Vec::new();
    for (earlier, later, files) in CARRIED_OVER {
        for file in *files {
            let read = |step: &str| {
                let path = root.join(step).join(file);
                std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
            };
            if read(earlier) != read(later) {
                differ.push(format!("diff -u {earlier}/{file} {later}/{file}"));
            }
        }
    }
    assert!(
        differ.is_empty(),
        "these files are carried over from one step to the next and must stay \
         the same in both (make the change in every copy):\n  {}",
        differ.join("\n  ")
    );
}
