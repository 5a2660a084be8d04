// meter.js: the network meter in the footer of every step.
//
// It counts what this page sends and receives, so that the cost of each
// era is something you can point at:
// - requests: every XMLHttpRequest and fetch the page starts, every
//   WebSocket, and every connection an EventSource makes (the first one,
//   and each time it reconnects by itself);
// - nothing new: answers that brought no news (304, or an empty list);
// - received: bytes that arrived, headers included (from the browser's
//   Resource Timing for HTTP, frame sizes for WebSocket, event sizes for
//   EventSource);
// - frames: WebSocket messages in each direction;
// - events: server-sent events received (step 03b);
// - post → screen: from pressing Post to seeing the item in this tab;
// - WebSocket or EventSource: whether the page's connection is open, and
//   why it last closed.
//
// It works by wrapping XMLHttpRequest, fetch, WebSocket and EventSource
// before the page's own script uses them: the page does not have to tell it
// anything, except which post it is waiting for (meter.posted) and what it
// showed (meter.shown).
//
// Step 01 has no script of its own, and loads this one with
// data-count="page-loads": there the requests are the page loads themselves
// (see countPageLoads, at the end).
//
// The same hooks keep a record of each exchange for the wire view (wire.js,
// the diagram above the meter): see `note`, below.
const meter = (() => {
  const countsPageLoads = document.currentScript?.dataset.count === 'page-loads';
  const stats = { requests: 0, empty: 0, bytes: 0, framesIn: 0, framesOut: 0, events: 0 };
  let latency = null;
  let socketState = null;
  const postedAt = new Map(); // id -> when Post was pressed
  const shownAt = new Map(); // id -> when it appeared (it may beat the ack)

  // The wire view draws every exchange, one row each. It loads after the
  // page (`defer`: it is not needed to show the news), while the meter sees
  // everything from the start; so the meter keeps a record of each exchange
  // here ({kind: 'http', method, url, start, end, status, bytes, ...}, see
  // the hooks below), updates it as it goes, and tells whoever listens.
  // Times are the clock's milliseconds (as Date.now()), so that a record
  // means the same in another page, the launcher's.
  const records = [];
  const listeners = [];
  const now = () => performance.timeOrigin + performance.now();
  function note(record) {
    if (!record.noted) {
      record.noted = true;
      records.push(record);
      if (records.length > 100) records.shift();
    }
    // A listener that fails (the wire view) must never stop the page's
    // own traffic: this runs inside the page's send().
    for (const listener of listeners) {
      try {
        listener(record);
      } catch (error) {
        console.error('meter.js: a listener failed', error);
      }
    }
  }
  // wire.js calls this: every record so far, then each one as it changes.
  function listen(listener) {
    listeners.push(listener);
    for (const record of records) listener(record);
  }

  // "Nothing new": 304 Not Modified, or a JSON answer with no items.
  function carriesNothing(status, text) {
    return status === 304 || (status === 200 && /"items":\[\]/.test(text));
  }

  // What an exchange asked for, as the wire view shows it: the method and
  // the path with its query (`GET /news?since=41`), and the whole address,
  // to find the browser's Resource Timing entry for it.
  function exchange(method, url) {
    const address = new URL(url, location.href);
    const what = `${method.toUpperCase()} ${address.pathname}${address.search}`;
    return { kind: 'http', what, href: address.href, start: now(), end: null, status: null, bytes: null };
  }
  const unsized = []; // answers still waiting for their size

  const open = XMLHttpRequest.prototype.open;
  XMLHttpRequest.prototype.open = function (method, url, ...rest) {
    this.wireMethod = method;
    this.wireUrl = url;
    return open.call(this, method, url, ...rest);
  };

  const send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.send = function (body) {
    stats.requests++;
    const record = exchange(this.wireMethod ?? 'GET', this.wireUrl ?? location.href);
    note(record);
    this.addEventListener('loadend', () => {
      const text = this.responseType === '' || this.responseType === 'text' ? this.responseText : '';
      record.empty = carriesNothing(this.status, text);
      if (record.empty) stats.empty++;
      record.end = now();
      record.status = this.status; // 0: no answer (the server is away)
      if (this.status !== 0) unsized.push(record);
      note(record);
      draw();
    });
    draw();
    return send.call(this, body);
  };

  const nativeFetch = window.fetch;
  window.fetch = (...args) => {
    stats.requests++;
    const [input, init] = args;
    const record = exchange(init?.method ?? input?.method ?? 'GET', input?.url ?? String(input));
    note(record);
    draw();
    const answer = nativeFetch(...args);
    const done = (status) => {
      record.end = now();
      record.status = status;
      record.empty = status === 304;
      if (status !== 0) unsized.push(record);
      note(record);
    };
    answer.then((response) => done(response.status), () => done(0));
    return answer;
  };

  // Bytes on the wire for HTTP, as the browser counted them.
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if (entry.initiatorType === 'xmlhttprequest' || entry.initiatorType === 'fetch') {
        stats.bytes += entry.transferSize;
        // The record of that exchange, for the wire view: the oldest
        // answer to the same address that has no size yet.
        const at = unsized.findIndex((record) => record.href === entry.name);
        if (at !== -1) {
          const [record] = unsized.splice(at, 1);
          record.bytes = entry.transferSize;
          note(record);
        }
      }
    }
    if (unsized.length > 20) unsized.shift();
    performance.clearResourceTimings();
    draw();
  }).observe({ type: 'resource' });

  function frameSize(data) {
    if (typeof data === 'string') return new TextEncoder().encode(data).length;
    return data.byteLength ?? data.size ?? 0;
  }

  // A frame's name for the wire view: the `type` of a JSON message
  // (`news`, `posted`, `ping`...), or what else it is.
  function frameName(data) {
    if (typeof data !== 'string') return 'binary';
    return /^\{"type":"([a-z_]+)"/.exec(data)?.[1] ?? 'text';
  }
  function frame(dir, data) {
    note({ kind: 'frame', dir, what: frameName(data), bytes: frameSize(data), start: now() });
  }

  // WebSocket: the same class, counting every frame.
  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class extends NativeWebSocket {
    constructor(...args) {
      super(...args);
      stats.requests++; // the HTTP request that asks for the upgrade
      socketState = 'connecting';
      // The upgrade is an exchange (GET, answered 101); the socket it opens
      // stays open until it closes, with frames in between.
      const record = exchange('GET', this.url);
      record.kind = 'socket';
      note(record);
      this.addEventListener('open', () => {
        socketState = 'open';
        record.status = 101;
        record.opened = now();
        note(record);
        draw();
      });
      this.addEventListener('close', (event) => {
        socketState = `closed (${event.code})`;
        record.end = now();
        record.code = event.code;
        note(record);
        draw();
      });
      this.addEventListener('message', (event) => {
        stats.framesIn++;
        stats.bytes += frameSize(event.data);
        frame('in', event.data);
        draw();
      });
      draw();
    }
    send(data) {
      stats.framesOut++;
      frame('out', data);
      draw();
      return super.send(data);
    }
  };

  // EventSource: the same class, counting every event and every connection.
  // An event goes to the listeners of its name (`event: news`), so the
  // meter listens to each name the page listens to, once.
  const NativeEventSource = window.EventSource;
  window.EventSource = class extends NativeEventSource {
    constructor(...args) {
      super(...args);
      stats.requests++; // the request whose answer is the stream
      socketState = 'connecting';
      this.counted = new Set();
      this.count('message'); // events without an `event:` line
      // The stream is one exchange whose answer stays open: a record from
      // the request until the answer breaks off, and one per reconnection.
      const stream = () => {
        this.record = exchange('GET', this.url);
        this.record.kind = 'stream';
        note(this.record);
      };
      stream();
      this.addEventListener('open', () => {
        socketState = 'open';
        this.record.status = 200;
        this.record.opened = now();
        note(this.record);
        draw();
      });
      this.addEventListener('error', () => {
        this.record.end = now();
        this.record.status ??= 0;
        note(this.record);
        if (this.readyState === NativeEventSource.CONNECTING) {
          // The browser tries again by itself, with a new request.
          stats.requests++;
          socketState = 'reconnecting';
          stream();
        } else {
          socketState = 'closed';
        }
        draw();
      });
      draw();
    }
    count(type) {
      if (this.counted.has(type)) return;
      this.counted.add(type);
      super.addEventListener(type, (event) => {
        stats.events++;
        // What came over the wire for it: its lines, and the blank one.
        const id = event.lastEventId ? `id: ${event.lastEventId}\n` : '';
        const name = type === 'message' ? '' : `event: ${type}\n`;
        const size = frameSize(`${id}${name}data: ${event.data}\n\n`);
        stats.bytes += size;
        note({ kind: 'event', dir: 'in', what: type, id: event.lastEventId, bytes: size, start: now() });
        draw();
      });
    }
    addEventListener(type, ...rest) {
      if (type !== 'open' && type !== 'error') this.count(type);
      return super.addEventListener(type, ...rest);
    }
  };

  function posted(id, startedAt) {
    postedAt.set(String(id), startedAt);
    settle(String(id));
  }

  function shown(id) {
    shownAt.set(String(id), performance.now());
    note({ kind: 'shown', id: Number(id), start: now() });
    settle(String(id));
  }

  function settle(id) {
    if (postedAt.has(id) && shownAt.has(id)) {
      latency = Math.max(0, shownAt.get(id) - postedAt.get(id));
      postedAt.delete(id);
      shownAt.delete(id);
      draw();
    }
    // Items from other tabs are never posted here: forget them.
    if (shownAt.size > 100) shownAt.delete(shownAt.keys().next().value);
  }

  function bytes(n) {
    if (n < 1024) return n + ' B';
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KiB';
    return (n / 1024 / 1024).toFixed(2) + ' MiB';
  }

  let drawing = false;
  function draw() {
    if (drawing) return;
    drawing = true;
    requestAnimationFrame(() => {
      drawing = false;
      const show = (name, text) => {
        const node = document.querySelector(`[data-meter="${name}"]`);
        if (node) node.textContent = text;
      };
      show('requests', stats.requests);
      show('empty', stats.empty);
      show('bytes', bytes(stats.bytes));
      show('frames', `${stats.framesIn} ↓ ${stats.framesOut} ↑`);
      show('events', stats.events);
      show('latency', latency === null ? '–' : `${Math.round(latency)} ms`);
      if (socketState !== null) {
        show('socket', socketState);
        document.querySelector('[data-meter-socket]')?.removeAttribute('hidden');
      }
    });
  }

  // Step 01: every look is a GET of the whole page, and every post a POST
  // answered 303, then that GET. Each load starts a new page, and this
  // script with it, so this tab's counts wait in sessionStorage (kept per
  // tab and per origin while the tab is open) for the next load. The
  // browser's Navigation Timing says what this load cost.
  function countPageLoads() {
    const saved = JSON.parse(sessionStorage.getItem('meter')) ?? {};
    Object.assign(stats, saved.stats);
    latency = saved.latency ?? null;
    draw();
    const cursor = document.getElementById('items')?.dataset.cursor;
    window.addEventListener('load', () => {
      const [load] = performance.getEntriesByType('navigation');
      // From the browser's cache (Back, say): no request, nothing received.
      if (load.transferSize === 0) return;
      stats.requests += 1 + load.redirectCount;
      stats.bytes += load.transferSize;
      // Nothing newer than on the last load: a whole page for nothing.
      if (saved.stats && saved.cursor === cursor) stats.empty++;
      // Redirected here: by the 303 that answers a post. The load started
      // when Post was pressed, and the new item is on screen once the page
      // is read.
      if (load.redirectCount > 0) latency = load.domInteractive;
      sessionStorage.setItem('meter', JSON.stringify({ stats, latency, cursor }));
      draw();
    });
  }
  if (countsPageLoads) countPageLoads();

  return { posted, shown, stats, listen };
})();
