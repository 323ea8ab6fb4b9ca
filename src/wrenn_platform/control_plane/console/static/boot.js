// Loads the console's modules. A browser aborts requests when the machine's network interfaces
// change (Chromium's ERR_NETWORK_CHANGED: capsules starting on the same machine add interfaces),
// and a module that failed to load stays failed for the document: reload the page, a few times.
(function () {
  "use strict";
  var KEY = "wrenn.boot-retries";
  import("/console/js/main.js").then(function () {
    sessionStorage.removeItem(KEY);
  }, function (error) {
    var tries = Number(sessionStorage.getItem(KEY) || "0");
    if (tries < 5) {
      sessionStorage.setItem(KEY, String(tries + 1));
      setTimeout(function () { location.reload(); }, 300 * (tries + 1));
      return;
    }
    sessionStorage.removeItem(KEY);
    var main = document.getElementById("main");
    main.textContent = "The console could not load (" + error.message + "). Check the connection and reload.";
  });
})();
