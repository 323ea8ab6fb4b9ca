// The session's team: its members and roles (add by email, change role, remove); refusals show
// the API's message next to the form that caused them.
import { del, get, patch, post } from "../api.js";
import { busy, errorLine, formData, h, when } from "../dom.js";
import * as session from "../session.js";

export async function teamView(main) {
  const me = session.current();
  const base = `/v1/teams/${me.team_id}`;
  const errors = errorLine();
  const listErrors = errorLine();
  const title = h("h1", {}, "Team");
  const rows = h("tbody");

  function memberRow(member) {
    const actions = [];
    if (member.role !== "owner") {
      const role = h("select", { "aria-label": `Role of ${member.email}` },
        ["admin", "member"].map((r) => h("option", { value: r, selected: r === member.role }, r)));
      // Redrawn after the answer either way, so a refused change shows the role that holds.
      role.addEventListener("change", () => busy(role, listErrors,
        () => patch(`${base}/members/${member.user_id}`, { role: role.value })).then(() => refresh().catch(() => {})));
      const remove = h("button", { type: "button", class: "danger", "aria-label": `Remove ${member.email}` }, "Remove");
      remove.addEventListener("click", () => {
        if (!confirm(`Remove ${member.email} from the team?`)) return;
        busy(remove, listErrors, async () => {
          await del(`${base}/members/${member.user_id}`);
          await refresh();
        });
      });
      actions.push(role, remove);
    }
    return h("tr", { "data-member": member.email }, h("td", {}, member.email),
      h("td", {}, member.role === "owner" || !actions.length ? member.role : ""),
      h("td", {}, when(member.joined_at)), h("td", {}, h("span", { class: "actions" }, actions)));
  }

  async function refresh() {
    const detail = await get(base);
    title.textContent = `Team ${detail.team.name}`;
    rows.replaceChildren(...(detail.members || []).map(memberRow));
  }

  const button = h("button", { class: "primary", type: "submit" }, "Add member");
  const form = h("form", { class: "inline", "aria-label": "Add member" },
    h("label", {}, "Email of a Wrenn user", h("input", { name: "email", type: "email", required: true })), button);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(button, errors, async () => {
      await post(`${base}/members`, formData(form));
      form.reset();
      await refresh();
    });
  });
  main.append(title, h("p", { class: "muted" }, `Your role: ${me.role}`), h("h2", {}, "Add a member"), form, errors,
    h("h2", {}, "Members"), listErrors,
    h("table", { "aria-label": "Members" },
      h("thead", {}, h("tr", {}, ["Email", "Role", "Joined", ""].map((t) => h("th", {}, t)))), rows));
  try {
    await refresh();
  } catch (error) {
    listErrors.show(error);
  }
}
