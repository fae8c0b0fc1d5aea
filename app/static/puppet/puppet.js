// The puppet page: sliders and presets pose the drawing through /api/puppet/pose; the webcam
// sends frames to /api/puppet/track and poses the drawing with what comes back. One request of
// each kind is in flight at a time; newer input replaces older input that was not sent yet.
"use strict";
let POSE = null;   // the pose facts {names, low, high, rest} from the server (GET /api/pose)
const $ = (id) => document.getElementById(id);
const state = { pose: null, wanted: null, posing: false, frameUrl: null, ready: false,
                camera: null, seq: 0, calibrate: false, log: [] };
window.puppetLog = state.log;      // what the page showed, for tests and debugging

function showError(msg) { $("error").textContent = msg || ""; }

async function api(path, options = {}) {
  const resp = await fetch("/api/puppet/" + path, options);
  if (!resp.ok) {
    let msg = resp.status + " " + resp.statusText;
    try { msg = (await resp.json()).error || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return resp;
}

function buildSliders() {
  POSE.names.forEach((name, i) => {
    const label = document.createElement("label");
    label.innerHTML = `${name} <input type="range" id="s-${name}" min="${POSE.low[i]}" max="${POSE.high[i]}"
      step="0.01" value="${POSE.rest[i]}"> <output id="v-${name}">${POSE.rest[i].toFixed(2)}</output>`;
    $("sliders").appendChild(label);
    label.querySelector("input").addEventListener("input", (ev) => {
      state.pose[i] = parseFloat(ev.target.value);
      requestPose(state.pose.slice());
    });
  });
}

function showPose(pose) {
  POSE.names.forEach((name, i) => {
    $("s-" + name).value = pose[i];
    $("v-" + name).textContent = pose[i].toFixed(2);
  });
  $("pose-values").textContent = pose.map((v) => v.toFixed(3)).join(" ");
}

// newest pose wins: at most one /pose request in flight
function requestPose(pose) {
  state.wanted = pose;
  if (!state.posing) sendPose();
}

async function sendPose() {
  if (!state.ready || state.wanted === null) return;
  const pose = state.wanted;
  state.wanted = null;
  state.posing = true;
  try {
    const resp = await api("pose", { method: "POST", body: JSON.stringify({ pose }) });
    const ms = parseFloat(resp.headers.get("X-Net-Ms"));
    const blob = await resp.blob();
    if (state.frameUrl) URL.revokeObjectURL(state.frameUrl);
    state.frameUrl = URL.createObjectURL(blob);
    $("output").src = state.frameUrl;
    if (ms > 0) $("net-fps").textContent = (1000 / ms).toFixed(1);
    state.pose = pose.slice();
    showPose(pose);
    showError("");
  } catch (e) {
    showError(e.message);
  } finally {
    state.posing = false;
    if (state.wanted !== null) sendPose();
  }
}

async function loadInfo() {
  const info = await (await api("info")).json();
  $("output").width = $("output").height = Math.max(info.image_size, 256);
  for (const name of info.drawings) $("drawings").add(new Option(name, name));
  for (const name of info.presets) $("preset").add(new Option(name, name));
  if (info.drawing) drawingChosen(info.drawing, []);
}

function drawingChosen(name, warnings) {
  $("drawing-name").textContent = name + (warnings.length ? " — " + warnings.join("; ") : "");
  state.ready = true;
  requestPose(state.pose.slice());
}

async function chooseDrawing(query, body) {
  try {
    const fit = $("fit").checked ? "1" : "0";
    const reply = await (await api(`drawing?${query}&fit=${fit}`, { method: "POST", body })).json();
    drawingChosen(reply.drawing, reply.warnings);
  } catch (e) { showError(e.message); }
}

async function playPreset() {
  try {
    const fps = 20;
    const poses = (await (await api(`motion?name=${encodeURIComponent($("preset").value)}&fps=${fps}`)).json()).poses;
    for (const pose of poses) {
      requestPose(pose);
      await new Promise((r) => setTimeout(r, 1000 / fps));
    }
  } catch (e) { showError(e.message); }
}

function save(url, filename) {
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  a.click();
}

async function saveGif() {
  try {
    const body = JSON.stringify({ motion: $("preset").value, fps: 20 });
    const blob = await (await api("gif", { method: "POST", body })).blob();
    save(URL.createObjectURL(blob), "puppet-" + $("preset").value + ".gif");
  } catch (e) { showError(e.message); }
}

// --- webcam: grab a frame, track it on the server, pose the drawing, repeat
async function startWebcam() {
  try {
    state.camera = await navigator.mediaDevices.getUserMedia({ video: { width: 480, height: 360 } });
  } catch (e) { showError("webcam: " + e.message); return; }
  $("camera").srcObject = state.camera;
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
      const body = JSON.stringify({ seq, image, calibrate, gain: parseFloat($("gain").value) || 1,
                                    mirror: $("mirror").checked });
      const reply = await (await api("track", { method: "POST", body })).json();
      const now = performance.now();
      $("track-fps").textContent = (1000 / Math.max(now - last, 1)).toFixed(1);
      last = now;
      $("face").textContent = reply.face ? "yes" : "no";
      if (reply.calibrated) $("calibration").textContent = "calibrated on frame " + reply.seq;
      else if (calibrate) state.calibrate = true;          // no face in that frame: try the next
      if (reply.face) {
        state.log.push({ seq: reply.seq, pose: reply.pose, calibrated: reply.calibrated });
        requestPose(reply.pose);
      }
    } catch (e) {
      showError(e.message);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

$("drawings").addEventListener("change", (ev) => {
  if (ev.target.value) chooseDrawing("name=" + encodeURIComponent(ev.target.value));
});
$("upload").addEventListener("change", (ev) => {
  const file = ev.target.files[0];
  if (file) chooseDrawing("upload=" + encodeURIComponent(file.name), file);
});
$("reset").addEventListener("click", () => requestPose(POSE.rest.slice()));
$("play").addEventListener("click", playPreset);
$("save-png").addEventListener("click", () => state.frameUrl && save(state.frameUrl, "puppet.png"));
$("save-gif").addEventListener("click", saveGif);
$("webcam").addEventListener("click", startWebcam);
$("calibrate").addEventListener("click", () => { state.calibrate = true; });
fetch("/api/pose").then((r) => r.json()).then((facts) => {     // the pose facts first, then the page
  POSE = facts;
  state.pose = facts.rest.slice();
  buildSliders();
  showPose(state.pose);
  return loadInfo();
}).catch((e) => showError(e.message));
