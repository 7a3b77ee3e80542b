// The Logs page: fetch the daemon's recent lines at the chosen level every two seconds.
(function () {
  "use strict";
  var view = document.getElementById("log-lines");
  var level = document.getElementById("log-level");
  var state = document.getElementById("log-state");
  if (!view || !level) { return; }
  function refresh() {
    fetch("/logs/lines?level=" + encodeURIComponent(level.value), { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.redirected || response.status !== 200) { throw new Error("status " + response.status); }
        return response.json();
      })
      .then(function (data) {
        var atBottom = view.scrollTop + view.clientHeight >= view.scrollHeight - 4;
        view.textContent = data.lines.join("\n");
        if (atBottom) { view.scrollTop = view.scrollHeight; }
        if (state) { state.textContent = "live: " + data.lines.length + " lines"; }
      })
      .catch(function (err) { if (state) { state.textContent = "not updating (" + err.message + ")"; } });
  }
  level.addEventListener("change", refresh);
  refresh();
  setInterval(refresh, 2000);
}());
