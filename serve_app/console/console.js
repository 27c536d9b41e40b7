// The console: a client of the public JSON API, nothing more. Every text that comes from a user
// or the server (prompts, names, errors) is inserted as a text node, never parsed as HTML.
"use strict";

const FINAL = new Set(["completed", "error", "cancelled"]);
const PAGE = 24;
const $ = (id) => document.getElementById(id);
const state = { admin: false, historyOffset: 0, streams: new Map(), settings: {} };

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

// An element with attributes (on* names are listeners) and children (strings become text).
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, "");
    else if (value !== false && value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

async function api(method, path, body) {
  const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const payload = await response.json().catch(() => null);
  if (!response.ok) {
    const detail = payload?.errors?.[0]?.detail ?? `${method} ${path}: HTTP ${response.status}`;
    if (response.status === 401) showLogin();
    throw new ApiError(response.status, detail);
  }
  return payload;
}

// An action's failure shown where the user looks (the element's text), not thrown away.
function reporting(target, action) {
  return async (event) => {
    event?.preventDefault?.();
    target.textContent = "";
    try {
      await action(event);
    } catch (error) {
      target.textContent = error.message;
    }
  };
}

const imageUrl = (path) => `/api/invocation/${path}`; // "images/<uuid>_0.png", "intermediates/..."
const seconds = (value) => (value === null || value === undefined ? "" : `${value.toFixed(1)} s`);

// ---- login ------------------------------------------------------------------------------------

function showLogin() {
  for (const stream of state.streams.values()) stream.close();
  state.streams.clear();
  $("console").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
}

async function login(event) {
  const form = event.target;
  await api("POST", "/api/login", { username: form.username.value, password: form.password.value });
  form.password.value = "";
  $("who").textContent = form.username.value;
  await start();
}

async function logout() {
  await api("POST", "/api/logout");
  $("who").textContent = "";
  showLogin();
}

// ---- the invoke form --------------------------------------------------------------------------

function readFile(input) {
  const file = input.files[0];
  if (!file) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result); // a data URI, as the API takes images
    reader.onerror = () => reject(new Error(`${input.name}: could not read ${file.name}`));
    reader.readAsDataURL(file);
  });
}

async function payload(form) {
  const body = { prompt: form.prompt.value };
  if (form.negative_prompt.value) body.negative_prompt = form.negative_prompt.value;
  if (form.model.value) Object.assign(body, JSON.parse(form.model.value));
  if (form.scheduler.value) body.scheduler = form.scheduler.value;
  for (const name of ["width", "height", "num_inference_steps", "guidance_scale", "seed", "samples", "strength"]) {
    if (form[name].value !== "") body[name] = Number(form[name].value);
  }
  for (const name of ["image", "mask"]) {
    const data = await readFile(form[name]);
    if (data) body[name] = data;
  }
  return body;
}

async function invoke(event) {
  const body = await payload(event.target);
  const { data } = await api("POST", "/api/invoke", body);
  follow(data, body.prompt);
}

function fill(form, values) {
  for (const [name, value] of Object.entries(values)) {
    const field = form.elements[name];
    if (field && field.type !== "file" && value !== null && value !== undefined) field.value = String(value);
  }
}

// A history entry's parameters back in the form: its plan's first step (diffuse) and its seed.
function reuse(plan) {
  const step = (plan.steps ?? []).find((item) => item.kind === "diffuse") ?? plan;
  const form = $("invoke-form");
  fill(form, {
    prompt: step.prompt ?? "",
    negative_prompt: step.negative_prompt ?? "",
    width: step.width,
    height: step.height,
    num_inference_steps: step.num_inference_steps,
    guidance_scale: step.guidance_scale,
    scheduler: step.scheduler ?? "",
    seed: plan.seed,
    samples: plan.samples,
  });
  const model = plan.model ? { model: plan.model, model_type: "model" } : step.checkpoint && { model: step.checkpoint, model_type: "checkpoint" };
  if (model) {
    const value = JSON.stringify(model);
    if ([...form.model.options].some((option) => option.value === value)) form.model.value = value;
  }
  form.prompt.focus();
}

