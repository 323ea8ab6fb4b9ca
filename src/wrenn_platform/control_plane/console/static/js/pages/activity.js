// The team's events (live, from the stream) and audit log (newest first, paged by the API's cursor,
// filtered by what the page holds).
import { get } from "../api.js";
import { errorLine, h, when } from "../dom.js";
import { EVENT_KINDS, watchEvents } from "../events.js";

const LIVE_KEEP = 200;

function liveEvents() {
  const list = h("tbody");
  const empty = h("tr", {}, h("td", { colspan: 5, class: "muted" }, "Waiting for events…"));
  list.append(empty);
  const stop = watchEvents(EVENT_KINDS, (kind, event) => {
    empty.remove();
    const resource = event.resource ? `${event.resource.type || ""} ${event.resource.id || ""}` : "";
    const detail = event.error || Object.entries(event.metadata || {}).map(([k, v]) => `${k}=${v}`).join(" ");
    list.prepend(h("tr", { "data-event": kind },
      h("td", {}, new Date().toLocaleTimeString()), h("td", { class: "mono" }, kind),
      h("td", { class: event.outcome === "error" ? "error" : null }, event.outcome || ""),
      h("td", { class: "mono" }, resource), h("td", {}, detail)));
    while (list.children.length > LIVE_KEEP) list.lastChild.remove();
  });
  const table = h("table", { "aria-label": "Live events" },
    h("thead", {}, h("tr", {}, ["Received", "Event", "Outcome", "Resource", "Details"].map((t) => h("th", {}, t)))), list);
  return { table, stop };
}

function auditLog() {
  const errors = errorLine();
  const rows = h("tbody");
  const entries = [];
  let cursor = null;
  const filter = h("input", { type: "search", "aria-label": "Filter the audit log", placeholder: "action, resource or actor" });
  const older = h("button", { type: "button", disabled: true }, "Load older");

  function draw() {
    const needle = filter.value.trim().toLowerCase();
    const shown = entries.filter((e) => !needle ||
      [e.action, e.resource_type, e.resource_id, e.actor_name, e.actor_type, e.status].join(" ").toLowerCase().includes(needle));
    rows.replaceChildren(...shown.map((e) => h("tr", { "data-audit": e.id },
      h("td", {}, when(e.created_at)), h("td", { class: "mono" }, e.action),
      h("td", { class: e.status === "failure" ? "error" : null }, e.status),
      h("td", { class: "mono" }, `${e.resource_type} ${e.resource_id || ""}`),
      h("td", {}, `${e.actor_name || e.actor_id || ""} (${e.actor_type})`))));
    if (!shown.length) rows.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No entries.")));
  }

  async function load() {
    older.disabled = true;
    errors.show(null);
    const query = new URLSearchParams({ limit: "50" });
    if (cursor) {
      query.set("before", cursor.before);
      query.set("before_id", cursor.before_id);
    }
    try {
      const page = await get(`/v1/audit-logs?${query}`);
      entries.push(...page.entries);
      cursor = page.next_cursor;
      draw();
    } catch (error) {
      errors.show(error);
    }
    older.disabled = !cursor;
  }

  filter.addEventListener("input", draw);
  older.addEventListener("click", load);
  const section = h("section", { "aria-label": "Audit log" }, h("h2", {}, "Audit log"), filter, errors,
    h("table", { "aria-label": "Audit log entries" },
      h("thead", {}, h("tr", {}, ["When", "Action", "Status", "Resource", "Actor"].map((t) => h("th", {}, t)))), rows),
    h("div", { class: "pager" }, older));
  load();
  return section;
}

export function activityView(main) {
  const live = liveEvents();
  main.append(h("h1", {}, "Activity"), h("h2", {}, "Live events"), live.table, auditLog());
  return live.stop;
}
