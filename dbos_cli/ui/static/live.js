// Live updates without reloading the page: every few seconds (the <body>'s data-live, in
// seconds), each element marked data-fragment="NAME" is refetched from this page's URL with
// ?fragment=NAME and its content swapped in. The server escapes everything it sends; this only
// moves its HTML into place. A region is left alone while the reader has a <details> open in it
// or is typing in it, and nothing polls while the tab is hidden. Without JavaScript the pages
// are the same, minus the updates.
(function () {
  "use strict";
  var seconds = Number(document.body.getAttribute("data-live"));
  if (!(seconds > 0)) {
    return;
  }
  function busy(region) {
    return region.querySelector("details[open]") !== null || region.contains(document.activeElement);
  }
  function refresh(region) {
    var url = new URL(window.location.href);
    url.searchParams.set("fragment", region.getAttribute("data-fragment"));
    return fetch(url.toString(), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html !== null && !busy(region)) {
          region.innerHTML = html;
        }
      })
      .catch(function () { /* the next tick tries again */ });
  }
  // One round of fetches at a time: the next tick is armed only once every fetch of this round
  // has answered, so a slow or failing server never gets a growing queue of refreshes.
  function tick() {
    var round = [];
    if (!document.hidden) {
      document.querySelectorAll("[data-fragment]").forEach(function (region) {
        if (!busy(region)) {
          round.push(refresh(region));
        }
      });
    }
    Promise.all(round).then(function () {
      window.setTimeout(tick, seconds * 1000);
    });
  }
  document.documentElement.setAttribute("data-live-updates", "on");
  window.setTimeout(tick, seconds * 1000);
})();
