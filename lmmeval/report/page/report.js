// The report's behaviour: sortable tables, and a gallery rendered a page at a time from the JSON
// embedded in the page (10,000 inputs would be 10,000 DOM nodes and images up front).
"use strict";
(function () {
  // ---- sortable tables: click a column header to sort by it, again to reverse ----
  function cellValue(row, col, numeric) {
    const cell = row.cells[col];
    const raw = cell.hasAttribute("data-value") ? cell.getAttribute("data-value") : cell.textContent.trim();
    if (!numeric) return raw.toLowerCase();
    return raw === "" ? null : Number(raw);
  }
  function sortTable(table, th) {
    const col = Array.prototype.indexOf.call(th.parentNode.cells, th);
    const numeric = th.getAttribute("data-type") === "num";
    const descending = th.getAttribute("aria-sort") === "ascending";
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    rows.sort(function (a, b) {
      const x = cellValue(a, col, numeric), y = cellValue(b, col, numeric);
      if (x === null || y === null) return (x === null) - (y === null);  // no value: last, either way
      const order = x < y ? -1 : x > y ? 1 : 0;
      return descending ? -order : order;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    th.parentNode.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", descending ? "descending" : "ascending");
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.tHead.querySelectorAll("th").forEach(function (th) {
      const button = th.querySelector("button");
      if (button) button.addEventListener("click", function () { sortTable(table, th); });
    });
  });

  // ---- the gallery ----
  const dataNode = document.getElementById("gallery-data");
  const container = document.getElementById("gallery-items");
  if (!dataNode || !container) return;
  const data = JSON.parse(dataNode.textContent);
  const items = data.items, categories = data.categories, files = data.files;
  const PAGE = 60;
  const controls = {
    group: document.getElementById("filter-group"),
    category: document.getElementById("filter-category"),
    flag: document.getElementById("filter-flag"),
    file: document.getElementById("filter-file"),
    sort: document.getElementById("gallery-sort"),
  };
  const more = document.getElementById("gallery-more");
  const count = document.getElementById("gallery-count");
  let view = [], shown = 0;

  function keep(it) {
    const g = controls.group.value, c = controls.category.value, f = controls.flag.value;
    if (g !== "" && it.g !== g) return false;
    if (c !== "" && it.d.indexOf(Number(c)) < 0) return false;
    if (controls.file && controls.file.value !== "" && it.f !== Number(controls.file.value)) return false;
    if (f === "ood" && !it.o) return false;
    if (f === "lowconf" && !it.l) return false;
    if (f === "failed" && !it.e) return false;
    return true;
  }
  function sortKey(it) {
    const key = controls.sort.value;  // e.g. "q:asc"
    const v = it[key.split(":")[0]];
    return v === null ? null : v;
  }
  // A file's link: its absolute path as a file:// URL, each part escaped ('#' and '?' included).
  function fileUrl(path) {
    const parts = path.split("/").map(encodeURIComponent).join("/");
    return path.charAt(0) === "/" ? "file://" + parts : parts;
  }
  function fmt(v) { return v === null || v === undefined ? "n/a" : v.toFixed(1); }
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function card(it) {
    const fig = el("figure", "item");
    fig.setAttribute("data-group", it.g);
    const thumb = el("div", "thumb" + (it.t ? "" : " none"));
    if (it.t) {
      const img = document.createElement("img");
      img.loading = "lazy";
      img.decoding = "async";
      img.src = it.t;
      img.width = it.w;
      img.height = it.h;
      img.alt = it.id;
      thumb.appendChild(img);
    }
    fig.appendChild(thumb);
    const cap = el("figcaption");
    const name = el("a", "name", it.id);
    name.href = fileUrl(it.p);
    name.title = it.p;
    cap.appendChild(name);
    cap.appendChild(el("span", "group", it.g + (files.length > 1 ? " \u00b7 " + files[it.f] : "")));
    if (it.e) {
      cap.appendChild(el("div", "scores", "failed: " + it.e));
    } else {
      cap.appendChild(el("div", "scores", "Q " + fmt(it.q) + " (" + it.ql + ")  A " + fmt(it.a) + " (" + it.al + ")"));
    }
    if (it.mq !== null) cap.appendChild(el("div", "mos", "MOS Q " + fmt(it.mq) + "  A " + fmt(it.ma)));
    const flags = el("div");
    if (it.e) flags.appendChild(el("span", "badge failed", "failed"));
    if (it.o) flags.appendChild(el("span", "badge ood", "out of distribution"));
    if (it.l) flags.appendChild(el("span", "badge lowconf", "low confidence"));
    it.d.forEach(function (k) { flags.appendChild(el("span", "cat", categories[k])); });
    if (it.v) {
      const overlay = el("a", "cat", "saliency overlay");
      overlay.href = fileUrl(it.v);
      flags.appendChild(overlay);
    }
    cap.appendChild(flags);
    fig.appendChild(cap);
    return fig;
  }
  function showMore() {
    const frag = document.createDocumentFragment();
    const end = Math.min(view.length, shown + PAGE);
    for (let k = shown; k < end; k++) frag.appendChild(card(view[k]));
    container.appendChild(frag);
    shown = end;
    more.hidden = shown >= view.length;
    count.textContent = "showing " + shown + " of " + view.length + " inputs" +
      (view.length < items.length ? " (" + items.length + " in all)" : "");
  }
  function apply() {
    const ascending = controls.sort.value.split(":")[1] === "asc";
    view = items.filter(keep);
    view.sort(function (a, b) {
      const x = sortKey(a), y = sortKey(b);
      if (x === null || y === null) return (x === null) - (y === null) || a.i - b.i;  // failed: last
      return (ascending ? x - y : y - x) || a.i - b.i;
    });
    shown = 0;
    container.replaceChildren();
    showMore();
  }
  Object.keys(controls).forEach(function (k) {
    if (controls[k]) controls[k].addEventListener("change", apply);
  });
  more.addEventListener("click", showMore);
  // The next page comes on its own when the button scrolls into view.
  if ("IntersectionObserver" in window) {
    new IntersectionObserver(function (entries) {
      if (entries.some(function (e) { return e.isIntersecting; }) && !more.hidden) showMore();
    }, { rootMargin: "400px" }).observe(more);
  }
  apply();
  document.body.setAttribute("data-gallery-ready", String(performance.now()));
})();