async function loadChoices() {
  const [checkpoints, models, schema] = await Promise.all([
    api("GET", "/api/checkpoints"),
    api("GET", "/api/models"),
    fetch("/openapi.json").then((response) => response.json()),
  ]);
  const select = $("invoke-form").model;
  select.replaceChildren(el("option", { value: "" }, "(the default checkpoint)"));
  for (const name of checkpoints.data) {
    select.append(el("option", { value: JSON.stringify({ model: name, model_type: "checkpoint" }) }, name));
  }
  for (const model of models.data) {
    const name = model.attributes.name;
    select.append(el("option", { value: JSON.stringify({ model: name, model_type: "model" }) }, `${name} (model)`));
  }
  // The scheduler names the API allows, from its own schema.
  const property = schema.components.schemas.InvokeRequest.properties.scheduler;
  const names = (property.anyOf ?? [property]).flatMap((item) => item.enum ?? []);
  const schedulers = $("invoke-form").scheduler;
  schedulers.replaceChildren(el("option", { value: "" }, "(the model's)"), ...names.map((name) => el("option", { value: name }, name)));
}

// ---- jobs: followed through their event streams ------------------------------------------------

function follow(status, prompt) {
  if (state.streams.has(status.uuid)) return;
  const line = el("p", { class: "state" });
  const card = el(
    "article",
    { class: "job", "data-uuid": status.uuid },
    el("p", { class: "prompt" }, prompt ?? `invocation ${status.uuid}`), // a status carries no prompt
    line,
    el("progress", { max: 1 }),
    el("img", { class: "latest", alt: "", hidden: true }),
    el("button", { type: "button", class: "cancel", onclick: reporting(line, () => cancel(status.uuid)) }, "Cancel"),
  );
  $("jobs").prepend(card);
  show(card, status);
  if (FINAL.has(status.status)) return;
  const stream = new EventSource(`/api/invocation/${status.uuid}/events`);
  state.streams.set(status.uuid, stream);
  stream.addEventListener("status", (event) => {
    const current = JSON.parse(event.data);
    show(card, current);
    if (FINAL.has(current.status)) {
      stream.close();
      state.streams.delete(status.uuid);
      loadHistory(true);
    }
  });
  stream.addEventListener("error", (event) => {
    if (event.data) card.querySelector(".state").textContent = JSON.parse(event.data).detail;
    if (stream.readyState === EventSource.CLOSED) state.streams.delete(status.uuid);
  });
}

function show(card, status) {
  const parts = [status.status];
  if (status.status === "queued") parts.push(`${state.queued ?? "?"} waiting on the server`);
  if (status.step !== null && status.total) parts.push(`step ${status.step} of ${status.total}`);
  if (status.attempts > 1) parts.push(`attempt ${status.attempts}`);
  if (status.message) parts.push(status.message);
  card.querySelector(".state").textContent = parts.join(" · ");
  const bar = card.querySelector("progress");
  if (status.progress === null || status.progress === undefined) bar.removeAttribute("value");
  else bar.value = status.progress;
  const latest = card.querySelector(".latest");
  const images = status.images ?? [];
  if (images.length) {
    latest.src = imageUrl(images[images.length - 1]);
    latest.hidden = false;
  }
  card.dataset.status = status.status;
  card.querySelector(".cancel").hidden = FINAL.has(status.status);
}

async function cancel(uuid) {
  await api("POST", `/api/invocation/${uuid}/cancel`);
}

async function loadJobs() {
  const { data } = await api("GET", "/api/invocation");
  for (const status of data.reverse()) if (!FINAL.has(status.status)) follow(status);
}

// ---- history: a gallery -----------------------------------------------------------------------

