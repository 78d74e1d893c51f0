"use strict";
// The page: search by photo (or a region of it), filters filled from the gallery's facets,
// refinement chips, a car view, more results, and adding, editing and deleting cars.
const $ = (sel) => document.querySelector(sel);
const MIN_BOX = 0.04; // a drag smaller than this (of the photo) is a click, not a box
const NOT_SURE = 0.5; // below this confidence the page says it is not sure
const MAX_PHOTOS = 8; // photos of one car a search reads together (the API's limit)

const state = {
  file: null, // the photo searched with (the first of them: shown, with its region)
  files: [], // every photo of the car searched with
  carId: null, // or the car whose likes are shown
  box: null, // {x0, y0, x1, y1} as fractions of the photo as shown; null: the whole photo
  positive: [], // [{id, name}]
  negative: [],
  offset: 0,
  fields: [], // from /api/v1/fields
};

function setMessage(text) { $("#message").textContent = text || ""; }

function describeProblem(problem, status) {
  if (problem && problem.title) return problem.title + (problem.detail ? ": " + problem.detail : "");
  return "Request failed (" + status + ")";
}

async function handle(response) {
  const body = response.status === 204 ? {} : await response.json().catch(() => null);
  if (!response.ok) throw new Error(describeProblem(body, response.status));
  return body;
}

function carName(c) {
  return [c.year, c.make, c.model].filter(Boolean).join(" ") || c.class_name || "";
}

function cardName(c) {
  return [c.make, c.model, c.year].filter(Boolean).join(" ") || c.class_name || c.id;
}

function percent(x) { return Math.round(100 * x) + " %"; }

function element(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}

// ---- filters ------------------------------------------------------------------------------
function filterObject(except) {
  const form = new FormData($("#filters"));
  const filter = {};
  for (const name of ["make", "body"]) {
    const value = form.get(name);
    if (value && name !== except) filter[name] = value;
  }
  for (const field of state.fields.filter((f) => f.attribute)) {
    if (field.name === except) continue;
    if (field.kind === "keyword" || field.kind === "bool") {
      const value = form.get("attr_" + field.name);
      if (value) filter[field.name] = field.kind === "bool" ? value === "true" : value;
    } else {
      const low = form.get("attr_" + field.name + "_min");
      const high = form.get("attr_" + field.name + "_max");
      const range = {};
      if (low !== null && low !== "") range.gte = Number(low);
      if (high !== null && high !== "") range.lte = Number(high);
      if (Object.keys(range).length) filter[field.name] = range;
    }
  }
  return filter;
}

function searchParams() {
  const form = new FormData($("#filters"));
  const params = { limit: form.get("limit") || "12" };
  if (form.get("group_by")) params.group_by = "class";
  for (const name of ["year_min", "year_max"]) if (form.get(name)) params[name] = form.get(name);
  const filter = filterObject();
  if (Object.keys(filter).length) params.filter = JSON.stringify(filter);
  if (state.offset) params.offset = String(state.offset);
  if (state.positive.length) params.positive = state.positive.map((c) => c.id).join(",");
  if (state.negative.length) params.negative = state.negative.map((c) => c.id).join(",");
  return params;
}

async function loadFields() {
  try {
    state.fields = (await handle(await fetch("/api/v1/fields"))).fields;
  } catch (error) { state.fields = []; }
  const box = $("#attribute-filters");
  box.replaceChildren();
  for (const field of state.fields.filter((f) => f.attribute)) {
    const title = field.name.replace(/_/g, " ");
    if (field.kind === "keyword") {
      const select = element("select", { name: "attr_" + field.name });
      select.append(element("option", { value: "" }, "any"));
      box.append(element("label", {}, title + " ", select));
    } else if (field.kind === "bool") {
      const select = element("select", { name: "attr_" + field.name });
      select.append(element("option", { value: "" }, "any"),
        element("option", { value: "true" }, "yes"), element("option", { value: "false" }, "no"));
      box.append(element("label", {}, title + " ", select));
    } else {
      const step = field.kind === "integer" ? "1" : "any";
      box.append(element("div", { className: "pair" },
        element("label", {}, title + " from ",
          element("input", { name: "attr_" + field.name + "_min", type: "number", step })),
        element("label", {}, "to ",
          element("input", { name: "attr_" + field.name + "_max", type: "number", step }))));
    }
  }
}

