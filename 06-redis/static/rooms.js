// rooms.js: the client of step 05's rooms protocol, served by the server at
// /rooms.js the way Socket.IO serves /socket.io/socket.io.js.
//
//   const client = rooms.connect('/ws', { cursors: { general: 41 } });
//   client.on('news', (message) => ...);          // {room, item, attachment?}
//   client.on('attachment', ({room, id, blob}) => ...);
//   client.join('rust', (reply) => ...);           // reply: joined, or error
//   client.emit('post', { room, title, body, key }, (reply) => ...);
//
// What it does for you, and what Socket.IO does too:
// - acknowledgements: emit() gives each message a `ref`; the server's answer
//   carries it back, and the callback gets it (or an error after 5 s);
// - binary: a JSON message announces attachments, the binary frames that
//   follow are paired with them in order;
// - reconnection: when the socket closes it waits (0.5 s doubling to 10 s,
//   with jitter), reconnects, and rejoins every room with `since` = the last
//   id it saw there, so nothing is missed and nothing comes twice.
const rooms = (() => {
  const ACK_TIMEOUT = 5000;

  function connect(path, { cursors = {} } = {}) {
    const handlers = new Map(); // event name -> [handler]
    const cursor = new Map(Object.entries(cursors)); // joined room -> last id seen
    const acks = new Map(); // ref -> { callback, timer }
    const expected = []; // binary frames announced, not yet received
    let socket = null;
    let failures = 0;
    let nextRef = 1;

    function on(event, handler) {
      if (!handlers.has(event)) handlers.set(event, []);
      handlers.get(event).push(handler);
    }

    function fire(event, data) {
      for (const handler of handlers.get(event) ?? []) handler(data);
    }

    // Sends {type, ref, ...data}; `binary`, if given, goes right after it.
    function emit(type, data = {}, callback = null, binary = null) {
      if (!socket || socket.readyState !== WebSocket.OPEN) {
        if (callback) callback({ type: 'error', message: 'Not connected right now; nothing was sent.' });
        return;
      }
      const ref = nextRef++;
      if (callback) {
        const timer = setTimeout(() => {
          acks.delete(ref);
          callback({ type: 'error', ref, message: 'No answer from the server within 5 s.' });
        }, ACK_TIMEOUT);
        acks.set(ref, { callback, timer });
      }
      socket.send(JSON.stringify({ type, ref, ...data }));
      if (binary) socket.send(binary);
    }

    function join(room, callback) {
      emit('join', { room, since: cursor.get(room) }, callback);
    }

    function leave(room, callback) {
      emit('leave', { room }, (reply) => {
        if (reply.type === 'left') cursor.delete(room);
        if (callback) callback(reply);
      });
    }

    function answer(message) {
      const pending = acks.get(message.ref);
      if (!pending) return false;
      clearTimeout(pending.timer);
      acks.delete(message.ref);
      pending.callback(message);
      return true;
    }

    function receive(event) {
      if (typeof event.data !== 'string') {
        // A binary frame: the next attachment that was announced.
        const next = expected.shift();
        if (next) fire('attachment', { ...next, blob: new Blob([event.data], { type: next.mime }) });
        return;
      }
      const message = JSON.parse(event.data);
      if (message.type === 'joined') {
        cursor.set(message.room, message.cursor);
        for (const attachment of message.attachments ?? []) expected.push({ room: message.room, ...attachment });
      } else if (message.type === 'news') {
        if (cursor.has(message.room)) cursor.set(message.room, message.item.id);
        if (message.attachment) expected.push({ room: message.room, id: message.item.id, ...message.attachment });
      }
      const acknowledged = message.ref !== undefined && answer(message);
      if (!acknowledged) fire(message.type, message);
    }

    function open() {
      // `general` is joined by the server itself; `since` resumes it.
      const url = new URL(path, location.href);
      url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
      if (cursor.has('general')) url.searchParams.set('since', cursor.get('general'));
      socket = new WebSocket(url);
      socket.binaryType = 'arraybuffer';
      socket.onopen = () => {
        failures = 0;
        // Rejoin every other room, each from its own cursor.
        for (const room of cursor.keys()) if (room !== 'general') join(room);
        fire('connect');
      };
      socket.onmessage = receive;
      socket.onclose = (event) => {
        expected.length = 0;
        for (const [ref, { callback, timer }] of acks) {
          clearTimeout(timer);
          callback({ type: 'error', ref, message: 'The connection closed before the server answered.' });
        }
        acks.clear();
        fire('disconnect', event);
        failures++;
        const delay = Math.min(10000, 500 * 2 ** (failures - 1));
        setTimeout(open, delay / 2 + Math.random() * delay / 2);
      };
    }

    open();
    return { on, emit, join, leave, rooms: () => [...cursor.keys()] };
  }

  return { connect };
})();
