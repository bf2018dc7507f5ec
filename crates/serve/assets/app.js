// restash serve: sorting and filtering of the volumes table. The page works without it.
"use strict";
(function () {
  const table = document.getElementById("volumes");
  if (!table) return;
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const filter = document.getElementById("filter");
  const count = document.getElementById("count");
  const numeric = { last: 1, age: 1, count: 1, files: 1, bytes: 1 };
  const key = { last: "last", age: "ageSeconds", count: "count", files: "files",
    bytes: "bytes", host: "host", flags: "flags" };

  function apply() {
    const q = (filter.value || "").trim().toLowerCase();
    let shown = 0;
    for (const r of rows) {
      const hay = (r.dataset.host + " " + r.dataset.tags).toLowerCase();
      const ok = !q || q.split(/\s+/).every((w) => hay.includes(w));
      r.hidden = !ok;
      if (ok) shown++;
    }
    count.textContent = shown === rows.length ? String(rows.length) : shown + " of " + rows.length;
    const params = new URLSearchParams(location.search);
    if (q) params.set("q", filter.value.trim()); else params.delete("q");
    const qs = params.toString();
    history.replaceState(null, "", qs ? "?" + qs : location.pathname);
  }

  function sortBy(th) {
    const field = th.dataset.sort;
    const asc = th.getAttribute("aria-sort") !== "ascending";
    for (const other of table.tHead.rows[0].cells) other.removeAttribute("aria-sort");
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    const k = key[field];
    rows.sort((a, b) => {
      let x = a.dataset[k], y = b.dataset[k];
      const c = numeric[field] ? Number(x) - Number(y) : x.localeCompare(y);
      return asc ? c : -c;
    });
    for (const r of rows) body.appendChild(r);
  }

  for (const th of table.tHead.rows[0].cells) {
    if (th.dataset.sort) th.addEventListener("click", () => sortBy(th));
  }
  filter.addEventListener("input", apply);
  const initial = new URLSearchParams(location.search).get("q");
  if (initial) { filter.value = initial; apply(); }
})();
