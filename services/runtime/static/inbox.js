// The inbox, live: when the notify service's stream says a referral arrived (or changed),
// the list is read again from the same page and replaced; a screen reader hears it said.
// Without JavaScript, or without EventSource, the page works as it is (reload to see more).
(function () {
  "use strict";
  var list = document.getElementById("orientations-liste");
  var said = document.getElementById("orientations-direct");
  if (!list || !said || !window.EventSource || !window.fetch) {
    return;
  }
  var WORDS = {
    new_referral: "Une nouvelle orientation vient d'arriver : la liste est à jour.",
    reminder: "Un rappel vient d'arriver : la liste est à jour.",
    cancelled: "Une orientation a été annulée : la liste est à jour.",
    stop_processing: "Une orientation a été arrêtée : la liste est à jour."
  };
  var source = new EventSource(list.getAttribute("data-flux"));
  function refresh(kind) {
    fetch(window.location.href, {credentials: "same-origin", headers: {Accept: "text/html"}})
      .then(function (response) {
        if (!response.ok) {
          throw new Error(String(response.status));
        }
        return response.text();
      })
      .then(function (html) {
        var page = new DOMParser().parseFromString(html, "text/html");
        var fresh = page.getElementById("orientations-liste");
        if (fresh) {
          list.innerHTML = fresh.innerHTML;
          said.textContent = WORDS[kind];
        }
      })
      .catch(function () {
        said.textContent = "La liste n'a pas pu être mise à jour : rechargez la page.";
      });
  }
  // Events that come together (a batch of hand-offs) redraw the list once.
  var pending = null;
  Object.keys(WORDS).forEach(function (kind) {
    source.addEventListener(kind, function () {
      window.clearTimeout(pending);
      pending = window.setTimeout(function () { refresh(kind); }, 300);
    });
  });
  window.addEventListener("pagehide", function () { source.close(); });
}());
