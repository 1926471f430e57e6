// facevid2vid serve: the animate and free-view page (plain JS, no build step, nothing external).
"use strict";

const $ = (id) => document.getElementById(id);
let photoId = null;
let info = null;

async function api(url, options) {
  const response = await fetch(url, options);
  const type = response.headers.get("content-type") || "";
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    if (type.includes("json")) message = (await response.json()).error || message;
    throw new Error(message);
  }
  return type.includes("json") ? response.json() : response.blob();
}

function say(element, text, isError) {
  element.textContent = text;
  element.className = isError ? "error" : "status";
}

async function loadInfo() {
  info = await api("/api/info");
  $("model").textContent = `model ${info.model} (${info.size} px) on ${info.device}`;
  const select = $("sample");
  for (const name of info.samples) select.add(new Option(name, name));
  $("use-sample").disabled = info.samples.length === 0;
  const l = info.limits;
  $("limits").textContent = `(at most ${l.video_seconds} s, ${l.video_bytes / 1048576} MB)`;
}

// -- photo -----------------------------------------------------------------------------------

async function sendPhoto(form, label) {
  say($("photo-status"), `reading ${label} ...`);
  $("animate-button").disabled = true;
  try {
    const photo = await api("/api/photo", { method: "POST", body: form });
    photoId = photo.id;
    $("photo-crop").src = `/api/photo/${photo.id}/crop.png`;
    say($("photo-status"), `photo: ${photo.name}`);
    $("animate-button").disabled = false;
    renderView();
  } catch (error) {
    photoId = null;
    say($("photo-status"), error.message, true);
  }
}

$("photo-file").addEventListener("change", () => {
  const file = $("photo-file").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("photo", file, file.name);
  sendPhoto(form, file.name);
});

$("use-sample").addEventListener("click", () => {
  const form = new FormData();
  form.append("sample", $("sample").value);
  sendPhoto(form, $("sample").value);
});

// -- free view: one render at a time; the latest slider position is rendered next -------------

const VIEW = ["yaw", "pitch", "roll"];
let rendering = false;
let again = false;

function viewQuery() {
  const q = new URLSearchParams();
  for (const name of VIEW) q.set(name, $(name).value);
  q.set("frontalize", $("frontalize").checked ? "1" : "0");
  return q.toString();
}

async function renderView() {
  if (!photoId) return;
  if (rendering) { again = true; return; }
  rendering = true;
  const img = $("photo-view");
  try {
    do {
      again = false;
      const start = performance.now();
      const response = await fetch(`/api/photo/${photoId}/view?${viewQuery()}`);
      if (!response.ok) throw new Error((await response.json()).error);
      const blob = await response.blob();
      if (img.dataset.url) URL.revokeObjectURL(img.dataset.url);
      img.dataset.url = URL.createObjectURL(blob);
      img.src = img.dataset.url;
      const ms = Math.round(performance.now() - start);
      img.dataset.ms = ms;
      img.dataset.renders = Number(img.dataset.renders) + 1;
      $("render-ms").textContent = `(${ms} ms; model ${response.headers.get("X-Render-Ms")} ms)`;
    } while (again);
  } catch (error) {
    say($("photo-status"), error.message, true);
  } finally {
    rendering = false;
  }
}

for (const name of VIEW) {
  $(name).addEventListener("input", () => {
    $(`${name}-value`).textContent = `${$(name).value}°`;
    renderView();
  });
}
$("frontalize").addEventListener("change", renderView);
$("reset-view").addEventListener("click", () => {
  for (const name of VIEW) { $(name).value = 0; $(`${name}-value`).textContent = "0°"; }
  $("frontalize").checked = false;
  renderView();
});

// -- animate: upload, then poll the job ----------------------------------------------------------

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function pollJob(id) {
  for (;;) {
    const job = await api(`/api/jobs/${id}`);
    $("progress").value = job.total ? job.done / job.total : 0;
    $("job-status").textContent = `${job.phase}${job.total ? ` (${job.done} of ${job.total} frames)` : ""}`;
    if (job.state === "done" || job.state === "error") return job;
    await sleep(400);
  }
}

function showResults(job) {
  const base = `/api/jobs/${job.id}`;
  $("result-video").src = `${base}/result.mp4`;
  $("side-video").src = `${base}/side.mp4`;
  $("strip").src = `${base}/strip.png`;
  $("download").href = `${base}/result.mp4?download=1`;
  $("download-side").href = `${base}/side.mp4?download=1`;
  const results = $("results");
  results.dataset.job = job.id;
  results.dataset.frames = job.done;
  results.hidden = false;
  $("job-status").textContent = `done: ${job.done} frames at ${job.fps} fps in ${job.seconds} s`;
}

$("animate-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("driving-file").files[0];
  say($("animate-error"), "");
  if (!photoId) { say($("animate-error"), "choose a photo first", true); return; }
  if (!file) { say($("animate-error"), "choose a driving video", true); return; }
  const form = new FormData();
  form.append("photo_id", photoId);
  form.append("mode", document.querySelector("input[name=mode]:checked").value);
  for (const name of VIEW) form.append(name, $(name).value);
  form.append("frontalize", $("frontalize").checked ? "1" : "0");
  form.append("smooth", $("smooth").checked ? "1" : "0");
  form.append("driving", file, file.name);
  $("animate-button").disabled = true;
  $("results").hidden = true;
  $("progress").value = 0;
  $("job-status").textContent = "uploading ...";
  try {
    const job = await pollJob((await api("/api/animate", { method: "POST", body: form })).id);
    if (job.state === "error") throw new Error(job.error);
    showResults(job);
  } catch (error) {
    $("job-status").textContent = "";
    say($("animate-error"), error.message, true);
  } finally {
    $("animate-button").disabled = !photoId;
  }
});

loadInfo().catch((error) => say($("photo-status"), error.message, true));