async function refreshYears() {
  const filter = filterObject();
  const query = new URLSearchParams({ field: "year", limit: "1000" });
  if (Object.keys(filter).length) query.set("filter", JSON.stringify(filter));
  try {
    const years = (await handle(await fetch("/api/v1/facets?" + query))).values.map((v) => v.value);
    if (!years.length) return;
    const low = String(Math.min(...years)), high = String(Math.max(...years));
    for (const name of ["year_min", "year_max"]) {
      const input = $(`#filters input[name=${name}]`);
      Object.assign(input, { min: low, max: high, placeholder: name === "year_min" ? low : high });
    }
  } catch (error) { /* the range stays open */ }
}

async function refreshFacets() {
  refreshYears();
  const selects = [["make", "make"], ["body", "body"]];
  for (const field of state.fields.filter((f) => f.attribute && f.kind === "keyword")) {
    selects.push([field.name, "attr_" + field.name]);
  }
  await Promise.all(selects.map(async ([field, name]) => {
    const select = $(`#filters select[name=${name}]`);
    const filter = filterObject(field);
    const query = new URLSearchParams({ field, limit: "100" });
    if (Object.keys(filter).length) query.set("filter", JSON.stringify(filter));
    try {
      const body = await handle(await fetch("/api/v1/facets?" + query));
      const chosen = select.value;
      const options = [element("option", { value: "" }, "any")];
      for (const { value, count } of body.values) {
        options.push(element("option", { value: String(value) }, `${value} (${count})`));
      }
      if (chosen && !body.values.some((v) => String(v.value) === chosen)) {
        options.push(element("option", { value: chosen }, `${chosen} (0)`));
      }
      select.replaceChildren(...options);
      select.value = chosen;
    } catch (error) { /* the filter stays as it is */ }
  }));
}

// ---- the region box -------------------------------------------------------------------
function showBox() {
  const box = $("#box");
  const b = state.box || { x0: 0, y0: 0, x1: 1, y1: 1 };
  box.hidden = !state.box;
  Object.assign(box.style, {
    left: 100 * b.x0 + "%", top: 100 * b.y0 + "%",
    width: 100 * (b.x1 - b.x0) + "%", height: 100 * (b.y1 - b.y0) + "%",
  });
  const values = { x0: b.x0, y0: b.y0, x1: b.x1, y1: b.y1 };
  for (const [name, value] of Object.entries(values)) {
    $(`#box-numbers input[name=${name}]`).value = Math.round(100 * value);
  }
  $("#box-numbers").disabled = !state.file;
  $("#whole").disabled = !state.file;
  box.setAttribute("aria-valuetext", state.box
    ? `left ${Math.round(100 * b.x0)} %, top ${Math.round(100 * b.y0)} %, ` +
      `right ${Math.round(100 * b.x1)} %, bottom ${Math.round(100 * b.y1)} %`
    : "whole photo");
}

function clamp(x) { return Math.min(1, Math.max(0, x)); }

function setBox(b) {
  if (!b || b.x1 - b.x0 < MIN_BOX || b.y1 - b.y0 < MIN_BOX) { state.box = null; }
  else if (b.x0 <= 0 && b.y0 <= 0 && b.x1 >= 1 && b.y1 >= 1) { state.box = null; }
  else { state.box = { x0: clamp(b.x0), y0: clamp(b.y0), x1: clamp(b.x1), y1: clamp(b.y1) }; }
  showBox();
}

function boxText() {
  const b = state.box;
  return b ? [b.x0, b.y0, b.x1, b.y1].map((v) => v.toFixed(4)).join(",") : null;
}

