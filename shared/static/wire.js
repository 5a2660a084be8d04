// wire.js: the wire view, above the meter on every step's page.
//
// A live sequence diagram of what this page and its server say to each
// other, newest at the bottom, one row each:
// - an exchange (a request and its answer, ⇄): `GET /news?since=41`, then
//   `304 Not Modified, nothing new`, its size and how long the answer
//   took. While the
//   server holds the question (a long poll, step 03), the row stays open
//   and its bar grows until the answer comes;
// - the WebSocket's upgrade (`GET /ws?since=41`, `101`), whose bar stays
//   open as long as the socket, then one row per frame, in (←) or out (→),
//   named by its `type`: `news`, `post`, `posted`...;
// - the EventSource's stream (`GET /events`, `200`, open), then one row per
//   event: `← event news #42`.
// Empty answers (a 304, or a list of no items) say "nothing new" and are
// drawn faint: that is what polling mostly gets.
//
// It draws what meter.js records: the meter wraps XMLHttpRequest, fetch,
// WebSocket and EventSource before the page's own script runs, and this
// file, loaded with `defer` (after the page, off its critical path), asks
// it for every record so far and then each one as it changes.
// (WebSocket pings and pongs are not among the frames: the browser answers
// them itself and never shows them to a page, nor to DevTools.)
//
// Step 01 has no script of its own: there the exchanges are the page loads
// themselves, read from the browser's Navigation Timing, and kept in
// sessionStorage (per tab) from one load to the next, so that a post shows
// as what it is: `POST /news` answered `303 See Other`, then `GET /`.
//
// In the launcher, where the page is a pane, it also tells the index what
// it showed and what it cost so far, for the index's timeline (see
// `tellTheLauncher`, at the end).
//
// Everything it shows goes in with textContent: an address or a frame's
// name is text, never HTML.
(() => {
  const view = document.querySelector('details.wire');
  if (!view || typeof meter === 'undefined') return;
  const list = view.querySelector('.wire-rows');
  const last = view.querySelector('.wire-last');
  const KEEP = 40; // rows on screen; older ones go
  const rows = new Map(); // record -> its row
  const now = () => performance.timeOrigin + performance.now();

  // Open on a screen with room for it; a line (the latest row) on a phone
  // or in one of the launcher's small panes. It follows the screen until
  // someone opens or closes it by hand.
  const roomy = matchMedia('(min-width: 40rem) and (min-height: 34rem)');
  let chosen = false;
  view.open = roomy.matches;
  roomy.addEventListener('change', () => {
    if (!chosen) view.open = roomy.matches;
  });
  view.querySelector('summary').addEventListener('click', () => {
    chosen = true;
  });

  const REASONS = {
    101: 'Switching Protocols',
    200: 'OK',
    201: 'Created',
    303: 'See Other',
    304: 'Not Modified',
    400: 'Bad Request',
    403: 'Forbidden',
    413: 'Payload Too Large',
    422: 'Unprocessable Content',
    429: 'Too Many Requests',
    503: 'Service Unavailable',
  };

  function clock(time) {
    const date = new Date(time);
    const two = (n) => String(n).padStart(2, '0');
    return `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}.${Math.floor(date.getMilliseconds() / 100)}`;
  }

  function duration(ms) {
    if (ms < 1000) return `${Math.round(ms)} ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
    return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
  }

  function bytes(n) {
    if (n === null || n === undefined) return '';
    if (n < 1024) return n + ' B';
    return (n / 1024).toFixed(1) + ' KiB';
  }

  // A frame or an event: its name, `frame news`, `event news #42`.
  function message(record) {
    if (record.kind === 'frame') return `frame ${record.what}`;
    return record.id ? `event ${record.what} #${record.id}` : `event ${record.what}`;
  }

  // What came back, in words: `304 Not Modified`, `nothing new`, `open`.
  function answer(record) {
    if (record.status === null || record.status === undefined) return 'waiting…';
    if (record.status === 0) return 'no answer';
    if (record.status === 'cache') return "from the browser's cache";
    let text = `${record.status} ${REASONS[record.status] ?? ''}`.trim();
    if (record.empty) text += ', nothing new';
    if (record.kind === 'socket' && record.end === null) text += ', open';
    if (record.kind === 'socket' && record.end !== null) text += `, closed (${record.code})`;
    if (record.kind === 'stream' && record.end === null) text += ', open';
    if (record.kind === 'stream' && record.end !== null) text += ', broke off';
    return text;
  }

  // A row: its time, an arrow (→ the page said it, ← the server did), what
  // was asked or sent, what came back, its size, and for an exchange a bar
  // as long as the answer took (a long poll's 25 s fill it).
  function row(record) {
    const item = document.createElement('li');
    for (const name of ['time', 'arrow', 'what', 'answer', 'bytes', 'held']) {
      const cell = document.createElement('span');
      cell.className = `wire-${name}`;
      item.append(cell);
    }
    const bar = document.createElement('span');
    bar.className = 'wire-bar';
    item.querySelector('.wire-held').append(bar, document.createElement('span'));
    return item;
  }

  function fill(item, record) {
    const exchange = record.kind === 'http' || record.kind === 'socket' || record.kind === 'stream';
    const open = exchange && (record.end === null || record.end === undefined);
    const dir = exchange ? 'both' : record.dir;
    const set = (name, text) => (item.querySelector(`.wire-${name}`).textContent = text);
    item.className = `wire-row wire-${record.kind}`;
    item.dataset.kind = record.kind;
    item.dataset.dir = dir;
    item.dataset.what = record.what;
    if (exchange) item.dataset.status = record.status ?? '';
    item.toggleAttribute('data-empty', Boolean(record.empty));
    item.toggleAttribute('data-open', open);
    set('time', clock(record.start));
    set('arrow', dir === 'out' ? '→' : dir === 'in' ? '←' : '⇄');
    set('what', exchange ? record.what : message(record));
    set('answer', exchange ? answer(record) : '');
    set('bytes', bytes(record.bytes));
    if (exchange) {
      const held = (open ? now() : record.end) - record.start;
      // 3em for 25 s, the longest a long poll is held.
      item.querySelector('.wire-bar').style.width = `${Math.min(1, held / 25000) * 3}em`;
      item.querySelector('.wire-held > span:last-child').textContent = duration(held);
    }
    return item;
  }

  function draw(record) {
    if (record.kind === 'shown') return;
    let item = rows.get(record);
    const stuck = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    if (!item) {
      item = row(record);
      rows.set(record, item);
      list.append(item);
      // Past KEEP rows, the oldest goes; but not one still open (the
      // socket, the stream, a held question): it is still going on.
      while (list.children.length > KEEP) {
        const oldest = list.querySelector(':scope > li:not([data-open])');
        if (!oldest) break;
        for (const [key, value] of rows) if (value === oldest) rows.delete(key);
        oldest.remove();
      }
    }
    fill(item, record);
    // The summary line (all a closed view shows): the newest row.
    const newest = list.lastElementChild;
    last.textContent = [...newest.children].slice(1, 5).map((cell) => cell.textContent).filter(Boolean).join(' ');
    const count = list.children.length;
    view.querySelector('.wire-count').textContent = `${count} ${count === 1 ? 'row' : 'rows'}`;
    if (stuck) list.scrollTop = list.scrollHeight;
  }

  // Bars of exchanges still open grow with the time they have been held.
  setInterval(() => {
    for (const [record, item] of rows) if (item.hasAttribute('data-open')) fill(item, record);
  }, 1000);

  // Step 01: a row for each page load, kept across loads in this tab.
  function pageLoads() {
    const saved = JSON.parse(sessionStorage.getItem('wire')) ?? { records: [] };
    const cursor = document.getElementById('items')?.dataset.cursor;
    for (const record of saved.records) draw(record);
    // A post leaves this page: note when, for the next one to show.
    document.querySelector('form.post-form')?.addEventListener('submit', () => {
      sessionStorage.setItem('wire-post', JSON.stringify({ at: now() }));
    });
    window.addEventListener('load', () => {
      const [load] = performance.getEntriesByType('navigation');
      const posted = JSON.parse(sessionStorage.getItem('wire-post'));
      sessionStorage.removeItem('wire-post');
      const started = performance.timeOrigin;
      const address = new URL(load.name);
      const page = `${address.pathname}${address.search}`;
      const status = load.responseStatus || 200;
      const records = [];
      if (load.transferSize === 0) {
        // Back or Forward: the page came from the browser's cache.
        records.push({ kind: 'http', what: `GET ${page}`, start: started, end: started, status: 'cache', bytes: 0 });
      } else if (load.redirectCount > 0) {
        // Post/Redirect/Get: the POST was answered 303 See Other, and the
        // browser loaded the page it named with a GET.
        const redirected = started + (load.redirectEnd || load.fetchStart);
        records.push({ kind: 'http', what: 'POST /news', start: posted?.at ?? started, end: redirected, status: 303, bytes: null });
        records.push({ kind: 'http', what: `GET ${page}`, start: started + load.fetchStart, end: started + load.responseEnd, status, bytes: load.transferSize });
      } else if (posted && address.pathname === '/news') {
        // A refused post: the answer (422) is the form again, with messages.
        records.push({ kind: 'http', what: 'POST /news', start: posted.at, end: started + load.responseEnd, status, bytes: load.transferSize });
      } else {
        records.push({ kind: 'http', what: `GET ${page}`, start: started + load.fetchStart, end: started + load.responseEnd, status, bytes: load.transferSize });
      }
      // A whole page, and nothing newer than on the last load.
      const pageLoad = records[records.length - 1];
      pageLoad.empty = saved.cursor !== undefined && saved.cursor === cursor && status === 200;
      for (const record of records) draw(record);
      const kept = [...saved.records, ...records].slice(-KEEP);
      sessionStorage.setItem('wire', JSON.stringify({ records: kept, cursor }));
      // What the page shows is what it got: tell the launcher.
      const ids = Array.from(document.querySelectorAll('#items > [data-id]'), (node) => Number(node.dataset.id));
      tellTheLauncher(ids, now());
    });
  }

  // In the launcher's index this page is a pane (a frame from another
  // port: another origin). It tells the index, with postMessage, which
  // items it has shown, when, and what it has cost so far: the index's
  // timeline draws when each era had a post, and what it took. Only
  // numbers go, and only to the page this one is framed in.
  const framed = window.parent !== window;
  const launcher = location.ancestorOrigins?.[0] ?? '*';
  function tellTheLauncher(shown, at) {
    if (!framed) return;
    const { requests, bytes } = meter.stats;
    window.parent.postMessage({ workshop: 'wire', shown, at, requests, bytes }, launcher);
  }
  let telling = false;
  function tell(record) {
    if (record.kind === 'shown') return tellTheLauncher([record.id], record.start);
    // Anything else changes the counts: tell them, once per turn.
    if (telling) return;
    telling = true;
    setTimeout(() => {
      telling = false;
      tellTheLauncher([], now());
    });
  }

  if (document.querySelector('script[data-count="page-loads"]')) pageLoads();
  meter.listen((record) => {
    draw(record);
    tell(record);
  });
})();
