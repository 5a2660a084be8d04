//! The steps of the workshop, in order: what the navigation, each page's
//! era header and the launcher say about them, and where each one listens.

/// Where the launcher's index listens by default; step NN listens on
/// `BASE_PORT` + NN (see [`Step::offset`]).
pub const BASE_PORT: u16 = 3000;

/// One era of the workshop.
#[derive(Debug)]
pub struct Step {
    /// `"01"`: the folder prefix, and the order of the steps. A letter
    /// marks a step that came in between two others (`"03b"`).
    pub number: &'static str,
    /// The folder and binary name, `"01-form-post"`.
    pub slug: &'static str,
    /// `"Form POST"`.
    pub name: &'static str,
    /// The port the step listens on, standalone and in the launcher:
    /// 3000 + NN for step NN, and ten more for a letter (`"03b"` on 3013).
    pub port: u16,
    /// When this was how the web did it.
    pub era: &'static str,
    /// One paragraph: what this era is.
    pub about: &'static str,
    /// What to look at while it runs.
    pub watch: &'static str,
}

/// Every step, in order.
pub const STEPS: [Step; 7] = [
    Step {
        number: "01",
        slug: "01-form-post",
        name: "Form POST",
        port: 3001,
        era: "1995 onwards",
        about: "The web before JavaScript: a page is a document, and the only way to \
                change it is to load a new one. Posting sends a form, the server \
                answers 303 See Other, and the browser loads the page again.",
        watch: "Post in one tab and look at another: nothing happens until you reload. \
                In the Network tab, each post is a POST, a 303 and a GET of the whole page.",
    },
    Step {
        number: "02",
        slug: "02-xhr-polling",
        name: "XHR polling",
        port: 3002,
        era: "2005, the Ajax years",
        about: "A script on the page asks the server \u{201c}anything new?\u{201d} every \
                two seconds with XMLHttpRequest and adds what comes back, without \
                reloading. Simple and robust, but most answers say \u{201c}no\u{201d}.",
        watch: "The Network tab fills with requests while nobody posts; the meter \
                below counts the empty answers.",
    },
    Step {
        number: "03",
        slug: "03-long-polling",
        name: "Long polling",
        port: 3003,
        era: "2006\u{2013}2011, Comet",
        about: "The page still asks, but the server holds the question until it has \
                an answer, or 25 seconds pass. News arrives at once, and an idle page \
                costs one request every 25 seconds.",
        watch: "Each request stays pending in the Network tab until someone posts.",
    },
    Step {
        number: "03b",
        slug: "03b-server-sent-events",
        name: "Server-sent events",
        port: 3013,
        era: "2010 onwards, EventSource",
        about: "The long poll that never ends: the page opens one request with \
                EventSource, and the server keeps the answer open, writing an event \
                into it for each item. If the answer breaks off, the browser \
                reconnects by itself and says which event it saw last.",
        watch: "One /events request that never completes in the Network tab; its \
                EventStream view lists each event as it arrives.",
    },
    Step {
        number: "04",
        slug: "04-websocket",
        name: "WebSocket",
        port: 3004,
        era: "2011, RFC 6455",
        about: "One HTTP request upgrades to a WebSocket: a connection that stays open, \
                where either side sends a message whenever it likes. No more asking.",
        watch: "One request with status 101 in the Network tab; its Messages view \
                shows every frame.",
    },
    Step {
        number: "05",
        slug: "05-rooms",
        name: "Rooms",
        port: 3005,
        era: "2010s, the Socket.IO ideas",
        about: "Rooms, acknowledgements, binary attachments and automatic reconnection, \
                built by hand on one WebSocket: what libraries such as Socket.IO do for you.",
        watch: "The frames in the Messages view: join, news, presence, and binary frames \
                carrying images.",
    },
    Step {
        number: "06",
        slug: "06-redis",
        name: "Redis",
        port: 3006,
        era: "today, scaling out",
        about: "The rooms of step 05, served by as many servers as you like: each room's \
                history is a Redis stream, and every server reads the streams its sockets \
                follow. Post on one server, and the members on another see it.",
        watch: "Two servers on two ports, a tab on each: the same rooms, the same news, \
                the same members count. Stop Redis and watch the pages wait and come back.",
    },
];

impl Step {
    /// How far above the launcher's base port this step listens: 1 for
    /// step 01, 13 for step 03b.
    pub fn offset(&self) -> u16 {
        self.port - BASE_PORT
    }

    /// This step's place in [`STEPS`].
    pub(crate) fn index(&self) -> usize {
        STEPS
            .iter()
            .position(|step| step.slug == self.slug)
            .expect("every step is listed in STEPS")
    }
}
