// The console's script: the browser's time zone for the times the server writes, the live
// inbox (server-sent events from /live), and keyboard shortcuts. No dependencies.
(function () {
  "use strict";

  // Times are written in the reader's zone: tell the server which one that is.
  try {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone && document.cookie.indexOf("nurture_tz=" + zone) < 0) {
      document.cookie = "nurture_tz=" + zone + "; path=/; max-age=31536000; samesite=lax";
    }
  } catch (e) { /* an old browser: the playbook's zone it is */ }

  // The live inbox: when a queue the reader works changes, the inbox is fetched again and
  // swapped in, unless they are typing in it (then once they leave the field).
  var inbox = document.getElementById("inbox");
  var status = document.getElementById("live-status");
  var pending = false;
  function typing() {
    var a = document.activeElement;
    return a && inbox.contains(a) && /^(INPUT|TEXTAREA|SELECT)$/.test(a.tagName) && a.value;
  }
  function refresh() {
    if (typing()) { pending = true; return; }
    pending = false;
    fetch(location.pathname, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var next = new DOMParser().parseFromString(html, "text/html").getElementById("inbox");
        // An update that changes nothing (the reader's own claim, say) leaves the page, and
        // the reader's place in it, alone.
        if (!next || next.innerHTML === inbox.innerHTML) return;
        inbox.innerHTML = next.innerHTML;
        if (status) status.textContent = status.getAttribute("data-text");
        document.dispatchEvent(new CustomEvent("nurture:refreshed"));
      });
  }
  if (inbox && window.EventSource) {
    var source = new EventSource("/live");
    source.addEventListener("handoff", refresh);
    inbox.addEventListener("focusout", function () { if (pending) setTimeout(refresh, 0); });
  }

  // Shortcuts: a key names an element (data-key) to click, or a field to focus; j and k move
  // between the leads listed; ? shows the help. Keys typed into a field stay in the field.
  var help = document.getElementById("keys");
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var t = e.target;
    if (t.closest && t.closest("input, textarea, select, [contenteditable]")) {
      if (e.key === "Escape") t.blur();
      return;
    }
    if (e.key === "?" && help) {
      e.preventDefault();
      if (help.open) help.close(); else help.showModal();
      return;
    }
    if (e.key === "j" || e.key === "k") {
      var rows = Array.prototype.slice.call(document.querySelectorAll("[data-row] a"));
      if (!rows.length) return;
      e.preventDefault();
      var at = rows.indexOf(document.activeElement);
      var to = e.key === "j" ? Math.min(at + 1, rows.length - 1) : Math.max(at - 1, 0);
      rows[at < 0 ? 0 : to].focus();
      return;
    }
    var target = document.querySelector('[data-key="' + e.key + '"]');
    if (!target) return;
    e.preventDefault();
    if (/^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName)) target.focus(); else target.click();
  });
})();
