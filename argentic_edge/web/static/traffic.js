"use strict";
// Traffic: the live topic tree, the stream of decoded messages, publish and record.
(() => {
  const {el, api, count, bytes, rate, ago} = AE;
  let filter = "#", paused = false, source = null;
  const messages = [];

  function tree(rows) {
    const root = {children: new Map()};
    for (const row of rows) {
      let node = root;
      for (const level of row.topic.split("/")) {
        if (!node.children.has(level)) node.children.set(level, {children: new Map()});
        node = node.children.get(level);
      }
      node.row = row;
    }
    const render = (node) => el("ul", {}, [...node.children].map(([name, child]) => el("li", {},
      child.row ? el("span", {}, el("button", {type: "button", class: "topic", dataset: {topic: child.row.topic},
        text: name, onclick: () => detail(child.row.topic)}), el("span", {class: "meta",
        text: `${count(child.row.count)} msgs · ${rate(child.row.rate)}/s · ${bytes(child.row.bytes)} · ${ago(child.row.age)}`
          + (child.row.type ? ` · ${child.row.type}` : "") + (child.row.problem ? ` · ${child.row.problem}` : "")}))
        : el("span", {text: name}),
      child.children.size ? render(child) : null)));
    return render(root);
  }

  async function detail(topic) {
    const data = await INSPECT.get(`api/inspector/topics?topic=${encodeURIComponent(topic)}`);
    const envelope = Object.entries(data.envelope).map(([k, v]) => `${k}: ${v}`).join(" · ");
    let raw = data.payload;
    try { raw = JSON.stringify(JSON.parse(data.payload), null, 2); } catch (error) { /* not JSON: as is */ }
    document.getElementById("detail").replaceChildren(
      el("p", {}, el("strong", {text: data.topic})),
      el("p", {text: envelope || "not an Argentic envelope"}),
      el("details", {id: "raw-details"}, el("summary", {text: `raw JSON (${bytes(data.payload_size)}${data.truncated ? ", cut" : ""})`}),
        el("pre", {class: "raw", id: "raw", text: raw})));
  }

  async function load() {
    if (paused) return;
    const query = filter === "#" ? "" : `?filter=${encodeURIComponent(filter)}`;
    const data = await INSPECT.get(`api/inspector/topics${query}`);
    document.getElementById("topic-count").textContent = `(${count(data.topics.length)} shown of ${count(data.total)} matching, ${count(data.kept)} kept)`;
    document.getElementById("tree").replaceChildren(data.topics.length ? tree(data.topics)
      : el("p", {class: "muted", text: "no traffic seen yet"}));
    document.getElementById("sampling").textContent = INSPECT.sampling(data.reader);
    await recordState();
  }

  function stream() {
    if (source) source.close();
    source = new EventSource(`api/inspector/stream?filter=${encodeURIComponent(filter)}`);
    source.addEventListener("message", (event) => {
      if (paused) return;
      const m = JSON.parse(event.data);
      messages.unshift(el("div", {text: `${new Date(m.time * 1000).toLocaleTimeString()} ${m.topic} `
        + `${m.envelope.type || m.envelope.problem || ""} ${m.payload}`}));
      messages.length = Math.min(messages.length, 100);
      document.getElementById("messages").replaceChildren(...messages);
    });
    source.addEventListener("reader", (event) => {
      const state = JSON.parse(event.data);
      const parts = [INSPECT.sampling(state.reader), state.dropped ? `${count(state.dropped)} not shown (the page was slow)` : ""];
      document.getElementById("sampling").textContent = parts.filter(Boolean).join(" · ");
    });
  }

  document.getElementById("filter-form").addEventListener("submit", (event) => {
    event.preventDefault();
    filter = document.getElementById("filter").value.trim() || "#";
    stream();
    load();
  });
  document.getElementById("pause").addEventListener("click", (event) => {
    paused = !paused;
    event.target.textContent = paused ? "Resume" : "Pause";
  });
  document.getElementById("publish-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = await api("POST", "api/bus/publish", {topic: document.getElementById("publish-topic").value,
      payload: document.getElementById("publish-payload").value});
    document.getElementById("publish-result").textContent = result.ok
      ? `published ${bytes(result.data.bytes)} on ${result.data.topic}` : `refused: ${result.data.error}`;
  });

  async function recordState() {
    const state = await INSPECT.get("api/inspector/recording");
    document.getElementById("record-state").textContent = state.running
      ? `recording ${state.filter}: ${count(state.messages)} messages, ${bytes(state.bytes)}`
      : (state.messages !== undefined ? `stopped (${state.reason}): ${count(state.messages)} messages` : "not recording");
    document.getElementById("record-download").hidden = state.messages === undefined;
  }
  document.getElementById("record-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = await api("POST", "api/inspector/recording/start", {filter: document.getElementById("record-filter").value});
    if (!result.ok) document.getElementById("record-state").textContent = `refused: ${result.data.error}`;
    else await recordState();
  });
  document.getElementById("record-stop").addEventListener("click", async () => {
    await api("POST", "api/inspector/recording/stop");
    await recordState();
  });

  stream();
  INSPECT.poll(load, 2000);
})();
