// Hosts: list, create (the registration token shown once), delete after a preview of the capsules
// it would destroy. Who may do what is the API's to say: a refusal shows next to the form.
import { del, get, post } from "../api.js";
import { busy, errorLine, formData, h, when } from "../dom.js";
import * as session from "../session.js";

function tokenOnce(answer) {
  return h("div", { class: "panel", role: "region", "aria-label": "New host" },
    h("p", {}, h("strong", {}, `Host ${answer.host.id} created.`),
      " Start its agent with this registration token; it is shown only this once."),
    h("div", { class: "secret" }, h("code", { id: "registration-token" }, answer.registration_token)));
}

export async function hostsView(main) {
  const me = session.current();
  const errors = errorLine();
  const listErrors = errorLine();
  const fresh = h("div");
  const rows = h("tbody");

  async function remove(host) {
    const preview = await get(`/v1/hosts/${host.id}/delete-preview`);
    const capsules = preview.sandbox_ids || [];
    const question = capsules.length
      ? `Delete host ${host.id}? Its ${capsules.length} capsule(s) will be destroyed: ${capsules.join(", ")}`
      : `Delete host ${host.id}? No capsule runs on it.`;
    if (!confirm(question)) return;
    await del(`/v1/hosts/${host.id}${capsules.length ? "?force=true" : ""}`);
    await refresh();
  }

  async function refresh() {
    const hosts = await get("/v1/hosts");
    rows.replaceChildren(...hosts.map((host) => {
      const button = h("button", { type: "button", class: "danger", "aria-label": `Delete ${host.id}` }, "Delete");
      button.addEventListener("click", () => busy(button, listErrors, () => remove(host)));
      return h("tr", { "data-host": host.id }, h("td", { class: "mono" }, host.id), h("td", {}, host.type),
        h("td", {}, h("span", { class: `status status-${host.status}` }, host.status || "—")),
        h("td", { class: "mono" }, host.address || "—"),
        h("td", {}, host.cpu_cores ? `${host.cpu_cores} cores · ${host.memory_mb} MB` : "—"),
        h("td", {}, when(host.created_at)), h("td", {}, button));
    }));
    if (!hosts.length) rows.append(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No hosts.")));
  }

  const button = h("button", { class: "primary", type: "submit" }, "Create host");
  const form = h("form", { class: "inline", "aria-label": "Create host" },
    h("label", {}, "Type", h("select", { name: "type" },
      h("option", { value: "regular" }, "regular (platform)"), h("option", { value: "byoc" }, "byoc (this team's)"))),
    h("label", {}, "Provider", h("input", { name: "provider", placeholder: "optional" })),
    h("label", {}, "Availability zone", h("input", { name: "availability_zone", placeholder: "optional" })),
    button);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = Object.fromEntries(Object.entries(formData(form)).filter(([, v]) => v !== ""));
    if (body.type === "byoc") body.team_id = me.team_id;
    busy(button, errors, async () => {
      fresh.replaceChildren(tokenOnce(await post("/v1/hosts", body)));
      form.reset();
      await refresh();
    });
  });
  main.append(h("h1", {}, "Hosts"), form, errors, fresh, listErrors,
    h("table", { "aria-label": "Hosts" }, h("thead", {}, h("tr", {},
      ["ID", "Type", "Status", "Address", "Size", "Created", ""].map((t) => h("th", {}, t)))), rows));
  try {
    await refresh();
  } catch (error) {
    listErrors.show(error);
  }
}
