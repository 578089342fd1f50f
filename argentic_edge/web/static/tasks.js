"use strict";
// Tasks: every TASK paired with its answer; pending ones age on each refresh.
(() => {
  const {el, table, count, duration} = AE;
  const seconds = (v) => typeof v === "number" ? `${(v * 1000).toFixed(1)} ms` : "–";
  const when = (t) => typeof t === "number" ? new Date(t * 1000).toLocaleTimeString() : "–";

  async function load() {
    const [tasks, report] = await Promise.all([INSPECT.get("api/inspector/tasks"),
      INSPECT.get("api/inspector/diagnostics")]);
    INSPECT.diagnoses(document.getElementById("diagnoses"), report);
    document.getElementById("task-states").textContent = Object.entries(tasks.states)
      .map(([k, v]) => `${k} ${count(v)}`).join(" · ");
    document.getElementById("per-tool").replaceChildren(tasks.per_tool.length ? table(
      ["tool", "samples", "p50", "p90", "p99", "max"], tasks.per_tool.map((r) =>
        [r.tool, count(r.samples), seconds(r.p50), seconds(r.p90), seconds(r.p99), seconds(r.max)]),
      "list per-tool") : el("p", {class: "muted", text: "no answered tasks yet"}));
    document.getElementById("tasks").replaceChildren(tasks.tasks.length ? table(
      ["task", "tool", "caller", "sent", "answered", "latency", "state"], tasks.tasks.map((t) => [
        t.task_id, t.tool || "–", t.caller || "–", when(t.sent), when(t.answered),
        t.latency !== null ? seconds(t.latency) : (t.age !== null ? `waiting ${duration(t.age)}` : "–"),
        el("span", {class: t.state === "pending" ? "pending" : (t.state === "answered" ? "" : "bad"),
          text: t.state + (t.error ? `: ${t.error}` : "") + (t.cancel_reason ? ` (${t.cancel_reason})` : "")})]),
      "list tasks") : el("p", {class: "muted", text: "no tasks seen since someone started watching"}));
  }
  INSPECT.poll(load, 2000);
})();
