// Platform admin: every user; activate or deactivate, grant or revoke platform admin. A caller
// who is not a platform admin sees the API's refusal as the page.
import { get, request } from "../api.js";
import { busy, errorLine, h, when } from "../dom.js";

export async function adminUsersView(main) {
  const errors = errorLine();
  const rows = h("tbody");

  function toggle(user, label, path, body) {
    const button = h("button", { type: "button", "aria-label": `${label} ${user.email}` }, label);
    button.addEventListener("click", () => busy(button, errors, async () => {
      await request("PUT", `/v1/admin/users/${user.id}/${path}`, body);
      await refresh();
    }));
    return button;
  }

  async function refresh() {
    const users = await get("/v1/admin/users");
    rows.replaceChildren(...users.map((user) => h("tr", { "data-user": user.email },
      h("td", {}, user.email), h("td", {}, user.name),
      h("td", {}, user.deleted_at ? "deleted" : user.is_active ? "active" : "inactive"),
      h("td", {}, user.is_admin ? "platform admin" : "—"), h("td", {}, when(user.created_at)),
      h("td", {}, user.deleted_at ? null : h("span", { class: "actions" },
        user.is_active ? toggle(user, "Deactivate", "active", { active: false })
          : toggle(user, "Activate", "active", { active: true }),
        user.is_admin ? toggle(user, "Revoke admin", "admin", { admin: false })
          : toggle(user, "Make admin", "admin", { admin: true }))))));
  }

  try {
    await refresh();
  } catch (error) {
    if (error.status === 403) {
      main.append(h("h1", {}, "Not allowed"), h("p", { role: "alert", class: "error" }, error.message));
      return;
    }
    errors.show(error);
  }
  main.prepend(h("h1", {}, "Users (platform admin)"), errors,
    h("table", { "aria-label": "Users" },
      h("thead", {}, h("tr", {}, ["Email", "Name", "State", "Admin", "Created", ""].map((t) => h("th", {}, t)))), rows));
}
