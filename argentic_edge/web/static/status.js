"use strict";
// The status page: renders the status document from the event stream (api/events), falling back
// to polling api/status when no event arrives (a proxy that buffers streams).
(() => {
  const {el, api, count, rate, bytes, duration, ago, table} = AE;
  const live = document.getElementById("live");
  let previous = null;
  let lastEvent = 0;

  const body = (id) => document.querySelector(`#${id} .body`);
  const off = (section) => !section || section.enabled === false;
  const scalar = (v) => ["string", "number", "boolean"].includes(typeof v);

  function facts(object) {
    const rows = Object.entries(object).filter(([k, v]) => scalar(v) && k !== "enabled");
    return el("dl", {class: "facts"}, rows.map(([k, v]) => [el("dt", {text: k.replaceAll("_", " ")}),
      el("dd", {text: String(v)})]));
  }

  function findList(section, key) {
    if (!section) return [];
    if (Array.isArray(section)) return section;
    if (Array.isArray(section[key])) return section[key];
    return [];
  }

  // A bus reader's load line ("sampling under load: N skipped"), when it has one.
  const readerLoad = (reader) => reader && reader.load
    ? el("p", {class: "bad", text: `bus reader: ${reader.load}`}) : "";

  function renderNode(doc) {
    document.getElementById("node-name").textContent = doc.node.name;
    document.getElementById("uptime").textContent = duration(doc.node.uptime);
    document.getElementById("version").textContent = doc.node.version + (doc.node.addon ? " (add-on)" : "");
    const health = document.getElementById("health");
    health.replaceChildren(doc.health.ok ? el("span", {class: "ok", text: "all services up"})
      : el("ul", {class: "bad"}, doc.health.reasons.map((r) => el("li", {text: r}))));
  }

  function counter(counters, path) {
    const [side, name] = path.split(".");
    return counters && counters[side] ? counters[side][name] : undefined;
  }

  function renderBus(bus, now) {
    document.getElementById("bus-mode").textContent = off(bus) ? "stopped"
      : `${bus.mode} · publish ${bus.publish} · subscribe ${bus.subscribe}`;
    const counters = bus && bus.counters;
    for (const cell of document.querySelectorAll("#bus [data-counter]")) {
      const value = counter(counters, cell.dataset.counter);
      cell.textContent = cell.dataset.counter.includes("bytes") ? bytes(value) : count(value);
    }
    for (const cell of document.querySelectorAll("#bus [data-rate]")) {
      const value = counter(counters, cell.dataset.rate);
      const before = previous && counter(previous.counters, cell.dataset.rate);
      const seconds = previous ? now - previous.time : 0;
      cell.textContent = seconds > 0 && typeof before === "number" && value >= before
        ? rate((value - before) / seconds) : "–";
    }
    if (counters) previous = {time: now, counters};
    renderConnect(bus);
  }

  // Copies to the clipboard; over plain HTTP on the LAN (no secure context, no clipboard API)
  // the text is selected and copied the old way.
  async function copy(text, source, button) {
    let copied = false;
    try {
      await navigator.clipboard.writeText(text);
      copied = true;
    } catch (error) {
      const range = document.createRange();
      range.selectNodeContents(source);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      copied = document.execCommand("copy");
    }
    button.textContent = copied ? "Copied" : "Selected: press Ctrl+C";
    setTimeout(() => { button.textContent = "Copy Argentic configuration"; }, 3000);
  }

  // Where agents on the LAN connect, and the Argentic configuration that does it. Drawn again
  // only when it changes, so a selection or an open <details> survives the live updates.
  function renderConnect(bus) {
    const box = document.getElementById("bus-connect");
    const connect = !off(bus) && bus.connect;
    const shown = connect ? JSON.stringify(connect) : "";
    if (box.dataset.shown === shown) return;
    box.dataset.shown = shown;
    if (!connect) return box.replaceChildren();
    const port = (endpoint) => endpoint.split(":").pop();
    const host = (address) => address.includes(":") ? `[${address}]` : address;
    const yaml = el("pre", {class: "readonly", text: connect.messaging_yaml});
    const button = el("button", {type: "button", class: "secondary", text: "Copy Argentic configuration",
      onclick: () => copy(connect.messaging_yaml, yaml, button)});
    box.replaceChildren(el("h3", {text: "Agents on the LAN connect to"}),
      el("ul", {class: "endpoints"}, connect.addresses.map((address) => el("li", {},
        el("code", {text: `tcp://${host(address)}:${port(bus.publish)}`}), " publish · ",
        el("code", {text: `tcp://${host(address)}:${port(bus.subscribe)}`}), " subscribe"))),
      el("details", {}, el("summary", {text: "Argentic messaging configuration"}), yaml),
      el("p", {}, button));
  }

  // The uplinks: one card per uplink (#uplink-<name>), in the configuration's order.
  function renderUplinks(uplinks) {
    const holder = document.getElementById("uplinks");
    if (!uplinks || !uplinks.length) {
      return holder.replaceChildren(el("section", {class: "card wide", id: "uplinks-none"},
        el("h2", {text: "Uplinks"}), el("div", {class: "body"}, el("p", {class: "muted", text: "disabled"}))));
    }
    holder.replaceChildren(...uplinks.map(uplinkCard));
  }

  function uplinkCard(uplink) {
    const routes = findList(uplink, "routes");
    const traffic = (counters) => {
      if (!counters) return "–";
      const dropped = Object.values(counters.dropped || {}).reduce((a, b) => a + b, 0);
      return `${count(counters.messages)} msgs` + (dropped ? `, ${count(dropped)} dropped` : "");
    };
    const buffer = uplink.buffer || {};
    const shown = {...uplink, ...(uplink.link || {}), name: undefined, protocol: undefined, connected_for: uplink.connected_for == null
      ? undefined : duration(uplink.connected_for), buffered: uplink.buffer === undefined ? undefined
      : `${count(buffer.messages)} of ${count(buffer.max_messages)} msgs, ${bytes(buffer.bytes)}`
        + (buffer.oldest_age == null ? "" : `, oldest waiting ${duration(buffer.oldest_age)}`)
        + (buffer.dropped_oldest ? `, ${count(buffer.dropped_oldest)} oldest dropped` : "")
        + (buffer.durable ? ", on disk" : "")};
    const badge = el("span", {class: `badge ${uplink.state === "connected" ? "ok" : "bad"}`, text: uplink.state});
    return el("section", {class: "card wide uplink", id: `uplink-${uplink.name}`},
      el("h2", {}, `Uplink ${uplink.name} `, el("span", {class: "muted", text: `(${uplink.protocol}) `}), badge),
      el("div", {class: "body"}, facts(shown), readerLoad(uplink.bus_reader), routes.length ? table(
        ["bus filter", "direction", "qos", "retain", "broker filter", "to broker", "from broker"],
        routes.map((r) => [r.local, r.direction, String(r.qos), String(r.retain), r.remote,
          traffic(r.out), traffic(r.in)]), "list routes") : ""));
  }

  // The last removal's outcome, shown in the card until the page is left: the status line is
  // rewritten by the next live update, a second later.
  let haResult = {text: "", ok: true};

  async function removeFromHomeAssistant() {
    const result = await api("POST", "api/homeassistant/remove");
    haResult = result.ok
      ? {text: `removed from Home Assistant (${result.data.removed} topics cleared)`, ok: true}
      : {text: `removal failed: ${result.data.error}`, ok: false};
    const shown = document.querySelector("#homeassistant .result");
    if (shown) { shown.textContent = haResult.text; shown.className = haResultClass(); }
  }

  function haResultClass() {
    return `result ${haResult.text ? (haResult.ok ? "ok" : "bad") : ""}`;
  }

  // Only where it applies: discovery on, and the device announced to a broker at least once
  // (a standalone appliance without a broker has no Home Assistant device to remove).
  function renderHomeAssistant(ha) {
    const card = document.getElementById("homeassistant");
    card.hidden = off(ha) || !ha.announcements;
    if (card.hidden) return;
    body("homeassistant").replaceChildren(facts(ha), el("p", {class: "actions"},
      ha.withdrawn ? "" : el("button", {type: "button", class: "secondary",
        text: "Remove from Home Assistant",
        title: "Clears the device's retained discovery topics; do this before uninstalling",
        onclick: removeFromHomeAssistant}),
      el("span", {class: haResultClass(), role: "status", "aria-live": "polite", text: haResult.text})));
  }

  function renderAgents(agents) {
    if (off(agents)) return body("agents").replaceChildren(el("p", {class: "muted", text: "disabled"}));
    const clients = findList(agents, "agents");
    const tools = findList(agents, "tools");
    body("agents").replaceChildren(readerLoad(agents.reader),
      el("h3", {text: `Agents and clients (${clients.length})`}),
      clients.length ? table(["id", "role", "heartbeats", "last seen"], clients.map((a) =>
        [a.id, a.role, count(a.heartbeats), ago(a.age)]), "list agents")
        : el("p", {class: "muted", text: "none seen yet (agents send heartbeats on _ping/<id>)"}),
      el("h3", {text: `Tools (${tools.length})`}),
      tools.length ? table(["name", "state", "provider", "agent", "last seen"], tools.map((t) =>
        [t.name, t.state, t.provider || "–", t.agent || "–", ago(t.age)]), "list tools")
        : el("p", {class: "muted", text: "none registered yet"}));
  }

  async function peerAction(peer, action) {
    const result = await api("POST", `api/peers/${encodeURIComponent(peer.id)}/${action}`);
    const done = action === "approve" ? "approved" : "forgot";
    live.textContent = result.ok ? `${done} ${peer.name || peer.id}` : `${action} failed: ${result.data.error}`;
  }

  // What a peer is to us, in words: the link's progress when it is trusted but not linked,
  // and its request when it asked to link and we do not trust it yet.
  function peerState(p, now) {
    if (p.link_request && !p.trust) {
      return el("span", {class: "bad", text: `wants to link (asked ${ago(now - p.link_request)})`});
    }
    if (p.state === "trusted" && p.link === "refused") return "trusted · waiting for its approval";
    if (p.state === "trusted" && p.link) return `trusted · link ${p.link}`;
    return String(p.state ?? "–");
  }

  function peerButtons(p) {
    return el("span", {class: "buttons"},
      !p.trust && p.state !== "lost" ? el("button", {type: "button", text: "Approve",
        onclick: () => peerAction(p, "approve")}) : "",
      p.trust === "approved" ? el("button", {type: "button", class: "secondary", text: "Forget",
        onclick: () => peerAction(p, "forget")}) : "");
  }

  function renderPeers(peers, now) {
    if (off(peers)) return body("peers").replaceChildren(el("p", {class: "muted", text: "discovery disabled"}));
    const list = findList(peers, "peers");
    if (!list.length) return body("peers").replaceChildren(el("p", {class: "muted", text: "no peers found"}));
    body("peers").replaceChildren(table(["peer", "address", "state", "trust", "last seen", ""], list.map((p) => [
      [el("strong", {text: p.name || "–"}), el("br"), el("code", {class: "muted small", text: p.id})],
      p.link_address || (p.addresses || []).join(", ") || "–",
      peerState(p, now), p.trust || "not trusted", ago(now - p.last_seen), peerButtons(p)]), "list peers"));
  }

  function certificates(value, out) {
    if (Array.isArray(value)) value.forEach((v) => certificates(v, out));
    else if (value && typeof value === "object") {
      if ("days_left" in value) out.push(value);
      else Object.values(value).forEach((v) => certificates(v, out));
    }
    return out;
  }

  function renderCertificates(certs) {
    if (off(certs)) return body("certificates").replaceChildren(el("p", {class: "muted", text: "certificates disabled"}));
    const list = certificates(certs, []);
    body("certificates").replaceChildren(certs.error ? el("p", {class: "bad", text: certs.error}) : "", list.length ? table(["certificate", "days left"], list.map((c) =>
      [String(c.name ?? c.subject ?? "–"), el("span", {class: c.days_left < 30 ? "bad" : "ok", text: Math.floor(c.days_left)})]))
      : el("p", {class: "muted", text: "none yet"}));
  }

  function renderWarnings(warnings) {
    body("warnings").replaceChildren(warnings.length ? el("ul", {class: "warnings"}, warnings.map((w) =>
      el("li", {}, el("time", {text: new Date(w.time * 1000).toLocaleTimeString()}), " ",
        el("strong", {text: w.level}), " ", el("span", {class: "muted", text: w.logger}), " ", w.message)))
      : el("p", {class: "muted", text: "none"}));
  }

  function render(doc) {
    if (doc.error) { live.textContent = doc.error; return; }
    renderNode(doc);
    renderBus(doc.bus, doc.time);
    renderUplinks(doc.uplinks);
    renderHomeAssistant(doc.homeassistant);
    renderAgents(doc.agents);
    renderPeers(doc.peers, doc.time);
    renderCertificates(doc.certificates);
    renderWarnings(doc.warnings || []);
    live.textContent = `live · updated ${new Date(doc.time * 1000).toLocaleTimeString()}`;
    live.className = "live on";
  }

  const events = new EventSource("api/events");
  events.onmessage = (event) => { lastEvent = Date.now(); render(JSON.parse(event.data)); };
  events.onerror = () => { live.textContent = "reconnecting…"; live.className = "live"; };
  setInterval(async () => {
    if (Date.now() - lastEvent < 5000) return;
    const result = await api("GET", "api/status");
    if (result.ok) render(result.data);
  }, 2500);
})();
