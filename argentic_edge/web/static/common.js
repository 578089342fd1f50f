"use strict";
// Shared by the pages: DOM building without innerHTML (names seen on the bus are untrusted text),
// API calls carrying the CSRF token, and number formatting. Every URL is relative, so the pages
// work under any path prefix (Home Assistant ingress, reverse proxies).
const AE = (() => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  async function api(method, url, body, contentType) {
    const headers = {"Accept": "application/json"};
    if (method !== "GET") headers["X-CSRF-Token"] = csrf;
    let payload;
    if (body !== undefined) {
      headers["Content-Type"] = contentType || "application/json";
      payload = typeof body === "string" ? body : JSON.stringify(body);
    }
    const response = await fetch(url, {method, headers, body: payload, credentials: "same-origin"});
    if (response.status === 401) {
      window.location.href = "login";
    }
    const type = response.headers.get("Content-Type") || "";
    const data = type.includes("json") ? await response.json() : {error: await response.text()};
    return {status: response.status, ok: response.ok, data};
  }

  function count(n) {
    return typeof n === "number" ? Math.round(n).toLocaleString("en") : "–";
  }

  function rate(n) {
    if (typeof n !== "number" || !isFinite(n)) return "–";
    return n >= 100 ? Math.round(n).toLocaleString("en") : n.toFixed(1);
  }

  function bytes(n) {
    if (typeof n !== "number") return "–";
    const units = ["B", "kB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return `${i ? n.toFixed(1) : n} ${units[i]}`;
  }

  function duration(seconds) {
    if (typeof seconds !== "number") return "–";
    const s = Math.max(0, Math.floor(seconds));
    const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600);
    const m = Math.floor(s % 3600 / 60), r = s % 60;
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${r}s`;
    return `${r}s`;
  }

  function ago(seconds) {
    return typeof seconds === "number" ? `${duration(seconds)} ago` : "–";
  }

  function table(headers, rows, className) {
    return el("table", {class: className || "list"},
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", {text: h})))),
      el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c))))));
  }

  return {el, api, count, rate, bytes, duration, ago, table};
})();
