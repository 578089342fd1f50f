"use strict";
// Overview: how to connect an agent, a map of the system and the last hour's rates.
(() => {
  const {el} = AE;
  const {svg, chart} = INSPECT;

  function port(endpoint) {
    const found = /:(\d+)$/.exec(String(endpoint || ""));
    return found ? Number(found[1]) : undefined;
  }

  // The status document's bus.connect when the appliance offers one, else built from the bus card.
  function connect(bus) {
    if (bus && bus.connect && bus.connect.messaging_yaml) return bus.connect;
    const host = /^tcp:\/\/([^:/]+)/.exec(String(bus && bus.publish || ""));
    const address = host && !["0.0.0.0", "*", "::"].includes(host[1]) ? host[1] : location.hostname;
    return {addresses: [address], messaging_yaml: ["messaging:", "  protocol: zeromq",
      `  broker_address: ${address}`, `  port: ${port(bus && bus.publish) ?? 5555}`,
      `  backend_port: ${port(bus && bus.subscribe) ?? 5556}`, "  start_proxy: false",
      "  proxy_mode: external", ""].join("\n")};
  }

  function uplinks(status) {
    const found = status.uplinks;
    const list = Array.isArray(found) ? found : (found && typeof found === "object"
      ? (Array.isArray(found.uplinks) ? found.uplinks : Object.entries(found.uplinks || found)
        .filter(([, v]) => v && typeof v === "object").map(([name, v]) => ({name, ...v}))) : null);
    if (list) return list.map((u) => ({name: u.name || u.protocol || "uplink", state: u.state}));
    const bridge = status.bridge;
    return bridge && bridge.enabled !== false ? [{name: "mqtt", state: bridge.state}] : [];
  }

  // Each peer with its state, or its link's progress while it is trusted but not linked yet
  // ("link connecting", "link refused"). Only a linked peer's line is up: no other carries messages.
  function peers(status) {
    const section = status.peers || {};
    const list = Array.isArray(section.peers) ? section.peers : [];
    return list.map((p) => ({name: p.name || p.id || "peer", linked: p.state === "linked",
      state: p.state === "trusted" && p.link ? `link ${p.link}` : p.state}));
  }

  function node(kind, x, y, label, detail) {
    return svg("g", {class: kind, "data-kind": kind, "data-name": label},
      svg("circle", {cx: x, cy: y, r: kind === "self" ? 16 : 9}),
      svg("text", {x, y: y + (kind === "self" ? 30 : 20), "text-anchor": "middle",
        text: label.length > 18 ? label.slice(0, 17) + "…" : label}),
      detail ? svg("text", {x, y: y + (kind === "self" ? 42 : 31), "text-anchor": "middle",
        class: "muted", text: detail}) : null);
  }

  function spread(items, count) { return items.slice(0, count); }

  function map(status, tools, point) {
    const width = 640, height = 380, cx = width / 2, cy = 150;
    const edges = [], nodes = [];
    const place = (list, kind, xy, detail, up) => list.forEach((item, i) => {
      const [x, y] = xy(i, list.length);
      // An edge names its node as the node does, so the page says which line is whose.
      const whose = {"data-kind": kind, "data-name": item.name};
      edges.push(svg("line", {x1: cx, y1: cy, x2: x, y2: y, class: up(item) ? "up" : "down", ...whose}));
      const label = detail(item);
      if (label) edges.push(svg("text", {x: (cx + x) / 2, y: (cy + y) / 2 - 4, "text-anchor": "middle", text: label, ...whose}));
      nodes.push(node(kind, x, y, item.name));
    });
    const column = (x) => (i, n) => [x, 40 + (i + 1) * (220 / (n + 1))];
    const row = (y, from, to) => (i, n) => [from + (i + 0.5) * ((to - from) / n), y];
    place(spread(peers(status), 8), "peer", column(70), (p) => p.state || "", (p) => p.linked);
    place(spread(uplinks(status), 8), "uplink", column(width - 70), (u) => {
      const rates = point && point.uplinks && point.uplinks[u.name];
      return `${u.state || ""}${rates ? ` ↑${AE.rate(rates.to)} ↓${AE.rate(rates.from)}/s` : ""}`;
    }, (u) => u.state === "connected");
    const clients = (tools.clients || []).map((c) => ({name: c.id, stopped: c.stopped}));
    place(spread(clients, 8), "agent", row(300, 20, cx - 10), () => "", (c) => !c.stopped);
    place(spread((tools.tools || []).map((t) => ({name: t.name, state: t.state})), 8), "tool",
      row(340, cx + 10, width - 20), () => "", (t) => t.state === "registered");
    const bus = point ? `bus in ${AE.rate(point.bus_in)}/s · out ${AE.rate(point.bus_out)}/s` : "";
    nodes.push(node("self", cx, cy, status.node ? status.node.name : "this node", bus));
    return svg("svg", {viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "map of the system"},
      edges, nodes);
  }

  function charts(history) {
    const points = history.points || [];
    if (points.length < 2) return [el("p", {class: "muted", text: "collecting: a point every "
      + `${history.interval} s`})];
    const times = points.map((p) => p.time);
    const out = [chart("bus", times, [{name: "in", values: points.map((p) => p.bus_in)},
      {name: "out", values: points.map((p) => p.bus_out)}])];
    const names = new Set(points.flatMap((p) => Object.keys(p.uplinks || {})));
    for (const name of names) {
      out.push(chart(`uplink ${name}`, times, [
        {name: "to", values: points.map((p) => (p.uplinks[name] || {}).to || 0)},
        {name: "from", values: points.map((p) => (p.uplinks[name] || {}).from || 0)}]));
    }
    out.push(chart("drops", times, [{name: "drops", values: points.map((p) => p.drops)}]));
    return out;
  }

  let yaml = "";
  document.getElementById("connect-copy").addEventListener("click", () => {
    navigator.clipboard.writeText(yaml).catch(() => {});
  });

  async function load() {
    const [status, history, tools] = await Promise.all([INSPECT.get("api/status"),
      INSPECT.get("api/inspector/history"), INSPECT.get("api/inspector/tools")]);
    const block = connect(status.bus);
    yaml = block.messaging_yaml;
    document.getElementById("connect-yaml").textContent = yaml;
    document.getElementById("connect-addresses").textContent =
      `LAN address: ${(block.addresses || []).join(", ") || "–"}`;
    const points = history.points || [];
    document.getElementById("map").replaceChildren(map(status, tools, points[points.length - 1]));
    document.getElementById("charts").replaceChildren(...charts(history));
  }
  INSPECT.poll(load, 3000);
})();
