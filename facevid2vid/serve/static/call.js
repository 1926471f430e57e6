// facevid2vid serve: the live call page (camera over WebRTC, synthesized video back, live figures).
"use strict";

const $ = (id) => document.getElementById(id);
let pc = null;
let peer = null;
let poller = null;
let tiler = null;

function sayError(text) { $("call-error").textContent = text || ""; }
function state(text) { $("call-state").textContent = text; }

async function postJson(url, body) {
  const response = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" },
                                      body: JSON.stringify(body) });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function iceGathered(connection) {
  // the server (aiortc) takes no trickled candidates: wait until all are in the offer
  return new Promise((resolve) => {
    if (connection.iceGatheringState === "complete") { resolve(); return; }
    const check = () => {
      if (connection.iceGatheringState === "complete") {
        connection.removeEventListener("icegatheringstatechange", check);
        resolve();
      }
    };
    connection.addEventListener("icegatheringstatechange", check);
    setTimeout(resolve, 3000);
  });
}

async function start() {
  sayError("");
  $("start").disabled = true;
  try {
    state("opening the camera ...");
    const camera = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480, frameRate: { ideal: 15 } }, audio: false });
    $("local").srcObject = camera;
    pc = new RTCPeerConnection({ iceServers: [] });
    for (const track of camera.getVideoTracks()) pc.addTrack(track, camera);
    pc.addEventListener("track", (event) => {
      $("remote").srcObject = event.streams[0] || new MediaStream([event.track]);
    });
    pc.addEventListener("connectionstatechange", () => {
      state(`connection: ${pc.connectionState}`);
      if (pc.connectionState === "failed") sayError("the connection failed");
    });
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc);
    state("connecting ...");
    const answer = await postJson("/api/call/offer", { sdp: pc.localDescription.sdp, type: "offer",
                                                       room: $("room").value });
    peer = answer.peer;
    document.body.dataset.peer = peer;
    await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
    await setLoss();
    await setCompare();
    $("hangup").disabled = false;
    poller = setInterval(poll, 500);
    tiler = setInterval(refreshTile, 200);
  } catch (error) {
    sayError(error.message || String(error));
    await hangup();
  }
}

async function hangup() {
  if (poller) clearInterval(poller);
  if (tiler) clearInterval(tiler);
  poller = tiler = null;
  if (peer) {
    const id = peer;
    peer = null;
    try { await postJson(`/api/call/${id}/hangup`, {}); } catch (error) { /* already gone */ }
  }
  if (pc) {
    for (const sender of pc.getSenders()) if (sender.track) sender.track.stop();
    pc.close();
    pc = null;
  }
  $("start").disabled = false;
  $("hangup").disabled = true;
  state("not in a call");
}

async function setCompare() {
  const on = $("compare").checked;
  $("h264-figure").hidden = !on;
  $("h264-row").hidden = !on;
  if (peer) await postJson(`/api/call/${peer}/settings`, { compare: on });
}

function refreshTile() {
  // the tile is a PNG of the latest H.264 frame, fetched again whenever the last one has loaded
  if (!peer || !$("compare").checked) return;
  const img = $("h264");
  if (img.dataset.loading === "1") return;
  img.dataset.loading = "1";
  const next = new Image();
  next.onload = () => { img.src = next.src; img.dataset.loading = ""; img.dataset.frames = Number(img.dataset.frames || 0) + 1; };
  next.onerror = () => { img.dataset.loading = ""; };  // none yet (the first 2 s), or the call ended
  next.src = `/api/call/${peer}/h264.png?t=${Date.now()}`;
}

async function setLoss() {
  const loss = Number($("loss").value);
  $("loss-value").textContent = `${Math.round(loss * 100)}%`;
  if (peer) await postJson(`/api/call/${peer}/settings`, { loss });
}

// -- figures ------------------------------------------------------------------------------------

function kbps(bytes, seconds) { return seconds > 0 ? (8 * bytes) / seconds / 1000 : 0; }
function fmt(value, digits = 1) { return value === null || value === undefined ? "–" : Number(value).toFixed(digits); }

