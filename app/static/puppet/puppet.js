// The puppet page: sliders and presets pose the drawing through /api/puppet/pose; the webcam
// sends frames to /api/puppet/track and poses the drawing with what comes back. One request of
// each kind is in flight at a time; newer input replaces older input that was not sent yet.
// Every request names this page load's tab (X-Puppet-Tab), so each tab has its own drawing.
// The sliders are the weights' pose schema (GET /api/puppet/info: names, ranges, rest values, and
// groups); presets and the webcam set the parameters the server says they drive ("driven") and
// leave the others as the sliders have them.
// Errors are kept per source (drawing, pose, webcam, ...): a source's message stays until that
// source succeeds again or the user closes it. All text goes in through textContent.
"use strict";
let POSE = null;   // the pose schema's facts {schema, names, low, high, rest, input} (GET /api/puppet/info)
let GROUPS = [];   // the sliders' groups [{name, indices}]; one group named "" is shown without a heading
let DRIVEN = [];   // the positions that presets and the webcam set
const SOURCES = { info: "server", drawing: "drawing", pose: "pose", motion: "motion", gif: "GIF", track: "webcam" };
const $ = (id) => document.getElementById(id);
const TAB = newTabId();
const state = { pose: null, sliders: [], wanted: null, posing: false, frameUrl: null, inputUrl: null, ready: false,
                camera: null, seq: 0, calibrate: false, log: [], errors: new Map(), drawing: "",
                uploads: new Map(), playing: false };
window.puppetLog = state.log;      // what the page showed, for tests and debugging
window.puppetTab = TAB;

function newTabId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// ---------------------------------------------------------------- errors
function setError(source, msg) {
  if (msg) state.errors.set(source, msg); else state.errors.delete(source);
  $("error").replaceChildren(...[...state.errors].map(([src, text]) => {
    const li = el("li");
    li.dataset.source = src;
    const body = el("span", "msg");
    body.append(el("span", "source", SOURCES[src] + ": "), text);
    const close = el("button", "", "×");
    close.title = "dismiss";
    close.addEventListener("click", () => setError(src, ""));
    li.append(body, close);
    return li;
  }));
}

// Every POST says what it sends (JSON, or the uploaded image's own type): the server refuses
// other content types, which is how it tells its own page from another web site's.
function bodyType(body) {
  if (body instanceof Blob) return body.type.startsWith("image/") ? body.type : "application/octet-stream";
  return "application/json";
}

