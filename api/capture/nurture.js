/* nurture tracking script: page views, opt-in clicks and downloads, and who the visitor is when
   the site says so. Include it with one tag:
     <script async src="https://nurture.example.com/t/nurture.js"></script>
   and call it through a queue that works before it loads:
     <script>window.nurture=window.nurture||function(){(nurture.q=nurture.q||[]).push(arguments)}</script>
     nurture('identify', {email: 'li.wei@example.com'});  nurture('consent', true);
   Links with data-nurture-track (clicks) or data-nurture-download (downloads) are recorded. */
(function (w, d) {
  'use strict';
  var S = /*SETTINGS*/{};
  var me = d.currentScript;
  var base = me && me.src ? new URL(me.src).origin : '';
  var endpoint = base + '/t/events';
  var KEY = 'nurture_vid', CONSENT = 'nurture_consent';
  var queue = [], timer = null, pending = null, started = false;

  function store(name, value) {
    try {
      if (value === undefined) return w.localStorage.getItem(name);
      if (value === null) w.localStorage.removeItem(name); else w.localStorage.setItem(name, value);
    } catch (e) {
      if (value === undefined) {
        var m = d.cookie.match(new RegExp('(?:^|; )' + name + '=([^;]*)'));
        return m ? decodeURIComponent(m[1]) : null;
      }
      d.cookie = name + '=' + (value === null ? '; max-age=0' : encodeURIComponent(value) + '; max-age=63072000') + '; path=/; SameSite=Lax';
    }
    return null;
  }

  function refused() {
    return S.respectDnt && (navigator.doNotTrack === '1' || w.doNotTrack === '1' || navigator.globalPrivacyControl === true);
  }

  function consented() {
    return S.consent !== 'required' || store(CONSENT) === '1';
  }

  function visitor() {
    var id = store(KEY);
    if (!id || !/^[A-Za-z0-9_-]{16,64}$/.test(id)) {
      var bytes = new Uint8Array(16);
      (w.crypto || w.msCrypto).getRandomValues(bytes);
      id = 'v_' + Array.prototype.map.call(bytes, function (b) { return ('0' + b.toString(16)).slice(-2); }).join('');
      store(KEY, id);
    }
    return id;
  }

  function send(body) {
    var text = JSON.stringify(body);
    // text/plain needs no CORS preflight; the server reads the JSON whatever the type.
    if (w.fetch) {
      w.fetch(endpoint, { method: 'POST', body: text, keepalive: true, mode: 'cors', credentials: 'omit', headers: { 'Content-Type': 'text/plain' } })['catch'](function () {});
    } else if (navigator.sendBeacon) {
      navigator.sendBeacon(endpoint, text);
    }
  }

  function flush() {
    clearTimeout(timer);
    timer = null;
    if (refused() || !consented() || (!queue.length && !pending)) return;
    while (queue.length || pending) {
      var body = { visitor: visitor(), events: queue.splice(0, 50) };
      if (pending) { body.identify = pending; pending = null; }
      if (S.consent === 'required') body.consent = true;
      send(body);
    }
  }

  function record(type, extra) {
    if (refused() || !consented()) return;
    var event = { type: type, url: w.location.href, title: d.title || undefined, referrer: d.referrer || undefined };
    for (var k in extra) if (extra[k]) event[k] = extra[k];
    queue.push(event);
    if (!timer) timer = setTimeout(flush, 1000);
  }

  var commands = {
    identify: function (who) {
      if (who && who.email) { pending = { email: String(who.email) }; flush(); }
    },
    consent: function (yes) {
      var before = consented();
      store(CONSENT, yes ? '1' : null);
      if (!yes) queue = [];
      // The page consent was given on counts, once.
      else if (started && !before) record('page_view', {});
    },
    page: function () { record('page_view', {}); }
  };

  function run(args) {
    var f = commands[args[0]];
    if (f) f.apply(null, Array.prototype.slice.call(args, 1));
  }

  d.addEventListener('click', function (e) {
    var a = e.target && e.target.closest ? e.target.closest('a[data-nurture-track], a[data-nurture-download]') : null;
    if (!a) return;
    var type = a.hasAttribute('data-nurture-download') ? 'download' : 'click';
    record(type, { link: a.href, text: (a.textContent || '').trim().slice(0, 300) });
    flush();
  }, true);
  d.addEventListener('visibilitychange', function () { if (d.visibilityState === 'hidden') flush(); });
  w.addEventListener('pagehide', flush);

  var waiting = (w.nurture && w.nurture.q) || [];
  w.nurture = function () { run(arguments); };
  for (var i = 0; i < waiting.length; i++) run(waiting[i]);
  started = true;
  record('page_view', {});
})(window, document);