function fill(prefix, snap) {
  const s = snap.sender;
  if (!s) return;
  const r = snap.receiver;
  const link = snap.link;
  const total = s.header_bytes + s.key_bytes + s.motion_bytes;
  const cell = $(`${prefix}-kbps`);
  const totalKbps = kbps(total, snap.elapsed);
  cell.textContent = `${fmt(totalKbps, 2)} = ${fmt(kbps(s.key_bytes, snap.elapsed), 2)} + ` +
                     `${fmt(kbps(s.motion_bytes, snap.elapsed), 2)}`;
  cell.dataset.total = totalKbps;
  cell.dataset.seq = snap.seq;
  $(`${prefix}-frames`).textContent = `${s.frames} / ${r.frames}`;
  $(`${prefix}-fps`).textContent = fmt(r.fps);
  $(`${prefix}-bits`).textContent = `${fmt(s.motion_bits_per_frame)} (+ ${fmt(s.framing_bits_per_frame)})`;
  const reasons = Object.entries(s.key_reasons).map(([k, v]) => `${k} ${v}`).join(", ");
  $(`${prefix}-keys`).textContent = `${s.key_frames}${reasons ? ` (${reasons})` : ""}`;
  $(`${prefix}-link`).textContent = `${link.packets}, ${link.dropped}, ${link.corrupted} (loss ${Math.round(100 * link.loss)}%)`;
  $(`${prefix}-sync`).textContent = `${r.losses}, ${r.key_requests}, ${r.recoveries}` +
                                    (r.recovery_ms_median !== null ? ` (median ${fmt(r.recovery_ms_median, 0)} ms)` : "");
  $(`${prefix}-latency`).textContent = `${fmt(r.latency_ms_median, 0)} / ${fmt(r.latency_ms_p95, 0)} ms`;
  $(`${prefix}-input`).textContent = `${snap.input.received}, ${snap.input.dropped}`;
  $(`${prefix}-problem`).textContent = r.last_problem || "none";
  if (prefix === "s") {
    const h = snap.h264;
    const cell = $("s-h264");
    cell.textContent = h ? `${fmt(h.kbps, 2)} (${fmt(h.target_kbps, 2)}), ${h.psnr_db === null ? "–" : `${fmt(h.psnr_db, 2)} dB`}`
                         : ($("compare").checked ? "starts 2 s into the call" : "off");
    cell.dataset.kbps = h ? h.kbps : "";
  }
}

async function browserBuffer() {
  // the receive (jitter) buffer of the synthesized track, from the browser's WebRTC statistics
  if (!pc) return null;
  const report = await pc.getStats();
  for (const stat of report.values()) {
    if (stat.type === "inbound-rtp" && stat.kind === "video" && stat.jitterBufferEmittedCount) {
      return (1000 * stat.jitterBufferDelay) / stat.jitterBufferEmittedCount;
    }
  }
  return null;
}

async function poll() {
  if (!peer) return;
  try {
    const response = await fetch(`/api/call/${peer}/stats`);
    const stats = await response.json();
    if (!response.ok) throw new Error(stats.error);
    fill("s", stats.sending);
    fill("r", stats.receiving);
    $("remote-caption").textContent = stats.receiving_from === "self"
      ? "received: yourself through the codec (alone in the room)"
      : "received: the other party (synthesized)";
    const buffer = await browserBuffer();
    const server = stats.receiving.receiver ? stats.receiving.receiver.latency_ms_median : null;
    $("e2e").textContent = server === null ? "–"
      : `${fmt(server + (buffer || 0), 0)} ms (${fmt(server, 0)} + ${fmt(buffer, 0)})`;
  } catch (error) {
    sayError(error.message);
  }
}

async function loadInfo() {
  const response = await fetch("/api/info");
  const info = await response.json();
  $("model").textContent = `call model ${info.call_model} on ${info.device}`;
}

$("start").addEventListener("click", start);
$("hangup").addEventListener("click", hangup);
$("loss").addEventListener("input", () => { $("loss-value").textContent = `${Math.round(Number($("loss").value) * 100)}%`; });
$("loss").addEventListener("change", () => setLoss().catch((error) => sayError(error.message)));
$("compare").addEventListener("change", () => setCompare().catch((error) => sayError(error.message)));
window.addEventListener("pagehide", () => { if (peer) navigator.sendBeacon(`/api/call/${peer}/hangup`); });
loadInfo().catch((error) => sayError(error.message));
