// The public bed board: free ICU, HCU and isolation beds by kecamatan and hospital.
// Every number on the page is one the API returned (/v1/beds/free, public: the board needs no
// key); the page does no arithmetic on counts. /v1/stream says which site changed; the page then refetches until the
// API's newest observation for that site has caught up with the event (the ingester stores a
// reading a moment after the broker delivered it), with a bounded backoff.
"use strict";
(function () {
  const GROUPS = ["icu", "hcu", "isolation"];
  const BED_SITES = new Set(["hospital", "isolation_centre"]);
  const byName = (a, b) => a.name.localeCompare(b.name, "id");
  const params = new URLSearchParams(location.search);
  const lang = params.get("lang") === "en" ? "en" : "id";
  const T = window.BOARD_TEXT[lang];
  const want = new Map(); // site -> observed_ms the API must reach
  let data = null; // {kecamatan: [{code, name, groups, places: [...]}], places: {id: place}}
  let timer = null;
  let attempt = 0;

  function translateStatic() {
    document.documentElement.lang = lang;
    document.title = T.docTitle;
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = T[el.dataset.i18n];
    const link = document.getElementById("lang");
    link.textContent = T.other;
    link.lang = T.otherLang;
    link.href = T.otherLang === "en" ? "?lang=en" : "?";
  }

  async function getJSON(path) {
    const res = await fetch(path, { headers: { Accept: "application/json" } });
    if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
    return res.json();
  }

  async function loadCounts() {
    const doc = await getJSON("/v1/beds/free");
    const kecamatan = doc.items.map((kec) => ({ ...kec, places: [...kec.places].sort(byName) }));
    kecamatan.sort(byName);
    const places = {};
    for (const kec of kecamatan) for (const p of kec.places) places[p.id] = p;
    data = { kecamatan, places, generated: doc.generated_at };
  }

  function ago(ms) {
    const min = Math.floor((Date.now() - ms) / 60000);
    if (min < 1) return T.now;
    if (min < 60) return `${T.updated} ${min} ${T.min} ${T.ago}`;
    if (min < 1440) return `${T.updated} ${Math.floor(min / 60)} ${T.hour} ${T.ago}`;
    return `${T.updated} ${Math.floor(min / 1440)} ${T.day} ${T.ago}`;
  }

  function el(tag, attrs, ...kids) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const kid of kids) node.append(kid);
    return node;
  }

  function cell(level, code, group, count) {
    const td = el("td", { class: "n", "data-cell": `${level}:${code}:${group}` });
    if (!count || count.free === null || count.capacity === null) {
      td.append(T.none);
      return td;
    }
    if (count.free === 0) td.classList.add("zero");
    td.append(el("b", {}, String(count.free)), el("small", {}, `${T.of} ${count.capacity}`));
    return td;
  }

  function render() {
    const main = document.getElementById("board");
    const cards = [];
    for (const kec of data.kecamatan) {
      const head = el("tr", {}, el("th", {}, T.place), ...GROUPS.map((g) => el("th", {}, T[g])));
      const rows = [head];
      for (const p of kec.places) {
        const seen = p.observed_at_newest_ms !== null;
        const fresh = seen ? ago(p.observed_at_newest_ms) : T.nodata;
        const name = el("td", {}, p.name, el("span", { class: "fresh" }, p.stale && seen ? `${fresh} · ${T.stale}` : fresh));
        const tr = el("tr", { "data-site": p.id, class: p.stale ? "stale" : "" }, name);
        for (const g of GROUPS) tr.append(cell("site", p.id, g, p.groups[g]));
        rows.push(tr);
      }
      const total = el("tr", { class: "total", "data-kecamatan": kec.code }, el("td", {}, T.total));
      for (const g of GROUPS) total.append(cell("kecamatan", kec.code, g, kec.groups[g]));
      rows.push(total);
      cards.push(el("section", { "data-kecamatan": kec.code }, el("h2", {}, `Kec. ${kec.name}`), el("table", {}, ...rows)));
    }
    main.replaceChildren(...cards);
    document.getElementById("generated").textContent = `${T.generated} ${new Date(data.generated).toLocaleString(lang === "en" ? "en-GB" : "id-ID")}`;
    document.body.dataset.renders = String(Number(document.body.dataset.renders) + 1);
  }

  async function refresh() {
    timer = null;
    try {
      await loadCounts();
      document.getElementById("error").hidden = true;
    } catch (err) {
      document.getElementById("error").textContent = T.failed;
      document.getElementById("error").hidden = false;
      schedule(Math.min(30000, 1000 * 2 ** Math.min(attempt++, 5)));
      return;
    }
    render();
    for (const [site, ms] of want) {
      const place = data.places[site];
      if (place && place.observed_at_newest_ms !== null && place.observed_at_newest_ms >= ms) want.delete(site);
    }
    if (want.size && attempt < 7) {
      schedule(200 * 2 ** attempt++);
    } else {
      want.clear();
      attempt = 0;
    }
  }

  function schedule(ms) {
    if (timer === null) timer = setTimeout(refresh, ms);
  }

  function follow() {
    const source = new EventSource("/v1/stream");
    const live = document.getElementById("live");
    source.onopen = () => { document.body.dataset.live = "open"; live.textContent = T.open; };
    source.onerror = () => { document.body.dataset.live = "closed"; live.textContent = T.closed; };
    source.addEventListener("change", (ev) => {
      const d = JSON.parse(ev.data);
      if (!d.kinds.includes("bed") || !BED_SITES.has(d.site_kind)) return;
      want.set(d.site, Math.max(want.get(d.site) || 0, d.observed_ms || 0));
      schedule(100);
    });
    source.addEventListener("reset", () => schedule(100));
  }

  async function start() {
    translateStatic();
    for (;;) {
      try {
        await loadCounts();
        break;
      } catch (err) {
        document.getElementById("error").textContent = T.failed;
        document.getElementById("error").hidden = false;
        await new Promise((r) => setTimeout(r, 3000));
      }
    }
    document.getElementById("error").hidden = true;
    render();
    follow();
    setInterval(() => data && render(), 30000); // "n min ago" ages without a fetch
  }

  start();
})();
