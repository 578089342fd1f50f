"use strict";
// Shared by the inspector's pages: polling, SVG charts and the diagnoses list. Plain SVG built
// with DOM calls (no library, no CDN: the add-on runs offline); every name from the bus is text.
const INSPECT = (() => {
  const {el} = AE;
  const SVG = "http://www.w3.org/2000/svg";

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children.flat(Infinity)) if (child) node.append(child);
    return node;
  }

  // Calls `load` now and every `ms`; the page's status line says whether the last call worked.
  function poll(load, ms) {
    const live = document.getElementById("live");
    async function tick() {
      try {
        await load();
        live.textContent = `live · updated ${new Date().toLocaleTimeString()}`;
        live.classList.add("on");
      } catch (error) {
        live.textContent = `cannot reach the appliance: ${error.message}`;
        live.classList.remove("on");
      }
      setTimeout(tick, ms);
    }
    tick();
  }

  async function get(url) {
    const result = await AE.api("GET", url);
    if (!result.ok) throw new Error(result.data.error || `HTTP ${result.status}`);
    return result.data;
  }

  // A line chart of `series` ([{name, values}]) over `times` (unix seconds), 0 at the bottom.
  function chart(title, times, series) {
    const width = 320, height = 120, left = 34, bottom = 16;
    const all = series.flatMap((s) => s.values);
    const top = Math.max(1, ...all);
    const start = times[0] || 0, span = Math.max(1, (times[times.length - 1] || 0) - start);
    const x = (t) => left + (t - start) / span * (width - left - 4);
    const y = (v) => 4 + (1 - v / top) * (height - bottom - 4);
    const lines = series.map((s, i) => svg("polyline", {class: `s${i}`,
      points: s.values.map((v, j) => `${x(times[j]).toFixed(1)},${y(v).toFixed(1)}`).join(" ")}));
    const last = series.map((s) => `${s.name} ${AE.rate(s.values[s.values.length - 1] ?? 0)}/s`);
    return el("figure", {class: "chart", dataset: {chart: title, points: String(times.length), peak: String(Math.max(0, ...all))}},
      el("figcaption", {text: `${title} · ${last.join(" · ")}`}),
      svg("svg", {viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title},
        svg("line", {class: "axis", x1: left, y1: height - bottom, x2: width, y2: height - bottom}),
        svg("text", {x: 0, y: 12, text: AE.rate(top)}),
        svg("text", {x: 0, y: height - bottom, text: "0"}),
        lines));
  }

  function diagnoses(target, report) {
    const items = report.diagnoses || [];
    target.replaceChildren(
      items.length ? el("div", {}, items.map((d) => el("p", {class: "diagnosis", dataset: {kind: d.kind}},
        el("strong", {text: `${d.kind.replaceAll("_", " ")}: ${d.subject}`}), el("br"), d.cause)))
        : el("p", {class: "muted", text: "nothing wrong seen"}),
      (report.notes || []).map((n) => el("p", {class: "muted", text: n})));
  }

  function sampling(reader) {
    return reader && reader.load ? `Sampling: ${reader.load}` : "";
  }

  return {svg, poll, get, chart, diagnoses, sampling};
})();
