// Building the page from data: text is always set as text, never parsed as HTML.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

// An error line for a form: shows an API error's message next to what caused it.
export function errorLine() {
  const el = h("p", { class: "error", role: "alert" });
  el.show = (error) => {
    el.textContent = error ? error.message || String(error) : "";
  };
  return el;
}

// Runs `work` with the button disabled; shows a failure in `errors` (an errorLine).
export async function busy(button, errors, work) {
  button.disabled = true;
  errors.show(null);
  try {
    return await work();
  } catch (error) {
    errors.show(error); // after a 401 of a session that ended, the user is on the log-in page already
    return undefined;
  } finally {
    button.disabled = false;
  }
}

export function formData(form) {
  return Object.fromEntries(new FormData(form));
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

export function statusBadge(status) {
  return h("span", { class: `status status-${status}`, "data-status": status }, status);
}
