// Board texts: Bahasa Indonesia by default, English with ?lang=en.
"use strict";
window.BOARD_TEXT = {
  id: {
    title: "Tempat tidur kosong sekarang",
    hint: "Jumlah tempat tidur kosong per kecamatan dan rumah sakit. Telepon rumah sakit sebelum datang.",
    source: "Sumber: sensor tempat tidur Pantau, diperbarui langsung.",
    connecting: "Menyambung…", open: "Langsung", closed: "Terputus, menyambung ulang…",
    icu: "ICU", hcu: "HCU", isolation: "Isolasi", place: "Rumah sakit",
    total: "Semua di kecamatan", of: "dari", none: "–", nodata: "belum ada data",
    stale: "data lama", updated: "diperbarui", ago: "lalu", now: "baru saja",
    min: "menit", hour: "jam", day: "hari", generated: "Halaman dibuat",
    failed: "Data tidak dapat dimuat; mencoba lagi.", other: "English", otherLang: "en",
    docTitle: "Tempat tidur kosong — Pantau",
  },
  en: {
    title: "Free beds now",
    hint: "Free beds by district (kecamatan) and hospital. Call the hospital before you go.",
    source: "Source: Pantau bed sensors, updated live.",
    connecting: "Connecting…", open: "Live", closed: "Disconnected, reconnecting…",
    icu: "ICU", hcu: "HCU", isolation: "Isolation", place: "Hospital",
    total: "All in kecamatan", of: "of", none: "–", nodata: "no data yet",
    stale: "stale", updated: "updated", ago: "ago", now: "just now",
    min: "min", hour: "h", day: "d", generated: "Page built",
    failed: "Could not load the data; retrying.", other: "Bahasa Indonesia", otherLang: "id",
    docTitle: "Free beds — Pantau",
  },
};
