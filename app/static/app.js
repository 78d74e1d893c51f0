"use strict";
const $ = (sel) => document.querySelector(sel);
let lastFile = null;

function setMessage(text) { $("#message").textContent = text || ""; }

function describeProblem(problem, status) {
  if (problem && problem.title) return problem.title + (problem.detail ? ": " + problem.detail : "");
  return "Request failed (" + status + ")";
}

function filterParams() {
  const data = new FormData($("#filters"));
  const params = {};
  for (const [key, value] of data.entries()) if (value !== "") params[key] = value;
  return params;
}

function carName(c) {
  return [c.year, c.make, c.model].filter(Boolean).join(" ") || c.class_name || "";
}

function percent(x) { return Math.round(100 * x) + " %"; }

function renderIdentity(ident) {
  const box = $("#identity");
  box.replaceChildren();
  const top = ident && ident.candidates && ident.candidates[0];
  if (!top) return;
  box.append("Looks like a " + carName(top) + " — " + percent(top.confidence));
  if (ident.make && ident.make.make && top.confidence < 0.6) {
    const make = document.createElement("div");
    make.className = "make";
    make.textContent = "Make: " + ident.make.make + " — " + percent(ident.make.confidence);
    box.append(make);
  }
}

function render(body) {
  const results = $("#results");
  results.replaceChildren();
  renderIdentity(body.identification);
  const groups = body.groups;
  const hits = groups ? groups.map((g) => g.hits[0]) : body.hits;
  if (!hits.length) { results.textContent = "No similar cars found."; return; }
  hits.forEach((hit, i) => {
    const card = document.createElement("article");
    card.className = "card";
    const img = document.createElement("img");
    img.src = hit.thumb_url; img.alt = hit.class_name || "car"; img.loading = "lazy";
    const meta = document.createElement("div");
    meta.className = "meta";
    const name = document.createElement("div");
    name.className = "name";
    name.textContent = [hit.make, hit.model, hit.year].filter(Boolean).join(" ") || hit.class_name || hit.id;
    const score = document.createElement("div");
    score.className = "score";
    score.textContent = "score " + hit.score.toFixed(3) + (hit.body ? " · " + hit.body : "");
    meta.append(name, score);
    if (groups && groups[i].hits.length > 1) {
      const group = document.createElement("div");
      group.className = "group";
      group.textContent = groups[i].hits.length + " photos of this model";
      meta.append(group);
    }
    const more = document.createElement("button");
    more.type = "button"; more.textContent = "More like this";
    more.addEventListener("click", () => similar(hit.id));
    card.append(img, meta, more);
    results.append(card);
  });
}

async function handle(response) {
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(describeProblem(body, response.status));
  return body;
}

async function search(file) {
  if (!file) return;
  lastFile = file;
  $("#preview").src = URL.createObjectURL(file);
  $("#preview").hidden = false;
  setMessage("Searching…");
  const form = new FormData();
  form.append("image", file);
  for (const [key, value] of Object.entries(filterParams())) form.append(key, value);
  try {
    const body = await handle(await fetch("/api/v1/search", { method: "POST", body: form }));
    setMessage("");
    render(body);
  } catch (error) { setMessage(error.message); }
}

async function similar(id) {
  const query = new URLSearchParams(filterParams());
  setMessage("Searching…");
  try {
    const body = await handle(await fetch("/api/v1/cars/" + id + "/similar?" + query));
    setMessage("");
    $("#preview").src = "/api/v1/cars/" + id + "/image?size=thumb";
    $("#preview").hidden = false;
    render(body);
  } catch (error) { setMessage(error.message); }
}

async function refreshStatus() {
  try {
    const body = await (await fetch("/readyz")).json();
    const idx = body.indexing || {};
    let text = (body.points ?? 0) + " cars indexed";
    if (idx.state === "running") text += " · indexing " + idx.done + "/" + idx.total;
    if (idx.state === "waiting") text += " · waiting for the vector store";
    if (body.store_reachable === false) text += " · vector store unreachable";
    if (body.model_version) text += " · model " + body.model_version;
    $("#status").textContent = text;
    if (idx.state === "running" || idx.state === "waiting" || !body.ready) {
      setTimeout(refreshStatus, 2000);
    }
  } catch (error) { $("#status").textContent = "service unreachable"; }
}

const drop = $("#drop");
$("#file").addEventListener("change", (e) => search(e.target.files[0]));
drop.addEventListener("keydown", (e) => { if (e.key === "Enter") $("#file").click(); });
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files.length) search(e.dataTransfer.files[0]);
});
document.addEventListener("paste", (e) => {
  const item = [...e.clipboardData.items].find((i) => i.type.startsWith("image/"));
  if (item) search(item.getAsFile());
});
$("#filters").addEventListener("change", () => search(lastFile));
$("#add-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const data = new FormData(e.target);
  const key = data.get("key"); data.delete("key");
  for (const [k, v] of [...data.entries()]) if (v === "") data.delete(k);
  try {
    const car = await handle(await fetch("/api/v1/cars", {
      method: "POST", body: data, headers: { "X-API-Key": key } }));
    $("#add-message").textContent = "Added " + (car.class_name || car.id);
    refreshStatus();
  } catch (error) { $("#add-message").textContent = error.message; }
});
refreshStatus();