function watchCrop() {
  const stage = $("#stage");
  let drag = null;
  const point = (e) => {
    const r = $("#preview").getBoundingClientRect();
    return { x: clamp((e.clientX - r.left) / r.width), y: clamp((e.clientY - r.top) / r.height) };
  };
  stage.addEventListener("pointerdown", (e) => {
    if (!state.file) return;
    e.preventDefault();
    stage.setPointerCapture(e.pointerId);
    const p = point(e);
    const b = state.box;
    if (e.target.id === "handle" && b) drag = { mode: "resize", start: p, box: { ...b } };
    else if (e.target.id === "box" && b) drag = { mode: "move", start: p, box: { ...b } };
    else drag = { mode: "draw", start: p };
  });
  stage.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const p = point(e);
    const dx = p.x - drag.start.x, dy = p.y - drag.start.y;
    let b;
    if (drag.mode === "draw") {
      b = { x0: Math.min(p.x, drag.start.x), y0: Math.min(p.y, drag.start.y),
        x1: Math.max(p.x, drag.start.x), y1: Math.max(p.y, drag.start.y) };
    } else if (drag.mode === "move") {
      const w = drag.box.x1 - drag.box.x0, h = drag.box.y1 - drag.box.y0;
      const x0 = Math.min(1 - w, Math.max(0, drag.box.x0 + dx));
      const y0 = Math.min(1 - h, Math.max(0, drag.box.y0 + dy));
      b = { x0, y0, x1: x0 + w, y1: y0 + h };
    } else {
      b = { ...drag.box, x1: Math.max(drag.box.x0 + MIN_BOX, clamp(drag.box.x1 + dx)),
        y1: Math.max(drag.box.y0 + MIN_BOX, clamp(drag.box.y1 + dy)) };
    }
    state.box = b; showBox();
  });
  const finish = () => {
    if (!drag) return;
    drag = null;
    setBox(state.box);
    restart();
  };
  stage.addEventListener("pointerup", finish);
  stage.addEventListener("pointercancel", finish);
  $("#box").addEventListener("keydown", (e) => {
    const steps = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (!(e.key in steps) || !state.box) return;
    e.preventDefault();
    const [sx, sy] = steps[e.key].map((v) => v * 0.02);
    const b = { ...state.box };
    if (e.shiftKey) { b.x1 = clamp(b.x1 + sx); b.y1 = clamp(b.y1 + sy); }
    else {
      const w = b.x1 - b.x0, h = b.y1 - b.y0;
      b.x0 = Math.min(1 - w, Math.max(0, b.x0 + sx)); b.y0 = Math.min(1 - h, Math.max(0, b.y0 + sy));
      b.x1 = b.x0 + w; b.y1 = b.y0 + h;
    }
    setBox(b);
  });
  $("#box").addEventListener("keyup", (e) => { if (e.key.startsWith("Arrow")) restart(); });
  $("#box-numbers").addEventListener("change", () => {
    const v = (name) => Number($(`#box-numbers input[name=${name}]`).value) / 100;
    setBox({ x0: v("x0"), y0: v("y0"), x1: v("x1"), y1: v("y1") });
    restart();
  });
  $("#whole").addEventListener("click", () => { setBox(null); restart(); });
}

// ---- searching ------------------------------------------------------------------------
function restart() { state.offset = 0; run(false); }

let latest = 0; // the newest search: answers of searches it replaced are dropped

async function run(append) {
  if (!state.file && !state.carId) return;
  const mine = ++latest;
  setMessage("Searching…");
  const params = searchParams();
  try {
    let response;
    if (state.file) {
      const form = new FormData();
      if (state.files.length > 1) {
        for (const file of state.files) form.append("images", file);
      } else {
        form.append("image", state.file);
        const box = boxText();
        if (box) form.append("box", box);
      }
      for (const [key, value] of Object.entries(params)) form.append(key, value);
      response = await fetch("/api/v1/search", { method: "POST", body: form });
    } else {
      response = await fetch(`/api/v1/cars/${state.carId}/similar?` + new URLSearchParams(params));
    }
    const body = await handle(response);
    if (mine !== latest) return;
    setMessage("");
    render(body, append, Number(params.limit));
  } catch (error) { if (mine === latest) setMessage(error.message); }
}

function showPhotos() {
  const several = state.files.length > 1;
  const count = $("#photos-count");
  count.hidden = !several;
  count.textContent = several ? `${state.files.length} photos of this car, searched together` : "";
  // A region is one photo's: with several, the whole photos are searched.
  $("#box-numbers").hidden = several; $("#whole").hidden = several;
  if (several) state.box = null;
}

