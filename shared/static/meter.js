// meter.js: the network meter in the footer of steps 02 to 05.
//
// It counts what this page sends and receives, so that the cost of each
// era is something you can point at:
// - requests: every XMLHttpRequest and fetch the page starts;
// - nothing new: answers that brought no news (304, or an empty list);
// - received: bytes that arrived, headers included (from the browser's
//   Resource Timing for HTTP, frame sizes for WebSocket);
// - frames: WebSocket messages in each direction;
// - post → screen: from pressing Post to seeing the item in this tab;
// - WebSocket: whether the page's socket is open, and why it last closed.
//
// It works by wrapping XMLHttpRequest, fetch and WebSocket before the page's
// own script uses them: the page does not have to tell it anything, except
// which post it is waiting for (meter.posted) and what it showed (meter.shown).
const meter = (() => {
  const stats = { requests: 0, empty: 0, bytes: 0, framesIn: 0, framesOut: 0 };
  let latency = null;
  let socketState = null;
  const postedAt = new Map(); // id -> when Post was pressed
  const shownAt = new Map(); // id -> when it appeared (it may beat the ack)

  // "Nothing new": 304 Not Modified, or a JSON answer with no items.
  function carriesNothing(status, text) {
    return status === 304 || (status === 200 && /"items":\[\]/.test(text));
  }

  const send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.send = function (body) {
    stats.requests++;
    this.addEventListener('loadend', () => {
      const text = this.responseType === '' || this.responseType === 'text' ? this.responseText : '';
      if (carriesNothing(this.status, text)) stats.empty++;
      draw();
    });
    draw();
    return send.call(this, body);
  };

  const nativeFetch = window.fetch;
  window.fetch = (...args) => {
    stats.requests++;
    draw();
    return nativeFetch(...args);
  };

  // Bytes on the wire for HTTP, as the browser counted them.
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if (entry.initiatorType === 'xmlhttprequest' || entry.initiatorType === 'fetch') {
        stats.bytes += entry.transferSize;
      }
    }
    performance.clearResourceTimings();
    draw();
  }).observe({ type: 'resource' });

  function frameSize(data) {
    if (typeof data === 'string') return new TextEncoder().encode(data).length;
    return data.byteLength ?? data.size ?? 0;
  }

  // WebSocket: the same class, counting every frame.
  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class extends NativeWebSocket {
    constructor(...args) {
      super(...args);
      stats.requests++; // the HTTP request that asks for the upgrade
      socketState = 'connecting';
      this.addEventListener('open', () => {
        socketState = 'open';
        draw();
      });
      this.addEventListener('close', (event) => {
        socketState = `closed (${event.code})`;
        draw();
      });
      this.addEventListener('message', (event) => {
        stats.framesIn++;
        stats.bytes += frameSize(event.data);
        draw();
      });
      draw();
    }
    send(data) {
      stats.framesOut++;
      draw();
      return super.send(data);
    }
  };

  function posted(id, startedAt) {
    postedAt.set(String(id), startedAt);
    settle(String(id));
  }

  function shown(id) {
    shownAt.set(String(id), performance.now());
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
      show('latency', latency === null ? '–' : `${Math.round(latency)} ms`);
      if (socketState !== null) {
        show('socket', socketState);
        document.querySelector('[data-meter-socket]')?.removeAttribute('hidden');
      }
    });
  }

  return { posted, shown, stats };
})();
