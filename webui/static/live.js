// Live refresh without a build step: pages that hold a #live element fetch
// themselves again when a daemon reports something (server-sent events
// from /live) and every data-poll milliseconds, and swap that element in.
// The editor's line-number gutter follows the textarea.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (live) {
    var busy = false, again = false;
    var refresh = function () {
      if (busy) { again = true; return; }
      busy = true;
      fetch(location.href, { credentials: "same-origin" })
        .then(function (r) {
          if (r.redirected || !r.ok) { location.reload(); return null; }
          return r.text();
        })
        .then(function (html) {
          if (html === null) return;
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById("live");
          var cur = document.getElementById("live");
          if (fresh && cur) cur.replaceWith(fresh); else location.reload();
        })
        .catch(function () {})
        .finally(function () {
          busy = false;
          if (again) { again = false; setTimeout(refresh, 100); }
        });
    };
    var timer = null;
    var soon = function () { if (!timer) timer = setTimeout(function () { timer = null; refresh(); }, 100); };
    if (window.EventSource) {
      var es = new EventSource("/live");
      es.onmessage = soon;
      es.onopen = soon;
    }
    var poll = parseInt(live.getAttribute("data-poll") || "0", 10);
    if (poll > 0) setInterval(refresh, poll);
  }
  var text = document.getElementById("text");
  var gutter = document.querySelector(".editor .gutter");
  if (text && gutter) {
    var number = function () {
      var n = text.value.split("\n").length, s = "";
      for (var i = 1; i <= n; i++) s += i + "\n";
      gutter.textContent = s;
      gutter.scrollTop = text.scrollTop;
    };
    text.addEventListener("input", number);
    text.addEventListener("scroll", function () { gutter.scrollTop = text.scrollTop; });
    number();
  }
})();
