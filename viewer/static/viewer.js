// audit_capture viewer: optional niceties; every page works without this file.
// - the filter form sends only the filters that are set (no "?source=&actor=&..." noise);
// - choosing a value in a filter list with the pointer applies it at once; stepping
//   through a list with the arrow keys (a change at each step) waits for Enter.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var form = document.querySelector("form.filter-form");
    if (!form) { return; }
    window.addEventListener("pageshow", function () {  // back to a page whose fields were disabled
      Array.prototype.forEach.call(form.elements, function (el) { el.disabled = false; });
    });
    form.addEventListener("submit", function () {
      Array.prototype.forEach.call(form.elements, function (el) {
        if (el.name && el.value === "" && el.tagName !== "BUTTON") { el.disabled = true; }
      });
    });
    function apply() {
      if (form.requestSubmit) { form.requestSubmit(); } else { form.submit(); }
    }
    Array.prototype.forEach.call(form.querySelectorAll("select"), function (select) {
      var keyed = false;
      select.addEventListener("pointerdown", function () { keyed = false; });
      select.addEventListener("keydown", function (event) {
        keyed = true;
        if (event.key === "Enter") { event.preventDefault(); apply(); }
      });
      select.addEventListener("change", function () {
        if (!keyed) { apply(); }
      });
    });
  });
}());
