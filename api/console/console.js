// The console's script: the browser's time zone for the times the server writes, the live
// inbox (server-sent events from /live), keyboard shortcuts, and the playbook editor's checks
// as the person types. No dependencies.
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
  // The playbook editor: the text is checked as it is typed (after a pause, the latest
  // answer wins), the lines with errors and warnings are marked in the gutter, and "go to
  // line" puts the caret where the error is. A review shown is stale once the text changes.
  var editor = document.getElementById("text");
  var check = document.getElementById("check");
  if (editor && check && editor.getAttribute("data-check")) {
    var gutter = document.getElementById("gutter");
    var timer = null, asked = 0, inflight = null;
    var numbered = function () {
      var n = editor.value.split("\n").length;
      if (gutter.childElementCount === n) return;
      var html = "";
      for (var i = 1; i <= n; i++) html += '<span data-n="' + i + '">' + i + "</span>\n";
      gutter.innerHTML = html;
    };
    var mark = function () {
      var marks = {};
      Array.prototype.forEach.call(check.querySelectorAll("li[data-line]"), function (li) {
        var line = li.getAttribute("data-line");
        if (marks[line] !== "bad") marks[line] = li.hasAttribute("data-warning") ? "warn" : "bad";
      });
      Array.prototype.forEach.call(gutter.children, function (span) {
        span.className = marks[span.getAttribute("data-n")] || "";
      });
    };
    var run = function () {
      if (inflight) inflight.abort();
      inflight = window.AbortController ? new AbortController() : null;
      var mine = ++asked;
      fetch(editor.getAttribute("data-check"), {
        method: "POST",
        body: new URLSearchParams(new FormData(editor.form)),
        headers: { "X-Nurture-Fragment": "1" },
        credentials: "same-origin",
        signal: inflight ? inflight.signal : undefined
      })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html === null || mine !== asked) return;
          check.innerHTML = html;
          mark();
        })
        .catch(function () { /* aborted by a newer check, or offline: the next one tells */ });
    };
    var changed = function () {
      numbered();
      var review = document.querySelector(".review");
      if (review) review.hidden = true;
      clearTimeout(timer);
      timer = setTimeout(run, 350);
    };
    editor.addEventListener("input", changed);
    var lead = document.getElementById("lead");
    if (lead) lead.addEventListener("input", changed);
    editor.addEventListener("scroll", function () { gutter.scrollTop = editor.scrollTop; });
    check.addEventListener("click", function (e) {
      var button = e.target.closest && e.target.closest("button.goto");
      if (!button) return;
      var line = +button.getAttribute("data-line"), column = +button.getAttribute("data-column");
      var lines = editor.value.split("\n"), at = 0;
      for (var i = 0; i < line - 1 && i < lines.length; i++) at += lines[i].length + 1;
      at += Math.max(0, Math.min(column - 1, (lines[line - 1] || "").length));
      editor.focus();
      editor.setSelectionRange(at, at);
      var height = parseFloat(getComputedStyle(editor).lineHeight) || 20;
      editor.scrollTop = Math.max(0, (line - 4) * height);
    });
    mark();
  }
})();