async function api(path, options = {}) {
  const headers = Object.assign({ "X-Puppet-Tab": TAB }, options.headers || {});
  if (options.method === "POST" && !headers["Content-Type"]) headers["Content-Type"] = bodyType(options.body);
  const resp = await fetch("/api/puppet/" + path, Object.assign({}, options, { headers }));
  if (!resp.ok) {
    let msg = resp.status + " " + resp.statusText;
    try { msg = (await resp.json()).error || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return resp;
}

const postJSON = (path, obj) => api(path, { method: "POST", headers: { "Content-Type": "application/json" },
                                            body: JSON.stringify(obj) });

// ---------------------------------------------------------------- pose
function buildSliders() {
  const grouped = !(GROUPS.length === 1 && GROUPS[0].name === "");
  $("sliders").classList.toggle("grouped", grouped);
  for (const group of GROUPS) {
    const labels = group.indices.map(slider);
    if (!grouped) { $("sliders").append(...labels); continue; }
    const box = el("details", "group");
    box.open = true;
    box.dataset.group = group.name;
    const summary = el("summary", "", group.name);
    const moved = el("span", "moved");
    const rest = el("button", "group-rest", "rest");
    rest.title = "set this group's parameters to their rest values";
    rest.addEventListener("click", (ev) => {
      ev.preventDefault();                  // a button in the summary must not fold the group
      const pose = state.pose.slice();
      for (const i of group.indices) pose[i] = POSE.rest[i];
      requestPose(pose);
    });
    summary.append(el("span", "count", ` (${group.indices.length})`), moved, rest);
    box.append(summary, ...labels);
    group.moved = moved;
    $("sliders").append(box);
  }
}

// one parameter's slider: its name, the range input and the value
function slider(i) {
  const name = POSE.names[i];
  const label = el("label");
  const input = el("input");
  Object.assign(input, { type: "range", id: "s-" + name, min: POSE.low[i], max: POSE.high[i], step: 0.01,
                         value: POSE.rest[i] });
  const out = el("output", "", POSE.rest[i].toFixed(2));
  out.id = "v-" + name;
  const title = el("span", "", name);
  title.title = `${name}: ${POSE.low[i]} to ${POSE.high[i]}, rest ${POSE.rest[i]}`;
  label.append(title, input, out);
  state.sliders[i] = { input, out };
  input.addEventListener("input", () => {
    state.pose[i] = parseFloat(input.value);
    out.textContent = state.pose[i].toFixed(2);
    requestPose(state.pose.slice());
  });
  return label;
}

function showPose(pose) {
  state.sliders.forEach(({ input, out }, i) => {
    input.value = pose[i];
    out.textContent = pose[i].toFixed(2);
  });
  const moved = (i) => Math.abs(pose[i] - POSE.rest[i]) > 1e-6;
  for (const group of GROUPS) {
    const n = group.indices.filter(moved).length;
    if (group.moved) group.moved.textContent = n ? ` · ${n} moved` : "";
  }
  // six numbers fit on a line; a larger schema's pose is shown as its values away from rest, by name
  $("pose-values").textContent = $("sliders").classList.contains("grouped")
    ? (POSE.names.flatMap((name, i) => (moved(i) ? [`${name} ${pose[i].toFixed(3)}`] : [])).join(", ") || "(rest)")
    : pose.map((v) => v.toFixed(3)).join(" ");
}

// a pose from a preset or the webcam: the parameters it drives, the others as they are
function drive(pose) {
  const out = state.pose.slice();
  for (const i of DRIVEN) out[i] = pose[i];
  return out;
}

// newest pose wins: at most one /pose request in flight
// the sliders show the pose asked for last (also the base of the next change), not the last one
// rendered: a slow network never moves a slider back while it is being dragged
function requestPose(pose) {
  state.pose = pose.slice();
  showPose(pose);
  state.wanted = pose;
  if (!state.posing) sendPose();
}

async function sendPose() {
  if (!state.ready || state.wanted === null) return;
  const pose = state.wanted;
  state.wanted = null;
  state.posing = true;
  try {
    const resp = await postJSON("pose", { pose });
    const ms = parseFloat(resp.headers.get("X-Net-Ms"));
    state.frameUrl = showBlob("output", await resp.blob(), state.frameUrl);
    if (ms > 0) $("net-fps").textContent = (1000 / ms).toFixed(1);
    setError("pose", "");
  } catch (e) {
    setError("pose", e.message);
  } finally {
    state.posing = false;
    if (state.wanted !== null) sendPose();
  }
}

function showBlob(id, blob, oldUrl) {
  if (oldUrl) URL.revokeObjectURL(oldUrl);
  const url = URL.createObjectURL(blob);
  $(id).src = url;
  return url;
}

// ---------------------------------------------------------------- the drawing
async function loadInfo() {
  const info = await (await api("info")).json();
  POSE = info.schema;
  GROUPS = info.groups;
  DRIVEN = info.driven;
  state.pose = POSE.rest.slice();
  buildSliders();
  showPose(state.pose);
  const grouped = $("sliders").classList.contains("grouped");
  $("weights-info").textContent =
    `weights ${info.weights}/ · ${info.path} path · ${info.device} · ${info.image_size}×${info.image_size} px` +
    (grouped ? ` · ${POSE.schema} pose (${POSE.names.length} parameters)` : "");
  document.body.classList.toggle("small-net", info.image_size < 256);
  showWeightsWarning(info.weights_warning);
  for (const name of info.drawings) $("folder-drawings").append(new Option(name, "file:" + name));
  if (!info.drawings.length) {
    const none = new Option("(no --drawings folder given: upload one)", "");
    none.disabled = true;
    $("folder-drawings").append(none);
  }
  for (const name of info.presets) $("preset").add(new Option(name, name));
  $("empty-how").textContent = (info.drawings.length ? "Pick one in the Drawing menu or upload " : "Upload ") +
    `a PNG or WebP whose background is transparent; it is fitted to ${info.image_size}×${info.image_size}.`;
  if (info.drawing) drawingChosen(info.drawing, info.warnings || []);
}

function showWeightsWarning(text) {
  if (!text) return;
  $("weights-warning").textContent = text;
  $("weights-warning").hidden = false;
}

function setReady(ready) {
  state.ready = ready;
  document.body.classList.toggle("empty", !ready);
  for (const b of document.querySelectorAll(".needs-drawing")) b.disabled = !ready;
}

async function drawingChosen(name, warnings) {
  $("drawing-name").textContent = name;
  $("drawing-warnings").replaceChildren(...warnings.map((w) => el("li", "", w)));
  setReady(true);
  requestPose(state.pose.slice());
  try {
    state.inputUrl = showBlob("input", await (await api("input")).blob(), state.inputUrl);
  } catch (e) { setError("drawing", e.message); }
}

// POST a drawing; on success it becomes the tab's drawing and the menu will show `menuValue`;
// on failure the error stays (until a drawing is chosen or it is closed) and the drawing in use stays
async function chooseDrawing(query, menuValue, file) {
  try {
    const fit = $("fit").checked ? "1" : "0";
    const opts = { method: "POST" };
    if (file) Object.assign(opts, { body: file, headers: { "Content-Type": file.type || "image/png" } });
    const reply = await (await api(`drawing?${query}&fit=${fit}`, opts)).json();
    state.drawing = menuValue;
    setError("drawing", "");
    showWeightsWarning(reply.warning);
    await drawingChosen(reply.drawing, reply.warnings);
    return true;
  } catch (e) {
    setError("drawing", e.message);
    return false;
  }
}

async function upload(file) {
  const value = "upload:" + file.name;
  if (await chooseDrawing("upload=" + encodeURIComponent(file.name), value, file)) {
    if (!state.uploads.has(value)) $("uploaded-drawings").append(new Option(file.name + " (uploaded)", value));
    state.uploads.set(value, file);
  }
  $("drawings").value = state.drawing;      // the menu shows the drawing in use
}

async function menuChanged(value) {
  if (value.startsWith("file:")) await chooseDrawing("name=" + encodeURIComponent(value.slice(5)), value);
  else if (state.uploads.has(value)) await upload(state.uploads.get(value));
  $("drawings").value = state.drawing;
}

// ---------------------------------------------------------------- presets and saving
async function playPreset() {
  if (state.playing) return;
  state.playing = true;
  $("play").disabled = true;
  try {
    const fps = 20;
    const poses = (await (await api(`motion?name=${encodeURIComponent($("preset").value)}&fps=${fps}`)).json()).poses;
    setError("motion", "");
    for (const pose of poses) {
      requestPose(drive(pose));
      await new Promise((r) => setTimeout(r, 1000 / fps));
    }
  } catch (e) { setError("motion", e.message); }
  state.playing = false;
  $("play").disabled = !state.ready;
}

function save(url, filename) {
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  a.click();
}

async function saveGif() {
  $("save-gif").disabled = true;
  try {
    const blob = await (await postJSON("gif", { motion: $("preset").value, fps: 20, pose: state.pose })).blob();
    save(URL.createObjectURL(blob), "puppet-" + $("preset").value + ".gif");
    setError("gif", "");
  } catch (e) { setError("gif", e.message); }
  $("save-gif").disabled = !state.ready;
}

// ---------------------------------------------------------------- webcam
// grab a frame, track it on the server, pose the drawing, repeat
async function startWebcam() {
  try {
    state.camera = await navigator.mediaDevices.getUserMedia({ video: { width: 480, height: 360 } });
  } catch (e) { setError("track", "cannot open the webcam: " + e.message); return; }
  setError("track", "");
  $("camera").srcObject = state.camera;
  $("camera").hidden = false;
  $("calibrate").disabled = false;
  $("webcam").disabled = true;
  await $("camera").play();
  trackLoop();
}

async function trackLoop() {
  const video = $("camera");
  const canvas = document.createElement("canvas");
  let last = performance.now();
  while (state.camera) {
    if (!video.videoWidth) { await new Promise((r) => setTimeout(r, 50)); continue; }
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    const image = canvas.toDataURL("image/jpeg", 0.9);
    const seq = ++state.seq;
    const calibrate = state.calibrate;
    state.calibrate = false;
    try {
      const reply = await (await postJSON("track", { seq, image, calibrate, gain: parseFloat($("gain").value) || 1,
                                                     mirror: $("mirror").checked })).json();
      setError("track", "");
      const now = performance.now();
      $("track-fps").textContent = (1000 / Math.max(now - last, 1)).toFixed(1);
      last = now;
      $("face").textContent = reply.face ? "yes" : "no";
      if (reply.calibrated) $("calibration").textContent = "calibrated on frame " + reply.seq;
      else if (calibrate) state.calibrate = true;          // no face in that frame: try the next
      if (reply.face) {
        state.log.push({ seq: reply.seq, pose: reply.pose, calibrated: reply.calibrated });
        requestPose(drive(reply.pose));
      }
    } catch (e) {
      setError("track", e.message);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

// ---------------------------------------------------------------- wiring
setReady(false);
$("drawings").addEventListener("change", (ev) => menuChanged(ev.target.value));
$("upload").addEventListener("change", (ev) => {
  const file = ev.target.files[0];
  ev.target.value = "";                 // choosing the same file again uploads it again
  if (file) upload(file);
});
$("reset").addEventListener("click", () => requestPose(POSE.rest.slice()));
$("play").addEventListener("click", playPreset);
$("save-png").addEventListener("click", () => state.frameUrl && save(state.frameUrl, "puppet.png"));
$("save-gif").addEventListener("click", saveGif);
$("webcam").addEventListener("click", startWebcam);
$("calibrate").addEventListener("click", () => { state.calibrate = true; });
loadInfo().catch((e) => setError("info", e.message));     // the schema's sliders first, then the page