function promptOf(plan) {
  const step = (plan?.steps ?? []).find((item) => item.prompt !== undefined) ?? plan ?? {};
  return step.prompt ?? "";
}

function entry(invocation) {
  const item = invocation.attributes;
  const prompt = promptOf(item.plan);
  const caption = `${item.status} · ${seconds(item.duration)}${item.error ? ` · ${item.error}` : ""}`;
  const pictures = item.images.map((path) =>
    el("img", { src: imageUrl(path), alt: prompt, loading: "lazy", onclick: () => view(path, prompt, caption) }),
  );
  return el(
    "figure",
    { class: "entry", "data-uuid": item.id, "data-status": item.status },
    el("div", { class: "pictures" }, pictures),
    el("figcaption", {}, el("p", { class: "prompt" }, prompt), el("p", { class: "meta" }, caption)),
    el(
      "div",
      { class: "actions" },
      item.images.length ? el("button", { type: "button", onclick: () => view(item.images[0], prompt, caption) }, "Open") : null,
      item.images.map((path, index) => el("a", { href: imageUrl(path), download: path.split("/").pop() }, `Download ${index + 1}`)),
      el("button", { type: "button", onclick: () => reuse(item.plan ?? {}) }, "Reuse"),
      el("button", { type: "button", class: "delete", onclick: () => remove(item.id) }, "Delete"),
    ),
  );
}

async function loadHistory(fromStart) {
  if (fromStart) state.historyOffset = 0;
  const query = `limit=${PAGE}&offset=${state.historyOffset}&sort=started:desc`;
  const { data, meta } = await api("GET", `/api/invocation-history?${query}`);
  const gallery = $("gallery");
  if (fromStart) gallery.replaceChildren();
  gallery.append(...data.map(entry));
  state.historyOffset += data.length;
  $("more").hidden = state.historyOffset >= meta.count;
}

async function remove(uuid) {
  await api("DELETE", `/api/invocation/${uuid}`);
  document.querySelector(`figure.entry[data-uuid="${CSS.escape(uuid)}"]`)?.remove();
  state.historyOffset = Math.max(0, state.historyOffset - 1);
}

function view(path, prompt, caption) {
  $("viewer-image").src = imageUrl(path);
  $("viewer-image").alt = prompt;
  $("viewer-caption").textContent = `${prompt} — ${caption}`;
  $("viewer-download").href = imageUrl(path);
  $("viewer-download").download = path.split("/").pop();
  $("viewer").showModal();
}

// ---- the cluster ------------------------------------------------------------------------------

async function loadCluster() {
  const { data } = await api("GET", "/api");
  state.queued = data.system.invocations.queued;
  $("summary").textContent = `${data.status} · ${data.system.invocations.queued} queued · ${data.gpus.length} GPU(s) · ${data.nodes.length} node(s)`;
  const gpus = data.gpus.map((gpu) => el("li", {}, `${gpu.name ?? "GPU"}${gpu.memory?.total ? ` · ${gpu.memory.total} MiB` : ""}${gpu.load !== undefined && gpu.load !== null ? ` · load ${gpu.load}` : ""}`));
  const nodes = data.nodes.map((node) => el("li", {}, `${node.address ?? node.id}${node.head ? " (head)" : ""} · ${node.alive ? "alive" : "dead"} · ${node.cpus} CPUs · ${node.gpus} GPUs`));
  const roles = Object.entries(data.replicas).map(([role, counts]) =>
    el("tr", {}, el("td", {}, role), el("td", {}, counts.status), el("td", {}, String(counts.running))),
  );
  $("cluster").replaceChildren(
    el("p", {}, `version ${data.version} · up ${seconds(data.uptime)}`),
    el("h3", {}, "GPUs"), gpus.length ? el("ul", {}, gpus) : el("p", {}, "none"),
    el("h3", {}, "Nodes"), nodes.length ? el("ul", {}, nodes) : el("p", {}, "none reported"),
    el("h3", {}, "Replicas"),
    el("table", {}, el("tr", {}, el("th", {}, "role"), el("th", {}, "status"), el("th", {}, "running")), roles),
  );
  for (const warning of data.warnings) $("cluster").append(el("p", { class: "error" }, warning));
}

