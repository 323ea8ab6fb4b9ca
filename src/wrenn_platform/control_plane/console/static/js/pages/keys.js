// The team's API keys: create (the key shown once, with a copy button), list, delete.
import { del, get, post } from "../api.js";
import { busy, errorLine, formData, h, when } from "../dom.js";

function shownOnce(key) {
  const status = h("span", { role: "status", class: "muted" });
  const copy = h("button", { type: "button" }, "Copy");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(key.key);
      status.textContent = "Copied.";
    } catch {
      status.textContent = "Copy was refused: select the key and copy it by hand.";
    }
  });
  return h("div", { class: "panel", role: "region", "aria-label": "New API key" },
    h("p", {}, h("strong", {}, `Key “${key.name}” created.`), " Copy it now: it is shown only this once."),
    h("div", { class: "secret" }, h("code", { id: "new-key" }, key.key), copy, status));
}

export async function keysView(main) {
  const errors = errorLine();
  const listErrors = errorLine();
  const fresh = h("div");
  const rows = h("tbody");

  async function refresh() {
    const keys = await get("/v1/api-keys");
    rows.replaceChildren(...keys.map((key) => {
      const remove = h("button", { type: "button", class: "danger", "aria-label": `Delete ${key.name}` }, "Delete");
      remove.addEventListener("click", () => {
        if (!confirm(`Delete the key “${key.name}”? Programs using it stop working at once.`)) return;
        busy(remove, listErrors, async () => {
          await del(`/v1/api-keys/${key.id}`);
          await refresh();
        });
      });
      return h("tr", { "data-key": key.id }, h("td", {}, key.name), h("td", { class: "mono" }, key.key_prefix),
        h("td", {}, when(key.created_at)), h("td", {}, when(key.last_used)), h("td", {}, remove));
    }));
    if (!keys.length) rows.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No API keys.")));
  }

  const button = h("button", { class: "primary", type: "submit" }, "Create key");
  const form = h("form", { class: "inline", "aria-label": "Create API key" },
    h("label", {}, "Name", h("input", { name: "name", required: true, placeholder: "ci" })), button);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(button, errors, async () => {
      const key = await post("/v1/api-keys", formData(form));
      form.reset();
      fresh.replaceChildren(shownOnce(key));
      await refresh();
    });
  });
  main.append(h("h1", {}, "API keys"), form, errors, fresh, listErrors,
    h("table", { "aria-label": "API keys" },
      h("thead", {}, h("tr", {}, ["Name", "Key", "Created", "Last used", ""].map((t) => h("th", {}, t)))), rows));
  try {
    await refresh();
  } catch (error) {
    listErrors.show(error);
  }
}