function choosePhotos(files) {
  const chosen = [...(files || [])].slice(0, MAX_PHOTOS);
  if (!chosen.length) return;
  state.files = chosen; state.file = chosen[0]; state.carId = null; state.box = null;
  state.positive = []; state.negative = [];
  $("#preview").src = URL.createObjectURL(chosen[0]);
  $("#crop").hidden = false;
  showPhotos(); showBox(); showChips();
  restart();
}

function choosePhoto(file) { if (file) choosePhotos([file]); }

function addPhotos(files) {
  if (!state.file) { choosePhotos(files); return; }
  const room = MAX_PHOTOS - state.files.length;
  const added = [...(files || [])].slice(0, Math.max(room, 0));
  if (files && files.length > added.length) setMessage(`At most ${MAX_PHOTOS} photos of one car`);
  if (!added.length) return;
  state.files = [...state.files, ...added];
  showPhotos(); showBox();
  restart();
}

function showCar(id) {
  state.file = null; state.files = []; state.carId = id; state.box = null;
  state.positive = []; state.negative = [];
  $("#preview").src = `/api/v1/cars/${id}/image?size=thumb`;
  $("#crop").hidden = false;
  showPhotos(); showBox(); showChips();
  restart();
}

// ---- answers --------------------------------------------------------------------------
function renderIdentity(ident) {
  const box = $("#identity");
  box.replaceChildren();
  const candidates = (ident && ident.candidates) || [];
  const top = candidates[0];
  if (!top) return;
  const absent = (p) => (p === null || p === undefined ? "" : " (" + percent(p) + " sure)");
  if (ident.answer === "absent") {
    box.append(element("p", { className: "answer absent" },
      "Not in this gallery" + absent(ident.absent) + ". Closest: " + carName(top) + "."));
    return;
  }
  if (ident.answer === "model" && ident.model && ident.model.model) {
    box.append(element("p", { className: "answer" },
      "Looks like a " + ident.model.make + " " + ident.model.model + ", year not in the gallery — " +
      percent(ident.model.confidence)));
    box.append(element("p", { className: "make" }, "Closest year: " + carName(top)));
    return;
  }
  if (ident.answer === "make" && ident.make && ident.make.make) {
    box.append(element("p", { className: "answer" },
      "Probably a " + ident.make.make + " — " + percent(ident.make.confidence) +
      "; its model is not in this gallery. Closest: " + carName(top) + "."));
    return;
  }
  if (top.confidence >= NOT_SURE) {
    box.append(element("p", { className: "answer" },
      "Looks like a " + carName(top) + " — " + percent(top.confidence)));
    if (ident.make && ident.make.make && top.confidence < 0.6) {
      box.append(element("p", { className: "make" },
        "Make: " + ident.make.make + " — " + percent(ident.make.confidence)));
    }
    return;
  }
  box.append(element("p", { className: "answer" }, "Not sure what car this is. It could be:"));
  box.append(element("ol", {}, ...candidates.slice(0, 3).map((c) =>
    element("li", {}, carName(c) + " — " + percent(c.confidence)))));
  if (ident.make && ident.make.make && ident.make.confidence >= NOT_SURE) {
    box.append(element("p", { className: "make" },
      "Probably a " + ident.make.make + " — " + percent(ident.make.confidence)));
  }
}

function card(hit, group) {
  const name = cardName(hit);
  const open = element("button", { type: "button", className: "open", title: "Open " + name },
    element("img", { src: hit.thumb_url, alt: "Photo of a " + name, loading: "lazy" }),
    element("span", { className: "name" }, name));
  open.addEventListener("click", () => openCar(hit.id));
  const meta = element("div", { className: "meta" },
    element("div", { className: "score" },
      "score " + hit.score.toFixed(3) + (hit.body ? " · " + hit.body : "")));
  if (hit.photos_count > 1) {
    meta.append(element("div", { className: "photos" }, hit.photos_count + " photos"));
  }
  if (group && group.hits.length > 1) {
    meta.append(element("div", { className: "group" }, group.hits.length + " cars of this model"));
  }
  const like = element("button", { type: "button", className: "like" }, "More like this");
  like.setAttribute("aria-label", "More like this " + name);
  like.addEventListener("click", () => refine("positive", hit.id, name));
  const unlike = element("button", { type: "button", className: "unlike" }, "Less like this");
  unlike.setAttribute("aria-label", "Less like this " + name);
  unlike.addEventListener("click", () => refine("negative", hit.id, name));
  return element("article", { className: "card" },
    open, meta, element("div", { className: "refine" }, like, unlike));
}

