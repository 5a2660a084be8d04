// news.js: what a page with JavaScript does with news, whatever brought it.
//
// Steps 02 to 05 load this file; the transport (XMLHttpRequest polling,
// long polling, a WebSocket) is in each step's own page, below it. Here:
// render an item from the <template id="item-template"> with textContent
// (never innerHTML, so a title like <img onerror=...> stays text), add
// items at the top once each, replace everything on a reset, and show what
// the server said about a post.
const news = (() => {
  const list = document.getElementById('items');
  const template = document.getElementById('item-template');
  const form = document.querySelector('.post-form');
  const status = form.querySelector('.form-status');
  // A page keeps at most this many items; older ones stay a link away.
  const KEEP = 200;

  // The same markup the server renders in item.html.
  function render(item) {
    const node = template.content.firstElementChild.cloneNode(true);
    node.dataset.id = item.id;
    node.querySelector('.item-title').textContent = item.title;
    node.querySelector('.item-body').textContent = item.body;
    const time = node.querySelector('time');
    time.dateTime = item.posted_at;
    time.textContent = item.posted_at.slice(11, 16) + ' UTC';
    return node;
  }

  function isShown(id, within = list) {
    return within.querySelector(`[data-id="${Number(id)}"]`) !== null;
  }

  // New items go on top, oldest of them first, so the newest ends up first.
  // Step 05 keeps a list per room and passes it; the others have one.
  function add(items, into = list) {
    for (const item of items) {
      if (isShown(item.id, into)) continue;
      const node = render(item);
      node.classList.add('arrived');
      into.prepend(node);
      meter.shown(item.id);
    }
    while (into.children.length > KEEP) into.lastElementChild.remove();
  }

  // An answer from the server: {items, cursor} or {items, cursor, reset}.
  // Returns the cursor to ask from next time.
  function apply(answer, into = list) {
    if (answer.reset) {
      // The server could not vouch for our cursor (it restarted, or we were
      // away too long): show its latest items instead of what we had.
      into.replaceChildren(...answer.items.map(render).reverse());
      say('The feed was reset: showing the latest news.');
    } else {
      add(answer.items, into);
    }
    return answer.cursor;
  }

  // What the form holds, as the JSON the server expects.
  function fields() {
    return { title: form.elements.title.value, body: form.elements.body.value };
  }

  // Messages beside the fields: {title: "...", body: "..."}; {} clears them.
  function showErrors(errors) {
    say('');
    for (const name of ['title', 'body']) {
      const message = errors[name] || '';
      document.getElementById(name + '-error').textContent = message;
      if (message) form.elements[name].setAttribute('aria-invalid', 'true');
      else form.elements[name].removeAttribute('aria-invalid');
    }
  }

  // The server accepted a post: clear the form and start the stopwatch that
  // stops when the item shows up in the list.
  function posted(id, startedAt) {
    form.reset();
    showErrors({});
    say('Posted. Watch for it in the list.');
    meter.posted(id, startedAt);
  }

  function say(message) {
    status.textContent = message;
  }

  return {
    form,
    list,
    // Only the plain "latest news" view gets live updates, not a search or
    // an older page.
    live: list.dataset.live === 'true',
    cursor: Number(list.dataset.cursor),
    apply,
    render,
    fields,
    showErrors,
    posted,
    say,
  };
})();
