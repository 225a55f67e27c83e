"use strict";
// The page of `vsrealbasicvsr serve`: plain DOM code over the JSON API of vsrealbasicvsr/frontends/web/app.py.

const $ = (selector) => document.querySelector(selector);
let config = null;
let configuring = null;  // the promise of `config`, asked for as the page starts
let current = null;      // the job shown
let events = null;       // its EventSource while it is queued or running
let shownPreviewFor = null;
let planTimer = null;    // a plan asked for after the options changed
let planning = 0;        // the number of the newest plan asked for: older answers are dropped

// A token given in the address became a cookie; take it out of the address bar.
if (new URLSearchParams(location.search).has("token")) history.replaceState(null, "", "/" + location.hash);

// -- the server and the connection to it ------------------------------------------------------

class ServerError extends Error {}  // the server answered, with an error that says what to do

async function api(method, path, body) {
  let response;
  try {
    response = await fetch(path, {
      method, headers: body === undefined ? {} : {"Content-Type": "application/json"},
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    connection(false);
    throw new Error("the server cannot be reached; the page retries, try again once it is back");
  }
  connection(true);
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({error: `the server answered ${response.status}`}));
  if (!response.ok) throw new ServerError(data.error || `the server answered ${response.status}`);
  return data;
}

function connection(ok) {  // the banner while the server does not answer
  const lost = $("#connection");
  if (lost.hidden === ok) return;
  lost.hidden = ok;
  document.body.classList.toggle("offline", !ok);
  if (ok && current && !events) follow();  // pick the job's stream up again
}

// -- errors beside what caused them -------------------------------------------------------------

function showAt(element, message) {
  element.textContent = message || "";
  element.hidden = !message;
}

// The form's fields: the server's description of Upscale's options, then of the output.
const fieldsOf = () => [...Object.entries(config.options), ...Object.entries(config.output)];

// The form's field a plan's error is about, from the option it names first (the server's
// messages begin with the option that is wrong, named as the form's labels name it).
function fieldOf(message) {
  const text = message.toLowerCase();
  const named = fieldsOf().map(([name]) => [name, text.search(new RegExp(`\\b${name}\\b`))])
    .filter(([, at]) => at >= 0).sort(([, a], [, b]) => a - b);
  if (named.length) return named[0][0];
  if (/weights|checkpoint/.test(text)) return "model";
  if (/\bcuda\b|\bgpu\b|\bcpu\b/.test(text)) return "device";
  if (/openvino/.test(text)) return "backend";
  if (/\bfp16\b|\bbf16\b/.test(text)) return "precision";
  return null;
}

function showPlanError(message) {
  const field = message ? fieldOf(message) : null;
  const box = field ? document.querySelector(`.field-error[data-for="${field}"]`) : $("#plan-error");
  clearFormErrors();
  showAt(box, message);
  if (message && $("#more-options").contains(box)) $("#more-options").open = true;  // the error is seen
}

function clearFormErrors() {
  for (const box of document.querySelectorAll("#options .field-error")) showAt(box, "");
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
function stateText(job) {  // short: the full message of a failed job is in its panel
  if (job.state === "queued" && job.queue_position) return `queued (#${job.queue_position})`;
  return job.state;
}
const percentOf = (job) => Math.floor(job.percent);
const framesOf = (job) => Math.floor(job.frames_done + 1e-9);
function created(job) {
  const when = new Date(job.created * 1000);
  const today = new Date().toDateString() === when.toDateString();
  return today ? when.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"})
    : when.toLocaleString([], {month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"});
}

// -- the job list: one item per job, kept (and focus in it) while its text changes -------------

async function refreshJobs() {
  let jobs;
  try { ({jobs} = await api("GET", "/api/jobs")); } catch (error) { return; }
  const list = $("#jobs");
  $("#no-jobs").hidden = jobs.length > 0;
  const items = new Map([...list.children].map((item) => [item.dataset.id, item]));
  let before = list.firstChild;
  for (const job of jobs) {
    const item = items.get(job.id) || newJobItem(job);
    items.delete(job.id);
    if (current && current.id === job.id) Object.assign(job, pickLive(current, job));
    updateJobItem(item, job);
    if (item !== before) list.insertBefore(item, before);  // in order, without touching the others
    before = item.nextSibling;
  }
  for (const gone of items.values()) gone.remove();
}

function pickLive(shown, listed) {  // the job shown has newer numbers from its own stream
  return shown.state === listed.state ? {frames_done: shown.frames_done, percent: shown.percent} : {};
}

function newJobItem(job) {
  const item = document.createElement("li");
  item.dataset.id = job.id;
  const open = document.createElement("button");
  open.type = "button";
  open.className = "open";
  const name = document.createElement("span");
  name.className = "name";
  const about = document.createElement("span");
  about.className = "about";
  open.append(name, about);
  open.addEventListener("click", () => select(job.id));
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "delete";
  remove.textContent = "Delete";
  remove.addEventListener("click", () => deleteJob(item));
  item.append(open, remove);
  return item;
}

function updateJobItem(item, job) {
  item.job = job;
  item.className = `state-${job.state}` + (current && current.id === job.id ? " selected" : "");
  const [open, remove] = item.children;
  const when = created(job);
  open.querySelector(".name").textContent = job.name;
  const progress = job.state === "new" ? "" : ` · ${percentOf(job)} %`;
  open.querySelector(".about").textContent = `${when} · ${stateText(job)}${progress}`;
  open.setAttribute("aria-current", current && current.id === job.id ? "true" : "false");
  open.setAttribute("aria-label", `${job.name}, added ${when}: ${stateText(job)}${progress}`);
  remove.hidden = ["queued", "running"].includes(job.state);
  remove.setAttribute("aria-label", `Delete the job of ${job.name} (added ${when}) and its files`);
}

async function deleteJob(item) {
  const job = item.job;
  if (!confirm(`Delete the job of ${job.name} (added ${created(job)}) and its files?`)) return;
  try {
    await api("DELETE", `/api/jobs/${job.id}`);
    if (current && current.id === job.id) { current = null; $("#job").hidden = true; location.hash = ""; }
  } catch (error) {
    if (current && current.id === job.id) showAt($("#job-error"), error.message);
    else alert(error.message);  // no panel of that job is open to show it in
  }
  refreshJobs();
}

// -- choosing a video -----------------------------------------------------------------------

async function upload(file) {
  const text = $("#upload-text");
  $("#upload").hidden = false;
  text.className = "";
  try { await configuring; } catch (error) { return; }  // main() says the page could not start
  if (file.size > config.max_upload) {
    text.className = "error";
    text.textContent = `${file.name} is ${mib(file.size)}, more than this server takes (${mib(config.max_upload)}); choose a shorter video`;
    return;
  }
  const request = new XMLHttpRequest();
  request.open("POST", "/api/uploads");
  request.setRequestHeader("X-File-Name", encodeURIComponent(file.name));
  request.setRequestHeader("Content-Type", "application/octet-stream");
  request.upload.onprogress = (event) => {
    if (!event.lengthComputable) return;
    $("#upload-bar").value = 100 * event.loaded / event.total;
    text.textContent = `uploading ${file.name}: ${mib(event.loaded)} of ${mib(event.total)}`;
  };
  request.upload.onload = () => { text.textContent = `reading ${file.name}...`; };
  request.onload = () => {
    let data = {};
    try { data = JSON.parse(request.responseText); } catch (error) { /* not JSON */ }
    if (request.status === 201) {
      text.textContent = `uploaded ${file.name}`;
      select(data.id, true);
    } else {
      text.textContent = `${file.name}: ${data.error || "the upload failed (" + request.status + ")"}`;
      text.className = "error";
    }
    refreshJobs();
  };
  request.onerror = () => { text.textContent = "the upload broke off; try again"; text.className = "error"; };
  request.send(file);
}

async function pick() {
  showAt($("#pick-error"), "");
  try {
    const job = await api("POST", "/api/inputs/pick", {name: $("#inputs").value});
    select(job.id, true);
    refreshJobs();
  } catch (error) { showAt($("#pick-error"), error.message); }
}

// -- options and plan -----------------------------------------------------------------------

const control = (name) => $("#options").elements.namedItem(name);  // the form's control of that name

// Builds the form from the server's description: a labelled control per option, named as the
// option is, with its meaning as the control's description and, while it has the focus, below
// the fields; an error box per option.
function fillOptionForm() {
  for (const [name, about] of fieldsOf()) {
    const field = document.createElement("div");
    field.className = `field ${about.kind}`;
    field.dataset.name = name;
    const label = document.createElement("label");
    const asked = controlOf(name, about);
    asked.id = label.htmlFor = `option-${name}`;
    label.textContent = name;
    label.title = about.help;
    const help = document.createElement("p");
    help.id = `help-${name}`;
    help.hidden = true;
    help.textContent = about.help;
    asked.setAttribute("aria-describedby", help.id);
    if (about.kind === "flag") field.append(asked, label);
    else field.append(label, asked);
    if (about.kind === "tile") field.append(tileSizeOf(name, about, help.id));
    const error = document.createElement("p");
    error.className = "error field-error";
    error.dataset.for = name;
    error.setAttribute("role", "alert");
    error.hidden = true;
    field.append(help, error);
    field.addEventListener("focusin", () => { $("#option-help").textContent = about.help; });
    $(about.main ? "#fields" : "#more-fields").append(field);
  }
  setForm({options: {}, codec: config.output.codec.default, crf: null});
  $("#option-help").textContent = "What an option does shows here while it has the focus.";
}

function controlOf(name, about) {
  if (about.kind === "select" || about.kind === "tile") {
    const select = document.createElement("select");
    if (about.kind === "tile") {
      select.name = `${name}_mode`;
      for (const mode of [...Object.keys(about.special), "size"]) select.add(new Option(mode === "size" ? "size:" : mode, mode));
      return select;
    }
    select.name = name;
    if (about.default === null) select.add(new Option(`default (${about.default_text})`, ""));
    for (const [value, choice] of Object.entries(about.choices)) {
      const option = new Option(choice.label, value);
      if (choice.description) option.title = choice.description;
      select.add(option);
    }
    return select;
  }
  const input = document.createElement("input");
  input.name = name;
  if (about.kind === "flag") input.type = "checkbox";
  if (about.kind === "number") {
    input.type = "number";
    input.step = 1;
    if (about.min !== undefined) input.min = about.min;
    if (about.default === null) input.placeholder = about.default_text;
  }
  if (about.suggestions) {
    const list = document.createElement("datalist");
    list.id = `${name}-suggestions`;
    for (const value of about.suggestions) list.append(new Option(value, value));
    document.body.append(list);
    input.setAttribute("list", list.id);
  }
  return input;
}

function tileSizeOf(name, about, helpId) {  // the W and H boxes of a tile size
  const size = document.createElement("span");
  size.className = "tile-size";
  for (const [side, words] of [["w", "width"], ["h", "height"]]) {
    const input = document.createElement("input");
    Object.assign(input, {name: `${name}_${side}`, type: "number", min: about.min, step: 1, placeholder: side.toUpperCase()});
    input.setAttribute("aria-label", `${name} ${words} in input pixels`);
    input.setAttribute("aria-describedby", helpId);
    size.append(input);
  }
  return size;
}

function setForm(request) {
  for (const [name, about] of fieldsOf()) {
    const chosen = name in config.output ? request[name] : request.options[name];
    const value = chosen ?? about.default;
    if (about.kind === "flag") control(name).checked = value;
    else if (about.kind === "tile") {
      const mode = Object.keys(about.special).find((key) => about.special[key] === value);
      control(`${name}_mode`).value = mode ?? "size";
      const [w, h] = Array.isArray(value) ? value : [value, value];
      if (!mode) [control(`${name}_w`).value, control(`${name}_h`).value] = [w, h];
    } else control(name).value = value ?? "";
  }
  syncFields();
}

function syncFields() {  // the tile size boxes only for a size; crf's range is its codec's
  const crf = config.output.crf;
  for (const [name, about] of fieldsOf()) {
    if (about.kind === "tile") $("#options").querySelector(`[data-name="${name}"] .tile-size`).hidden = control(`${name}_mode`).value !== "size";
  }
  const highest = crf.max[control("codec").value];
  control("crf").max = highest ?? "";
  control("crf").placeholder = highest === undefined ? `not for ${control("codec").value}` : crf.default_text;
}

function valueOf(name, about) {  // a field's value as the request says it; null: the default
  if (about.kind === "flag") return control(name).checked;
  if (about.kind === "tile") {
    const mode = control(`${name}_mode`).value;
    if (mode !== "size") return about.special[mode];
    const w = Number(control(`${name}_w`).value);
    return [w, control(`${name}_h`).value === "" ? w : Number(control(`${name}_h`).value)];
  }
  const text = control(name).value.trim();
  if (text === "") return null;
  return about.kind === "number" ? Number(text) : text;
}

function requestOfForm() {
  const request = {};
  for (const [name, about] of fieldsOf()) request[name] = valueOf(name, about);
  return request;
}

async function plan() {
  if (!current) return;
  clearTimeout(planTimer);
  const asked = ++planning, job = current;
  $("#plan-button").disabled = true;
  $("#plan-button").textContent = "Planning...";
  $("#start-button").disabled = true;
  try {
    const planned = await api("POST", `/api/jobs/${job.id}/plan`, requestOfForm());
    if (asked !== planning || !current || current.id !== job.id) return;
    current = planned;
    showPlanError("");
    render(current);
  } catch (error) {
    if (asked !== planning) return;
    showPlanError(error.message);
    $("#plan").hidden = true;
  } finally {
    if (asked === planning) {
      $("#plan-button").disabled = false;
      $("#plan-button").textContent = "Plan";
    }
  }
}

function optionsChanged() {  // the plan shown is for other options: plan these, a moment later
  $("#start-button").disabled = true;
  clearFormErrors();
  syncFields();
  clearTimeout(planTimer);
  planTimer = setTimeout(plan, 400);
}

function renderPlan(job) {
  const plan = job.plan, info = job.info;
  const estimate = plan.estimate;
  const rows = [
    ["input", `${info.width}x${info.height} ${info.format}, ${info.frames} frames at ${fpsOf(info).toFixed(3)} fps (${duration(info.frames / fpsOf(info))})`],
    ["output", `${plan.output.width}x${plan.output.height}, ${plan.output.frames} frames, ${plan.output.codec} (${plan.output.container})`],
    ["model", `${plan.model} (${plan.architecture} x${plan.scale}): weights ${plan.weights === "missing" ? "not installed, and cannot be fetched (see the model above)" : plan.weights_note}`],
    ["device", `${plan.ray ? "a Ray cluster, " : ""}${plan.device}, ${plan.precision}, ${plan.backend}`],
    ["scene cuts", plan.scene_cuts === null ? "not detected" : plan.scene_cuts.length ? `${plan.scene_cuts.length} (at frame ${plan.scene_cuts.slice(0, 8).join(", ")}${plan.scene_cuts.length > 8 ? " ..." : ""})` : "none"],
    ["windows", `${plan.window_count} of ${plan.window} frame${plan.window === 1 ? "" : "s"} (+${plan.overlap} context frames each side)`],
    ["tiles", plan.tile ? `${plan.tile[0]}x${plan.tile[1]}` : "none"],
    ["memory", `about ${mib(plan.memory_bytes)} per window (budget ${mib(plan.budget_bytes)})`],
    ["segments", `${plan.segments} of ${plan.segment_frames} frames${plan.segments_done ? `, ${plan.segments_done} already done` : ""}`],
    ["time", estimate == null ? `unknown until a job with ${plan.model} on ${plan.device} has finished`
      : `about ${duration(estimate.seconds)} (${estimate.basis})`],
  ];
  const body = $("#plan tbody");
  body.replaceChildren();
  for (const [name, text] of rows) {
    const row = body.insertRow();
    row.insertCell().textContent = name;
    row.insertCell().textContent = text;
  }
  $("#plan").hidden = false;
  const missing = plan.weights === "missing";
  const modelError = document.querySelector('.field-error[data-for="model"]');
  if (missing) showAt(modelError, `The weights of ${plan.model} are ${plan.weights_note}.`);
  else if (modelError.textContent.startsWith("The weights of")) showAt(modelError, "");
}

// -- one job --------------------------------------------------------------------------------

async function select(id, planNow = false) {
  if (events) { events.close(); events = null; }
  shownPreviewFor = null;
  $("#preview").hidden = true;
  location.hash = id;
  let job;
  try { job = await api("GET", `/api/jobs/${id}`); } catch (error) {
    current = null;
    $("#job").hidden = true;
    if (error instanceof ServerError) location.hash = "";
    return;
  }
  current = job;
  showAt($("#job-error"), "");
  clearFormErrors();
  if (current.request) setForm(current.request);
  render(current);
  if (planNow && !current.planned) plan();
  follow();
  refreshJobs();
}

function follow() {
  if (!current || !["queued", "running"].includes(current.state) || events) return;
  const id = current.id;
  events = new EventSource(`/api/jobs/${id}/events`);
  events.onopen = () => connection(true);
  events.onmessage = (message) => {
    connection(true);
    const job = JSON.parse(message.data);
    if (!current || job.id !== current.id) return;
    current = {...current, ...job};
    render(current);
    const item = document.querySelector(`#jobs li[data-id="${job.id}"]`);
    if (item) updateJobItem(item, {...item.job, ...job});  // the list says what the panel says
    if (!["queued", "running"].includes(job.state)) { events.close(); events = null; refreshJobs(); }
  };
  events.onerror = () => {
    // The stream ended: the job stopped, or the server went (it reconnects by itself, every few
    // seconds). Which one, the job's own answer says.
    api("GET", `/api/jobs/${id}`).then((job) => {
      if (!current || current.id !== id) return;
      current = {...current, ...job};
      render(current);
      if (!["queued", "running"].includes(job.state) && events) { events.close(); events = null; }
    }).catch(() => {});
  };
}

function render(job) {
  $("#job").hidden = false;
  $("#job").classList.toggle("started", job.state !== "new");
  $("#job-title").textContent = job.name;
  const info = job.info;
  $("#job-info").textContent = `${info.width}x${info.height}, ${info.frames} frames at ${fpsOf(info).toFixed(3)} fps ` +
    `(${duration(info.frames / fpsOf(info))}), ${mib(info.bytes)} · added ${created(job)} · ${stateText(job)}`;
  if (job.state === "failed") showAt($("#job-error"), `This job failed: ${job.error}`);
  else if ($("#job-error").textContent.startsWith("This job failed")) showAt($("#job-error"), "");
  const editable = ["new", "failed", "cancelled"].includes(job.state);
  for (const element of $("#options").elements) element.disabled = !editable;
  syncFields();
  const weightsMissing = job.plan && job.plan.weights === "missing";
  $("#start-button").disabled = !(editable && job.planned && !weightsMissing);
  $("#start-button").textContent = job.segments_done && editable ? "Continue" : "Start";
  // Start over: when finished work is kept, or when what is kept cannot be continued (the job
  // API's message names the work folder and --overwrite, which the page gives this way).
  const keptInTheWay = job.state === "failed" && /work folder|--overwrite/.test(job.error || "");
  $("#start-over-button").hidden = !(editable && job.planned && (job.segments_done > 0 || keptInTheWay));
  if (job.plan) renderPlan(job);
  const active = ["queued", "running"].includes(job.state);
  $("#progress-panel").hidden = job.state === "new";
  $("#cancel-button").hidden = !active;
  if (!active) $("#cancel-button").textContent = "Cancel";
  $("#job-bar").value = job.percent;
  $("#progress-text").textContent = progressText(job);
  const picture = `${job.state}:${job.segments_done}:${job.window ? job.window.index : ""}`;
  if (job.state !== "new" && picture !== shownPreviewFor) {
    shownPreviewFor = picture;
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
  const frames = `${framesOf(job)} of ${job.total_frames} frames (${percentOf(job)} %)`;
  if (job.state === "queued") return `${stateText(job)}: waits for the job before it on ${job.plan ? job.plan.device : "its device"}`;
  if (job.state === "running") {
    if (job.joining) return `${frames} · joining the segments and the audio into the output`;
    const window = job.window ? ` · window ${job.window.index + 1} of ${job.window.count} (frames ${job.window.first}-${job.window.end - 1})` : "";
    const speed = job.fps ? `${job.fps.toFixed(2)} fps · about ${duration(job.eta_s)} left` : "measuring the speed...";
    return `${frames} · ${speed}${window}`;
  }
  if (job.state === "cancelled") {
    return job.kept_frames
      ? `cancelled at ${frames}; the first ${job.kept_frames} upscaled frames are kept: Continue resumes at frame ${job.kept_frames}`
      : `cancelled at ${frames}; no finished part was kept: Continue starts from the beginning`;
  }
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
  } catch (error) { /* the next finished piece brings another try */ }
}

async function startJob(startOver) {
  showAt($("#plan-error"), "");
  if (startOver && !confirm(`Start ${current.name} over from its first frame? What was finished so far is discarded.`)) return;
  try {
    current = await api("POST", `/api/jobs/${current.id}/start`, startOver ? {start_over: true} : undefined);
    render(current);
    follow();
    refreshJobs();
  } catch (error) { showAt($("#plan-error"), error.message); }
}

// -- wiring ---------------------------------------------------------------------------------

async function main() {
  // Listened to before the server's settings come: a video chosen at once waits for them in
  // upload() instead of being dropped.
  $("#file").addEventListener("change", () => {
    const file = $("#file").files[0];
    $("#file").value = "";  // the same file chosen again is a new choice
    if (file) upload(file);
  });
  configuring = api("GET", "/api/config");
  config = await configuring;
  fillOptionForm();
  $("#options").addEventListener("submit", (event) => { event.preventDefault(); plan(); });
  $("#options").addEventListener("change", optionsChanged);
  $("#start-button").addEventListener("click", () => startJob(false));
  $("#start-over-button").addEventListener("click", () => startJob(true));
  $("#cancel-button").addEventListener("click", async () => {
    try {
      await api("POST", `/api/jobs/${current.id}/cancel`);
      // The job API stops the window in progress at its next step and keeps the windows finished before it.
      $("#cancel-button").textContent = "Cancelling...";
    }
    catch (error) { showAt($("#job-error"), error.message); }
  });
  if (config.input_dir) {
    const {files} = await api("GET", "/api/inputs");
    for (const name of files) $("#inputs").add(new Option(name, name));
    $("#pick").hidden = false;
    $("#pick-button").addEventListener("click", pick);
    $("#inputs").addEventListener("change", () => showAt($("#pick-error"), ""));
  }
  await refreshJobs();
  setInterval(refreshJobs, 2000);
  if (location.hash.length > 1) select(location.hash.slice(1));
}

main().catch((error) => {
  $("#connection").textContent = `The page could not start: ${error.message}; reload it`;
  $("#connection").hidden = false;
});
