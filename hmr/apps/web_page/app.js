// hmr web: upload, poll the job, show the overlay, side view, 3D meshes and downloads.
"use strict";
const $ = (id) => document.getElementById(id);
let info = null;

function mb(bytes) { return (bytes / 1048576).toFixed(bytes < 1048576 ? 2 : 0) + " MB"; }

function showError(message) {
  const box = $("error");
  box.textContent = message || "something went wrong";
  box.hidden = false;
  $("status").textContent = "";
  $("progress").hidden = true;
  $("run").disabled = false;
}

function setStatus(text, value, max) {
  $("status").textContent = text;
  const bar = $("progress");
  bar.hidden = false;
  if (value === undefined) { bar.removeAttribute("value"); } else { bar.max = max; bar.value = value; }
}

async function init() {
  try {
    info = await (await fetch("api/info")).json();
  } catch (err) { showError("cannot reach the server: " + err); return; }
  for (const m of info.models) $("model").add(new Option(m, m));
  for (const e of info.examples) $("example").add(new Option(e, e));
  $("file").accept = info.accept.join(",");
  $("limits").textContent = `up to ${mb(info.max_upload_bytes)}, ${(info.max_pixels / 1e6).toFixed(0)} MP; ` +
    `videos: first ${info.max_frames} frames; results kept ${Math.round(info.keep / 60)} min`;
  $("file").addEventListener("change", () => { if ($("file").files.length) $("example").value = ""; });
  $("example").addEventListener("change", () => { if ($("example").value) $("file").value = ""; });
  $("form").addEventListener("submit", (ev) => { ev.preventDefault(); start(); });
}

function start() {
  $("error").hidden = true;
  $("results").hidden = true;
  const file = $("file").files[0];
  const example = $("example").value;
  if (!file && !example) { showError("choose an image or a video, or an example"); return; }
  if (file && file.size > info.max_upload_bytes) {
    showError(`${file.name}: too large: ${mb(file.size)} is above the upload limit of ${mb(info.max_upload_bytes)}`);
    return;
  }
  const params = new URLSearchParams({ model: $("model").value, focal: $("focal").value });
  if (file) params.set("name", file.name); else params.set("example", example);
  $("run").disabled = true;
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "api/jobs?" + params);
  xhr.upload.onprogress = (ev) => { if (ev.lengthComputable) setStatus("uploading", ev.loaded, ev.total); };
  xhr.onerror = () => showError("the upload failed (is the server still running?)");
  xhr.onload = () => {
    let data = {};
    try { data = JSON.parse(xhr.responseText); } catch (err) { data = { error: `HTTP ${xhr.status}` }; }
    if (xhr.status >= 400) { showError(data.error); return; }
    poll(data.id);
  };
  if (file) { xhr.setRequestHeader("Content-Type", "application/octet-stream"); xhr.send(file); }
  else { xhr.send(); }
  setStatus("uploading");
}

async function poll(id) {
  for (;;) {
    let job;
    try {
      const r = await fetch(`api/jobs/${id}`);
      job = await r.json();
      if (!r.ok) { showError(job.error); return; }
    } catch (err) { showError("lost the server: " + err); return; }
    if (job.status === "error") { showError(job.error); return; }
    if (job.status === "done") { show(job); return; }
    if (job.status === "queued") setStatus(job.position ? `waiting: ${job.position} request(s) ahead` : "waiting");
    else if (job.progress) setStatus(`frame ${job.progress[0]} of ${job.progress[1]} (${job.seconds} s)`, job.progress[0], job.progress[1]);
    else setStatus(`working (${job.seconds || 0} s)`);
    await new Promise((done) => setTimeout(done, 400));
  }
}

function link(url, text) {
  const a = document.createElement("a");
  a.href = url + "?download=1";
  a.textContent = text;
  a.setAttribute("download", "");
  const li = document.createElement("li");
  li.appendChild(a);
  return li;
}

function show(job) {
  $("run").disabled = false;
  $("progress").hidden = true;
  const people = job.people.filter((p) => p.files.glb);
  const n = job.people.length;
  $("status").textContent = job.kind === "video"
    ? `done in ${job.seconds} s: ${job.frames} frames, ${n} ${n === 1 ? "track" : "tracks"}`
    : `done in ${job.seconds} s: ${n} ${n === 1 ? "person" : "people"}`;
  const f = job.files;
  $("overlay").parentElement.hidden = !f.overlay;
  $("side").parentElement.hidden = !f.side;
  if (f.overlay) $("overlay").src = f.overlay;
  if (f.side) $("side").src = f.side;
  $("video-box").hidden = !f.video;
  if (f.video) $("video").src = f.video;
  $("viewer-box").hidden = people.length === 0;
  const buttons = $("people-buttons");
  buttons.replaceChildren();
  const viewer = $("viewer");
  viewer.removeAttribute("data-loaded");
  const pick = (p, button) => {
    for (const b of buttons.children) b.classList.toggle("on", b === button);
    viewer.src = p.files.glb;
  };
  people.forEach((p, i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = `person ${p.id}`;
    b.addEventListener("click", () => pick(p, b));
    buttons.appendChild(b);
    if (i === 0) pick(p, b);
  });
  const list = $("downloads");
  list.replaceChildren();
  for (const [key, url] of Object.entries(f)) list.appendChild(link(url, `${key}: ${url.split("/").pop()}`));
  for (const p of job.people) {
    for (const [fmt, url] of Object.entries(p.files)) list.appendChild(link(url, `person ${p.id} ${fmt}: ${url.split("/").pop()}`));
  }
  const cam = job.camera && job.camera.focal_length ? `, focal ${Math.round(job.camera.focal_length[0])} px` : "";
  $("summary").textContent = `${job.name}: ${job.method}${cam}; files kept about ${Math.round(job.expires_in / 60)} more minutes`;
  $("results").hidden = false;
}

customElements.whenDefined("model-viewer").then(() => {
  const viewer = $("viewer");
  viewer.addEventListener("load", () => viewer.setAttribute("data-loaded", viewer.src));
  viewer.addEventListener("error", (ev) => showError("the 3D viewer could not show the mesh: " + (ev.detail && ev.detail.type)));
});
init();
