// The team's capsules: a paged table kept live by the events stream, and the create form.
import { get, post } from "../api.js";
import { busy, errorLine, formData, h, statusBadge, when } from "../dom.js";
import { watchCapsules } from "../events.js";
import { capsuleActions } from "./capsule_actions.js";

const PAGE_SIZE = 50;
const GONE = ["stopped"];

function createForm(errors, onCreated) {
  const button = h("button", { class: "primary", type: "submit" }, "Create capsule");
  const number = (name, label, value, min) =>
    h("label", {}, label, h("input", { name, type: "number", value, min, required: true }));
  const form = h("form", { class: "inline", "aria-label": "Create capsule" },
    h("label", {}, "Template", h("input", { name: "template", value: "minimal", required: true })),
    number("vcpus", "vCPUs", 1, 1), number("memory_mb", "Memory (MB)", 512, 64),
    number("disk_size_mb", "Disk (MB)", 5120, 1), number("timeout_sec", "Idle pause after (s, 0 = never)", 0, 0),
    button);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = formData(form);
    for (const key of ["vcpus", "memory_mb", "disk_size_mb", "timeout_sec"]) body[key] = Number(body[key]);
    busy(button, errors, async () => onCreated(await post("/v1/capsules", body)));
  });
  return form;
}

export async function capsulesView(main) {
  const capsules = new Map(); // id -> capsule, newest first by created_at
  const errors = errorLine();
  const rowsErrors = errorLine();
  const body = h("tbody");
  const pager = h("div", { class: "pager" });
  let page = 0;
  let showStopped = false;

  function row(capsule) {
    return h("tr", { "data-capsule": capsule.id },
      h("td", {}, h("a", { href: `#/capsules/${capsule.id}`, class: "mono" }, capsule.id)),
      h("td", {}, statusBadge(capsule.status),
        capsule.metadata && capsule.metadata.error ? h("div", { class: "error" }, capsule.metadata.error) : null),
      h("td", {}, capsule.template),
      h("td", {}, `${capsule.vcpus} vCPU · ${capsule.memory_mb} MB`),
      h("td", {}, when(capsule.created_at)),
      h("td", {}, capsuleActions(capsule, rowsErrors, upsert)));
  }

  function draw() {
    const shown = [...capsules.values()]
      .filter((c) => showStopped || !GONE.includes(c.status))
      .sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    const pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
    page = Math.min(page, pages - 1);
    body.replaceChildren(...shown.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE).map(row));
    if (!shown.length) body.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No capsules yet.")));
    const turn = (delta, label, disabled) => h("button", { type: "button", disabled,
      onclick: () => { page += delta; draw(); } }, label);
    pager.replaceChildren(turn(-1, "Previous", page === 0), h("span", {}, `Page ${page + 1} of ${pages} · ${shown.length} capsules`),
      turn(1, "Next", page >= pages - 1));
  }

  function upsert(capsule) {
    const known = capsules.get(capsule.id);
    // Answers and events can cross: a create that fails at once is reported on the stream before
    // its 202 (`starting`) is read. Keep the newer state.
    if (known && Date.parse(capsule.last_updated) < Date.parse(known.last_updated)) return;
    capsules.set(capsule.id, { ...known, ...capsule });
    draw();
  }

  const stoppedToggle = h("label", { class: "inline" },
    h("input", { type: "checkbox", onchange: (e) => { showStopped = e.target.checked; draw(); } }), " Show stopped");
  main.append(h("h1", {}, "Capsules"),
    h("div", { class: "panel" }, h("h2", {}, "New capsule"), createForm(errors, upsert), errors),
    stoppedToggle, rowsErrors,
    h("table", { "aria-label": "Capsules" },
      h("thead", {}, h("tr", {}, ["ID", "Status", "Template", "Size", "Created", "Actions"].map((t) => h("th", {}, t)))),
      body),
    pager);

  const stop = watchCapsules(upsert, (id) => get(`/v1/capsules/${id}`).then(upsert, () => {}));
  try {
    for (const capsule of await get("/v1/capsules")) capsules.set(capsule.id, capsule);
    draw();
  } catch (error) {
    rowsErrors.show(error);
  }
  return stop;
}
