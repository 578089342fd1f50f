"use strict";
// Tools: the registry with each tool's declared spec, who registered and who confirmed it.
(() => {
  const {el, table, count, ago} = AE;

  function spec(t) {
    const flags = [t.dangerous && "dangerous", t.requires_approval && "requires approval"].filter(Boolean);
    const schema = typeof t.input_schema === "string" ? t.input_schema : JSON.stringify(t.input_schema);
    return el("details", {}, el("summary", {text: (t.description || "no description") +
      (flags.length ? ` · ${flags.join(", ")}` : "")}),
      el("pre", {class: "raw", text: `${t.spec} spec\n${schema || "{}"}`}));
  }

  async function load() {
    const [tools, report] = await Promise.all([INSPECT.get("api/inspector/tools"),
      INSPECT.get("api/inspector/diagnostics")]);
    INSPECT.diagnoses(document.getElementById("diagnoses"), report);
    document.getElementById("tools").replaceChildren(tools.tools.length ? table(
      ["name", "state", "registered by", "confirmed by", "spec", "notes", "last seen"],
      tools.tools.map((t) => [t.name, t.state, t.providers.join(", ") || "–", t.agent || "–", spec(t),
        [t.duplicate && "duplicate", t.stale && `stale: ${t.stale}`, t.error].filter(Boolean).join("; ") || "–",
        ago(t.age)]), "list tools") : el("p", {class: "muted", text: "no registrations seen since someone started watching"}));
    document.getElementById("clients").replaceChildren(tools.clients.length ? table(
      ["client", "heartbeats", "every", "last seen", ""], tools.clients.map((c) => [c.id, count(c.heartbeats),
        c.interval === null ? "–" : `${c.interval.toFixed(1)} s`, ago(c.age),
        c.stopped ? el("span", {class: "bad", text: "stopped"}) : ""]), "list clients")
      : el("p", {class: "muted", text: "no heartbeats seen"}));
  }
  INSPECT.poll(load, 2000);
})();
