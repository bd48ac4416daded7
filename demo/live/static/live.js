// celery-xray live page: puts the server's HTML panels in place as Server-Sent Events come.
// Part of celery-xray, under the MIT licence (see LICENSE in this folder). No dependency.
(function () {
  "use strict";
  var FEED_MAX = 200; // rows kept in the page: the DOM stays bounded
  var SAMPLES_MAX = 20000;
  var source = document.body.getAttribute("data-source") || "live";
  var selected = new URLSearchParams(location.hash.slice(1)).get("task");
  var lastSeq = 0;
  var pending = null;
  var bench = /[?&]bench\b/.test(location.search);
  // What a benchmark reads: screen time minus each task's end time, in seconds.
  window.xray = { ticks: 0, latencies: [], applied: 0 };

  function $(id) { return document.getElementById(id); }

  function mark() {
    var rows = document.querySelectorAll("tr[data-task]");
    for (var i = 0; i < rows.length; i++) {
      rows[i].classList.toggle("selected", rows[i].getAttribute("data-task") === selected);
    }
  }

  function loadTask() {
    pending = null;
    if (!selected) return;
    var box = $("diagram");
    var url = "/task?source=" + encodeURIComponent(source) + "&id=" +
      encodeURIComponent(selected) + "&width=" + Math.floor(box.clientWidth);
    fetch(url).then(function (r) { return r.text(); }).then(function (html) {
      box.innerHTML = html;
    });
  }

  function later() { // at most one diagram request in flight per 250 ms
    if (!pending) pending = setTimeout(loadTask, 250);
  }

  function apply(m) {
    var panels = m.panels || {};
    for (var id in panels) {
      var el = $(id);
      if (el) el.innerHTML = panels[id];
    }
    var feed = $("feed");
    if (m.reset) { feed.innerHTML = ""; lastSeq = 0; }
    var html = "";
    (m.feed || []).forEach(function (pair) {
      if (pair[0] > lastSeq) { html = pair[1] + html; lastSeq = pair[0]; }
    });
    if (m.skipped) html = '<li class="empty">… ' + m.skipped + " more lines</li>" + html;
    if (html) feed.insertAdjacentHTML("afterbegin", html);
    while (feed.children.length > FEED_MAX) feed.removeChild(feed.lastChild);
    if (selected && (m.touched || []).indexOf(selected) >= 0) later();
    mark();
    var now = Date.now() / 1000;
    window.xray.ticks += 1;
    if (bench) {
      (m.done || []).forEach(function (pair) {
        if (window.xray.latencies.length < SAMPLES_MAX) window.xray.latencies.push(now - pair[1]);
      });
    }
  }

  document.addEventListener("click", function (ev) {
    var row = ev.target.closest ? ev.target.closest("tr[data-task]") : null;
    if (!row || ev.target.closest("a")) return;
    selected = row.getAttribute("data-task");
    history.replaceState(null, "", "#task=" + selected);
    mark();
    loadTask();
  });
  window.addEventListener("resize", function () { if (selected) later(); });

  var events = new EventSource("/events?source=" + encodeURIComponent(source));
  events.addEventListener("tick", function (ev) { apply(JSON.parse(ev.data)); });
  events.onopen = function () { $("conn").textContent = "live"; $("conn").className = "live"; };
  events.onerror = function () {
    $("conn").textContent = "reconnecting …"; $("conn").className = "down";
  };
  if (selected) loadTask();
})();
