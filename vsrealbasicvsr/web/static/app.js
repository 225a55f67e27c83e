"use strict";
// The page of `vsrealbasicvsr serve`: plain DOM code over the JSON API of vsrealbasicvsr/web/app.py.

const $ = (selector) => document.querySelector(selector);
let config = null;
let current = null;      // the job shown
let events = null;       // its EventSource while it is queued or running
let shownPreviewFor = -1;

// A token given in the address became a cookie; take it out of the address bar.
if (new URLSearchParams(location.search).has("token")) history.replaceState(null, "", "/" + location.hash);

async function api(method, path, body) {
  const response = await fetch(path, {
    method, headers: body === undefined ? {} : {"Content-Type": "application/json"},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({error: `the server answered ${response.status}`}));
  if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
  return data;
}

function showError(message) {
  const box = $("#job-error");
  box.textContent = message || "";
  box.hidden = !message;
  if (message && $("#job").hidden) alert(message);
}

const mib = (bytes) => `${(bytes / 2 ** 20).toFixed(bytes < 2 ** 20 ? 2 : 0)} MiB`;
const fpsOf = (info) => info.fps[0] / info.fps[1];
function duration(seconds) {
  if (seconds == null || !isFinite(seconds)) return "--";
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  seconds = Math.round(seconds);
  const h = Math.floor(seconds / 3600), m = Math.floor(seconds / 60) % 60, s = seconds % 60;
  return h ? `${h} h ${m} min` : m ? `${m} min ${s} s` : `${s} s`;
}
function stateText(job) {
  if (job.state === "failed") return `failed: ${job.error}`;
  if (job.state === "queued" && job.queue_position) return `queued (#${job.queue_position})`;
  return job.state;
}

// -- the job list ---------------------------------------------------------------------------

async function refreshJobs() {
  let jobs;
  try { ({jobs} = await api("GET", "/api/jobs")); } catch (error) { return; }
  const body = $("#jobs tbody");
  body.replaceChildren();
  $("#no-jobs").hidden = jobs.length > 0;
  for (const job of jobs) {
    const row = document.createElement("tr");
    row.dataset.id = job.id;
    row.className = `state-${job.state}` + (current && current.id === job.id ? " selected" : "");
    const name = document.createElement("td");
    name.textContent = job.name;
    const state = document.createElement("td");
    state.textContent = stateText(job);
    state.className = "state";
    const done = document.createElement("td");
    done.textContent = job.state === "new" ? "" : `${Math.floor(job.percent)} %`;
    const actions = document.createElement("td");
    if (!["queued", "running"].includes(job.state)) {
      const remove = document.createElement("button");
      remove.textContent = "Delete";
      remove.className = "delete";
      remove.title = "delete the job and its files";
      remove.addEventListener("click", async (event) => {
        event.stopPropagation();
        if (!confirm(`Delete the job of ${job.name} and its files?`)) return;
        try { await api("DELETE", `/api/jobs/${job.id}`); } catch (error) { alert(error.message); }
        if (current && current.id === job.id) { current = null; $("#job").hidden = true; location.hash = ""; }
        refreshJobs();
      });
      actions.append(remove);
    }
    row.append(name, state, done, actions);
    row.addEventListener("click", () => select(job.id));
    body.append(row);
  }
}

// -- choosing a video -----------------------------------------------------------------------

function upload(file) {
  if (file.size > config.max_upload) {
    showError(`${file.name} is ${mib(file.size)}, more than this server takes (${mib(config.max_upload)}); choose a shorter video`);
    return;
  }
  const request = new XMLHttpRequest();
  request.open("POST", "/api/uploads");
  request.setRequestHeader("X-File-Name", encodeURIComponent(file.name));
  request.setRequestHeader("Content-Type", "application/octet-stream");
  $("#upload").hidden = false;
  request.upload.onprogress = (event) => {
    if (!event.lengthComputable) return;
    $("#upload-bar").value = 100 * event.loaded / event.total;
    $("#upload-text").textContent = `uploading ${file.name}: ${mib(event.loaded)} of ${mib(event.total)}`;
  };
  request.upload.onload = () => { $("#upload-text").textContent = `reading ${file.name}...`; };
  request.onload = () => {
    let data = {};
    try { data = JSON.parse(request.responseText); } catch (error) { /* not JSON */ }
    if (request.status === 201) {
      $("#upload-text").textContent = `uploaded ${file.name}`;
      select(data.id, true);
    } else {
      $("#upload-text").textContent = `${file.name}: ${data.error || "the upload failed (" + request.status + ")"}`;
      $("#upload-text").className = "error";
    }
    refreshJobs();
  };
  request.onerror = () => { $("#upload-text").textContent = "the upload broke off; try again"; };
  $("#upload-text").className = "";
  request.send(file);
}

async function pick() {
  try {
    const job = await api("POST", "/api/inputs/pick", {name: $("#inputs").value});
    select(job.id, true);
    refreshJobs();
  } catch (error) { showError(error.message); }
}

// -- options and plan -----------------------------------------------------------------------

function fillOptionForm() {
  const form = $("#options"), options = config.options;
  for (const [name, about] of Object.entries(options.model.choices)) {
    form.model.add(new Option(`${name}${about.installed ? "" : " (downloaded at start)"}`, name));
  }
  form.precision.add(new Option(`default (${options.precision.default_text})`, ""));
  for (const name of options.precision.choices) form.precision.add(new Option(name, name));
  for (const name of options.backend.choices) form.backend.add(new Option(name, name));
  form.backend.title = options.backend.help;
  for (const name of options.codec.choices) form.codec.add(new Option(name, name));
  setForm({options: {}, codec: options.codec.default, crf: null});
  $("#option-help").textContent = `max_seq_len: ${options.max_seq_len.help} tile: ${options.tile.help}`;
}

function setForm(request) {
  const form = $("#options"), options = config.options, chosen = request.options;
  form.model.value = chosen.model ?? options.model.default;
  form.max_seq_len.value = chosen.max_seq_len ?? options.max_seq_len.default;
  form.device.value = chosen.device ?? options.device.default;
  form.precision.value = chosen.precision ?? "";
  form.backend.value = chosen.backend ?? options.backend.default;
  const tile = chosen.tile ?? options.tile.default;
  form.tile_mode.value = tile === options.tile.special.off ? "off" : tile === options.tile.special.auto ? "auto" : "size";
  if (Array.isArray(tile)) [form.tile_w.value, form.tile_h.value] = tile;
  else if (form.tile_mode.value === "size") form.tile_w.value = form.tile_h.value = tile;
  showTileSize();
  form.codec.value = request.codec;
  form.crf.value = request.crf ?? "";
  form.crf.placeholder = `${options.crf.default}`;
}

function showTileSize() {  // the W and H boxes only for a tile size
  const form = $("#options");
  form.tile_w.hidden = form.tile_h.hidden = form.tile_mode.value !== "size";
}

function requestOfForm() {
  const form = $("#options"), special = config.options.tile.special;
  const tile = form.tile_mode.value === "size" ? [Number(form.tile_w.value), Number(form.tile_h.value || form.tile_w.value)]
    : special[form.tile_mode.value];
  return {
    model: form.model.value, max_seq_len: Number(form.max_seq_len.value), device: form.device.value.trim(),
    precision: form.precision.value || null, backend: form.backend.value, tile, codec: form.codec.value,
    crf: form.crf.value === "" ? null : Number(form.crf.value),
  };
}

async function plan() {
  if (!current) return;
  $("#plan-button").disabled = true;
  $("#plan-button").textContent = "Planning...";
  $("#start-button").disabled = true;
  try {
    current = await api("POST", `/api/jobs/${current.id}/plan`, requestOfForm());
    showError("");
    render(current);
  } catch (error) {
    showError(error.message);
    $("#plan").hidden = true;
  } finally {
    $("#plan-button").disabled = false;
    $("#plan-button").textContent = "Plan";
  }
}

function renderPlan(job) {
  const plan = job.plan, info = job.info;
  const rows = [
    ["input", `${info.width}x${info.height} ${info.format}, ${info.frames} frames at ${fpsOf(info).toFixed(3)} fps (${duration(info.frames / fpsOf(info))})`],
    ["output", `${plan.output.width}x${plan.output.height}, ${plan.output.frames} frames, ${plan.output.codec} (${plan.output.container})`],
    ["model", `${plan.model} (weights ${plan.weights})`],
    ["device", `${plan.device}, ${plan.precision}, ${plan.backend}`],
    ["scene cuts", plan.scene_cuts === null ? "not detected" : plan.scene_cuts.length ? `${plan.scene_cuts.length} (at frame ${plan.scene_cuts.slice(0, 8).join(", ")}${plan.scene_cuts.length > 8 ? " ..." : ""})` : "none"],
    ["windows", `${plan.window_count} of ${plan.window} frames (+${plan.overlap} context frames each side)`],
    ["tiles", plan.tile ? `${plan.tile[0]}x${plan.tile[1]}` : "none"],
    ["memory", `about ${mib(plan.memory_bytes)} per window (budget ${mib(plan.budget_bytes)})`],
    ["segments", `${plan.segments} of ${plan.segment_frames} frames${plan.segments_done ? `, ${plan.segments_done} already done` : ""}`],
    ["time", plan.estimated_s == null ? "unknown until a job on this device has finished" : `about ${duration(plan.estimated_s)} (from earlier jobs on ${plan.device})`],
  ];
  const body = $("#plan tbody");
  body.replaceChildren();
  for (const [name, text] of rows) {
    const row = body.insertRow();
    row.insertCell().textContent = name;
    row.insertCell().textContent = text;
  }
  $("#plan").hidden = false;
}

// -- one job --------------------------------------------------------------------------------

async function select(id, planNow = false) {
  if (events) { events.close(); events = null; }
  shownPreviewFor = -1;
  $("#preview").hidden = true;
  location.hash = id;
  try { current = await api("GET", `/api/jobs/${id}`); } catch (error) { showError(error.message); return; }
  showError("");
  if (current.request) setForm(current.request);
  render(current);
  if (planNow && !current.planned) plan();
  follow();
  refreshJobs();
}

function follow() {
  if (!current || !["queued", "running"].includes(current.state) || events) return;
  events = new EventSource(`/api/jobs/${current.id}/events`);
  events.onmessage = (message) => {
    const job = JSON.parse(message.data);
    if (!current || job.id !== current.id) return;
    current = {...current, ...job};
    render(current);
    if (!["queued", "running"].includes(job.state)) { events.close(); events = null; refreshJobs(); }
  };
}

function render(job) {
  $("#job").hidden = false;
  $("#job-title").textContent = job.name;
  const info = job.info;
  $("#job-info").textContent = `${info.width}x${info.height}, ${info.frames} frames at ${fpsOf(info).toFixed(3)} fps ` +
    `(${duration(info.frames / fpsOf(info))}), ${mib(info.bytes)} · ${stateText(job)}`;
  if (job.state === "failed") showError(job.error);
  const editable = ["new", "failed", "cancelled"].includes(job.state);
  for (const element of $("#options").elements) element.disabled = !editable;
  $("#start-button").disabled = !(editable && job.planned);
  $("#start-button").textContent = job.segments_done && editable ? "Continue" : "Start";
  if (job.plan) renderPlan(job);
  const active = ["queued", "running"].includes(job.state);
  $("#progress-panel").hidden = job.state === "new";
  $("#cancel-button").hidden = !active;
  if (!active) $("#cancel-button").textContent = "Cancel";
  $("#job-bar").value = job.percent;
  $("#progress-text").textContent = progressText(job);
  if (job.state !== "new" && job.segments_done !== shownPreviewFor) {
    shownPreviewFor = job.segments_done;
    showPreview(job);
  }
  const done = job.state === "done" && job.output;
  $("#result").hidden = !done;
  if (done) {
    const url = `/api/jobs/${job.id}/output`;
    if ($("#video").getAttribute("src") !== url) $("#video").src = url;
    $("#download").href = `${url}?download=1`;
    $("#download").textContent = `Download ${job.output.name}`;
    $("#result-text").textContent = `(${mib(job.output.bytes)})`;
  } else if ($("#video").getAttribute("src")) {
    $("#video").removeAttribute("src");
    $("#video").load();
  }
}

function progressText(job) {
  const frames = `${job.frames_done.toFixed(1).replace(/\.0$/, "")} of ${job.total_frames} frames (${Math.floor(job.percent)} %)`;
  if (job.state === "queued") return `${stateText(job)}: waits for the job before it on ${job.plan ? job.plan.device : "its device"}`;
  if (job.state === "running") {
    if (job.joining) return `${frames} · joining the segments and the audio into the output`;
    const window = job.window ? ` · window ${job.window.index + 1} of ${job.window.count} (frames ${job.window.first}-${job.window.end - 1})` : "";
    const speed = job.fps ? `${job.fps.toFixed(2)} fps · ${duration(job.eta_s)} left` : "measuring the speed...";
    return `${frames} · ${speed}${window}`;
  }
  if (job.state === "cancelled") return `cancelled at ${frames}; ${job.segments_done} finished segment(s) kept: Continue resumes from there`;
  return `${job.state}: ${frames}`;
}

async function showPreview(job) {
  try {
    const {preview} = await api("GET", `/api/jobs/${job.id}/preview`);
    if (!preview || !current || current.id !== job.id) return;
    $("#preview-img").src = `/api/jobs/${job.id}/preview.png?frame=${preview.frame}`;
    $("#preview-caption").textContent = `Frame ${preview.frame}, the newest upscaled (${preview.source}): left, the input ` +
      `upscaled 4x by bicubic; right, ${job.request.options.model || config.options.model.default} x4. Full output pixels.`;
    $("#preview").hidden = false;
  } catch (error) { /* the next segment brings another try */ }
}

// -- wiring ---------------------------------------------------------------------------------

async function main() {
  config = await api("GET", "/api/config");
  fillOptionForm();
  $("#file").addEventListener("change", () => { if ($("#file").files[0]) upload($("#file").files[0]); });
  $("#options").addEventListener("submit", (event) => { event.preventDefault(); plan(); });
  $("#options").addEventListener("change", () => { $("#start-button").disabled = true; showTileSize(); });
  $("#start-button").addEventListener("click", async () => {
    try { current = await api("POST", `/api/jobs/${current.id}/start`); showError(""); render(current); follow(); refreshJobs(); }
    catch (error) { showError(error.message); }
  });
  $("#cancel-button").addEventListener("click", async () => {
    try { await api("POST", `/api/jobs/${current.id}/cancel`); $("#cancel-button").textContent = "Cancelling..."; }
    catch (error) { showError(error.message); }
  });
  if (config.input_dir) {
    const {files} = await api("GET", "/api/inputs");
    for (const name of files) $("#inputs").add(new Option(name, name));
    $("#pick").hidden = false;
    $("#pick-button").addEventListener("click", pick);
  }
  await refreshJobs();
  setInterval(refreshJobs, 2000);
  if (location.hash.length > 1) select(location.hash.slice(1));
}

main().catch((error) => showError(`the page could not start: ${error.message}`));
