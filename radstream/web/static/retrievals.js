// The retrieval dashboard's live table (#live): server-sent events when they connect, else htmx polls
// every 2 s. A poll is cancelled while the event stream is open. Not an htmx trigger filter
// ("every 2s [cond]"): htmx evaluates those with Function(), which the app's Content-Security-Policy forbids.
(function () {
  const live = () => document.getElementById('live');
  const mode = text => { const m = document.getElementById('live-mode'); if (m) m.textContent = text; };
  document.addEventListener('htmx:sseOpen', () => {
    live().dataset.sse = 'open';
    mode('Updates live (server-sent events).');
  });
  document.addEventListener('htmx:sseError', () => {
    delete live().dataset.sse;
    mode('Updates live (polling every 2 s).');
  });
  document.addEventListener('htmx:beforeRequest', e => {
    if (e.detail.elt === live() && live().dataset.sse) e.preventDefault();
  });
})();
