// The public bed board: free ICU, HCU and isolation beds by kecamatan and hospital.
// Every number on the page is one the API returned (/v1/beds/summary); the page does no
// arithmetic on counts. /v1/stream says which site changed; the page then refetches until the
// API's newest observation for that site has caught up with the event (the ingester stores a
// reading a moment after the broker delivered it), with a bounded backoff.
"use strict";
(function () {
  const GROUPS = ["icu", "hcu", "isolation"];
  const BED_SITES = new Set(["hospital", "isolation_centre"]);
  const params = new URLSearchParams(location.search);
  const lang = params.get("lang") === "en" ? "en" : "id";
  const T = window.BOARD_TEXT[lang];
  const want = new Map(); // site -> observed_ms the API must reach
  let regions = null; // [{code, name, sites: [{id, name, kind}]}]
  let data = null; // {kecamatan: {group: {code: row}}, site: {...}, siteAll: {code: row}}
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

  function byCode(summary) {
    const out = {};
    for (const row of summary.items) out[row.code] = row;
    return out;
  }

  async function loadRegions() {
    const doc = await getJSON("/v1/regions");
    regions = [];
    for (const kec of doc.kecamatan) {
      const sites = [];
      for (const kel of kec.kelurahan) {
        for (const s of kel.sites) if (BED_SITES.has(s.kind)) sites.push(s);
      }
      sites.sort((a, b) => a.name.localeCompare(b.name, "id"));
      if (sites.length) regions.push({ code: kec.code, name: kec.name, sites });
    }
    regions.sort((a, b) => a.name.localeCompare(b.name, "id"));
  }

  async function loadCounts() {
    const asks = [getJSON("/v1/beds/summary?level=site")];
    for (const level of ["kecamatan", "site"]) {
      for (const g of GROUPS) asks.push(getJSON(`/v1/beds/summary?level=${level}&group=${g}`));
    }
    const [all, ...rest] = await Promise.all(asks);
    const next = { siteAll: byCode(all), kecamatan: {}, site: {} };
    GROUPS.forEach((g, i) => {
      next.kecamatan[g] = byCode(rest[i]);
      next.site[g] = byCode(rest[GROUPS.length + i]);
    });
    next.generated = all.generated_at;
    data = next;
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

  function cell(level, code, group, row) {
    const td = el("td", { class: "n", "data-cell": `${level}:${code}:${group}` });
    if (!row || row.free === null || row.capacity === null) {
      td.append(T.none);
      return td;
    }
    if (row.free === 0) td.classList.add("zero");
    td.append(el("b", {}, String(row.free)), el("small", {}, `${T.of} ${row.capacity}`));
    return td;
  }

  function render() {
    const main = document.getElementById("board");
    const cards = [];
    for (const kec of regions) {
      const head = el("tr", {}, el("th", {}, T.place), ...GROUPS.map((g) => el("th", {}, T[g])));
      const rows = [head];
      for (const s of kec.sites) {
        const all = data.siteAll[s.id];
        const fresh = !all || all.observed_at_newest_ms === null ? T.nodata : ago(all.observed_at_newest_ms);
        const stale = !all || all.stale;
        const name = el("td", {}, s.name, el("span", { class: "fresh" }, stale && all && all.observed_at_newest_ms !== null ? `${fresh} · ${T.stale}` : fresh));
        const tr = el("tr", { "data-site": s.id, class: stale ? "stale" : "" }, name);
        for (const g of GROUPS) tr.append(cell("site", s.id, g, data.site[g][s.id]));
        rows.push(tr);
      }
      const total = el("tr", { class: "total", "data-kecamatan": kec.code }, el("td", {}, T.total));
      for (const g of GROUPS) total.append(cell("kecamatan", kec.code, g, data.kecamatan[g][kec.code]));
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
      const row = data.siteAll[site];
      if (row && row.observed_at_newest_ms !== null && row.observed_at_newest_ms >= ms) want.delete(site);
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
        await loadRegions();
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