function render(body, append, limit) {
  const results = $("#results");
  if (!append) { results.replaceChildren(); renderIdentity(body.identification); }
  const groups = body.groups;
  const hits = groups ? groups.map((g) => g.hits[0]) : body.hits;
  if (!hits.length && !append) results.append(element("p", {}, "No similar cars found."));
  hits.forEach((hit, i) => {
    const node = card(hit, groups && groups[i]);
    node.dataset.id = hit.id;
    results.append(node);
  });
  $("#more").hidden = hits.length < limit;
}

// ---- refinement -----------------------------------------------------------------------
function refine(kind, id, name) {
  const other = kind === "positive" ? "negative" : "positive";
  state[other] = state[other].filter((c) => c.id !== id);
  if (!state[kind].some((c) => c.id === id) && state[kind].length < 10) {
    state[kind].push({ id, name });
  }
  showChips();
  restart();
}

function showChips() {
  const list = $("#chip-list");
  list.replaceChildren();
  for (const kind of ["positive", "negative"]) {
    for (const chip of state[kind]) {
      const words = (kind === "positive" ? "more like " : "less like ") + chip.name;
      const remove = element("button", { type: "button", className: "chip " + kind }, words + " ×");
      remove.setAttribute("aria-label", "Remove: " + words);
      remove.addEventListener("click", () => {
        state[kind] = state[kind].filter((c) => c.id !== chip.id);
        showChips();
        restart();
      });
      list.append(remove);
    }
  }
  $("#chips").hidden = !state.positive.length && !state.negative.length;
}

// ---- the car view ---------------------------------------------------------------------
let opened = null;

async function openCar(id) {
  try {
    const car = await handle(await fetch("/api/v1/cars/" + id));
    opened = car;
    $("#car-title").textContent = cardName(car);
    const strip = $("#car-photos");
    strip.replaceChildren(...car.photos.map((p, i) => element("img", {
      src: p.image_url, loading: "lazy",
      alt: `Photo ${i + 1} of ${car.photos.length} of a ${cardName(car)}` + (p.view ? ` (${p.view})` : ""),
    })));
    strip.scrollLeft = 0;
    $("#car-photos-count").textContent = car.photos.length > 1
      ? car.photos.length + " photos: swipe or scroll" : "";
    const fields = $("#car-fields");
    fields.replaceChildren();
    const rows = [["Make", car.make], ["Model", car.model], ["Year", car.year], ["Body", car.body],
      ["Class", car.class_name], ["External id", car.external_id], ["Source", car.source],
      ["Size", car.width && car.height ? car.width + " × " + car.height : null],
      ["Indexed", car.indexed_at]];
    for (const [name, value] of Object.entries(car.attributes || {})) rows.push([name, value]);
    for (const [name, value] of rows) {
      if (value === null || value === undefined || value === "") continue;
      fields.append(element("dt", {}, name), element("dd", {}, String(value)));
    }
    const edit = $("#edit-form");
    for (const name of ["make", "model", "year", "body"]) edit.elements[name].value = car[name] ?? "";
    $("#edit-message").textContent = "";
    $("#car-identity").textContent = "";
    $("#car").showModal();
    const similar = await handle(await fetch(`/api/v1/cars/${id}/similar?limit=1`));
    const top = similar.identification && similar.identification.candidates[0];
    if (top) {
      $("#car-identity").textContent = (top.confidence >= NOT_SURE ? "Looks like a " : "Maybe a ")
        + carName(top) + " — " + percent(top.confidence);
    }
  } catch (error) { setMessage(error.message); }
}

