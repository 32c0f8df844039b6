// audit_capture viewer: optional niceties; every page works without this file.
// - the filter form sends only the filters that are set (no "?source=&actor=&..." noise);
// - choosing a value in a filter list with the pointer applies it at once; stepping
//   through a list with the arrow keys (a change at each step) waits for Enter; a value
//   picked in the list is that value alone (its "Several…" checkboxes are cleared; they
//   add values to the list's, sent by Apply: source=web&source=api);
// - the Actor field suggests matching actors as one types (GET /actors?q=, an ARIA
//   combobox: arrows move, Enter chooses, Escape closes); without this file the typed
//   text goes to the server, which filters by the actor it names or lists the choices.
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
        // a value picked from the list is that value alone: its "Several" boxes cleared
        Array.prototype.forEach.call(
          form.querySelectorAll("input[type=checkbox][name='" + select.name + "']"),
          function (box) { box.checked = false; }
        );
        if (!keyed) { apply(); }
      });
    });
    var actor = form.querySelector("#f-actor[data-suggest]");
    if (actor) { suggestActors(actor, form.querySelector("#f-actor-key"), apply); }
  });

  function suggestActors(input, key, apply) {
    var list = document.getElementById(input.id + "-list");
    var url = input.getAttribute("data-suggest");
    var items = [], active = -1, timer = null, asked = 0;
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-expanded", "false");
    input.setAttribute("aria-controls", list.id);

    function close() {
      list.hidden = true;
      list.textContent = "";
      items = [];
      active = -1;
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
    }
    function highlight(index) {
      items.forEach(function (item, i) {
        item.el.classList.toggle("active", i === index);
        item.el.setAttribute("aria-selected", i === index ? "true" : "false");
      });
      active = index;
      if (index >= 0) {
        input.setAttribute("aria-activedescendant", items[index].el.id);
        items[index].el.scrollIntoView({ block: "nearest" });
      } else {
        input.removeAttribute("aria-activedescendant");
      }
    }
    function choose(item) {
      input.value = item.name || item.id || item.actor;
      key.value = item.actor;
      close();
      apply();
    }
    function show(body) {
      close();
      (body.actors || []).forEach(function (actor, i) {
        var li = document.createElement("li");
        li.id = list.id + "-" + i;
        li.setAttribute("role", "option");
        li.setAttribute("aria-selected", "false");
        var name = document.createElement("bdi");
        name.textContent = actor.name || actor.id || actor.actor;  // text, never markup
        var kind = document.createElement("span");
        kind.className = "kind";
        kind.textContent = actor.kind + (actor.id && actor.name ? " · id " + actor.id : "");
        li.appendChild(name);
        li.appendChild(kind);
        li.addEventListener("mousedown", function (event) { event.preventDefault(); });
        li.addEventListener("click", function () { choose(actor); });
        list.appendChild(li);
        items.push({ el: li, actor: actor });
      });
      if (!items.length) {
        var none = document.createElement("li");
        none.className = "note";
        none.textContent = body.error || "No actor matches";
        list.appendChild(none);
      }
      list.hidden = false;
      input.setAttribute("aria-expanded", items.length ? "true" : "false");
    }
    function ask() {
      var text = input.value.trim();
      if (!text) { close(); return; }
      var mine = ++asked;
      fetch(url + "?limit=10&q=" + encodeURIComponent(text.slice(0, 100)), {
        credentials: "same-origin", headers: { "Accept": "application/json" }
      }).then(function (response) {
        return response.json();
      }).then(function (body) {
        if (mine === asked && document.activeElement === input) { show(body); }
      }).catch(function () { if (mine === asked) { close(); } });
    }
    input.addEventListener("input", function () {
      key.value = "";  // typed over: the text, not the previous choice, is the filter
      clearTimeout(timer);
      timer = setTimeout(ask, 150);
    });
    input.addEventListener("keydown", function (event) {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        if (!items.length) { if (event.key === "ArrowDown") { ask(); } return; }
        event.preventDefault();
        var step = event.key === "ArrowDown" ? 1 : -1;
        var n = items.length;
        highlight(active < 0 ? (step > 0 ? 0 : n - 1) : (active + step + n) % n);  // wraps
      } else if (event.key === "Enter" && active >= 0) {
        event.preventDefault();
        choose(items[active].actor);
      } else if (event.key === "Escape" && !list.hidden) {
        event.preventDefault();
        close();
      }
    });
    input.addEventListener("blur", function () { setTimeout(close, 0); });
  }
}());
