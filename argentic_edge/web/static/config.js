"use strict";
// The configuration page: a form built from the schema the server sends (api/config), and a raw
// YAML editor. The server validates, applies and saves; its problems are shown next to the field
// whose key path they name. Secrets arrive masked and are sent back masked unless retyped.
(() => {
  const {el, api} = AE;
  const MASK = "********";
  const MOVE_DELAY = 2000;  // ms the new address is shown before the page goes there
  const loadResult = document.getElementById("config-result");
  const loadProblems = document.getElementById("config-problems");
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

  function say(node, className, ...parts) {
    node.className = `result ${className}`.trim();
    node.replaceChildren(...parts);
  }

  function clearProblems() {
    document.querySelectorAll("ul.problems").forEach((list) => list.replaceChildren());
    document.querySelectorAll(".field .error").forEach((p) => { p.textContent = ""; });
    document.querySelectorAll(".field.invalid").forEach((f) => f.classList.remove("invalid"));
  }

  // "(got …)" only when there is a value: a file that does not parse has none.
  const problemText = (problem) => problem.value === null || problem.value === undefined
    ? problem.expected : `${problem.expected} (got ${JSON.stringify(problem.value)})`;

  function showProblems(problems, list) {
    for (const problem of problems) {
      const message = problemText(problem);
      const field = [...document.querySelectorAll(".field")].find((f) => problem.path === f.dataset.where
        || problem.path.startsWith(`${f.dataset.where}[`) || problem.path.startsWith(`${f.dataset.where}.`));
      if (field) {
        field.closest("details").open = true;
        field.classList.add("invalid");
        field.querySelector(".error").textContent = message;
      }
      list.append(el("li", {}, el("code", {text: problem.path || "(document)"}), " ", message));
    }
  }

  // After a refused save: the first field in error of the form (the summary next to the
  // button for the YAML editor, which has no fields) scrolled into view and focused.
  function focusFirstProblem(form, list) {
    const field = form.querySelector(".field.invalid");
    const target = (field && field.querySelector("input, select, textarea")) || list;
    target.scrollIntoView({block: "center"});
    target.focus({preventScroll: true});
  }

  // Where this page is after a save that moved the web (another port, or HTTPS turned on or
  // off); null when it stays put, or is reached through Home Assistant's ingress.
  function movedTo(web) {
    if (!web || web.ingress) return null;
    const scheme = web.https ? "https:" : "http:";
    const port = location.port || (location.protocol === "https:" ? "443" : "80");
    if (scheme === location.protocol && String(web.port) === port) return null;
    return `${scheme}//${location.hostname}:${web.port}${location.pathname}`;
  }

  async function submit(form, body, type) {
    const result = form.querySelector(".result");
    const list = form.querySelector("ul.problems");
    clearProblems();
    say(result, "", "checking and applying…");
    let response;
    try {
      response = await api("PUT", "api/config", body, type);
    } catch (error) {
      say(result, "bad", `No answer from the appliance (${error.message}): reload the page to see what runs.`);
      return;
    }
    if (response.status === 422) {
      const count = response.data.problems.length;
      say(result, "bad", `Not saved: the configuration has ${count === 1 ? "a problem" : `${count} problems`}.`);
      showProblems(response.data.problems, list);
      focusFirstProblem(form, list);
    } else if (response.ok) {
      const saved = `Saved and applied (restarted: ${response.data.restarted.join(", ") || "nothing needed a restart"}).`;
      const target = movedTo(response.data.web);
      if (response.data.web === null) {
        say(result, "ok", `${saved} The web is now off (web.enabled): this page no longer answers.`);
      } else if (target) {
        say(result, "ok", `${saved} The page is now at `, el("a", {href: target, text: target}), ": opening it…");
        setTimeout(() => location.assign(target), MOVE_DELAY);
      } else {
        await load();
        say(result, "ok", saved);
      }
    } else {
      say(result, "bad", `Not saved: ${response.data.error}`);
    }
  }

  async function load() {
    const response = await api("GET", "api/config");
    if (!response.ok) {
      loadResult.className = "bad";
      loadResult.textContent = response.data.error || "cannot read the configuration";
      if (response.data.problems) showProblems(response.data.problems, loadProblems);
      return;
    }
    view = response.data;
    build();
    if (view.problems.length) showProblems(view.problems, loadProblems);
  }

  document.getElementById("config-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submit(event.target, documentFromForm());
  });
  document.getElementById("yaml-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submit(event.target, yamlText.value, "application/yaml");
  });
  load();
})();
