"use strict";
// The configuration page: a form built from the schema the server sends (api/config), and a raw
// YAML editor. The server validates, applies and saves; its problems are shown next to the field
// whose key path they name. Secrets arrive masked and are sent back masked unless retyped.
(() => {
  const {el, api} = AE;
  const MASK = "********";
  const result = document.getElementById("config-result");
  const problemList = document.getElementById("config-problems");
  const yamlText = document.getElementById("yaml-text");
  let view = null;
  let controls = [];

  const shown = (value) => value === null || value === undefined ? ""
    : typeof value === "object" ? JSON.stringify(value) : String(value);

  function input(field) {
    const id = `f-${field.where}`;
    const value = field.value;
    const placeholder = field.default === null ? "" : shown(field.default);
    if (field.kind === "bool" || field.kind === "choice") {
      const options = field.kind === "bool" ? [true, false] : field.options;
      return el("select", {id, name: field.where},
        el("option", {value: "", text: `default (${placeholder || "unset"})`}),
        options.map((o) => el("option", {value: JSON.stringify(o), text: String(o),
          selected: value !== null && value !== undefined && JSON.stringify(value) === JSON.stringify(o)})));
    }
    if (field.kind === "list") {
      return el("textarea", {id, name: field.where, rows: 2, placeholder: "one per line",
        text: Array.isArray(value) ? value.join("\n") : shown(value)});
    }
    if (field.kind === "yaml") {
      return el("pre", {id, class: "readonly", text: JSON.stringify(value ?? field.default, null, 1)});
    }
    const secret = field.kind === "secret" && !(typeof value === "string" && value.startsWith("${"));
    return el("input", {id, name: field.where, type: secret ? "password" : "text",
      autocomplete: secret ? "new-password" : "off", spellcheck: "false", value: shown(value), placeholder,
      inputmode: field.kind === "int" ? "numeric" : field.kind === "float" ? "decimal" : null});
  }

  function read(field, control) {
    const raw = control.value.trim();
    if (raw === "") return {set: false};
    switch (field.kind) {
      case "bool": case "choice": return {set: true, value: JSON.parse(control.value)};
      case "int": return {set: true, value: /^-?\d+$/.test(raw) ? Number(raw) : raw};
      case "float": return {set: true, value: raw !== "" && isFinite(Number(raw)) ? Number(raw) : raw};
      case "list": return {set: true, value: raw.split("\n").map((s) => s.trim()).filter(Boolean)};
      default: return {set: true, value: field.kind === "secret" ? control.value : raw};
    }
  }

  function build() {
    document.getElementById("config-path").textContent = view.path;
    yamlText.value = view.yaml;
    controls = [];
    const sections = new Map();
    for (const field of view.fields) {
      if (!sections.has(field.section)) sections.set(field.section, []);
      sections.get(field.section).push(field);
    }
    const container = document.getElementById("config-fields");
    // Sections fold; those the file sets something in (and the first) start open.
    container.replaceChildren(...[...sections].map(([name, fields], index) => el("details", {
      class: "section", open: index === 0 || fields.some((f) => f.value !== null && f.value !== undefined)},
      el("summary", {text: name}),
      el("div", {class: "fields"}, fields.map((field) => {
        const control = input(field);
        if (field.kind !== "yaml") controls.push({field, control, initial: control.value});
        return el("div", {class: "field", dataset: {where: field.where}},
          el("label", {for: control.id, text: field.path.split(".").pop().replaceAll("_", " ")}),
          control,
          el("small", {class: "muted", text: [field.doc, field.kind === "yaml" ? "edit in the YAML editor below" : ""]
            .filter(Boolean).join(" · ")}),
          el("p", {class: "error", role: "alert"}));
      })))));
  }

  function setPath(doc, keys, value) {
    let node = doc;
    keys.slice(0, -1).forEach((key) => {
      if (node[key] === null || typeof node[key] !== "object") node[key] = {};
      node = node[key];
    });
    node[keys[keys.length - 1]] = value;
  }

  function deletePath(doc, keys) {
    let node = doc;
    for (const key of keys.slice(0, -1)) {
      if (node === null || typeof node !== "object") return;
      node = node[key];
    }
    if (node && typeof node === "object") delete node[keys[keys.length - 1]];
  }

  function documentFromForm() {
    const doc = structuredClone(view.document || {});
    for (const {field, control, initial} of controls) {
      if (control.value === initial) continue;
      const {set, value} = read(field, control);
      if (set) setPath(doc, field.keys, value); else deletePath(doc, field.keys);
    }
    return doc;
  }

  function clearProblems() {
    problemList.replaceChildren();
    document.querySelectorAll(".field .error").forEach((p) => { p.textContent = ""; });
    document.querySelectorAll(".field.invalid").forEach((f) => f.classList.remove("invalid"));
  }

  function showProblems(problems) {
    for (const problem of problems) {
      const message = `${problem.expected} (got ${JSON.stringify(problem.value)})`;
      const field = [...document.querySelectorAll(".field")].find((f) => problem.path === f.dataset.where
        || problem.path.startsWith(`${f.dataset.where}[`) || problem.path.startsWith(`${f.dataset.where}.`));
      if (field) {
        field.closest("details").open = true;
        field.classList.add("invalid");
        field.querySelector(".error").textContent = message;
      }
      problemList.append(el("li", {}, el("code", {text: problem.path || "(document)"}), " ", message));
    }
  }

  async function submit(body, type) {
    clearProblems();
    result.className = "";
    result.textContent = "checking and applying…";
    const response = await api("PUT", "api/config", body, type);
    if (response.status === 422) {
      result.className = "bad";
      result.textContent = "Not saved: the configuration has problems.";
      showProblems(response.data.problems);
    } else if (response.ok) {
      const restarted = response.data.restarted.join(", ") || "nothing needed a restart";
      await load();
      result.className = "ok";
      result.textContent = `Saved and applied (restarted: ${restarted}).`;
    } else {
      result.className = "bad";
      result.textContent = `Not saved: ${response.data.error}`;
    }
  }

  async function load() {
    const response = await api("GET", "api/config");
    if (!response.ok) {
      result.className = "bad";
      result.textContent = response.data.error || "cannot read the configuration";
      if (response.data.problems) showProblems(response.data.problems);
      return;
    }
    view = response.data;
    build();
    if (view.problems.length) showProblems(view.problems);
  }

  document.getElementById("config-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submit(documentFromForm());
  });
  document.getElementById("yaml-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submit(yamlText.value, "application/yaml");
  });
  load();
})();
