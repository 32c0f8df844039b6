// audit_capture viewer: the Live view (live.html). Every few seconds it asks
// /live/poll for the actions that have become final since the last one shown, with
// the mark of the last answer (viewer/live_feed.py), and puts them at the top of the
// table. Pause stops asking; Resume asks at once. A lost connection is retried; a
// session that ended (the poll is sent to sign in, or refused) stops the view with a
// message. No inline script: this file is loaded by the page (CSP script-src 'self').
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var section = document.getElementById("live");
    if (!section || !window.fetch) { return; }
    var rows = document.getElementById("live-rows");
    var empty = document.getElementById("live-empty");
    var status = document.getElementById("live-status");
    var statusText = document.getElementById("live-status-text");
    var toggle = document.getElementById("live-toggle");
    var pollUrl = section.getAttribute("data-poll-url");
    var after = section.getAttribute("data-after");
    var mark = section.getAttribute("data-mark");
    var every = parseInt(section.getAttribute("data-poll-ms"), 10) || 3000;
    var maxRows = parseInt(section.getAttribute("data-max-rows"), 10) || 1000;
    var paused = false, stopped = false, timer = null, failures = 0, busy = false;

    function say(text, kind) {
      statusText.textContent = text;
      status.className = "live-status" + (kind ? " " + kind : "");
    }
    function clock() {  // this computer's clock, which the rows' zone may not be
      return new Date().toLocaleTimeString() + " your time";
    }
    function schedule(ms) {
      clearTimeout(timer);
      if (!paused && !stopped) { timer = setTimeout(poll, ms); }
    }
    function stop(text) {
      stopped = true;
      clearTimeout(timer);
      toggle.hidden = true;
      say(text, "lost");
      var again = document.createElement("a");
      again.href = window.location.pathname;
      again.textContent = " Reload the page";
      statusText.appendChild(again);
    }
    function show(body) {
      if (body.count > 0) {
        rows.insertAdjacentHTML("afterbegin", body.html);  // the server's escaped markup
        while (rows.rows.length > maxRows) { rows.deleteRow(rows.rows.length - 1); }
        empty.hidden = true;
      }
      after = body.after === null ? "" : String(body.after);
      mark = body.mark || "";
      say(after ? "Live: up to date at " + clock() + "." :
        "Waiting for transactions in progress to end (" + clock() + ").", "on");
    }
    function poll() {
      if (busy || paused || stopped) { return; }
      busy = true;
      var query = [];
      if (after) { query.push("after=" + encodeURIComponent(after)); }
      if (mark) { query.push("mark=" + encodeURIComponent(mark)); }
      fetch(pollUrl + (query.length ? "?" + query.join("&") : ""), {
        credentials: "same-origin",
        redirect: "manual",  // a redirect is to the sign-in page: the session has ended
        cache: "no-store",
        headers: { "Accept": "application/json" }
      }).then(function (response) {
        busy = false;
        if (response.type === "opaqueredirect" || response.status === 401 ||
            response.status === 403) {
          stop("Your session has ended: sign in again to see new actions.");
          return;
        }
        var json = (response.headers.get("Content-Type") || "").indexOf("application/json") === 0;
        if (response.status >= 400 && response.status < 500 && json) {
          return response.json().then(function (body) {
            stop("The Live view stopped: " + (body.error || "the server refused the request") + ".");
          });
        }
        if (!response.ok || !json) { throw new Error("status " + response.status); }
        return response.json().then(function (body) {
          failures = 0;
          show(body);
          schedule(body.more ? 0 : every);
        });
      }).catch(function () {
        busy = false;
        failures += 1;
        var wait = Math.min(every * Math.pow(2, failures - 1), 60000);
        say("Connection lost at " + clock() + "; trying again in " + Math.round(wait / 1000) +
          " s.", "lost");
        schedule(wait);
      });
    }
    toggle.hidden = false;
    toggle.addEventListener("click", function () {
      paused = !paused;
      toggle.textContent = paused ? "Resume" : "Pause";
      toggle.setAttribute("aria-pressed", paused ? "true" : "false");
      if (paused) {
        clearTimeout(timer);
        say("Paused at " + clock() + ": new actions wait until you resume.", "paused");
      } else {
        poll();
      }
    });
    say("Live: new actions appear at the top.", "on");
    schedule(after ? every : 0);
  });
}());