function writeKey(form) {
  const key = form.elements.key.value || $("#add-form").elements.key.value;
  return { "X-API-Key": key };
}

function watchCarView() {
  $("#car-similar").addEventListener("click", () => { $("#car").close(); showCar(opened.id); });
  $("#edit-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = e.target;
    const patch = {};
    for (const name of ["make", "model", "body"]) patch[name] = form.elements[name].value || null;
    patch.year = form.elements.year.value ? Number(form.elements.year.value) : null;
    try {
      const car = await handle(await fetch("/api/v1/cars/" + opened.id, {
        method: "PATCH", body: JSON.stringify(patch),
        headers: { "Content-Type": "application/merge-patch+json", ...writeKey(form) } }));
      $("#edit-message").textContent = "Saved";
      await openCar(car.id);
      $("#edit-message").textContent = "Saved";
      refreshFacets();
    } catch (error) { $("#edit-message").textContent = error.message; }
  });
  $("#car-delete").addEventListener("click", async () => {
    try {
      await handle(await fetch("/api/v1/cars/" + opened.id, {
        method: "DELETE", headers: writeKey($("#edit-form")) }));
      $("#car").close();
      refreshStatus(); refreshFacets(); restart();
    } catch (error) { $("#edit-message").textContent = error.message; }
  });
}

// ---- status, adding and wiring --------------------------------------------------------
async function refreshStatus() {
  try {
    const body = await (await fetch("/readyz")).json();
    const idx = body.indexing || {};
    let text = (body.points ?? 0) + " cars indexed";
    if (idx.state === "running") text += " · indexing " + idx.done + "/" + idx.total;
    if (idx.state === "waiting") text += " · waiting for the vector store";
    if (body.store_reachable === false) text += " · vector store unreachable";
    if (body.embedding_version) text += " · model " + body.embedding_version;
    $("#status").textContent = text;
    if (idx.state === "running" || idx.state === "waiting" || !body.ready) {
      setTimeout(() => { refreshStatus(); refreshFacets(); }, 2000);
    }
  } catch (error) { $("#status").textContent = "service unreachable"; }
}

function wire() {
  const drop = $("#drop");
  $("#file").addEventListener("change", (e) => choosePhotos(e.target.files));
  $("#more-photos").addEventListener("change", (e) => {
    addPhotos(e.target.files); e.target.value = "";
  });
  $("#camera").addEventListener("change", (e) => choosePhoto(e.target.files[0]));
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("#file").click(); }
  });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    if (e.dataTransfer.files.length) choosePhotos(e.dataTransfer.files);
  });
  document.addEventListener("paste", (e) => {
    const item = [...e.clipboardData.items].find((i) => i.type.startsWith("image/"));
    if (item) choosePhoto(item.getAsFile());
  });
  $("#filters").addEventListener("change", () => { refreshFacets(); restart(); });
  $("#more").addEventListener("click", () => {
    state.offset += Number(searchParams().limit);
    run(true);
  });
  $("#add-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = new FormData(e.target);
    const key = data.get("key"); data.delete("key");
    const useBox = data.get("use_box"); data.delete("use_box");
    for (const [k, v] of [...data.entries()]) if (v === "") data.delete(k);
    if (useBox && boxText() && data.getAll("images").length === 1) data.append("box", boxText());
    try {
      const car = await handle(await fetch("/api/v1/cars", {
        method: "POST", body: data, headers: { "X-API-Key": key } }));
      const copies = new Set((car.reused || []).map((r) => r.car_id)).size;
      $("#add-message").textContent = "Added " + (car.class_name || car.id)
        + (car.photos_count > 1 ? ` with ${car.photos_count} photos` : "")
        + (copies ? ` — ${copies === 1 ? "another car has" : copies + " other cars have"} this photo` : "");
      refreshStatus(); refreshFacets();
    } catch (error) { $("#add-message").textContent = error.message; }
  });
  watchCrop();
  watchCarView();
}

wire();
if (matchMedia("(max-width: 720px)").matches) {
  // On a phone the results come right after the photo: filters and the region fold away.
  $("#filter-fold").open = false; $("#region-fold").open = false;
}
refreshStatus();
loadFields().then(refreshFacets);
