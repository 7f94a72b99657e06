// evq dashboard: live overview over server-sent events, and confirmation of actions.
(function () {
  "use strict";
  var live = document.querySelector("[data-live]");
  if (live && window.EventSource) {
    var source = new EventSource("/live");
    var busy = false;
    source.addEventListener("open", function () { document.body.setAttribute("data-live", "on"); });
    source.addEventListener("change", function () {
      if (busy) { return; }
      busy = true;
      fetch(live.getAttribute("data-live"), {credentials: "same-origin"})
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) { live.innerHTML = html; })
        .catch(function () {})
        .then(function () { busy = false; });
    });
  }
  // Remember the operator's name and token for this tab, so each form need not ask again.
  document.querySelectorAll("form.action").forEach(function (form) {
    ["by", "token"].forEach(function (field) {
      var input = form.querySelector("[name=" + field + "]");
      if (input && !input.value) { input.value = sessionStorage.getItem("evq-" + field) || ""; }
    });
    form.addEventListener("submit", function () {
      ["by", "token"].forEach(function (field) {
        var input = form.querySelector("[name=" + field + "]");
        if (input) { sessionStorage.setItem("evq-" + field, input.value); }
      });
    });
  });
})();
