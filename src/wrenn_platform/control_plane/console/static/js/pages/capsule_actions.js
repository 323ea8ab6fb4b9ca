// Pause, resume and destroy buttons for one capsule, shared by the list and the capsule page.
import { del, post } from "../api.js";
import { busy, h } from "../dom.js";

const ACTIONS = [
  { label: "Pause", when: ["running"], run: (id) => post(`/v1/capsules/${id}/pause`) },
  { label: "Resume", when: ["paused", "hibernated"], run: (id) => post(`/v1/capsules/${id}/resume`) },
  {
    label: "Destroy", danger: true, when: ["running", "paused", "hibernated", "error", "missing", "pending", "starting"],
    confirm: (id) => `Destroy capsule ${id}? Its files are lost.`, run: (id) => del(`/v1/capsules/${id}`),
  },
];

// `onDone(capsule)` receives the answer (the capsule as the call left it).
export function capsuleActions(capsule, errors, onDone) {
  return h("span", { class: "actions" }, ACTIONS.filter((a) => a.when.includes(capsule.status)).map((action) => {
    const button = h("button", { type: "button", class: action.danger ? "danger" : null,
      "aria-label": `${action.label} ${capsule.id}` }, action.label);
    button.addEventListener("click", () => {
      if (action.confirm && !confirm(action.confirm(capsule.id))) return;
      busy(button, errors, async () => {
        const answer = await action.run(capsule.id);
        if (answer) onDone(answer);
      });
    });
    return button;
  }));
}
