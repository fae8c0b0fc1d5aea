// The model page: collection list (filters, paging, scan progress), model view (live render,
// pose sliders, camera box lines), override editor. All text goes in through textContent.
// Under a pose schema (serve --schema tha3): the parameter table (how each was found, a slider and a
// morph choice each) and each model's coverage in the list.
"use strict";
const API = "/api/models/";
let POSE = null;   // the pose facts {names, low, high, rest} (GET /api/pose, or the schema's)
let SCHEMA = null; // the page's pose schema {schema, names, low, high, rest, kind}; null: THA1's six
const NONE = "\u0000none";   // the morph select's value for "none" (no morph is called that)
const SIZE = 256, SHOWN = 384, TOP_ROW = 64, CHIN_ROW = 192;   // chin line: bottom edge of row 191
const PAGE = 50;
const $ = (id) => document.getElementById(id);
const state = { offset: 0, total: 0, path: null, info: null, frame: null, pose: null,
                busy: false, again: false, reasons: "" };

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

async function getJSON(url, opts) {
  const r = await fetch(url, opts);
  const body = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

// ---------------------------------------------------------------- collection
async function refreshStatus() {
  const s = await getJSON(API + "status");
  const done = s.state === "done" || s.state === "failed";
  updateReasons(s.reasons);
  await loadList();                 // the list first, so "scan done" means the list is final
  $("scan-text").textContent = s.state === "failed" ? "scan failed: " + s.error
    : done ? `scan done: ${s.total} models` : `${s.state}: ${s.checked} / ${s.total || "?"} checked`;
  $("scan-bar").max = Math.max(1, s.total); $("scan-bar").value = s.checked;
  $("counts").textContent = `usable ${s.usable} · rejected ${s.rejected} · doubtful ${s.doubtful} · overridden ${s.overridden}`;
  return done;
}

async function pollStatus() {
  try {
    if (!(await refreshStatus())) setTimeout(pollStatus, 1000);
  } catch (e) { $("scan-text").textContent = "error: " + e.message; setTimeout(pollStatus, 3000); }
}

function updateReasons(reasons) {
  const key = JSON.stringify(reasons);
  if (key === state.reasons) return;
  state.reasons = key;
  const sel = $("reason"), keep = sel.value;
  while (sel.options.length > 1) sel.remove(1);
  for (const [kind, n] of reasons) {
    const o = el("option", "", `${n} × ${kind}`); o.value = kind; sel.append(o);
  }
  sel.value = keep;
}

async function loadList() {
  const q = new URLSearchParams({ status: $("status").value, reason: $("reason").value,
                                  q: $("q").value, offset: state.offset, limit: PAGE });
  const data = await getJSON(API + "list?" + q);
  state.total = data.total;
  const box = $("items");
  const items = data.items.map(itemRow);
  box.replaceChildren(...items);
  const end = Math.min(data.total, state.offset + PAGE);
  $("range").textContent = data.total ? `${state.offset + 1}–${end} of ${data.total}` : "none";
}

function itemRow(it) {
  const row = el("div", "item" + (it.path === state.path ? " selected" : ""));
  row.dataset.path = it.path;
  const img = el("img"); img.loading = "lazy"; img.alt = "";
  if (it.status !== "pending" && it.format) img.src = API + "thumb?path=" + encodeURIComponent(it.path) + "&v=" + (it.frame || []).join(",") + (it.ok ? "" : "x");
  const text = el("div");
  text.append(el("div", "path", it.path));
  const badges = el("div");
  badges.append(el("span", "status " + it.status, it.status));
  if (it.doubtful) {
    const badge = el("span", "status doubtful", "doubtful");
    badge.title = it.doubts.join("\n");
    badges.append(" ", badge);
  }
  if (it.overridden) badges.append(" ", el("span", "status overridden", "override"));
  if (it.coverage) {
    const cov = el("span", "coverage", `${it.coverage.found}/${it.coverage.size}`);
    cov.title = `${SCHEMA ? SCHEMA.schema : "schema"} parameters found`;
    badges.append(" ", cov);
  }
  if (it.format) badges.append(` ${it.format} · ${it.vertices} v`);
  text.append(badges);
  if (it.reason) text.append(el("div", "reason", it.reason));
  if (it.doubtful) text.append(el("div", "doubts", "doubtful: " + it.doubts.join("; ")));
  row.append(img, text);
  row.addEventListener("click", () => openModel(it.path));
  return row;
}

// ---------------------------------------------------------------- one model
async function openModel(path) {
  state.path = path;
  for (const r of document.querySelectorAll(".item")) r.classList.toggle("selected", r.dataset.path === path);
  $("view").hidden = false;
  $("title").textContent = path;
  $("save-result").textContent = ""; $("params-result").textContent = "";
  $("summary").textContent = "loading…";
  state.info = null;                      // no save with the previous model's edits meanwhile
  $("save").disabled = true; $("save-params").disabled = true;
  try {
    const info = await getJSON(API + "model?path=" + encodeURIComponent(path));
    if (path !== state.path) return;      // another model was opened meanwhile
    state.info = info; state.frame = info.frame;
    $("view").classList.remove("broken");
    showInfo(info);
    if (SCHEMA) { state.pose = SCHEMA.rest.slice(); loadParams(path); }
    requestRender();
    $("sheet").src = API + "sheet?path=" + encodeURIComponent(path) + "&t=" + Date.now();
  } catch (e) {
    if (path !== state.path) return;
    showBroken(e.message);
  }
}

// a model that cannot be loaded: its reason, and no editor or views that could not work
function showBroken(reason) {
  $("view").classList.add("broken");
  $("summary").textContent = "";
  $("load-error").textContent = "This model cannot be loaded, so it cannot be shown or given an override: " + reason;
  $("live").removeAttribute("src"); $("sheet").removeAttribute("src");
  $("save").disabled = true;
}

function showInfo(info) {
  const c = info.check;
  $("summary").textContent = `${info.format} · ${info.vertices} vertices · ${info.triangles} triangles · ` +
    (c ? (c.ok ? "usable" : "rejected: " + c.reason) : "not checked yet");
  $("top").value = round(info.head_top_y); $("chin").value = round(info.chin_y);
  for (const key of ["left_eye", "right_eye", "both_eyes", "mouth"]) {
    const sel = $("m-" + key);
    const auto = el("option", "", `(automatic: ${info.chosen[key] || "none"})`); auto.value = "";
    sel.replaceChildren(auto, ...info.morphs.map((m) => {
      const o = el("option", "", m.name + (m.name_en ? ` / ${m.name_en}` : "")); o.value = m.name; return o;
    }));
    sel.value = key in info.override ? (info.override[key] || "") : "";
  }
  $("exclude").checked = !!info.override.exclude;
  $("exclude-reason").value = info.override.exclude || "";
  $("save").disabled = !info.editable;
  $("save-file").textContent = info.editable ? "writes " + info.override_file
    : "inside a zip archive: unpack it to give this model an override";
  const notes = [...info.notes, ...info.warnings, ...(c ? c.notes : [])];
  $("notes").replaceChildren(...[...new Set(notes)].map((n) => el("li", "", n)));
  placeLines();
}

function round(v) { return Math.round(v * 10000) / 10000; }

function buildSliders() {
  const box = $("sliders");
  POSE.names.forEach((name, i) => {
    const label = el("label"); label.append(el("span", "", name));
    const input = el("input"); input.type = "range"; input.id = "s-" + name;
    input.min = POSE.low[i]; input.max = POSE.high[i]; input.step = 0.01; input.value = POSE.rest[i];
    const out = el("span", "", String(POSE.rest[i]));
    input.addEventListener("input", () => { state.pose[i] = +input.value; out.textContent = input.value; requestRender(); });
    label.append(input, out); box.append(label);
  });
}

async function requestRender() {
  if (!state.path) return;
  if (state.busy) { state.again = true; return; }
  state.busy = true;
  const path = state.path;
  try {
    const sent = state.pose ? state.pose.join(",") : "";                // none: the rest pose
    const pose = sent ? "&pose=" + sent : "";
    const r = await fetch(API + "render?path=" + encodeURIComponent(path) + pose);
    if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
    const blob = await r.blob();
    if (path === state.path) {
      const old = $("live").src;
      $("live").src = URL.createObjectURL(blob);
      if (old.startsWith("blob:")) URL.revokeObjectURL(old);
      $("render-ms").textContent = `render ${r.headers.get("X-Render-Ms")} ms`;
      $("live").dataset.pose = sent;                   // what the image shows (tests wait for it)
      $("live").dataset.renders = String(+($("live").dataset.renders || 0) + 1);
    }
  } catch (e) {
    $("render-ms").textContent = "render failed: " + e.message;
  } finally {
    state.busy = false;
    if (state.again) { state.again = false; requestRender(); }
  }
}

// ---------------------------------------------------------------- the pose schema's parameters
async function loadParams(path) {
  $("params").replaceChildren(el("div", "", "finding parameters…"));
  try {
    const data = await getJSON(API + "parameters?path=" + encodeURIComponent(path));
    if (path !== state.path || !state.info) return;
    $("params").replaceChildren(...data.parameters.map(paramRow));
    const found = data.parameters.filter((p) => p.how !== "missing").length;
    $("params-title").textContent = `Parameters: ${found}/${data.parameters.length} found (${data.schema})`;
    $("save-params").disabled = !state.info.editable;
    $("params").dataset.loaded = String(+($("params").dataset.loaded || 0) + 1);   // tests wait for it
  } catch (e) {
    if (path === state.path) $("params").replaceChildren(el("div", "reason", "parameters: " + e.message));
  }
}

function paramRow(p, i) {
  const row = el("div", "param"); row.dataset.name = p.name; row.dataset.how = p.how;
  const input = el("input"); input.type = "range"; input.id = "p-" + p.name;
  input.min = SCHEMA.low[i]; input.max = SCHEMA.high[i]; input.step = 0.01; input.value = SCHEMA.rest[i];
  input.disabled = p.how === "missing";
  const out = el("span", "value", String(SCHEMA.rest[i]));
  input.addEventListener("input", () => showParameter(i, +input.value));
  row.append(el("span", "name", p.name), el("span", "how " + p.how, p.how), input, out, morphChoice(p));
  row.append(el("div", "detail", p.detail));
  return row;
}

// a morph parameter: the model's morphs, "none" and automatic; a bone parameter: its bones
function morphChoice(p) {
  if (p.kind !== "morph") return el("span", "bones", p.bones.join(", ") || "no bones");
  const sel = el("select"); sel.id = "pm-" + p.name;
  const auto = el("option", "", p.how === "override" ? "(automatic)" : `(automatic: ${p.morph || "none"})`);
  auto.value = "";
  const none = el("option", "", "none"); none.value = NONE;
  sel.append(auto, none, ...state.info.morphs.map((m) => {
    const o = el("option", "", m.name + (m.name_en ? ` / ${m.name_en}` : "")); o.value = m.name; return o;
  }));
  sel.value = mappedValue(p.name);
  return sel;
}

// what the override maps a parameter to, as a select value ("" when it maps nothing)
function mappedValue(name) {
  const table = state.info.override.parameters || {};
  return name in table ? (table[name] === null ? NONE : table[name]) : "";
}

// the pose with parameter i at v and every other one at rest, rendered
function showParameter(i, v) {
  state.pose = SCHEMA.rest.slice(); state.pose[i] = v;
  SCHEMA.names.forEach((name, j) => {
    const input = $("p-" + name);
    if (!input) return;
    if (j !== i) input.value = SCHEMA.rest[j];
    input.parentElement.querySelector(".value").textContent = String(j === i ? v : SCHEMA.rest[j]);
  });
  requestRender();
}

// the parameter rows' changed morph choices: {name: morph | null (none) | "" (automatic)}
function paramEdits() {
  const set = {};
  for (const sel of document.querySelectorAll("#params select")) {
    const name = sel.id.slice(3);
    if (sel.value !== mappedValue(name)) set[name] = sel.value === NONE ? null : sel.value;
  }
  return set;
}

// ---------------------------------------------------------------- camera box lines
// image row r (0 = top, SIZE = bottom) <-> model y: y = cy + half * (1 - 2 r / SIZE)
const rowToY = (r) => state.frame[1] + state.frame[2] * (1 - 2 * r / SIZE);
const yToRow = (y) => (1 - (y - state.frame[1]) / state.frame[2]) * SIZE / 2;

function placeLines() {
  if (!state.frame) return;
  $("top-line").style.top = (yToRow(+$("top").value) * SHOWN / SIZE) + "px";
  $("chin-line").style.top = (yToRow(+$("chin").value) * SHOWN / SIZE) + "px";
}

function dragLine(line, input) {
  line.addEventListener("pointerdown", (ev) => {
    ev.preventDefault();
    line.setPointerCapture(ev.pointerId);
    const stage = $("stage").getBoundingClientRect();
    const move = (e) => {
      const px = Math.max(0, Math.min(SHOWN, e.clientY - stage.top));
      line.style.top = px + "px";
      input.value = round(rowToY(px * SIZE / SHOWN));
    };
    const up = (e) => { move(e); line.removeEventListener("pointermove", move); line.removeEventListener("pointerup", up); };
    line.addEventListener("pointermove", move);
    line.addEventListener("pointerup", up);
  });
}

// ---------------------------------------------------------------- saving
function edits() {
  const info = state.info, ov = info.override, set = {};
  const top = +$("top").value, chin = +$("chin").value;
  if (Math.abs(top - round(info.head_top_y)) > 1e-9 || Math.abs(chin - round(info.chin_y)) > 1e-9) {
    set.head_top_y = top; set.chin_y = chin;
  }
  for (const key of ["left_eye", "right_eye", "both_eyes", "mouth"]) {
    const v = $("m-" + key).value, had = key in ov ? (ov[key] || "") : "";
    if (v !== had) set[key] = v || null;
  }
  const ex = $("exclude").checked ? ($("exclude-reason").value.trim() || "excluded by hand") : null;
  if ((ex || null) !== (ov.exclude || null)) set.exclude = ex;
  if (SCHEMA && Object.keys(paramEdits()).length) set.parameters = paramEdits();
  return set;
}

async function save(resultId = "save-result") {
  if (!state.info) return;
  const set = edits();
  const result = $(resultId);
  if (!Object.keys(set).length) { result.textContent = "nothing changed"; return; }
  result.textContent = "saving and re-validating…";
  try {
    const res = await getJSON(API + "override", { method: "POST", headers: { "Content-Type": "application/json" },
                                                  body: JSON.stringify({ path: state.path, set }) });
    const lines = Object.entries(res.changed).map(([k, [a, b]]) => `${k}: ${JSON.stringify(a)} → ${JSON.stringify(b)}`);
    const c = res.check;
    lines.push(`wrote ${res.file}`, c.ok ? "check: usable" : "check: rejected: " + c.reason);
    const path = state.path;
    await openModel(path);
    result.textContent = lines.join("\n");
    await refreshStatus().catch(() => loadList());   // the header's counts and the list
    result.dataset.saved = String(+(result.dataset.saved || 0) + 1);
  } catch (e) { result.textContent = "not saved: " + e.message; }
}

// ---------------------------------------------------------------- wiring
getJSON(API + "schema").then(async (schema) => {
  if (schema.schema) {                    // the schema's parameters: one slider per row of the table
    SCHEMA = POSE = schema; state.pose = schema.rest.slice(); $("params-box").hidden = false;
    if (state.path && state.info) loadParams(state.path);
    return;
  }
  const facts = await getJSON("/api/pose");
  POSE = facts; state.pose = facts.rest.slice(); buildSliders();
}).catch((e) => { $("scan-text").textContent = "error: " + e.message; });
dragLine($("top-line"), $("top"));
dragLine($("chin-line"), $("chin"));
for (const id of ["top", "chin"]) $(id).addEventListener("input", placeLines);
$("save").addEventListener("click", () => save());
$("save-params").addEventListener("click", () => save("params-result"));
for (const id of ["status", "reason"]) $(id).addEventListener("change", () => { state.offset = 0; loadList(); });
$("q").addEventListener("input", () => { state.offset = 0; loadList(); });
$("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); loadList(); });
$("next").addEventListener("click", () => { if (state.offset + PAGE < state.total) { state.offset += PAGE; loadList(); } });
pollStatus();