// ---- administration ---------------------------------------------------------------------------

async function loadSettings() {
  const { data } = await api("GET", "/api/settings");
  state.settings = data;
  $("logout").hidden = !data.auth;
  $("settings").replaceChildren(
    ...Object.entries(data).map(([name, value]) =>
      el(
        "label",
        {},
        name,
        typeof value === "boolean"
          ? el("input", { name, type: "checkbox", checked: value })
          : el("input", { name, type: typeof value === "number" ? "number" : "text", step: "any", value: value ?? "" }),
      ),
    ),
  );
}

async function saveSettings() {
  const changes = {};
  for (const [name, old] of Object.entries(state.settings)) {
    const input = $("settings-form").elements[name];
    let value;
    if (input.type === "checkbox") value = input.checked;
    else if (input.value === "") value = null;
    else value = input.type === "number" || typeof old === "number" ? Number(input.value) : input.value;
    if (value !== old) changes[name] = value;
  }
  if (Object.keys(changes).length) await api("POST", "/api/settings", changes);
  await loadSettings();
}

async function loadUsers() {
  const { data } = await api("GET", "/api/users?limit=1000");
  $("users").replaceChildren(
    el("tr", {}, el("th", {}, "user"), el("th", {}, "name"), el("th", {}, "admin"), el("th", {}, "last login"), el("th")),
    ...data.map(({ attributes: user }) =>
      el(
        "tr",
        {},
        el("td", {}, user.username),
        el("td", {}, [user.first_name, user.last_name].filter(Boolean).join(" ")),
        el("td", {}, user.admin ? "yes" : "no"),
        el("td", {}, user.last_login ?? ""),
        el("td", {}, el("button", { type: "button", onclick: reporting($("user-error"), () => deleteUser(user.username)) }, "Delete")),
      ),
    ),
  );
}

async function addUser(event) {
  const form = event.target;
  const password = form.new_password.value;
  await api("POST", "/api/users", { username: form.username.value, new_password: password, repeat_password: password, admin: form.admin.checked });
  form.reset();
  await loadUsers();
}

async function deleteUser(username) {
  await api("DELETE", `/api/users/${encodeURIComponent(username)}`);
  await loadUsers();
}

// ---- start ------------------------------------------------------------------------------------

async function start() {
  await loadCluster(); // a 401 here shows the login form
  $("login").hidden = true;
  $("console").hidden = false;
  // Administrators see settings and users: the API says who may list users.
  try {
    await loadUsers();
    state.admin = true;
  } catch (error) {
    if (error.status !== 403) throw error;
    state.admin = false;
  }
  $("admin-panel").hidden = !state.admin;
  // With auth off everyone acts as the administrator; a user who is not one has logged in.
  $("logout").hidden = state.admin;
  await Promise.all([loadChoices(), state.admin ? loadSettings() : null, loadHistory(true), loadJobs()]);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", reporting($("login-error"), login));
  $("logout").addEventListener("click", reporting($("login-error"), logout));
  $("invoke-form").addEventListener("submit", reporting($("invoke-error"), invoke));
  $("settings-form").addEventListener("submit", reporting($("settings-error"), saveSettings));
  $("user-form").addEventListener("submit", reporting($("user-error"), addUser));
  $("more").addEventListener("click", reporting($("invoke-error"), () => loadHistory(false)));
  $("viewer-close").addEventListener("click", () => $("viewer").close());
  start().catch((error) => {
    if (error.status !== 401) $("summary").textContent = error.message;
  });
  setInterval(() => {
    if (!$("console").hidden) loadCluster().catch(() => {});
  }, 5000);
});
